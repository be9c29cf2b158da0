//! A per-call resampler between 8, 16 and 24 kHz, one 20 ms frame at a time.
//!
//! A polyphase FIR for the rational ratio `up / down` (8 → 16 kHz is 2/1, 24 → 8 kHz is 1/3,
//! 16 → 24 kHz is 3/2): a Kaiser-windowed sinc designed at `from × up`, evaluated only at
//! the output instants. Every 20 ms frame is a whole number of samples at every rate, so each
//! call consumes one input frame and produces one output frame; the state is the last few
//! input samples.
//!
//! Why not rubato: its FFT resampler, with one frame per block, delays the audio by half a
//! block, 10 ms each way; on a Gemini call that put 20 ms into every turn (and on the caller's
//! side the 10 ms tail of each utterance waited a whole frame). Its sinc resampler gives a
//! varying number of samples per frame at these ratios and, to keep the telephone band flat,
//! needs at least 2 ms of delay when upsampling. This filter's transition band is ±10 % around
//! the lower Nyquist frequency (3.6 to 4.4 kHz when 8 kHz is involved), which keeps 300 to
//! 3400 Hz flat and everything that would fold back into it 50 dB down, for 1.8 ms of delay.
//! A ±15 % band (1.2 ms) was tried: the local pipeline's Whisper then misheard more of the
//! agent's own lines coming back through the phone path.
//!
//! All buffers are allocated in [`Resampler::new`]; [`Resampler::process_frame`] does not
//! allocate.

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
}

/// Converts one 20 ms frame at a time between two of 8, 16 and 24 kHz, keeping filter state
/// across calls, so one instance serves one direction of one call.
pub struct Resampler {
    from_hz: u32,
    to_hz: u32,
    /// `None` for the identity pair, which copies.
    filter: Option<Polyphase>,
}

impl Resampler {
    /// A resampler for any pair of 8000/16000/24000 Hz (the identity pair is allowed and
    /// copies).
    pub fn new(from_hz: u32, to_hz: u32) -> Result<Self, ResampleError> {
        if !SUPPORTED_RATES.contains(&from_hz) || !SUPPORTED_RATES.contains(&to_hz) {
            return Err(ResampleError::UnsupportedRate { from_hz, to_hz });
        }
        let filter = (from_hz != to_hz).then(|| Polyphase::new(from_hz, to_hz));
        Ok(Self {
            from_hz,
            to_hz,
            filter,
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
        match &mut self.filter {
            None => output.copy_from_slice(input),
            Some(filter) => filter.process(input, output),
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

    /// Delay the resampler adds, in output samples, rounded to the nearest (0 for the
    /// identity pair; about 1.8 ms for the others).
    pub fn output_delay(&self) -> usize {
        self.filter.as_ref().map_or(0, Polyphase::output_delay)
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
        if let Some(filter) = &mut self.filter {
            filter.reset();
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

/// i16 full scale, for mapping to and from the filter's -1.0..1.0 floats.
const SCALE: f32 = 32768.0;

/// Stopband attenuation the filter is designed for, in dB: aliases and images of a
/// full-scale tone stay below what μ-law resolves at speech levels.
const ATTENUATION_DB: f64 = 50.0;
/// Half the transition band, relative to the lower Nyquist frequency (±10 %: 3.6 to 4.4 kHz
/// around 4 kHz).
const HALF_TRANSITION: f64 = 0.10;

fn frame_len(rate_hz: u32) -> usize {
    (u64::from(rate_hz) * FRAME_MS / 1000) as usize
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// A rational polyphase FIR: output sample `n` sits at `n × down` on the grid of
/// `from × up` Hz, where phase `(n × down) % up` of the prototype filter meets the input
/// samples before it.
struct Polyphase {
    up: usize,
    down: usize,
    /// Taps of each phase.
    taps: usize,
    /// Phase `p`'s taps at `p × taps ..`, normalised to unity gain (which includes zero
    /// stuffing's `up`) and ordered oldest input first, to run forward with the samples.
    coefficients: Vec<f32>,
    /// The last `taps - 1` input samples, then the current frame.
    window: Vec<f32>,
    delay: usize,
}

impl Polyphase {
    fn new(from_hz: u32, to_hz: u32) -> Self {
        let divisor = gcd(from_hz, to_hz);
        let up = (to_hz / divisor) as usize;
        let down = (from_hz / divisor) as usize;
        let grid_hz = f64::from(from_hz) * up as f64;
        let nyquist = f64::from(from_hz.min(to_hz)) / 2.0;
        let transition = 2.0 * HALF_TRANSITION * nyquist / grid_hz;
        // Kaiser's estimates of the window's length and shape for the attenuation.
        let length = ((ATTENUATION_DB - 7.95) / (14.36 * transition)).ceil() as usize + 1;
        let taps = length.div_ceil(up);
        let length = taps * up;
        let beta = 0.1102 * (ATTENUATION_DB - 8.7);
        let cutoff = nyquist / grid_hz;
        let centre = (length - 1) as f64 / 2.0;
        let bessel_beta = bessel_i0(beta);
        let prototype: Vec<f64> = (0..length)
            .map(|i| {
                let x = i as f64 - centre;
                let sinc = if x == 0.0 {
                    2.0 * cutoff
                } else {
                    (std::f64::consts::TAU * cutoff * x).sin() / (std::f64::consts::PI * x)
                };
                let r = x / centre;
                sinc * bessel_i0(beta * (1.0 - r * r).max(0.0).sqrt()) / bessel_beta
            })
            .collect();
        // Normalise each phase to unity gain at DC, so a constant stays exactly constant.
        let mut coefficients = vec![0.0f32; length];
        for phase in 0..up {
            let sum: f64 = (0..taps).map(|k| prototype[phase + k * up]).sum();
            for k in 0..taps {
                // Tap k meets the sample k before the newest.
                coefficients[phase * taps + (taps - 1 - k)] =
                    (prototype[phase + k * up] / sum) as f32;
            }
        }
        let history = taps - 1;
        Self {
            up,
            down,
            taps,
            coefficients,
            window: vec![0.0; history + frame_len(from_hz)],
            delay: ((length - 1) as f64 / 2.0 / down as f64).round() as usize,
        }
    }

    fn output_delay(&self) -> usize {
        self.delay
    }

    fn reset(&mut self) {
        self.window.fill(0.0);
    }

    /// `input` and `output` are exactly one frame each (checked by the caller).
    fn process(&mut self, input: &[i16], output: &mut [i16]) {
        let history = self.taps - 1;
        for (f, &s) in self.window[history..].iter_mut().zip(input) {
            *f = f32::from(s) / SCALE;
        }
        for (n, out) in output.iter_mut().enumerate() {
            let position = n * self.down;
            let newest = history + position / self.up;
            let phase = position % self.up;
            let taps = &self.coefficients[phase * self.taps..(phase + 1) * self.taps];
            let samples = &self.window[newest + 1 - self.taps..=newest];
            let value = dot(taps, samples);
            // Filter ringing can overshoot full scale; saturate instead of wrapping.
            *out = (value * SCALE)
                .round()
                .clamp(f32::from(i16::MIN), f32::from(i16::MAX)) as i16;
        }
        let frame = self.window.len() - history;
        self.window.copy_within(frame.., 0);
    }
}

/// `a · b` over equal lengths, in eight independent sums so the compiler can use vector
/// registers (one running f32 sum must be added in order, which it cannot vectorise).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let (a_body, a_rest) = a.split_at(a.len() / 8 * 8);
    let (b_body, b_rest) = b.split_at(a_body.len());
    for (x, y) in a_body.chunks_exact(8).zip(b_body.chunks_exact(8)) {
        for lane in 0..8 {
            lanes[lane] += x[lane] * y[lane];
        }
    }
    let tail: f32 = a_rest.iter().zip(b_rest).map(|(x, y)| x * y).sum();
    lanes.iter().sum::<f32>() + tail
}

/// The zeroth-order modified Bessel function of the first kind, by its power series.
fn bessel_i0(x: f64) -> f64 {
    let mut sum = 1.0;
    let mut term = 1.0;
    let half = x / 2.0;
    for k in 1..64 {
        term *= (half / k as f64) * (half / k as f64);
        sum += term;
        if term < sum * 1e-16 {
            break;
        }
    }
    sum
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
    fn the_delay_is_under_two_milliseconds() {
        for (from, to) in PAIRS {
            let r = Resampler::new(from, to).unwrap();
            let ms = r.output_delay() as f64 * 1000.0 / f64::from(to);
            if from == to {
                assert_eq!(r.output_delay(), 0);
            } else {
                assert!((0.5..=2.0).contains(&ms), "{from} -> {to}: {ms} ms");
            }
        }
    }

    #[test]
    fn a_step_arrives_after_the_stated_delay() {
        for (from, to) in PAIRS {
            if from == to {
                continue;
            }
            let mut r = Resampler::new(from, to).unwrap();
            let mut input = vec![0i16; r.input_frame_len()];
            let half = input.len() / 2;
            input[half..].fill(10_000);
            let mut out = vec![0i16; r.output_frame_len()];
            r.process_frame(&input, &mut out).unwrap();
            // The step's edge sits half an input sample before its first sample; its midpoint
            // (5000) is crossed there plus the delay, within a sample or so.
            let edge = (half as f64 - 0.5) * f64::from(to) / f64::from(from);
            let step = edge + r.output_delay() as f64;
            let crossing = out.iter().position(|&s| s >= 5000).unwrap() as f64;
            assert!(
                (crossing - step).abs() <= 1.5,
                "{from} -> {to}: {crossing} vs {step}"
            );
        }
    }

    /// The amplitude of `freq` in `samples` relative to full scale (Goertzel).
    fn amplitude_at(samples: &[i16], rate: u32, freq: f64) -> f64 {
        let w = std::f64::consts::TAU * freq / f64::from(rate);
        let (mut s1, mut s2) = (0.0, 0.0);
        for &x in samples {
            let s0 = f64::from(x) / 32768.0 + 2.0 * w.cos() * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        let power = s1 * s1 + s2 * s2 - 2.0 * w.cos() * s1 * s2;
        2.0 * power.sqrt() / samples.len() as f64
    }

    #[test]
    fn upsampling_leaves_no_image_of_the_telephone_band() {
        // Zero stuffing mirrors f at (from - f): 3 kHz at 8 kHz would also sound at 5 kHz.
        for (to, freq) in [(16000, 3000.0), (24000, 3000.0), (16000, 3400.0)] {
            let (out, _) = tone_through(8000, to, freq);
            let tone = amplitude_at(&out, to, freq);
            let image = amplitude_at(&out, to, 8000.0 - freq);
            assert!((0.48..0.52).contains(&tone), "{to}: tone {tone}");
            assert!(
                image < 0.5 * 0.01,
                "8000 -> {to}: image at {} Hz {image}",
                8000.0 - freq
            );
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
    fn downsampling_keeps_what_would_fold_into_the_band_out() {
        // Anything from 4.6 kHz up folds into 300–3400 Hz at 8 kHz; it must stay 40 dB down,
        // tones off any round frequency included.
        for from in [16000, 24000] {
            for freq in [4600.0, 4987.3, 5555.0, 7400.0] {
                let (out, _) = tone_through(from, 8000, freq);
                let alias = amplitude_at(&out, 8000, 8000.0 - freq);
                assert!(alias < 0.5 * 0.01, "{from}: {freq} Hz folded, {alias}");
            }
        }
    }

    /// The transition band starts at 3.4 kHz; 3.5 kHz is barely into it.
    const PASS_3500: f64 = 0.95;
}
