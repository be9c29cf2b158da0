-- The dashboard (`/app`): sessions any gateway can read, and change notifications for its live
-- pages.
--
-- A session stores only the SHA-256 of its random id (the cookie holds the id), the token it
-- was opened with (re-checked on every request, so revoking the token ends the session) and
-- the organization that token belongs to, and the secret its forms' CSRF tokens are checked
-- against.
CREATE TABLE dashboard_sessions (
    id_hash bytea PRIMARY KEY CHECK (length(id_hash) = 32),
    token_id uuid NOT NULL REFERENCES api_tokens(id) ON DELETE CASCADE,
    organization_id uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    csrf_secret bytea NOT NULL CHECK (length(csrf_secret) = 32),
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX idx_dashboard_sessions_expires_at ON dashboard_sessions(expires_at);
CREATE INDEX idx_dashboard_sessions_token ON dashboard_sessions(token_id);
ALTER TABLE dashboard_sessions ENABLE ROW LEVEL SECURITY; -- no policy: the service role only
GRANT SELECT, INSERT, DELETE ON dashboard_sessions TO service_role;

-- Live pages: a call opening or ending, and every event of a call, is announced on
-- `vg_dashboard` as {"org", "call", "what", "seq"?}; every gateway LISTENs and fans the
-- notifications out to its browsers, so calls held by any gateway appear. Triggers rather
-- than explicit pg_notify calls: every writer (the call, the hangup webhook, the spool's
-- replay) is covered, and the notification is sent only if its transaction commits.
CREATE FUNCTION dashboard_notify_call() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.ended_at IS DISTINCT FROM OLD.ended_at THEN
        PERFORM pg_notify('vg_dashboard', json_build_object(
            'org', NEW.organization_id,
            'call', NEW.id,
            'what', CASE WHEN NEW.ended_at IS NULL THEN 'open' ELSE 'close' END)::text);
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER call_logs_dashboard_notify
    AFTER INSERT OR UPDATE OF ended_at ON call_logs
    FOR EACH ROW EXECUTE FUNCTION dashboard_notify_call();

CREATE FUNCTION dashboard_notify_event() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('vg_dashboard', json_build_object(
        'org', NEW.organization_id,
        'call', NEW.call_log_id,
        'what', 'event',
        'seq', NEW.seq)::text);
    RETURN NULL;
END;
$$;
CREATE TRIGGER call_events_dashboard_notify
    AFTER INSERT ON call_events
    FOR EACH ROW EXECUTE FUNCTION dashboard_notify_event();

-- The campaign page lists a campaign's leads by status: dial_attempts by campaign and lead.
CREATE INDEX IF NOT EXISTS idx_dial_attempts_campaign_lead ON dial_attempts(campaign_id, lead_id);
