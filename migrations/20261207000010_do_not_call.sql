-- The organization-wide do-not-call (suppression) list and its append-only audit trail.
--
-- A number on the list is never dialled by any campaign of the organization: adding it
-- cancels its scheduled attempts, the dialer's claim excludes (and cancels) any attempt whose
-- lead's number is on it, and leads with such a number are stored but not enrolled.

CREATE TABLE do_not_call (
    organization_id uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    phone_number text NOT NULL CHECK (phone_number ~ '^\+[1-9][0-9]{6,14}$'),
    reason text,
    source text NOT NULL CHECK (source IN ('caller_request', 'api', 'import', 'complaint')),
    created_at timestamptz NOT NULL DEFAULT now(),
    -- The API token that added it (NULL for a caller's request, or once the token is deleted).
    created_by_token uuid REFERENCES api_tokens(id) ON DELETE SET NULL,
    -- The call in which the caller opted out.
    call_sid text,
    -- One entry per number and organization: adding it again keeps the first.
    CONSTRAINT do_not_call_organization_phone_key PRIMARY KEY (organization_id, phone_number),
    CONSTRAINT do_not_call_caller_request_call_check
        CHECK (source <> 'caller_request' OR call_sid IS NOT NULL)
);

-- Who changed the list, what, when, and the entry before and after. Rows are written by the
-- gateway in the transaction of the change they record, and never changed or deleted: the
-- trigger below refuses UPDATE, DELETE and TRUNCATE for every role. No foreign keys, so the
-- trail outlives the organization, the token and the call it names (a cascade would be a
-- DELETE the trigger refuses).
CREATE TABLE do_not_call_audit (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organization_id uuid NOT NULL,
    phone_number text NOT NULL,
    action text NOT NULL CHECK (action IN ('add', 'remove')),
    actor text NOT NULL CHECK (actor IN ('token', 'call', 'system')),
    actor_token_id uuid,
    actor_call_sid text,
    before jsonb,
    after jsonb,
    at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT do_not_call_audit_actor_identity_check CHECK (
        (actor = 'token') = (actor_token_id IS NOT NULL)
        AND (actor = 'call') = (actor_call_sid IS NOT NULL)),
    CONSTRAINT do_not_call_audit_before_after_check CHECK (
        (action = 'add' AND before IS NULL AND after IS NOT NULL)
        OR (action = 'remove' AND before IS NOT NULL AND after IS NULL))
);
CREATE INDEX idx_do_not_call_audit_org ON do_not_call_audit(organization_id, at DESC, id DESC);

CREATE FUNCTION public.refuse_audit_change() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
BEGIN
  RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
    USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER do_not_call_audit_append_only BEFORE UPDATE OR DELETE ON do_not_call_audit
    FOR EACH ROW EXECUTE FUNCTION public.refuse_audit_change();
CREATE TRIGGER do_not_call_audit_no_truncate BEFORE TRUNCATE ON do_not_call_audit
    FOR EACH STATEMENT EXECUTE FUNCTION public.refuse_audit_change();

-- Row level security like the other gateway tables: members see their organization's list and
-- trail. Changes go through the gateway (which bypasses RLS), so each one has its audit row.
ALTER TABLE do_not_call ENABLE ROW LEVEL SECURITY;
ALTER TABLE do_not_call_audit ENABLE ROW LEVEL SECURITY;

CREATE POLICY "Users can view the do-not-call list of their organization" ON do_not_call
    FOR SELECT USING (organization_id IN (
        SELECT organization_id FROM profiles WHERE id = auth.uid()
    ));

CREATE POLICY "Users can view the do-not-call audit of their organization" ON do_not_call_audit
    FOR SELECT USING (organization_id IN (
        SELECT organization_id FROM profiles WHERE id = auth.uid()
    ));

GRANT SELECT ON do_not_call, do_not_call_audit TO authenticated;
GRANT SELECT, INSERT, UPDATE, DELETE ON do_not_call TO service_role;
GRANT SELECT, INSERT ON do_not_call_audit TO service_role;
GRANT USAGE, SELECT ON SEQUENCE do_not_call_audit_id_seq TO service_role;
