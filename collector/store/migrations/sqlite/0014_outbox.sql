-- 0014: the notification outbox (docs/notifications-outbox.md, collector/outbox.py).
-- Every notification (ticket escalations and customer notices, inspection notices,
-- ...) is written here in the same transaction as the change that causes it, then
-- claimed, sent and marked by the leader's sender. Nothing is ever deleted: a notice
-- that keeps failing stays pending with its attempts and last error (`outbox` CLI).
-- dedup: what the notice is ("ticket:12:warning-0-webhook-..."): one notice per dedup,
-- so a repeated enqueue changes nothing. delivery_id travels with the notice (webhook
-- header X-Aftercare-Delivery, e-mail Message-ID) so a receiver can drop a repeat.
-- state: pending | sent. claimed_by / claimed_until_ms: the sender sending it now.
-- payload and meta are JSON objects stored as TEXT. Times: epoch milliseconds.
-- The migration runner splits on semicolons: keep them out of comments and literals.

CREATE TABLE outbox (
    id               INTEGER PRIMARY KEY,
    dedup            TEXT NOT NULL UNIQUE,
    delivery_id      TEXT NOT NULL UNIQUE,
    kind             TEXT NOT NULL,
    channel          TEXT NOT NULL,
    target           TEXT NOT NULL,
    target_label     TEXT NOT NULL DEFAULT '',
    subject          TEXT NOT NULL DEFAULT '',
    payload          TEXT NOT NULL DEFAULT '{}',
    body             TEXT NOT NULL DEFAULT '',
    meta             TEXT NOT NULL DEFAULT '{}',
    ticket_id        BIGINT,
    created_ms       BIGINT NOT NULL,
    state            TEXT NOT NULL DEFAULT 'pending',
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms  BIGINT NOT NULL,
    claimed_by       TEXT,
    claimed_until_ms BIGINT,
    last_error       TEXT NOT NULL DEFAULT '',
    sent_ms          BIGINT
);

CREATE INDEX outbox_due ON outbox (state, next_attempt_ms);
