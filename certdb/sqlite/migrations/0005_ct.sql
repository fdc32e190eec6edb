-- Certificate Transparency: precertificates and SCTs (issue 8). Times are
-- unix microseconds, UTC, except sct timestamps: RFC 6962 milliseconds.

-- The precertificate signed for a serial, recorded before it is submitted
-- to any log (certdb.SCTStore.AddPrecertificate).
ALTER TABLE certificates ADD COLUMN precert_der BLOB NULL CHECK (precert_der IS NULL OR length(precert_der) > 0);

-- The SCTs of a certificate: embedded = 1 for SCTs over the precertificate
-- (in the certificate), 0 for SCTs over the final certificate (add-chain).
CREATE TABLE scts (
	serial     BLOB    NOT NULL REFERENCES certificates (serial) ON DELETE CASCADE,
	log_id     BLOB    NOT NULL CHECK (length(log_id) = 32),
	embedded   INTEGER NOT NULL CHECK (embedded IN (0, 1)),
	log_url    TEXT    NOT NULL,
	operator   TEXT    NOT NULL,
	version    INTEGER NOT NULL CHECK (version BETWEEN 0 AND 255),
	timestamp  INTEGER NOT NULL,
	extensions BLOB    NOT NULL,
	signature  BLOB    NOT NULL CHECK (length(signature) > 0),
	PRIMARY KEY (serial, embedded, log_id)
) STRICT;
