//! A fake Gemini Live server speaking the documented camelCase JSON, for tests, `loadtest` and
//! `demo`.
//!
//! It answers `setup` with `setupComplete` and a `sessionResumptionUpdate`, speaks the greeting
//! on the first `clientContent` turn, runs its own activity detection on the caller's 16 kHz
//! PCM (`voiceActivity` start and end, `inputTranscription`, and `interrupted` when the caller
//! talks over a turn, as `START_OF_ACTIVITY_INTERRUPTS` does), answers with `modelTurn` audio
//! at 24 kHz, `outputTranscription`, `generationComplete`, `turnComplete` with `usageMetadata`,
//! or a `toolCall` that waits for its `toolResponse`. A resumed setup (`sessionResumption.
//! handle`) continues the conversation without a greeting. Texts asked for after the call are
//! spoken answers with their transcription, after [`FakeGeminiConfig::text_time`], as a real
//! model takes seconds. Messages go out as binary frames, as the real server sends them.
//!
//! Failure modes: a refused key (close 1008), never answering the set-up, a slow set-up,
//! dropping the connection or sending a malformed message after the greeting, and `goAway`
//! after the greeting (the connection is then cut when `timeLeft` runs out). Everything the
//! gateway sends except audio is recorded for assertions.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex as StdMutex, atomic::AtomicU64},
    time::Duration,
};

use axum::{
    Router,
    extract::{
        State,
        ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade},
    },
    http::HeaderMap,
    response::Response,
    routing::get,
};
use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::openai_realtime::FakeTurn;
use crate::ai::gemini_live::protocol::TextPurpose;

/// The path of the fake's endpoint, as Google's.
pub const PATH: &str =
    "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent";

/// How the fake misbehaves, if at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FakeGeminiMode {
    Normal,
    /// Never answers `setup`.
    NeverReady,
    /// Closes the connection once the greeting has been sent.
    DropAfterGreeting,
    /// Sends a message that is not JSON once the greeting has been sent.
    MalformedAfterGreeting,
    /// Sends `goAway` once the greeting has been sent, on the first connection only, and cuts
    /// that connection when its `timeLeft` runs out.
    GoAwayAfterGreeting,
    /// Sends `goAway` once the greeting has been sent and cuts the first connection at once,
    /// long before its `timeLeft` (a server that does not keep its word).
    GoAwayAndCut,
    /// Sends `goAway` right after the first connection's first `toolCall`, before the client
    /// can answer it, and cuts that connection when its `timeLeft` runs out (a function call
    /// pending when the server asks the client to leave).
    GoAwayAtToolCall,
}

#[derive(Debug, Clone)]
pub struct FakeGeminiConfig {
    pub greeting: String,
    pub greeting_ms: u64,
    pub reply_ms: u64,
    /// Delay between the caller's end of speech and the first audio of the reply.
    pub think_time: Duration,
    /// How long a text asked for after the call takes.
    pub text_time: Duration,
    /// How long `setupComplete` takes (a slow set-up).
    pub setup_delay: Duration,
    /// How long a resumed session's `setupComplete` takes: caller audio keeps arriving while
    /// the gateway moves, as on a real reconnect.
    pub resume_setup_delay: Duration,
    /// Audio is generated this many times faster than real time.
    pub generation_speed: u32,
    /// Size of each audio chunk.
    pub chunk_ms: u64,
    pub turns: Vec<FakeTurn>,
    /// Said after a tool response.
    pub follow_up: String,
    pub mode: FakeGeminiMode,
    /// `goAway.timeLeft` in [`FakeGeminiMode::GoAwayAfterGreeting`] and
    /// [`FakeGeminiMode::GoAwayAtToolCall`].
    pub go_away_time_left: Duration,
    /// Frame energy (0..1) above which the caller counts as speaking.
    pub speech_threshold: f32,
    /// Quiet 20 ms frames that end the caller's turn.
    pub end_of_turn_frames: u32,
    /// The spoken (transcribed) answer to the analysis request.
    pub analysis: String,
    /// The key the fake accepts (`x-goog-api-key` or `key`); any key when `None`.
    pub api_key: Option<String>,
}

impl Default for FakeGeminiConfig {
    fn default() -> Self {
        Self {
            greeting: "Hello, this is Maya from Acme Homes.".to_owned(),
            greeting_ms: 1200,
            reply_ms: 1000,
            think_time: Duration::from_millis(100),
            text_time: Duration::from_millis(1500),
            setup_delay: Duration::from_millis(20),
            resume_setup_delay: Duration::from_millis(300),
            generation_speed: 4,
            chunk_ms: 100,
            turns: Vec::new(),
            follow_up: "Noted, thank you.".to_owned(),
            mode: FakeGeminiMode::Normal,
            go_away_time_left: Duration::from_secs(10),
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
            api_key: None,
        }
    }
}

/// The summary the fake speaks.
pub const SUMMARY: &str =
    "The caller talked with the agent about the offer; the call ended normally.";

/// What the fake saw, shared with the test.
#[derive(Debug, Default)]
pub struct FakeGeminiLog {
    /// Every client message except `realtimeInput`, in order, with its connection (1-based).
    pub messages: Vec<(usize, Value)>,
    /// Read when the log is read; audio does not wake `wait_for`.
    pub audio_frames: u64,
    /// `realtimeInput.audio.mimeType`s seen.
    pub audio_mime_types: Vec<String>,
    pub connections: usize,
    /// The keys presented, one per connection.
    pub api_keys: Vec<String>,
    /// Greetings spoken, over all connections.
    pub greetings: usize,
}

impl FakeGeminiLog {
    /// The client messages whose top-level key is `kind` (`setup`, `clientContent`, …).
    pub fn of(&self, kind: &str) -> Vec<(usize, Value)> {
        self.messages
            .iter()
            .filter(|(_, message)| message.get(kind).is_some())
            .cloned()
            .collect()
    }
}

/// A running fake server.
pub struct FakeGeminiServer {
    pub address: SocketAddr,
    log: Arc<StdMutex<FakeGeminiLog>>,
    audio_frames: Arc<AtomicU64>,
    changed: watch::Receiver<u64>,
    stop: CancellationToken,
    tasks: TaskTracker,
}

#[derive(Clone)]
struct Shared {
    config: Arc<FakeGeminiConfig>,
    /// Audio chunks, base64, by milliseconds of speech: every reply of a length is the same.
    chunks: Arc<StdMutex<std::collections::HashMap<u64, Arc<[String]>>>>,
    log: Arc<StdMutex<FakeGeminiLog>>,
    /// The caller turns a session had taken when each handle was issued: a resumed session
    /// carries on with the next one, as the real one carries its conversation.
    turns_at_handle: Arc<StdMutex<std::collections::HashMap<String, usize>>>,
    audio_frames: Arc<AtomicU64>,
    changed: Arc<watch::Sender<u64>>,
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl FakeGeminiServer {
    /// Starts on 127.0.0.1 on a free port.
    pub async fn start(config: FakeGeminiConfig) -> std::io::Result<Self> {
        Self::start_on("127.0.0.1:0".parse().expect("valid address"), config).await
    }

    /// Starts on `address` (a gateway elsewhere points `GEMINI_LIVE_URL` at it).
    pub async fn start_on(address: SocketAddr, config: FakeGeminiConfig) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(address).await?;
        let address = listener.local_addr()?;
        let (changed_tx, changed) = watch::channel(0);
        let log = Arc::new(StdMutex::new(FakeGeminiLog::default()));
        let audio_frames = Arc::new(AtomicU64::new(0));
        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        let shared = Shared {
            config: Arc::new(config),
            chunks: Arc::default(),
            log: log.clone(),
            turns_at_handle: Arc::default(),
            audio_frames: audio_frames.clone(),
            changed: Arc::new(changed_tx),
            stop: stop.clone(),
            tasks: tasks.clone(),
        };
        let router = Router::new().route(PATH, get(upgrade)).with_state(shared);
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
            audio_frames,
            changed,
            stop,
            tasks,
        })
    }

    /// `ws://…/ws/…BidiGenerateContent`, for `GEMINI_LIVE_URL`.
    pub fn url(&self) -> String {
        format!("ws://{}{PATH}", self.address)
    }

    /// Runs `read` on the log.
    pub fn log<T>(&self, read: impl FnOnce(&FakeGeminiLog) -> T) -> T {
        let mut log = self.log.lock().expect("fake log lock");
        log.audio_frames = self.audio_frames.load(std::sync::atomic::Ordering::Relaxed);
        read(&log)
    }

    /// The client messages whose top-level key is `kind`.
    pub fn messages_of(&self, kind: &str) -> Vec<Value> {
        self.log(|log| log.of(kind).into_iter().map(|(_, m)| m).collect())
    }

    /// Waits until `condition` holds on the log (woken by every change, no polling).
    pub async fn wait_for(&self, mut condition: impl FnMut(&FakeGeminiLog) -> bool) {
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

async fn upgrade(
    State(shared): State<Shared>,
    headers: HeaderMap,
    query: axum::extract::RawQuery,
    upgrade: WebSocketUpgrade,
) -> Response {
    let key = headers
        .get("x-goog-api-key")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
        .or_else(|| {
            form_urlencoded::parse(query.0.unwrap_or_default().as_bytes())
                .find(|(name, _)| name == "key")
                .map(|(_, value)| value.into_owned())
        })
        .unwrap_or_default();
    upgrade
        .read_buffer_size(crate::http::SOCKET_BUFFER_BYTES)
        .write_buffer_size(0)
        .on_upgrade(move |socket| async move {
            let tasks = shared.tasks.clone();
            tasks.spawn(connection(shared, socket, key));
        })
}

impl Shared {
    fn record(&self, update: impl FnOnce(&mut FakeGeminiLog)) {
        update(&mut self.log.lock().expect("fake log lock"));
        self.changed.send_modify(|count| *count += 1);
    }
}

/// Messages to the connection's writer.
const OUTBOX_CAPACITY: usize = 1024;

/// What the writer sends.
enum Out {
    Json(Value),
    Raw(String),
    Close(u16, &'static str),
}

struct Connection {
    shared: Shared,
    index: usize,
    outbox: mpsc::Sender<Out>,
    greeted: bool,
    /// The turn being spoken, cancelled when the caller talks over it.
    active: Option<CancellationToken>,
    speaking: bool,
    quiet_frames: u32,
    turn: usize,
    handles: u32,
    /// Set-up done; a connection whose key was refused sends nothing more.
    ready: bool,
    /// [`FakeGeminiMode::GoAwayAtToolCall`]'s goAway was sent.
    went_away: bool,
    /// Turns spoken, for function call ids.
    calls: u32,
}

async fn connection(shared: Shared, socket: WebSocket, key: String) {
    let index = {
        let mut log = shared.log.lock().expect("fake log lock");
        log.connections += 1;
        log.api_keys.push(key.clone());
        log.connections
    };
    shared.changed.send_modify(|count| *count += 1);
    let (mut sink, mut stream) = socket.split();
    let (outbox, mut outgoing) = mpsc::channel::<Out>(OUTBOX_CAPACITY);
    let writer = async move {
        while let Some(message) = outgoing.recv().await {
            let frame = match message {
                Out::Json(value) => Message::Binary(value.to_string().into_bytes().into()),
                Out::Raw(text) => Message::Text(text.into()),
                Out::Close(code, reason) => {
                    let _ = sink
                        .send(Message::Close(Some(CloseFrame {
                            code,
                            reason: reason.into(),
                        })))
                        .await;
                    return;
                }
            };
            if sink.send(frame).await.is_err() {
                return;
            }
        }
    };
    let key_ok = shared
        .config
        .api_key
        .as_deref()
        .is_none_or(|expected| expected == key);
    let mut state = Connection {
        shared: shared.clone(),
        index,
        outbox,
        greeted: false,
        active: None,
        speaking: false,
        quiet_frames: 0,
        turn: 0,
        handles: 0,
        ready: false,
        went_away: false,
        calls: 0,
    };
    let reader = async move {
        while let Some(Ok(message)) = stream.next().await {
            let text = match &message {
                Message::Text(text) => text.as_str(),
                Message::Binary(bytes) => match std::str::from_utf8(bytes) {
                    Ok(text) => text,
                    Err(_) => continue,
                },
                Message::Close(_) => break,
                _ => continue,
            };
            let Ok(value) = serde_json::from_str::<Value>(text) else {
                continue;
            };
            if let Some(audio) = value["realtimeInput"].get("audio") {
                state.on_audio(audio).await;
                continue;
            }
            if !state.on_message(value, key_ok).await {
                break;
            }
        }
        if let Some(cancel) = state.active.take() {
            cancel.cancel();
        }
    };
    tokio::select! {
        _ = shared.stop.cancelled() => {}
        _ = async { tokio::join!(reader, writer) } => {}
    }
}

impl Connection {
    async fn send(&self, value: Value) {
        let _ = self.outbox.send(Out::Json(value)).await;
    }

    fn next_handle(&mut self) -> Value {
        self.handles += 1;
        let handle = format!("handle-{}-{}", self.index, self.handles);
        self.shared
            .turns_at_handle
            .lock()
            .expect("handles lock")
            .insert(handle.clone(), self.turn);
        json!({"sessionResumptionUpdate": {"newHandle": handle, "resumable": true}})
    }

    /// Handles one client message; `false` ends the connection.
    async fn on_message(&mut self, message: Value, key_ok: bool) -> bool {
        let index = self.index;
        self.shared
            .record(|log| log.messages.push((index, message.clone())));
        if let Some(setup) = message.get("setup") {
            if !key_ok {
                let _ = self
                    .outbox
                    .send(Out::Close(
                        1008,
                        "API key not valid. Please pass a valid API key.",
                    ))
                    .await;
                return false;
            }
            if self.shared.config.mode == FakeGeminiMode::NeverReady {
                return true;
            }
            // A resumed session has the conversation, greeting included.
            let resumed = setup["sessionResumption"]["handle"].as_str();
            self.greeted = resumed.is_some();
            if let Some(handle) = resumed {
                let turns = self.shared.turns_at_handle.lock().expect("handles lock");
                self.turn = turns.get(handle).copied().unwrap_or(0);
            }
            let delay = if self.greeted {
                self.shared.config.resume_setup_delay
            } else {
                self.shared.config.setup_delay
            };
            tokio::time::sleep(delay).await;
            self.ready = true;
            self.send(json!({"setupComplete": {}})).await;
            let handle = self.next_handle();
            self.send(handle).await;
            return true;
        }
        if !self.ready {
            return true;
        }
        if let Some(content) = message.get("clientContent") {
            let text = content["turns"]
                .as_array()
                .and_then(|turns| turns.last())
                .and_then(|turn| turn["parts"][0]["text"].as_str())
                .unwrap_or_default()
                .to_owned();
            // A complete turn from the client interrupts the one being generated.
            if self.greeted {
                self.interrupt_active().await;
            }
            if !self.greeted {
                self.greeted = true;
                self.shared.record(|log| log.greetings += 1);
                let after = match self.shared.config.mode {
                    FakeGeminiMode::DropAfterGreeting => {
                        vec![Out::Close(1011, "Internal error encountered.")]
                    }
                    FakeGeminiMode::MalformedAfterGreeting => {
                        vec![Out::Raw("{\"serverContent\": [not json".to_owned())]
                    }
                    FakeGeminiMode::GoAwayAndCut if self.index == 1 => vec![
                        Out::Json(json!({"goAway": {"timeLeft": "30s"}})),
                        Out::Close(1001, "going away"),
                    ],
                    FakeGeminiMode::GoAwayAfterGreeting if self.index == 1 => {
                        let left = self.shared.config.go_away_time_left;
                        vec![Out::Json(
                            json!({"goAway": {"timeLeft": format!("{}s", left.as_secs_f64())}}),
                        )]
                    }
                    _ => Vec::new(),
                };
                let greeting = self.shared.config.greeting.clone();
                let ms = self.shared.config.greeting_ms;
                self.respond(greeting, ms, None, Duration::ZERO, after);
                if self.shared.config.mode == FakeGeminiMode::GoAwayAfterGreeting && self.index == 1
                {
                    // The cut at the end of `timeLeft`, whether or not the client left.
                    self.cut_after(
                        self.shared.config.go_away_time_left
                            + Duration::from_millis(
                                ms / u64::from(self.shared.config.generation_speed.max(1)),
                            ),
                    );
                }
            } else if text == TextPurpose::Summary.prompt() {
                self.respond_text(SUMMARY.to_owned());
            } else if text == TextPurpose::Analysis.prompt() {
                self.respond_text(self.shared.config.analysis.clone());
            } else {
                // `Say`: speak the quoted words.
                let said = text.split('"').nth(1).unwrap_or(&text).to_owned();
                self.respond(said, 800, None, self.shared.config.think_time, Vec::new());
            }
            return true;
        }
        if message.get("toolResponse").is_some() {
            let follow_up = self.shared.config.follow_up.clone();
            self.respond(
                follow_up,
                600,
                None,
                self.shared.config.think_time,
                Vec::new(),
            );
        }
        true
    }

    /// Stops the turn being spoken, if any, as the server does on the caller's speech.
    async fn interrupt_active(&mut self) {
        if let Some(cancel) = self.active.take()
            && !cancel.is_cancelled()
        {
            cancel.cancel();
            self.send(json!({"serverContent": {"interrupted": true}}))
                .await;
        }
    }

    /// Activity detection on the caller's 16 kHz PCM.
    async fn on_audio(&mut self, audio: &Value) {
        self.shared
            .audio_frames
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Some(mime) = audio["mimeType"].as_str() {
            let known = self
                .shared
                .log
                .lock()
                .expect("fake log lock")
                .audio_mime_types
                .iter()
                .any(|m| m == mime);
            if !known {
                let mime = mime.to_owned();
                self.shared.record(|log| log.audio_mime_types.push(mime));
            }
        }
        let Some(bytes) = audio["data"]
            .as_str()
            .and_then(|data| base64::engine::general_purpose::STANDARD.decode(data).ok())
        else {
            return;
        };
        if pcm_energy(&bytes) > self.shared.config.speech_threshold {
            self.quiet_frames = 0;
            if !self.speaking {
                self.speaking = true;
                self.send(json!({"voiceActivity": {"voiceActivityType": "ACTIVITY_START"}}))
                    .await;
                self.interrupt_active().await;
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
        self.send(json!({"voiceActivity": {"voiceActivityType": "ACTIVITY_END"}}))
            .await;
        let turn = self.shared.config.turns.get(self.turn).cloned();
        self.turn += 1;
        let Some(turn) = turn else {
            self.send(json!({"serverContent": {"turnComplete": true}}))
                .await;
            return;
        };
        self.send(json!({"serverContent": {"inputTranscription": {"text": turn.caller_says}}}))
            .await;
        let think = self.shared.config.think_time;
        let ms = self.shared.config.reply_ms;
        let mut after = Vec::new();
        if self.shared.config.mode == FakeGeminiMode::GoAwayAtToolCall
            && self.index == 1
            && turn.tool.is_some()
            && !self.went_away
        {
            self.went_away = true;
            let left = self.shared.config.go_away_time_left;
            after.push(Out::Json(
                json!({"goAway": {"timeLeft": format!("{}s", left.as_secs_f64())}}),
            ));
            // The cut when `timeLeft` has run out after the goAway (sent once the turn's audio
            // and its toolCall are out).
            let spoken =
                Duration::from_millis(ms / u64::from(self.shared.config.generation_speed.max(1)));
            self.cut_after(think + spoken + left);
        }
        self.respond(turn.agent_says, ms, turn.tool, think, after);
    }

    /// Closes this connection (1001) after `delay`, whatever the client does meanwhile.
    fn cut_after(&self, delay: Duration) {
        let outbox = self.outbox.clone();
        let stop = self.shared.stop.clone();
        self.shared.tasks.spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {
                    let _ = outbox.send(Out::Close(1001, "going away")).await;
                }
                _ = stop.cancelled() => {}
            }
        });
    }

    /// Speaks a turn in its own task: audio at `generation_speed` × real time with its
    /// transcription spread over the chunks; then a `toolCall`, or `turnComplete`.
    fn respond(
        &mut self,
        text: String,
        audio_ms: u64,
        tool: Option<(String, Value)>,
        delay: Duration,
        after: Vec<Out>,
    ) {
        if let Some(cancel) = self.active.take() {
            cancel.cancel();
        }
        let cancel = CancellationToken::new();
        self.active = Some(cancel.clone());
        let outbox = self.outbox.clone();
        let config = self.shared.config.clone();
        let chunks = self.chunks(audio_ms);
        // As the API documents: while the model runs a function call the session cannot be
        // resumed, and the update says so with an empty handle.
        let handle = if tool.is_some() {
            json!({"sessionResumptionUpdate": {"newHandle": "", "resumable": false}})
        } else {
            self.next_handle()
        };
        self.calls += 1;
        let call_id = format!("fc-{}-{}", self.index, self.calls);
        self.shared.tasks.spawn(async move {
            tokio::time::sleep(delay).await;
            let words: Vec<&str> = text.split_inclusive(' ').collect();
            let per_chunk = words.len().div_ceil(chunks.len().max(1)).max(1);
            let pause = Duration::from_millis(
                config.chunk_ms / u64::from(config.generation_speed.max(1)),
            );
            let mut words = words.chunks(per_chunk);
            for chunk in chunks.iter() {
                if cancel.is_cancelled() {
                    return;
                }
                let mut content = json!({"modelTurn": {"parts": [{"inlineData": {"mimeType": "audio/pcm;rate=24000", "data": chunk}}]}});
                if let Some(words) = words.next() {
                    content["outputTranscription"] = json!({"text": words.concat()});
                }
                let _ = outbox.send(Out::Json(json!({"serverContent": content}))).await;
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = cancel.cancelled() => return,
                }
            }
            for rest in words {
                let _ = outbox
                    .send(Out::Json(json!({"serverContent": {"outputTranscription": {"text": rest.concat()}}})))
                    .await;
            }
            let _ = outbox
                .send(Out::Json(json!({"serverContent": {"generationComplete": true}})))
                .await;
            match tool {
                Some((name, args)) => {
                    let _ = outbox
                        .send(Out::Json(json!({"toolCall": {"functionCalls": [{"id": call_id, "name": name, "args": args}]}})))
                        .await;
                }
                None => {
                    let _ = outbox
                        .send(Out::Json(json!({
                            "serverContent": {"turnComplete": true},
                            "usageMetadata": {"promptTokenCount": 80, "responseTokenCount": 40, "totalTokenCount": 120},
                        })))
                        .await;
                }
            }
            let _ = outbox.send(Out::Json(handle)).await;
            for message in after {
                let _ = outbox.send(message).await;
            }
        });
    }

    /// A text asked for after the call: a spoken answer, transcribed, after `text_time`.
    fn respond_text(&mut self, text: String) {
        let outbox = self.outbox.clone();
        let delay = self.shared.config.text_time;
        let chunks = self.chunks(400);
        self.shared.tasks.spawn(async move {
            tokio::time::sleep(delay).await;
            for chunk in chunks.iter() {
                let _ = outbox
                    .send(Out::Json(json!({"serverContent": {"modelTurn": {"parts": [{"inlineData": {"mimeType": "audio/pcm;rate=24000", "data": chunk}}]}}})))
                    .await;
            }
            for message in [
                json!({"serverContent": {"outputTranscription": {"text": text}}}),
                json!({"serverContent": {"generationComplete": true}}),
                json!({"serverContent": {"turnComplete": true}, "usageMetadata": {"totalTokenCount": 50}}),
            ] {
                let _ = outbox.send(Out::Json(message)).await;
            }
        });
    }

    fn chunks(&self, ms: u64) -> Arc<[String]> {
        let chunk_ms = self.shared.config.chunk_ms.max(20);
        self.shared
            .chunks
            .lock()
            .expect("chunks lock")
            .entry(ms)
            .or_insert_with(|| {
                agent_audio(ms)
                    .chunks((chunk_ms * 48) as usize)
                    .map(|chunk| base64::engine::general_purpose::STANDARD.encode(chunk))
                    .collect()
            })
            .clone()
    }
}

/// The agent's voice: a 440 Hz tone, PCM16 LE at 24 kHz.
fn agent_audio(ms: u64) -> Vec<u8> {
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
