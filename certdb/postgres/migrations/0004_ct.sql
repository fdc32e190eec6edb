-- Certificate Transparency: precertificates and SCTs (issue 8).

-- The precertificate signed for a serial, recorded before it is submitted
-- to any log (certdb.SCTStore.AddPrecertificate).
ALTER TABLE certificates ADD COLUMN precert_der bytea NULL
	CONSTRAINT certificates_precert_not_empty CHECK (octet_length(precert_der) > 0);

-- The SCTs of a certificate: embedded for SCTs over the precertificate (in
-- the certificate), not embedded for SCTs over the final certificate
-- (add-chain). ts is the RFC 6962 timestamp in milliseconds since the epoch.
CREATE TABLE scts (
	serial     bytea    NOT NULL REFERENCES certificates (serial) ON DELETE CASCADE,
	log_id     bytea    NOT NULL CONSTRAINT scts_log_id_sha256 CHECK (octet_length(log_id) = 32),
	embedded   boolean  NOT NULL,
	log_url    text     NOT NULL,
	operator   text     NOT NULL,
	version    smallint NOT NULL CONSTRAINT scts_version_byte CHECK (version BETWEEN 0 AND 255),
	ts         bigint   NOT NULL,
	extensions bytea    NOT NULL,
	signature  bytea    NOT NULL CONSTRAINT scts_signature_not_empty CHECK (octet_length(signature) > 0),
	PRIMARY KEY (serial, embedded, log_id)
);
