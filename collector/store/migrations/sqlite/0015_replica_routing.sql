-- 0015: routing between collector replicas (docs/replicas.md). The PostgreSQL twin
-- differs only in type names (BYTEA for BLOB, an identity column for the outbox id).
-- Times are BIGINT unix milliseconds.

-- Every live replica: its id (collector/leadership.py replica_id), the address of its
-- replica relay (mutual TLS, for sessions), and until when its heartbeat holds. A
-- replica renews the row every few seconds; a dead one's row expires.
CREATE TABLE replicas (
    replica        TEXT PRIMARY KEY,
    relay_address  TEXT NOT NULL,
    expires_ms     BIGINT NOT NULL
);

-- Which replica holds which agent's control stream (the newest hello wins). A row is
-- current only while its replica's heartbeat holds (join with replicas).
CREATE TABLE agent_presence (
    agent_id      TEXT PRIMARY KEY,
    replica       TEXT NOT NULL,
    connected_ms  BIGINT NOT NULL
);

-- Messages for an agent connected to another replica (a run request, an approval):
-- the replica holding the agent's stream takes them (on NOTIFY, or its periodic poll)
-- and sends them. A row is deleted when it is taken, or dropped when too old.
CREATE TABLE agent_outbox (
    id          INTEGER PRIMARY KEY,
    agent_id    TEXT NOT NULL,
    message     BLOB NOT NULL,
    created_ms  BIGINT NOT NULL
);

CREATE INDEX agent_outbox_by_agent ON agent_outbox (agent_id, id);

-- Files every replica must be able to serve (run outputs, session recordings), keyed
-- by their path under the data directory; written once, when the file is complete.
CREATE TABLE shared_files (
    path       TEXT PRIMARY KEY,
    data       BLOB NOT NULL,
    sha256     TEXT NOT NULL,
    stored_ms  BIGINT NOT NULL
);
