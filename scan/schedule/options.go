package schedule

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/certctl/certctl/scan"
	"github.com/certctl/certctl/scan/targets"
)

// ErrInvalid is wrapped by errors about malformed options and configuration.
var ErrInvalid = errors.New("schedule: invalid")

// Options are the scan options of a schedule, stored as JSON in
// certdb.ScanSchedule.Options, and of a `certctl scan` command line. File
// paths are read when the scan runs, on the host that runs it; they should
// be absolute. The zero value scans port 443 with the system roots.
type Options struct {
	Ports    []int  `json:"ports,omitempty"`    // for targets without a port; default 443
	StartTLS string `json:"starttls,omitempty"` // "", "postgres" or "smtp"
	// CABundle is a PEM file of trusted roots (default: the system pool).
	CABundle string `json:"ca_bundle,omitempty"`
	// ClientCert and ClientKey are PEM files of a client identity for
	// endpoints that require one. The key file is read, never logged.
	ClientCert string `json:"client_cert,omitempty"`
	ClientKey  string `json:"client_key,omitempty"`
	// ExpectClientAuth: the endpoints must require a client certificate
	// (scan.WithExpectClientAuth).
	ExpectClientAuth bool `json:"expect_client_auth,omitempty"`
	// Timeout bounds the scan of one endpoint (default scan.DefaultTimeout).
	Timeout Duration `json:"timeout,omitempty"`
}

// ParseOptions decodes stored options strictly (unknown fields are an
// error); nil or empty input is the zero Options.
func ParseOptions(b []byte) (Options, error) {
	var o Options
	if len(bytes.TrimSpace(b)) == 0 {
		return o, nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&o); err != nil {
		return Options{}, fmt.Errorf("%w: scan options: %v", ErrInvalid, err)
	}
	return o, o.Validate()
}

// Validate checks the options without reading any file.
func (o Options) Validate() error {
	for _, p := range o.Ports {
		if p < 1 || p > 65535 {
			return fmt.Errorf("%w: port %d out of range 1-65535", ErrInvalid, p)
		}
	}
	switch o.StartTLS {
	case "", scan.StartTLSPostgres, scan.StartTLSSMTP:
	default:
		return fmt.Errorf("%w: STARTTLS protocol %q: use postgres or smtp", ErrInvalid, o.StartTLS)
	}
	if (o.ClientCert == "") != (o.ClientKey == "") {
		return fmt.Errorf("%w: a client certificate needs both a certificate and a key file", ErrInvalid)
	}
	if o.Timeout < 0 {
		return fmt.Errorf("%w: negative timeout", ErrInvalid)
	}
	return nil
}

// Endpoints expands specs with the options' ports and STARTTLS protocol
// (see targets.Expand).
func (o Options) Endpoints(specs []string) ([]targets.Endpoint, error) {
	return targets.Expand(specs, o.Ports, o.StartTLS)
}

// ScanOptions reads the files the options name and returns the options for
// scan.Scan.
func (o Options) ScanOptions() ([]scan.Option, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	var opts []scan.Option
	if o.CABundle != "" {
		b, err := os.ReadFile(o.CABundle)
		if err != nil {
			return nil, fmt.Errorf("schedule: CA bundle: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("schedule: CA bundle %s: %w: no PEM certificates in it", o.CABundle, ErrInvalid)
		}
		opts = append(opts, scan.WithRoots(pool))
	}
	if o.ClientCert != "" {
		cert, err := tls.LoadX509KeyPair(o.ClientCert, o.ClientKey)
		if err != nil {
			// The error of LoadX509KeyPair names no key material.
			return nil, fmt.Errorf("schedule: client certificate %s / key %s: %v", o.ClientCert, o.ClientKey, err)
		}
		opts = append(opts, scan.WithClientCertificate(cert))
	}
	if o.ExpectClientAuth {
		opts = append(opts, scan.WithExpectClientAuth())
	}
	if o.Timeout > 0 {
		opts = append(opts, scan.WithTimeout(time.Duration(o.Timeout)))
	}
	return opts, nil
}

// Duration is a time.Duration written as a Go duration ("90s", "1h30m") or
// whole days ("14d") in YAML and JSON.
type Duration time.Duration

// MarshalText writes whole days as "14d" and anything else as a Go duration.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// String returns the text form MarshalText writes.
func (d Duration) String() string {
	const day = 24 * time.Hour
	td := time.Duration(d)
	if td != 0 && td%day == 0 {
		return strconv.FormatInt(int64(td/day), 10) + "d"
	}
	return td.String()
}

// UnmarshalText reads a Go duration or a whole number of days ("14d").
func (d *Duration) UnmarshalText(b []byte) error {
	s := string(b)
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days < 0 || days > 3650 {
			return fmt.Errorf("%w: duration %q: want e.g. 14d, 90s or 1h30m", ErrInvalid, s)
		}
		*d = Duration(time.Duration(days) * 24 * time.Hour)
		return nil
	}
	td, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%w: duration %q: want e.g. 14d, 90s or 1h30m", ErrInvalid, s)
	}
	*d = Duration(td)
	return nil
}
