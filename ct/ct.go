// Package ct submits precertificates and certificates to Certificate
// Transparency logs (RFC 6962), checks the SCTs they return, and encodes,
// parses and verifies SCT lists.
//
// A [Submitter] serves one profile's [issuance.CTPolicy]: SubmitPrecert sends
// [precertificate, issuer] to every log in parallel, each under the policy's
// timeout, verifies each SCT's signature against the log's key and reports
// whether the quorum is met ([Result.Quorum]). [MarshalSCTList] builds the
// extension value [issuance.Issuer.IssueFinal] embeds; [VerifyEmbedded]
// checks the SCTs of an issued certificate.
//
// The package parses untrusted bytes (log responses, SCT lists in
// certificates) only through certificate-transparency-go and checks every
// signature with its x509 fork, which understands precertificates.
package ct

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	ctgo "github.com/google/certificate-transparency-go"
	"github.com/google/certificate-transparency-go/client"
	"github.com/google/certificate-transparency-go/ctutil"
	"github.com/google/certificate-transparency-go/jsonclient"
	cttls "github.com/google/certificate-transparency-go/tls"
	ctx509 "github.com/google/certificate-transparency-go/x509"
	"github.com/google/certificate-transparency-go/x509util"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/certctl/certctl/issuance"
)

// Sentinel errors.
var (
	// ErrBadSCT: a log returned an SCT whose signature does not verify
	// against the log's configured key (or that names another log).
	ErrBadSCT = errors.New("ct: invalid SCT")
	// ErrQuorum: fewer valid SCTs (from distinct logs, or operators) than the
	// policy requires. The error is a *QuorumError.
	ErrQuorum = errors.New("ct: SCT quorum not met")
	// ErrUnknownLog: an embedded SCT names a log that is not configured.
	ErrUnknownLog = errors.New("ct: SCT from an unknown log")
)

// LogError is one log's failure to give a valid SCT.
type LogError struct {
	URL, Operator string
	Err           error
}

func (e *LogError) Error() string { return fmt.Sprintf("log %s (%s): %v", e.URL, e.Operator, e.Err) }

// Unwrap returns the cause.
func (e *LogError) Unwrap() error { return e.Err }

// QuorumError reports a quorum that was not met: the policy needed Need
// SCTs from distinct logs (and operators, if DistinctOperators) and Got
// qualified. It unwraps to ErrQuorum only: the logs' errors (timeouts among
// them) are in Failures, so that a log's timeout is not mistaken for the
// caller's.
type QuorumError struct {
	Need, Got         int
	DistinctOperators bool
	Failures          []*LogError
}

func (e *QuorumError) Error() string {
	what := "distinct logs"
	if e.DistinctOperators {
		what = "distinct log operators"
	}
	s := fmt.Sprintf("%v: %d of %d required SCTs from %s", ErrQuorum, e.Got, e.Need, what)
	for i, f := range e.Failures {
		if i == 0 {
			s += ": "
		} else {
			s += "; "
		}
		s += f.Error()
	}
	return s
}

// Unwrap returns ErrQuorum.
func (e *QuorumError) Unwrap() error { return ErrQuorum }

// FailedWith reports whether a log failed with an error matching target
// (errors.Is), e.g. ErrBadSCT or context.DeadlineExceeded.
func (e *QuorumError) FailedWith(target error) bool {
	for _, f := range e.Failures {
		if errors.Is(f, target) {
			return true
		}
	}
	return false
}

// SCT is a verified SCT and the log that issued it.
type SCT struct {
	Log issuance.CTLog
	SCT *ctgo.SignedCertificateTimestamp
}

// Timestamp returns the SCT's timestamp (RFC 6962: milliseconds since the
// epoch).
func (s *SCT) Timestamp() time.Time { return time.UnixMilli(int64(s.SCT.Timestamp)).UTC() }

// Signature returns the TLS-encoded DigitallySigned of the SCT.
func (s *SCT) Signature() ([]byte, error) { return cttls.Marshal(s.SCT.Signature) }

// Result is the outcome of a submission to every log of a policy.
type Result struct {
	// SCTs are the valid SCTs, in the policy's log order.
	SCTs []*SCT
	// Failures are the logs that gave no valid SCT, in the policy's log order.
	Failures []*LogError

	need              int
	distinctOperators bool
}

// Quorum returns nil when the valid SCTs satisfy the policy, else a
// *QuorumError.
func (r *Result) Quorum() error {
	got := len(r.SCTs) // one SCT per log: the logs are distinct by key
	if r.distinctOperators {
		ops := map[string]bool{}
		for _, s := range r.SCTs {
			ops[s.Log.Operator] = true
		}
		got = len(ops)
	}
	if got >= r.need {
		return nil
	}
	return &QuorumError{Need: r.need, Got: got, DistinctOperators: r.distinctOperators, Failures: slices.Clone(r.Failures)}
}

// Submitter submits to the logs of one CT policy. It is safe for concurrent
// use and never changes after NewSubmitter.
type Submitter struct {
	pol     *issuance.CTPolicy
	logs    []*logClient
	log     *slog.Logger
	now     func() time.Time
	metrics *Metrics // nil: not counted
}

type logClient struct {
	cfg issuance.CTLog
	c   *client.LogClient
}

type config struct {
	hc      *http.Client
	log     *slog.Logger
	now     func() time.Time
	metrics *Metrics
}

// Option configures NewSubmitter.
type Option func(*config)

// WithHTTPClient sets the HTTP client for the logs (default: a client of its
// own; the policy's timeout bounds each submission).
func WithHTTPClient(hc *http.Client) Option { return func(c *config) { c.hc = hc } }

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.log = l } }

// WithClock sets the clock that SCT timestamps are checked against (default
// time.Now).
func WithClock(now func() time.Time) Option { return func(c *config) { c.now = now } }

// WithMetrics counts every submission in m (default: not counted).
func WithMetrics(m *Metrics) Option { return func(c *config) { c.metrics = m } }

// Metrics are the Prometheus metrics of CT submissions, one set shared by
// every Submitter of a process (one per profile):
//
//	certctl_ct_submissions_total{log, kind, outcome}
//	certctl_ct_submission_duration_seconds{log, kind}
//
// kind is precert or final; outcome is ok, bad_sct (the log answered with
// an SCT that does not verify), timeout (no answer within the policy's
// timeout) or error. It is safe for concurrent use.
type Metrics struct {
	submissions *prometheus.CounterVec
	duration    *prometheus.HistogramVec
}

// NewMetrics registers the CT metrics with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		submissions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "certctl_ct_submissions_total",
			Help: "Submissions to Certificate Transparency logs, by log URL, kind (precert, final) and outcome (ok, bad_sct, timeout, error).",
		}, []string{"log", "kind", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "certctl_ct_submission_duration_seconds",
			Help:    "Time from submitting to a CT log to its verified answer (or failure), by log URL and kind.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"log", "kind"}),
	}
	for _, c := range []prometheus.Collector{m.submissions, m.duration} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("ct: register metrics: %w", err)
		}
	}
	return m, nil
}

// observe records one submission to log that took d and ended with err.
func (m *Metrics) observe(log string, pre bool, d time.Duration, err error) {
	if m == nil {
		return
	}
	kind := "final"
	if pre {
		kind = "precert"
	}
	outcome := "ok"
	switch {
	case err == nil:
	case errors.Is(err, ErrBadSCT):
		outcome = "bad_sct"
	case errors.Is(err, context.DeadlineExceeded):
		outcome = "timeout"
	default:
		outcome = "error"
	}
	m.submissions.WithLabelValues(log, kind, outcome).Inc()
	m.duration.WithLabelValues(log, kind).Observe(d.Seconds())
}

// maxSCTFutureSkew: an SCT stamped further in the future than this is
// refused; relying parties reject SCTs from the future (RFC 6962 §5.2:
// the timestamp must not be in the future).
const maxSCTFutureSkew = 5 * time.Minute

// NewSubmitter returns a Submitter for pol (from issuance.Profile.CT).
func NewSubmitter(pol *issuance.CTPolicy, opts ...Option) (*Submitter, error) {
	if pol == nil || len(pol.Logs) == 0 {
		return nil, errors.New("ct: new submitter: no CT policy or no logs")
	}
	cfg := config{log: slog.New(slog.DiscardHandler), now: time.Now}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.hc == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 64
		tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		cfg.hc = &http.Client{Transport: tr}
	}
	s := &Submitter{pol: pol, log: cfg.log, now: cfg.now, metrics: cfg.metrics}
	for _, l := range pol.Logs {
		c, err := client.New(l.URL, cfg.hc, jsonclient.Options{
			Logger:    slogPrintf{cfg.log.With("ct_log", l.URL)},
			UserAgent: "certctl",
		})
		if err != nil {
			return nil, fmt.Errorf("ct: new submitter: log %s: %v", l.URL, err)
		}
		s.logs = append(s.logs, &logClient{cfg: l, c: c})
	}
	return s, nil
}

// slogPrintf adapts slog to jsonclient's Logger (it logs retries).
type slogPrintf struct{ l *slog.Logger }

func (p slogPrintf) Printf(format string, args ...any) { p.l.Debug(fmt.Sprintf(format, args...)) }

// Policy returns the policy the submitter serves. Do not modify it.
func (s *Submitter) Policy() *issuance.CTPolicy { return s.pol }

// SubmitPrecert submits the chain [precertificate, issuer] (DER) to every
// log in parallel (RFC 6962 §4.1 add-pre-chain), each bounded by the
// policy's timeout, and verifies each returned SCT against the
// precertificate and the log's key. It blocks until every log has answered
// or timed out. The error is non-nil only for input it cannot parse; check
// Result.Quorum.
func (s *Submitter) SubmitPrecert(ctx context.Context, preDER, issuerDER []byte) (*Result, error) {
	chain, err := parseChain(preDER, issuerDER)
	if err != nil {
		return nil, fmt.Errorf("ct: submit precertificate: %w", err)
	}
	return s.submit(ctx, chain, true), nil
}

// SubmitFinal submits the chain [certificate, issuer] (RFC 6962 §4.1
// add-chain) to every log, like SubmitPrecert. The SCTs it returns cover the
// certificate itself (X509 entries).
func (s *Submitter) SubmitFinal(ctx context.Context, certDER, issuerDER []byte) (*Result, error) {
	chain, err := parseChain(certDER, issuerDER)
	if err != nil {
		return nil, fmt.Errorf("ct: submit certificate: %w", err)
	}
	return s.submit(ctx, chain, false), nil
}

func parseChain(leafDER, issuerDER []byte) ([]*ctx509.Certificate, error) {
	leaf, err := ctx509.ParseCertificate(leafDER)
	if err != nil {
		return nil, fmt.Errorf("parse certificate: %v", err)
	}
	iss, err := ctx509.ParseCertificate(issuerDER)
	if err != nil {
		return nil, fmt.Errorf("parse issuer: %v", err)
	}
	return []*ctx509.Certificate{leaf, iss}, nil
}

func (s *Submitter) submit(ctx context.Context, chain []*ctx509.Certificate, pre bool) *Result {
	asn := []ctgo.ASN1Cert{{Data: chain[0].Raw}, {Data: chain[1].Raw}}
	scts := make([]*SCT, len(s.logs))
	errs := make([]error, len(s.logs))
	var wg sync.WaitGroup
	for j, l := range s.logs {
		wg.Go(func() {
			lctx, cancel := context.WithTimeout(ctx, s.pol.Timeout)
			defer cancel()
			start := time.Now()
			var sct *ctgo.SignedCertificateTimestamp
			var err error
			if pre {
				sct, err = l.c.AddPreChain(lctx, asn)
			} else {
				sct, err = l.c.AddChain(lctx, asn)
			}
			if err == nil {
				err = s.check(l.cfg, chain, sct)
			}
			s.metrics.observe(l.cfg.URL, pre, time.Since(start), err)
			if err != nil {
				errs[j] = err
				return
			}
			scts[j] = &SCT{Log: l.cfg, SCT: sct}
		})
	}
	wg.Wait()
	res := &Result{need: s.pol.Require, distinctOperators: s.pol.DistinctOperators}
	for j, l := range s.logs {
		if errs[j] != nil {
			res.Failures = append(res.Failures, &LogError{URL: l.cfg.URL, Operator: l.cfg.Operator, Err: errs[j]})
			continue
		}
		res.SCTs = append(res.SCTs, scts[j])
	}
	return res
}

// check verifies an SCT a log returned for chain (not embedded: the SCT
// covers the precertificate or certificate as submitted).
func (s *Submitter) check(l issuance.CTLog, chain []*ctx509.Certificate, sct *ctgo.SignedCertificateTimestamp) error {
	if sct == nil {
		return fmt.Errorf("%w: empty response", ErrBadSCT)
	}
	if sct.SCTVersion != ctgo.V1 {
		return fmt.Errorf("%w: version %d, want v1", ErrBadSCT, sct.SCTVersion)
	}
	if sct.LogID.KeyID != l.ID {
		return fmt.Errorf("%w: log ID %x is not the configured key's %x", ErrBadSCT, sct.LogID.KeyID[:], l.ID[:])
	}
	if ts := time.UnixMilli(int64(sct.Timestamp)); ts.After(s.now().Add(maxSCTFutureSkew)) {
		return fmt.Errorf("%w: timestamp %s is in the future", ErrBadSCT, ts.UTC().Format(time.RFC3339Nano))
	}
	if err := ctutil.VerifySCT(l.PublicKey, chain, sct, false); err != nil {
		return fmt.Errorf("%w: %v", ErrBadSCT, err)
	}
	return nil
}

// MarshalSCTList encodes SCTs as the TLS SignedCertificateTimestampList
// that the SCT list extension wraps (RFC 6962 §3.3); pass it to
// issuance.Issuer.IssueFinal.
func MarshalSCTList(scts []*SCT) ([]byte, error) {
	if len(scts) == 0 {
		return nil, errors.New("ct: marshal SCT list: no SCTs (RFC 6962 §3.3: the list holds at least one)")
	}
	raw := make([]*ctgo.SignedCertificateTimestamp, len(scts))
	for j, s := range scts {
		raw[j] = s.SCT
	}
	list, err := x509util.MarshalSCTsIntoSCTList(raw)
	if err != nil {
		return nil, fmt.Errorf("ct: marshal SCT list: %v", err)
	}
	b, err := cttls.Marshal(*list)
	if err != nil {
		return nil, fmt.Errorf("ct: marshal SCT list: %v", err)
	}
	return b, nil
}

// ParseSCTList decodes a TLS SignedCertificateTimestampList (the value
// inside the SCT list extension's OCTET STRING). It refuses trailing bytes.
func ParseSCTList(b []byte) ([]*ctgo.SignedCertificateTimestamp, error) {
	var list ctx509.SignedCertificateTimestampList
	rest, err := cttls.Unmarshal(b, &list)
	if err != nil {
		return nil, fmt.Errorf("ct: parse SCT list: %v", err)
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("ct: parse SCT list: %d trailing bytes", len(rest))
	}
	scts, err := x509util.ParseSCTsFromSCTList(&list)
	if err != nil {
		return nil, fmt.Errorf("ct: parse SCT list: %v", err)
	}
	return scts, nil
}

// Verification is the check of one embedded SCT.
type Verification struct {
	LogID     [sha256.Size]byte
	Log       *issuance.CTLog // nil when the log is not configured
	Timestamp time.Time
	SCT       *ctgo.SignedCertificateTimestamp
	// Err is nil when the signature verifies; it wraps ErrUnknownLog or
	// ErrBadSCT otherwise.
	Err error
}

// VerifyEmbedded checks every SCT embedded in the certificate certDER
// against logs, with its issuer issuerDER (RFC 6962 §3.2: the signed entry
// is the precertificate TBS, which needs the issuer's key hash). It returns
// one Verification per SCT, in the certificate's order; the error is for a
// certificate it cannot parse or one without SCTs.
func VerifyEmbedded(certDER, issuerDER []byte, logs []issuance.CTLog) ([]Verification, error) {
	chain, err := parseChain(certDER, issuerDER)
	if err != nil {
		return nil, fmt.Errorf("ct: verify: %w", err)
	}
	if len(chain[0].SCTList.SCTList) == 0 {
		return nil, errors.New("ct: verify: the certificate has no embedded SCTs")
	}
	scts, err := x509util.ParseSCTsFromSCTList(&chain[0].SCTList)
	if err != nil {
		return nil, fmt.Errorf("ct: verify: %v", err)
	}
	out := make([]Verification, 0, len(scts))
	for _, sct := range scts {
		v := Verification{LogID: sct.LogID.KeyID, Timestamp: time.UnixMilli(int64(sct.Timestamp)).UTC(), SCT: sct}
		for j := range logs {
			if logs[j].ID == sct.LogID.KeyID {
				v.Log = &logs[j]
			}
		}
		switch {
		case v.Log == nil:
			v.Err = fmt.Errorf("%w: log ID %x is not configured", ErrUnknownLog, sct.LogID.KeyID[:])
		default:
			if err := ctutil.VerifySCT(v.Log.PublicKey, chain, sct, true); err != nil {
				v.Err = fmt.Errorf("%w: %v", ErrBadSCT, err)
			}
		}
		out = append(out, v)
	}
	return out, nil
}
