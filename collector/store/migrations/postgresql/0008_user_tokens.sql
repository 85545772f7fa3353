-- 0008 (PostgreSQL twin of the SQLite migration of the same name): users can be disabled, and their API tokens expire and are rotated.
-- disabled_ms: when an admin disabled the user (NULL: enabled); its token is refused.
-- token_expires_ms: the token is refused from then on (NULL: no expiry).
-- token_created_ms: when the current token was issued (creation or the last rotation).

ALTER TABLE users ADD COLUMN disabled_ms BIGINT;

ALTER TABLE users ADD COLUMN token_expires_ms BIGINT;

ALTER TABLE users ADD COLUMN token_created_ms BIGINT
