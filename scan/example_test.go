package scan_test

import (
	"context"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/certctl/certctl/scan"
)

func ExampleParseTarget() {
	for _, s := range []string{"db.internal", "postgres://db.internal", "[2001:db8::1]:8443", "smtp://mx.example.com:587"} {
		t, err := scan.ParseTarget(s, 443)
		if err != nil {
			panic(err)
		}
		fmt.Printf("%s -> host %s port %d starttls %q\n", s, t.Host, t.Port, t.StartTLS)
	}
	// Output:
	// db.internal -> host db.internal port 443 starttls ""
	// postgres://db.internal -> host db.internal port 5432 starttls "postgres"
	// [2001:db8::1]:8443 -> host 2001:db8::1 port 8443 starttls ""
	// smtp://mx.example.com:587 -> host mx.example.com port 587 starttls "smtp"
}

func ExampleScan() {
	roots := x509.NewCertPool() // the organisation's CA bundle
	target, err := scan.ParseTarget("api.internal:8443", 443)
	if err != nil {
		panic(err)
	}
	r, err := scan.Scan(context.Background(), target,
		scan.WithRoots(roots), scan.WithTimeout(20*time.Second), scan.WithExpiryWarning(21))
	if err != nil {
		panic(err) // invalid target or canceled context
	}
	if r.Error != "" {
		fmt.Println("unreachable:", r.Error)
		return
	}
	fmt.Println(r.Grade, r.Score)
	for _, f := range r.Findings {
		fmt.Printf("%s %s: %s (%s)\n", f.Severity, f.Check, f.Message, f.Evidence)
	}
}
