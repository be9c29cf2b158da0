-- What the seed schema assumes exists: organizations, the profiles that tie auth users to an
-- organization, projects (what is being offered) and the base campaigns table.

CREATE TABLE organizations (
    id uuid PRIMARY KEY DEFAULT uuid_generate_v4(),
    name text NOT NULL CHECK (length(btrim(name)) > 0),
    -- Default caller ID for outbound calls (E.164); campaigns may override it.
    caller_id text CHECK (caller_id ~ '^\+[1-9][0-9]{6,14}$'),
    timezone text NOT NULL DEFAULT 'UTC',
    -- Account-wide pacing limits the dialer honours across every campaign of the organization.
    max_concurrent_calls integer NOT NULL DEFAULT 10 CHECK (max_concurrent_calls > 0),
    settings jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TRIGGER organizations_set_updated_at BEFORE UPDATE ON organizations
    FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();

-- Phone numbers an organization owns: inbound calls are matched by `To`, outbound calls may use
-- one as caller ID.
CREATE TABLE organization_phone_numbers (
    id uuid PRIMARY KEY DEFAULT uuid_generate_v4(),
    organization_id uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    phone_number text NOT NULL UNIQUE CHECK (phone_number ~ '^\+[1-9][0-9]{6,14}$'),
    label text,
    inbound_enabled boolean NOT NULL DEFAULT TRUE,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_organization_phone_numbers_org ON organization_phone_numbers(organization_id);

CREATE TABLE profiles (
    id uuid PRIMARY KEY REFERENCES auth.users(id) ON DELETE CASCADE,
    organization_id uuid REFERENCES organizations(id) ON DELETE CASCADE,
    full_name text,
    email text,
    -- A human agent's phone, used when a campaign transfers to the lead's assigned agent.
    phone text CHECK (phone ~ '^\+[1-9][0-9]{6,14}$'),
    role text NOT NULL DEFAULT 'member' CHECK (role IN ('owner', 'admin', 'manager', 'agent', 'member')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_profiles_org ON profiles(organization_id);

CREATE TRIGGER profiles_set_updated_at BEFORE UPDATE ON profiles
    FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();

CREATE TABLE projects (
    id uuid PRIMARY KEY DEFAULT uuid_generate_v4(),
    organization_id uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    name text NOT NULL CHECK (length(btrim(name)) > 0),
    description text,
    -- Facts the agent may state (prices, locations, features), as {"question or topic": "answer"}.
    facts jsonb NOT NULL DEFAULT '{}'::jsonb,
    status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'archived')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_projects_org ON projects(organization_id);

CREATE TRIGGER projects_set_updated_at BEFORE UPDATE ON projects
    FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();

CREATE TABLE campaigns (
    id uuid PRIMARY KEY DEFAULT uuid_generate_v4(),
    organization_id uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    project_id uuid REFERENCES projects(id) ON DELETE SET NULL,
    created_by uuid REFERENCES auth.users(id) ON DELETE SET NULL,
    name text NOT NULL CHECK (length(btrim(name)) > 0),
    description text,
    status text NOT NULL DEFAULT 'draft'
        CHECK (status IN ('draft', 'scheduled', 'running', 'paused', 'completed', 'cancelled', 'archived', 'failed')),

    -- The agent.
    ai_provider text CHECK (ai_provider IN ('local', 'openai', 'gemini')), -- NULL: the gateway's VG_AI_PROVIDER
    agent_name text,
    agent_instructions text,
    agent_greeting text,
    agent_voice text,
    language text NOT NULL DEFAULT 'en',
    turn_detection text NOT NULL DEFAULT 'server_vad' CHECK (turn_detection IN ('server_vad', 'semantic_vad')),

    -- When to call: a daily window in `timezone` (the lead's own timezone wins when known),
    -- on ISO weekdays (1 = Monday ... 7 = Sunday), between optional start and end dates.
    timezone text NOT NULL DEFAULT 'UTC',
    calling_window_start time NOT NULL DEFAULT '09:00',
    calling_window_end time NOT NULL DEFAULT '20:00',
    calling_days smallint[] NOT NULL DEFAULT '{1,2,3,4,5}'
        CHECK (calling_days <@ '{1,2,3,4,5,6,7}'::smallint[] AND cardinality(calling_days) > 0),
    starts_on date,
    ends_on date,
    CHECK (calling_window_start < calling_window_end),
    CHECK (ends_on IS NULL OR starts_on IS NULL OR starts_on <= ends_on),

    -- Concurrency and pacing.
    caller_id text CHECK (caller_id ~ '^\+[1-9][0-9]{6,14}$'), -- NULL: the organization's
    max_concurrent_calls integer NOT NULL DEFAULT 5 CHECK (max_concurrent_calls > 0),
    calls_per_minute integer NOT NULL DEFAULT 60 CHECK (calls_per_minute > 0),
    ring_timeout_seconds integer NOT NULL DEFAULT 30 CHECK (ring_timeout_seconds BETWEEN 5 AND 120),
    max_call_duration_seconds integer NOT NULL DEFAULT 600 CHECK (max_call_duration_seconds BETWEEN 30 AND 14400),
    silence_timeout_seconds integer NOT NULL DEFAULT 20 CHECK (silence_timeout_seconds BETWEEN 3 AND 600),

    -- Retry policy: attempts in total per lead, and the wait before the next one.
    max_attempts integer NOT NULL DEFAULT 3 CHECK (max_attempts BETWEEN 1 AND 20),
    retry_backoff_seconds integer NOT NULL DEFAULT 3600 CHECK (retry_backoff_seconds >= 60),

    -- Everything else a campaign tunes (vocabulary, transfer rules, objection replies...).
    settings jsonb NOT NULL DEFAULT '{}'::jsonb,

    started_at timestamptz,
    paused_at timestamptz,
    completed_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_campaigns_org ON campaigns(organization_id);
CREATE INDEX idx_campaigns_project ON campaigns(project_id);
CREATE INDEX idx_campaigns_running ON campaigns(status) WHERE status = 'running';

CREATE TRIGGER campaigns_set_updated_at BEFORE UPDATE ON campaigns
    FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();

-- The organizations the signed-in user belongs to. SECURITY DEFINER so that the policy on
-- `profiles` can use it without recursing into itself.
CREATE FUNCTION public.auth_organization_ids() RETURNS SETOF uuid
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = public, pg_temp
    AS $$
      SELECT organization_id FROM public.profiles WHERE id = auth.uid() AND organization_id IS NOT NULL
    $$;
REVOKE ALL ON FUNCTION public.auth_organization_ids() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.auth_organization_ids() TO authenticated, service_role;

ALTER TABLE organizations ENABLE ROW LEVEL SECURITY;
ALTER TABLE organization_phone_numbers ENABLE ROW LEVEL SECURITY;
ALTER TABLE profiles ENABLE ROW LEVEL SECURITY;
ALTER TABLE projects ENABLE ROW LEVEL SECURITY;
ALTER TABLE campaigns ENABLE ROW LEVEL SECURITY;

CREATE POLICY "Users can view their organization" ON organizations
    FOR SELECT USING (id IN (SELECT public.auth_organization_ids()));
CREATE POLICY "Users can update their organization" ON organizations
    FOR UPDATE USING (id IN (SELECT public.auth_organization_ids()));

CREATE POLICY "Users can manage phone numbers in their organization" ON organization_phone_numbers
    FOR ALL USING (organization_id IN (SELECT public.auth_organization_ids()))
    WITH CHECK (organization_id IN (SELECT public.auth_organization_ids()));

CREATE POLICY "Users can view profiles in their organization" ON profiles
    FOR SELECT USING (id = auth.uid() OR organization_id IN (SELECT public.auth_organization_ids()));
CREATE POLICY "Users can update their own profile" ON profiles
    FOR UPDATE USING (id = auth.uid()) WITH CHECK (id = auth.uid());

CREATE POLICY "Users can manage projects in their organization" ON projects
    FOR ALL USING (organization_id IN (SELECT public.auth_organization_ids()))
    WITH CHECK (organization_id IN (SELECT public.auth_organization_ids()));

CREATE POLICY "Users can manage campaigns in their organization" ON campaigns
    FOR ALL USING (organization_id IN (SELECT public.auth_organization_ids()))
    WITH CHECK (organization_id IN (SELECT public.auth_organization_ids()));
