//! Re-chunking arbitrary byte payloads into exact 20 ms frames.
//!
//! Upstream payloads (OpenAI deltas, Plivo media events) come in whatever sizes their senders
//! chose; downstream wants whole frames. [`Rechunker`] emits complete frames straight from the
//! input slice when it can and copies only the bytes that straddle a frame boundary, into a
//! buffer allocated once.

use super::Encoding;
use super::mulaw;

/// Splits a byte stream into fixed-size frames, carrying the remainder between calls.
#[derive(Debug, Clone)]
pub struct Rechunker {
    frame_bytes: usize,
    /// Bytes of the next, incomplete frame. Capacity `frame_bytes`, never grown.
    partial: Vec<u8>,
}

impl Rechunker {
    /// A rechunker emitting frames of `frame_bytes` bytes
    /// (see [`AudioFormat::frame_bytes`](super::AudioFormat::frame_bytes)).
    ///
    /// # Panics
    /// If `frame_bytes` is 0: an empty frame is a programming error, not a runtime condition.
    pub fn new(frame_bytes: usize) -> Self {
        assert!(frame_bytes > 0, "Rechunker frame size must be positive");
        Self {
            frame_bytes,
            partial: Vec::with_capacity(frame_bytes),
        }
    }

    /// The frame size this rechunker emits.
    pub fn frame_bytes(&self) -> usize {
        self.frame_bytes
    }

    /// Feeds bytes; calls `emit(&[u8])` once per complete frame, in order; keeps the remainder.
    pub fn push(&mut self, mut bytes: &[u8], mut emit: impl FnMut(&[u8])) {
        // First complete the frame left over from the previous call.
        if !self.partial.is_empty() {
            let take = (self.frame_bytes - self.partial.len()).min(bytes.len());
            self.partial.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.partial.len() < self.frame_bytes {
                return;
            }
            emit(&self.partial);
            self.partial.clear();
        }
        // Whole frames go out without a copy.
        let mut frames = bytes.chunks_exact(self.frame_bytes);
        for frame in &mut frames {
            emit(frame);
        }
        self.partial.extend_from_slice(frames.remainder());
    }

    /// Emits the remainder padded to a full frame with `pad` (μ-law silence is 0xFF, L16
    /// silence is 0x00; see [`silence_byte`]); no-op when empty.
    pub fn flush(&mut self, pad: u8, mut emit: impl FnMut(&[u8])) {
        if self.partial.is_empty() {
            return;
        }
        // Within capacity, so this does not allocate.
        self.partial.resize(self.frame_bytes, pad);
        emit(&self.partial);
        self.partial.clear();
    }

    /// Bytes held back, waiting for the rest of their frame (always `< frame_bytes`).
    pub fn pending(&self) -> usize {
        self.partial.len()
    }

    /// Drops the held-back bytes (e.g. on barge-in, when queued audio must not play).
    pub fn clear(&mut self) {
        self.partial.clear();
    }
}

/// The silence byte of an encoding: 0xFF for μ-law (+0), 0x00 for L16 (both bytes of 0).
pub const fn silence_byte(encoding: Encoding) -> u8 {
    match encoding {
        Encoding::Mulaw => mulaw::SILENCE,
        Encoding::L16 => 0x00,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pushes `splits` of a counting byte stream and returns the emitted frames.
    fn run(frame: usize, splits: &[usize]) -> (Rechunker, Vec<Vec<u8>>, Vec<u8>) {
        let total: usize = splits.iter().sum();
        let stream: Vec<u8> = (0..total).map(|i| (i % 251) as u8).collect();
        let mut r = Rechunker::new(frame);
        let mut frames = Vec::new();
        let mut offset = 0;
        for &len in splits {
            r.push(&stream[offset..offset + len], |f| frames.push(f.to_vec()));
            offset += len;
        }
        (r, frames, stream)
    }

    #[test]
    fn arbitrary_splits_give_exact_frames_in_order() {
        let splits = [1, 159, 161, 500, 3];
        let (r, frames, stream) = run(160, &splits);
        // 824 bytes: five frames and 24 pending.
        assert_eq!(frames.len(), 5);
        assert!(frames.iter().all(|f| f.len() == 160));
        let joined: Vec<u8> = frames.concat();
        assert_eq!(joined, stream[..800]);
        assert_eq!(r.pending(), 24);
    }

    #[test]
    fn every_split_size_preserves_the_stream() {
        for chunk in 1..=400 {
            let splits = vec![chunk; 4800 / chunk];
            let (r, frames, stream) = run(160, &splits);
            let total: usize = splits.iter().sum();
            assert_eq!(frames.len(), total / 160, "chunk {chunk}");
            assert_eq!(
                frames.concat(),
                stream[..total / 160 * 160],
                "chunk {chunk}"
            );
            assert_eq!(r.pending(), total % 160, "chunk {chunk}");
        }
    }

    #[test]
    fn exact_frames_pass_straight_through() {
        let (r, frames, _) = run(160, &[160, 320, 0, 160]);
        assert_eq!(frames.len(), 4);
        assert_eq!(r.pending(), 0);
    }

    #[test]
    fn large_delta_emits_all_frames() {
        let (r, frames, stream) = run(960, &[4800]);
        assert_eq!(frames.len(), 5);
        assert_eq!(frames.concat(), stream);
        assert_eq!(r.pending(), 0);
    }

    #[test]
    fn flush_pads_the_remainder() {
        let mut r = Rechunker::new(160);
        let mut frames = Vec::new();
        r.push(&[1, 2, 3], |f| frames.push(f.to_vec()));
        assert!(frames.is_empty());
        r.flush(0xFF, |f| frames.push(f.to_vec()));
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].len(), 160);
        assert_eq!(frames[0][..3], [1, 2, 3]);
        assert!(frames[0][3..].iter().all(|&b| b == 0xFF));
        assert_eq!(r.pending(), 0);

        // Nothing pending: nothing emitted.
        r.flush(0xFF, |f| frames.push(f.to_vec()));
        assert_eq!(frames.len(), 1);
    }

    #[test]
    fn flush_then_push_starts_a_fresh_frame() {
        let mut r = Rechunker::new(4);
        let mut frames = Vec::new();
        r.push(&[1, 2], |f| frames.push(f.to_vec()));
        r.flush(0, |f| frames.push(f.to_vec()));
        r.push(&[3, 4, 5, 6, 7], |f| frames.push(f.to_vec()));
        assert_eq!(frames, vec![vec![1, 2, 0, 0], vec![3, 4, 5, 6]]);
        assert_eq!(r.pending(), 1);
    }

    #[test]
    fn clear_drops_pending_bytes() {
        let mut r = Rechunker::new(160);
        let mut frames = Vec::new();
        r.push(&[7; 100], |f| frames.push(f.to_vec()));
        assert_eq!(r.pending(), 100);
        r.clear();
        assert_eq!(r.pending(), 0);
        r.push(&[9; 160], |f| frames.push(f.to_vec()));
        assert_eq!(frames, vec![vec![9; 160]]);
        r.flush(0, |f| frames.push(f.to_vec()));
        assert_eq!(frames.len(), 1);
    }

    #[test]
    fn buffer_is_never_reallocated() {
        let mut r = Rechunker::new(160);
        let capacity = r.partial.capacity();
        for len in [1, 159, 161, 500, 3, 4800, 7] {
            r.push(&vec![0u8; len], |_| {});
            assert_eq!(r.partial.capacity(), capacity);
        }
        r.flush(0, |_| {});
        assert_eq!(r.partial.capacity(), capacity);
    }

    #[test]
    #[should_panic(expected = "must be positive")]
    fn zero_frame_size_panics() {
        let _ = Rechunker::new(0);
    }

    #[test]
    fn silence_bytes() {
        assert_eq!(silence_byte(Encoding::Mulaw), 0xFF);
        assert_eq!(silence_byte(Encoding::L16), 0x00);
        assert_eq!(mulaw::decode_sample(silence_byte(Encoding::Mulaw)), 0);
    }
}
