//! One call as a sans-I/O state machine: events and the current time go in, actions come out.
//!
//! It owns the agent's outgoing audio (paced at most `playout_lead` ahead of real time, in
//! exact 20 ms frames), barge-in (clear, truncate to what was heard, cancel, ignore late audio),
//! tool calls (their side effects run only for responses that completed), the silence and
//! maximum-duration rules, and the one end reason. It does no I/O and knows no clock: the
//! bridge feeds it and carries out what it asks.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use chrono::{DateTime, Utc};

use crate::{
    ai::{
        ProviderCommand, ProviderEvent, ResponseStatus,
        prompt::CallSchedule,
        tools::{self, ToolRequest},
    },
    audio::{AudioFormat, FRAME_MS, framing::silence_byte},
    dialer::window::CallingWindow,
    domain::{EndReason, EventKind},
    outcome::callback_time::{self, CallbackError},
    transfer::policy::{self, Decision, Target, TransferRules, Trigger},
};

/// How long after the estimated end of playout the session waits for Plivo's `playedStream`
/// of the last line before it takes the line as heard anyway.
const PLAYED_GRACE: Duration = Duration::from_millis(500);
/// What Plivo says before dialling when the agent did not announce the transfer itself.
pub const HANDOFF_LINE: &str = "Let me connect you with a colleague now. Please hold.";
/// The checkpoint after the apology a provider failure plays.
const APOLOGY_CHECKPOINT: &str = "apology";
/// The most agent audio one call holds unplayed, in seconds of its own format (60 s: 480 KB of
/// μ-law, 1.9 MB of L16 at 16 kHz). Providers write faster than real time, but a reply is
/// seconds long; beyond this, audio is dropped and counted, so what a provider sends never
/// grows a call's memory without bound.
pub const MAX_UNPLAYED_AGENT_AUDIO_SECS: usize = 60;

/// Rules of one call.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// The carrier's audio format.
    pub format: AudioFormat,
    /// How far ahead of real time outgoing audio may run (Plivo buffers the rest).
    pub playout_lead: Duration,
    /// Caller speech in the first part of the greeting is taken for the agent's own echo and
    /// does not interrupt it.
    pub greeting_guard: Duration,
    /// Nobody spoke and nothing played for this long: the call ends with `silence`.
    pub silence_timeout: Duration,
    pub max_duration: Duration,
    /// Once the end is decided, how long the last words may take to play out.
    pub final_playout_limit: Duration,
    /// What a transfer decision needs.
    pub transfer: TransferConfig,
    /// The `seq` of the first event (a resumed stream continues its call's numbering).
    pub first_event_seq: i32,
    /// The lead's clock and the campaign's window, for callbacks the caller asks for.
    pub schedule: CallSchedule,
}

/// The campaign's transfer rules and targets, and the wall-clock time the session started (the
/// policy reads business hours; the session keeps time as `Instant`s).
#[derive(Debug, Clone)]
pub struct TransferConfig {
    pub rules: TransferRules,
    pub targets: Vec<Target>,
    pub assigned: Option<Target>,
    pub wall_start: DateTime<Utc>,
}

impl Default for TransferConfig {
    fn default() -> Self {
        Self {
            rules: TransferRules {
                enabled: false,
                ..TransferRules::default()
            },
            targets: Vec::new(),
            assigned: None,
            wall_start: Utc::now(),
        }
    }
}

/// A transfer the session decided; the bridge stores it before the stream closes.
#[derive(Debug, Clone, PartialEq)]
pub struct TransferPlan {
    pub trigger: String,
    pub reason: String,
    pub department: String,
    pub targets: Vec<Target>,
    /// Said by Plivo before dialling when the agent has not announced the transfer itself.
    pub handoff_line: Option<String>,
}

/// What the session asks the bridge to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send `clearAudio` to Plivo now.
    ClearPlivo,
    /// Send a `checkpoint` with this name.
    Checkpoint(String),
    /// Send a command to the provider.
    Provider(ProviderCommand),
    /// Record a call event (the bridge adds the wall-clock time and writes it).
    Record(RecordedEvent),
    /// Store this transfer before the stream closes (the call then ends as `transferred`).
    Transfer(TransferPlan),
    /// The caller asked never to be called again: suppress their number now.
    OptOut { reason: String },
    /// End the call with this reason: close both sides.
    End(EndReason),
}

/// A call event as the session knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    pub seq: i32,
    pub kind: EventKind,
    pub at: Instant,
    pub ended_at: Option<Instant>,
    pub text: Option<String>,
    pub data: Value,
}

/// Something that happened outside the session.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// A caller frame arrived (its audio goes straight to the provider).
    CallerFrame {
        timestamp_ms: Option<u64>,
    },
    Provider(ProviderEvent),
    /// Plivo played everything before this checkpoint.
    Played {
        name: String,
    },
    /// Plivo acknowledged `clearAudio`.
    Cleared,
    Dtmf {
        digit: String,
    },
    /// The caller's side ended (`stop` or the socket closed).
    CallerGone,
    /// The provider failed: apologise with `apology` (carrier-format audio) and end.
    ProviderFailed {
        message: String,
        apology: Vec<u8>,
    },
    /// The gateway is shutting down.
    Shutdown,
    /// An operator or the API asked to hang up.
    HangupRequested,
    /// The carrier broke the media stream's limits; its socket is closed.
    CarrierViolation,
    /// The call's recording stopped; the call goes on unrecorded.
    RecordingFailed {
        error: String,
    },
}

/// What the bridge sends to Plivo next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transmit {
    /// One 20 ms frame, written into the caller's buffer (this many bytes).
    Frame(usize),
    /// A checkpoint, after the frames before it.
    Checkpoint(String),
}

/// Figures of the call, for its metadata and metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SessionStats {
    /// From the call's start to the first greeting frame sent.
    pub first_audio_ms: Option<u64>,
    /// From the caller's end of speech to the next agent frame sent, per turn.
    pub turn_latencies_ms: Vec<u64>,
    pub barge_ins: u32,
    pub ignored_barge_ins: u32,
    pub frames_sent: u64,
    /// Times an item's audio ran dry at Plivo while the item was still being sent.
    pub underruns: u32,
    pub tool_calls: u32,
    pub late_audio_dropped: u64,
    /// Bytes of agent audio dropped because the call's unplayed audio was at its cap
    /// ([`MAX_UNPLAYED_AGENT_AUDIO_SECS`]).
    pub agent_audio_overflow: u64,
    /// The outcome the agent recorded (`record_outcome`), if any.
    pub interest_level: Option<String>,
    pub outcome_notes: Option<String>,
    /// The callback the caller asked for, resolved.
    pub callback: Option<ScheduledCallback>,
    /// The caller asked never to be called again.
    pub opted_out: bool,
    /// Turns the agent said it could not answer.
    pub unanswered_turns: u32,
    /// Provider usage per completed response, summed as JSON objects.
    pub usage: Vec<Value>,
}

/// A callback the caller asked for, resolved to an instant inside the calling window.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ScheduledCallback {
    pub at: DateTime<Utc>,
    /// What the caller (or the model) said.
    pub phrase: String,
    /// The time as the caller heard it.
    pub spoken: String,
    /// The asked time was outside the window and was moved to its next opening.
    pub moved: bool,
}

/// The item being played (or last played) to the caller.
#[derive(Debug, Clone)]
struct Playback {
    item_id: String,
    response_id: String,
    /// Cumulative stream position (bytes) where this item's first byte was queued.
    start_position: u64,
    /// Bytes of this item sent to Plivo.
    sent_bytes: u64,
    /// Bytes of this item queued (sent or not).
    queued_bytes: u64,
    is_greeting: bool,
    started_at: Option<Instant>,
    transcript: Option<String>,
}

/// One call.
pub struct CallSession {
    config: SessionConfig,
    started_at: Instant,
    frame_bytes: usize,
    /// Agent audio not yet sent to Plivo, at most `max_outgoing` bytes.
    outgoing: VecDeque<u8>,
    max_outgoing: usize,
    /// Checkpoints, by the stream position (bytes) after which they are sent.
    markers: VecDeque<(u64, String)>,
    /// Checkpoints sent whose `playedStream` has not come back, with their positions.
    sent_markers: VecDeque<(u64, String)>,
    /// The stream position up to which the caller has nothing left to hear: Plivo played it
    /// (its checkpoint came back) or it was cleared.
    heard_position: u64,
    queued_position: u64,
    sent_position: u64,
    /// When what has been sent so far finishes playing.
    playout_end: Option<Instant>,
    /// Frames are going out until the lead is full (see `poll_transmit`).
    topping_up: bool,
    playback: Option<Playback>,
    /// Items whose audio is finished but whose checkpoint has not come back.
    finished_items: HashMap<String, Playback>,
    /// Items cut by a barge-in whose transcript had not arrived yet.
    interrupted_items: HashMap<String, (Playback, u64, u64)>,
    cancelled_responses: HashSet<String>,
    active_response: Option<String>,
    greeting_response: Option<String>,
    greeting_done: bool,
    pending_tools: HashMap<String, Vec<(String, String, String)>>,
    last_activity: Instant,
    caller_speaking: bool,
    caller_stopped_at: Option<Instant>,
    ending: Option<(EndReason, Instant)>,
    transfer_decided: bool,
    ended: bool,
    next_seq: i32,
    actions: VecDeque<Action>,
    stats: SessionStats,
}

impl CallSession {
    pub fn new(config: SessionConfig, now: Instant) -> Self {
        let frame_bytes = config.format.frame_bytes();
        let max_outgoing = config.format.sample_rate as usize
            * config.format.bytes_per_sample()
            * MAX_UNPLAYED_AGENT_AUDIO_SECS;
        let first_event_seq = config.first_event_seq;
        Self {
            config,
            started_at: now,
            frame_bytes,
            outgoing: VecDeque::with_capacity(frame_bytes * 64),
            max_outgoing,
            markers: VecDeque::new(),
            sent_markers: VecDeque::new(),
            heard_position: 0,
            queued_position: 0,
            sent_position: 0,
            playout_end: None,
            topping_up: false,
            playback: None,
            finished_items: HashMap::new(),
            interrupted_items: HashMap::new(),
            cancelled_responses: HashSet::new(),
            active_response: None,
            greeting_response: None,
            greeting_done: false,
            pending_tools: HashMap::new(),
            last_activity: now,
            caller_speaking: false,
            caller_stopped_at: None,
            ending: None,
            transfer_decided: false,
            ended: false,
            next_seq: first_event_seq,
            actions: VecDeque::new(),
            stats: SessionStats::default(),
        }
    }

    pub fn stats(&self) -> &SessionStats {
        &self.stats
    }

    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// The end reason once decided (the call may still be playing its last words).
    pub fn end_reason(&self) -> Option<EndReason> {
        self.ending.map(|(reason, _)| reason)
    }

    /// The next action to carry out.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Feeds an event.
    pub fn handle(&mut self, input: Input, now: Instant) {
        if self.ended {
            return;
        }
        match input {
            Input::CallerFrame { .. } => {}
            Input::Provider(event) => self.on_provider(event, now),
            Input::Played { name } => self.on_played(&name, now),
            Input::Cleared => {}
            Input::Dtmf { digit } => {
                self.last_activity = now;
                let trigger = self.config.transfer.rules.detect_dtmf(&digit);
                self.record(EventKind::Dtmf, now, Some(digit), json!({}));
                if let Some(trigger) = trigger {
                    self.consider_transfer(trigger, now);
                }
            }
            Input::CallerGone => self.end_now(EndReason::CallerHangup, now),
            Input::ProviderFailed { message, apology } => {
                self.record(EventKind::ProviderError, now, Some(message), json!({}));
                self.drop_queued_audio(now);
                self.outgoing.extend(apology);
                self.pad_to_frame();
                self.queued_position = self.sent_position + self.outgoing.len() as u64;
                // Its checkpoint tells when the caller has heard it, so the call ends then.
                self.markers
                    .push_back((self.queued_position, APOLOGY_CHECKPOINT.to_owned()));
                self.playback = None;
                self.end_after_playout(EndReason::ProviderError, now);
            }
            Input::Shutdown => self.end_now(EndReason::Shutdown, now),
            Input::HangupRequested => self.end_now(EndReason::HangupRequested, now),
            Input::CarrierViolation => self.end_now(EndReason::ProtocolError, now),
            Input::RecordingFailed { error } => {
                self.record(EventKind::RecordingFailed, now, Some(error), json!({}))
            }
        }
        self.check_timers(now);
    }

    /// Called when a timer fires (or any time): applies the time-based rules.
    pub fn tick(&mut self, now: Instant) {
        if !self.ended {
            self.check_timers(now);
        }
    }

    /// The next frame or checkpoint due now, if any; frames are written into `buffer`
    /// (at least one frame long).
    pub fn poll_transmit(&mut self, now: Instant, buffer: &mut [u8]) -> Option<Transmit> {
        if self.ended {
            return None;
        }
        if let Some((position, _)) = self.markers.front()
            && *position <= self.sent_position
        {
            let (position, name) = self.markers.pop_front().expect("checked");
            self.sent_markers.push_back((position, name.clone()));
            return Some(Transmit::Checkpoint(name));
        }
        if self.outgoing.len() < self.frame_bytes {
            return None;
        }
        let previous_end = self.playout_end;
        let playout_end = previous_end.unwrap_or(now).max(now);
        // Hysteresis: once the lead is full, wait until a batch has played before topping it
        // up again, so frames leave a few at a time (one socket write), not one per wake-up.
        let limit = if self.topping_up {
            self.config.playout_lead
        } else {
            self.config
                .playout_lead
                .saturating_sub(self.transmit_batch())
        };
        if playout_end > now + limit {
            self.topping_up = false;
            return None;
        }
        self.topping_up = true;
        for (slot, byte) in buffer[..self.frame_bytes]
            .iter_mut()
            .zip(self.outgoing.drain(..self.frame_bytes))
        {
            *slot = byte;
        }
        self.sent_position += self.frame_bytes as u64;
        self.playout_end = Some(playout_end + Duration::from_millis(FRAME_MS));
        self.stats.frames_sent += 1;
        let mid_item = self
            .playback
            .as_ref()
            .is_some_and(|playback| playback.sent_bytes > 0);
        if mid_item && previous_end.is_some_and(|end| end + Duration::from_millis(FRAME_MS) < now) {
            self.stats.underruns += 1;
        }
        self.last_activity = now;
        if self.stats.first_audio_ms.is_none() {
            self.stats.first_audio_ms =
                Some(now.saturating_duration_since(self.started_at).as_millis() as u64);
        }
        if let Some(stopped) = self.caller_stopped_at.take() {
            self.stats
                .turn_latencies_ms
                .push(now.saturating_duration_since(stopped).as_millis() as u64);
        }
        if let Some(playback) = &mut self.playback
            && self.sent_position > playback.start_position
        {
            playback.sent_bytes =
                (self.sent_position - playback.start_position).min(playback.queued_bytes);
            playback.started_at.get_or_insert(now);
        }
        Some(Transmit::Frame(self.frame_bytes))
    }

    /// How far below the playout lead the audio ahead may fall before the next top-up: a
    /// third of the lead, at most 100 ms (5 frames).
    fn transmit_batch(&self) -> Duration {
        (self.config.playout_lead / 3).min(Duration::from_millis(100))
    }

    /// When the session next needs a `tick` or `poll_transmit`.
    pub fn poll_timeout(&self, now: Instant) -> Option<Instant> {
        if self.ended {
            return None;
        }
        let mut deadline = self.started_at + self.config.max_duration;
        if self.outgoing.len() >= self.frame_bytes {
            // Wake when the audio ahead of the caller has fallen a batch below the lead, then
            // top it up: a few frames per wake-up (one write) instead of one every 20 ms.
            let playout_end = self.playout_end.unwrap_or(now);
            let due = playout_end
                .checked_sub(
                    self.config
                        .playout_lead
                        .saturating_sub(self.transmit_batch()),
                )
                .unwrap_or(now)
                .max(now);
            deadline = deadline.min(due);
        }
        match self.ending {
            Some((_, limit)) => {
                deadline = deadline
                    .min(limit)
                    .min(self.heard_by_estimate(now).max(now))
            }
            None => deadline = deadline.min(self.last_activity + self.config.silence_timeout),
        }
        Some(deadline)
    }

    // === provider events ===

    fn on_provider(&mut self, event: ProviderEvent, now: Instant) {
        match event {
            ProviderEvent::ResponseStarted { response_id } => {
                if self.greeting_response.is_none() && !self.greeting_done {
                    self.greeting_response = Some(response_id.clone());
                }
                self.active_response = Some(response_id);
            }
            ProviderEvent::Audio {
                response_id,
                item_id,
                audio,
            } => self.on_agent_audio(response_id, item_id, &audio, now),
            ProviderEvent::AudioDone {
                response_id,
                item_id,
            } => {
                if self.cancelled_responses.contains(&response_id)
                    || self.ending.is_some() && self.playback.is_none()
                {
                    return;
                }
                if self.playback.as_ref().is_some_and(|p| p.item_id == item_id) {
                    // Pad the item's last partial frame so its checkpoint follows whole frames.
                    let padded = self.pad_to_frame() as u64;
                    let mut finished = self.playback.take().expect("checked");
                    let name = finished.item_id.clone();
                    finished.queued_bytes += padded;
                    self.queued_position += padded;
                    self.markers.push_back((self.queued_position, name.clone()));
                    self.finished_items.insert(name, finished);
                }
            }
            ProviderEvent::AgentTranscript { item_id, text } => {
                if let Some(trigger) = self.config.transfer.rules.detect_in_agent_words(&text) {
                    self.consider_transfer(trigger, now);
                } else if is_unsure(&text) {
                    self.stats.unanswered_turns += 1;
                    if let Some(trigger) = self
                        .config
                        .transfer
                        .rules
                        .detect_unanswered(self.stats.unanswered_turns)
                    {
                        self.consider_transfer(trigger, now);
                    }
                }
                let target = match &mut self.playback {
                    Some(playback) if playback.item_id == item_id => Some(playback),
                    _ => self.finished_items.get_mut(&item_id),
                };
                match target {
                    Some(playback) => playback.transcript = Some(text),
                    None => match self.interrupted_items.remove(&item_id) {
                        Some((mut playback, heard_ms, sent_ms)) => {
                            playback.transcript = Some(text);
                            self.record_agent_speech(playback, Some((heard_ms, sent_ms)), now);
                        }
                        // An item without audio: record what was said.
                        None => self.record(
                            EventKind::AgentSpeech,
                            now,
                            Some(text),
                            json!({"item_id": item_id}),
                        ),
                    },
                }
            }
            ProviderEvent::CallerSpeechStarted => {
                self.last_activity = now;
                self.caller_speaking = true;
                self.caller_stopped_at = None;
                self.maybe_barge_in(now);
            }
            ProviderEvent::CallerSpeechStopped => {
                self.last_activity = now;
                self.caller_speaking = false;
                self.caller_stopped_at = Some(now);
            }
            ProviderEvent::CallerTranscript { item_id, text } => {
                self.last_activity = now;
                if !text.trim().is_empty() {
                    let trigger = self.config.transfer.rules.detect_in_caller_words(&text);
                    self.record(
                        EventKind::CallerSpeech,
                        now,
                        Some(text),
                        json!({"item_id": item_id}),
                    );
                    if let Some(trigger) = trigger {
                        self.consider_transfer(trigger, now);
                    }
                }
            }
            ProviderEvent::ToolCall {
                response_id,
                call_id,
                name,
                arguments,
            } => {
                self.pending_tools
                    .entry(response_id)
                    .or_default()
                    .push((call_id, name, arguments));
            }
            ProviderEvent::ResponseDone {
                response_id,
                status,
                usage,
            } => self.on_response_done(response_id, status, usage, now),
            ProviderEvent::Summary { .. }
            | ProviderEvent::Analysis { .. }
            | ProviderEvent::Warning { .. } => {}
        }
    }

    fn on_agent_audio(&mut self, response_id: String, item_id: String, audio: &[u8], now: Instant) {
        if self.cancelled_responses.contains(&response_id) || self.ending.is_some() {
            self.stats.late_audio_dropped += audio.len() as u64;
            return;
        }
        let is_new_item = self
            .playback
            .as_ref()
            .is_none_or(|playback| playback.item_id != item_id);
        if is_new_item {
            if let Some(previous) = self.playback.take() {
                // A new item without the previous one's done: treat the previous as finished.
                let name = previous.item_id.clone();
                self.markers.push_back((self.queued_position, name.clone()));
                self.finished_items.insert(name, previous);
            }
            let is_greeting = !self.greeting_done
                && self.greeting_response.as_deref() == Some(response_id.as_str());
            self.playback = Some(Playback {
                item_id,
                response_id,
                start_position: self.queued_position,
                sent_bytes: 0,
                queued_bytes: 0,
                is_greeting,
                started_at: None,
                transcript: None,
            });
        }
        // Over the cap the rest of the delta is dropped: the item is queued as far as it fits,
        // so its positions (and a truncation) stay true to what the caller can hear.
        let room = self.max_outgoing.saturating_sub(self.outgoing.len());
        let (kept, dropped) = audio.split_at(audio.len().min(room));
        self.stats.agent_audio_overflow += dropped.len() as u64;
        self.outgoing.extend(kept.iter().copied());
        self.queued_position += kept.len() as u64;
        if let Some(playback) = &mut self.playback {
            playback.queued_bytes += kept.len() as u64;
        }
        self.last_activity = now;
    }

    fn on_response_done(
        &mut self,
        response_id: String,
        status: ResponseStatus,
        usage: Option<Value>,
        now: Instant,
    ) {
        if self.active_response.as_deref() == Some(response_id.as_str()) {
            self.active_response = None;
        }
        if self.greeting_response.as_deref() == Some(response_id.as_str()) {
            self.greeting_done = true;
        }
        if let Some(usage) = usage {
            self.stats.usage.push(usage);
        }
        let calls = self.pending_tools.remove(&response_id).unwrap_or_default();
        let completed =
            status == ResponseStatus::Completed && !self.cancelled_responses.contains(&response_id);
        if !completed {
            for (call_id, name, arguments) in calls {
                self.record(
                    EventKind::ToolCall,
                    now,
                    Some(name),
                    json!({"call_id": call_id, "arguments": arguments, "skipped": "the response did not complete"}),
                );
            }
            return;
        }
        let mut continue_after = false;
        for (call_id, name, arguments) in calls {
            self.stats.tool_calls += 1;
            self.record(
                EventKind::ToolCall,
                now,
                Some(name.clone()),
                json!({"call_id": call_id, "arguments": arguments}),
            );
            let output = match tools::parse(&name, &arguments) {
                Err(error) => {
                    continue_after = true;
                    json!({"ok": false, "error": error.to_string()})
                }
                Ok(ToolRequest::EndCall { reason, voicemail }) => {
                    self.record(
                        EventKind::Note,
                        now,
                        Some(format!("agent ended the call: {reason}")),
                        json!({"reason": reason, "voicemail": voicemail}),
                    );
                    let end = if voicemail {
                        EndReason::Voicemail
                    } else {
                        EndReason::AgentEnded
                    };
                    self.end_after_playout(end, now);
                    continue;
                }
                Ok(ToolRequest::TransferToHuman { department, reason }) => {
                    let trigger = Trigger::Tool {
                        department: Some(department),
                        reason,
                    };
                    match self.consider_transfer(trigger, now) {
                        // The transfer goes ahead: the agent said its hand-off line; no reply needed.
                        None => continue,
                        Some(message) => {
                            continue_after = true;
                            json!({"ok": false, "message": message})
                        }
                    }
                }
                Ok(ToolRequest::ScheduleCallback { when }) => {
                    // The agent speaks again either way: to confirm the time, or to ask again.
                    continue_after = true;
                    self.schedule_callback(when, now)
                }
                Ok(ToolRequest::OptOut { reason }) => {
                    continue_after = true;
                    self.stats.opted_out = true;
                    self.record(
                        EventKind::Outcome,
                        now,
                        Some(reason.clone()),
                        json!({"opt_out": true, "reason": reason}),
                    );
                    self.actions.push_back(Action::OptOut { reason });
                    json!({"ok": true, "suppressed": true})
                }
                Ok(ToolRequest::RecordOutcome {
                    interest_level,
                    notes,
                }) => {
                    self.stats.interest_level = Some(interest_level.as_str().to_owned());
                    self.stats.outcome_notes = notes.clone();
                    self.record(
                        EventKind::Outcome,
                        now,
                        notes.clone(),
                        json!({"interest_level": interest_level.as_str(), "notes": notes}),
                    );
                    // A qualified caller may go straight to a human (campaign rule).
                    let qualified = self
                        .config
                        .transfer
                        .rules
                        .detect_qualified(interest_level.as_str());
                    if let Some(trigger) = qualified
                        && self.consider_transfer(trigger, now).is_none()
                    {
                        continue;
                    }
                    continue_after = true;
                    json!({"ok": true})
                }
            };
            self.actions
                .push_back(Action::Provider(ProviderCommand::ToolResult {
                    call_id,
                    output,
                }));
        }
        if continue_after && self.ending.is_none() {
            self.actions
                .push_back(Action::Provider(ProviderCommand::Continue));
        }
    }

    fn on_played(&mut self, name: &str, now: Instant) {
        if let Some(index) = self
            .sent_markers
            .iter()
            .position(|(_, marker)| marker == name)
        {
            let (position, _) = self.sent_markers[index];
            self.heard_position = self.heard_position.max(position);
            // Plivo plays in order: the checkpoints before this one have played too.
            self.sent_markers.drain(..=index);
        }
        if let Some(finished) = self.finished_items.remove(name) {
            self.record_agent_speech(finished, None, now);
        }
    }

    /// Resolves the caller's words into a callback inside the calling window, or says why not
    /// (the tool's output).
    fn schedule_callback(&mut self, when: String, now: Instant) -> Value {
        let schedule = &self.config.schedule;
        let window = schedule
            .window
            .clone()
            .unwrap_or_else(CallingWindow::always);
        match callback_time::schedule(&when, self.wall(now), schedule.zone(), &window) {
            Ok(callback) => {
                let at = callback.at.to_rfc3339();
                self.record(
                    EventKind::CallbackScheduled,
                    now,
                    Some(callback.spoken.clone()),
                    json!({"when": when, "at": at, "requested": callback.requested.to_rfc3339(), "moved": callback.moved}),
                );
                self.stats.callback = Some(ScheduledCallback {
                    at: callback.at,
                    phrase: when,
                    spoken: callback.spoken.clone(),
                    moved: callback.moved,
                });
                json!({"ok": true, "scheduled_for": at, "say": callback.spoken, "moved": callback.moved})
            }
            Err(error) => {
                let ask_again = matches!(error, CallbackError::Unreadable(_));
                self.record(
                    EventKind::Note,
                    now,
                    Some(format!("no callback: {error}")),
                    json!({"when": when, "ask_again": ask_again}),
                );
                json!({"ok": false, "error": error.to_string(), "ask_again": ask_again})
            }
        }
    }

    /// The wall-clock time of `now`.
    fn wall(&self, now: Instant) -> DateTime<Utc> {
        self.config.transfer.wall_start
            + chrono::Duration::from_std(now.saturating_duration_since(self.started_at))
                .unwrap_or_default()
    }

    // === transfer ===

    /// Applies the transfer policy to a trigger. Returns `None` when the transfer goes ahead,
    /// or what the agent should tell the caller instead (a callback offer, a refusal).
    fn consider_transfer(&mut self, trigger: Trigger, now: Instant) -> Option<String> {
        if self.transfer_decided {
            // The hand-off is already under way (say, announced and then confirmed by the
            // tool): the same transfer again, nothing new to decide or record.
            return None;
        }
        let wall_now = self.wall(now);
        let transfer = &self.config.transfer;
        let decision = policy::decide(
            &transfer.rules,
            self.transfer_decided || self.ending.is_some(),
            trigger,
            &transfer.targets,
            transfer.assigned.as_ref(),
            wall_now,
        );
        let from_tool = matches!(
            &decision,
            Decision::Transfer {
                trigger: Trigger::Tool { .. },
                ..
            } | Decision::OfferCallback {
                trigger: Trigger::Tool { .. },
                ..
            } | Decision::Refused {
                trigger: Trigger::Tool { .. },
                ..
            }
        );
        match decision {
            Decision::Transfer {
                trigger,
                department,
                targets,
                at,
            } => {
                self.transfer_decided = true;
                let reason = trigger.reason();
                self.record(
                    EventKind::TransferDecision,
                    now,
                    Some(reason.clone()),
                    json!({
                        "trigger": trigger.kind(), "evidence": trigger_evidence(&trigger), "department": department,
                        "targets": targets.iter().map(|t| json!({"name": t.name, "phone_number": t.phone_number})).collect::<Vec<_>>(),
                        "decision": "transfer", "at": at.to_rfc3339(),
                    }),
                );
                // The agent said the hand-off line when it called the tool or announced it;
                // otherwise Plivo says one before dialling.
                let handoff_line = match &trigger {
                    Trigger::Tool { .. } | Trigger::AgentAnnounced { .. } => None,
                    _ => {
                        self.cut_agent_for_handoff(now);
                        Some(HANDOFF_LINE.to_owned())
                    }
                };
                self.actions.push_back(Action::Transfer(TransferPlan {
                    trigger: trigger.kind().to_owned(),
                    reason,
                    department,
                    targets,
                    handoff_line,
                }));
                self.end_after_playout(EndReason::Transferred, now);
                None
            }
            Decision::OfferCallback {
                trigger,
                department,
                reason,
                at,
            } => {
                self.record(
                    EventKind::TransferDecision,
                    now,
                    Some(reason.clone()),
                    json!({"trigger": trigger.kind(), "evidence": trigger_evidence(&trigger), "department": department, "decision": "offer_callback", "reason": reason, "at": at.to_rfc3339()}),
                );
                let message = format!(
                    "Nobody from {department} can take the call right now ({reason}). Apologise and offer to schedule a callback."
                );
                if !from_tool {
                    self.actions.push_back(Action::Provider(ProviderCommand::Say(
                        "I'm sorry, none of my colleagues can take your call right now. Shall I arrange for someone to call you back?".to_owned(),
                    )));
                }
                Some(message)
            }
            Decision::Refused {
                trigger,
                reason,
                at,
            } => {
                self.record(
                    EventKind::TransferDecision,
                    now,
                    Some(reason.clone()),
                    json!({"trigger": trigger.kind(), "evidence": trigger_evidence(&trigger), "decision": "refused", "reason": reason, "at": at.to_rfc3339()}),
                );
                Some(format!(
                    "A transfer is not possible: {reason}. Carry on helping the caller."
                ))
            }
        }
    }

    // === barge-in ===

    /// Whether agent audio is queued or still playing at Plivo.
    fn agent_audible(&self, now: Instant) -> bool {
        !self.outgoing.is_empty() || self.playout_end.is_some_and(|end| end > now)
    }

    fn maybe_barge_in(&mut self, now: Instant) {
        if self.ending.is_some() || !self.agent_audible(now) {
            return;
        }
        let Some(current) = self.current_item() else {
            return;
        };
        if current.is_greeting {
            let since = current
                .started_at
                .map(|started| now.saturating_duration_since(started))
                .unwrap_or_default();
            if since < self.config.greeting_guard {
                self.stats.ignored_barge_ins += 1;
                return;
            }
        }
        self.stats.barge_ins += 1;
        let (heard_ms, sent_ms, cancelled_response) = self.cut_agent(&current, now);
        self.record(
            EventKind::BargeIn,
            now,
            None,
            json!({"item_id": current.item_id, "heard_ms": heard_ms, "sent_ms": sent_ms, "cancelled_response": cancelled_response}),
        );
        self.settle_cut_item(current, heard_ms, sent_ms, now);
    }

    /// The item playing now, or the last one still in Plivo's buffer.
    fn current_item(&self) -> Option<Playback> {
        self.playback
            .as_ref()
            .or_else(|| self.latest_finished_item())
            .cloned()
    }

    /// Stops the agent mid-item: clears what the caller would still hear, truncates the item
    /// to what was heard, cancels its response if it still runs, and drops its late audio.
    /// Returns the milliseconds heard and sent, and whether the response was cancelled.
    fn cut_agent(&mut self, current: &Playback, now: Instant) -> (u64, u64, bool) {
        // 1. Stop what the caller hears, at once.
        self.actions.push_back(Action::ClearPlivo);
        let heard_ms = self.heard_ms(current, now);
        let sent_ms = self.config.format.bytes_to_ms(current.sent_bytes as usize);
        self.drop_queued_audio(now);
        // 2. Truncate the item to what was heard; 3. cancel the response if it still runs.
        let cancel_response = self.active_response.as_deref() == Some(current.response_id.as_str());
        self.actions
            .push_back(Action::Provider(ProviderCommand::Interrupt {
                item_id: current.item_id.clone(),
                audio_end_ms: heard_ms,
                cancel_response,
            }));
        // 4. Late audio of this response is ignored.
        self.cancelled_responses.insert(current.response_id.clone());
        if current.is_greeting {
            self.greeting_done = true;
        }
        self.finished_items.remove(&current.item_id);
        self.playback = None;
        (heard_ms, sent_ms, cancel_response)
    }

    /// Records a cut item's words as heard, now or when its transcript arrives.
    fn settle_cut_item(&mut self, item: Playback, heard_ms: u64, sent_ms: u64, now: Instant) {
        match item.transcript {
            Some(_) => self.record_agent_speech(item, Some((heard_ms, sent_ms)), now),
            None => {
                self.interrupted_items
                    .insert(item.item_id.clone(), (item, heard_ms, sent_ms));
            }
        }
    }

    /// A transfer the caller asked for goes ahead at once: whatever the agent is saying or
    /// about to say is cut (Plivo says the short hand-off line instead), so the caller never
    /// waits through a reply that ignores the request.
    fn cut_agent_for_handoff(&mut self, now: Instant) {
        let mut cut = json!(null);
        if self.agent_audible(now)
            && let Some(current) = self.current_item()
        {
            let (heard_ms, sent_ms, _) = self.cut_agent(&current, now);
            cut = json!({"item_id": current.item_id, "heard_ms": heard_ms, "sent_ms": sent_ms});
            self.settle_cut_item(current, heard_ms, sent_ms, now);
        }
        let mut cancelled = json!(null);
        if let Some(response) = self.active_response.take()
            && self.cancelled_responses.insert(response.clone())
        {
            // A reply still being written (no audio yet): stop it, so the provider is idle
            // for the post-call summary and nothing more is generated.
            self.actions
                .push_back(Action::Provider(ProviderCommand::CancelResponse));
            cancelled = json!(response);
        }
        if !cut.is_null() || !cancelled.is_null() {
            self.record(
                EventKind::Note,
                now,
                Some("the agent's reply was cut for the hand-off".to_owned()),
                json!({"cut_item": cut, "cancelled_response": cancelled}),
            );
        }
    }

    fn latest_finished_item(&self) -> Option<&Playback> {
        self.finished_items
            .values()
            .max_by_key(|playback| playback.start_position)
    }

    /// Milliseconds of `item` the caller heard: what was sent minus what Plivo still buffers,
    /// never above what was sent.
    fn heard_ms(&self, item: &Playback, now: Instant) -> u64 {
        let sent_ms = self.config.format.bytes_to_ms(item.sent_bytes as usize);
        let buffered_ms = self
            .playout_end
            .map(|end| end.saturating_duration_since(now).as_millis() as u64)
            .unwrap_or(0);
        // Audio of later items sent after this one also sits in Plivo's buffer.
        let sent_after_item = self
            .sent_position
            .saturating_sub(item.start_position + item.sent_bytes);
        let buffered_ms =
            buffered_ms.saturating_sub(self.config.format.bytes_to_ms(sent_after_item as usize));
        sent_ms.saturating_sub(buffered_ms)
    }

    /// Discards queued audio and checkpoints; Plivo's buffer is being cleared too.
    fn drop_queued_audio(&mut self, now: Instant) {
        self.outgoing.clear();
        self.markers.clear();
        self.sent_markers.clear();
        self.queued_position = self.sent_position;
        self.heard_position = self.sent_position;
        self.playout_end = Some(now);
    }

    /// When the caller will have heard everything sent, by our own estimate: the end of
    /// playout, plus a margin while a checkpoint that Plivo should confirm is outstanding.
    fn heard_by_estimate(&self, now: Instant) -> Instant {
        let end = self.playout_end.unwrap_or(now);
        if self.sent_markers.is_empty() && self.markers.is_empty() {
            end
        } else {
            end + PLAYED_GRACE
        }
    }

    /// Everything queued was sent, and the caller has heard it: Plivo confirmed the last
    /// checkpoint, or (when a confirmation is lost) the estimate says so.
    fn played_out(&self, now: Instant) -> bool {
        self.outgoing.len() < self.frame_bytes
            && (self.heard_position >= self.sent_position && self.markers.is_empty()
                || now >= self.heard_by_estimate(now))
    }

    fn pad_to_frame(&mut self) -> usize {
        let remainder = self.outgoing.len() % self.frame_bytes;
        if remainder == 0 {
            return 0;
        }
        let padding = self.frame_bytes - remainder;
        let silence = silence_byte(self.config.format.encoding);
        self.outgoing.extend(std::iter::repeat_n(silence, padding));
        padding
    }

    // === ending ===

    fn end_now(&mut self, reason: EndReason, now: Instant) {
        if self.ended {
            return;
        }
        if self.ending.is_none() {
            self.ending = Some((reason, now));
        }
        self.finish(now);
    }

    fn end_after_playout(&mut self, reason: EndReason, now: Instant) {
        if self.ending.is_none() {
            self.ending = Some((reason, now + self.config.final_playout_limit));
        }
        self.check_timers(now);
    }

    fn finish(&mut self, now: Instant) {
        let (reason, _) = self.ending.expect("an end reason is set before finishing");
        if let Some(playback) = self.playback.take() {
            self.record_agent_speech(playback, None, now);
        }
        let mut finished: Vec<Playback> = self
            .finished_items
            .drain()
            .map(|(_, playback)| playback)
            .collect();
        finished.sort_by_key(|playback| playback.start_position);
        for playback in finished {
            self.record_agent_speech(playback, None, now);
        }
        self.ended = true;
        self.actions.push_back(Action::End(reason));
    }

    fn check_timers(&mut self, now: Instant) {
        if self.ended {
            return;
        }
        if now >= self.started_at + self.config.max_duration {
            self.end_now(EndReason::MaxDuration, now);
            return;
        }
        match self.ending {
            Some((_, limit)) => {
                if self.played_out(now) || now >= limit {
                    self.finish(now);
                }
            }
            None => {
                let quiet = !self.caller_speaking
                    && !self.agent_audible(now)
                    && self.active_response.is_none();
                if quiet && now >= self.last_activity + self.config.silence_timeout {
                    self.record(
                        EventKind::Note,
                        now,
                        Some("silence timeout".to_owned()),
                        json!({}),
                    );
                    self.ending = Some((EndReason::Silence, now));
                    self.finish(now);
                }
            }
        }
    }

    // === events ===

    fn record(&mut self, kind: EventKind, at: Instant, text: Option<String>, data: Value) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.actions.push_back(Action::Record(RecordedEvent {
            seq,
            kind,
            at,
            ended_at: None,
            text,
            data,
        }));
    }

    /// Records what the agent said in an item; an interrupted item keeps only the words the
    /// caller heard (in proportion to the audio heard) and says so.
    fn record_agent_speech(
        &mut self,
        playback: Playback,
        interrupted: Option<(u64, u64)>,
        now: Instant,
    ) {
        let Some(text) = playback.transcript.clone() else {
            return;
        };
        let at = playback.started_at.unwrap_or(now);
        let (text, data) = match interrupted {
            None => (text, json!({"item_id": playback.item_id})),
            Some((heard_ms, sent_ms)) => {
                let total_ms = self
                    .config
                    .format
                    .bytes_to_ms(playback.queued_bytes as usize)
                    .max(sent_ms)
                    .max(1);
                let words: Vec<&str> = text.split_whitespace().collect();
                let kept = ((words.len() as u64 * heard_ms) / total_ms) as usize;
                let mut heard = words[..kept.min(words.len())].join(" ");
                heard.push('…');
                (
                    heard,
                    json!({"item_id": playback.item_id, "interrupted": true, "heard_ms": heard_ms, "full_text": text}),
                )
            }
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        self.actions.push_back(Action::Record(RecordedEvent {
            seq,
            kind: EventKind::AgentSpeech,
            at,
            ended_at: Some(now),
            text: Some(text),
            data,
        }));
    }
}

/// The words that triggered a transfer, for its record.
fn trigger_evidence(trigger: &Trigger) -> Value {
    match trigger {
        Trigger::Tool { department, reason } => json!({"department": department, "reason": reason}),
        Trigger::CallerAsked { phrase, words }
        | Trigger::AgentAnnounced { phrase, words }
        | Trigger::NegativeSentiment { phrase, words } => {
            json!({"phrase": phrase, "words": words})
        }
        Trigger::Dtmf { digit } => json!({"digit": digit}),
        Trigger::Qualified { interest_level } => json!({"interest_level": interest_level}),
        Trigger::UnansweredTurns { count } => json!({"count": count}),
    }
}

/// Whether the agent said it could not answer.
fn is_unsure(text: &str) -> bool {
    let lower = text.to_lowercase();
    [
        "i don't know",
        "i do not know",
        "i'm not sure",
        "i am not sure",
        "i don't have that information",
        "i can't answer",
    ]
    .iter()
    .any(|phrase| lower.contains(phrase))
}

#[cfg(test)]
mod tests;
