-- The seed schema (Quinite Vantage "Database Schema Documentation"), to the letter:
-- leads, call_logs, websocket_servers, the campaigns analytics columns, their constraints,
-- indexes, foreign keys, the updated_at trigger on leads, and the RLS policies.
-- Gateway additions to these tables live in later migrations, never here.

-- 1. leads
CREATE TABLE leads (
    id uuid PRIMARY KEY DEFAULT uuid_generate_v4(),
    organization_id uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    project_id uuid REFERENCES projects(id) ON DELETE SET NULL,
    created_by uuid REFERENCES auth.users(id) ON DELETE SET NULL,
    name text NOT NULL,
    email text,
    phone text,
    source text NOT NULL DEFAULT 'manual',
    status text NOT NULL DEFAULT 'new',
    call_status text NOT NULL DEFAULT 'not_called',
    transferred_to_human boolean NOT NULL DEFAULT FALSE,
    call_date timestamptz,
    call_log_id uuid, -- REFERENCES call_logs(id), added below once call_logs exists
    notes text,
    metadata jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT leads_status_check
        CHECK (status IN ('new', 'contacted', 'qualified', 'converted', 'lost')),
    CONSTRAINT leads_source_check
        CHECK (source IN ('manual', 'csv_upload', 'website', 'referral')),
    CONSTRAINT leads_call_status_check
        CHECK (call_status IN ('not_called', 'called', 'transferred', 'no_answer', 'voicemail'))
);

CREATE INDEX idx_leads_org ON leads(organization_id);
CREATE INDEX idx_leads_project ON leads(project_id);
CREATE INDEX idx_leads_status ON leads(status);
CREATE INDEX idx_leads_call_status ON leads(call_status);
CREATE INDEX idx_leads_created ON leads(created_at DESC);
CREATE INDEX idx_leads_email ON leads(email) WHERE email IS NOT NULL;
CREATE INDEX idx_leads_phone ON leads(phone) WHERE phone IS NOT NULL;
CREATE INDEX idx_leads_transferred ON leads(transferred_to_human) WHERE transferred_to_human = TRUE;
CREATE INDEX idx_leads_call_log_id ON leads(call_log_id);

CREATE TRIGGER leads_set_updated_at BEFORE UPDATE ON leads
    FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();

-- 2. call_logs
CREATE TABLE call_logs (
    id uuid PRIMARY KEY DEFAULT uuid_generate_v4(),
    campaign_id uuid NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
    lead_id uuid NOT NULL REFERENCES leads(id) ON DELETE CASCADE,
    organization_id uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    call_sid text,
    call_status text NOT NULL,
    transferred boolean NOT NULL DEFAULT FALSE,
    transferred_at timestamptz,
    transfer_reason text,
    transfer_department text,
    call_timestamp timestamptz NOT NULL DEFAULT now(),
    duration integer NOT NULL DEFAULT 0,
    transcript text,
    conversation_summary text,
    recording_url text,
    notes text,
    metadata jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT call_logs_call_status_check
        CHECK (call_status IN ('called', 'transferred', 'no_answer', 'voicemail'))
);

CREATE INDEX idx_call_logs_campaign ON call_logs(campaign_id);
CREATE INDEX idx_call_logs_lead ON call_logs(lead_id);
CREATE INDEX idx_call_logs_org ON call_logs(organization_id);
CREATE INDEX idx_call_logs_call_sid ON call_logs(call_sid);
CREATE INDEX idx_call_logs_timestamp ON call_logs(call_timestamp DESC);
CREATE INDEX idx_call_logs_transferred ON call_logs(transferred) WHERE transferred = TRUE;
CREATE INDEX idx_call_logs_transferred_at ON call_logs(transferred_at);

ALTER TABLE leads
    ADD CONSTRAINT leads_call_log_id_fkey
    FOREIGN KEY (call_log_id) REFERENCES call_logs(id) ON DELETE SET NULL;

-- 3. campaigns (analytics columns)
ALTER TABLE campaigns
    ADD COLUMN total_calls integer NOT NULL DEFAULT 0,
    ADD COLUMN transferred_calls integer NOT NULL DEFAULT 0,
    ADD COLUMN conversion_rate decimal(5,2) NOT NULL GENERATED ALWAYS AS (
        CASE WHEN total_calls > 0
             THEN round(transferred_calls::numeric / total_calls * 100, 2)
             ELSE 0
        END
    ) STORED;

CREATE INDEX idx_campaigns_conversion ON campaigns(conversion_rate DESC);

-- 4. websocket_servers
CREATE TABLE websocket_servers (
    id uuid PRIMARY KEY DEFAULT uuid_generate_v4(),
    name text NOT NULL,
    url text NOT NULL,
    is_active boolean NOT NULL DEFAULT TRUE,
    status text NOT NULL DEFAULT 'pending',
    last_verified_at timestamptz,
    priority integer NOT NULL DEFAULT 0,
    CONSTRAINT websocket_servers_status_check
        CHECK (status IN ('pending', 'verified', 'failed'))
);

CREATE INDEX idx_websocket_servers_active ON websocket_servers(is_active, priority);

-- Row Level Security
ALTER TABLE leads ENABLE ROW LEVEL SECURITY;
ALTER TABLE call_logs ENABLE ROW LEVEL SECURITY;

CREATE POLICY "Users can view leads in their organization" ON leads
    FOR SELECT
    USING (organization_id IN (
        SELECT organization_id FROM profiles WHERE id = auth.uid()
    ));

CREATE POLICY "Users can create leads in their organization" ON leads
    FOR INSERT
    WITH CHECK (organization_id IN (
        SELECT organization_id FROM profiles WHERE id = auth.uid()
    ));

CREATE POLICY "Users can update leads in their organization" ON leads
    FOR UPDATE
    USING (organization_id IN (
        SELECT organization_id FROM profiles WHERE id = auth.uid()
    ));

CREATE POLICY "Users can delete leads in their organization" ON leads
    FOR DELETE
    USING (organization_id IN (
        SELECT organization_id FROM profiles WHERE id = auth.uid()
    ));

CREATE POLICY "Users can view call logs in their organization" ON call_logs
    FOR SELECT
    USING (organization_id IN (
        SELECT organization_id FROM profiles WHERE id = auth.uid()
    ));

CREATE POLICY "Users can create call logs in their organization" ON call_logs
    FOR INSERT
    WITH CHECK (organization_id IN (
        SELECT organization_id FROM profiles WHERE id = auth.uid()
    ));
