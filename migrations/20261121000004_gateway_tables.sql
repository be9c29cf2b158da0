-- Additions the gateway needs beside the seed schema: per-call idempotency, the call's end,
-- per-turn call events, dial attempts, transfer targets and API tokens; RLS like the rest.

-- Every write about a call is idempotent by its Plivo CallUUID: the seed's index becomes unique.
DROP INDEX idx_call_logs_call_sid;
CREATE UNIQUE INDEX idx_call_logs_call_sid ON call_logs(call_sid);

ALTER TABLE call_logs
    ADD COLUMN direction text NOT NULL DEFAULT 'outbound' CHECK (direction IN ('outbound', 'inbound')),
    -- NULL while the call is live; set exactly once when it ends.
    ADD COLUMN ended_at timestamptz,
    ADD COLUMN end_reason text CHECK (end_reason IN (
        'caller_hangup', 'agent_ended', 'transferred', 'provider_error', 'max_duration',
        'silence', 'shutdown', 'internal_error',
        'no_answer', 'busy', 'failed', 'canceled', 'voicemail')),
    -- The gateway instance that holds (or held) the live call.
    ADD COLUMN server_name text,
    ADD CONSTRAINT call_logs_end_consistent_check CHECK ((ended_at IS NULL) = (end_reason IS NULL));

CREATE INDEX idx_call_logs_live ON call_logs(organization_id) WHERE ended_at IS NULL;

-- A lead's own timezone wins over the campaign's for its calling window; its assigned human
-- agent may take its transfers.
ALTER TABLE leads
    ADD COLUMN timezone text,
    ADD COLUMN assigned_to uuid REFERENCES profiles(id) ON DELETE SET NULL;

-- websocket_servers: a server registers itself by name (upsert), reports its live calls with
-- each heartbeat, and says why it failed.
ALTER TABLE websocket_servers
    ADD CONSTRAINT websocket_servers_name_key UNIQUE (name),
    ADD COLUMN live_calls integer NOT NULL DEFAULT 0 CHECK (live_calls >= 0),
    ADD COLUMN failure_reason text,
    ADD COLUMN created_at timestamptz NOT NULL DEFAULT now();

-- Per-turn call events: caller and agent speech with times, tool calls, DTMF, barge-ins,
-- transfer decisions. `seq` is the gateway's own order within the call, so a retried append
-- is a no-op.
CREATE TABLE call_events (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    call_log_id uuid NOT NULL REFERENCES call_logs(id) ON DELETE CASCADE,
    organization_id uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    seq integer NOT NULL CHECK (seq >= 0),
    kind text NOT NULL CHECK (kind IN (
        'caller_speech', 'agent_speech', 'tool_call', 'tool_result', 'dtmf', 'barge_in',
        'transfer_decision', 'transfer_attempt', 'transfer_outcome', 'callback_scheduled',
        'outcome', 'provider_error', 'note')),
    occurred_at timestamptz NOT NULL,
    ended_at timestamptz,
    text text,
    data jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT call_events_call_seq_key UNIQUE (call_log_id, seq)
);
CREATE INDEX idx_call_events_org ON call_events(organization_id);

-- Dial attempts: one row per call the dialer places for a lead. A lead has at most one attempt
-- in flight at a time, whichever gateway placed it.
CREATE TABLE dial_attempts (
    id uuid PRIMARY KEY DEFAULT uuid_generate_v4(),
    organization_id uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    campaign_id uuid NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
    lead_id uuid NOT NULL REFERENCES leads(id) ON DELETE CASCADE,
    attempt_number integer NOT NULL CHECK (attempt_number >= 1),
    status text NOT NULL DEFAULT 'scheduled' CHECK (status IN (
        'scheduled', 'dialing', 'ringing', 'in_progress',
        'completed', 'no_answer', 'busy', 'failed', 'invalid_number', 'voicemail', 'canceled')),
    due_at timestamptz NOT NULL DEFAULT now(),
    claimed_by text,
    claimed_at timestamptz,
    placed_at timestamptz,
    answered_at timestamptz,
    ended_at timestamptz,
    request_uuid text,
    call_sid text,
    hangup_cause text,
    error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT dial_attempts_lead_attempt_key UNIQUE (campaign_id, lead_id, attempt_number)
);
CREATE INDEX idx_dial_attempts_due ON dial_attempts(due_at) WHERE status = 'scheduled';
CREATE INDEX idx_dial_attempts_campaign_status ON dial_attempts(campaign_id, status);
CREATE UNIQUE INDEX idx_dial_attempts_call_sid ON dial_attempts(call_sid) WHERE call_sid IS NOT NULL;
CREATE UNIQUE INDEX idx_dial_attempts_one_in_flight ON dial_attempts(lead_id)
    WHERE status IN ('dialing', 'ringing', 'in_progress');

CREATE TRIGGER dial_attempts_set_updated_at BEFORE UPDATE ON dial_attempts
    FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();

-- Transfer targets: where a human takes over. Working hours are a daily window in the target's
-- timezone on ISO weekdays; NULL start and end mean around the clock. Lower priority first.
CREATE TABLE transfer_targets (
    id uuid PRIMARY KEY DEFAULT uuid_generate_v4(),
    organization_id uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    name text NOT NULL,
    department text NOT NULL CHECK (department ~ '^[a-z][a-z0-9_]*$'),
    phone_number text NOT NULL CHECK (phone_number ~ '^\+[1-9][0-9]{6,14}$'),
    priority integer NOT NULL DEFAULT 100,
    timezone text NOT NULL DEFAULT 'UTC',
    working_days smallint[] NOT NULL DEFAULT '{1,2,3,4,5}'
        CHECK (working_days <@ '{1,2,3,4,5,6,7}'::smallint[]),
    working_hours_start time,
    working_hours_end time,
    is_active boolean NOT NULL DEFAULT TRUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CHECK ((working_hours_start IS NULL) = (working_hours_end IS NULL)),
    CHECK (working_hours_start IS NULL OR working_hours_start < working_hours_end)
);
CREATE INDEX idx_transfer_targets_org ON transfer_targets(organization_id, department, priority)
    WHERE is_active;

CREATE TRIGGER transfer_targets_set_updated_at BEFORE UPDATE ON transfer_targets
    FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();

-- A campaign may narrow its transfers to some of its organization's targets.
CREATE TABLE campaign_transfer_targets (
    campaign_id uuid NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
    transfer_target_id uuid NOT NULL REFERENCES transfer_targets(id) ON DELETE CASCADE,
    organization_id uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    PRIMARY KEY (campaign_id, transfer_target_id)
);

-- API tokens: only the SHA-256 of the secret is stored; the secret is shown once at creation.
CREATE TABLE api_tokens (
    id uuid PRIMARY KEY DEFAULT uuid_generate_v4(),
    organization_id uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    name text NOT NULL,
    token_hash bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    -- The first characters of the token, so a human can tell tokens apart.
    token_prefix text NOT NULL,
    scopes text[] NOT NULL DEFAULT '{}' CHECK (scopes <@ ARRAY[
        'campaigns:read', 'campaigns:write', 'leads:read', 'leads:write',
        'calls:read', 'calls:write', 'settings:read', 'settings:write']),
    expires_at timestamptz,
    last_used_at timestamptz,
    revoked_at timestamptz,
    created_by uuid REFERENCES auth.users(id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_api_tokens_org ON api_tokens(organization_id);

-- Row level security on every gateway table, isolating organizations through profiles as the
-- seed does. websocket_servers is infrastructure: no policy, so only the service role sees it.
ALTER TABLE call_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE dial_attempts ENABLE ROW LEVEL SECURITY;
ALTER TABLE transfer_targets ENABLE ROW LEVEL SECURITY;
ALTER TABLE campaign_transfer_targets ENABLE ROW LEVEL SECURITY;
ALTER TABLE api_tokens ENABLE ROW LEVEL SECURITY;
ALTER TABLE websocket_servers ENABLE ROW LEVEL SECURITY;

CREATE POLICY "Users can view call events in their organization" ON call_events
    FOR SELECT USING (organization_id IN (
        SELECT organization_id FROM profiles WHERE id = auth.uid()
    ));

CREATE POLICY "Users can view dial attempts in their organization" ON dial_attempts
    FOR SELECT USING (organization_id IN (
        SELECT organization_id FROM profiles WHERE id = auth.uid()
    ));

CREATE POLICY "Users can manage transfer targets in their organization" ON transfer_targets
    FOR ALL USING (organization_id IN (
        SELECT organization_id FROM profiles WHERE id = auth.uid()
    )) WITH CHECK (organization_id IN (
        SELECT organization_id FROM profiles WHERE id = auth.uid()
    ));

CREATE POLICY "Users can manage campaign targets in their organization" ON campaign_transfer_targets
    FOR ALL USING (organization_id IN (
        SELECT organization_id FROM profiles WHERE id = auth.uid()
    )) WITH CHECK (organization_id IN (
        SELECT organization_id FROM profiles WHERE id = auth.uid()
    ));

CREATE POLICY "Users can view API tokens of their organization" ON api_tokens
    FOR SELECT USING (organization_id IN (
        SELECT organization_id FROM profiles WHERE id = auth.uid()
    ));

-- Table privileges. Supabase grants these through default privileges; a plain PostgreSQL
-- needs them spelled out. RLS still decides which rows `authenticated` reaches.
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO authenticated, service_role;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO authenticated, service_role;
GRANT SELECT, INSERT, UPDATE, DELETE ON auth.users TO service_role;
