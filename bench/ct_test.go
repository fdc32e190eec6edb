package bench

import (
	"context"
	"encoding/pem"
	"fmt"
	"math/big"
	"testing"

	"github.com/certctl/certctl/ca"
	"github.com/certctl/certctl/certdb"
	"github.com/certctl/certctl/certdb/postgres"
	"github.com/certctl/certctl/internal/catest"
	"github.com/certctl/certctl/internal/pkitest"
	"github.com/certctl/certctl/issuance"
	"github.com/certctl/certctl/keys"
)

// discardSCTStore records nothing, precertificates and SCTs included.
type discardSCTStore struct{ discardStore }

func (discardSCTStore) AddPrecertificate(context.Context, *big.Int, []byte) error   { return nil }
func (discardSCTStore) GetPrecertificate(context.Context, *big.Int) ([]byte, error) { return nil, nil }
func (discardSCTStore) AddSCTs(context.Context, []*certdb.SCT) error                { return nil }
func (discardSCTStore) ListSCTs(context.Context, *big.Int) ([]*certdb.SCT, error)   { return nil, nil }

// withCT returns a CA like base (same issuer and chain) whose "server"
// profile submits every certificate to logs and needs an SCT from each.
func withCT(b *testing.B, base *ca.CA, st ca.Store, logs []*pkitest.CTLog) *ca.CA {
	b.Helper()
	pc := issuance.DefaultProfiles()["server"]
	pc.CT = &issuance.CTConfig{Require: len(logs), RequireDistinctOperators: true}
	for i, l := range logs {
		pc.CT.Logs = append(pc.CT.Logs, issuance.CTLogConfig{URL: l.URL, PublicKey: l.PublicKeyPEM, Operator: fmt.Sprintf("op%d", i)})
	}
	p, err := issuance.NewProfile("server", pc)
	if err != nil {
		b.Fatal(err)
	}
	c, err := ca.New(base.Issuer(), base.Chain(), map[string]*issuance.Profile{"server": p}, st)
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// BenchmarkIssueCT: issuance with Certificate Transparency off and on (two
// local TesseraCT logs, both required; flags from shared/recipes/ct-log.md:
// checkpoint every 100ms, batches of at most 20ms), with no store and with
// PostgreSQL (test cluster), at concurrency 1, 8 and 32; ct=on-nowait uses
// logs that answer before the entry is published (--enable_publication_awaiter=false),
// which isolates the CA's own cost. With CT on, each Issue
// signs a precertificate, records it, submits it to both logs in parallel,
// verifies both SCTs, lints and signs the final certificate.
func BenchmarkIssueCT(b *testing.B) {
	for _, store := range []string{"none", "postgres"} {
		b.Run("store="+store, func(b *testing.B) {
			var st ca.Store = discardSCTStore{}
			if store == "postgres" {
				st = catest.PostgresStore(b, postgresCluster(b).NewDatabase(b), postgres.WithMaxConns(16))
			}
			base := newCA(b, st, keys.ECDSAP256)
			roots := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: base.Chain()[0]})
			logs := []*pkitest.CTLog{pkitest.StartCTLog(b, roots), pkitest.StartCTLog(b, roots)}
			withLogs := withCT(b, base, st, logs)
			// The same logs answering before publication (SCT as a promise,
			// like RFC 6962 logs): what CT costs the CA itself.
			const noWait = "--enable_publication_awaiter=false"
			fast := []*pkitest.CTLog{pkitest.StartCTLog(b, roots, noWait), pkitest.StartCTLog(b, roots, noWait)}
			withFastLogs := withCT(b, base, st, fast)
			for _, conc := range []int{1, 8, 32} {
				b.Run(fmt.Sprintf("ct=off/conc=%d", conc), func(b *testing.B) { benchIssue(b, base, conc) })
				b.Run(fmt.Sprintf("ct=on/conc=%d", conc), func(b *testing.B) { benchIssue(b, withLogs, conc) })
				b.Run(fmt.Sprintf("ct=on-nowait/conc=%d", conc), func(b *testing.B) { benchIssue(b, withFastLogs, conc) })
			}
		})
	}
}
