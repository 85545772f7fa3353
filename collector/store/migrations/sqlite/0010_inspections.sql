-- 0010: inspections (巡检): plans, inspections with their timelines, change records and
-- customer settings. Portable SQL like 0002. Times are BIGINT unix milliseconds; JSON
-- columns are TEXT with sorted keys. States and event kinds are validated by the store
-- (collector/store/inspection_rows.py), not by CHECK constraints.
-- The migration runner splits on semicolons: keep them out of comments and literals.

CREATE TABLE inspection_plans (
    id            INTEGER PRIMARY KEY,
    customer      TEXT NOT NULL,
    every         TEXT NOT NULL,
    first_ms      BIGINT NOT NULL,
    hosts         TEXT NOT NULL DEFAULT '',
    engineer      TEXT NOT NULL DEFAULT '',
    notice_ms     BIGINT NOT NULL,
    config_files  TEXT NOT NULL DEFAULT '[]',
    state         TEXT NOT NULL,
    created_ms    BIGINT NOT NULL,
    created_by    TEXT NOT NULL,
    updated_ms    BIGINT NOT NULL,
    version       BIGINT NOT NULL DEFAULT 1
);

CREATE INDEX inspection_plans_by_customer ON inspection_plans (customer, id);

-- Inspections are never deleted: signed reports are kept at least 5 years and this
-- code prunes none (docs/inspections.md). report_json holds the canonical published
-- bytes, fixed once report_sha256 is set.
CREATE TABLE inspections (
    id               INTEGER PRIMARY KEY,
    plan_id          BIGINT NOT NULL REFERENCES inspection_plans (id),
    customer         TEXT NOT NULL,
    occurrence       INTEGER NOT NULL,
    scheduled_ms     BIGINT NOT NULL,
    state            TEXT NOT NULL,
    engineer         TEXT NOT NULL DEFAULT '',
    hosts            TEXT NOT NULL DEFAULT '',
    notice_ms        BIGINT NOT NULL,
    config_files     TEXT NOT NULL DEFAULT '[]',
    created_ms       BIGINT NOT NULL,
    updated_ms       BIGINT NOT NULL,
    announced_ms     BIGINT,
    consented_ms     BIGINT,
    consented_by     TEXT NOT NULL DEFAULT '',
    decline_reason   TEXT NOT NULL DEFAULT '',
    proposed_ms      BIGINT,
    run_started_ms   BIGINT,
    run_finished_ms  BIGINT,
    period_start_ms  BIGINT,
    host_results     TEXT NOT NULL DEFAULT '[]',
    report_due_ms    BIGINT,
    late_notified_ms BIGINT,
    draft            TEXT,
    ticket_ids       TEXT NOT NULL DEFAULT '[]',
    summary          TEXT NOT NULL DEFAULT '',
    published_ms     BIGINT,
    published_by     TEXT NOT NULL DEFAULT '',
    report_sha256    TEXT NOT NULL DEFAULT '',
    report_json      TEXT,
    signoff          TEXT,
    version          BIGINT NOT NULL DEFAULT 1
);

CREATE UNIQUE INDEX inspections_one_per_occurrence ON inspections (plan_id, occurrence);
CREATE INDEX inspections_by_customer ON inspections (customer, state, id);

CREATE TABLE inspection_events (
    id             INTEGER PRIMARY KEY,
    inspection_id  BIGINT NOT NULL REFERENCES inspections (id),
    at_ms          BIGINT NOT NULL,
    actor          TEXT NOT NULL,
    kind           TEXT NOT NULL,
    details        TEXT NOT NULL DEFAULT '{}'
);

CREATE INDEX inspection_events_by_inspection ON inspection_events (inspection_id, id);

-- A host's archive of configuration changes (drift found by an inspection, ...).
CREATE TABLE change_records (
    id             INTEGER PRIMARY KEY,
    agent_id       TEXT NOT NULL,
    at_ms          BIGINT NOT NULL,
    source         TEXT NOT NULL,
    inspection_id  BIGINT,
    kind           TEXT NOT NULL,
    item           TEXT NOT NULL,
    before_value   TEXT,
    after_value    TEXT
);

CREATE INDEX change_records_by_agent ON change_records (agent_id, at_ms, id);

CREATE TABLE customer_settings (
    customer    TEXT PRIMARY KEY,
    language    TEXT NOT NULL,
    updated_ms  BIGINT NOT NULL,
    updated_by  TEXT NOT NULL
);
