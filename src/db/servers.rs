//! The `websocket_servers` registry: each gateway registers its `wss://` URL and its capacity
//! (`VG_MAX_CALLS`), heartbeats with its live call count, and deactivates itself when draining.
//! `/plivo/answer` picks the best active, verified, fresh server with room, which is not always
//! the one answering, and reserves a place on it (see [`Database::pick_stream_server`]).
//!
//! The heartbeat is also the gateway's sign of life, whether it takes new streams or not (an
//! operator's deactivation, a drain): a row whose heartbeat is older than
//! [`STALE_HEARTBEATS`] of its own intervals belongs to a gateway that is gone, and its open
//! calls are closed by whichever gateway notices (see `db::calls::close_orphaned_calls`).

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Database, DbError};

/// A registry row older than this many of its heartbeat intervals is stale: not picked for new
/// streams, and its gateway is taken for gone.
pub const STALE_HEARTBEATS: u32 = 3;
/// How many times a pick is tried when a concurrent pick filled its candidate first.
const PICK_ATTEMPTS: usize = 3;

/// What a heartbeat found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heartbeat {
    /// The row is active: refreshed, verified, its live calls counted.
    Active,
    /// The row is inactive (an operator's deactivation, or this gateway drains): its sign of
    /// life is refreshed, nothing else; the heartbeat does not reactivate it.
    Inactive,
    /// There is no row for this name.
    Missing,
}

/// A row of `websocket_servers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamServer {
    pub name: String,
    pub url: String,
    pub is_active: bool,
    pub status: String,
    pub priority: i32,
    pub live_calls: i32,
    /// The gateway's capacity (`VG_MAX_CALLS`); `None`: not known, never full.
    pub max_calls: Option<i32>,
    pub last_verified_at: Option<DateTime<Utc>>,
}

impl Database {
    /// Registers (or re-registers) this server as active and verified, with its heartbeat
    /// interval and its capacity.
    pub async fn register_server(
        &self,
        name: &str,
        url: &str,
        priority: i32,
        heartbeat: Duration,
        max_calls: usize,
    ) -> Result<(), DbError> {
        sqlx::query!(
            r#"INSERT INTO websocket_servers (name, url, priority, is_active, status, last_verified_at,
                                              live_calls, heartbeat_secs, max_calls)
               VALUES ($1, $2, $3, TRUE, 'verified', now(), 0, $4, $5)
               ON CONFLICT (name) DO UPDATE
               SET url = EXCLUDED.url, priority = EXCLUDED.priority, is_active = TRUE,
                   status = 'verified', last_verified_at = now(), live_calls = 0, failure_reason = NULL,
                   heartbeat_secs = EXCLUDED.heartbeat_secs, max_calls = EXCLUDED.max_calls"#,
            name,
            url,
            priority,
            heartbeat_secs(heartbeat),
            i32::try_from(max_calls).unwrap_or(i32::MAX),
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Refreshes this server's row: its sign of life always, its status and live calls while
    /// it is active. An inactive row stays inactive (an operator deactivated it, or the gateway
    /// drains, still alive and still holding calls).
    pub async fn heartbeat_server(
        &self,
        name: &str,
        live_calls: i32,
        heartbeat: Duration,
    ) -> Result<Heartbeat, DbError> {
        let active = sqlx::query_scalar!(
            r#"UPDATE websocket_servers
               SET last_verified_at = now(), heartbeat_secs = $3,
                   status = CASE WHEN is_active THEN 'verified' ELSE status END,
                   live_calls = CASE WHEN is_active THEN $2 ELSE live_calls END
               WHERE name = $1
               RETURNING is_active"#,
            name,
            live_calls.max(0),
            heartbeat_secs(heartbeat),
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(match active {
            Some(true) => Heartbeat::Active,
            Some(false) => Heartbeat::Inactive,
            None => Heartbeat::Missing,
        })
    }

    /// Takes this server out of rotation (draining or stopped).
    pub async fn deactivate_server(&self, name: &str) -> Result<(), DbError> {
        sqlx::query!(
            "UPDATE websocket_servers SET is_active = FALSE, live_calls = 0 WHERE name = $1",
            name
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Marks a server failed with a reason (it stays out of rotation until it re-registers).
    pub async fn mark_server_failed(&self, name: &str, reason: &str) -> Result<(), DbError> {
        sqlx::query!(
            "UPDATE websocket_servers SET status = 'failed', failure_reason = $2 WHERE name = $1",
            name,
            reason
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The best server for a new stream, with a place reserved on it: active, verified, fresh
    /// (heard from within [`STALE_HEARTBEATS`] of its own heartbeat interval, or of
    /// `default_heartbeat` for a row that never said) and not full (`live_calls < max_calls`);
    /// highest priority first, then fewest live calls, then the most recently verified.
    /// `None`: no gateway can take the call.
    ///
    /// The pick adds one to the chosen row's `live_calls`. Between heartbeats the count is
    /// otherwise stale, and a burst of answers would all go to the same "emptiest" gateway and
    /// past its capacity; the reservation makes each answer see the ones before it. The
    /// gateway's next heartbeat writes its real count (its admitted calls), which also takes
    /// back the place of a stream that never came. Admission and release do not write the
    /// row: that would be two more writes on every call's path, for a count the heartbeat
    /// corrects within seconds anyway.
    ///
    /// One statement: the candidate is chosen in the statement's snapshot, and the update
    /// checks the row's room again once it holds the row lock (PostgreSQL re-evaluates the
    /// update's own conditions on the newest version), so two concurrent picks never both take
    /// a gateway's last place. When a concurrent pick took it first, the next best is tried.
    pub async fn pick_stream_server(
        &self,
        default_heartbeat: Duration,
    ) -> Result<Option<StreamServer>, DbError> {
        for _ in 0..PICK_ATTEMPTS {
            let server = sqlx::query_as!(
                StreamServer,
                r#"UPDATE websocket_servers
                   SET live_calls = live_calls + 1
                   WHERE name = (
                           SELECT name FROM websocket_servers
                           WHERE is_active AND status = 'verified'
                             AND last_verified_at > now() - make_interval(
                                     secs => coalesce(heartbeat_secs, $1) * $2::float8)
                             AND (max_calls IS NULL OR live_calls < max_calls)
                           ORDER BY priority DESC, live_calls ASC, last_verified_at DESC
                           LIMIT 1)
                     AND is_active AND status = 'verified'
                     AND (max_calls IS NULL OR live_calls < max_calls)
                   RETURNING name, url, is_active, status, priority, live_calls, max_calls,
                             last_verified_at"#,
                heartbeat_secs(default_heartbeat),
                f64::from(STALE_HEARTBEATS),
            )
            .fetch_optional(&self.pool)
            .await?;
            if server.is_some() {
                return Ok(server);
            }
        }
        Ok(None)
    }

    /// One server's row, by name.
    pub async fn stream_server(&self, name: &str) -> Result<Option<StreamServer>, DbError> {
        let server = sqlx::query_as!(
            StreamServer,
            r#"SELECT name, url, is_active, status, priority, live_calls, max_calls,
                      last_verified_at
               FROM websocket_servers WHERE name = $1"#,
            name
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(server)
    }

    /// Other gateways whose heartbeat is stale (older than [`STALE_HEARTBEATS`] of their own
    /// interval, or of `default_heartbeat` for a row that never said) and that still have open
    /// calls: gone, with calls nobody will close.
    pub async fn stale_servers_with_open_calls(
        &self,
        except: &str,
        default_heartbeat: Duration,
    ) -> Result<Vec<String>, DbError> {
        let names = sqlx::query_scalar!(
            r#"SELECT s.name FROM websocket_servers s
               WHERE s.name <> $1
                 AND coalesce(s.last_verified_at, '-infinity'::timestamptz)
                     < now() - make_interval(secs => coalesce(s.heartbeat_secs, $2) * $3::float8)
                 AND EXISTS (SELECT 1 FROM call_logs cl
                             WHERE cl.server_name = s.name AND cl.ended_at IS NULL)
               ORDER BY s.name"#,
            except,
            heartbeat_secs(default_heartbeat),
            f64::from(STALE_HEARTBEATS),
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(names)
    }
}

/// A heartbeat interval as the registry stores it: whole seconds, at least one.
fn heartbeat_secs(heartbeat: Duration) -> i32 {
    i32::try_from(heartbeat.as_secs())
        .unwrap_or(i32::MAX)
        .max(1)
}
