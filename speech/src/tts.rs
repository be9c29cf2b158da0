//! Text to speech with flite (Debian's `flite1-dev`), through `flite-sys`.
//!
//! flite is small, fast (slt: real-time factor ~0.01, kal16: ~0.0004) and BSD-licensed, and
//! Whisper transcribes its voices without errors on the phone path. It serves as the agent's
//! fallback voice and as the simulated caller in tests.
//!
//! flite keeps global, unsynchronised state (voice registry, lexicon caches), so every call
//! into it goes through one process-wide [`Mutex`]. Synthesis is fast enough that
//! serialising it costs little.
//!
//! flite reports internal errors by calling `exit(-1)` (its `cst_error()`), which no Rust code
//! can intercept. Control characters are replaced before synthesis so plain text cannot
//! trigger it.
#![allow(unsafe_code)] // FFI into libflite: the C synthesiser has no safe binding.

use std::ffi::{CString, c_char, c_uint};
use std::fmt;
use std::sync::{Mutex, OnceLock, PoisonError};

use flite_sys::{cst_voice, cst_wave};
use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler as _};

use crate::SAMPLE_RATE;

// flite-sys binds `flite.h` only; the voices live in their own libraries and are registered
// by these functions (`voxdir` is unused by compiled-in voices, so NULL is fine). Each voice
// library itself depends on libflite_usenglish and libflite_cmulex.
#[link(name = "flite_cmu_us_slt")]
#[link(name = "flite_cmu_us_kal16")]
#[link(name = "flite_cmu_us_awb")]
#[link(name = "flite_cmu_us_rms")]
#[link(name = "flite_usenglish")]
#[link(name = "flite_cmulex")]
#[link(name = "flite")]
unsafe extern "C" {
    fn register_cmu_us_slt(voxdir: *const c_char) -> *mut cst_voice;
    fn register_cmu_us_kal16(voxdir: *const c_char) -> *mut cst_voice;
    fn register_cmu_us_awb(voxdir: *const c_char) -> *mut cst_voice;
    fn register_cmu_us_rms(voxdir: *const c_char) -> *mut cst_voice;
}

// The clustergen voices (slt, awb, rms) draw their excitation noise from C's `rand()`;
// reseeding it before each synthesis makes the audio a function of text and voice.
unsafe extern "C" {
    fn srand(seed: c_uint);
}

/// A flite voice from Debian's `flite1-dev` (all 16 kHz natively).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Voice {
    /// US English female (clustergen): the agent's default voice.
    Slt,
    /// US English male (diphone, 16 kHz): robotic and clearly unlike `Slt`, used for
    /// simulated callers.
    Kal16,
    /// Scottish-accented English male (clustergen).
    Awb,
    /// US English male (clustergen).
    Rms,
}

impl Voice {
    /// Every voice, in declaration order.
    pub const ALL: [Voice; 4] = [Voice::Slt, Voice::Kal16, Voice::Awb, Voice::Rms];

    /// The voice's short name, as flite's command line spells it (`slt`, `kal16`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Voice::Slt => "slt",
            Voice::Kal16 => "kal16",
            Voice::Awb => "awb",
            Voice::Rms => "rms",
        }
    }

    /// Parses a short name (`slt`, `kal16`, `awb`, `rms`), ignoring ASCII case.
    pub fn from_name(name: &str) -> Option<Voice> {
        Voice::ALL
            .into_iter()
            .find(|voice| voice.name().eq_ignore_ascii_case(name.trim()))
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Voice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why speech could not be synthesised.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TtsError {
    /// A voice library returned no voice when registered.
    #[error("flite could not register voice {0}")]
    Register(&'static str),
    /// flite returned no wave for the text.
    #[error("flite produced no audio")]
    NoAudio,
    /// flite returned a wave this module cannot read (e.g. a non-positive rate).
    #[error("flite returned an unreadable wave: {0}")]
    BadWave(String),
    /// Converting the voice's native rate to 16 kHz failed.
    #[error("resampling {from_hz} Hz to 16 kHz failed: {reason}")]
    Resample {
        /// The voice's native rate.
        from_hz: u32,
        /// rubato's explanation.
        reason: String,
    },
}

/// The registered voices. Raw pointers into flite's static voice data.
struct Flite {
    voices: [*mut cst_voice; Voice::ALL.len()],
}

// SAFETY: the voice pointers are only ever dereferenced by flite while the global mutex
// holding this struct is locked, so moving the struct between threads cannot race.
unsafe impl Send for Flite {}

static FLITE: OnceLock<Result<Mutex<Flite>, TtsError>> = OnceLock::new();

fn register_all() -> Result<Mutex<Flite>, TtsError> {
    // SAFETY: runs once per process (inside `OnceLock::get_or_init`), before any synthesis;
    // flite_init only sets up flite's global tables.
    unsafe { flite_sys::flite_init() };
    let mut voices = [std::ptr::null_mut(); Voice::ALL.len()];
    for voice in Voice::ALL {
        // SAFETY: the register functions build the compiled-in voice; a NULL voxdir is what
        // the flite command line passes for compiled-in voices. Called once per voice.
        let ptr = unsafe {
            match voice {
                Voice::Slt => register_cmu_us_slt(std::ptr::null()),
                Voice::Kal16 => register_cmu_us_kal16(std::ptr::null()),
                Voice::Awb => register_cmu_us_awb(std::ptr::null()),
                Voice::Rms => register_cmu_us_rms(std::ptr::null()),
            }
        };
        if ptr.is_null() {
            return Err(TtsError::Register(voice.name()));
        }
        voices[voice.index()] = ptr;
    }
    Ok(Mutex::new(Flite { voices }))
}

/// Frees a `cst_wave` when dropped, so no early return leaks one.
struct WaveGuard(*mut cst_wave);

impl Drop for WaveGuard {
    fn drop(&mut self) {
        // SAFETY: the pointer came from flite_text_to_wave, is non-null and is freed once,
        // here, while the flite mutex is still held (the guard lives inside the lock scope).
        unsafe { flite_sys::delete_wave(self.0) };
    }
}

/// A handle on the process's flite voices. Cheap to copy; every handle shares one lock.
#[derive(Clone, Copy)]
pub struct Synthesizer {
    flite: &'static Mutex<Flite>,
}

impl fmt::Debug for Synthesizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Synthesizer").finish_non_exhaustive()
    }
}

impl Synthesizer {
    /// Initialises flite and registers every [`Voice`], once per process; later calls return
    /// a handle on the same voices.
    pub fn new() -> Result<Self, TtsError> {
        match FLITE.get_or_init(register_all) {
            Ok(flite) => Ok(Self { flite }),
            Err(err) => Err(err.clone()),
        }
    }

    /// Speaks `text` with `voice`, returning 16 kHz mono samples. Empty or whitespace-only
    /// text gives no samples. Blocks while another thread is synthesising.
    ///
    /// The same text and voice give the same samples (C's `rand()` is reseeded first), so
    /// test fixtures are reproducible, unless other code in the process calls `rand()` at
    /// the same time.
    pub fn synthesize(&self, text: &str, voice: Voice) -> Result<Vec<i16>, TtsError> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(Vec::new());
        }
        // Control characters (NUL included) become spaces: CString needs no interior NUL and
        // flite has no use for them.
        let cleaned: String = text
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let c_text = CString::new(cleaned).expect("control characters were replaced");

        let (samples, rate) = {
            // A panic elsewhere while holding the lock leaves flite's state intact (flite
            // itself cannot unwind), so a poisoned lock is still usable.
            let flite = self.flite.lock().unwrap_or_else(PoisonError::into_inner);
            let voice_ptr = flite.voices[voice.index()];
            // SAFETY: srand only sets libc's generator state (locked inside glibc).
            unsafe { srand(1) };
            // SAFETY: the text is a valid NUL-terminated string that outlives the call, the
            // voice was registered by `register_all`, and the mutex serialises all flite use.
            let wave = unsafe { flite_sys::flite_text_to_wave(c_text.as_ptr(), voice_ptr) };
            if wave.is_null() {
                return Err(TtsError::NoAudio);
            }
            let wave = WaveGuard(wave);
            // SAFETY: `wave` is a live cst_wave owned by us until the guard drops.
            let w = unsafe { &*wave.0 };
            let (rate, len, channels) = (w.sample_rate, w.num_samples, w.num_channels);
            if rate <= 0 || len < 0 || channels <= 0 {
                return Err(TtsError::BadWave(format!(
                    "rate {rate}, samples {len}, channels {channels}"
                )));
            }
            if len == 0 || w.samples.is_null() {
                (Vec::new(), rate as u32)
            } else {
                let channels = channels as usize;
                // SAFETY: flite allocates `num_samples * num_channels` interleaved samples
                // and they stay valid until delete_wave (the guard, after this copy).
                let all = unsafe { std::slice::from_raw_parts(w.samples, len as usize * channels) };
                // Keep the first channel: flite's voices are mono, this only guards layout.
                let mono: Vec<i16> = all.iter().step_by(channels).copied().collect();
                (mono, rate as u32)
            }
        };
        if rate == SAMPLE_RATE || samples.is_empty() {
            Ok(samples)
        } else {
            resample_to_16k(&samples, rate)
        }
    }
}

/// Converts a whole clip from `from_hz` to [`SAMPLE_RATE`] (no flite voice here needs it
/// today; it keeps other voices usable).
fn resample_to_16k(samples: &[i16], from_hz: u32) -> Result<Vec<i16>, TtsError> {
    let fail = |reason: String| TtsError::Resample { from_hz, reason };
    let input: Vec<f32> = samples.iter().map(|&s| f32::from(s) / 32768.0).collect();
    let mut fft = Fft::<f32>::new(
        from_hz as usize,
        SAMPLE_RATE as usize,
        1024,
        1,
        FixedSync::Input,
    )
    .map_err(|e| fail(e.to_string()))?;
    let adapter =
        InterleavedSlice::new(&input[..], 1, input.len()).map_err(|e| fail(e.to_string()))?;
    let output = fft
        .process_all(&adapter, input.len(), None)
        .map_err(|e| fail(e.to_string()))?
        .take_data();
    Ok(output
        .into_iter()
        .map(|s| (s * 32768.0).round().clamp(-32768.0, 32767.0) as i16)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rms(samples: &[i16]) -> f64 {
        let sum: f64 = samples.iter().map(|&s| f64::from(s).powi(2)).sum();
        (sum / samples.len().max(1) as f64).sqrt()
    }

    #[test]
    fn a_sentence_is_between_half_a_second_and_six_seconds_of_sound() {
        let tts = Synthesizer::new().unwrap();
        for voice in Voice::ALL {
            let audio = tts
                .synthesize("Hello, I am calling about your apartment.", voice)
                .unwrap();
            let secs = audio.len() as f64 / f64::from(SAMPLE_RATE);
            assert!((0.5..6.0).contains(&secs), "{voice}: {secs} s");
            assert!(rms(&audio) > 300.0, "{voice}: rms {}", rms(&audio));
        }
    }

    #[test]
    fn voices_sound_different() {
        let tts = Synthesizer::new().unwrap();
        let text = "Please call me back tomorrow.";
        let slt = tts.synthesize(text, Voice::Slt).unwrap();
        let kal = tts.synthesize(text, Voice::Kal16).unwrap();
        assert!(slt != kal);
        // Not merely a different length of the same signal: the waveforms diverge.
        let n = slt.len().min(kal.len());
        let diff: Vec<i16> = (0..n).map(|i| slt[i].saturating_sub(kal[i])).collect();
        assert!(rms(&diff) > 100.0);
    }

    #[test]
    fn synthesis_is_deterministic() {
        let tts = Synthesizer::new().unwrap();
        for voice in Voice::ALL {
            let a = tts.synthesize("Wrong number.", voice).unwrap();
            let b = tts.synthesize("Wrong number.", voice).unwrap();
            // Not assert_eq: a failure would print two long vectors.
            assert!(a == b, "{voice} differs between runs");
        }
    }

    #[test]
    fn empty_or_blank_text_gives_no_samples() {
        let tts = Synthesizer::new().unwrap();
        assert!(tts.synthesize("", Voice::Slt).unwrap().is_empty());
        assert!(tts.synthesize(" \t\n ", Voice::Kal16).unwrap().is_empty());
    }

    #[test]
    fn control_characters_do_not_break_synthesis() {
        let tts = Synthesizer::new().unwrap();
        let audio = tts.synthesize("yes\0 please\u{7}", Voice::Slt).unwrap();
        assert!(audio.len() > SAMPLE_RATE as usize / 4);
    }

    #[test]
    fn two_threads_can_synthesise_at_once() {
        let tts = Synthesizer::new().unwrap();
        let expected = tts
            .synthesize("How much does it cost?", Voice::Rms)
            .unwrap();
        let handles: Vec<_> = (0..2)
            .map(|_| {
                std::thread::spawn(move || {
                    let tts = Synthesizer::new().unwrap();
                    (0..3)
                        .map(|_| {
                            tts.synthesize("How much does it cost?", Voice::Rms)
                                .unwrap()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for handle in handles {
            for audio in handle.join().unwrap() {
                assert!(audio == expected, "concurrent synthesis changed the audio");
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for voice in Voice::ALL {
            assert_eq!(Voice::from_name(voice.name()), Some(voice));
        }
        assert_eq!(Voice::from_name("KAL16"), Some(Voice::Kal16));
        assert_eq!(Voice::from_name("kal"), None);
        assert_eq!(Voice::from_name(""), None);
    }

    #[test]
    fn other_rates_are_resampled_to_16k() {
        // One second of a 440 Hz tone at 22.05 kHz and at 8 kHz.
        for from_hz in [8_000u32, 22_050] {
            let tone: Vec<i16> = (0..from_hz)
                .map(|i| {
                    let t = f64::from(i) / f64::from(from_hz);
                    (10_000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16
                })
                .collect();
            let out = resample_to_16k(&tone, from_hz).unwrap();
            assert!(
                out.len().abs_diff(SAMPLE_RATE as usize) <= 2,
                "{from_hz}: {}",
                out.len()
            );
            // Amplitude survives (away from the edges).
            let mid = &out[2000..14_000];
            assert!((rms(mid) - 10_000.0 / 2f64.sqrt()).abs() < 500.0);
            // Zero crossings match 440 Hz: ~880 per second.
            let crossings = mid.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count() as f64
                * (16_000.0 / 12_000.0);
            assert!((crossings - 880.0).abs() < 10.0, "{from_hz}: {crossings}");
        }
    }
}
