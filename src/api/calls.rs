//! `/calls`: lists with filters, one call with its transcript, events and summary, the live
//! calls, and hanging up a live call wherever it is held.

use axum::{
    Extension, Json,
    extract::{Path, State},
    http::StatusCode,
    response::IntoResponse,
};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use super::{
    auth::Auth,
    error::ApiError,
    input::{ApiQuery, Page},
};
use crate::{
    db::call_queries::CallFilter,
    domain::{CallOutcome, EndReason},
    http::AppState,
};

#[derive(Debug, Deserialize)]
pub struct CallsQuery {
    campaign_id: Option<Uuid>,
    /// `call_logs.call_status`: called, transferred, no_answer, voicemail.
    status: Option<String>,
    end_reason: Option<String>,
    /// Calls that started at or after this instant (RFC 3339).
    from: Option<DateTime<Utc>>,
    /// Calls that started before this instant.
    to: Option<DateTime<Utc>>,
    live: Option<bool>,
    limit: Option<i64>,
    offset: Option<i64>,
}

/// `GET /calls`: newest first.
pub async fn list(
    State(state): State<AppState>,
    Extension(auth): Extension<Auth>,
    ApiQuery(query): ApiQuery<CallsQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if let Some(status) = &query.status
        && CallOutcome::parse(status).is_none()
    {
        let all: Vec<&str> = CallOutcome::ALL
            .iter()
            .map(|outcome| outcome.as_str())
            .collect();
        return Err(ApiError::invalid(
            "status",
            format!("status is one of {}", all.join(", ")),
        ));
    }
    if let Some(reason) = &query.end_reason
        && EndReason::parse(reason).is_none()
    {
        return Err(ApiError::invalid("end_reason", "not a known end reason"));
    }
    if let (Some(from), Some(to)) = (query.from, query.to)
        && from >= to
    {
        return Err(ApiError::invalid("to", "to is after from"));
    }
    let page = Page {
        limit: query.limit,
        offset: query.offset,
    };
    let filter = CallFilter {
        campaign_id: query.campaign_id,
        call_status: query.status,
        end_reason: query.end_reason,
        from: query.from,
        to: query.to,
        live: query.live,
        limit: page.limit()?,
        offset: page.offset()?,
    };
    let calls = state.db.list_calls(auth.organization_id, &filter).await?;
    Ok(Json(
        json!({"calls": calls, "limit": filter.limit, "offset": filter.offset}),
    ))
}

/// `GET /calls/live`: calls not ended yet, on any gateway.
pub async fn live(
    State(state): State<AppState>,
    Extension(auth): Extension<Auth>,
    ApiQuery(page): ApiQuery<Page>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let filter = CallFilter {
        live: Some(true),
        limit: page.limit()?,
        offset: page.offset()?,
        ..CallFilter::default()
    };
    let calls = state.db.list_calls(auth.organization_id, &filter).await?;
    Ok(Json(
        json!({"calls": calls, "limit": filter.limit, "offset": filter.offset}),
    ))
}

/// `GET /calls/{id}`: the call, its transcript and summary, and its events.
pub async fn get(
    State(state): State<AppState>,
    Extension(auth): Extension<Auth>,
    Path(id): Path<Uuid>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let call = state
        .db
        .call_detail(auth.organization_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("call"))?;
    let events = state.db.call_events(id).await?;
    let mut body = serde_json::to_value(call).map_err(|error| ApiError::internal(&error))?;
    body["events"] = serde_json::to_value(events).map_err(|error| ApiError::internal(&error))?;
    Ok(Json(body))
}

/// `POST /calls/{id}/hangup`: 202 once every gateway has been asked (the holder ends the call
/// with reason `hangup_requested`); 404 unless the call is live in the organization.
pub async fn hangup(
    State(state): State<AppState>,
    Extension(auth): Extension<Auth>,
    Path(id): Path<Uuid>,
) -> Result<impl IntoResponse, ApiError> {
    let call_sid = state
        .db
        .live_call_sid(auth.organization_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("live call"))?;
    state.db.notify_hangup(&call_sid).await?;
    tracing::info!(%call_sid, "hang-up requested");
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"id": id, "call_sid": call_sid, "status": "hangup_requested"})),
    ))
}
