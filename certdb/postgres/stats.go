package postgres

import "github.com/certctl/certctl/certdb"

// PoolStats reports the connection pool's state for metrics.
func (s *Store) PoolStats() certdb.PoolStats {
	st := s.Stat()
	return certdb.PoolStats{
		Acquired:          st.AcquiredConns(),
		Idle:              st.IdleConns(),
		Total:             st.TotalConns(),
		Max:               st.MaxConns(),
		AcquireCount:      st.AcquireCount(),
		EmptyAcquireCount: st.EmptyAcquireCount(),
	}
}
