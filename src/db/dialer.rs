//! The dialer's statements: claiming due attempts (one transaction per organization, under
//! its lock), the account's pacing row, an attempt's placement and end (with its retry), a
//! machine's voicemail, the recovery of attempts nobody heard back about, and completing
//! campaigns.
//!
//! A claim is serialised per organization by locking the organization's row, so the count of
//! calls in flight and the claim cannot interleave with another gateway's; the campaigns it
//! claims for are share-locked, so a pause or cancel either commits before the claim reads them
//! (and nothing more is claimed) or waits for the claim; attempts are locked `FOR UPDATE SKIP
//! LOCKED`. The pacing row is locked last (lock order: organization, campaigns, attempts,
//! pacing), and only by a claim that has something to place.
//!
//! The do-not-call list is read in the statement that locks the candidates: a suppressed
//! one is not handed to the plan but cancelled (`error = 'do_not_call'`) when the claim
//! commits. An add to the list takes the organization's row before it commits (see
//! `db::suppression`), so a claim either commits before it or sees the number.

use chrono::{DateTime, Utc};
use sqlx::PgTransaction;
use uuid::Uuid;

use super::{Database, DbError, calls::UnreachedCall, suppression::DO_NOT_CALL_ERROR};
use crate::{
    dialer::{
        plan::{CampaignSlot, Candidate, Placement, Unplaceable},
        retry::{AttemptClass, Finished},
        voicemail::Messages,
        window::CallingWindow,
    },
    domain::{Direction, EndReason},
};

/// A claim in progress: the organization's row is locked until it commits or is dropped.
pub struct Claim {
    tx: PgTransaction<'static>,
    pub organization_id: Uuid,
    /// The organization's free concurrency (its limit minus its calls in flight).
    pub org_free: i64,
    /// The campaigns with due attempts, share-locked.
    pub campaigns: Vec<CampaignSlot>,
    /// Locked attempts whose number is on the do-not-call list: cancelled by `commit`.
    suppressed: Vec<Uuid>,
}

/// An attempt that ended, as the retry policy sees it.
#[derive(Debug, Clone)]
pub struct FinishedAttempt {
    pub attempt_id: Uuid,
    pub campaign_id: Uuid,
    pub lead_id: Uuid,
    pub campaign_status: String,
    pub policy: Finished,
}

/// What finishing an attempt did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinishOutcome {
    /// The attempt ended now; `next` is the retry scheduled, if any.
    Finished { next: Option<(Uuid, DateTime<Utc>)> },
    /// It had already ended (a repeated callback): nothing changed.
    AlreadyFinished,
    /// No such attempt.
    Unknown,
}

/// How an attempt ended, from a callback, a failed placement or the recovery.
#[derive(Debug, Clone)]
pub struct AttemptEnd {
    pub attempt_id: Uuid,
    pub class: AttemptClass,
    pub call_sid: Option<String>,
    pub hangup_cause: Option<String>,
    pub error: Option<String>,
}

/// A machine's attempt, with what its voicemail needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoicemailAttempt {
    /// The attempt's status (`voicemail` once a machine ended it).
    pub status: String,
    pub call_sid: Option<String>,
    pub lead_name: String,
    /// The campaign's language (`en`, `en-GB`…).
    pub language: String,
    pub messages: Messages,
}

/// An attempt in flight for too long, with what the call's own record says.
#[derive(Debug, Clone)]
pub struct StuckAttempt {
    pub attempt_id: Uuid,
    pub status: String,
    pub call_sid: Option<String>,
    /// The call's `call_logs` row, if there is one: by the attempt's `call_sid`, else (the
    /// answer callback did not reach the attempt) the lead's outbound call in the campaign
    /// since the attempt was placed.
    pub logged: Option<LoggedCall>,
}

/// What a call's log says about a call the dialer lost track of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedCall {
    pub call_sid: String,
    /// `call_logs.call_status`: `called` and `transferred` reached the stream.
    pub call_status: String,
}

const IN_FLIGHT: &[&str] = &["dialing", "ringing", "in_progress"];

impl Database {
    /// Organizations that have attempts due at `now` (of running campaigns, or test calls).
    pub async fn organizations_with_due_attempts(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<Uuid>, DbError> {
        let ids = sqlx::query_scalar!(
            r#"SELECT DISTINCT a.organization_id
               FROM dial_attempts a JOIN campaigns c ON c.id = a.campaign_id
               WHERE a.status = 'scheduled' AND a.due_at <= $1
                 AND (c.status = 'running' OR a.is_test)"#,
            now
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(ids)
    }

    /// Starts a claim for one organization at `now`: locks its row, counts its calls in flight
    /// (after the lock, so every earlier claim is seen), and share-locks its campaigns that
    /// have due attempts, with their own counts. `None`: the organization is gone.
    pub async fn begin_claim(
        &self,
        organization_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Option<Claim>, DbError> {
        let mut tx = self.pool.begin().await?;
        let org = sqlx::query!(
            "SELECT max_concurrent_calls FROM organizations WHERE id = $1 FOR NO KEY UPDATE",
            organization_id
        )
        .fetch_optional(&mut *tx)
        .await?;
        let Some(org) = org else {
            return Ok(None);
        };
        // A separate statement: its snapshot is taken after the lock was granted.
        let org_in_flight = sqlx::query_scalar!(
            r#"SELECT count(*) AS "count!" FROM dial_attempts
               WHERE organization_id = $1 AND status = ANY($2)"#,
            organization_id,
            IN_FLIGHT as &[&str],
        )
        .fetch_one(&mut *tx)
        .await?;
        let rows = sqlx::query!(
            r#"SELECT c.id, c.status = 'running' AS "running!", c.timezone,
                      c.calling_window_start, c.calling_window_end, c.calling_days,
                      c.starts_on, c.ends_on,
                      coalesce(c.caller_id, o.caller_id) AS caller_id,
                      c.max_concurrent_calls, c.calls_per_minute,
                      c.ring_timeout_seconds, c.max_call_duration_seconds,
                      (SELECT count(*) FROM dial_attempts f
                       WHERE f.campaign_id = c.id AND f.status = ANY($3)) AS "in_flight!",
                      (SELECT count(*) FROM dial_attempts f
                       WHERE f.campaign_id = c.id AND f.claimed_at > $2::timestamptz - interval '1 minute')
                       AS "claimed_last_minute!"
               FROM campaigns c JOIN organizations o ON o.id = c.organization_id
               WHERE c.organization_id = $1
                 AND EXISTS (SELECT 1 FROM dial_attempts a
                             WHERE a.campaign_id = c.id AND a.status = 'scheduled'
                               AND a.due_at <= $2 AND (c.status = 'running' OR a.is_test))
               ORDER BY c.id
               FOR SHARE OF c"#,
            organization_id,
            now,
            IN_FLIGHT as &[&str],
        )
        .fetch_all(&mut *tx)
        .await?;
        let campaigns = rows
            .into_iter()
            .map(|row| CampaignSlot {
                id: row.id,
                running: row.running,
                timezone: row.timezone,
                window: CallingWindow::from_columns(
                    row.calling_window_start,
                    row.calling_window_end,
                    &row.calling_days,
                    row.starts_on,
                    row.ends_on,
                ),
                caller_id: row.caller_id,
                max_concurrent_calls: i64::from(row.max_concurrent_calls),
                calls_per_minute: i64::from(row.calls_per_minute),
                in_flight: row.in_flight,
                claimed_last_minute: row.claimed_last_minute,
                ring_timeout_seconds: row.ring_timeout_seconds,
                max_call_duration_seconds: row.max_call_duration_seconds,
            })
            .collect();
        Ok(Some(Claim {
            tx,
            organization_id,
            org_free: i64::from(org.max_concurrent_calls) - org_in_flight,
            campaigns,
            suppressed: Vec::new(),
        }))
    }
}

impl Claim {
    /// Locks up to `limit` due attempts of the claim's campaigns (test calls first, then the
    /// longest due), skipping rows another transaction holds and leads with a call in flight.
    /// Those whose number is on the organization's do-not-call list are not returned: they are
    /// kept for `commit` to cancel (see [`Claim::suppressed`]).
    pub async fn candidates(
        &mut self,
        now: DateTime<Utc>,
        campaign_ids: &[Uuid],
        limit: i64,
    ) -> Result<Vec<Candidate>, DbError> {
        let running: Vec<Uuid> = self
            .campaigns
            .iter()
            .filter(|c| c.running && campaign_ids.contains(&c.id))
            .map(|c| c.id)
            .collect();
        let rows = sqlx::query!(
            r#"SELECT a.id, a.campaign_id, a.lead_id, a.attempt_number, a.is_test,
                      l.phone, l.timezone,
                      EXISTS (SELECT 1 FROM do_not_call d
                              WHERE d.organization_id = a.organization_id
                                AND d.phone_number = l.phone) AS "suppressed!"
               FROM dial_attempts a JOIN leads l ON l.id = a.lead_id
               WHERE a.organization_id = $1 AND a.status = 'scheduled' AND a.due_at <= $2
                 AND (a.campaign_id = ANY($3) OR (a.is_test AND a.campaign_id = ANY($4)))
                 AND NOT EXISTS (SELECT 1 FROM dial_attempts f
                                 WHERE f.lead_id = a.lead_id AND f.status = ANY($6))
               ORDER BY a.is_test DESC, a.due_at, a.id
               LIMIT $5
               FOR UPDATE OF a SKIP LOCKED"#,
            self.organization_id,
            now,
            &running,
            campaign_ids,
            limit,
            IN_FLIGHT as &[&str],
        )
        .fetch_all(&mut *self.tx)
        .await?;
        let (suppressed, rows): (Vec<_>, Vec<_>) = rows.into_iter().partition(|row| row.suppressed);
        self.suppressed
            .extend(suppressed.into_iter().map(|row| row.id));
        Ok(rows
            .into_iter()
            .map(|row| Candidate {
                attempt_id: row.id,
                campaign_id: row.campaign_id,
                lead_id: row.lead_id,
                attempt_number: row.attempt_number,
                is_test: row.is_test,
                phone: row.phone,
                lead_timezone: row.timezone,
            })
            .collect())
    }

    /// The attempts this claim found on the do-not-call list (cancelled when it commits).
    pub fn suppressed(&self) -> usize {
        self.suppressed.len()
    }

    /// Locks the account's pacing row (creating it on first use) and reads the database's
    /// clock after the lock: one clock for every gateway, whatever their own clocks say.
    pub async fn lock_pacing(
        &mut self,
        account: &str,
    ) -> Result<(Vec<DateTime<Utc>>, DateTime<Utc>), DbError> {
        let recent = sqlx::query_scalar!(
            r#"INSERT INTO dialer_pacing (account) VALUES ($1)
               ON CONFLICT (account) DO UPDATE SET account = EXCLUDED.account
               RETURNING recent_dials"#,
            account
        )
        .fetch_one(&mut *self.tx)
        .await?;
        let now = sqlx::query_scalar!(r#"SELECT clock_timestamp() AS "now!""#)
            .fetch_one(&mut *self.tx)
            .await?;
        Ok((recent, now))
    }

    pub async fn store_pacing(
        &mut self,
        account: &str,
        recent: &[DateTime<Utc>],
    ) -> Result<(), DbError> {
        sqlx::query!(
            "UPDATE dialer_pacing SET recent_dials = $2, updated_at = now() WHERE account = $1",
            account,
            recent
        )
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Applies the claim's decisions and commits: placed attempts become `dialing` (claimed by
    /// `server` at `now`), attempts outside their window move to its opening, unplaceable ones
    /// end, suppressed ones are cancelled with `error = 'do_not_call'`.
    pub async fn commit(
        mut self,
        server: &str,
        now: DateTime<Utc>,
        place: &[Placement],
        reschedule: &[(Uuid, DateTime<Utc>)],
        finish: &[Unplaceable],
    ) -> Result<(), DbError> {
        if !place.is_empty() {
            let ids: Vec<Uuid> = place.iter().map(|p| p.attempt_id).collect();
            sqlx::query!(
                r#"UPDATE dial_attempts SET status = 'dialing', claimed_by = $2, claimed_at = $3
                   WHERE id = ANY($1) AND status = 'scheduled'"#,
                &ids,
                server,
                now
            )
            .execute(&mut *self.tx)
            .await?;
        }
        if !reschedule.is_empty() {
            let (ids, due): (Vec<Uuid>, Vec<DateTime<Utc>>) = reschedule.iter().copied().unzip();
            sqlx::query!(
                r#"UPDATE dial_attempts a SET due_at = v.due_at
                   FROM unnest($1::uuid[], $2::timestamptz[]) AS v(id, due_at)
                   WHERE a.id = v.id AND a.status = 'scheduled'"#,
                &ids,
                &due
            )
            .execute(&mut *self.tx)
            .await?;
        }
        if !finish.is_empty() {
            let ids: Vec<Uuid> = finish.iter().map(|f| f.attempt_id).collect();
            let statuses: Vec<&str> = finish.iter().map(|f| f.class.as_str()).collect();
            let errors: Vec<&str> = finish.iter().map(|f| f.error.as_str()).collect();
            sqlx::query!(
                r#"UPDATE dial_attempts a SET status = v.status, error = v.error, ended_at = $4
                   FROM unnest($1::uuid[], $2::text[], $3::text[]) AS v(id, status, error)
                   WHERE a.id = v.id AND a.status = 'scheduled'"#,
                &ids,
                &statuses as &[&str],
                &errors as &[&str],
                now
            )
            .execute(&mut *self.tx)
            .await?;
        }
        if !self.suppressed.is_empty() {
            sqlx::query!(
                r#"UPDATE dial_attempts SET status = 'canceled', error = $2, ended_at = $3
                   WHERE id = ANY($1) AND status = 'scheduled'"#,
                &self.suppressed,
                DO_NOT_CALL_ERROR,
                now
            )
            .execute(&mut *self.tx)
            .await?;
        }
        self.tx.commit().await?;
        Ok(())
    }
}

impl Database {
    /// Plivo accepted the call: its request id and when it was sent. The attempt is `ringing`
    /// unless a callback already moved it on.
    pub async fn record_placed(
        &self,
        attempt_id: Uuid,
        request_uuid: &str,
        placed_at: DateTime<Utc>,
    ) -> Result<(), DbError> {
        sqlx::query!(
            r#"UPDATE dial_attempts
               SET request_uuid = $2, placed_at = coalesce(placed_at, $3),
                   status = CASE WHEN status = 'dialing' THEN 'ringing' ELSE status END
               WHERE id = $1"#,
            attempt_id,
            request_uuid,
            placed_at
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Plivo said "later" (429, 503) before placing the call: the attempt goes back to the
    /// queue at `due_at`, uncounted.
    pub async fn requeue_attempt(
        &self,
        attempt_id: Uuid,
        due_at: DateTime<Utc>,
        error: &str,
    ) -> Result<(), DbError> {
        sqlx::query!(
            r#"UPDATE dial_attempts
               SET status = 'scheduled', due_at = $2, error = $3, claimed_by = NULL
               WHERE id = $1 AND status = 'dialing'"#,
            attempt_id,
            due_at,
            error
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The answer callback: the call is up (`in_progress`), with its CallUUID.
    pub async fn mark_attempt_answered(
        &self,
        attempt_id: Uuid,
        call_sid: &str,
    ) -> Result<bool, DbError> {
        let result = sqlx::query!(
            r#"UPDATE dial_attempts
               SET status = 'in_progress', answered_at = coalesce(answered_at, now()),
                   call_sid = coalesce(call_sid, $2)
               WHERE id = $1 AND status IN ('dialing', 'ringing')"#,
            attempt_id,
            call_sid
        )
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Ends an attempt once (a repeated callback changes nothing) and, in the same transaction,
    /// schedules the lead's next attempt when `retry` says so, the campaign is running or
    /// paused and the lead's number is not on the do-not-call list (a cancelled campaign gets none: its row is share-locked, so a cancel commits
    /// either before, and is seen, or after, and cancels the new row too).
    pub async fn finish_attempt(
        &self,
        end: &AttemptEnd,
        retry: impl FnOnce(&FinishedAttempt) -> Option<std::time::Duration>,
    ) -> Result<FinishOutcome, DbError> {
        let mut tx = self.pool.begin().await?;
        let ended = sqlx::query!(
            r#"UPDATE dial_attempts
               SET status = $2, ended_at = now(), call_sid = coalesce(call_sid, $3),
                   hangup_cause = coalesce($4, hangup_cause), error = coalesce($5, error)
               WHERE id = $1 AND status = ANY($6)
               RETURNING organization_id, campaign_id, lead_id, attempt_number, is_test"#,
            end.attempt_id,
            end.class.as_str(),
            end.call_sid,
            end.hangup_cause,
            end.error,
            IN_FLIGHT as &[&str],
        )
        .fetch_optional(&mut *tx)
        .await?;
        let Some(ended) = ended else {
            tx.rollback().await?;
            let exists = sqlx::query_scalar!(
                r#"SELECT EXISTS (SELECT 1 FROM dial_attempts WHERE id = $1) AS "exists!""#,
                end.attempt_id
            )
            .fetch_one(&self.pool)
            .await?;
            return Ok(if exists {
                FinishOutcome::AlreadyFinished
            } else {
                FinishOutcome::Unknown
            });
        };
        let campaign = sqlx::query!(
            r#"SELECT status, max_attempts, retry_backoff_seconds FROM campaigns
               WHERE id = $1 FOR SHARE"#,
            ended.campaign_id
        )
        .fetch_one(&mut *tx)
        .await?;
        let lead = sqlx::query!(
            r#"SELECT count(*) FILTER (WHERE status = 'failed' AND id <> $3) AS "earlier_failures!",
                      max(attempt_number) AS "last_number!",
                      -- Callbacks the lead asked for do not use up the retry budget.
                      count(*) FILTER (WHERE NOT is_callback) AS "budget_used!"
               FROM dial_attempts WHERE lead_id = $1 AND campaign_id = $2"#,
            ended.lead_id,
            ended.campaign_id,
            end.attempt_id
        )
        .fetch_one(&mut *tx)
        .await?;
        let finished = FinishedAttempt {
            attempt_id: end.attempt_id,
            campaign_id: ended.campaign_id,
            lead_id: ended.lead_id,
            campaign_status: campaign.status.clone(),
            policy: Finished {
                class: end.class,
                attempt_number: i32::try_from(lead.budget_used).unwrap_or(i32::MAX).max(1),
                is_test: ended.is_test,
                earlier_failures: lead.earlier_failures,
                max_attempts: campaign.max_attempts,
                retry_backoff: std::time::Duration::from_secs(
                    u64::try_from(campaign.retry_backoff_seconds).unwrap_or(0),
                ),
            },
        };
        let backoff =
            retry(&finished).filter(|_| matches!(campaign.status.as_str(), "running" | "paused"));
        let next = match backoff {
            None => None,
            Some(backoff) => {
                let seconds = backoff.as_secs_f64();
                sqlx::query!(
                    r#"INSERT INTO dial_attempts (organization_id, campaign_id, lead_id,
                                                  attempt_number, status, due_at)
                       SELECT $1, $2, $3, $4, 'scheduled', now() + make_interval(secs => $5)
                       WHERE NOT EXISTS (SELECT 1 FROM leads l JOIN do_not_call d
                                           ON d.organization_id = l.organization_id
                                          AND d.phone_number = l.phone
                                         WHERE l.id = $3)
                       ON CONFLICT (campaign_id, lead_id, attempt_number) DO NOTHING
                       RETURNING id, due_at"#,
                    ended.organization_id,
                    ended.campaign_id,
                    ended.lead_id,
                    lead.last_number + 1,
                    seconds
                )
                .fetch_optional(&mut *tx)
                .await?
                .map(|row| (row.id, row.due_at))
            }
        };
        tx.commit().await?;
        Ok(FinishOutcome::Finished { next })
    }

    /// A machine answered: the call's log and the lead end as `voicemail`. A call that never
    /// reached the stream gets its (closed) row now; one that did keeps its row, marked so
    /// that its close (see `close_call`) keeps `voicemail` as status and end reason.
    ///
    /// `metadata` is merged under the row's own keys (a key already there wins), and must
    /// carry `voicemail_left`: its presence is what makes a report the first. Returns whether
    /// this report is the first, so the caller acts on the call (leaves the message or hangs
    /// up) once; a repeated report, or a call a human took, returns false.
    pub async fn record_voicemail(
        &self,
        call_sid: &str,
        lead_id: Uuid,
        campaign_id: Uuid,
        metadata: &serde_json::Value,
    ) -> Result<bool, DbError> {
        let unreached = UnreachedCall {
            call_sid: call_sid.to_owned(),
            campaign_id,
            lead_id,
            direction: Direction::Outbound,
            at: Utc::now(),
            end_reason: EndReason::Voicemail,
            answered: false,
            duration_secs: 0,
            metadata: metadata.clone(),
        };
        match self.record_unreached_call(&unreached).await? {
            (_, super::calls::Applied::Now) => Ok(true),
            (call_log_id, super::calls::Applied::Already) => {
                let mut tx = self.pool.begin().await?;
                let decided = sqlx::query_scalar!(
                    r#"WITH before AS (
                           SELECT id, (metadata -> 'voicemail_left') IS NOT NULL AS decided
                           FROM call_logs WHERE id = $1 AND NOT transferred FOR UPDATE)
                       UPDATE call_logs cl
                       SET call_status = 'voicemail',
                           end_reason = CASE WHEN cl.ended_at IS NULL THEN NULL ELSE 'voicemail' END,
                           metadata = $2 || coalesce(cl.metadata, '{}'::jsonb)
                       FROM before WHERE cl.id = before.id
                       RETURNING before.decided AS "decided!""#,
                    call_log_id,
                    metadata
                )
                .fetch_optional(&mut *tx)
                .await?;
                sqlx::query!(
                    r#"UPDATE leads SET call_status = 'voicemail'
                       WHERE id = $1 AND call_log_id = $2 AND call_status <> 'transferred'"#,
                    lead_id,
                    call_log_id
                )
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(decided == Some(false))
            }
        }
    }

    /// A machine's attempt (matched on all three ids) with what its voicemail needs: the
    /// lead's name, the campaign's language and the candidate messages. `None`: no such
    /// attempt.
    pub async fn voicemail_for_attempt(
        &self,
        attempt_id: Uuid,
        lead_id: Uuid,
        campaign_id: Uuid,
    ) -> Result<Option<VoicemailAttempt>, DbError> {
        let row = sqlx::query!(
            r#"SELECT a.status, a.call_sid, l.name AS lead_name, c.language,
                      CASE WHEN jsonb_typeof(c.settings #> '{script,voicemail_message}') = 'string'
                           THEN c.settings #>> '{script,voicemail_message}' END AS script_message,
                      CASE WHEN jsonb_typeof(c.settings -> 'voicemail_message') = 'string'
                           THEN c.settings ->> 'voicemail_message' END AS campaign_message,
                      CASE WHEN jsonb_typeof(o.settings -> 'voicemail_message') = 'string'
                           THEN o.settings ->> 'voicemail_message' END AS organization_message
               FROM dial_attempts a
               JOIN campaigns c ON c.id = a.campaign_id
               JOIN organizations o ON o.id = c.organization_id
               JOIN leads l ON l.id = a.lead_id
               WHERE a.id = $1 AND a.lead_id = $2 AND a.campaign_id = $3"#,
            attempt_id,
            lead_id,
            campaign_id
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|row| VoicemailAttempt {
            status: row.status,
            call_sid: row.call_sid,
            lead_name: row.lead_name,
            language: row.language,
            messages: Messages {
                script: row.script_message,
                campaign: row.campaign_message,
                organization: row.organization_message,
            },
        }))
    }

    /// Plivo fetched the voicemail document: the call log says the message was left (once:
    /// a repeated fetch changes nothing). Returns whether this fetch recorded it.
    pub async fn record_voicemail_left(&self, call_sid: &str) -> Result<bool, DbError> {
        let result = sqlx::query!(
            r#"UPDATE call_logs
               SET metadata = coalesce(metadata, '{}'::jsonb)
                              || jsonb_build_object('voicemail_left', true, 'voicemail_left_at', now())
               WHERE call_sid = $1 AND call_status = 'voicemail'
                 AND (metadata -> 'voicemail_left') IS DISTINCT FROM 'true'::jsonb"#,
            call_sid
        )
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Moving a machine's call to its message failed: why, on the call log (`voicemail_left`
    /// stays as it is).
    pub async fn record_voicemail_error(&self, call_sid: &str, error: &str) -> Result<(), DbError> {
        sqlx::query!(
            r#"UPDATE call_logs
               SET metadata = coalesce(metadata, '{}'::jsonb) || jsonb_build_object('voicemail_error', $2::text)
               WHERE call_sid = $1"#,
            call_sid,
            error
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Attempts in flight whose last news is older than their campaign's ring timeout plus
    /// maximum call duration plus `margin`: Plivo will not call back about them any more. Each
    /// comes with its call's log, if there is one, which says whether the call was reached.
    pub async fn stuck_attempts(
        &self,
        now: DateTime<Utc>,
        margin: std::time::Duration,
        limit: i64,
    ) -> Result<Vec<StuckAttempt>, DbError> {
        let rows = sqlx::query!(
            r#"SELECT a.id, a.status, a.call_sid, logged.call_sid AS "logged_call_sid?",
                      logged.call_status AS "logged_status?"
               FROM dial_attempts a JOIN campaigns c ON c.id = a.campaign_id
               LEFT JOIN LATERAL (
                   SELECT l.call_sid, l.call_status FROM call_logs l
                   WHERE l.call_sid = a.call_sid
                   UNION ALL
                   (SELECT l.call_sid, l.call_status FROM call_logs l
                    WHERE a.call_sid IS NULL AND l.lead_id = a.lead_id
                      AND l.campaign_id = a.campaign_id AND l.direction = 'outbound'
                      AND l.call_sid IS NOT NULL
                      AND l.call_timestamp >= coalesce(a.placed_at, a.claimed_at, a.created_at)
                    ORDER BY l.call_timestamp
                    LIMIT 1)
                   LIMIT 1) logged ON TRUE
               WHERE a.status = ANY($3)
                 AND coalesce(a.answered_at, a.placed_at, a.claimed_at, a.updated_at)
                     + make_interval(secs => c.ring_timeout_seconds + c.max_call_duration_seconds + $2::float8)
                     < $1
               ORDER BY a.claimed_at
               LIMIT $4"#,
            now,
            margin.as_secs_f64(),
            IN_FLIGHT as &[&str],
            limit
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| StuckAttempt {
                attempt_id: row.id,
                status: row.status,
                call_sid: row.call_sid,
                logged: match (row.logged_call_sid, row.logged_status) {
                    (Some(call_sid), Some(call_status)) => Some(LoggedCall {
                        call_sid,
                        call_status,
                    }),
                    _ => None,
                },
            })
            .collect())
    }

    /// Scheduled attempts of cancelled campaigns end as `canceled` (the API cancels them with
    /// the campaign; this catches a retry that raced the cancel).
    pub async fn cancel_orphaned_attempts(&self) -> Result<u64, DbError> {
        let result = sqlx::query!(
            r#"UPDATE dial_attempts a SET status = 'canceled', ended_at = now(),
                      error = 'the campaign was cancelled'
               FROM campaigns c
               WHERE c.id = a.campaign_id AND a.status = 'scheduled' AND c.status = 'cancelled'"#
        )
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected())
    }

    /// Running campaigns that had attempts and have none scheduled or in flight any more
    /// become `completed`. Returns their ids.
    pub async fn complete_finished_campaigns(&self) -> Result<Vec<Uuid>, DbError> {
        let mut tx = self.pool.begin().await?;
        // Lock first, then look again in a new statement: its snapshot includes a lead enrolled
        // by a transaction that committed while we waited. A campaign an enrollment holds
        // share-locked is skipped until the next pass; one that starts after our lock waits
        // for it and then finds the campaign completed.
        let candidates = sqlx::query_scalar!(
            r#"SELECT c.id FROM campaigns c
               WHERE c.status = 'running'
                 AND EXISTS (SELECT 1 FROM dial_attempts a WHERE a.campaign_id = c.id)
                 AND NOT EXISTS (SELECT 1 FROM dial_attempts a
                                 WHERE a.campaign_id = c.id
                                   AND a.status IN ('scheduled', 'dialing', 'ringing', 'in_progress'))
               FOR UPDATE OF c SKIP LOCKED"#
        )
        .fetch_all(&mut *tx)
        .await?;
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let ids = sqlx::query_scalar!(
            r#"UPDATE campaigns c SET status = 'completed', completed_at = now()
               WHERE c.id = ANY($1) AND c.status = 'running'
                 AND NOT EXISTS (SELECT 1 FROM dial_attempts a
                                 WHERE a.campaign_id = c.id
                                   AND a.status IN ('scheduled', 'dialing', 'ringing', 'in_progress'))
               RETURNING c.id"#,
            &candidates
        )
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(ids)
    }
}
