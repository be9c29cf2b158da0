//! Callback times read, moved into the window and said back, on a fixed `now`.

use chrono::{NaiveDate, NaiveTime};

use super::*;

const KOLKATA: Tz = chrono_tz::Asia::Kolkata;
const NEW_YORK: Tz = chrono_tz::America::New_York;

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

/// The instant of a wall-clock time in `tz` (the first, in a repeated hour).
fn local(tz: Tz, text: &str) -> DateTime<Utc> {
    let naive = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M").unwrap();
    tz.from_local_datetime(&naive)
        .earliest()
        .unwrap()
        .with_timezone(&Utc)
}

/// Reads every phrase at `now` and compares wall-clock times in `tz`; all misreadings are
/// reported together, so one run shows the whole table's state.
fn check(tz: Tz, now: &str, cases: &[(&str, &str)]) {
    let now = local(tz, now);
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|&(phrase, expected)| {
            let read = resolve(phrase, now, tz)
                .map(|at| at.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string());
            (read.as_deref() != Ok(expected))
                .then(|| format!("{phrase:?}: expected {expected}, read {read:?}"))
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn phrases_read_on_a_monday_afternoon_in_kolkata() {
    // Monday 2026-06-15, 13:20 IST.
    check(
        KOLKATA,
        "2026-06-15 13:20",
        &[
            // Days: without a time, 10:00.
            ("tomorrow", "2026-06-16 10:00"),
            ("Tomorrow morning, please.", "2026-06-16 10:00"),
            ("tomorrow afternoon", "2026-06-16 15:00"),
            ("maybe tomorrow evening?", "2026-06-16 18:00"),
            ("tomorrow night", "2026-06-16 19:00"),
            ("tonight", "2026-06-15 19:00"),
            ("this afternoon", "2026-06-15 15:00"),
            ("this evening", "2026-06-15 18:00"),
            ("in the evening", "2026-06-15 18:00"),
            ("in the morning", "2026-06-16 10:00"),
            ("the day after tomorrow", "2026-06-17 10:00"),
            ("first thing tomorrow", "2026-06-16 10:00"),
            // Weekdays: the next one, never today.
            ("Friday", "2026-06-19 10:00"),
            ("Monday", "2026-06-22 10:00"),
            ("next Monday", "2026-06-22 10:00"),
            ("on Friday at 5 pm", "2026-06-19 17:00"),
            ("Friday at 5", "2026-06-19 17:00"),
            ("fri afternoon", "2026-06-19 15:00"),
            ("next week", "2026-06-22 10:00"),
            ("next week on Wednesday", "2026-06-24 10:00"),
            ("Wednesday next week", "2026-06-24 10:00"),
            // Days counted.
            ("in 3 days", "2026-06-18 10:00"),
            ("in 3 days at 4", "2026-06-18 16:00"),
            ("in a week", "2026-06-22 10:00"),
            // Times without a day: the next occurrence.
            ("after lunch", "2026-06-15 14:00"),
            ("lunchtime tomorrow", "2026-06-16 12:30"),
            ("at 11", "2026-06-16 11:00"),
            ("at 9", "2026-06-16 09:00"),
            ("at 5", "2026-06-15 17:00"),
            ("at 12", "2026-06-16 12:00"),
            ("11 am", "2026-06-16 11:00"),
            ("5:30 pm", "2026-06-15 17:30"),
            ("5.30 p.m.", "2026-06-15 17:30"),
            ("5:30", "2026-06-15 17:30"),
            ("17:00", "2026-06-15 17:00"),
            ("at 1530", "2026-06-15 15:30"),
            ("noon", "2026-06-16 12:00"),
            ("midday tomorrow", "2026-06-16 12:00"),
            ("around 4pm", "2026-06-15 16:00"),
            ("4ish", "2026-06-15 16:00"),
            ("five o'clock", "2026-06-15 17:00"),
            ("at five thirty", "2026-06-15 17:30"),
            ("half past four", "2026-06-15 16:30"),
            ("half five", "2026-06-15 17:30"),
            ("quarter to five", "2026-06-15 16:45"),
            ("ten past three", "2026-06-15 15:10"),
            ("at 5, no, at 6", "2026-06-15 18:00"),
            // A day and a time.
            ("tomorrow at 11", "2026-06-16 11:00"),
            (
                "Can you call me back tomorrow at eleven?",
                "2026-06-16 11:00",
            ),
            ("tomorrow at 7", "2026-06-16 19:00"),
            ("tomorrow morning at 7", "2026-06-16 07:00"),
            ("tomorrow at 07:30", "2026-06-16 07:30"),
            ("tomorrow at 9 a.m.", "2026-06-16 09:00"),
            ("tonight at 8", "2026-06-15 20:00"),
            // Dates: the next one, today included.
            ("December 12", "2026-12-12 10:00"),
            ("12 December at 3 pm", "2026-12-12 15:00"),
            ("the 12th of December", "2026-12-12 10:00"),
            ("December the twelfth, 2027", "2027-12-12 10:00"),
            ("the 20th", "2026-06-20 10:00"),
            ("the 10th", "2026-07-10 10:00"),
            ("on the fifteenth", "2026-06-15 10:00"),
            ("Friday the 19th at 5 pm", "2026-06-19 17:00"),
            ("Saturday the 4th of July", "2026-07-04 10:00"),
            ("June 1st", "2027-06-01 10:00"),
            ("May 5", "2027-05-05 10:00"),
            ("the 5th of May", "2027-05-05 10:00"),
            ("call me at 5, may be better", "2026-06-15 17:00"),
            ("2026-12-12 15:00", "2026-12-12 15:00"),
            ("12/15", "2026-12-15 10:00"),
            ("12/15/2026 at 4 pm", "2026-12-15 16:00"),
            // Later today, and waits.
            ("today", "2026-06-15 15:20"),
            ("later today", "2026-06-15 15:20"),
            ("in two hours", "2026-06-15 15:20"),
            ("in 30 minutes", "2026-06-15 13:50"),
            ("in an hour", "2026-06-15 14:20"),
            ("in half an hour", "2026-06-15 13:50"),
            ("in an hour and a half", "2026-06-15 14:50"),
            ("in an hour and 30 minutes", "2026-06-15 14:50"),
            ("in a couple of hours", "2026-06-15 15:20"),
            ("in 2hrs", "2026-06-15 15:20"),
            ("in forty-five minutes", "2026-06-15 14:05"),
        ],
    );
}

#[test]
fn a_passed_time_without_a_day_is_tomorrow_but_a_named_day_is_kept() {
    // Monday 2026-06-15, 15:00 EDT.
    check(
        NEW_YORK,
        "2026-06-15 15:00",
        &[
            ("at 9", "2026-06-16 09:00"),
            ("after lunch", "2026-06-16 14:00"),
            ("today at 9", "2026-06-15 09:00"),
            ("this afternoon", "2026-06-15 15:00"),
            ("today", "2026-06-15 17:00"),
        ],
    );
}

#[test]
fn the_same_words_name_each_lead_s_own_wall_clock() {
    // 13:20 in Kolkata is 03:50 in New York.
    let now = utc("2026-06-15T07:50:00Z");
    assert_eq!(
        resolve("tomorrow at 11", now, KOLKATA),
        Ok(utc("2026-06-16T05:30:00Z"))
    );
    assert_eq!(
        resolve("tomorrow at 11", now, NEW_YORK),
        Ok(utc("2026-06-16T15:00:00Z"))
    );
    // "at 9" is still ahead in New York, and has passed in Kolkata.
    assert_eq!(
        resolve("at 9", now, NEW_YORK),
        Ok(utc("2026-06-15T13:00:00Z"))
    );
    assert_eq!(
        resolve("at 9", now, KOLKATA),
        Ok(utc("2026-06-16T03:30:00Z"))
    );
}

#[test]
fn a_day_named_across_the_autumn_change_keeps_its_wall_clock_time() {
    // Saturday 2026-10-31, 15:00 EDT; on Sunday at 02:00 EDT the clocks go back to 01:00 EST.
    let now = local(NEW_YORK, "2026-10-31 15:00");
    assert_eq!(now, utc("2026-10-31T19:00:00Z"));
    assert_eq!(
        resolve("tomorrow at 11", now, NEW_YORK),
        Ok(utc("2026-11-01T16:00:00Z"))
    );
    assert_eq!(
        resolve("Monday", now, NEW_YORK),
        Ok(utc("2026-11-02T15:00:00Z"))
    );
    // 01:30 happens twice that night: the first, still in EDT.
    assert_eq!(
        resolve("tomorrow at 1:30 am", now, NEW_YORK),
        Ok(utc("2026-11-01T05:30:00Z"))
    );
}

#[test]
fn a_wait_across_the_autumn_change_is_counted_on_the_utc_timeline() {
    // From the first 01:30 (EDT), two hours on, the wall clock says 02:30 EST: one hour later.
    let at = resolve("in two hours", utc("2026-11-01T05:30:00Z"), NEW_YORK).unwrap();
    assert_eq!(at, utc("2026-11-01T07:30:00Z"));
    let wall = |at: DateTime<Utc>| at.with_timezone(&NEW_YORK).format("%H:%M %Z").to_string();
    assert_eq!(wall(at), "02:30 EST");
    // From 00:30 EDT, two hours land on the second 01:30, in EST.
    let at = resolve("in 2 hours", utc("2026-11-01T04:30:00Z"), NEW_YORK).unwrap();
    assert_eq!(at, utc("2026-11-01T06:30:00Z"));
    assert_eq!(wall(at), "01:30 EST");
}

#[test]
fn a_time_in_the_spring_gap_moves_to_the_end_of_the_gap() {
    // Sunday 2027-03-14: 02:00 EST jumps to 03:00 EDT, so 02:30 does not exist.
    let now = local(NEW_YORK, "2027-03-13 12:00");
    assert_eq!(
        resolve("tomorrow at 2:30 am", now, NEW_YORK),
        Ok(utc("2027-03-14T07:00:00Z"))
    );
    // Without am, 2:30 is in the afternoon, in EDT.
    assert_eq!(
        resolve("tomorrow at 2:30", now, NEW_YORK),
        Ok(utc("2027-03-14T18:30:00Z"))
    );
    // And a day alone is 10:00 EDT.
    assert_eq!(
        resolve("tomorrow", now, NEW_YORK),
        Ok(utc("2027-03-14T14:00:00Z"))
    );
}

#[test]
fn phrases_without_a_readable_time_are_unreadable() {
    let now = local(KOLKATA, "2026-06-15 13:20");
    let phrases = [
        "",
        "I don't know",
        "banana",
        "call me back later",
        "maybe in May",
        "25:00",
        "at 99",
        "17 am",
        "5x",
        "15/12",
        "12-15",
        "February 30",
        "tomorrow in two hours",
        "in an hour this evening",
    ];
    for phrase in phrases {
        assert_eq!(
            resolve(phrase, now, KOLKATA),
            Err(Unreadable {
                phrase: phrase.to_owned()
            }),
            "{phrase:?}"
        );
    }
    assert_eq!(
        Unreadable {
            phrase: "banana".to_owned()
        }
        .to_string(),
        "could not read a time from `banana`"
    );
}

fn weekdays_nine_to_six() -> CallingWindow {
    CallingWindow {
        start: NaiveTime::from_hms_opt(9, 0, 0).unwrap(),
        end: NaiveTime::from_hms_opt(18, 0, 0).unwrap(),
        days: vec![1, 2, 3, 4, 5],
        starts_on: None,
        ends_on: None,
    }
}

#[test]
fn a_time_inside_the_window_is_kept() {
    // Wednesday 2026-06-17, 10:00 EDT.
    let now = local(NEW_YORK, "2026-06-17 10:00");
    let callback = schedule("in an hour", now, NEW_YORK, &weekdays_nine_to_six()).unwrap();
    let eleven = local(NEW_YORK, "2026-06-17 11:00");
    assert_eq!(
        callback,
        Callback {
            at: eleven,
            requested: eleven,
            moved: false,
            spoken: "today at 11 am, your time".to_owned(),
        }
    );
}

#[test]
fn a_time_after_the_window_closes_moves_to_the_next_opening() {
    let window = weekdays_nine_to_six();
    let now = local(NEW_YORK, "2026-06-17 10:00");
    let callback = schedule("at 9 pm", now, NEW_YORK, &window).unwrap();
    assert_eq!(callback.requested, local(NEW_YORK, "2026-06-17 21:00"));
    assert_eq!(callback.at, local(NEW_YORK, "2026-06-18 09:00"));
    assert!(callback.moved);
    assert_eq!(callback.spoken, "tomorrow at 9 am, your time");
    // The same window on a Kolkata lead's wall clock.
    let now = local(KOLKATA, "2026-06-17 10:00");
    let callback = schedule("tonight", now, KOLKATA, &window).unwrap();
    assert_eq!(callback.requested, local(KOLKATA, "2026-06-17 19:00"));
    assert_eq!(callback.at, local(KOLKATA, "2026-06-18 09:00"));
    assert!(callback.moved);
}

#[test]
fn a_time_in_the_past_moves_to_now_or_to_the_next_opening() {
    let window = weekdays_nine_to_six();
    // The window is open: an hour ago becomes now.
    let now = local(NEW_YORK, "2026-06-17 10:00");
    let callback = schedule("today at 9", now, NEW_YORK, &window).unwrap();
    assert_eq!(callback.requested, local(NEW_YORK, "2026-06-17 09:00"));
    assert_eq!(callback.at, now);
    assert!(callback.moved);
    assert_eq!(callback.spoken, "today at 10 am, your time");
    // The window has closed for the day: tomorrow's opening.
    let now = local(NEW_YORK, "2026-06-17 19:00");
    let callback = schedule("this afternoon", now, NEW_YORK, &window).unwrap();
    assert_eq!(callback.requested, local(NEW_YORK, "2026-06-17 15:00"));
    assert_eq!(callback.at, local(NEW_YORK, "2026-06-18 09:00"));
    assert!(callback.moved);
}

#[test]
fn a_weekend_day_moves_to_monday() {
    let now = local(NEW_YORK, "2026-06-17 10:00");
    let callback = schedule("Saturday", now, NEW_YORK, &weekdays_nine_to_six()).unwrap();
    assert_eq!(callback.requested, local(NEW_YORK, "2026-06-20 10:00"));
    assert_eq!(callback.at, local(NEW_YORK, "2026-06-22 09:00"));
    assert!(callback.moved);
    assert_eq!(callback.spoken, "Monday the 22nd at 9 am, your time");
}

#[test]
fn before_the_campaign_starts_the_first_opening_is_taken() {
    let mut window = weekdays_nine_to_six();
    window.starts_on = NaiveDate::from_ymd_opt(2026, 7, 1);
    let now = local(NEW_YORK, "2026-06-17 10:00");
    let callback = schedule("tomorrow", now, NEW_YORK, &window).unwrap();
    assert_eq!(callback.at, local(NEW_YORK, "2026-07-01 09:00"));
    assert_eq!(
        callback.spoken,
        "Wednesday the 1st of July at 9 am, your time"
    );
}

#[test]
fn after_the_campaign_ends_there_is_no_callback() {
    let mut window = weekdays_nine_to_six();
    window.ends_on = NaiveDate::from_ymd_opt(2026, 6, 19);
    let now = local(NEW_YORK, "2026-06-17 10:00");
    assert_eq!(
        schedule("next week", now, NEW_YORK, &window),
        Err(CallbackError::CampaignOver)
    );
    // Friday, the last day, is still open.
    let callback = schedule("Friday at 5", now, NEW_YORK, &window).unwrap();
    assert_eq!(callback.at, local(NEW_YORK, "2026-06-19 17:00"));
    assert!(!callback.moved);
}

#[test]
fn an_unreadable_phrase_schedules_nothing() {
    let now = local(NEW_YORK, "2026-06-17 10:00");
    let error = schedule("banana", now, NEW_YORK, &weekdays_nine_to_six()).unwrap_err();
    assert_eq!(
        error,
        CallbackError::Unreadable(Unreadable {
            phrase: "banana".to_owned()
        })
    );
    assert_eq!(error.to_string(), "could not read a time from `banana`");
}

#[test]
fn speak_names_the_day_relative_to_now_and_the_time() {
    // Monday 2026-06-01, 09:00 EDT.
    let now = local(NEW_YORK, "2026-06-01 09:00");
    let cases = [
        ("2026-06-01 16:30", "today at 4:30 pm, your time"),
        ("2026-06-02 11:00", "tomorrow at 11 am, your time"),
        ("2026-06-02 00:00", "tomorrow at midnight, your time"),
        ("2026-06-03 12:00", "Wednesday the 3rd at noon, your time"),
        ("2026-06-05 17:00", "Friday the 5th at 5 pm, your time"),
        ("2026-06-07 12:15", "Sunday the 7th at 12:15 pm, your time"),
        (
            "2026-06-08 09:00",
            "Monday the 8th of June at 9 am, your time",
        ),
        (
            "2026-06-22 00:30",
            "Monday the 22nd of June at 12:30 am, your time",
        ),
        (
            "2027-01-04 10:05",
            "Monday the 4th of January at 10:05 am, your time",
        ),
    ];
    for (at, expected) in cases {
        assert_eq!(speak(local(NEW_YORK, at), now, NEW_YORK), expected, "{at}");
    }
}

#[test]
fn speak_uses_the_lead_s_wall_clock() {
    let now = utc("2026-06-15T14:00:00Z");
    let at = utc("2026-06-15T20:00:00Z");
    assert_eq!(speak(at, now, NEW_YORK), "today at 4 pm, your time");
    assert_eq!(speak(at, now, KOLKATA), "tomorrow at 1:30 am, your time");
}

#[test]
fn ordinals_take_their_english_suffixes() {
    let spoken: Vec<String> = [1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 31]
        .into_iter()
        .map(ordinal)
        .collect();
    assert_eq!(
        spoken,
        [
            "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd", "31st"
        ]
    );
}
