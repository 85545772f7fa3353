-- 0013 (PostgreSQL twin of the SQLite migration of the same name): leases for leader election among collector replicas (docs/replicas.md).
-- One row per lease name (e.g. "evaluation"): the replica holding it and until when.
-- A replica renews its lease before expires_ms; another replica may take it only
-- after expires_ms has passed (collector/leadership.py, collector/store/lease_sqlite.py).
-- holder: the replica id ("host:pid:random"); expires_ms: epoch milliseconds.

CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_ms BIGINT NOT NULL
);
