//! Offline speech engines for the gateway's `local` voice pipeline. Every engine works on
//! 16 kHz mono PCM or on text; the gateway converts to and from the carrier's format.
//!
//! The engines are blocking and CPU-bound: the gateway runs them on its inference pool, never
//! on the async workers.

pub mod endpoint;
pub mod intent;
pub mod models;
pub mod stt;
pub mod tts;
pub mod vad;

/// The sample rate every engine here speaks.
pub const SAMPLE_RATE: u32 = 16_000;
