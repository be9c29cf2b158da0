//! X-Plivo-Signature-V3 and V2 webhook signature validation (pure).
//!
//! V3 follows plivo-python `utils/signature_v3.py` and plivo-node `lib/utils/v3Security.js`:
//! the string to sign is built from the callback URL (scheme, netloc and raw path), its sorted
//! query parameters and, for POST, the sorted form fields; it is then signed with
//! HMAC-SHA256 keyed by the auth token, over `string + "." + nonce`. V2 (legacy) signs only the
//! URL without its query, immediately followed by the nonce: one captured V2 header pair is
//! valid with any parameters, which is why [`verify_request`] accepts it only under
//! [`V2Policy::Accept`].

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The HTTP method Plivo used for the callback; it changes how the string to sign is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

/// Why a request's signature was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing signature header")]
    Missing,
    #[error("missing signature nonce")]
    MissingNonce,
    #[error("only X-Plivo-Signature-V3 is accepted and the request has only V2")]
    V2Refused,
    #[error("signature mismatch")]
    Mismatch,
    #[error("malformed url: {0}")]
    MalformedUrl(String),
}

/// Which of Plivo's signatures accepted a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureVersion {
    V2,
    V3,
}

impl SignatureVersion {
    /// The spelling in `plivo_webhook_nonces.version`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V2 => "v2",
            Self::V3 => "v3",
        }
    }
}

/// What to do with a request that carries only the legacy V2 signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum V2Policy {
    /// Refuse it: V2 covers neither the query nor the body.
    Refuse,
    /// Verify it (`VG_PLIVO_ACCEPT_V2=true`).
    Accept,
}

/// An accepted signature: its version and the nonce a replay would repeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified<'a> {
    pub version: SignatureVersion,
    pub nonce: &'a str,
}

/// The headers, as found on a request, and which one to use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SignatureHeaders<'a> {
    /// `X-Plivo-Signature-V3`
    pub v3: Option<&'a str>,
    /// `X-Plivo-Signature-V3-Nonce`
    pub v3_nonce: Option<&'a str>,
    /// `X-Plivo-Signature-V2`
    pub v2: Option<&'a str>,
    /// `X-Plivo-Signature-V2-Nonce`
    pub v2_nonce: Option<&'a str>,
}

/// Builds the V3 string to sign (without the ".nonce" suffix). `params` are the decoded form
/// fields for POST, or extra query params for GET (may be empty).
///
/// For GET, `params` are added to the URL's own query parameters (values of a repeated key are
/// kept side by side), so callers must not pass the URL's query a second time. A URL that
/// cannot be split into scheme and authority is used verbatim up to its query; the `verify_*`
/// functions reject such URLs with [`SignatureError::MalformedUrl`] before getting here.
pub fn v3_string_to_sign(method: Method, url: &str, params: &[(String, String)]) -> String {
    let parts = split_url(url).unwrap_or_else(|_| verbatim_parts(url));

    let mut query: Vec<(String, String)> = form_urlencoded::parse(parts.query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if method == Method::Get {
        query.extend(params.iter().cloned());
    }
    // Sorting (key, value) pairs equals sorting keys, then each key's values.
    query.sort();
    let qs = query
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");

    let mut out = parts.base;
    let post_params = match method {
        Method::Post if !params.is_empty() => Some(params),
        _ => None,
    };
    match post_params {
        None => {
            if !qs.is_empty() {
                out.push('?');
                out.push_str(&qs);
            }
        }
        Some(fields) => {
            // Plivo adds the `?` even when the query is empty, and the `.` only when it is not.
            out.push('?');
            if !qs.is_empty() {
                out.push_str(&qs);
                out.push('.');
            }
            let mut sorted: Vec<&(String, String)> = fields.iter().collect();
            sorted.sort();
            for (k, v) in sorted {
                out.push_str(k);
                out.push_str(v);
            }
        }
    }
    out
}

/// base64(HMAC-SHA256(token, string_to_sign + "." + nonce))
pub fn v3_signature(
    auth_token: &[u8],
    method: Method,
    url: &str,
    params: &[(String, String)],
    nonce: &str,
) -> String {
    BASE64.encode(
        v3_mac(auth_token, method, url, params, nonce)
            .finalize()
            .into_bytes(),
    )
}

/// Checks a header value (possibly several comma-separated signatures) in constant time.
pub fn verify_v3(
    auth_token: &[u8],
    method: Method,
    url: &str,
    params: &[(String, String)],
    nonce: &str,
    header: &str,
) -> Result<(), SignatureError> {
    split_url(url)?;
    verify_any(v3_mac(auth_token, method, url, params, nonce), header)
}

/// base64(HMAC-SHA256(token, url_without_query + nonce))
pub fn v2_signature(auth_token: &[u8], url: &str, nonce: &str) -> String {
    BASE64.encode(v2_mac(auth_token, url, nonce).finalize().into_bytes())
}

/// Checks a V2 header value (possibly several comma-separated signatures) in constant time.
pub fn verify_v2(
    auth_token: &[u8],
    url: &str,
    nonce: &str,
    header: &str,
) -> Result<(), SignatureError> {
    split_url(url)?;
    verify_any(v2_mac(auth_token, url, nonce), header)
}

/// Verifies V3 when present; else V2 if `v2` accepts it; missing headers are an error. A bad
/// V3 is never rescued by a good V2.
pub fn verify_request<'a>(
    auth_token: &[u8],
    method: Method,
    url: &str,
    params: &[(String, String)],
    headers: &SignatureHeaders<'a>,
    v2: V2Policy,
) -> Result<Verified<'a>, SignatureError> {
    match (headers.v3, headers.v2, v2) {
        (Some(sig), _, _) => {
            let nonce = headers.v3_nonce.ok_or(SignatureError::MissingNonce)?;
            verify_v3(auth_token, method, url, params, nonce, sig)?;
            Ok(Verified {
                version: SignatureVersion::V3,
                nonce,
            })
        }
        (None, Some(_), V2Policy::Refuse) => Err(SignatureError::V2Refused),
        (None, Some(sig), V2Policy::Accept) => {
            let nonce = headers.v2_nonce.ok_or(SignatureError::MissingNonce)?;
            verify_v2(auth_token, url, nonce, sig)?;
            Ok(Verified {
                version: SignatureVersion::V2,
                nonce,
            })
        }
        (None, None, _) => Err(SignatureError::Missing),
    }
}

/// A callback URL split the way Python's `urlparse` does, without any normalisation.
struct UrlParts<'a> {
    /// `scheme://netloc/path`, exactly as written (an empty path stays empty).
    base: String,
    /// The raw query, without `?` and fragment.
    query: &'a str,
}

/// Splits by hand because the `url` crate turns an empty path into `/`, which changes the
/// signature.
fn split_url(url: &str) -> Result<UrlParts<'_>, SignatureError> {
    let malformed = || SignatureError::MalformedUrl(url.to_owned());
    let (scheme, rest) = url.split_once("://").ok_or_else(malformed)?;
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    let netloc_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    if !scheme_ok || netloc_end == 0 {
        return Err(malformed());
    }
    let without_fragment = match rest.split_once('#') {
        Some((before, _)) => before,
        None => rest,
    };
    let (location, query) = match without_fragment.split_once('?') {
        Some((location, query)) => (location, query),
        None => (without_fragment, ""),
    };
    Ok(UrlParts {
        base: format!("{scheme}://{location}"),
        query,
    })
}

/// The lenient fallback for [`v3_string_to_sign`], which cannot fail.
fn verbatim_parts(url: &str) -> UrlParts<'_> {
    let without_fragment = match url.split_once('#') {
        Some((before, _)) => before,
        None => url,
    };
    match without_fragment.split_once('?') {
        Some((base, query)) => UrlParts {
            base: base.to_owned(),
            query,
        },
        None => UrlParts {
            base: without_fragment.to_owned(),
            query: "",
        },
    }
}

type HmacSha256 = Hmac<Sha256>;

fn new_mac(auth_token: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length (long ones are hashed), so this cannot fail.
    <HmacSha256 as KeyInit>::new_from_slice(auth_token).expect("hmac accepts keys of any length")
}

fn v3_mac(
    auth_token: &[u8],
    method: Method,
    url: &str,
    params: &[(String, String)],
    nonce: &str,
) -> HmacSha256 {
    let mut mac = new_mac(auth_token);
    mac.update(v3_string_to_sign(method, url, params).as_bytes());
    mac.update(b".");
    mac.update(nonce.as_bytes());
    mac
}

fn v2_mac(auth_token: &[u8], url: &str, nonce: &str) -> HmacSha256 {
    let base = split_url(url).unwrap_or_else(|_| verbatim_parts(url)).base;
    let mut mac = new_mac(auth_token);
    mac.update(base.as_bytes());
    mac.update(nonce.as_bytes());
    mac
}

/// Accepts if any comma-separated candidate matches; each comparison is constant-time
/// (`verify_slice`), and undecodable candidates simply do not match.
fn verify_any(mac: HmacSha256, header: &str) -> Result<(), SignatureError> {
    let mut matched = false;
    for candidate in header.split(',') {
        // No early exit, so timing does not reveal which candidate matched.
        matched |= match BASE64.decode(candidate.trim()) {
            Ok(tag) => mac.clone().verify_slice(&tag).is_ok(),
            Err(_) => false,
        };
    }
    if matched {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod properties;

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &[u8] = b"my_auth_token";
    const NONCE: &str = "05429567804466091622";

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// Checks both the string to sign and the signature, and that the signature verifies.
    fn check_vector(
        method: Method,
        url: &str,
        fields: &[(&str, &str)],
        expected_string: &str,
        expected_sig: &str,
    ) {
        let p = params(fields);
        assert_eq!(v3_string_to_sign(method, url, &p), expected_string);
        assert_eq!(v3_signature(TOKEN, method, url, &p, NONCE), expected_sig);
        assert_eq!(
            verify_v3(TOKEN, method, url, &p, NONCE, expected_sig),
            Ok(())
        );
    }

    #[test]
    fn vector_post_with_params() {
        check_vector(
            Method::Post,
            "https://example.com/answer",
            &[
                ("CallUUID", "abc"),
                ("From", "14155551234"),
                ("To", "14155550000"),
            ],
            "https://example.com/answer?CallUUIDabcFrom14155551234To14155550000",
            "aj4JEPIupGxOLktcBylM568R9jOllGOhiXEeO62iEEw=",
        );
    }

    #[test]
    fn vector_post_with_params_unsorted_input() {
        check_vector(
            Method::Post,
            "https://example.com/answer",
            &[
                ("To", "14155550000"),
                ("CallUUID", "abc"),
                ("From", "14155551234"),
            ],
            "https://example.com/answer?CallUUIDabcFrom14155551234To14155550000",
            "aj4JEPIupGxOLktcBylM568R9jOllGOhiXEeO62iEEw=",
        );
    }

    #[test]
    fn vector_post_with_query_and_params() {
        check_vector(
            Method::Post,
            "https://example.com/answer?x=1&a=2",
            &[("CallUUID", "abc"), ("From", "14155551234")],
            "https://example.com/answer?a=2&x=1.CallUUIDabcFrom14155551234",
            "Nu+dJWs9gz+Xnd9b1YwxWx5jcVVLoPGTTzFUcm3U2jk=",
        );
    }

    #[test]
    fn vector_post_without_params() {
        check_vector(
            Method::Post,
            "https://example.com/answer",
            &[],
            "https://example.com/answer",
            "pT2ohZ0edZd668UxiYAFn+K8aG5paMBnH/XDztzZrx4=",
        );
    }

    #[test]
    fn vector_get_sorted_query() {
        check_vector(
            Method::Get,
            "https://example.com/answer?b=2&a=1",
            &[],
            "https://example.com/answer?a=1&b=2",
            "F5cmywesHpi+4l15eTJiB83C394J1wImHJ4YL0nnW3Y=",
        );
    }

    #[test]
    fn vector_get_websocket_url() {
        check_vector(
            Method::Get,
            "wss://example.com/stream?body=xyz",
            &[],
            "wss://example.com/stream?body=xyz",
            "cpOKTSXqghsAOaVPdxtYCmZ8Ud2MB6yQXfNTHmatHnY=",
        );
    }

    #[test]
    fn post_without_params_keeps_query() {
        let s = v3_string_to_sign(Method::Post, "https://example.com/answer?b=2&a=1", &[]);
        assert_eq!(s, "https://example.com/answer?a=1&b=2");
    }

    #[test]
    fn post_with_params_and_empty_query_marker() {
        // A bare `?` with nothing after it is an empty query, not a parameter.
        let s = v3_string_to_sign(
            Method::Post,
            "https://example.com/answer?",
            &params(&[("A", "1")]),
        );
        assert_eq!(s, "https://example.com/answer?A1");
    }

    #[test]
    fn post_repeated_field_values_sorted() {
        let s = v3_string_to_sign(
            Method::Post,
            "https://example.com/answer",
            &params(&[("b", "2"), ("a", "z"), ("a", "y")]),
        );
        assert_eq!(s, "https://example.com/answer?ayazb2");
    }

    #[test]
    fn post_params_are_not_reencoded() {
        let s = v3_string_to_sign(
            Method::Post,
            "https://example.com/answer",
            &params(&[("Text", "hi there & bye"), ("From", "+14155551234")]),
        );
        assert_eq!(
            s,
            "https://example.com/answer?From+14155551234Texthi there & bye"
        );
    }

    #[test]
    fn get_merges_extra_params() {
        let s = v3_string_to_sign(
            Method::Get,
            "https://example.com/answer?b=2",
            &params(&[("a", "1"), ("c", "3")]),
        );
        assert_eq!(s, "https://example.com/answer?a=1&b=2&c=3");
    }

    #[test]
    fn get_extra_params_without_query() {
        let s = v3_string_to_sign(
            Method::Get,
            "https://example.com/answer",
            &params(&[("a", "1")]),
        );
        assert_eq!(s, "https://example.com/answer?a=1");
    }

    #[test]
    fn get_merged_key_values_sorted_together() {
        let s = v3_string_to_sign(
            Method::Get,
            "https://example.com/answer?a=3",
            &params(&[("a", "1")]),
        );
        assert_eq!(s, "https://example.com/answer?a=1&a=3");
    }

    #[test]
    fn query_repeated_values_sorted() {
        let s = v3_string_to_sign(
            Method::Get,
            "https://example.com/answer?k=c&j=1&k=a&k=b",
            &[],
        );
        assert_eq!(s, "https://example.com/answer?j=1&k=a&k=b&k=c");
    }

    #[test]
    fn query_percent_decoding_and_plus() {
        let s = v3_string_to_sign(
            Method::Get,
            "https://example.com/answer?name=John+Doe&to=%2B14155551234&msg=a%26b%3Dc",
            &[],
        );
        assert_eq!(
            s,
            "https://example.com/answer?msg=a&b=c&name=John Doe&to=+14155551234"
        );
    }

    #[test]
    fn query_blank_values_kept() {
        let s = v3_string_to_sign(Method::Get, "https://example.com/answer?b=&a", &[]);
        assert_eq!(s, "https://example.com/answer?a=&b=");
    }

    #[test]
    fn port_kept_in_netloc() {
        let s = v3_string_to_sign(Method::Get, "https://example.com:8443/answer?a=1", &[]);
        assert_eq!(s, "https://example.com:8443/answer?a=1");
        let s = v3_string_to_sign(Method::Post, "https://example.com:8443/answer", &[]);
        assert_eq!(s, "https://example.com:8443/answer");
    }

    #[test]
    fn trailing_slash_preserved() {
        let s = v3_string_to_sign(Method::Post, "https://example.com/answer/", &[]);
        assert_eq!(s, "https://example.com/answer/");
        let s = v3_string_to_sign(Method::Get, "https://example.com/?a=1", &[]);
        assert_eq!(s, "https://example.com/?a=1");
    }

    #[test]
    fn empty_path_stays_empty() {
        let s = v3_string_to_sign(Method::Get, "https://example.com?a=1", &[]);
        assert_eq!(s, "https://example.com?a=1");
        let s = v3_string_to_sign(Method::Post, "https://example.com", &[]);
        assert_eq!(s, "https://example.com");
    }

    #[test]
    fn fragment_dropped() {
        let s = v3_string_to_sign(Method::Get, "https://example.com/answer?a=1#frag", &[]);
        assert_eq!(s, "https://example.com/answer?a=1");
        let s = v3_string_to_sign(Method::Get, "https://example.com/answer#frag?a=1", &[]);
        assert_eq!(s, "https://example.com/answer");
    }

    #[test]
    fn raw_path_not_decoded() {
        let s = v3_string_to_sign(Method::Post, "https://example.com/a%20b", &[]);
        assert_eq!(s, "https://example.com/a%20b");
    }

    #[test]
    fn multiple_signatures_one_valid() {
        let url = "https://example.com/answer";
        let p = params(&[
            ("CallUUID", "abc"),
            ("From", "14155551234"),
            ("To", "14155550000"),
        ]);
        let header = "pT2ohZ0edZd668UxiYAFn+K8aG5paMBnH/XDztzZrx4=, \
                      aj4JEPIupGxOLktcBylM568R9jOllGOhiXEeO62iEEw=";
        assert_eq!(
            verify_v3(TOKEN, Method::Post, url, &p, NONCE, header),
            Ok(())
        );
        let header = "not base64!,aj4JEPIupGxOLktcBylM568R9jOllGOhiXEeO62iEEw=";
        assert_eq!(
            verify_v3(TOKEN, Method::Post, url, &p, NONCE, header),
            Ok(())
        );
    }

    #[test]
    fn multiple_signatures_none_valid() {
        let header = "pT2ohZ0edZd668UxiYAFn+K8aG5paMBnH/XDztzZrx4=,,garbage";
        let p = params(&[("CallUUID", "abc")]);
        assert_eq!(
            verify_v3(
                TOKEN,
                Method::Post,
                "https://example.com/answer",
                &p,
                NONCE,
                header
            ),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn empty_header_is_mismatch() {
        assert_eq!(
            verify_v3(
                TOKEN,
                Method::Post,
                "https://example.com/answer",
                &[],
                NONCE,
                ""
            ),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn tampered_param_is_mismatch() {
        let p = params(&[
            ("CallUUID", "abc"),
            ("From", "14155551234"),
            ("To", "14155559999"),
        ]);
        assert_eq!(
            verify_v3(
                TOKEN,
                Method::Post,
                "https://example.com/answer",
                &p,
                NONCE,
                "aj4JEPIupGxOLktcBylM568R9jOllGOhiXEeO62iEEw="
            ),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn tampered_nonce_and_url_are_mismatch() {
        let sig = "F5cmywesHpi+4l15eTJiB83C394J1wImHJ4YL0nnW3Y=";
        let url = "https://example.com/answer?b=2&a=1";
        assert_eq!(
            verify_v3(TOKEN, Method::Get, url, &[], "05429567804466091623", sig),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_v3(
                TOKEN,
                Method::Get,
                "https://example.com/answer?b=3&a=1",
                &[],
                NONCE,
                sig
            ),
            Err(SignatureError::Mismatch)
        );
        // The method matters only through the params, but a POST with fields differs.
        assert_eq!(
            verify_v3(TOKEN, Method::Post, url, &params(&[("a", "1")]), NONCE, sig),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn wrong_token_is_mismatch() {
        assert_eq!(
            verify_v3(
                b"other_token",
                Method::Get,
                "https://example.com/answer?b=2&a=1",
                &[],
                NONCE,
                "F5cmywesHpi+4l15eTJiB83C394J1wImHJ4YL0nnW3Y="
            ),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn truncated_signature_is_mismatch() {
        // Decodes fine but is shorter than a SHA-256 tag.
        assert_eq!(
            verify_v3(
                TOKEN,
                Method::Get,
                "https://example.com/answer?b=2&a=1",
                &[],
                NONCE,
                "F5cmywesHpi+4l15eTJiB83C394J1wImHJ4YL0nn"
            ),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn v2_vector() {
        let sig = "ehV3IKhLysWBxC1sy8INm0qGoQYdYsHwuoKjsX7FsXc=";
        assert_eq!(v2_signature(TOKEN, "https://answer.url", "12345"), sig);
        assert_eq!(verify_v2(TOKEN, "https://answer.url", "12345", sig), Ok(()));
        // V2 ignores the query.
        assert_eq!(v2_signature(TOKEN, "https://answer.url?a=1", "12345"), sig);
        assert_eq!(
            verify_v2(TOKEN, "https://answer.url", "12346", sig),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_v2(b"wrong", "https://answer.url", "12345", sig),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn malformed_url_rejected() {
        for url in [
            "answer",
            "://example.com/x",
            "https:///x",
            "1http://example.com",
            "",
        ] {
            assert_eq!(
                verify_v3(TOKEN, Method::Get, url, &[], NONCE, "x"),
                Err(SignatureError::MalformedUrl(url.to_owned())),
                "{url}"
            );
            assert_eq!(
                verify_v2(TOKEN, url, NONCE, "x"),
                Err(SignatureError::MalformedUrl(url.to_owned())),
                "{url}"
            );
        }
    }

    #[test]
    fn string_to_sign_is_lenient_on_malformed_url() {
        assert_eq!(
            v3_string_to_sign(Method::Get, "answer?b=1&a=2", &[]),
            "answer?a=2&b=1"
        );
    }

    #[test]
    fn request_prefers_v3() {
        let p = params(&[("CallUUID", "abc"), ("From", "14155551234")]);
        let url = "https://example.com/answer?x=1&a=2";
        let headers = SignatureHeaders {
            v3: Some("Nu+dJWs9gz+Xnd9b1YwxWx5jcVVLoPGTTzFUcm3U2jk="),
            v3_nonce: Some(NONCE),
            v2: Some("bogus"),
            v2_nonce: Some("12345"),
        };
        for policy in [V2Policy::Refuse, V2Policy::Accept] {
            assert_eq!(
                verify_request(TOKEN, Method::Post, url, &p, &headers, policy),
                Ok(Verified {
                    version: SignatureVersion::V3,
                    nonce: NONCE
                }),
                "{policy:?}"
            );
        }

        // A bad V3 is not rescued by a good V2.
        let headers = SignatureHeaders {
            v3: Some("bogus"),
            v3_nonce: Some(NONCE),
            v2: Some("ehV3IKhLysWBxC1sy8INm0qGoQYdYsHwuoKjsX7FsXc="),
            v2_nonce: Some("12345"),
        };
        assert_eq!(
            verify_request(
                TOKEN,
                Method::Post,
                "https://answer.url",
                &[],
                &headers,
                V2Policy::Accept
            ),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn v2_alone_is_refused_unless_accepted() {
        let headers = SignatureHeaders {
            v2: Some("ehV3IKhLysWBxC1sy8INm0qGoQYdYsHwuoKjsX7FsXc="),
            v2_nonce: Some("12345"),
            ..SignatureHeaders::default()
        };
        let form = params(&[("a", "1")]);
        assert_eq!(
            verify_request(
                TOKEN,
                Method::Post,
                "https://answer.url",
                &form,
                &headers,
                V2Policy::Refuse
            ),
            Err(SignatureError::V2Refused)
        );
        // Accepted, the same header pair verifies whatever the parameters: why it is opt-in.
        for form in [params(&[("a", "1")]), params(&[("Machine", "true")])] {
            assert_eq!(
                verify_request(
                    TOKEN,
                    Method::Post,
                    "https://answer.url?lead_id=any",
                    &form,
                    &headers,
                    V2Policy::Accept
                ),
                Ok(Verified {
                    version: SignatureVersion::V2,
                    nonce: "12345"
                })
            );
        }
        let bad = SignatureHeaders {
            v2: Some("bm90IGEgc2lnbmF0dXJl"),
            ..headers
        };
        assert_eq!(
            verify_request(
                TOKEN,
                Method::Post,
                "https://answer.url",
                &form,
                &bad,
                V2Policy::Accept
            ),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn request_missing_headers() {
        let url = "https://example.com/answer";
        let check = |headers: &SignatureHeaders<'_>| {
            verify_request(TOKEN, Method::Post, url, &[], headers, V2Policy::Accept).map(|_| ())
        };
        assert_eq!(
            check(&SignatureHeaders::default()),
            Err(SignatureError::Missing)
        );
        // Nonces alone are not signatures.
        let headers = SignatureHeaders {
            v3_nonce: Some(NONCE),
            v2_nonce: Some("12345"),
            ..SignatureHeaders::default()
        };
        assert_eq!(check(&headers), Err(SignatureError::Missing));
        let headers = SignatureHeaders {
            v3: Some("pT2ohZ0edZd668UxiYAFn+K8aG5paMBnH/XDztzZrx4="),
            ..SignatureHeaders::default()
        };
        assert_eq!(check(&headers), Err(SignatureError::MissingNonce));
        let headers = SignatureHeaders {
            v2: Some("ehV3IKhLysWBxC1sy8INm0qGoQYdYsHwuoKjsX7FsXc="),
            ..SignatureHeaders::default()
        };
        assert_eq!(check(&headers), Err(SignatureError::MissingNonce));
    }

    #[test]
    fn error_messages() {
        assert_eq!(
            SignatureError::Missing.to_string(),
            "missing signature header"
        );
        assert_eq!(
            SignatureError::MissingNonce.to_string(),
            "missing signature nonce"
        );
        assert_eq!(SignatureError::Mismatch.to_string(), "signature mismatch");
        assert_eq!(
            SignatureError::V2Refused.to_string(),
            "only X-Plivo-Signature-V3 is accepted and the request has only V2"
        );
        assert_eq!(
            SignatureError::MalformedUrl("x".into()).to_string(),
            "malformed url: x"
        );
    }
}
