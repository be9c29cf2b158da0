//! Plivo's webhooks and the media WebSocket. Every request has passed `guard::plivo_gate`
//! (size, signature, nonce) before it gets here, and arrives as a verified [`Webhook`]. The
//! media WebSocket also needs the signed, single-use call token from the answer.

use axum::{
    Extension,
    body::Bytes,
    extract::{
        State,
        ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code},
    },
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use futures_util::{SinkExt, StreamExt, future};
use secrecy::ExposeSecret;
use uuid::Uuid;

use super::{AppState, guard::Webhook};
use crate::{
    call::{
        bridge::{CarrierError, CarrierMessage, run_call},
        registry::{AdmissionError, LiveCall},
        token::{self, StreamClaims},
    },
    db::{
        answer::CallParties,
        calls::{CallEvent, TransferRecord, UnreachedCall},
        transfers::{DialStep, TransferRow},
    },
    dialer,
    domain::{Direction, EndReason, EventKind},
    plivo::xml,
};

/// How long a stream token stays valid: Plivo connects within seconds and retries twice.
const STREAM_TOKEN_TTL_SECS: i64 = 300;
/// A media message (or frame) over this ends the socket with close code 1009 and the call with
/// reason `protocol_error`: Plivo's largest is about 1 KiB (a 20 ms frame, base64, in JSON).
/// The limit is checked on the frame's header, before its payload is buffered.
const MAX_WS_MESSAGE_BYTES: usize = 64 * 1024;
/// Initial read buffer of a media socket. tungstenite's default (128 KiB) would dominate a call's
/// memory; frames are about 1 KiB and the buffer grows when a larger one arrives. Writes go out
/// at once (no write buffering), since every frame is flushed anyway.
pub const SOCKET_BUFFER_BYTES: usize = 8 * 1024;
/// Unsent bytes the kernel keeps for one of our sockets (`TCP_NOTSENT_LOWAT`, set on every
/// accepted connection): beyond them a write waits. It bounds what a stalled peer can absorb
/// (this plus its own receive window, instead of megabytes of autotuned send buffer), so a
/// media socket that stopped reading is found within seconds, at about 15 KB of agent audio a
/// second. Data already sent and not yet acknowledged does not count: throughput is unchanged.
pub const SOCKET_NOTSENT_LOWAT_BYTES: u32 = 16 * 1024;
/// What an unknown caller hears.
const UNKNOWN_CALL_MESSAGE: &str = "Sorry, we could not find your details. Goodbye.";
const NOBODY_AVAILABLE: &str = "Sorry, none of our colleagues can take your call right now. We will call you back soon. Goodbye.";
/// Transfer steps number their call events from here, by attempt: a repeated callback rewrites
/// nothing, and they never collide with the stream's own numbering.
const TRANSFER_EVENT_SEQ: i32 = 1_000_000;
const TROUBLE_MESSAGE: &str =
    "Sorry, we are having technical trouble. Please try again later. Goodbye.";

fn xml_response(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/xml")], body).into_response()
}

fn polite_hangup(text: &str) -> Response {
    xml_response(xml::speak_and_hangup(text, "WOMAN", "en-US"))
}

/// Plivo sends numbers as digits; the database keeps E.164.
fn e164(number: &str) -> String {
    let digits: String = number.chars().filter(char::is_ascii_digit).collect();
    format!("+{digits}")
}

/// `POST|GET /plivo/answer`: identifies the call and streams it to the best gateway.
pub async fn answer(
    State(state): State<AppState>,
    Extension(webhook): Extension<Webhook>,
) -> Response {
    let Some(call_sid) = webhook.get("CallUUID").map(str::to_owned) else {
        return (StatusCode::BAD_REQUEST, "CallUUID is required").into_response();
    };
    let (lead_id, campaign_id) = match state.db.live_step(identify(&state, &webhook)).await {
        Ok(Some(parties)) => (parties.lead_id, parties.campaign_id),
        Ok(None) => {
            tracing::warn!(%call_sid, from = %crate::phone::Redacted(webhook.get("From").unwrap_or_default()), to = %crate::phone::Redacted(webhook.get("To").unwrap_or_default()), "unknown call: no matching lead and campaign");
            return polite_hangup(UNKNOWN_CALL_MESSAGE);
        }
        // Our own dialer put the ids in this signed URL: during an outage the call is served
        // on them (its writes wait in the spool) rather than dropped.
        Err(error)
            if error.is_transient()
                && let (Some(lead_id), Some(campaign_id)) = (
                    uuid_param(&webhook, "lead_id"),
                    uuid_param(&webhook, "campaign_id"),
                ) =>
        {
            tracing::warn!(%call_sid, %error, "database unavailable: answering on the signed URL's lead and campaign");
            (lead_id, campaign_id)
        }
        Err(error) => {
            tracing::error!(%call_sid, %error, "answering failed: database unavailable");
            return polite_hangup(TROUBLE_MESSAGE);
        }
    };
    let inbound = webhook.get("lead_id").is_none();
    tracing::info!(%call_sid, %lead_id, %campaign_id, "call answered");
    if let Some(attempt_id) = uuid_param(&webhook, "attempt_id")
        && let Err(error) = state
            .db
            .live_step(dialer::callbacks::on_answer(
                &state.db, attempt_id, &call_sid,
            ))
            .await
    {
        // The call goes on; the hangup callback still ends the attempt.
        tracing::warn!(%call_sid, %attempt_id, %error, "attempt not marked answered");
    }
    stream_to_best_server(&state, call_sid, lead_id, campaign_id, inbound, false).await
}

/// The `<Stream>` answer pointing at the best active gateway, with a fresh call token.
async fn stream_to_best_server(
    state: &AppState,
    call_sid: String,
    lead_id: Uuid,
    campaign_id: Uuid,
    inbound: bool,
    resume: bool,
) -> Response {
    // With no gateway to pick, the stream goes to this one, as the only one known to be alive;
    // if it is full as well, its stream is refused with 503 and the token stays unspent.
    let stream_base = match state
        .db
        .live_step(
            state
                .db
                .pick_stream_server(state.settings.server.heartbeat_interval),
        )
        .await
    {
        Ok(Some(server)) => server.url,
        Ok(None) => {
            metrics::counter!(crate::metrics::NO_STREAM_SERVER).increment(1);
            tracing::warn!(%call_sid, "no gateway has room (all full, stale or inactive); streaming to this one");
            crate::startup::stream_url(&state.settings).to_string()
        }
        Err(error) => {
            tracing::warn!(%call_sid, %error, "the server pick failed; streaming to this one");
            crate::startup::stream_url(&state.settings).to_string()
        }
    };
    let claims = StreamClaims {
        call_sid,
        lead_id,
        campaign_id,
        inbound,
        expires_at: chrono::Utc::now().timestamp() + STREAM_TOKEN_TTL_SECS,
        nonce: crate::config::random_hex(16),
        resume,
    };
    let token = token::sign(
        state
            .settings
            .server
            .stream_secret
            .expose_secret()
            .as_bytes(),
        &claims,
    );
    let stream_url = format!("{stream_base}?token={token}");
    let public = public_base(state);
    xml_response(xml::stream_answer(&xml::StreamAnswer {
        stream_url: &stream_url,
        status_callback_url: &format!("{public}/plivo/stream-status"),
        after_stream_url: &format!("{public}/plivo/after-stream"),
        content_type: "audio/x-mulaw;rate=8000",
    }))
}

fn public_base(state: &AppState) -> String {
    state
        .settings
        .server
        .public_url
        .as_str()
        .trim_end_matches('/')
        .to_owned()
}

async fn identify(
    state: &AppState,
    webhook: &Webhook,
) -> Result<Option<CallParties>, crate::db::DbError> {
    let ids = |key: &str| {
        webhook
            .get(key)
            .and_then(|value| Uuid::parse_str(value).ok())
    };
    match (ids("lead_id"), ids("campaign_id")) {
        (Some(lead_id), Some(campaign_id)) => state.db.outbound_parties(lead_id, campaign_id).await,
        _ => match (webhook.get("From"), webhook.get("To")) {
            (Some(from), Some(to)) => state.db.inbound_parties(&e164(from), &e164(to)).await,
            _ => Ok(None),
        },
    }
}

/// `POST /plivo/hangup`: the call's final status. Idempotent.
pub async fn hangup(
    State(state): State<AppState>,
    Extension(webhook): Extension<Webhook>,
) -> Response {
    let Some(call_sid) = webhook.get("CallUUID").map(str::to_owned) else {
        return (StatusCode::BAD_REQUEST, "CallUUID is required").into_response();
    };
    let status = webhook
        .get("CallStatus")
        .unwrap_or("completed")
        .replace('_', "-");
    let duration: i32 = webhook
        .get("Duration")
        .and_then(|value| value.parse().ok())
        .unwrap_or(0);
    let details = serde_json::json!({
        "hangup": {
            "status": status,
            "cause": webhook.get("HangupCause"),
            "cause_code": webhook.get("HangupCauseCode"),
            "source": webhook.get("HangupSource"),
            "duration": duration,
            "bill_duration": webhook.get("BillDuration"),
        }
    });
    // A dialer call: the attempt ends by class and the lead's next attempt is scheduled.
    if let Some(attempt_id) = uuid_param(&webhook, "attempt_id") {
        let hangup = dialer::callbacks::Hangup {
            attempt_id,
            call_sid: &call_sid,
            status: &status,
            cause: webhook.get("HangupCause"),
            cause_code: webhook
                .get("HangupCauseCode")
                .and_then(|code| code.parse().ok()),
        };
        if let Err(error) = dialer::callbacks::on_hangup(&state.db, &hangup).await {
            tracing::error!(%call_sid, %attempt_id, %error, "hangup callback: attempt not ended");
            return (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response();
        }
    }
    match state
        .db
        .record_hangup_duration(&call_sid, duration, &details)
        .await
    {
        Ok(()) => return (StatusCode::OK, "ok").into_response(),
        Err(crate::db::DbError::UnknownCall(_)) => {}
        Err(error) => {
            tracing::error!(%call_sid, %error, "hangup callback not recorded");
            return (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response();
        }
    }
    // No row: the call never reached the stream, or its open is not written yet. Plivo says
    // whether it was answered; an answered call is `called`, and the open makes its row the
    // real call when it comes.
    let end_reason = match status.as_str() {
        "busy" => EndReason::Busy,
        "failed" => EndReason::Failed,
        "timeout" | "no-answer" => EndReason::NoAnswer,
        "cancel" | "canceled" | "cancelled" => EndReason::Canceled,
        _ => EndReason::CallerHangup,
    };
    let answered = status == "completed"
        && (duration > 0
            || webhook.get("AnswerTime").is_some()
            || webhook
                .get("BillDuration")
                .and_then(|value| value.parse::<i32>().ok())
                .is_some_and(|billed| billed > 0));
    let ids = |key: &str| {
        webhook
            .get(key)
            .and_then(|value| Uuid::parse_str(value).ok())
    };
    let parties = match (ids("lead_id"), ids("campaign_id")) {
        (Some(lead_id), Some(campaign_id)) => Some((lead_id, campaign_id, Direction::Outbound)),
        _ => match identify(&state, &webhook).await {
            Ok(Some(parties)) => Some((parties.lead_id, parties.campaign_id, Direction::Inbound)),
            _ => None,
        },
    };
    let Some((lead_id, campaign_id, direction)) = parties else {
        tracing::info!(%call_sid, %status, "hangup of an unknown call");
        return (StatusCode::OK, "ok").into_response();
    };
    let unreached = UnreachedCall {
        call_sid: call_sid.clone(),
        campaign_id,
        lead_id,
        direction,
        at: chrono::Utc::now(),
        end_reason,
        answered,
        duration_secs: duration,
        metadata: details.clone(),
    };
    let recorded = match state.db.record_unreached_call(&unreached).await {
        // The open won the race since we looked: the duration goes on its row.
        Ok((_, crate::db::calls::Applied::Already)) => {
            state
                .db
                .record_hangup_duration(&call_sid, duration, &details)
                .await
        }
        Ok((_, crate::db::calls::Applied::Now)) | Err(crate::db::DbError::UnknownLead { .. }) => {
            Ok(())
        }
        Err(error) => Err(error),
    };
    match recorded {
        Ok(()) => (StatusCode::OK, "ok").into_response(),
        Err(error) => {
            tracing::error!(%call_sid, %error, "unreached call not recorded");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response()
        }
    }
}

/// A UUID query or form parameter.
fn uuid_param(webhook: &Webhook, key: &str) -> Option<Uuid> {
    webhook
        .get(key)
        .and_then(|value| Uuid::parse_str(value).ok())
}

/// `POST /plivo/machine-detection`: Plivo's asynchronous answering-machine detection. A
/// machine ends the attempt, the call log and the lead as `voicemail`; the call moves to its
/// voicemail message (`/plivo/voicemail`), or is hung up when there is none.
pub async fn machine_detection(
    State(state): State<AppState>,
    Extension(webhook): Extension<Webhook>,
) -> Response {
    let (Some(call_sid), Some(attempt_id), Some(lead_id), Some(campaign_id)) = (
        webhook.get("CallUUID"),
        uuid_param(&webhook, "attempt_id"),
        uuid_param(&webhook, "lead_id"),
        uuid_param(&webhook, "campaign_id"),
    ) else {
        return (
            StatusCode::BAD_REQUEST,
            "CallUUID, attempt_id, lead_id and campaign_id are required",
        )
            .into_response();
    };
    let machine = webhook
        .get("Machine")
        .is_some_and(|value| value.eq_ignore_ascii_case("true"));
    tracing::info!(%call_sid, %attempt_id, machine, "machine detection");
    if !machine {
        return (StatusCode::OK, "ok").into_response();
    }
    let machine = dialer::callbacks::Machine {
        attempt_id,
        lead_id,
        campaign_id,
        call_sid,
    };
    let public = public_base(&state);
    match dialer::callbacks::on_machine(&state.db, state.runtime.plivo.as_ref(), &public, &machine)
        .await
    {
        Ok(()) => (StatusCode::OK, "ok").into_response(),
        Err(error) => {
            tracing::error!(%call_sid, %error, "machine detection not recorded");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response()
        }
    }
}

/// `POST /plivo/voicemail`: the document a machine's call was moved to: wait for the beep,
/// speak the message, hang up. Anything else (unknown attempt, not a machine, no message, no
/// database) is a plain `<Hangup/>`: a machine is no one to apologise to.
pub async fn voicemail(
    State(state): State<AppState>,
    Extension(webhook): Extension<Webhook>,
) -> Response {
    let (Some(attempt_id), Some(lead_id), Some(campaign_id)) = (
        uuid_param(&webhook, "attempt_id"),
        uuid_param(&webhook, "lead_id"),
        uuid_param(&webhook, "campaign_id"),
    ) else {
        tracing::warn!(call_sid = ?webhook.get("CallUUID"), "voicemail without its ids");
        return xml_response(xml::hangup());
    };
    let fetch = dialer::callbacks::VoicemailFetch {
        attempt_id,
        lead_id,
        campaign_id,
        call_sid: webhook.get("CallUUID"),
    };
    match dialer::callbacks::on_voicemail_fetch(&state.db, &fetch).await {
        Ok(Some(message)) => xml_response(xml::voicemail(&xml::Voicemail {
            message: &message.text,
            voice: dialer::voicemail::VOICE,
            language: message.language,
            beep_wait_secs: dialer::voicemail::BEEP_WAIT_SECS,
        })),
        Ok(None) => xml_response(xml::hangup()),
        Err(error) => {
            tracing::error!(%attempt_id, %error, "voicemail not served: database unavailable");
            xml_response(xml::hangup())
        }
    }
}

/// `POST /plivo/stream-status`: Start/Stop/Dropped/DegradedStream, logged and counted.
pub async fn stream_status(Extension(webhook): Extension<Webhook>) -> Response {
    let event = webhook.get("Event").unwrap_or("unknown").to_owned();
    let label = match event.as_str() {
        "StartStream" => "start",
        "StopStream" => "stop",
        "DroppedStream" => "dropped",
        "DegradedStream" => "degraded",
        _ => "other",
    };
    metrics::counter!(crate::metrics::STREAM_STATUS, "event" => label).increment(1);
    tracing::info!(call_sid = ?webhook.get("CallUUID"), %event, stream_id = ?webhook.get("StreamID"), "stream status");
    (StatusCode::OK, "ok").into_response()
}

/// `POST|GET /plivo/after-stream`: what Plivo does once the stream ends: the transfer's next
/// dial if one was decided (any gateway can serve it: the state is in the database), else hang up.
pub async fn after_stream(
    State(state): State<AppState>,
    Extension(webhook): Extension<Webhook>,
) -> Response {
    let Some(call_sid) = webhook.get("CallUUID").map(str::to_owned) else {
        return xml_response(xml::hangup());
    };
    match state.db.start_dialing(&call_sid).await {
        Ok(Some(transfer)) => transfer_step(&state, &transfer, true).await,
        Ok(None) => xml_response(xml::hangup()),
        Err(error) => {
            tracing::error!(%call_sid, %error, "after-stream: database unavailable");
            polite_hangup(TROUBLE_MESSAGE)
        }
    }
}

/// The document for a transfer's current state.
async fn transfer_step(state: &AppState, transfer: &TransferRow, first: bool) -> Response {
    match transfer.status.as_str() {
        "dialing" => match transfer.current_number() {
            Some(number) => {
                let public = public_base(state);
                let call = form_urlencoded::byte_serialize(transfer.call_sid.as_bytes())
                    .collect::<String>();
                let action = format!(
                    "{public}/plivo/dial-status?call={call}&attempt={}",
                    transfer.attempt
                );
                let whisper = format!("{public}/plivo/transfer-whisper?call={call}");
                xml_response(xml::dial_transfer(&xml::DialTransfer {
                    handoff_line: if first && transfer.attempt == 0 {
                        transfer.handoff_line.as_deref()
                    } else {
                        None
                    },
                    action_url: &action,
                    caller_id: transfer.caller_id.as_deref(),
                    timeout_secs: transfer.ring_timeout_secs as u32,
                    confirm_sound_url: &whisper,
                    number,
                }))
            }
            None => xml_response(xml::hangup()),
        },
        "exhausted" => {
            // Back to the AI, which knows nobody was available and offers a callback.
            match state.db.call_log(&transfer.call_sid).await {
                Ok(Some(call)) => {
                    let _ = state.db.finish_fallback(&transfer.call_sid).await;
                    stream_to_best_server(
                        state,
                        transfer.call_sid.clone(),
                        call.lead_id,
                        call.campaign_id,
                        call.direction == "inbound",
                        true,
                    )
                    .await
                }
                _ => polite_hangup(NOBODY_AVAILABLE),
            }
        }
        _ => xml_response(xml::hangup()),
    }
}

/// `POST /plivo/dial-status`: one dial's outcome. Accepted: the transfer counts (once);
/// busy, no answer, declined or failed: the next target; none left: the fallback.
pub async fn dial_status(
    State(state): State<AppState>,
    Extension(webhook): Extension<Webhook>,
) -> Response {
    let (Some(call_sid), Some(attempt)) = (
        webhook.get("call").map(str::to_owned),
        webhook.get("attempt").and_then(|a| a.parse::<i32>().ok()),
    ) else {
        return (StatusCode::BAD_REQUEST, "call and attempt are required").into_response();
    };
    let status = webhook.get("DialStatus").unwrap_or("failed").to_owned();
    // The Dial's action runs when the dialled leg ends: a leg that was bridged and completed
    // means a human accepted (pressed 1) and talked.
    let accepted = status == "completed" && webhook.get("DialBLegUUID").is_some();
    let step = match state.db.dial_outcome(&call_sid, attempt, accepted).await {
        Ok(Some(step)) => step,
        Ok(None) => return xml_response(xml::hangup()),
        Err(error) => {
            tracing::error!(%call_sid, %error, "dial-status not recorded");
            return (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response();
        }
    };
    let event = CallEvent {
        seq: TRANSFER_EVENT_SEQ + attempt,
        kind: EventKind::TransferAttempt,
        occurred_at: chrono::Utc::now(),
        ended_at: None,
        text: Some(status.clone()),
        data: serde_json::json!({
            "attempt": attempt, "dial_status": status, "accepted": accepted,
            "b_leg": webhook.get("DialBLegUUID"), "hangup_cause": webhook.get("DialHangupCause"),
        }),
    };
    if let Err(error) = state.db.append_call_event(&call_sid, &event).await {
        tracing::warn!(%call_sid, %error, "transfer attempt event not recorded");
    }
    match step {
        DialStep::Connected => {
            let transfer = state.db.transfer_for_call(&call_sid).await.ok().flatten();
            if let Some(transfer) = transfer {
                let record = TransferRecord {
                    at: chrono::Utc::now(),
                    reason: transfer.reason.clone(),
                    department: Some(transfer.department.clone()),
                };
                if let Err(error) = state.db.record_transfer(&call_sid, &record).await {
                    tracing::error!(%call_sid, %error, "accepted transfer not counted");
                    return (StatusCode::SERVICE_UNAVAILABLE, "database unavailable")
                        .into_response();
                }
            }
            xml_response(xml::hangup())
        }
        DialStep::Next(transfer) => transfer_step(&state, &transfer, false).await,
        DialStep::Exhausted(transfer) => match transfer.fallback.as_str() {
            "callback_and_hangup" => {
                let event = CallEvent {
                    seq: TRANSFER_EVENT_SEQ - 1,
                    kind: EventKind::CallbackScheduled,
                    occurred_at: chrono::Utc::now(),
                    ended_at: None,
                    text: Some("nobody took the transfer".to_owned()),
                    data: serde_json::json!({"reason": "transfer_exhausted"}),
                };
                let _ = state.db.append_call_event(&call_sid, &event).await;
                polite_hangup(NOBODY_AVAILABLE)
            }
            _ => transfer_step(&state, &transfer, false).await,
        },
        DialStep::Unchanged(transfer) => transfer_step(&state, &transfer, false).await,
    }
}

/// `POST|GET /plivo/transfer-whisper`: what the human hears before pressing 1.
pub async fn transfer_whisper(
    State(state): State<AppState>,
    Extension(webhook): Extension<Webhook>,
) -> Response {
    let whisper = match webhook.get("call") {
        Some(call_sid) => state
            .db
            .transfer_for_call(call_sid)
            .await
            .ok()
            .flatten()
            .map(|t| t.whisper),
        None => None,
    };
    let text = whisper.unwrap_or_else(|| "Incoming transfer from the AI assistant.".to_owned());
    xml_response(xml::speak(&format!("{text} Press 1 to accept the call.")))
}

/// `GET /plivo/stream`: the media WebSocket. Needs Plivo's signature and the call token.
///
/// The call is admitted (a place among `VG_MAX_CALLS`) before its token is spent: a full
/// gateway answers 503 and the token stays good for a retry once a place frees. The token's
/// nonce is then claimed in the database; when the database cannot take the claim (a transient
/// failure) the stream is accepted anyway, since the token is signed and expires within
/// minutes, and the nonce is remembered here until then, so a replay to this gateway is still
/// refused.
pub async fn stream(
    State(state): State<AppState>,
    Extension(webhook): Extension<Webhook>,
    upgrade: WebSocketUpgrade,
) -> Response {
    if state.lifecycle.is_draining() {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining").into_response();
    }
    let Some(token_text) = webhook.get("token").map(str::to_owned) else {
        return (StatusCode::FORBIDDEN, "missing call token").into_response();
    };
    let secret = state
        .settings
        .server
        .stream_secret
        .expose_secret()
        .as_bytes();
    let now = chrono::Utc::now().timestamp();
    let claims = match token::verify(secret, &token_text, now) {
        Ok(claims) => claims,
        Err(error) => {
            tracing::warn!(%error, "stream refused");
            return (StatusCode::FORBIDDEN, "invalid call token").into_response();
        }
    };
    if unrecorded_tokens(&state).contains(&claims.nonce, now) {
        refused("replayed");
        tracing::warn!(call_sid = %claims.call_sid, "stream refused: token replayed (accepted here during a database outage)");
        return (StatusCode::FORBIDDEN, "call token already used").into_response();
    }
    let admission = match state.runtime.registry.admit(LiveCall {
        call_sid: claims.call_sid.clone(),
        lead_id: claims.lead_id,
        campaign_id: claims.campaign_id,
        started_at: chrono::Utc::now(),
        hangup: tokio_util::sync::CancellationToken::new(),
    }) {
        Ok(admission) => admission,
        Err(error @ AdmissionError::Full(_)) => {
            refused("full");
            tracing::warn!(call_sid = %claims.call_sid, %error, "stream refused: gateway full; the token is not spent");
            return (StatusCode::SERVICE_UNAVAILABLE, "gateway full").into_response();
        }
        Err(error @ AdmissionError::Duplicate(_)) => {
            // The live call's own token again is a replay; another token for the same call (a
            // resumed stream racing the last one's wrap-up) stays unspent for Plivo's retry.
            if matches!(state.db.stream_token_used(&claims.nonce).await, Ok(true)) {
                refused("replayed");
                tracing::warn!(call_sid = %claims.call_sid, "stream refused: token replayed");
                return (StatusCode::FORBIDDEN, "call token already used").into_response();
            }
            refused("duplicate");
            tracing::warn!(call_sid = %claims.call_sid, %error, "stream refused");
            return (StatusCode::CONFLICT, "call already live here").into_response();
        }
    };
    match state
        .db
        .live_step(state.db.claim_stream_token(
            &claims.nonce,
            &claims.call_sid,
            &state.settings.server.name,
        ))
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            refused("replayed");
            tracing::warn!(call_sid = %claims.call_sid, "stream refused: token replayed");
            return (StatusCode::FORBIDDEN, "call token already used").into_response();
        }
        Err(error) if error.is_transient() => {
            if let Err(full) = unrecorded_tokens(&state).insert(&claims, now) {
                refused("database");
                tracing::error!(call_sid = %claims.call_sid, %error, %full, "stream refused: database unavailable");
                return (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response();
            }
            tracing::warn!(call_sid = %claims.call_sid, %error, "stream token not recorded: database unavailable; accepted, its replay is refused by this gateway until it expires");
        }
        Err(error) => {
            refused("database");
            tracing::error!(call_sid = %claims.call_sid, %error, "stream refused: database error");
            return (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response();
        }
    }
    let runtime = state.runtime.clone();
    let lifecycle = state.lifecycle.clone();
    // The admission moves into the call's task; if the upgrade never completes, the closure is
    // dropped with it and the place is freed.
    upgrade
        .read_buffer_size(SOCKET_BUFFER_BYTES)
        // Frames are fed, then flushed together: one write per batch, not per frame.
        .write_buffer_size(SOCKET_BUFFER_BYTES)
        .max_message_size(MAX_WS_MESSAGE_BYTES)
        .max_frame_size(MAX_WS_MESSAGE_BYTES)
        .on_upgrade(move |socket| async move {
            lifecycle.spawn_call(move |shutdown| {
                run_call(runtime, claims, admission, carrier_socket(socket), shutdown)
            });
        })
}

/// The tokens this gateway accepted without the database. The lock is held for a lookup or an
/// insert, never across an `.await`.
fn unrecorded_tokens(state: &AppState) -> std::sync::MutexGuard<'_, token::UnrecordedTokens> {
    state
        .unrecorded_tokens
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Counts a refused media WebSocket by reason.
fn refused(reason: &'static str) {
    metrics::counter!(crate::metrics::STREAMS_REFUSED, "reason" => reason).increment(1);
}

/// The axum socket as the bridge's library-independent stream and sink.
fn carrier_socket(
    socket: WebSocket,
) -> impl futures_util::Stream<Item = Result<CarrierMessage, CarrierError>>
+ futures_util::Sink<CarrierMessage>
+ Unpin
+ Send {
    socket
        .with(|message: CarrierMessage| {
            future::ready(Ok::<_, axum::Error>(match message {
                CarrierMessage::Text(text) => Message::Text(text.into()),
                CarrierMessage::Close => Message::Close(None),
                CarrierMessage::CloseTooBig => Message::Close(Some(CloseFrame {
                    code: close_code::SIZE,
                    reason: "message too big".into(),
                })),
                CarrierMessage::Other => Message::Ping(Bytes::new()),
            }))
        })
        .map(|message| match message {
            Ok(Message::Text(text)) => Ok(CarrierMessage::Text(text.as_str().to_owned())),
            Ok(Message::Close(_)) => Ok(CarrierMessage::Close),
            Ok(_) => Ok(CarrierMessage::Other),
            Err(error) => Err(carrier_error(error)),
        })
}

/// A read error of the socket: over the size limit, or broken.
fn carrier_error(error: axum::Error) -> CarrierError {
    use tokio_tungstenite::tungstenite::{Error, error::CapacityError};
    let text = error.to_string();
    match error.into_inner().downcast::<Error>() {
        Ok(inner)
            if matches!(
                *inner,
                Error::Capacity(CapacityError::MessageTooLong { .. })
            ) =>
        {
            CarrierError::TooBig(text)
        }
        _ => CarrierError::Broken(text),
    }
}
