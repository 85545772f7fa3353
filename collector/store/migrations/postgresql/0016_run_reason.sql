-- 0016 (PostgreSQL twin of the SQLite migration of the same name): the reason an engineer gives for a playbook run, stored with the run (shown on
-- the portal's run page, in `aftercare run show` and the run list). Runs requested
-- before this migration have an empty reason (it is also in their audit entry
-- playbook.run_requested). Identical to the SQLite one.

ALTER TABLE runs ADD COLUMN reason TEXT NOT NULL DEFAULT '';

-- A ticket's runs, newest first (the portal's ticket page).
CREATE INDEX runs_by_ticket ON runs (ticket_id, requested_ms);

-- Runs waiting for approval, oldest first (runs_waiting_approval, the approval notices).
CREATE INDEX runs_by_state ON runs (state, requested_ms);
