//! Signed, short-lived links to a recording (pure: time is a parameter).
//!
//! A browser's `<audio>` element cannot send a bearer token, so the API hands out
//! `/api/v1/recordings/{call_id}?exp=…&sig=…`: `sig` is HMAC-SHA256 over the call's id and the
//! expiry (Unix seconds), hex. The key is derived from `VG_STREAM_SECRET` (HMAC of a fixed
//! label), so every gateway sharing the secret accepts the link, and a stream token can never
//! pass for a link or the reverse.

use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use uuid::Uuid;

/// How long a link plays: long enough for a page with a player on it, short enough that a
/// link copied out of a browser is soon worthless.
pub const LINK_TTL: chrono::Duration = chrono::Duration::minutes(15);
/// Separates the link key from every other use of the stream secret.
const KEY_LABEL: &[u8] = b"voice-gateway recording link v1";

/// The key that signs links.
#[derive(Clone)]
pub struct LinkKey([u8; 32]);

/// Why a link is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("the link has expired")]
    Expired,
    #[error("the link's signature is not valid")]
    Forged,
}

impl LinkKey {
    /// The link key derived from the stream secret.
    pub fn derive(stream_secret: &[u8]) -> Self {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(stream_secret)
            .expect("HMAC takes any key length");
        mac.update(KEY_LABEL);
        Self(mac.finalize().into_bytes().into())
    }

    /// The query (`exp=…&sig=…`) of a link to `call_id`'s recording, valid until `expires`.
    pub fn sign(&self, call_id: Uuid, expires: DateTime<Utc>) -> String {
        let exp = expires.timestamp();
        let sig = hex::encode(self.mac(call_id, exp).finalize().into_bytes());
        format!("exp={exp}&sig={sig}")
    }

    /// Whether `exp` and `sig` make a valid link to `call_id` at `now`. The signature is
    /// checked first (in constant time), so an expired forgery says only "forged".
    pub fn verify(
        &self,
        call_id: Uuid,
        exp: i64,
        sig: &str,
        now: DateTime<Utc>,
    ) -> Result<(), LinkError> {
        let Ok(sig) = hex::decode(sig) else {
            return Err(LinkError::Forged);
        };
        self.mac(call_id, exp)
            .verify_slice(&sig)
            .map_err(|_| LinkError::Forged)?;
        if exp <= now.timestamp() {
            return Err(LinkError::Expired);
        }
        Ok(())
    }

    fn mac(&self, call_id: Uuid, exp: i64) -> Hmac<Sha256> {
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(call_id.as_bytes());
        mac.update(&exp.to_be_bytes());
        mac
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(query: &str) -> (i64, String) {
        let mut exp = 0;
        let mut sig = String::new();
        for pair in query.split('&') {
            match pair.split_once('=') {
                Some(("exp", value)) => exp = value.parse().unwrap(),
                Some(("sig", value)) => sig = value.to_owned(),
                _ => panic!("unexpected {pair}"),
            }
        }
        (exp, sig)
    }

    #[test]
    fn a_link_plays_until_it_expires_and_only_for_its_call() {
        let key = LinkKey::derive(b"a stream secret of at least 32 characters");
        let call = Uuid::new_v4();
        let now = Utc::now();
        let (exp, sig) = parts(&key.sign(call, now + LINK_TTL));
        assert_eq!(key.verify(call, exp, &sig, now), Ok(()));
        assert_eq!(
            key.verify(call, exp, &sig, now + LINK_TTL),
            Err(LinkError::Expired)
        );
        assert_eq!(
            key.verify(Uuid::new_v4(), exp, &sig, now),
            Err(LinkError::Forged)
        );
        assert_eq!(
            key.verify(call, exp + 3600, &sig, now),
            Err(LinkError::Forged),
            "a later expiry is not signed"
        );
        assert_eq!(key.verify(call, exp, "zz", now), Err(LinkError::Forged));
        let other = LinkKey::derive(b"another secret of at least 32 characters");
        assert_eq!(other.verify(call, exp, &sig, now), Err(LinkError::Forged));
    }
}
