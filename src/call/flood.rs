//! The ceiling on how fast a carrier may send: Plivo sends 50 media messages a second (one per
//! 20 ms frame) plus a few events; a peer sending far more is refused message by message.
//!
//! Excess messages are dropped unread and counted; the call goes on. A burst up to a second's
//! worth passes (Plivo delivers frames held back by a network stall all at once), and ending
//! the call for it would lose a real caller; what is dropped is only what exceeds the ceiling
//! sustained. Dropping before parsing keeps a flood's cost to reading the socket; the call's
//! own limits (maximum duration, silence) still end it.
//!
//! The rule is the generic cell rate algorithm: a virtual clock advances by one interval per
//! admitted message and may run at most a second ahead of real time. Pure: time is a parameter.

use std::time::{Duration, Instant};

/// Messages per second a carrier may sustain: four times what Plivo sends.
pub const MAX_MESSAGES_PER_SEC: u32 = 200;
/// How far ahead of real time the virtual clock may run: a burst of one second's worth.
const BURST: Duration = Duration::from_secs(1);

/// Admits at most [`MAX_MESSAGES_PER_SEC`] sustained, with bursts of up to a second's worth.
#[derive(Debug, Clone)]
pub struct FloodGuard {
    interval: Duration,
    /// When the next message would be on schedule; `None` before the first.
    next_due: Option<Instant>,
}

impl Default for FloodGuard {
    fn default() -> Self {
        Self::new(MAX_MESSAGES_PER_SEC)
    }
}

impl FloodGuard {
    /// A guard admitting `per_second` messages a second sustained.
    pub fn new(per_second: u32) -> Self {
        Self {
            interval: BURST / per_second.max(1),
            next_due: None,
        }
    }

    /// Whether a message arriving at `now` is admitted; a refused one does not count.
    pub fn admit(&mut self, now: Instant) -> bool {
        let due = self.next_due.map_or(now, |due| due.max(now));
        // One interval less than the burst: exactly a second's worth passes at once.
        if due > now + (BURST - self.interval) {
            return false;
        }
        self.next_due = Some(due + self.interval);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How many of `count` messages sent `every` apart from `start` are admitted.
    fn admitted(guard: &mut FloodGuard, start: Instant, count: u32, every: Duration) -> u32 {
        (0..count)
            .filter(|index| guard.admit(start + every * *index))
            .count() as u32
    }

    #[test]
    fn plivos_pace_is_never_refused() {
        let mut guard = FloodGuard::default();
        let start = Instant::now();
        // An hour of 20 ms frames.
        assert_eq!(
            admitted(&mut guard, start, 180_000, Duration::from_millis(20)),
            180_000
        );
    }

    #[test]
    fn a_second_held_back_arrives_at_once_and_passes() {
        let mut guard = FloodGuard::default();
        let start = Instant::now();
        assert_eq!(
            admitted(&mut guard, start, 200, Duration::ZERO),
            200,
            "a whole second's worth in one burst"
        );
        assert!(!guard.admit(start), "but not one more at the same instant");
    }

    #[test]
    fn a_sustained_flood_is_held_to_the_ceiling() {
        let mut guard = FloodGuard::default();
        let start = Instant::now();
        // 1,000 messages a second for 10 s: the first second's burst plus 200 a second.
        let passed = admitted(&mut guard, start, 10_000, Duration::from_millis(1));
        assert!((2000..=2200).contains(&passed), "{passed}");
    }

    #[test]
    fn after_a_flood_the_normal_pace_passes_again() {
        let mut guard = FloodGuard::default();
        let start = Instant::now();
        admitted(&mut guard, start, 5000, Duration::from_micros(100));
        let later = start + Duration::from_secs(2);
        assert_eq!(
            admitted(&mut guard, later, 500, Duration::from_millis(20)),
            500
        );
    }
}
