//! Gemini Live (`BidiGenerateContent`) over a raw WebSocket.
//!
//! ## The protocol as used here
//! Confirmed against Google's published references (ai.google.dev Live API guides and model
//! pages; the js-genai, java-genai and kotlin-genai type references; `../shared/reference/
//! protocols.md` D.1), camelCase as on the wire:
//! - URL `wss://generativelanguage.googleapis.com/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent`
//!   (`GEMINI_LIVE_URL`). The key goes in the `x-goog-api-key` header, never in the URL, so no
//!   URL we log or put in an error carries it. (The WebSocket guide shows `?key=`; the header
//!   is what the SDKs send and what Google APIs accept for keys.)
//! - First message `setup {model, generationConfig {responseModalities: ["AUDIO"],
//!   speechConfig.voiceConfig.prebuiltVoiceConfig.voiceName}, systemInstruction.parts[].text,
//!   tools[].functionDeclarations[{name, description, parametersJsonSchema, behavior}],
//!   realtimeInputConfig {automaticActivityDetection, activityHandling},
//!   inputAudioTranscription {}, outputAudioTranscription {}, sessionResumption {handle?},
//!   contextWindowCompression {slidingWindow {}}}`; the server answers `setupComplete`.
//! - Caller audio `realtimeInput.audio {data, mimeType: "audio/pcm;rate=16000"}`; agent audio
//!   `serverContent.modelTurn.parts[].inlineData` PCM16 LE at 24 kHz.
//! - `serverContent {turnComplete, interrupted, generationComplete, inputTranscription.text,
//!   outputTranscription.text}`, `toolCall.functionCalls[{id, name, args}]` answered by
//!   `toolResponse.functionResponses[{id, name, response}]`, `toolCallCancellation.ids`,
//!   `usageMetadata {promptTokenCount, responseTokenCount, totalTokenCount, …}`,
//!   `goAway.timeLeft` (a protobuf Duration, `"10s"`), `sessionResumptionUpdate {newHandle,
//!   resumable}`, `voiceActivity.voiceActivityType` (`ACTIVITY_START`/`ACTIVITY_END`).
//! - The default model, `gemini-3.8-live` (`GEMINI_LIVE_MODEL`), is Google's stable Live model
//!   since September 2026; it answers in audio only (text comes from the output
//!   transcription), and its function calls are `NON_BLOCKING` unless a declaration says
//!   `BLOCKING`, which ours do.
//!
//! Not confirmed, handled defensively: whether `voiceActivity` is sent to every key (it is
//! documented on the message but not in the guides; `interrupted` is the signal relied on);
//! whether output transcription chunks carry their own spaces (joined as sent); whether a
//! `turnComplete` follows a `toolCall` (either way works); the exact close code of a refused
//! key (any close before `setupComplete` is reported as a refused set-up naming
//! `GEMINI_API_KEY`). Server messages may arrive as text or binary frames; both are read.
//!
//! ## Decisions
//! - **Barge-in stays the gateway's.** Gemini's own activity detection runs with
//!   `START_OF_ACTIVITY_INTERRUPTS`, since Gemini has no cancel or truncate: hearing the caller
//!   is the only way a turn stops. `serverContent.interrupted` and `voiceActivity
//!   ACTIVITY_START` become [`ProviderEvent::CallerSpeechStarted`]; the session then decides
//!   (the greeting guard may ignore it), clears Plivo and drops the turn's late audio.
//!   [`ProviderCommand::Interrupt`] and [`ProviderCommand::CancelResponse`] send nothing: the
//!   server already stopped, and what it keeps of the cut turn is its own (it cannot be told
//!   how much the caller heard).
//! - **Continue** sends nothing: with `BLOCKING` functions the model speaks again as soon as it
//!   has the tool results.
//! - **Greeting**: a `clientContent` user turn asking for the greeting, once per call; a resumed
//!   connection never asks again.
//! - **Summary and analysis** after the call: the model answers in audio only, so each is a
//!   `clientContent` turn whose spoken answer's `outputTranscription` is the text; its audio is
//!   dropped. They go one after the other (one turn at a time). A spoken JSON analysis may not
//!   survive transcription; the gateway then uses its deterministic analysis.
//! - **Long calls**: on `goAway`, or when a connection reaches [`GeminiConfig::
//!   connection_lifetime`], the provider opens a new connection with the latest resumable
//!   `sessionResumptionUpdate.newHandle` at the first moment nothing would be lost: no turn
//!   under way, no function call waiting for its result, and a handle that came after both
//!   (the server marks a session not resumable while it generates or runs a function call).
//!   When `timeLeft` is nearly spent it moves regardless, from the last resumable handle:
//!   what the session did after it (the API gives no handle while the model speaks or runs a
//!   function call) is not in the resumed session, though the call's transcript keeps it. Meanwhile caller audio (up to [`MAX_HELD_AUDIO_FRAMES`]) and
//!   commands (tool results) are held and sent on the new connection, in order. Context-window
//!   compression keeps the resumed session under the model's window, so a call can last
//!   beyond the session limits. More than [`MAX_RAPID_RESUMPTIONS`] resumptions of connections
//!   younger than [`RAPID_RESUMPTION_AGE`] end the call as a provider error.
//!
//! ## Cost
//! `cargo bench --bench gemini -- --warm-up-time 1 --measurement-time 3`, 2 cores, JSON and
//! base64 included, budget 15 µs per 20 ms frame each way:
//! - caller: a Plivo μ-law frame → the 16 kHz `realtimeInput` message 3.2 µs; L16 16 kHz
//!   passed through 0.6 µs;
//! - agent: a `serverContent` message of 100 ms of 24 kHz PCM → five Plivo `playAudio` frames
//!   12.8 µs in μ-law 8 kHz (2.6 µs per frame), 17.2 µs in L16 16 kHz (3.4 µs per frame).
//!
//! The resamplers delay the audio by 1.8 ms each way ([`crate::audio::resample`]).

pub mod protocol;

use std::{collections::VecDeque, time::Duration};

use futures_util::{SinkExt, StreamExt};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tokio::{net::TcpStream, time::Instant};
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream,
    tungstenite::{self, Message, client::IntoClientRequest, http::HeaderValue},
};
use url::Url;

use self::protocol::{Control, SetupParams, TextPurpose, Translator};
use super::{ProviderCommand, ProviderError, ProviderEvent, ProviderFuture, VoiceProvider};
use crate::audio::AudioFormat;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The largest server message read. An audio chunk is a fraction of a second (1 s of 24 kHz
/// PCM is 64 KiB in base64); everything else is small. Over this the read fails and the call
/// ends as `provider_error`.
pub const MAX_SERVER_MESSAGE_BYTES: usize = 1024 * 1024;
/// Caller frames held while a new connection is opened (3 s); older ones are dropped.
pub const MAX_HELD_AUDIO_FRAMES: usize = 150;
/// Resumptions of young connections allowed per call: a server sending `goAway` over and
/// over would otherwise keep the call reconnecting for ever.
pub const MAX_RAPID_RESUMPTIONS: u32 = 3;
/// A connection younger than this that is resumed counts against [`MAX_RAPID_RESUMPTIONS`].
pub const RAPID_RESUMPTION_AGE: Duration = Duration::from_secs(60);
/// How long before the end of `goAway.timeLeft` the new connection is opened regardless of a
/// turn under way.
const GO_AWAY_MARGIN: Duration = Duration::from_secs(2);
/// A connection is resumed before the API's connection limit (about 10 minutes) cuts it.
pub const DEFAULT_CONNECTION_LIFETIME: Duration = Duration::from_secs(9 * 60);
/// How long a connection past its lifetime waits for a moment when moving loses nothing.
const LIFETIME_GRACE: Duration = Duration::from_secs(30);

/// How to open a session.
#[derive(Debug, Clone)]
pub struct GeminiConfig {
    pub url: Url,
    pub model: String,
    pub api_key: SecretString,
    pub carrier_format: AudioFormat,
    pub instructions: String,
    pub greeting: String,
    pub voice: Option<String>,
    /// How long connecting and the set-up may take.
    pub handshake_timeout: Duration,
    /// Resume on a new connection after this long even without `goAway`.
    pub connection_lifetime: Duration,
}

/// A live Gemini session for one call.
pub struct GeminiLive {
    config: std::sync::Arc<GeminiConfig>,
    socket: Socket,
    translator: Translator,
    connected_at: Instant,
    /// A move to a new connection is due: at the first idle moment, at the latest then.
    resume_by: Option<Instant>,
    /// The new connection being opened. Kept here, not in `next_event`'s future, because the
    /// bridge cancels `next_event` whenever another branch of its loop fires.
    reopening: Option<Reopening>,
    /// Commands given while reopening, sent on the new connection.
    queued: VecDeque<String>,
    held_audio: VecDeque<String>,
    rapid_resumptions: u32,
}

type Reopening = std::pin::Pin<Box<dyn Future<Output = Result<Socket, ProviderError>> + Send>>;

impl GeminiLive {
    /// Connects, sets the session up and asks for the greeting.
    pub async fn connect(config: GeminiConfig) -> Result<Self, ProviderError> {
        let translator = Translator::new(config.carrier_format)?;
        let config = std::sync::Arc::new(config);
        let socket = open(&config, None).await?;
        let mut provider = Self {
            connected_at: Instant::now(),
            config,
            socket,
            translator,
            resume_by: None,
            reopening: None,
            queued: VecDeque::new(),
            held_audio: VecDeque::new(),
            rapid_resumptions: 0,
        };
        let greeting = protocol::greeting_request(&provider.config.greeting);
        provider.send_json(&greeting).await?;
        Ok(provider)
    }

    /// Whether messages wait for a new connection (or to be sent on it, in order).
    fn waiting(&self) -> bool {
        self.reopening.is_some() || !self.queued.is_empty() || !self.held_audio.is_empty()
    }

    async fn send_json(&mut self, value: &Value) -> Result<(), ProviderError> {
        let text = value.to_string();
        if self.waiting() {
            self.queued.push_back(text);
            return Ok(());
        }
        send(&mut self.socket, text).await
    }

    /// The translator's messages, each taken only once handed to the socket (or queued), so a
    /// cancelled `next_event` loses none.
    async fn flush_outgoing(&mut self) -> Result<(), ProviderError> {
        while let Some(message) = self.translator.outgoing.front().cloned() {
            self.send_json(&message).await?;
            self.translator.outgoing.pop_front();
        }
        Ok(())
    }

    /// What waited during a move: commands first (tool results and turns the model waits
    /// for), then the held caller audio, each in order. A message leaves its queue only once
    /// sent, since the bridge may cancel `next_event` at any await.
    async fn send_waiting(&mut self) -> Result<(), ProviderError> {
        while let Some(text) = self.queued.front().cloned() {
            send(&mut self.socket, text).await?;
            self.queued.pop_front();
        }
        while let Some(text) = self.held_audio.front().cloned() {
            send(&mut self.socket, text).await?;
            self.held_audio.pop_front();
        }
        Ok(())
    }

    /// When to look again: the move's deadline, or the end of the connection's lifetime.
    fn wake_at(&self) -> Instant {
        self.resume_by
            .unwrap_or(self.connected_at + self.config.connection_lifetime)
    }

    fn start_reopen(&mut self) -> Result<(), ProviderError> {
        let Some(handle) = self.translator.resumption_handle().map(str::to_owned) else {
            // Nothing to resume from yet: stay until the server cuts the connection.
            self.resume_by = None;
            self.connected_at = Instant::now();
            self.translator.events.push_back(ProviderEvent::Warning {
                message: "the connection must be left but no resumption handle came yet".into(),
            });
            return Ok(());
        };
        if self.connected_at.elapsed() < RAPID_RESUMPTION_AGE {
            self.rapid_resumptions += 1;
            if self.rapid_resumptions > MAX_RAPID_RESUMPTIONS {
                return Err(ProviderError::Protocol(format!(
                    "the server sent the call to a new connection more than {MAX_RAPID_RESUMPTIONS} times within {RAPID_RESUMPTION_AGE:?} of connecting"
                )));
            }
        }
        if !self.translator.idle() {
            self.translator.abandon_turn();
        }
        metrics::counter!(crate::metrics::PROVIDER_RECONNECTS).increment(1);
        let config = self.config.clone();
        self.reopening = Some(Box::pin(async move { open(&config, Some(&handle)).await }));
        self.resume_by = None;
        Ok(())
    }

    /// The new connection is up: the old one is closed; what waited is sent next.
    async fn finish_reopen(&mut self, socket: Socket) {
        let mut old = std::mem::replace(&mut self.socket, socket);
        self.connected_at = Instant::now();
        self.translator.events.push_back(ProviderEvent::Warning {
            message: "the session moved to a new connection (resumed)".into(),
        });
        // The old connection is done with; a failure to close it politely changes nothing.
        let _ = tokio::time::timeout(Duration::from_millis(200), old.close(None)).await;
    }

    fn on_message(&mut self, text: &str) -> Result<(), ProviderError> {
        match self.translator.handle(text)? {
            Control::GoAway(time_left) => {
                let time_left = time_left.unwrap_or(GO_AWAY_MARGIN);
                let by = Instant::now() + time_left.saturating_sub(GO_AWAY_MARGIN);
                self.resume_by = Some(self.resume_by.map_or(by, |earlier| earlier.min(by)));
            }
            Control::SetupComplete | Control::None => {}
        }
        Ok(())
    }
}

impl VoiceProvider for GeminiLive {
    fn kind(&self) -> &'static str {
        "gemini"
    }

    fn send_audio<'a>(&'a mut self, frame: &'a [u8], base64: &'a str) -> ProviderFuture<'a, ()> {
        Box::pin(async move {
            // Owned by the message once sent, so one allocation per frame (as for OpenAI).
            let mut text = String::with_capacity(128 + frame.len() * 6);
            self.translator
                .media()
                .write_audio_message(frame, base64, &mut text)?;
            if self.waiting() {
                if self.held_audio.len() == MAX_HELD_AUDIO_FRAMES {
                    self.held_audio.pop_front();
                }
                self.held_audio.push_back(text);
                return Ok(());
            }
            send(&mut self.socket, text).await
        })
    }

    fn send(&mut self, command: ProviderCommand) -> ProviderFuture<'_, ()> {
        Box::pin(async move {
            match command {
                // Gemini has neither truncate nor cancel; see the module's decisions.
                ProviderCommand::Interrupt { .. } | ProviderCommand::CancelResponse => {
                    self.translator.drop_pending_audio();
                    Ok(())
                }
                ProviderCommand::Continue => Ok(()),
                ProviderCommand::ToolResult { call_id, output } => {
                    let name = self
                        .translator
                        .function_name(&call_id)
                        .unwrap_or_default()
                        .to_owned();
                    let message = protocol::tool_response(&call_id, &name, output);
                    self.translator.result_given(&call_id);
                    self.send_json(&message).await
                }
                ProviderCommand::Say(text) => {
                    self.translator.sent_state();
                    self.send_json(&protocol::say_request(&text)).await
                }
                ProviderCommand::RequestSummary => {
                    self.translator.request_text(TextPurpose::Summary);
                    self.flush_outgoing().await
                }
                ProviderCommand::RequestAnalysis => {
                    self.translator.request_text(TextPurpose::Analysis);
                    self.flush_outgoing().await
                }
            }
        })
    }

    fn next_event(&mut self) -> ProviderFuture<'_, ProviderEvent> {
        Box::pin(async move {
            loop {
                if let Some(event) = self.translator.events.pop_front() {
                    return Ok(event);
                }
                if !self.translator.outgoing.is_empty() {
                    self.flush_outgoing().await?;
                }
                if let Some(reopening) = self.reopening.as_mut() {
                    let socket = reopening.await;
                    self.reopening = None;
                    self.finish_reopen(socket?).await;
                    continue;
                }
                if !self.queued.is_empty() || !self.held_audio.is_empty() {
                    self.send_waiting().await?;
                    continue;
                }
                let now = Instant::now();
                if self.resume_by.is_none()
                    && now >= self.connected_at + self.config.connection_lifetime
                {
                    // The connection limit nears without a goAway: move as for one.
                    self.resume_by = Some(now + LIFETIME_GRACE);
                }
                if let Some(by) = self.resume_by
                    && (self.translator.ready_to_move() || now >= by)
                {
                    self.start_reopen()?;
                    continue;
                }
                let deadline = self.wake_at();
                tokio::select! {
                    // StreamExt::next is cancel-safe: a dropped poll loses no message.
                    message = self.socket.next() => match message {
                        // Cut after a goAway before the move: resume from the last handle now.
                        None | Some(Err(_)) | Some(Ok(Message::Close(_)))
                            if self.resume_by.is_some()
                                && self.translator.resumption_handle().is_some() =>
                        {
                            self.start_reopen()?;
                        }
                        None => return Err(ProviderError::Closed("the connection ended".to_owned())),
                        Some(Err(error)) => return Err(ProviderError::Transport(error.to_string())),
                        Some(Ok(Message::Text(text))) => self.on_message(text.as_str())?,
                        Some(Ok(Message::Binary(bytes))) => {
                            let text = std::str::from_utf8(&bytes).map_err(|_| {
                                ProviderError::Protocol("a binary message that is not UTF-8".to_owned())
                            })?;
                            self.on_message(text)?;
                        }
                        Some(Ok(Message::Close(frame))) => {
                            return Err(ProviderError::Closed(close_reason(frame.as_ref())));
                        }
                        Some(Ok(_)) => {} // Pings are answered by tungstenite.
                    },
                    _ = tokio::time::sleep_until(deadline) => {}
                }
            }
        })
    }
}

async fn send(socket: &mut Socket, text: String) -> Result<(), ProviderError> {
    socket
        .send(Message::text(text))
        .await
        .map_err(|error| ProviderError::Transport(error.to_string()))
}

fn close_reason(frame: Option<&tungstenite::protocol::CloseFrame>) -> String {
    match frame {
        Some(frame) => format!(
            "closed by the provider: {} {}",
            u16::from(frame.code),
            frame.reason
        ),
        None => "closed by the provider".to_owned(),
    }
}

/// Why a set-up was refused, naming the settings to check (never their values).
fn refused(detail: &str) -> ProviderError {
    ProviderError::Handshake(format!(
        "Gemini Live refused the session ({detail}); check GEMINI_API_KEY and GEMINI_LIVE_MODEL"
    ))
}

/// Connects and sets a session up (resuming `handle`), within the handshake timeout.
async fn open(config: &GeminiConfig, handle: Option<&str>) -> Result<Socket, ProviderError> {
    tokio::time::timeout(config.handshake_timeout, open_session(config, handle))
        .await
        .map_err(|_| {
            ProviderError::Handshake(format!(
                "no setupComplete within {:?}",
                config.handshake_timeout
            ))
        })?
}

async fn open_session(
    config: &GeminiConfig,
    handle: Option<&str>,
) -> Result<Socket, ProviderError> {
    let mut request = config
        .url
        .as_str()
        .into_client_request()
        .map_err(|error| ProviderError::Connect(error.to_string()))?;
    let key = HeaderValue::from_str(config.api_key.expose_secret())
        .map_err(|_| ProviderError::Connect("GEMINI_API_KEY is not a valid header value".into()))?;
    request.headers_mut().insert("x-goog-api-key", key);
    let (mut socket, _response) =
        tokio_tungstenite::connect_async_with_config(request, Some(socket_config()), true)
            .await
            .map_err(|error| match error {
                tungstenite::Error::Http(response) => {
                    refused(&format!("HTTP {}", response.status()))
                }
                other => ProviderError::Connect(other.to_string()),
            })?;
    let setup = protocol::setup(
        &SetupParams {
            model: &config.model,
            instructions: &config.instructions,
            voice: config.voice.as_deref(),
        },
        handle,
    );
    send(&mut socket, setup.to_string()).await?;
    loop {
        let message = socket
            .next()
            .await
            .ok_or_else(|| refused("closed before setupComplete"))?
            .map_err(|error| ProviderError::Handshake(error.to_string()))?;
        let complete = match &message {
            Message::Text(text) => protocol::is_setup_complete(text.as_str())?,
            Message::Binary(bytes) => {
                protocol::is_setup_complete(std::str::from_utf8(bytes).map_err(|_| {
                    ProviderError::Handshake("a set-up answer that is not UTF-8".into())
                })?)?
            }
            Message::Close(frame) => return Err(refused(&close_reason(frame.as_ref()))),
            _ => false,
        };
        if complete {
            return Ok(socket);
        }
    }
}

/// Small socket buffers, as for OpenAI: tungstenite's 128 KiB default would dominate a call's
/// memory. A message over [`MAX_SERVER_MESSAGE_BYTES`] fails the read.
fn socket_config() -> tungstenite::protocol::WebSocketConfig {
    tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(crate::http::SOCKET_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_message_size(Some(MAX_SERVER_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_SERVER_MESSAGE_BYTES))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulators::gemini_live::{FakeGeminiConfig, FakeGeminiServer};

    fn config(server: &FakeGeminiServer, key: &str) -> GeminiConfig {
        GeminiConfig {
            url: Url::parse(&server.url()).unwrap(),
            model: "gemini-3.8-live".to_owned(),
            api_key: SecretString::from(key.to_owned()),
            carrier_format: AudioFormat::MULAW_8K,
            instructions: "Be brief.".to_owned(),
            greeting: "Hello.".to_owned(),
            voice: None,
            handshake_timeout: Duration::from_secs(5),
            connection_lifetime: DEFAULT_CONNECTION_LIFETIME,
        }
    }

    #[tokio::test]
    async fn a_rejected_key_is_named_without_its_value() {
        let server = FakeGeminiServer::start(FakeGeminiConfig {
            api_key: Some("the-right-key".to_owned()),
            ..FakeGeminiConfig::default()
        })
        .await
        .unwrap();
        let Err(error) = GeminiLive::connect(config(&server, "wrong-key-1234")).await else {
            panic!("a wrong key was accepted");
        };
        let message = error.to_string();
        assert!(message.contains("GEMINI_API_KEY"), "{message}");
        assert!(!message.contains("wrong-key-1234"), "{message}");
        assert!(
            GeminiLive::connect(config(&server, "the-right-key"))
                .await
                .is_ok()
        );
        assert!(
            server.log(|log| log
                .api_keys
                .iter()
                .all(|key| !server.url().contains(key.as_str()))),
            "the key travels in the header, not the URL"
        );
        server.stop().await;
    }

    /// Polls the provider until `done` holds on the fake's log.
    async fn drive(
        provider: &mut GeminiLive,
        server: &FakeGeminiServer,
        done: impl Fn(&crate::simulators::gemini_live::FakeGeminiLog) -> bool,
    ) {
        tokio::time::timeout(Duration::from_secs(5), async {
            while !server.log(&done) {
                let _ =
                    tokio::time::timeout(Duration::from_millis(20), provider.next_event()).await;
            }
        })
        .await
        .expect("in time");
    }

    #[tokio::test]
    async fn tool_results_given_while_moving_to_a_new_connection_go_on_the_new_one() {
        use crate::simulators::gemini_live::FakeGeminiMode;
        let server = FakeGeminiServer::start(FakeGeminiConfig {
            mode: FakeGeminiMode::GoAwayAfterGreeting,
            resume_setup_delay: Duration::from_secs(2),
            ..FakeGeminiConfig::default()
        })
        .await
        .unwrap();
        let mut provider = GeminiLive::connect(config(&server, "k")).await.unwrap();
        // Read until the move has begun (the greeting's turn, its handle, then goAway); the
        // new connection's set-up takes seconds, so each short wait is cut by its timeout.
        while provider.reopening.is_none() {
            let _ = tokio::time::timeout(Duration::from_millis(20), provider.next_event()).await;
        }
        provider
            .send(ProviderCommand::ToolResult {
                call_id: "fc-meanwhile".to_owned(),
                output: serde_json::json!({"ok": true}),
            })
            .await
            .unwrap();
        // Only polling `next_event` drives the move, as the bridge's loop does in a call.
        drive(&mut provider, &server, |log| log.of("setup").len() == 2).await;
        assert!(
            server.log(|log| log.of("toolResponse").is_empty()),
            "held while the new connection is set up"
        );
        drive(&mut provider, &server, |log| {
            !log.of("toolResponse").is_empty()
        })
        .await;
        let responses = server.log(|log| log.of("toolResponse"));
        assert_eq!(responses.len(), 1);
        assert_eq!(responses[0].0, 2, "sent on the new connection");
        assert_eq!(
            server.log(|log| log.of("setup")[1].1["setup"]["sessionResumption"]["handle"].clone()),
            "handle-1-2"
        );
        server.stop().await;
    }

    #[tokio::test]
    async fn a_connection_cut_after_go_away_is_resumed_not_fatal() {
        use crate::simulators::gemini_live::FakeGeminiMode;
        let server = FakeGeminiServer::start(FakeGeminiConfig {
            mode: FakeGeminiMode::GoAwayAndCut,
            resume_setup_delay: Duration::ZERO,
            ..FakeGeminiConfig::default()
        })
        .await
        .unwrap();
        let mut provider = GeminiLive::connect(config(&server, "k")).await.unwrap();
        let resumed = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match provider.next_event().await.unwrap() {
                    ProviderEvent::Warning { message } if message.contains("resumed") => return,
                    _ => {}
                }
            }
        })
        .await;
        assert!(resumed.is_ok(), "the call moved to a new connection");
        assert_eq!(
            server.log(|log| log.of("setup")[1].1["setup"]["sessionResumption"]["handle"].clone()),
            "handle-1-2"
        );
        server.stop().await;
    }

    #[tokio::test]
    async fn the_summary_is_the_transcription_of_a_spoken_answer() {
        let server = FakeGeminiServer::start(FakeGeminiConfig {
            text_time: Duration::from_millis(50),
            ..FakeGeminiConfig::default()
        })
        .await
        .unwrap();
        let mut provider = GeminiLive::connect(config(&server, "k")).await.unwrap();
        provider
            .send(ProviderCommand::RequestSummary)
            .await
            .unwrap();
        provider
            .send(ProviderCommand::RequestAnalysis)
            .await
            .unwrap();
        let (mut summary, mut analysis) = (None, None);
        while summary.is_none() || analysis.is_none() {
            match tokio::time::timeout(Duration::from_secs(10), provider.next_event())
                .await
                .expect("answers in time")
                .unwrap()
            {
                ProviderEvent::Summary { text } => summary = Some(text),
                ProviderEvent::Analysis { text } => analysis = Some(text),
                _ => {}
            }
        }
        assert!(summary.unwrap().contains("the call ended normally"));
        let analysis = crate::outcome::analysis::parse_model_answer(&analysis.unwrap()).unwrap();
        assert_eq!(analysis.source, crate::outcome::analysis::Source::Model);
        server.stop().await;
    }
}
