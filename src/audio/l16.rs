//! Linear 16-bit PCM on the wire: little-endian bytes ⇄ `i16` samples.
//!
//! Plivo's `audio/x-l16` and OpenAI's PCM16 are both signed little-endian, so this is the
//! whole codec. Byte slices are not assumed to be aligned, hence the explicit byte handling
//! rather than a cast.

/// Decodes little-endian byte pairs into samples. Processes
/// `min(input.len() / 2, output.len())` samples and returns that count; a trailing odd byte
/// is ignored (it is half a sample). Never panics.
pub fn decode_le(input: &[u8], output: &mut [i16]) -> usize {
    let mut n = 0;
    for (out, pair) in output.iter_mut().zip(input.chunks_exact(2)) {
        *out = i16::from_le_bytes([pair[0], pair[1]]);
        n += 1;
    }
    n
}

/// Encodes samples as little-endian byte pairs. Processes
/// `min(input.len(), output.len() / 2)` samples and returns the count of samples written
/// (bytes written is twice that). Never panics.
pub fn encode_le(input: &[i16], output: &mut [u8]) -> usize {
    let mut n = 0;
    for (pair, &sample) in output.chunks_exact_mut(2).zip(input) {
        pair.copy_from_slice(&sample.to_le_bytes());
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_little_endian() {
        let bytes = [
            0x00, 0x00, 0x01, 0x00, 0xFF, 0xFF, 0x00, 0x80, 0xFF, 0x7F, 0x34, 0x12,
        ];
        let mut out = [0i16; 6];
        assert_eq!(decode_le(&bytes, &mut out), 6);
        assert_eq!(out, [0, 1, -1, i16::MIN, i16::MAX, 0x1234]);
    }

    #[test]
    fn encodes_little_endian() {
        let samples = [0, 1, -1, i16::MIN, i16::MAX, 0x1234];
        let mut out = [0u8; 12];
        assert_eq!(encode_le(&samples, &mut out), 6);
        assert_eq!(
            out,
            [
                0x00, 0x00, 0x01, 0x00, 0xFF, 0xFF, 0x00, 0x80, 0xFF, 0x7F, 0x34, 0x12
            ]
        );
    }

    #[test]
    fn round_trips_every_sample() {
        let samples: Vec<i16> = (i16::MIN..=i16::MAX).collect();
        let mut bytes = vec![0u8; samples.len() * 2];
        assert_eq!(encode_le(&samples, &mut bytes), samples.len());
        let mut back = vec![0i16; samples.len()];
        assert_eq!(decode_le(&bytes, &mut back), samples.len());
        assert_eq!(back, samples);
    }

    #[test]
    fn odd_trailing_byte_is_ignored() {
        let mut out = [9i16; 3];
        assert_eq!(decode_le(&[0x01, 0x00, 0x02], &mut out), 1);
        assert_eq!(out, [1, 9, 9]);
    }

    #[test]
    fn processes_the_shorter_side() {
        let mut out = [0i16; 1];
        assert_eq!(decode_le(&[1, 0, 2, 0], &mut out), 1);
        assert_eq!(out, [1]);

        let mut bytes = [0xAAu8; 5];
        assert_eq!(encode_le(&[1, 2, 3], &mut bytes), 2);
        assert_eq!(bytes, [1, 0, 2, 0, 0xAA]);

        assert_eq!(decode_le(&[], &mut [0i16; 4]), 0);
        assert_eq!(encode_le(&[], &mut [0u8; 4]), 0);
        assert_eq!(encode_le(&[5], &mut []), 0);
    }

    #[test]
    fn one_frame_of_each_plivo_rate() {
        for samples in [160usize, 320] {
            let pcm: Vec<i16> = (0..samples as i16).map(|i| i * 97 - 5000).collect();
            let mut bytes = vec![0u8; samples * 2];
            assert_eq!(encode_le(&pcm, &mut bytes), samples);
            let mut back = vec![0i16; samples];
            assert_eq!(decode_le(&bytes, &mut back), samples);
            assert_eq!(back, pcm);
        }
    }
}
