-- The campaign API (`/api/v1`): a call hung up on request (the API's `POST /calls/{id}/hangup`,
-- reaching the gateway that holds the call through NOTIFY) ends with its own reason, so a
-- report can tell it from the agent ending the call.
ALTER TABLE call_logs DROP CONSTRAINT call_logs_end_reason_check;
ALTER TABLE call_logs ADD CONSTRAINT call_logs_end_reason_check CHECK (end_reason IN (
    'caller_hangup', 'agent_ended', 'transferred', 'provider_error', 'max_duration',
    'silence', 'shutdown', 'internal_error',
    'no_answer', 'busy', 'failed', 'canceled', 'voicemail',
    'hangup_requested'));

-- Listing a campaign's calls newest first, and an organization's calls in a date range.
CREATE INDEX idx_call_logs_org_timestamp ON call_logs(organization_id, call_timestamp DESC);
-- Finding whether a phone number is already a lead of the campaign (imports skip duplicates).
CREATE INDEX idx_leads_org_phone ON leads(organization_id, phone) WHERE phone IS NOT NULL;
