//! Logging: `tracing` filtered by `RUST_LOG`, human lines on a terminal, JSON lines when
//! `VG_LOG_FORMAT=json`.

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::LogFormat;

/// What is logged when `RUST_LOG` is unset: our own info, only warnings from the libraries.
const DEFAULT_FILTER: &str = "warn,voice_gateway=info";

/// Installs the global subscriber. Safe to call more than once (later calls do nothing), so
/// tests and subcommands can call it freely.
pub fn init(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Text => registry
            .with(fmt::layer().with_writer(std::io::stderr))
            .try_init(),
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    // A subscriber is already installed (a second call in the same process): keep it.
    drop(result);
}

/// The one line logged at start-up: what is running.
pub fn log_build_info() {
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        profile = if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        "voice-gateway starting"
    );
}
