-- 0003: revocation: CRL shards, pre-signed OCSP responses, CRL numbers and
-- the latest CRL of each shard.

-- The CRL shard a certificate is assigned to at issuance (0 when CRLs are not
-- sharded). Existing certificates belong to shard 0.
ALTER TABLE certificates ADD COLUMN shard integer NOT NULL DEFAULT 0
	CONSTRAINT certificates_shard_nonnegative CHECK (shard >= 0);

-- ListRevokedShard: the revoked certificates of one issuer and shard, in
-- serial order, unexpired. Partial (revoked certificates are a minority) and
-- covering, so a CRL of a million entries is an index-only scan that filters
-- not_after without visiting the table.
CREATE INDEX certificates_revoked_issuer_shard_serial ON certificates (issuer_key_id, shard, serial)
	INCLUDE (not_after, revoked_at, reason) WHERE status = 3;

-- ListOCSPStale walks the issued certificates of one issuer in serial order
-- (this index, which skips reservations) and looks up each one's response by
-- the primary key of ocsp_responses.
CREATE INDEX certificates_issued_issuer_serial ON certificates (issuer_key_id, serial)
	INCLUDE (not_after, status) WHERE status IN (2, 3);

-- One pre-signed OCSP response per issued certificate: the latest one.
-- status is the certdb.Status the response asserts (2 good, 3 revoked).
CREATE TABLE ocsp_responses (
	serial        bytea       PRIMARY KEY REFERENCES certificates (serial) ON DELETE CASCADE,
	issuer_key_id bytea       NOT NULL,
	der           bytea       NOT NULL CONSTRAINT ocsp_responses_der_not_empty CHECK (octet_length(der) > 0),
	status        smallint    NOT NULL CONSTRAINT ocsp_responses_status_issued CHECK (status IN (2, 3)),
	this_update   timestamptz NOT NULL,
	next_update   timestamptz NOT NULL
);

-- The last CRL number handed out for each shard of each issuer. numeric: RFC
-- 5280 §5.2.3 allows up to 20 octets (positive, so below 2^159).
CREATE TABLE crl_numbers (
	issuer_key_id bytea   NOT NULL,
	shard         integer NOT NULL CONSTRAINT crl_numbers_shard_nonnegative CHECK (shard >= 0),
	last_number   numeric NOT NULL CONSTRAINT crl_numbers_rfc5280
	              CHECK (last_number >= 1 AND last_number < 730750818665451459101842416358141509827966271488 AND scale(last_number) = 0),
	PRIMARY KEY (issuer_key_id, shard)
);

-- The latest CRL of each shard of each issuer.
CREATE TABLE crls (
	issuer_key_id bytea       NOT NULL,
	shard         integer     NOT NULL CONSTRAINT crls_shard_nonnegative CHECK (shard >= 0),
	number        numeric     NOT NULL CONSTRAINT crls_number_rfc5280
	              CHECK (number >= 0 AND number < 730750818665451459101842416358141509827966271488 AND scale(number) = 0),
	this_update   timestamptz NOT NULL,
	next_update   timestamptz NOT NULL,
	der           bytea       NOT NULL CONSTRAINT crls_der_not_empty CHECK (octet_length(der) > 0),
	PRIMARY KEY (issuer_key_id, shard)
);
