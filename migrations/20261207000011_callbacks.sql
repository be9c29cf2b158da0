-- Callbacks the lead asked for during a call: a dial attempt due at the time they named. It
-- does not use up the campaign's retry budget (`is_callback` attempts are not counted against
-- `max_attempts`), and it remembers why, so the callback call's agent can say so.
ALTER TABLE dial_attempts
    ADD COLUMN is_callback boolean NOT NULL DEFAULT FALSE,
    -- The call in which the lead asked, when, and what they said.
    ADD COLUMN callback_call_sid text,
    ADD COLUMN callback_requested_at timestamptz,
    ADD COLUMN callback_phrase text,
    -- Why: the call's notes or summary, for the callback call's instructions.
    ADD COLUMN callback_note text,
    ADD CONSTRAINT dial_attempts_callback_consistent_check
        CHECK (is_callback OR (callback_call_sid IS NULL AND callback_requested_at IS NULL));

-- A campaign's pending callbacks, in due order (the API's list, the statistics).
CREATE INDEX idx_dial_attempts_pending_callbacks ON dial_attempts(campaign_id, due_at)
    WHERE is_callback AND status = 'scheduled';
