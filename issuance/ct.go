package issuance

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Certificate Transparency (RFC 6962): profile settings, the precertificate
// and the final certificate with embedded SCTs. Submitting to logs and
// checking SCT signatures is the job of package ct; this file only builds
// and signs.

// CT failure policies (CTConfig.OnFailure).
const (
	// CTOnFailureFail refuses to issue when the SCT quorum is not met.
	CTOnFailureFail = "fail"
	// CTOnFailureIssueWithoutSCTs issues the certificate without SCTs (the
	// caller logs and audits a warning).
	CTOnFailureIssueWithoutSCTs = "issue_without_scts"
)

// CT limits enforced by NewProfile.
const (
	defaultCTTimeout = 10 * time.Second
	maxCTTimeout     = 2 * time.Minute
	maxCTLogs        = 16
)

var (
	// oidCTPoison is the precertificate poison extension, RFC 6962 §3.1:
	// critical, extnValue an ASN.1 NULL, so that no relying party accepts a
	// precertificate as a certificate.
	oidCTPoison = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 11129, 2, 4, 3}
	// oidCTSCTList is the embedded SCT list extension, RFC 6962 §3.3.
	oidCTSCTList = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 11129, 2, 4, 2}
)

// ctPoisonExt is the poison extension. Its value is asn1.NullBytes (05 00):
// asn1.NullRawValue has no FullBytes, which encodes an empty extnValue that
// logs reject ("CT poison ext is not critical or invalid").
var ctPoisonExt = pkix.Extension{Id: oidCTPoison, Critical: true, Value: asn1.NullBytes}

// CTLogConfig is one CT log in a profile's ct: section.
type CTLogConfig struct {
	// URL is the log's submission prefix: add-pre-chain is URL/ct/v1/add-pre-chain.
	URL string `yaml:"url" json:"url"`
	// PublicKey is the log's public key as a PEM "PUBLIC KEY" block
	// (SubjectPublicKeyInfo). The config file may name a file instead;
	// certctl reads it before NewProfile (this package opens no files).
	PublicKey string `yaml:"public_key" json:"public_key"`
	// Operator is who runs the log; RequireDistinctOperators counts them.
	Operator string `yaml:"operator" json:"operator"`
}

// CTConfig is a profile's ct: section.
type CTConfig struct {
	Logs []CTLogConfig `yaml:"logs" json:"logs"`
	// Require is the number of valid SCTs, from distinct logs, a certificate
	// needs: 1 to len(Logs).
	Require int `yaml:"require" json:"require"`
	// RequireDistinctOperators: the Require SCTs must also come from
	// distinct operators.
	RequireDistinctOperators bool `yaml:"require_distinct_operators,omitempty" json:"require_distinct_operators,omitempty"`
	// OnFailure is what happens when the quorum is not met: "fail"
	// (default) or "issue_without_scts".
	OnFailure string `yaml:"on_failure,omitempty" json:"on_failure,omitempty"`
	// SubmitFinal also submits the final certificate (add-chain).
	SubmitFinal bool `yaml:"submit_final,omitempty" json:"submit_final,omitempty"`
	// Timeout bounds each log submission (default 10s, at most 2m).
	Timeout Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
}

func cloneCTConfig(c *CTConfig) *CTConfig {
	if c == nil {
		return nil
	}
	cc := *c
	cc.Logs = slices.Clone(c.Logs)
	return &cc
}

// CTLog is a validated log of a CTPolicy.
type CTLog struct {
	URL      string
	Operator string
	// PublicKey is the parsed key; PublicKeyDER its SubjectPublicKeyInfo.
	PublicKey    crypto.PublicKey
	PublicKeyDER []byte
	// ID is the RFC 6962 §3.2 log ID: SHA-256 of PublicKeyDER.
	ID [sha256.Size]byte
}

// CTPolicy is a profile's validated CT configuration. Do not modify it.
type CTPolicy struct {
	Logs              []CTLog
	Require           int
	DistinctOperators bool
	IssueWithoutSCTs  bool // the quorum failure policy is issue_without_scts
	SubmitFinal       bool
	Timeout           time.Duration // per log submission
}

// CT returns the profile's CT policy, or nil when the profile does not use
// Certificate Transparency. The result is shared: do not modify it.
func (p *Profile) CT() *CTPolicy { return p.ct }

func compileCT(c *CTConfig, bad func(field, format string, args ...any) error) (*CTPolicy, error) {
	pol := &CTPolicy{
		Require:           c.Require,
		DistinctOperators: c.RequireDistinctOperators,
		SubmitFinal:       c.SubmitFinal,
		Timeout:           time.Duration(c.Timeout),
	}
	if len(c.Logs) == 0 {
		return nil, bad("ct.logs", "must list at least one log")
	}
	if len(c.Logs) > maxCTLogs {
		return nil, bad("ct.logs", "%d logs: at most %d", len(c.Logs), maxCTLogs)
	}
	operators := map[string]bool{}
	for j, l := range c.Logs {
		field := fmt.Sprintf("ct.logs[%d]", j)
		u, err := url.Parse(l.URL)
		if err != nil || !u.IsAbs() || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" ||
			(u.Scheme != "http" && u.Scheme != "https") {
			return nil, bad(field+".url", "%q is not an absolute http or https URL without query (the log's submission prefix)", l.URL)
		}
		if strings.TrimSpace(l.Operator) == "" {
			return nil, bad(field+".operator", "must name who runs the log")
		}
		pub, der, err := parseLogKey(l.PublicKey)
		if err != nil {
			return nil, bad(field+".public_key", "%v", err)
		}
		log := CTLog{
			URL:          strings.TrimSuffix(l.URL, "/"),
			Operator:     l.Operator,
			PublicKey:    pub,
			PublicKeyDER: der,
			ID:           sha256.Sum256(der),
		}
		for _, o := range pol.Logs {
			if o.ID == log.ID {
				return nil, bad(field+".public_key", "is the key of another log (%s): each log counts once", o.URL)
			}
		}
		operators[l.Operator] = true
		pol.Logs = append(pol.Logs, log)
	}
	if c.Require < 1 || c.Require > len(c.Logs) {
		return nil, bad("ct.require", "%d must be between 1 and the number of logs (%d)", c.Require, len(c.Logs))
	}
	if c.RequireDistinctOperators && len(operators) < c.Require {
		return nil, bad("ct.require_distinct_operators", "require is %d but the logs have only %d distinct operators", c.Require, len(operators))
	}
	switch c.OnFailure {
	case "", CTOnFailureFail:
		c.OnFailure = CTOnFailureFail
	case CTOnFailureIssueWithoutSCTs:
		pol.IssueWithoutSCTs = true
	default:
		return nil, bad("ct.on_failure", "%q: want %s or %s", c.OnFailure, CTOnFailureFail, CTOnFailureIssueWithoutSCTs)
	}
	switch {
	case pol.Timeout == 0:
		pol.Timeout = defaultCTTimeout
		c.Timeout = Duration(defaultCTTimeout)
	case pol.Timeout > maxCTTimeout:
		return nil, bad("ct.timeout", "%s exceeds the limit of %s", c.Timeout, Duration(maxCTTimeout))
	}
	return pol, nil
}

// parseLogKey parses a PEM public key. RFC 6962 §2.1.4: logs sign with
// ECDSA P-256 or RSA (we ask for at least 2048 bits).
func parseLogKey(s string) (crypto.PublicKey, []byte, error) {
	blk, rest := pem.Decode([]byte(strings.TrimSpace(s)))
	if blk == nil || blk.Type != "PUBLIC KEY" {
		return nil, nil, errors.New(`want a PEM "PUBLIC KEY" block (or a file holding one)`)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, nil, errors.New("trailing data after the PEM block")
	}
	pub, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("cannot parse the public key: %v", err)
	}
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return nil, nil, errors.New("ECDSA log keys must use P-256 (RFC 6962 §2.1.4)")
		}
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return nil, nil, fmt.Errorf("RSA log key of %d bits: at least 2048", k.N.BitLen())
		}
	default:
		return nil, nil, fmt.Errorf("%T is not a CT log key type (ECDSA P-256 or RSA)", pub)
	}
	return pub, slices.Clone(blk.Bytes), nil
}

// Token states for CT tokens.
const (
	tokenFresh       = 0
	tokenPrecertBusy = 1 // IssuePrecert is signing (or failed): the token is spent
	tokenPrecertDone = 2 // preTBS is set
	tokenFinalDone   = 3
)

// CT reports whether the token's profile uses Certificate Transparency:
// redeem it with IssuePrecert and then IssueFinal instead of Issue.
func (t *Token) CT() bool { return t.ct }

// IssuePrecert signs the RFC 6962 precertificate of a token prepared under a
// profile with CT: exactly the certificate Prepare linted, which carries the
// critical poison extension. Record it before submitting it to logs, then
// call IssueFinal. It can be called once per token.
func (i *Issuer) IssuePrecert(t *Token) (preDER []byte, err error) {
	if err := i.checkToken(t); err != nil {
		return nil, err
	}
	serial := t.template.SerialNumber
	if !t.ct {
		return nil, fmt.Errorf("issuance: precertificate serial %x: the profile does not use CT; call Issue", serial)
	}
	if !t.state.CompareAndSwap(tokenFresh, tokenPrecertBusy) {
		return nil, fmt.Errorf("%w (serial %x)", ErrTokenUsed, serial)
	}
	preDER, pre, err := i.sign(t.template, t.pub, i.cert, i.signer)
	if err != nil {
		return nil, fmt.Errorf("issuance: precertificate serial %x: %w", serial, err)
	}
	if !bytes.Equal(pre.RawTBSCertificate, t.lintTBS) {
		return nil, fmt.Errorf("issuance: precertificate serial %x: signed TBSCertificate differs from the linted one; discarded", serial)
	}
	t.preTBS = pre
	t.state.Store(tokenPrecertDone) // publishes preTBS to IssueFinal's CompareAndSwap
	return preDER, nil
}

// IssueFinal signs the final certificate of a CT token after IssuePrecert:
// the precertificate's TBSCertificate with the poison extension replaced, at
// the same position, by the SCT list extension (RFC 6962 §3.3) holding
// sctList, the TLS-encoded SignedCertificateTimestampList. A nil sctList
// removes the poison instead (issuance without SCTs). Like Prepare, it lints
// a throwaway-signed copy first (a *LintError) and then signs exactly that
// TBS; it refuses a result that differs from the precertificate in anything
// but that extension.
func (i *Issuer) IssueFinal(t *Token, sctList []byte) (der []byte, err error) {
	if err := i.checkToken(t); err != nil {
		return nil, err
	}
	serial := t.template.SerialNumber
	if !t.ct {
		return nil, fmt.Errorf("issuance: final certificate serial %x: the profile does not use CT; call Issue", serial)
	}
	if sctList != nil && (len(sctList) < 2 || len(sctList) > 0xffff+2) {
		return nil, fmt.Errorf("issuance: final certificate serial %x: SCT list of %d bytes is not a TLS-encoded list", serial, len(sctList))
	}
	if !t.state.CompareAndSwap(tokenPrecertDone, tokenFinalDone) {
		if t.state.Load() == tokenFresh {
			return nil, fmt.Errorf("issuance: final certificate serial %x: call IssuePrecert first", serial)
		}
		return nil, fmt.Errorf("%w (serial %x)", ErrTokenUsed, serial)
	}
	tmpl := *t.template // shallow copy; only ExtraExtensions changes
	tmpl.ExtraExtensions = nil
	replaced := false
	for _, e := range t.template.ExtraExtensions {
		if e.Id.Equal(oidCTPoison) {
			replaced = true
			if sctList == nil {
				continue
			}
			v, err := asn1.Marshal(sctList) // OCTET STRING around the TLS-encoded list
			if err != nil {
				return nil, fmt.Errorf("issuance: final certificate serial %x: %v", serial, err)
			}
			e = pkix.Extension{Id: oidCTSCTList, Value: v}
		}
		tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, e)
	}
	if !replaced {
		return nil, fmt.Errorf("issuance: final certificate serial %x: template has no poison extension", serial)
	}
	// Lint the final certificate too (lint-then-sign, as Prepare).
	lintDER, lintCert, err := i.sign(&tmpl, t.pub, i.lintParent, i.lintKey)
	if err != nil {
		return nil, fmt.Errorf("issuance: final certificate serial %x: lint copy: %w", serial, err)
	}
	if err := lintCertificate(i.lints, lintDER); err != nil {
		return nil, err
	}
	der, cert, err := i.sign(&tmpl, t.pub, i.cert, i.signer)
	if err != nil {
		return nil, fmt.Errorf("issuance: final certificate serial %x: %w", serial, err)
	}
	if !bytes.Equal(cert.RawTBSCertificate, lintCert.RawTBSCertificate) {
		return nil, fmt.Errorf("issuance: final certificate serial %x: signed TBSCertificate differs from the linted one; discarded", serial)
	}
	if err := SamePrecertTBS(t.preTBS, cert); err != nil {
		return nil, fmt.Errorf("issuance: final certificate serial %x: %w; discarded", serial, err)
	}
	return der, nil
}

func (i *Issuer) checkToken(t *Token) error {
	if t == nil || t.template == nil {
		return errors.New("issuance: token not made by Prepare")
	}
	if t.issuer != i {
		return fmt.Errorf("%w (serial %x)", ErrWrongIssuer, t.template.SerialNumber)
	}
	return nil
}

func (i *Issuer) sign(tmpl *x509.Certificate, pub crypto.PublicKey, parent *x509.Certificate, key crypto.Signer) ([]byte, *x509.Certificate, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		return nil, nil, fmt.Errorf("sign: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("parse signed certificate: %w", err)
	}
	return der, cert, nil
}

// SamePrecertTBS checks that final is the certificate RFC 6962 §3.1 allows
// for precertificate pre: every TBSCertificate field equal, and the same
// extensions in the same order, except that the poison extension is
// replaced by the SCT list extension at the same position (or removed).
func SamePrecertTBS(pre, final *x509.Certificate) error {
	if pre == nil || final == nil {
		return errors.New("no precertificate")
	}
	switch {
	case pre.Version != final.Version,
		pre.SerialNumber.Cmp(final.SerialNumber) != 0,
		pre.SignatureAlgorithm != final.SignatureAlgorithm,
		!bytes.Equal(pre.RawIssuer, final.RawIssuer),
		!bytes.Equal(pre.RawSubject, final.RawSubject),
		!pre.NotBefore.Equal(final.NotBefore),
		!pre.NotAfter.Equal(final.NotAfter),
		!bytes.Equal(pre.RawSubjectPublicKeyInfo, final.RawSubjectPublicKeyInfo):
		return errors.New("final certificate differs from the precertificate outside the extensions")
	}
	pe, fe := pre.Extensions, final.Extensions
	k := slices.IndexFunc(pe, func(e pkix.Extension) bool { return e.Id.Equal(oidCTPoison) })
	if k < 0 {
		return errors.New("precertificate has no poison extension")
	}
	if slices.ContainsFunc(fe, func(e pkix.Extension) bool { return e.Id.Equal(oidCTPoison) }) {
		return errors.New("final certificate carries the poison extension")
	}
	switch len(fe) {
	case len(pe):
		if !fe[k].Id.Equal(oidCTSCTList) || fe[k].Critical {
			return fmt.Errorf("extension %d: the poison must be replaced by a non-critical SCT list", k)
		}
		pe = slices.Delete(slices.Clone(pe), k, k+1)
		fe = slices.Delete(slices.Clone(fe), k, k+1)
	case len(pe) - 1:
		pe = slices.Delete(slices.Clone(pe), k, k+1)
	default:
		return errors.New("final certificate has other extensions than the precertificate")
	}
	for j := range pe {
		if !pe[j].Id.Equal(fe[j].Id) || pe[j].Critical != fe[j].Critical || !bytes.Equal(pe[j].Value, fe[j].Value) {
			return fmt.Errorf("extension %v differs from the precertificate's", fe[j].Id)
		}
	}
	return nil
}
