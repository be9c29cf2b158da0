//! Between the carrier's audio format and the 16 kHz PCM the speech engines speak. Pure, and
//! per call: each direction keeps its own resampler state.

use crate::audio::{
    AudioFormat, Encoding,
    framing::Rechunker,
    l16, mulaw,
    resample::{ResampleError, Resampler},
};

const SPEECH_HZ: u32 = speech::SAMPLE_RATE;
/// 20 ms at 16 kHz.
const SPEECH_FRAME: usize = (SPEECH_HZ / 50) as usize;

/// Caller audio in the carrier's format → 16 kHz samples in -1..1.
pub struct Inbound {
    format: AudioFormat,
    rechunker: Rechunker,
    resampler: Resampler,
    carrier: Vec<i16>,
    speech: Vec<i16>,
}

impl Inbound {
    pub fn new(format: AudioFormat) -> Result<Self, ResampleError> {
        Ok(Self {
            format,
            rechunker: Rechunker::new(format.frame_bytes()),
            resampler: Resampler::new(format.sample_rate, SPEECH_HZ)?,
            carrier: vec![0; format.frame_samples()],
            speech: vec![0; SPEECH_FRAME],
        })
    }

    /// Converts `bytes` (any length), calling `emit` with each whole 20 ms frame at 16 kHz.
    pub fn push(&mut self, bytes: &[u8], mut emit: impl FnMut(&[f32])) {
        let Self {
            format,
            rechunker,
            resampler,
            carrier,
            speech,
        } = self;
        let mut floats = [0.0f32; SPEECH_FRAME];
        rechunker.push(bytes, |frame| {
            match format.encoding {
                Encoding::Mulaw => mulaw::decode(frame, carrier),
                Encoding::L16 => l16::decode_le(frame, carrier),
            };
            // Sizes are fixed by construction, so the resampler cannot fail here.
            if resampler.process_frame(carrier, speech).is_ok() {
                for (float, sample) in floats.iter_mut().zip(speech.iter()) {
                    *float = f32::from(*sample) / 32768.0;
                }
                emit(&floats);
            }
        });
    }
}

/// 16 kHz speech from the synthesiser → the carrier's format, padded to whole 20 ms frames.
pub fn encode_speech(samples: &[i16], format: AudioFormat) -> Result<Vec<u8>, ResampleError> {
    let mut resampler = Resampler::new(SPEECH_HZ, format.sample_rate)?;
    let delay = resampler.output_delay();
    let out_frame = resampler.output_frame_len();
    let mut carrier =
        Vec::with_capacity(samples.len() * format.sample_rate as usize / 16_000 + 2 * out_frame);
    let mut input = [0i16; SPEECH_FRAME];
    let mut output = vec![0i16; out_frame];
    // One extra frame flushes the resampler's delay.
    let frames = samples.len().div_ceil(SPEECH_FRAME) + usize::from(delay > 0);
    for index in 0..frames {
        let start = index * SPEECH_FRAME;
        let chunk = samples.get(start..).unwrap_or(&[]);
        let len = chunk.len().min(SPEECH_FRAME);
        input[..len].copy_from_slice(&chunk[..len]);
        input[len..].fill(0);
        let written = resampler.process_frame(&input, &mut output)?;
        carrier.extend_from_slice(&output[..written]);
    }
    // Drop the resampler's leading delay so speech starts at once, and the flush's tail.
    let expected = (samples.len() * format.sample_rate as usize).div_ceil(SPEECH_HZ as usize);
    let start = delay.min(carrier.len());
    let carrier = &carrier[start..(start + expected).min(carrier.len())];
    let frame_samples = format.frame_samples();
    let whole = carrier.len().div_ceil(frame_samples) * frame_samples;
    let mut padded = carrier.to_vec();
    padded.resize(whole, 0);
    let mut bytes = vec![0u8; whole * format.bytes_per_sample()];
    match format.encoding {
        Encoding::Mulaw => mulaw::encode(&padded, &mut bytes),
        Encoding::L16 => l16::encode_le(&padded, &mut bytes),
    };
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::tone;

    #[test]
    fn inbound_mulaw_becomes_16k_frames_of_the_same_duration() {
        let mut inbound = Inbound::new(AudioFormat::MULAW_8K).unwrap();
        let tone = tone::sine_mulaw(440.0, 0.5, 200);
        let mut frames = 0;
        let mut peak = 0.0f32;
        // Uneven pieces: the rechunker makes 20 ms frames of them.
        for piece in tone.chunks(70) {
            inbound.push(piece, |frame| {
                assert_eq!(frame.len(), 320);
                frames += 1;
                peak = frame.iter().fold(peak, |peak, s| peak.max(s.abs()));
            });
        }
        assert_eq!(frames, 10);
        assert!(peak > 0.3 && peak <= 1.0, "peak {peak}");
    }

    #[test]
    fn speech_is_encoded_in_whole_carrier_frames_without_leading_delay() {
        let samples: Vec<i16> = (0..16_000 / 4)
            .map(|i| ((i as f32 * 0.2).sin() * 12_000.0) as i16)
            .collect();
        let mulaw = encode_speech(&samples, AudioFormat::MULAW_8K).unwrap();
        assert_eq!(mulaw.len() % 160, 0);
        // 250 ms of speech → 250 ms of carrier audio, within a frame.
        assert!((2000..=2160).contains(&mulaw.len()), "{}", mulaw.len());
        let first_frame_energy = tone::frame_energy_mulaw(&mulaw[..160]);
        assert!(
            first_frame_energy > 0.05,
            "speech starts in the first frame"
        );

        let l16 = encode_speech(&samples, AudioFormat::L16_16K).unwrap();
        assert_eq!(
            l16.len(),
            samples.len().div_ceil(320) * 320 * 2,
            "whole frames"
        );
        assert!(encode_speech(&[], AudioFormat::MULAW_8K).unwrap().len() <= 160);
    }
}
