//! The hang-up listener: a background task of every `serve` that `LISTEN`s for hang-up
//! requests and hangs up the call if this gateway holds it. The API may run on any gateway;
//! the call's socket is on one.

use std::time::Duration;

use crate::{call::registry::Registry, db::Database, lifecycle::Lifecycle};

/// First wait before reconnecting after a failure; doubles up to [`RECONNECT_MAX`].
const RECONNECT_MIN: Duration = Duration::from_millis(250);
const RECONNECT_MAX: Duration = Duration::from_secs(30);

/// Starts the listener as a tracked background task; it stops with the background tasks.
pub fn spawn_hangup_listener(db: Database, registry: Registry, lifecycle: &Lifecycle) {
    let stop = lifecycle.background_stop_token();
    lifecycle.spawn_background(async move {
        let mut backoff = RECONNECT_MIN;
        loop {
            let connected = tokio::select! {
                _ = stop.cancelled() => return,
                connected = db.hangup_listener() => connected,
            };
            match connected {
                Ok(mut listener) => {
                    tracing::debug!("listening for hang-up requests");
                    loop {
                        let notification = tokio::select! {
                            _ = stop.cancelled() => return,
                            notification = listener.recv() => notification,
                        };
                        match notification {
                            Ok(notification) => {
                                backoff = RECONNECT_MIN;
                                let call_sid = notification.payload();
                                if registry.hang_up(call_sid) {
                                    tracing::info!(%call_sid, "hanging up on request");
                                }
                            }
                            Err(error) => {
                                tracing::warn!(%error, "hang-up listener lost its connection");
                                break;
                            }
                        }
                    }
                }
                Err(error) => tracing::warn!(%error, "hang-up listener cannot connect"),
            }
            // Dropping the listener returned its connection; wait, then connect afresh.
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(RECONNECT_MAX);
        }
    });
}
