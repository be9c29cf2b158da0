-- Recording retention: `recording_retention_days` in the organization's settings (the default)
-- or the campaign's (which overrides it). A gateway's background task deletes a recording once
-- its call ended that many days ago, clears `call_logs.recording_url`, and writes one row here
-- in the same transaction. Append-only, like the do-not-call audit trail, and without foreign
-- keys, so the trail outlives what it names.
CREATE TABLE recording_audit (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organization_id uuid NOT NULL,
    call_log_id uuid NOT NULL,
    call_sid text,
    action text NOT NULL CHECK (action IN ('delete')),
    reason text NOT NULL CHECK (reason IN ('retention')),
    actor text NOT NULL CHECK (actor IN ('system')),
    -- The gateway that deleted it.
    server_name text NOT NULL,
    before jsonb NOT NULL,
    after jsonb NOT NULL,
    at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_recording_audit_org ON recording_audit(organization_id, at DESC, id DESC);

CREATE TRIGGER recording_audit_append_only BEFORE UPDATE OR DELETE ON recording_audit
    FOR EACH ROW EXECUTE FUNCTION public.refuse_audit_change();
CREATE TRIGGER recording_audit_no_truncate BEFORE TRUNCATE ON recording_audit
    FOR EACH STATEMENT EXECUTE FUNCTION public.refuse_audit_change();

ALTER TABLE recording_audit ENABLE ROW LEVEL SECURITY;
CREATE POLICY "Users can view the recording audit of their organization" ON recording_audit
    FOR SELECT USING (organization_id IN (
        SELECT organization_id FROM profiles WHERE id = auth.uid()
    ));
GRANT SELECT ON recording_audit TO authenticated;
GRANT SELECT, INSERT ON recording_audit TO service_role;
GRANT USAGE, SELECT ON SEQUENCE recording_audit_id_seq TO service_role;

-- The retention task's scan: only calls that still have a recording.
CREATE INDEX idx_call_logs_recorded ON call_logs (organization_id, COALESCE(ended_at, call_timestamp))
    WHERE recording_url IS NOT NULL;

-- `recording_retention_days` of a settings object: a whole number of days from 1, else NULL.
CREATE FUNCTION public.vg_retention_days(settings jsonb) RETURNS integer
  LANGUAGE sql IMMUTABLE
  AS $$
    SELECT CASE
        WHEN jsonb_typeof(settings -> 'recording_retention_days') = 'number'
             AND (settings ->> 'recording_retention_days')::numeric BETWEEN 1 AND 36500
             AND (settings ->> 'recording_retention_days')::numeric
                 = trunc((settings ->> 'recording_retention_days')::numeric)
        THEN (settings ->> 'recording_retention_days')::integer
    END
  $$;
