//! Bearer authentication: every `/api/v1` route but the OpenAPI document names the scope it
//! needs in the route table; this layer finds the token by its hash, refuses a missing, unknown,
//! revoked or expired one (401) or one without the scope (403), and hands the handler the
//! token's organization, which scopes every query after it.

use std::time::Duration;

use axum::{
    extract::Request,
    http::{HeaderMap, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use chrono::Utc;
use uuid::Uuid;

use super::{
    error::ApiError,
    tokens::{Scope, hash_secret},
};
use crate::db::Database;

/// `last_used_at` is refreshed when older than this: one write a minute per busy token.
const LAST_USED_RESOLUTION: Duration = Duration::from_secs(60);

/// Who is calling: the request's extension, set by [`authenticate`].
#[derive(Debug, Clone)]
pub struct Auth {
    pub organization_id: Uuid,
    pub token_id: Uuid,
}

/// Checks the bearer token for `scope` and runs the handler with an [`Auth`].
pub async fn authenticate(
    db: Database,
    scope: Scope,
    mut request: Request,
    next: Next,
) -> Response {
    match check(&db, request.headers(), scope).await {
        Ok(auth) => {
            request.extensions_mut().insert(auth);
            next.run(request).await
        }
        Err(error) => error.into_response(),
    }
}

async fn check(db: &Database, headers: &HeaderMap, scope: Scope) -> Result<Auth, ApiError> {
    let unauthorized = |code, message: &str| ApiError::new(StatusCode::UNAUTHORIZED, code, message);
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(unauthorized(
            "missing_token",
            "send Authorization: Bearer <token>",
        ));
    };
    let secret = value
        .to_str()
        .ok()
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, secret)| secret.trim())
        .filter(|secret| !secret.is_empty())
        .ok_or_else(|| {
            unauthorized(
                "missing_token",
                "the Authorization header is not Bearer <token>",
            )
        })?;
    let Some(token) = db.api_token_by_hash(&hash_secret(secret)).await? else {
        return Err(unauthorized("invalid_token", "the token is not valid"));
    };
    let now = Utc::now();
    if token.revoked_at.is_some() {
        return Err(unauthorized("token_revoked", "the token was revoked"));
    }
    if token.expires_at.is_some_and(|expires_at| expires_at <= now) {
        return Err(unauthorized("token_expired", "the token has expired"));
    }
    if !token.scopes.iter().any(|granted| granted == scope.as_str()) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            format!("the token lacks the scope {}", scope.as_str()),
        ));
    }
    let stale = token
        .last_used_at
        .is_none_or(|used| (now - used).to_std().unwrap_or_default() >= LAST_USED_RESOLUTION);
    if stale && let Err(error) = db.touch_api_token(token.id).await {
        // Bookkeeping only: the request goes on.
        tracing::warn!(%error, "could not record the token's use");
    }
    Ok(Auth {
        organization_id: token.organization_id,
        token_id: token.id,
    })
}
