//! `/campaigns/{id}/callbacks`: the callbacks leads asked for, still waiting; cancelling or
//! moving one.

use axum::{
    Extension, Json,
    extract::{Path, State},
};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use super::{
    auth::Auth,
    error::ApiError,
    input::{ApiJson, ApiQuery, Page},
};
use crate::{db::callbacks::CallbackChange, http::AppState};

/// `GET /campaigns/{campaign_id}/callbacks`: pending callbacks, soonest first.
pub async fn list(
    State(state): State<AppState>,
    Extension(auth): Extension<Auth>,
    Path(campaign_id): Path<Uuid>,
    ApiQuery(page): ApiQuery<Page>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (limit, offset) = (page.limit()?, page.offset()?);
    if state
        .db
        .campaign(auth.organization_id, campaign_id)
        .await?
        .is_none()
    {
        return Err(ApiError::not_found("campaign"));
    }
    let callbacks = state
        .db
        .pending_callbacks(auth.organization_id, campaign_id, limit, offset)
        .await?;
    Ok(Json(
        json!({"callbacks": callbacks, "limit": limit, "offset": offset}),
    ))
}

/// `POST /campaigns/{campaign_id}/callbacks/{callback_id}/cancel`.
pub async fn cancel(
    State(state): State<AppState>,
    Extension(auth): Extension<Auth>,
    Path((campaign_id, id)): Path<(Uuid, Uuid)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let change = state
        .db
        .cancel_callback(auth.organization_id, campaign_id, id)
        .await?;
    respond(change)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reschedule {
    due_at: DateTime<Utc>,
}

/// `PATCH /campaigns/{campaign_id}/callbacks/{callback_id}`: `{"due_at": "…"}`, in the future.
pub async fn reschedule(
    State(state): State<AppState>,
    Extension(auth): Extension<Auth>,
    Path((campaign_id, id)): Path<(Uuid, Uuid)>,
    ApiJson(body): ApiJson<Reschedule>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if body.due_at <= Utc::now() {
        return Err(ApiError::invalid("due_at", "due_at is in the future"));
    }
    let change = state
        .db
        .reschedule_callback(auth.organization_id, campaign_id, id, body.due_at)
        .await?;
    respond(change)
}

fn respond(change: CallbackChange) -> Result<Json<serde_json::Value>, ApiError> {
    match change {
        CallbackChange::Applied(row) => Ok(Json(
            serde_json::to_value(row).map_err(|error| ApiError::internal(&error))?,
        )),
        CallbackChange::NotFound => Err(ApiError::not_found("callback")),
        CallbackChange::NotPending(status) => Err(ApiError::conflict(
            "callback_not_pending",
            format!("the callback is no longer waiting (it is {status})"),
        )),
    }
}
