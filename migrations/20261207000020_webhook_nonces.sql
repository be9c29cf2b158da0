-- Plivo webhook nonces: every accepted signed request (webhooks and the media WebSocket's
-- upgrade) records the nonce of its signature here before it acts, so the same signed request
-- replayed to any gateway on the database is refused. Rows older than the replay window (24 h)
-- are pruned by every gateway's background task.
CREATE TABLE plivo_webhook_nonces (
    -- Which signature the nonce belongs to: `v3`, or `v2` when VG_PLIVO_ACCEPT_V2 is on.
    version text NOT NULL CHECK (version IN ('v2', 'v3')),
    nonce text NOT NULL,
    seen_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (version, nonce)
);
CREATE INDEX idx_plivo_webhook_nonces_seen_at ON plivo_webhook_nonces(seen_at);
ALTER TABLE plivo_webhook_nonces ENABLE ROW LEVEL SECURITY; -- no policy: the service role only

GRANT SELECT, INSERT, DELETE ON plivo_webhook_nonces TO service_role;
