//! Property tests of webhook signature checks: any headers, URL and body (parsed as the
//! handler parses a form) end in `Ok` or a typed [`SignatureError`], never a panic; a request
//! signed as Plivo signs it verifies, and changing any signed part of it is refused.

use proptest::prelude::*;

use super::*;

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![Just(Method::Get), Just(Method::Post)]
}

/// URLs as they reach the check (always ours, rebuilt on the public base), and anything else.
fn url() -> impl Strategy<Value = String> {
    prop_oneof![
        "(https?|wss?)://[a-z0-9.-]{1,20}(:[0-9]{1,5})?(/[a-zA-Z0-9._~%-]{0,10}){0,4}([?][a-zA-Z0-9=&%+._-]{0,30})?(#[a-z]{0,5})?",
        any::<String>(),
        "[a-z]{0,5}:/{0,3}[^/?#]{0,10}[/?#]?.{0,20}",
    ]
}

/// A form body as Plivo posts it, or any bytes, decoded as the handler decodes it.
fn form() -> impl Strategy<Value = Vec<(String, String)>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200),
        "([A-Za-z0-9%+._-]{0,10}=[A-Za-z0-9%+._-]{0,20}&?){0,8}".prop_map(String::into_bytes),
    ]
    .prop_map(|body| form_urlencoded::parse(&body).into_owned().collect())
}

/// Header values: base64-looking, comma-separated lists of them, or anything.
fn header() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(prop_oneof![
        any::<String>(),
        "[A-Za-z0-9+/=]{0,60}",
        "([A-Za-z0-9+/]{43}=, ?){0,3}[A-Za-z0-9+/]{0,44}",
    ])
}

/// A URL that `verify_*` accepts as a URL (scheme and host), so the check reaches the MAC.
fn well_formed_url() -> impl Strategy<Value = String> {
    "https://[a-z0-9.-]{1,20}(/[a-zA-Z0-9._~-]{0,10}){0,4}([?][a-z]{1,5}=[a-zA-Z0-9]{0,8}(&[a-z]{1,5}=[a-zA-Z0-9]{0,8}){0,3})?"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn any_request_is_checked_without_panicking(
        token in prop::collection::vec(any::<u8>(), 0..80),
        method in method(),
        url in url(),
        params in form(),
        v3 in header(),
        v3_nonce in header(),
        v2 in header(),
        v2_nonce in header(),
    ) {
        let headers = SignatureHeaders {
            v3: v3.as_deref(),
            v3_nonce: v3_nonce.as_deref(),
            v2: v2.as_deref(),
            v2_nonce: v2_nonce.as_deref(),
        };
        // Nobody guesses an HMAC: whatever the input, it is a refusal, and a typed one.
        prop_assert!(verify_request(&token, method, &url, &params, &headers, V2Policy::Accept).is_err());
        let _ = v3_string_to_sign(method, &url, &params);
    }

    #[test]
    fn a_signed_request_verifies_and_any_change_to_it_is_refused(
        token in prop::collection::vec(any::<u8>(), 1..80),
        method in method(),
        url in well_formed_url(),
        params in form(),
        nonce in "[0-9]{1,24}",
        change in 0..6usize,
    ) {
        let signature = v3_signature(&token, method, &url, &params, &nonce);
        let headers = SignatureHeaders {
            v3: Some(&signature),
            v3_nonce: Some(&nonce),
            ..SignatureHeaders::default()
        };
        prop_assert_eq!(
            verify_request(&token, method, &url, &params, &headers, V2Policy::Refuse).map(|verified| verified.version),
            Ok(SignatureVersion::V3)
        );
        let v2 = v2_signature(&token, &url, &nonce);
        prop_assert_eq!(verify_v2(&token, &url, &nonce, &v2), Ok(()));

        // One signed part changed; every change makes the string to sign or the key differ.
        let mut token = token;
        let mut url = url;
        let mut params = params;
        let mut nonce = nonce;
        let mut signature = signature;
        match change {
            0 => token.push(b'x'),
            1 => match url.find(['?', '#']) {
                Some(at) => url.insert(at, 'x'),
                None => url.push('x'),
            },
            2 if method == Method::Post => params.push(("extra".to_owned(), "x".to_owned())),
            2 => url.push_str(if url.contains('?') { "&extra=x" } else { "?extra=x" }),
            3 => nonce.push('1'),
            4 => signature = signature.replacen(|_: char| true, if signature.starts_with('A') { "B" } else { "A" }, 1),
            _ => signature.insert(0, 'A'),
        }
        let headers = SignatureHeaders {
            v3: Some(&signature),
            v3_nonce: Some(&nonce),
            ..SignatureHeaders::default()
        };
        prop_assert_eq!(
            verify_request(&token, method, &url, &params, &headers, V2Policy::Accept).map(|_| ()),
            Err(SignatureError::Mismatch)
        );
    }
}
