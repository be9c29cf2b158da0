//! The `websocket_servers` registry: each gateway registers its `wss://` URL, heartbeats with
//! its live call count, and deactivates itself when draining. `/plivo/answer` picks the best
//! active, verified, fresh server, which is not always the one answering.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Database, DbError};

/// A row of `websocket_servers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamServer {
    pub name: String,
    pub url: String,
    pub is_active: bool,
    pub status: String,
    pub priority: i32,
    pub live_calls: i32,
    pub last_verified_at: Option<DateTime<Utc>>,
}

impl Database {
    /// Registers (or re-registers) this server as active and verified.
    pub async fn register_server(
        &self,
        name: &str,
        url: &str,
        priority: i32,
    ) -> Result<(), DbError> {
        sqlx::query!(
            r#"INSERT INTO websocket_servers (name, url, priority, is_active, status, last_verified_at, live_calls)
               VALUES ($1, $2, $3, TRUE, 'verified', now(), 0)
               ON CONFLICT (name) DO UPDATE
               SET url = EXCLUDED.url, priority = EXCLUDED.priority, is_active = TRUE,
                   status = 'verified', last_verified_at = now(), live_calls = 0, failure_reason = NULL"#,
            name,
            url,
            priority,
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Refreshes this server's row. Returns `false` if the row is gone or an operator
    /// deactivated it (which the heartbeat respects: it does not reactivate the server).
    pub async fn heartbeat_server(&self, name: &str, live_calls: i32) -> Result<bool, DbError> {
        let result = sqlx::query!(
            r#"UPDATE websocket_servers
               SET last_verified_at = now(), status = 'verified', live_calls = $2
               WHERE name = $1 AND is_active"#,
            name,
            live_calls.max(0),
        )
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Whether a row for `name` exists at all (active or not).
    pub async fn server_exists(&self, name: &str) -> Result<bool, DbError> {
        let exists = sqlx::query_scalar!(
            r#"SELECT EXISTS (SELECT 1 FROM websocket_servers WHERE name = $1) AS "exists!""#,
            name
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(exists)
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

    /// The best server for a new stream: active, verified, heard from within `fresh_within`;
    /// highest priority first, then fewest live calls, then the most recently verified.
    pub async fn pick_stream_server(
        &self,
        fresh_within: Duration,
    ) -> Result<Option<StreamServer>, DbError> {
        let fresh_secs = fresh_within.as_secs_f64();
        let server = sqlx::query_as!(
            StreamServer,
            r#"SELECT name, url, is_active, status, priority, live_calls, last_verified_at
               FROM websocket_servers
               WHERE is_active AND status = 'verified'
                 AND last_verified_at > now() - make_interval(secs => $1)
               ORDER BY priority DESC, live_calls ASC, last_verified_at DESC
               LIMIT 1"#,
            fresh_secs,
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(server)
    }

    /// One server's row, by name.
    pub async fn stream_server(&self, name: &str) -> Result<Option<StreamServer>, DbError> {
        let server = sqlx::query_as!(
            StreamServer,
            r#"SELECT name, url, is_active, status, priority, live_calls, last_verified_at
               FROM websocket_servers WHERE name = $1"#,
            name
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(server)
    }
}
