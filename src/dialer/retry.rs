//! How an attempt ended, and whether the lead is called again (pure).
//!
//! Plivo's hangup callback carries `CallStatus`, `HangupCause` and (seen in practice)
//! `HangupCauseCode`; the class decides the attempt's status and the retry: no answer and busy
//! are retried after the campaign's backoff up to its `max_attempts`; a failed call is retried
//! once; an invalid number, an answered call, a voicemail and a cancelled call never are. A
//! test call is never retried.

use std::time::Duration;

/// The attempt's end, spelled as `dial_attempts.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttemptClass {
    /// Answered, talked, ended.
    Completed,
    NoAnswer,
    Busy,
    /// Could not be connected (carrier trouble, account limits, our request refused).
    Failed,
    /// The number cannot be reached at all.
    InvalidNumber,
    /// A machine answered.
    Voicemail,
    /// Cancelled before it was answered.
    Canceled,
}

impl AttemptClass {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::NoAnswer => "no_answer",
            Self::Busy => "busy",
            Self::Failed => "failed",
            Self::InvalidNumber => "invalid_number",
            Self::Voicemail => "voicemail",
            Self::Canceled => "canceled",
        }
    }
}

/// Plivo hangup cause codes that say the destination does not exist or cannot be reached at
/// all: 2000 invalid destination, 2010 out of service (protocols.md B.4.3).
const INVALID_NUMBER_CODES: &[u32] = &[2000, 2010];
/// Cause names meaning the same, for callbacks without a code.
const INVALID_NUMBER_CAUSES: &[&str] = &[
    "invalid destination",
    "invalid number",
    "unallocated number",
    "out of service",
    "number changed",
    "invalid_number_format",
];
const NO_ANSWER_CODE: u32 = 3000;
const BUSY_CODE: u32 = 3010;
const CANCELED_CODE: u32 = 1000;

/// The class of a hangup callback: `status` is `CallStatus` (`completed`, `busy`, `failed`,
/// `timeout`, `no-answer`, `cancel`), `cause` `HangupCause`, `code` `HangupCauseCode`.
pub fn classify_hangup(status: &str, cause: Option<&str>, code: Option<u32>) -> AttemptClass {
    let cause = cause.unwrap_or("").to_ascii_lowercase();
    let invalid = code.is_some_and(|code| INVALID_NUMBER_CODES.contains(&code))
        || INVALID_NUMBER_CAUSES
            .iter()
            .any(|name| cause.contains(name));
    if invalid {
        return AttemptClass::InvalidNumber;
    }
    match status.to_ascii_lowercase().replace('_', "-").as_str() {
        "completed" | "in-progress" => AttemptClass::Completed,
        "busy" => AttemptClass::Busy,
        "no-answer" | "timeout" => AttemptClass::NoAnswer,
        "cancel" | "canceled" | "cancelled" => AttemptClass::Canceled,
        _ => match code {
            Some(NO_ANSWER_CODE) => AttemptClass::NoAnswer,
            Some(BUSY_CODE) => AttemptClass::Busy,
            Some(CANCELED_CODE) => AttemptClass::Canceled,
            _ => AttemptClass::Failed,
        },
    }
}

/// The class of an attempt Plivo never called back about (its hangup callback was lost), from
/// its call's log (`call_logs.call_status`, when there is a row): a call that reached the
/// stream was answered and talked (`completed`, never re-dialled), a machine is `voicemail`;
/// no row, or a row of a call that was not reached, fails it (and it is retried once).
pub fn recovered_class(logged_status: Option<&str>) -> AttemptClass {
    match logged_status {
        Some("called" | "transferred") => AttemptClass::Completed,
        Some("voicemail") => AttemptClass::Voicemail,
        _ => AttemptClass::Failed,
    }
}

/// Why placing a call through the REST API failed, as far as the retry cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaceFailure {
    /// Plivo said "later" (429, 503): the call was not placed; the same attempt goes back to
    /// the queue shortly and nothing is counted.
    Throttled,
    /// Anything else (other 4xx and 5xx, no answer from the API, an answer we cannot read):
    /// the attempt failed.
    Failed,
}

/// The class of a REST failure by HTTP status (`None`: transport error or timeout, when the
/// call may or may not have been placed; it counts as failed, and is retried once, after the
/// backoff, so a lead is never called twice at once).
pub fn classify_place_error(status: Option<u16>) -> PlaceFailure {
    match status {
        Some(429 | 503) => PlaceFailure::Throttled,
        _ => PlaceFailure::Failed,
    }
}

/// What the retry policy needs to know about a finished attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finished {
    pub class: AttemptClass,
    pub attempt_number: i32,
    pub is_test: bool,
    /// Earlier attempts of this lead in this campaign that ended `failed`.
    pub earlier_failures: i64,
    pub max_attempts: i32,
    pub retry_backoff: Duration,
}

/// When the next attempt is due after this one, if there is one.
pub fn next_attempt_after(finished: &Finished) -> Option<Duration> {
    if finished.is_test || finished.attempt_number >= finished.max_attempts {
        return None;
    }
    match finished.class {
        AttemptClass::NoAnswer | AttemptClass::Busy => Some(finished.retry_backoff),
        AttemptClass::Failed if finished.earlier_failures == 0 => Some(finished.retry_backoff),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hangups_are_classified_by_status_cause_and_code() {
        use AttemptClass::*;
        let cases: &[(&str, Option<&str>, Option<u32>, AttemptClass)] = &[
            ("completed", Some("Normal Hangup"), Some(4000), Completed),
            ("no-answer", Some("No Answer"), Some(3000), NoAnswer),
            ("timeout", None, None, NoAnswer),
            ("busy", Some("Busy Line"), Some(3010), Busy),
            ("failed", Some("Busy Line"), Some(3010), Busy),
            ("failed", Some("No Answer"), Some(3000), NoAnswer),
            (
                "failed",
                Some("Invalid Destination Address"),
                Some(2000),
                InvalidNumber,
            ),
            (
                "failed",
                Some("Destination Out Of Service"),
                None,
                InvalidNumber,
            ),
            ("failed", None, Some(2010), InvalidNumber),
            ("failed", Some("Unknown"), Some(0), Failed),
            ("failed", Some("Insufficient Credit"), Some(1010), Failed),
            ("cancel", None, None, Canceled),
            ("failed", Some("Canceled"), Some(1000), Canceled),
            ("something-new", None, None, Failed),
        ];
        for &(status, cause, code, expected) in cases {
            assert_eq!(
                classify_hangup(status, cause, code),
                expected,
                "{status} {cause:?} {code:?}"
            );
        }
    }

    #[test]
    fn a_lost_hangup_callback_is_read_from_the_call_log() {
        use AttemptClass::*;
        for (logged, expected) in [
            (Some("called"), Completed),
            (Some("transferred"), Completed),
            (Some("voicemail"), Voicemail),
            (Some("no_answer"), Failed),
            (None, Failed),
        ] {
            assert_eq!(recovered_class(logged), expected, "{logged:?}");
            if expected == Completed {
                let policy = Finished {
                    class: expected,
                    attempt_number: 1,
                    is_test: false,
                    earlier_failures: 0,
                    max_attempts: 3,
                    retry_backoff: Duration::from_secs(600),
                };
                assert_eq!(
                    next_attempt_after(&policy),
                    None,
                    "a reached lead is not re-dialled"
                );
            }
        }
    }

    #[test]
    fn rest_failures_are_throttled_only_when_plivo_says_later() {
        assert_eq!(classify_place_error(Some(429)), PlaceFailure::Throttled);
        assert_eq!(classify_place_error(Some(503)), PlaceFailure::Throttled);
        assert_eq!(classify_place_error(Some(500)), PlaceFailure::Failed);
        assert_eq!(classify_place_error(Some(400)), PlaceFailure::Failed);
        assert_eq!(classify_place_error(Some(401)), PlaceFailure::Failed);
        assert_eq!(classify_place_error(None), PlaceFailure::Failed);
    }

    fn finished(class: AttemptClass, attempt_number: i32, earlier_failures: i64) -> Finished {
        Finished {
            class,
            attempt_number,
            is_test: false,
            earlier_failures,
            max_attempts: 3,
            retry_backoff: Duration::from_secs(600),
        }
    }

    #[test]
    fn retries_follow_the_class_and_the_limit() {
        let backoff = Some(Duration::from_secs(600));
        assert_eq!(
            next_attempt_after(&finished(AttemptClass::NoAnswer, 1, 0)),
            backoff
        );
        assert_eq!(
            next_attempt_after(&finished(AttemptClass::Busy, 2, 0)),
            backoff
        );
        assert_eq!(
            next_attempt_after(&finished(AttemptClass::NoAnswer, 3, 0)),
            None
        );
        assert_eq!(
            next_attempt_after(&finished(AttemptClass::Failed, 1, 0)),
            backoff
        );
        assert_eq!(
            next_attempt_after(&finished(AttemptClass::Failed, 2, 1)),
            None
        );
        for class in [
            AttemptClass::Completed,
            AttemptClass::InvalidNumber,
            AttemptClass::Voicemail,
            AttemptClass::Canceled,
        ] {
            assert_eq!(
                next_attempt_after(&finished(class, 1, 0)),
                None,
                "{class:?}"
            );
        }
        let mut test_call = finished(AttemptClass::NoAnswer, 1, 0);
        test_call.is_test = true;
        assert_eq!(next_attempt_after(&test_call), None);
    }
}
