//! Account-wide calls per second (pure): a token bucket of `cps` tokens in which every token
//! spent comes back exactly [`PACING_WINDOW`] later.
//!
//! Kept as the times of the last `cps` dials, so "never exceed" is exact: any `cps + 1`
//! consecutive dials span at least [`PACING_WINDOW`], that is, no window of one second holds
//! more than `cps` dials. The window is one second plus [`SEND_MARGIN`], because a dial is
//! counted when it is claimed and reaches Plivo a little later; the margin absorbs that delay's
//! jitter so that Plivo, counting arrivals, never sees more than `cps` in a second either.
//! (A classic refilling bucket would allow a burst of `cps` right after a second of `cps`.)

use chrono::{DateTime, TimeDelta, Utc};

/// Added to the one second of the rate, for the claim-to-request delay.
pub const SEND_MARGIN: TimeDelta = TimeDelta::milliseconds(100);
/// How long a spent token stays spent.
pub const PACING_WINDOW: TimeDelta = TimeDelta::milliseconds(1000 + SEND_MARGIN.num_milliseconds());

/// What a request for tokens got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Tokens granted now (at most what was asked).
    pub granted: usize,
    /// The dial log to store: the last `cps` dial times, oldest first.
    pub recent: Vec<DateTime<Utc>>,
}

/// Tokens free at `now` given the stored dial log.
pub fn available(recent: &[DateTime<Utc>], now: DateTime<Utc>, cps: u32) -> usize {
    let spent = recent
        .iter()
        .filter(|&&at| at > now - PACING_WINDOW)
        .count();
    (cps as usize).saturating_sub(spent)
}

/// Takes up to `wanted` tokens at `now`, returning the updated dial log.
pub fn take(recent: &[DateTime<Utc>], now: DateTime<Utc>, cps: u32, wanted: usize) -> Grant {
    let granted = wanted.min(available(recent, now, cps));
    let mut log: Vec<DateTime<Utc>> = recent
        .iter()
        .copied()
        .filter(|&at| at > now - PACING_WINDOW)
        .collect();
    log.sort_unstable();
    log.extend(std::iter::repeat_n(now, granted));
    let keep = cps as usize;
    if log.len() > keep {
        log.drain(..log.len() - keep);
    }
    Grant {
        granted,
        recent: log,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(millis: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_800_000_000_000 + millis).unwrap()
    }

    #[test]
    fn a_full_bucket_grants_cps_then_nothing_until_a_token_returns() {
        let first = take(&[], at(0), 2, 5);
        assert_eq!(first.granted, 2);
        assert_eq!(first.recent, vec![at(0), at(0)]);
        let again = take(&first.recent, at(500), 2, 1);
        assert_eq!(again.granted, 0);
        let just_before = take(&first.recent, at(1099), 2, 1);
        assert_eq!(just_before.granted, 0);
        let back = take(&first.recent, at(1100), 2, 3);
        assert_eq!(back.granted, 2);
        assert_eq!(back.recent, vec![at(1100), at(1100)]);
    }

    #[test]
    fn tokens_come_back_one_by_one() {
        let mut log = Vec::new();
        let mut times = Vec::new();
        // Ask for one token every 10 ms for 5 s at 3 per second.
        for step in 0..500 {
            let now = at(step * 10);
            let grant = take(&log, now, 3, 1);
            if grant.granted == 1 {
                times.push(now);
            }
            log = grant.recent;
            assert!(log.len() <= 3);
        }
        // Any 4 consecutive dials span at least the window: no second holds more than 3.
        for four in times.windows(4) {
            assert!(four[3] - four[0] >= PACING_WINDOW, "{four:?}");
        }
        // And the bucket is not wasted: about 3 per 1.1 s.
        assert!(times.len() >= 13, "{} dials", times.len());
    }

    #[test]
    fn a_smaller_cps_trims_the_log_and_a_clock_step_back_spends_nothing_twice() {
        let log = vec![at(0), at(10), at(20), at(30)];
        assert_eq!(available(&log, at(40), 2), 0);
        let grant = take(&log, at(2000), 2, 5);
        assert_eq!(grant.granted, 2);
        assert_eq!(grant.recent.len(), 2);
        // Dials "in the future" (another gateway's clock ahead) still count as spent.
        assert_eq!(available(&[at(500)], at(0), 1), 0);
    }
}
