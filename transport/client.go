package transport

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// APIError is an error answer from the CA API. Callers branch on Status or
// Code with errors.As; Temporary says whether retrying may help.
type APIError struct {
	Op      string // "enroll", "renew", "fetch trust bundle"
	Status  int
	Code    string // the server's error code, e.g. "unauthenticated"
	Message string
}

func (e *APIError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.Status)
	}
	return fmt.Sprintf("transport: %s: CA answered %d %s: %s", e.Op, e.Status, e.Code, msg)
}

// Temporary reports whether the request may succeed later (rate limits,
// server errors), as opposed to a refusal (bad token, policy).
func (e *APIError) Temporary() bool {
	return e.Status == http.StatusTooManyRequests || e.Status == http.StatusRequestTimeout || e.Status >= 500
}

// permanent reports whether err is a refusal that retrying cannot fix.
func permanent(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && !ae.Temporary()
}

// Wire types of the CA API (server.IssueRequest, RenewRequest,
// CertificateResponse, CAResponse). Declared here because nothing may
// import package server.
type issueRequest struct {
	CSR     string   `json:"csr"`
	Profile string   `json:"profile"`
	Names   []string `json:"names,omitempty"`
}

type renewRequest struct {
	CSR string `json:"csr"`
}

type certificateResponse struct {
	Serial         string `json:"serial"`
	CertificatePEM string `json:"certificate_pem"`
	ChainPEM       string `json:"chain_pem"` // leaf first, then intermediates
}

type caResponse struct {
	ChainPEM string `json:"chain_pem"`
	RootsPEM string `json:"roots_pem"`
}

// maxResponse bounds what is read from the CA.
const maxResponse = 1 << 20

// caClient talks to the CA API. It verifies the CA's certificate against
// the transport's current trust bundle (and the URL's host name), and
// presents the current certificate, which is what /v1/renew authenticates.
// Connections are not kept alive: a renewal must be a fresh handshake with
// the certificate of the moment.
type caClient struct {
	base string
	http *http.Client
}

func newCAClient(base string, t *Transport, dial func(ctx context.Context, network, addr string) (net.Conn, error)) *caClient {
	// The host to verify comes from the URL: ConnectionState.ServerName is
	// empty for IP addresses.
	host := base
	if u, err := url.Parse(base); err == nil {
		host = u.Hostname()
	}
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // verified in VerifyConnection against the current bundle, with the host name
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := t.verifyChain(cs.PeerCertificates, x509.ExtKeyUsageServerAuth, host)
			if err != nil {
				return fmt.Errorf("transport: CA %s: %w", base, err)
			}
			return nil
		},
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if c := t.cur.Load(); c != nil && t.now().Before(c.leaf.NotAfter) {
				return c.cert, nil
			}
			return &tls.Certificate{}, nil // none yet: enrollment uses the token
		},
	}
	tr := &http.Transport{
		DialContext:         dial,
		TLSClientConfig:     cfg,
		DisableKeepAlives:   true,
		TLSHandshakeTimeout: 15 * time.Second,
		ForceAttemptHTTP2:   false,
	}
	return &caClient{base: strings.TrimRight(base, "/"), http: &http.Client{Transport: tr, Timeout: time.Minute}}
}

func (c *caClient) close() { c.http.CloseIdleConnections() }

// do sends a JSON request and decodes a JSON answer into out.
func (c *caClient) do(ctx context.Context, op, method, path, token string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("transport: %s: %w", op, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return fmt.Errorf("transport: %s: %w", op, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("transport: %s: %w", op, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return fmt.Errorf("transport: %s: read answer: %w", op, err)
	}
	if resp.StatusCode/100 != 2 {
		ae := &APIError{Op: op, Status: resp.StatusCode}
		var e struct {
			Error struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		if json.Unmarshal(data, &e) == nil {
			ae.Code, ae.Message = e.Error.Code, e.Error.Message
		}
		return ae
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("transport: %s: invalid answer from CA: %w", op, err)
	}
	return nil
}

// enroll asks for a first certificate with a bootstrap token.
func (c *caClient) enroll(ctx context.Context, token string, req issueRequest) ([]*x509.Certificate, error) {
	var out certificateResponse
	if err := c.do(ctx, "enroll", http.MethodPost, "/v1/certificates", token, req, &out); err != nil {
		return nil, err
	}
	return responseChain("enroll", out)
}

// renew asks for a new certificate over mutual TLS with the current one.
func (c *caClient) renew(ctx context.Context, csrPEM string) ([]*x509.Certificate, error) {
	var out certificateResponse
	if err := c.do(ctx, "renew", http.MethodPost, "/v1/renew", "", renewRequest{CSR: csrPEM}, &out); err != nil {
		return nil, err
	}
	return responseChain("renew", out)
}

// bundle fetches the CA's roots (GET /v1/ca).
func (c *caClient) bundle(ctx context.Context) ([]*x509.Certificate, error) {
	var out caResponse
	if err := c.do(ctx, "fetch trust bundle", http.MethodGet, "/v1/ca", "", nil, &out); err != nil {
		return nil, err
	}
	roots, err := parseCertsPEM([]byte(out.RootsPEM))
	if err != nil {
		return nil, fmt.Errorf("transport: fetch trust bundle: roots_pem: %w", err)
	}
	if len(roots) == 0 {
		return nil, errors.New("transport: fetch trust bundle: the CA published no roots")
	}
	return roots, nil
}

func responseChain(op string, out certificateResponse) ([]*x509.Certificate, error) {
	chain, err := parseCertsPEM([]byte(out.ChainPEM))
	if err != nil || len(chain) == 0 {
		// Older servers: certificate_pem alone.
		chain, err = parseCertsPEM([]byte(out.CertificatePEM))
	}
	if err != nil {
		return nil, fmt.Errorf("transport: %s: invalid certificate from CA: %w", op, err)
	}
	if len(chain) == 0 {
		return nil, fmt.Errorf("transport: %s: the CA returned no certificate", op)
	}
	return chain, nil
}

// parseCertsPEM parses every CERTIFICATE block; other blocks are an error.
func parseCertsPEM(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("unexpected PEM block %q", b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(bytes.TrimSpace(data)) != 0 && len(out) == 0 {
		return nil, errors.New("no PEM certificate found")
	}
	return out, nil
}
