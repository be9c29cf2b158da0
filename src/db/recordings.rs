//! What recordings need from the database: a call's recording policy (the organization's
//! settings, the campaign's override), linking a finished file to its call, and finding a
//! call's recording for the API (by the token's organization, or by id for a signed link).

use serde_json::Value;
use uuid::Uuid;

use super::{Database, DbError};

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
