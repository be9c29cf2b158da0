-- Stream tokens are single-use: the first WebSocket upgrade that presents one claims it here,
-- so a replayed stream URL is refused on every gateway sharing the database.
CREATE TABLE stream_token_uses (
    nonce text PRIMARY KEY,
    call_sid text NOT NULL,
    server_name text,
    used_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_stream_token_uses_used_at ON stream_token_uses(used_at);
ALTER TABLE stream_token_uses ENABLE ROW LEVEL SECURITY; -- no policy: the service role only

-- Inbound calls to one of an organization's numbers run this campaign's agent.
ALTER TABLE organization_phone_numbers
    ADD COLUMN campaign_id uuid REFERENCES campaigns(id) ON DELETE SET NULL;

GRANT SELECT, INSERT, UPDATE, DELETE ON stream_token_uses TO service_role;
