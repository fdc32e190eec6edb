package cfsslapi

import (
	"bytes"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/certctl/certctl/issuance"
)

// SignRequest is a decoded sign or authsign request.
type SignRequest struct {
	// CSR is the "certificate_request" field as sent (PEM).
	CSR []byte
	// Hosts are the names from "hosts" (or the comma-separated
	// "hostname"). When not empty they replace the CSR's subject
	// alternative names, as in CFSSL.
	Hosts []string
	// Profile is the requested profile, or Options.DefaultProfile when the
	// request named none. Never "".
	Profile string
	// Label is CFSSL's signer label. certctl has one issuer per server and
	// ignores it; it is passed on for logging.
	Label string
	// Subject, when not nil, overrides the CSR's subject.
	Subject *Subject
}

// Subject is the part of CFSSL's subject override that certctl puts into
// certificates. Other attributes (C, ST, L, E, SerialNumber, OIDs) are
// ignored, as they are in CSRs.
type Subject struct {
	CommonName         string
	Organization       []string
	OrganizationalUnit []string
}

// IssuanceRequest parses the CSR (checking its signature) and applies the
// hosts and subject overrides. Errors wrap issuance.ErrBadCSR or
// issuance.ErrInvalidName, which the handler answers with 400.
func (r *SignRequest) IssuanceRequest() (*issuance.Request, error) {
	csr, err := issuance.ParseCSR(r.CSR)
	if err != nil {
		return nil, fmt.Errorf("cfsslapi: certificate_request: %w", err)
	}
	req := issuance.RequestFromCSR(csr)
	if len(r.Hosts) > 0 {
		req.DNSNames, req.IPAddresses, req.URIs, req.EmailAddresses = nil, nil, nil, nil
		if err := req.AddNames(r.Hosts...); err != nil {
			return nil, fmt.Errorf("cfsslapi: hosts: %w", err)
		}
	}
	if s := r.Subject; s != nil {
		if s.CommonName != "" {
			req.Subject.CommonName = s.CommonName
		}
		if len(s.Organization) > 0 {
			req.Subject.Organization = slices.Clone(s.Organization)
		}
		if len(s.OrganizationalUnit) > 0 {
			req.Subject.OrganizationalUnit = slices.Clone(s.OrganizationalUnit)
		}
	}
	return req, nil
}

// wireSignRequest is CFSSL's signhandler.jsonSignRequest plus the fields
// that signer.SignRequest marshals (the remote signer sends that type).
// Fields certctl refuses when set are decoded loosely (RawMessage) so that
// no value in them costs anything to parse.
type wireSignRequest struct {
	Hostname      string            `json:"hostname"`
	Hosts         []string          `json:"hosts"`
	Request       string            `json:"certificate_request"`
	Subject       *wireSubject      `json:"subject,omitempty"`
	Profile       string            `json:"profile"`
	Label         string            `json:"label"`
	Serial        json.RawMessage   `json:"serial,omitempty"`
	Bundle        bool              `json:"bundle"`
	CRLOverride   string            `json:"crl_override"`
	Extensions    []json.RawMessage `json:"extensions,omitempty"`
	NotBefore     json.RawMessage   `json:"NotBefore"`
	NotAfter      json.RawMessage   `json:"NotAfter"`
	ReturnPrecert bool              `json:"ReturnPrecert"`
	Metadata      json.RawMessage   `json:"metadata"` // stored by CFSSL's certdb; ignored
}

// wireSubject is signer.Subject (its CN and SerialNumber have no JSON tags).
type wireSubject struct {
	CN           string     `json:"CN"`
	Names        []wireName `json:"names"`
	SerialNumber string     `json:"SerialNumber"`
}

// wireName is csr.Name.
type wireName struct {
	C, ST, L, O, OU, E, SerialNumber string
	OID                              map[string]string
}

// unsetTime reports whether a NotBefore/NotAfter value is absent, null or
// Go's zero time, which is what signer.SignRequest marshals when unset.
func unsetTime(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return true
	}
	var t time.Time
	return json.Unmarshal(raw, &t) == nil && t.IsZero()
}

func isNull(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) == 0 || string(raw) == "null"
}

// decodeSignRequest decodes and checks the JSON of a sign request. The
// profile is resolved by the caller.
func decodeSignRequest(data []byte) (*wireSignRequest, *SignRequest, error) {
	var w wireSignRequest
	if err := json.Unmarshal(data, &w); err != nil {
		return nil, nil, badRequest("cannot parse the sign request: %v", jsonProblem(err))
	}
	refuse := func(field, why string) error {
		return badRequest("%q is not accepted: %s", field, why)
	}
	switch {
	case strings.TrimSpace(w.Request) == "":
		return nil, nil, badRequest("missing parameter \"certificate_request\"")
	case !isNull(w.Serial):
		return nil, nil, refuse("serial", "certctl draws serial numbers itself")
	case len(w.Extensions) > 0:
		return nil, nil, refuse("extensions", "the profile decides every extension")
	case !unsetTime(w.NotBefore), !unsetTime(w.NotAfter):
		return nil, nil, refuse("NotBefore/NotAfter", "the profile decides the validity period")
	case w.CRLOverride != "":
		return nil, nil, refuse("crl_override", "the CRL distribution point is set on the issuer")
	case w.ReturnPrecert:
		return nil, nil, refuse("ReturnPrecert", "certctl does not issue precertificates")
	}
	r := &SignRequest{
		CSR:     []byte(w.Request),
		Hosts:   slices.Clone(w.Hosts),
		Profile: w.Profile,
		Label:   w.Label,
	}
	if w.Hostname != "" { // CFSSL: "hostname" wins over "hosts"
		r.Hosts = strings.Split(w.Hostname, ",")
	}
	if s := w.Subject; s != nil {
		r.Subject = &Subject{CommonName: s.CN}
		for _, n := range s.Names {
			if n.O != "" {
				r.Subject.Organization = append(r.Subject.Organization, n.O)
			}
			if n.OU != "" {
				r.Subject.OrganizationalUnit = append(r.Subject.OrganizationalUnit, n.OU)
			}
		}
	}
	return &w, r, nil
}

// jsonProblem shortens encoding/json errors to what helps a client.
func jsonProblem(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("invalid JSON at byte %d: %v", se.Offset, se)
	case errors.As(err, &te):
		return fmt.Sprintf("field %q must be %s, not %s", te.Field, te.Type, te.Value)
	}
	return err.Error()
}

// noBundleMessage is sent, as CFSSL does when it has no bundler, with a
// successful response to a request that asked for "bundle".
var noBundleMessage = responseMessage{Code: codeInvalidRequest,
	Message: "certctl does not build bundles; the issuer chain is served by GET /v1/ca"}

func (h *Handler) serveSign(w http.ResponseWriter, r *http.Request, body []byte) error {
	wire, req, err := decodeSignRequest(body)
	if err != nil {
		return err
	}
	return h.sign(w, r, Caller{Request: r}, wire, req)
}

// wireAuthRequest is auth.AuthenticatedRequest.
type wireAuthRequest struct {
	Timestamp     int64  `json:"timestamp,omitempty"`
	RemoteAddress []byte `json:"remote_address,omitempty"`
	Token         []byte `json:"token"`
	Request       []byte `json:"request"`
}

func (h *Handler) serveAuthSign(w http.ResponseWriter, r *http.Request, body []byte) error {
	var a wireAuthRequest
	if err := json.Unmarshal(body, &a); err != nil {
		return badRequest("cannot parse the authenticated request: %v", jsonProblem(err))
	}
	if len(a.Token) == 0 {
		return &apiError{status: http.StatusUnauthorized, code: http.StatusUnauthorized, msg: `missing parameter "token"`}
	}
	if len(a.Request) == 0 {
		return badRequest(`missing parameter "request"`)
	}
	// The key depends on the profile, so the inner request is decoded
	// before the MAC is checked, as in CFSSL; nothing is acted on before.
	wire, req, err := decodeSignRequest(a.Request)
	if err != nil {
		return err
	}
	if req.Profile, err = h.resolveProfile(req.Profile); err != nil {
		return err
	}
	key, err := h.verifyHMAC(req.Profile, a.Request, a.Token)
	if err != nil {
		return err
	}
	return h.sign(w, r, Caller{HMACKey: key, Request: r}, wire, req)
}

func (h *Handler) sign(w http.ResponseWriter, r *http.Request, c Caller, wire *wireSignRequest, req *SignRequest) error {
	var err error
	if req.Profile, err = h.resolveProfile(req.Profile); err != nil {
		return err
	}
	cert, err := h.b.Sign(r.Context(), c, req)
	if err != nil {
		return err
	}
	if cert == nil {
		return fmt.Errorf("cfsslapi: backend returned no certificate for profile %q", req.Profile)
	}
	result := map[string]any{"certificate": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}))}
	if wire.Bundle {
		writeResult(w, result, noBundleMessage)
		return nil
	}
	writeResult(w, result)
	return nil
}
