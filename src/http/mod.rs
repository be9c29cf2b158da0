//! The HTTP surface (axum): health, readiness and metrics now; Plivo webhooks, the media
//! WebSocket and the campaign API join it in their own modules.
//!
//! Handlers are thin: parse, call into the library, map errors to responses.

mod health;

use std::sync::Arc;

use axum::{Router, routing::get};
use metrics_exporter_prometheus::PrometheusHandle;

use crate::{config::Settings, db::Database, lifecycle::Lifecycle};

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub db: Database,
    pub lifecycle: Lifecycle,
    pub metrics: PrometheusHandle,
}

/// The application's routes, without a listener, so tests can drive it as a `tower::Service`.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
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
