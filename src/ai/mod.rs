//! The AI side of a call: the [`VoiceProvider`] trait every pipeline implements, the events
//! and commands that cross it, the agent's tools and its instructions.
//!
//! **Invariant:** a provider never touches Plivo or the database. It gets caller audio in the
//! carrier's format and gives back agent audio in the same format, plus transcripts, tool calls
//! and turn events; the call bridge does everything else.

pub mod gemini_live;
pub mod local;
pub mod openai_realtime;
pub mod prompt;
pub mod tools;

use std::{future::Future, pin::Pin};

use serde_json::Value;

/// A boxed future, so that `VoiceProvider` stays object-safe.
pub type ProviderFuture<'a, T> =
    Pin<Box<dyn Future<Output = Result<T, ProviderError>> + Send + 'a>>;

/// One AI voice pipeline attached to one call.
pub trait VoiceProvider: Send {
    /// `openai`, `gemini` or `local`, for logs and metrics.
    fn kind(&self) -> &'static str;

    /// Sends one frame of caller audio: the raw bytes in the carrier format, and the same bytes
    /// as the base64 text the carrier sent (so a passthrough provider need not re-encode).
    fn send_audio<'a>(&'a mut self, frame: &'a [u8], base64: &'a str) -> ProviderFuture<'a, ()>;

    /// Sends a command.
    fn send(&mut self, command: ProviderCommand) -> ProviderFuture<'_, ()>;

    /// The next event. Cancel-safe: dropping the future loses nothing, so it can sit in a
    /// `select!` beside the carrier socket and the timers.
    fn next_event(&mut self) -> ProviderFuture<'_, ProviderEvent>;
}

/// What the bridge asks of a provider.
#[derive(Debug, Clone, PartialEq)]
pub enum ProviderCommand {
    /// The caller barged in: forget what they did not hear of `item_id` (only its first
    /// `audio_end_ms` were played) and, if a response is still running, cancel it.
    Interrupt {
        item_id: String,
        audio_end_ms: u64,
        cancel_response: bool,
    },
    /// The result of a tool call.
    ToolResult { call_id: String, output: Value },
    /// Stop the response being generated, if any (nothing of it was played yet).
    CancelResponse,
    /// Let the agent speak again (after tool results).
    Continue,
    /// Have the agent say this now, in its own voice (a callback offer when no human is free).
    Say(String),
    /// Ask for a short text-only summary of the call; answered by [`ProviderEvent::Summary`].
    RequestSummary,
    /// Ask for the post-call analysis ([`crate::outcome::analysis::instructions`]) as a
    /// text-only answer; answered by [`ProviderEvent::Analysis`].
    RequestAnalysis,
}

/// How a response ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseStatus {
    Completed,
    Cancelled,
    Failed,
    Incomplete,
}

impl ResponseStatus {
    pub fn parse(text: &str) -> Self {
        match text {
            "completed" => Self::Completed,
            "cancelled" => Self::Cancelled,
            "incomplete" => Self::Incomplete,
            _ => Self::Failed,
        }
    }
}

/// What a provider tells the bridge.
#[derive(Debug, Clone, PartialEq)]
pub enum ProviderEvent {
    /// A response (a turn of the agent) began.
    ResponseStarted { response_id: String },
    /// Agent audio in the carrier's format.
    Audio {
        response_id: String,
        item_id: String,
        audio: Vec<u8>,
    },
    /// The agent finished producing audio for an item.
    AudioDone {
        response_id: String,
        item_id: String,
    },
    /// What the agent said in an item.
    AgentTranscript { item_id: String, text: String },
    /// The caller started speaking (voice activity).
    CallerSpeechStarted,
    /// The caller stopped speaking.
    CallerSpeechStopped,
    /// What the caller said.
    CallerTranscript { item_id: String, text: String },
    /// The agent called a tool. Side effects wait for the response to complete.
    ToolCall {
        response_id: String,
        call_id: String,
        name: String,
        arguments: String,
    },
    /// A response ended; `usage` is the provider's accounting, if any.
    ResponseDone {
        response_id: String,
        status: ResponseStatus,
        usage: Option<Value>,
    },
    /// The text summary asked for with [`ProviderCommand::RequestSummary`].
    Summary { text: String },
    /// The raw answer to [`ProviderCommand::RequestAnalysis`], unchecked: the gateway reads it
    /// with [`crate::outcome::analysis::parse_model_answer`]. Empty when the provider has no
    /// model to ask (the local pipeline): the gateway then uses
    /// [`crate::outcome::analysis::deterministic`].
    Analysis { text: String },
    /// A recoverable error (logged, the call goes on).
    Warning { message: String },
}

/// Opens a provider for a call.
pub trait ProviderFactory: Send + Sync {
    fn connect(
        &self,
        context: prompt::CallContext,
        carrier_format: crate::audio::AudioFormat,
    ) -> ProviderFuture<'static, Box<dyn VoiceProvider>>;
}

/// The provider chosen by `VG_AI_PROVIDER`.
pub struct ConfiguredProvider {
    settings: crate::config::AiSettings,
    handshake_timeout: std::time::Duration,
    /// Loaded at start-up when the provider is `local`.
    local: Option<std::sync::Arc<local::LocalEngine>>,
}

impl ConfiguredProvider {
    pub fn new(
        settings: crate::config::AiSettings,
        handshake_timeout: std::time::Duration,
        local: Option<std::sync::Arc<local::LocalEngine>>,
    ) -> Self {
        Self {
            settings,
            handshake_timeout,
            local,
        }
    }
}

impl ProviderFactory for ConfiguredProvider {
    fn connect(
        &self,
        context: prompt::CallContext,
        carrier_format: crate::audio::AudioFormat,
    ) -> ProviderFuture<'static, Box<dyn VoiceProvider>> {
        use crate::config::AiProviderKind;
        let settings = self.settings.clone();
        let handshake_timeout = self.handshake_timeout;
        let local = self.local.clone();
        Box::pin(async move {
            // The campaign's provider wins; a provider not configured here is refused, never
            // swapped for another.
            let provider = context.provider.unwrap_or(settings.provider);
            if !settings.is_configured(provider) {
                return Err(ProviderError::Connect(format!(
                    "the campaign's provider `{provider}` is not configured on this gateway"
                )));
            }
            match provider {
                AiProviderKind::Local => {
                    let engine = local.ok_or_else(|| {
                        ProviderError::Connect("the local pipeline was not loaded".to_owned())
                    })?;
                    Ok(Box::new(engine.open(context, carrier_format)) as Box<dyn VoiceProvider>)
                }
                AiProviderKind::OpenAi => {
                    let config = openai_realtime::OpenAiConfig {
                        url: settings.openai.realtime_url.clone(),
                        model: settings.openai.model.clone(),
                        api_key: settings.openai.api_key.clone().ok_or_else(|| {
                            ProviderError::Connect("OPENAI_API_KEY is unset".to_owned())
                        })?,
                        carrier_format,
                        instructions: context.instructions(),
                        greeting: context.greeting(),
                        voice: context.agent_voice.clone(),
                        language: context.language.clone(),
                        turn_detection: context.turn_detection.clone(),
                        handshake_timeout,
                    };
                    let provider = openai_realtime::OpenAiRealtime::connect(config).await?;
                    Ok(Box::new(provider) as Box<dyn VoiceProvider>)
                }
                AiProviderKind::Gemini => {
                    let config = gemini_live::GeminiConfig {
                        url: settings.gemini.live_url.clone(),
                        model: settings.gemini.model.clone(),
                        api_key: settings.gemini.api_key.clone().ok_or_else(|| {
                            ProviderError::Connect("GEMINI_API_KEY is unset".to_owned())
                        })?,
                        carrier_format,
                        instructions: context.instructions(),
                        greeting: context.greeting(),
                        voice: context.agent_voice.clone(),
                        handshake_timeout,
                        connection_lifetime: gemini_live::DEFAULT_CONNECTION_LIFETIME,
                    };
                    let provider = gemini_live::GeminiLive::connect(config).await?;
                    Ok(Box::new(provider) as Box<dyn VoiceProvider>)
                }
            }
        })
    }
}

/// Why a provider failed. Each ends only the call it belongs to.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("cannot connect to the provider: {0}")]
    Connect(String),
    #[error("the provider did not complete the session set-up: {0}")]
    Handshake(String),
    #[error("the provider closed the session: {0}")]
    Closed(String),
    #[error("provider protocol error: {0}")]
    Protocol(String),
    #[error("provider transport error: {0}")]
    Transport(String),
}
