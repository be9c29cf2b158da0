//! Campaigns for the API: create, read, update, list, the status transitions a campaign
//! manager makes (the dialer alone sets `completed`), and live statistics.
//!
//! Every statement is scoped by `organization_id`: a campaign of another organization is
//! indistinguishable from one that does not exist.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::{Database, DbError};

/// Statuses after which a campaign takes no edits, leads or transitions.
pub const FINISHED_STATUSES: &[&str] = &["completed", "cancelled", "archived", "failed"];

/// What a campaign manager sets on a campaign (the columns of `campaigns` the API writes).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CampaignFields {
    pub name: String,
    pub description: Option<String>,
    pub project_id: Option<Uuid>,
    pub ai_provider: Option<String>,
    pub agent_name: Option<String>,
    pub agent_instructions: Option<String>,
    pub agent_greeting: Option<String>,
    pub agent_voice: Option<String>,
    pub language: String,
    pub turn_detection: String,
    pub timezone: String,
    pub calling_window_start: NaiveTime,
    pub calling_window_end: NaiveTime,
    pub calling_days: Vec<i16>,
    pub starts_on: Option<NaiveDate>,
    pub ends_on: Option<NaiveDate>,
    pub caller_id: Option<String>,
    pub max_concurrent_calls: i32,
    pub calls_per_minute: i32,
    pub ring_timeout_seconds: i32,
    pub max_call_duration_seconds: i32,
    pub silence_timeout_seconds: i32,
    pub max_attempts: i32,
    pub retry_backoff_seconds: i32,
    pub settings: serde_json::Value,
}

/// A campaign as stored.
#[derive(Debug, Clone, Serialize)]
pub struct CampaignRow {
    pub id: Uuid,
    pub organization_id: Uuid,
    pub status: String,
    #[serde(flatten)]
    pub fields: CampaignFields,
    pub total_calls: i32,
    pub transferred_calls: i32,
    pub conversion_rate: f64,
    pub started_at: Option<DateTime<Utc>>,
    pub paused_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Live figures of one campaign.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CampaignStats {
    pub total_calls: i32,
    pub transferred_calls: i32,
    /// Percent of calls transferred to a human (`campaigns.conversion_rate`).
    pub conversion_rate: f64,
    /// Calls of the campaign not ended yet (`call_logs.ended_at IS NULL`).
    pub live_calls: i64,
    /// Leads enrolled (with at least one dial attempt in the campaign).
    pub leads: i64,
    /// Enrolled leads by their `call_status`.
    pub outcomes: BTreeMap<String, i64>,
    /// Attempts waiting to be dialed (`scheduled`).
    pub attempts_pending: i64,
    /// Attempts being dialed or talking (`dialing`, `ringing`, `in_progress`).
    pub attempts_in_flight: i64,
    /// Callbacks leads asked for, still waiting (part of `attempts_pending`).
    pub callbacks_pending: i64,
    /// Every attempt by status.
    pub attempts: BTreeMap<String, i64>,
}

/// A status change a campaign manager asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CampaignAction {
    Start,
    Pause,
    Resume,
    Cancel,
}

/// What a transition did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransitionOutcome {
    Applied,
    NotFound,
    /// Not allowed from the campaign's current status.
    Illegal {
        status: String,
    },
}

/// What an update did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateOutcome {
    Applied,
    NotFound,
    /// The campaign is finished and takes no edits.
    Finished {
        status: String,
    },
    /// Someone (or the dialer) changed it since it was read.
    Concurrent,
}

impl CampaignAction {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Pause => "pause",
            Self::Resume => "resume",
            Self::Cancel => "cancel",
        }
    }

    /// The statuses this action may leave.
    pub const fn allowed_from(self) -> &'static [&'static str] {
        match self {
            Self::Start => &["draft", "scheduled"],
            Self::Pause => &["running"],
            Self::Resume => &["paused"],
            Self::Cancel => &["draft", "scheduled", "running", "paused"],
        }
    }

    pub const fn target(self) -> &'static str {
        match self {
            Self::Start | Self::Resume => "running",
            Self::Pause => "paused",
            Self::Cancel => "cancelled",
        }
    }
}

fn allowed(action: CampaignAction) -> Vec<String> {
    action
        .allowed_from()
        .iter()
        .map(|status| (*status).to_owned())
        .collect()
}

fn finished() -> Vec<String> {
    FINISHED_STATUSES
        .iter()
        .map(|status| (*status).to_owned())
        .collect()
}

impl Database {
    /// Creates a draft campaign.
    pub async fn create_campaign(
        &self,
        organization_id: Uuid,
        fields: &CampaignFields,
    ) -> Result<Uuid, DbError> {
        let f = fields;
        let id = sqlx::query_scalar!(
            r#"INSERT INTO campaigns (organization_id, name, description, project_id, ai_provider,
                   agent_name, agent_instructions, agent_greeting, agent_voice, language,
                   turn_detection, timezone, calling_window_start, calling_window_end, calling_days,
                   starts_on, ends_on, caller_id, max_concurrent_calls, calls_per_minute,
                   ring_timeout_seconds, max_call_duration_seconds, silence_timeout_seconds,
                   max_attempts, retry_backoff_seconds, settings)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
                       $18, $19, $20, $21, $22, $23, $24, $25, $26)
               RETURNING id"#,
            organization_id,
            f.name,
            f.description,
            f.project_id,
            f.ai_provider,
            f.agent_name,
            f.agent_instructions,
            f.agent_greeting,
            f.agent_voice,
            f.language,
            f.turn_detection,
            f.timezone,
            f.calling_window_start,
            f.calling_window_end,
            &f.calling_days,
            f.starts_on,
            f.ends_on,
            f.caller_id,
            f.max_concurrent_calls,
            f.calls_per_minute,
            f.ring_timeout_seconds,
            f.max_call_duration_seconds,
            f.silence_timeout_seconds,
            f.max_attempts,
            f.retry_backoff_seconds,
            f.settings,
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    /// Replaces the editable columns, if the campaign is unchanged since `read_at` and not
    /// finished (optimistic: the API merges a patch into what it read).
    pub async fn update_campaign(
        &self,
        organization_id: Uuid,
        id: Uuid,
        read_at: DateTime<Utc>,
        fields: &CampaignFields,
    ) -> Result<UpdateOutcome, DbError> {
        let f = fields;
        let result = sqlx::query!(
            r#"UPDATE campaigns SET name = $4, description = $5, project_id = $6, ai_provider = $7,
                   agent_name = $8, agent_instructions = $9, agent_greeting = $10, agent_voice = $11,
                   language = $12, turn_detection = $13, timezone = $14, calling_window_start = $15,
                   calling_window_end = $16, calling_days = $17, starts_on = $18, ends_on = $19,
                   caller_id = $20, max_concurrent_calls = $21, calls_per_minute = $22,
                   ring_timeout_seconds = $23, max_call_duration_seconds = $24,
                   silence_timeout_seconds = $25, max_attempts = $26, retry_backoff_seconds = $27,
                   settings = $28
               WHERE organization_id = $1 AND id = $2 AND updated_at = $3
                 AND status <> ALL($29)"#,
            organization_id,
            id,
            read_at,
            f.name,
            f.description,
            f.project_id,
            f.ai_provider,
            f.agent_name,
            f.agent_instructions,
            f.agent_greeting,
            f.agent_voice,
            f.language,
            f.turn_detection,
            f.timezone,
            f.calling_window_start,
            f.calling_window_end,
            &f.calling_days,
            f.starts_on,
            f.ends_on,
            f.caller_id,
            f.max_concurrent_calls,
            f.calls_per_minute,
            f.ring_timeout_seconds,
            f.max_call_duration_seconds,
            f.silence_timeout_seconds,
            f.max_attempts,
            f.retry_backoff_seconds,
            f.settings,
            &finished(),
        )
        .execute(&self.pool)
        .await?;
        if result.rows_affected() == 1 {
            return Ok(UpdateOutcome::Applied);
        }
        Ok(match self.campaign(organization_id, id).await? {
            None => UpdateOutcome::NotFound,
            Some(row) if FINISHED_STATUSES.contains(&row.status.as_str()) => {
                UpdateOutcome::Finished { status: row.status }
            }
            Some(_) => UpdateOutcome::Concurrent,
        })
    }

    /// One campaign of the organization.
    pub async fn campaign(
        &self,
        organization_id: Uuid,
        id: Uuid,
    ) -> Result<Option<CampaignRow>, DbError> {
        let row = sqlx::query!(
            r#"SELECT id, organization_id, status, name, description, project_id, ai_provider,
                      agent_name, agent_instructions, agent_greeting, agent_voice, language,
                      turn_detection, timezone, calling_window_start, calling_window_end,
                      calling_days, starts_on, ends_on, caller_id, max_concurrent_calls,
                      calls_per_minute, ring_timeout_seconds, max_call_duration_seconds,
                      silence_timeout_seconds, max_attempts, retry_backoff_seconds, settings,
                      total_calls, transferred_calls, conversion_rate::float8 AS "conversion_rate!",
                      started_at, paused_at, completed_at, created_at, updated_at
               FROM campaigns WHERE organization_id = $1 AND id = $2"#,
            organization_id,
            id,
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| CampaignRow {
            id: r.id,
            organization_id: r.organization_id,
            status: r.status,
            fields: CampaignFields {
                name: r.name,
                description: r.description,
                project_id: r.project_id,
                ai_provider: r.ai_provider,
                agent_name: r.agent_name,
                agent_instructions: r.agent_instructions,
                agent_greeting: r.agent_greeting,
                agent_voice: r.agent_voice,
                language: r.language,
                turn_detection: r.turn_detection,
                timezone: r.timezone,
                calling_window_start: r.calling_window_start,
                calling_window_end: r.calling_window_end,
                calling_days: r.calling_days,
                starts_on: r.starts_on,
                ends_on: r.ends_on,
                caller_id: r.caller_id,
                max_concurrent_calls: r.max_concurrent_calls,
                calls_per_minute: r.calls_per_minute,
                ring_timeout_seconds: r.ring_timeout_seconds,
                max_call_duration_seconds: r.max_call_duration_seconds,
                silence_timeout_seconds: r.silence_timeout_seconds,
                max_attempts: r.max_attempts,
                retry_backoff_seconds: r.retry_backoff_seconds,
                settings: r.settings,
            },
            total_calls: r.total_calls,
            transferred_calls: r.transferred_calls,
            conversion_rate: r.conversion_rate,
            started_at: r.started_at,
            paused_at: r.paused_at,
            completed_at: r.completed_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }))
    }

    /// The organization's campaigns, newest first, optionally of one status.
    pub async fn list_campaigns(
        &self,
        organization_id: Uuid,
        status: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<CampaignRow>, DbError> {
        let ids = sqlx::query_scalar!(
            r#"SELECT id FROM campaigns
               WHERE organization_id = $1 AND ($2::text IS NULL OR status = $2)
               ORDER BY created_at DESC, id DESC LIMIT $3 OFFSET $4"#,
            organization_id,
            status,
            limit,
            offset,
        )
        .fetch_all(&self.pool)
        .await?;
        // A page is small (the API caps it), so one read per row keeps a single column list.
        let mut rows = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(row) = self.campaign(organization_id, id).await? {
                rows.push(row);
            }
        }
        Ok(rows)
    }

    /// Applies a status change in one statement; a cancel also cancels the campaign's
    /// scheduled attempts in the same transaction, so nothing is left to dial.
    pub async fn transition_campaign(
        &self,
        organization_id: Uuid,
        id: Uuid,
        action: CampaignAction,
    ) -> Result<TransitionOutcome, DbError> {
        let mut transaction = self.pool.begin().await?;
        let updated = sqlx::query_scalar!(
            r#"UPDATE campaigns SET status = $4,
                   started_at = CASE WHEN $3 = 'start' THEN now() ELSE started_at END,
                   paused_at = CASE WHEN $3 = 'pause' THEN now()
                                    WHEN $3 = 'resume' THEN NULL ELSE paused_at END
               WHERE organization_id = $1 AND id = $2 AND status = ANY($5)
               RETURNING id"#,
            organization_id,
            id,
            action.as_str(),
            action.target(),
            &allowed(action),
        )
        .fetch_optional(&mut *transaction)
        .await?;
        if updated.is_none() {
            let status = sqlx::query_scalar!(
                "SELECT status FROM campaigns WHERE organization_id = $1 AND id = $2",
                organization_id,
                id,
            )
            .fetch_optional(&mut *transaction)
            .await?;
            return Ok(match status {
                None => TransitionOutcome::NotFound,
                Some(status) => TransitionOutcome::Illegal { status },
            });
        }
        if action == CampaignAction::Cancel {
            sqlx::query!(
                r#"UPDATE dial_attempts SET status = 'canceled', ended_at = now()
                   WHERE campaign_id = $1 AND status = 'scheduled'"#,
                id,
            )
            .execute(&mut *transaction)
            .await?;
        }
        transaction.commit().await?;
        Ok(TransitionOutcome::Applied)
    }

    /// Live statistics of a campaign of the organization.
    pub async fn campaign_stats(
        &self,
        organization_id: Uuid,
        id: Uuid,
    ) -> Result<Option<CampaignStats>, DbError> {
        let Some(head) = sqlx::query!(
            r#"SELECT c.total_calls, c.transferred_calls,
                      c.conversion_rate::float8 AS "conversion_rate!",
                      (SELECT count(*) FROM call_logs l
                       WHERE l.campaign_id = c.id AND l.ended_at IS NULL) AS "live_calls!"
               FROM campaigns c WHERE c.organization_id = $1 AND c.id = $2"#,
            organization_id,
            id,
        )
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let attempts: BTreeMap<String, i64> = sqlx::query!(
            r#"SELECT status, count(*) AS "count!" FROM dial_attempts
               WHERE campaign_id = $1 GROUP BY status"#,
            id,
        )
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|row| (row.status, row.count))
        .collect();
        let callbacks_pending = sqlx::query_scalar!(
            r#"SELECT count(*) AS "count!" FROM dial_attempts
               WHERE campaign_id = $1 AND is_callback AND status = 'scheduled'"#,
            id,
        )
        .fetch_one(&self.pool)
        .await?;
        let outcomes: BTreeMap<String, i64> = sqlx::query!(
            r#"SELECT l.call_status, count(*) AS "count!" FROM leads l
               WHERE l.id IN (SELECT lead_id FROM dial_attempts WHERE campaign_id = $1)
               GROUP BY l.call_status"#,
            id,
        )
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|row| (row.call_status, row.count))
        .collect();
        let count = |status: &str| attempts.get(status).copied().unwrap_or(0);
        Ok(Some(CampaignStats {
            total_calls: head.total_calls,
            transferred_calls: head.transferred_calls,
            conversion_rate: head.conversion_rate,
            live_calls: head.live_calls,
            leads: outcomes.values().sum(),
            attempts_pending: count("scheduled"),
            attempts_in_flight: count("dialing") + count("ringing") + count("in_progress"),
            callbacks_pending,
            outcomes,
            attempts,
        }))
    }

    /// Whether `project_id` is a project of the organization.
    pub async fn project_in_organization(
        &self,
        organization_id: Uuid,
        project_id: Uuid,
    ) -> Result<bool, DbError> {
        let exists = sqlx::query_scalar!(
            r#"SELECT EXISTS (SELECT 1 FROM projects WHERE organization_id = $1 AND id = $2) AS "exists!""#,
            organization_id,
            project_id,
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(exists)
    }

    /// Whether `number` is the organization's default caller ID or one of its numbers.
    pub async fn caller_id_owned(
        &self,
        organization_id: Uuid,
        number: &str,
    ) -> Result<bool, DbError> {
        let owned = sqlx::query_scalar!(
            r#"SELECT (EXISTS (SELECT 1 FROM organizations WHERE id = $1 AND caller_id = $2)
                    OR EXISTS (SELECT 1 FROM organization_phone_numbers
                               WHERE organization_id = $1 AND phone_number = $2)) AS "owned!""#,
            organization_id,
            number,
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(owned)
    }
}
