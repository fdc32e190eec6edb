-- 0002: API tokens and the audit trail.
--
-- tokens: only the SHA-256 of a token's secret is stored (hash, 32 bytes).
-- profiles and names are JSON arrays of strings. single_use and admin are 0
-- or 1. Times are unix microseconds, UTC; used_at and revoked_at are NULL
-- until the token is used or revoked. Expiry is checked by the caller, not
-- by the store.
CREATE TABLE tokens (
	id          TEXT    NOT NULL PRIMARY KEY CHECK (id <> ''),
	hash        BLOB    NOT NULL CHECK (length(hash) = 32),
	profiles    TEXT    NOT NULL CHECK (json_type(profiles) = 'array'),
	names       TEXT    NOT NULL CHECK (json_type(names) = 'array'),
	single_use  INTEGER NOT NULL CHECK (single_use IN (0, 1)),
	admin       INTEGER NOT NULL CHECK (admin IN (0, 1)),
	description TEXT    NOT NULL,
	created_by  TEXT    NOT NULL,
	created_at  INTEGER NOT NULL,
	expires_at  INTEGER NOT NULL,
	used_at     INTEGER,
	revoked_at  INTEGER
) STRICT;

-- audit: append-only. AUTOINCREMENT: an id is never reused, even after the
-- newest rows were deleted, so ids only grow and the Before cursor is stable.
CREATE TABLE audit (
	id      INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
	time    INTEGER NOT NULL,
	actor   TEXT    NOT NULL,
	action  TEXT    NOT NULL CHECK (action <> ''),
	target  TEXT    NOT NULL,
	outcome TEXT    NOT NULL,
	detail  TEXT    NOT NULL
) STRICT;

-- ListAudit by actor or by action, newest first.
CREATE INDEX audit_actor_id ON audit (actor, id);
CREATE INDEX audit_action_id ON audit (action, id);
-- ListAudit since a time (and retention jobs).
CREATE INDEX audit_time ON audit (time);
