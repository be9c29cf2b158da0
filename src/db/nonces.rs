//! The nonces of accepted Plivo signatures (`plivo_webhook_nonces`): claimed once per signed
//! request before it acts, so a replay is refused on every gateway sharing the database;
//! released when the request failed on our side, so Plivo's own retry is not taken for one.

use std::time::Duration;

use super::{Database, DbError};
use crate::plivo::signature::SignatureVersion;

impl Database {
    /// Records the nonce of an accepted signature. `false` means it was seen before: a replay.
    pub async fn claim_webhook_nonce(
        &self,
        version: SignatureVersion,
        nonce: &str,
    ) -> Result<bool, DbError> {
        let result = sqlx::query!(
            r#"INSERT INTO plivo_webhook_nonces (version, nonce) VALUES ($1, $2)
               ON CONFLICT (version, nonce) DO NOTHING"#,
            version.as_str(),
            nonce
        )
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Forgets a claimed nonce whose request failed before it could act.
    pub async fn release_webhook_nonce(
        &self,
        version: SignatureVersion,
        nonce: &str,
    ) -> Result<(), DbError> {
        sqlx::query!(
            "DELETE FROM plivo_webhook_nonces WHERE version = $1 AND nonce = $2",
            version.as_str(),
            nonce
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Forgets nonces seen longer ago than `window`; returns how many.
    pub async fn prune_webhook_nonces(&self, window: Duration) -> Result<u64, DbError> {
        let result = sqlx::query!(
            "DELETE FROM plivo_webhook_nonces WHERE seen_at < now() - make_interval(secs => $1)",
            window.as_secs_f64()
        )
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected())
    }
}
