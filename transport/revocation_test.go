package transport_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/certctl/certctl/certdb"
	"github.com/certctl/certctl/crl"
	"github.com/certctl/certctl/issuance"
	"github.com/certctl/certctl/transport"
	"github.com/certctl/certctl/transport/revocation"
)

// A transport with the real revocation checker refuses a peer whose
// certificate the CA has revoked, reading the CRL from the URL in the
// certificate's CDP as the CA's own CRL handler serves it, and keeps
// talking to a peer that is not revoked.
func TestRevokedPeerRefused(t *testing.T) {
	t.Parallel()
	var crlHandler atomic.Pointer[http.Handler]
	crlSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := crlHandler.Load()
		if h == nil {
			http.Error(w, "no CRL yet", http.StatusServiceUnavailable)
			return
		}
		(*h).ServeHTTP(w, r)
	}))
	t.Cleanup(crlSrv.Close)
	c := newTestCA(t, time.Hour, time.Minute, func(c *testCA) {
		c.issuerCfg = issuance.IssuerConfig{CRLDistributionPoints: []string{crlSrv.URL + "/crl"}}
	})
	builder, err := crl.NewBuilder(c.gen1.iss, c.store)
	if err != nil {
		t.Fatal(err)
	}
	h, err := crl.NewHandler(c.store, builder.IssuerKeyID(), builder.Shards())
	if err != nil {
		t.Fatal(err)
	}
	var hh http.Handler = h
	crlHandler.Store(&hh)

	ctx := context.Background()
	anyPeer := transport.WithAuthorizer(transport.AuthorizeAnyTrusted())
	revokedSrv := newTransport(t, c.identity("revoked.internal", "127.0.0.1"), anyPeer)
	goodSrv := newTransport(t, c.identity("good.internal", "127.0.0.1"), anyPeer)
	if len(revokedSrv.Current().Leaf.CRLDistributionPoints) != 1 {
		t.Fatalf("server certificate CDP = %v, want the test CRL URL", revokedSrv.Current().Leaf.CRLDistributionPoints)
	}
	client := newTransport(t, c.identity("client.internal"), anyPeer,
		transport.WithRevocationChecker(revocation.New(revocation.WithMode(revocation.HardFail), revocation.WithMethods(revocation.CRL))))

	addrs := map[*transport.Transport]string{}
	for _, srv := range []*transport.Transport{revokedSrv, goodSrv} {
		_, addrs[srv] = listenEcho(t, srv)
	}

	if err := c.gen1.ca.Revoke(ctx, revokedSrv.Current().Leaf.SerialNumber, certdb.ReasonKeyCompromise); err != nil {
		t.Fatal(err)
	}
	if _, err := builder.Build(ctx, 0); err != nil {
		t.Fatal(err)
	}

	conn, err := client.Dial(ctx, "tcp", addrs[revokedSrv])
	if err == nil {
		conn.Close()
		t.Fatal("client accepted a server whose certificate is revoked")
	}
	if !errors.Is(err, revocation.ErrRevoked) {
		t.Fatalf("Dial to the revoked server: %v, want revocation.ErrRevoked", err)
	}
	conn, err = client.Dial(ctx, "tcp", addrs[goodSrv])
	if err != nil {
		t.Fatalf("Dial to the server that is not revoked: %v", err)
	}
	defer conn.Close()
	if err := echo(conn, "ping"); err != nil {
		t.Fatal(err)
	}
}
