-- 0003: revocation: CRL shards, pre-signed OCSP responses, CRL numbers and
-- the latest CRL of each shard. Times are unix microseconds, UTC.

-- The CRL shard a certificate is assigned to at issuance (0 when CRLs are not
-- sharded). Existing certificates belong to shard 0.
ALTER TABLE certificates ADD COLUMN shard INTEGER NOT NULL DEFAULT 0 CHECK (shard >= 0);

-- ListRevokedShard: the revoked certificates of one issuer and shard, in
-- serial order, unexpired. Partial and covering (every column the query
-- reads), so the query never visits the table. The query must spell
-- status = 3 as a literal for SQLite to use a partial index.
CREATE INDEX certificates_revoked_issuer_shard_serial
	ON certificates (issuer_key_id, shard, serial, not_after, revoked_at, reason) WHERE status = 3;

-- ListOCSPStale walks the issued certificates of one issuer in serial order
-- and looks up each one's response by the primary key of ocsp_responses.
CREATE INDEX certificates_issued_issuer_serial
	ON certificates (issuer_key_id, serial, not_after, status) WHERE status IN (2, 3);

-- One pre-signed OCSP response per issued certificate: the latest one.
-- status is the certdb.Status the response asserts (2 good, 3 revoked).
CREATE TABLE ocsp_responses (
	serial        BLOB    NOT NULL PRIMARY KEY REFERENCES certificates (serial) ON DELETE CASCADE,
	issuer_key_id BLOB    NOT NULL,
	der           BLOB    NOT NULL CHECK (length(der) > 0),
	status        INTEGER NOT NULL CHECK (status IN (2, 3)),
	this_update   INTEGER NOT NULL,
	next_update   INTEGER NOT NULL
) STRICT;

-- The last CRL number handed out for each shard of each issuer. An INTEGER
-- (64 bits): numbers stop below 2^62, which a CRL a second would reach in
-- 10^11 years (PostgreSQL stores the full 20 octets of RFC 5280 §5.2.3).
CREATE TABLE crl_numbers (
	issuer_key_id BLOB    NOT NULL,
	shard         INTEGER NOT NULL CHECK (shard >= 0),
	last_number   INTEGER NOT NULL CHECK (last_number BETWEEN 1 AND 4611686018427387903),
	PRIMARY KEY (issuer_key_id, shard)
) STRICT;

-- The latest CRL of each shard of each issuer; number as in crl_numbers.
CREATE TABLE crls (
	issuer_key_id BLOB    NOT NULL,
	shard         INTEGER NOT NULL CHECK (shard >= 0),
	number        INTEGER NOT NULL CHECK (number BETWEEN 0 AND 4611686018427387903),
	this_update   INTEGER NOT NULL,
	next_update   INTEGER NOT NULL,
	der           BLOB    NOT NULL CHECK (length(der) > 0),
	PRIMARY KEY (issuer_key_id, shard)
) STRICT;
