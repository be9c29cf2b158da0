//! Callbacks the leads asked for: a campaign's pending ones, cancelling and rescheduling one.
//! A callback is a `dial_attempts` row with `is_callback`, so the dialer places it like any
//! attempt (inside the calling window, never for a suppressed number); every statement is
//! filtered by the organization.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::{Database, DbError};

/// A callback as the API shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CallbackRow {
    pub id: Uuid,
    pub campaign_id: Uuid,
    pub lead_id: Uuid,
    pub lead_name: String,
    pub phone_number: Option<String>,
    pub status: String,
    pub due_at: DateTime<Utc>,
    /// When the lead asked, in which call, and what they said.
    pub requested_at: Option<DateTime<Utc>>,
    pub requested_in_call: Option<String>,
    pub phrase: Option<String>,
    pub note: Option<String>,
}

/// What a change to one callback found.
#[derive(Debug, Clone, PartialEq)]
pub enum CallbackChange {
    Applied(CallbackRow),
    NotFound,
    /// It is no longer waiting (placed, done or cancelled): its status.
    NotPending(String),
}

impl Database {
    /// A campaign's callbacks still waiting, soonest first.
    pub async fn pending_callbacks(
        &self,
        organization_id: Uuid,
        campaign_id: Uuid,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<CallbackRow>, DbError> {
        let rows = sqlx::query_as!(
            CallbackRow,
            r#"SELECT a.id, a.campaign_id, a.lead_id, l.name AS lead_name, l.phone AS phone_number,
                      a.status, a.due_at, a.callback_requested_at AS requested_at,
                      a.callback_call_sid AS requested_in_call, a.callback_phrase AS phrase,
                      a.callback_note AS note
               FROM dial_attempts a JOIN leads l ON l.id = a.lead_id
               WHERE a.organization_id = $1 AND a.campaign_id = $2 AND a.is_callback
                 AND a.status = 'scheduled'
               ORDER BY a.due_at, a.id
               LIMIT $3 OFFSET $4"#,
            organization_id,
            campaign_id,
            limit,
            offset,
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    /// Cancels a pending callback.
    pub async fn cancel_callback(
        &self,
        organization_id: Uuid,
        campaign_id: Uuid,
        id: Uuid,
    ) -> Result<CallbackChange, DbError> {
        let changed = sqlx::query_scalar!(
            r#"UPDATE dial_attempts SET status = 'canceled', ended_at = now(),
                      error = 'cancelled through the API'
               WHERE id = $1 AND organization_id = $2 AND campaign_id = $3 AND is_callback
                 AND status = 'scheduled'
               RETURNING id"#,
            id,
            organization_id,
            campaign_id,
        )
        .fetch_optional(&self.pool)
        .await?;
        self.callback_change(organization_id, campaign_id, id, changed.is_some())
            .await
    }

    /// Moves a pending callback to `due_at` (the dialer still waits for the calling window).
    pub async fn reschedule_callback(
        &self,
        organization_id: Uuid,
        campaign_id: Uuid,
        id: Uuid,
        due_at: DateTime<Utc>,
    ) -> Result<CallbackChange, DbError> {
        let changed = sqlx::query_scalar!(
            r#"UPDATE dial_attempts SET due_at = $4
               WHERE id = $1 AND organization_id = $2 AND campaign_id = $3 AND is_callback
                 AND status = 'scheduled'
               RETURNING id"#,
            id,
            organization_id,
            campaign_id,
            due_at,
        )
        .fetch_optional(&self.pool)
        .await?;
        self.callback_change(organization_id, campaign_id, id, changed.is_some())
            .await
    }

    /// Reads one callback back after a change, or says why nothing changed.
    async fn callback_change(
        &self,
        organization_id: Uuid,
        campaign_id: Uuid,
        id: Uuid,
        changed: bool,
    ) -> Result<CallbackChange, DbError> {
        let row = sqlx::query_as!(
            CallbackRow,
            r#"SELECT a.id, a.campaign_id, a.lead_id, l.name AS lead_name, l.phone AS phone_number,
                      a.status, a.due_at, a.callback_requested_at AS requested_at,
                      a.callback_call_sid AS requested_in_call, a.callback_phrase AS phrase,
                      a.callback_note AS note
               FROM dial_attempts a JOIN leads l ON l.id = a.lead_id
               WHERE a.id = $1 AND a.organization_id = $2 AND a.campaign_id = $3
                 AND a.is_callback"#,
            id,
            organization_id,
            campaign_id,
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            None => CallbackChange::NotFound,
            Some(row) if changed => CallbackChange::Applied(row),
            Some(row) => CallbackChange::NotPending(row.status),
        })
    }
}
