//! The async driver of one call: the only place that does a call's I/O.
//!
//! It reads the carrier's socket, the provider and the session's timers in one `select!`,
//! feeds the pure [`CallSession`], and carries out its actions. Database writes go through an
//! in-task writer ([`super::writer`]: a bounded channel drained by a loop that retries, then
//! spools to disk), so a slow or absent database never blocks audio. Whatever happens, the call ends with exactly one end
//! reason and its close is written.

use std::{
    collections::VecDeque,
    sync::{Arc, OnceLock},
    time::Duration,
};

use chrono::{DateTime, Utc};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{
    registry::{Admission, Registry},
    session::{Action, CallSession, Input, RecordedEvent, SessionConfig, TransferConfig, Transmit},
    token::StreamClaims,
    writer::{CallWrite, write_loop},
};
use crate::{
    ai::{
        ProviderCommand, ProviderError, ProviderEvent, ProviderFactory, VoiceProvider,
        prompt::CallContext,
    },
    audio::{AudioFormat, Encoding, l16, mulaw, resample::Resampler},
    call::flood::{self, FloodGuard},
    db::{
        Database,
        calls::{CallEnd, CallEvent, CallStart, CallbackRequest},
        transfers::{NewTransfer, TransferSetup},
    },
    domain::{CallOutcome, EndReason, EventKind},
    outcome::{
        analysis::{self, Analysis, DeterministicInput, Interest, Transfer as AnalysisTransfer},
        lead_status::CallFacts,
    },
    plivo::stream::{self, InboundEvent},
    recording::{
        CallRecorder, PAGES_IN_FLIGHT, RECORDING_URL_TEMPLATE, RecordingFailed, RecordingPolicy,
        RecordingStore, WriterMessage,
    },
    transfer::policy::{Fallback, TransferRules},
};

/// Pending database writes of one call. When full, writes wait in the bridge's own queue
/// (never on the audio path); the call's writes are never dropped.
pub const CALL_WRITES_CAPACITY: usize = 256;
/// How long one write to the carrier's socket may block before the caller counts as gone: a
/// peer that stops reading (a stalled Plivo socket) fills the kernel's buffers, and the call
/// must still end, release its admission and write its close. Plivo reads 20 ms frames in real
/// time, so a healthy socket never blocks for anything near this.
pub const CARRIER_WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the transfer's row may take to be stored before the stream closes anyway.
const TRANSFER_WRITE_DEADLINE: Duration = Duration::from_secs(10);
/// What the agent says when a transfer nobody took brings the caller back.
const RESUME_GREETING: &str = "I'm sorry, none of my colleagues could take your call right now. Shall I arrange for someone to call you back?";
/// Event numbering of a resumed stream when the database cannot say where it stopped.
const RESUMED_SEQ_FALLBACK: i32 = 500_000;
/// How long the recording's last pages may take to reach its file after the call; past it the
/// call closes without a recording.
const RECORDING_FINISH_TIMEOUT: Duration = Duration::from_secs(10);
/// The pre-rendered apology, 8 kHz μ-law.
static APOLOGY_MULAW: &[u8] = include_bytes!("../../assets/apology.ulaw");

/// A message on the carrier's socket, independent of the WebSocket library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CarrierMessage {
    Text(String),
    Close,
    /// Sent only: closes the socket with code 1009 (message too big).
    CloseTooBig,
    /// Pings, pongs, binary frames: ignored.
    Other,
}

/// Why the carrier's socket gave no message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CarrierError {
    /// A message over the socket's size limit: the carrier broke the stream's limits.
    #[error("message too big: {0}")]
    TooBig(String),
    /// The socket failed.
    #[error("{0}")]
    Broken(String),
}

/// Timings of every call on this gateway.
#[derive(Debug, Clone)]
pub struct CallTiming {
    pub playout_lead: Duration,
    pub greeting_guard: Duration,
    /// How long the carrier may take to send `start`.
    pub start_timeout: Duration,
    /// How long a provider send may block before the provider counts as stalled.
    pub provider_send_timeout: Duration,
    /// How long to wait for the provider's summary after the call.
    pub summary_timeout: Duration,
    /// How long a write to the carrier may block before the caller counts as gone
    /// ([`CARRIER_WRITE_TIMEOUT`]).
    pub carrier_write_timeout: Duration,
    pub final_playout_limit: Duration,
}

/// What every call on this gateway shares.
#[derive(Clone)]
pub struct CallRuntime {
    pub db: Database,
    /// Plivo's REST API, when credentials are configured.
    pub plivo: Option<crate::plivo::rest::PlivoRest>,
    pub transfer_strategy: crate::config::TransferStrategy,
    /// `https://…/plivo/after-stream`, where a REST transfer sends the call.
    pub after_stream_url: String,
    pub providers: Arc<dyn ProviderFactory>,
    pub registry: Registry,
    pub server_name: String,
    pub timing: CallTiming,
    /// Where the call's writes wait while the database cannot take them (`None`: the data
    /// directory is unwritable, and writes are retried in memory, then given up).
    pub spool: Option<Arc<super::spool::Spool>>,
    /// Where calls are recorded (`VG_RECORDINGS_URL`).
    pub recordings: Arc<RecordingStore>,
}

/// Runs one call to its end. `shutdown` is cancelled when the gateway's grace period is over.
/// `admission` is the call's place in the registry, taken before the stream was accepted; it
/// is held until the call's task ends.
pub async fn run_call<S>(
    runtime: CallRuntime,
    claims: StreamClaims,
    admission: Admission,
    socket: S,
    shutdown: CancellationToken,
) where
    S: Stream<Item = Result<CarrierMessage, CarrierError>> + Sink<CarrierMessage> + Unpin + Send,
{
    let span = tracing::info_span!("call", call_sid = %claims.call_sid, lead_id = %claims.lead_id, campaign_id = %claims.campaign_id);
    async move {
        let (writes_tx, writes_rx) = mpsc::channel(CALL_WRITES_CAPACITY);
        let writer = write_loop(
            runtime.db.clone(),
            runtime.spool.clone(),
            claims.call_sid.clone(),
            writes_rx,
        );
        // The recording's file writer, joined like the database writer: it creates nothing
        // unless the bridge records the call.
        let (pages_tx, pages_rx) = mpsc::channel(PAGES_IN_FLIGHT);
        let recording = crate::recording::write_loop(
            runtime.recordings.part(&claims.call_sid),
            runtime.recordings.file(&claims.call_sid),
            pages_rx,
        );
        let bridge = Bridge::run(
            runtime, claims, admission, socket, shutdown, writes_tx, pages_tx,
        );
        let ((), (), ()) = tokio::join!(bridge, writer, recording);
    }
    .instrument(span)
    .await
}

struct Bridge<S> {
    socket: S,
    writes: mpsc::Sender<CallWrite>,
    /// Writes waiting for room in the channel.
    backlog: VecDeque<CallWrite>,
    caller_gone: bool,
    /// How long one write to the carrier may block.
    write_timeout: Duration,
    /// A write to the carrier timed out: the peer stopped reading.
    stalled: bool,
    out: String,
    /// What a transfer record needs beyond the session's plan.
    transfer_defaults: TransferDefaults,
    /// A transfer was decided: its row must be written before the stream closes.
    transfer_written: bool,
    lead_id: uuid::Uuid,
    /// The channel to the recording's file writer, until the call is recorded or not.
    recording_pages: Option<mpsc::Sender<WriterMessage>>,
    /// The call's recording, while it goes on.
    recorder: Option<CallRecorder>,
    /// A recording failure the session has not recorded yet.
    recording_failure: Option<RecordingFailed>,
    /// Why the recording stopped, for the call's metadata.
    recording_error: Option<String>,
    /// When the stream started: the recording's clock.
    stream_started: tokio::time::Instant,
    /// When the call ended, on the recording's clock: where the recording ends.
    stream_ended: Option<Duration>,
}

/// The parts of a transfer record that come from the call, not the decision.
#[derive(Default)]
struct TransferDefaults {
    call_sid: String,
    lead_name: String,
    campaign_name: String,
    caller_id: Option<String>,
    ring_timeout_secs: i32,
    fallback: String,
    strategy: &'static str,
}

impl<S> Bridge<S>
where
    S: Stream<Item = Result<CarrierMessage, CarrierError>> + Sink<CarrierMessage> + Unpin + Send,
{
    async fn run(
        runtime: CallRuntime,
        claims: StreamClaims,
        // Held to the end of the call: dropping it frees the place.
        admission: Admission,
        socket: S,
        shutdown: CancellationToken,
        writes: mpsc::Sender<CallWrite>,
        recording_pages: mpsc::Sender<WriterMessage>,
    ) {
        let mut bridge = Self {
            socket,
            writes,
            backlog: VecDeque::new(),
            caller_gone: false,
            write_timeout: runtime.timing.carrier_write_timeout,
            stalled: false,
            out: String::with_capacity(1024),
            transfer_defaults: TransferDefaults::default(),
            transfer_written: false,
            lead_id: claims.lead_id,
            recording_pages: Some(recording_pages),
            recorder: None,
            recording_failure: None,
            recording_error: None,
            stream_started: tokio::time::Instant::now(),
            stream_ended: None,
        };
        let started_at = Utc::now();
        let Some(start) = bridge.wait_for_start(runtime.timing.start_timeout).await else {
            tracing::warn!("the stream never started");
            bridge.close_socket().await;
            return;
        };
        bridge.stream_started = tokio::time::Instant::now();
        if start.call_id != claims.call_sid {
            tracing::warn!(stream_call = %start.call_id, "stream start names another call; refused");
            bridge.close_socket().await;
            return;
        }
        let hangup = admission.hangup();
        metrics::counter!(crate::metrics::CALLS_STARTED).increment(1);
        metrics::gauge!(crate::metrics::LIVE_CALLS).increment(1.0);
        if claims.resume {
            bridge.write(CallWrite::Resume {
                server_name: runtime.server_name.clone(),
            });
        } else {
            bridge.write(CallWrite::Open(CallStart {
            call_sid: claims.call_sid.clone(),
            campaign_id: claims.campaign_id,
            lead_id: claims.lead_id,
            direction: claims.direction(),
            started_at,
            server_name: runtime.server_name.clone(),
            metadata: json!({"stream_id": start.stream_id, "media_format": start.format.plivo_content_type(), "sample_rate": start.format.sample_rate}),
        }));
        }

        let context = match runtime
            .db
            .live_step(runtime.db.call_context(claims.lead_id, claims.campaign_id))
            .await
        {
            Ok(Some(context)) => context,
            Ok(None) => {
                tracing::warn!("lead or campaign vanished before the stream started");
                CallContext::default()
            }
            Err(error) => {
                tracing::error!(%error, "loading the call context failed; the agent starts without it");
                CallContext::default()
            }
        };
        let setup = match runtime
            .db
            .live_step(
                runtime
                    .db
                    .transfer_setup(claims.lead_id, claims.campaign_id),
            )
            .await
        {
            Ok(setup) => setup,
            Err(error) => {
                tracing::error!(%error, "loading transfer targets failed; no transfer on this call");
                TransferSetup::default()
            }
        };
        let mut rules = TransferRules::from_campaign_settings(&setup.campaign_settings);
        let mut context = context;
        if claims.resume {
            // The first stream's recording is the call's; a resumed stream is not recorded.
            bridge.recording_pages = None;
        } else {
            let policy = match runtime
                .db
                .live_step(runtime.db.recording_settings(claims.campaign_id))
                .await
            {
                Ok(Some((organization, campaign))) => {
                    RecordingPolicy::from_settings(&organization, &campaign)
                }
                Ok(None) => RecordingPolicy::UNKNOWN,
                Err(error) => {
                    tracing::warn!(%error, "loading the recording policy failed; the call is not recorded");
                    RecordingPolicy::UNKNOWN
                }
            };
            context.recording_notice = policy.consent_line.clone();
            bridge.start_recording(policy, start.format);
        }
        let mut first_event_seq = 0;
        if claims.resume {
            // Nobody took the transfer: no second one; the agent offers a callback.
            rules.enabled = false;
            context.agent_greeting = Some(RESUME_GREETING.to_owned());
            let note = "A transfer to a colleague was attempted and nobody could take the call. Apologise and offer to schedule a callback with schedule_callback.";
            context.agent_instructions = Some(match context.agent_instructions.take() {
                Some(existing) => format!("{existing}\n{note}"),
                None => note.to_owned(),
            });
            first_event_seq = runtime
                .db
                .resume_call(&claims.call_sid, &runtime.server_name)
                .await
                .unwrap_or(RESUMED_SEQ_FALLBACK);
        }
        bridge.transfer_defaults = TransferDefaults {
            call_sid: claims.call_sid.clone(),
            lead_name: context.lead_name.clone(),
            campaign_name: context.campaign_name.clone(),
            caller_id: setup.caller_id.clone(),
            ring_timeout_secs: rules.ring_timeout_secs as i32,
            strategy: match runtime.transfer_strategy {
                crate::config::TransferStrategy::Dial => "dial",
                crate::config::TransferStrategy::Rest => "rest",
            },
            fallback: match rules.fallback {
                Fallback::BackToAi => "back_to_ai".to_owned(),
                Fallback::CallbackAndHangup => "callback_and_hangup".to_owned(),
            },
        };
        let transfer = TransferConfig {
            rules,
            targets: setup.targets,
            assigned: setup.assigned,
            wall_start: Utc::now(),
        };
        let mut outcome = bridge
            .converse(
                &runtime,
                &start,
                context,
                transfer,
                first_event_seq,
                Signals { shutdown, hangup },
            )
            .await;
        metrics::gauge!(crate::metrics::LIVE_CALLS).decrement(1.0);
        metrics::counter!(crate::metrics::CALLS_ENDED, "reason" => outcome.end.end_reason.as_str())
            .increment(1);
        tracing::info!(reason = %outcome.end.end_reason, "call ended");
        if bridge.transfer_written {
            // Plivo fetches `/plivo/after-stream` as soon as the socket closes: the transfer's
            // row must be there first.
            let (done, applied) = tokio::sync::oneshot::channel();
            bridge.write(CallWrite::Barrier(done));
            bridge.flush_backlog().await;
            if tokio::time::timeout(TRANSFER_WRITE_DEADLINE, applied)
                .await
                .is_err()
            {
                tracing::error!("the transfer was not stored in time; Plivo will hang up");
            }
            if runtime.transfer_strategy == crate::config::TransferStrategy::Rest {
                // If the API fails, closing the stream still sends Plivo to the same URL.
                match &runtime.plivo {
                    Some(plivo) => match plivo
                        .transfer_call(&claims.call_sid, &runtime.after_stream_url)
                        .await
                    {
                        Ok(()) => tracing::info!("call moved with the transfer API"),
                        Err(error) => {
                            tracing::warn!(%error, "transfer API failed; the stream's redirect takes over")
                        }
                    },
                    None => tracing::warn!(
                        "no Plivo credentials for the transfer API; the stream's redirect takes over"
                    ),
                }
            }
        }
        // The caller is released first; what follows (the summary) never holds the line.
        bridge.close_socket().await;
        let ((), recording_url) = tokio::join!(
            outcome.finish(runtime.timing.summary_timeout),
            bridge.finish_recording()
        );
        if recording_url.is_some() {
            // With an s3:// store, its upload starts now, beside the close.
            runtime.recordings.finished(&claims.call_sid);
        }
        outcome.end.recording_url = recording_url;
        if let Some(error) = bridge.recording_error.take() {
            outcome.end.metadata["recording"] = json!({"failed": error});
        }
        bridge.write(CallWrite::Close(outcome.end));
        bridge.flush_writes().await;
    }

    async fn wait_for_start(&mut self, timeout: Duration) -> Option<stream::Start> {
        let read = async {
            while let Some(message) = self.socket.next().await {
                match message {
                    Ok(CarrierMessage::Text(text)) => match stream::parse_inbound(&text) {
                        Ok(InboundEvent::Start(start)) => return Some(start),
                        Ok(_) => {} // Nothing before `start` is usable.
                        Err(error) => {
                            metrics::counter!(crate::metrics::FRAMES_REJECTED, "reason" => "before_start").increment(1);
                            tracing::debug!(%error, "frame before start");
                        }
                    },
                    Ok(CarrierMessage::Other) => {}
                    Err(CarrierError::TooBig(error)) => {
                        self.refuse_too_big(&error).await;
                        return None;
                    }
                    Ok(CarrierMessage::Close | CarrierMessage::CloseTooBig)
                    | Err(CarrierError::Broken(_)) => {
                        self.caller_gone = true;
                        return None;
                    }
                }
            }
            self.caller_gone = true;
            None
        };
        tokio::time::timeout(timeout, read).await.ok().flatten()
    }

    /// The conversation itself; returns how the call ended.
    async fn converse(
        &mut self,
        runtime: &CallRuntime,
        start: &stream::Start,
        context: CallContext,
        transfer: TransferConfig,
        first_event_seq: i32,
        signals: Signals,
    ) -> Conversation {
        let Signals { shutdown, hangup } = signals;
        let format = start.format;
        let clock = Clock::new();
        let mut session = CallSession::new(
            SessionConfig {
                format,
                playout_lead: runtime.timing.playout_lead,
                greeting_guard: runtime.timing.greeting_guard,
                silence_timeout: Duration::from_secs(u64::from(
                    context.silence_timeout_secs.max(3),
                )),
                max_duration: Duration::from_secs(u64::from(
                    context.max_call_duration_secs.max(30),
                )),
                final_playout_limit: runtime.timing.final_playout_limit,
                transfer,
                first_event_seq,
                schedule: context.schedule.clone(),
            },
            clock.now(),
        );
        let connect = runtime.providers.connect(context.clone(), format);
        let mut provider: Option<Box<dyn VoiceProvider>> = match connect.await {
            Ok(provider) => Some(provider),
            Err(error) => {
                tracing::warn!(%error, "provider unavailable");
                session.handle(
                    Input::ProviderFailed {
                        message: error.to_string(),
                        apology: apology(format),
                    },
                    clock.now(),
                );
                None
            }
        };
        let provider_kind = provider.as_ref().map(|p| p.kind()).unwrap_or("none");
        let mut frame = vec![0u8; format.frame_bytes().max(640)];
        let mut summary: Option<String> = None;
        let mut transcript_words = Vec::<(EventKind, String)>::new();
        let mut counters = Counters {
            frames_in: 0,
            frames_in_total: metrics::counter!(crate::metrics::FRAMES_IN),
            frame_in_seconds: metrics::histogram!(crate::metrics::FRAME_IN_SECONDS),
            frames_rejected: 0,
            unknown_events: 0,
            flood: FloodGuard::default(),
            frames_flooded: 0,
            frames_flooded_total: metrics::counter!(crate::metrics::FRAMES_REJECTED, "reason" => "flood"),
            agent_audio_overflow: 0,
            stream_id: start.stream_id.clone(),
            format,
        };

        // Pinned once: a future made per iteration would register and unregister its waiter
        // (or timer entry) on every frame, which at a thousand calls is a measurable cost.
        let shutdown = shutdown.cancelled();
        let hangup = hangup.cancelled();
        let sleep = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(shutdown, hangup, sleep);
        let mut armed: Option<tokio::time::Instant> = None;
        loop {
            self.apply_actions(
                &mut session,
                &mut provider,
                &clock,
                runtime,
                format,
                &mut transcript_words,
                &mut counters,
            )
            .await;
            if let Some(failure) = self.recording_failure.take() {
                session.handle(
                    Input::RecordingFailed {
                        error: failure.to_string(),
                    },
                    clock.now(),
                );
                continue;
            }
            if session.is_ended() {
                break;
            }
            if !self.caller_gone {
                self.transmit(&mut session, &clock, &mut frame, &mut counters)
                    .await;
            }
            if self.caller_gone && !session.is_ended() {
                // A write failed or stalled: nobody hears the call any more.
                session.handle(Input::CallerGone, clock.now());
                continue;
            }
            self.feed_backlog();
            let now = clock.now();
            let deadline = session
                .poll_timeout(now)
                .map(tokio::time::Instant::from_std);
            if let Some(at) = deadline
                && deadline != armed
            {
                sleep.as_mut().reset(at);
            }
            armed = deadline;
            tokio::select! {
                biased;
                _ = &mut shutdown, if session.end_reason().is_none() => {
                    session.handle(Input::Shutdown, clock.now());
                }
                _ = &mut hangup, if session.end_reason().is_none() => {
                    session.handle(Input::HangupRequested, clock.now());
                }
                message = self.socket.next(), if !self.caller_gone => {
                    self.on_carrier(message, &mut session, &mut provider, &clock, runtime, format, &mut frame, &mut counters).await;
                }
                event = next_provider_event(&mut provider) => {
                    match event {
                        Ok(ProviderEvent::Summary { text }) => summary = Some(text),
                        Ok(ProviderEvent::Warning { message }) => tracing::info!(%message, "provider notice"),
                        Ok(event) => {
                            session.handle(Input::Provider(event), clock.now());
                            counters.agent_audio_overflow(session.stats().agent_audio_overflow);
                        }
                        Err(error) => {
                            tracing::warn!(%error, "provider failed");
                            provider = None;
                            metrics::counter!(crate::metrics::PROVIDER_FAILURES).increment(1);
                            session.handle(Input::ProviderFailed { message: error.to_string(), apology: apology(format) }, clock.now());
                        }
                    }
                }
                _ = &mut sleep, if armed.is_some() => {
                    armed = None; // Fired: re-arm even if the session asks for the same instant.
                    session.tick(clock.now());
                }
            }
        }

        let end_reason = session.end_reason().unwrap_or(EndReason::InternalError);
        let ended_at = Utc::now();
        self.stream_ended = Some(self.stream_started.elapsed());
        let stats = session.stats().clone();
        let fallback_summary = extractive_summary(&context, &transcript_words, &stats, end_reason);
        let recorded_interest = stats.interest_level.as_deref().and_then(Interest::parse);
        let caller_turns: Vec<&str> = transcript_words
            .iter()
            .filter(|(kind, _)| *kind == EventKind::CallerSpeech)
            .map(|(_, text)| text.as_str())
            .collect();
        let deterministic = analysis::deterministic(&DeterministicInput {
            caller_turns: &caller_turns,
            interest: recorded_interest,
            transfer: if end_reason == EndReason::Transferred {
                AnalysisTransfer::Decided
            } else {
                AnalysisTransfer::None
            },
            opted_out: stats.opted_out,
            callback_requested: stats.callback.is_some(),
            callback_at: stats.callback.as_ref().map(|callback| callback.at),
            end_reason,
        });
        // The agent heard a voicemail greeting: the lead was not reached.
        let outcome = if end_reason == EndReason::Voicemail {
            CallOutcome::Voicemail
        } else {
            CallOutcome::Called
        };
        let turn_p50 = percentile(&stats.turn_latencies_ms, 50);
        let metadata = json!({
            "provider": provider_kind,
            "end_reason": end_reason.as_str(),
            "latency": {
                "first_audio_ms": stats.first_audio_ms,
                "turn_ms": stats.turn_latencies_ms,
                "turn_p50_ms": turn_p50,
            },
            "frames": {"in": counters.frames_in, "out": stats.frames_sent, "rejected": counters.frames_rejected, "unknown_events": counters.unknown_events, "flooded": counters.frames_flooded},
            // Agent audio over the call's cap of unplayed audio, dropped.
            "agent_audio_dropped_ms": format.bytes_to_ms(stats.agent_audio_overflow as usize),
            "barge_ins": stats.barge_ins,
            "underruns": stats.underruns,
            "ignored_barge_ins": stats.ignored_barge_ins,
            "tool_calls": stats.tool_calls,
            "interest_level": stats.interest_level,
            "outcome_notes": stats.outcome_notes,
            "callback": stats.callback,
            "opted_out": stats.opted_out,
            "provider_usage": stats.usage,
            // The carrier stopped reading: the call ended after a write timed out.
            "carrier_stalled": self.stalled,
        });
        metrics::counter!(crate::metrics::UNDERRUNS).increment(u64::from(stats.underruns));
        if let Some(first_audio) = stats.first_audio_ms {
            metrics::histogram!(crate::metrics::FIRST_AUDIO_SECONDS)
                .record(first_audio as f64 / 1000.0);
        }
        Conversation {
            end: CallEnd {
                ended_at,
                end_reason,
                outcome,
                duration_secs: None,
                summary: None,
                recording_url: None,
                metadata,
                callback: stats.callback.as_ref().map(|callback| CallbackRequest {
                    due_at: callback.at,
                    phrase: callback.phrase.clone(),
                    note: stats.outcome_notes.clone(),
                }),
                lead_facts: CallFacts {
                    interest: recorded_interest,
                    opted_out: stats.opted_out,
                    not_interested: recorded_interest == Some(Interest::None),
                    ..CallFacts::default()
                },
                analysis: None,
            },
            // A real summary is asked for only when the call had speech.
            provider: provider.filter(|_| !transcript_words.is_empty()),
            summary,
            fallback_summary,
            deterministic,
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn on_carrier(
        &mut self,
        message: Option<Result<CarrierMessage, CarrierError>>,
        session: &mut CallSession,
        provider: &mut Option<Box<dyn VoiceProvider>>,
        clock: &Clock,
        runtime: &CallRuntime,
        format: AudioFormat,
        frame: &mut [u8],
        counters: &mut Counters,
    ) {
        let text = match message {
            Some(Ok(CarrierMessage::Text(text))) => text,
            Some(Ok(CarrierMessage::Other)) => {
                // Pings count against the ceiling like any message: reading them is the cost.
                if !counters.flood.admit(clock.now()) {
                    counters.flooded();
                }
                return;
            }
            Some(Err(CarrierError::TooBig(error))) => {
                self.refuse_too_big(&error).await;
                session.handle(Input::CarrierViolation, clock.now());
                return;
            }
            Some(Ok(CarrierMessage::Close | CarrierMessage::CloseTooBig))
            | Some(Err(CarrierError::Broken(_)))
            | None => {
                self.caller_gone = true;
                session.handle(Input::CallerGone, clock.now());
                return;
            }
        };
        if !counters.flood.admit(clock.now()) {
            counters.flooded();
            return;
        }
        let started = std::time::Instant::now();
        match stream::parse_inbound(&text) {
            Ok(InboundEvent::Media(media)) => {
                counters.frames_in += 1;
                counters.frames_in_total.increment(1);
                let length = match media.decode_into(frame) {
                    Ok(length) => length,
                    Err(error) => {
                        counters.frames_rejected += 1;
                        metrics::counter!(crate::metrics::FRAMES_REJECTED, "reason" => "payload")
                            .increment(1);
                        tracing::debug!(%error, "media frame skipped");
                        return;
                    }
                };
                session.handle(
                    Input::CallerFrame {
                        timestamp_ms: media.timestamp_ms,
                    },
                    clock.now(),
                );
                let (timestamp_ms, chunk) = (media.timestamp_ms, media.chunk);
                if let Some(active) = provider.as_mut() {
                    let send = active.send_audio(&frame[..length], &media.payload_base64);
                    let result =
                        tokio::time::timeout(runtime.timing.provider_send_timeout, send).await;
                    counters
                        .frame_in_seconds
                        .record(started.elapsed().as_secs_f64());
                    if let Some(error) = send_failure(result) {
                        tracing::warn!(%error, "provider stopped taking audio");
                        *provider = None;
                        metrics::counter!(crate::metrics::PROVIDER_FAILURES).increment(1);
                        session.handle(
                            Input::ProviderFailed {
                                message: error,
                                apology: apology(format),
                            },
                            clock.now(),
                        );
                    }
                }
                // After the frame went on to the provider: the recording never delays it.
                self.record(|recorder, now| {
                    recorder.caller(&frame[..length], timestamp_ms, chunk, now)
                });
            }
            Ok(InboundEvent::Dtmf(dtmf)) => {
                session.handle(Input::Dtmf { digit: dtmf.digit }, clock.now())
            }
            Ok(InboundEvent::PlayedStream { name }) => {
                session.handle(Input::Played { name }, clock.now())
            }
            Ok(InboundEvent::ClearedAudio) => session.handle(Input::Cleared, clock.now()),
            Ok(InboundEvent::Stop { .. }) => {
                self.caller_gone = true;
                session.handle(Input::CallerGone, clock.now());
            }
            Ok(InboundEvent::Start(_)) => tracing::debug!("repeated start ignored"),
            Ok(InboundEvent::Failure { event, reason }) => {
                tracing::warn!(%event, ?reason, "carrier reported a failure")
            }
            Ok(InboundEvent::Unknown { event }) => {
                counters.unknown_events += 1;
                metrics::counter!(crate::metrics::UNKNOWN_EVENTS).increment(1);
                tracing::debug!(%event, "unknown carrier event ignored");
            }
            Err(error) => {
                counters.frames_rejected += 1;
                metrics::counter!(crate::metrics::FRAMES_REJECTED, "reason" => "malformed")
                    .increment(1);
                tracing::debug!(%error, "malformed carrier frame skipped");
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn apply_actions(
        &mut self,
        session: &mut CallSession,
        provider: &mut Option<Box<dyn VoiceProvider>>,
        clock: &Clock,
        runtime: &CallRuntime,
        format: AudioFormat,
        transcript: &mut Vec<(EventKind, String)>,
        counters: &mut Counters,
    ) {
        while let Some(action) = session.poll_action() {
            match action {
                Action::ClearPlivo => {
                    let decided = std::time::Instant::now();
                    self.out.clear();
                    stream::write_clear_audio(&mut self.out, &counters.stream_id);
                    self.send_carrier().await;
                    self.record(|recorder, now| {
                        recorder.clear(now);
                        Ok(())
                    });
                    metrics::histogram!(crate::metrics::BARGE_IN_SECONDS)
                        .record(decided.elapsed().as_secs_f64());
                }
                Action::Checkpoint(name) => {
                    self.out.clear();
                    stream::write_checkpoint(&mut self.out, &counters.stream_id, &name);
                    self.send_carrier().await;
                }
                Action::Provider(command) => {
                    let Some(active) = provider.as_mut() else {
                        continue;
                    };
                    let result = tokio::time::timeout(
                        runtime.timing.provider_send_timeout,
                        active.send(command),
                    )
                    .await;
                    if let Some(error) = send_failure(result) {
                        tracing::warn!(%error, "provider command failed");
                        *provider = None;
                        session.handle(
                            Input::ProviderFailed {
                                message: error,
                                apology: apology(format),
                            },
                            clock.now(),
                        );
                    }
                }
                Action::Record(event) => {
                    if let (Some(text), EventKind::CallerSpeech | EventKind::AgentSpeech) =
                        (&event.text, event.kind)
                    {
                        transcript.push((event.kind, text.clone()));
                    }
                    let event = clock.event(event);
                    self.write(CallWrite::Event(event));
                }
                Action::Transfer(plan) => {
                    let defaults = &self.transfer_defaults;
                    let whisper = format!(
                        "Transfer from the AI assistant. {} is on the line about {}. Reason: {}. {}",
                        if defaults.lead_name.is_empty() {
                            "A lead"
                        } else {
                            defaults.lead_name.as_str()
                        },
                        if defaults.campaign_name.is_empty() {
                            "the campaign"
                        } else {
                            defaults.campaign_name.as_str()
                        },
                        plan.reason,
                        whisper_summary(transcript),
                    );
                    self.transfer_written = true;
                    self.write(CallWrite::Transfer(NewTransfer {
                        call_sid: defaults.call_sid.clone(),
                        trigger: plan.trigger,
                        reason: plan.reason,
                        department: plan.department,
                        targets: plan.targets,
                        caller_id: defaults.caller_id.clone(),
                        ring_timeout_secs: defaults.ring_timeout_secs,
                        whisper,
                        handoff_line: plan.handoff_line,
                        fallback: defaults.fallback.clone(),
                        strategy: defaults.strategy.to_owned(),
                    }));
                }
                Action::OptOut { reason } => {
                    tracing::info!("the caller opted out; suppressing the number");
                    let lead_id = self.lead_id;
                    self.write(CallWrite::OptOut { lead_id, reason });
                }
                Action::End(_) => {}
            }
        }
    }

    async fn transmit(
        &mut self,
        session: &mut CallSession,
        clock: &Clock,
        frame: &mut [u8],
        counters: &mut Counters,
    ) {
        let format = counters.format;
        // Everything due goes into the socket's buffer, then out in one write.
        let mut fed_any = false;
        while let Some(transmit) = session.poll_transmit(clock.now(), frame) {
            self.out.clear();
            let mut played = None;
            match transmit {
                Transmit::Frame(length) => {
                    played = Some(length);
                    stream::write_play_audio(&mut self.out, format, &frame[..length]);
                    metrics::counter!(crate::metrics::FRAMES_OUT).increment(1);
                }
                Transmit::Checkpoint(name) => {
                    stream::write_checkpoint(&mut self.out, &counters.stream_id, &name)
                }
            }
            if self.caller_gone {
                return;
            }
            let message = CarrierMessage::Text(self.out.clone());
            let fed = tokio::time::timeout(self.write_timeout, self.socket.feed(message)).await;
            if !self.carrier_written(fed) {
                return;
            }
            fed_any = true;
            if let Some(length) = played {
                self.record(|recorder, now| recorder.agent(&frame[..length], now));
            }
        }
        if fed_any {
            let flushed = tokio::time::timeout(self.write_timeout, self.socket.flush()).await;
            self.carrier_written(flushed);
        }
    }

    async fn send_carrier(&mut self) {
        if self.caller_gone {
            return;
        }
        let message = CarrierMessage::Text(self.out.clone());
        let sent = tokio::time::timeout(self.write_timeout, self.socket.send(message)).await;
        self.carrier_written(sent);
    }

    /// Whether a write to the carrier went through; a failed or timed-out one means the caller
    /// is gone (a timeout: the peer stopped reading, counted and logged once).
    fn carrier_written<E>(
        &mut self,
        result: Result<Result<(), E>, tokio::time::error::Elapsed>,
    ) -> bool {
        match result {
            Ok(Ok(())) => true,
            Ok(Err(_)) => {
                self.caller_gone = true;
                false
            }
            Err(_) => {
                self.caller_gone = true;
                if !self.stalled {
                    self.stalled = true;
                    metrics::counter!(crate::metrics::CARRIER_WRITE_TIMEOUTS).increment(1);
                    tracing::warn!(timeout = ?self.write_timeout, "the carrier stopped reading; the caller counts as gone");
                }
                false
            }
        }
    }

    /// The carrier sent a message over the socket's limit: close with 1009. One log line; the
    /// call, if it started, ends with reason `protocol_error`.
    async fn refuse_too_big(&mut self, error: &str) {
        metrics::counter!(crate::metrics::FRAMES_REJECTED, "reason" => "too_big").increment(1);
        tracing::warn!(%error, "carrier message over the limit; socket closed with 1009");
        if !self.caller_gone {
            let _ = self.socket.send(CarrierMessage::CloseTooBig).await;
            self.caller_gone = true;
        }
    }

    /// Closes the carrier's socket, each step within the write timeout. A stalled socket gets
    /// no close frame (it would never go out); dropping the socket closes the connection.
    async fn close_socket(&mut self) {
        if !self.caller_gone {
            let sent =
                tokio::time::timeout(self.write_timeout, self.socket.send(CarrierMessage::Close))
                    .await;
            self.carrier_written(sent);
            self.caller_gone = true;
        }
        if !self.stalled {
            let _ = tokio::time::timeout(self.write_timeout, self.socket.close()).await;
        }
    }

    /// Starts the call's recording when the policy says so; a recorder that cannot start is a
    /// failure the session records, and the call goes on.
    fn start_recording(&mut self, policy: RecordingPolicy, format: crate::audio::AudioFormat) {
        let Some(pages) = self.recording_pages.take() else {
            return;
        };
        if !policy.enabled {
            return;
        }
        match CallRecorder::new(format, pages, getrandom::u32().unwrap_or(1)) {
            Ok(recorder) => self.recorder = Some(recorder),
            Err(failure) => self.recording_failed(failure),
        }
    }

    /// Shows the recorder a frame or a clear, at the stream's time; a failure stops the
    /// recording (the call goes on).
    fn record(
        &mut self,
        step: impl FnOnce(&mut CallRecorder, Duration) -> Result<(), RecordingFailed>,
    ) {
        let Some(recorder) = self.recorder.as_mut() else {
            return;
        };
        if let Err(failure) = step(recorder, self.stream_started.elapsed()) {
            self.recorder = None;
            self.recording_failed(failure);
        }
    }

    fn recording_failed(&mut self, failure: RecordingFailed) {
        // A write failure was counted and logged by the writer itself.
        let stage = match failure {
            RecordingFailed::Encoder(_) => Some("encoder"),
            RecordingFailed::Stalled => Some("stalled"),
            RecordingFailed::Storage => None,
        };
        if let Some(stage) = stage {
            metrics::counter!(crate::metrics::RECORDINGS_FAILED, "stage" => stage).increment(1);
        }
        tracing::warn!(error = %failure, "recording stopped; the call goes on unrecorded");
        self.recording_error = Some(failure.to_string());
        self.recording_failure = Some(failure);
    }

    /// After the call: the rest of the recording to its file. Returns the recording's API
    /// resource (`call_logs.recording_url`), or `None` when there is none.
    async fn finish_recording(&mut self) -> Option<String> {
        let recorder = self.recorder.take()?;
        let end = self
            .stream_ended
            .unwrap_or_else(|| self.stream_started.elapsed());
        let (last_pages, pages) = match recorder.finish(end) {
            Ok(finished) => finished,
            Err(failure) => {
                self.recording_failed(failure);
                return None;
            }
        };
        let (reply, answer) = tokio::sync::oneshot::channel();
        let finished = tokio::time::timeout(RECORDING_FINISH_TIMEOUT, async {
            pages
                .send(WriterMessage::Finish(last_pages, reply))
                .await
                .map_err(|_| "the recording's writer had stopped".to_owned())?;
            answer
                .await
                .map_err(|_| "the recording's writer had stopped".to_owned())?
        })
        .await
        .unwrap_or_else(|_| Err("the recording's file took too long to finish".to_owned()));
        match finished {
            Ok(bytes) => {
                metrics::counter!(crate::metrics::RECORDINGS_FINISHED).increment(1);
                tracing::info!(bytes, "recording finished");
                Some(RECORDING_URL_TEMPLATE.to_owned())
            }
            Err(error) => {
                metrics::counter!(crate::metrics::RECORDINGS_FAILED, "stage" => "finish")
                    .increment(1);
                tracing::warn!(%error, "the recording could not be finished");
                self.recording_error = Some(error);
                None
            }
        }
    }

    fn write(&mut self, write: CallWrite) {
        self.backlog.push_back(write);
        self.feed_backlog();
    }

    /// Moves writes from the backlog into the channel while it has room.
    fn feed_backlog(&mut self) {
        while let Some(write) = self.backlog.pop_front() {
            match self.writes.try_send(write) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(write)) => {
                    self.backlog.push_front(write);
                    return;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            }
        }
    }

    /// Hands the whole backlog to the writer, waiting for room.
    async fn flush_backlog(&mut self) {
        while let Some(write) = self.backlog.pop_front() {
            if self.writes.send(write).await.is_err() {
                return;
            }
        }
    }

    /// After the call: hands every remaining write to the writer, then lets it finish.
    async fn flush_writes(self) {
        let Self {
            writes, backlog, ..
        } = self;
        for write in backlog {
            if writes.send(write).await.is_err() {
                break;
            }
        }
    }
}

/// What can end a call from outside: the gateway's shutdown, a hang-up request.
struct Signals {
    shutdown: CancellationToken,
    hangup: CancellationToken,
}

struct Conversation {
    /// The close, without its summary.
    end: CallEnd,
    /// The provider, kept after the call only to write the summary.
    provider: Option<Box<dyn VoiceProvider>>,
    /// A summary the provider sent during the call.
    summary: Option<String>,
    /// The deterministic summary, when the provider gives none.
    fallback_summary: Option<String>,
    /// The deterministic analysis, when the provider gives none (or an invalid one).
    deterministic: Analysis,
}

struct Counters {
    frames_in: u64,
    /// Metric handles looked up once per call rather than once per frame.
    frames_in_total: metrics::Counter,
    frame_in_seconds: metrics::Histogram,
    frames_rejected: u64,
    unknown_events: u64,
    /// The ceiling on the carrier's message rate.
    flood: FloodGuard,
    /// Messages dropped unread above the ceiling.
    frames_flooded: u64,
    frames_flooded_total: metrics::Counter,
    /// Agent audio dropped above the cap of unplayed audio, as counted so far (bytes).
    agent_audio_overflow: u64,
    stream_id: String,
    format: AudioFormat,
}

impl Counters {
    /// A message was dropped above the ceiling: counted, and logged once per call.
    fn flooded(&mut self) {
        if self.frames_flooded == 0 {
            tracing::warn!(
                ceiling = flood::MAX_MESSAGES_PER_SEC,
                "carrier flood: messages above the ceiling are dropped unread"
            );
        }
        self.frames_flooded += 1;
        self.frames_flooded_total.increment(1);
    }

    /// The session's count of agent audio dropped over its cap: the metric follows it, and the
    /// first drop of the call is logged.
    fn agent_audio_overflow(&mut self, total: u64) {
        if total <= self.agent_audio_overflow {
            return;
        }
        if self.agent_audio_overflow == 0 {
            tracing::warn!(
                cap_secs = super::session::MAX_UNPLAYED_AGENT_AUDIO_SECS,
                "the provider sent more agent audio than the call may hold; the excess is dropped"
            );
        }
        metrics::counter!(crate::metrics::AGENT_AUDIO_DROPPED_BYTES)
            .increment(total - self.agent_audio_overflow);
        self.agent_audio_overflow = total;
    }
}

/// Maps `Instant`s of the session to wall-clock times for the database.
struct Clock {
    start_instant: std::time::Instant,
    start_wall: DateTime<Utc>,
}

impl Clock {
    fn new() -> Self {
        Self {
            start_instant: tokio::time::Instant::now().into_std(),
            start_wall: Utc::now(),
        }
    }

    fn now(&self) -> std::time::Instant {
        tokio::time::Instant::now().into_std()
    }

    fn wall(&self, instant: std::time::Instant) -> DateTime<Utc> {
        let offset = instant.saturating_duration_since(self.start_instant);
        self.start_wall + chrono::Duration::from_std(offset).unwrap_or_default()
    }

    fn event(&self, event: RecordedEvent) -> CallEvent {
        CallEvent {
            seq: event.seq,
            kind: event.kind,
            occurred_at: self.wall(event.at),
            ended_at: event.ended_at.map(|at| self.wall(at)),
            text: event.text,
            data: event.data,
        }
    }
}

async fn next_provider_event(
    provider: &mut Option<Box<dyn VoiceProvider>>,
) -> Result<ProviderEvent, ProviderError> {
    match provider.as_mut() {
        Some(provider) => provider.next_event().await,
        None => std::future::pending().await,
    }
}

fn send_failure(
    result: Result<Result<(), ProviderError>, tokio::time::error::Elapsed>,
) -> Option<String> {
    match result {
        Ok(Ok(())) => None,
        Ok(Err(error)) => Some(error.to_string()),
        Err(_) => Some("the provider stalled".to_owned()),
    }
}

impl Conversation {
    /// The post-call work, after the caller was released: the provider's summary and analysis
    /// (asked for together, within `timeout`), else the deterministic ones. The provider
    /// connection closes after it. Fills the close's summary, `metadata.analysis` and the
    /// lead's facts.
    async fn finish(&mut self, timeout: Duration) {
        let (mut summary, mut answer) = (self.summary.take(), None);
        if let Some(mut provider) = self.provider.take() {
            (summary, answer) = request_texts(provider.as_mut(), summary, timeout).await;
        }
        self.end.summary = summary
            .filter(|text| !text.trim().is_empty())
            .or_else(|| self.fallback_summary.take());
        let analysis = match answer.filter(|text| !text.trim().is_empty()) {
            None => self.deterministic.clone(),
            Some(text) => match analysis::parse_model_answer(&text) {
                Ok(analysis) => analysis,
                Err(error) => {
                    tracing::warn!(%error, "the model's analysis is not valid; the deterministic one is kept");
                    metrics::counter!(crate::metrics::ANALYSES_REFUSED).increment(1);
                    self.deterministic.clone()
                }
            },
        };
        let analysis = analysis.with_known_facts(
            self.end.lead_facts.opted_out,
            self.end.callback.as_ref().map(|callback| callback.due_at),
        );
        let value = serde_json::to_value(&analysis).unwrap_or_default();
        self.end.metadata["analysis"] = value.clone();
        self.end.analysis = Some(value);
        let said_not_interested = analysis
            .objections
            .iter()
            .any(|objection| objection == "not interested");
        // The interest the agent recorded during the call wins over the analysis after it.
        self.end.lead_facts.interest = self.end.lead_facts.interest.or(Some(analysis.interest));
        self.end.lead_facts.not_interested |=
            said_not_interested || analysis.interest == Interest::None;
    }
}

/// Asks the provider for what is still missing of the summary and the analysis, at once, and
/// collects both answers until `timeout`.
async fn request_texts(
    provider: &mut dyn VoiceProvider,
    mut summary: Option<String>,
    timeout: Duration,
) -> (Option<String>, Option<String>) {
    let mut analysis = None;
    let wait = async {
        if summary.is_none()
            && provider
                .send(ProviderCommand::RequestSummary)
                .await
                .is_err()
        {
            return;
        }
        if provider
            .send(ProviderCommand::RequestAnalysis)
            .await
            .is_err()
        {
            return;
        }
        while summary.is_none() || analysis.is_none() {
            match provider.next_event().await {
                Ok(ProviderEvent::Summary { text }) => summary = Some(text),
                Ok(ProviderEvent::Analysis { text }) => analysis = Some(text),
                Ok(_) => {}
                Err(_) => return,
            }
        }
    };
    if tokio::time::timeout(timeout, wait).await.is_err() {
        tracing::info!(
            "the provider's summary or analysis took too long; the deterministic ones are used"
        );
    }
    (summary, analysis)
}

/// Two sentences for the human about to take the call: the caller's last words.
fn whisper_summary(turns: &[(EventKind, String)]) -> String {
    let caller: Vec<&str> = turns
        .iter()
        .filter(|(kind, _)| *kind == EventKind::CallerSpeech)
        .map(|(_, text)| text.as_str())
        .collect();
    match caller.as_slice() {
        [] => "The caller has not said much yet.".to_owned(),
        [only] => format!("The caller said: {}.", clip(only).trim_end_matches('.')),
        [.., before, last] => format!(
            "The caller said: {}. Then: {}.",
            clip(before).trim_end_matches('.'),
            clip(last).trim_end_matches('.')
        ),
    }
}

/// A deterministic summary from the call's turns, when no provider summary is available.
pub fn extractive_summary(
    context: &CallContext,
    turns: &[(EventKind, String)],
    stats: &super::session::SessionStats,
    end_reason: EndReason,
) -> Option<String> {
    if turns.is_empty() {
        return None;
    }
    let caller: Vec<&str> = turns
        .iter()
        .filter(|(kind, _)| *kind == EventKind::CallerSpeech)
        .map(|(_, text)| text.as_str())
        .collect();
    let who = if context.lead_name.is_empty() {
        "The lead"
    } else {
        context.lead_name.as_str()
    };
    let mut summary = match (caller.first(), caller.last()) {
        (None, _) => format!("{who} did not speak during the call."),
        (Some(first), Some(last)) if caller.len() > 1 => {
            format!(
                "{who} said \"{}\" and later \"{}\".",
                clip(first),
                clip(last)
            )
        }
        (Some(first), _) => format!("{who} said \"{}\".", clip(first)),
    };
    if let Some(level) = &stats.interest_level {
        summary.push_str(&format!(" Interest: {level}."));
    }
    if let Some(callback) = &stats.callback {
        summary.push_str(&format!(" Callback requested for {}.", callback.spoken));
    }
    if stats.opted_out {
        summary.push_str(" The caller asked not to be called again.");
    }
    summary.push_str(&format!(
        " The call ended: {}.",
        end_reason.as_str().replace('_', " ")
    ));
    Some(summary)
}

fn clip(text: &str) -> String {
    const MAX_WORDS: usize = 25;
    let words: Vec<&str> = text.split_whitespace().collect();
    if words.len() <= MAX_WORDS {
        return words.join(" ");
    }
    format!("{}…", words[..MAX_WORDS].join(" "))
}

fn percentile(values: &[u64], percent: usize) -> Option<u64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    Some(sorted[(sorted.len() - 1) * percent / 100])
}

/// The apology in the carrier's format, converted once per format.
fn apology(format: AudioFormat) -> Vec<u8> {
    static L16_8K: OnceLock<Vec<u8>> = OnceLock::new();
    static L16_16K: OnceLock<Vec<u8>> = OnceLock::new();
    let to_l16 = |rate: u32| {
        let mut samples = vec![0i16; APOLOGY_MULAW.len()];
        mulaw::decode(APOLOGY_MULAW, &mut samples);
        if rate == 8000 {
            let mut bytes = vec![0u8; samples.len() * 2];
            l16::encode_le(&samples, &mut bytes);
            return bytes;
        }
        let mut resampler = Resampler::new(8000, rate).expect("8 kHz converts to 16 kHz");
        let mut out_frame = vec![0i16; resampler.output_frame_len()];
        let mut bytes = Vec::with_capacity(samples.len() * 4);
        for chunk in samples.chunks(160) {
            let mut input = [0i16; 160];
            input[..chunk.len()].copy_from_slice(chunk);
            if let Ok(written) = resampler.process_frame(&input, &mut out_frame) {
                for sample in &out_frame[..written] {
                    bytes.extend_from_slice(&sample.to_le_bytes());
                }
            }
        }
        bytes
    };
    match (format.encoding, format.sample_rate) {
        (Encoding::Mulaw, _) => APOLOGY_MULAW.to_vec(),
        (Encoding::L16, 16000) => L16_16K.get_or_init(|| to_l16(16000)).clone(),
        (Encoding::L16, _) => L16_8K.get_or_init(|| to_l16(8000)).clone(),
    }
}
