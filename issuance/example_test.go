package issuance_test

import (
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/certctl/certctl/issuance"
	"github.com/certctl/certctl/keys"
)

// Example issues a server certificate from a new root: policy check and lint
// in Prepare, the real signature in Issue.
func Example() {
	now := time.Now()
	rootKey, err := keys.Generate(keys.ECDSAP256)
	if err != nil {
		log.Fatal(err)
	}
	sn, err := issuance.NewSerial(rand.Reader)
	if err != nil {
		log.Fatal(err)
	}
	rootDER, err := issuance.SelfSignRoot(rootKey, issuance.RootConfig{
		CommonName: "Example Root CA", Validity: 10 * 365 * 24 * time.Hour, MaxPathLen: 0,
	}, sn, now)
	if err != nil {
		log.Fatal(err)
	}
	root, err := x509.ParseCertificate(rootDER)
	if err != nil {
		log.Fatal(err)
	}
	iss, err := issuance.NewIssuer(root, rootKey, issuance.IssuerConfig{
		CRLDistributionPoints: []string{"http://pki.example.internal/root.crl"},
	})
	if err != nil {
		log.Fatal(err)
	}
	profile, err := issuance.NewProfile("server", issuance.DefaultProfiles()["server"])
	if err != nil {
		log.Fatal(err)
	}

	leafKey, err := keys.Generate(keys.ECDSAP256)
	if err != nil {
		log.Fatal(err)
	}
	req := &issuance.Request{PublicKey: leafKey.Public()}
	if err := req.AddNames("DB.internal", "127.0.0.1"); err != nil {
		log.Fatal(err)
	}
	if sn, err = issuance.NewSerial(rand.Reader); err != nil {
		log.Fatal(err)
	}
	lintDER, tok, err := iss.Prepare(profile, req, sn, now)
	if err != nil {
		log.Fatal(err)
	}
	_ = lintDER // record the serial and lintDER before signing for real
	der, err := iss.Issue(tok)
	if err != nil {
		log.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(tok.SANs(), cert.NotAfter.Sub(now.Truncate(time.Second)))

	// A name outside the profile is refused with the field and the rule.
	bad := &issuance.Request{PublicKey: leafKey.Public(), DNSNames: []string{"www.example.com"}}
	_, _, err = iss.Prepare(profile, bad, sn, now)
	var pe *issuance.PolicyError
	if errors.As(err, &pe) {
		fmt.Println(pe.Field, pe.Reason)
	}
	// Output:
	// [dns:db.internal ip:127.0.0.1] 720h0m0s
	// dns_names[0] "www.example.com" is not allowed: names.dns allows [localhost **.internal]
}
