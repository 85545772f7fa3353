-- 0011 (PostgreSQL twin of the SQLite migration of the same name): kinds of request (desk-grade). A ticket is a fault (the default: every ticket
-- before this migration), a complaint (投诉) or an inquiry (询检问题) whose urgency
-- (urgent, pressing, general) sets its answer time. Both are fixed at creation and
-- validated by the store (collector/store/ticket_rows.py), not by CHECK constraints.
ALTER TABLE tickets ADD COLUMN kind TEXT NOT NULL DEFAULT 'fault';
ALTER TABLE tickets ADD COLUMN urgency TEXT NOT NULL DEFAULT '';
