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

/// Counter: calls whose stream started here.
pub const CALLS_STARTED: &str = "vg_calls_started_total";
/// Counter: calls ended, by `reason` (an end reason).
pub const CALLS_ENDED: &str = "vg_calls_ended_total";
/// Counter: caller media frames received.
pub const FRAMES_IN: &str = "vg_frames_in_total";
/// Counter: agent frames sent to the carrier.
pub const FRAMES_OUT: &str = "vg_frames_out_total";
/// Counter: carrier frames refused, by `reason` (`payload`, `malformed`, `before_start`).
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
/// Counter: call writes given up after their retry budget.
pub const DB_WRITE_FAILURES: &str = "vg_db_write_failures_total";
/// Counter: stream status callbacks, by `event` (start, stop, dropped, degraded, other).
pub const STREAM_STATUS: &str = "vg_stream_status_total";
/// Counter: webhook requests refused for a bad or missing signature.
pub const SIGNATURE_REJECTIONS: &str = "vg_signature_rejections_total";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

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
    metrics::describe_counter!(DB_WRITE_RETRIES, "call writes retried");
    metrics::describe_counter!(DB_WRITE_FAILURES, "call writes given up");
    metrics::describe_counter!(STREAM_STATUS, "stream status callbacks, by event");
    metrics::describe_counter!(SIGNATURE_REJECTIONS, "webhooks refused for their signature");
}
