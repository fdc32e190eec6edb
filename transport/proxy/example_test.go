package proxy_test

import (
	"crypto/tls"
	"net/http"
	"net/url"

	"github.com/certctl/certctl/transport/proxy"
)

// An HTTP client whose connections go through an mTLS CONNECT proxy; TLS to
// the destination runs end to end inside the tunnel.
func ExampleHTTPConnect() {
	proxyCert, _ := tls.LoadX509KeyPair("proxy-client.crt", "proxy-client.key")
	p := &proxy.HTTPConnect{
		URL:       &url.URL{Scheme: "https", Host: "proxy.internal:3128"},
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{proxyCert}},
	}
	client := &http.Client{Transport: &http.Transport{DialContext: p.DialContext}}
	_ = client
}
