//! The process lifecycle: every spawned task is tracked, and shutdown drains in order.
//!
//! On SIGTERM the gateway stops taking new calls (readiness false, registry row inactive),
//! lets live calls finish for the grace period, then asks the rest to end with reason
//! `shutdown` and waits for them to write their logs. Background tasks (heartbeat, dialer)
//! stop last. The HTTP server's shutdown does not wait for upgraded WebSockets (`http::server`),
//! which is why calls are tracked here and not left to the HTTP server.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// Shared lifecycle state; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Lifecycle {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    draining: AtomicBool,
    /// Cancelled when the drain begins, for whoever waits on it.
    drain_started: CancellationToken,
    /// Cancelled when the grace period is over: live calls end with reason `shutdown`.
    end_calls: CancellationToken,
    calls: TaskTracker,
    /// Cancelled when background work (heartbeat, dialer) must stop.
    stop_background: CancellationToken,
    background: TaskTracker,
}

/// How a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainOutcome {
    /// Every call finished within the grace period.
    Finished,
    /// Some calls were ended with reason `shutdown`.
    CutShort,
}

impl Lifecycle {
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::Acquire)
    }

    /// Stops taking new calls. Returns `false` if a drain had already begun.
    pub fn start_draining(&self) -> bool {
        let first = !self.inner.draining.swap(true, Ordering::AcqRel);
        if first {
            metrics::gauge!(crate::metrics::DRAINING).set(1.0);
            self.inner.drain_started.cancel();
        }
        first
    }

    /// Completes once the drain has begun.
    pub async fn draining(&self) {
        self.inner.drain_started.cancelled().await;
    }

    /// Runs a call's task, tracked so shutdown can wait for it. The task gets a token that is
    /// cancelled when it must end with reason `shutdown`.
    pub fn spawn_call<F>(&self, task: impl FnOnce(CancellationToken) -> F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let future = task(self.inner.end_calls.child_token());
        self.inner.calls.spawn(future);
    }

    /// Calls being held right now.
    pub fn live_calls(&self) -> usize {
        self.inner.calls.len()
    }

    /// Runs a background task (heartbeat, dialer), tracked; it should return once
    /// `stop_token()` is cancelled.
    pub fn spawn_background(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.inner.background.spawn(task);
    }

    /// Cancelled when background tasks must stop.
    pub fn background_stop_token(&self) -> CancellationToken {
        self.inner.stop_background.clone()
    }

    /// Waits up to `grace` for live calls, then ends the rest and waits for them to finish
    /// writing (bounded by `write_deadline`).
    pub async fn drain_calls(&self, grace: Duration, write_deadline: Duration) -> DrainOutcome {
        self.inner.calls.close();
        if tokio::time::timeout(grace, self.inner.calls.wait())
            .await
            .is_ok()
        {
            return DrainOutcome::Finished;
        }
        tracing::warn!(
            live_calls = self.live_calls(),
            ?grace,
            "grace period over, ending calls"
        );
        self.inner.end_calls.cancel();
        if tokio::time::timeout(write_deadline, self.inner.calls.wait())
            .await
            .is_err()
        {
            tracing::error!(
                live_calls = self.live_calls(),
                "calls did not finish after being ended"
            );
        }
        DrainOutcome::CutShort
    }

    /// Stops background tasks and waits for them.
    pub async fn stop_background(&self, deadline: Duration) {
        self.inner.stop_background.cancel();
        self.inner.background.close();
        if tokio::time::timeout(deadline, self.inner.background.wait())
            .await
            .is_err()
        {
            tracing::warn!("background tasks did not stop in time");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn calls_that_finish_in_time_drain_cleanly() {
        let lifecycle = Lifecycle::default();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        lifecycle.spawn_call(|_end| async move {
            let _ = done_rx.await;
        });
        assert_eq!(lifecycle.live_calls(), 1);
        assert!(lifecycle.start_draining());
        assert!(
            !lifecycle.start_draining(),
            "a second drain is not a new one"
        );
        let drain = tokio::spawn({
            let lifecycle = lifecycle.clone();
            async move {
                lifecycle
                    .drain_calls(Duration::from_secs(30), Duration::from_secs(5))
                    .await
            }
        });
        done_tx.send(()).unwrap();
        assert_eq!(drain.await.unwrap(), DrainOutcome::Finished);
        assert_eq!(lifecycle.live_calls(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn calls_past_the_grace_period_are_ended() {
        let lifecycle = Lifecycle::default();
        let (ended_tx, ended_rx) = tokio::sync::oneshot::channel();
        lifecycle.spawn_call(|end| async move {
            end.cancelled().await;
            let _ = ended_tx.send("shutdown");
        });
        lifecycle.start_draining();
        let outcome = lifecycle
            .drain_calls(Duration::from_secs(30), Duration::from_secs(5))
            .await;
        assert_eq!(outcome, DrainOutcome::CutShort);
        assert_eq!(ended_rx.await.unwrap(), "shutdown");
        assert_eq!(lifecycle.live_calls(), 0);
    }
}
