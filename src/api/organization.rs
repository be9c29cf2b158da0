//! `/organization`: the organization's transfer targets (CRUD) and caller IDs (the default one
//! and the numbers it owns).

use axum::{
    Extension, Json,
    extract::{Path, State},
    http::StatusCode,
    response::IntoResponse,
};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use super::{
    auth::Auth,
    error::ApiError,
    input::{ApiJson, check_days, check_timezone, nullable, parse_time, required_text},
};
use crate::{
    db::organization::{CallerIds, TransferTargetFields, TransferTargetRow},
    http::AppState,
    phone::E164,
};

/// A transfer target as a client writes it (a create needs name, department, phone_number).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferTargetInput {
    name: Option<String>,
    department: Option<String>,
    phone_number: Option<String>,
    priority: Option<i32>,
    timezone: Option<String>,
    working_days: Option<Vec<i16>>,
    #[serde(default, deserialize_with = "nullable")]
    working_hours_start: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    working_hours_end: Option<Option<String>>,
    is_active: Option<bool>,
}

impl TransferTargetInput {
    fn apply(self, base: TransferTargetFields) -> Result<TransferTargetFields, ApiError> {
        let mut fields = base;
        if let Some(name) = self.name {
            fields.name = required_text("name", &name)?;
        }
        if let Some(department) = self.department {
            let valid = department.starts_with(|c: char| c.is_ascii_lowercase())
                && department
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !valid {
                return Err(ApiError::invalid(
                    "department",
                    "department is lowercase letters, digits and _ (sales, billing_2)",
                ));
            }
            fields.department = department;
        }
        if let Some(number) = self.phone_number {
            fields.phone_number = E164::parse_strict(number.trim())
                .map_err(|error| ApiError::invalid("phone_number", error.to_string()))?
                .into_string();
        }
        for (field, value) in [
            ("name", &fields.name),
            ("department", &fields.department),
            ("phone_number", &fields.phone_number),
        ] {
            if value.is_empty() {
                return Err(ApiError::invalid(
                    field,
                    format!("a transfer target needs {field}"),
                ));
            }
        }
        if let Some(priority) = self.priority {
            fields.priority = priority;
        }
        if let Some(timezone) = self.timezone {
            fields.timezone = check_timezone("timezone", &timezone)?;
        }
        if let Some(days) = self.working_days {
            fields.working_days = check_days("working_days", &days)?;
        }
        if let Some(start) = self.working_hours_start {
            fields.working_hours_start = start
                .map(|start| parse_time("working_hours_start", &start))
                .transpose()?;
        }
        if let Some(end) = self.working_hours_end {
            fields.working_hours_end = end
                .map(|end| parse_time("working_hours_end", &end))
                .transpose()?;
        }
        match (fields.working_hours_start, fields.working_hours_end) {
            (None, None) => {}
            (Some(start), Some(end)) if start < end => {}
            (Some(_), Some(_)) => {
                return Err(ApiError::invalid(
                    "working_hours_end",
                    "working hours end after they start",
                ));
            }
            _ => {
                return Err(ApiError::invalid(
                    "working_hours_end",
                    "give both working_hours_start and working_hours_end, or neither (around the clock)",
                ));
            }
        }
        if let Some(active) = self.is_active {
            fields.is_active = active;
        }
        Ok(fields)
    }
}

fn new_target_defaults() -> TransferTargetFields {
    TransferTargetFields {
        name: String::new(),
        department: String::new(),
        phone_number: String::new(),
        priority: 100,
        timezone: "UTC".to_owned(),
        working_days: vec![1, 2, 3, 4, 5],
        working_hours_start: None,
        working_hours_end: None,
        is_active: true,
    }
}

async fn target(state: &AppState, auth: &Auth, id: Uuid) -> Result<TransferTargetRow, ApiError> {
    state
        .db
        .transfer_target(auth.organization_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("transfer target"))
}

/// `GET /organization/transfer-targets`.
pub async fn list_targets(
    State(state): State<AppState>,
    Extension(auth): Extension<Auth>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let targets = state.db.transfer_targets(auth.organization_id).await?;
    Ok(Json(json!({ "transfer_targets": targets })))
}

/// `POST /organization/transfer-targets`.
pub async fn create_target(
    State(state): State<AppState>,
    Extension(auth): Extension<Auth>,
    ApiJson(input): ApiJson<TransferTargetInput>,
) -> Result<impl IntoResponse, ApiError> {
    let fields = input.apply(new_target_defaults())?;
    let id = state
        .db
        .create_transfer_target(auth.organization_id, &fields)
        .await?;
    Ok((StatusCode::CREATED, Json(target(&state, &auth, id).await?)))
}

/// `GET /organization/transfer-targets/{id}`.
pub async fn get_target(
    State(state): State<AppState>,
    Extension(auth): Extension<Auth>,
    Path(id): Path<Uuid>,
) -> Result<Json<TransferTargetRow>, ApiError> {
    Ok(Json(target(&state, &auth, id).await?))
}

/// `PATCH /organization/transfer-targets/{id}`.
pub async fn update_target(
    State(state): State<AppState>,
    Extension(auth): Extension<Auth>,
    Path(id): Path<Uuid>,
    ApiJson(input): ApiJson<TransferTargetInput>,
) -> Result<Json<TransferTargetRow>, ApiError> {
    let current = target(&state, &auth, id).await?;
    let fields = input.apply(current.fields)?;
    if !state
        .db
        .update_transfer_target(auth.organization_id, id, &fields)
        .await?
    {
        return Err(ApiError::not_found("transfer target"));
    }
    Ok(Json(target(&state, &auth, id).await?))
}

/// `DELETE /organization/transfer-targets/{id}`.
pub async fn delete_target(
    State(state): State<AppState>,
    Extension(auth): Extension<Auth>,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    if !state
        .db
        .delete_transfer_target(auth.organization_id, id)
        .await?
    {
        return Err(ApiError::not_found("transfer target"));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /organization/caller-ids`.
pub async fn caller_ids(
    State(state): State<AppState>,
    Extension(auth): Extension<Auth>,
) -> Result<Json<CallerIds>, ApiError> {
    state
        .db
        .caller_ids(auth.organization_id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("organization"))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultCallerIdInput {
    caller_id: Option<String>,
}

/// `PUT /organization/caller-ids/default`: the caller ID of campaigns that set none (`null`
/// clears it); it must be one of the organization's numbers.
pub async fn set_default_caller_id(
    State(state): State<AppState>,
    Extension(auth): Extension<Auth>,
    ApiJson(input): ApiJson<DefaultCallerIdInput>,
) -> Result<Json<CallerIds>, ApiError> {
    let number = input
        .caller_id
        .map(|number| {
            E164::parse_strict(number.trim())
                .map(E164::into_string)
                .map_err(|error| ApiError::invalid("caller_id", error.to_string()))
        })
        .transpose()?;
    if let Some(number) = &number {
        let owned = state
            .db
            .caller_ids(auth.organization_id)
            .await?
            .is_some_and(|ids| ids.numbers.iter().any(|row| &row.phone_number == number));
        if !owned {
            return Err(ApiError::invalid(
                "caller_id",
                "add the number to the organization's caller IDs first",
            ));
        }
    }
    state
        .db
        .set_default_caller_id(auth.organization_id, number.as_deref())
        .await?;
    caller_ids(State(state), Extension(auth)).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhoneNumberInput {
    phone_number: String,
    label: Option<String>,
    inbound_enabled: Option<bool>,
}

/// `POST /organization/caller-ids`: a number the organization owns (409 if another has it).
pub async fn add_caller_id(
    State(state): State<AppState>,
    Extension(auth): Extension<Auth>,
    ApiJson(input): ApiJson<PhoneNumberInput>,
) -> Result<impl IntoResponse, ApiError> {
    let number = E164::parse_strict(input.phone_number.trim())
        .map_err(|error| ApiError::invalid("phone_number", error.to_string()))?;
    let label = input
        .label
        .as_deref()
        .map(str::trim)
        .filter(|label| !label.is_empty());
    let row = state
        .db
        .add_phone_number(
            auth.organization_id,
            number.as_str(),
            label,
            input.inbound_enabled.unwrap_or(true),
        )
        .await
        .map_err(|error| {
            let error = ApiError::from(error);
            match error.code {
                "already_exists" => {
                    ApiError::conflict("phone_number_taken", "this number is already registered")
                        .with_field("phone_number")
                }
                _ => error,
            }
        })?;
    Ok((StatusCode::CREATED, Json(row)))
}

/// `DELETE /organization/caller-ids/{id}`.
pub async fn delete_caller_id(
    State(state): State<AppState>,
    Extension(auth): Extension<Auth>,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    if !state
        .db
        .delete_phone_number(auth.organization_id, id)
        .await?
    {
        return Err(ApiError::not_found("caller ID"));
    }
    Ok(StatusCode::NO_CONTENT)
}
