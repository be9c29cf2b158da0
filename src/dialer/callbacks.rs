//! What Plivo's callbacks about a dialer call do to its attempt: answered → `in_progress`;
//! hung up → the attempt's class and the lead's next attempt; a machine → `voicemail` on the
//! attempt, the call log and the lead, then hang up. Each is idempotent (Plivo retries
//! callbacks); the HTTP handlers only parse and call these.

use uuid::Uuid;

use super::retry::{self, AttemptClass};
use crate::{
    db::{
        Database, DbError,
        dialer::{AttemptEnd, FinishOutcome},
    },
    plivo::rest::PlivoRest,
};

/// Ends an attempt with the campaign's retry policy (the one path every ending takes: hangup
/// callback, failed placement, machine, recovery).
pub async fn finish(db: &Database, end: &AttemptEnd) -> Result<FinishOutcome, DbError> {
    let outcome = db
        .finish_attempt(end, |finished| retry::next_attempt_after(&finished.policy))
        .await?;
    if let FinishOutcome::Finished { .. } = &outcome {
        metrics::counter!(crate::metrics::DIALER_ATTEMPTS_ENDED, "class" => end.class.as_str())
            .increment(1);
    }
    match &outcome {
        FinishOutcome::Finished {
            next: Some((id, due_at)),
        } => tracing::info!(
            attempt_id = %end.attempt_id, class = end.class.as_str(), next_attempt_id = %id,
            %due_at, "attempt ended, next attempt scheduled"
        ),
        FinishOutcome::Finished { next: None } => tracing::info!(
            attempt_id = %end.attempt_id, class = end.class.as_str(), "attempt ended"
        ),
        FinishOutcome::AlreadyFinished => tracing::debug!(
            attempt_id = %end.attempt_id, "attempt had already ended"
        ),
        FinishOutcome::Unknown => tracing::warn!(
            attempt_id = %end.attempt_id, "callback about an unknown attempt"
        ),
    }
    Ok(outcome)
}

/// The answer callback of a dialer call.
pub async fn on_answer(db: &Database, attempt_id: Uuid, call_sid: &str) -> Result<(), DbError> {
    db.mark_attempt_answered(attempt_id, call_sid).await?;
    Ok(())
}

/// The hangup callback's fields that decide the attempt's class.
#[derive(Debug, Clone)]
pub struct Hangup<'a> {
    pub attempt_id: Uuid,
    pub call_sid: &'a str,
    /// `CallStatus`.
    pub status: &'a str,
    /// `HangupCause`.
    pub cause: Option<&'a str>,
    /// `HangupCauseCode`.
    pub cause_code: Option<u32>,
}

/// The hangup callback of a dialer call: the attempt ends by class; no answer, busy and failed
/// schedule the next one.
pub async fn on_hangup(db: &Database, hangup: &Hangup<'_>) -> Result<FinishOutcome, DbError> {
    let class = retry::classify_hangup(hangup.status, hangup.cause, hangup.cause_code);
    let cause = match (hangup.cause, hangup.cause_code) {
        (Some(cause), Some(code)) => Some(format!("{cause} ({code})")),
        (Some(cause), None) => Some(cause.to_owned()),
        (None, Some(code)) => Some(code.to_string()),
        (None, None) => Some(hangup.status.to_owned()),
    };
    finish(
        db,
        &AttemptEnd {
            attempt_id: hangup.attempt_id,
            class,
            call_sid: Some(hangup.call_sid.to_owned()),
            hangup_cause: cause,
            error: None,
        },
    )
    .await
}

/// The parties of a machine-detection callback.
#[derive(Debug, Clone)]
pub struct Machine<'a> {
    pub attempt_id: Uuid,
    pub lead_id: Uuid,
    pub campaign_id: Uuid,
    pub call_sid: &'a str,
}

/// A machine answered: the attempt, the call log and the lead end as `voicemail` (written
/// first, so the hangup callback that follows finds them), then the call is hung up. The
/// campaign's voicemail message is not left: the call ends as soon as the machine is known.
pub async fn on_machine(
    db: &Database,
    plivo: Option<&PlivoRest>,
    machine: &Machine<'_>,
) -> Result<(), DbError> {
    finish(
        db,
        &AttemptEnd {
            attempt_id: machine.attempt_id,
            class: AttemptClass::Voicemail,
            call_sid: Some(machine.call_sid.to_owned()),
            hangup_cause: Some("machine detected".to_owned()),
            error: None,
        },
    )
    .await?;
    let metadata = serde_json::json!({"machine_detection": {"machine": true}});
    db.record_voicemail(
        machine.call_sid,
        machine.lead_id,
        machine.campaign_id,
        &metadata,
    )
    .await?;
    match plivo {
        Some(plivo) => {
            if let Err(error) = plivo.hangup_call(machine.call_sid).await {
                tracing::warn!(call_sid = %machine.call_sid, %error, "hanging up a voicemail failed");
            }
        }
        None => tracing::warn!(
            call_sid = %machine.call_sid,
            "a machine answered but no Plivo credentials are configured to hang up"
        ),
    }
    Ok(())
}
