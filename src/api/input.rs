//! Request input: JSON bodies and query strings whose errors name the field (400 for a body
//! that is not JSON, 422 for a value of the wrong shape), `null`-able patch fields, paging,
//! and the small parsers the handlers share.

use axum::{
    extract::{FromRequest, FromRequestParts, Request, rejection::QueryRejection},
    http::{StatusCode, header, request::Parts},
};
use chrono::NaiveTime;
use serde::{Deserialize, Deserializer, de::DeserializeOwned};

use super::error::ApiError;

/// Page size when none is asked, and the largest allowed.
pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 500;

/// A JSON body, with errors as [`ApiError`]s naming the field.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.trim_start().starts_with("application/json"));
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send Content-Type: application/json",
            ));
        }
        // axum's default body limit (2 MiB) applies.
        let bytes = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                ApiError::new(rejection.status(), "body_unreadable", rejection.body_text())
            })?;
        parse_json(&bytes).map(Self)
    }
}

/// Parses JSON, naming the field at fault.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let malformed = |error: &serde_json::Error| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("the body is not valid JSON: {error}"),
        )
    };
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            return malformed(&inner);
        }
        let message = inner.to_string();
        // A missing field's path is its parent's; an unknown field's is its own.
        let field = backticked(&message, "missing field `")
            .map(|name| match path.as_str() {
                "." | "" => name.to_owned(),
                parent => format!("{parent}.{name}"),
            })
            .unwrap_or(path);
        ApiError::invalid(&field, message)
    })?;
    deserializer.end().map_err(|error| malformed(&error))?;
    Ok(value)
}

fn backticked<'a>(message: &'a str, after: &str) -> Option<&'a str> {
    let start = message.find(after)? + after.len();
    let end = message[start..].find('`')? + start;
    Some(&message[start..end])
}

/// A query string, with errors as [`ApiError`]s naming the parameter.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Self(value)),
            Err(rejection) => Err(query_error(rejection)),
        }
    }
}

fn query_error(rejection: QueryRejection) -> ApiError {
    let text = rejection.body_text();
    // axum says "Failed to deserialize query string: <field>: <reason>".
    let detail = text
        .split_once("query string: ")
        .map(|(_, rest)| rest)
        .unwrap_or(&text);
    let field = backticked(detail, "missing field `")
        .map(str::to_owned)
        .or_else(|| {
            detail
                .split_once(": ")
                .map(|(field, _)| field.to_owned())
                .filter(|field| !field.contains(' '))
        });
    let error = ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", detail.to_owned());
    match field {
        Some(field) => error.with_field(field),
        None => error,
    }
}

/// `limit` and `offset` of a list.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct Page {
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

impl Page {
    pub fn limit(&self) -> Result<i64, ApiError> {
        match self.limit {
            None => Ok(DEFAULT_LIMIT),
            Some(limit) if (1..=MAX_LIMIT).contains(&limit) => Ok(limit),
            Some(_) => Err(ApiError::invalid(
                "limit",
                format!("limit is between 1 and {MAX_LIMIT}"),
            )),
        }
    }

    pub fn offset(&self) -> Result<i64, ApiError> {
        match self.offset {
            None => Ok(0),
            Some(offset) if offset >= 0 => Ok(offset),
            Some(_) => Err(ApiError::invalid("offset", "offset is not negative")),
        }
    }
}

/// For `Option<Option<T>>` patch fields: absent is `None`, `null` is `Some(None)`.
pub fn nullable<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// `HH:MM` or `HH:MM:SS`.
pub fn parse_time(field: &str, text: &str) -> Result<NaiveTime, ApiError> {
    NaiveTime::parse_from_str(text, "%H:%M")
        .or_else(|_| NaiveTime::parse_from_str(text, "%H:%M:%S"))
        .map_err(|_| ApiError::invalid(field, format!("{field} is a time as HH:MM")))
}

/// An IANA timezone name (`Europe/Lisbon`).
pub fn check_timezone(field: &str, text: &str) -> Result<String, ApiError> {
    text.parse::<chrono_tz::Tz>()
        .map(|_| text.to_owned())
        .map_err(|_| ApiError::invalid(field, format!("{text:?} is not an IANA timezone")))
}

/// ISO weekdays (1 = Monday ... 7 = Sunday), at least one; sorted, without repeats.
pub fn check_days(field: &str, days: &[i16]) -> Result<Vec<i16>, ApiError> {
    if days.is_empty() || days.iter().any(|day| !(1..=7).contains(day)) {
        return Err(ApiError::invalid(
            field,
            format!("{field} holds ISO weekdays 1 (Monday) to 7 (Sunday), at least one"),
        ));
    }
    let mut days = days.to_vec();
    days.sort_unstable();
    days.dedup();
    Ok(days)
}

/// A required text, trimmed and not empty.
pub fn required_text(field: &str, text: &str) -> Result<String, ApiError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(ApiError::invalid(
            field,
            format!("{field} must not be empty"),
        ));
    }
    Ok(trimmed.to_owned())
}

/// An integer within bounds.
pub fn in_range(field: &str, value: i32, low: i32, high: i32) -> Result<i32, ApiError> {
    if (low..=high).contains(&value) {
        return Ok(value);
    }
    Err(ApiError::invalid(
        field,
        format!("{field} is between {low} and {high}"),
    ))
}
