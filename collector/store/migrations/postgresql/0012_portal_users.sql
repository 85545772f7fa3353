-- 0012 (PostgreSQL twin of the SQLite migration of the same name): the web portal. Passwords of users who sign in to the portal, their
-- failed sign-ins (lockout) and language, and the signed-in browser sessions.
-- password_hash: "scrypt$N$r$p$SALT_HEX$HASH_HEX" (collector/portal/passwords.py).
-- locked_until_ms: sign-in refused until then (NULL: not locked).
-- language: "zh-CN" or "en" ("" : follow the browser's Accept-Language).
-- totp_secret: base32 TOTP secret of the optional second factor ("" : none).
-- totp_last_step: the last 30-second step whose code was accepted (replays refused).
-- portal_sessions.token_hash: SHA-256 hex of the cookie value; only the hash is kept.

CREATE TABLE portal_users (
    name TEXT PRIMARY KEY REFERENCES users(name) ON DELETE CASCADE,
    password_hash TEXT NOT NULL,
    password_set_ms BIGINT NOT NULL,
    failed_logins INTEGER NOT NULL DEFAULT 0,
    locked_until_ms BIGINT,
    language TEXT NOT NULL DEFAULT '',
    totp_secret TEXT NOT NULL DEFAULT '',
    totp_last_step BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE portal_sessions (
    token_hash TEXT PRIMARY KEY,
    name TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    csrf_token TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL
);

CREATE INDEX portal_sessions_by_name ON portal_sessions (name)
