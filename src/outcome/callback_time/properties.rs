//! Property tests of callback times: any phrase, at any instant, in every timezone, reads as
//! an instant or is [`Unreadable`]; scheduled in any calling window, it is a callback inside
//! the window and not in the past, or [`CallbackError`]; never a panic.

use chrono::{NaiveDate, NaiveTime};
use proptest::prelude::*;

use super::*;

/// Words the reader knows (and a few it skips), numbers and spellings of times and dates.
const WORDS: &[&str] = &[
    "today",
    "tonight",
    "tomorrow",
    "tmrw",
    "the",
    "day",
    "after",
    "next",
    "this",
    "week",
    "weeks",
    "in",
    "a",
    "an",
    "at",
    "on",
    "around",
    "please",
    "maybe",
    "half",
    "past",
    "quarter",
    "to",
    "and",
    "hour",
    "hours",
    "minutes",
    "days",
    "morning",
    "afternoon",
    "evening",
    "night",
    "lunch",
    "noon",
    "midday",
    "midnight",
    "am",
    "pm",
    "o'clock",
    "monday",
    "friday",
    "sunday",
    "december",
    "feb",
    "of",
    "first",
    "2nd",
    "15th",
    "31st",
    "one",
    "five",
    "twelve",
    "twenty",
    "fifty",
    "thirty",
    "not",
    "no",
    "0",
    "1",
    "5",
    "7",
    "12",
    "13",
    "17",
    "24",
    "25",
    "29",
    "31",
    "60",
    "99",
    "1530",
    "5:30",
    "17:00",
    "25:00",
    "5.30",
    "12/15",
    "15/12",
    "2/29",
    "2026-12-12",
    "2026-02-30",
    "9999-12-31",
    "-1",
    ",",
    ".",
    "?",
    "'",
];

fn phrase() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => any::<String>(),
        4 => prop::collection::vec(
            prop_oneof![
                8 => prop::sample::select(WORDS).prop_map(str::to_owned),
                1 => any::<u32>().prop_map(|number| number.to_string()),
                1 => "[0-9:./-]{1,10}",
            ],
            1..6
        )
        .prop_map(|words| words.join(" ")),
    ]
}

/// Any instant chrono can hold, mostly in the years a gateway runs, often at the very ends of
/// chrono's range (where adding a day overflows).
fn instant() -> impl Strategy<Value = DateTime<Utc>> {
    let (min, max) = (
        DateTime::<Utc>::MIN_UTC.timestamp(),
        DateTime::<Utc>::MAX_UTC.timestamp(),
    );
    const FORTNIGHT: i64 = 14 * 86_400;
    prop_oneof![
        4 => 0..4_102_444_800i64, // 1970 to 2100
        1 => min..=max,
        1 => min..=min + FORTNIGHT,
        1 => max - FORTNIGHT..=max,
    ]
    .prop_map(|seconds| DateTime::from_timestamp(seconds, 0).expect("in range"))
}

fn timezone() -> impl Strategy<Value = Tz> {
    prop::sample::select(chrono_tz::TZ_VARIANTS.to_vec())
}

fn time_of_day() -> impl Strategy<Value = NaiveTime> {
    (0..86_400u32).prop_map(|seconds| {
        NaiveTime::from_num_seconds_from_midnight_opt(seconds, 0).expect("within a day")
    })
}

/// Campaign dates, as the API stores them.
fn date() -> impl Strategy<Value = NaiveDate> {
    (1900..2200i32, 1..=366u32).prop_map(|(year, day)| {
        NaiveDate::from_yo_opt(year, day)
            .unwrap_or(NaiveDate::from_yo_opt(year, 1).expect("a year's first day"))
    })
}

/// A calling window: mostly one that opens (start before end), sometimes none at all.
fn window() -> impl Strategy<Value = CallingWindow> {
    (
        time_of_day(),
        time_of_day(),
        prop::bool::weighted(0.8),
        prop::collection::vec(1..=7u32, 0..8),
        proptest::option::of(date()),
        proptest::option::of(date()),
    )
        .prop_map(|(first, second, ordered, days, starts_on, ends_on)| {
            let (start, end) = if ordered {
                (first.min(second), first.max(second))
            } else {
                (first, second)
            };
            CallingWindow {
                start,
                end,
                days,
                starts_on,
                ends_on,
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn any_phrase_at_any_instant_anywhere_is_an_instant_or_unreadable(
        phrase in phrase(),
        now in instant(),
        tz in timezone(),
    ) {
        match resolve(&phrase, now, tz) {
            Ok(at) => { let _ = speak(at, now, tz); }
            Err(Unreadable { phrase: read }) => prop_assert_eq!(read, phrase),
        }
    }

    #[test]
    fn a_scheduled_callback_is_in_the_window_and_not_in_the_past(
        phrase in phrase(),
        now in instant(),
        tz in timezone(),
        window in window(),
    ) {
        match schedule(&phrase, now, tz, &window) {
            Ok(callback) => {
                prop_assert!(callback.at >= now, "{:?} before {}", callback, now);
                prop_assert!(callback.at >= callback.requested);
                prop_assert!(window.is_open(tz, callback.at), "{:?} outside {:?}", callback, window);
                prop_assert_eq!(callback.moved, callback.at != callback.requested);
                prop_assert!(!callback.spoken.is_empty());
            }
            Err(CallbackError::Unreadable(_) | CallbackError::CampaignOver) => {}
        }
    }
}
