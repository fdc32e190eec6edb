package cfsslapi

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"strings"
	"time"

	"github.com/certctl/certctl/certdb"
)

// wireInfoRequest is info.Req.
type wireInfoRequest struct {
	Label   string `json:"label"`
	Profile string `json:"profile"`
}

// wireInfoResponse is info.Resp.
type wireInfoResponse struct {
	Certificate string   `json:"certificate"`
	Usage       []string `json:"usages"`
	Expiry      string   `json:"expiry"`
}

func (h *Handler) serveInfo(w http.ResponseWriter, r *http.Request, body []byte) error {
	var req wireInfoRequest
	if len(bytes.TrimSpace(body)) > 0 { // CFSSL clients always send a body; curl users may not
		if err := json.Unmarshal(body, &req); err != nil {
			return badRequest("cannot parse the info request: %v", jsonProblem(err))
		}
	}
	profile, err := h.resolveProfile(req.Profile)
	if err != nil {
		return err
	}
	info, err := h.b.Info(r.Context(), Caller{Request: r}, profile)
	if err != nil {
		return err
	}
	if info == nil || info.Issuer == nil {
		return fmt.Errorf("cfsslapi: backend returned no issuer for profile %q", profile)
	}
	writeResult(w, wireInfoResponse{
		// CFSSL trims the trailing newline of the PEM.
		Certificate: string(bytes.TrimSpace(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: info.Issuer.Raw}))),
		Usage:       cfsslUsages(info.Profile.KeyUsage, info.Profile.ExtKeyUsage),
		Expiry:      cfsslDuration(time.Duration(info.Profile.Validity)),
	})
	return nil
}

// cfsslDuration writes a duration the way CFSSL configs usually do
// ("8760h"), falling back to Go's form for fractions of an hour.
func cfsslDuration(d time.Duration) string {
	if d > 0 && d%time.Hour == 0 {
		return fmt.Sprintf("%dh", d/time.Hour)
	}
	return d.String()
}

// wireRevokeRequest is revoke.jsonRevokeRequest.
type wireRevokeRequest struct {
	Serial string `json:"serial"`
	AKI    string `json:"authority_key_id"`
	Reason string `json:"reason"`
}

// maxSerialDigits: a 20-octet serial (RFC 5280 §4.1.2.2) has at most 49
// decimal digits. Checked before parsing so that a huge number costs
// nothing.
const maxSerialDigits = 49

// parseSerial parses a serial the way CFSSL writes it: decimal
// (big.Int.String, as in its certdb and certinfo).
func parseSerial(s string) (*big.Int, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, badRequest(`missing parameter "serial"`)
	}
	if len(s) > maxSerialDigits {
		return nil, badRequest("serial %.20q… is too long: a serial has at most 20 octets (RFC 5280 §4.1.2.2)", s)
	}
	n, ok := new(big.Int).SetString(s, 10)
	if !ok {
		return nil, badRequest("serial %q is not a decimal number (CFSSL sends serials in decimal)", s)
	}
	if n.Sign() <= 0 || len(n.Bytes()) > 20 {
		return nil, badRequest("serial %q must be positive and at most 20 octets (RFC 5280 §4.1.2.2)", s)
	}
	return n, nil
}

// parseKeyID parses an authority key identifier in hex, with or without
// colons, in either case (CFSSL's certinfo normalizes the same way).
func parseKeyID(s string) ([]byte, error) {
	h := strings.ReplaceAll(strings.TrimSpace(s), ":", "")
	if h == "" {
		return nil, nil
	}
	if len(h) > 128 {
		return nil, badRequest("authority_key_id is too long")
	}
	b, err := hex.DecodeString(h)
	if err != nil {
		return nil, badRequest("authority_key_id %q is not hexadecimal", s)
	}
	return b, nil
}

// parseReason accepts what CFSSL's ocsp.ReasonStringToCode accepts: ""
// (unspecified), an RFC 5280 reason name in any case, or its code.
func parseReason(s string) (certdb.Reason, error) {
	if strings.TrimSpace(s) == "" {
		return certdb.ReasonUnspecified, nil
	}
	reason, err := certdb.ParseReason(strings.TrimSpace(s))
	if err != nil {
		return 0, badRequest("invalid reason %q (want one of %s, or its RFC 5280 code)", s, strings.Join(certdb.ReasonNames(), ", "))
	}
	if reason == certdb.ReasonRemoveFromCRL {
		// RFC 5280 §5.3.1: removeFromCRL only appears in delta CRLs.
		return 0, badRequest("reason removeFromCRL cannot be used to revoke (it only appears in delta CRLs, RFC 5280 §5.3.1)")
	}
	return reason, nil
}

func (h *Handler) serveRevoke(w http.ResponseWriter, r *http.Request, body []byte) error {
	var req wireRevokeRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return badRequest("cannot parse the revocation request: %v", jsonProblem(err))
	}
	serial, err := parseSerial(req.Serial)
	if err != nil {
		return err
	}
	aki, err := parseKeyID(req.AKI)
	if err != nil {
		return err
	}
	reason, err := parseReason(req.Reason)
	if err != nil {
		return err
	}
	if err := h.b.Revoke(r.Context(), Caller{Request: r}, &RevokeRequest{Serial: serial, AuthorityKeyID: aki, Reason: reason}); err != nil {
		return err
	}
	writeResult(w, map[string]string{})
	return nil
}

// wireCertInfo is certinfo.Certificate.
type wireCertInfo struct {
	Subject            wireCertName `json:"subject,omitempty"`
	Issuer             wireCertName `json:"issuer,omitempty"`
	SerialNumber       string       `json:"serial_number,omitempty"`
	SANs               []string     `json:"sans,omitempty"`
	NotBefore          time.Time    `json:"not_before"`
	NotAfter           time.Time    `json:"not_after"`
	SignatureAlgorithm string       `json:"sigalg"`
	AKI                string       `json:"authority_key_id"`
	SKI                string       `json:"subject_key_id"`
	RawPEM             string       `json:"pem"`
}

// wireCertName is certinfo.Name.
type wireCertName struct {
	CommonName         string `json:"common_name,omitempty"`
	SerialNumber       string `json:"serial_number,omitempty"`
	Country            string `json:"country,omitempty"`
	Organization       string `json:"organization,omitempty"`
	OrganizationalUnit string `json:"organizational_unit,omitempty"`
	Locality           string `json:"locality,omitempty"`
	Province           string `json:"province,omitempty"`
	StreetAddress      string `json:"street_address,omitempty"`
	PostalCode         string `json:"postal_code,omitempty"`
	Names              []any  `json:"names,omitempty"`
}

func certName(n pkix.Name) wireCertName {
	out := wireCertName{
		CommonName:         n.CommonName,
		SerialNumber:       n.SerialNumber,
		Country:            strings.Join(n.Country, ","),
		Organization:       strings.Join(n.Organization, ","),
		OrganizationalUnit: strings.Join(n.OrganizationalUnit, ","),
		Locality:           strings.Join(n.Locality, ","),
		Province:           strings.Join(n.Province, ","),
		StreetAddress:      strings.Join(n.StreetAddress, ","),
		PostalCode:         strings.Join(n.PostalCode, ","),
	}
	for _, atv := range n.Names {
		out.Names = append(out.Names, atv.Value)
	}
	return out
}

// keyIDString is certinfo's formatKeyID: upper-case hex bytes joined by ":".
func keyIDString(id []byte) string {
	parts := make([]string, len(id))
	for i, b := range id {
		parts[i] = fmt.Sprintf("%02X", b)
	}
	return strings.Join(parts, ":")
}

// sigAlgString is helpers.SignatureString for the algorithms certctl can
// produce or meet.
func sigAlgString(a x509.SignatureAlgorithm) string {
	switch a {
	case x509.SHA1WithRSA:
		return "SHA1WithRSA"
	case x509.SHA256WithRSA:
		return "SHA256WithRSA"
	case x509.SHA384WithRSA:
		return "SHA384WithRSA"
	case x509.SHA512WithRSA:
		return "SHA512WithRSA"
	case x509.ECDSAWithSHA1:
		return "ECDSAWithSHA1"
	case x509.ECDSAWithSHA256:
		return "ECDSAWithSHA256"
	case x509.ECDSAWithSHA384:
		return "ECDSAWithSHA384"
	case x509.ECDSAWithSHA512:
		return "ECDSAWithSHA512"
	case x509.PureEd25519:
		return "Ed25519"
	}
	return "Unknown Signature"
}

func certInfo(c *x509.Certificate) *wireCertInfo {
	out := &wireCertInfo{
		Subject:            certName(c.Subject),
		Issuer:             certName(c.Issuer),
		SerialNumber:       c.SerialNumber.String(),
		NotBefore:          c.NotBefore,
		NotAfter:           c.NotAfter,
		SignatureAlgorithm: sigAlgString(c.SignatureAlgorithm),
		AKI:                keyIDString(c.AuthorityKeyId),
		SKI:                keyIDString(c.SubjectKeyId),
		RawPEM:             string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})),
	}
	out.SANs = append(out.SANs, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		out.SANs = append(out.SANs, ip.String())
	}
	for _, u := range c.URIs {
		out.SANs = append(out.SANs, u.String())
	}
	out.SANs = append(out.SANs, c.EmailAddresses...)
	return out
}

// parseCertificatePEM parses exactly one PEM certificate.
func parseCertificatePEM(s string) (*x509.Certificate, error) {
	block, rest := pem.Decode([]byte(strings.TrimSpace(s)))
	switch {
	case block == nil:
		return nil, badRequest("certificate: no PEM block found")
	case block.Type != "CERTIFICATE":
		return nil, badRequest("certificate: PEM block is %q, want \"CERTIFICATE\"", block.Type)
	case len(bytes.TrimSpace(rest)) != 0:
		return nil, badRequest("certificate: trailing data after the PEM block (send one certificate)")
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, badRequest("certificate: %v", err)
	}
	return c, nil
}

func (h *Handler) serveCertInfo(w http.ResponseWriter, r *http.Request, body []byte) error {
	// CFSSL reads a flat object of strings and takes the first of these
	// parameter sets that is complete.
	var blob map[string]string
	if err := json.Unmarshal(body, &blob); err != nil {
		return badRequest("cannot parse the certinfo request: %v", jsonProblem(err))
	}
	has := func(k string) bool { _, ok := blob[k]; return ok }
	switch {
	case has("certificate"):
		c, err := parseCertificatePEM(blob["certificate"])
		if err != nil {
			return err
		}
		writeResult(w, certInfo(c))
		return nil
	case has("domain"):
		return badRequest(`certinfo by "domain" is not supported: certctl does not connect to hosts named by clients`)
	case has("serial") && has("authority_key_id"):
		serial, err := parseSerial(blob["serial"])
		if err != nil {
			return err
		}
		aki, err := parseKeyID(blob["authority_key_id"])
		if err != nil {
			return err
		}
		c, err := h.b.CertInfo(r.Context(), Caller{Request: r}, serial, aki)
		if err != nil {
			return err
		}
		if c == nil {
			return fmt.Errorf("cfsslapi: backend returned no certificate for serial %s", serial)
		}
		writeResult(w, certInfo(c))
		return nil
	}
	return badRequest(`certinfo needs "certificate", or "serial" and "authority_key_id"`)
}
