-- The campaign dialer: the account-wide pacing every gateway shares, and the indexes its
-- claim reads under lock.

-- Calls per second are a limit of the Plivo account, not of one gateway: the times of the
-- account's last dials (at most `cps` of them), locked by every claim, whichever gateway makes
-- it. Infrastructure like websocket_servers: RLS on and no policy, so only the service role
-- sees it.
CREATE TABLE dialer_pacing (
    account text PRIMARY KEY,
    recent_dials timestamptz[] NOT NULL DEFAULT '{}',
    updated_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE dialer_pacing ENABLE ROW LEVEL SECURITY;
GRANT SELECT, INSERT, UPDATE, DELETE ON dialer_pacing TO service_role;

-- Calls in flight per organization and campaign (the concurrency limits count these).
CREATE INDEX idx_dial_attempts_in_flight ON dial_attempts(organization_id, campaign_id)
    WHERE status IN ('dialing', 'ringing', 'in_progress');
-- Calls claimed in the last minute per campaign (`calls_per_minute`).
CREATE INDEX idx_dial_attempts_campaign_claimed ON dial_attempts(campaign_id, claimed_at)
    WHERE claimed_at IS NOT NULL;
-- A lead's attempts in a campaign (the next attempt's number, earlier failures).
CREATE INDEX idx_dial_attempts_lead ON dial_attempts(lead_id, campaign_id);
