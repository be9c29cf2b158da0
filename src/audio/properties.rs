//! Property tests of the codecs and the resampler: μ-law and L16 round trips on any audio,
//! and a resampler that turns any 20 ms frame into exactly one 20 ms frame, for every pair of
//! rates, refusing frames of the wrong size with a typed error.

use std::cell::RefCell;

use proptest::prelude::*;

use super::{l16, mulaw, resample::ResampleError, resample::Resampler};

const RATES: [u32; 3] = [8000, 16000, 24000];

/// Audio as it comes: silence, full-scale square waves, and anything.
fn samples(len: impl Into<prop::collection::SizeRange>) -> impl Strategy<Value = Vec<i16>> {
    prop::collection::vec(
        prop_oneof![
            4 => any::<i16>(),
            1 => Just(0),
            1 => Just(i16::MIN),
            1 => Just(i16::MAX),
        ],
        len,
    )
}

/// A supported rate now and then, else any.
fn rate() -> impl Strategy<Value = u32> {
    prop_oneof![1 => prop::sample::select(&RATES[..]), 3 => any::<u32>()]
}

thread_local! {
    /// One resampler per pair of rates (9), kept across cases as a call keeps its own.
    static RESAMPLERS: RefCell<Vec<Resampler>> = RefCell::new(
        RATES
            .iter()
            .flat_map(|&from| RATES.iter().map(move |&to| (from, to)))
            .map(|(from, to)| Resampler::new(from, to).expect("a supported pair"))
            .collect(),
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn mulaw_decode_then_encode_gives_back_every_code_but_negative_zero(
        codes in prop::collection::vec(any::<u8>(), 0..400),
    ) {
        let mut pcm = vec![0i16; codes.len()];
        let mut back = vec![0u8; codes.len()];
        prop_assert_eq!(mulaw::decode(&codes, &mut pcm), codes.len());
        prop_assert_eq!(mulaw::encode(&pcm, &mut back), codes.len());
        let expected: Vec<u8> = codes
            .iter()
            .map(|&code| if code == 0x7F { mulaw::SILENCE } else { code })
            .collect();
        prop_assert_eq!(back, expected);
    }

    #[test]
    fn mulaw_encode_then_decode_keeps_sign_and_order_within_its_step(
        pcm in samples(0..400),
        room in 0..400usize,
    ) {
        // Any output size: the codec processes what fits and says how much.
        let mut codes = vec![0u8; room];
        let written = mulaw::encode(&pcm, &mut codes);
        prop_assert_eq!(written, pcm.len().min(room));
        let mut decoded = vec![0i16; written];
        prop_assert_eq!(mulaw::decode(&codes[..written], &mut decoded), written);
        for (&sample, &heard) in pcm.iter().zip(&decoded) {
            let (sample, heard) = (i32::from(sample), i32::from(heard));
            // G.711 clips magnitudes above 32635 to its top level (32124); below that, the
            // error is half a step, and steps grow with the magnitude (< (|x| + 132) / 16).
            let bound = if sample.abs() > 32635 { sample.abs() - 32124 } else { (sample.abs() + 132) / 16 + 1 };
            prop_assert!((sample - heard).abs() <= bound, "{} heard as {}", sample, heard);
            prop_assert!(sample.signum() * heard.signum() >= 0, "{} heard as {}", sample, heard);
            // Decoded audio is a fixed point of the codec.
            prop_assert_eq!(mulaw::decode_sample(mulaw::encode_sample(heard as i16)), heard as i16);
        }
        let mut sorted = pcm[..written].to_vec();
        sorted.sort_unstable();
        let heard: Vec<i16> = sorted.iter().map(|&sample| mulaw::decode_sample(mulaw::encode_sample(sample))).collect();
        prop_assert!(heard.windows(2).all(|pair| pair[0] <= pair[1]), "monotonic");
    }

    #[test]
    fn l16_round_trips_any_samples_and_any_even_bytes(
        pcm in samples(0..400),
        bytes in prop::collection::vec(any::<u8>(), 0..800),
    ) {
        let mut encoded = vec![0u8; pcm.len() * 2];
        prop_assert_eq!(l16::encode_le(&pcm, &mut encoded), pcm.len());
        let mut decoded = vec![0i16; pcm.len()];
        prop_assert_eq!(l16::decode_le(&encoded, &mut decoded), pcm.len());
        prop_assert_eq!(&decoded, &pcm);

        // Bytes to samples and back: an odd last byte is half a sample and is left out.
        let mut samples = vec![0i16; bytes.len() / 2];
        prop_assert_eq!(l16::decode_le(&bytes, &mut samples), bytes.len() / 2);
        let mut back = vec![0u8; bytes.len()];
        prop_assert_eq!(l16::encode_le(&samples, &mut back), bytes.len() / 2);
        let even = bytes.len() & !1;
        prop_assert_eq!(&back[..even], &bytes[..even]);
    }

    #[test]
    fn the_resampler_turns_any_frame_into_one_frame_of_the_target_rate(
        pair in 0..9usize,
        seed in samples(480),
        slack in 0..8usize,
    ) {
        RESAMPLERS.with_borrow_mut(|resamplers| {
            let resampler = &mut resamplers[pair];
            let (in_len, out_len) = (resampler.input_frame_len(), resampler.output_frame_len());
            prop_assert_eq!(in_len as u32, resampler.from_hz() / 50);
            prop_assert_eq!(out_len as u32, resampler.to_hz() / 50);
            // A larger output buffer keeps what is past the frame untouched.
            let mut output = vec![0x5A5A_i16; out_len + slack];
            let written = resampler.process_frame(&seed[..in_len], &mut output).unwrap();
            prop_assert_eq!(written, out_len);
            prop_assert!(output[out_len..].iter().all(|&sample| sample == 0x5A5A));
            Ok(())
        })?;
    }

    #[test]
    fn the_resampler_refuses_frames_of_the_wrong_size(
        pair in 0..9usize,
        input_len in 0..600usize,
        output_len in 0..600usize,
    ) {
        RESAMPLERS.with_borrow_mut(|resamplers| {
            let resampler = &mut resamplers[pair];
            let (in_len, out_len) = (resampler.input_frame_len(), resampler.output_frame_len());
            let input = vec![0i16; input_len];
            let mut output = vec![0i16; output_len];
            match resampler.process_frame(&input, &mut output) {
                Ok(written) => {
                    prop_assert!(input_len == in_len && output_len >= out_len);
                    prop_assert_eq!(written, out_len);
                }
                Err(ResampleError::InputLength { expected, actual }) => {
                    prop_assert_eq!((expected, actual), (in_len, input_len));
                    prop_assert_ne!(input_len, in_len);
                }
                Err(ResampleError::OutputTooSmall { expected, actual }) => {
                    prop_assert_eq!((expected, actual), (out_len, output_len));
                    prop_assert!(input_len == in_len && output_len < out_len);
                }
                Err(other) => prop_assert!(false, "unexpected {}", other),
            }
            Ok(())
        })?;
    }

    #[test]
    fn only_8_16_and_24_khz_are_resampled(from in rate(), to in rate()) {
        let supported = RATES.contains(&from) && RATES.contains(&to);
        match Resampler::new(from, to) {
            Ok(resampler) => prop_assert!(supported, "{:?}", resampler),
            Err(ResampleError::UnsupportedRate { .. }) => prop_assert!(!supported),
            Err(other) => prop_assert!(false, "unexpected {}", other),
        }
    }
}
