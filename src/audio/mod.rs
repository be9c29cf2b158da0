//! Pure audio processing: codecs, resampling, 20 ms framing. No async, no I/O, no allocation
//! per frame on the realtime path.
//!
//! - [`mulaw`]: G.711 μ-law ⇄ PCM16, table-driven.
//! - [`l16`]: little-endian 16-bit PCM bytes ⇄ `i16` samples.
//! - [`resample`]: a per-call resampler between 8, 16 and 24 kHz, one 20 ms frame at a time.
//! - [`framing`]: re-chunks arbitrary payloads into exact 20 ms frames.
//! - [`tone`]: sine generation and frame energy, for simulators and tests.
//!
//! The shared vocabulary lives here: [`Encoding`], [`AudioFormat`] and [`FRAME_MS`].

pub mod framing;
pub mod l16;
pub mod mulaw;
pub mod resample;
pub mod tone;

/// Duration of one media frame. Plivo streams and we send 20 ms frames.
pub const FRAME_MS: u64 = 20;

/// How samples are stored on the wire. Audio is always mono.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// G.711 μ-law, one byte per sample.
    Mulaw,
    /// Linear signed 16-bit PCM, little-endian, two bytes per sample.
    L16,
}

/// An encoding at a sample rate: everything needed to size and time a mono byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AudioFormat {
    pub encoding: Encoding,
    pub sample_rate: u32,
}

impl AudioFormat {
    /// Plivo's default and OpenAI's `audio/pcmu`: μ-law at 8 kHz.
    pub const MULAW_8K: Self = Self {
        encoding: Encoding::Mulaw,
        sample_rate: 8000,
    };
    /// Plivo's `audio/x-l16` at 8 kHz.
    pub const L16_8K: Self = Self {
        encoding: Encoding::L16,
        sample_rate: 8000,
    };
    /// Plivo's `audio/x-l16` at 16 kHz.
    pub const L16_16K: Self = Self {
        encoding: Encoding::L16,
        sample_rate: 16000,
    };
    /// OpenAI Realtime's `audio/pcm`: PCM16 LE mono at 24 kHz.
    pub const PCM_24K: Self = Self {
        encoding: Encoding::L16,
        sample_rate: 24000,
    };

    /// Bytes per (mono) sample: 1 for μ-law, 2 for L16.
    pub const fn bytes_per_sample(self) -> usize {
        match self.encoding {
            Encoding::Mulaw => 1,
            Encoding::L16 => 2,
        }
    }

    /// Samples in one 20 ms frame.
    pub const fn frame_samples(self) -> usize {
        // u64 so that no rate can overflow before the division.
        (self.sample_rate as u64 * FRAME_MS / 1000) as usize
    }

    /// Bytes in one 20 ms frame (160 for μ-law 8 kHz, 640 for L16 16 kHz).
    pub const fn frame_bytes(self) -> usize {
        self.frame_samples() * self.bytes_per_sample()
    }

    /// Duration of `bytes` of audio in this format, in whole milliseconds (rounded down).
    /// A zero sample rate has no duration and yields 0 rather than dividing by zero.
    pub const fn bytes_to_ms(self, bytes: usize) -> u64 {
        let bytes_per_second = self.sample_rate as u64 * self.bytes_per_sample() as u64;
        if bytes_per_second == 0 {
            return 0;
        }
        // u128 because `bytes * 1000` could overflow u64 for absurd sizes on 64-bit targets.
        (bytes as u128 * 1000 / bytes_per_second as u128) as u64
    }

    /// Parses Plivo's `start.mediaFormat` (`encoding` is `"audio/x-mulaw"` or `"audio/x-l16"`,
    /// `sampleRate` is 8000 or 16000). μ-law exists only at 8 kHz. `None` for anything else.
    pub fn from_plivo(encoding: &str, sample_rate: u32) -> Option<Self> {
        let encoding = encoding.trim();
        // MIME types are case-insensitive.
        if encoding.eq_ignore_ascii_case("audio/x-mulaw") {
            (sample_rate == 8000).then_some(Self::MULAW_8K)
        } else if encoding.eq_ignore_ascii_case("audio/x-l16") {
            match sample_rate {
                8000 => Some(Self::L16_8K),
                16000 => Some(Self::L16_16K),
                _ => None,
            }
        } else {
            None
        }
    }

    /// The content type Plivo's `playAudio` expects for this encoding. The rate is sent
    /// separately, and only 8 or 16 kHz is accepted by Plivo.
    pub const fn plivo_content_type(self) -> &'static str {
        match self.encoding {
            Encoding::Mulaw => "audio/x-mulaw",
            Encoding::L16 => "audio/x-l16",
        }
    }
}

#[cfg(test)]
mod properties;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_sizes_match_plivo() {
        assert_eq!(AudioFormat::MULAW_8K.frame_bytes(), 160);
        assert_eq!(AudioFormat::L16_8K.frame_bytes(), 320);
        assert_eq!(AudioFormat::L16_16K.frame_bytes(), 640);
        assert_eq!(AudioFormat::PCM_24K.frame_bytes(), 960);
        assert_eq!(AudioFormat::PCM_24K.frame_samples(), 480);
    }

    #[test]
    fn bytes_per_sample_by_encoding() {
        assert_eq!(AudioFormat::MULAW_8K.bytes_per_sample(), 1);
        assert_eq!(AudioFormat::L16_8K.bytes_per_sample(), 2);
        assert_eq!(AudioFormat::PCM_24K.bytes_per_sample(), 2);
    }

    #[test]
    fn bytes_to_ms_floors() {
        let f = AudioFormat::MULAW_8K;
        assert_eq!(f.bytes_to_ms(0), 0);
        assert_eq!(f.bytes_to_ms(7), 0);
        assert_eq!(f.bytes_to_ms(8), 1);
        assert_eq!(f.bytes_to_ms(160), 20);
        assert_eq!(f.bytes_to_ms(4800), 600);
        assert_eq!(AudioFormat::L16_16K.bytes_to_ms(640), 20);
        assert_eq!(AudioFormat::L16_16K.bytes_to_ms(639), 19);
        assert_eq!(AudioFormat::PCM_24K.bytes_to_ms(48_000), 1000);
        assert_eq!(AudioFormat::PCM_24K.bytes_to_ms(usize::MAX), {
            (usize::MAX as u128 * 1000 / 48_000) as u64
        });
        let zero = AudioFormat {
            encoding: Encoding::L16,
            sample_rate: 0,
        };
        assert_eq!(zero.bytes_to_ms(100), 0);
    }

    #[test]
    fn frame_bytes_round_trip_to_frame_ms() {
        for f in [
            AudioFormat::MULAW_8K,
            AudioFormat::L16_8K,
            AudioFormat::L16_16K,
            AudioFormat::PCM_24K,
        ] {
            assert_eq!(f.bytes_to_ms(f.frame_bytes()), FRAME_MS, "{f:?}");
        }
    }

    #[test]
    fn parses_plivo_media_formats() {
        assert_eq!(
            AudioFormat::from_plivo("audio/x-mulaw", 8000),
            Some(AudioFormat::MULAW_8K)
        );
        assert_eq!(
            AudioFormat::from_plivo("audio/x-l16", 8000),
            Some(AudioFormat::L16_8K)
        );
        assert_eq!(
            AudioFormat::from_plivo("audio/x-l16", 16000),
            Some(AudioFormat::L16_16K)
        );
        assert_eq!(
            AudioFormat::from_plivo(" Audio/X-MULAW ", 8000),
            Some(AudioFormat::MULAW_8K)
        );
    }

    #[test]
    fn rejects_unknown_plivo_media_formats() {
        assert_eq!(AudioFormat::from_plivo("audio/x-mulaw", 16000), None);
        assert_eq!(AudioFormat::from_plivo("audio/x-l16", 24000), None);
        assert_eq!(AudioFormat::from_plivo("audio/x-l16", 0), None);
        assert_eq!(AudioFormat::from_plivo("audio/x-alaw", 8000), None);
        assert_eq!(AudioFormat::from_plivo("", 8000), None);
    }

    #[test]
    fn plivo_content_types() {
        assert_eq!(AudioFormat::MULAW_8K.plivo_content_type(), "audio/x-mulaw");
        assert_eq!(AudioFormat::L16_8K.plivo_content_type(), "audio/x-l16");
        assert_eq!(AudioFormat::L16_16K.plivo_content_type(), "audio/x-l16");
    }

    #[test]
    fn content_type_parses_back() {
        for f in [
            AudioFormat::MULAW_8K,
            AudioFormat::L16_8K,
            AudioFormat::L16_16K,
        ] {
            assert_eq!(
                AudioFormat::from_plivo(f.plivo_content_type(), f.sample_rate),
                Some(f)
            );
        }
    }
}
