package schedule

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// Event kinds.
const (
	EventGradeDropped = "grade_dropped"
	EventExpiring     = "expiring"
	EventRevoked      = "revoked"
)

// Event is what a hook receives: one thing that got worse at one endpoint.
type Event struct {
	Kind          string    `json:"kind"` // EventGradeDropped, EventExpiring or EventRevoked
	Target        string    `json:"target"`
	ScheduleID    int64     `json:"schedule_id,omitempty"`
	ResultID      int64     `json:"result_id,omitempty"` // the stored scan result
	ScannedAt     time.Time `json:"scanned_at"`
	Grade         string    `json:"grade"`
	PreviousGrade string    `json:"previous_grade,omitempty"`
	// Serial (hex) and NotAfter of the leaf certificate served.
	Serial    string     `json:"serial,omitempty"`
	NotAfter  *time.Time `json:"not_after,omitempty"`
	DaysLeft  *int       `json:"days_left,omitempty"`  // EventExpiring
	RevokedAt *time.Time `json:"revoked_at,omitempty"` // EventRevoked
	Reason    string     `json:"reason,omitempty"`     // EventRevoked: RFC 5280 reason name
	Message   string     `json:"message"`              // one human sentence
	Diff      *Diff      `json:"diff,omitempty"`       // against the previous scan
}

// Hook is told about events. Fire must honour ctx; the Runner calls it
// from one goroutine at a time per hook and bounds it with the hook's own
// timeout.
type Hook interface {
	Fire(ctx context.Context, ev *Event) error
	// String names the hook in logs without secrets.
	String() string
}

// DefaultHookTimeout bounds a hook when its configuration sets none.
const DefaultHookTimeout = 10 * time.Second

// Webhook POSTs each event as JSON (Content-Type application/json) and
// expects a 2xx answer. Safe for concurrent use.
type Webhook struct {
	url     string
	headers http.Header
	client  *http.Client
	timeout time.Duration
}

var _ Hook = (*Webhook)(nil)

// NewWebhook returns a webhook to rawURL (http or https). headers are sent
// with every request (e.g. Authorization) and never logged; client nil
// means a client with no overall timeout other than timeout (≤ 0 means
// DefaultHookTimeout).
func NewWebhook(rawURL string, headers http.Header, client *http.Client, timeout time.Duration) (*Webhook, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: webhook URL %q: want http(s)://host/path", ErrInvalid, redactURL(rawURL))
	}
	if client == nil {
		client = &http.Client{}
	}
	return &Webhook{url: rawURL, headers: headers.Clone(), client: client, timeout: cmpOr(timeout, DefaultHookTimeout)}, nil
}

// String is the URL without user information, query or fragment.
func (w *Webhook) String() string { return "webhook " + redactURL(w.url) }

// Fire POSTs ev.
func (w *Webhook) Fire(ctx context.Context, ev *Event) error {
	body, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("schedule: %s: encode event: %v", w, err)
	}
	ctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("schedule: %s: %v", w, err)
	}
	for k, v := range w.headers {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "certctl-scan")
	resp, err := w.client.Do(req)
	if err != nil {
		// *url.Error carries the full URL (query included): keep only the cause.
		var cause error = err
		if ue, ok := err.(*url.Error); ok {
			cause = ue.Err
		}
		return fmt.Errorf("schedule: %s: %v", w, cause)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("schedule: %s: HTTP status %s", w, resp.Status)
	}
	return nil
}

// redactURL keeps scheme, host and path: user information and the query
// string often carry tokens.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
}

// Exec runs a shell command (sh -c) for each event, with the event as JSON
// on its standard input and in environment variables:
//
//	CERTCTL_EVENT           grade_dropped, expiring or revoked
//	CERTCTL_TARGET          the endpoint (host:port, postgres://host:port)
//	CERTCTL_GRADE           the new grade ("" when the scan failed)
//	CERTCTL_PREVIOUS_GRADE  the previous grade
//	CERTCTL_SERIAL          leaf serial (hex)
//	CERTCTL_NOT_AFTER       leaf expiry, RFC 3339
//	CERTCTL_DAYS_LEFT       days until expiry (expiring)
//	CERTCTL_MESSAGE         one human sentence
//
// plus PATH, HOME, USER, LANG, LC_*, TZ and TMPDIR from the runner's
// environment, and nothing else of it: the server's environment may hold
// secrets (CERTCTL_PKCS11_PIN, webhook tokens). The command's output is discarded
// (up to 64 KiB of it is kept for the error when it fails). Safe for
// concurrent use.
type Exec struct {
	command string
	timeout time.Duration
}

var _ Hook = (*Exec)(nil)

// NewExec returns an exec hook for command (timeout ≤ 0 means
// DefaultHookTimeout).
func NewExec(command string, timeout time.Duration) (*Exec, error) {
	if command == "" {
		return nil, fmt.Errorf("%w: empty exec hook command", ErrInvalid)
	}
	return &Exec{command: command, timeout: cmpOr(timeout, DefaultHookTimeout)}, nil
}

// String names the hook; the command is the operator's own configuration.
func (x *Exec) String() string { return fmt.Sprintf("exec %q", x.command) }

// Fire runs the command and waits for it (killing it at the timeout).
func (x *Exec) Fire(ctx context.Context, ev *Event) error {
	body, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("schedule: %s: encode event: %v", x, err)
	}
	ctx, cancel := context.WithTimeout(ctx, x.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", x.command)
	cmd.WaitDelay = time.Second // a child that keeps the pipes open does not hang us
	cmd.Stdin = bytes.NewReader(body)
	env := append(hookEnviron(),
		"CERTCTL_EVENT="+ev.Kind,
		"CERTCTL_TARGET="+ev.Target,
		"CERTCTL_GRADE="+ev.Grade,
		"CERTCTL_PREVIOUS_GRADE="+ev.PreviousGrade,
		"CERTCTL_SERIAL="+ev.Serial,
		"CERTCTL_MESSAGE="+ev.Message,
	)
	if ev.NotAfter != nil {
		env = append(env, "CERTCTL_NOT_AFTER="+ev.NotAfter.UTC().Format(time.RFC3339))
	}
	if ev.DaysLeft != nil {
		env = append(env, "CERTCTL_DAYS_LEFT="+strconv.Itoa(*ev.DaysLeft))
	}
	cmd.Env = env
	var out limitedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("schedule: %s: killed after %v", x, x.timeout)
		}
		return fmt.Errorf("schedule: %s: %v: %s", x, err, bytes.TrimSpace(out.b.Bytes()))
	}
	return nil
}

// hookEnviron is the part of the process environment a hook command gets.
func hookEnviron() []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case k == "PATH", k == "HOME", k == "USER", k == "LANG", k == "TZ", k == "TMPDIR", strings.HasPrefix(k, "LC_"):
			out = append(out, kv)
		}
	}
	return out
}

// limitedBuffer keeps the first 64 KiB written to it.
type limitedBuffer struct{ b bytes.Buffer }

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := 64<<10 - l.b.Len(); room > 0 {
		l.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}
