-- A gateway that dies (SIGKILL, out of memory, a lost host) leaves the calls it held open.
-- They are closed with their own end reason: by the gateway itself when it starts again, or
-- by any gateway once the dead one's heartbeat is stale.
ALTER TABLE call_logs DROP CONSTRAINT call_logs_end_reason_check;
ALTER TABLE call_logs ADD CONSTRAINT call_logs_end_reason_check CHECK (end_reason IN (
    'caller_hangup', 'agent_ended', 'transferred', 'provider_error', 'max_duration',
    'silence', 'shutdown', 'internal_error',
    'no_answer', 'busy', 'failed', 'canceled', 'voicemail',
    'hangup_requested', 'gateway_restart'));

-- A gateway's open calls, found by its name (at its start and by its peers' heartbeats).
CREATE INDEX idx_call_logs_open_by_server ON call_logs(server_name) WHERE ended_at IS NULL;

-- Each gateway's own heartbeat interval, so a peer judges it stale by its own rhythm
-- (3 heartbeats), not by the peer's. NULL (a row written before this column): the peer's.
ALTER TABLE websocket_servers
    ADD COLUMN heartbeat_secs integer CHECK (heartbeat_secs > 0);
