//! Liveness, readiness and the Prometheus text.

use std::time::Duration;

use axum::{extract::State, http::StatusCode, response::IntoResponse};

use super::AppState;

/// How long the readiness probe waits for the database.
const READINESS_DB_TIMEOUT: Duration = Duration::from_secs(2);

/// Liveness: the process is up and serving. Never depends on the database.
pub async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: false while draining or without a database, so the load balancer and the
/// server registry stop sending new calls here.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, String) {
    if state.lifecycle.is_draining() {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining".to_owned());
    }
    match tokio::time::timeout(READINESS_DB_TIMEOUT, state.db.ping()).await {
        Ok(Ok(())) => (
            StatusCode::OK,
            format!(
                "ready; providers: {}",
                state
                    .settings
                    .ai
                    .configured()
                    .iter()
                    .map(|provider| provider.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
        Ok(Err(error)) => {
            tracing::warn!(%error, "readiness: database unreachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "database unavailable".to_owned(),
            )
        }
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "database timeout".to_owned(),
        ),
    }
}

/// Prometheus exposition text.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    crate::metrics::refresh_process_gauges();
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        state.metrics.render(),
    )
}
