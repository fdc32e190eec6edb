-- 0002: API tokens and the audit trail.
--
-- tokens: only the SHA-256 of a token's secret is stored (hash, 32 bytes).
-- used_at and revoked_at are NULL until the token is used or revoked. Expiry
-- is checked by the caller, not by the store.
CREATE TABLE tokens (
	id          text        PRIMARY KEY CONSTRAINT tokens_id_not_empty CHECK (id <> ''),
	hash        bytea       NOT NULL CONSTRAINT tokens_hash_sha256 CHECK (octet_length(hash) = 32),
	profiles    text[]      NOT NULL DEFAULT '{}',
	names       text[]      NOT NULL DEFAULT '{}',
	single_use  boolean     NOT NULL DEFAULT false,
	admin       boolean     NOT NULL DEFAULT false,
	description text        NOT NULL DEFAULT '',
	created_by  text        NOT NULL DEFAULT '',
	created_at  timestamptz NOT NULL DEFAULT now(),
	expires_at  timestamptz NOT NULL,
	used_at     timestamptz NULL,
	revoked_at  timestamptz NULL
);

-- audit: append-only. ids come from a sequence: they increase in the order
-- they are drawn, may have gaps, and concurrent appends may commit (become
-- visible) out of id order.
CREATE TABLE audit (
	id      bigserial   PRIMARY KEY,
	time    timestamptz NOT NULL DEFAULT now(),
	actor   text        NOT NULL DEFAULT '',
	action  text        NOT NULL CONSTRAINT audit_action_not_empty CHECK (action <> ''),
	target  text        NOT NULL DEFAULT '',
	outcome text        NOT NULL DEFAULT '',
	detail  text        NOT NULL DEFAULT ''
);

-- ListAudit by actor or by action, newest first.
CREATE INDEX audit_actor_id ON audit (actor, id);
CREATE INDEX audit_action_id ON audit (action, id);
-- ListAudit since a time (and retention jobs).
CREATE INDEX audit_time ON audit (time);
