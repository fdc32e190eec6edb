package ca

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"slices"

	"github.com/certctl/certctl/certdb"
	"github.com/certctl/certctl/ct"
	"github.com/certctl/certctl/issuance"
)

// Certificate Transparency (RFC 6962) in the issuance workflow, for profiles
// with a ct: section:
//
//  1. IssuePrecert signs the precertificate (the linted TBS, with the poison
//     extension) and AddPrecertificate records it: no log sees a
//     precertificate that is not in certdb.
//  2. The precertificate is submitted to every log in parallel; every SCT
//     is verified against its log's key; the quorum is checked.
//  3. IssueFinal lints and signs the final certificate with the SCT list in
//     place of the poison. Without a quorum the profile either fails
//     (ErrCT) or issues without SCTs, logged and audited.
//  4. Issue stores the certificate and its SCTs; with submit_final the
//     certificate itself is then submitted too (failures are only logged).

// AuditActionCTNoSCTs is the audit action recorded when a certificate is
// issued without SCTs because the quorum was not met.
const AuditActionCTNoSCTs = "ct.issued_without_scts"

// auditStore is the optional store capability for audit events.
type auditStore interface {
	AppendAudit(ctx context.Context, e *certdb.AuditEvent) error
}

func (c *CA) setupCT() error {
	for name, p := range c.profiles {
		pol := p.CT()
		if pol == nil {
			continue
		}
		if _, ok := c.store.(certdb.SCTStore); !ok {
			return fmt.Errorf("ca: profile %q uses CT but the store (%T) cannot record precertificates and SCTs", name, c.store)
		}
		opts := append([]ct.Option{ct.WithLogger(c.cfg.log), ct.WithClock(c.cfg.now)}, c.cfg.ctOp...)
		sub, err := ct.NewSubmitter(pol, opts...)
		if err != nil {
			return fmt.Errorf("ca: profile %q: %w", name, err)
		}
		if c.ct == nil {
			c.ct = map[string]*ct.Submitter{}
		}
		c.ct[name] = sub
	}
	return nil
}

// issueCT runs steps 1-3 for a reserved token and returns the final DER and
// the SCT records to store with it.
func (c *CA) issueCT(ctx context.Context, req Request, tok *issuance.Token) ([]byte, []*certdb.SCT, error) {
	serial := tok.Serial()
	hex := certdb.SerialHex(serial)
	sub := c.ct[req.Profile]
	if sub == nil { // cannot happen: tok.CT() means the profile has a policy
		return nil, nil, fmt.Errorf("ca: serial %s: profile %q has no CT submitter", hex, req.Profile)
	}
	preDER, err := c.issuer.IssuePrecert(tok)
	if err != nil {
		return nil, nil, fmt.Errorf("ca: sign precertificate %s: %w", hex, err)
	}
	if err := c.store.(certdb.SCTStore).AddPrecertificate(ctx, serial, preDER); err != nil {
		return nil, nil, fmt.Errorf("%w: record precertificate %s: %w", ErrStore, hex, err)
	}
	res, err := sub.SubmitPrecert(ctx, preDER, c.issuer.Cert().Raw)
	if err != nil {
		return nil, nil, fmt.Errorf("ca: serial %s: %w", hex, err)
	}
	if err := ctx.Err(); err != nil {
		// The caller went away: the missing SCTs are not the logs' fault,
		// so do not fall back to issuing without them.
		return nil, nil, fmt.Errorf("ca: serial %s: CT submission: %w", hex, err)
	}
	for _, f := range res.Failures {
		c.cfg.log.WarnContext(ctx, "CT log gave no valid SCT", "serial", hex, "profile", req.Profile,
			"log", f.URL, "operator", f.Operator, "err", f.Err)
	}
	var sctList []byte
	var recs []*certdb.SCT
	if qerr := res.Quorum(); qerr != nil {
		if !sub.Policy().IssueWithoutSCTs {
			return nil, nil, fmt.Errorf("%w: serial %s (profile %q): %w", ErrCT, hex, req.Profile, qerr)
		}
		c.cfg.log.WarnContext(ctx, "issuing without SCTs: CT quorum not met (profile on_failure: issue_without_scts)",
			"serial", hex, "profile", req.Profile, "err", qerr)
		c.audit(ctx, &certdb.AuditEvent{
			Actor: req.Requester, Action: AuditActionCTNoSCTs, Target: hex, Outcome: "warning",
			Detail: fmt.Sprintf("profile %s: %v", req.Profile, qerr),
		})
	} else {
		sctList, err = ct.MarshalSCTList(res.SCTs)
		if err != nil {
			return nil, nil, fmt.Errorf("ca: serial %s: %w", hex, err)
		}
		recs, err = sctRecords(serial, res.SCTs, true)
		if err != nil {
			return nil, nil, fmt.Errorf("ca: serial %s: %w", hex, err)
		}
	}
	der, err := c.issuer.IssueFinal(tok, sctList)
	if err != nil {
		return nil, nil, fmt.Errorf("ca: sign serial %s: %w", hex, err)
	}
	return der, recs, nil
}

// submitFinal submits an issued, stored certificate to the logs when the
// profile asks for it, and stores the SCTs it gets. Failures are logged:
// the certificate is already issued.
func (c *CA) submitFinal(ctx context.Context, profile string, serial *big.Int, der []byte) {
	sub := c.ct[profile]
	if sub == nil || !sub.Policy().SubmitFinal {
		return
	}
	hex := certdb.SerialHex(serial)
	res, err := sub.SubmitFinal(ctx, der, c.issuer.Cert().Raw)
	if err != nil {
		c.cfg.log.WarnContext(ctx, "CT: final certificate not submitted", "serial", hex, "err", err)
		return
	}
	for _, f := range res.Failures {
		c.cfg.log.WarnContext(ctx, "CT log did not accept the final certificate", "serial", hex, "log", f.URL, "err", f.Err)
	}
	recs, err := sctRecords(serial, res.SCTs, false)
	if err == nil && len(recs) > 0 {
		err = c.store.(certdb.SCTStore).AddSCTs(context.WithoutCancel(ctx), recs)
	}
	if err != nil {
		c.cfg.log.WarnContext(ctx, "CT: SCTs for the final certificate not stored", "serial", hex, "err", err)
	}
}

func (c *CA) audit(ctx context.Context, e *certdb.AuditEvent) {
	as, ok := c.store.(auditStore)
	if !ok {
		return // the warning is logged by the caller
	}
	if err := as.AppendAudit(context.WithoutCancel(ctx), e); err != nil {
		c.cfg.log.ErrorContext(ctx, "audit event not recorded", "action", e.Action, "target", e.Target, "err", err)
	}
}

// sctRecords converts verified SCTs into certdb records.
func sctRecords(serial *big.Int, scts []*ct.SCT, embedded bool) ([]*certdb.SCT, error) {
	out := make([]*certdb.SCT, 0, len(scts))
	for _, s := range scts {
		sig, err := s.Signature()
		if err != nil {
			return nil, err
		}
		if s.SCT == nil {
			return nil, errors.New("nil SCT")
		}
		out = append(out, &certdb.SCT{
			Serial:     new(big.Int).Set(serial),
			LogID:      slices.Clone(s.Log.ID[:]),
			LogURL:     s.Log.URL,
			Operator:   s.Log.Operator,
			Version:    int(s.SCT.SCTVersion),
			Timestamp:  s.Timestamp(),
			Extensions: slices.Clone([]byte(s.SCT.Extensions)),
			Signature:  sig,
			Embedded:   embedded,
		})
	}
	return out, nil
}
