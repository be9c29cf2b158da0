-- A transfer in progress or done, kept in the database so that any gateway can serve each of
-- its steps (the after-stream redirect, each dial's outcome, the whisper).
CREATE TABLE call_transfers (
    id uuid PRIMARY KEY DEFAULT uuid_generate_v4(),
    call_sid text NOT NULL UNIQUE, -- one transfer per call
    call_log_id uuid NOT NULL REFERENCES call_logs(id) ON DELETE CASCADE,
    organization_id uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    trigger text NOT NULL,
    reason text NOT NULL,
    department text NOT NULL,
    -- The targets in the order they are tried: [{"id", "name", "phone_number"}].
    targets jsonb NOT NULL CHECK (jsonb_typeof(targets) = 'array'),
    -- Index in `targets` of the attempt being dialled.
    attempt integer NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'dialing', 'connected', 'exhausted', 'callback')),
    strategy text NOT NULL DEFAULT 'dial' CHECK (strategy IN ('dial', 'rest')),
    caller_id text,
    ring_timeout_secs integer NOT NULL DEFAULT 25 CHECK (ring_timeout_secs BETWEEN 5 AND 120),
    -- What the human hears before pressing 1.
    whisper text NOT NULL,
    -- Said to the caller by Plivo before dialling (when the agent has not said it already).
    handoff_line text,
    fallback text NOT NULL DEFAULT 'back_to_ai' CHECK (fallback IN ('back_to_ai', 'callback_and_hangup')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    connected_at timestamptz
);
CREATE INDEX idx_call_transfers_org ON call_transfers(organization_id);

CREATE TRIGGER call_transfers_set_updated_at BEFORE UPDATE ON call_transfers
    FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();

ALTER TABLE call_transfers ENABLE ROW LEVEL SECURITY;
CREATE POLICY "Users can view transfers in their organization" ON call_transfers
    FOR SELECT USING (organization_id IN (
        SELECT organization_id FROM profiles WHERE id = auth.uid()
    ));
GRANT SELECT, INSERT, UPDATE, DELETE ON call_transfers TO authenticated, service_role;
