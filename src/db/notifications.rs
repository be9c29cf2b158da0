//! `LISTEN` loops: one pooled connection listening on a channel for as long as the gateway's
//! background tasks run, reopened with backoff when it drops. The hang-up requests and the
//! dashboard's live pages both use it.

use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;

use super::Database;

/// First wait before reconnecting after a failure; doubles up to [`RECONNECT_MAX`].
const RECONNECT_MIN: Duration = Duration::from_millis(250);
const RECONNECT_MAX: Duration = Duration::from_secs(30);

impl Database {
    /// Listens on `channel` until `stop`. `on_connect` runs each time the listener is
    /// (re)connected (notifications sent while it was not are lost: a caller that keeps state
    /// rereads it then); each notification's payload goes to `on_payload`.
    pub async fn listen_until(
        &self,
        channel: &'static str,
        stop: CancellationToken,
        mut on_connect: impl FnMut(),
        mut on_payload: impl FnMut(&str),
    ) {
        let mut backoff = RECONNECT_MIN;
        loop {
            let connected = tokio::select! {
                () = stop.cancelled() => return,
                connected = self.listener(channel) => connected,
            };
            match connected {
                Ok(mut listener) => {
                    tracing::debug!(channel, "listening");
                    on_connect();
                    loop {
                        let notification = tokio::select! {
                            () = stop.cancelled() => return,
                            notification = listener.recv() => notification,
                        };
                        match notification {
                            Ok(notification) => {
                                backoff = RECONNECT_MIN;
                                on_payload(notification.payload());
                            }
                            Err(error) => {
                                tracing::warn!(channel, %error, "a listener lost its connection");
                                break;
                            }
                        }
                    }
                }
                Err(error) => tracing::warn!(channel, %error, "a listener cannot connect"),
            }
            // Dropping the listener returned its connection; wait, then connect afresh.
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(RECONNECT_MAX);
        }
    }

    /// A connection listening on `channel`; it holds one pooled connection until dropped.
    async fn listener(&self, channel: &str) -> Result<PgListener, super::DbError> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(channel).await?;
        Ok(listener)
    }
}
