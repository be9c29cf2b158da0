-- The server pick skips gateways that are full: each gateway stores its capacity
-- (VG_MAX_CALLS) beside the live calls its heartbeat keeps. NULL (a row written before this
-- column, or by a gateway that does not say): no limit known, never skipped as full.
ALTER TABLE websocket_servers
    ADD COLUMN max_calls integer CHECK (max_calls >= 0);
