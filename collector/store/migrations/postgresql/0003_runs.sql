-- 0003 (PostgreSQL twin of the SQLite migration of the same name): playbook runs. Portable SQL like 0001 and 0002: the PostgreSQL twin differs
-- only in type names. Times are BIGINT unix milliseconds. params and result are JSON
-- objects stored as TEXT with sorted keys. States and modes are validated by the
-- store (collector/store/run_rows.py), not by CHECK constraints, so adding a value
-- never needs a table rebuild. The run's output is a file (DATA_DIR/runs/RUN_ID.out),
-- described here by its size and sha256.
-- The migration runner splits on semicolons: keep them out of comments and literals.

CREATE TABLE runs (
    run_id         TEXT PRIMARY KEY,
    agent_id       TEXT NOT NULL,
    customer       TEXT NOT NULL,
    hostname       TEXT NOT NULL DEFAULT '',
    playbook       TEXT NOT NULL,
    version        TEXT NOT NULL DEFAULT '',
    mode           TEXT NOT NULL,
    params         TEXT NOT NULL DEFAULT '{}',
    requested_by   TEXT NOT NULL,
    requested_ms   BIGINT NOT NULL,
    ticket_id      BIGINT,
    state          TEXT NOT NULL,
    message        TEXT NOT NULL DEFAULT '',
    updated_ms     BIGINT NOT NULL,
    finished_ms    BIGINT,
    result         TEXT NOT NULL DEFAULT '{}',
    output_bytes   BIGINT NOT NULL DEFAULT 0,
    output_sha256  TEXT NOT NULL DEFAULT '',
    approved_by    TEXT
);

-- Newest-first lists per customer and per agent.
CREATE INDEX runs_by_customer ON runs (customer, requested_ms);
CREATE INDEX runs_by_agent ON runs (agent_id, requested_ms);
