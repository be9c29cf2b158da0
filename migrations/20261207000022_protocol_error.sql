-- Limits before work: a carrier that breaks the media stream's limits (a WebSocket message over
-- 64 KiB) gets its socket closed with code 1009, and the call ends with its own reason, so a
-- report can tell it from a caller hanging up or a fault of the gateway.
ALTER TABLE call_logs DROP CONSTRAINT call_logs_end_reason_check;
ALTER TABLE call_logs ADD CONSTRAINT call_logs_end_reason_check CHECK (end_reason IN (
    'caller_hangup', 'agent_ended', 'transferred', 'provider_error', 'max_duration',
    'silence', 'shutdown', 'internal_error',
    'no_answer', 'busy', 'failed', 'canceled', 'voicemail',
    'hangup_requested', 'gateway_restart', 'protocol_error'));
