-- 0018: an agent's latest values as one little-endian float64 array (value_bytes)
-- instead of JSON text; rows written before keep their JSON in sample_values
-- (value_bytes NULL) until the agent's next batch. See the SQLite migration.

ALTER TABLE latest_batches ADD COLUMN value_bytes BYTEA;
