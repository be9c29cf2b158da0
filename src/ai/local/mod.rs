//! The `local` provider: a complete voice pipeline that runs inside the gateway, offline.
//!
//! Caller audio → 16 kHz → voice activity (earshot) → end of turn ([`speech::endpoint`]) →
//! Whisper tiny.en → MiniLM intent → the campaign's [`dialogue`] → flite → carrier audio.
//!
//! The cheap per-frame part (decode, resample, VAD, endpointing, a few µs) runs inline in
//! [`VoiceProvider::send_audio`], like the other providers' encoding does. Everything that
//! costs milliseconds runs on the [`pool::InferencePool`]. A task per call owns the
//! conversation and speaks through the same events OpenAI Realtime produces, so the bridge's
//! barge-in, tools, transfer and logging paths are the ones every provider uses.

pub mod carrier;
pub mod dialogue;
pub mod pool;

use std::{
    collections::VecDeque,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use dashmap::DashMap;
use speech::{
    endpoint::{EndpointConfig, EndpointEvent, Endpointer},
    intent::{ExtraExamples, Intent, IntentClassifier, MiniLm},
    models::ModelPaths,
    stt::Whisper,
    tts::{Synthesizer, Voice},
    vad::{VadConfig, VoiceDetector},
};
use tokio::sync::mpsc;
use tracing::Instrument;

use self::{
    dialogue::{Dialogue, Reply, Script},
    pool::{InferencePool, PoolError},
};
use super::{
    ProviderCommand, ProviderError, ProviderEvent, ProviderFuture, ResponseStatus, VoiceProvider,
    prompt::CallContext,
};
use crate::audio::AudioFormat;

/// The models every call shares.
pub struct Models {
    pub whisper: Whisper,
    pub classifier: IntentClassifier,
    pub tts: Synthesizer,
}

/// Why the local pipeline cannot start.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error(transparent)]
    Models(#[from] speech::models::ModelError),
    #[error("speech-to-text: {0}")]
    Stt(#[from] speech::stt::SttError),
    #[error("intent model: {0}")]
    Intent(#[from] speech::intent::IntentError),
    #[error("text-to-speech: {0}")]
    Tts(#[from] speech::tts::TtsError),
}

/// Synthesised phrases kept per voice and format; greetings and closings repeat on every call.
const PHRASE_CACHE_ENTRIES: usize = 2048;
/// Agent audio goes to the bridge in pieces of about this long, so a barge-in stops the rest.
const AUDIO_PIECE_MS: usize = 500;
/// Events from a call's conversation task to the bridge (a reply is a dozen or so).
const EVENT_QUEUE: usize = 64;
/// Utterances and commands waiting for a call's conversation task.
const INPUT_QUEUE: usize = 64;
/// Inference jobs waiting for a thread, across all calls.
const POOL_QUEUE: usize = 256;

/// The shared half of the local provider: models, the inference pool, the phrase cache.
pub struct LocalEngine {
    pool: InferencePool,
    phrases: DashMap<(Voice, AudioFormat, String), Arc<[u8]>>,
    endpoint: EndpointConfig,
}

impl LocalEngine {
    /// Loads the models from `models_dir` (blocking: a second or two) and starts `threads`
    /// inference threads. A missing model is an error naming the command that fetches it.
    pub fn load(models_dir: &Path, threads: usize) -> Result<Arc<Self>, LocalError> {
        let paths = ModelPaths::in_dir(models_dir)?;
        let started = Instant::now();
        let whisper = Whisper::load(&paths.whisper)?;
        let embedder = Arc::new(MiniLm::load(&paths.minilm)?);
        let classifier = IntentClassifier::with_default_examples(embedder)?;
        let tts = Synthesizer::new()?;
        let models = Arc::new(Models {
            whisper,
            classifier,
            tts,
        });
        let pool = InferencePool::start(models, threads, POOL_QUEUE)?;
        tracing::info!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            threads,
            "local voice pipeline loaded"
        );
        Ok(Arc::new(Self {
            pool,
            phrases: DashMap::new(),
            endpoint: EndpointConfig::default(),
        }))
    }

    /// The engine for `models_dir`, loaded once per process: the models are read-only, so
    /// every gateway in the process (tests run several) shares them and their threads.
    pub fn shared(models_dir: &Path, threads: usize) -> Result<Arc<Self>, LocalError> {
        static LOADED: std::sync::Mutex<Vec<(std::path::PathBuf, Arc<LocalEngine>)>> =
            std::sync::Mutex::new(Vec::new());
        let mut loaded = LOADED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, engine)) = loaded.iter().find(|(dir, _)| dir == models_dir) {
            return Ok(Arc::clone(engine));
        }
        let engine = Self::load(models_dir, threads)?;
        loaded.push((models_dir.to_owned(), Arc::clone(&engine)));
        Ok(engine)
    }

    /// Opens the pipeline for one call.
    pub fn open(self: &Arc<Self>, context: CallContext, format: AudioFormat) -> LocalProvider {
        LocalProvider::open(Arc::clone(self), context, format)
    }

    /// `text` in `voice`, in the carrier's format: from the cache, or synthesised on the pool.
    pub async fn phrase(
        &self,
        text: &str,
        voice: Voice,
        format: AudioFormat,
    ) -> Result<Arc<[u8]>, TurnError> {
        let key = (voice, format, text.to_owned());
        if let Some(audio) = self.phrases.get(&key) {
            return Ok(Arc::clone(&audio));
        }
        let owned = text.to_owned();
        let (samples, _) = self
            .pool
            .run(move |worker| worker.models.tts.synthesize(&owned, voice))
            .await?;
        let audio: Arc<[u8]> = carrier::encode_speech(&samples?, format)
            .map_err(|error| TurnError::Audio(error.to_string()))?
            .into();
        if self.phrases.len() >= PHRASE_CACHE_ENTRIES {
            // Crude but bounded: campaigns reuse a few dozen phrases.
            self.phrases.clear();
        }
        self.phrases.insert(key, Arc::clone(&audio));
        Ok(audio)
    }

    /// Transcribes an utterance (16 kHz) and classifies it, on one trip to the pool.
    pub async fn understand(
        &self,
        audio: Vec<f32>,
        prompt: String,
        extra_examples: Arc<ExtraExamples>,
    ) -> Result<Understanding, TurnError> {
        let (result, queued) = self
            .pool
            .run(move |worker| -> Result<Understanding, TurnError> {
                let started = Instant::now();
                let text = worker.transcriber.transcribe(&audio, &prompt)?;
                let stt = started.elapsed();
                let classified = worker
                    .models
                    .classifier
                    .classify_with(&text, &extra_examples)?;
                Ok(Understanding {
                    text,
                    intent: classified.intent,
                    score: classified.score,
                    stt,
                    intent_time: started.elapsed() - stt,
                    queued: Duration::ZERO,
                })
            })
            .await?;
        result.map(|understanding| Understanding {
            queued,
            ..understanding
        })
    }
}

/// What the caller said and meant, with what it cost.
#[derive(Debug, Clone)]
pub struct Understanding {
    pub text: String,
    /// `None`: below the classifier's threshold.
    pub intent: Option<Intent>,
    pub score: f32,
    pub stt: Duration,
    pub intent_time: Duration,
    /// Time waiting for an inference thread.
    pub queued: Duration,
}

/// Why one turn failed; the call goes on (the bridge logs a warning).
#[derive(Debug, thiserror::Error)]
pub enum TurnError {
    #[error(transparent)]
    Pool(#[from] PoolError),
    #[error("speech-to-text failed: {0}")]
    Stt(#[from] speech::stt::SttError),
    #[error("intent classification failed: {0}")]
    Intent(#[from] speech::intent::IntentError),
    #[error("text-to-speech failed: {0}")]
    Tts(#[from] speech::tts::TtsError),
    #[error("audio conversion failed: {0}")]
    Audio(String),
    /// The bridge is gone; the call is over.
    #[error("the call ended")]
    Closed,
}

/// What the per-call task works through, in order.
enum Input {
    /// The caller paused: transcribe ahead, the turn may be over.
    Pause(Heard),
    /// The caller spoke again after a pause: the early transcription is void.
    Resumed,
    /// The turn is over.
    Utterance(Heard),
    Command(ProviderCommand),
}

/// An utterance, with where its voice ended.
struct Heard {
    audio: Vec<f32>,
    /// The endpointer's sample index just after the last voiced frame: the same for a pause
    /// and the end that follows it, when nobody spoke in between.
    end_of_voice: u64,
    voice_ended: Instant,
}

/// The local pipeline on one call.
pub struct LocalProvider {
    inbound: carrier::Inbound,
    detector: VoiceDetector,
    endpointer: Endpointer,
    /// Speech-start/stop events found inline, handed out before the task's events.
    pending: VecDeque<ProviderEvent>,
    speech_started: bool,
    events: mpsc::Receiver<ProviderEvent>,
    inputs: mpsc::Sender<Input>,
    /// Bumped when the bridge cancels the running response; the task checks it between
    /// pieces of audio.
    interrupts: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl LocalProvider {
    fn open(engine: Arc<LocalEngine>, context: CallContext, format: AudioFormat) -> Self {
        let (event_sender, events) = mpsc::channel(EVENT_QUEUE);
        let (inputs, input_receiver) = mpsc::channel(INPUT_QUEUE);
        let interrupts = Arc::new(AtomicU64::new(0));
        let script = Script::for_call(&context);
        let voice = context
            .agent_voice
            .as_deref()
            .and_then(Voice::from_name)
            .unwrap_or(Voice::Slt);
        let conversation = Conversation {
            dialogue: Dialogue::new(&context, script.clone()),
            prompt: script.stt_prompt(),
            campaign_examples: script.examples.clone(),
            extra_examples: Arc::new(ExtraExamples::default()),
            engine: Arc::clone(&engine),
            events: event_sender,
            interrupts: Arc::clone(&interrupts),
            voice,
            format,
            responses: 0,
            last_had_tools: false,
            utterances: 0,
            ahead: None,
        };
        let task = tokio::spawn(
            conversation
                .run(input_receiver)
                .instrument(tracing::Span::current()),
        );
        Self {
            inbound: carrier::Inbound::new(format).expect("carrier formats are 8, 16 or 24 kHz"),
            detector: VoiceDetector::new(VadConfig::default()),
            endpointer: Endpointer::new(engine.endpoint),
            pending: VecDeque::new(),
            speech_started: false,
            events,
            inputs,
            interrupts,
            task,
        }
    }

    fn on_endpoint(&mut self, event: EndpointEvent) {
        match event {
            EndpointEvent::SpeechStarted => {
                self.speech_started = true;
                self.pending.push_back(ProviderEvent::CallerSpeechStarted);
            }
            EndpointEvent::SpeechEnded(utterance) => {
                if std::mem::take(&mut self.speech_started) {
                    self.pending.push_back(ProviderEvent::CallerSpeechStopped);
                }
                let heard = self.heard(utterance);
                self.forward(Input::Utterance(heard));
            }
            EndpointEvent::Paused(utterance) => {
                let heard = self.heard(utterance);
                self.forward(Input::Pause(heard));
            }
            EndpointEvent::Resumed => self.forward(Input::Resumed),
            EndpointEvent::Discarded => {
                if std::mem::take(&mut self.speech_started) {
                    self.pending.push_back(ProviderEvent::CallerSpeechStopped);
                }
            }
        }
    }
}

impl LocalProvider {
    fn heard(&self, utterance: speech::endpoint::Utterance) -> Heard {
        // The endpointer reports `trailing` after the last voiced frame.
        let trailing_samples = self
            .endpointer
            .samples_seen()
            .saturating_sub(utterance.end_of_voice_sample);
        let trailing =
            Duration::from_secs_f64(trailing_samples as f64 / f64::from(speech::SAMPLE_RATE));
        Heard {
            audio: utterance.audio,
            end_of_voice: utterance.end_of_voice_sample,
            voice_ended: Instant::now()
                .checked_sub(trailing)
                .unwrap_or_else(Instant::now),
        }
    }

    fn forward(&mut self, input: Input) {
        if self.inputs.try_send(input).is_err() {
            self.pending.push_back(ProviderEvent::Warning {
                message: "the local pipeline is behind: caller audio was dropped".into(),
            });
        }
    }
}

impl Drop for LocalProvider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl VoiceProvider for LocalProvider {
    fn kind(&self) -> &'static str {
        "local"
    }

    fn send_audio<'a>(&'a mut self, frame: &'a [u8], _base64: &'a str) -> ProviderFuture<'a, ()> {
        let mut endpoints = Vec::new();
        let Self {
            inbound,
            detector,
            endpointer,
            ..
        } = self;
        inbound.push(frame, |speech| {
            detector.push(speech, |vad_frame, decision| {
                if let Some(event) = endpointer.push(vad_frame, decision.voiced) {
                    endpoints.push(event);
                }
            });
        });
        for event in endpoints {
            self.on_endpoint(event);
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn send(&mut self, command: ProviderCommand) -> ProviderFuture<'_, ()> {
        if let ProviderCommand::Interrupt {
            cancel_response: true,
            ..
        }
        | ProviderCommand::CancelResponse = &command
        {
            self.interrupts.fetch_add(1, Ordering::SeqCst);
        }
        // Commands are a handful per turn; a full queue means the task is stuck.
        let result = self
            .inputs
            .try_send(Input::Command(command))
            .map_err(|error| ProviderError::Transport(format!("local pipeline: {error}")));
        Box::pin(std::future::ready(result))
    }

    fn next_event(&mut self) -> ProviderFuture<'_, ProviderEvent> {
        Box::pin(async move {
            if let Some(event) = self.pending.pop_front() {
                return Ok(event);
            }
            self.events
                .recv()
                .await
                .ok_or_else(|| ProviderError::Closed("the local pipeline stopped".into()))
        })
    }
}

/// The per-call task: the dialogue, and the turns it speaks.
struct Conversation {
    dialogue: Dialogue,
    prompt: String,
    /// The campaign's own example phrases, embedded on the pool when the call starts.
    campaign_examples: Vec<(Intent, String)>,
    extra_examples: Arc<ExtraExamples>,
    engine: Arc<LocalEngine>,
    events: mpsc::Sender<ProviderEvent>,
    interrupts: Arc<AtomicU64>,
    voice: Voice,
    format: AudioFormat,
    responses: u64,
    /// Whether the last response carried tool calls (its item is `local-item-{responses}`).
    last_had_tools: bool,
    utterances: u64,
    /// What a pause was understood as, keyed by the end of its voice.
    ahead: Option<(u64, Understanding)>,
}

impl Conversation {
    async fn run(mut self, mut inputs: mpsc::Receiver<Input>) {
        let greeting = self.dialogue.greeting();
        if self.speak(greeting, None).await.is_err() {
            return;
        }
        if !self.campaign_examples.is_empty() {
            let examples = std::mem::take(&mut self.campaign_examples);
            match self
                .engine
                .pool
                .run(move |worker| worker.models.classifier.embed_examples(&examples))
                .await
            {
                Ok((Ok(extra), _)) => self.extra_examples = Arc::new(extra),
                Ok((Err(error), _)) => tracing::warn!(%error, "campaign examples ignored"),
                Err(error) => tracing::warn!(%error, "campaign examples ignored"),
            }
        }
        while let Some(input) = inputs.recv().await {
            let result = match input {
                Input::Pause(heard) => self.hear_ahead(heard).await,
                Input::Resumed => {
                    self.ahead = None;
                    Ok(())
                }
                Input::Utterance(heard) => self.hear(heard).await,
                Input::Command(command) => self.obey(command).await,
            };
            match result {
                Ok(()) => {}
                Err(TurnError::Closed) => return,
                Err(error) => {
                    let warning = ProviderEvent::Warning {
                        message: error.to_string(),
                    };
                    if self.events.send(warning).await.is_err() {
                        return;
                    }
                }
            }
        }
    }

    async fn emit(&self, event: ProviderEvent) -> Result<(), TurnError> {
        self.events.send(event).await.map_err(|_| TurnError::Closed)
    }

    /// Transcribes a paused utterance ahead of the end of turn; the end uses the result if
    /// the caller said nothing more.
    async fn hear_ahead(&mut self, heard: Heard) -> Result<(), TurnError> {
        let understood = self
            .engine
            .understand(
                heard.audio,
                self.prompt.clone(),
                Arc::clone(&self.extra_examples),
            )
            .await?;
        self.ahead = Some((heard.end_of_voice, understood));
        Ok(())
    }

    async fn hear(&mut self, utterance: Heard) -> Result<(), TurnError> {
        let voice_ended = utterance.voice_ended;
        let heard = match self.ahead.take() {
            Some((end_of_voice, understood)) if end_of_voice == utterance.end_of_voice => {
                metrics::counter!(crate::metrics::LOCAL_TURNS_HEARD_AHEAD).increment(1);
                understood
            }
            _ => {
                self.engine
                    .understand(
                        utterance.audio,
                        self.prompt.clone(),
                        Arc::clone(&self.extra_examples),
                    )
                    .await?
            }
        };
        self.utterances += 1;
        tracing::debug!(
            text = %heard.text,
            intent = heard.intent.map(Intent::as_str),
            score = heard.score,
            stt_ms = heard.stt.as_millis() as u64,
            intent_ms = heard.intent_time.as_millis() as u64,
            queued_ms = heard.queued.as_millis() as u64,
            "caller turn understood"
        );
        metrics::histogram!(crate::metrics::LOCAL_STT_SECONDS).record(heard.stt.as_secs_f64());
        if heard.text.trim().is_empty() {
            return Ok(());
        }
        self.emit(ProviderEvent::CallerTranscript {
            item_id: format!("local-caller-{}", self.utterances),
            text: heard.text.clone(),
        })
        .await?;
        if let Some(reply) = self.dialogue.on_caller(&heard.text, heard.intent) {
            self.speak(reply, Some(voice_ended)).await?;
        }
        Ok(())
    }

    async fn obey(&mut self, command: ProviderCommand) -> Result<(), TurnError> {
        match command {
            // The running response already saw the interrupt counter move. A cancelled
            // response's tools do not run (the session skips them, or they were never sent):
            // the dialogue must know when they were its last reply's.
            ProviderCommand::Interrupt {
                item_id,
                cancel_response,
                ..
            } => {
                let last_item = format!("local-item-{}", self.responses);
                if cancel_response && self.last_had_tools && item_id == last_item {
                    self.dialogue.on_cut_short();
                }
                Ok(())
            }
            ProviderCommand::CancelResponse => Ok(()),
            ProviderCommand::ToolResult { call_id, output } => {
                let name = call_id.rsplit(':').next().unwrap_or_default().to_owned();
                self.dialogue.on_tool_result(&name, &output);
                Ok(())
            }
            ProviderCommand::Continue => match self.dialogue.on_continue() {
                Some(reply) => self.speak(reply, None).await,
                None => Ok(()),
            },
            ProviderCommand::Say(text) => {
                let reply = self.dialogue.on_say(&text);
                self.speak(reply, None).await
            }
            ProviderCommand::RequestSummary => {
                let text = self.dialogue.summary();
                self.emit(ProviderEvent::Summary { text }).await
            }
            // No model to ask: an empty answer sends the gateway to its deterministic analysis,
            // which knows everything the dialogue does (turns, tools, the end).
            ProviderCommand::RequestAnalysis => {
                self.emit(ProviderEvent::Analysis {
                    text: String::new(),
                })
                .await
            }
        }
    }

    /// Speaks a reply as one response: audio sentence by sentence (the first is out while the
    /// next is synthesised), then the transcript and the tool calls. A barge-in stops the
    /// audio and cancels the response, so its tools do not run.
    async fn speak(&mut self, reply: Reply, voice_ended: Option<Instant>) -> Result<(), TurnError> {
        self.responses += 1;
        self.last_had_tools = !reply.tools.is_empty();
        let response_id = format!("local-response-{}", self.responses);
        let item_id = format!("local-item-{}", self.responses);
        let generation = self.interrupts.load(Ordering::SeqCst);
        let cancelled = || self.interrupts.load(Ordering::SeqCst) != generation;
        self.emit(ProviderEvent::ResponseStarted {
            response_id: response_id.clone(),
        })
        .await?;
        let piece = self.format.frame_bytes() * AUDIO_PIECE_MS / crate::audio::FRAME_MS as usize;
        let mut interrupted = false;
        let mut first = true;
        'sentences: for sentence in sentences(&reply.text) {
            let audio = self
                .engine
                .phrase(sentence, self.voice, self.format)
                .await?;
            for chunk in audio.chunks(piece) {
                if cancelled() {
                    interrupted = true;
                    break 'sentences;
                }
                if first {
                    first = false;
                    if let Some(voice_ended) = voice_ended {
                        let latency = voice_ended.elapsed();
                        metrics::histogram!(crate::metrics::LOCAL_REPLY_LATENCY_SECONDS)
                            .record(latency.as_secs_f64());
                        tracing::debug!(
                            latency_ms = latency.as_millis() as u64,
                            "first reply audio"
                        );
                    }
                }
                self.emit(ProviderEvent::Audio {
                    response_id: response_id.clone(),
                    item_id: item_id.clone(),
                    audio: chunk.to_vec(),
                })
                .await?;
            }
        }
        if !interrupted {
            self.emit(ProviderEvent::AudioDone {
                response_id: response_id.clone(),
                item_id: item_id.clone(),
            })
            .await?;
        }
        self.emit(ProviderEvent::AgentTranscript {
            item_id,
            text: reply.text.clone(),
        })
        .await?;
        if !interrupted {
            for (index, tool) in reply.tools.iter().enumerate() {
                self.emit(ProviderEvent::ToolCall {
                    response_id: response_id.clone(),
                    // The tool's name rides in the id, so its result finds its way back.
                    call_id: format!("{response_id}-{index}:{}", tool.name),
                    name: tool.name.to_owned(),
                    arguments: tool.arguments.to_string(),
                })
                .await?;
            }
        }
        let status = if interrupted {
            ResponseStatus::Cancelled
        } else {
            ResponseStatus::Completed
        };
        self.emit(ProviderEvent::ResponseDone {
            response_id,
            status,
            usage: None,
        })
        .await
    }
}

/// Splits a reply into sentences, so the first can play while the next is synthesised.
fn sentences(text: &str) -> impl Iterator<Item = &str> {
    text.split_inclusive(['.', '?', '!'])
        .map(str::trim)
        .filter(|sentence| sentence.chars().any(char::is_alphanumeric))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_split_into_sentences() {
        let parts: Vec<&str> =
            sentences("Hello Priya. Do you have a minute? Great!  trailing").collect();
        assert_eq!(
            parts,
            vec![
                "Hello Priya.",
                "Do you have a minute?",
                "Great!",
                "trailing"
            ]
        );
        assert_eq!(sentences(" . ").count(), 0);
    }
}
