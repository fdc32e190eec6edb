package main

import (
	"os"
	"path/filepath"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/certctl/certctl/internal/pkitest"
)

// softhsm LABEL: makes a fresh SoftHSM2 token labelled LABEL in $WORK/softhsm
// and sets SOFTHSM2_CONF (so certctl sees it), HSM_MODULE (the library),
// HSM_PIN and HSM_PINFILE (a file holding the user PIN) for the script. It
// fails the script, never skips it, when SoftHSM2 is missing.
func cmdSoftHSM(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 || neg {
		ts.Fatalf("usage: softhsm LABEL")
	}
	dir := ts.MkAbs("softhsm")
	ts.Check(os.MkdirAll(dir, 0o700))
	h, err := pkitest.InitSoftHSM(filepath.Clean(dir), args[0])
	ts.Check(err)
	ts.Setenv("SOFTHSM2_CONF", h.Conf)
	ts.Setenv("HSM_MODULE", h.Module)
	ts.Setenv("HSM_PIN", h.PIN)
	ts.Setenv("HSM_PINFILE", h.PINFile)
}
