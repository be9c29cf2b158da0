//! Calls as the API reads them (lists with filters, one call with its transcript and events,
//! the live ones), and the hang-up request that reaches whichever gateway holds a call:
//! `NOTIFY` on [`HANGUP_CHANNEL`] with the call's `call_sid`; every gateway `LISTEN`s.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::{Database, DbError};

/// The channel of hang-up requests; the payload is the call's `call_sid`.
pub const HANGUP_CHANNEL: &str = "vg_call_hangup";

/// A call in a list.
#[derive(Debug, Clone, Serialize)]
pub struct CallSummary {
    pub id: Uuid,
    pub call_sid: Option<String>,
    pub campaign_id: Uuid,
    pub lead_id: Uuid,
    pub direction: String,
    pub call_status: String,
    pub end_reason: Option<String>,
    pub transferred: bool,
    pub transfer_department: Option<String>,
    pub call_timestamp: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub duration: i32,
    pub server_name: Option<String>,
}

/// One call with what was said.
#[derive(Debug, Clone, Serialize)]
pub struct CallDetail {
    #[serde(flatten)]
    pub summary: CallSummary,
    pub transcript: Option<String>,
    pub conversation_summary: Option<String>,
    pub recording_url: Option<String>,
    pub transferred_at: Option<DateTime<Utc>>,
    pub transfer_reason: Option<String>,
    pub notes: Option<String>,
    pub metadata: Option<serde_json::Value>,
}

/// A per-turn event of a call.
#[derive(Debug, Clone, Serialize)]
pub struct CallEventRow {
    pub seq: i32,
    pub kind: String,
    pub occurred_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub text: Option<String>,
    pub data: serde_json::Value,
}

/// Filters of a call list; `None` is "any".
#[derive(Debug, Clone, Default)]
pub struct CallFilter {
    pub campaign_id: Option<Uuid>,
    pub call_status: Option<String>,
    pub end_reason: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub live: Option<bool>,
    pub limit: i64,
    pub offset: i64,
}

impl Database {
    /// The organization's calls, newest first.
    pub async fn list_calls(
        &self,
        organization_id: Uuid,
        filter: &CallFilter,
    ) -> Result<Vec<CallSummary>, DbError> {
        let rows = sqlx::query_as!(
            CallSummary,
            r#"SELECT id, call_sid, campaign_id, lead_id, direction, call_status, end_reason,
                      transferred, transfer_department, call_timestamp, ended_at, duration, server_name
               FROM call_logs
               WHERE organization_id = $1
                 AND ($2::uuid IS NULL OR campaign_id = $2)
                 AND ($3::text IS NULL OR call_status = $3)
                 AND ($4::text IS NULL OR end_reason = $4)
                 AND ($5::timestamptz IS NULL OR call_timestamp >= $5)
                 AND ($6::timestamptz IS NULL OR call_timestamp < $6)
                 AND ($7::bool IS NULL OR (ended_at IS NULL) = $7)
               ORDER BY call_timestamp DESC, id DESC
               LIMIT $8 OFFSET $9"#,
            organization_id,
            filter.campaign_id,
            filter.call_status,
            filter.end_reason,
            filter.from,
            filter.to,
            filter.live,
            filter.limit,
            filter.offset,
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    /// One call of the organization, with its transcript and summary.
    pub async fn call_detail(
        &self,
        organization_id: Uuid,
        id: Uuid,
    ) -> Result<Option<CallDetail>, DbError> {
        let row = sqlx::query!(
            r#"SELECT id, call_sid, campaign_id, lead_id, direction, call_status, end_reason,
                      transferred, transfer_department, call_timestamp, ended_at, duration,
                      server_name, transcript, conversation_summary, recording_url, transferred_at,
                      transfer_reason, notes, metadata
               FROM call_logs WHERE organization_id = $1 AND id = $2"#,
            organization_id,
            id,
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| CallDetail {
            summary: CallSummary {
                id: r.id,
                call_sid: r.call_sid,
                campaign_id: r.campaign_id,
                lead_id: r.lead_id,
                direction: r.direction,
                call_status: r.call_status,
                end_reason: r.end_reason,
                transferred: r.transferred,
                transfer_department: r.transfer_department,
                call_timestamp: r.call_timestamp,
                ended_at: r.ended_at,
                duration: r.duration,
                server_name: r.server_name,
            },
            transcript: r.transcript,
            conversation_summary: r.conversation_summary,
            recording_url: r.recording_url,
            transferred_at: r.transferred_at,
            transfer_reason: r.transfer_reason,
            notes: r.notes,
            metadata: r.metadata,
        }))
    }

    /// A call's events in the gateway's order.
    pub async fn call_events(&self, call_log_id: Uuid) -> Result<Vec<CallEventRow>, DbError> {
        let rows = sqlx::query_as!(
            CallEventRow,
            r#"SELECT seq, kind, occurred_at, ended_at, text, data
               FROM call_events WHERE call_log_id = $1 ORDER BY seq"#,
            call_log_id,
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    /// The `call_sid` of a live call of the organization.
    pub async fn live_call_sid(
        &self,
        organization_id: Uuid,
        id: Uuid,
    ) -> Result<Option<String>, DbError> {
        let call_sid = sqlx::query_scalar!(
            r#"SELECT call_sid AS "call_sid!" FROM call_logs
               WHERE organization_id = $1 AND id = $2 AND ended_at IS NULL AND call_sid IS NOT NULL"#,
            organization_id,
            id,
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(call_sid)
    }

    /// Asks every gateway to hang up `call_sid`; the one holding it does.
    pub async fn notify_hangup(&self, call_sid: &str) -> Result<(), DbError> {
        sqlx::query!("SELECT pg_notify($1, $2)", HANGUP_CHANNEL, call_sid)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
