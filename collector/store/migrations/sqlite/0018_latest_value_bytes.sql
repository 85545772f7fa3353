-- 0018: an agent's latest values are written as one little-endian float64 array
-- (value_bytes) instead of JSON text: formatting 150 floats as JSON was the largest
-- Python cost of the latest row per batch, and the array is a third of the size.
-- Rows written before keep their JSON in sample_values (value_bytes NULL) until the
-- agent's next batch; readers take value_bytes when it is set. NaN and infinities
-- are kept as they are.

ALTER TABLE latest_batches ADD COLUMN value_bytes BLOB;
