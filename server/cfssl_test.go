package server_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/cloudflare/cfssl/api/client"
	"github.com/cloudflare/cfssl/auth"
	"github.com/cloudflare/cfssl/info"
	"github.com/cloudflare/cfssl/signer"

	"github.com/certctl/certctl/certdb"
	"github.com/certctl/certctl/server/cfsslapi"
)

// TestCFSSLClientAgainstServer drives the server's CFSSL endpoints (with the
// server's own authentication, authorization and audit) with CFSSL's Go
// client.
func TestCFSSLClientAgainstServer(t *testing.T) {
	hmacKey := []byte("0123456789abcdef0123456789abcdef")
	e := newEnv(t, envOpts{cfssl: &cfsslapi.Options{
		AuthKeys:        map[string][]byte{"k1": hmacKey},
		ProfileAuthKeys: map[string][]string{"server": {"k1"}},
		DefaultProfile:  "server",
	}})
	tlsCfg := func(cert *tls.Certificate) *tls.Config {
		pool := x509.NewCertPool()
		pool.AddCert(e.srv.Certificate())
		c := &tls.Config{RootCAs: pool}
		if cert != nil {
			c.Certificates = []tls.Certificate{*cert}
		}
		return c
	}
	signReq := func(cn string, hosts ...string) []byte {
		b, _ := json.Marshal(signer.SignRequest{Request: csrPEM(t, mustKey(t), cn, hosts...), Hosts: hosts, Profile: "server"})
		return b
	}
	stored := func(certPEM []byte) *certdb.Certificate {
		t.Helper()
		blk, _ := pem.Decode(certPEM)
		if blk == nil {
			t.Fatalf("no PEM: %s", certPEM)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		rec, err := e.store.GetCertificate(context.Background(), c.SerialNumber)
		if err != nil {
			t.Fatalf("issued certificate not in certdb: %v", err)
		}
		return rec
	}

	tok := e.token(nil)
	withToken := func(tk string) client.Remote {
		srv := client.NewServerTLS(e.srv.URL, tlsCfg(nil))
		srv.SetReqModifier(func(r *http.Request, _ []byte) { r.Header.Set("Authorization", "Bearer "+tk) })
		return srv
	}
	certPEM, err := withToken(tok).Sign(signReq("a.svc.internal", "a.svc.internal"))
	if err != nil {
		t.Fatalf("sign with a token: %v", err)
	}
	if rec := stored(certPEM); !strings.HasPrefix(rec.Requester, "token:") {
		t.Fatalf("requester %q", rec.Requester)
	}
	if _, err := withToken(tok).Sign(signReq("db.prod.internal", "db.prod.internal")); err == nil {
		t.Fatal("a name outside the token's scope was signed")
	}
	if _, err := client.NewServerTLS(e.srv.URL, tlsCfg(nil)).Sign(signReq("a.svc.internal", "a.svc.internal")); err == nil {
		t.Fatal("an unauthenticated sign was accepted")
	}

	// authsign with CFSSL's HMAC provider.
	prov, err := auth.New(hex.EncodeToString(hmacKey), nil)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err = client.NewAuthServer(e.srv.URL, tlsCfg(nil), prov).Sign(signReq("b.internal", "b.internal"))
	if err != nil {
		t.Fatalf("authsign: %v", err)
	}
	if rec := stored(certPEM); rec.Requester != "hmac:k1" {
		t.Fatalf("requester %q", rec.Requester)
	}
	bad, _ := auth.New(hex.EncodeToString([]byte("ffffffffffffffffffffffffffffffff")), nil)
	if _, err := client.NewAuthServer(e.srv.URL, tlsCfg(nil), bad).Sign(signReq("b.internal", "b.internal")); err == nil {
		t.Fatal("authsign with a wrong key was accepted")
	}

	// A service certificate may only renew itself: no CFSSL sign with it.
	svc, _ := e.mtlsClient("peer", "node.internal", "node.internal")
	svcCert := svc.Transport.(*http.Transport).TLSClientConfig.Certificates[0]
	if _, err := client.NewServerTLS(e.srv.URL, tlsCfg(&svcCert)).Sign(signReq("node.internal", "node.internal")); err == nil {
		t.Fatal("a service certificate signed through CFSSL")
	}

	infoReq, _ := json.Marshal(info.Req{Profile: "server"})
	resp, err := client.NewServerTLS(e.srv.URL, tlsCfg(nil)).Info(infoReq)
	if err != nil || !strings.Contains(resp.Certificate, "BEGIN CERTIFICATE") {
		t.Fatalf("info: %v %+v", err, resp)
	}

	// revoke: CFSSL wire format, admin only.
	rec := stored(certPEM)
	body := fmt.Sprintf(`{"serial":%q,"authority_key_id":"%x","reason":"keyCompromise"}`, rec.Serial.String(), rec.IssuerKeyID)
	for _, tc := range []struct {
		token  string
		status int
	}{{tok, 403}, {e.token(func(tk *certdb.Token) { tk.Admin = true }), 200}} {
		req, _ := http.NewRequest("POST", e.srv.URL+cfsslapi.PathPrefix+"revoke", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tc.token)
		res, err := e.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != tc.status {
			t.Fatalf("revoke: status %d, want %d", res.StatusCode, tc.status)
		}
	}
	if got, _ := e.store.GetCertificate(context.Background(), rec.Serial); got.Status != certdb.StatusRevoked {
		t.Fatal("not revoked")
	}
}
