-- TLS scan results and schedules (issue 7).
--
-- scan_results: one row per scan of one endpoint (target is "host:port" or,
-- with STARTTLS, "postgres://host:port"). result is the scanner's JSON, kept as sent (json,
-- not jsonb). serial and issuer_key_id identify the leaf certificate the
-- endpoint served, to find it in the certificates table.
CREATE TABLE scan_results (
	id            bigserial   PRIMARY KEY,
	target        text        NOT NULL CONSTRAINT scan_results_target_not_empty CHECK (target <> ''),
	grade         text        NOT NULL DEFAULT '',
	scanned_at    timestamptz NOT NULL,
	not_after     timestamptz NULL,
	serial        bytea       NULL CONSTRAINT scan_results_serial_not_empty CHECK (octet_length(serial) > 0),
	issuer_key_id bytea       NOT NULL DEFAULT '',
	result        json        NOT NULL
);

-- ScanHistory and LatestScanResults: newest first per target.
CREATE INDEX scan_results_target_time ON scan_results (target, scanned_at DESC, id DESC);
-- Endpoints serving a given certificate.
CREATE INDEX scan_results_serial ON scan_results (serial) WHERE serial IS NOT NULL;

-- scan_schedules: interval_us is the interval in microseconds. Runners claim
-- due rows (next_run <= now) with SELECT … FOR UPDATE SKIP LOCKED and move
-- next_run forward in the same statement.
CREATE TABLE scan_schedules (
	id          bigserial   PRIMARY KEY,
	targets     text[]      NOT NULL CONSTRAINT scan_schedules_targets CHECK (cardinality(targets) > 0),
	interval_us bigint      NOT NULL CONSTRAINT scan_schedules_interval_positive CHECK (interval_us > 0),
	options     json        NULL,
	next_run    timestamptz NOT NULL,
	last_run    timestamptz NULL,
	created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX scan_schedules_next_run ON scan_schedules (next_run);
