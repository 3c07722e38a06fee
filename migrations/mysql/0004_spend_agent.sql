-- The caller's registered agent name (agent cards), when it has one.
ALTER TABLE spend_log ADD COLUMN agent VARCHAR(255);
CREATE INDEX spend_log_agent_time ON spend_log (agent, time_ms);
