-- 0019: a host's pending session requests are read when its agent connects (the agent
-- is told each one); this index serves that read instead of a scan of every session.

CREATE INDEX sessions_by_agent ON sessions (agent_id, state);
