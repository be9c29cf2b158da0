//! The hang-up listener: a background task of every `serve` that `LISTEN`s for hang-up
//! requests and hangs up the call if this gateway holds it. The API may run on any gateway;
//! the call's socket is on one.

use crate::{call::registry::Registry, db::Database, lifecycle::Lifecycle};

/// Starts the listener as a tracked background task; it stops with the background tasks.
pub fn spawn_hangup_listener(db: Database, registry: Registry, lifecycle: &Lifecycle) {
    let stop = lifecycle.background_stop_token();
    lifecycle.spawn_background(async move {
        db.listen_until(
            crate::db::call_queries::HANGUP_CHANNEL,
            stop,
            || {},
            |call_sid| {
                if registry.hang_up(call_sid) {
                    tracing::info!(%call_sid, "hanging up on request");
                }
            },
        )
        .await;
    });
}
