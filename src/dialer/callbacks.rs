//! What Plivo's callbacks about a dialer call do to its attempt: answered → `in_progress`;
//! hung up → the attempt's class and the lead's next attempt; a machine → `voicemail` on the
//! attempt, the call log and the lead, then the call moves to its voicemail message (or is
//! hung up when there is none); the voicemail fetch → the message, recorded as left. Each is
//! idempotent (Plivo retries callbacks); the HTTP handlers only parse and call these.

use uuid::Uuid;

use super::{
    retry::{self, AttemptClass},
    voicemail,
};
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

/// Where a machine's call is moved to hear its message: `/plivo/voicemail` on the public base
/// URL, with the attempt's ids.
pub fn voicemail_url(public_base: &str, machine: &Machine<'_>) -> String {
    format!(
        "{}/plivo/voicemail?attempt_id={}&lead_id={}&campaign_id={}",
        public_base.trim_end_matches('/'),
        machine.attempt_id,
        machine.lead_id,
        machine.campaign_id
    )
}

/// A machine answered: the attempt, the call log and the lead end as `voicemail` (written
/// first, so the hangup callback and the voicemail fetch that follow find them). When a
/// message applies (the campaign's script, the campaign, the organization), the live call is
/// moved with the Call Transfer API to `/plivo/voicemail`, which waits for the beep, speaks it
/// and hangs up; the call log says `voicemail_left: true` once Plivo fetched it. Without a
/// message, or when the transfer fails (the error goes on the call log), the call is hung up
/// and `voicemail_left` stays false. A repeated report acts on the call no more.
pub async fn on_machine(
    db: &Database,
    plivo: Option<&PlivoRest>,
    public_base: &str,
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
    let has_message = db
        .voicemail_for_attempt(machine.attempt_id, machine.lead_id, machine.campaign_id)
        .await?
        .is_some_and(|attempt| attempt.messages.choose().is_some());
    let metadata = serde_json::json!({
        "machine_detection": {"machine": true},
        "voicemail_left": false,
    });
    let first = db
        .record_voicemail(
            machine.call_sid,
            machine.lead_id,
            machine.campaign_id,
            &metadata,
        )
        .await?;
    if !first {
        tracing::info!(call_sid = %machine.call_sid, "machine already handled");
        return Ok(());
    }
    let Some(plivo) = plivo else {
        tracing::warn!(
            call_sid = %machine.call_sid,
            "a machine answered but no Plivo credentials are configured to leave a message or hang up"
        );
        if has_message {
            record_voicemail_error(db, machine.call_sid, "no Plivo credentials configured").await;
        }
        return Ok(());
    };
    let mut transfer_error = None;
    if has_message {
        let url = voicemail_url(public_base, machine);
        match plivo.transfer_call(machine.call_sid, &url).await {
            Ok(()) => {
                tracing::info!(call_sid = %machine.call_sid, "machine moved to its voicemail message");
                return Ok(());
            }
            Err(error) => {
                tracing::warn!(call_sid = %machine.call_sid, %error, "moving a machine to its message failed; hanging up");
                transfer_error = Some(error.to_string());
            }
        }
    }
    if let Err(error) = plivo.hangup_call(machine.call_sid).await {
        tracing::warn!(call_sid = %machine.call_sid, %error, "hanging up a voicemail failed");
    }
    if let Some(error) = transfer_error {
        record_voicemail_error(db, machine.call_sid, &error).await;
    }
    Ok(())
}

/// Best effort: the call is already dealt with, and a retried report would not act again.
async fn record_voicemail_error(db: &Database, call_sid: &str, error: &str) {
    if let Err(db_error) = db.record_voicemail_error(call_sid, error).await {
        tracing::warn!(%call_sid, %db_error, voicemail_error = %error, "voicemail error not recorded");
    }
}

/// The parties of a voicemail fetch (`/plivo/voicemail`).
#[derive(Debug, Clone)]
pub struct VoicemailFetch<'a> {
    pub attempt_id: Uuid,
    pub lead_id: Uuid,
    pub campaign_id: Uuid,
    /// `CallUUID`, when Plivo sent it.
    pub call_sid: Option<&'a str>,
}

/// What a machine hears.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoicemailMessage {
    /// Personalised, not yet escaped.
    pub text: String,
    /// A `<Speak>` language code.
    pub language: &'static str,
}

/// Plivo fetches the document of a machine's call: the message for its lead when the attempt
/// ended as a machine's and a message applies, recorded on the call log as left (once).
/// `None`: nothing to say (unknown attempt, not a machine, another call, no message).
pub async fn on_voicemail_fetch(
    db: &Database,
    fetch: &VoicemailFetch<'_>,
) -> Result<Option<VoicemailMessage>, DbError> {
    let Some(attempt) = db
        .voicemail_for_attempt(fetch.attempt_id, fetch.lead_id, fetch.campaign_id)
        .await?
    else {
        tracing::warn!(attempt_id = %fetch.attempt_id, "voicemail for an unknown attempt");
        return Ok(None);
    };
    let Some(call_sid) = attempt.call_sid.as_deref() else {
        tracing::warn!(attempt_id = %fetch.attempt_id, "voicemail for an attempt without a call");
        return Ok(None);
    };
    if attempt.status != AttemptClass::Voicemail.as_str() {
        tracing::warn!(attempt_id = %fetch.attempt_id, status = %attempt.status, "voicemail for an attempt that is not a machine's");
        return Ok(None);
    }
    if fetch.call_sid.is_some_and(|sid| sid != call_sid) {
        tracing::warn!(attempt_id = %fetch.attempt_id, call_sid = ?fetch.call_sid, "voicemail fetched for another call");
        return Ok(None);
    }
    let Some(template) = attempt.messages.choose() else {
        tracing::warn!(%call_sid, "voicemail fetched but no message applies any more");
        return Ok(None);
    };
    let message = VoicemailMessage {
        text: voicemail::personalise(template, &attempt.lead_name),
        language: crate::plivo::xml::speak_language(&attempt.language),
    };
    if db.record_voicemail_left(call_sid).await? {
        tracing::info!(%call_sid, "voicemail message left");
    }
    Ok(Some(message))
}
