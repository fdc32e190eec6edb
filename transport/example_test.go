package transport_test

import (
	"context"
	"log"
	"log/slog"
	"net/http"
	"os"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/certctl/certctl/transport"
)

// A service that serves HTTPS to one peer and calls another, with an
// identity file such as:
//
//	ca_url: https://ca.internal:8443
//	ca_roots: /etc/api/ca-roots.pem
//	profile: peer
//	names: [api.internal, "spiffe://example.internal/api"]
//	key: /var/lib/api/key.pem
//	cert_file: /var/lib/api/cert.pem
//	token_file: /run/secrets/certctl-token
func Example() {
	ctx := context.Background()
	id, err := transport.LoadIdentity("/etc/api/identity.yaml")
	if err != nil {
		log.Fatal(err)
	}
	tr, err := transport.New(ctx, id,
		transport.WithAuthorizer(transport.AuthorizeSPIFFEID("spiffe://example.internal/web", "spiffe://example.internal/db")),
		transport.WithLogger(slog.New(slog.NewJSONHandler(os.Stderr, nil))),
		transport.WithRegisterer(prometheus.DefaultRegisterer),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer tr.Close()

	ln, err := tr.Listen("tcp", ":8443")
	if err != nil {
		log.Fatal(err)
	}
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("hello " + r.TLS.PeerCertificates[0].URIs[0].String()))
	}))

	resp, err := tr.HTTPClient().Get("https://db.internal:8443/status")
	if err != nil {
		log.Fatal(err)
	}
	resp.Body.Close()
}
