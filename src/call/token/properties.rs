//! Property tests of stream tokens: any text is refused with a typed error, never a panic; a
//! signed token gives back its claims until it expires, and any change to it is refused.

use proptest::prelude::*;

use super::*;

fn claims() -> impl Strategy<Value = StreamClaims> {
    (
        any::<String>(),
        any::<u128>(),
        any::<u128>(),
        any::<bool>(),
        any::<i64>(),
        any::<String>(),
        any::<bool>(),
    )
        .prop_map(
            |(call_sid, lead, campaign, inbound, expires_at, nonce, resume)| StreamClaims {
                call_sid,
                lead_id: Uuid::from_u128(lead),
                campaign_id: Uuid::from_u128(campaign),
                inbound,
                expires_at,
                nonce,
                resume,
            },
        )
}

/// Characters a token is made of, and the separator.
const TOKEN_ALPHABET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.";

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn any_text_is_a_typed_refusal(
        secret in prop::collection::vec(any::<u8>(), 0..80),
        token in prop_oneof![any::<String>(), "[A-Za-z0-9_-]{0,300}[.][A-Za-z0-9_-]{0,60}"],
        now in any::<i64>(),
    ) {
        prop_assert!(verify(&secret, &token, now).is_err());
    }

    #[test]
    fn a_signed_token_verifies_until_it_expires_and_any_change_is_refused(
        secret in prop::collection::vec(any::<u8>(), 0..80),
        claims in claims(),
        at in any::<usize>(),
        with in prop::sample::select(TOKEN_ALPHABET.chars().collect::<Vec<_>>()),
        cut in any::<usize>(),
    ) {
        let token = sign(&secret, &claims);
        prop_assert_eq!(verify(&secret, &token, claims.expires_at), Ok(claims.clone()));
        prop_assert_eq!(verify(&secret, &token, i64::MIN), Ok(claims.clone()));
        if let Some(later) = claims.expires_at.checked_add(1) {
            prop_assert_eq!(verify(&secret, &token, later), Err(TokenError::Expired));
        }

        // One character replaced by another of the alphabet: the body no longer matches its
        // MAC, or the MAC is another (or not canonical base64).
        let index = at % token.len();
        if token.as_bytes()[index] != with as u8 {
            let mut changed = token.clone();
            changed.replace_range(index..=index, &with.to_string());
            prop_assert!(verify(&secret, &changed, i64::MIN).is_err(), "{}", changed);
        }
        // Cut short.
        let cut = cut % token.len();
        prop_assert!(verify(&secret, &token[..cut], i64::MIN).is_err());
    }
}
