package main

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"strings"

	"github.com/certctl/certctl/keys"
	"github.com/certctl/certctl/keys/pkcs11"
)

const hsmDoc = `Work with keys on a PKCS#11 token (HSM, smart card, SoftHSM2).

  certctl hsm list   --module PATH [--token LABEL]
  certctl hsm keygen --key 'pkcs11:token=T;object=LABEL?module-path=PATH' [--key-type ecdsa-p256]

The user PIN comes from the key URI's pin-source (pin-source=file:PATH) or
from CERTCTL_PKCS11_PIN; never put pin-value on the command line (process
listings show it). To make a CA whose intermediate key is on the token, run
certctl init --key 'pkcs11:…'. Run 'certctl hsm SUBCOMMAND --help' for flags.`

func cmdHSM(ctx context.Context, e *env, args []string) error {
	return dispatch(ctx, e, "hsm", "hsm list|keygen [flags]", hsmDoc, []subcommand{
		{"list", cmdHSMList}, {"keygen", cmdHSMKeygen},
	}, args)
}

const hsmListDoc = `List the slots of a PKCS#11 library, their tokens and the key objects on
them, with a pkcs11: URI for each key.

Without a login only public objects show (each key pair's public half). With
--token LABEL and the PIN in CERTCTL_PKCS11_PIN, certctl logs in to that token
(and only that one: a PIN tried on other tokens would count as a wrong try)
and lists its private keys too.`

func cmdHSMList(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "hsm list", "", hsmListDoc)
	module := fs.String("module", e.getenv(envPKCS11Module), "PKCS#11 library `PATH`, e.g. /usr/lib/softhsm/libsofthsm2.so (env "+envPKCS11Module+")")
	tokenLabel := fs.String("token", "", "log in to the token labelled `LABEL` (PIN from "+envPKCS11PIN+") to list its private keys too")
	jsonOut := fs.Bool("json", false, "print the result as JSON")
	verbose := fs.Bool("verbose", false, "log to stderr")
	if err := parse(e, fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError("hsm list takes no arguments, got %q", fs.Args())
	}
	if *module == "" {
		return usageError("hsm list needs --module PATH (the PKCS#11 library, e.g. /usr/lib/softhsm/libsofthsm2.so) or %s", envPKCS11Module)
	}
	log := newLogger(e, *verbose)
	m, err := pkcs11.OpenModule(*module, pkcs11.WithLogger(log))
	if err != nil {
		return hsmHint(err)
	}
	defer m.Close()
	slots, err := m.Slots(ctx)
	if err != nil {
		return err
	}
	type keyOut struct {
		Class string `json:"class"`
		Label string `json:"label"`
		ID    string `json:"id"`
		Type  string `json:"type"`
		URI   string `json:"uri"`
	}
	type slotOut struct {
		Slot        uint     `json:"slot"`
		Description string   `json:"description"`
		Token       string   `json:"token,omitempty"`
		Initialized bool     `json:"initialized"`
		Model       string   `json:"model,omitempty"`
		Serial      string   `json:"serial,omitempty"`
		LoggedIn    bool     `json:"logged_in"`
		Keys        []keyOut `json:"keys"`
	}
	var out []slotOut
	found := *tokenLabel == ""
	for _, sl := range slots {
		so := slotOut{Slot: sl.ID, Description: sl.Description, Keys: []keyOut{}}
		if sl.Token != nil {
			so.Token, so.Initialized, so.Model, so.Serial = sl.Token.Label, sl.Token.Initialized, sl.Token.Model, sl.Token.Serial
		}
		if sl.Token != nil && sl.Token.Initialized {
			var opts []pkcs11.Option
			if *tokenLabel != "" && sl.Token.Label == *tokenLabel {
				found = true
				pin := e.getenv(envPKCS11PIN)
				if pin == "" {
					return usageError("--token %s: set %s to log in", *tokenLabel, envPKCS11PIN)
				}
				opts = append(opts, pkcs11.WithPIN(pin))
				so.LoggedIn = true
			}
			ks, err := m.Keys(ctx, sl.Token.URI, opts...)
			if err != nil {
				return hsmHint(err)
			}
			for _, k := range ks {
				u := k.URI
				u.ModulePath = *module
				so.Keys = append(so.Keys, keyOut{Class: k.Class, Label: k.Label, ID: hex.EncodeToString(k.ID), Type: k.Type, URI: u.String()})
			}
		}
		out = append(out, so)
	}
	if !found {
		return fmt.Errorf("no initialised token labelled %q in %s (see the list without --token)", *tokenLabel, *module)
	}
	if *jsonOut {
		return writeJSON(e.stdout, out)
	}
	fmt.Fprintf(e.stdout, "Module %s\n", *module)
	for _, so := range out {
		switch {
		case so.Token == "" && !so.Initialized:
			fmt.Fprintf(e.stdout, "Slot %d (%s): no initialised token\n", so.Slot, so.Description)
			continue
		default:
			login := "not logged in: private keys hidden"
			if so.LoggedIn {
				login = "logged in"
			}
			fmt.Fprintf(e.stdout, "Slot %d (%s): token %q, model %s, serial %s (%s)\n", so.Slot, so.Description, so.Token, so.Model, so.Serial, login)
		}
		if len(so.Keys) == 0 {
			fmt.Fprintln(e.stdout, "  no keys")
		}
		for _, k := range so.Keys {
			fmt.Fprintf(e.stdout, "  %-7s %-10s %-20q id %-16s %s\n", k.Class, k.Type, k.Label, k.ID, k.URI)
		}
	}
	return nil
}

const hsmKeygenDoc = `Generate a key pair on a PKCS#11 token. The private key is created
sensitive and not extractable: it can sign and never leave the token.

The URI names the token (token=) and the key's label (object=, required);
id= is chosen at random unless given. A key with that label or id already on
the token is an error: nothing is overwritten. Prints the key's URI (use it
with certctl init --key) and, with --json, the public key.`

func cmdHSMKeygen(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "hsm keygen", "", hsmKeygenDoc)
	keyFlag := fs.String("key", "", "the key to make: a pkcs11: `URI` (token=…;object=LABEL?module-path=…&pin-source=file:…)")
	keyType := fs.String("key-type", "ecdsa-p256", "key `TYPE`: "+joinKeyTypes()+" (ed25519 where the token supports it)")
	module := fs.String("module", e.getenv(envPKCS11Module), "PKCS#11 library `PATH` if the URI has no module-path (env "+envPKCS11Module+")")
	jsonOut := fs.Bool("json", false, "print the result as JSON")
	verbose := fs.Bool("verbose", false, "log to stderr")
	if err := parse(e, fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError("hsm keygen takes no arguments, got %q", fs.Args())
	}
	if *keyFlag == "" {
		return usageError("hsm keygen needs --key 'pkcs11:token=TOKEN;object=LABEL?module-path=PATH'")
	}
	kt, err := keys.ParseKeyType(*keyType)
	if err != nil {
		return usageError("%v", err)
	}
	u, err := parseKeyFlag("key", *keyFlag, *module)
	if err != nil {
		return err
	}
	if u.Object == "" {
		return usageError("--key: the URI needs object=LABEL: the new key's label")
	}
	log := newLogger(e, *verbose)
	m, err := pkcs11.OpenModule(u.ModulePath, pkcs11.WithLogger(log))
	if err != nil {
		return hsmHint(err)
	}
	defer m.Close()
	s, err := m.GenerateKey(ctx, u, kt, hsmOptions(e.getenv, log)...)
	if err != nil {
		return hsmHint(err)
	}
	defer s.Close()
	der, err := x509.MarshalPKIXPublicKey(s.Public())
	if err != nil {
		return err
	}
	pubPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	if *jsonOut {
		return writeJSON(e.stdout, map[string]any{
			"uri": s.URI().String(), "key_type": string(kt), "token": u.Token, "label": u.Object,
			"id": hex.EncodeToString(s.URI().ID), "public_key_pem": pubPEM,
		})
	}
	fmt.Fprintf(e.stdout, "Generated %s key %q on token %q (not extractable)\n%s\n%s", kt, u.Object, u.Token, s.URI(), strings.TrimRight(pubPEM, "\n")+"\n")
	return nil
}
