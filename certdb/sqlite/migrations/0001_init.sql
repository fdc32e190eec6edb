-- 0001: the certificates table.
--
-- serial is the minimal big-endian encoding of the (positive) serial, so
-- ORDER BY serial is byte-wise order (memcmp, then shorter first), the order
-- certdb.Store promises. Times are unix microseconds, UTC. status is
-- certdb.Status (1 reserved, 2 valid, 3 revoked); expiry is derived from
-- not_after at query time.
CREATE TABLE certificates (
	serial        BLOB    NOT NULL PRIMARY KEY CHECK (length(serial) BETWEEN 1 AND 20),
	issuer_key_id BLOB    NOT NULL,
	subject       TEXT    NOT NULL,
	sans          TEXT    NOT NULL CHECK (json_type(sans) = 'array'),
	not_before    INTEGER NOT NULL,
	not_after     INTEGER NOT NULL,
	status        INTEGER NOT NULL CHECK (status IN (1, 2, 3)),
	revoked_at    INTEGER,
	reason        INTEGER CHECK (reason BETWEEN 0 AND 10 AND reason <> 7),
	der           BLOB,
	lint_der      BLOB,
	profile       TEXT    NOT NULL,
	requester     TEXT    NOT NULL,
	created_at    INTEGER NOT NULL,
	-- A reserved serial has no certificate yet; an issued one always has.
	CHECK ((status = 1) = (der IS NULL)),
	-- Revocation data is present exactly when the certificate is revoked.
	CHECK ((status = 3) = (revoked_at IS NOT NULL)),
	CHECK ((status = 3) = (reason IS NOT NULL))
) STRICT;

-- CRL generation: revoked and unexpired certificates of one issuer.
CREATE INDEX certificates_issuer_status_not_after ON certificates (issuer_key_id, status, not_after);
-- Expiry listings (`certctl list --expiring`).
CREATE INDEX certificates_not_after ON certificates (not_after);
-- Listing by status (orphaned reservations, revoked) in serial order.
CREATE INDEX certificates_status_serial ON certificates (status, serial);
