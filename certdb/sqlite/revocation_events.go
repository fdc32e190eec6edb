package sqlite

import (
	"context"
	"math/big"
	"time"
)

// Cross-process revocation announcements. Revoke and NotifyRevoked append to
// the revocation_events table in the same transaction; every Store with
// subscribers polls it, so a `certctl revoke` in one process reaches the
// OCSP cache and CRL updater of a `certctl serve` on the same file within
// one poll interval. In-process subscribers are also told directly (no
// wait). Receivers tolerate duplicates (certdb.RevocationNotifier).
const (
	eventPollInterval = 200 * time.Millisecond
	eventRetention    = 24 * time.Hour
)

// pollEvents runs while the store has subscribers: it publishes every event
// with an id above last, appended by any process. It stops when the store is
// closed.
func (s *Store) pollEvents(last int64) {
	defer s.bg.Done()
	t := time.NewTicker(eventPollInterval)
	defer t.Stop()
	lastPrune := time.Time{}
	for {
		select {
		case <-s.stopped:
			return
		case <-t.C:
		}
		last = s.pollOnce(last)
		if now := s.now(); now.Sub(lastPrune) > time.Hour {
			lastPrune = now
			if _, err := s.w.ExecContext(context.Background(), `DELETE FROM revocation_events WHERE at < ?`, micros(now.Add(-eventRetention))); err != nil {
				s.log.Debug("sqlite: prune revocation events", "err", err)
			}
		}
	}
}

func (s *Store) pollOnce(last int64) int64 {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rows, err := s.r.QueryContext(ctx, `SELECT id, serial FROM revocation_events WHERE id > ? ORDER BY id LIMIT 1000`, last)
	if err != nil {
		s.log.Debug("sqlite: poll revocation events", "err", err)
		return last
	}
	defer rows.Close()
	for rows.Next() {
		var key []byte
		if err := rows.Scan(&last, &key); err != nil {
			break
		}
		s.publish(new(big.Int).SetBytes(key))
	}
	return last
}
