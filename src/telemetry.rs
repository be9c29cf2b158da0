//! Logging: `tracing` filtered by `RUST_LOG`, human lines on a terminal, JSON lines when
//! `VG_LOG_FORMAT=json`.
//!
//! What is logged at `info` and above carries no personal data and no secret: ids (call,
//! lead, campaign, attempt) are fine; phone numbers appear only through
//! [`crate::phone::Redacted`], URLs that may carry a key or a token only through
//! [`RedactedUrl`]; tokens, keys and whole webhook forms never (`tests/api/logs.rs` checks a
//! whole call's logs).

use std::fmt::Display;

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::LogFormat;

/// What is logged when `RUST_LOG` is unset: our own info, only warnings from the libraries.
const DEFAULT_FILTER: &str = "warn,voice_gateway=info";

/// A URL as logs and error messages may show it: scheme, host and path, without the
/// credentials before an `@` and without the query or fragment (where keys and tokens travel:
/// `?token=`, `?key=`, `?api-key=`), each replaced by `…`. Works on any text, parsed or not.
#[derive(Clone, Copy)]
pub struct RedactedUrl<'a>(pub &'a str);

impl Display for RedactedUrl<'_> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (address, rest) = match self.0.find(['?', '#']) {
            Some(at) => (&self.0[..at], Some(&self.0[at..at + 1])),
            None => (self.0, None),
        };
        let (scheme, location) = match address.split_once("://") {
            Some((scheme, location)) => (Some(scheme), location),
            None => (None, address),
        };
        if let Some(scheme) = scheme {
            write!(formatter, "{scheme}://")?;
        }
        let authority_end = location.find('/').unwrap_or(location.len());
        let (authority, path) = location.split_at(authority_end);
        match authority.rsplit_once('@') {
            Some((_, host)) => write!(formatter, "…@{host}")?,
            None => formatter.write_str(authority)?,
        }
        formatter.write_str(path)?;
        if let Some(separator) = rest {
            write!(formatter, "{separator}…")?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for RedactedUrl<'_> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        Display::fmt(self, formatter)
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacted_urls_keep_where_they_point_and_drop_credentials_and_queries() {
        let shown = |raw: &str| RedactedUrl(raw).to_string();
        assert_eq!(
            shown("wss://gw.example.com/plivo/stream?token=abc.def"),
            "wss://gw.example.com/plivo/stream?…"
        );
        assert_eq!(
            shown("wss://api.example.com/v1/realtime?api-key=sk-1&model=m"),
            "wss://api.example.com/v1/realtime?…"
        );
        assert_eq!(
            shown("https://user:secret@host:8443/a/b#frag"),
            "https://…@host:8443/a/b#…"
        );
        assert_eq!(
            shown("https://gw.example.com/plivo"),
            "https://gw.example.com/plivo"
        );
        assert_eq!(shown("not a url?key=1"), "not a url?…");
        assert_eq!(shown("ftp://@x"), "ftp://…@x");
        assert_eq!(shown(""), "");
    }
}
