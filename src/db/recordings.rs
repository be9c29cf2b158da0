//! What recordings need from the database: a call's recording policy (the organization's
//! settings, the campaign's override), linking a finished file to its call, and finding a
//! call's recording for the API (by the token's organization, or by id for a signed link).

use serde_json::Value;
use uuid::Uuid;

use super::{Database, DbError};

/// A campaign's calls by whether they are closed and recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct RecordedCalls {
    pub closed: i64,
    /// Closed calls linked to a recording.
    pub recorded: i64,
    pub open: i64,
}

/// A call's recording, as the API serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecording {
    pub call_sid: String,
    /// `None`: not recorded (recording off, failed, or the call still running).
    pub recording_url: Option<String>,
}

impl Database {
    /// `organizations.settings` and `campaigns.settings` of a campaign, for its recording
    /// policy; `None` when the campaign is gone.
    pub async fn recording_settings(
        &self,
        campaign_id: Uuid,
    ) -> Result<Option<(Value, Value)>, DbError> {
        let row = sqlx::query!(
            r#"SELECT o.settings AS organization_settings, c.settings AS campaign_settings
               FROM campaigns c JOIN organizations o ON o.id = c.organization_id
               WHERE c.id = $1"#,
            campaign_id
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|row| (row.organization_settings, row.campaign_settings)))
    }

    /// Links a recording finished after a crash to its call (whose close, by the restart, had
    /// none). `false` when no call has that `call_sid` or it is linked already.
    pub async fn link_recording(&self, call_sid: &str, template: &str) -> Result<bool, DbError> {
        let linked = sqlx::query!(
            r#"UPDATE call_logs SET recording_url = replace($2, '{call_id}', id::text)
               WHERE call_sid = $1 AND recording_url IS NULL"#,
            call_sid,
            template
        )
        .execute(&self.pool)
        .await?;
        Ok(linked.rows_affected() > 0)
    }

    /// The recording of the organization's call `id`; `None` when the organization has no
    /// such call (another organization's is the same `None`).
    pub async fn call_recording(
        &self,
        organization_id: Uuid,
        id: Uuid,
    ) -> Result<Option<CallRecording>, DbError> {
        let row = sqlx::query!(
            r#"SELECT call_sid, recording_url FROM call_logs
               WHERE organization_id = $1 AND id = $2"#,
            organization_id,
            id
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.and_then(|row| {
            Some(CallRecording {
                call_sid: row.call_sid?,
                recording_url: row.recording_url,
            })
        }))
    }

    /// The recording of call `id`, whatever its organization: only for a link whose signature
    /// (made after the organization's check) was verified.
    pub async fn call_recording_by_id(&self, id: Uuid) -> Result<Option<CallRecording>, DbError> {
        let row = sqlx::query!(
            "SELECT call_sid, recording_url FROM call_logs WHERE id = $1",
            id
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.and_then(|row| {
            Some(CallRecording {
                call_sid: row.call_sid?,
                recording_url: row.recording_url,
            })
        }))
    }
}

/// A recording past its retention period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiredRecording {
    pub call_log_id: Uuid,
    pub organization_id: Uuid,
    pub call_sid: String,
    pub recording_url: String,
    pub ended_at: chrono::DateTime<chrono::Utc>,
    pub retention_days: i32,
}

impl Database {
    /// Up to `limit` recordings whose call ended more than `recording_retention_days` ago (the
    /// campaign's setting, else the organization's; a whole number of days from 1), oldest
    /// first. A setting that is not such a number keeps recordings.
    pub async fn expired_recordings(&self, limit: i64) -> Result<Vec<ExpiredRecording>, DbError> {
        let rows = sqlx::query!(
            r#"SELECT cl.id, cl.organization_id, cl.call_sid AS "call_sid!",
                      cl.recording_url AS "recording_url!",
                      COALESCE(cl.ended_at, cl.call_timestamp) AS "ended_at!",
                      retention.days AS "days!"
               FROM call_logs cl
               JOIN organizations o ON o.id = cl.organization_id
               LEFT JOIN campaigns c ON c.id = cl.campaign_id
               CROSS JOIN LATERAL (SELECT COALESCE(
                   public.vg_retention_days(c.settings), public.vg_retention_days(o.settings)
               ) AS days) retention
               WHERE cl.recording_url IS NOT NULL AND cl.call_sid IS NOT NULL
                 AND retention.days IS NOT NULL
                 AND COALESCE(cl.ended_at, cl.call_timestamp)
                     < now() - make_interval(days => retention.days)
               ORDER BY COALESCE(cl.ended_at, cl.call_timestamp)
               LIMIT $1"#,
            limit
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| ExpiredRecording {
                call_log_id: row.id,
                organization_id: row.organization_id,
                call_sid: row.call_sid,
                recording_url: row.recording_url,
                ended_at: row.ended_at,
                retention_days: row.days,
            })
            .collect())
    }

    /// A campaign's closed calls and how many of them have a recording, and the calls still
    /// open (`loadtest --record` reports them: a call is linked to its recording as it closes).
    pub async fn recorded_calls(&self, campaign_id: Uuid) -> Result<RecordedCalls, DbError> {
        let row = sqlx::query!(
            r#"SELECT count(*) FILTER (WHERE ended_at IS NOT NULL) AS "closed!",
                      count(*) FILTER (WHERE ended_at IS NOT NULL AND recording_url IS NOT NULL)
                          AS "recorded!",
                      count(*) FILTER (WHERE ended_at IS NULL) AS "open!"
               FROM call_logs WHERE campaign_id = $1"#,
            campaign_id
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(RecordedCalls {
            closed: row.closed,
            recorded: row.recorded,
            open: row.open,
        })
    }

    /// After its file was deleted: clears the call's `recording_url` and writes the audit row,
    /// in one transaction. `false` when another gateway did it first (no second audit row).
    pub async fn recording_expired(
        &self,
        expired: &ExpiredRecording,
        server_name: &str,
    ) -> Result<bool, DbError> {
        let mut transaction = self.pool.begin().await?;
        let cleared = sqlx::query!(
            r#"UPDATE call_logs SET recording_url = NULL
               WHERE id = $1 AND recording_url IS NOT NULL"#,
            expired.call_log_id
        )
        .execute(&mut *transaction)
        .await?;
        if cleared.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query!(
            r#"INSERT INTO recording_audit
                   (organization_id, call_log_id, call_sid, action, reason, actor, server_name,
                    before, after)
               VALUES ($1, $2, $3, 'delete', 'retention', 'system', $4, $5, $6)"#,
            expired.organization_id,
            expired.call_log_id,
            expired.call_sid,
            server_name,
            serde_json::json!({
                "recording_url": expired.recording_url,
                "ended_at": expired.ended_at,
                "retention_days": expired.retention_days,
            }),
            serde_json::json!({"recording_url": null}),
        )
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok(true)
    }
}
