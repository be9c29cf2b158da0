//! Recording retention: a tracked background task on every gateway deletes the recordings
//! whose call ended more than `recording_retention_days` ago (the campaign's setting, else the
//! organization's), clears `call_logs.recording_url` and writes a `recording_audit` row.
//!
//! The file goes first, then the row and its audit in one transaction: a crash between them
//! leaves a link to nothing, which the next pass clears (deleting twice is no error). Several
//! gateways may pass over the same recording; only the one that clears the link writes the
//! audit row.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::RecordingStore;
use crate::db::{Database, DbError};

/// How often the task looks; its first pass is at start.
pub const RETENTION_INTERVAL: Duration = Duration::from_secs(3600);
/// Recordings read per query.
const BATCH: i64 = 200;

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Expired {
    /// Recordings deleted and unlinked.
    pub deleted: usize,
    /// Recordings whose file could not be deleted (left linked, tried again next pass).
    pub failed: usize,
}

/// Deletes every recording past its retention period now.
pub async fn expire_once(
    db: &Database,
    store: &RecordingStore,
    server_name: &str,
) -> Result<Expired, DbError> {
    let mut done = Expired::default();
    loop {
        let batch = db.expired_recordings(BATCH).await?;
        let mut progressed = false;
        for expired in &batch {
            if let Err(error) = store.delete(&expired.call_sid).await {
                done.failed += 1;
                tracing::warn!(call_sid = %expired.call_sid, %error, "an expired recording could not be deleted; it stays linked until the next pass");
                continue;
            }
            progressed = true;
            if db.recording_expired(expired, server_name).await? {
                done.deleted += 1;
                metrics::counter!(crate::metrics::RECORDINGS_EXPIRED).increment(1);
                tracing::info!(call_sid = %expired.call_sid, retention_days = expired.retention_days, "recording deleted at the end of its retention period");
            }
        }
        // A short batch was the last; one where nothing could be deleted waits for next time.
        if (batch.len() as i64) < BATCH || !progressed {
            return Ok(done);
        }
    }
}

/// Runs [`expire_once`] at start and every [`RETENTION_INTERVAL`] until `stop`.
pub async fn retention_loop(
    db: Database,
    store: std::sync::Arc<RecordingStore>,
    server_name: String,
    stop: CancellationToken,
) {
    let mut interval = tokio::time::interval(RETENTION_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = interval.tick() => {}
        }
        let pass = tokio::select! {
            () = stop.cancelled() => return,
            pass = expire_once(&db, &store, &server_name) => pass,
        };
        match pass {
            Ok(Expired {
                deleted: 0,
                failed: 0,
            }) => {}
            Ok(expired) => tracing::info!(
                deleted = expired.deleted,
                failed = expired.failed,
                "recording retention pass"
            ),
            Err(error) => {
                tracing::warn!(%error, "recording retention pass failed; next pass in an hour")
            }
        }
    }
}
