-- 0017: ingest writes a handful of rows per batch instead of ~300 (docs/performance.md).
-- The latest batch of an agent becomes one row: its series, values and failures as JSON
-- text in latest_batches (values: a JSON array, null for NaN; written in place when the
-- agent sends the same series), replacing latest_samples and latest_failures. The metric
-- history stages each batch's finite values as one history_staging row (series ids and
-- values, little-endian int64 and float64 arrays) in the batch's transaction; the fold
-- (collector/store/history_rows.py) sums staged rows into history_points once their
-- 5-minute bucket has ended, deleting them in the same transaction, and reads add the
-- rows not folded yet. The migration runner splits on semicolons: keep them out of
-- comments and literals.

ALTER TABLE latest_batches ADD COLUMN series TEXT NOT NULL DEFAULT '[]';
ALTER TABLE latest_batches ADD COLUMN sample_values TEXT NOT NULL DEFAULT '[]';
ALTER TABLE latest_batches ADD COLUMN failures TEXT NOT NULL DEFAULT '[]';

UPDATE latest_batches SET
    series = COALESCE((
        SELECT json_group_array(json_array(name, json(labels))) FROM (
            SELECT name, labels FROM latest_samples AS s
            WHERE s.agent_id = latest_batches.agent_id ORDER BY position)), '[]'),
    sample_values = COALESCE((
        SELECT json_group_array(value) FROM (
            SELECT value FROM latest_samples AS s
            WHERE s.agent_id = latest_batches.agent_id ORDER BY position)), '[]'),
    failures = COALESCE((
        SELECT json_group_array(json_array(check_name, error)) FROM (
            SELECT check_name, error FROM latest_failures AS f
            WHERE f.agent_id = latest_batches.agent_id ORDER BY position)), '[]');

DROP TABLE latest_samples;
DROP TABLE latest_failures;

CREATE TABLE history_staging (
    staging_id     INTEGER PRIMARY KEY,
    agent_id       TEXT NOT NULL REFERENCES agents (agent_id),
    collected_ms   BIGINT NOT NULL,
    received_ms    BIGINT NOT NULL,
    series_ids     BLOB NOT NULL,
    sample_values  BLOB NOT NULL
);

-- The fold walks one agent's rows of one bucket together; reads take one agent's rows.
CREATE INDEX history_staging_by_agent ON history_staging (agent_id, collected_ms);
-- Rows from a host whose clock is ahead are folded by age of arrival.
CREATE INDEX history_staging_by_arrival ON history_staging (received_ms);
