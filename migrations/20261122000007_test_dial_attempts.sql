-- A test call placed through the API for one lead: the dialer places it even when the campaign
-- is not running and outside its calling window, but still within the pacing limits.
ALTER TABLE dial_attempts
    ADD COLUMN is_test boolean NOT NULL DEFAULT FALSE;
