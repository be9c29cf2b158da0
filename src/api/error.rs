//! The API's one error type: a status, a stable machine-readable code, a message for humans
//! and, for input errors, the field. Serialised as `{"error": {"code", "message", "field"}}`.
//! Database details are logged, never sent.

use axum::{
    Json,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use crate::db::DbError;

/// An error answered to an API client.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    /// Stable: clients may match on it.
    pub code: &'static str,
    pub message: String,
    /// The input field at fault (a JSON path, a query parameter, a CSV column).
    pub field: Option<String>,
    /// More structured detail (an import's bad rows).
    pub details: Option<Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
            details: None,
        }
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// 404 `not_found`: absent, or another organization's (indistinguishable on purpose).
    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no such {what}"),
        )
    }

    /// 422 `invalid_field`: well-formed input with a value we refuse.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", message).with_field(field)
    }

    /// 409 with a stable code: the request conflicts with the object's state.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    /// 500 `internal`: logged here with its cause; the client learns nothing more.
    pub fn internal(error: &dyn std::fmt::Display) -> Self {
        tracing::error!(%error, "API request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; it was logged",
        )
    }
}

impl From<DbError> for ApiError {
    /// Constraint violations are the client's (the database's CHECKs are the last line of
    /// validation); a transient failure is 503; anything else is ours.
    fn from(error: DbError) -> Self {
        if let DbError::Sqlx(sqlx_error) = &error
            && let Some(database) = sqlx_error.as_database_error()
        {
            let constraint = database.constraint().unwrap_or_default().to_owned();
            match database.code().as_deref() {
                Some("23514") | Some("23502") | Some("22P02") | Some("22007") | Some("22008") => {
                    return Self::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "constraint_violation",
                        format!("a value breaks a rule of the data ({constraint})"),
                    )
                    .with_field(constraint);
                }
                Some("23505") => {
                    return Self::conflict(
                        "already_exists",
                        format!("that already exists ({constraint})"),
                    );
                }
                Some("23503") => {
                    return Self::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "unknown_reference",
                        format!("a referenced object does not exist ({constraint})"),
                    );
                }
                _ => {}
            }
        }
        if error.is_transient() {
            tracing::warn!(%error, "API request hit a database outage");
            return Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the database is unavailable; retry later",
            );
        }
        Self::internal(&error)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(field) = self.field {
            error["field"] = Value::String(field);
        }
        if let Some(details) = self.details {
            error["details"] = details;
        }
        let mut response = (self.status, Json(json!({ "error": error }))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}
