-- The dashboard lists a campaign's leads in the order they were created, a page at a time:
-- walking this index reads a page's rows in order instead of sorting the organization's leads.
CREATE INDEX idx_leads_org_created ON leads (organization_id, created_at, id);
