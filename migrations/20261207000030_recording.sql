-- Call recordings: a call whose recording stopped (an unwritable directory, a full disk, a
-- stalled store) goes on unrecorded and says so in its events. `call_logs.recording_url`
-- (from the seed) names the API resource of a finished recording.
ALTER TABLE call_events DROP CONSTRAINT call_events_kind_check;
ALTER TABLE call_events ADD CONSTRAINT call_events_kind_check CHECK (kind IN (
    'caller_speech', 'agent_speech', 'tool_call', 'tool_result', 'dtmf', 'barge_in',
    'transfer_decision', 'transfer_attempt', 'transfer_outcome', 'callback_scheduled',
    'outcome', 'provider_error', 'note', 'recording_failed'));
