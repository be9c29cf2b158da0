//! The dashboard's SQL (`/app`): sessions (only the hash of a session id is stored; a lookup
//! joins the session's API token, so a revoked or expired token ends the session at its next
//! request), campaigns' figures in one statement, a campaign's leads by status and its
//! transfer targets, a call's live state and its transfer, and the `LISTEN` on
//! [`DASHBOARD_CHANNEL`], which the migration's triggers notify on.

use chrono::{DateTime, NaiveTime, Utc};
use uuid::Uuid;

use super::{Database, DbError};

/// The channel of call changes: `{"org", "call", "what": "open"|"close"|"event", "seq"?}`.
pub const DASHBOARD_CHANNEL: &str = "vg_dashboard";

/// A session to store.
#[derive(Debug, Clone)]
pub struct NewSession<'a> {
    pub id_hash: &'a [u8],
    pub token_id: Uuid,
    pub organization_id: Uuid,
    pub csrf_secret: &'a [u8],
    pub expires_at: DateTime<Utc>,
}

/// A live session with the state of its token, as each request checks it.
#[derive(Debug, Clone)]
pub struct SessionRow {
    pub token_id: Uuid,
    pub organization_id: Uuid,
    pub csrf_secret: Vec<u8>,
    pub scopes: Vec<String>,
    pub token_revoked_at: Option<DateTime<Utc>>,
    pub token_expires_at: Option<DateTime<Utc>>,
}

/// A lead of a campaign as the campaign page lists it.
#[derive(Debug, Clone)]
pub struct CampaignLead {
    pub id: Uuid,
    pub name: String,
    pub phone: Option<String>,
    pub call_status: String,
    pub updated_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

/// Where a page of a campaign's leads starts, in their order `(created_at, id)`: keyset
/// paging, so a deep page costs what the first does (an OFFSET reads every row it skips).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeadsFrom {
    Start,
    /// The page after this lead.
    After(DateTime<Utc>, Uuid),
    /// The page before this lead.
    Before(DateTime<Utc>, Uuid),
}

/// A campaign's live figures as the dashboard's cards show them (the API's `CampaignStats`
/// without the breakdowns).
#[derive(Debug, Clone, PartialEq)]
pub struct CampaignFigures {
    pub id: Uuid,
    pub total_calls: i32,
    pub transferred_calls: i32,
    pub conversion_rate: f64,
    /// Calls not ended yet.
    pub live_calls: i64,
    /// Attempts waiting to be dialled (callbacks included).
    pub attempts_pending: i64,
    pub callbacks_pending: i64,
    /// Leads enrolled (with at least one attempt in the campaign).
    pub leads: i64,
}

/// A transfer target as a campaign's page lists it.
#[derive(Debug, Clone)]
pub struct CampaignTarget {
    pub name: String,
    pub department: String,
    pub phone_number: String,
    pub priority: i32,
    pub is_active: bool,
    pub timezone: String,
    /// ISO weekdays, 1 = Monday.
    pub working_days: Vec<i16>,
    pub working_hours_start: Option<NaiveTime>,
    pub working_hours_end: Option<NaiveTime>,
    /// Whether the campaign names its targets (else it uses all the organization's).
    pub named_by_campaign: bool,
}

/// A call's transfer as its page's trail shows it.
#[derive(Debug, Clone)]
pub struct CallTransfer {
    pub trigger: String,
    pub reason: String,
    pub department: String,
    /// The targets in the order tried: `[{"id", "name", "phone_number"}]`.
    pub targets: serde_json::Value,
    /// The index in `targets` of the last attempt.
    pub attempt: i32,
    /// `pending`, `dialing`, `connected`, `exhausted` or `callback`.
    pub status: String,
    /// `back_to_ai` or `callback_and_hangup`.
    pub fallback: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub connected_at: Option<DateTime<Utc>>,
}

impl Database {
    pub async fn insert_dashboard_session(&self, session: &NewSession<'_>) -> Result<(), DbError> {
        sqlx::query!(
            r#"INSERT INTO dashboard_sessions (id_hash, token_id, organization_id, csrf_secret, expires_at)
               VALUES ($1, $2, $3, $4, $5)"#,
            session.id_hash,
            session.token_id,
            session.organization_id,
            session.csrf_secret,
            session.expires_at,
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The unexpired session whose id hashes to `id_hash`, with its token's state.
    pub async fn dashboard_session(&self, id_hash: &[u8]) -> Result<Option<SessionRow>, DbError> {
        let row = sqlx::query_as!(
            SessionRow,
            r#"SELECT s.token_id, s.organization_id, s.csrf_secret, t.scopes,
                      t.revoked_at AS token_revoked_at, t.expires_at AS token_expires_at
               FROM dashboard_sessions s JOIN api_tokens t ON t.id = s.token_id
               WHERE s.id_hash = $1 AND s.expires_at > now()"#,
            id_hash,
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(row)
    }

    /// Ends a session (sign-out, or its token no longer valid).
    pub async fn delete_dashboard_session(&self, id_hash: &[u8]) -> Result<(), DbError> {
        sqlx::query!("DELETE FROM dashboard_sessions WHERE id_hash = $1", id_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Deletes the sessions past their expiry (a signed-out browser's row goes at once; an
    /// abandoned one waits for this).
    pub async fn prune_dashboard_sessions(&self) -> Result<u64, DbError> {
        let result = sqlx::query!("DELETE FROM dashboard_sessions WHERE expires_at <= now()")
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected())
    }

    /// A campaign's enrolled leads, optionally only those with `call_status`, oldest first.
    pub async fn campaign_leads_by_status(
        &self,
        organization_id: Uuid,
        campaign_id: Uuid,
        call_status: Option<&str>,
        limit: i64,
        from: LeadsFrom,
    ) -> Result<Vec<CampaignLead>, DbError> {
        let (after_at, after_id) = match from {
            // Before any lead: the year 1 (chrono's own minimum is outside what PostgreSQL
            // stores).
            LeadsFrom::Start => (
                DateTime::from_timestamp(-62_135_596_800, 0).expect("the year 1 is a valid time"),
                Uuid::nil(),
            ),
            LeadsFrom::After(at, id) => (at, id),
            LeadsFrom::Before(at, id) => {
                // Read backwards from the lead, then put the page in order.
                let mut rows = sqlx::query_as!(
                    CampaignLead,
                    r#"SELECT l.id, l.name, l.phone, l.call_status, l.updated_at, l.created_at
                       FROM leads l
                       WHERE l.organization_id = $1
                         AND ($3::text IS NULL OR l.call_status = $3)
                         AND (l.created_at, l.id) < ($5, $6)
                         AND EXISTS (SELECT 1 FROM dial_attempts d WHERE d.campaign_id = $2 AND d.lead_id = l.id)
                       ORDER BY l.created_at DESC, l.id DESC LIMIT $4"#,
                    organization_id,
                    campaign_id,
                    call_status,
                    limit,
                    at,
                    id,
                )
                .fetch_all(&self.pool)
                .await?;
                rows.reverse();
                return Ok(rows);
            }
        };
        let rows = sqlx::query_as!(
            CampaignLead,
            r#"SELECT l.id, l.name, l.phone, l.call_status, l.updated_at, l.created_at
               FROM leads l
               WHERE l.organization_id = $1
                 AND ($3::text IS NULL OR l.call_status = $3)
                 AND (l.created_at, l.id) > ($5, $6)
                 AND EXISTS (SELECT 1 FROM dial_attempts d WHERE d.campaign_id = $2 AND d.lead_id = l.id)
               ORDER BY l.created_at, l.id LIMIT $4"#,
            organization_id,
            campaign_id,
            call_status,
            limit,
            after_at,
            after_id,
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    /// The figures of the organization's campaigns `ids` (others are left out), in one
    /// statement however many campaigns a page lists.
    pub async fn campaign_figures(
        &self,
        organization_id: Uuid,
        ids: &[Uuid],
    ) -> Result<Vec<CampaignFigures>, DbError> {
        let rows = sqlx::query_as!(
            CampaignFigures,
            r#"SELECT c.id, c.total_calls, c.transferred_calls,
                      c.conversion_rate::float8 AS "conversion_rate!",
                      live.calls AS "live_calls!",
                      attempts.pending AS "attempts_pending!",
                      attempts.callbacks AS "callbacks_pending!",
                      attempts.leads AS "leads!"
               FROM campaigns c
               CROSS JOIN LATERAL (
                   SELECT count(*) AS calls FROM call_logs l
                   WHERE l.campaign_id = c.id AND l.ended_at IS NULL
               ) live
               CROSS JOIN LATERAL (
                   SELECT count(*) FILTER (WHERE d.status = 'scheduled') AS pending,
                          count(*) FILTER (WHERE d.status = 'scheduled' AND d.is_callback) AS callbacks,
                          count(DISTINCT d.lead_id) AS leads
                   FROM dial_attempts d WHERE d.campaign_id = c.id
               ) attempts
               WHERE c.organization_id = $1 AND c.id = ANY($2)"#,
            organization_id,
            ids,
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    /// The transfer targets a campaign uses, as a transfer picks them: those the campaign
    /// names in `campaign_transfer_targets`, or else all the organization's; by department
    /// and priority.
    pub async fn campaign_transfer_targets(
        &self,
        organization_id: Uuid,
        campaign_id: Uuid,
    ) -> Result<Vec<CampaignTarget>, DbError> {
        let rows = sqlx::query_as!(
            CampaignTarget,
            r#"WITH named AS (
                   SELECT transfer_target_id FROM campaign_transfer_targets
                   WHERE organization_id = $1 AND campaign_id = $2
               )
               SELECT t.name, t.department, t.phone_number, t.priority, t.is_active, t.timezone,
                      t.working_days, t.working_hours_start, t.working_hours_end,
                      EXISTS (SELECT 1 FROM named) AS "named_by_campaign!"
               FROM transfer_targets t
               WHERE t.organization_id = $1
                 AND (NOT EXISTS (SELECT 1 FROM named)
                      OR t.id IN (SELECT transfer_target_id FROM named))
               ORDER BY t.department, t.priority, t.name, t.id"#,
            organization_id,
            campaign_id,
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    /// The transfer of the organization's call `id`, if it had one.
    pub async fn call_transfer(
        &self,
        organization_id: Uuid,
        id: Uuid,
    ) -> Result<Option<CallTransfer>, DbError> {
        let row = sqlx::query_as!(
            CallTransfer,
            r#"SELECT trigger, reason, department, targets, attempt, status, fallback, created_at,
                      updated_at, connected_at
               FROM call_transfers WHERE organization_id = $1 AND call_log_id = $2"#,
            organization_id,
            id,
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(row)
    }

    /// Whether the organization's call `id` is live; `None` if the organization has no such call.
    pub async fn dashboard_call_state(
        &self,
        organization_id: Uuid,
        id: Uuid,
    ) -> Result<Option<bool>, DbError> {
        let live = sqlx::query_scalar!(
            r#"SELECT ended_at IS NULL AS "live!" FROM call_logs WHERE organization_id = $1 AND id = $2"#,
            organization_id,
            id,
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(live)
    }
}
