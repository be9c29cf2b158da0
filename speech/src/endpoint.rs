//! End-of-turn detection: a pure state machine over VAD frames.
//!
//! No I/O and no clocks: time is the number of samples pushed, so a test drives it with
//! synthetic voiced/unvoiced sequences and the gateway with real audio. Durations in
//! [`EndpointConfig`] are milliseconds at 16 kHz and are compared with whole frames, so with
//! earshot's 16 ms frames each rule takes effect at the first frame boundary at or past it
//! (500 ms of silence ends a turn after 32 frames, 512 ms).
//!
//! Rules:
//! - Speech starts after `start_frames` consecutive voiced frames ([`EndpointEvent::SpeechStarted`],
//!   the barge-in signal). The utterance's audio begins `pre_roll_ms` before the first of them,
//!   so the onset the VAD needed frames to recognise is not clipped.
//! - Speech ends after `end_silence_ms` of consecutive unvoiced frames, so pauses between
//!   words (and a single unvoiced frame) do not end it; or it is cut at `max_utterance_ms`.
//! - After `pause_ms` of silence inside speech, [`EndpointEvent::Paused`] hands over the
//!   utterance as it would end if the silence went on: the caller can start transcribing it
//!   while the end-of-turn wait runs. A voiced frame after that is [`EndpointEvent::Resumed`]
//!   (the early result is void); if the silence lasts, `SpeechEnded` carries the same audio.
//! - An utterance with less than `min_speech_ms` of voiced frames is a blip (a cough, a click,
//!   a "hm"): it ends with [`EndpointEvent::Discarded`] instead of an utterance, so a barge-in
//!   that `SpeechStarted` triggered can be judged a false alarm.

use crate::SAMPLE_RATE;

/// Samples per millisecond at [`SAMPLE_RATE`].
const SAMPLES_PER_MS: u64 = SAMPLE_RATE as u64 / 1000;

/// When a turn starts and ends. Durations are in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointConfig {
    /// Consecutive voiced frames that start speech (3 × 16 ms: long enough to skip clicks,
    /// short enough for a prompt barge-in).
    pub start_frames: u32,
    /// Audio kept from before the first voiced frame, so the onset is not clipped.
    pub pre_roll_ms: u32,
    /// Unvoiced time that ends a turn: long enough to bridge pauses between words, short
    /// enough that the caller does not wait for the reply.
    pub end_silence_ms: u32,
    /// Longest utterance, from its first voiced frame; longer speech is cut and handed over
    /// (bounds memory and Whisper's 30 s window).
    pub max_utterance_ms: u32,
    /// Voiced time below which an utterance is a blip and discarded.
    pub min_speech_ms: u32,
    /// Silence kept after the last voiced frame: a little helps Whisper with final
    /// consonants; the rest of `end_silence_ms` is dropped.
    pub trailing_ms: u32,
    /// Silence after which the utterance so far is handed over early ([`EndpointEvent::Paused`]);
    /// 0 turns it off. At least `trailing_ms`, so the early audio equals the final audio.
    pub pause_ms: u32,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        Self {
            start_frames: 3,
            pre_roll_ms: 200,
            end_silence_ms: 500,
            max_utterance_ms: 15_000,
            min_speech_ms: 120,
            trailing_ms: 160,
            pause_ms: 240,
        }
    }
}

/// A finished turn of speech.
#[derive(Debug, Clone, PartialEq)]
pub struct Utterance {
    /// 16 kHz samples: pre-roll, speech, then at most `trailing_ms` of trailing silence.
    pub audio: Vec<f32>,
    /// Time covered by voiced frames, in milliseconds (pauses excluded).
    pub voiced_ms: u32,
    /// Absolute index (samples since the stream began or the last reset) of `audio[0]`.
    pub start_sample: u64,
    /// Absolute index just after the last voiced frame: latency is measured from here.
    pub end_of_voice_sample: u64,
    /// True when `max_utterance_ms` cut the speech, false when silence ended it.
    pub forced: bool,
}

impl Utterance {
    /// Length of `audio` in milliseconds.
    pub fn duration_ms(&self) -> u32 {
        samples_to_ms(self.audio.len() as u64)
    }
}

/// What a frame changed.
#[derive(Debug, Clone, PartialEq)]
pub enum EndpointEvent {
    /// `start_frames` consecutive voiced frames: the caller is talking (barge-in).
    SpeechStarted,
    /// The turn is over; transcribe this.
    SpeechEnded(Utterance),
    /// The speech that started was a blip (less than `min_speech_ms` voiced); nothing to
    /// transcribe, and a barge-in it caused was a false alarm.
    Discarded,
    /// `pause_ms` of silence: the utterance as `SpeechEnded` will carry it if nobody speaks
    /// again, to transcribe ahead of time.
    Paused(Utterance),
    /// Voice again after `Paused`: the early utterance is void; the turn goes on.
    Resumed,
}

/// The end-of-turn state machine for one audio stream.
#[derive(Debug, Clone)]
pub struct Endpointer {
    config: EndpointConfig,
    pre_roll_samples: usize,
    end_silence_samples: u64,
    max_utterance_samples: u64,
    min_speech_samples: u64,
    trailing_samples: u64,
    /// 0 when pauses are not reported.
    pause_samples: u64,
    /// Samples pushed so far: the clock.
    samples_seen: u64,
    state: State,
}

#[derive(Debug, Clone)]
enum State {
    Idle {
        /// The latest audio: up to `pre_roll_samples` before the current voiced run, plus
        /// the run itself.
        recent: std::collections::VecDeque<f32>,
        /// Consecutive voiced frames so far.
        run_frames: u32,
        /// Samples in those frames.
        run_samples: usize,
    },
    Speaking {
        audio: Vec<f32>,
        /// Absolute index of `audio[0]`.
        start_sample: u64,
        /// Absolute index of the first voiced frame of the starting run.
        speech_start_sample: u64,
        /// Absolute index just after the latest voiced frame.
        last_voice_end: u64,
        voiced_samples: u64,
        /// Unvoiced samples since the latest voiced frame.
        silence_samples: u64,
        /// `Paused` was reported for the current silence.
        paused: bool,
    },
}

impl State {
    fn idle(pre_roll_samples: usize) -> Self {
        // Room for the pre-roll plus a starting run of a few frames, so the buffer does not
        // grow while idle.
        const RUN_ROOM: usize = 8 * crate::vad::FRAME_SAMPLES;
        State::Idle {
            recent: std::collections::VecDeque::with_capacity(pre_roll_samples + RUN_ROOM),
            run_frames: 0,
            run_samples: 0,
        }
    }
}

fn ms_to_samples(ms: u32) -> u64 {
    u64::from(ms) * SAMPLES_PER_MS
}

fn samples_to_ms(samples: u64) -> u32 {
    u32::try_from(samples / SAMPLES_PER_MS).unwrap_or(u32::MAX)
}

impl Default for Endpointer {
    fn default() -> Self {
        Self::new(EndpointConfig::default())
    }
}

impl Endpointer {
    /// A fresh endpointer; `start_frames` below 1 is treated as 1.
    pub fn new(config: EndpointConfig) -> Self {
        let pre_roll_samples = ms_to_samples(config.pre_roll_ms) as usize;
        Self {
            config,
            pre_roll_samples,
            end_silence_samples: ms_to_samples(config.end_silence_ms),
            max_utterance_samples: ms_to_samples(config.max_utterance_ms),
            min_speech_samples: ms_to_samples(config.min_speech_ms),
            trailing_samples: ms_to_samples(config.trailing_ms),
            pause_samples: match config.pause_ms {
                0 => 0,
                ms => ms_to_samples(ms.max(config.trailing_ms)),
            },
            samples_seen: 0,
            state: State::idle(pre_roll_samples),
        }
    }

    /// The configuration this endpointer was built with.
    pub fn config(&self) -> EndpointConfig {
        self.config
    }

    /// Samples pushed since creation or the last [`reset`](Self::reset): the current time.
    pub fn samples_seen(&self) -> u64 {
        self.samples_seen
    }

    /// True between `SpeechStarted` and the end of that speech.
    pub fn is_speaking(&self) -> bool {
        matches!(self.state, State::Speaking { .. })
    }

    /// Takes one VAD frame (its samples and the VAD's verdict) and says what changed, if
    /// anything. At most one event per frame.
    pub fn push(&mut self, frame: &[f32], voiced: bool) -> Option<EndpointEvent> {
        self.samples_seen += frame.len() as u64;
        let now = self.samples_seen;
        match &mut self.state {
            State::Idle {
                recent,
                run_frames,
                run_samples,
            } => {
                recent.extend(frame.iter().copied());
                if voiced {
                    *run_frames += 1;
                    *run_samples += frame.len();
                } else {
                    *run_frames = 0;
                    *run_samples = 0;
                }
                let keep = self.pre_roll_samples + *run_samples;
                if recent.len() > keep {
                    recent.drain(..recent.len() - keep);
                }
                if *run_frames < self.config.start_frames.max(1) {
                    return None;
                }
                let run_samples = *run_samples as u64;
                let audio: Vec<f32> = std::mem::take(recent).into();
                self.state = State::Speaking {
                    start_sample: now - audio.len() as u64,
                    audio,
                    speech_start_sample: now - run_samples,
                    last_voice_end: now,
                    voiced_samples: run_samples,
                    silence_samples: 0,
                    paused: false,
                };
                Some(EndpointEvent::SpeechStarted)
            }
            State::Speaking {
                audio,
                start_sample,
                speech_start_sample,
                last_voice_end,
                voiced_samples,
                silence_samples,
                paused,
            } => {
                audio.extend_from_slice(frame);
                let resumed = voiced && std::mem::take(paused);
                if voiced {
                    *last_voice_end = now;
                    *voiced_samples += frame.len() as u64;
                    *silence_samples = 0;
                } else {
                    *silence_samples += frame.len() as u64;
                }
                if *silence_samples >= self.end_silence_samples {
                    Some(self.finish(false))
                } else if now - *speech_start_sample >= self.max_utterance_samples {
                    Some(self.finish(true))
                } else if resumed {
                    Some(EndpointEvent::Resumed)
                } else if self.pause_samples > 0
                    && !*paused
                    && *silence_samples >= self.pause_samples
                    && *voiced_samples >= self.min_speech_samples
                {
                    *paused = true;
                    let voiced_len = *last_voice_end - *start_sample;
                    let keep = (voiced_len + self.trailing_samples).min(audio.len() as u64);
                    Some(EndpointEvent::Paused(Utterance {
                        audio: audio[..keep as usize].to_vec(),
                        voiced_ms: samples_to_ms(*voiced_samples),
                        start_sample: *start_sample,
                        end_of_voice_sample: *last_voice_end,
                        forced: false,
                    }))
                } else {
                    None
                }
            }
        }
    }

    /// Ends speech in progress now (e.g. the call hung up mid-sentence), as silence would;
    /// `None` when nobody is speaking.
    pub fn flush(&mut self) -> Option<EndpointEvent> {
        self.is_speaking().then(|| self.finish(false))
    }

    /// Forgets all audio and restarts the clock at sample 0.
    pub fn reset(&mut self) {
        self.samples_seen = 0;
        self.state = State::idle(self.pre_roll_samples);
    }

    /// Closes the current speech; back to idle with an empty pre-roll (the audio before now
    /// belongs to this utterance and must not be handed over twice).
    fn finish(&mut self, forced: bool) -> EndpointEvent {
        let state = std::mem::replace(&mut self.state, State::idle(self.pre_roll_samples));
        let State::Speaking {
            mut audio,
            start_sample,
            last_voice_end,
            voiced_samples,
            ..
        } = state
        else {
            unreachable!("finish is only called while speaking");
        };
        if voiced_samples < self.min_speech_samples {
            return EndpointEvent::Discarded;
        }
        let voiced_len = last_voice_end - start_sample;
        let keep = (voiced_len + self.trailing_samples).min(audio.len() as u64);
        audio.truncate(keep as usize);
        EndpointEvent::SpeechEnded(Utterance {
            audio,
            voiced_ms: samples_to_ms(voiced_samples),
            start_sample,
            end_of_voice_sample: last_voice_end,
            forced,
        })
    }
}

#[cfg(test)]
mod tests;
