//! API tokens (`api_tokens`): only the SHA-256 of a secret is stored; a request finds its token
//! by that hash. `last_used_at` is refreshed at most once a minute per token, so a busy client
//! costs one indexed read per request, not a write.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Database, DbError};

/// A token as authentication needs it.
#[derive(Debug, Clone)]
pub struct TokenRow {
    pub id: Uuid,
    pub organization_id: Uuid,
    pub scopes: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// A token as an operator lists it: never its secret or hash.
#[derive(Debug, Clone)]
pub struct TokenSummary {
    pub id: Uuid,
    pub name: String,
    pub prefix: String,
    pub scopes: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// A token to store.
#[derive(Debug, Clone)]
pub struct NewTokenRow<'a> {
    pub organization_id: Uuid,
    pub name: &'a str,
    pub hash: &'a [u8],
    pub prefix: &'a str,
    pub scopes: &'a [String],
    pub expires_at: Option<DateTime<Utc>>,
}

impl Database {
    /// Stores a token; `None` when the organization does not exist.
    pub async fn insert_api_token(&self, token: &NewTokenRow<'_>) -> Result<Option<Uuid>, DbError> {
        let id = sqlx::query_scalar!(
            r#"INSERT INTO api_tokens (organization_id, name, token_hash, token_prefix, scopes, expires_at)
               SELECT o.id, $2, $3, $4, $5, $6 FROM organizations o WHERE o.id = $1
               RETURNING id"#,
            token.organization_id,
            token.name,
            token.hash,
            token.prefix,
            token.scopes,
            token.expires_at,
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(id)
    }

    /// The token whose secret hashes to `hash`, whatever its state.
    pub async fn api_token_by_hash(&self, hash: &[u8]) -> Result<Option<TokenRow>, DbError> {
        let row = sqlx::query_as!(
            TokenRow,
            r#"SELECT id, organization_id, scopes, expires_at, revoked_at, last_used_at
               FROM api_tokens WHERE token_hash = $1"#,
            hash,
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(row)
    }

    /// Records a use, unless one was recorded in the last minute (the condition keeps
    /// concurrent requests from all writing).
    pub async fn touch_api_token(&self, id: Uuid) -> Result<(), DbError> {
        sqlx::query!(
            r#"UPDATE api_tokens SET last_used_at = now()
               WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')"#,
            id,
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// An organization's tokens, newest first.
    pub async fn api_tokens_of(&self, organization_id: Uuid) -> Result<Vec<TokenSummary>, DbError> {
        let rows = sqlx::query_as!(
            TokenSummary,
            r#"SELECT id, name, token_prefix AS prefix, scopes, created_at, expires_at, revoked_at,
                      last_used_at
               FROM api_tokens WHERE organization_id = $1
               ORDER BY created_at DESC, id"#,
            organization_id,
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    /// Revokes one of the organization's tokens (the dashboard); idempotent: a token revoked
    /// already keeps its first revocation. `false` if the organization has no such token.
    pub async fn revoke_organization_token(
        &self,
        organization_id: Uuid,
        id: Uuid,
    ) -> Result<bool, DbError> {
        let result = sqlx::query!(
            r#"UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now())
               WHERE organization_id = $1 AND id = $2"#,
            organization_id,
            id,
        )
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Revokes a token (tests and operators); `false` if there is no such live token.
    pub async fn revoke_api_token(&self, id: Uuid) -> Result<bool, DbError> {
        let result = sqlx::query!(
            "UPDATE api_tokens SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL",
            id,
        )
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }
}
