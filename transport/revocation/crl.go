package revocation

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"slices"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// crlData is a verified CRL, reduced to what checks need.
type crlData struct {
	revoked map[string]revokedEntry // key: serial.Bytes()
	idp     *idp                    // nil: no Issuing Distribution Point
}

type revokedEntry struct {
	at     time.Time
	reason int
}

var (
	oidAuthorityKeyID  = asn1.ObjectIdentifier{2, 5, 29, 35}
	oidCRLNumber       = asn1.ObjectIdentifier{2, 5, 29, 20}
	oidDeltaCRL        = asn1.ObjectIdentifier{2, 5, 29, 27}
	oidIDP             = asn1.ObjectIdentifier{2, 5, 29, 28}
	oidFreshestCRL     = asn1.ObjectIdentifier{2, 5, 29, 46}
	oidAuthorityInfo   = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 1}
	oidReasonCode      = asn1.ObjectIdentifier{2, 5, 29, 21}
	oidInvalidityDate  = asn1.ObjectIdentifier{2, 5, 29, 24}
	oidCertIssuerEntry = asn1.ObjectIdentifier{2, 5, 29, 29}
)

// checkCRL looks leaf up in the CRL at u (issued by issuer), through the cache.
func (c *Checker) checkCRL(ctx context.Context, u string, leaf, issuer *x509.Certificate) (*answer, bool, error) {
	key := "crl|" + u + "|" + issuerID(issuer)
	d, cached, err := fetch(ctx, c, c.crls, key, func(ctx context.Context) (*crlData, time.Time, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return nil, time.Time{}, fmt.Errorf("build request: %w", err)
		}
		body, err := c.do(req, c.cfg.maxCRL, "application/pkix-crl")
		if err != nil {
			return nil, time.Time{}, err
		}
		return verifyCRL(body, issuer, c.cfg.now(), c.cfg.skew)
	})
	if err != nil {
		return nil, cached, err
	}
	if err := d.covers(leaf); err != nil {
		return nil, cached, err
	}
	e, ok := d.revoked[serialKey(leaf.SerialNumber)]
	if !ok {
		return &answer{}, cached, nil
	}
	return &answer{revoked: true, revokedAt: e.at, reason: e.reason}, cached, nil
}

// verifyCRL parses a DER CRL and checks it as RFC 5280 §6.3.3 asks of a
// complete CRL for certificates of issuer: signed by issuer, issuer name
// and key identifier match, current at now (within skew), no delta CRL
// indicator, no unrecognised critical extension (§5.2), no indirect
// entries. It returns the CRL's entries and its nextUpdate (the cache
// expiry; zero if it has none).
func verifyCRL(der []byte, issuer *x509.Certificate, now time.Time, skew time.Duration) (*crlData, time.Time, error) {
	rl, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("%w: parse CRL: %v", ErrInvalidResponse, err)
	}
	if !bytes.Equal(rl.RawIssuer, issuer.RawSubject) {
		return nil, time.Time{}, fmt.Errorf("%w: CRL issuer %q is not the certificate's issuer %q", ErrInvalidResponse, rl.Issuer.String(), issuer.Subject.String())
	}
	if len(rl.AuthorityKeyId) > 0 && len(issuer.SubjectKeyId) > 0 && !bytes.Equal(rl.AuthorityKeyId, issuer.SubjectKeyId) {
		return nil, time.Time{}, fmt.Errorf("%w: CRL authority key identifier %x is not the issuer's %x", ErrInvalidResponse, rl.AuthorityKeyId, issuer.SubjectKeyId)
	}
	if err := rl.CheckSignatureFrom(issuer); err != nil {
		return nil, time.Time{}, fmt.Errorf("%w: CRL signature does not verify with the issuer's key: %v", ErrInvalidResponse, err)
	}
	if rl.ThisUpdate.After(now.Add(skew)) {
		return nil, time.Time{}, fmt.Errorf("%w: CRL not valid before %s (thisUpdate)", ErrInvalidResponse, rl.ThisUpdate.UTC().Format(time.RFC3339))
	}
	if !rl.NextUpdate.IsZero() && !now.Before(rl.NextUpdate.Add(skew)) {
		return nil, time.Time{}, fmt.Errorf("%w: CRL expired at %s (nextUpdate)", ErrInvalidResponse, rl.NextUpdate.UTC().Format(time.RFC3339))
	}
	d := &crlData{revoked: make(map[string]revokedEntry, len(rl.RevokedCertificateEntries))}
	for _, ext := range rl.Extensions {
		switch {
		case ext.Id.Equal(oidIDP):
			p, err := parseIDP(ext.Value)
			if err != nil {
				return nil, time.Time{}, fmt.Errorf("%w: %v", ErrInvalidResponse, err)
			}
			d.idp = p
		case ext.Id.Equal(oidDeltaCRL):
			return nil, time.Time{}, fmt.Errorf("%w: a delta CRL is not a complete CRL (not supported)", ErrInvalidResponse)
		case ext.Id.Equal(oidAuthorityKeyID), ext.Id.Equal(oidCRLNumber), ext.Id.Equal(oidFreshestCRL), ext.Id.Equal(oidAuthorityInfo):
		case ext.Critical:
			return nil, time.Time{}, fmt.Errorf("%w: CRL has an unrecognised critical extension %s (RFC 5280 §5.2)", ErrInvalidResponse, ext.Id)
		}
	}
	for _, e := range rl.RevokedCertificateEntries {
		for _, ext := range e.Extensions {
			switch {
			case ext.Id.Equal(oidReasonCode), ext.Id.Equal(oidInvalidityDate):
			case ext.Id.Equal(oidCertIssuerEntry):
				return nil, time.Time{}, fmt.Errorf("%w: indirect CRL entries (certificateIssuer) are not supported", ErrInvalidResponse)
			case ext.Critical:
				return nil, time.Time{}, fmt.Errorf("%w: CRL entry %x has an unrecognised critical extension %s", ErrInvalidResponse, e.SerialNumber, ext.Id)
			}
		}
		if e.SerialNumber == nil {
			continue
		}
		d.revoked[serialKey(e.SerialNumber)] = revokedEntry{at: e.RevocationTime, reason: e.ReasonCode}
	}
	return d, rl.NextUpdate, nil
}

// covers checks that the CRL's scope includes leaf (RFC 5280 §6.3.3 (b)):
// without an Issuing Distribution Point a CRL covers every certificate of
// its issuer; with one, its distribution point must be one of leaf's CRL
// distribution points and its scope flags must include leaf.
func (d *crlData) covers(leaf *x509.Certificate) error {
	p := d.idp
	if p == nil {
		return nil
	}
	switch {
	case p.indirect:
		return fmt.Errorf("%w: indirect CRLs are not supported", ErrInvalidResponse)
	case p.onlySomeReasons:
		return fmt.Errorf("%w: CRL covers only some reasons (onlySomeReasons is not supported)", ErrInvalidResponse)
	case p.onlyAttributeCerts:
		return fmt.Errorf("%w: CRL covers only attribute certificates", ErrInvalidResponse)
	case p.onlyUserCerts && leaf.IsCA:
		return fmt.Errorf("%w: CRL covers only end-entity certificates and this one is a CA", ErrInvalidResponse)
	case p.onlyCACerts && !leaf.IsCA:
		return fmt.Errorf("%w: CRL covers only CA certificates and this one is an end entity", ErrInvalidResponse)
	case p.relativeName:
		return fmt.Errorf("%w: CRL distribution point given relative to the CRL issuer (not supported)", ErrInvalidResponse)
	}
	if p.hasName {
		for _, u := range p.uris {
			if slices.Contains(leaf.CRLDistributionPoints, u) {
				return nil
			}
		}
		return fmt.Errorf("%w: CRL's issuing distribution point %q is not among the certificate's CRL distribution points %q (another shard's CRL?)",
			ErrInvalidResponse, p.uris, leaf.CRLDistributionPoints)
	}
	return nil
}

// idp is the part of an RFC 5280 §5.2.5 IssuingDistributionPoint that
// scope checks need.
type idp struct {
	hasName            bool     // distributionPoint is present
	uris               []string // its fullName's uniformResourceIdentifiers
	relativeName       bool     // nameRelativeToCRLIssuer instead of fullName
	onlyUserCerts      bool
	onlyCACerts        bool
	onlySomeReasons    bool
	indirect           bool
	onlyAttributeCerts bool
}

var errIDP = errors.New("revocation: malformed issuing distribution point extension")

// parseIDP parses the DER value of an IssuingDistributionPoint:
//
//	IssuingDistributionPoint ::= SEQUENCE {
//	     distributionPoint          [0] DistributionPointName OPTIONAL,
//	     onlyContainsUserCerts      [1] BOOLEAN DEFAULT FALSE,
//	     onlyContainsCACerts        [2] BOOLEAN DEFAULT FALSE,
//	     onlySomeReasons            [3] ReasonFlags OPTIONAL,
//	     indirectCRL                [4] BOOLEAN DEFAULT FALSE,
//	     onlyContainsAttributeCerts [5] BOOLEAN DEFAULT FALSE }
//	DistributionPointName ::= CHOICE {
//	     fullName                [0] GeneralNames,
//	     nameRelativeToCRLIssuer [1] RelativeDistinguishedName }
//
// (implicit tags; DistributionPointName, a CHOICE, is explicitly tagged).
// GeneralNames other than URIs are skipped.
func parseIDP(der []byte) (*idp, error) {
	in := cryptobyte.String(der)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() {
		return nil, errIDP
	}
	var p idp
	if seq.PeekASN1Tag(cbasn1.Tag(0).Constructed().ContextSpecific()) {
		var dpn cryptobyte.String
		if !seq.ReadASN1(&dpn, cbasn1.Tag(0).Constructed().ContextSpecific()) {
			return nil, errIDP
		}
		p.hasName = true
		var names cryptobyte.String
		switch {
		case dpn.PeekASN1Tag(cbasn1.Tag(0).Constructed().ContextSpecific()):
			if !dpn.ReadASN1(&names, cbasn1.Tag(0).Constructed().ContextSpecific()) {
				return nil, errIDP
			}
			if names.Empty() {
				return nil, fmt.Errorf("%w: empty fullName", errIDP)
			}
			for !names.Empty() {
				var v cryptobyte.String
				var tag cbasn1.Tag
				if !names.ReadAnyASN1(&v, &tag) {
					return nil, errIDP
				}
				if tag == cbasn1.Tag(6).ContextSpecific() {
					p.uris = append(p.uris, string(v))
				}
			}
		case dpn.PeekASN1Tag(cbasn1.Tag(1).Constructed().ContextSpecific()):
			if !dpn.ReadASN1(&names, cbasn1.Tag(1).Constructed().ContextSpecific()) {
				return nil, errIDP
			}
			p.relativeName = true
		default:
			return nil, fmt.Errorf("%w: bad distributionPoint name", errIDP)
		}
		if !dpn.Empty() {
			return nil, fmt.Errorf("%w: trailing data in distributionPoint", errIDP)
		}
	}
	for _, f := range []struct {
		tag int
		dst *bool
	}{{1, &p.onlyUserCerts}, {2, &p.onlyCACerts}, {3, &p.onlySomeReasons}, {4, &p.indirect}, {5, &p.onlyAttributeCerts}} {
		t := cbasn1.Tag(f.tag).ContextSpecific()
		if !seq.PeekASN1Tag(t) {
			continue
		}
		var v cryptobyte.String
		if !seq.ReadASN1(&v, t) {
			return nil, errIDP
		}
		if f.tag == 3 { // ReasonFlags BIT STRING: present means "only some"
			*f.dst = true
			continue
		}
		if len(v) != 1 || (v[0] != 0 && v[0] != 0xff) {
			return nil, fmt.Errorf("%w: bad BOOLEAN [%d]", errIDP, f.tag)
		}
		*f.dst = v[0] == 0xff
	}
	if !seq.Empty() {
		return nil, fmt.Errorf("%w: trailing data", errIDP)
	}
	return &p, nil
}

// serialKey is the map key of a serial number.
func serialKey(n *big.Int) string { return string(n.Bytes()) }
