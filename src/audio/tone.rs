//! Synthetic audio for simulators and tests: sine tones as μ-law 8 kHz, and frame energy.
//!
//! Simulated callers and fake AI peers use a tone as "speech" and energy as a voice detector.
//! Generation allocates (it is not on the realtime path); measuring energy does not.

use super::mulaw;

/// A sine of `freq_hz` at `amplitude` (fraction of full scale, clamped to 0..=1) lasting
/// `duration_ms`, as μ-law 8 kHz bytes (8 per millisecond).
pub fn sine_mulaw(freq_hz: f32, amplitude: f32, duration_ms: u64) -> Vec<u8> {
    const RATE: f64 = 8000.0;
    let samples = usize::try_from(duration_ms.saturating_mul(8)).unwrap_or(usize::MAX);
    // `max(0.0)` also maps NaN to 0, so a bad amplitude gives silence rather than garbage.
    let amplitude = f64::from(amplitude.clamp(0.0, 1.0).max(0.0)) * f64::from(i16::MAX);
    let step = std::f64::consts::TAU * f64::from(freq_hz) / RATE;
    (0..samples)
        .map(|n| {
            // Phase from the index, not accumulated, so long tones don't drift.
            let value = amplitude * (step * n as f64).sin();
            mulaw::encode_sample(value.round() as i16)
        })
        .collect()
}

/// RMS of a μ-law frame's decoded samples, as a fraction of full scale (0..=1).
/// A full-scale sine measures about 0.707; silence and an empty frame measure 0.
pub fn frame_energy_mulaw(frame: &[u8]) -> f32 {
    if frame.is_empty() {
        return 0.0;
    }
    let sum_sq: f64 = frame
        .iter()
        .map(|&code| {
            let s = f64::from(mulaw::decode_sample(code));
            s * s
        })
        .sum();
    let rms = (sum_sq / frame.len() as f64).sqrt();
    (rms / 32768.0) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_is_eight_bytes_per_ms() {
        assert_eq!(sine_mulaw(440.0, 0.5, 20).len(), 160);
        assert_eq!(sine_mulaw(440.0, 0.5, 1000).len(), 8000);
        assert!(sine_mulaw(440.0, 0.5, 0).is_empty());
    }

    #[test]
    fn energy_tracks_amplitude() {
        for amplitude in [0.1f32, 0.25, 0.5, 1.0] {
            let tone = sine_mulaw(400.0, amplitude, 200);
            for frame in tone.chunks_exact(160) {
                let energy = frame_energy_mulaw(frame);
                let expected = amplitude / std::f32::consts::SQRT_2;
                assert!(
                    (energy - expected).abs() < expected * 0.05,
                    "amplitude {amplitude}: energy {energy}, expected {expected}"
                );
            }
        }
    }

    #[test]
    fn silence_has_no_energy() {
        assert_eq!(frame_energy_mulaw(&[0xFF; 160]), 0.0);
        assert_eq!(frame_energy_mulaw(&[0x7F; 160]), 0.0);
        assert_eq!(frame_energy_mulaw(&[]), 0.0);
        assert!(sine_mulaw(1000.0, 0.0, 20).iter().all(|&b| b == 0xFF));
    }

    #[test]
    fn amplitude_is_clamped() {
        assert_eq!(sine_mulaw(300.0, 5.0, 20), sine_mulaw(300.0, 1.0, 20));
        assert_eq!(sine_mulaw(300.0, -1.0, 20), sine_mulaw(300.0, 0.0, 20));
        assert_eq!(sine_mulaw(300.0, f32::NAN, 20), sine_mulaw(300.0, 0.0, 20));
    }

    #[test]
    fn energy_is_within_unit_range() {
        let loudest = frame_energy_mulaw(&[0x80; 160]);
        assert!(loudest > 0.97 && loudest <= 1.0, "{loudest}");
    }

    #[test]
    fn tone_has_the_requested_frequency() {
        let tone = sine_mulaw(1000.0, 0.5, 1000);
        let mut pcm = vec![0i16; tone.len()];
        mulaw::decode(&tone, &mut pcm);
        let crossings = pcm.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
        assert!((1995..=2005).contains(&crossings), "{crossings}");
    }
}
