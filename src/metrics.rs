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
}
