//! The HTTP surface (axum): health, readiness and metrics; Plivo's webhooks and the media
//! WebSocket; the campaign API (`crate::api`) under `/api/v1`; the dashboard
//! (`crate::dashboard`) under `/app`.
//!
//! Handlers are thin: parse, call into the library, map errors to responses. Every `/plivo/*`
//! route is behind `guard::plivo_gate` (body size, signature, nonce).

mod guard;
mod health;
mod plivo;
pub mod server;

pub use guard::{MAX_WEBHOOK_BODY_BYTES, NONCE_REPLAY_WINDOW};
pub use plivo::{SOCKET_BUFFER_BYTES, SOCKET_NOTSENT_LOWAT_BYTES};

use std::sync::Arc;

use axum::{
    Router,
    routing::{get, post},
};
use metrics_exporter_prometheus::PrometheusHandle;

use crate::{call::bridge::CallRuntime, config::Settings, db::Database, lifecycle::Lifecycle};

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub db: Database,
    pub lifecycle: Lifecycle,
    pub metrics: PrometheusHandle,
    /// What the media WebSocket hands every call.
    pub runtime: CallRuntime,
    /// Stream tokens accepted while the database could not record them, refused if replayed
    /// here (`call::token::UnrecordedTokens`).
    pub unrecorded_tokens: Arc<std::sync::Mutex<crate::call::token::UnrecordedTokens>>,
    /// Call changes for the dashboard's live pages (`crate::dashboard::live`).
    pub dashboard: crate::dashboard::Live,
}

/// The application's routes, without a listener, so tests can drive it as a `tower::Service`.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .merge(plivo_routes(&state))
        .nest(crate::api::BASE_PATH, crate::api::router(&state))
        .nest(crate::dashboard::BASE_PATH, crate::dashboard::router())
        .layer(
            tower_http::trace::TraceLayer::new_for_http().make_span_with(
                |request: &axum::http::Request<_>| {
                    // The matched route, not the raw path: bounded cardinality, no tokens in logs.
                    let route = request
                        .extensions()
                        .get::<axum::extract::MatchedPath>()
                        .map(|path| path.as_str().to_owned())
                        .unwrap_or_default();
                    tracing::debug_span!("http", method = %request.method(), route)
                },
            ),
        )
        .with_state(state)
}

/// Plivo's webhooks and the media WebSocket, each behind the gate.
fn plivo_routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/plivo/answer", get(plivo::answer).post(plivo::answer))
        .route("/plivo/hangup", post(plivo::hangup))
        .route("/plivo/machine-detection", post(plivo::machine_detection))
        .route("/plivo/voicemail", post(plivo::voicemail))
        .route("/plivo/stream-status", post(plivo::stream_status))
        .route(
            "/plivo/after-stream",
            get(plivo::after_stream).post(plivo::after_stream),
        )
        .route("/plivo/dial-status", post(plivo::dial_status))
        .route(
            "/plivo/transfer-whisper",
            get(plivo::transfer_whisper).post(plivo::transfer_whisper),
        )
        .route("/plivo/stream", get(plivo::stream))
        // On matched routes only: an unknown /plivo path is a plain 404.
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::plivo_gate,
        ))
}
