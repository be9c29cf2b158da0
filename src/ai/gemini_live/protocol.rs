//! The Gemini Live wire format, without I/O: the client messages the gateway sends, the media
//! conversion both ways, and a [`Translator`] that turns server messages into
//! [`ProviderEvent`]s. Everything here is synchronous and time-free, so it is tested and
//! benchmarked without a socket.
//!
//! Gemini has no response or item ids; a turn of the model (from its first output to
//! `turnComplete`, `interrupted` or a `toolCall`) gets a synthetic id `turn_<n>`, used as both
//! the response id and the item id, numbered across the reconnections of one call.

use std::{
    borrow::Cow,
    collections::{HashMap, VecDeque},
    time::Duration,
};

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::ai::{ProviderError, ProviderEvent, ResponseStatus, tools};
use crate::audio::{AudioFormat, Encoding, framing::Rechunker, l16, mulaw, resample::Resampler};

/// Gemini Live's input rate: PCM16 LE mono at 16 kHz.
pub const INPUT_RATE: u32 = 16_000;
/// Gemini Live's output rate: PCM16 LE mono at 24 kHz.
pub const OUTPUT_RATE: u32 = 24_000;
/// The `mimeType` of caller audio.
pub const INPUT_MIME: &str = "audio/pcm;rate=16000";
/// The voice when the campaign names none (or names one Gemini does not have).
pub const DEFAULT_VOICE: &str = "Kore";
/// The prebuilt voices of the native-audio Live models; a campaign's voice is used only when
/// it is one of them (an OpenAI voice name would make the set-up fail).
pub const VOICES: [&str; 30] = [
    "Zephyr",
    "Puck",
    "Charon",
    "Kore",
    "Fenrir",
    "Leda",
    "Orus",
    "Aoede",
    "Callirrhoe",
    "Autonoe",
    "Enceladus",
    "Iapetus",
    "Umbriel",
    "Algieba",
    "Despina",
    "Erinome",
    "Algenib",
    "Rasalgethi",
    "Laomedeia",
    "Achernar",
    "Alnilam",
    "Schedar",
    "Gacrux",
    "Pulcherrima",
    "Achird",
    "Zubenelgenubi",
    "Vindemiatrix",
    "Sadachbia",
    "Sadaltager",
    "Sulafat",
];

/// Asked of the model after the call; its spoken answer's transcription is the summary.
pub const SUMMARY_PROMPT: &str = "The call is over and the caller cannot hear you. In at most two sentences, summarise the call for the sales team: what the caller said they want and how the call ended. Do not address the caller.";

/// What a session's `setup` says.
#[derive(Debug, Clone)]
pub struct SetupParams<'a> {
    /// With or without the `models/` prefix.
    pub model: &'a str,
    pub instructions: &'a str,
    pub voice: Option<&'a str>,
}

/// The prebuilt voice for a campaign's voice name, matched without regard to case.
pub fn voice_name(requested: Option<&str>) -> &'static str {
    requested
        .and_then(|name| {
            VOICES
                .iter()
                .find(|voice| voice.eq_ignore_ascii_case(name.trim()))
        })
        .copied()
        .unwrap_or(DEFAULT_VOICE)
}

/// The agent's tools as Gemini `functionDeclarations`: the same set and JSON Schemas as every
/// provider, in `parametersJsonSchema`, and `BLOCKING` so the model waits for a result (the
/// gateway acts on a tool only once the model's turn is over).
pub fn function_declarations() -> Value {
    let declarations: Vec<Value> = tools::declarations()
        .as_array()
        .map(|tools| {
            tools
                .iter()
                .map(|tool| {
                    json!({
                        "name": tool["name"],
                        "description": tool["description"],
                        "parametersJsonSchema": tool["parameters"],
                        "behavior": "BLOCKING",
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    Value::Array(declarations)
}

/// The first message of a connection. With `handle`, the session resumes from it (the server
/// keeps the conversation; no greeting is asked for again).
pub fn setup(params: &SetupParams<'_>, handle: Option<&str>) -> Value {
    let model = if params.model.starts_with("models/") {
        params.model.to_owned()
    } else {
        format!("models/{}", params.model)
    };
    let resumption = match handle {
        Some(handle) => json!({"handle": handle}),
        None => json!({}),
    };
    json!({
        "setup": {
            "model": model,
            "generationConfig": {
                "responseModalities": ["AUDIO"],
                "speechConfig": {
                    "voiceConfig": {"prebuiltVoiceConfig": {"voiceName": voice_name(params.voice)}}
                },
            },
            "systemInstruction": {"parts": [{"text": params.instructions}]},
            "tools": [{"functionDeclarations": function_declarations()}],
            "realtimeInputConfig": {
                "automaticActivityDetection": {"disabled": false},
                "activityHandling": "START_OF_ACTIVITY_INTERRUPTS",
            },
            "inputAudioTranscription": {},
            "outputAudioTranscription": {},
            "sessionResumption": resumption,
            "contextWindowCompression": {"slidingWindow": {}},
        }
    })
}

/// A complete user turn of text (`clientContent`): the model answers it at once.
pub fn user_turn(text: &str) -> Value {
    json!({
        "clientContent": {
            "turns": [{"role": "user", "parts": [{"text": text}]}],
            "turnComplete": true,
        }
    })
}

/// The turn asking for the greeting, sent once per call, never on a resumed session.
pub fn greeting_request(greeting: &str) -> Value {
    user_turn(&format!(
        "The call has just been answered. Greet the caller now by saying exactly: \"{greeting}\""
    ))
}

/// The turn asking the agent to say something now (`ProviderCommand::Say`).
pub fn say_request(text: &str) -> Value {
    user_turn(&format!(
        "Say to the caller, in your own words but briefly: \"{text}\""
    ))
}

/// The answer to one function call. Gemini wants `response` to be an object.
pub fn tool_response(call_id: &str, name: &str, output: Value) -> Value {
    let response = if output.is_object() {
        output
    } else {
        json!({"output": output})
    };
    json!({
        "toolResponse": {
            "functionResponses": [{"id": call_id, "name": name, "response": response}]
        }
    })
}

/// What a text answered after the call is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextPurpose {
    Summary,
    Analysis,
}

impl TextPurpose {
    /// The user turn asking for it.
    pub fn prompt(self) -> Cow<'static, str> {
        match self {
            Self::Summary => Cow::Borrowed(SUMMARY_PROMPT),
            Self::Analysis => Cow::Owned(format!(
                "The caller cannot hear you any more. {}",
                crate::outcome::analysis::instructions()
            )),
        }
    }

    fn answer(self, text: String) -> ProviderEvent {
        match self {
            Self::Summary => ProviderEvent::Summary { text },
            Self::Analysis => ProviderEvent::Analysis { text },
        }
    }
}

/// Parses a protobuf `Duration` as JSON spells it (`"12s"`, `"0.5s"`).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let seconds: f64 = text.trim().strip_suffix('s')?.parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds))
}

/// What the connection must do after a server message, beyond the events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    None,
    SetupComplete,
    /// The server will cut the connection after this long (if it said).
    GoAway(Option<Duration>),
}

// === server messages ===

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServerMessage<'a> {
    setup_complete: Option<Value>,
    #[serde(borrow)]
    server_content: Option<ServerContent<'a>>,
    tool_call: Option<ToolCallMessage>,
    tool_call_cancellation: Option<Value>,
    usage_metadata: Option<Value>,
    go_away: Option<GoAway>,
    session_resumption_update: Option<ResumptionUpdate>,
    voice_activity: Option<VoiceActivity>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServerContent<'a> {
    #[serde(borrow)]
    model_turn: Option<ModelTurn<'a>>,
    #[serde(default)]
    turn_complete: bool,
    #[serde(default)]
    interrupted: bool,
    #[serde(default)]
    generation_complete: bool,
    input_transcription: Option<Transcription>,
    output_transcription: Option<Transcription>,
}

#[derive(Deserialize)]
struct ModelTurn<'a> {
    #[serde(default, borrow)]
    parts: Vec<Part<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Part<'a> {
    #[serde(borrow)]
    inline_data: Option<InlineData<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InlineData<'a> {
    #[serde(default, borrow)]
    mime_type: Cow<'a, str>,
    #[serde(borrow)]
    data: Cow<'a, str>,
}

#[derive(Deserialize)]
struct Transcription {
    #[serde(default)]
    text: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ToolCallMessage {
    #[serde(default)]
    function_calls: Vec<FunctionCall>,
}

#[derive(Deserialize)]
struct FunctionCall {
    #[serde(default)]
    id: String,
    name: String,
    #[serde(default)]
    args: Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GoAway {
    time_left: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResumptionUpdate {
    #[serde(default)]
    new_handle: String,
    #[serde(default)]
    resumable: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct VoiceActivity {
    #[serde(default)]
    voice_activity_type: String,
}

/// Whether a server message is `setupComplete` (the handshake's answer).
pub fn is_setup_complete(text: &str) -> Result<bool, ProviderError> {
    let message: ServerMessage<'_> = serde_json::from_str(text)
        .map_err(|error| ProviderError::Handshake(format!("bad set-up answer: {error}")))?;
    Ok(message.setup_complete.is_some())
}

// === the translator ===

/// One turn of the model.
#[derive(Debug)]
struct Turn {
    id: String,
    /// A text asked for after the call: its audio is dropped, its transcription is the text.
    purpose: Option<TextPurpose>,
    transcript: String,
    audio: bool,
    audio_done: bool,
}

/// Server messages → provider events, for one call across its connections.
pub struct Translator {
    media: MediaConverter,
    turns: u64,
    current: Option<Turn>,
    callers: u64,
    caller_text: String,
    caller_speaking: bool,
    /// Function call id → name (the `toolResponse` names the function again).
    calls: HashMap<String, String>,
    /// Texts asked for after the call: the one whose turn is awaited, and those after it
    /// (Gemini answers one turn at a time, so they are asked one after the other).
    text_in_flight: Option<TextPurpose>,
    text_turn_started: bool,
    texts_waiting: VecDeque<TextPurpose>,
    usage: Option<Value>,
    handle: Option<String>,
    /// The handle covers everything sent and received so far (no turn, tool result or text
    /// since it came): resuming from it loses nothing.
    handle_fresh: bool,
    /// Function calls whose results the model still waits for.
    awaiting_results: std::collections::HashSet<String>,
    /// Events for the bridge, in order.
    pub events: VecDeque<ProviderEvent>,
    /// Client messages to send, in order.
    pub outgoing: VecDeque<Value>,
}

impl Translator {
    pub fn new(carrier: AudioFormat) -> Result<Self, ProviderError> {
        Ok(Self {
            media: MediaConverter::new(carrier)?,
            turns: 0,
            current: None,
            callers: 0,
            caller_text: String::new(),
            caller_speaking: false,
            calls: HashMap::new(),
            text_in_flight: None,
            text_turn_started: false,
            texts_waiting: VecDeque::new(),
            usage: None,
            handle: None,
            handle_fresh: false,
            awaiting_results: std::collections::HashSet::new(),
            events: VecDeque::new(),
            outgoing: VecDeque::new(),
        })
    }

    pub fn media(&mut self) -> &mut MediaConverter {
        &mut self.media
    }

    /// The latest resumable session handle.
    pub fn resumption_handle(&self) -> Option<&str> {
        self.handle.as_deref()
    }

    /// No turn of the model is under way.
    pub fn idle(&self) -> bool {
        self.current.is_none()
    }

    /// Moving to a new connection now loses nothing: no turn under way, no function call
    /// waiting for its result, and a resumable handle that came after all of it.
    pub fn ready_to_move(&self) -> bool {
        self.idle() && self.awaiting_results.is_empty() && self.handle_fresh
    }

    /// Something that changes the conversation went out (a tool result, a user turn): the
    /// handle no longer covers it.
    pub fn sent_state(&mut self) {
        self.handle_fresh = false;
    }

    /// The result of `call_id` went out (or will, on the next connection).
    pub fn result_given(&mut self, call_id: &str) {
        self.awaiting_results.remove(call_id);
        self.handle_fresh = false;
    }

    /// The function named by a call id, if the call was seen.
    pub fn function_name(&self, call_id: &str) -> Option<&str> {
        self.calls.get(call_id).map(String::as_str)
    }

    /// Asks for a text after the call; the request goes out now or after the one in flight.
    pub fn request_text(&mut self, purpose: TextPurpose) {
        if self.text_in_flight.is_none() {
            self.send_text_request(purpose);
        } else {
            self.texts_waiting.push_back(purpose);
        }
    }

    fn send_text_request(&mut self, purpose: TextPurpose) {
        self.text_in_flight = Some(purpose);
        self.text_turn_started = false;
        self.outgoing.push_back(user_turn(&purpose.prompt()));
        self.handle_fresh = false;
    }

    /// The gateway cut the agent (barge-in or hand-off): the rest of the turn's audio is not
    /// played, so the frame being assembled is dropped. Gemini has no truncate: the server
    /// stops the turn itself when it hears the caller.
    pub fn drop_pending_audio(&mut self) {
        self.media.clear_agent_audio();
    }

    /// Ends a turn the connection is abandoning (a resumption forced before it finished).
    pub fn abandon_turn(&mut self) {
        self.finish_turn(ResponseStatus::Incomplete);
    }

    /// Handles one server message (a text or binary frame's JSON).
    pub fn handle(&mut self, text: &str) -> Result<Control, ProviderError> {
        let message: ServerMessage<'_> = serde_json::from_str(text)
            .map_err(|error| ProviderError::Protocol(format!("bad server message: {error}")))?;
        if let Some(update) = message.session_resumption_update
            && update.resumable
            && !update.new_handle.is_empty()
        {
            self.handle = Some(update.new_handle);
            self.handle_fresh = self.current.is_none();
        }
        if let Some(usage) = message.usage_metadata {
            self.usage = Some(usage);
        }
        if let Some(activity) = message.voice_activity {
            match activity.voice_activity_type.as_str() {
                "ACTIVITY_START" => self.caller_started(),
                "ACTIVITY_END" => self.caller_stopped(),
                _ => {}
            }
        }
        if let Some(content) = message.server_content {
            self.on_content(content)?;
        }
        if let Some(call) = message.tool_call {
            self.on_tool_call(call);
        }
        if let Some(cancelled) = message.tool_call_cancellation {
            self.events.push_back(ProviderEvent::Warning {
                message: format!("the model withdrew tool calls {}", cancelled["ids"]),
            });
        }
        if let Some(go_away) = message.go_away {
            return Ok(Control::GoAway(
                go_away.time_left.as_deref().and_then(parse_duration),
            ));
        }
        if message.setup_complete.is_some() {
            return Ok(Control::SetupComplete);
        }
        Ok(Control::None)
    }

    fn caller_started(&mut self) {
        if !self.caller_speaking {
            self.caller_speaking = true;
            self.events.push_back(ProviderEvent::CallerSpeechStarted);
        }
    }

    fn caller_stopped(&mut self) {
        if self.caller_speaking {
            self.caller_speaking = false;
            self.events.push_back(ProviderEvent::CallerSpeechStopped);
        }
    }

    /// The caller's words so far become one transcript line.
    fn flush_caller(&mut self) {
        let text = self.caller_text.trim();
        if !text.is_empty() {
            self.callers += 1;
            let event = ProviderEvent::CallerTranscript {
                item_id: format!("caller_{}", self.callers),
                text: text.to_owned(),
            };
            self.events.push_back(event);
        }
        self.caller_text.clear();
    }

    fn start_turn(&mut self) {
        if self.current.is_some() {
            return;
        }
        // The model answers only once the caller's turn is over.
        self.caller_stopped();
        self.flush_caller();
        self.turns += 1;
        self.handle_fresh = false;
        let purpose = match self.text_in_flight {
            Some(purpose) if !self.text_turn_started => {
                self.text_turn_started = true;
                Some(purpose)
            }
            _ => None,
        };
        let id = format!("turn_{}", self.turns);
        if purpose.is_none() {
            self.events.push_back(ProviderEvent::ResponseStarted {
                response_id: id.clone(),
            });
        }
        self.current = Some(Turn {
            id,
            purpose,
            transcript: String::new(),
            audio: false,
            audio_done: false,
        });
    }

    fn on_content(&mut self, content: ServerContent<'_>) -> Result<(), ProviderError> {
        if let Some(transcription) = content.input_transcription {
            self.caller_text.push_str(&transcription.text);
        }
        if content.interrupted {
            // The server heard the caller (or our next turn) and stopped the turn: the gateway
            // decides whether that is a barge-in.
            self.caller_started();
            if self
                .current
                .as_ref()
                .is_some_and(|turn| turn.purpose.is_some())
            {
                // A turn begun before the request, cut by it: the answer is still to come.
                self.current = None;
                self.text_turn_started = false;
            } else if self.current.is_some() {
                self.media.clear_agent_audio();
                if let Some(turn) = &mut self.current {
                    turn.audio_done = true;
                }
                self.finish_turn(ResponseStatus::Cancelled);
            }
        }
        if let Some(model_turn) = content.model_turn {
            for part in model_turn.parts {
                // Text parts of a native-audio model are its thoughts, not speech.
                let Some(data) = part.inline_data else {
                    continue;
                };
                if !data.mime_type.starts_with("audio/pcm") {
                    return Err(ProviderError::Protocol(format!(
                        "unexpected inline data `{}`",
                        data.mime_type
                    )));
                }
                let pcm = base64::engine::general_purpose::STANDARD
                    .decode(data.data.as_bytes())
                    .map_err(|_| ProviderError::Protocol("audio is not base64".to_owned()))?;
                self.start_turn();
                let Some(turn) = &mut self.current else {
                    continue;
                };
                if turn.purpose.is_some() {
                    continue;
                }
                turn.audio = true;
                let (response_id, item_id) = (turn.id.clone(), turn.id.clone());
                let audio = self.media.agent_audio(&pcm, false)?;
                if !audio.is_empty() {
                    self.events.push_back(ProviderEvent::Audio {
                        response_id,
                        item_id,
                        audio,
                    });
                }
            }
        }
        if let Some(transcription) = content.output_transcription
            && !transcription.text.is_empty()
        {
            self.start_turn();
            if let Some(turn) = &mut self.current {
                turn.transcript.push_str(&transcription.text);
            }
        }
        if content.generation_complete {
            self.end_audio()?;
        }
        if content.turn_complete {
            if self.current.is_some() {
                self.finish_turn(ResponseStatus::Completed);
            } else {
                self.flush_caller();
            }
        }
        Ok(())
    }

    /// The turn's audio is complete: its last partial frame, then `AudioDone`.
    fn end_audio(&mut self) -> Result<(), ProviderError> {
        let Some(turn) = &mut self.current else {
            return Ok(());
        };
        if turn.audio_done || !turn.audio || turn.purpose.is_some() {
            return Ok(());
        }
        turn.audio_done = true;
        let id = turn.id.clone();
        let tail = self.media.agent_audio(&[], true)?;
        if !tail.is_empty() {
            self.events.push_back(ProviderEvent::Audio {
                response_id: id.clone(),
                item_id: id.clone(),
                audio: tail,
            });
        }
        self.events.push_back(ProviderEvent::AudioDone {
            response_id: id.clone(),
            item_id: id,
        });
        Ok(())
    }

    fn finish_turn(&mut self, status: ResponseStatus) {
        if status == ResponseStatus::Completed || status == ResponseStatus::Incomplete {
            // A failed conversion of the tail loses at most one frame; the turn still ends.
            let _ = self.end_audio();
        }
        let Some(turn) = self.current.take() else {
            return;
        };
        let text = turn.transcript.trim().to_owned();
        if let Some(purpose) = turn.purpose {
            self.events.push_back(purpose.answer(text));
            self.text_in_flight = None;
            if let Some(next) = self.texts_waiting.pop_front() {
                self.send_text_request(next);
            }
            return;
        }
        if !text.is_empty() {
            self.events.push_back(ProviderEvent::AgentTranscript {
                item_id: turn.id.clone(),
                text,
            });
        }
        self.events.push_back(ProviderEvent::ResponseDone {
            response_id: turn.id,
            status,
            usage: self.usage.take(),
        });
    }

    /// The model's turn ends in function calls: it waits for their results (`BLOCKING`).
    fn on_tool_call(&mut self, call: ToolCallMessage) {
        if call.function_calls.is_empty() {
            return;
        }
        if self
            .current
            .as_ref()
            .is_some_and(|turn| turn.purpose.is_some())
        {
            return; // Nothing may act after the call.
        }
        self.start_turn();
        let Some(turn) = &self.current else {
            return;
        };
        let id = turn.id.clone();
        let _ = self.end_audio();
        for function in call.function_calls {
            self.calls
                .insert(function.id.clone(), function.name.clone());
            self.awaiting_results.insert(function.id.clone());
            let arguments = if function.args.is_null() {
                String::new()
            } else {
                function.args.to_string()
            };
            self.events.push_back(ProviderEvent::ToolCall {
                response_id: id.clone(),
                call_id: function.id,
                name: function.name,
                arguments,
            });
        }
        self.finish_turn(ResponseStatus::Completed);
    }
}

// === media ===

/// Caller audio → 16 kHz PCM messages, and 24 kHz PCM → the carrier's format. Buffers are
/// allocated once per call.
pub struct MediaConverter {
    carrier: AudioFormat,
    /// Carrier → 16 kHz; `None` when the carrier already is L16 at 16 kHz.
    up: Option<Resampler>,
    /// 24 kHz → the carrier's rate.
    down: Resampler,
    samples_in: Vec<i16>,
    samples_out: Vec<i16>,
    bytes: Vec<u8>,
    /// Agent audio arrives in arbitrary chunks; the resampler wants 20 ms frames.
    agent_frames: Rechunker,
}

impl MediaConverter {
    pub fn new(carrier: AudioFormat) -> Result<Self, ProviderError> {
        let resampler_error = |error: crate::audio::resample::ResampleError| {
            ProviderError::Protocol(error.to_string())
        };
        let up = if carrier == AudioFormat::L16_16K {
            None
        } else {
            Some(Resampler::new(carrier.sample_rate, INPUT_RATE).map_err(resampler_error)?)
        };
        let down = Resampler::new(OUTPUT_RATE, carrier.sample_rate).map_err(resampler_error)?;
        let output = AudioFormat::PCM_24K;
        Ok(Self {
            carrier,
            up,
            down,
            samples_in: vec![0; output.frame_samples()],
            samples_out: vec![0; output.frame_samples()],
            bytes: vec![0; output.frame_bytes()],
            agent_frames: Rechunker::new(output.frame_bytes()),
        })
    }

    /// Appends the `realtimeInput` message for one caller frame to `out`: the carrier's own
    /// base64 for L16 at 16 kHz, resampled PCM otherwise.
    pub fn write_audio_message(
        &mut self,
        frame: &[u8],
        base64: &str,
        out: &mut String,
    ) -> Result<(), ProviderError> {
        out.push_str(r#"{"realtimeInput":{"audio":{"mimeType":""#);
        out.push_str(INPUT_MIME);
        out.push_str(r#"","data":""#);
        match &mut self.up {
            None => out.push_str(base64),
            Some(up) => {
                let samples = self.carrier.frame_samples();
                let input = &mut self.samples_in[..samples];
                let count = match self.carrier.encoding {
                    Encoding::Mulaw => mulaw::decode(frame, input),
                    Encoding::L16 => l16::decode_le(frame, input),
                };
                input[count..].fill(0);
                let written = up
                    .process_frame(input, &mut self.samples_out)
                    .map_err(|error| ProviderError::Protocol(error.to_string()))?;
                let bytes = l16::encode_le(&self.samples_out[..written], &mut self.bytes) * 2;
                base64::engine::general_purpose::STANDARD.encode_string(&self.bytes[..bytes], out);
            }
        }
        out.push_str(r#""}}}"#);
        Ok(())
    }

    /// 24 kHz PCM bytes → carrier bytes, whole 20 ms frames; with `flush`, the remainder is
    /// padded with silence and converted too.
    pub fn agent_audio(&mut self, pcm: &[u8], flush: bool) -> Result<Vec<u8>, ProviderError> {
        let carrier = self.carrier;
        let frames = (pcm.len() + self.agent_frames.pending()) / self.agent_frames.frame_bytes()
            + usize::from(flush);
        let mut out = Vec::with_capacity(frames * carrier.frame_bytes());
        let Self {
            agent_frames,
            samples_in,
            samples_out,
            down,
            ..
        } = self;
        let mut failure = None;
        let mut convert = |frame: &[u8]| {
            let count = l16::decode_le(frame, samples_in);
            match down.process_frame(&samples_in[..count], samples_out) {
                Ok(written) => {
                    let start = out.len();
                    match carrier.encoding {
                        Encoding::Mulaw => {
                            out.resize(start + written, mulaw::SILENCE);
                            mulaw::encode(&samples_out[..written], &mut out[start..]);
                        }
                        Encoding::L16 => {
                            out.resize(start + written * 2, 0);
                            l16::encode_le(&samples_out[..written], &mut out[start..]);
                        }
                    }
                }
                Err(error) => failure = Some(error),
            }
        };
        agent_frames.push(pcm, &mut convert);
        if flush {
            agent_frames.flush(0, &mut convert);
        }
        match failure {
            Some(error) => Err(ProviderError::Protocol(error.to_string())),
            None => Ok(out),
        }
    }

    /// Drops agent audio not yet converted (the turn was cut).
    pub fn clear_agent_audio(&mut self) {
        self.agent_frames.clear();
        self.down.reset();
    }
}

#[cfg(test)]
mod properties {
    //! Whatever the server sends, the translator answers events or a typed error, never a
    //! panic; whatever audio arrives, the carrier gets whole frames.

    use proptest::prelude::*;

    use super::*;

    /// Server messages as they might go wrong: any text, and well-formed shapes with any
    /// values in their fields.
    fn message() -> impl Strategy<Value = String> {
        let field = prop_oneof![
            Just("serverContent"),
            Just("toolCall"),
            Just("goAway"),
            Just("sessionResumptionUpdate"),
            Just("voiceActivity"),
            Just("usageMetadata"),
            Just("setupComplete"),
        ];
        let value = prop_oneof![
            Just(
                json!({"modelTurn": {"parts": [{"inlineData": {"mimeType": "audio/pcm;rate=24000", "data": "AAECAwQF"}}]}})
            ),
            Just(json!({"turnComplete": true, "interrupted": true, "generationComplete": true})),
            Just(json!({"functionCalls": [{"id": "x", "name": "end_call", "args": null}]})),
            Just(json!({"timeLeft": "-3s"})),
            Just(json!({"newHandle": "", "resumable": true})),
            Just(json!({"voiceActivityType": 7})),
            any::<i64>().prop_map(|n| json!(n)),
            ".*".prop_map(|text| json!(text)),
            Just(json!(null)),
        ];
        prop_oneof![
            1 => ".*",
            3 => (field, value).prop_map(|(field, value)| json!({field: value}).to_string()),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn the_translator_never_panics(messages in prop::collection::vec(message(), 1..8)) {
            let mut translator = Translator::new(AudioFormat::MULAW_8K).unwrap();
            for text in &messages {
                let _ = translator.handle(text);
            }
        }

        #[test]
        fn agent_audio_becomes_whole_carrier_frames(
            chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..3000), 1..5),
            l16 in any::<bool>(),
        ) {
            let carrier = if l16 { AudioFormat::L16_16K } else { AudioFormat::MULAW_8K };
            let mut media = MediaConverter::new(carrier).unwrap();
            let mut total = 0;
            for chunk in &chunks {
                total += media.agent_audio(chunk, false).unwrap().len();
            }
            total += media.agent_audio(&[], true).unwrap().len();
            prop_assert_eq!(total % carrier.frame_bytes(), 0);
            let input: usize = chunks.iter().map(Vec::len).sum();
            let frames = input.div_ceil(AudioFormat::PCM_24K.frame_bytes());
            prop_assert_eq!(total, frames * carrier.frame_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn translator() -> Translator {
        Translator::new(AudioFormat::MULAW_8K).unwrap()
    }

    fn feed(translator: &mut Translator, message: Value) -> Control {
        translator.handle(&message.to_string()).unwrap()
    }

    fn drain(translator: &mut Translator) -> Vec<ProviderEvent> {
        translator.events.drain(..).collect()
    }

    fn audio_message(ms: usize) -> Value {
        let pcm = vec![0u8; ms * 48];
        json!({"serverContent": {"modelTurn": {"parts": [{"inlineData": {
            "mimeType": "audio/pcm;rate=24000",
            "data": base64::engine::general_purpose::STANDARD.encode(pcm),
        }}]}}})
    }

    #[test]
    fn the_setup_names_model_voice_tools_transcription_resumption_and_compression() {
        let params = SetupParams {
            model: "gemini-3.8-live",
            instructions: "Be brief.",
            voice: Some("puck"),
        };
        let fresh = setup(&params, None);
        let setup_body = &fresh["setup"];
        assert_eq!(setup_body["model"], "models/gemini-3.8-live");
        assert_eq!(
            setup_body["generationConfig"]["responseModalities"],
            json!(["AUDIO"])
        );
        assert_eq!(
            setup_body["generationConfig"]["speechConfig"]["voiceConfig"]["prebuiltVoiceConfig"]["voiceName"],
            "Puck"
        );
        assert_eq!(
            setup_body["systemInstruction"]["parts"][0]["text"],
            "Be brief."
        );
        let functions = setup_body["tools"][0]["functionDeclarations"]
            .as_array()
            .unwrap();
        let names: Vec<&str> = functions
            .iter()
            .map(|f| f["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "transfer_to_human",
                "end_call",
                "schedule_callback",
                "opt_out",
                "record_outcome"
            ]
        );
        assert!(
            functions
                .iter()
                .all(|f| f["parametersJsonSchema"]["type"] == "object"
                    && f["behavior"] == "BLOCKING")
        );
        assert_eq!(setup_body["inputAudioTranscription"], json!({}));
        assert_eq!(setup_body["outputAudioTranscription"], json!({}));
        assert_eq!(setup_body["sessionResumption"], json!({}));
        assert_eq!(
            setup_body["contextWindowCompression"],
            json!({"slidingWindow": {}})
        );

        let resumed = setup(
            &SetupParams {
                model: "models/x",
                voice: Some("marin"),
                ..params
            },
            Some("h-1"),
        );
        assert_eq!(resumed["setup"]["model"], "models/x");
        assert_eq!(resumed["setup"]["sessionResumption"]["handle"], "h-1");
        assert_eq!(
            resumed["setup"]["generationConfig"]["speechConfig"]["voiceConfig"]["prebuiltVoiceConfig"]
                ["voiceName"],
            DEFAULT_VOICE,
            "an OpenAI voice is not sent to Gemini"
        );
    }

    #[test]
    fn client_messages_use_the_documented_camel_case_shapes() {
        assert_eq!(
            tool_response("fc-1", "opt_out", json!({"ok": true})),
            json!({"toolResponse": {"functionResponses": [{"id": "fc-1", "name": "opt_out", "response": {"ok": true}}]}})
        );
        assert_eq!(
            tool_response("fc-2", "x", json!("text"))["toolResponse"]["functionResponses"][0]["response"],
            json!({"output": "text"})
        );
        let greeting = greeting_request("Hello.");
        assert_eq!(greeting["clientContent"]["turnComplete"], true);
        assert_eq!(greeting["clientContent"]["turns"][0]["role"], "user");
        assert!(
            greeting["clientContent"]["turns"][0]["parts"][0]["text"]
                .as_str()
                .unwrap()
                .contains("\"Hello.\"")
        );
        assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("0.5s"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("soon"), None);
    }

    #[test]
    fn caller_audio_becomes_a_16k_pcm_message_and_l16_16k_passes_through() {
        let mut media = MediaConverter::new(AudioFormat::MULAW_8K).unwrap();
        let mut out = String::new();
        media
            .write_audio_message(&[0xFF; 160], "ignored", &mut out)
            .unwrap();
        let message: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(message["realtimeInput"]["audio"]["mimeType"], INPUT_MIME);
        let data = base64::engine::general_purpose::STANDARD
            .decode(message["realtimeInput"]["audio"]["data"].as_str().unwrap())
            .unwrap();
        assert_eq!(data.len(), 640, "20 ms at 16 kHz");

        let mut media = MediaConverter::new(AudioFormat::L16_16K).unwrap();
        let mut out = String::new();
        media
            .write_audio_message(&[0; 640], "AAAA", &mut out)
            .unwrap();
        let message: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(message["realtimeInput"]["audio"]["data"], "AAAA");
    }

    #[test]
    fn agent_audio_becomes_whole_carrier_frames() {
        let mut media = MediaConverter::new(AudioFormat::MULAW_8K).unwrap();
        // 30 ms: one whole frame now, the rest at the flush.
        assert_eq!(media.agent_audio(&[0; 1440], false).unwrap().len(), 160);
        assert_eq!(media.agent_audio(&[], true).unwrap().len(), 160);
        let mut media = MediaConverter::new(AudioFormat::L16_16K).unwrap();
        assert_eq!(media.agent_audio(&[0; 960], false).unwrap().len(), 640);
    }

    #[test]
    fn a_spoken_turn_has_its_audio_transcript_and_usage() {
        let mut t = translator();
        feed(
            &mut t,
            json!({"voiceActivity": {"voiceActivityType": "ACTIVITY_START"}}),
        );
        feed(
            &mut t,
            json!({"serverContent": {"inputTranscription": {"text": "Hello "}}}),
        );
        feed(
            &mut t,
            json!({"serverContent": {"inputTranscription": {"text": "there"}}}),
        );
        feed(&mut t, audio_message(40));
        feed(
            &mut t,
            json!({"serverContent": {"outputTranscription": {"text": "Hi, "}}}),
        );
        feed(
            &mut t,
            json!({"serverContent": {"outputTranscription": {"text": "how can I help?"}}}),
        );
        feed(
            &mut t,
            json!({"serverContent": {"generationComplete": true}}),
        );
        feed(
            &mut t,
            json!({"serverContent": {"turnComplete": true}, "usageMetadata": {"totalTokenCount": 42}}),
        );
        let events = drain(&mut t);
        assert_eq!(events[0], ProviderEvent::CallerSpeechStarted);
        assert_eq!(events[1], ProviderEvent::CallerSpeechStopped);
        assert_eq!(
            events[2],
            ProviderEvent::CallerTranscript {
                item_id: "caller_1".into(),
                text: "Hello there".into()
            }
        );
        assert_eq!(
            events[3],
            ProviderEvent::ResponseStarted {
                response_id: "turn_1".into()
            }
        );
        let audio: usize = events
            .iter()
            .map(|event| match event {
                ProviderEvent::Audio { audio, .. } => audio.len(),
                _ => 0,
            })
            .sum();
        assert_eq!(audio, 320, "40 ms of μ-law, whole frames");
        let tail = &events[events.len() - 3..];
        assert_eq!(
            tail[0],
            ProviderEvent::AudioDone {
                response_id: "turn_1".into(),
                item_id: "turn_1".into()
            }
        );
        assert_eq!(
            tail[1],
            ProviderEvent::AgentTranscript {
                item_id: "turn_1".into(),
                text: "Hi, how can I help?".into()
            }
        );
        assert_eq!(
            tail[2],
            ProviderEvent::ResponseDone {
                response_id: "turn_1".into(),
                status: ResponseStatus::Completed,
                usage: Some(json!({"totalTokenCount": 42}))
            }
        );
        assert!(t.idle());
    }

    #[test]
    fn interrupted_is_caller_speech_and_cancels_the_turn() {
        let mut t = translator();
        feed(&mut t, audio_message(30));
        feed(
            &mut t,
            json!({"serverContent": {"outputTranscription": {"text": "Let me tell"}}}),
        );
        drain(&mut t);
        feed(&mut t, json!({"serverContent": {"interrupted": true}}));
        assert_eq!(
            drain(&mut t),
            [
                ProviderEvent::CallerSpeechStarted,
                ProviderEvent::AgentTranscript {
                    item_id: "turn_1".into(),
                    text: "Let me tell".into()
                },
                ProviderEvent::ResponseDone {
                    response_id: "turn_1".into(),
                    status: ResponseStatus::Cancelled,
                    usage: None
                },
            ]
        );
        // A late turnComplete of the cut turn changes nothing.
        feed(&mut t, json!({"serverContent": {"turnComplete": true}}));
        assert_eq!(drain(&mut t), []);
    }

    #[test]
    fn a_tool_call_ends_the_turn_with_its_calls() {
        let mut t = translator();
        feed(&mut t, audio_message(20));
        feed(
            &mut t,
            json!({"toolCall": {"functionCalls": [{"id": "fc-1", "name": "end_call", "args": {"reason": "done"}}]}}),
        );
        let events = drain(&mut t);
        assert!(events.contains(&ProviderEvent::ToolCall {
            response_id: "turn_1".into(),
            call_id: "fc-1".into(),
            name: "end_call".into(),
            arguments: r#"{"reason":"done"}"#.into()
        }));
        assert!(matches!(
            events.last(),
            Some(ProviderEvent::ResponseDone {
                status: ResponseStatus::Completed,
                ..
            })
        ));
        assert_eq!(t.function_name("fc-1"), Some("end_call"));
        assert!(t.idle());
    }

    #[test]
    fn texts_after_the_call_are_asked_one_at_a_time_and_read_from_the_transcription() {
        let mut t = translator();
        t.request_text(TextPurpose::Summary);
        t.request_text(TextPurpose::Analysis);
        assert_eq!(t.outgoing.len(), 1, "the analysis waits for the summary");
        assert_eq!(
            t.outgoing.pop_front().unwrap()["clientContent"]["turns"][0]["parts"][0]["text"],
            SUMMARY_PROMPT
        );
        feed(&mut t, audio_message(40));
        feed(
            &mut t,
            json!({"serverContent": {"outputTranscription": {"text": "They want a flat."}}}),
        );
        feed(&mut t, json!({"serverContent": {"turnComplete": true}}));
        assert_eq!(
            drain(&mut t),
            [ProviderEvent::Summary {
                text: "They want a flat.".into()
            }],
            "no audio, no response events: nobody hears it"
        );
        assert_eq!(t.outgoing.len(), 1, "now the analysis");
        t.outgoing.clear();
        feed(
            &mut t,
            json!({"serverContent": {"outputTranscription": {"text": "{\"version\":1}"}}}),
        );
        feed(&mut t, json!({"serverContent": {"turnComplete": true}}));
        assert_eq!(
            drain(&mut t),
            [ProviderEvent::Analysis {
                text: "{\"version\":1}".into()
            }]
        );
    }

    #[test]
    fn resumption_handles_and_go_away_are_reported() {
        let mut t = translator();
        assert_eq!(
            feed(&mut t, json!({"setupComplete": {}})),
            Control::SetupComplete
        );
        feed(
            &mut t,
            json!({"sessionResumptionUpdate": {"newHandle": "h1", "resumable": true}}),
        );
        feed(
            &mut t,
            json!({"sessionResumptionUpdate": {"newHandle": "", "resumable": false}}),
        );
        assert_eq!(
            t.resumption_handle(),
            Some("h1"),
            "a non-resumable update keeps the last handle"
        );
        assert_eq!(
            feed(&mut t, json!({"goAway": {"timeLeft": "5s"}})),
            Control::GoAway(Some(Duration::from_secs(5)))
        );
        // Unknown fields are tolerated (the API grows).
        assert_eq!(feed(&mut t, json!({"somethingNew": {}})), Control::None);
    }

    #[test]
    fn a_move_waits_for_a_handle_after_the_last_turn_and_tool_result() {
        let mut t = translator();
        assert!(!t.ready_to_move(), "no handle yet");
        feed(
            &mut t,
            json!({"sessionResumptionUpdate": {"newHandle": "h1", "resumable": true}}),
        );
        assert!(t.ready_to_move());
        feed(&mut t, audio_message(20));
        assert!(!t.ready_to_move(), "a turn under way");
        feed(
            &mut t,
            json!({"toolCall": {"functionCalls": [{"id": "fc-1", "name": "record_outcome", "args": {}}]}}),
        );
        feed(
            &mut t,
            json!({"sessionResumptionUpdate": {"newHandle": "h2", "resumable": true}}),
        );
        assert!(!t.ready_to_move(), "the model waits for a result");
        t.result_given("fc-1");
        assert!(!t.ready_to_move(), "the handle predates the result");
        feed(
            &mut t,
            json!({"sessionResumptionUpdate": {"newHandle": "h3", "resumable": true}}),
        );
        assert!(t.ready_to_move());
        assert_eq!(t.resumption_handle(), Some("h3"));
    }

    #[test]
    fn malformed_messages_are_protocol_errors() {
        let mut t = translator();
        for bad in [
            "{not json",
            r#"{"serverContent": {"turnComplete": "yes"}}"#,
            r#"{"serverContent": {"modelTurn": {"parts": [{"inlineData": {"mimeType": "audio/pcm;rate=24000", "data": "***"}}]}}}"#,
            r#"{"serverContent": {"modelTurn": {"parts": [{"inlineData": {"mimeType": "audio/mpeg", "data": "AAAA"}}]}}}"#,
            "[]",
        ] {
            assert!(
                matches!(t.handle(bad), Err(ProviderError::Protocol(_))),
                "{bad}"
            );
        }
    }
}
