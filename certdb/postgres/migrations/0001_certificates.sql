-- 0001: the certificates table.
--
-- serial is the minimal big-endian encoding of the positive serial (no
-- leading zero octet, 1..20 octets, RFC 5280 §4.1.2.2), so ORDER BY serial is
-- the byte-wise order certdb.Store promises (bytea compares memcmp, then the
-- shorter first). status is certdb.Status (1 reserved, 2 valid, 3 revoked);
-- expiry is not stored, it is derived from not_after at query time. reason is
-- an RFC 5280 §5.3.1 CRLReason code (7 is unused).
CREATE TABLE certificates (
	serial        bytea       PRIMARY KEY
	              CONSTRAINT certificates_serial_minimal
	              CHECK (octet_length(serial) BETWEEN 1 AND 20 AND substr(serial, 1, 1) <> '\x00'::bytea),
	issuer_key_id bytea       NOT NULL,
	subject       text        NOT NULL,
	sans          text[]      NOT NULL DEFAULT '{}',
	not_before    timestamptz NOT NULL,
	not_after     timestamptz NOT NULL,
	status        smallint    NOT NULL CONSTRAINT certificates_status_known CHECK (status IN (1, 2, 3)),
	revoked_at    timestamptz NULL,
	reason        smallint    NULL CONSTRAINT certificates_reason_rfc5280 CHECK (reason IN (0, 1, 2, 3, 4, 5, 6, 8, 9, 10)),
	der           bytea       NULL,
	lint_der      bytea       NULL,
	profile       text        NOT NULL DEFAULT '',
	requester     text        NOT NULL DEFAULT '',
	created_at    timestamptz NOT NULL DEFAULT now(),
	-- A reserved serial has no certificate yet; an issued one always has.
	CONSTRAINT certificates_der_iff_issued CHECK ((status = 1) = (der IS NULL)),
	-- Revocation time and reason are present exactly when revoked.
	CONSTRAINT certificates_revocation_iff_revoked
		CHECK ((status = 3) = (revoked_at IS NOT NULL) AND (status = 3) = (reason IS NOT NULL))
);

-- CRLs and OCSP pre-signing: the revoked, unexpired certificates of one issuer
-- (ListRevoked). Partial: revoked certificates are a small minority.
CREATE INDEX certificates_revoked_issuer_not_after ON certificates (issuer_key_id, not_after) WHERE status = 3;
-- Expiry listings (`certctl list --expiring`, Query.ExpiringBefore/Expiry).
CREATE INDEX certificates_not_after ON certificates (not_after);
-- Listing by status (orphaned reservations, revoked) in serial order.
CREATE INDEX certificates_status_serial ON certificates (status, serial);
