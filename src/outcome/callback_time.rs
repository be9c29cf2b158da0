//! When to call a lead back (pure, time as a parameter): the caller's words ("tomorrow after
//! lunch", "Friday at 5") read as an instant on the lead's wall clock, moved into the campaign's
//! calling window, and said back ("Friday the 19th at 5 pm, your time") so that the caller can
//! correct a misreading before the call ends.
//!
//! # How a phrase is read
//!
//! Case, punctuation and words the reader does not know ("please", "maybe", "around", "can you
//! call me back") are skipped. A phrase with no time word in it is [`Unreadable`], and so is one
//! with a number that cannot be placed ("25:00", "15/12") or that contradicts itself ("tomorrow
//! in two hours"). When a day or a time is named twice, the last one counts ("at 5, no, at 6";
//! "between 2 and 3" is 3).
//!
//! - **Days.** `today`, `tonight`, `tomorrow`, `the day after tomorrow`, `in 3 days`, `in a week`.
//!   A weekday (`Friday`, `this Friday`, `next Friday`) is the next such day, never today; `next`
//!   does not skip a week (the date is said back, so the caller can correct it). `next week` is
//!   the coming Monday, `next week on Wednesday` that week's Wednesday. Dates (`December 12`,
//!   `12 December`, `the 15th`, `2026-12-12`, and `12/15`, read month/day, US style: `15/12` is
//!   unreadable rather than guessed) are the next such date, today included. A date beats a
//!   weekday: `Friday the 5th` is the 5th.
//! - **Times.** `11 am`, `5:30 pm`, `5.30`, `17:00`, `noon`, `midday`, `half past four`,
//!   `half five`, `quarter to five`, `ten past 3`, and number words up to fifty-nine. An hour
//!   without am/pm is read in business hours: 1–7 are pm, 8–11 am, 12 is noon (`at 5` is 17:00,
//!   `at 11` is 11:00). A part of the day settles it instead (`tonight at 8` is 20:00,
//!   `tomorrow morning at 7` is 07:00), and a 24-hour spelling (`17`, `07:30`, `at 1530`) is taken
//!   as written.
//! - **Parts of the day.** Morning 10:00, lunch 12:30, after lunch 14:00, afternoon 15:00,
//!   evening 18:00, night and tonight 19:00.
//! - **Defaults.** A day without a time is called at 10:00. `today` alone means later today: two
//!   hours from now, never before 10:00. A time without a day is its next occurrence: today if
//!   still ahead, else tomorrow (`at 9` said at 15:00 is tomorrow at 9). A named day is kept even
//!   when its time has passed (`today at 9` said at 15:00 is in the past); [`schedule`] moves it.
//! - **Durations** (`in two hours`, `in 30 minutes`, `in an hour and a half`) are added to `now`
//!   on the UTC timeline, so they stay exact across a DST change.
//!
//! Wall-clock times are resolved in the lead's timezone (the one
//! [`resolve_zone`](crate::dialer::window::resolve_zone) picks). A time in a spring-forward gap
//! moves to the first instant after the gap, and a time in a repeated hour takes its first
//! occurrence, as the calling window's edges do.

use chrono::{
    DateTime, Datelike, Days, LocalResult, Months, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta,
    TimeZone, Timelike, Utc, Weekday,
};
use chrono_tz::Tz;

use crate::dialer::window::{CallingWindow, Opening};

/// A phrase in which no time could be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("could not read a time from `{phrase}`")]
pub struct Unreadable {
    pub phrase: String,
}

/// Why no callback could be scheduled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackError {
    #[error(transparent)]
    Unreadable(#[from] Unreadable),
    /// The calling window does not open again: the campaign ends before the requested time.
    #[error("the campaign's calling window does not open again")]
    CampaignOver,
}

/// A callback placed in the calling window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callback {
    /// When to call.
    pub at: DateTime<Utc>,
    /// What the caller asked for.
    pub requested: DateTime<Utc>,
    /// `at` is not `requested`: the request was in the past or outside the window, so the agent
    /// should say the new time rather than confirm the caller's.
    pub moved: bool,
    /// `at` in words, on the lead's wall clock, to say back to the caller.
    pub spoken: String,
}

/// Which instant the caller's words name, read on the lead's wall clock `tz`.
pub fn resolve(phrase: &str, now: DateTime<Utc>, tz: Tz) -> Result<DateTime<Utc>, Unreadable> {
    let unreadable = || Unreadable {
        phrase: phrase.to_owned(),
    };
    if !within_calendar(now) {
        return Err(unreadable());
    }
    let tokens = tokenize(phrase).ok_or_else(unreadable)?;
    let reading = Reading::parse(&tokens).ok_or_else(unreadable)?;
    reading
        .instant(now, tz)
        .filter(|at| within_calendar(*at))
        .ok_or_else(unreadable)
}

/// [`resolve`], then: a time in the past or outside the window moves to the window's next
/// opening (now, when a past time is asked for while the window is open); a window that never
/// opens again (after `ends_on`) is [`CallbackError::CampaignOver`].
pub fn schedule(
    phrase: &str,
    now: DateTime<Utc>,
    tz: Tz,
    window: &CallingWindow,
) -> Result<Callback, CallbackError> {
    let requested = resolve(phrase, now, tz)?;
    let earliest = requested.max(now);
    let at = match window.next_opening(tz, earliest) {
        Opening::Now => earliest,
        Opening::At(opening) => opening,
        Opening::Never => return Err(CallbackError::CampaignOver),
    };
    Ok(Callback {
        at,
        requested,
        moved: at != requested,
        spoken: speak(at, now, tz),
    })
}

/// "Friday the 5th at 5 pm, your time" / "tomorrow at 11 am, your time" / "today at 4:30 pm,
/// your time": the day relative to `now` and the time, both on the wall clock of `tz`.
pub fn speak(at: DateTime<Utc>, now: DateTime<Utc>, tz: Tz) -> String {
    let local = at.with_timezone(&tz);
    let date = local.date_naive();
    let days_ahead = (date - now.with_timezone(&tz).date_naive()).num_days();
    let day = match days_ahead {
        0 => "today".to_owned(),
        1 => "tomorrow".to_owned(),
        2..=LAST_DAY_WITHOUT_MONTH => format!("{} the {}", date.format("%A"), ordinal(date.day())),
        _ => format!(
            "{} the {} of {}",
            date.format("%A"),
            ordinal(date.day()),
            date.format("%B")
        ),
    };
    format!("{day} at {}, your time", spoken_time(local.time()))
}

/// A day named without a time is called mid-morning: the working day has begun, and a missed
/// call still leaves room for a retry before the window closes.
const DEFAULT_TIME: (u32, u32) = (10, 0);
/// `today` with no time ("later today"): this many minutes from now.
const LATER_TODAY_MINUTES: i64 = 120;
/// An hour said without am/pm up to this one is afternoon ("at 5" is 17:00); from the next one
/// to 11 it is morning. Nobody asks to be called back at 5 in the morning.
const LAST_PM_HOUR: u32 = 7;
/// Up to this many days ahead, the weekday and the day of the month say which day without the
/// month; further out, "the 5th" could be this month's or the next.
const LAST_DAY_WITHOUT_MONTH: i64 = 6;
/// DST gaps are at most a few hours; a time in one is searched this far, minute by minute.
const GAP_SEARCH_MINUTES: i64 = 6 * 60;
/// How many years ahead a month and day without a year is looked for (29 February).
const LEAP_SEARCH_YEARS: i32 = 8;

/// One word of a phrase, or a number in one of its spellings.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    /// A cardinal. `padded` when written with a leading zero ("07"), which is the 24-hour
    /// clock; `digits` is 0 for a number word.
    Number {
        value: u32,
        padded: bool,
        digits: usize,
    },
    /// "15th" is always a day of the month; "fifth" only next to "the", a month or a weekday,
    /// because "first" and "second" are ordinary words too.
    Ordinal {
        value: u32,
        numeric: bool,
    },
    Clock {
        hour: u32,
        minute: u32,
        padded: bool,
    },
    Date(NaiveDate),
    MonthDay {
        month: u32,
        day: u32,
        year: Option<i32>,
    },
    Meridiem(Meridiem),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Meridiem {
    Am,
    Pm,
}

/// A part of the day, which gives a time when no clock time is said, and am/pm when one is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Morning,
    Noon,
    Lunch,
    AfterLunch,
    Afternoon,
    Evening,
    Night,
}

impl Part {
    fn time(self) -> NaiveTime {
        let (hour, minute) = match self {
            Part::Morning => (10, 0),
            Part::Noon => (12, 0),
            Part::Lunch => (12, 30),
            Part::AfterLunch => (14, 0),
            Part::Afternoon => (15, 0),
            Part::Evening => (18, 0),
            Part::Night => (19, 0),
        };
        NaiveTime::from_hms_opt(hour, minute, 0).unwrap_or(NaiveTime::MIN)
    }

    fn meridiem(self) -> Meridiem {
        match self {
            Part::Morning => Meridiem::Am,
            _ => Meridiem::Pm,
        }
    }
}

/// A clock time as said: the hour is made 24-hour only once the whole phrase is read, since a
/// part of the day may follow it ("at 8 tonight").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Clock {
    hour: u32,
    minute: u32,
    meridiem: Option<Meridiem>,
    padded: bool,
    /// "quarter to five": subtracted after the hour is placed in the day.
    minutes_before: u32,
}

impl Clock {
    fn at(hour: u32, minute: u32, padded: bool) -> Clock {
        Clock {
            hour,
            minute,
            meridiem: None,
            padded,
            minutes_before: 0,
        }
    }

    fn time(self, hint: Option<Meridiem>) -> Option<NaiveTime> {
        let hour = match (self.meridiem, self.hour) {
            (Some(Meridiem::Am), 12) => 0,
            (Some(Meridiem::Am), hour @ 0..=11) => hour,
            (Some(Meridiem::Pm), hour @ 1..=11) => hour + 12,
            (Some(Meridiem::Pm), hour @ 12..=23) => hour,
            // "17 am", "0 pm".
            (Some(_), _) => return None,
            (None, hour) if self.padded || hour == 0 || hour > 12 => hour,
            (None, 12) => 12,
            (None, hour) => match hint {
                Some(Meridiem::Am) => hour,
                Some(Meridiem::Pm) => hour + 12,
                None if hour <= LAST_PM_HOUR => hour + 12,
                None => hour,
            },
        };
        let time = NaiveTime::from_hms_opt(hour, self.minute, 0)?;
        Some(time - TimeDelta::minutes(i64::from(self.minutes_before)))
    }
}

/// Which day was named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Day {
    Today,
    /// Days after today: "tomorrow", "in 3 days".
    Offset(u64),
    Weekday(Weekday),
    /// The week after this one, on Monday unless a weekday is named.
    NextWeek(Option<Weekday>),
    /// The next date with this day (and month, and year) on or after today.
    Date {
        month: Option<u32>,
        day: u32,
        year: Option<i32>,
    },
    Exact(NaiveDate),
}

impl Day {
    fn date(self, today: NaiveDate) -> Option<NaiveDate> {
        match self {
            Day::Today => Some(today),
            Day::Offset(days) => today.checked_add_days(Days::new(days)),
            Day::Weekday(weekday) => Some(next_weekday(today, weekday)),
            Day::NextWeek(weekday) => {
                let monday = next_weekday(today, Weekday::Mon);
                let into_week = weekday.map_or(0, |weekday| weekday.num_days_from_monday());
                monday.checked_add_days(Days::new(u64::from(into_week)))
            }
            Day::Date {
                month: Some(month),
                day,
                year: Some(year),
            } => NaiveDate::from_ymd_opt(year, month, day),
            Day::Date {
                month: Some(month),
                day,
                year: None,
            } => (0..=LEAP_SEARCH_YEARS).find_map(|ahead| {
                NaiveDate::from_ymd_opt(today.year() + ahead, month, day)
                    .filter(|date| *date >= today)
            }),
            Day::Date {
                month: None, day, ..
            } => (0..=12).find_map(|ahead| {
                let first = today.with_day(1)?.checked_add_months(Months::new(ahead))?;
                first.with_day(day).filter(|date| *date >= today)
            }),
            Day::Exact(date) => Some(date),
        }
    }
}

/// A number of minutes, or of days, which are calendar days on the wall clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Amount {
    Minutes(i64),
    Days(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Minute,
    Hour,
    Day,
    Week,
}

/// What a phrase named, slot by slot.
#[derive(Debug, Default)]
struct Reading {
    day: Option<Day>,
    clock: Option<Clock>,
    part: Option<Part>,
    wait_minutes: Option<i64>,
}

impl Reading {
    /// `None` when a number cannot be placed or nothing names a time.
    fn parse(tokens: &[Token]) -> Option<Reading> {
        let mut reading = Reading::default();
        let mut index = 0;
        while index < tokens.len() {
            index = reading.step(tokens, index)?;
        }
        let named = reading.day.is_some()
            || reading.clock.is_some()
            || reading.part.is_some()
            || reading.wait_minutes.is_some();
        named.then_some(reading)
    }

    /// Reads what starts at `index`; returns where the next reading starts.
    fn step(&mut self, tokens: &[Token], index: usize) -> Option<usize> {
        let next = index + 1;
        match &tokens[index] {
            Token::Date(date) => self.set_day(Day::Exact(*date)),
            &Token::MonthDay { month, day, year } => self.set_day(Day::Date {
                month: Some(month),
                day,
                year,
            }),
            &Token::Clock {
                hour,
                minute,
                padded,
            } => return Some(self.set_clock(tokens, next, Clock::at(hour, minute, padded))),
            Token::Meridiem(_) => {}
            &Token::Ordinal { value, numeric } => {
                if numeric || ordinal_word_is_a_day(tokens, index) {
                    return Some(self.read_day_of_month(tokens, value, next));
                }
            }
            &Token::Number {
                value,
                padded,
                digits,
            } => return self.read_number(tokens, index, value, padded, digits),
            Token::Word(text) => return Some(self.read_word(tokens, index, text)),
        }
        Some(next)
    }

    /// A clock time, and the am/pm (after an optional "o'clock") that may follow it.
    fn set_clock(&mut self, tokens: &[Token], next: usize, mut clock: Clock) -> usize {
        let (meridiem, after) = meridiem_at(tokens, next);
        clock.meridiem = meridiem;
        self.clock = Some(clock);
        after
    }

    /// "the 15th", "the 15th of December", "15 December 2026".
    fn read_day_of_month(&mut self, tokens: &[Token], day: u32, next: usize) -> usize {
        let month_index = if word(tokens, next) == Some("of") {
            next + 1
        } else {
            next
        };
        match month_at(tokens, month_index) {
            Some(month) => {
                let (year, after) = year_at(tokens, month_index + 1);
                self.set_day(Day::Date {
                    month: Some(month),
                    day,
                    year,
                });
                after
            }
            None => {
                self.set_day(Day::Date {
                    month: None,
                    day,
                    year: None,
                });
                next
            }
        }
    }

    fn read_number(
        &mut self,
        tokens: &[Token],
        index: usize,
        value: u32,
        padded: bool,
        digits: usize,
    ) -> Option<usize> {
        let next = index + 1;
        if let Some((amount, after)) = amount_at(tokens, next, value) {
            self.add(amount);
            return Some(after);
        }
        let month_index = if word(tokens, next) == Some("of") {
            next + 1
        } else {
            next
        };
        if (1..=31).contains(&value) && month_at(tokens, month_index).is_some() {
            return Some(self.read_day_of_month(tokens, value, next));
        }
        // "ten past five", "twenty to six": only round minutes, since "2 to 3" is a range.
        if let Some(sign) = word(tokens, next).and_then(past_or_to)
            && value.is_multiple_of(5)
            && match sign {
                Sign::Past => (5..=30).contains(&value),
                Sign::To => (5..=25).contains(&value),
            }
            && let Some((hour, hour_padded, after)) = hour_at(tokens, next + 1)
        {
            let mut clock = Clock::at(hour, 0, hour_padded);
            match sign {
                Sign::Past => clock.minute = value,
                Sign::To => clock.minutes_before = value,
            }
            return Some(self.set_clock(tokens, after, clock));
        }
        if value <= 23 {
            // "five thirty", "5 30 pm": a second number is the minutes unless it counts
            // something ("at 5 15 minutes") or is a date ("at 5 12 December").
            let (minute, after) = match tokens.get(next) {
                Some(&Token::Number { value: minute, .. })
                    if (10..=59).contains(&minute)
                        && amount_at(tokens, next + 1, minute).is_none()
                        && month_at(tokens, next + 1).is_none() =>
                {
                    (minute, next + 1)
                }
                _ => (0, next),
            };
            return Some(self.set_clock(tokens, after, Clock::at(value, minute, padded)));
        }
        // "at 1530": only after "at", where a year or a phone number is not expected.
        let previous = index
            .checked_sub(1)
            .and_then(|previous| word(tokens, previous));
        if (3..=4).contains(&digits) && previous == Some("at") {
            let (hour, minute) = (value / 100, value % 100);
            if hour <= 23 && minute <= 59 {
                return Some(self.set_clock(tokens, next, Clock::at(hour, minute, true)));
            }
        }
        None
    }

    fn read_word(&mut self, tokens: &[Token], index: usize, word_here: &str) -> usize {
        let next = index + 1;
        let previous = index
            .checked_sub(1)
            .and_then(|previous| word(tokens, previous));
        match word_here {
            "today" => self.set_day(Day::Today),
            "tonight" | "tonite" => {
                self.set_day(Day::Today);
                self.part = Some(Part::Night);
            }
            "tomorrow" | "tomorow" | "tmrw" | "tmr" => {
                let day_after = previous == Some("after")
                    && index
                        .checked_sub(2)
                        .is_some_and(|before| word(tokens, before) == Some("day"));
                self.set_day(Day::Offset(if day_after { 2 } else { 1 }));
            }
            "week" if previous == Some("next") => self.set_day(Day::NextWeek(None)),
            "half" | "quarter" => return self.read_fraction(tokens, index, word_here),
            "a" | "an" | "couple" => {
                let mut count_index = next;
                if word_here == "couple" && word(tokens, count_index) == Some("of") {
                    count_index += 1;
                }
                let count = if word_here == "couple" { 2 } else { 1 };
                if let Some((amount, after)) = amount_at(tokens, count_index, count) {
                    self.add(amount);
                    return after;
                }
            }
            _ => {
                if let Some(part) = part_named(word_here, previous) {
                    // "this evening" names today; "evening" alone is the next evening.
                    if previous == Some("this") {
                        self.set_day(Day::Today);
                    }
                    self.part = Some(part);
                } else if let Some(weekday) = weekday_named(word_here) {
                    self.set_day(Day::Weekday(weekday));
                } else if let Some(month) = month_at(tokens, index) {
                    return self.read_month_first(tokens, month, next);
                }
            }
        }
        next
    }

    /// "December 12", "December the 12th, 2026"; a month without a day names nothing.
    fn read_month_first(&mut self, tokens: &[Token], month: u32, next: usize) -> usize {
        let day_index = if word(tokens, next) == Some("the") {
            next + 1
        } else {
            next
        };
        let day = match tokens.get(day_index) {
            Some(&Token::Number { value, .. }) if (1..=31).contains(&value) => value,
            Some(&Token::Ordinal { value, .. }) => value,
            _ => return next,
        };
        let (year, after) = year_at(tokens, day_index + 1);
        self.set_day(Day::Date {
            month: Some(month),
            day,
            year,
        });
        after
    }

    /// "half past four", "half five", "quarter to five", "quarter of five", "half an hour",
    /// "a quarter of an hour".
    fn read_fraction(&mut self, tokens: &[Token], index: usize, fraction: &str) -> usize {
        let next = index + 1;
        let minutes = if fraction == "half" { 30 } else { 15 };
        let sign = match word(tokens, next) {
            Some("of") if fraction == "quarter" && hour_at(tokens, next + 1).is_some() => {
                Some(Sign::To)
            }
            Some(other) => past_or_to(other),
            None => None,
        };
        let clock =
            match sign {
                Some(sign) => hour_at(tokens, next + 1)
                    .map(|(hour, padded, after)| (sign, hour, padded, after)),
                // "half five" is 5:30 in British and Indian English.
                None if fraction == "half" => hour_at(tokens, next)
                    .map(|(hour, padded, after)| (Sign::Past, hour, padded, after)),
                None => None,
            };
        if let Some((sign, hour, padded, after)) = clock {
            let mut clock = Clock::at(hour, 0, padded);
            match sign {
                Sign::Past => clock.minute = minutes,
                Sign::To => clock.minutes_before = minutes,
            }
            return self.set_clock(tokens, after, clock);
        }
        let mut unit_index = next;
        while matches!(word(tokens, unit_index), Some("a" | "an" | "of")) {
            unit_index += 1;
        }
        if unit_at(tokens, unit_index) == Some(Unit::Hour) {
            self.add(Amount::Minutes(minutes.into()));
            return unit_index + 1;
        }
        next
    }

    /// Waits add up ("an hour and 30 minutes"); days name a day.
    fn add(&mut self, amount: Amount) {
        match amount {
            Amount::Minutes(minutes) => {
                self.wait_minutes = Some(self.wait_minutes.unwrap_or(0).saturating_add(minutes));
            }
            Amount::Days(days) => self.set_day(Day::Offset(days)),
        }
    }

    /// The last day named counts, except that a weekday and "next week" combine, and a date
    /// is not replaced by its weekday ("Friday the 5th", "the 5th, a Friday").
    fn set_day(&mut self, day: Day) {
        self.day = Some(match (self.day, day) {
            (Some(Day::NextWeek(None)), Day::Weekday(weekday))
            | (Some(Day::Weekday(weekday)), Day::NextWeek(None)) => Day::NextWeek(Some(weekday)),
            (Some(date @ (Day::Date { .. } | Day::Exact(_))), Day::Weekday(_)) => date,
            (_, day) => day,
        });
    }

    fn instant(&self, now: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        if let Some(minutes) = self.wait_minutes {
            let other_day = !matches!(self.day, None | Some(Day::Today));
            if other_day || self.clock.is_some() || self.part.is_some() {
                return None;
            }
            return now.checked_add_signed(TimeDelta::try_minutes(minutes)?);
        }
        let today = now.with_timezone(&tz).date_naive();
        let time = match self.clock {
            Some(clock) => Some(clock.time(self.part.map(Part::meridiem))?),
            None => self.part.map(Part::time),
        };
        let default_time = NaiveTime::from_hms_opt(DEFAULT_TIME.0, DEFAULT_TIME.1, 0)?;
        match (self.day, time) {
            (None, None) => None,
            (None, Some(time)) => {
                let first = wall_clock(tz, today.and_time(time))?;
                if first > now {
                    return Some(first);
                }
                wall_clock(tz, today.succ_opt()?.and_time(time))
            }
            (Some(Day::Today), None) => {
                let later = now.checked_add_signed(TimeDelta::minutes(LATER_TODAY_MINUTES))?;
                Some(later.max(wall_clock(tz, today.and_time(default_time))?))
            }
            (Some(day), time) => {
                wall_clock(tz, day.date(today)?.and_time(time.unwrap_or(default_time)))
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sign {
    Past,
    To,
}

/// Lower case, punctuation dropped (a stop between digits is a clock's colon: "5.30"), split
/// into tokens; `None` for a number that cannot be read ("25:00", "5x").
fn tokenize(phrase: &str) -> Option<Vec<Token>> {
    let lower = phrase
        .to_lowercase()
        .replace("a.m", "am")
        .replace("p.m", "pm");
    let chars: Vec<char> = lower.chars().collect();
    let mut cleaned = String::with_capacity(lower.len());
    for (index, &character) in chars.iter().enumerate() {
        let between_digits = index > 0
            && chars[index - 1].is_ascii_digit()
            && chars.get(index + 1).is_some_and(char::is_ascii_digit);
        cleaned.push(match character {
            '.' if between_digits => ':',
            ':' | '/' | '-' => character,
            character if character.is_alphanumeric() => character,
            _ => ' ',
        });
    }
    let mut tokens = Vec::new();
    for piece in cleaned.split_whitespace() {
        let piece = piece.trim_matches([':', '/', '-']);
        if !piece.is_empty() {
            read_piece(piece, &mut tokens)?;
        }
    }
    Some(number_words(tokens))
}

fn read_piece(piece: &str, tokens: &mut Vec<Token>) -> Option<()> {
    let starts_with_digit = |text: &str| text.starts_with(|c: char| c.is_ascii_digit());
    if piece.contains('-') {
        if let Ok(date) = NaiveDate::parse_from_str(piece, "%Y-%m-%d") {
            tokens.push(Token::Date(date));
            return Some(());
        }
        // "forty-five", "5pm-ish"; two numbers ("12-15") could be a date or a range.
        let parts: Vec<&str> = piece.split('-').filter(|part| !part.is_empty()).collect();
        if parts.iter().filter(|part| starts_with_digit(part)).count() > 1 {
            return None;
        }
        return parts
            .into_iter()
            .try_for_each(|part| read_piece(part, tokens));
    }
    if !starts_with_digit(piece) {
        tokens.push(match piece {
            "am" => Token::Meridiem(Meridiem::Am),
            "pm" => Token::Meridiem(Meridiem::Pm),
            _ => Token::Word(piece.to_owned()),
        });
        return Some(());
    }
    if piece.contains('/') {
        tokens.push(month_day(piece)?);
        return Some(());
    }
    if let Some((hour, rest)) = piece.split_once(':') {
        let minute = rest.get(..2)?;
        let (hour_value, minute_value) = (digits(hour)?, digits(minute)?);
        if hour.len() > 2 || hour_value > 23 || minute_value > 59 {
            return None;
        }
        tokens.push(Token::Clock {
            hour: hour_value,
            minute: minute_value,
            padded: hour.len() == 2 && hour.starts_with('0'),
        });
        return push_suffix(&rest[2..], tokens);
    }
    let split = piece
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(piece.len());
    let (number, suffix) = piece.split_at(split);
    let value = digits(number)?;
    if matches!(suffix, "st" | "nd" | "rd" | "th") {
        tokens.push(Token::Ordinal {
            value,
            numeric: true,
        });
        return Some(());
    }
    tokens.push(Token::Number {
        value,
        padded: number.len() > 1 && number.starts_with('0'),
        digits: number.len(),
    });
    push_suffix(suffix, tokens)
}

/// What may stick to a number: "5pm", "5:30am", "5ish", "2hrs", "30min".
fn push_suffix(suffix: &str, tokens: &mut Vec<Token>) -> Option<()> {
    match suffix {
        "" | "ish" => {}
        "am" | "a" => tokens.push(Token::Meridiem(Meridiem::Am)),
        "pm" | "p" => tokens.push(Token::Meridiem(Meridiem::Pm)),
        unit if unit_named(unit).is_some() => tokens.push(Token::Word(unit.to_owned())),
        _ => return None,
    }
    Some(())
}

/// "12/15" and "12/15/2026": month first, the US order.
fn month_day(piece: &str) -> Option<Token> {
    let parts: Vec<&str> = piece.split('/').collect();
    let (month, day, year) = match parts.as_slice() {
        [month, day] => (digits(month)?, digits(day)?, None),
        [month, day, year] if year.len() == 2 => (
            digits(month)?,
            digits(day)?,
            Some(2000 + i32::try_from(digits(year)?).ok()?),
        ),
        [month, day, year] if year.len() == 4 => (
            digits(month)?,
            digits(day)?,
            Some(i32::try_from(digits(year)?).ok()?),
        ),
        _ => return None,
    };
    Some(Token::MonthDay { month, day, year })
}

/// Only ASCII digits, and at most what fits in a `u32`.
fn digits(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Number words become numbers: "five", "twenty five", "forty-five", "twenty first".
fn number_words(tokens: Vec<Token>) -> Vec<Token> {
    let mut result = Vec::with_capacity(tokens.len());
    let mut tokens = tokens.into_iter().peekable();
    while let Some(token) = tokens.next() {
        let Token::Word(text) = &token else {
            result.push(token);
            continue;
        };
        let word_number = |value| Token::Number {
            value,
            padded: false,
            digits: 0,
        };
        if let Some(tens) = tens_named(text) {
            let ones = match tokens.peek() {
                Some(Token::Word(next)) => small_number_named(next)
                    .filter(|ones| (1..=9).contains(ones))
                    .map(|ones| word_number(tens + ones))
                    .or_else(|| {
                        ordinal_named(next)
                            .filter(|ones| (1..=9).contains(ones))
                            .map(|ones| Token::Ordinal {
                                value: tens + ones,
                                numeric: false,
                            })
                    }),
                _ => None,
            };
            match ones {
                Some(combined) => {
                    tokens.next();
                    result.push(combined);
                }
                None => result.push(word_number(tens)),
            }
        } else if let Some(value) = small_number_named(text) {
            result.push(word_number(value));
        } else if let Some(value) = ordinal_named(text) {
            result.push(Token::Ordinal {
                value,
                numeric: false,
            });
        } else {
            result.push(token);
        }
    }
    result
}

fn word(tokens: &[Token], index: usize) -> Option<&str> {
    match tokens.get(index) {
        Some(Token::Word(word)) => Some(word),
        _ => None,
    }
}

fn words_at(tokens: &[Token], index: usize, expected: &[&str]) -> bool {
    expected
        .iter()
        .enumerate()
        .all(|(offset, expected)| word(tokens, index + offset) == Some(expected))
}

/// am or pm at `index`, after an optional "o'clock"; returns where reading goes on.
fn meridiem_at(tokens: &[Token], mut index: usize) -> (Option<Meridiem>, usize) {
    while matches!(word(tokens, index), Some("o" | "clock" | "oclock")) {
        index += 1;
    }
    match tokens.get(index) {
        Some(&Token::Meridiem(meridiem)) => (Some(meridiem), index + 1),
        _ => (None, index),
    }
}

/// An hour after "past" or "to": its value, whether zero-padded, and the index after it.
fn hour_at(tokens: &[Token], index: usize) -> Option<(u32, bool, usize)> {
    match tokens.get(index) {
        Some(&Token::Number { value, padded, .. }) if value <= 23 => {
            Some((value, padded, index + 1))
        }
        _ => None,
    }
}

/// "3 days", "2 hours", "one and a half hours", "an hour and a half", counted `count` times.
fn amount_at(tokens: &[Token], index: usize, count: u32) -> Option<(Amount, usize)> {
    let count = i64::from(count);
    let and_a_half = ["and", "a", "half"];
    if words_at(tokens, index, &and_a_half) && unit_at(tokens, index + 3) == Some(Unit::Hour) {
        return Some((Amount::Minutes(count * 60 + 30), index + 4));
    }
    let after = index + 1;
    Some(match unit_at(tokens, index)? {
        Unit::Minute => (Amount::Minutes(count), after),
        Unit::Hour if words_at(tokens, after, &and_a_half) => {
            (Amount::Minutes(count * 60 + 30), after + 3)
        }
        Unit::Hour => (Amount::Minutes(count * 60), after),
        Unit::Day => (Amount::Days(count.unsigned_abs()), after),
        Unit::Week => (Amount::Days(count.unsigned_abs() * 7), after),
    })
}

fn unit_at(tokens: &[Token], index: usize) -> Option<Unit> {
    word(tokens, index).and_then(unit_named)
}

fn unit_named(word: &str) -> Option<Unit> {
    Some(match word {
        "minute" | "minutes" | "min" | "mins" => Unit::Minute,
        "hour" | "hours" | "hr" | "hrs" | "h" => Unit::Hour,
        "day" | "days" => Unit::Day,
        "week" | "weeks" | "wk" | "wks" => Unit::Week,
        _ => return None,
    })
}

/// A month named at `index`. "may" only beside a day ("May 5", "the 5th of May"), and not as
/// the verb ("at 5 may be better").
fn month_at(tokens: &[Token], index: usize) -> Option<u32> {
    let name = word(tokens, index)?;
    let month = month_named(name)?;
    if name == "may" {
        if matches!(
            word(tokens, index + 1),
            Some("be" | "i" | "we" | "you" | "not")
        ) {
            return None;
        }
        let day_follows = matches!(
            tokens.get(index + 1),
            Some(Token::Number { .. } | Token::Ordinal { .. })
        ) || word(tokens, index + 1) == Some("the");
        let day_precedes = index.checked_sub(1).is_some_and(|previous| {
            matches!(
                tokens.get(previous),
                Some(Token::Number { .. } | Token::Ordinal { .. })
            ) || word(tokens, previous) == Some("of")
        });
        if !(day_follows || day_precedes) {
            return None;
        }
    }
    Some(month)
}

/// A four-digit year at `index`; returns where reading goes on.
fn year_at(tokens: &[Token], index: usize) -> (Option<i32>, usize) {
    match tokens.get(index) {
        Some(&Token::Number {
            value, digits: 4, ..
        }) => match i32::try_from(value) {
            Ok(year) => (Some(year), index + 1),
            Err(_) => (None, index),
        },
        _ => (None, index),
    }
}

/// An ordinal word is a day only beside "the", a month or a weekday: "first thing tomorrow" is
/// not the 1st.
fn ordinal_word_is_a_day(tokens: &[Token], index: usize) -> bool {
    let previous = index.checked_sub(1);
    let names_a_day = |index: usize| {
        month_at(tokens, index).is_some()
            || word(tokens, index).is_some_and(|w| weekday_named(w).is_some())
    };
    previous.is_some_and(|previous| word(tokens, previous) == Some("the") || names_a_day(previous))
        || names_a_day(index + 1)
        || (word(tokens, index + 1) == Some("of") && month_at(tokens, index + 2).is_some())
}

fn past_or_to(word: &str) -> Option<Sign> {
    match word {
        "past" | "after" => Some(Sign::Past),
        "to" | "till" | "til" | "before" => Some(Sign::To),
        _ => None,
    }
}

fn part_named(word: &str, previous: Option<&str>) -> Option<Part> {
    Some(match word {
        "morning" => Part::Morning,
        "noon" | "midday" => Part::Noon,
        "lunch" | "lunchtime" if previous == Some("after") => Part::AfterLunch,
        "lunch" | "lunchtime" => Part::Lunch,
        "afternoon" => Part::Afternoon,
        "evening" => Part::Evening,
        "night" => Part::Night,
        _ => return None,
    })
}

fn weekday_named(word: &str) -> Option<Weekday> {
    Some(match word {
        "monday" | "mon" => Weekday::Mon,
        "tuesday" | "tue" | "tues" => Weekday::Tue,
        "wednesday" | "wed" => Weekday::Wed,
        "thursday" | "thu" | "thur" | "thurs" => Weekday::Thu,
        "friday" | "fri" => Weekday::Fri,
        "saturday" | "sat" => Weekday::Sat,
        "sunday" | "sun" => Weekday::Sun,
        _ => return None,
    })
}

fn month_named(word: &str) -> Option<u32> {
    Some(match word {
        "january" | "jan" => 1,
        "february" | "feb" => 2,
        "march" | "mar" => 3,
        "april" | "apr" => 4,
        "may" => 5,
        "june" | "jun" => 6,
        "july" | "jul" => 7,
        "august" | "aug" => 8,
        "september" | "sep" | "sept" => 9,
        "october" | "oct" => 10,
        "november" | "nov" => 11,
        "december" | "dec" => 12,
        _ => return None,
    })
}

fn small_number_named(word: &str) -> Option<u32> {
    const NAMES: [&str; 20] = [
        "zero",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "thirteen",
        "fourteen",
        "fifteen",
        "sixteen",
        "seventeen",
        "eighteen",
        "nineteen",
    ];
    NAMES
        .iter()
        .position(|name| *name == word)
        .and_then(|value| u32::try_from(value).ok())
}

fn tens_named(word: &str) -> Option<u32> {
    Some(match word {
        "twenty" => 20,
        "thirty" => 30,
        "forty" => 40,
        "fifty" => 50,
        _ => return None,
    })
}

fn ordinal_named(word: &str) -> Option<u32> {
    const NAMES: [&str; 20] = [
        "zeroth",
        "first",
        "second",
        "third",
        "fourth",
        "fifth",
        "sixth",
        "seventh",
        "eighth",
        "ninth",
        "tenth",
        "eleventh",
        "twelfth",
        "thirteenth",
        "fourteenth",
        "fifteenth",
        "sixteenth",
        "seventeenth",
        "eighteenth",
        "nineteenth",
    ];
    match word {
        "twentieth" => Some(20),
        "thirtieth" => Some(30),
        _ => NAMES
            .iter()
            .skip(1)
            .position(|name| *name == word)
            .and_then(|index| u32::try_from(index + 1).ok()),
    }
}

/// How far from the ends of chrono's calendar an instant must be to be read or placed: every
/// zone's wall clock (±26 h), the calling window's two-week search and a DST gap stay inside
/// it. Only absurd phrases ("in 90 million days") or clocks come near.
const CALENDAR_MARGIN: Days = Days::new(32);

fn within_calendar(at: DateTime<Utc>) -> bool {
    at.checked_add_days(CALENDAR_MARGIN).is_some() && at.checked_sub_days(CALENDAR_MARGIN).is_some()
}

/// The next `weekday` after `today`: a week ahead when today is that day.
fn next_weekday(today: NaiveDate, weekday: Weekday) -> NaiveDate {
    let ahead = (7 + weekday.num_days_from_monday() - today.weekday().num_days_from_monday()) % 7;
    let ahead = if ahead == 0 { 7 } else { ahead };
    today + Days::new(u64::from(ahead))
}

/// The instant whose wall-clock time in `tz` is `local`: the first of a repeated hour; for a
/// time in a spring-forward gap, the first instant after the gap.
fn wall_clock(tz: Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(instant) | LocalResult::Ambiguous(instant, _) => {
            Some(instant.with_timezone(&Utc))
        }
        // Transitions happen on whole minutes and our times are whole minutes, so the first
        // valid minute after `local` is the gap's end, whose instant is the transition.
        LocalResult::None => (1..=GAP_SEARCH_MINUTES).find_map(|minutes| {
            let later = local.checked_add_signed(TimeDelta::minutes(minutes))?;
            tz.from_local_datetime(&later)
                .earliest()
                .map(|instant| instant.with_timezone(&Utc))
        }),
    }
}

/// "5 pm", "11 am", "4:30 pm", "noon", "midnight".
fn spoken_time(time: NaiveTime) -> String {
    let (hour, minute) = (time.hour(), time.minute());
    match (hour, minute) {
        (12, 0) => "noon".to_owned(),
        (0, 0) => "midnight".to_owned(),
        _ => {
            let suffix = if hour < 12 { "am" } else { "pm" };
            let hour = match hour % 12 {
                0 => 12,
                hour => hour,
            };
            match minute {
                0 => format!("{hour} {suffix}"),
                _ => format!("{hour}:{minute:02} {suffix}"),
            }
        }
    }
}

/// "1st", "2nd", "3rd", "4th", "11th", "21st".
fn ordinal(day: u32) -> String {
    let suffix = match (day % 10, day % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{day}{suffix}")
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod properties;
