//! OpenAI Realtime (GA protocol) over a WebSocket.
//!
//! μ-law carriers use `audio/pcmu` both ways, so caller audio is forwarded as the very base64
//! text Plivo sent and agent audio is only base64-decoded: no transcoding at all. L16 carriers
//! go through the resampler to and from PCM 24 kHz, with buffers allocated once per call.
//!
//! Turn detection runs on the server (`server_vad` or `semantic_vad`) with
//! `interrupt_response: false`: the gateway decides barge-in itself (so it can protect the
//! greeting from the agent's own echo) and then truncates and cancels explicitly.
//!
//! A session that expires on a long call (`session_expired`) is reopened, and the conversation
//! so far is replayed into the new session as items.
//!
//! After the call, the summary and the analysis are out-of-band, text-only responses
//! (`conversation: "none"`: they read the conversation but add nothing to it), each naming its
//! purpose in `metadata.purpose`; the server echoes the metadata in `response.created`, which
//! ties the text that follows to its request. A server that does not echo it is answered in the
//! order asked.

use std::{borrow::Cow, collections::VecDeque, time::Duration};

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream,
    tungstenite::{Message, client::IntoClientRequest, http::HeaderValue},
};
use url::Url;

use super::{
    ProviderCommand, ProviderError, ProviderEvent, ProviderFuture, ResponseStatus, VoiceProvider,
    tools,
};
use crate::audio::{AudioFormat, Encoding, framing::Rechunker, l16, resample::Resampler};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The sample rate of OpenAI's PCM format.
const PCM_RATE: u32 = 24_000;
/// The transcription model for the caller's speech.
const TRANSCRIPTION_MODEL: &str = "gpt-4o-mini-transcribe";
/// The voice when the campaign names none.
const DEFAULT_VOICE: &str = "marin";
/// The largest server event read (and frame). tungstenite's default is 64 MiB per message,
/// which a misbehaving server could send to every call at once. The largest legitimate events
/// are far below this: `session.updated` echoes our own session (instructions and tool
/// declarations, a few KiB to tens of KiB), `response.done` carries the response's items
/// with their transcripts but never raw audio (at most 4,096 output tokens, some 16 KiB of
/// text), and an audio delta is a fraction of a second (1 s of PCM 24 kHz is 64 KiB in
/// base64). A larger event fails the read: the call ends as `provider_error`.
pub const MAX_SERVER_MESSAGE_BYTES: usize = 1024 * 1024;
/// How many times one call's session may be reopened after `session_expired` (a session lasts
/// up to 60 minutes, so this covers calls of hours). A server that expires sessions over and
/// over would otherwise have the call reconnect, replay its history and hold the caller in
/// silence for ever; beyond this the call ends as `provider_error`.
pub const MAX_RECONNECTS: u32 = 3;
/// Instructions of the text-only summary response.
const SUMMARY_INSTRUCTIONS: &str = "The call is over. In at most two sentences of plain text, summarise it for the sales team: what the caller said they want and how the call ended. Do not address the caller.";

/// How to open a session.
#[derive(Debug, Clone)]
pub struct OpenAiConfig {
    /// `wss://api.openai.com/v1/realtime` (or a local fake).
    pub url: Url,
    pub model: String,
    pub api_key: SecretString,
    /// The carrier's audio format (what the bridge sends and expects back).
    pub carrier_format: AudioFormat,
    pub instructions: String,
    /// Said first, before the caller speaks.
    pub greeting: String,
    pub voice: Option<String>,
    pub language: String,
    /// `server_vad` or `semantic_vad`.
    pub turn_detection: String,
    /// How long connecting and the session set-up may take.
    pub handshake_timeout: Duration,
}

/// A live OpenAI Realtime session for one call.
pub struct OpenAiRealtime {
    config: OpenAiConfig,
    socket: Socket,
    pending: VecDeque<ProviderEvent>,
    audio: MediaConverter,
    /// The conversation so far, replayed into a new session if this one expires.
    history: Vec<(Role, String)>,
    /// Text responses asked for and not yet started, in order.
    text_requests: VecDeque<TextPurpose>,
    /// Text responses started: response id and purpose.
    text_responses: Vec<(String, TextPurpose)>,
    reconnect_needed: bool,
    /// Sessions reopened on this call so far, at most [`MAX_RECONNECTS`].
    reconnects: u32,
    /// The reopen under way. Kept here, not in `next_event`'s future, because the session
    /// cancels `next_event` whenever another branch of its loop fires: a reopen must survive that.
    reopening: Option<Reopening>,
    /// Commands given while the session is being reopened, sent once it is.
    queued: Vec<String>,
}

type Reopening = std::pin::Pin<Box<dyn Future<Output = Result<Socket, ProviderError>> + Send>>;

/// What an out-of-band text response was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextPurpose {
    Summary,
    Analysis,
}

impl TextPurpose {
    /// Its `metadata.purpose`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Summary => "summary",
            Self::Analysis => "analysis",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Summary, Self::Analysis]
            .into_iter()
            .find(|purpose| purpose.as_str() == text)
    }

    fn instructions(self) -> Cow<'static, str> {
        match self {
            Self::Summary => Cow::Borrowed(SUMMARY_INSTRUCTIONS),
            Self::Analysis => Cow::Owned(crate::outcome::analysis::instructions()),
        }
    }

    fn answer(self, text: String) -> ProviderEvent {
        match self {
            Self::Summary => ProviderEvent::Summary { text },
            Self::Analysis => ProviderEvent::Analysis { text },
        }
    }
}

/// The out-of-band, text-only `response.create` for `purpose`.
pub fn text_request(purpose: TextPurpose) -> Value {
    json!({
        "type": "response.create",
        "response": {
            "conversation": "none",
            "output_modalities": ["text"],
            "instructions": purpose.instructions(),
            "metadata": {"purpose": purpose.as_str()},
        },
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    User,
    Assistant,
}

/// Conversion between the carrier's format and the session's: the media path of one call,
/// pure and benchmarked (`benches/media_path.rs`).
pub enum MediaConverter {
    /// μ-law both ways: nothing to convert.
    Passthrough,
    /// L16 at 8 or 16 kHz ⇄ PCM 24 kHz.
    Resampled(Box<Resampling>),
}

pub struct Resampling {
    carrier: AudioFormat,
    up: Resampler,
    down: Resampler,
    samples_in: Vec<i16>,
    samples_mid: Vec<i16>,
    bytes_out: Vec<u8>,
    /// Agent audio arrives in arbitrary deltas; the resampler wants 20 ms frames.
    agent_frames: Rechunker,
}

impl OpenAiRealtime {
    /// Connects, configures the session and asks for the greeting.
    pub async fn connect(config: OpenAiConfig) -> Result<Self, ProviderError> {
        let audio = MediaConverter::new(config.carrier_format)?;
        let socket = tokio::time::timeout(config.handshake_timeout, open_session(&config))
            .await
            .map_err(|_| {
                ProviderError::Handshake(format!(
                    "no session within {:?}",
                    config.handshake_timeout
                ))
            })??;
        let mut provider = Self {
            config,
            socket,
            pending: VecDeque::new(),
            audio,
            history: Vec::new(),
            text_requests: VecDeque::new(),
            text_responses: Vec::new(),
            reconnect_needed: false,
            reconnects: 0,
            reopening: None,
            queued: Vec::new(),
        };
        let greeting = json!({
            "type": "response.create",
            "response": {
                "instructions": format!("Greet the caller now by saying exactly: \"{}\"", provider.config.greeting)
            }
        });
        provider.send_json(&greeting).await?;
        Ok(provider)
    }

    async fn send_text(&mut self, text: String) -> Result<(), ProviderError> {
        self.socket
            .send(Message::text(text))
            .await
            .map_err(|error| ProviderError::Transport(error.to_string()))
    }

    async fn send_json(&mut self, value: &Value) -> Result<(), ProviderError> {
        if self.reconnect_needed {
            self.queued.push(value.to_string());
            return Ok(());
        }
        self.send_text(value.to_string()).await
    }

    /// Opens a new session after `session_expired` and replays the conversation into it. The
    /// returned future owns everything it needs, so it can be polled across cancelled calls.
    fn reopen(&self) -> Reopening {
        let config = self.config.clone();
        let items: Vec<Value> = self
            .history
            .iter()
            .map(|(role, text)| {
                let item = match role {
                    Role::User => {
                        json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]})
                    }
                    Role::Assistant => {
                        json!({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]})
                    }
                };
                json!({"type": "conversation.item.create", "item": item})
            })
            .collect();
        Box::pin(async move {
            let mut socket = tokio::time::timeout(config.handshake_timeout, open_session(&config))
                .await
                .map_err(|_| {
                    ProviderError::Handshake("reopening the expired session timed out".to_owned())
                })??;
            for item in items {
                socket
                    .send(Message::text(item.to_string()))
                    .await
                    .map_err(|error| ProviderError::Transport(error.to_string()))?;
            }
            Ok(socket)
        })
    }

    /// Turns one server event into zero or more provider events.
    fn handle_server_event(&mut self, text: &str) -> Result<(), ProviderError> {
        let event: ServerEvent<'_> = serde_json::from_str(text)
            .map_err(|error| ProviderError::Protocol(format!("bad server event: {error}")))?;
        let owned = |value: Option<String>| value.unwrap_or_default();
        match event.kind.as_ref() {
            "response.created" => {
                let response = event.response.as_ref();
                let response_id = response
                    .and_then(|r| r["id"].as_str())
                    .unwrap_or_default()
                    .to_owned();
                if let Some(purpose) = response
                    .and_then(|r| r["metadata"]["purpose"].as_str())
                    .and_then(TextPurpose::parse)
                {
                    if let Some(index) = self.text_requests.iter().position(|p| *p == purpose) {
                        self.text_requests.remove(index);
                    }
                    self.text_responses.push((response_id.clone(), purpose));
                }
                self.pending
                    .push_back(ProviderEvent::ResponseStarted { response_id });
            }
            "response.output_audio.delta" | "response.audio.delta" => {
                let delta = event.delta.unwrap_or_default();
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(delta.as_bytes())
                    .map_err(|_| ProviderError::Protocol("audio delta is not base64".to_owned()))?;
                let audio = self.audio.agent_audio(decoded)?;
                if !audio.is_empty() {
                    self.pending.push_back(ProviderEvent::Audio {
                        response_id: owned(event.response_id),
                        item_id: owned(event.item_id),
                        audio,
                    });
                }
            }
            "response.output_audio.done" | "response.audio.done" => {
                let tail = self.audio.flush_agent_audio()?;
                let response_id = owned(event.response_id);
                let item_id = owned(event.item_id);
                if !tail.is_empty() {
                    self.pending.push_back(ProviderEvent::Audio {
                        response_id: response_id.clone(),
                        item_id: item_id.clone(),
                        audio: tail,
                    });
                }
                self.pending.push_back(ProviderEvent::AudioDone {
                    response_id,
                    item_id,
                });
            }
            "response.output_audio_transcript.done" | "response.audio_transcript.done" => {
                let text = owned(event.transcript);
                self.history.push((Role::Assistant, text.clone()));
                self.pending.push_back(ProviderEvent::AgentTranscript {
                    item_id: owned(event.item_id),
                    text,
                });
            }
            "response.output_text.done" | "response.text.done" => {
                let started = self
                    .text_responses
                    .iter()
                    .position(|(id, _)| Some(id.as_str()) == event.response_id.as_deref());
                let purpose = match started {
                    Some(index) => Some(self.text_responses.swap_remove(index).1),
                    None => self.text_requests.pop_front(),
                };
                if let Some(purpose) = purpose {
                    self.pending.push_back(purpose.answer(owned(event.text)));
                }
            }
            "input_audio_buffer.speech_started" => {
                self.pending.push_back(ProviderEvent::CallerSpeechStarted)
            }
            "input_audio_buffer.speech_stopped" => {
                self.pending.push_back(ProviderEvent::CallerSpeechStopped)
            }
            "conversation.item.input_audio_transcription.completed" => {
                let text = owned(event.transcript);
                self.history.push((Role::User, text.clone()));
                self.pending.push_back(ProviderEvent::CallerTranscript {
                    item_id: owned(event.item_id),
                    text,
                });
            }
            "response.function_call_arguments.done" => {
                self.pending.push_back(ProviderEvent::ToolCall {
                    response_id: owned(event.response_id),
                    call_id: owned(event.call_id),
                    name: owned(event.name),
                    arguments: owned(event.arguments),
                })
            }
            "response.done" => {
                let response = event.response.unwrap_or(Value::Null);
                self.pending.push_back(ProviderEvent::ResponseDone {
                    response_id: response["id"].as_str().unwrap_or_default().to_owned(),
                    status: ResponseStatus::parse(response["status"].as_str().unwrap_or("failed")),
                    usage: response
                        .get("usage")
                        .filter(|usage| !usage.is_null())
                        .cloned(),
                });
            }
            "error" => {
                let error = event.error.unwrap_or(Value::Null);
                let code = error["code"].as_str().unwrap_or_default();
                let message = error["message"]
                    .as_str()
                    .unwrap_or("unknown error")
                    .to_owned();
                if code == "session_expired" {
                    if self.reconnects >= MAX_RECONNECTS {
                        return Err(ProviderError::Protocol(format!(
                            "the session expired again after {MAX_RECONNECTS} reopens on this call"
                        )));
                    }
                    self.reconnects += 1;
                    metrics::counter!(crate::metrics::PROVIDER_RECONNECTS).increment(1);
                    self.reconnect_needed = true;
                    self.pending.push_back(ProviderEvent::Warning {
                        message: "session expired; reopening it with the conversation so far"
                            .to_owned(),
                    });
                } else {
                    self.pending.push_back(ProviderEvent::Warning {
                        message: format!("{code}: {message}"),
                    });
                }
            }
            _ => {}
        }
        Ok(())
    }
}

impl VoiceProvider for OpenAiRealtime {
    fn kind(&self) -> &'static str {
        "openai"
    }

    fn send_audio<'a>(&'a mut self, frame: &'a [u8], base64: &'a str) -> ProviderFuture<'a, ()> {
        Box::pin(async move {
            if self.reconnect_needed {
                return Ok(()); // Audio during the reopen is lost; the caller hears nothing meanwhile.
            }
            let mut text = String::with_capacity(64 + base64.len() * 3);
            self.audio.write_append(frame, base64, &mut text)?;
            self.send_text(text).await
        })
    }

    fn send(&mut self, command: ProviderCommand) -> ProviderFuture<'_, ()> {
        Box::pin(async move {
            match command {
                ProviderCommand::Interrupt {
                    item_id,
                    audio_end_ms,
                    cancel_response,
                } => {
                    if self.reconnect_needed {
                        // The expired session's items are gone and the new one plays nothing.
                        return Ok(());
                    }
                    self.send_json(&json!({
                        "type": "conversation.item.truncate",
                        "item_id": item_id,
                        "content_index": 0,
                        "audio_end_ms": audio_end_ms,
                    }))
                    .await?;
                    if cancel_response {
                        self.send_json(&json!({"type": "response.cancel"})).await?;
                    }
                    Ok(())
                }
                ProviderCommand::CancelResponse => {
                    if self.reconnect_needed {
                        return Ok(());
                    }
                    self.send_json(&json!({"type": "response.cancel"})).await
                }
                ProviderCommand::ToolResult { call_id, output } => {
                    self.send_json(&json!({
                        "type": "conversation.item.create",
                        "item": {"type": "function_call_output", "call_id": call_id, "output": output.to_string()},
                    }))
                    .await
                }
                ProviderCommand::Continue => self.send_json(&json!({"type": "response.create"})).await,
                ProviderCommand::Say(text) => {
                    self.send_json(&json!({
                        "type": "response.create",
                        "response": {"instructions": format!("Say to the caller, in your own words but briefly: \"{text}\"")},
                    }))
                    .await
                }
                ProviderCommand::RequestSummary => {
                    self.text_requests.push_back(TextPurpose::Summary);
                    self.send_json(&text_request(TextPurpose::Summary)).await
                }
                ProviderCommand::RequestAnalysis => {
                    self.text_requests.push_back(TextPurpose::Analysis);
                    self.send_json(&text_request(TextPurpose::Analysis)).await
                }
            }
        })
    }

    fn next_event(&mut self) -> ProviderFuture<'_, ProviderEvent> {
        Box::pin(async move {
            loop {
                if let Some(event) = self.pending.pop_front() {
                    return Ok(event);
                }
                if self.reconnect_needed {
                    if self.reopening.is_none() {
                        self.reopening = Some(self.reopen());
                    }
                    let reopened = self.reopening.as_mut().expect("just set").await;
                    self.reopening = None;
                    self.socket = reopened?;
                    self.reconnect_needed = false;
                    for text in std::mem::take(&mut self.queued) {
                        self.send_text(text).await?;
                    }
                    continue;
                }
                // StreamExt::next is cancel-safe: a dropped poll loses no message.
                match self.socket.next().await {
                    None => return Err(ProviderError::Closed("the connection ended".to_owned())),
                    Some(Err(error)) => return Err(ProviderError::Transport(error.to_string())),
                    Some(Ok(Message::Text(text))) => self.handle_server_event(text.as_str())?,
                    Some(Ok(Message::Close(frame))) => {
                        let reason = frame
                            .map(|frame| format!("{} {}", u16::from(frame.code), frame.reason))
                            .unwrap_or_default();
                        return Err(ProviderError::Closed(
                            format!("closed by the provider {reason}").trim().to_owned(),
                        ));
                    }
                    Some(Ok(_)) => {} // Pings are answered by tungstenite; binary frames are not used.
                }
            }
        })
    }
}

/// Connects and configures a session: `session.created`, then our `session.update`, then
/// `session.updated`.
async fn open_session(config: &OpenAiConfig) -> Result<Socket, ProviderError> {
    let mut url = config.url.clone();
    url.query_pairs_mut().append_pair("model", &config.model);
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|error| ProviderError::Connect(error.to_string()))?;
    let bearer = HeaderValue::from_str(&format!("Bearer {}", config.api_key.expose_secret()))
        .map_err(|_| {
            ProviderError::Connect("the API key is not a valid header value".to_owned())
        })?;
    request.headers_mut().insert("Authorization", bearer);
    let (mut socket, _response) =
        tokio_tungstenite::connect_async_with_config(request, Some(socket_config()), true)
            .await
            .map_err(|error| ProviderError::Connect(error.to_string()))?;

    let update = session_update(config);
    socket
        .send(Message::text(update.to_string()))
        .await
        .map_err(|error| ProviderError::Transport(error.to_string()))?;
    loop {
        let message = socket
            .next()
            .await
            .ok_or_else(|| ProviderError::Handshake("closed before session.updated".to_owned()))?
            .map_err(|error| ProviderError::Handshake(error.to_string()))?;
        let Message::Text(text) = message else {
            if let Message::Close(_) = message {
                return Err(ProviderError::Handshake(
                    "closed before session.updated".to_owned(),
                ));
            }
            continue;
        };
        let value: Value = serde_json::from_str(text.as_str())
            .map_err(|error| ProviderError::Handshake(error.to_string()))?;
        match value["type"].as_str() {
            Some("session.updated") => return Ok(socket),
            Some("error") => {
                return Err(ProviderError::Handshake(
                    value["error"]["message"]
                        .as_str()
                        .unwrap_or("session.update refused")
                        .to_owned(),
                ));
            }
            _ => {} // session.created and anything else before our update is acknowledged.
        }
    }
}

/// Small socket buffers: tungstenite's default 128 KiB read buffer would dominate a call's
/// memory; audio deltas are a few KiB and the buffer grows for a larger message. A message (or
/// frame) over [`MAX_SERVER_MESSAGE_BYTES`] fails the read instead of growing it further.
fn socket_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(crate::http::SOCKET_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_message_size(Some(MAX_SERVER_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_SERVER_MESSAGE_BYTES))
}

/// The GA `session.update` for a call.
pub fn session_update(config: &OpenAiConfig) -> Value {
    let format = match config.carrier_format.encoding {
        Encoding::Mulaw => json!({"type": "audio/pcmu"}),
        Encoding::L16 => json!({"type": "audio/pcm", "rate": PCM_RATE}),
    };
    let turn_detection = match config.turn_detection.as_str() {
        "semantic_vad" => json!({
            "type": "semantic_vad", "eagerness": "auto", "create_response": true, "interrupt_response": false,
        }),
        _ => json!({
            "type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300, "silence_duration_ms": 500,
            "create_response": true, "interrupt_response": false,
        }),
    };
    let language = config.language.split(['-', '_']).next().unwrap_or("en");
    json!({
        "type": "session.update",
        "session": {
            "type": "realtime",
            "model": config.model,
            "instructions": config.instructions,
            "output_modalities": ["audio"],
            "audio": {
                "input": {
                    "format": format,
                    "noise_reduction": {"type": "near_field"},
                    "transcription": {"model": TRANSCRIPTION_MODEL, "language": language},
                    "turn_detection": turn_detection,
                },
                "output": {
                    "format": format,
                    "voice": config.voice.as_deref().unwrap_or(DEFAULT_VOICE),
                },
            },
            "tools": tools::declarations(),
            "tool_choice": "auto",
        }
    })
}

impl MediaConverter {
    /// The converter for a carrier format: passthrough for μ-law, resampling for L16.
    pub fn new(carrier: AudioFormat) -> Result<Self, ProviderError> {
        if carrier.encoding == Encoding::Mulaw {
            return Ok(Self::Passthrough);
        }
        let resampler_error = |error: crate::audio::resample::ResampleError| {
            ProviderError::Protocol(error.to_string())
        };
        let up = Resampler::new(carrier.sample_rate, PCM_RATE).map_err(resampler_error)?;
        let down = Resampler::new(PCM_RATE, carrier.sample_rate).map_err(resampler_error)?;
        let pcm = AudioFormat::PCM_24K;
        Ok(Self::Resampled(Box::new(Resampling {
            carrier,
            samples_in: vec![0; pcm.frame_bytes() / 2],
            samples_mid: vec![0; pcm.frame_bytes() / 2],
            bytes_out: vec![0; pcm.frame_bytes()],
            agent_frames: Rechunker::new(pcm.frame_bytes()),
            up,
            down,
        })))
    }

    /// Appends the `input_audio_buffer.append` message for one caller frame to `out`: the
    /// carrier's own base64 for μ-law, resampled PCM 24 kHz otherwise.
    pub fn write_append(
        &mut self,
        frame: &[u8],
        base64: &str,
        out: &mut String,
    ) -> Result<(), ProviderError> {
        out.push_str(r#"{"type":"input_audio_buffer.append","audio":""#);
        match self {
            Self::Passthrough => out.push_str(base64),
            Self::Resampled(resampling) => {
                let pcm = resampling.caller_audio(frame)?;
                base64::engine::general_purpose::STANDARD.encode_string(pcm, out);
            }
        }
        out.push_str(r#""}"#);
        Ok(())
    }

    /// Agent audio from the session, converted to the carrier's format.
    pub fn agent_audio(&mut self, decoded: Vec<u8>) -> Result<Vec<u8>, ProviderError> {
        match self {
            Self::Passthrough => Ok(decoded),
            Self::Resampled(resampling) => resampling.agent_audio(&decoded, false),
        }
    }

    /// The end of an item: the last partial frame, padded.
    pub fn flush_agent_audio(&mut self) -> Result<Vec<u8>, ProviderError> {
        match self {
            Self::Passthrough => Ok(Vec::new()),
            Self::Resampled(resampling) => resampling.agent_audio(&[], true),
        }
    }
}

impl Resampling {
    /// One carrier frame → PCM 24 kHz bytes.
    fn caller_audio(&mut self, frame: &[u8]) -> Result<&[u8], ProviderError> {
        let carrier_samples = self.carrier.frame_bytes() / 2;
        let mut samples = [0i16; 320];
        let count = l16::decode_le(
            &frame[..frame.len().min(carrier_samples * 2)],
            &mut samples[..carrier_samples],
        );
        samples[count..carrier_samples].fill(0);
        let written = self
            .up
            .process_frame(&samples[..carrier_samples], &mut self.samples_mid)
            .map_err(|error| ProviderError::Protocol(error.to_string()))?;
        let bytes = l16::encode_le(&self.samples_mid[..written], &mut self.bytes_out);
        Ok(&self.bytes_out[..bytes])
    }

    /// PCM 24 kHz bytes → carrier frames; with `flush`, the remainder is padded and emitted.
    fn agent_audio(&mut self, pcm: &[u8], flush: bool) -> Result<Vec<u8>, ProviderError> {
        let mut out = Vec::with_capacity(pcm.len() / 2 + self.carrier.frame_bytes());
        let Self {
            agent_frames,
            samples_in,
            samples_mid,
            down,
            carrier,
            ..
        } = self;
        let mut failure = None;
        let mut convert = |frame: &[u8]| {
            let count = l16::decode_le(frame, samples_in);
            match down.process_frame(&samples_in[..count], samples_mid) {
                Ok(written) => {
                    let start = out.len();
                    out.resize(start + written * 2, 0);
                    l16::encode_le(&samples_mid[..written], &mut out[start..]);
                }
                Err(error) => failure = Some(error),
            }
        };
        agent_frames.push(pcm, &mut convert);
        if flush {
            agent_frames.flush(0, &mut convert);
        }
        debug_assert_eq!(carrier.encoding, Encoding::L16);
        match failure {
            Some(error) => Err(ProviderError::Protocol(error.to_string())),
            None => Ok(out),
        }
    }
}

/// Decodes the audio of a `response.output_audio.delta` event (for benchmarks and tools).
pub fn audio_delta(text: &str) -> Option<Vec<u8>> {
    let event: ServerEvent<'_> = serde_json::from_str(text).ok()?;
    let delta = event.delta?;
    base64::engine::general_purpose::STANDARD
        .decode(delta.as_bytes())
        .ok()
}

/// The fields of a server event the bridge uses; everything else is ignored.
#[derive(Deserialize)]
struct ServerEvent<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    delta: Option<Cow<'a, str>>,
    item_id: Option<String>,
    response_id: Option<String>,
    transcript: Option<String>,
    text: Option<String>,
    call_id: Option<String>,
    name: Option<String>,
    arguments: Option<String>,
    response: Option<Value>,
    error: Option<Value>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::analysis::{self, Source};
    use crate::simulators::openai_realtime::{FakeRealtimeConfig, FakeRealtimeServer};

    async fn connect(server: &FakeRealtimeServer) -> OpenAiRealtime {
        let config = OpenAiConfig {
            url: Url::parse(&server.url()).unwrap(),
            model: "gpt-realtime".to_owned(),
            api_key: SecretString::from("sk-test"),
            carrier_format: AudioFormat::MULAW_8K,
            instructions: "Be brief.".to_owned(),
            greeting: "Hello.".to_owned(),
            voice: None,
            language: "en-IN".to_owned(),
            turn_detection: "server_vad".to_owned(),
            handshake_timeout: Duration::from_secs(5),
        };
        OpenAiRealtime::connect(config).await.unwrap()
    }

    /// The summary and the analysis, in whichever order they come.
    async fn answers(provider: &mut OpenAiRealtime) -> (String, String) {
        let (mut summary, mut analysis) = (None, None);
        while summary.is_none() || analysis.is_none() {
            let event = tokio::time::timeout(Duration::from_secs(5), provider.next_event())
                .await
                .expect("the answers in time")
                .unwrap();
            match event {
                ProviderEvent::Summary { text } => summary = Some(text),
                ProviderEvent::Analysis { text } => analysis = Some(text),
                _ => {}
            }
        }
        (summary.unwrap(), analysis.unwrap())
    }

    fn text_answers(provider: &mut OpenAiRealtime) -> Vec<ProviderEvent> {
        provider
            .pending
            .drain(..)
            .filter(|event| {
                matches!(
                    event,
                    ProviderEvent::Summary { .. } | ProviderEvent::Analysis { .. }
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn the_analysis_is_a_second_out_of_band_text_response_told_apart_by_its_metadata() {
        let server = FakeRealtimeServer::start(FakeRealtimeConfig::default())
            .await
            .unwrap();
        let mut provider = connect(&server).await;
        // Both asked before either is read: each answer still finds its request.
        provider
            .send(ProviderCommand::RequestSummary)
            .await
            .unwrap();
        provider
            .send(ProviderCommand::RequestAnalysis)
            .await
            .unwrap();
        let (summary, answer) = answers(&mut provider).await;
        assert!(summary.contains("the call ended normally"), "{summary}");
        let analysis = analysis::parse_model_answer(&answer).unwrap();
        assert_eq!(analysis.source, Source::Model);

        let requests: Vec<Value> = server
            .events_of("response.create")
            .into_iter()
            .filter(|event| event["response"]["output_modalities"] == json!(["text"]))
            .collect();
        assert_eq!(requests.len(), 2);
        for (request, purpose) in requests.iter().zip(["summary", "analysis"]) {
            assert_eq!(request["response"]["conversation"], "none");
            assert_eq!(request["response"]["metadata"]["purpose"], purpose);
        }
        assert_eq!(
            requests[1]["response"]["instructions"],
            analysis::instructions()
        );
        server.stop().await;
    }

    #[tokio::test]
    async fn text_answers_follow_the_echoed_metadata_else_the_order_asked() {
        let server = FakeRealtimeServer::start(FakeRealtimeConfig::default())
            .await
            .unwrap();
        let mut provider = connect(&server).await;
        let feed = |provider: &mut OpenAiRealtime, event: Value| {
            provider.handle_server_event(&event.to_string()).unwrap();
        };

        // A server that echoes no metadata: answers in the order asked.
        provider
            .text_requests
            .extend([TextPurpose::Summary, TextPurpose::Analysis]);
        feed(
            &mut provider,
            json!({"type": "response.output_text.done", "response_id": "r1", "text": "first"}),
        );
        feed(
            &mut provider,
            json!({"type": "response.output_text.done", "response_id": "r2", "text": "second"}),
        );
        assert_eq!(
            text_answers(&mut provider),
            [
                ProviderEvent::Summary {
                    text: "first".into()
                },
                ProviderEvent::Analysis {
                    text: "second".into()
                },
            ]
        );

        // Echoed metadata wins over the order: the analysis started first.
        provider
            .text_requests
            .extend([TextPurpose::Summary, TextPurpose::Analysis]);
        feed(
            &mut provider,
            json!({"type": "response.created", "response": {"id": "r3", "metadata": {"purpose": "analysis"}}}),
        );
        feed(
            &mut provider,
            json!({"type": "response.output_text.done", "response_id": "r3", "text": "A"}),
        );
        feed(
            &mut provider,
            json!({"type": "response.output_text.done", "response_id": "r4", "text": "S"}),
        );
        assert_eq!(
            text_answers(&mut provider),
            [
                ProviderEvent::Analysis { text: "A".into() },
                ProviderEvent::Summary { text: "S".into() },
            ]
        );

        // Text nobody asked for is dropped.
        feed(
            &mut provider,
            json!({"type": "response.output_text.done", "response_id": "r5", "text": "?"}),
        );
        assert_eq!(text_answers(&mut provider), []);
        server.stop().await;
    }
}
