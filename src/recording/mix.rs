//! The call's two channels on one timeline (pure: no I/O, time as a parameter).
//!
//! The timeline is the stream's own clock, in samples since the stream started. Caller frames
//! are placed by their media timestamp (else their chunk number), so a gap in the caller's
//! audio becomes silence, never a jump. Agent frames are placed where they play: Plivo plays
//! what it is sent in order, as soon as what was sent before has played, so a frame sent at
//! `now` plays at the later of the stream's `now` and the end of the previous agent frame
//! (the same rule as the session's pacing). A `clearAudio` at `now` removes every agent sample
//! placed from the stream's `now` on: it was sent but never played.
//!
//! The stream's `now` comes from the caller's frames: each one says "this much of the stream
//! had happened when I arrived", and the earliest-arriving frames give the mapping from the
//! bridge's clock to the stream's (`skew`, the largest lead seen), which network delays only
//! ever make look later.
//!
//! Output is 20 ms stereo blocks (left: caller, right: agent), emitted once final: up to the
//! end of the caller's audio, or, while the caller sends nothing, up to [`GAP_HOLD`] before the
//! stream's `now`. Agent audio ahead of that waits, at most [`MAX_AGENT_AHEAD`]; beyond, it is
//! dropped and counted (only a playout lead above it can do that).

use std::{collections::VecDeque, time::Duration};

/// How long the caller may send nothing before that part of the timeline is written with a
/// silent caller channel; a caller frame arriving later than this is dropped as late.
pub const GAP_HOLD: Duration = Duration::from_millis(200);
/// The most agent audio held ahead of what was written (the playout lead, default 300 ms,
/// plus [`GAP_HOLD`] and margin). Bounds the mixer's memory: 600 ms is 19.2 KB at 16 kHz.
pub const MAX_AGENT_AHEAD: Duration = Duration::from_millis(600);
/// A caller timestamp further ahead of the stream's clock than this is not believed (a
/// carrier clock reset): the frame is placed right after the previous one and the timestamps
/// are re-anchored.
const MAX_TIMESTAMP_JUMP: Duration = Duration::from_secs(10);

/// Two channels of one call on the stream's clock.
#[derive(Debug)]
pub struct Mixer {
    rate: u64,
    block: usize,
    /// Samples of the timeline already emitted.
    emitted: u64,
    /// Caller samples from `emitted` on (zeros where nothing came).
    caller: VecDeque<i16>,
    /// Agent samples from `emitted` on (zeros where nothing played).
    agent: VecDeque<i16>,
    /// Where the next agent sample plays, on the timeline.
    agent_cursor: u64,
    /// The first caller frame's timestamp and its place on the timeline.
    anchor: Option<Anchor>,
    /// The stream's clock minus the bridge's, in samples (see the module's documentation).
    skew: i64,
    /// Agent samples dropped because they ran too far ahead.
    pub dropped_agent_samples: u64,
    /// Caller samples dropped because they came later than [`GAP_HOLD`].
    pub late_caller_samples: u64,
}

#[derive(Debug, Clone, Copy)]
struct Anchor {
    /// Milliseconds (a timestamp) or 20 ms units (a chunk number).
    origin: u64,
    by_chunk: bool,
    position: u64,
}

impl Mixer {
    /// A mixer for a stream of `rate` samples a second, emitting 20 ms blocks.
    pub fn new(rate: u32) -> Self {
        let rate = u64::from(rate);
        Self {
            rate,
            block: (rate / 50) as usize,
            emitted: 0,
            caller: VecDeque::new(),
            agent: VecDeque::new(),
            agent_cursor: 0,
            anchor: None,
            skew: 0,
            dropped_agent_samples: 0,
            late_caller_samples: 0,
        }
    }

    /// Samples per channel in one emitted block (20 ms).
    pub fn block_samples(&self) -> usize {
        self.block
    }

    /// Samples of the timeline emitted so far.
    pub fn emitted_samples(&self) -> u64 {
        self.emitted
    }

    /// A caller frame that arrived `now` after the stream started.
    pub fn caller(
        &mut self,
        timestamp_ms: Option<u64>,
        chunk: Option<u64>,
        samples: &[i16],
        now: Duration,
    ) {
        let now_samples = self.samples(now);
        let length = samples.len() as u64;
        let contiguous = self.emitted + self.caller.len() as u64;
        let position = match self.place_caller(timestamp_ms, chunk, now_samples, length) {
            Some(position)
                if position <= self.stream_now(now) + self.samples(MAX_TIMESTAMP_JUMP) =>
            {
                position
            }
            _ => {
                // No usable clock on this frame, or one far off: it follows the previous one,
                // and the next frames are measured from here.
                self.anchor = match (timestamp_ms, chunk) {
                    (Some(ms), _) => Some(Anchor {
                        origin: ms,
                        by_chunk: false,
                        position: contiguous,
                    }),
                    (None, Some(chunk)) => Some(Anchor {
                        origin: chunk,
                        by_chunk: true,
                        position: contiguous,
                    }),
                    (None, None) => self.anchor,
                };
                contiguous
            }
        };
        self.skew = self
            .skew
            .max((position + length) as i64 - now_samples as i64);
        let mut skip = 0;
        if position < self.emitted {
            skip = ((self.emitted - position) as usize).min(samples.len());
            self.late_caller_samples += skip as u64;
        }
        let start = position.max(self.emitted);
        let offset = (start - self.emitted) as usize;
        write_at(&mut self.caller, offset, &samples[skip..]);
    }

    /// An agent frame sent to the carrier `now`.
    pub fn agent(&mut self, samples: &[i16], now: Duration) {
        let position = self
            .agent_cursor
            .max(self.stream_now(now))
            .max(self.emitted);
        self.agent_cursor = position + samples.len() as u64;
        let offset = (position - self.emitted) as usize;
        let room = self.samples(MAX_AGENT_AHEAD) as usize;
        let fits = room.saturating_sub(offset).min(samples.len());
        self.dropped_agent_samples += (samples.len() - fits) as u64;
        if fits > 0 {
            write_at(&mut self.agent, offset, &samples[..fits]);
        }
    }

    /// `clearAudio` went out `now`: what was sent to play from now on never plays.
    pub fn clear(&mut self, now: Duration) {
        let stream_now = self.stream_now(now).max(self.emitted);
        self.agent.truncate((stream_now - self.emitted) as usize);
        self.agent_cursor = stream_now;
    }

    /// The next final 20 ms block, interleaved left (caller) and right (agent), into `out`
    /// (at least two blocks' samples long). `false` when none is final yet.
    pub fn next_block(&mut self, now: Duration, out: &mut [i16]) -> bool {
        let caller_end = self.emitted + self.caller.len() as u64;
        let held = self.stream_now(now).saturating_sub(self.samples(GAP_HOLD));
        if caller_end.max(held) < self.emitted + self.block as u64 {
            return false;
        }
        self.emit(out);
        true
    }

    /// The call ended `now`: the last blocks up to the stream's end, the final one padded.
    /// Returns how many samples of the last block are real (for the container's end trim),
    /// or `None` when nothing is left.
    pub fn finish_block(&mut self, now: Duration, out: &mut [i16]) -> Option<usize> {
        // Agent audio still ahead of the stream's clock never played.
        let end = self
            .stream_now(now)
            .max(self.emitted + self.caller.len() as u64);
        if end <= self.emitted {
            return None;
        }
        let real = ((end - self.emitted) as usize).min(self.block);
        self.emit(out);
        Some(real)
    }

    /// Bytes of audio held now (both channels), for the memory budget.
    pub fn held_bytes(&self) -> usize {
        (self.caller.capacity() + self.agent.capacity()) * 2
    }

    fn emit(&mut self, out: &mut [i16]) {
        for pair in out[..self.block * 2].chunks_exact_mut(2) {
            pair[0] = self.caller.pop_front().unwrap_or(0);
            pair[1] = self.agent.pop_front().unwrap_or(0);
        }
        self.emitted += self.block as u64;
    }

    /// Where a caller frame starts on the timeline, by its timestamp or chunk; `None` when it
    /// has neither, or goes back before the anchor.
    fn place_caller(
        &mut self,
        timestamp_ms: Option<u64>,
        chunk: Option<u64>,
        now_samples: u64,
        length: u64,
    ) -> Option<u64> {
        let (value, by_chunk) = match (timestamp_ms, chunk) {
            (Some(ms), _) => (ms, false),
            (None, Some(chunk)) => (chunk, true),
            (None, None) => return None,
        };
        let anchor = match self.anchor {
            Some(anchor) if anchor.by_chunk == by_chunk => anchor,
            _ => {
                // The first frame ended as it arrived.
                let anchor = Anchor {
                    origin: value,
                    by_chunk,
                    position: now_samples
                        .saturating_sub(length)
                        .max(self.emitted + self.caller.len() as u64),
                };
                self.anchor = Some(anchor);
                anchor
            }
        };
        let units = value.checked_sub(anchor.origin)?;
        let millis = if by_chunk { units * 20 } else { units };
        Some(anchor.position + millis * self.rate / 1000)
    }

    fn stream_now(&self, now: Duration) -> u64 {
        (self.samples(now) as i64 + self.skew).max(0) as u64
    }

    fn samples(&self, duration: Duration) -> u64 {
        (duration.as_micros() as u64) * self.rate / 1_000_000
    }
}

/// Writes `samples` at `offset` into `buffer`, padding with silence up to it.
fn write_at(buffer: &mut VecDeque<i16>, offset: usize, samples: &[i16]) {
    if buffer.len() < offset {
        buffer.resize(offset, 0);
    }
    let overlap = (buffer.len() - offset).min(samples.len());
    for (slot, sample) in buffer.range_mut(offset..offset + overlap).zip(samples) {
        *slot = *sample;
    }
    buffer.extend(&samples[overlap..]);
}

#[cfg(test)]
mod tests;
