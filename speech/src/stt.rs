//! Speech to text: Whisper tiny.en through whisper.cpp (`whisper-rs`).
//!
//! [`Whisper`] is the loaded model, shared by every call; each inference thread makes one
//! [`Transcriber`] (a whisper.cpp decoding state) and reuses it for every utterance. The
//! settings are the fastest measured (80–280 ms per phone utterance on one core in the
//! reference measurements): greedy decoding and an encoder context cut to the utterance's
//! length instead of 30 s. Cutting the context makes whisper.cpp prone to repeating itself,
//! so the token budget is capped and [`clean_transcript`] removes what repetition is left.
//!
//! Whisper invents words for pure silence or noise (tiny.en says "you"): run it on what the
//! voice activity detector calls speech, not on every pause.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use whisper_rs::{
    FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters, WhisperError,
    WhisperState, WhisperTokenId,
};

use crate::SAMPLE_RATE;

#[cfg(test)]
mod tests;

/// Utterances shorter than this are not transcribed: whisper.cpp itself skips anything under
/// 100 ms, and such a blip is a click or a breath, not words. (From 100 to ~300 ms of speech
/// tiny.en mostly returns nothing; from ~400 ms it hears "yes".)
pub const MIN_UTTERANCE_SECONDS: f32 = 0.1;

/// Whisper's full encoder context: 30 s of audio at 50 positions a second.
const MAX_AUDIO_CTX: i32 = 1500;
/// Encoder positions kept beyond the audio itself (1.3 s). Less context makes whisper.cpp
/// loop more often, which [`clean_transcript`] undoes; 64 instead of 256 made utterances 35-45 %
/// faster with the same cleaned text, and kept the held-out intent accuracy (the local
/// pipeline's end-to-end test) above 90 %.
const AUDIO_CTX_PADDING: i32 = 64;
/// whisper.cpp keeps at most half its 448-token text context for the prompt; a longer prompt
/// only costs tokenizing time.
const MAX_PROMPT_TOKENS: usize = 223;
/// Prompts are cut to this many bytes before tokenizing (a token covers at least one byte).
const MAX_PROMPT_BYTES: usize = 2048;

/// What can go wrong loading Whisper or transcribing with it.
#[derive(Debug, thiserror::Error)]
pub enum SttError {
    /// The model file could not be read or is not a whisper.cpp model.
    #[error("cannot load the Whisper model {}: {reason}", .path.display())]
    Load {
        /// The model file.
        path: PathBuf,
        /// Why, as far as we can tell (whisper.cpp's own log is silenced).
        reason: String,
    },
    /// whisper.cpp could not allocate a decoding state.
    #[error("cannot create a Whisper decoding state: {0}")]
    State(#[source] WhisperError),
    /// whisper.cpp failed on an utterance.
    #[error("Whisper failed to transcribe {seconds:.2} s of audio: {source}")]
    Transcribe {
        /// The utterance's length.
        seconds: f32,
        /// whisper.cpp's error.
        #[source]
        source: WhisperError,
    },
}

/// The loaded Whisper model. Cheap to share (`Arc<Whisper>`): all the per-utterance state
/// lives in the [`Transcriber`]s.
pub struct Whisper {
    context: Arc<WhisperContext>,
}

impl std::fmt::Debug for Whisper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Whisper").finish_non_exhaustive()
    }
}

impl Whisper {
    /// Loads a whisper.cpp ggml model (`whisper/ggml-tiny.en.bin` from `scripts/fetch-models`),
    /// on the CPU. Takes about 100 ms for tiny.en.
    pub fn load(path: &Path) -> Result<Self, SttError> {
        silence_native_logging();
        let load_error = |reason: String| SttError::Load {
            path: path.to_owned(),
            reason,
        };
        // whisper.cpp only says "failed" (to a log we silence): find the usual causes first.
        let metadata = std::fs::metadata(path).map_err(|error| load_error(error.to_string()))?;
        if !metadata.is_file() {
            return Err(load_error("not a file".to_owned()));
        }
        let mut params = WhisperContextParameters::default();
        params.use_gpu(false);
        let context = WhisperContext::new_with_params(path, params).map_err(|error| {
            load_error(format!(
                "whisper.cpp rejected it ({error}); is it a ggml Whisper model? \
                 `scripts/fetch-models` writes one"
            ))
        })?;
        Ok(Self {
            context: Arc::new(context),
        })
    }

    /// A transcriber for one inference thread. It allocates whisper.cpp's decoding buffers
    /// once; keep it and reuse it for every utterance.
    pub fn transcriber(&self) -> Result<Transcriber, SttError> {
        let state = self.context.create_state().map_err(SttError::State)?;
        Ok(Transcriber {
            context: Arc::clone(&self.context),
            state,
            base_params: base_params(),
            prompt: None,
        })
    }
}

/// One thread's Whisper decoder: the model plus a reusable decoding state.
pub struct Transcriber {
    context: Arc<WhisperContext>,
    state: WhisperState,
    /// Built once: whisper-rs leaks a small allocation each time the language is set.
    base_params: FullParams<'static, 'static>,
    /// The last prompt and its tokens; a campaign's calls keep the same prompt.
    prompt: Option<(String, Vec<WhisperTokenId>)>,
}

impl std::fmt::Debug for Transcriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transcriber").finish_non_exhaustive()
    }
}

impl Transcriber {
    /// The words in `audio` (16 kHz mono, samples in -1..1), cleaned by [`clean_transcript`];
    /// empty for an utterance too short to hold words ([`MIN_UTTERANCE_SECONDS`]) or when
    /// Whisper hears nothing. `prompt` is text that biases recognition towards the campaign's
    /// vocabulary (names, products); empty for none. Blocking and CPU-bound: 0.3–0.5 s for a
    /// 1–3 s utterance on the shared 2-core development VM.
    pub fn transcribe(&mut self, audio: &[f32], prompt: &str) -> Result<String, SttError> {
        let Some(settings) = DecodeSettings::for_samples(audio.len()) else {
            return Ok(String::new());
        };
        self.set_prompt(prompt);
        let mut params = self.base_params.clone();
        params.set_audio_ctx(settings.audio_ctx);
        params.set_max_tokens(settings.max_tokens);
        if let Some((_, tokens)) = &self.prompt
            && !tokens.is_empty()
        {
            params.set_tokens(tokens);
        }
        self.state
            .full(params, audio)
            .map_err(|source| SttError::Transcribe {
                seconds: settings.seconds,
                source,
            })?;
        let mut text = String::new();
        for segment in self.state.as_iter() {
            // Lossy: a token budget can end in the middle of a multi-byte character.
            if let Ok(piece) = segment.to_str_lossy() {
                text.push_str(&piece);
            }
        }
        Ok(clean_transcript(&text))
    }

    /// Tokenizes `prompt` unless it is the one already tokenized.
    fn set_prompt(&mut self, prompt: &str) {
        if self
            .prompt
            .as_ref()
            .is_some_and(|(previous, _)| previous == prompt)
        {
            return;
        }
        let tokens = self.tokenize_prompt(prompt);
        self.prompt = Some((prompt.to_owned(), tokens));
    }

    fn tokenize_prompt(&self, prompt: &str) -> Vec<WhisperTokenId> {
        let text: String = prompt
            .chars()
            .map(|c| if c == '\0' || c.is_control() { ' ' } else { c })
            .collect();
        let text = text.trim();
        if text.is_empty() {
            return Vec::new();
        }
        // Keep the end of an overlong prompt, as whisper.cpp itself would.
        let mut start = text.len().saturating_sub(MAX_PROMPT_BYTES);
        while !text.is_char_boundary(start) {
            start += 1;
        }
        // A leading space makes the first word tokenize as it does inside a sentence.
        let text = format!(" {}", &text[start..]);
        // Every token covers at least one byte, so `text.len()` slots are always enough. With
        // too few, whisper.cpp returns minus the count, which whisper-rs takes for a length.
        match self.context.tokenize(&text, text.len()) {
            Ok(mut tokens) => {
                let excess = tokens.len().saturating_sub(MAX_PROMPT_TOKENS);
                tokens.drain(..excess);
                tokens
            }
            Err(error) => {
                tracing::warn!(%error, "cannot tokenize the Whisper prompt; going without");
                Vec::new()
            }
        }
    }
}

/// The per-utterance decoding limits.
#[derive(Debug, Clone, Copy, PartialEq)]
struct DecodeSettings {
    seconds: f32,
    /// Encoder positions: the audio's own (50 a second) plus padding, at most 30 s worth.
    audio_ctx: i32,
    /// Tokens to decode at most: fast speech is ~4 tokens a second, so 6 a second plus a
    /// little stops a repetition loop early without cutting real words.
    max_tokens: i32,
}

impl DecodeSettings {
    /// `None` when the utterance is too short to transcribe.
    fn for_samples(samples: usize) -> Option<Self> {
        let seconds = samples as f32 / SAMPLE_RATE as f32;
        if seconds < MIN_UTTERANCE_SECONDS {
            return None;
        }
        Some(Self {
            seconds,
            audio_ctx: ((seconds * 50.0) as i32 + AUDIO_CTX_PADDING).min(MAX_AUDIO_CTX),
            max_tokens: (seconds * 6.0) as i32 + 8,
        })
    }
}

/// The settings every utterance shares.
fn base_params() -> FullParams<'static, 'static> {
    let mut params = FullParams::new(SamplingStrategy::Greedy { best_of: 1 });
    // Two threads were slower than one for tiny.en; the gateway runs several transcribers
    // side by side instead.
    params.set_n_threads(1);
    params.set_language(Some("en"));
    params.set_translate(false);
    params.set_no_timestamps(true);
    params.set_single_segment(true);
    // Each utterance on its own: text from earlier ones only feeds repetition.
    params.set_no_context(true);
    // No retries at higher temperatures: they cost a full decode each and rarely help here.
    params.set_temperature_inc(0.0);
    params.set_print_special(false);
    params.set_print_progress(false);
    params.set_print_realtime(false);
    params.set_print_timestamps(false);
    params
}

/// Routes whisper.cpp's and ggml's logging, which otherwise goes straight to stderr, into
/// whisper-rs's hooks. Without whisper-rs's `tracing_backend` feature the hooks drop it;
/// with that feature it would reach `tracing` (model loading logs at info level).
fn silence_native_logging() {
    whisper_rs::install_logging_hooks();
}

/// Phrases this long or longer are a loop from their second back-to-back copy.
const LONG_PHRASE_WORDS: usize = 4;
/// Shorter phrases (1 to 3 words) are a loop from their third copy: people do say "no no" or
/// "bye bye", while Whisper's loops run on.
const SHORT_PHRASE_COPIES: usize = 3;

/// Whisper's raw text made fit for the dialogue policy:
///
/// - trimmed, with runs of whitespace made one space;
/// - without non-speech markers: anything in `[...]` or `(...)` (`[BLANK_AUDIO]`, `[Music]`,
///   `(silence)`), `*...*` (`*coughs*`) and music notes; a bracket left open, as a token
///   budget leaves it, drops the rest of the text;
/// - without repetition loops, comparing words without case or punctuation:
///   - a sentence repeated back-to-back is kept once ("Yes. Yes." becomes "Yes.");
///   - a phrase of 4 or more words repeated back-to-back is kept once, and a phrase of 1 to 3
///     words repeated 3 or more times is kept once: "no no no no no" becomes "no",
///     "I'm sorry, I'm sorry, I'm sorry." becomes "I'm sorry." (the copy kept ends with the
///     run's last punctuation). Two copies of a short phrase ("no no", "bye bye") stay: that
///     is how people talk. What a caller means by "no" five times is what "no" means, so
///     nothing the dialogue needs is lost. Digits are never a loop ("5 5 5", "zero zero");
///   - an unfinished copy at the very end (the token budget cut the loop) is dropped;
/// - empty when no letter or digit is left.
///
/// Ordinary text comes out unchanged.
pub fn clean_transcript(text: &str) -> String {
    let without_markers = strip_markers(text);
    let mut words: Vec<String> = without_markers
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    // Removing one loop can line up another ("apartment, apartment, apartment" inside a
    // repeated question), so repeat until nothing changes; every pass that changes anything
    // removes words, so this ends.
    loop {
        let cleaned = collapse_phrase_loops(drop_repeated_sentences(words.clone()));
        if cleaned == words {
            break;
        }
        words = cleaned;
    }
    let cleaned = words.join(" ");
    if cleaned.chars().any(char::is_alphanumeric) {
        cleaned
    } else {
        String::new()
    }
}

/// `text` with bracketed, parenthesised and starred spans and music notes made spaces.
fn strip_markers(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.char_indices().peekable();
    while let Some((index, c)) = chars.next() {
        match c {
            '[' | '(' => {
                let close = if c == '[' { ']' } else { ')' };
                // Skip to the matching close, nesting included; unclosed runs to the end.
                let mut depth = 1;
                for (_, inner) in chars.by_ref() {
                    if inner == c {
                        depth += 1;
                    } else if inner == close {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                }
                out.push(' ');
            }
            '*' => {
                // A starred span is an action ("*coughs*"); a lone star is dropped alone.
                if let Some(end) = text[index + 1..].find('*') {
                    let end = index + 1 + end;
                    while chars.peek().is_some_and(|&(next, _)| next <= end) {
                        chars.next();
                    }
                }
                out.push(' ');
            }
            '♪' | '♫' | '♬' | '♩' => out.push(' '),
            _ => out.push(c),
        }
    }
    out
}

/// A word as compared for repetition: lowercase letters and digits only.
fn word_key(word: &str) -> String {
    word.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// The keys of the words that have letters or digits.
fn phrase_key(words: &[String]) -> Vec<String> {
    words
        .iter()
        .map(|word| word_key(word))
        .filter(|key| !key.is_empty())
        .collect()
}

/// Whether `word` ends a sentence (closing quotes and brackets aside).
fn ends_sentence(word: &str) -> bool {
    word.trim_end_matches(['"', '\'', '”', '’', ')', ']'])
        .ends_with(['.', '?', '!'])
}

/// Keeps the first of back-to-back equal sentences, and drops a final unfinished sentence
/// that only restarts the one before it.
fn drop_repeated_sentences(words: Vec<String>) -> Vec<String> {
    let mut sentences: Vec<Vec<String>> = vec![Vec::new()];
    for word in words {
        let ends = ends_sentence(&word);
        sentences.last_mut().expect("never empty").push(word);
        if ends {
            sentences.push(Vec::new());
        }
    }
    let unfinished = sentences.pop().expect("never empty");

    let mut kept: Vec<String> = Vec::new();
    let mut last_key: Option<Vec<String>> = None;
    for sentence in sentences {
        let key = phrase_key(&sentence);
        if !key.is_empty() && last_key.as_ref() == Some(&key) {
            continue;
        }
        kept.extend(sentence);
        last_key = Some(key);
    }
    let key = phrase_key(&unfinished);
    let restarts_previous = last_key
        .as_ref()
        .is_some_and(|previous| !key.is_empty() && previous.starts_with(&key));
    if !restarts_previous {
        kept.extend(unfinished);
    }
    kept
}

/// One left-to-right pass that keeps one copy of each repeated phrase (see
/// [`clean_transcript`]).
fn collapse_phrase_loops(words: Vec<String>) -> Vec<String> {
    let keys: Vec<String> = words.iter().map(|word| word_key(word)).collect();
    let mut out = Vec::with_capacity(words.len());
    let mut index = 0;
    while index < words.len() {
        // The shortest repeating phrase wins: "no no no no" is "no", not "no no" twice.
        let run = (1..=(words.len() - index) / 2).find_map(|n| {
            let copies = copies_at(&keys, index, n);
            let needed = if n >= LONG_PHRASE_WORDS {
                2
            } else {
                SHORT_PHRASE_COPIES
            };
            (copies >= needed).then_some((n, copies))
        });
        let Some((n, copies)) = run else {
            out.push(words[index].clone());
            index += 1;
            continue;
        };
        let run_end = index + n * copies;
        let mut phrase = words[index..index + n].to_vec();
        // The copy kept ends the way the whole run ended ("no, no, no." -> "no.").
        let ending = trailing_punctuation(&words[run_end - 1]).to_owned();
        if let Some(last) = phrase.last_mut() {
            *last = format!("{}{ending}", trim_trailing_punctuation(last));
        }
        out.extend(phrase);
        index = run_end;
        // An unfinished copy up to the end is the token budget cutting the loop.
        let rest = &keys[index..];
        if !rest.is_empty() && rest.len() < n && keys[run_end - n..run_end].starts_with(rest) {
            break;
        }
    }
    out
}

/// How many back-to-back copies of the phrase `keys[index..index + n]` start at `index`.
fn copies_at(keys: &[String], index: usize, n: usize) -> usize {
    let pattern = &keys[index..index + n];
    // Bare punctuation is not a phrase, and digits repeat in phone numbers ("5 5 5").
    if pattern.iter().any(String::is_empty) || pattern.iter().all(|key| is_number(key)) {
        return 1;
    }
    let mut copies = 1;
    while keys
        .get(index + copies * n..index + (copies + 1) * n)
        .is_some_and(|next| next == pattern)
    {
        copies += 1;
    }
    copies
}

/// A digit string or a spoken digit.
fn is_number(key: &str) -> bool {
    const DIGITS: [&str; 11] = [
        "zero", "oh", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    ];
    key.chars().all(|c| c.is_ascii_digit()) || DIGITS.contains(&key)
}

fn trim_trailing_punctuation(word: &str) -> &str {
    let kept = word.trim_end_matches(|c: char| !c.is_alphanumeric());
    if kept.is_empty() { word } else { kept }
}

fn trailing_punctuation(word: &str) -> &str {
    &word[trim_trailing_punctuation(word).len()..]
}
