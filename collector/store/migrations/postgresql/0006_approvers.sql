-- 0006 (PostgreSQL twin of the SQLite migration of the same name): customer-signed approvals. Portable SQL like 0001 to 0005 (the PostgreSQL twin
-- differs only in type names: BYTEA for BYTEA). Times are BIGINT unix milliseconds.
-- Signed documents are stored as the exact bytes the customer's CLI made: the
-- collector forwards them, hosts verify them.
-- The migration runner splits on semicolons: keep them out of comments and literals.

-- The customer's approval root pinned on the host, as its agent last reported it in
-- the hello ("sha256:HEX", '' if none).
ALTER TABLE agents ADD COLUMN approval_root TEXT NOT NULL DEFAULT '';

-- Approver certificates (signed by a customer's approval root), one per customer and
-- approver key. Re-adding a key replaces its certificate (renewal).
CREATE TABLE approvers (
    customer          TEXT NOT NULL,
    key_fingerprint   TEXT NOT NULL,
    name              TEXT NOT NULL,
    root_fingerprint  TEXT NOT NULL,
    issued_ms         BIGINT NOT NULL,
    expires_ms        BIGINT NOT NULL,
    certificate       BYTEA NOT NULL,
    added_ms          BIGINT NOT NULL,
    added_by          TEXT NOT NULL,
    PRIMARY KEY (customer, key_fingerprint)
);

-- Revocations (signed by the same root), one per customer and approver key: the first
-- one stored stays (a key once revoked is revoked for good).
CREATE TABLE approver_revocations (
    customer          TEXT NOT NULL,
    key_fingerprint   TEXT NOT NULL,
    root_fingerprint  TEXT NOT NULL,
    revoked_ms        BIGINT NOT NULL,
    revocation        BYTEA NOT NULL,
    added_ms          BIGINT NOT NULL,
    added_by          TEXT NOT NULL,
    PRIMARY KEY (customer, key_fingerprint)
);

-- What a run's approval binds, and the customer's signed approval (bundle bytes).
ALTER TABLE runs ADD COLUMN playbook_digest TEXT NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN bound_params TEXT NOT NULL DEFAULT '{}';
ALTER TABLE runs ADD COLUMN signed_approval BYTEA;

-- The customer's signed approval of a session (bundle bytes), sent with every SessionOpen.
ALTER TABLE sessions ADD COLUMN signed_approval BYTEA;
