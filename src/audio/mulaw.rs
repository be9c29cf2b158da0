//! G.711 μ-law ⇄ linear PCM16, table-driven.
//!
//! Both directions use tables computed at compile time by `const fn`s, so the hot loops are a
//! load per sample and the tables cost no start-up work. The encoder follows the classic G.711
//! reference (bias 0x84, clip 32635), so its output matches every other μ-law implementation
//! byte for byte.
//!
//! μ-law has two codes for zero: 0xFF (+0) and 0x7F (−0). Both decode to 0, and 0 encodes to
//! 0xFF, so decode→encode is the identity on every code except 0x7F, which becomes 0xFF.
//! μ-law silence is therefore 0xFF.

/// The μ-law code of silence (+0).
pub const SILENCE: u8 = 0xFF;

/// Decodes μ-law bytes into PCM16 samples. Processes `min(input.len(), output.len())`
/// samples and returns that count; never panics.
pub fn decode(input: &[u8], output: &mut [i16]) -> usize {
    let n = input.len().min(output.len());
    for (out, &code) in output[..n].iter_mut().zip(&input[..n]) {
        *out = DECODE_TABLE[code as usize];
    }
    n
}

/// Encodes PCM16 samples into μ-law bytes. Processes `min(input.len(), output.len())`
/// samples and returns that count; never panics.
pub fn encode(input: &[i16], output: &mut [u8]) -> usize {
    let n = input.len().min(output.len());
    for (out, &sample) in output[..n].iter_mut().zip(&input[..n]) {
        *out = encode_sample(sample);
    }
    n
}

/// Decodes one μ-law code. 0xFF and 0x7F both decode to 0.
#[inline]
pub const fn decode_sample(code: u8) -> i16 {
    DECODE_TABLE[code as usize]
}

/// Encodes one PCM16 sample (G.711: magnitudes above 32635 clip to the top code).
#[inline]
pub const fn encode_sample(sample: i16) -> u8 {
    // i32 so that negating i16::MIN cannot overflow.
    let s = sample as i32;
    let magnitude = if s < 0 { -s } else { s };
    let magnitude = if magnitude > CLIP { CLIP } else { magnitude };
    let code = ENCODE_TABLE[((magnitude + BIAS) >> 3) as usize];
    // Table entries are positive codes (bit 7 set, since codes are stored inverted);
    // the negative code is the same with bit 7 cleared.
    if s < 0 { code & 0x7F } else { code }
}

const BIAS: i32 = 0x84;
const CLIP: i32 = 32635;

/// Every μ-law code's linear value, indexed by code.
static DECODE_TABLE: [i16; 256] = build_decode_table();

/// Positive μ-law codes indexed by `(min(|sample|, CLIP) + BIAS) >> 3`. Bits below 3 never
/// reach the mantissa (the smallest segment shifts by 3), so 4096 entries cover every input.
static ENCODE_TABLE: [u8; 4096] = build_encode_table();

const fn build_decode_table() -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut code = 0;
    while code < 256 {
        table[code] = reference_decode(code as u8);
        code += 1;
    }
    table
}

const fn build_encode_table() -> [u8; 4096] {
    let mut table = [0u8; 4096];
    let mut index = 0;
    while index < 4096 {
        // Reconstruct the smallest biased magnitude mapping to this index; the bits dropped
        // by `>> 3` don't affect the code, so any representative works.
        let biased = (index as i32) << 3;
        table[index] = reference_encode_biased(biased, false);
        index += 1;
    }
    table
}

/// The G.711 reference decoder: codes are stored inverted; the mantissa sits in the middle
/// of its step, and the bias added by the encoder is removed.
const fn reference_decode(code: u8) -> i16 {
    let code = !code;
    let exponent = (code >> 4) & 0x07;
    let mantissa = (code & 0x0F) as i32;
    let magnitude = (((mantissa << 3) + BIAS) << exponent) - BIAS;
    if code & 0x80 != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

/// The G.711 reference encoder on an already clipped and biased magnitude
/// (`biased >= BIAS`; smaller values, which only table padding produces, give segment 0).
const fn reference_encode_biased(biased: i32, negative: bool) -> u8 {
    // The segment is the position of the highest set bit above bit 7.
    let top = (biased >> 7) as u32;
    let exponent = if top == 0 {
        0
    } else {
        31 - top.leading_zeros()
    };
    let mantissa = (biased >> (exponent + 3)) & 0x0F;
    let sign = if negative { 0x80 } else { 0 };
    !(sign | ((exponent as i32) << 4) | mantissa) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The textbook G.711 encoder with its segment search, as an oracle for the table.
    fn classic_encode(sample: i16) -> u8 {
        const EXP_LUT: [u8; 8] = [0, 1, 2, 3, 4, 5, 6, 7];
        let mut s = sample as i32;
        let sign = if s < 0 { 0x80 } else { 0 };
        if s < 0 {
            s = -s;
        }
        if s > CLIP {
            s = CLIP;
        }
        s += BIAS;
        let mut exponent = 7;
        for (seg, &e) in EXP_LUT.iter().enumerate() {
            if s < (0x100 << seg) {
                exponent = e;
                break;
            }
        }
        let mantissa = (s >> (exponent + 3)) & 0x0F;
        !(sign | ((exponent as i32) << 4) | mantissa) as u8
    }

    #[test]
    fn known_values() {
        assert_eq!(decode_sample(0xFF), 0);
        assert_eq!(decode_sample(0x7F), 0);
        assert_eq!(decode_sample(0x00), -32124);
        assert_eq!(decode_sample(0x80), 32124);
        assert_eq!(decode_sample(0xFE), 8);
        assert_eq!(decode_sample(0x7E), -8);
        assert_eq!(encode_sample(0), 0xFF);
        assert_eq!(encode_sample(32767), 0x80);
        assert_eq!(encode_sample(-32768), 0x00);
        assert_eq!(encode_sample(i16::MIN), 0x00);
    }

    #[test]
    fn round_trip_every_code() {
        for code in 0..=255u8 {
            let back = encode_sample(decode_sample(code));
            // −0 (0x7F) decodes to 0, which encodes as +0 (0xFF): the only lossy code.
            let expected = if code == 0x7F { 0xFF } else { code };
            assert_eq!(back, expected, "code {code:#04x}");
        }
    }

    #[test]
    fn table_matches_classic_encoder_for_every_sample() {
        for s in i16::MIN..=i16::MAX {
            assert_eq!(encode_sample(s), classic_encode(s), "sample {s}");
        }
    }

    #[test]
    fn decode_table_is_antisymmetric() {
        for code in 0..128u8 {
            assert_eq!(decode_sample(code), -decode_sample(code | 0x80));
        }
    }

    #[test]
    fn encode_is_monotonic() {
        // Larger inputs never decode to smaller values.
        let mut previous = decode_sample(encode_sample(i16::MIN));
        for s in i16::MIN..=i16::MAX {
            let value = decode_sample(encode_sample(s));
            assert!(value >= previous, "not monotonic at {s}");
            previous = value;
        }
    }

    #[test]
    fn quantisation_error_is_bounded() {
        // The step doubles every segment; the worst step is 1024 (top segment), plus the clip.
        for s in i16::MIN..=i16::MAX {
            let value = decode_sample(encode_sample(s)) as i32;
            let clipped = (s as i32).clamp(-CLIP, CLIP);
            let step = 1 << (((clipped.abs() + BIAS) >> 7).max(1).ilog2() + 3);
            assert!(
                (value - clipped).abs() <= step / 2 + 1,
                "sample {s}: {value}, step {step}"
            );
        }
    }

    #[test]
    fn silence() {
        assert_eq!(SILENCE, 0xFF);
        let pcm = [0i16; 160];
        let mut bytes = [0u8; 160];
        assert_eq!(encode(&pcm, &mut bytes), 160);
        assert!(bytes.iter().all(|&b| b == SILENCE));
        let mut back = [1i16; 160];
        assert_eq!(decode(&bytes, &mut back), 160);
        assert!(back.iter().all(|&s| s == 0));
    }

    #[test]
    fn slices_process_the_shorter_length() {
        let codes = [0x00u8, 0x80, 0xFF, 0x7F];
        let mut pcm = [7i16; 2];
        assert_eq!(decode(&codes, &mut pcm), 2);
        assert_eq!(pcm, [-32124, 32124]);

        let mut pcm = [7i16; 6];
        assert_eq!(decode(&codes, &mut pcm), 4);
        assert_eq!(pcm, [-32124, 32124, 0, 0, 7, 7]);

        let mut out = [0u8; 3];
        assert_eq!(encode(&[0, 32124], &mut out), 2);
        assert_eq!(out, [0xFF, 0x80, 0x00]);
        assert_eq!(encode(&[], &mut out), 0);
        assert_eq!(decode(&[], &mut pcm), 0);
    }

    #[test]
    fn slice_functions_match_sample_functions() {
        let codes: Vec<u8> = (0..=255).collect();
        let mut pcm = vec![0i16; 256];
        decode(&codes, &mut pcm);
        for (&c, &s) in codes.iter().zip(&pcm) {
            assert_eq!(s, decode_sample(c));
        }
        let mut back = vec![0u8; 256];
        encode(&pcm, &mut back);
        for (&s, &b) in pcm.iter().zip(&back) {
            assert_eq!(b, encode_sample(s));
        }
    }
}
