-- 0006: the audit log is append-only in the store itself. Nothing in aftercare
-- updates or deletes audit rows; these triggers make any attempt fail, so a bug or
-- an operator's slip cannot rewrite history. (Someone who controls the data
-- directory can drop them: signed checkpoints held by agents catch that, docs/audit.md.)
-- The migration runner keeps a trigger's BEGIN ... END body together.

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;
