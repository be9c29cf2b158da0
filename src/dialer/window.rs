//! The campaign's calling window (pure): is `now` inside it on the callee's wall clock, and
//! when does it next open.
//!
//! The rule is the wall clock's, in the lead's timezone (the campaign's when the lead has none
//! or an unknown one): a call is placed only when the local time is in `[start, end)`, on one
//! of the campaign's ISO weekdays, and the local date is within `[starts_on, ends_on]`. DST
//! follows from that: 09:00 is 09:00 local on either side of a change. A window edge that falls
//! in a spring-forward gap opens (or closes) at the first instant after the gap; one that falls
//! in a repeated hour uses its first occurrence.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

/// How many days ahead [`CallingWindow::next_opening`] looks (past `starts_on`): every week
/// has a calling day, so two weeks always find one.
const SEARCH_DAYS: i64 = 15;
/// DST gaps are at most a few hours; an edge in one is searched this far, minute by minute.
const GAP_SEARCH_MINUTES: i64 = 6 * 60;

/// A campaign's calling window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallingWindow {
    pub start: NaiveTime,
    pub end: NaiveTime,
    /// ISO weekdays, 1 = Monday … 7 = Sunday.
    pub days: Vec<u32>,
    pub starts_on: Option<NaiveDate>,
    pub ends_on: Option<NaiveDate>,
}

/// Where the window stands at an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opening {
    /// Inside the window: call now.
    Now,
    /// Closed; it opens at this instant.
    At(DateTime<Utc>),
    /// Closed for good: the campaign's end date has passed.
    Never,
}

/// The timezone a lead is called in, and whether a configured name had to be skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResolvedZone {
    pub tz: Tz,
    /// A name that was set but is not a known timezone (to be logged by the caller).
    pub rejected: Option<RejectedZone>,
}

/// Which configured timezone name was not understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectedZone {
    Lead,
    Campaign,
}

/// The lead's timezone when it has a valid one, else the campaign's, else UTC. An unknown name
/// never stops a call from being scheduled: it falls back, and the caller logs it.
pub fn resolve_zone(lead: Option<&str>, campaign: &str) -> ResolvedZone {
    let parse = |name: &str| name.trim().parse::<Tz>().ok();
    let lead = lead.map(str::trim).filter(|name| !name.is_empty());
    let mut rejected = None;
    if let Some(name) = lead {
        match parse(name) {
            Some(tz) => return ResolvedZone { tz, rejected },
            None => rejected = Some(RejectedZone::Lead),
        }
    }
    match parse(campaign) {
        Some(tz) => ResolvedZone { tz, rejected },
        None => ResolvedZone {
            tz: Tz::UTC,
            rejected: rejected.or(Some(RejectedZone::Campaign)),
        },
    }
}

impl CallingWindow {
    /// The window as the `campaigns` columns store it (weekdays as `smallint[]`).
    pub fn from_columns(
        start: NaiveTime,
        end: NaiveTime,
        days: &[i16],
        starts_on: Option<NaiveDate>,
        ends_on: Option<NaiveDate>,
    ) -> Self {
        Self {
            start,
            end,
            days: days
                .iter()
                .filter_map(|day| u32::try_from(*day).ok())
                .collect(),
            starts_on,
            ends_on,
        }
    }

    /// Every day, all day: for a call whose campaign has no window to honour.
    pub fn always() -> Self {
        Self {
            start: NaiveTime::MIN,
            end: NaiveTime::from_hms_milli_opt(23, 59, 59, 999).expect("a valid time"),
            days: (1..=7).collect(),
            starts_on: None,
            ends_on: None,
        }
    }

    /// Whether `now` is inside the window in `tz`.
    pub fn is_open(&self, tz: Tz, now: DateTime<Utc>) -> bool {
        let local = now.with_timezone(&tz).naive_local();
        self.date_allowed(local.date()) && local.time() >= self.start && local.time() < self.end
    }

    /// `Now` inside the window, else the first instant after `now` at which it opens, or
    /// `Never` once `ends_on` has passed.
    pub fn next_opening(&self, tz: Tz, now: DateTime<Utc>) -> Opening {
        if self.is_open(tz, now) {
            return Opening::Now;
        }
        let today = now.with_timezone(&tz).date_naive();
        if self.ends_on.is_some_and(|ends_on| today > ends_on) {
            return Opening::Never;
        }
        let first = match self.starts_on {
            Some(starts_on) if starts_on > today => starts_on,
            _ => today,
        };
        for offset in 0..SEARCH_DAYS {
            let date = first + Duration::days(offset);
            if self.ends_on.is_some_and(|ends_on| date > ends_on) {
                return Opening::Never;
            }
            if !self.date_allowed(date) {
                continue;
            }
            // Both occurrences of a repeated start time are candidates: after the first one's
            // window has passed, the wall clock may enter the window again.
            for opening in instants_at(tz, date.and_time(self.start)) {
                if opening > now && self.is_open(tz, opening) {
                    return Opening::At(opening);
                }
            }
        }
        Opening::Never
    }

    fn date_allowed(&self, date: NaiveDate) -> bool {
        self.days.contains(&date.weekday().number_from_monday())
            && self.starts_on.is_none_or(|starts_on| date >= starts_on)
            && self.ends_on.is_none_or(|ends_on| date <= ends_on)
    }
}

/// The instants whose wall-clock time in `tz` is `local`, earliest first; for a time in a
/// spring-forward gap, the first instant after the gap (the wall clock's first time ≥ `local`).
fn instants_at(tz: Tz, local: NaiveDateTime) -> Vec<DateTime<Utc>> {
    use chrono::LocalResult;
    match tz.from_local_datetime(&local) {
        LocalResult::Single(instant) => vec![instant.with_timezone(&Utc)],
        LocalResult::Ambiguous(first, second) => {
            vec![first.with_timezone(&Utc), second.with_timezone(&Utc)]
        }
        LocalResult::None => {
            // Transitions happen on whole minutes: the first valid minute is the gap's end,
            // whose instant is the transition itself.
            let floor = local
                .date()
                .and_hms_opt(
                    chrono::Timelike::hour(&local),
                    chrono::Timelike::minute(&local),
                    0,
                )
                .unwrap_or(local);
            (1..=GAP_SEARCH_MINUTES)
                .find_map(|minutes| {
                    tz.from_local_datetime(&(floor + Duration::minutes(minutes)))
                        .earliest()
                })
                .map(|instant| instant.with_timezone(&Utc))
                .into_iter()
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn time(text: &str) -> NaiveTime {
        NaiveTime::parse_from_str(text, "%H:%M").unwrap()
    }

    fn weekdays(start: &str, end: &str) -> CallingWindow {
        CallingWindow {
            start: time(start),
            end: time(end),
            days: vec![1, 2, 3, 4, 5, 6, 7],
            starts_on: None,
            ends_on: None,
        }
    }

    const NEW_YORK: Tz = chrono_tz::America::New_York;

    #[test]
    fn nine_to_five_in_new_york_follows_the_spring_change() {
        // 2026-03-08: clocks go from 02:00 EST to 03:00 EDT. 09:00 local is 14:00 UTC the day
        // before and 13:00 UTC that day.
        let window = weekdays("09:00", "17:00");
        assert!(!window.is_open(NEW_YORK, utc("2026-03-07T13:59:59Z")));
        assert!(window.is_open(NEW_YORK, utc("2026-03-07T14:00:00Z")));
        assert!(!window.is_open(NEW_YORK, utc("2026-03-08T12:59:59Z")));
        assert!(window.is_open(NEW_YORK, utc("2026-03-08T13:00:00Z")));
        assert!(window.is_open(NEW_YORK, utc("2026-03-08T20:59:59Z")));
        assert!(!window.is_open(NEW_YORK, utc("2026-03-08T21:00:00Z")));
        // After the window on the 7th, it next opens at 09:00 EDT on the 8th.
        assert_eq!(
            window.next_opening(NEW_YORK, utc("2026-03-07T23:00:00Z")),
            Opening::At(utc("2026-03-08T13:00:00Z"))
        );
    }

    #[test]
    fn nine_to_five_in_new_york_follows_the_autumn_change() {
        // 2026-11-01: clocks go from 02:00 EDT back to 01:00 EST.
        let window = weekdays("09:00", "17:00");
        assert_eq!(
            window.next_opening(NEW_YORK, utc("2026-10-31T22:00:00Z")),
            Opening::At(utc("2026-11-01T14:00:00Z"))
        );
        assert!(!window.is_open(NEW_YORK, utc("2026-11-01T13:59:59Z")));
        assert!(window.is_open(NEW_YORK, utc("2026-11-01T21:59:59Z")));
        assert!(!window.is_open(NEW_YORK, utc("2026-11-01T22:00:00Z")));
    }

    #[test]
    fn a_start_inside_the_spring_gap_opens_when_the_gap_ends() {
        // 02:30 does not exist on 2026-03-08 in New York: the first wall time after it is
        // 03:00 EDT = 07:00 UTC, the transition instant itself.
        let window = weekdays("02:30", "05:00");
        let opening = window.next_opening(NEW_YORK, utc("2026-03-08T05:00:00Z"));
        assert_eq!(opening, Opening::At(utc("2026-03-08T07:00:00Z")));
        assert!(window.is_open(NEW_YORK, utc("2026-03-08T07:00:00Z")));
        assert!(!window.is_open(NEW_YORK, utc("2026-03-08T06:59:59Z")));
    }

    #[test]
    fn an_end_inside_the_spring_gap_closes_when_the_gap_begins() {
        // Window 01:00–02:30: the wall clock jumps from 01:59:59 to 03:00, past the end.
        let window = weekdays("01:00", "02:30");
        assert!(window.is_open(NEW_YORK, utc("2026-03-08T06:59:59Z")));
        assert!(!window.is_open(NEW_YORK, utc("2026-03-08T07:00:00Z")));
    }

    #[test]
    fn a_start_in_the_repeated_hour_opens_at_its_first_occurrence_and_again_at_its_second() {
        // 01:30 happens twice on 2026-11-01 in New York: 05:30 UTC (EDT) and 06:30 UTC (EST).
        let window = weekdays("01:30", "01:45");
        assert_eq!(
            window.next_opening(NEW_YORK, utc("2026-11-01T04:00:00Z")),
            Opening::At(utc("2026-11-01T05:30:00Z"))
        );
        assert_eq!(
            window.next_opening(NEW_YORK, utc("2026-11-01T05:50:00Z")),
            Opening::At(utc("2026-11-01T06:30:00Z"))
        );
    }

    #[test]
    fn the_same_instant_is_inside_for_one_lead_and_outside_for_another() {
        let window = weekdays("09:00", "17:00");
        let now = utc("2026-06-15T14:00:00Z"); // 10:00 in New York, 23:00 in Tokyo.
        assert!(window.is_open(NEW_YORK, now));
        let tokyo = chrono_tz::Asia::Tokyo;
        assert!(!window.is_open(tokyo, now));
        assert_eq!(
            window.next_opening(tokyo, now),
            Opening::At(utc("2026-06-16T00:00:00Z"))
        );
        // Kolkata is +05:30: 09:00 IST is 03:30 UTC.
        assert_eq!(
            window.next_opening(chrono_tz::Asia::Kolkata, now),
            Opening::At(utc("2026-06-16T03:30:00Z"))
        );
    }

    #[test]
    fn calling_days_and_dates_are_local() {
        // Weekdays only; Friday 2026-06-19 17:30 in New York → Monday 09:00.
        let mut window = weekdays("09:00", "17:00");
        window.days = vec![1, 2, 3, 4, 5];
        assert_eq!(
            window.next_opening(NEW_YORK, utc("2026-06-19T21:30:00Z")),
            Opening::At(utc("2026-06-22T13:00:00Z"))
        );
        // Saturday 01:00 UTC is still Friday evening in New York: not a weekend yet, but the
        // window is over for the day.
        assert!(!window.is_open(NEW_YORK, utc("2026-06-20T01:00:00Z")));
        // A start date in the future: the first day on or after it.
        window.starts_on = NaiveDate::from_ymd_opt(2026, 7, 1);
        assert_eq!(
            window.next_opening(NEW_YORK, utc("2026-06-15T14:00:00Z")),
            Opening::At(utc("2026-07-01T13:00:00Z"))
        );
        // An end date that has passed, or that a search runs into: never.
        window.starts_on = None;
        window.ends_on = NaiveDate::from_ymd_opt(2026, 6, 19);
        assert_eq!(
            window.next_opening(NEW_YORK, utc("2026-06-19T21:30:00Z")),
            Opening::Never
        );
        assert!(window.is_open(NEW_YORK, utc("2026-06-19T20:59:59Z")));
        assert_eq!(
            window.next_opening(NEW_YORK, utc("2026-06-21T14:00:00Z")),
            Opening::Never
        );
    }

    #[test]
    fn unknown_zones_fall_back_and_say_so() {
        let zone = resolve_zone(Some("Asia/Tokyo"), "America/New_York");
        assert_eq!(zone.tz, chrono_tz::Asia::Tokyo);
        assert_eq!(zone.rejected, None);
        let zone = resolve_zone(None, "America/New_York");
        assert_eq!((zone.tz, zone.rejected), (NEW_YORK, None));
        let zone = resolve_zone(Some("  "), "America/New_York");
        assert_eq!((zone.tz, zone.rejected), (NEW_YORK, None));
        let zone = resolve_zone(Some("Mars/Olympus_Mons"), "America/New_York");
        assert_eq!(
            (zone.tz, zone.rejected),
            (NEW_YORK, Some(RejectedZone::Lead))
        );
        let zone = resolve_zone(None, "Eastern Standard Time");
        assert_eq!(
            (zone.tz, zone.rejected),
            (Tz::UTC, Some(RejectedZone::Campaign))
        );
    }
}
