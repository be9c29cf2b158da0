//! Leads: create one (enrolled in its campaign), read one, list a campaign's, import a CSV
//! file, and schedule a test call.
//!
//! **CSV import.** `POST /campaigns/{id}/leads/import` with the file as the body
//! (`text/csv`, UTF-8, a header row). Columns `name` and `phone` are required; `email`,
//! `timezone` and `notes` are read; any other column goes into the lead's `metadata`. The body
//! is parsed as it arrives and inserted in batches of [`IMPORT_BATCH_ROWS`] within one
//! transaction, so memory stays flat whatever the size and a failed import leaves nothing.
//! - A malformed file (not UTF-8, a row with another number of fields, a missing column) is
//!   refused whole: 400 `malformed_csv` or 422 `missing_column`, with the line.
//! - Rows with invalid values (empty name, bad phone, email or timezone): by default the whole
//!   file is refused with 422 `invalid_rows` listing every bad line (up to
//!   [`MAX_REPORTED_ERRORS`]); with `?skip_invalid=true` the valid rows are imported and the
//!   bad ones reported.
//! - A number already enrolled in the campaign (or earlier in the file) is skipped and
//!   reported as a duplicate.
//! - At most [`MAX_CONCURRENT_IMPORTS`] run at once (429 beyond); an upload idle for
//!   [`IMPORT_IDLE_TIMEOUT`] is abandoned (408), so a stalled client cannot hold a transaction.
//! - Numbers without `+`/`00` use `?default_country_code=` or the organization's
//!   `settings.default_country_code`; without either they are invalid rows.

use std::{
    collections::BTreeMap,
    io,
    time::{Duration, Instant},
};

use axum::{
    Extension, Json,
    body::Body,
    extract::{Path, State},
    http::{HeaderMap, StatusCode, header},
    response::IntoResponse,
};
use csv_async::{AsyncReaderBuilder, ErrorKind, StringRecord};
use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::Semaphore;
use uuid::Uuid;

use super::{
    auth::Auth,
    error::ApiError,
    input::{ApiJson, ApiQuery, Page},
};
use crate::{
    db::leads::{ImportStart, LeadBatch, LeadImport, LeadRefusal, NewLead},
    http::AppState,
    phone::{CountryCode, E164},
};

/// Rows per `INSERT`: large enough to amortise the round trip, small enough to bound memory.
pub const IMPORT_BATCH_ROWS: usize = 1000;
/// Bad rows listed in an answer; the count covers them all.
pub const MAX_REPORTED_ERRORS: usize = 1000;
/// The largest file accepted.
pub const MAX_IMPORT_BYTES: u64 = 512 * 1024 * 1024;
/// Imports running at once in this process; each holds a pooled connection in a transaction
/// for as long as its upload lasts, so more are refused (429) rather than starving the pool.
pub const MAX_CONCURRENT_IMPORTS: usize = 4;
/// An upload that sends nothing for this long is abandoned (its transaction rolled back).
pub const IMPORT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
static IMPORT_SLOTS: Semaphore = Semaphore::const_new(MAX_CONCURRENT_IMPORTS);
/// Longest name, notes or metadata value kept from a row.
const MAX_FIELD_CHARS: usize = 2000;

/// A lead as a client writes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeadInput {
    name: String,
    phone: String,
    email: Option<String>,
    timezone: Option<String>,
    notes: Option<String>,
    metadata: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
pub struct CountryQuery {
    default_country_code: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct ImportQuery {
    default_country_code: Option<String>,
    skip_invalid: Option<bool>,
}

/// A refused row of an import.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RowError {
    /// The file's line (the header is line 1).
    pub line: u64,
    pub field: &'static str,
    pub code: &'static str,
    pub message: String,
}

/// What an import did.
#[derive(Debug, Serialize)]
pub struct ImportReport {
    /// Data rows read (the header excluded).
    pub rows: u64,
    pub imported: u64,
    pub duplicates: u64,
    /// Lines of the duplicates, up to [`MAX_REPORTED_ERRORS`].
    pub duplicate_lines: Vec<u64>,
    pub invalid: u64,
    pub errors: Vec<RowError>,
    pub elapsed_ms: u64,
}

/// One row's raw values.
struct RawLead<'a> {
    name: &'a str,
    phone: &'a str,
    email: Option<&'a str>,
    timezone: Option<&'a str>,
    notes: Option<&'a str>,
    metadata: Option<serde_json::Value>,
}

/// Validates a lead's values (pure); the error names the field, with a stable code.
fn validate(
    raw: RawLead<'_>,
    country: Option<&CountryCode>,
) -> Result<NewLead, (&'static str, &'static str, String)> {
    let name = raw.name.trim();
    if name.is_empty() {
        return Err(("name", "name_empty", "the name is empty".to_owned()));
    }
    if name.chars().count() > MAX_FIELD_CHARS {
        return Err(("name", "name_too_long", "the name is too long".to_owned()));
    }
    let phone = E164::normalize(raw.phone, country)
        .map_err(|error| ("phone", error.code(), error.to_string()))?;
    let email = raw.email.map(str::trim).filter(|email| !email.is_empty());
    if let Some(email) = email {
        let valid = email.len() <= 254
            && email.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty() && domain.contains('.') && !domain.contains('@')
            });
        if !valid {
            return Err((
                "email",
                "email_invalid",
                format!("{email:?} is not an email address"),
            ));
        }
    }
    let timezone = raw.timezone.map(str::trim).filter(|zone| !zone.is_empty());
    if let Some(zone) = timezone
        && zone.parse::<chrono_tz::Tz>().is_err()
    {
        return Err((
            "timezone",
            "timezone_invalid",
            format!("{zone:?} is not an IANA timezone"),
        ));
    }
    let notes = raw.notes.map(str::trim).filter(|notes| !notes.is_empty());
    Ok(NewLead {
        name: name.to_owned(),
        phone: phone.into_string(),
        email: email.map(str::to_owned),
        timezone: timezone.map(str::to_owned),
        notes: notes.map(|notes| notes.chars().take(MAX_FIELD_CHARS).collect()),
        metadata: raw.metadata,
    })
}

/// The default country code: the request's, else the organization's.
async fn country_code(
    state: &AppState,
    organization_id: Uuid,
    requested: Option<&str>,
) -> Result<Option<CountryCode>, ApiError> {
    if let Some(code) = requested {
        return CountryCode::parse(code).map(Some).ok_or_else(|| {
            ApiError::invalid(
                "default_country_code",
                "a country calling code: 1 to 3 digits",
            )
        });
    }
    let defaults = state.db.organization_defaults(organization_id).await?;
    Ok(defaults
        .and_then(|defaults| defaults.default_country_code)
        .and_then(|code| CountryCode::parse(&code)))
}

fn refusal(refusal: LeadRefusal) -> ApiError {
    match refusal {
        LeadRefusal::CampaignNotFound => ApiError::not_found("campaign"),
        LeadRefusal::LeadNotFound => ApiError::not_found("lead"),
        LeadRefusal::CampaignFinished { status } => ApiError::conflict(
            "campaign_finished",
            format!("a {status} campaign takes no new leads or calls"),
        ),
        LeadRefusal::Duplicate { lead_id } => ApiError::conflict(
            "duplicate_lead",
            "this phone number is already a lead of the campaign",
        )
        .with_field("phone")
        .with_details(json!({"lead_id": lead_id})),
        LeadRefusal::InFlight => {
            ApiError::conflict("call_in_flight", "the lead is being dialed or is on a call")
        }
        LeadRefusal::TestCallPending => ApiError::conflict(
            "test_call_pending",
            "a test call of this lead is already waiting to be placed",
        ),
    }
}

/// `POST /campaigns/{id}/leads`: one lead, enrolled in the campaign.
pub async fn create(
    State(state): State<AppState>,
    Extension(auth): Extension<Auth>,
    Path(campaign_id): Path<Uuid>,
    ApiQuery(query): ApiQuery<CountryQuery>,
    ApiJson(input): ApiJson<LeadInput>,
) -> Result<impl IntoResponse, ApiError> {
    let country = country_code(
        &state,
        auth.organization_id,
        query.default_country_code.as_deref(),
    )
    .await?;
    if let Some(metadata) = &input.metadata
        && !metadata.is_object()
    {
        return Err(ApiError::invalid("metadata", "metadata is a JSON object"));
    }
    let lead = validate(
        RawLead {
            name: &input.name,
            phone: &input.phone,
            email: input.email.as_deref(),
            timezone: input.timezone.as_deref(),
            notes: input.notes.as_deref(),
            metadata: input.metadata.clone(),
        },
        country.as_ref(),
    )
    .map_err(|(field, code, message)| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message).with_field(field)
    })?;
    let lead_id = state
        .db
        .create_lead(auth.organization_id, campaign_id, &lead)
        .await?
        .map_err(refusal)?;
    let lead = state
        .db
        .lead(auth.organization_id, lead_id)
        .await?
        .ok_or_else(|| ApiError::not_found("lead"))?;
    Ok((StatusCode::CREATED, Json(lead)))
}

/// `GET /leads/{id}`: a lead and its dial attempts.
pub async fn get(
    State(state): State<AppState>,
    Extension(auth): Extension<Auth>,
    Path(id): Path<Uuid>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let lead = state
        .db
        .lead(auth.organization_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("lead"))?;
    let attempts = state.db.lead_attempts(id).await?;
    let mut body = serde_json::to_value(lead).map_err(|error| ApiError::internal(&error))?;
    body["attempts"] =
        serde_json::to_value(attempts).map_err(|error| ApiError::internal(&error))?;
    Ok(Json(body))
}

/// `GET /campaigns/{id}/leads`: the leads enrolled, oldest first.
pub async fn list(
    State(state): State<AppState>,
    Extension(auth): Extension<Auth>,
    Path(campaign_id): Path<Uuid>,
    ApiQuery(page): ApiQuery<Page>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if state
        .db
        .campaign(auth.organization_id, campaign_id)
        .await?
        .is_none()
    {
        return Err(ApiError::not_found("campaign"));
    }
    let (limit, offset) = (page.limit()?, page.offset()?);
    let leads = state
        .db
        .campaign_leads(auth.organization_id, campaign_id, limit, offset)
        .await?;
    Ok(Json(
        json!({"leads": leads, "limit": limit, "offset": offset}),
    ))
}

/// `POST /campaigns/{campaign_id}/leads/{lead_id}/test-call`: one call to one lead, placed
/// by the dialer within its pacing limits even when the campaign is not running.
pub async fn test_call(
    State(state): State<AppState>,
    Extension(auth): Extension<Auth>,
    Path((campaign_id, lead_id)): Path<(Uuid, Uuid)>,
) -> Result<impl IntoResponse, ApiError> {
    let call = state
        .db
        .schedule_test_call(auth.organization_id, campaign_id, lead_id)
        .await?
        .map_err(refusal)?;
    Ok((StatusCode::ACCEPTED, Json(call)))
}

/// The columns of an import file.
struct Columns {
    name: usize,
    phone: usize,
    email: Option<usize>,
    timezone: Option<usize>,
    notes: Option<usize>,
    /// Every other column, into `metadata`.
    extra: Vec<(usize, String)>,
}

impl Columns {
    fn from_header(header: &StringRecord) -> Result<Self, ApiError> {
        let mut positions = BTreeMap::new();
        for (index, raw) in header.iter().enumerate() {
            let name = raw
                .trim_start_matches('\u{feff}')
                .trim()
                .to_ascii_lowercase();
            if name.is_empty() {
                continue;
            }
            if positions.insert(name.clone(), index).is_some() {
                return Err(malformed(1, format!("the column {name:?} appears twice")));
            }
        }
        let required = |name: &'static str| {
            positions.get(name).copied().ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "missing_column",
                    format!("the header has no {name:?} column"),
                )
                .with_field(name)
            })
        };
        let (name, phone) = (required("name")?, required("phone")?);
        let known = ["name", "phone", "email", "timezone", "notes"];
        Ok(Self {
            name,
            phone,
            email: positions.get("email").copied(),
            timezone: positions.get("timezone").copied(),
            notes: positions.get("notes").copied(),
            extra: positions
                .iter()
                .filter(|(name, _)| !known.contains(&name.as_str()))
                .map(|(name, index)| (*index, name.clone()))
                .collect(),
        })
    }

    fn raw<'a>(&self, record: &'a StringRecord) -> RawLead<'a> {
        let field = |index: usize| record.get(index).unwrap_or("");
        let metadata = self
            .extra
            .iter()
            .filter_map(|(index, name)| {
                let value = field(*index).trim();
                (!value.is_empty()).then(|| {
                    let value: String = value.chars().take(MAX_FIELD_CHARS).collect();
                    (name.clone(), serde_json::Value::String(value))
                })
            })
            .collect::<serde_json::Map<_, _>>();
        RawLead {
            name: field(self.name),
            phone: field(self.phone),
            email: self.email.map(field),
            timezone: self.timezone.map(field),
            notes: self.notes.map(field),
            metadata: (!metadata.is_empty()).then_some(serde_json::Value::Object(metadata)),
        }
    }
}

fn malformed(line: u64, message: String) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "malformed_csv",
        format!("line {line}: {message}; nothing was imported"),
    )
    .with_details(json!({"line": line}))
}

/// The body grew past [`MAX_IMPORT_BYTES`].
#[derive(Debug, thiserror::Error)]
#[error("the file is larger than {MAX_IMPORT_BYTES} bytes")]
struct TooLarge;

fn csv_error(error: csv_async::Error) -> ApiError {
    let line = error
        .position()
        .map(|position| position.line())
        .unwrap_or(0);
    match error.kind() {
        ErrorKind::Io(io_error) => {
            if io_error
                .get_ref()
                .is_some_and(|inner| inner.is::<TooLarge>())
            {
                return ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    TooLarge.to_string(),
                );
            }
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "body_unreadable",
                format!("reading the upload failed: {io_error}; nothing was imported"),
            )
        }
        ErrorKind::Utf8 { pos, .. } => malformed(
            pos.as_ref().map_or(line, |position| position.line()),
            "the file is not UTF-8".to_owned(),
        ),
        ErrorKind::UnequalLengths {
            pos,
            expected_len,
            len,
        } => malformed(
            pos.as_ref().map_or(line, |position| position.line()),
            format!("{len} fields where the header has {expected_len}"),
        ),
        _ => malformed(line, error.to_string()),
    }
}

/// `POST /campaigns/{id}/leads/import`: see the module's documentation.
pub async fn import(
    State(state): State<AppState>,
    Extension(auth): Extension<Auth>,
    Path(campaign_id): Path<Uuid>,
    ApiQuery(query): ApiQuery<ImportQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<ImportReport>, ApiError> {
    let started = Instant::now();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    if !["text/csv", "application/csv", "text/plain"]
        .iter()
        .any(|accepted| content_type.trim_start().starts_with(accepted))
    {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the file as Content-Type: text/csv",
        ));
    }
    let Ok(_slot) = IMPORT_SLOTS.try_acquire() else {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_imports",
            format!("{MAX_CONCURRENT_IMPORTS} imports are running; retry when one is done"),
        ));
    };
    let skip_invalid = query.skip_invalid.unwrap_or(false);
    let country = country_code(
        &state,
        auth.organization_id,
        query.default_country_code.as_deref(),
    )
    .await?;
    let mut import = match state
        .db
        .begin_lead_import(auth.organization_id, campaign_id)
        .await?
    {
        ImportStart::Ready(import) => import,
        ImportStart::Refused(why) => return Err(refusal(why)),
    };

    // The body as a byte stream, never collected: the CSV reader pulls from it as it parses.
    let mut received = 0u64;
    let stream = body
        .into_data_stream()
        .map_err(io::Error::other)
        .and_then(move |chunk| {
            received += chunk.len() as u64;
            let result = if received > MAX_IMPORT_BYTES {
                Err(io::Error::other(TooLarge))
            } else {
                Ok(chunk)
            };
            std::future::ready(result)
        });
    let mut reader = AsyncReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .create_reader(tokio_util::io::StreamReader::new(stream));
    let stalled = || {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "upload_stalled",
            format!("nothing arrived for {IMPORT_IDLE_TIMEOUT:?}; nothing was imported"),
        )
    };
    let header = tokio::time::timeout(IMPORT_IDLE_TIMEOUT, reader.headers())
        .await
        .map_err(|_| stalled())?
        .map_err(csv_error)?
        .clone();
    if header.is_empty() {
        return Err(malformed(1, "the file is empty".to_owned()));
    }
    let columns = Columns::from_header(&header)?;

    let mut record = StringRecord::new();
    let mut batch = LeadBatch::default();
    let mut report = ImportReport {
        rows: 0,
        imported: 0,
        duplicates: 0,
        duplicate_lines: Vec::new(),
        invalid: 0,
        errors: Vec::new(),
        elapsed_ms: 0,
    };
    while tokio::time::timeout(IMPORT_IDLE_TIMEOUT, reader.read_record(&mut record))
        .await
        .map_err(|_| stalled())?
        .map_err(csv_error)?
    {
        report.rows += 1;
        let line = record
            .position()
            .map_or(report.rows + 1, |position| position.line());
        match validate(columns.raw(&record), country.as_ref()) {
            Ok(lead) => {
                // Once a row is refused without skip_invalid, the rest is only checked.
                if skip_invalid || report.invalid == 0 {
                    batch.push(line, lead);
                    if batch.len() >= IMPORT_BATCH_ROWS {
                        flush(&mut import, &mut batch, &mut report).await?;
                    }
                }
            }
            Err((field, code, message)) => {
                report.invalid += 1;
                if report.errors.len() < MAX_REPORTED_ERRORS {
                    report.errors.push(RowError {
                        line,
                        field,
                        code,
                        message,
                    });
                }
            }
        }
    }
    if report.invalid > 0 && !skip_invalid {
        drop(import); // Rolls back.
        let message = format!(
            "{} invalid rows; nothing was imported (fix them, or send ?skip_invalid=true)",
            report.invalid
        );
        return Err(
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_rows", message).with_details(
                json!({"rows": report.rows, "invalid": report.invalid, "errors": report.errors}),
            ),
        );
    }
    if !batch.is_empty() {
        flush(&mut import, &mut batch, &mut report).await?;
    }
    import.commit().await?.map_err(refusal)?;
    report.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    tracing::info!(
        %campaign_id,
        rows = report.rows,
        imported = report.imported,
        duplicates = report.duplicates,
        invalid = report.invalid,
        elapsed_ms = report.elapsed_ms,
        "leads imported"
    );
    Ok(Json(report))
}

/// Inserts a batch and counts what happened to it.
async fn flush(
    import: &mut LeadImport,
    batch: &mut LeadBatch,
    report: &mut ImportReport,
) -> Result<(), ApiError> {
    let duplicates = import.insert(batch).await?;
    report.imported += (batch.len() - duplicates.len()) as u64;
    report.duplicates += duplicates.len() as u64;
    let room = MAX_REPORTED_ERRORS.saturating_sub(report.duplicate_lines.len());
    report
        .duplicate_lines
        .extend(duplicates.into_iter().take(room));
    batch.clear();
    Ok(())
}
