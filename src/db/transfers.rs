//! Transfers in the database: what a call needs to decide one, the transfer's state as Plivo
//! walks it through its steps (any gateway may serve each), and each dial's outcome, applied
//! once however often Plivo repeats it.

use chrono::NaiveTime;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{Database, DbError, calls::Applied};
use crate::transfer::policy::Target;

/// What the call needs to decide a transfer, loaded when it starts.
#[derive(Debug, Clone, Default)]
pub struct TransferSetup {
    /// `campaigns.settings` (its `transfer` object holds the rules).
    pub campaign_settings: Value,
    /// The organization's targets, narrowed to the campaign's when it names some.
    pub targets: Vec<Target>,
    /// The lead's assigned agent, when they have a phone.
    pub assigned: Option<Target>,
    pub caller_id: Option<String>,
}

/// A transfer to write.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct NewTransfer {
    pub call_sid: String,
    pub trigger: String,
    pub reason: String,
    pub department: String,
    pub targets: Vec<Target>,
    pub caller_id: Option<String>,
    pub ring_timeout_secs: i32,
    pub whisper: String,
    pub handoff_line: Option<String>,
    pub fallback: String,
    /// `dial` or `rest`.
    pub strategy: String,
}

/// A transfer's state.
#[derive(Debug, Clone, PartialEq)]
pub struct TransferRow {
    pub call_sid: String,
    pub reason: String,
    pub department: String,
    pub targets: Value,
    pub attempt: i32,
    pub status: String,
    pub caller_id: Option<String>,
    pub ring_timeout_secs: i32,
    pub whisper: String,
    pub handoff_line: Option<String>,
    pub fallback: String,
}

impl TransferRow {
    /// The phone number of the current attempt.
    pub fn current_number(&self) -> Option<&str> {
        self.targets
            .get(self.attempt as usize)?
            .get("phone_number")?
            .as_str()
    }

    pub fn target_count(&self) -> usize {
        self.targets.as_array().map(Vec::len).unwrap_or(0)
    }
}

/// The next step after a dial's outcome.
#[derive(Debug, Clone, PartialEq)]
pub enum DialStep {
    /// A human accepted: the transfer is connected.
    Connected,
    /// Try the next target.
    Next(TransferRow),
    /// Nobody accepted; the transfer's fallback applies.
    Exhausted(TransferRow),
    /// A repeated or out-of-date callback: the transfer's current state, unchanged.
    Unchanged(TransferRow),
}

impl Database {
    /// Loads the campaign's transfer settings, targets and the lead's assigned agent.
    pub async fn transfer_setup(
        &self,
        lead_id: Uuid,
        campaign_id: Uuid,
    ) -> Result<TransferSetup, DbError> {
        let campaign = sqlx::query!(
            r#"SELECT c.settings, coalesce(c.caller_id, o.caller_id) AS caller_id
               FROM campaigns c JOIN organizations o ON o.id = c.organization_id WHERE c.id = $1"#,
            campaign_id
        )
        .fetch_optional(&self.pool)
        .await?;
        let Some(campaign) = campaign else {
            return Ok(TransferSetup::default());
        };
        let rows = sqlx::query!(
            r#"SELECT t.id, t.name, t.department, t.phone_number, t.priority, t.timezone, t.working_days,
                      t.working_hours_start, t.working_hours_end, t.is_active
               FROM transfer_targets t JOIN campaigns c ON c.organization_id = t.organization_id
               WHERE c.id = $1
                 AND (NOT EXISTS (SELECT 1 FROM campaign_transfer_targets n WHERE n.campaign_id = c.id)
                      OR t.id IN (SELECT n.transfer_target_id FROM campaign_transfer_targets n WHERE n.campaign_id = c.id))
               ORDER BY t.priority, t.name"#,
            campaign_id
        )
        .fetch_all(&self.pool)
        .await?;
        let targets = rows
            .into_iter()
            .map(|row| Target {
                id: row.id,
                name: row.name,
                department: row.department,
                phone_number: row.phone_number,
                priority: row.priority,
                timezone: row.timezone,
                working_days: row.working_days,
                hours: hours(row.working_hours_start, row.working_hours_end),
                active: row.is_active,
            })
            .collect();
        let assigned = sqlx::query!(
            r#"SELECT p.id, coalesce(p.full_name, 'assigned agent') AS "name!", p.phone AS "phone!"
               FROM leads l JOIN profiles p ON p.id = l.assigned_to
               WHERE l.id = $1 AND p.phone IS NOT NULL"#,
            lead_id
        )
        .fetch_optional(&self.pool)
        .await?
        .map(|row| Target {
            id: row.id,
            name: row.name,
            department: String::new(),
            phone_number: row.phone,
            priority: i32::MIN,
            timezone: "UTC".to_owned(),
            working_days: vec![1, 2, 3, 4, 5, 6, 7],
            hours: None,
            active: true,
        });
        Ok(TransferSetup {
            campaign_settings: campaign.settings,
            targets,
            assigned,
            caller_id: campaign.caller_id,
        })
    }

    /// Writes a decided transfer for a call; a second one for the same call is refused.
    pub async fn create_transfer(&self, transfer: &NewTransfer) -> Result<Applied, DbError> {
        let targets = Value::Array(
            transfer
                .targets
                .iter()
                .map(|t| json!({"id": t.id, "name": t.name, "phone_number": t.phone_number}))
                .collect(),
        );
        let result = sqlx::query!(
            r#"INSERT INTO call_transfers (call_sid, call_log_id, organization_id, trigger, reason, department,
                                          targets, caller_id, ring_timeout_secs, whisper, handoff_line, fallback, strategy)
               SELECT $1, id, organization_id, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11 FROM call_logs WHERE call_sid = $1
               ON CONFLICT (call_sid) DO NOTHING"#,
            transfer.call_sid,
            transfer.trigger,
            transfer.reason,
            transfer.department,
            targets,
            transfer.caller_id,
            transfer.ring_timeout_secs,
            transfer.whisper,
            transfer.handoff_line,
            transfer.fallback,
            transfer.strategy,
        )
        .execute(&self.pool)
        .await?;
        if result.rows_affected() == 0 {
            return Ok(Applied::Already);
        }
        // Why a transfer was attempted, even if nobody takes it; the transferred flag and the
        // counters wait for a human to accept.
        sqlx::query!(
            r#"UPDATE call_logs SET transfer_reason = $2, transfer_department = $3
               WHERE call_sid = $1 AND NOT transferred"#,
            transfer.call_sid,
            transfer.reason,
            transfer.department,
        )
        .execute(&self.pool)
        .await?;
        Ok(Applied::Now)
    }

    /// The call's transfer, if one was decided.
    pub async fn transfer_for_call(&self, call_sid: &str) -> Result<Option<TransferRow>, DbError> {
        let row = sqlx::query_as!(
            TransferRow,
            r#"SELECT call_sid, reason, department, targets, attempt, status, caller_id, ring_timeout_secs,
                      whisper, handoff_line, fallback
               FROM call_transfers WHERE call_sid = $1"#,
            call_sid
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(row)
    }

    /// Moves a pending transfer to dialing (repeats see it already dialing).
    pub async fn start_dialing(&self, call_sid: &str) -> Result<Option<TransferRow>, DbError> {
        sqlx::query!(
            "UPDATE call_transfers SET status = 'dialing' WHERE call_sid = $1 AND status = 'pending'",
            call_sid
        )
        .execute(&self.pool)
        .await?;
        self.transfer_for_call(call_sid).await
    }

    /// Applies the outcome of dial `attempt`, once: accepted connects the transfer (and counts
    /// it), anything else moves to the next target or exhausts the list.
    pub async fn dial_outcome(
        &self,
        call_sid: &str,
        attempt: i32,
        accepted: bool,
    ) -> Result<Option<DialStep>, DbError> {
        let Some(current) = self.transfer_for_call(call_sid).await? else {
            return Ok(None);
        };
        if accepted {
            let connected = sqlx::query!(
                r#"UPDATE call_transfers SET status = 'connected', connected_at = now()
                   WHERE call_sid = $1 AND attempt = $2 AND status = 'dialing'"#,
                call_sid,
                attempt
            )
            .execute(&self.pool)
            .await?;
            if connected.rows_affected() == 1 || current.status == "connected" {
                return Ok(Some(DialStep::Connected));
            }
            return Ok(Some(DialStep::Unchanged(current)));
        }
        let advanced = sqlx::query!(
            r#"UPDATE call_transfers
               SET attempt = attempt + 1,
                   status = CASE WHEN attempt + 1 >= jsonb_array_length(targets)
                                 THEN CASE fallback WHEN 'back_to_ai' THEN 'exhausted' ELSE 'callback' END
                                 ELSE 'dialing' END
               WHERE call_sid = $1 AND attempt = $2 AND status = 'dialing'"#,
            call_sid,
            attempt
        )
        .execute(&self.pool)
        .await?;
        let row = self
            .transfer_for_call(call_sid)
            .await?
            .expect("the transfer exists");
        if advanced.rows_affected() == 0 {
            return Ok(Some(DialStep::Unchanged(row)));
        }
        Ok(Some(match row.status.as_str() {
            "dialing" => DialStep::Next(row),
            _ => DialStep::Exhausted(row),
        }))
    }
}

impl Database {
    /// Marks an exhausted transfer as handed back to the AI (so a later after-stream hangs up).
    pub async fn finish_fallback(&self, call_sid: &str) -> Result<(), DbError> {
        sqlx::query!(
            "UPDATE call_transfers SET status = 'callback' WHERE call_sid = $1 AND status = 'exhausted'",
            call_sid
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

fn hours(start: Option<NaiveTime>, end: Option<NaiveTime>) -> Option<(NaiveTime, NaiveTime)> {
    match (start, end) {
        (Some(start), Some(end)) => Some((start, end)),
        _ => None,
    }
}
