//! API tokens: what a secret looks like, how it is hashed, the scopes it may carry, and
//! issuing one (the core of `voice-gateway token create`).
//!
//! A token is `vg_` and 43 characters of base64url (32 random bytes). Only its SHA-256 is
//! stored, with its first characters as a label; the secret is shown once, at creation.

use base64::Engine;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::db::{Database, DbError, tokens::NewTokenRow};

/// What every token starts with, so a leaked one is recognisable (secret scanners).
pub const TOKEN_PREFIX: &str = "vg_";
/// How many leading characters are kept in `api_tokens.token_prefix`.
const LABEL_CHARS: usize = 10;
const SECRET_BYTES: usize = 32;

/// What a token may do; spelled as `api_tokens.scopes`' CHECK spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    CampaignsRead,
    CampaignsWrite,
    LeadsRead,
    LeadsWrite,
    CallsRead,
    CallsWrite,
    SettingsRead,
    SettingsWrite,
}

impl Scope {
    pub const ALL: &'static [Self] = &[
        Self::CampaignsRead,
        Self::CampaignsWrite,
        Self::LeadsRead,
        Self::LeadsWrite,
        Self::CallsRead,
        Self::CallsWrite,
        Self::SettingsRead,
        Self::SettingsWrite,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::CampaignsRead => "campaigns:read",
            Self::CampaignsWrite => "campaigns:write",
            Self::LeadsRead => "leads:read",
            Self::LeadsWrite => "leads:write",
            Self::CallsRead => "calls:read",
            Self::CallsWrite => "calls:write",
            Self::SettingsRead => "settings:read",
            Self::SettingsWrite => "settings:write",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .copied()
            .find(|scope| scope.as_str() == text)
    }
}

/// A new token: the secret (shown once) and what is stored about it.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub id: Uuid,
    pub secret: String,
    pub prefix: String,
    pub scopes: Vec<Scope>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// A token to issue.
#[derive(Debug, Clone)]
pub struct TokenRequest<'a> {
    pub organization_id: Uuid,
    pub name: &'a str,
    pub scopes: &'a [Scope],
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("no organization with id {0}")]
    UnknownOrganization(Uuid),
    #[error("a token needs a name")]
    NoName,
    #[error("a token needs at least one scope (one of {})", scope_list())]
    NoScopes,
    #[error("the expiry {0} is in the past")]
    ExpiryInPast(DateTime<Utc>),
    #[error(transparent)]
    Db(#[from] DbError),
}

fn scope_list() -> String {
    Scope::ALL
        .iter()
        .map(|scope| scope.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The SHA-256 of a presented secret, as stored.
pub fn hash_secret(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// A fresh random secret.
pub fn generate_secret() -> String {
    let mut bytes = [0u8; SECRET_BYTES];
    getrandom::fill(&mut bytes).expect("the operating system's random source works");
    format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// `token list`'s table: one line per token, its state as of `now`.
pub fn token_table(tokens: &[crate::db::tokens::TokenSummary], now: DateTime<Utc>) -> String {
    use std::fmt::Write as _;
    let mut out = String::from(
        "id                                    prefix      state    last used             name (scopes)\n",
    );
    for token in tokens {
        let state = match (token.revoked_at, token.expires_at) {
            (Some(_), _) => "revoked",
            (None, Some(expires_at)) if expires_at <= now => "expired",
            _ => "live",
        };
        let last_used = token.last_used_at.map_or("never".to_owned(), |at| {
            at.format("%Y-%m-%d %H:%M UTC").to_string()
        });
        let _ = writeln!(
            out,
            "{}  {:<10}  {:<7}  {:<20}  {} ({})",
            token.id,
            token.prefix,
            state,
            last_used,
            token.name,
            token.scopes.join(",")
        );
    }
    out
}

/// Issues a token for an organization and stores its hash.
pub async fn create_token(
    db: &Database,
    request: &TokenRequest<'_>,
    now: DateTime<Utc>,
) -> Result<IssuedToken, TokenError> {
    let name = request.name.trim();
    if name.is_empty() {
        return Err(TokenError::NoName);
    }
    if request.scopes.is_empty() {
        return Err(TokenError::NoScopes);
    }
    if let Some(expires_at) = request.expires_at
        && expires_at <= now
    {
        return Err(TokenError::ExpiryInPast(expires_at));
    }
    let mut scopes = request.scopes.to_vec();
    scopes.sort();
    scopes.dedup();
    let secret = generate_secret();
    let prefix: String = secret.chars().take(LABEL_CHARS).collect();
    let scope_names: Vec<String> = scopes
        .iter()
        .map(|scope| scope.as_str().to_owned())
        .collect();
    let hash = hash_secret(&secret);
    let id = db
        .insert_api_token(&NewTokenRow {
            organization_id: request.organization_id,
            name,
            hash: &hash,
            prefix: &prefix,
            scopes: &scope_names,
            expires_at: request.expires_at,
        })
        .await?
        .ok_or(TokenError::UnknownOrganization(request.organization_id))?;
    Ok(IssuedToken {
        id,
        secret,
        prefix,
        scopes,
        expires_at: request.expires_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_prefixed_and_hash_to_32_bytes() {
        let first = generate_secret();
        let second = generate_secret();
        assert_ne!(first, second);
        assert!(first.starts_with(TOKEN_PREFIX));
        assert_eq!(first.len(), TOKEN_PREFIX.len() + 43);
        assert_eq!(hash_secret(&first), hash_secret(&first));
        assert_ne!(hash_secret(&first), hash_secret(&second));
    }

    #[test]
    fn scopes_round_trip() {
        for scope in Scope::ALL {
            assert_eq!(Scope::parse(scope.as_str()), Some(*scope));
        }
        assert_eq!(Scope::parse("campaigns:delete"), None);
    }
}
