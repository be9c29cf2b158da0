//! Dashboard sessions: a random id in an `HttpOnly; SameSite=Strict` cookie, only its SHA-256
//! in PostgreSQL (so any gateway of a fleet can read it, and a database leak opens no
//! session), the API token the manager signed in with (re-checked on every request: revoked
//! or expired, the session is deleted and the browser sent to sign in), and a CSRF secret
//! every form echoes.

use axum::{
    extract::FromRequestParts,
    http::{HeaderMap, header, request::Parts},
};
use chrono::{DateTime, Duration, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::DashError;
use crate::{api::tokens::Scope, db::dashboard::SessionRow, http::AppState};

/// The session cookie's name.
pub const COOKIE: &str = "vg_session";
/// How long a session lasts (the token's own expiry ends it sooner).
pub const SESSION_TTL: Duration = Duration::hours(12);

/// A signed-in request: the session's organization scopes every query.
#[derive(Debug, Clone)]
pub struct Session {
    pub organization_id: Uuid,
    pub token_id: Uuid,
    pub id_hash: [u8; 32],
    /// When the session's token expires (`None`: never); tokens made here cannot outlive it.
    pub token_expires_at: Option<DateTime<Utc>>,
    scopes: Vec<String>,
    csrf: String,
}

impl Session {
    /// The CSRF token forms carry.
    pub fn csrf(&self) -> &str {
        &self.csrf
    }

    /// Refuses (403) what the session's token has no scope for, as the API does.
    pub fn require(&self, scope: Scope) -> Result<(), DashError> {
        if self.allows(scope) {
            Ok(())
        } else {
            Err(DashError::Forbidden(format!(
                "your token lacks the scope {}",
                scope.as_str()
            )))
        }
    }

    /// The scopes of the session's token, as stored.
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }

    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.iter().any(|granted| granted == scope.as_str())
    }

    /// Refuses (403) a form whose CSRF token is not this session's.
    pub fn check_csrf(&self, sent: &str) -> Result<(), DashError> {
        if constant_time_eq(sent.as_bytes(), self.csrf.as_bytes()) {
            Ok(())
        } else {
            Err(DashError::Forbidden(
                "the form's CSRF token is not valid; reload the page and try again".to_owned(),
            ))
        }
    }
}

/// A new random session id (hex, for the cookie) and its hash (for the database).
pub fn new_session_id() -> (String, [u8; 32]) {
    let id = hex::encode(random_bytes());
    let hash = hash_id(&id);
    (id, hash)
}

pub fn random_bytes() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    bytes
}

fn hash_id(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

/// The `Set-Cookie` value that opens a session.
pub fn session_cookie(id: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/app; Max-Age={}{}",
        SESSION_TTL.num_seconds(),
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn cleared_cookie(secure: bool) -> String {
    format!(
        "{COOKIE}=; HttpOnly; SameSite=Strict; Path=/app; Max-Age=0{}",
        if secure { "; Secure" } else { "" }
    )
}

/// The session id a request's cookies carry.
pub fn cookie_value(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
        .filter(|value| !value.is_empty())
}

/// Whether a session row still stands at `now`: its token neither revoked nor expired.
pub fn token_valid(row: &SessionRow, now: DateTime<Utc>) -> bool {
    row.token_revoked_at.is_none() && row.token_expires_at.is_none_or(|expires| expires > now)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl FromRequestParts<AppState> for Session {
    type Rejection = DashError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, DashError> {
        let id = cookie_value(&parts.headers).ok_or(DashError::SignedOut)?;
        let id_hash = hash_id(id);
        let row = state
            .db
            .dashboard_session(&id_hash)
            .await?
            .ok_or(DashError::SignedOut)?;
        if !token_valid(&row, Utc::now()) {
            // The token is what the session stands on: without it, no session.
            state.db.delete_dashboard_session(&id_hash).await?;
            return Err(DashError::SignedOut);
        }
        Ok(Self {
            organization_id: row.organization_id,
            token_id: row.token_id,
            id_hash,
            token_expires_at: row.token_expires_at,
            scopes: row.scopes,
            csrf: hex::encode(&row.csrf_secret),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn the_cookie_is_found_among_others_and_carries_its_attributes() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; vg_session=abc; b=2"),
        );
        assert_eq!(cookie_value(&headers), Some("abc"));
        headers.insert(header::COOKIE, HeaderValue::from_static("vg_session="));
        assert_eq!(cookie_value(&headers), None);
        let cookie = session_cookie("abc", true);
        for attribute in ["HttpOnly", "SameSite=Strict", "Path=/app", "Secure"] {
            assert!(cookie.contains(attribute), "{cookie}");
        }
        assert!(!session_cookie("abc", false).contains("Secure"));
    }

    #[test]
    fn a_revoked_or_expired_token_ends_the_session() {
        let now = Utc::now();
        let row = |revoked: Option<DateTime<Utc>>, expires: Option<DateTime<Utc>>| SessionRow {
            token_id: Uuid::nil(),
            organization_id: Uuid::nil(),
            csrf_secret: vec![0; 32],
            scopes: vec![],
            token_revoked_at: revoked,
            token_expires_at: expires,
        };
        assert!(token_valid(&row(None, None), now));
        assert!(token_valid(
            &row(None, Some(now + Duration::minutes(1))),
            now
        ));
        assert!(!token_valid(&row(Some(now), None), now));
        assert!(!token_valid(&row(None, Some(now)), now));
    }

    #[test]
    fn csrf_comparison_needs_the_whole_token() {
        assert!(constant_time_eq(b"abcd", b"abcd"));
        assert!(!constant_time_eq(b"abcd", b"abce"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
