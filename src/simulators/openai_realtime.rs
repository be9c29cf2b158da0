//! A fake OpenAI Realtime server speaking the GA protocol, for tests, `loadtest` and `demo`.
//!
//! It does what the bridge relies on: `session.created`, `session.updated` after our
//! `session.update`, a spoken greeting on the first `response.create`, server VAD on the
//! caller's μ-law (energy per frame), the caller's transcript, scripted replies with audio,
//! transcripts and tool calls, `response.cancel`, `conversation.item.truncate` (refusing an
//! `audio_end_ms` beyond the item's audio, as the real API does), text-only summaries and
//! post-call analyses (told apart by the request's `metadata.purpose`, echoed back), and
//! failure modes (never ready, dropping the connection, expiring the session once or every
//! time, an oversized event). Everything the
//! gateway sends is recorded for assertions.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex as StdMutex},
    time::Duration,
};

use axum::{
    Router,
    extract::{
        State,
        ws::{Message, WebSocket, WebSocketUpgrade},
    },
    response::Response,
    routing::get,
};
use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::audio::tone;

/// One caller turn and the agent's scripted answer to it.
#[derive(Debug, Clone)]
pub struct FakeTurn {
    /// What the fake "transcribes" the caller as saying.
    pub caller_says: String,
    /// What the agent answers (spoken as a tone of `reply_ms`).
    pub agent_says: String,
    /// A tool the agent calls after answering: name and arguments.
    pub tool: Option<(String, Value)>,
}

/// How the fake misbehaves, if at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FakeMode {
    Normal,
    /// Never acknowledges `session.update`.
    NeverReady,
    /// Closes the connection once the greeting has been sent.
    DropAfterGreeting,
    /// Sends `session_expired` once the greeting has been sent (on the first connection only).
    /// The next session takes `REOPEN_DELAY` to become ready, as a real reconnect can, so the
    /// caller's frames keep arriving while the gateway reopens.
    ExpireAfterGreeting,
    /// Expires every session: the first once the greeting has been sent, every later one as
    /// soon as it is ready (a server stuck expiring sessions).
    ExpireEverySession,
    /// Sends one event of [`OVERSIZED_EVENT_BYTES`] once the greeting has been sent.
    OversizedEvent,
}

/// The size of the event [`FakeMode::OversizedEvent`] sends: over the gateway's limit on a
/// provider message.
pub const OVERSIZED_EVENT_BYTES: usize = crate::ai::openai_realtime::MAX_SERVER_MESSAGE_BYTES + 1;

#[derive(Debug, Clone)]
pub struct FakeRealtimeConfig {
    pub greeting: String,
    pub greeting_ms: u64,
    pub reply_ms: u64,
    /// Delay between the caller's end of speech and the first audio of the reply.
    pub think_time: Duration,
    /// How long after the end of the caller's turn its transcript arrives (a real model
    /// transcribes apart from the reply, which often starts first).
    pub transcript_delay: Duration,
    /// How long a text-only response (the summary) takes to be written, as a real model's
    /// seconds do.
    pub text_time: Duration,
    /// Audio is generated this many times faster than real time.
    pub generation_speed: u32,
    /// Size of each audio delta.
    pub delta_ms: u64,
    pub turns: Vec<FakeTurn>,
    /// Said after a tool result when the agent continues.
    pub follow_up: String,
    pub mode: FakeMode,
    /// Frame energy (0..1) above which the caller counts as speaking.
    pub speech_threshold: f32,
    /// Quiet frames that end the caller's turn.
    pub end_of_turn_frames: u32,
    /// The text answering a post-call analysis request (`metadata.purpose` `analysis`): by
    /// default a valid version-1 analysis; a test can make it anything.
    pub analysis: String,
}

impl Default for FakeRealtimeConfig {
    fn default() -> Self {
        Self {
            greeting: "Hello, this is Maya from Acme Homes.".to_owned(),
            greeting_ms: 1200,
            reply_ms: 1000,
            think_time: Duration::from_millis(100),
            text_time: Duration::from_millis(1500),
            transcript_delay: Duration::ZERO,
            generation_speed: 4,
            delta_ms: 100,
            turns: Vec::new(),
            follow_up: "Noted, thank you.".to_owned(),
            mode: FakeMode::Normal,
            speech_threshold: 0.05,
            end_of_turn_frames: 15,
            analysis: json!({
                "version": crate::outcome::analysis::ANALYSIS_VERSION,
                "sentiment": 0.4,
                "interest": "medium",
                "objections": ["wants to see the site first"],
                "next_step": "follow_up",
                "callback_at": null,
            })
            .to_string(),
        }
    }
}

/// What the fake saw, shared with the test.
#[derive(Debug, Default)]
pub struct FakeLog {
    /// Every client event except `input_audio_buffer.append`, in order, per connection.
    pub events: Vec<(usize, Value)>,
    /// Read when the log is read; an append does not wake `wait_for`.
    pub appended_frames: u64,
    pub connections: usize,
    /// `error` events the fake sent (a refused truncate, a cancel with nothing to cancel).
    pub errors_sent: Vec<Value>,
}

/// How long a reopened session takes to become ready in `ExpireAfterGreeting`.
const REOPEN_DELAY: Duration = Duration::from_millis(300);

/// A running fake server.
pub struct FakeRealtimeServer {
    pub address: SocketAddr,
    log: Arc<StdMutex<FakeLog>>,
    appended_frames: Arc<std::sync::atomic::AtomicU64>,
    changed: watch::Receiver<u64>,
    stop: CancellationToken,
    tasks: TaskTracker,
}

/// Base64 audio deltas by (μ-law?, reply milliseconds).
type DeltaCache = std::collections::HashMap<(bool, u64), Arc<[String]>>;

#[derive(Clone)]
struct Shared {
    config: Arc<FakeRealtimeConfig>,
    /// Agent audio deltas, base64, by (μ-law?, milliseconds): every reply of a length is the
    /// same tone, so a load test need not synthesise and encode it a thousand times.
    deltas: Arc<StdMutex<DeltaCache>>,
    log: Arc<StdMutex<FakeLog>>,
    /// Counted apart from `log`: a lock and a watch notification per frame, shared by every
    /// connection, was the fake's largest cost under load.
    appended_frames: Arc<std::sync::atomic::AtomicU64>,
    changed: Arc<watch::Sender<u64>>,
    stop: CancellationToken,
    tasks: TaskTracker,
}

/// The fast path's view of a client event: an `input_audio_buffer.append` is handled without
/// building a JSON tree.
#[derive(serde::Deserialize)]
struct AppendEvent<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(default)]
    audio: &'a str,
}

impl FakeRealtimeServer {
    /// Starts on 127.0.0.1 on a free port.
    pub async fn start(config: FakeRealtimeConfig) -> std::io::Result<Self> {
        Self::start_on("127.0.0.1:0".parse().expect("valid address"), config).await
    }

    /// Starts on `address` (a gateway on another host points `OPENAI_REALTIME_URL` at it).
    pub async fn start_on(
        address: std::net::SocketAddr,
        config: FakeRealtimeConfig,
    ) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(address).await?;
        let address = listener.local_addr()?;
        let (changed_tx, changed) = watch::channel(0);
        let log = Arc::new(StdMutex::new(FakeLog::default()));
        let appended_frames = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        let shared = Shared {
            config: Arc::new(config),
            deltas: Arc::default(),
            log: log.clone(),
            appended_frames: appended_frames.clone(),
            changed: Arc::new(changed_tx),
            stop: stop.clone(),
            tasks: tasks.clone(),
        };
        let router = Router::new()
            .route("/v1/realtime", get(upgrade))
            .with_state(shared);
        let serve_stop = stop.clone();
        tasks.spawn(async move {
            let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
                let _ = tcp.set_nodelay(true);
            });
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async move { serve_stop.cancelled().await })
                .await;
        });
        Ok(Self {
            address,
            log,
            appended_frames,
            changed,
            stop,
            tasks,
        })
    }

    /// `ws://…/v1/realtime`, for `OPENAI_REALTIME_URL`.
    pub fn url(&self) -> String {
        format!("ws://{}/v1/realtime", self.address)
    }

    /// Runs `read` on the log.
    pub fn log<T>(&self, read: impl FnOnce(&FakeLog) -> T) -> T {
        let mut log = self.log.lock().expect("fake log lock");
        log.appended_frames = self
            .appended_frames
            .load(std::sync::atomic::Ordering::Relaxed);
        read(&log)
    }

    /// The client events of type `kind`.
    pub fn events_of(&self, kind: &str) -> Vec<Value> {
        self.log(|log| {
            log.events
                .iter()
                .filter(|(_, event)| event["type"] == kind)
                .map(|(_, event)| event.clone())
                .collect()
        })
    }

    /// Waits until `condition` holds on the log (woken by every change, no polling).
    pub async fn wait_for(&self, mut condition: impl FnMut(&FakeLog) -> bool) {
        let mut changed = self.changed.clone();
        loop {
            if self.log(&mut condition) {
                return;
            }
            if changed.changed().await.is_err() {
                return;
            }
        }
    }

    pub async fn stop(self) {
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

async fn upgrade(State(shared): State<Shared>, upgrade: WebSocketUpgrade) -> Response {
    // Small read buffers, as the gateway's: tungstenite zero-fills the whole buffer per read.
    upgrade
        .read_buffer_size(crate::http::SOCKET_BUFFER_BYTES)
        .write_buffer_size(0)
        .on_upgrade(move |socket| async move {
            let tasks = shared.tasks.clone();
            tasks.spawn(connection(shared, socket));
        })
}

impl Shared {
    fn record(&self, update: impl FnOnce(&mut FakeLog)) {
        update(&mut self.log.lock().expect("fake log lock"));
        self.changed.send_modify(|count| *count += 1);
    }
}

/// Messages to the connection's writer, from the reader and the response tasks.
const OUTBOX_CAPACITY: usize = 1024;

struct Connection {
    shared: Shared,
    index: usize,
    outbox: mpsc::Sender<Value>,
    pcmu: bool,
    responses: u32,
    items: u32,
    /// Milliseconds of audio per item, to validate truncation.
    item_audio_ms: Arc<StdMutex<std::collections::HashMap<String, u64>>>,
    active: Option<(String, CancellationToken)>,
    speaking: bool,
    quiet_frames: u32,
    turn: usize,
    greeted: bool,
    pending_tool_continue: bool,
}

async fn connection(shared: Shared, socket: WebSocket) {
    let index = {
        let mut log = shared.log.lock().expect("fake log lock");
        log.connections += 1;
        log.connections
    };
    shared.changed.send_modify(|count| *count += 1);
    let (mut sink, mut stream) = socket.split();
    let (outbox, mut outgoing) = mpsc::channel::<Value>(OUTBOX_CAPACITY);
    let writer = async move {
        while let Some(message) = outgoing.recv().await {
            if message["type"] == "__close" {
                let _ = sink.send(Message::Close(None)).await;
                return;
            }
            if sink
                .send(Message::Text(message.to_string().into()))
                .await
                .is_err()
            {
                return;
            }
        }
    };
    let mut state = Connection {
        shared: shared.clone(),
        index,
        outbox: outbox.clone(),
        pcmu: true,
        responses: 0,
        items: 0,
        item_audio_ms: Arc::default(),
        active: None,
        speaking: false,
        quiet_frames: 0,
        turn: 0,
        greeted: false,
        pending_tool_continue: false,
    };
    let _ = outbox
        .send(json!({"type": "session.created", "session": {"id": format!("sess_{index}")}}))
        .await;
    let reader = async move {
        while let Some(Ok(message)) = stream.next().await {
            let Message::Text(text) = message else {
                if let Message::Close(_) = message {
                    break;
                }
                continue;
            };
            if let Ok(append) = serde_json::from_str::<AppendEvent<'_>>(text.as_str())
                && append.kind == "input_audio_buffer.append"
            {
                state
                    .shared
                    .appended_frames
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                state.on_audio(append.audio).await;
                continue;
            }
            let Ok(event) = serde_json::from_str::<Value>(text.as_str()) else {
                continue;
            };
            if !state.on_event(event).await {
                break;
            }
        }
        if let Some((_, cancel)) = state.active.take() {
            cancel.cancel();
        }
    };
    tokio::select! {
        _ = shared.stop.cancelled() => {}
        _ = async { tokio::join!(reader, writer) } => {}
    }
}

impl Connection {
    /// Handles one client event; `false` ends the connection.
    async fn on_event(&mut self, event: Value) -> bool {
        let kind = event["type"].as_str().unwrap_or_default().to_owned();
        let index = self.index;
        self.shared
            .record(|log| log.events.push((index, event.clone())));
        match kind.as_str() {
            "session.update" => {
                self.pcmu = event["session"]["audio"]["input"]["format"]["type"] == "audio/pcmu";
                match self.shared.config.mode {
                    FakeMode::NeverReady => return true,
                    FakeMode::ExpireAfterGreeting if self.index > 1 => {
                        tokio::time::sleep(REOPEN_DELAY).await;
                    }
                    _ => {}
                }
                let _ = self
                    .outbox
                    .send(json!({"type": "session.updated", "session": event["session"]}))
                    .await;
                if self.shared.config.mode == FakeMode::ExpireEverySession && self.index > 1 {
                    let _ = self.outbox.send(session_expired()).await;
                    let _ = self.outbox.send(json!({"type": "__close"})).await;
                }
            }
            "response.create" => {
                let text_only = event["response"]["output_modalities"] == json!(["text"]);
                if text_only {
                    self.respond_text(&event["response"]["metadata"]);
                } else if !self.greeted {
                    self.greeted = true;
                    let greeting = self.shared.config.greeting.clone();
                    let ms = self.shared.config.greeting_ms;
                    // Failure modes strike once the greeting has been sent in full.
                    let after = match self.shared.config.mode {
                        FakeMode::DropAfterGreeting => vec![json!({"type": "__close"})],
                        FakeMode::ExpireAfterGreeting if self.index == 1 => {
                            vec![session_expired(), json!({"type": "__close"})]
                        }
                        FakeMode::ExpireEverySession => {
                            vec![session_expired(), json!({"type": "__close"})]
                        }
                        FakeMode::OversizedEvent => {
                            // A text delta padded so its JSON is just over the limit.
                            let padding = OVERSIZED_EVENT_BYTES
                                - json!({"type": "response.output_text.delta", "delta": ""})
                                    .to_string()
                                    .len();
                            vec![
                                json!({"type": "response.output_text.delta", "delta": "x".repeat(padding)}),
                            ]
                        }
                        _ => Vec::new(),
                    };
                    self.respond(greeting, ms, None, Duration::ZERO, after);
                } else if let Some(instructions) = event["response"]["instructions"].as_str() {
                    // `Say`: speak what the gateway asked for.
                    let text = instructions
                        .split('"')
                        .nth(1)
                        .unwrap_or(instructions)
                        .to_owned();
                    self.respond(text, 800, None, self.shared.config.think_time, Vec::new());
                } else if self.pending_tool_continue {
                    self.pending_tool_continue = false;
                    let follow_up = self.shared.config.follow_up.clone();
                    self.respond(
                        follow_up,
                        600,
                        None,
                        self.shared.config.think_time,
                        Vec::new(),
                    );
                }
            }
            "conversation.item.create" if event["item"]["type"] == "function_call_output" => {
                self.pending_tool_continue = true;
            }
            "response.cancel" => match self.active.take() {
                Some((_, cancel)) => cancel.cancel(),
                None => {
                    self.error(
                        "response_cancel_not_active",
                        "Cancellation failed: no active response found",
                    )
                    .await
                }
            },
            "conversation.item.truncate" => {
                let item_id = event["item_id"].as_str().unwrap_or_default().to_owned();
                let end = event["audio_end_ms"].as_u64().unwrap_or(0);
                let known = self
                    .item_audio_ms
                    .lock()
                    .expect("item lock")
                    .get(&item_id)
                    .copied();
                match known {
                    Some(total) if end <= total => {
                        let _ = self
                            .outbox
                            .send(json!({"type": "conversation.item.truncated", "item_id": item_id, "content_index": 0, "audio_end_ms": end}))
                            .await;
                    }
                    Some(total) => {
                        self.error(
                            "invalid_value",
                            &format!("audio_end_ms {end} is beyond the item's {total} ms"),
                        )
                        .await;
                    }
                    None => self.error("item_not_found", "no such item").await,
                }
            }
            _ => {}
        }
        true
    }

    async fn error(&self, code: &str, message: &str) {
        let error = json!({"type": "error", "error": {"type": "invalid_request_error", "code": code, "message": message}});
        let sent = error.clone();
        self.shared.record(|log| log.errors_sent.push(sent));
        let _ = self.outbox.send(error).await;
    }

    /// Server VAD on the caller's audio.
    async fn on_audio(&mut self, audio: &str) {
        let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(audio) else {
            return;
        };
        let energy = if self.pcmu {
            tone::frame_energy_mulaw(&bytes)
        } else {
            pcm_energy(&bytes)
        };
        if energy > self.shared.config.speech_threshold {
            self.quiet_frames = 0;
            if !self.speaking {
                self.speaking = true;
                let _ = self.outbox.send(json!({"type": "input_audio_buffer.speech_started", "audio_start_ms": 0, "item_id": "pending"})).await;
            }
            return;
        }
        if !self.speaking {
            return;
        }
        self.quiet_frames += 1;
        if self.quiet_frames < self.shared.config.end_of_turn_frames {
            return;
        }
        self.speaking = false;
        self.items += 1;
        let user_item = format!("item_user_{}", self.items);
        let _ = self.outbox.send(json!({"type": "input_audio_buffer.speech_stopped", "audio_end_ms": 0, "item_id": user_item})).await;
        let _ = self
            .outbox
            .send(json!({"type": "input_audio_buffer.committed", "item_id": user_item}))
            .await;
        let turn = self.shared.config.turns.get(self.turn).cloned();
        self.turn += 1;
        let Some(turn) = turn else {
            return;
        };
        let transcript = json!({"type": "conversation.item.input_audio_transcription.completed", "item_id": user_item, "content_index": 0, "transcript": turn.caller_says});
        let delay = self.shared.config.transcript_delay;
        if delay.is_zero() {
            let _ = self.outbox.send(transcript).await;
        } else {
            let outbox = self.outbox.clone();
            self.shared.tasks.spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = outbox.send(transcript).await;
            });
        }
        let think = self.shared.config.think_time;
        let ms = self.shared.config.reply_ms;
        self.respond(turn.agent_says, ms, turn.tool, think, Vec::new());
    }

    /// Speaks a response in its own task: deltas at `generation_speed` × real time. `after` is
    /// sent once the response is done (the failure modes).
    fn respond(
        &mut self,
        text: String,
        audio_ms: u64,
        tool: Option<(String, Value)>,
        delay: Duration,
        after: Vec<Value>,
    ) {
        if let Some((_, cancel)) = self.active.take() {
            cancel.cancel();
        }
        self.responses += 1;
        self.items += 1;
        let response_id = format!("resp_{}_{}", self.index, self.responses);
        let item_id = format!("item_{}_{}", self.index, self.items);
        let cancel = CancellationToken::new();
        self.active = Some((response_id.clone(), cancel.clone()));
        self.item_audio_ms
            .lock()
            .expect("item lock")
            .insert(item_id.clone(), audio_ms);
        let outbox = self.outbox.clone();
        let config = self.shared.config.clone();
        let deltas_cache = self.shared.deltas.clone();
        let pcmu = self.pcmu;
        self.shared.tasks.spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = outbox.send(json!({"type": "response.created", "response": {"id": response_id, "status": "in_progress"}})).await;
            let deltas = deltas_cache
                .lock()
                .expect("deltas lock")
                .entry((pcmu, audio_ms))
                .or_insert_with(|| {
                    let bytes_per_ms = if pcmu { 8 } else { 48 };
                    let delta_bytes = (config.delta_ms * bytes_per_ms) as usize;
                    agent_audio(pcmu, audio_ms)
                        .chunks(delta_bytes.max(1))
                        .map(|chunk| base64::engine::general_purpose::STANDARD.encode(chunk))
                        .collect()
                })
                .clone();
            let pause = Duration::from_millis(config.delta_ms / u64::from(config.generation_speed.max(1)));
            for delta in deltas.iter() {
                if cancel.is_cancelled() {
                    break;
                }
                let _ = outbox
                    .send(json!({"type": "response.output_audio.delta", "response_id": response_id, "item_id": item_id, "output_index": 0, "content_index": 0, "delta": delta}))
                    .await;
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = cancel.cancelled() => break,
                }
            }
            if cancel.is_cancelled() {
                let _ = outbox
                    .send(json!({"type": "response.output_audio_transcript.done", "response_id": response_id, "item_id": item_id, "transcript": text}))
                    .await;
                let _ = outbox
                    .send(json!({"type": "response.done", "response": {"id": response_id, "status": "cancelled", "status_details": {"type": "cancelled", "reason": "client_cancelled"}, "usage": null}}))
                    .await;
                return;
            }
            let _ = outbox.send(json!({"type": "response.output_audio.done", "response_id": response_id, "item_id": item_id})).await;
            let _ = outbox
                .send(json!({"type": "response.output_audio_transcript.done", "response_id": response_id, "item_id": item_id, "transcript": text}))
                .await;
            if let Some((name, arguments)) = tool {
                let _ = outbox
                    .send(json!({"type": "response.function_call_arguments.done", "response_id": response_id, "item_id": format!("{item_id}_fc"), "call_id": format!("call_{item_id}"), "name": name, "arguments": arguments.to_string()}))
                    .await;
            }
            let _ = outbox
                .send(json!({"type": "response.done", "response": {"id": response_id, "status": "completed", "usage": {"total_tokens": 120, "input_tokens": 80, "output_tokens": 40}}}))
                .await;
            for event in after {
                let _ = outbox.send(event).await;
            }
        });
    }

    /// A text-only response in its own task: the analysis when `metadata.purpose` asks for
    /// it, else the summary; created at once, the text after `text_time`, as a real model
    /// takes seconds to write. The metadata is echoed, as the real API does.
    fn respond_text(&mut self, metadata: &Value) {
        self.responses += 1;
        let response_id = format!("resp_{}_{}", self.index, self.responses);
        let (item_id, text) = if metadata["purpose"] == "analysis" {
            ("item_analysis", self.shared.config.analysis.clone())
        } else {
            (
                "item_summary",
                "The caller talked with the agent about the offer; the call ended normally."
                    .to_owned(),
            )
        };
        let metadata = metadata.clone();
        let outbox = self.outbox.clone();
        let delay = self.shared.config.text_time;
        self.shared.tasks.spawn(async move {
            let _ = outbox.send(json!({"type": "response.created", "response": {"id": response_id, "status": "in_progress", "metadata": metadata}})).await;
            tokio::time::sleep(delay).await;
            for event in [
                json!({"type": "response.output_text.done", "response_id": response_id, "item_id": item_id, "text": text}),
                json!({"type": "response.done", "response": {"id": response_id, "status": "completed", "metadata": metadata, "usage": {"total_tokens": 50}}}),
            ] {
                let _ = outbox.send(event).await;
            }
        });
    }
}

/// The error a session that hit its maximum duration gets.
fn session_expired() -> Value {
    json!({"type": "error", "error": {"type": "invalid_request_error", "code": "session_expired", "message": "Your session hit the maximum duration."}})
}

/// The agent's voice: a 440 Hz tone, μ-law 8 kHz or PCM16 24 kHz.
fn agent_audio(pcmu: bool, ms: u64) -> Vec<u8> {
    if pcmu {
        return tone::sine_mulaw(440.0, 0.3, ms);
    }
    let samples = (24 * ms) as usize;
    let mut bytes = Vec::with_capacity(samples * 2);
    for index in 0..samples {
        let value =
            (0.3 * 32767.0 * (2.0 * std::f32::consts::PI * 440.0 * index as f32 / 24_000.0).sin())
                as i16;
        bytes.extend_from_slice(&value.to_le_bytes());
    }
    bytes
}

fn pcm_energy(bytes: &[u8]) -> f32 {
    let samples = bytes.len() / 2;
    if samples == 0 {
        return 0.0;
    }
    let sum: f64 = bytes
        .chunks_exact(2)
        .map(|pair| {
            let value = f64::from(i16::from_le_bytes([pair[0], pair[1]])) / 32768.0;
            value * value
        })
        .sum();
    (sum / samples as f64).sqrt() as f32
}
