//! The gate in front of every `/plivo/*` route, the media WebSocket's upgrade included: the
//! body's size, Plivo's signature, then the signature's nonce, before any handler runs. Each
//! refusal is one log line and changes nothing in the database.
//!
//! - A body above [`MAX_WEBHOOK_BODY_BYTES`] gets 413: a larger `Content-Length` is refused
//!   before anything is read, and a body without one is read only up to the limit.
//! - Only `X-Plivo-Signature-V3` is verified, unless `VG_PLIVO_ACCEPT_V2=true` lets a request
//!   signed only with V2 through. A missing or bad signature gets 403.
//! - The accepted signature's nonce is recorded in `plivo_webhook_nonces` before the handler
//!   runs; a nonce already there, recorded by any gateway on the database, gets 403. Nonces are
//!   kept for [`NONCE_REPLAY_WINDOW`]. A request that failed on our side (a 5xx answer) gives
//!   its nonce back, so Plivo's retry of it is served even if Plivo reuses the nonce (its
//!   documentation does not say); a retry after a read timeout, once the first attempt has
//!   acted, is refused, which the handlers' idempotence makes harmless.

use std::time::Duration;

use axum::{
    body::{Body, Bytes},
    extract::{Request, State},
    http::{HeaderMap, Method as HttpMethod, StatusCode, Uri, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use futures_util::StreamExt;
use secrecy::ExposeSecret;

use super::AppState;
use crate::plivo::signature::{self, Method, SignatureHeaders, Verified};

/// The largest webhook body read. Plivo's callbacks are a few dozen form fields, well under
/// 8 KiB; anything near this is not Plivo.
pub const MAX_WEBHOOK_BODY_BYTES: usize = 64 * 1024;
/// How long an accepted nonce is remembered. Plivo ends every call within 24 hours (its hard
/// cap on a call's duration), and every handler is idempotent for its call or attempt, so an
/// older replay finds nothing left to change.
pub const NONCE_REPLAY_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);
/// The media WebSocket, whose signed URL may carry either scheme.
const STREAM_PATH: &str = "/plivo/stream";

/// A refused request: a status and a short reason (small, unlike a whole `Response`).
#[derive(Debug, Clone, Copy)]
struct Refused(StatusCode, &'static str);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        (self.0, self.1).into_response()
    }
}

/// The parameters of a verified webhook, the query string's and the form body's, decoded. The
/// gate hands it to the handlers as a request extension.
#[derive(Debug, Clone)]
pub struct Webhook {
    pub query: Vec<(String, String)>,
    pub form: Vec<(String, String)>,
}

impl Webhook {
    /// The first non-empty value of `key`, the form's before the query's.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.form
            .iter()
            .chain(self.query.iter())
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.as_str())
            .filter(|value| !value.is_empty())
    }
}

/// The middleware (`axum::middleware::from_fn_with_state`) on every `/plivo/*` route.
pub async fn plivo_gate(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if let Some(length) = declared
        && length > MAX_WEBHOOK_BODY_BYTES as u64
    {
        return too_large(&parts.uri, Some(length));
    }
    let body = match read_limited(body, MAX_WEBHOOK_BODY_BYTES).await {
        Ok(body) => body,
        Err(ReadError::TooLarge) => return too_large(&parts.uri, declared),
        Err(ReadError::Broken(error)) => {
            tracing::warn!(route = parts.uri.path(), %error, "webhook refused: body unreadable");
            return (StatusCode::BAD_REQUEST, "unreadable body").into_response();
        }
    };

    let (webhook, verified) = match verify(&state, &parts.method, &parts.uri, &parts.headers, &body)
    {
        Ok(accepted) => accepted,
        Err(refused) => return refused.into_response(),
    };
    let (version, nonce) = (verified.version, verified.nonce.to_owned());
    let mut claimed = true;
    match state
        .db
        .live_step(state.db.claim_webhook_nonce(version, &nonce))
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            metrics::counter!(crate::metrics::WEBHOOK_REPLAYS).increment(1);
            tracing::warn!(
                route = parts.uri.path(),
                version = version.as_str(),
                %nonce,
                call_sid = ?webhook.get("CallUUID"),
                "webhook refused: nonce seen before (replay)"
            );
            return (StatusCode::FORBIDDEN, "replayed request").into_response();
        }
        // The signature is good and a replay needs the database to change anything, so an
        // outage lets the request through: the handler still answers (the answer webhook's
        // spoken apology) rather than Plivo hearing a 503.
        Err(error) => {
            claimed = false;
            tracing::warn!(route = parts.uri.path(), %error, "webhook nonce not recorded: database unavailable");
        }
    }

    parts.extensions.insert(webhook);
    let response = next.run(Request::from_parts(parts, Body::from(body))).await;
    if claimed
        && response.status().is_server_error()
        && let Err(error) = state.db.release_webhook_nonce(version, &nonce).await
    {
        tracing::warn!(%error, %nonce, "nonce of a failed webhook not released");
    }
    response
}

enum ReadError {
    TooLarge,
    Broken(axum::Error),
}

/// Reads the body, giving up as soon as it passes `limit`.
async fn read_limited(body: Body, limit: usize) -> Result<Bytes, ReadError> {
    let mut chunks = body.into_data_stream();
    let mut read = Vec::new();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(ReadError::Broken)?;
        if read.len() + chunk.len() > limit {
            return Err(ReadError::TooLarge);
        }
        read.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(read))
}

fn too_large(uri: &Uri, declared: Option<u64>) -> Response {
    metrics::counter!(crate::metrics::WEBHOOK_TOO_LARGE).increment(1);
    tracing::warn!(
        route = uri.path(),
        ?declared,
        limit = MAX_WEBHOOK_BODY_BYTES,
        "webhook refused: body too large"
    );
    (StatusCode::PAYLOAD_TOO_LARGE, "body too large").into_response()
}

/// Checks the signature on the public URL Plivo called and parses the parameters.
fn verify<'a>(
    state: &AppState,
    method: &HttpMethod,
    uri: &Uri,
    headers: &'a HeaderMap,
    body: &[u8],
) -> Result<(Webhook, Verified<'a>), Refused> {
    let query: Vec<(String, String)> = uri
        .query()
        .map(|query| {
            form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let (signature_method, form) = match *method {
        HttpMethod::POST => (
            Method::Post,
            form_urlencoded::parse(body).into_owned().collect(),
        ),
        _ => (Method::Get, Vec::new()),
    };
    // Whether Plivo signs the wss:// or the https:// form of the stream's URL is unconfirmed:
    // accept both there.
    let urls = if uri.path() == STREAM_PATH {
        vec![public_url(state, uri, true), public_url(state, uri, false)]
    } else {
        vec![public_url(state, uri, false)]
    };
    let verified = check_signature(state, signature_method, &urls, &form, headers)?;
    Ok((Webhook { query, form }, verified))
}

/// The URL Plivo called, rebuilt on the public base (what Plivo signed, not what a proxy forwarded).
fn public_url(state: &AppState, uri: &Uri, websocket: bool) -> String {
    let base = if websocket {
        state.settings.server.public_ws_url()
    } else {
        state.settings.server.public_url.clone()
    };
    let path = uri
        .path_and_query()
        .map(|path| path.as_str())
        .unwrap_or("/");
    format!("{}{path}", base.as_str().trim_end_matches('/'))
}

fn check_signature<'a>(
    state: &AppState,
    method: Method,
    urls: &[String],
    params: &[(String, String)],
    headers: &'a HeaderMap,
) -> Result<Verified<'a>, Refused> {
    let refuse = |reason: String| {
        metrics::counter!(crate::metrics::SIGNATURE_REJECTIONS).increment(1);
        tracing::warn!(%reason, "webhook refused");
        Refused(StatusCode::FORBIDDEN, "invalid signature")
    };
    let Some(auth_token) = state.settings.plivo.auth_token.as_ref() else {
        return Err(refuse("PLIVO_AUTH_TOKEN is not configured".to_owned()));
    };
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    let found = SignatureHeaders {
        v3: header("x-plivo-signature-v3"),
        v3_nonce: header("x-plivo-signature-v3-nonce"),
        v2: header("x-plivo-signature-v2"),
        v2_nonce: header("x-plivo-signature-v2-nonce"),
    };
    let token = auth_token.expose_secret().as_bytes();
    let policy = state.settings.plivo.v2_policy;
    let mut last_error = None;
    for url in urls {
        match signature::verify_request(token, method, url, params, &found, policy) {
            Ok(verified) => return Ok(verified),
            Err(error) => last_error = Some(error),
        }
    }
    Err(refuse(match last_error {
        Some(signature::SignatureError::V2Refused) => format!(
            "{}; VG_PLIVO_ACCEPT_V2=true would accept it",
            signature::SignatureError::V2Refused
        ),
        Some(error) => error.to_string(),
        None => String::new(),
    }))
}
