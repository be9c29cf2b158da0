//! The organization's do-not-call list: list it, add a number (cancelling its scheduled
//! attempts in every campaign), remove one, import a CSV file of numbers, and read the audit
//! trail of every change. Numbers are normalised to E.164 like leads' (`?default_country_code=`
//! or the organization's `settings.default_country_code` for numbers without `+`/`00`).
//!
//! **CSV import.** `POST /do-not-call/import` (`text/csv`, a header row): `phone` required,
//! `reason` read, other columns ignored; source `import`. Streamed into batches of
//! [`IMPORT_BATCH_ROWS`] in one transaction, with the leads import's rules for a malformed
//! file and bad rows (refused whole unless `?skip_invalid=true`); a number already listed (or
//! earlier in the file) keeps its first entry and is reported.

use std::time::Instant;

use axum::{
    Extension, Json,
    body::Body,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::IntoResponse,
};
use csv_async::StringRecord;
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use super::{
    auth::Auth,
    csv_upload::{self, CsvUpload, MAX_REPORTED_ERRORS, RowError},
    error::ApiError,
    input::{ApiJson, ApiQuery, Page},
    leads::{IMPORT_BATCH_ROWS, MAX_FIELD_CHARS, country_code, keep_lines},
};
use crate::{
    db::suppression::{
        Actor, NewSuppression, SuppressOutcome, SuppressionBatch, SuppressionImport,
        SuppressionRow, SuppressionSource,
    },
    http::AppState,
    phone::{CountryCode, E164},
};

/// A number as a client adds it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuppressionInput {
    phone_number: String,
    reason: String,
    /// `api` (the default) or `complaint`.
    source: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct CountryQuery {
    default_country_code: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    phone: Option<String>,
    default_country_code: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

#[derive(Debug, Deserialize)]
pub struct ImportQuery {
    default_country_code: Option<String>,
    skip_invalid: Option<bool>,
}

/// What an import did.
#[derive(Debug, Serialize)]
pub struct SuppressionImportReport {
    /// Data rows read (the header excluded).
    pub rows: u64,
    /// Numbers added to the list.
    pub added: u64,
    /// Rows whose number was listed already (or earlier in the file): the first entry kept.
    pub already_listed: u64,
    /// Their lines, up to [`MAX_REPORTED_ERRORS`].
    pub already_listed_lines: Vec<u64>,
    /// Scheduled attempts of the imported numbers cancelled, in every campaign.
    pub attempts_cancelled: u64,
    pub invalid: u64,
    pub errors: Vec<RowError>,
    pub elapsed_ms: u64,
}

/// A number, normalised, with the error naming `field`.
fn normalize(field: &str, raw: &str, country: Option<&CountryCode>) -> Result<E164, ApiError> {
    E164::normalize(raw, country).map_err(|error| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            error.code(),
            error.to_string(),
        )
        .with_field(field)
    })
}

/// A reason, trimmed and capped; `None` when blank.
fn reason(text: &str) -> Option<String> {
    let trimmed = text.trim();
    (!trimmed.is_empty()).then(|| trimmed.chars().take(MAX_FIELD_CHARS).collect())
}

/// `GET /do-not-call`: the list, newest first; `?phone=` narrows it to one number.
pub async fn list(
    State(state): State<AppState>,
    Extension(auth): Extension<Auth>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let page = Page {
        limit: query.limit,
        offset: query.offset,
    };
    let (limit, offset) = (page.limit()?, page.offset()?);
    let phone = match query.phone.as_deref() {
        None => None,
        Some(raw) => {
            let country = country_code(
                &state,
                auth.organization_id,
                query.default_country_code.as_deref(),
            )
            .await?;
            Some(normalize("phone", raw, country.as_ref())?)
        }
    };
    let entries = state
        .db
        .suppressions(auth.organization_id, phone.as_ref(), limit, offset)
        .await?;
    Ok(Json(
        json!({"entries": entries, "limit": limit, "offset": offset}),
    ))
}

/// A number to add as a person wrote it (the API's body, the dashboard's form).
#[derive(Debug, Clone, Copy)]
pub struct NumberToAdd<'a> {
    pub phone_number: &'a str,
    pub reason: &'a str,
    /// `api` (the default) or `complaint`.
    pub source: Option<&'a str>,
    /// For a number without `+`/`00`; else the organization's default.
    pub default_country_code: Option<&'a str>,
}

/// Adds a number to the organization's list, or finds it listed already (the first entry
/// kept), by `token_id`: the checks, the normalisation and the write that the API and the
/// dashboard share.
pub async fn add_number(
    state: &AppState,
    organization_id: Uuid,
    token_id: Uuid,
    input: &NumberToAdd<'_>,
) -> Result<SuppressOutcome, ApiError> {
    let source = match input.source {
        None | Some("api") => SuppressionSource::Api,
        Some("complaint") => SuppressionSource::Complaint,
        Some(_) => {
            return Err(ApiError::invalid(
                "source",
                "source is \"api\" (the default) or \"complaint\"",
            ));
        }
    };
    let reason =
        reason(input.reason).ok_or_else(|| ApiError::invalid("reason", "reason is empty"))?;
    let country = country_code(state, organization_id, input.default_country_code).await?;
    let phone_number = normalize("phone_number", input.phone_number, country.as_ref())?;
    let outcome = state
        .db
        .suppress(
            organization_id,
            &NewSuppression {
                phone_number,
                reason: Some(reason),
                source,
            },
            &Actor::Token(token_id),
        )
        .await?;
    Ok(outcome)
}

/// Removes a number as a person wrote it (normalised as an added one is), by `token_id`; the
/// entry removed, or `None` when the number is not listed.
pub async fn remove_number(
    state: &AppState,
    organization_id: Uuid,
    token_id: Uuid,
    phone: &str,
    default_country_code: Option<&str>,
) -> Result<Option<SuppressionRow>, ApiError> {
    let country = country_code(state, organization_id, default_country_code).await?;
    let phone_number = normalize("phone", phone, country.as_ref())?;
    let removed = state
        .db
        .unsuppress(organization_id, &phone_number, &Actor::Token(token_id))
        .await?;
    Ok(removed)
}

/// `POST /do-not-call`: adds a number (201), or finds it listed already (200, the first entry
/// kept); either way its scheduled attempts are cancelled and counted.
pub async fn add(
    State(state): State<AppState>,
    Extension(auth): Extension<Auth>,
    ApiQuery(query): ApiQuery<CountryQuery>,
    ApiJson(input): ApiJson<SuppressionInput>,
) -> Result<impl IntoResponse, ApiError> {
    let outcome = add_number(
        &state,
        auth.organization_id,
        auth.token_id,
        &NumberToAdd {
            phone_number: &input.phone_number,
            reason: &input.reason,
            source: input.source.as_deref(),
            default_country_code: query.default_country_code.as_deref(),
        },
    )
    .await?;
    let status = if outcome.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut body =
        serde_json::to_value(&outcome.entry).map_err(|error| ApiError::internal(&error))?;
    body["created"] = json!(outcome.created);
    body["attempts_cancelled"] = json!(outcome.attempts_cancelled);
    Ok((status, Json(body)))
}

/// `DELETE /do-not-call/{phone}`: removes a number (URL-encoded, `%2B` for `+`); 404 when it
/// is not listed.
pub async fn remove(
    State(state): State<AppState>,
    Extension(auth): Extension<Auth>,
    Path(phone): Path<String>,
    ApiQuery(query): ApiQuery<CountryQuery>,
) -> Result<StatusCode, ApiError> {
    match remove_number(
        &state,
        auth.organization_id,
        auth.token_id,
        &phone,
        query.default_country_code.as_deref(),
    )
    .await?
    {
        Some(_) => Ok(StatusCode::NO_CONTENT),
        None => Err(ApiError::not_found("do-not-call entry")),
    }
}

/// `GET /do-not-call/audit`: every change of the list, newest first.
pub async fn audit(
    State(state): State<AppState>,
    Extension(auth): Extension<Auth>,
    ApiQuery(page): ApiQuery<Page>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (limit, offset) = (page.limit()?, page.offset()?);
    let rows = state
        .db
        .suppression_audit(auth.organization_id, limit, offset)
        .await?;
    Ok(Json(
        json!({"audit": rows, "limit": limit, "offset": offset}),
    ))
}

/// `POST /do-not-call/import`: see the module's documentation.
pub async fn import(
    State(state): State<AppState>,
    Extension(auth): Extension<Auth>,
    ApiQuery(query): ApiQuery<ImportQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<SuppressionImportReport>, ApiError> {
    let started = Instant::now();
    let mut upload = CsvUpload::open(&headers, body, state.settings.imports)?;
    let skip_invalid = query.skip_invalid.unwrap_or(false);
    let country = country_code(
        &state,
        auth.organization_id,
        query.default_country_code.as_deref(),
    )
    .await?;
    let mut import = state
        .db
        .begin_suppression_import(auth.organization_id, Actor::Token(auth.token_id))
        .await?;
    let columns = upload.columns().await?;
    let phone_column = columns.required("phone")?;
    let reason_column = columns.optional("reason");

    let mut record = StringRecord::new();
    let mut batch = SuppressionBatch::default();
    let mut report = SuppressionImportReport {
        rows: 0,
        added: 0,
        already_listed: 0,
        already_listed_lines: Vec::new(),
        attempts_cancelled: 0,
        invalid: 0,
        errors: Vec::new(),
        elapsed_ms: 0,
    };
    while upload.next_record(&mut record).await? {
        report.rows += 1;
        let line = csv_upload::line_of(&record, report.rows);
        let raw_phone = record.get(phone_column).unwrap_or("");
        match E164::normalize(raw_phone, country.as_ref()) {
            Ok(phone_number) => {
                // Once a row is refused without skip_invalid, the rest is only checked.
                if skip_invalid || report.invalid == 0 {
                    let reason = reason_column
                        .and_then(|column| record.get(column))
                        .and_then(reason);
                    batch.push(line, phone_number, reason);
                    if batch.len() >= IMPORT_BATCH_ROWS {
                        flush(&mut import, &mut batch, &mut report).await?;
                    }
                }
            }
            Err(error) => {
                report.invalid += 1;
                if report.errors.len() < MAX_REPORTED_ERRORS {
                    report.errors.push(RowError {
                        line,
                        field: "phone",
                        code: error.code(),
                        message: error.to_string(),
                    });
                }
            }
        }
    }
    if report.invalid > 0 && !skip_invalid {
        drop(import); // Rolls back.
        return Err(csv_upload::invalid_rows(
            report.rows,
            report.invalid,
            &report.errors,
        ));
    }
    if !batch.is_empty() {
        flush(&mut import, &mut batch, &mut report).await?;
    }
    import.commit().await?;
    report.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    tracing::info!(
        organization_id = %auth.organization_id,
        rows = report.rows,
        added = report.added,
        already_listed = report.already_listed,
        attempts_cancelled = report.attempts_cancelled,
        invalid = report.invalid,
        elapsed_ms = report.elapsed_ms,
        "do-not-call numbers imported"
    );
    Ok(Json(report))
}

/// Inserts a batch and counts what happened to it.
async fn flush(
    import: &mut SuppressionImport,
    batch: &mut SuppressionBatch,
    report: &mut SuppressionImportReport,
) -> Result<(), ApiError> {
    let outcome = import.insert(batch).await?;
    report.added += (batch.len() - outcome.already_listed.len()) as u64;
    report.already_listed += outcome.already_listed.len() as u64;
    report.attempts_cancelled += outcome.attempts_cancelled;
    keep_lines(&mut report.already_listed_lines, outcome.already_listed);
    batch.clear();
    Ok(())
}
