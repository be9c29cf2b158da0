//! A per-call resampler between 8, 16 and 24 kHz, one 20 ms frame at a time.
//!
//! Built on rubato's synchronous FFT resampler with both sides fixed
//! ([`rubato::FixedSync::Both`]). For every supported pair the FFT block is exactly one 20 ms
//! frame on each side (the rates' GCD, 8000, is a multiple of 50), so each call consumes one
//! input frame and produces one output frame with no FIFO. Its anti-aliasing filter sits just
//! below the lower Nyquist frequency, so downsampling does not fold high tones back into the
//! band.
//!
//! Latency: the FFT overlap-add delays the signal by half a block, i.e. 10 ms
//! ([`Resampler::output_delay`] output samples); the first call's output starts with that
//! much silence. Larger blocks would filter more sharply but cost more delay.
//!
//! All buffers are allocated in [`Resampler::new`]; [`Resampler::process_frame`] does not
//! allocate.

use rubato::Resampler as _;
use rubato::audioadapter_buffers::SizeError;
use rubato::audioadapter_buffers::direct::InterleavedSlice;

use super::FRAME_MS;

/// Why a resampler could not be built or could not process a frame.
#[derive(Debug, thiserror::Error)]
pub enum ResampleError {
    /// Only 8000, 16000 and 24000 Hz are supported, on both sides.
    #[error("unsupported resampling {from_hz} Hz -> {to_hz} Hz (supported: 8000, 16000, 24000)")]
    UnsupportedRate { from_hz: u32, to_hz: u32 },
    /// `process_frame` takes exactly one 20 ms frame.
    #[error("input must be exactly one frame of {expected} samples, got {actual}")]
    InputLength { expected: usize, actual: usize },
    /// The output slice cannot hold one 20 ms frame.
    #[error("output must hold at least {expected} samples, has room for {actual}")]
    OutputTooSmall { expected: usize, actual: usize },
    /// rubato refused the configuration.
    #[error("building the resampler failed: {0}")]
    Construction(#[from] rubato::ResamplerConstructionError),
    /// rubato failed while processing (a bug here: sizes are checked beforehand).
    #[error("resampling failed: {0}")]
    Process(#[from] rubato::ResampleError),
    /// A buffer adapter was built with the wrong size (a bug here: sizes are fixed).
    #[error("resampler buffer has the wrong size: {0}")]
    Buffer(#[from] SizeError),
}

/// Converts one 20 ms frame at a time between two of 8, 16 and 24 kHz, keeping filter state
/// across calls, so one instance serves one direction of one call.
pub struct Resampler {
    from_hz: u32,
    to_hz: u32,
    /// `None` for the identity pair, which copies.
    fft: Option<FftState>,
}

impl Resampler {
    /// A resampler for any pair of 8000/16000/24000 Hz (the identity pair is allowed and
    /// copies).
    pub fn new(from_hz: u32, to_hz: u32) -> Result<Self, ResampleError> {
        if !SUPPORTED_RATES.contains(&from_hz) || !SUPPORTED_RATES.contains(&to_hz) {
            return Err(ResampleError::UnsupportedRate { from_hz, to_hz });
        }
        let fft = if from_hz == to_hz {
            None
        } else {
            Some(FftState::new(from_hz, to_hz)?)
        };
        Ok(Self {
            from_hz,
            to_hz,
            fft,
        })
    }

    /// Consumes exactly one 20 ms frame of i16 samples at `from_hz` (`from_hz / 50` samples)
    /// and writes one 20 ms frame at `to_hz` (`to_hz / 50` samples) into the start of
    /// `output`; returns samples written.
    pub fn process_frame(
        &mut self,
        input: &[i16],
        output: &mut [i16],
    ) -> Result<usize, ResampleError> {
        let in_len = self.input_frame_len();
        let out_len = self.output_frame_len();
        if input.len() != in_len {
            return Err(ResampleError::InputLength {
                expected: in_len,
                actual: input.len(),
            });
        }
        if output.len() < out_len {
            return Err(ResampleError::OutputTooSmall {
                expected: out_len,
                actual: output.len(),
            });
        }
        let output = &mut output[..out_len];
        match &mut self.fft {
            None => output.copy_from_slice(input),
            Some(state) => state.process(input, output)?,
        }
        Ok(out_len)
    }

    /// Samples per input frame (`from_hz / 50`).
    pub fn input_frame_len(&self) -> usize {
        frame_len(self.from_hz)
    }

    /// Samples per output frame (`to_hz / 50`).
    pub fn output_frame_len(&self) -> usize {
        frame_len(self.to_hz)
    }

    /// Delay the resampler adds, in output samples: half the FFT block, i.e. 10 ms
    /// (0 for the identity pair).
    pub fn output_delay(&self) -> usize {
        self.fft.as_ref().map_or(0, |s| s.fft.output_delay())
    }

    /// The input rate, in Hz.
    pub fn from_hz(&self) -> u32 {
        self.from_hz
    }

    /// The output rate, in Hz.
    pub fn to_hz(&self) -> u32 {
        self.to_hz
    }

    /// Forgets all filter state, as if newly built (e.g. between unrelated utterances).
    pub fn reset(&mut self) {
        if let Some(state) = &mut self.fft {
            state.fft.reset();
        }
    }
}

impl std::fmt::Debug for Resampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resampler")
            .field("from_hz", &self.from_hz)
            .field("to_hz", &self.to_hz)
            .field("output_delay", &self.output_delay())
            .finish()
    }
}

const SUPPORTED_RATES: [u32; 3] = [8000, 16000, 24000];

/// i16 full scale, for mapping to and from rubato's -1.0..1.0 floats.
const SCALE: f32 = 32768.0;

fn frame_len(rate_hz: u32) -> usize {
    (u64::from(rate_hz) * FRAME_MS / 1000) as usize
}

/// rubato's state plus the f32 frames it reads and writes, all allocated once.
struct FftState {
    fft: rubato::Fft<f32>,
    input: Vec<f32>,
    output: Vec<f32>,
}

impl FftState {
    fn new(from_hz: u32, to_hz: u32) -> Result<Self, ResampleError> {
        let in_len = frame_len(from_hz);
        let out_len = frame_len(to_hz);
        let fft = rubato::Fft::<f32>::new(
            from_hz as usize,
            to_hz as usize,
            in_len,
            1,
            rubato::FixedSync::Both,
        )?;
        // The module's premise: one FFT block is one frame on each side. Checked rather than
        // assumed so that a rubato change surfaces here, not as a wrong-sized frame.
        if fft.input_frames_next() != in_len || fft.output_frames_next() != out_len {
            return Err(ResampleError::UnsupportedRate { from_hz, to_hz });
        }
        Ok(Self {
            fft,
            input: vec![0.0; in_len],
            output: vec![0.0; out_len],
        })
    }

    /// `input` and `output` are exactly one frame each (checked by the caller).
    fn process(&mut self, input: &[i16], output: &mut [i16]) -> Result<(), ResampleError> {
        for (f, &s) in self.input.iter_mut().zip(input) {
            *f = f32::from(s) / SCALE;
        }
        let frames_in = self.input.len();
        let frames_out = self.output.len();
        let adapter_in = InterleavedSlice::new(&self.input[..], 1, frames_in)?;
        let mut adapter_out = InterleavedSlice::new_mut(&mut self.output[..], 1, frames_out)?;
        self.fft
            .process_into_buffer(&adapter_in, &mut adapter_out, None)?;
        for (s, &f) in output.iter_mut().zip(&self.output) {
            // Filter ringing can overshoot full scale; saturate instead of wrapping.
            *s = (f * SCALE)
                .round()
                .clamp(f32::from(i16::MIN), f32::from(i16::MAX)) as i16;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAIRS: [(u32, u32); 9] = [
        (8000, 8000),
        (8000, 16000),
        (8000, 24000),
        (16000, 8000),
        (16000, 16000),
        (16000, 24000),
        (24000, 8000),
        (24000, 16000),
        (24000, 24000),
    ];

    fn sine(rate: u32, freq: f64, amplitude: f64, seconds: f64) -> Vec<i16> {
        let n = (f64::from(rate) * seconds) as usize;
        (0..n)
            .map(|i| {
                let t = i as f64 / f64::from(rate);
                (amplitude * 32767.0 * (std::f64::consts::TAU * freq * t).sin()).round() as i16
            })
            .collect()
    }

    /// Feeds `input` frame by frame (it must be a whole number of frames).
    fn resample_all(r: &mut Resampler, input: &[i16]) -> Vec<i16> {
        let mut out = Vec::new();
        let mut frame = vec![0i16; r.output_frame_len()];
        for chunk in input.chunks_exact(r.input_frame_len()) {
            let n = r.process_frame(chunk, &mut frame).unwrap();
            out.extend_from_slice(&frame[..n]);
        }
        out
    }

    fn rms(samples: &[i16]) -> f64 {
        let sum: f64 = samples.iter().map(|&s| f64::from(s).powi(2)).sum();
        (sum / samples.len() as f64).sqrt()
    }

    fn zero_crossings(samples: &[i16]) -> usize {
        samples
            .windows(2)
            .filter(|w| (w[0] < 0) != (w[1] < 0))
            .count()
    }

    /// Resamples 1.2 s of a tone and returns 1 s of output after the delay and a settling
    /// frame, together with the input RMS.
    fn tone_through(from: u32, to: u32, freq: f64) -> (Vec<i16>, f64) {
        let input = sine(from, freq, 0.5, 1.2);
        let mut r = Resampler::new(from, to).unwrap();
        let out = resample_all(&mut r, &input);
        let start = r.output_delay() + r.output_frame_len();
        let second = out[start..start + to as usize].to_vec();
        (second, rms(&input))
    }

    #[test]
    fn frame_sizes() {
        for (from, to) in PAIRS {
            let mut r = Resampler::new(from, to).unwrap();
            assert_eq!(r.input_frame_len(), from as usize / 50);
            assert_eq!(r.output_frame_len(), to as usize / 50);
            let input = vec![1000i16; r.input_frame_len()];
            // A larger output slice is allowed; exactly one frame is written.
            let mut output = vec![i16::MAX; r.output_frame_len() + 10];
            for _ in 0..5 {
                assert_eq!(
                    r.process_frame(&input, &mut output).unwrap(),
                    to as usize / 50
                );
            }
            assert!(output[to as usize / 50..].iter().all(|&s| s == i16::MAX));
        }
    }

    #[test]
    fn delay_is_ten_ms() {
        for (from, to) in PAIRS {
            let r = Resampler::new(from, to).unwrap();
            let expected = if from == to { 0 } else { to as usize / 100 };
            assert_eq!(r.output_delay(), expected, "{from} -> {to}");
        }
    }

    #[test]
    fn identity_returns_the_input() {
        for rate in SUPPORTED_RATES {
            let mut r = Resampler::new(rate, rate).unwrap();
            let input = sine(rate, 700.0, 0.8, 0.1);
            assert_eq!(resample_all(&mut r, &input), input);
        }
    }

    #[test]
    fn upsampling_8k_to_24k_keeps_a_1khz_tone() {
        let (out, input_rms) = tone_through(8000, 24000, 1000.0);
        let crossings = zero_crossings(&out);
        assert!((1996..=2004).contains(&crossings), "{crossings} crossings");
        let ratio = rms(&out) / input_rms;
        assert!((0.9..1.1).contains(&ratio), "amplitude ratio {ratio}");
    }

    #[test]
    fn downsampling_24k_to_8k_keeps_a_1khz_tone() {
        let (out, input_rms) = tone_through(24000, 8000, 1000.0);
        let crossings = zero_crossings(&out);
        assert!((1996..=2004).contains(&crossings), "{crossings} crossings");
        let ratio = rms(&out) / input_rms;
        assert!((0.9..1.1).contains(&ratio), "amplitude ratio {ratio}");
    }

    #[test]
    fn every_pair_keeps_a_1khz_tone() {
        for (from, to) in PAIRS {
            let (out, input_rms) = tone_through(from, to, 1000.0);
            let crossings = zero_crossings(&out);
            assert!(
                (1996..=2004).contains(&crossings),
                "{from} -> {to}: {crossings} crossings"
            );
            let ratio = rms(&out) / input_rms;
            assert!((0.9..1.1).contains(&ratio), "{from} -> {to}: ratio {ratio}");
        }
    }

    #[test]
    fn downsampling_passes_3500hz() {
        let (out, input_rms) = tone_through(24000, 8000, 3500.0);
        let ratio = rms(&out) / input_rms;
        assert!(ratio > PASS_3500, "3.5 kHz amplitude ratio {ratio}");
        let crossings = zero_crossings(&out);
        assert!((6990..=7010).contains(&crossings), "{crossings} crossings");
    }

    #[test]
    fn downsampling_rejects_6khz() {
        // 6 kHz is above the 4 kHz Nyquist of 8 kHz; without filtering it would alias to 2 kHz.
        for from in [24000, 16000] {
            let (out, input_rms) = tone_through(from, 8000, 6000.0);
            let ratio = rms(&out) / input_rms;
            assert!(ratio < 0.1, "{from} -> 8000: 6 kHz leaked, ratio {ratio}");
        }
        let (out, input_rms) = tone_through(24000, 16000, 10000.0);
        let ratio = rms(&out) / input_rms;
        assert!(ratio < 0.1, "24000 -> 16000: 10 kHz leaked, ratio {ratio}");
    }

    #[test]
    fn first_frame_starts_with_the_delay() {
        let mut r = Resampler::new(8000, 24000).unwrap();
        let input = vec![10_000i16; 160];
        let mut out = vec![0i16; 480];
        r.process_frame(&input, &mut out).unwrap();
        let delay = r.output_delay();
        // Before the delay the output is (near) silence; after it, the step has arrived.
        assert!(
            out[..delay / 2].iter().all(|s| s.abs() < 200),
            "{:?}",
            &out[..10]
        );
        assert!(out[delay + 40..].iter().all(|s| (s - 10_000).abs() < 500));
    }

    #[test]
    fn full_scale_input_saturates_instead_of_wrapping() {
        // A full-scale square wave makes the filter ring past full scale.
        let input: Vec<i16> = (0..1600)
            .map(|i| {
                if (i / 20) % 2 == 0 {
                    i16::MAX
                } else {
                    i16::MIN
                }
            })
            .collect();
        let mut r = Resampler::new(8000, 24000).unwrap();
        let out = resample_all(&mut r, &input);
        let start = r.output_delay() + 480;
        // Wrapping would put large values of the wrong sign mid-plateau.
        for (i, w) in out[start..].windows(2).enumerate() {
            assert!(
                (i32::from(w[0]) - i32::from(w[1])).abs() < 40_000,
                "jump at {i}"
            );
        }
    }

    #[test]
    fn reset_clears_state() {
        let mut r = Resampler::new(16000, 8000).unwrap();
        let tone = sine(16000, 1000.0, 0.5, 0.02);
        let mut out = vec![0i16; 160];
        r.process_frame(&tone, &mut out).unwrap();
        r.reset();
        r.process_frame(&[0; 320], &mut out).unwrap();
        assert!(out.iter().all(|&s| s == 0));
    }

    #[test]
    fn is_send() {
        // Each call's resampler lives in that call's task.
        fn assert_send<T: Send>() {}
        assert_send::<Resampler>();
    }

    #[test]
    fn rejects_unsupported_rates() {
        for (from, to) in [(44100, 8000), (8000, 48000), (0, 8000), (8000, 0)] {
            assert!(matches!(
                Resampler::new(from, to),
                Err(ResampleError::UnsupportedRate { .. })
            ));
        }
    }

    #[test]
    fn rejects_wrong_frame_sizes() {
        let mut r = Resampler::new(8000, 16000).unwrap();
        let mut out = vec![0i16; 320];
        assert!(matches!(
            r.process_frame(&[0; 159], &mut out),
            Err(ResampleError::InputLength {
                expected: 160,
                actual: 159
            })
        ));
        assert!(matches!(
            r.process_frame(&[0; 161], &mut out),
            Err(ResampleError::InputLength { .. })
        ));
        assert!(matches!(
            r.process_frame(&[0; 160], &mut out[..319]),
            Err(ResampleError::OutputTooSmall {
                expected: 320,
                actual: 319
            })
        ));
        let mut same = Resampler::new(8000, 8000).unwrap();
        assert!(matches!(
            same.process_frame(&[0; 100], &mut out),
            Err(ResampleError::InputLength { .. })
        ));
    }

    #[test]
    fn silence_stays_silent() {
        for (from, to) in PAIRS {
            let mut r = Resampler::new(from, to).unwrap();
            let out = resample_all(&mut r, &vec![0; from as usize / 10]);
            assert!(out.iter().all(|&s| s == 0), "{from} -> {to}");
        }
    }

    #[test]
    fn telephone_band_is_flat() {
        // 300–3400 Hz is what a phone line carries; it must pass within 3%.
        for (from, to) in PAIRS {
            for freq in [300.0, 1000.0, 2500.0, 3400.0] {
                let (out, input_rms) = tone_through(from, to, freq);
                let ratio = rms(&out) / input_rms;
                assert!(
                    (0.97..1.03).contains(&ratio),
                    "{from} -> {to} at {freq} Hz: ratio {ratio}"
                );
            }
        }
    }

    #[test]
    fn downsampling_rejects_tones_between_fft_bins() {
        // Tones that are not a multiple of 50 Hz don't sit on an FFT bin and leak across the
        // spectrum; the window must still keep them out of the band.
        for freq in [4321.0, 5555.0, 9876.5] {
            let (out, input_rms) = tone_through(24000, 8000, freq);
            let ratio = rms(&out) / input_rms;
            assert!(ratio < 0.1, "{freq} Hz leaked, ratio {ratio}");
        }
    }

    /// Measured: 0.984 (the filter's transition band runs from about 3.5 to 4 kHz).
    const PASS_3500: f64 = 0.95;
}
