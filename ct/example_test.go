package ct_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/certctl/certctl/ct"
	"github.com/certctl/certctl/issuance"
)

// The CA (package ca) runs this for every certificate of a profile with a
// ct: section: sign and record the precertificate, submit it, check the
// quorum, embed the SCTs.
func ExampleSubmitter() {
	var (
		ctx     = context.Background()
		issuer  *issuance.Issuer  // the issuing CA
		profile *issuance.Profile // with a ct: section
		tok     *issuance.Token   // from issuer.Prepare(profile, …), serial reserved
	)
	sub, err := ct.NewSubmitter(profile.CT())
	if err != nil {
		panic(err)
	}
	pre, err := issuer.IssuePrecert(tok)
	if err != nil {
		panic(err)
	}
	// … record pre in certdb (certdb.SCTStore.AddPrecertificate) before any log sees it …
	res, err := sub.SubmitPrecert(ctx, pre, issuer.Cert().Raw)
	if err != nil {
		panic(err)
	}
	var qe *ct.QuorumError
	if errors.As(res.Quorum(), &qe) {
		fmt.Println("not enough SCTs:", qe)
		return
	}
	list, err := ct.MarshalSCTList(res.SCTs)
	if err != nil {
		panic(err)
	}
	der, err := issuer.IssueFinal(tok, list)
	if err != nil {
		panic(err)
	}
	fmt.Printf("certificate with %d SCTs: %d bytes\n", len(res.SCTs), len(der))
}
