-- 0007 (PostgreSQL twin): the audit log is append-only in the store itself. Nothing in
-- aftercare updates or deletes audit rows; these triggers make any attempt fail, so a
-- bug or an operator's slip cannot rewrite history. (A database superuser can drop
-- them: signed checkpoints held by agents catch that, docs/audit.md.)
-- The PostgreSQL runner sends a migration file as one script, so the function body's
-- semicolons are safe.

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only';
END
$$;

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
