-- 0005 (PostgreSQL twin of the SQLite migration of the same name): the SSH gateway. Portable SQL like 0001 to 0004 (the PostgreSQL twin differs
-- only in type names). Times are BIGINT unix milliseconds.
-- The migration runner splits on semicolons: keep them out of comments and literals.

-- The host's remote-session policy as its agent last reported it in the hello:
-- collector | local | either | disabled ('' until the agent says).
ALTER TABLE agents ADD COLUMN session_approval TEXT NOT NULL DEFAULT '';

-- Users' SSH public keys for the gateway, by SHA-256 fingerprint ("SHA256:...").
CREATE TABLE ssh_keys (
    fingerprint  TEXT PRIMARY KEY,
    user_name    TEXT NOT NULL,
    key_type     TEXT NOT NULL,
    key_base64   TEXT NOT NULL,
    comment      TEXT NOT NULL DEFAULT '',
    added_ms     BIGINT NOT NULL
);

CREATE INDEX ssh_keys_by_user ON ssh_keys (user_name, added_ms);

-- Terminal recordings (asciicast v2 files under the data directory), one per
-- recorded channel, numbered per session from 1. sha256 is set when finished.
CREATE TABLE session_recordings (
    session_id      TEXT NOT NULL REFERENCES sessions (session_id),
    part            INTEGER NOT NULL,
    kind            TEXT NOT NULL,
    command         TEXT NOT NULL DEFAULT '',
    path            TEXT NOT NULL,
    started_ms      BIGINT NOT NULL,
    ended_ms        BIGINT,
    size_bytes      BIGINT NOT NULL DEFAULT 0,
    sha256          TEXT NOT NULL DEFAULT '',
    input_recorded  BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (session_id, part)
);
