package schedule

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Config is the scan: section of certctl.yaml: how `certctl serve` runs
// scheduled scans, and the hooks it fires. The zero value works (no hooks).
type Config struct {
	// Poll is how often the runner looks for due schedules. Default 30s.
	Poll Duration `yaml:"poll,omitempty" json:"poll,omitempty"`
	// Concurrency bounds the endpoints scanned at once. Default 8.
	Concurrency int `yaml:"concurrency,omitempty" json:"concurrency,omitempty"`
	// Lease is the least time between two claims of one schedule: a
	// schedule claimed now is due again after the larger of its interval
	// and the lease. Default 1m (the shortest interval `certctl scan
	// schedule add` accepts, so it changes nothing for those). A run that
	// outlasts its schedule's interval may overlap with the next one, which
	// another process may claim.
	Lease Duration `yaml:"lease,omitempty" json:"lease,omitempty"`
	// ExpiryWarning: a certificate expiring within this fires "expiring".
	// Default 14d.
	ExpiryWarning Duration `yaml:"expiry_warning,omitempty" json:"expiry_warning,omitempty"`
	// Retention is how long stored scan results are kept; each endpoint's
	// newest result is kept however old. Default 90d.
	Retention Duration `yaml:"retention,omitempty" json:"retention,omitempty"`
	// Hooks are told about events.
	Hooks []HookConfig `yaml:"hooks,omitempty" json:"hooks,omitempty"`
}

// HookConfig configures one hook: exactly one of Webhook and Exec.
type HookConfig struct {
	// Webhook is an http(s) URL that receives each event as a JSON POST.
	Webhook string `yaml:"webhook,omitempty" json:"webhook,omitempty"`
	// Headers are sent with each webhook request. A value "env:NAME" is
	// read from the environment, so secrets need not be in the file.
	Headers map[string]string `yaml:"headers,omitempty" json:"headers,omitempty"`
	// Exec is a shell command (sh -c) run for each event (see Exec).
	Exec string `yaml:"exec,omitempty" json:"exec,omitempty"`
	// Timeout bounds one call. Default 10s.
	Timeout Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
	// Events limits the hook to these kinds (grade_dropped, expiring,
	// revoked). Default: all.
	Events []string `yaml:"events,omitempty" json:"events,omitempty"`
}

// Config defaults.
const (
	DefaultPoll          = 30 * time.Second
	DefaultLease         = time.Minute
	DefaultExpiryWarning = 14 * 24 * time.Hour
	DefaultRetention     = 90 * 24 * time.Hour
)

// RunnerOptions returns the Runner options the configuration asks for,
// hooks included. getenv resolves "env:NAME" header values. Errors wrap
// ErrInvalid and name the hook (by index, never by a header value).
func (c Config) RunnerOptions(getenv func(string) string) ([]Option, error) {
	switch {
	case c.Poll < 0 || c.Lease < 0 || c.ExpiryWarning < 0 || c.Retention < 0:
		return nil, fmt.Errorf("%w: scan: poll, lease, expiry_warning and retention must not be negative", ErrInvalid)
	case c.Concurrency < 0:
		return nil, fmt.Errorf("%w: scan: negative concurrency", ErrInvalid)
	}
	var opts []Option
	if c.Poll > 0 {
		opts = append(opts, WithPoll(time.Duration(c.Poll)))
	}
	if c.Concurrency > 0 {
		opts = append(opts, WithConcurrency(c.Concurrency))
	}
	if c.Lease > 0 {
		opts = append(opts, WithLease(time.Duration(c.Lease)))
	}
	if c.ExpiryWarning > 0 {
		opts = append(opts, WithExpiryWarning(time.Duration(c.ExpiryWarning)))
	}
	if c.Retention > 0 {
		opts = append(opts, WithRetention(time.Duration(c.Retention)))
	}
	for i, hc := range c.Hooks {
		h, err := hc.build(getenv)
		if err != nil {
			return nil, fmt.Errorf("scan.hooks[%d]: %w", i, err)
		}
		opts = append(opts, WithHook(h))
	}
	return opts, nil
}

func (hc HookConfig) build(getenv func(string) string) (Hook, error) {
	for _, k := range hc.Events {
		if k != EventGradeDropped && k != EventExpiring && k != EventRevoked {
			return nil, fmt.Errorf("%w: unknown event %q (want grade_dropped, expiring or revoked)", ErrInvalid, k)
		}
	}
	var (
		h   Hook
		err error
	)
	switch {
	case hc.Webhook != "" && hc.Exec != "":
		return nil, fmt.Errorf("%w: set webhook or exec, not both", ErrInvalid)
	case hc.Webhook != "":
		hdr := http.Header{}
		for k, v := range hc.Headers {
			if name, ok := strings.CutPrefix(v, "env:"); ok {
				v = getenv(name)
				if v == "" {
					return nil, fmt.Errorf("%w: header %s: environment variable %s is empty", ErrInvalid, k, name)
				}
			}
			hdr.Set(k, v)
		}
		h, err = NewWebhook(hc.Webhook, hdr, nil, time.Duration(hc.Timeout))
	case hc.Exec != "":
		if len(hc.Headers) > 0 {
			return nil, fmt.Errorf("%w: headers apply to webhooks only", ErrInvalid)
		}
		h, err = NewExec(hc.Exec, time.Duration(hc.Timeout))
	default:
		return nil, fmt.Errorf("%w: a hook needs webhook or exec", ErrInvalid)
	}
	if err != nil {
		return nil, err
	}
	if len(hc.Events) > 0 {
		h = &filtered{Hook: h, kinds: slices.Clone(hc.Events)}
	}
	return h, nil
}

// filtered passes only some event kinds to its hook.
type filtered struct {
	Hook
	kinds []string
}

func (f *filtered) Fire(ctx context.Context, ev *Event) error {
	if !slices.Contains(f.kinds, ev.Kind) {
		return nil
	}
	return f.Hook.Fire(ctx, ev)
}
