-- Revocation announcements that other processes on the same file can see:
-- SQLite has no LISTEN/NOTIFY, so subscribers poll this log (see
-- revocation_events.go). Rows are pruned after a day.
CREATE TABLE revocation_events (
	id     INTEGER PRIMARY KEY AUTOINCREMENT,
	serial BLOB NOT NULL,
	at     INTEGER NOT NULL
) STRICT;
