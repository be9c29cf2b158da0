//! A call's recording: `GET /calls/{id}/recording` (bearer, the organization's calls only),
//! `GET /calls/{id}/recording/link` (a signed link that plays without the token for
//! [`LINK_TTL`]), and `GET /recordings/{id}?exp=…&sig=…` (that link). `audio/ogg`, with HTTP
//! Range requests (one range; several are answered whole, as RFC 9110 allows).
//!
//! A signed link that is expired or forged is 403: the signature is checked before anything
//! is looked up, so the answer says nothing about whether the call exists; a valid link to a
//! call without a recording is 404.

use axum::{
    Extension, Json,
    body::Body,
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use chrono::Utc;
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use uuid::Uuid;

use super::{auth::Auth, error::ApiError, input::ApiQuery};
use crate::{
    db::recordings::CallRecording,
    http::AppState,
    recording::link::{LINK_TTL, LinkError, LinkKey},
};

/// `GET /calls/{id}/recording`.
pub async fn get(
    State(state): State<AppState>,
    Extension(auth): Extension<Auth>,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let recording = state.db.call_recording(auth.organization_id, id).await?;
    serve(&state, recording, &headers).await
}

/// `GET /calls/{id}/recording/link`: a link a browser plays without the token.
pub async fn link(
    State(state): State<AppState>,
    Extension(auth): Extension<Auth>,
    Path(id): Path<Uuid>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let recording = state.db.call_recording(auth.organization_id, id).await?;
    if recording
        .and_then(|recording| recording.recording_url)
        .is_none()
    {
        return Err(ApiError::not_found("recording"));
    }
    let expires_at = Utc::now() + LINK_TTL;
    let query = link_key(&state).sign(id, expires_at);
    let base = state
        .settings
        .server
        .public_url
        .as_str()
        .trim_end_matches('/');
    Ok(Json(json!({
        "url": format!("{base}{}/recordings/{id}?{query}", super::BASE_PATH),
        "expires_at": expires_at,
    })))
}

/// A link without its signature is refused like a forged one (403): the signature is the
/// route's credential.
#[derive(Debug, Deserialize)]
pub struct SignedQuery {
    exp: Option<i64>,
    sig: Option<String>,
}

/// `GET /recordings/{id}?exp=…&sig=…`: the signed link.
pub async fn signed(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    ApiQuery(query): ApiQuery<SignedQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let verified = match (query.exp, query.sig.as_deref()) {
        (Some(exp), Some(sig)) => link_key(&state).verify(id, exp, sig, Utc::now()),
        _ => Err(LinkError::Forged),
    };
    match verified {
        Ok(()) => {}
        Err(LinkError::Expired) => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "link_expired",
                "the link has expired; ask the API for a new one",
            ));
        }
        Err(LinkError::Forged) => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "link_invalid",
                "the link's signature is not valid",
            ));
        }
    }
    let recording = state.db.call_recording_by_id(id).await?;
    serve(&state, recording, &headers).await
}

/// The key recording links are signed with (derived from the stream secret, so every gateway
/// of a fleet signs alike).
pub(crate) fn link_key(state: &AppState) -> LinkKey {
    LinkKey::derive(
        state
            .settings
            .server
            .stream_secret
            .expose_secret()
            .as_bytes(),
    )
}

/// The recording's file, whole or the range asked for.
async fn serve(
    state: &AppState,
    recording: Option<CallRecording>,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let Some(CallRecording {
        call_sid,
        recording_url: Some(_),
    }) = recording
    else {
        return Err(ApiError::not_found("recording"));
    };
    // The file on this gateway's disk (a `file://` store, or one waiting for its upload),
    // else the `s3://` store.
    let path = state.runtime.recordings.file(&call_sid);
    let (source, length) = match tokio::fs::File::open(&path).await {
        Ok(file) => {
            let length = file
                .metadata()
                .await
                .map_err(|error| ApiError::internal(&error))?
                .len();
            (Source::Local(file), length)
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let remote = state.runtime.recordings.remote().cloned();
            let size = match &remote {
                Some(remote) => remote.size(&call_sid).await.map_err(|error| {
                    tracing::warn!(%call_sid, %error, "the recordings store did not answer");
                    ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "store_unavailable",
                        "the recordings store did not answer; try again",
                    )
                })?,
                None => None,
            };
            match (remote, size) {
                (Some(remote), Some(size)) => (Source::Remote(remote), size),
                _ => {
                    // Another gateway's disk (its upload still waiting), or removed: README
                    // says several gateways share the store.
                    tracing::warn!(%call_sid, "a linked recording has no file here");
                    return Err(ApiError::not_found("recording"));
                }
            }
        }
        Err(error) => return Err(ApiError::internal(&error)),
    };
    let range = headers
        .get(header::RANGE)
        .and_then(|value| value.to_str().ok())
        .map_or(ByteRange::Whole, |value| parse_range(value, length));
    let (status, start, end) = match range {
        ByteRange::Whole => (StatusCode::OK, 0, length),
        ByteRange::Part { start, end } => (StatusCode::PARTIAL_CONTENT, start, end + 1),
        ByteRange::Unsatisfiable => {
            let mut response = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range_not_satisfiable",
                format!("the recording is {length} bytes"),
            )
            .into_response();
            response.headers_mut().insert(
                header::CONTENT_RANGE,
                header_value(&format!("bytes */{length}")),
            );
            return Ok(response);
        }
    };
    let body = match source {
        Source::Local(mut file) => {
            file.seek(std::io::SeekFrom::Start(start))
                .await
                .map_err(|error| ApiError::internal(&error))?;
            Body::from_stream(tokio_util::io::ReaderStream::new(file.take(end - start)))
        }
        Source::Remote(_) if end == start => Body::empty(),
        Source::Remote(remote) => Body::from_stream(
            remote
                .read(&call_sid, start, end)
                .await
                .map_err(|error| ApiError::internal(&error))?,
        ),
    };
    let mut response = (status, body).into_response();
    let response_headers = response.headers_mut();
    response_headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("audio/ogg"));
    response_headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    response_headers.insert(
        header::CONTENT_LENGTH,
        header_value(&(end - start).to_string()),
    );
    response_headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    if status == StatusCode::PARTIAL_CONTENT {
        response_headers.insert(
            header::CONTENT_RANGE,
            header_value(&format!("bytes {start}-{}/{length}", end - 1)),
        );
    }
    Ok(response)
}

/// Where a recording is read from.
enum Source {
    Local(tokio::fs::File),
    Remote(std::sync::Arc<crate::recording::remote::RemoteStore>),
}

fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).expect("digits, spaces, dashes and slashes")
}

/// What a `Range` header asks of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// No usable range (absent, several, or not `bytes=`): the whole file, 200.
    Whole,
    /// Bytes `start..=end`, 206.
    Part { start: u64, end: u64 },
    /// A well-formed range outside the file: 416.
    Unsatisfiable,
}

/// Reads one `bytes=` range (`a-b`, `a-`, `-n`) of a file of `length` bytes.
pub fn parse_range(header: &str, length: u64) -> ByteRange {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return ByteRange::Whole;
    };
    if spec.contains(',') {
        return ByteRange::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return ByteRange::Whole;
    };
    let number = |text: &str| text.trim().parse::<u64>().ok();
    match (first.trim().is_empty(), number(first), number(last)) {
        // `-n`: the last n bytes.
        (true, _, Some(suffix)) if suffix > 0 && length > 0 => ByteRange::Part {
            start: length.saturating_sub(suffix),
            end: length - 1,
        },
        (true, _, Some(_)) => ByteRange::Unsatisfiable,
        (false, Some(start), None) if last.trim().is_empty() => {
            if start < length {
                ByteRange::Part {
                    start,
                    end: length - 1,
                }
            } else {
                ByteRange::Unsatisfiable
            }
        }
        (false, Some(start), Some(end)) if start <= end => {
            if start < length {
                ByteRange::Part {
                    start,
                    end: end.min(length - 1),
                }
            } else {
                ByteRange::Unsatisfiable
            }
        }
        _ => ByteRange::Whole,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_read_as_rfc_9110_says() {
        let check = |header: &str, expected: ByteRange| {
            assert_eq!(parse_range(header, 1000), expected, "{header}");
        };
        check("bytes=0-99", ByteRange::Part { start: 0, end: 99 });
        check(
            "bytes=900-",
            ByteRange::Part {
                start: 900,
                end: 999,
            },
        );
        check(
            "bytes=-100",
            ByteRange::Part {
                start: 900,
                end: 999,
            },
        );
        check("bytes=-5000", ByteRange::Part { start: 0, end: 999 });
        check(
            "bytes=990-2000",
            ByteRange::Part {
                start: 990,
                end: 999,
            },
        );
        check("bytes=1000-", ByteRange::Unsatisfiable);
        check("bytes=1000-1001", ByteRange::Unsatisfiable);
        check("bytes=-0", ByteRange::Unsatisfiable);
        check("bytes=5-1", ByteRange::Whole);
        check("bytes=0-1,5-9", ByteRange::Whole);
        check("items=0-1", ByteRange::Whole);
        check("bytes=x-y", ByteRange::Whole);
    }
}
