//! The signed, expiring call token that `/plivo/answer` puts in the stream URL (pure).
//!
//! `base64url(claims JSON) "." base64url(HMAC-SHA256(secret, claims part))`. The claims say
//! which call, lead and campaign the stream belongs to, until when, and carry a nonce that the
//! upgrade claims once in the database, so a replayed URL is refused. When the database cannot
//! take the claim (an outage), the nonce is remembered in [`UnrecordedTokens`] instead, so the
//! gateway that accepted the token still refuses its replay.

use std::collections::HashMap;

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use uuid::Uuid;

use crate::domain::Direction;

/// What a stream token asserts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamClaims {
    /// Plivo's CallUUID.
    #[serde(rename = "c")]
    pub call_sid: String,
    #[serde(rename = "l")]
    pub lead_id: Uuid,
    #[serde(rename = "p")]
    pub campaign_id: Uuid,
    #[serde(rename = "d")]
    pub inbound: bool,
    /// Unix seconds after which the token is refused.
    #[serde(rename = "x")]
    pub expires_at: i64,
    #[serde(rename = "n")]
    pub nonce: String,
    /// A second stream for the same call, after a transfer nobody took: the agent resumes and
    /// offers a callback.
    #[serde(rename = "r", default, skip_serializing_if = "std::ops::Not::not")]
    pub resume: bool,
}

impl StreamClaims {
    pub fn direction(&self) -> Direction {
        if self.inbound {
            Direction::Inbound
        } else {
            Direction::Outbound
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed stream token")]
    Malformed,
    #[error("stream token signature mismatch")]
    BadSignature,
    #[error("stream token expired")]
    Expired,
}

/// Signs `claims` with `secret`.
pub fn sign(secret: &[u8], claims: &StreamClaims) -> String {
    let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims serialise"));
    let signature = URL_SAFE_NO_PAD.encode(mac(secret, body.as_bytes()).finalize().into_bytes());
    format!("{body}.{signature}")
}

/// Verifies a token at unix time `now` (constant-time signature check).
pub fn verify(secret: &[u8], token: &str, now: i64) -> Result<StreamClaims, TokenError> {
    let (body, signature) = token.split_once('.').ok_or(TokenError::Malformed)?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| TokenError::Malformed)?;
    mac(secret, body.as_bytes())
        .verify_slice(&signature)
        .map_err(|_| TokenError::BadSignature)?;
    let json = URL_SAFE_NO_PAD
        .decode(body)
        .map_err(|_| TokenError::Malformed)?;
    let claims: StreamClaims = serde_json::from_slice(&json).map_err(|_| TokenError::Malformed)?;
    if now > claims.expires_at {
        return Err(TokenError::Expired);
    }
    Ok(claims)
}

/// How many tokens accepted without a database claim one gateway remembers at once. Tokens
/// expire within minutes, so this is hundreds of new calls a minute for the length of an
/// outage (the dialer places a few a second for a whole account), in about 1 MiB.
pub const UNRECORDED_TOKENS_CAPACITY: usize = 10_000;

/// The nonces of stream tokens this gateway accepted while the database could not record
/// them, each until its token expires: a replay to this gateway is refused without the
/// database. Bounded: once full of live tokens, no more is accepted this way.
#[derive(Debug)]
pub struct UnrecordedTokens {
    capacity: usize,
    /// Nonce → the token's expiry (unix seconds).
    nonces: HashMap<String, i64>,
}

/// [`UnrecordedTokens`] holds as many unexpired tokens as it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0} stream tokens accepted without the database are remembered already")]
pub struct UnrecordedFull(pub usize);

impl Default for UnrecordedTokens {
    fn default() -> Self {
        Self::with_capacity(UNRECORDED_TOKENS_CAPACITY)
    }
}

impl UnrecordedTokens {
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            capacity,
            nonces: HashMap::new(),
        }
    }

    /// Whether `nonce` was accepted here already and its token has not expired at `now`.
    pub fn contains(&self, nonce: &str, now: i64) -> bool {
        self.nonces
            .get(nonce)
            .is_some_and(|expires_at| now <= *expires_at)
    }

    /// Remembers `claims`' nonce until its token expires. Expired entries are dropped first
    /// (the set is small and only written during an outage); full of live ones, it refuses.
    pub fn insert(&mut self, claims: &StreamClaims, now: i64) -> Result<(), UnrecordedFull> {
        self.nonces.retain(|_, expires_at| now <= *expires_at);
        if self.nonces.len() >= self.capacity {
            return Err(UnrecordedFull(self.capacity));
        }
        self.nonces.insert(claims.nonce.clone(), claims.expires_at);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.nonces.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nonces.is_empty()
    }
}

fn mac(secret: &[u8], body: &[u8]) -> Hmac<Sha256> {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    mac
}

#[cfg(test)]
mod properties;

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> StreamClaims {
        StreamClaims {
            call_sid: "CA-1".into(),
            lead_id: Uuid::nil(),
            campaign_id: Uuid::max(),
            inbound: false,
            expires_at: 1_000,
            nonce: "n1".into(),
            resume: false,
        }
    }

    #[test]
    fn a_signed_token_verifies_until_it_expires() {
        let token = sign(b"secret", &claims());
        assert!(!token.contains(['+', '/', '=', '&']), "URL-safe: {token}");
        assert_eq!(verify(b"secret", &token, 999), Ok(claims()));
        assert_eq!(verify(b"secret", &token, 1_000), Ok(claims()));
        assert_eq!(verify(b"secret", &token, 1_001), Err(TokenError::Expired));
    }

    #[test]
    fn unrecorded_tokens_are_refused_until_they_expire_and_the_set_is_bounded() {
        let mut spent = UnrecordedTokens::with_capacity(2);
        let first = claims(); // expires at 1_000
        assert!(!spent.contains("n1", 0));
        spent.insert(&first, 0).unwrap();
        assert!(
            spent.contains("n1", 1_000),
            "a replay while the token lives"
        );
        assert!(
            !spent.contains("n1", 1_001),
            "an expired token is refused anyway"
        );
        let second = StreamClaims {
            nonce: "n2".into(),
            expires_at: 2_000,
            ..claims()
        };
        spent.insert(&second, 500).unwrap();
        let third = StreamClaims {
            nonce: "n3".into(),
            expires_at: 2_000,
            ..claims()
        };
        assert_eq!(
            spent.insert(&third, 900),
            Err(UnrecordedFull(2)),
            "full of live tokens"
        );
        assert!(!spent.contains("n3", 900));
        // Once the first token has expired its place is free again.
        spent.insert(&third, 1_001).unwrap();
        assert_eq!(spent.len(), 2);
        assert!(spent.contains("n2", 1_001) && spent.contains("n3", 1_001));
        assert!(!spent.contains("n1", 1_001));
    }

    #[test]
    fn tampering_and_other_secrets_are_refused() {
        let token = sign(b"secret", &claims());
        assert_eq!(verify(b"other", &token, 0), Err(TokenError::BadSignature));
        let mut forged = claims();
        forged.call_sid = "CA-2".into();
        let forged_body = sign(b"secret", &forged);
        let spliced = format!(
            "{}.{}",
            forged_body.split('.').next().unwrap(),
            token.split('.').nth(1).unwrap()
        );
        assert_eq!(
            verify(b"secret", &spliced, 0),
            Err(TokenError::BadSignature)
        );
        assert_eq!(verify(b"secret", "garbage", 0), Err(TokenError::Malformed));
        assert_eq!(verify(b"secret", "a.b!", 0), Err(TokenError::Malformed));
    }
}
