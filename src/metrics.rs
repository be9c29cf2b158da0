//! Prometheus metrics: the recorder, the metric names, and the `/metrics` text.
//!
//! Labels only ever come from closed enums (end reasons, routes), never from ids or phone
//! numbers, so their cardinality stays bounded.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Gauge: 1 while this gateway is draining (SIGTERM received), else 0.
pub const DRAINING: &str = "vg_draining";
/// Gauge: calls this gateway holds right now.
pub const LIVE_CALLS: &str = "vg_live_calls";
/// Counter: failed heartbeats of this server's `websocket_servers` row.
pub const HEARTBEAT_FAILURES: &str = "vg_heartbeat_failures_total";
/// Counter: calls a gateway that was gone left open, closed as `gateway_restart` (by its own
/// restart or by this gateway's heartbeat).
pub const CALLS_CLOSED_AFTER_RESTART: &str = "vg_calls_closed_gateway_restart_total";
/// Counter: calls whose carrier socket took no writes for the write timeout (a stalled peer).
pub const CARRIER_WRITE_TIMEOUTS: &str = "vg_carrier_write_timeouts_total";

/// Counter: media WebSockets refused before the call, by `reason` (`full`, `duplicate`,
/// `replayed`, `database`).
pub const STREAMS_REFUSED: &str = "vg_streams_refused_total";
/// Counter: answers that found no gateway with room (all full, stale or inactive) and
/// streamed to the gateway that answered.
pub const NO_STREAM_SERVER: &str = "vg_answers_without_server_total";
/// Counter: bytes of agent audio dropped because a call's unplayed audio was at its cap.
pub const AGENT_AUDIO_DROPPED_BYTES: &str = "vg_agent_audio_dropped_bytes_total";
/// Counter: provider sessions reopened mid-call (OpenAI's `session_expired`).
pub const PROVIDER_RECONNECTS: &str = "vg_provider_reconnects_total";

/// Counter: calls whose stream started here.
pub const CALLS_STARTED: &str = "vg_calls_started_total";
/// Counter: calls ended, by `reason` (an end reason).
pub const CALLS_ENDED: &str = "vg_calls_ended_total";
/// Counter: caller media frames received.
pub const FRAMES_IN: &str = "vg_frames_in_total";
/// Counter: agent frames sent to the carrier.
pub const FRAMES_OUT: &str = "vg_frames_out_total";
/// Counter: carrier frames refused, by `reason` (`payload`, `malformed`, `before_start`,
/// `flood`: above the message-rate ceiling, `too_big`: over the message size limit).
pub const FRAMES_REJECTED: &str = "vg_frames_rejected_total";
/// Counter: carrier events of unknown type, ignored.
pub const UNKNOWN_EVENTS: &str = "vg_unknown_events_total";
/// Counter: playback underruns (a response's audio ran dry while it played).
pub const UNDERRUNS: &str = "vg_playback_underruns_total";
/// Counter: provider failures that ended a call.
pub const PROVIDER_FAILURES: &str = "vg_provider_failures_total";
/// Histogram: seconds from the stream start to the first agent frame.
pub const FIRST_AUDIO_SECONDS: &str = "vg_provider_first_audio_seconds";
/// Histogram: seconds from the barge-in decision to `clearAudio` written.
pub const BARGE_IN_SECONDS: &str = "vg_barge_in_clear_seconds";
/// Histogram: seconds to process one caller frame (parse, decode, forward).
pub const FRAME_IN_SECONDS: &str = "vg_frame_in_processing_seconds";
/// Counter: call writes retried because the database was unreachable.
pub const DB_WRITE_RETRIES: &str = "vg_db_write_retries_total";
/// Counter: call writes lost: given up after their retry budget, refused by the database
/// for good, or taken by neither the database nor the spool.
pub const DB_WRITE_FAILURES: &str = "vg_db_write_failures_total";
/// Gauge: 1 for each AI provider a call can run on here, by `provider` (0 for the others).
pub const AI_PROVIDER_CONFIGURED: &str = "vg_ai_provider_configured";
/// Counter: call writes handed to the call's writer, by `kind` (open, event, close...).
pub const CALL_WRITES: &str = "vg_call_writes_total";
/// Counter: call writes kept in the spool because the database could not take them, by `kind`.
pub const SPOOL_WRITES: &str = "vg_spool_writes_total";
/// Counter: spooled call writes applied to the database by the replayer.
pub const SPOOL_REPLAYED: &str = "vg_spool_replayed_total";
/// Counter: spool files corrupt past a point, replayed that far and set aside in `failed/`.
pub const SPOOL_CORRUPT_FILES: &str = "vg_spool_corrupt_files_total";
/// Gauge: sealed spool files waiting for the database.
pub const SPOOL_PENDING_FILES: &str = "vg_spool_pending_files";
/// Gauge: bytes held by the spool.
pub const SPOOL_BYTES: &str = "vg_spool_bytes";
/// Counter: stream status callbacks, by `event` (start, stop, dropped, degraded, other).
pub const STREAM_STATUS: &str = "vg_stream_status_total";
/// Gauge: HTTP connections open, upgraded media WebSockets included.
pub const HTTP_CONNECTIONS: &str = "vg_http_connections";
/// Counter: connections answered 503 at `VG_HTTP_MAX_CONNECTIONS`.
pub const HTTP_CONNECTIONS_REFUSED: &str = "vg_http_connections_refused_total";
/// Counter: connections closed for a request head not complete in time.
pub const HTTP_HEADER_TIMEOUTS: &str = "vg_http_header_timeouts_total";
/// Counter: webhook requests refused for a bad or missing signature.
pub const SIGNATURE_REJECTIONS: &str = "vg_signature_rejections_total";
/// Counter: validly signed webhook requests refused because their nonce was seen before.
pub const WEBHOOK_REPLAYS: &str = "vg_webhook_replays_total";
/// Counter: webhook requests refused for a body above the limit.
pub const WEBHOOK_TOO_LARGE: &str = "vg_webhook_too_large_total";

/// Histogram: seconds of Whisper per utterance (local pipeline).
pub const LOCAL_STT_SECONDS: &str = "vg_local_stt_seconds";
/// Histogram: seconds from the caller's last voiced frame to the first reply audio (local
/// pipeline, end-of-turn wait included).
pub const LOCAL_REPLY_LATENCY_SECONDS: &str = "vg_local_reply_latency_seconds";
/// Counter: turns whose transcription started on a pause and was reused at the end of turn.
pub const LOCAL_TURNS_HEARD_AHEAD: &str = "vg_local_turns_heard_ahead_total";
/// Counter: calls the dialer asked Plivo to place, by `result` (placed, throttled, failed).
pub const DIALER_CALLS: &str = "vg_dialer_calls_total";
/// Counter: dial attempts ended, by `class` (completed, no_answer, busy, failed, …).
pub const DIALER_ATTEMPTS_ENDED: &str = "vg_dialer_attempts_ended_total";
/// Counter: attempts in flight that never heard back and were ended by the recovery.
pub const DIALER_RECOVERED: &str = "vg_dialer_attempts_recovered_total";
/// Counter: campaigns the dialer completed.
pub const DIALER_CAMPAIGNS_COMPLETED: &str = "vg_dialer_campaigns_completed_total";
/// Counter: calls recorded to the end, their file finished.
pub const RECORDINGS_FINISHED: &str = "vg_recordings_finished_total";
/// Counter: recordings that stopped, by `stage` (`encoder`, `write`: the storage failed,
/// `stalled`: the storage fell seconds behind, `finish`); the call went on unrecorded.
pub const RECORDINGS_FAILED: &str = "vg_recordings_failed_total";
/// Counter: unfinished recordings found at start, by `result` (`finished`, `corrupt`).
pub const RECORDINGS_RECOVERED: &str = "vg_recordings_recovered_total";
/// Counter: recordings uploaded to an `s3://` store.
pub const RECORDINGS_UPLOADED: &str = "vg_recordings_uploaded_total";
/// Counter: uploads that failed and wait on disk for their retry.
pub const RECORDING_UPLOAD_FAILURES: &str = "vg_recording_upload_failures_total";
/// Gauge: finished recordings waiting on disk for their upload.
pub const RECORDINGS_UPLOADS_PENDING: &str = "vg_recording_uploads_pending";
/// Counter: recordings deleted at the end of their retention period.
pub const RECORDINGS_EXPIRED: &str = "vg_recordings_expired_total";
/// Counter: model analyses refused by the schema (the deterministic one was kept).
pub const ANALYSES_REFUSED: &str = "vg_analyses_refused_total";
/// Gauge: CPU seconds (user + system) this process has used (the Prometheus standard name).
pub const PROCESS_CPU_SECONDS: &str = "process_cpu_seconds_total";
/// Gauge: this process's resident memory in bytes (the Prometheus standard name).
pub const PROCESS_RESIDENT_MEMORY_BYTES: &str = "process_resident_memory_bytes";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// How often `serve` drains the histograms' sample buffers (see `startup`).
pub const UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Installs the process-wide recorder once and returns its handle. Several applications in one
/// process (tests) share it.
pub fn handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .install_recorder()
                .expect("no other metrics recorder is installed");
            describe();
            handle
        })
        .clone()
}

fn describe() {
    metrics::describe_gauge!(DRAINING, "1 while the gateway drains after SIGTERM");
    metrics::describe_gauge!(LIVE_CALLS, "calls held by this gateway");
    metrics::describe_counter!(HEARTBEAT_FAILURES, "failed websocket_servers heartbeats");
    metrics::describe_counter!(RECORDINGS_FINISHED, "call recordings finished");
    metrics::describe_counter!(
        RECORDINGS_FAILED,
        "call recordings stopped by a failure, the call going on unrecorded"
    );
    metrics::describe_counter!(
        RECORDINGS_RECOVERED,
        "unfinished recordings of a previous run, finished or set aside at start"
    );
    metrics::describe_counter!(
        RECORDINGS_UPLOADED,
        "recordings uploaded to the s3:// store"
    );
    metrics::describe_counter!(
        RECORDING_UPLOAD_FAILURES,
        "recording uploads that failed; the file waits on disk for its retry"
    );
    metrics::describe_gauge!(
        RECORDINGS_UPLOADS_PENDING,
        "finished recordings waiting on disk for their upload"
    );
    metrics::describe_counter!(
        RECORDINGS_EXPIRED,
        "recordings deleted at the end of their retention period"
    );
    metrics::describe_counter!(
        CALLS_CLOSED_AFTER_RESTART,
        "calls left open by a gateway that was gone, closed as gateway_restart"
    );
    metrics::describe_counter!(
        CARRIER_WRITE_TIMEOUTS,
        "calls whose carrier socket stalled on a write"
    );
    metrics::describe_counter!(
        STREAMS_REFUSED,
        "media WebSockets refused before the call, by reason"
    );
    metrics::describe_counter!(
        NO_STREAM_SERVER,
        "answers that found no gateway with room and streamed to themselves"
    );
    metrics::describe_counter!(
        AGENT_AUDIO_DROPPED_BYTES,
        "agent audio dropped above a call's cap of unplayed audio"
    );
    metrics::describe_counter!(PROVIDER_RECONNECTS, "provider sessions reopened mid-call");
    metrics::describe_counter!(CALLS_STARTED, "calls whose stream started here");
    metrics::describe_counter!(CALLS_ENDED, "calls ended, by end reason");
    metrics::describe_counter!(FRAMES_IN, "caller media frames received");
    metrics::describe_counter!(FRAMES_OUT, "agent frames sent to the carrier");
    metrics::describe_counter!(FRAMES_REJECTED, "carrier frames refused");
    metrics::describe_counter!(UNKNOWN_EVENTS, "carrier events of unknown type");
    metrics::describe_counter!(UNDERRUNS, "playback underruns");
    metrics::describe_counter!(PROVIDER_FAILURES, "provider failures that ended a call");
    metrics::describe_histogram!(FIRST_AUDIO_SECONDS, "stream start to first agent frame");
    metrics::describe_histogram!(BARGE_IN_SECONDS, "barge-in decision to clearAudio written");
    metrics::describe_histogram!(FRAME_IN_SECONDS, "processing time of one caller frame");
    metrics::describe_counter!(
        DIALER_CALLS,
        "calls the dialer asked Plivo to place, by result"
    );
    metrics::describe_counter!(DIALER_ATTEMPTS_ENDED, "dial attempts ended, by class");
    metrics::describe_counter!(
        DIALER_RECOVERED,
        "attempts ended by the recovery after no callback"
    );
    metrics::describe_counter!(DIALER_CAMPAIGNS_COMPLETED, "campaigns the dialer completed");
    metrics::describe_counter!(
        ANALYSES_REFUSED,
        "model analyses refused by the schema; the deterministic analysis was kept"
    );
    metrics::describe_counter!(DB_WRITE_RETRIES, "call writes retried");
    metrics::describe_counter!(DB_WRITE_FAILURES, "call writes lost");
    metrics::describe_gauge!(
        AI_PROVIDER_CONFIGURED,
        "AI providers a call can run on here, by provider"
    );
    metrics::describe_counter!(CALL_WRITES, "call writes handed to the writer, by kind");
    metrics::describe_counter!(SPOOL_WRITES, "call writes kept in the spool, by kind");
    metrics::describe_counter!(SPOOL_REPLAYED, "spooled call writes replayed");
    metrics::describe_counter!(SPOOL_CORRUPT_FILES, "corrupt spool files set aside");
    metrics::describe_gauge!(
        SPOOL_PENDING_FILES,
        "sealed spool files waiting for the database"
    );
    metrics::describe_gauge!(SPOOL_BYTES, "bytes held by the spool");
    metrics::describe_counter!(STREAM_STATUS, "stream status callbacks, by event");
    metrics::describe_counter!(SIGNATURE_REJECTIONS, "webhooks refused for their signature");
    metrics::describe_counter!(WEBHOOK_REPLAYS, "signed webhooks refused as replays");
    metrics::describe_counter!(WEBHOOK_TOO_LARGE, "webhooks refused for their size");
    metrics::describe_histogram!(LOCAL_STT_SECONDS, "Whisper time per utterance");
    metrics::describe_histogram!(
        LOCAL_REPLY_LATENCY_SECONDS,
        "caller's last voiced frame to the first reply audio"
    );
    metrics::describe_counter!(
        LOCAL_TURNS_HEARD_AHEAD,
        "turns transcribed ahead on a pause"
    );
    metrics::describe_gauge!(PROCESS_CPU_SECONDS, "CPU seconds used by this process");
    metrics::describe_gauge!(
        PROCESS_RESIDENT_MEMORY_BYTES,
        "resident memory of this process"
    );
}

/// Refreshes the process gauges from `/proc/self` (Linux), just before a scrape, so a remote
/// load test can compute CPU per call-second and memory per call from `/metrics` alone.
pub fn refresh_process_gauges() {
    if let Some(sample) = ProcessSample::of_self() {
        metrics::gauge!(PROCESS_CPU_SECONDS).set(sample.cpu_seconds);
        metrics::gauge!(PROCESS_RESIDENT_MEMORY_BYTES).set(sample.rss_bytes as f64);
    }
}

/// CPU seconds (user + system) and resident memory of a process, from `/proc`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessSample {
    pub cpu_seconds: f64,
    pub rss_bytes: u64,
}

impl ProcessSample {
    /// This process.
    pub fn of_self() -> Option<Self> {
        Self::read("self")
    }

    /// Process `pid`.
    pub fn of_pid(pid: u32) -> Option<Self> {
        Self::read(&pid.to_string())
    }

    /// Reads `/proc/<which>/stat` and `/proc/<which>/status`; clock ticks are Linux's 100 per
    /// second.
    fn read(which: &str) -> Option<Self> {
        const CLOCK_TICKS: f64 = 100.0;
        let stat = std::fs::read_to_string(format!("/proc/{which}/stat")).ok()?;
        // Fields after the command name (which may contain spaces) start after the last ')'.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let utime: f64 = fields.get(11)?.parse().ok()?;
        let stime: f64 = fields.get(12)?.parse().ok()?;
        let status = std::fs::read_to_string(format!("/proc/{which}/status")).ok()?;
        let rss_kib: u64 = status
            .lines()
            .find(|line| line.starts_with("VmRSS:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        Some(Self {
            cpu_seconds: (utime + stime) / CLOCK_TICKS,
            rss_bytes: rss_kib * 1024,
        })
    }

    /// The two process gauges in a Prometheus exposition text, when both are there.
    pub fn from_exposition(text: &str) -> Option<Self> {
        let value = |name: &str| {
            text.lines()
                .filter(|line| !line.starts_with('#'))
                .find_map(|line| {
                    let (metric, value) = line.split_once(' ')?;
                    (metric == name).then(|| value.trim().parse::<f64>().ok())?
                })
        };
        Some(Self {
            cpu_seconds: value(PROCESS_CPU_SECONDS)?,
            rss_bytes: value(PROCESS_RESIDENT_MEMORY_BYTES)? as u64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_sampled_from_proc() {
        let sample = ProcessSample::of_self().expect("Linux /proc");
        assert!(sample.rss_bytes > 1024 * 1024, "{sample:?}");
        assert!(sample.cpu_seconds >= 0.0);
        assert_eq!(
            ProcessSample::of_pid(std::process::id()).map(|s| s.rss_bytes > 0),
            Some(true)
        );
    }

    #[test]
    fn the_gauges_are_read_back_from_an_exposition() {
        let text = "# HELP process_cpu_seconds_total CPU\n# TYPE process_cpu_seconds_total gauge\nprocess_cpu_seconds_total 12.5\nprocess_resident_memory_bytes 73400320\nvg_live_calls 3\n";
        assert_eq!(
            ProcessSample::from_exposition(text),
            Some(ProcessSample {
                cpu_seconds: 12.5,
                rss_bytes: 73_400_320
            })
        );
        assert_eq!(ProcessSample::from_exposition("vg_live_calls 3\n"), None);
    }
}
