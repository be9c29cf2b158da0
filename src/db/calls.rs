//! The call lifecycle in the database: open, append events, record a transfer, close, record
//! calls that never reached the stream, and close the calls of a gateway that is gone.
//!
//! Each operation is one transaction and idempotent by `call_sid`: the conditional write on
//! `call_logs` (insert on conflict do nothing, or update where not yet done) is the gate, and
//! the counters and lead updates run only when that gate let the write through. Concurrent
//! duplicates serialise on the `call_logs` row (or its unique index), so the loser sees the
//! winner's write and changes nothing.
//!
//! Plivo's hangup callback may arrive before the stream's open is written. The row it writes
//! then is provisional (closed, with no `server_name`: no gateway ever held it), and the open
//! makes it the real call: reopened, held by the gateway, closed later by the stream's own
//! close with its transcript. Only a machine's row (`voicemail`) stays as it is.

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::{Database, DbError};
use crate::{
    domain::{CallOutcome, Direction, EndReason, EventKind},
    outcome::lead_status::{CallFacts, LeadStatus, next_status},
};

/// A call whose media stream has started.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CallStart {
    /// Plivo's CallUUID.
    pub call_sid: String,
    pub campaign_id: Uuid,
    pub lead_id: Uuid,
    pub direction: Direction,
    pub started_at: DateTime<Utc>,
    /// The gateway instance holding the call.
    pub server_name: String,
    pub metadata: Value,
}

/// One per-turn event of a call. `seq` orders events within the call and makes a retried
/// append a no-op.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CallEvent {
    pub seq: i32,
    pub kind: EventKind,
    pub occurred_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub text: Option<String>,
    pub data: Value,
}

/// A transfer a human accepted.
#[derive(Debug, Clone)]
pub struct TransferRecord {
    pub at: DateTime<Utc>,
    pub reason: String,
    pub department: Option<String>,
}

/// How a call that reached the stream ended.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CallEnd {
    pub ended_at: DateTime<Utc>,
    pub end_reason: EndReason,
    /// `Called` or `Voicemail` for a call that reached the stream; a transferred call stays
    /// `transferred` whatever is passed here.
    pub outcome: CallOutcome,
    /// Seconds; `None` computes it from the call's start.
    pub duration_secs: Option<i32>,
    pub summary: Option<String>,
    /// The finished recording's API resource, with `{call_id}` for the row's id
    /// (`recording::RECORDING_URL_TEMPLATE`); `None` when the call was not recorded.
    pub recording_url: Option<String>,
    /// Merged into `call_logs.metadata` (latency figures, provider usage...).
    pub metadata: Value,
    /// A callback the caller asked for: a dial attempt inserted with the close.
    pub callback: Option<CallbackRequest>,
    /// What the call says about the lead (whether it reached them is the close's to decide).
    pub lead_facts: CallFacts,
    /// The call's analysis (`call_logs.metadata.analysis`), kept as the lead's latest.
    pub analysis: Option<Value>,
}

/// A callback the lead asked for in the call, resolved inside the campaign's calling window.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CallbackRequest {
    pub due_at: DateTime<Utc>,
    /// What was said ("tomorrow at 11").
    pub phrase: String,
    /// Why, for the callback call's agent (else the call's summary is used).
    pub note: Option<String>,
}

/// The parts of a callback attempt.
struct NewCallback<'a> {
    organization_id: Uuid,
    campaign_id: Uuid,
    lead_id: Uuid,
    call_sid: &'a str,
    requested_at: DateTime<Utc>,
    callback: &'a CallbackRequest,
    note: Option<&'a str>,
}

/// At most this many callbacks wait for one lead; a newer request supersedes the oldest.
pub const MAX_PENDING_CALLBACKS: i64 = 3;

/// A call that ended before its media stream started (no answer, busy, failed, machine), or
/// whose hangup callback came before the stream's open.
#[derive(Debug, Clone)]
pub struct UnreachedCall {
    pub call_sid: String,
    pub campaign_id: Uuid,
    pub lead_id: Uuid,
    pub direction: Direction,
    pub at: DateTime<Utc>,
    pub end_reason: EndReason,
    /// Plivo says the call was answered (`completed` with a duration or an answer time): it
    /// is a `called` call whose open has not been written (yet), never a `no_answer`.
    pub answered: bool,
    /// Plivo's `Duration` of the whole call (0 for a call nobody answered).
    pub duration_secs: i32,
    pub metadata: Value,
}

/// Whether a write happened now or had already happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// This call changed the database.
    Now,
    /// An earlier (or concurrent) call had already done it; nothing changed.
    Already,
}

/// The `call_logs` row of a call.
#[derive(Debug, Clone, PartialEq)]
pub struct CallLogRow {
    pub id: Uuid,
    pub organization_id: Uuid,
    pub campaign_id: Uuid,
    pub lead_id: Uuid,
    pub call_sid: Option<String>,
    pub call_status: String,
    pub direction: String,
    pub transferred: bool,
    pub transfer_reason: Option<String>,
    pub transfer_department: Option<String>,
    pub duration: i32,
    pub transcript: Option<String>,
    pub conversation_summary: Option<String>,
    pub recording_url: Option<String>,
    pub end_reason: Option<String>,
    pub ended_at: Option<DateTime<Utc>>,
    pub metadata: Option<Value>,
}

impl Database {
    /// Opens a call when its stream starts: the `call_logs` row, the lead's `call_log_id` and
    /// `call_date`, and the campaign's `total_calls` (exactly once). A provisional row the
    /// hangup callback wrote first (see the module's documentation) is reopened as this call,
    /// held by this gateway, and not counted again.
    pub async fn open_call(&self, call: &CallStart) -> Result<(Uuid, Applied), DbError> {
        let mut tx = self.pool.begin().await?;
        let written = sqlx::query!(
            r#"INSERT INTO call_logs (campaign_id, lead_id, organization_id, call_sid, call_status,
                                     call_timestamp, direction, server_name, metadata)
               SELECT c.id, l.id, l.organization_id, $3, 'called', $4, $5, $6, $7
               FROM leads l JOIN campaigns c ON c.organization_id = l.organization_id
               WHERE l.id = $1 AND c.id = $2
               ON CONFLICT (call_sid) DO UPDATE
               SET call_status = 'called', call_timestamp = EXCLUDED.call_timestamp,
                   server_name = EXCLUDED.server_name, ended_at = NULL, end_reason = NULL,
                   metadata = coalesce(call_logs.metadata, '{}'::jsonb) || EXCLUDED.metadata
               WHERE call_logs.server_name IS NULL AND call_logs.ended_at IS NOT NULL
                 AND NOT call_logs.transferred AND call_logs.call_status <> 'voicemail'
                 AND call_logs.lead_id = EXCLUDED.lead_id
               RETURNING id, (xmax = 0) AS "inserted!""#,
            call.lead_id,
            call.campaign_id,
            call.call_sid,
            call.started_at,
            call.direction.as_str(),
            call.server_name,
            call.metadata,
        )
        .fetch_optional(&mut *tx)
        .await?;
        let Some(written) = written else {
            tx.rollback().await?;
            return match self.call_log_id(&call.call_sid).await? {
                Some(id) => Ok((id, Applied::Already)),
                None => Err(DbError::UnknownLead {
                    lead_id: call.lead_id,
                    campaign_id: call.campaign_id,
                }),
            };
        };
        sqlx::query!(
            r#"UPDATE leads SET call_log_id = $1, call_date = $2
               WHERE id = $3 AND (call_date IS NULL OR call_date <= $2)"#,
            written.id,
            call.started_at,
            call.lead_id,
        )
        .execute(&mut *tx)
        .await?;
        if written.inserted {
            bump_total_calls(&mut tx, call.campaign_id).await?;
        } else {
            tracing::info!(call_sid = %call.call_sid, "the hangup callback came first; its row is now the call");
        }
        tx.commit().await?;
        Ok((written.id, Applied::Now))
    }

    /// Appends one event to an open or closed call; appending the same `seq` again is a no-op.
    pub async fn append_call_event(
        &self,
        call_sid: &str,
        event: &CallEvent,
    ) -> Result<Applied, DbError> {
        let result = sqlx::query!(
            r#"INSERT INTO call_events (call_log_id, organization_id, seq, kind, occurred_at, ended_at, text, data)
               SELECT id, organization_id, $2, $3, $4, $5, $6, $7 FROM call_logs WHERE call_sid = $1
               ON CONFLICT (call_log_id, seq) DO NOTHING"#,
            call_sid,
            event.seq,
            event.kind.as_str(),
            event.occurred_at,
            event.ended_at,
            event.text,
            event.data,
        )
        .execute(&self.pool)
        .await?;
        if result.rows_affected() == 1 {
            return Ok(Applied::Now);
        }
        match self.call_log_id(call_sid).await? {
            Some(_) => Ok(Applied::Already),
            None => Err(DbError::UnknownCall(call_sid.to_owned())),
        }
    }

    /// Records a transfer a human accepted: the call and lead become `transferred`, the
    /// campaign's `transferred_calls` goes up exactly once. Works before or after the close.
    pub async fn record_transfer(
        &self,
        call_sid: &str,
        transfer: &TransferRecord,
    ) -> Result<Applied, DbError> {
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query!(
            r#"UPDATE call_logs
               SET transferred = TRUE, transferred_at = $2, transfer_reason = $3,
                   transfer_department = $4, call_status = 'transferred'
               WHERE call_sid = $1 AND NOT transferred
               RETURNING id, lead_id, campaign_id"#,
            call_sid,
            transfer.at,
            transfer.reason,
            transfer.department,
        )
        .fetch_optional(&mut *tx)
        .await?;
        let Some(call) = updated else {
            tx.rollback().await?;
            return match self.call_log_id(call_sid).await? {
                Some(_) => Ok(Applied::Already),
                None => Err(DbError::UnknownCall(call_sid.to_owned())),
            };
        };
        let facts = CallFacts {
            reached: true,
            transfer_accepted: true,
            ..CallFacts::default()
        };
        self.move_lead(&mut tx, call.lead_id, &facts).await?;
        sqlx::query!(
            r#"UPDATE leads SET transferred_to_human = TRUE,
                   call_status = CASE WHEN call_log_id = $2 THEN 'transferred' ELSE call_status END
               WHERE id = $1"#,
            call.lead_id,
            call.id,
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query!(
            "UPDATE campaigns SET transferred_calls = transferred_calls + 1 WHERE id = $1",
            call.campaign_id
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Applied::Now)
    }

    /// Closes a call once: end time and reason, duration, the transcript flattened from its
    /// speech events, summary, recording, metadata; the lead's `call_status` from the outcome
    /// (when this is the lead's latest call), and a `new` lead that was reached becomes
    /// `contacted`.
    pub async fn close_call(&self, call_sid: &str, end: &CallEnd) -> Result<Applied, DbError> {
        let mut tx = self.pool.begin().await?;
        let closed = sqlx::query!(
            r#"UPDATE call_logs AS cl
               SET ended_at = $2,
                   -- A machine the detection reported (db::dialer::record_voicemail) stays one.
                   end_reason = CASE WHEN cl.call_status = 'voicemail' AND NOT cl.transferred
                                     THEN 'voicemail' ELSE $3 END,
                   -- Plivo's hangup callback, when it came first, has the whole call's duration.
                   duration = CASE WHEN cl.metadata ? 'hangup' THEN cl.duration
                                   ELSE coalesce($4, greatest(0, floor(extract(epoch FROM ($2 - cl.call_timestamp))))::integer)
                              END,
                   transcript = (
                       SELECT string_agg(
                                  CASE e.kind WHEN 'caller_speech' THEN 'Caller: ' ELSE 'Agent: ' END || e.text,
                                  E'\n' ORDER BY e.seq)
                       FROM call_events e
                       WHERE e.call_log_id = cl.id
                         AND e.kind IN ('caller_speech', 'agent_speech')
                         AND e.text IS NOT NULL AND e.text <> ''),
                   conversation_summary = coalesce($5, cl.conversation_summary),
                   -- The bridge names the API resource with a `{call_id}` the row fills in.
                   recording_url = coalesce(replace($6, '{call_id}', cl.id::text), cl.recording_url),
                   metadata = coalesce(cl.metadata, '{}'::jsonb) || $7,
                   call_status = CASE WHEN cl.transferred THEN 'transferred'
                                      WHEN cl.call_status = 'voicemail' THEN 'voicemail'
                                      ELSE $8 END
               WHERE cl.call_sid = $1 AND cl.ended_at IS NULL
               RETURNING cl.id, cl.lead_id, cl.campaign_id, cl.organization_id, cl.transferred,
                         cl.call_status"#,
            call_sid,
            end.ended_at,
            end.end_reason.as_str(),
            end.duration_secs,
            end.summary,
            end.recording_url,
            end.metadata,
            end.outcome.as_str(),
        )
        .fetch_optional(&mut *tx)
        .await?;
        let Some(call) = closed else {
            tx.rollback().await?;
            return match self.call_log_id(call_sid).await? {
                Some(_) => Ok(Applied::Already),
                None => Err(DbError::UnknownCall(call_sid.to_owned())),
            };
        };
        let reached = matches!(call.call_status.as_str(), "called" | "transferred");
        let facts = CallFacts {
            reached,
            transfer_accepted: call.transferred,
            ..end.lead_facts
        };
        self.move_lead(&mut tx, call.lead_id, &facts).await?;
        sqlx::query!(
            r#"UPDATE leads
               SET call_status = CASE WHEN call_log_id = $2 THEN $3 ELSE call_status END,
                   metadata = CASE WHEN $4::jsonb IS NULL THEN metadata
                                   ELSE coalesce(metadata, '{}'::jsonb)
                                        || jsonb_build_object('latest_analysis', $4::jsonb,
                                                              'latest_call_sid', $5::text)
                              END
               WHERE id = $1"#,
            call.lead_id,
            call.id,
            call.call_status,
            end.analysis,
            call_sid,
        )
        .execute(&mut *tx)
        .await?;
        if let Some(callback) = &end.callback {
            let note = callback.note.as_deref().or(end.summary.as_deref());
            self.insert_callback(
                &mut tx,
                NewCallback {
                    organization_id: call.organization_id,
                    campaign_id: call.campaign_id,
                    lead_id: call.lead_id,
                    call_sid,
                    requested_at: end.ended_at,
                    callback,
                    note,
                },
            )
            .await?;
        }
        tx.commit().await?;
        Ok(Applied::Now)
    }

    /// Moves `leads.status` by the rules of [`next_status`], under the lead's row lock.
    async fn move_lead(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        lead_id: Uuid,
        facts: &CallFacts,
    ) -> Result<(), DbError> {
        let current =
            sqlx::query_scalar!("SELECT status FROM leads WHERE id = $1 FOR UPDATE", lead_id)
                .fetch_optional(&mut **tx)
                .await?;
        let Some(current) = current.as_deref().and_then(LeadStatus::parse) else {
            return Ok(());
        };
        let next = next_status(current, facts);
        if next != current {
            sqlx::query!(
                "UPDATE leads SET status = $2 WHERE id = $1",
                lead_id,
                next.as_str()
            )
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }

    /// Inserts a callback attempt (the lead's next attempt number; a concurrent insert of the
    /// same number is retried with the next) and cancels the lead's oldest pending callbacks
    /// beyond [`MAX_PENDING_CALLBACKS`].
    async fn insert_callback(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        new: NewCallback<'_>,
    ) -> Result<Uuid, DbError> {
        for _ in 0..5 {
            let inserted = sqlx::query_scalar!(
                r#"INSERT INTO dial_attempts (organization_id, campaign_id, lead_id, attempt_number,
                                              status, due_at, is_callback, callback_call_sid,
                                              callback_requested_at, callback_phrase, callback_note)
                   SELECT $1, $2, $3, coalesce(max(attempt_number), 0) + 1, 'scheduled', $4, TRUE,
                          $5, $6, $7, $8
                   FROM dial_attempts WHERE campaign_id = $2 AND lead_id = $3
                   ON CONFLICT (campaign_id, lead_id, attempt_number) DO NOTHING
                   RETURNING id"#,
                new.organization_id,
                new.campaign_id,
                new.lead_id,
                new.callback.due_at,
                new.call_sid,
                new.requested_at,
                new.callback.phrase,
                new.note,
            )
            .fetch_optional(&mut **tx)
            .await?;
            let Some(id) = inserted else {
                continue;
            };
            sqlx::query!(
                r#"UPDATE dial_attempts SET status = 'canceled', ended_at = now(),
                          error = 'superseded by a newer callback'
                   WHERE id IN (SELECT id FROM dial_attempts
                                WHERE lead_id = $1 AND is_callback AND status = 'scheduled'
                                ORDER BY created_at DESC, callback_requested_at DESC
                                OFFSET $2)"#,
                new.lead_id,
                MAX_PENDING_CALLBACKS,
            )
            .execute(&mut **tx)
            .await?;
            return Ok(id);
        }
        Err(DbError::ConcurrentChange("the lead's attempt numbers"))
    }

    /// Records a call that ended before its stream started, from Plivo's callbacks. A call that
    /// already has a row (it did reach the stream) is left as it is. An answered call is
    /// `called` and moves the lead as a reached call does; its row is provisional until the
    /// stream's open, if any, takes it over.
    pub async fn record_unreached_call(
        &self,
        call: &UnreachedCall,
    ) -> Result<(Uuid, Applied), DbError> {
        let outcome = match call.answered {
            true => CallOutcome::Called,
            false => call.end_reason.unreached_outcome(),
        };
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query_scalar!(
            r#"INSERT INTO call_logs (campaign_id, lead_id, organization_id, call_sid, call_status,
                                     call_timestamp, duration, ended_at, end_reason, direction, metadata)
               SELECT c.id, l.id, l.organization_id, $3, $4, $5, $9, $5, $6, $7, $8
               FROM leads l JOIN campaigns c ON c.organization_id = l.organization_id
               WHERE l.id = $1 AND c.id = $2
               ON CONFLICT (call_sid) DO NOTHING
               RETURNING id"#,
            call.lead_id,
            call.campaign_id,
            call.call_sid,
            outcome.as_str(),
            call.at,
            call.end_reason.as_str(),
            call.direction.as_str(),
            call.metadata,
            call.duration_secs.max(0),
        )
        .fetch_optional(&mut *tx)
        .await?;
        let Some(call_log_id) = inserted else {
            tx.rollback().await?;
            return match self.call_log_id(&call.call_sid).await? {
                Some(id) => Ok((id, Applied::Already)),
                None => Err(DbError::UnknownLead {
                    lead_id: call.lead_id,
                    campaign_id: call.campaign_id,
                }),
            };
        };
        sqlx::query!(
            r#"UPDATE leads SET call_log_id = $1, call_date = $2, call_status = $3
               WHERE id = $4 AND (call_date IS NULL OR call_date <= $2)"#,
            call_log_id,
            call.at,
            outcome.as_str(),
            call.lead_id,
        )
        .execute(&mut *tx)
        .await?;
        let facts = CallFacts {
            reached: call.answered,
            ..CallFacts::default()
        };
        self.move_lead(&mut tx, call.lead_id, &facts).await?;
        bump_total_calls(&mut tx, call.campaign_id).await?;
        tx.commit().await?;
        Ok((call_log_id, Applied::Now))
    }

    /// Sets the call's duration from Plivo's hangup callback, which covers the whole call (the
    /// AI part and any human part). Setting, not adding, so repeats are harmless.
    pub async fn record_hangup_duration(
        &self,
        call_sid: &str,
        duration_secs: i32,
        details: &Value,
    ) -> Result<(), DbError> {
        let result = sqlx::query!(
            r#"UPDATE call_logs SET duration = $2, metadata = coalesce(metadata, '{}'::jsonb) || $3
               WHERE call_sid = $1"#,
            call_sid,
            duration_secs.max(0),
            details,
        )
        .execute(&self.pool)
        .await?;
        match result.rows_affected() {
            0 => Err(DbError::UnknownCall(call_sid.to_owned())),
            _ => Ok(()),
        }
    }

    /// The `call_logs` row of a call.
    pub async fn call_log(&self, call_sid: &str) -> Result<Option<CallLogRow>, DbError> {
        let row = sqlx::query_as!(
            CallLogRow,
            r#"SELECT id, organization_id, campaign_id, lead_id, call_sid, call_status, direction,
                      transferred, transfer_reason, transfer_department, duration, transcript,
                      conversation_summary, recording_url, end_reason, ended_at, metadata
               FROM call_logs WHERE call_sid = $1"#,
            call_sid
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(row)
    }

    /// Reopens a call whose transfer nobody took, so its resumed stream can close it again
    /// with the real end; the gateway holding the resumed stream (`server_name`) holds the
    /// call now. Returns the next free event `seq`. A transferred call is not reopened.
    pub async fn resume_call(&self, call_sid: &str, server_name: &str) -> Result<i32, DbError> {
        let resumed = sqlx::query!(
            r#"UPDATE call_logs SET ended_at = NULL, end_reason = NULL, server_name = $2
               WHERE call_sid = $1 AND NOT transferred
               RETURNING id"#,
            call_sid,
            server_name
        )
        .fetch_optional(&self.pool)
        .await?;
        let Some(resumed) = resumed else {
            return Err(DbError::UnknownCall(call_sid.to_owned()));
        };
        let next = sqlx::query_scalar!(
            r#"SELECT coalesce(max(seq) + 1, 0) AS "next!" FROM call_events WHERE call_log_id = $1 AND seq < 1000000"#,
            resumed.id
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(next)
    }

    /// Closes the open calls of the gateway `server_name`, which is gone (this is its restart
    /// after a crash, or its heartbeat is stale), with the end reason `gateway_restart`. Each
    /// goes through [`Database::close_call`], so the lead moves and the transcript is kept as
    /// in any close, and a close that wins a race (the gateway was alive after all) stands.
    /// The call ends at its last sign of life: the later of the gateway's last heartbeat and
    /// the call's last event. Returns the calls this closed.
    pub async fn close_orphaned_calls(
        &self,
        server_name: &str,
        closed_by: &str,
    ) -> Result<Vec<String>, DbError> {
        let open = sqlx::query!(
            r#"SELECT cl.call_sid AS "call_sid!",
                      coalesce(least(now(), greatest(
                          cl.call_timestamp, s.last_verified_at,
                          (SELECT max(coalesce(e.ended_at, e.occurred_at)) FROM call_events e
                           WHERE e.call_log_id = cl.id))), now()) AS "last_seen!"
               FROM call_logs cl LEFT JOIN websocket_servers s ON s.name = cl.server_name
               WHERE cl.server_name = $1 AND cl.ended_at IS NULL AND cl.call_sid IS NOT NULL
               ORDER BY cl.call_timestamp"#,
            server_name
        )
        .fetch_all(&self.pool)
        .await?;
        let mut closed = Vec::new();
        for call in open {
            let end = CallEnd {
                ended_at: call.last_seen,
                end_reason: EndReason::GatewayRestart,
                outcome: CallOutcome::Called,
                duration_secs: None,
                summary: None,
                recording_url: None,
                metadata: serde_json::json!({
                    "end_reason": EndReason::GatewayRestart.as_str(),
                    "gateway_restart": {"server": server_name, "closed_by": closed_by},
                }),
                callback: None,
                lead_facts: CallFacts::default(),
                analysis: None,
            };
            if self.close_call(&call.call_sid, &end).await? == Applied::Now {
                closed.push(call.call_sid);
            }
        }
        Ok(closed)
    }

    async fn call_log_id(&self, call_sid: &str) -> Result<Option<Uuid>, DbError> {
        let id = sqlx::query_scalar!("SELECT id FROM call_logs WHERE call_sid = $1", call_sid)
            .fetch_optional(&self.pool)
            .await?;
        Ok(id)
    }
}

async fn bump_total_calls(
    tx: &mut sqlx::PgTransaction<'_>,
    campaign_id: Uuid,
) -> Result<(), DbError> {
    sqlx::query!(
        "UPDATE campaigns SET total_calls = total_calls + 1 WHERE id = $1",
        campaign_id
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}
