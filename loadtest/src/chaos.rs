//! `--chaos`: faults injected into the local environment during the run, and the audit of
//! what the database holds afterwards.
//!
//! - `db-outage=SECONDS@AT`: the load test's own PostgreSQL stops AT seconds into the run and
//!   starts again SECONDS later, on the same port.
//! - `kill-gateway@AT`: the gateway is SIGKILLed AT seconds in and started again at once with
//!   the same settings (address, data directory, server name), as a supervisor would.
//!
//! After the run (once the gateway's spool is empty and no row is open, or a deadline) the
//! audit reads the database: calls placed (their stream started) without a row, rows left
//! open, the campaign's `total_calls` against its rows (a double count shows as a
//! difference), and `call_events` rows against the events the gateway handed to its writer
//! (from its `/metrics`; exact when the gateway was not killed, since a kill loses the events
//! still in memory and the counters of the process that died).

use std::{fmt::Write as _, time::Duration};

use serde::Serialize;
use voice_gateway::db::seed::LoadTestAudit;

/// One fault of the run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    DbOutage { at: Duration, length: Duration },
    KillGateway { at: Duration },
}

impl Fault {
    /// Parses `db-outage=SECONDS@AT` or `kill-gateway@AT` (seconds, decimals allowed).
    pub fn parse(spec: &str) -> Result<Self, String> {
        let seconds = |text: &str, what: &str| {
            text.parse::<f64>()
                .ok()
                .filter(|value| value.is_finite() && (0.0..=3600.0).contains(value))
                .map(Duration::from_secs_f64)
                .ok_or_else(|| format!("{what} in `{spec}` must be seconds from 0 to 3600"))
        };
        if let Some(rest) = spec.strip_prefix("db-outage=") {
            let (length, at) = rest
                .split_once('@')
                .ok_or_else(|| format!("`{spec}`: expected db-outage=SECONDS@AT"))?;
            let length = seconds(length, "the outage's length")?;
            if length.is_zero() {
                return Err(format!("`{spec}`: an outage lasts more than 0 s"));
            }
            return Ok(Self::DbOutage {
                at: seconds(at, "the outage's start")?,
                length,
            });
        }
        if let Some(at) = spec.strip_prefix("kill-gateway@") {
            return Ok(Self::KillGateway {
                at: seconds(at, "the kill's time")?,
            });
        }
        Err(format!(
            "unknown fault `{spec}`: expected db-outage=SECONDS@AT or kill-gateway@AT"
        ))
    }

    pub fn at(&self) -> Duration {
        match self {
            Self::DbOutage { at, .. } | Self::KillGateway { at } => *at,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Self::DbOutage { at, length } => format!(
                "database stopped at {:.0} s for {:.0} s",
                at.as_secs_f64(),
                length.as_secs_f64()
            ),
            Self::KillGateway { at } => {
                format!(
                    "gateway SIGKILLed at {:.0} s and restarted",
                    at.as_secs_f64()
                )
            }
        }
    }
}

/// The gateway's own counters about its call writes, summed over every label.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct WriteCounters {
    /// Events handed to the call writers.
    pub events: u64,
    /// Writes kept in the spool.
    pub spooled: u64,
    /// Spooled writes applied by the replayer.
    pub replayed: u64,
    /// Writes lost (given up, or taken by neither the database nor the spool).
    pub lost: u64,
    /// Sealed spool files still waiting.
    pub pending_files: u64,
}

impl WriteCounters {
    /// Reads them from a Prometheus exposition.
    pub fn from_exposition(text: &str) -> Self {
        let sum = |name: &str| -> u64 {
            text.lines()
                .filter(|line| !line.starts_with('#'))
                .filter_map(|line| {
                    let (metric, value) = line.rsplit_once(' ')?;
                    let bare = metric.split('{').next()?;
                    (bare == name).then(|| value.trim().parse::<f64>().ok())?
                })
                .sum::<f64>() as u64
        };
        let events = text
            .lines()
            .filter(|line| {
                line.starts_with("vg_call_writes_total{") && line.contains("kind=\"event\"")
            })
            .filter_map(|line| line.rsplit_once(' ')?.1.trim().parse::<f64>().ok())
            .sum::<f64>() as u64;
        Self {
            events,
            spooled: sum("vg_spool_writes_total"),
            replayed: sum("vg_spool_replayed_total"),
            lost: sum("vg_db_write_failures_total"),
            pending_files: sum("vg_spool_pending_files"),
        }
    }

    /// Adds a dead process's last counters to the living one's.
    pub fn plus(self, other: Self) -> Self {
        Self {
            events: self.events + other.events,
            spooled: self.spooled + other.spooled,
            replayed: self.replayed + other.replayed,
            lost: self.lost + other.lost,
            pending_files: other.pending_files,
        }
    }
}

/// What the audit found.
#[derive(Debug, Clone, Serialize)]
pub struct ChaosReport {
    pub faults: Vec<String>,
    pub calls_placed: u64,
    pub rows: i64,
    pub calls_without_row: i64,
    pub rows_open: i64,
    pub total_calls_counter: i64,
    /// `total_calls` minus rows: a double count is positive, a missed count negative.
    pub counter_difference: i64,
    pub events_in_database: i64,
    /// Events the gateway handed to its writers (its `/metrics`, summed over its lives).
    pub events_handed_over: u64,
    /// `None` when a kill makes the figure inexact (see the module's doc).
    pub events_lost: Option<i64>,
    pub writes_spooled: u64,
    pub writes_replayed: u64,
    pub writes_lost: u64,
    pub spool_files_left: u64,
    pub seconds_to_settle: f64,
}

impl ChaosReport {
    pub fn new(
        faults: &[Fault],
        calls_placed: u64,
        audit: LoadTestAudit,
        writes: WriteCounters,
        settle: Duration,
    ) -> Self {
        let killed = faults
            .iter()
            .any(|fault| matches!(fault, Fault::KillGateway { .. }));
        Self {
            faults: faults.iter().map(Fault::describe).collect(),
            calls_placed,
            rows: audit.rows,
            calls_without_row: audit.calls_without_row,
            rows_open: audit.rows_open,
            total_calls_counter: audit.total_calls,
            counter_difference: audit.total_calls - audit.rows,
            events_in_database: audit.events,
            events_handed_over: writes.events,
            events_lost: (!killed).then(|| writes.events as i64 - audit.events),
            writes_spooled: writes.spooled,
            writes_replayed: writes.replayed,
            writes_lost: writes.lost,
            spool_files_left: writes.pending_files,
            seconds_to_settle: settle.as_secs_f64(),
        }
    }

    /// What broke the promise: nothing, when the list is empty.
    pub fn violations(&self) -> Vec<String> {
        let mut broken = Vec::new();
        if self.calls_without_row != 0 {
            broken.push(format!("{} calls without a row", self.calls_without_row));
        }
        if self.rows_open != 0 {
            broken.push(format!("{} rows left open", self.rows_open));
        }
        if self.counter_difference != 0 {
            broken.push(format!(
                "total_calls is off by {} from the rows",
                self.counter_difference
            ));
        }
        if let Some(lost) = self.events_lost
            && lost != 0
        {
            broken.push(format!("{lost} events lost"));
        }
        let killed = self.events_lost.is_none();
        if (killed && self.writes_replayed < self.writes_spooled)
            || (!killed && self.writes_replayed != self.writes_spooled)
        {
            broken.push(format!(
                "{} writes spooled but {} replayed",
                self.writes_spooled, self.writes_replayed
            ));
        }
        if self.writes_lost != 0 {
            broken.push(format!("{} call writes lost", self.writes_lost));
        }
        if self.spool_files_left != 0 {
            broken.push(format!(
                "{} spool files not replayed",
                self.spool_files_left
            ));
        }
        broken
    }

    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "chaos: {}", self.faults.join("; "));
        let events_lost = self
            .events_lost
            .map_or_else(|| "n/a (killed)".to_owned(), |lost| lost.to_string());
        for (name, value) in [
            ("calls placed", self.calls_placed.to_string()),
            ("call_logs rows", self.rows.to_string()),
            ("calls without a row", self.calls_without_row.to_string()),
            ("rows left open", self.rows_open.to_string()),
            ("total_calls − rows", self.counter_difference.to_string()),
            (
                "events in the database",
                self.events_in_database.to_string(),
            ),
            ("events handed over", self.events_handed_over.to_string()),
            ("events lost", events_lost),
            ("writes spooled", self.writes_spooled.to_string()),
            ("spooled writes replayed", self.writes_replayed.to_string()),
            ("writes lost", self.writes_lost.to_string()),
            (
                "settled after (s)",
                format!("{:.1}", self.seconds_to_settle),
            ),
        ] {
            let _ = writeln!(out, "  {name:<26} {value:>10}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_parse_and_bad_ones_say_why() {
        assert_eq!(
            Fault::parse("db-outage=30@10"),
            Ok(Fault::DbOutage {
                at: Duration::from_secs(10),
                length: Duration::from_secs(30)
            })
        );
        assert_eq!(
            Fault::parse("kill-gateway@12.5"),
            Ok(Fault::KillGateway {
                at: Duration::from_millis(12_500)
            })
        );
        for bad in [
            "db-outage=30",
            "db-outage=0@10",
            "db-outage=x@1",
            "kill-gateway@-1",
            "kill-gateway",
            "flood@3",
        ] {
            assert!(Fault::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn counters_are_read_from_the_exposition_and_summed_over_labels() {
        let text = "# TYPE vg_call_writes_total counter\n\
            vg_call_writes_total{kind=\"event\"} 40\n\
            vg_call_writes_total{kind=\"open\"} 5\n\
            vg_spool_writes_total{kind=\"event\"} 7\n\
            vg_spool_writes_total{kind=\"close\"} 2\n\
            vg_spool_replayed_total 9\n\
            vg_spool_pending_files 0\n";
        assert_eq!(
            WriteCounters::from_exposition(text),
            WriteCounters {
                events: 40,
                spooled: 9,
                replayed: 9,
                lost: 0,
                pending_files: 0
            }
        );
    }

    #[test]
    fn the_report_names_every_broken_promise() {
        let audit = LoadTestAudit {
            rows: 10,
            rows_open: 1,
            calls_without_row: 2,
            total_calls: 11,
            events: 30,
        };
        let writes = WriteCounters {
            events: 31,
            ..WriteCounters::default()
        };
        let faults = [Fault::DbOutage {
            at: Duration::from_secs(1),
            length: Duration::from_secs(2),
        }];
        let report = ChaosReport::new(&faults, 12, audit, writes, Duration::ZERO);
        assert_eq!(report.violations().len(), 4, "{:?}", report.violations());
        let clean = ChaosReport::new(
            &faults,
            10,
            LoadTestAudit {
                rows_open: 0,
                calls_without_row: 0,
                total_calls: 10,
                ..audit
            },
            WriteCounters {
                events: 30,
                ..writes
            },
            Duration::ZERO,
        );
        assert!(clean.violations().is_empty(), "{:?}", clean.violations());
    }
}
