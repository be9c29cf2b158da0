//! What answering a call needs: who is calling (or being called) for which campaign, the
//! context the agent starts with, and the single-use claim of a stream token.

use uuid::Uuid;

use super::{Database, DbError};
use crate::{
    ai::prompt::{CallContext, CallSchedule, CallbackNote},
    dialer::window::CallingWindow,
};

/// The lead and campaign a call belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallParties {
    pub organization_id: Uuid,
    pub lead_id: Uuid,
    pub campaign_id: Uuid,
}

impl Database {
    /// An outbound call's parties, if the lead and campaign exist in the same organization.
    pub async fn outbound_parties(
        &self,
        lead_id: Uuid,
        campaign_id: Uuid,
    ) -> Result<Option<CallParties>, DbError> {
        let row = sqlx::query!(
            r#"SELECT l.organization_id FROM leads l JOIN campaigns c ON c.organization_id = l.organization_id
               WHERE l.id = $1 AND c.id = $2"#,
            lead_id,
            campaign_id
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|row| CallParties {
            organization_id: row.organization_id,
            lead_id,
            campaign_id,
        }))
    }

    /// An inbound call's parties: the organization owning `to`, its lead with phone `from`,
    /// and the campaign answering that number (or the organization's latest running one).
    pub async fn inbound_parties(
        &self,
        from: &str,
        to: &str,
    ) -> Result<Option<CallParties>, DbError> {
        let row = sqlx::query!(
            r#"SELECT n.organization_id AS "organization_id!", l.id AS "lead_id!",
                      coalesce(n.campaign_id, (
                          SELECT c.id FROM campaigns c
                          WHERE c.organization_id = n.organization_id AND c.status = 'running'
                          ORDER BY c.started_at DESC NULLS LAST, c.created_at DESC LIMIT 1)) AS campaign_id
               FROM organization_phone_numbers n
               JOIN leads l ON l.organization_id = n.organization_id AND l.phone = $1
               WHERE n.phone_number = $2 AND n.inbound_enabled
               ORDER BY l.created_at DESC
               LIMIT 1"#,
            from,
            to
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.and_then(|row| {
            row.campaign_id.map(|campaign_id| CallParties {
                organization_id: row.organization_id,
                lead_id: row.lead_id,
                campaign_id,
            })
        }))
    }

    /// Everything the agent knows before the call starts.
    pub async fn call_context(
        &self,
        lead_id: Uuid,
        campaign_id: Uuid,
    ) -> Result<Option<CallContext>, DbError> {
        let row = sqlx::query!(
            r#"SELECT o.name AS organization_name, l.name AS lead_name, c.name AS campaign_name,
                      c.agent_name, c.agent_instructions, c.agent_greeting, c.agent_voice, c.language,
                      c.turn_detection, p.name AS "project_name?", p.description AS "project_description?",
                      p.facts AS "project_facts?", c.silence_timeout_seconds, c.max_call_duration_seconds,
                      c.settings -> 'script' AS "script?", c.ai_provider,
                      l.timezone AS lead_timezone, c.timezone AS campaign_timezone,
                      o.timezone AS organization_timezone, c.calling_window_start,
                      c.calling_window_end, c.calling_days, c.starts_on, c.ends_on,
                      cb.callback_requested_at AS "callback_requested_at?",
                      cb.callback_phrase AS "callback_phrase?", cb.callback_note AS "callback_note?"
               FROM leads l
               JOIN campaigns c ON c.id = $2 AND c.organization_id = l.organization_id
               JOIN organizations o ON o.id = l.organization_id
               LEFT JOIN projects p ON p.id = coalesce(c.project_id, l.project_id)
               -- This call is a callback when the lead's attempt in flight is one.
               LEFT JOIN LATERAL (
                   SELECT a.callback_requested_at, a.callback_phrase, a.callback_note
                   FROM dial_attempts a
                   WHERE a.lead_id = l.id AND a.campaign_id = c.id AND a.is_callback
                     AND a.status IN ('dialing', 'ringing', 'in_progress')
                   LIMIT 1
               ) cb ON TRUE
               WHERE l.id = $1"#,
            lead_id,
            campaign_id
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|row| CallContext {
            organization_name: row.organization_name,
            lead_name: row.lead_name,
            campaign_name: row.campaign_name,
            agent_name: row.agent_name,
            agent_instructions: row.agent_instructions,
            agent_greeting: row.agent_greeting,
            agent_voice: row.agent_voice,
            language: row.language,
            turn_detection: row.turn_detection,
            project_name: row.project_name,
            project_description: row.project_description,
            project_facts: row.project_facts.unwrap_or_default(),
            silence_timeout_secs: row.silence_timeout_seconds.max(1) as u32,
            max_call_duration_secs: row.max_call_duration_seconds.max(1) as u32,
            script: row.script.unwrap_or_default(),
            provider: row
                .ai_provider
                .as_deref()
                .and_then(crate::config::AiProviderKind::parse),
            schedule: CallSchedule {
                lead_timezone: row.lead_timezone,
                campaign_timezone: row.campaign_timezone,
                organization_timezone: row.organization_timezone,
                window: Some(CallingWindow::from_columns(
                    row.calling_window_start,
                    row.calling_window_end,
                    &row.calling_days,
                    row.starts_on,
                    row.ends_on,
                )),
            },
            callback: row.callback_requested_at.map(|requested_at| CallbackNote {
                requested_at,
                phrase: row.callback_phrase,
                note: row.callback_note,
            }),
            recording_notice: None,
        }))
    }

    /// Claims a stream token's nonce. `false` means it was used before: a replay.
    pub async fn claim_stream_token(
        &self,
        nonce: &str,
        call_sid: &str,
        server_name: &str,
    ) -> Result<bool, DbError> {
        let result = sqlx::query!(
            r#"INSERT INTO stream_token_uses (nonce, call_sid, server_name) VALUES ($1, $2, $3)
               ON CONFLICT (nonce) DO NOTHING"#,
            nonce,
            call_sid,
            server_name
        )
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Whether a stream token's nonce was claimed already, without claiming it.
    pub async fn stream_token_used(&self, nonce: &str) -> Result<bool, DbError> {
        let used = sqlx::query_scalar!(
            r#"SELECT EXISTS (SELECT 1 FROM stream_token_uses WHERE nonce = $1) AS "used!""#,
            nonce
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(used)
    }

    /// Forgets token claims older than a day (tokens expire within minutes).
    pub async fn prune_stream_tokens(&self) -> Result<u64, DbError> {
        let result =
            sqlx::query!("DELETE FROM stream_token_uses WHERE used_at < now() - interval '1 day'")
                .execute(&self.pool)
                .await?;
        Ok(result.rows_affected())
    }
}
