//! What a load test measured: HDR histograms per latency, counters, the gateway's CPU and
//! memory, and the three outputs (a table, a JSON report, an SVG chart).

use std::{collections::BTreeMap, fmt::Write as _, time::Duration};

use hdrhistogram::Histogram;
use serde::Serialize;
use voice_gateway::simulators::plivo_caller::CallReport;

use crate::scenario::Behaviour;

/// Latencies, in microseconds, up to a minute.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// Everything measured so far.
pub struct Measurements {
    pub answer: Histogram<u64>,
    pub first_audio: Histogram<u64>,
    pub turn: Histogram<u64>,
    /// Turn latency minus the fake provider's known share (think time and end-of-turn wait).
    pub gateway_turn: Histogram<u64>,
    pub barge_in: Histogram<u64>,
    pub calls_done: u64,
    pub calls_failed: u64,
    pub playback_gaps: u64,
    pub malformed_frames: u64,
    pub frames: u64,
    pub call_seconds: f64,
    pub outcomes: BTreeMap<String, u64>,
    pub errors: BTreeMap<String, u64>,
    /// (seconds since start, live calls, turn p50 ms, turn p99 ms), once per second.
    pub timeline: Vec<(f64, u64, f64, f64)>,
}

impl Default for Measurements {
    fn default() -> Self {
        Self {
            answer: histogram(),
            first_audio: histogram(),
            turn: histogram(),
            gateway_turn: histogram(),
            barge_in: histogram(),
            calls_done: 0,
            calls_failed: 0,
            playback_gaps: 0,
            malformed_frames: 0,
            frames: 0,
            call_seconds: 0.0,
            outcomes: BTreeMap::new(),
            errors: BTreeMap::new(),
            timeline: Vec::new(),
        }
    }
}

fn micros(duration: Duration) -> u64 {
    (duration.as_micros() as u64).clamp(1, 60_000_000)
}

impl Measurements {
    /// Adds one finished call. `provider_share` is what the fake provider itself takes per turn.
    pub fn add(&mut self, behaviour: Behaviour, report: &CallReport, provider_share: Duration) {
        self.calls_done += 1;
        self.answer.saturating_record(micros(report.answer_latency));
        if let Some(first) = report.first_audio() {
            self.first_audio.saturating_record(micros(first));
        }
        // Turn latency only where the caller waited for the reply (not for barge-ins).
        let turns = if behaviour == Behaviour::BargeIn {
            1
        } else {
            usize::MAX
        };
        for (index, end) in report.speech_ends.iter().enumerate().take(turns) {
            let next_start = report
                .speech_starts
                .get(index + 1)
                .copied()
                .unwrap_or(Duration::MAX);
            if let Some(reply) = report
                .first_frame_after(*end)
                .filter(|reply| *reply < next_start)
            {
                let latency = reply - *end;
                self.turn.saturating_record(micros(latency));
                self.gateway_turn
                    .saturating_record(micros(latency.saturating_sub(provider_share)));
            }
        }
        if behaviour == Behaviour::BargeIn {
            // The first speech answers the greeting; every later one talks over a reply.
            for start in report.speech_starts.iter().skip(1) {
                if let Some(clear) = report.clears.iter().find(|clear| **clear >= *start) {
                    self.barge_in.saturating_record(micros(*clear - *start));
                }
            }
        }
        self.playback_gaps += u64::from(report.playback_gaps);
        self.malformed_frames += u64::from(report.malformed);
        self.frames += report.frames.len() as u64;
        self.call_seconds += report.duration.as_secs_f64();
        let outcome = if report.closed_by_gateway {
            "ended_by_gateway"
        } else {
            "caller_hung_up"
        };
        *self
            .outcomes
            .entry(format!("{}:{outcome}", behaviour.name()))
            .or_default() += 1;
    }

    pub fn fail(&mut self, error: &str) {
        self.calls_failed += 1;
        let key: String = error.chars().take(80).collect();
        *self.errors.entry(key).or_default() += 1;
    }
}

/// Percentiles of one histogram, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Percentiles {
    pub fn of(histogram: &Histogram<u64>) -> Self {
        let ms = |quantile: f64| histogram.value_at_quantile(quantile) as f64 / 1000.0;
        Self {
            count: histogram.len(),
            p50_ms: ms(0.5),
            p90_ms: ms(0.9),
            p99_ms: ms(0.99),
            max_ms: histogram.max() as f64 / 1000.0,
        }
    }
}

/// The machine-readable report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The provider the calls ran on (its fake).
    pub provider: crate::environment::ProviderKind,
    pub calls_planned: usize,
    pub calls_done: u64,
    pub calls_failed: u64,
    pub peak_live_calls: u64,
    pub wall_seconds: f64,
    pub call_seconds: f64,
    pub answer_webhook: Percentiles,
    pub first_greeting_audio: Percentiles,
    pub turn: Percentiles,
    pub gateway_turn: Percentiles,
    pub barge_in_clear: Percentiles,
    pub playback_gaps: u64,
    pub malformed_frames: u64,
    pub frames_received: u64,
    pub provider_share_ms: f64,
    pub gateway_cpu_seconds: Option<f64>,
    pub gateway_cpu_per_call_second: Option<f64>,
    pub gateway_idle_rss_bytes: Option<u64>,
    pub gateway_peak_rss_bytes: Option<u64>,
    pub gateway_bytes_per_live_call: Option<f64>,
    pub outcomes: BTreeMap<String, u64>,
    pub errors: BTreeMap<String, u64>,
    pub timeline: Vec<(f64, u64, f64, f64)>,
    /// Whether the run recorded its calls (`--record`).
    pub recording: bool,
    /// Calls closed, recorded and still open when the run ended.
    pub recorded_calls: Option<voice_gateway::db::recordings::RecordedCalls>,
    /// The `--chaos` audit, when faults were injected.
    pub chaos: Option<crate::chaos::ChaosReport>,
}

impl Report {
    /// The final table, for humans.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "calls on {:?}: {} done, {} failed of {} planned; peak {} live; {:.0} s",
            self.provider,
            self.calls_done,
            self.calls_failed,
            self.calls_planned,
            self.peak_live_calls,
            self.wall_seconds
        );
        let _ = writeln!(
            out,
            "recording: {}; calls recorded: {}",
            if self.recording { "on" } else { "off" },
            self.recorded_calls.map_or_else(
                || "unknown".to_owned(),
                |calls| format!(
                    "{} of {} closed ({} still open when counted)",
                    calls.recorded, calls.closed, calls.open
                )
            )
        );
        let _ = writeln!(
            out,
            "{:<24} {:>8} {:>10} {:>10} {:>10} {:>10}",
            "latency", "count", "p50 ms", "p90 ms", "p99 ms", "max ms"
        );
        for (name, p) in [
            ("answer webhook", &self.answer_webhook),
            ("first greeting audio", &self.first_greeting_audio),
            ("turn (total)", &self.turn),
            ("turn (gateway share)", &self.gateway_turn),
            ("barge-in → clearAudio", &self.barge_in_clear),
        ] {
            let _ = writeln!(
                out,
                "{name:<24} {:>8} {:>10.1} {:>10.1} {:>10.1} {:>10.1}",
                p.count, p.p50_ms, p.p90_ms, p.p99_ms, p.max_ms
            );
        }
        let _ = writeln!(
            out,
            "playback gaps: {}   malformed frames: {}   frames received: {}",
            self.playback_gaps, self.malformed_frames, self.frames_received
        );
        if let (Some(cpu), Some(per)) = (self.gateway_cpu_seconds, self.gateway_cpu_per_call_second)
        {
            let _ = writeln!(
                out,
                "gateway CPU: {cpu:.1} s, {:.3} ms per call-second",
                per * 1000.0
            );
        }
        if let (Some(idle), Some(peak), Some(per)) = (
            self.gateway_idle_rss_bytes,
            self.gateway_peak_rss_bytes,
            self.gateway_bytes_per_live_call,
        ) {
            let _ = writeln!(
                out,
                "gateway memory: idle {:.1} MiB, peak {:.1} MiB, {:.1} KiB per live call",
                idle as f64 / 1048576.0,
                peak as f64 / 1048576.0,
                per / 1024.0
            );
        }
        for (error, count) in &self.errors {
            let _ = writeln!(out, "error ×{count}: {error}");
        }
        out
    }

    /// An SVG chart: latency percentiles (bars) and live calls over time (line).
    pub fn svg(&self) -> String {
        let (width, height) = (900.0, 420.0);
        let mut svg = format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">"#
        );
        svg.push_str(r##"<rect width="100%" height="100%" fill="#fff"/>"##);
        svg.push_str(r#"<text x="20" y="24" font-size="15">voice-gateway load test: latency percentiles (ms)</text>"#);
        let rows = [
            ("answer", &self.answer_webhook),
            ("first audio", &self.first_greeting_audio),
            ("turn", &self.turn),
            ("turn (gateway)", &self.gateway_turn),
            ("barge-in clear", &self.barge_in_clear),
        ];
        let max = rows.iter().map(|(_, p)| p.p99_ms).fold(1.0_f64, f64::max);
        for (index, (name, p)) in rows.iter().enumerate() {
            let y = 44.0 + index as f64 * 30.0;
            let _ = write!(svg, r#"<text x="20" y="{}">{name}</text>"#, y + 14.0);
            for (value, color, offset) in [(p.p50_ms, "#4c78a8", 0.0), (p.p99_ms, "#f58518", 10.0)]
            {
                let bar = 560.0 * value / max;
                let _ = write!(
                    svg,
                    r#"<rect x="140" y="{}" width="{bar:.1}" height="9" fill="{color}"/>"#,
                    y + offset
                );
            }
            let _ = write!(
                svg,
                r#"<text x="{:.1}" y="{}">p50 {:.1} / p99 {:.1}</text>"#,
                150.0 + 560.0 * p.p99_ms / max,
                y + 14.0,
                p.p50_ms,
                p.p99_ms
            );
        }
        // Live calls over time.
        let top = 220.0;
        let chart_height = 170.0;
        svg.push_str(&format!(
            r#"<text x="20" y="{}" font-size="15">live calls over time</text>"#,
            top - 6.0
        ));
        let peak = self
            .timeline
            .iter()
            .map(|(_, live, _, _)| *live)
            .max()
            .unwrap_or(1)
            .max(1) as f64;
        let end = self
            .timeline
            .last()
            .map(|(t, _, _, _)| *t)
            .unwrap_or(1.0)
            .max(1.0);
        let points: Vec<String> = self
            .timeline
            .iter()
            .map(|(t, live, _, _)| {
                format!(
                    "{:.1},{:.1}",
                    40.0 + 820.0 * t / end,
                    top + chart_height - chart_height * *live as f64 / peak
                )
            })
            .collect();
        let _ = write!(
            svg,
            r##"<polyline fill="none" stroke="#54a24b" stroke-width="2" points="{}"/>"##,
            points.join(" ")
        );
        let _ = write!(
            svg,
            r#"<text x="40" y="{}">0 s</text><text x="820" y="{}">{end:.0} s</text><text x="40" y="{}">peak {peak:.0}</text>"#,
            top + chart_height + 16.0,
            top + chart_height + 16.0,
            top + 12.0
        );
        svg.push_str("</svg>");
        svg
    }
}
