-- TLS scan results and schedules (issue 7).
--
-- scan_results: one row per scan of one endpoint (target is "host:port" or,
-- with STARTTLS, "postgres://host:port"). result is the scanner's JSON, kept as sent. serial
-- and issuer_key_id identify the leaf certificate the endpoint served. Times
-- are unix microseconds, UTC.
CREATE TABLE scan_results (
	id            INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
	target        TEXT    NOT NULL CHECK (target <> ''),
	grade         TEXT    NOT NULL,
	scanned_at    INTEGER NOT NULL,
	not_after     INTEGER,
	serial        BLOB    CHECK (length(serial) > 0),
	issuer_key_id BLOB    NOT NULL,
	result        TEXT    NOT NULL CHECK (json_valid(result))
) STRICT;

-- ScanHistory and LatestScanResults: newest first per target.
CREATE INDEX scan_results_target_time ON scan_results (target, scanned_at DESC, id DESC);
-- Endpoints serving a given certificate.
CREATE INDEX scan_results_serial ON scan_results (serial) WHERE serial IS NOT NULL;

-- scan_schedules: targets is a JSON array of strings, interval_us the
-- interval in microseconds. The single SQLite writer makes a claim (UPDATE …
-- RETURNING) atomic.
CREATE TABLE scan_schedules (
	id          INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
	targets     TEXT    NOT NULL CHECK (json_type(targets) = 'array' AND json_array_length(targets) > 0),
	interval_us INTEGER NOT NULL CHECK (interval_us > 0),
	options     TEXT    CHECK (json_type(options) = 'object'),
	next_run    INTEGER NOT NULL,
	last_run    INTEGER,
	created_at  INTEGER NOT NULL
) STRICT;

CREATE INDEX scan_schedules_next_run ON scan_schedules (next_run);
