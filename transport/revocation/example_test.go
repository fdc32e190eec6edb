package revocation_test

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"time"

	"github.com/certctl/certctl/transport/revocation"
)

// A server refuses clients whose certificate is revoked, and also those
// whose status cannot be established (hard-fail). VerifyConnection runs on
// resumed sessions too.
func ExampleChecker_Check() {
	rc := revocation.New(
		revocation.WithMode(revocation.HardFail),
		revocation.WithLogger(slog.Default()),
	)
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS13,
		ClientAuth: tls.RequireAndVerifyClientCert,
		VerifyConnection: func(cs tls.ConnectionState) error {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err := rc.Check(ctx, cs.VerifiedChains[0])
			if errors.Is(err, revocation.ErrRevoked) {
				slog.Warn("refused a revoked client certificate", "err", err)
			}
			return err
		},
	}
	_ = cfg
}
