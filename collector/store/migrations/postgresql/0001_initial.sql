-- 0001 (PostgreSQL twin of the SQLite migration of the same name): initial schema. Portable SQL (the PostgreSQL twin differs only in type names).
-- Times are BIGINT unix milliseconds; JSON is TEXT written with sorted keys.
-- The migration runner splits on ';' — keep semicolons out of comments and literals.

CREATE TABLE join_tokens (
    token_hash  TEXT PRIMARY KEY,
    customer    TEXT NOT NULL,
    expires_ms  BIGINT NOT NULL,
    created_by  TEXT NOT NULL,
    created_ms  BIGINT NOT NULL,
    used_ms     BIGINT
);

CREATE TABLE users (
    name        TEXT PRIMARY KEY,
    role        TEXT NOT NULL CHECK (role IN ('admin', 'engineer', 'customer')),
    customer    TEXT,
    token_hash  TEXT NOT NULL UNIQUE,
    created_ms  BIGINT NOT NULL
);

CREATE TABLE agents (
    agent_id           TEXT PRIMARY KEY,
    customer           TEXT NOT NULL,
    hostname           TEXT NOT NULL,
    enrolled_ms        BIGINT NOT NULL,
    cert_serial        TEXT NOT NULL,
    cert_not_after_ms  BIGINT NOT NULL,
    revoked_ms         BIGINT,
    agent_version      TEXT NOT NULL DEFAULT '',
    last_seen_ms       BIGINT
);

CREATE INDEX agents_by_customer ON agents (customer, hostname);

-- One sequence space per agent, shared by batches and gaps: the exactly-once key.
CREATE TABLE ingest_log (
    agent_id     TEXT NOT NULL REFERENCES agents (agent_id),
    sequence     BIGINT NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('batch', 'gap')),
    received_ms  BIGINT NOT NULL,
    PRIMARY KEY (agent_id, sequence)
);

CREATE INDEX ingest_log_by_received ON ingest_log (received_ms);

CREATE TABLE gaps (
    agent_id             TEXT NOT NULL,
    sequence             BIGINT NOT NULL,
    first_lost_sequence  BIGINT NOT NULL,
    last_lost_sequence   BIGINT NOT NULL,
    lost_batches         BIGINT NOT NULL,
    start_ms             BIGINT NOT NULL,
    end_ms               BIGINT NOT NULL,
    reason               TEXT NOT NULL,
    reported_ms          BIGINT NOT NULL,
    PRIMARY KEY (agent_id, sequence),
    FOREIGN KEY (agent_id, sequence) REFERENCES ingest_log (agent_id, sequence)
);

-- The newest (by collection time) batch per agent, and its values in arrival order.
CREATE TABLE latest_batches (
    agent_id      TEXT PRIMARY KEY REFERENCES agents (agent_id),
    sequence      BIGINT NOT NULL,
    collected_ms  BIGINT NOT NULL
);

CREATE TABLE latest_samples (
    agent_id  TEXT NOT NULL REFERENCES latest_batches (agent_id),
    position  INTEGER NOT NULL,
    name      TEXT NOT NULL,
    labels    TEXT NOT NULL,
    value     DOUBLE PRECISION,  -- NULL stands for NaN (SQLite stores NaN as NULL)
    PRIMARY KEY (agent_id, position)
);

CREATE TABLE latest_failures (
    agent_id    TEXT NOT NULL REFERENCES latest_batches (agent_id),
    position    INTEGER NOT NULL,
    check_name  TEXT NOT NULL,
    error       TEXT NOT NULL,
    PRIMARY KEY (agent_id, position)
);

-- Append-only, hash chained (collector/audit.py). Ids are assigned gapless by the
-- writer; UNIQUE prev_hash forbids forks if two writers ever race.
CREATE TABLE audit_log (
    id         BIGINT PRIMARY KEY,
    at_ms      BIGINT NOT NULL,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    target     TEXT NOT NULL,
    details    TEXT NOT NULL,
    prev_hash  TEXT NOT NULL UNIQUE,
    hash       TEXT NOT NULL
);
