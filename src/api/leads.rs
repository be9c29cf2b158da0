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
//! - A number on the organization's do-not-call list is stored as a lead but not enrolled,
//!   and reported (`suppressed`, `suppressed_lines`); likewise one lead (`"enrolled": false,
//!   "suppressed": true`). A test call of such a lead is 409 `do_not_call`.
//! - At most [`csv_upload::MAX_CONCURRENT_IMPORTS`] imports of any kind run at once (429
//!   beyond); an upload idle for [`csv_upload::IMPORT_IDLE_TIMEOUT`], or slower on average
//!   than `VG_IMPORT_MIN_BYTES_PER_SEC` once `VG_IMPORT_RATE_GRACE_SECS` have passed, is
//!   abandoned (408), so a stalled or trickling client cannot hold a transaction. A record
//!   longer than [`csv_upload::MAX_RECORD_BYTES`] is refused (413 `record_too_large`, naming
//!   its line).
//! - Numbers without `+`/`00` use `?default_country_code=` or the organization's
//!   `settings.default_country_code`; without either they are invalid rows.

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
    csv_upload::{self, Columns as CsvColumns, CsvUpload, MAX_REPORTED_ERRORS, RowError},
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
/// Longest name, notes or metadata value (or do-not-call reason) kept from a row.
pub(super) const MAX_FIELD_CHARS: usize = 2000;

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

/// What an import did.
#[derive(Debug, Serialize)]
pub struct ImportReport {
    /// Data rows read (the header excluded).
    pub rows: u64,
    /// Leads stored: `enrolled` of them in the campaign, `suppressed` not.
    pub imported: u64,
    pub enrolled: u64,
    /// Stored but not enrolled: the number is on the do-not-call list.
    pub suppressed: u64,
    /// Lines of the suppressed, up to [`MAX_REPORTED_ERRORS`].
    pub suppressed_lines: Vec<u64>,
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
pub(super) async fn country_code(
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
        LeadRefusal::DoNotCall => ApiError::conflict(
            "do_not_call",
            "the lead's phone number is on the organization's do-not-call list",
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
    let created = state
        .db
        .create_lead(auth.organization_id, campaign_id, &lead)
        .await?
        .map_err(refusal)?;
    let lead = state
        .db
        .lead(auth.organization_id, created.lead_id)
        .await?
        .ok_or_else(|| ApiError::not_found("lead"))?;
    let mut body = serde_json::to_value(lead).map_err(|error| ApiError::internal(&error))?;
    body["enrolled"] = json!(!created.suppressed);
    body["suppressed"] = json!(created.suppressed);
    Ok((StatusCode::CREATED, Json(body)))
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
    fn from_header(columns: &CsvColumns) -> Result<Self, ApiError> {
        let (name, phone) = (columns.required("name")?, columns.required("phone")?);
        Ok(Self {
            name,
            phone,
            email: columns.optional("email"),
            timezone: columns.optional("timezone"),
            notes: columns.optional("notes"),
            extra: columns.others(&["name", "phone", "email", "timezone", "notes"]),
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

/// `POST /campaigns/{id}/leads/import`: see the module's documentation.
pub async fn import(
    State(state): State<AppState>,
    Extension(auth): Extension<Auth>,
    Path(campaign_id): Path<Uuid>,
    ApiQuery(query): ApiQuery<ImportQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<ImportReport>, ApiError> {
    let upload = CsvUpload::open(&headers, body, state.settings.imports)?;
    let options = ImportOptions {
        default_country_code: query.default_country_code.as_deref(),
        skip_invalid: query.skip_invalid.unwrap_or(false),
    };
    match import_leads(&state, auth.organization_id, campaign_id, upload, options).await? {
        ImportOutcome::Imported(report) => Ok(Json(report)),
        ImportOutcome::Refused(report) => Err(csv_upload::invalid_rows(
            report.rows,
            report.invalid,
            &report.errors,
        )),
    }
}

/// How an import treats its rows.
#[derive(Debug, Clone, Copy, Default)]
pub struct ImportOptions<'a> {
    /// For numbers without `+`/`00`; else the organization's default.
    pub default_country_code: Option<&'a str>,
    /// Import the valid rows and report the bad ones, rather than refuse the file.
    pub skip_invalid: bool,
}

/// What an import that read its whole file did.
#[derive(Debug)]
pub enum ImportOutcome {
    Imported(ImportReport),
    /// Bad rows without `skip_invalid`: nothing imported; the report lists them.
    Refused(ImportReport),
}

/// Imports a CSV file of leads into a campaign: the one path of the API's import and the
/// dashboard's upload (see the module's documentation). A file refused whole (malformed, too
/// large, too slow, the campaign gone or finished) is an error and leaves nothing.
pub async fn import_leads(
    state: &AppState,
    organization_id: Uuid,
    campaign_id: Uuid,
    mut upload: CsvUpload,
    options: ImportOptions<'_>,
) -> Result<ImportOutcome, ApiError> {
    let started = Instant::now();
    let skip_invalid = options.skip_invalid;
    let country = country_code(state, organization_id, options.default_country_code).await?;
    let mut import = match state
        .db
        .begin_lead_import(organization_id, campaign_id)
        .await?
    {
        ImportStart::Ready(import) => import,
        ImportStart::Refused(why) => return Err(refusal(why)),
    };
    let columns = Columns::from_header(&upload.columns().await?)?;

    let mut record = StringRecord::new();
    let mut batch = LeadBatch::default();
    let mut report = ImportReport {
        rows: 0,
        imported: 0,
        enrolled: 0,
        suppressed: 0,
        suppressed_lines: Vec::new(),
        duplicates: 0,
        duplicate_lines: Vec::new(),
        invalid: 0,
        errors: Vec::new(),
        elapsed_ms: 0,
    };
    while upload.next_record(&mut record).await? {
        report.rows += 1;
        let line = csv_upload::line_of(&record, report.rows);
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
        report.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        return Ok(ImportOutcome::Refused(report));
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
        suppressed = report.suppressed,
        duplicates = report.duplicates,
        invalid = report.invalid,
        elapsed_ms = report.elapsed_ms,
        "leads imported"
    );
    Ok(ImportOutcome::Imported(report))
}

/// Inserts a batch and counts what happened to it.
async fn flush(
    import: &mut LeadImport,
    batch: &mut LeadBatch,
    report: &mut ImportReport,
) -> Result<(), ApiError> {
    let outcome = import.insert(batch).await?;
    let stored = (batch.len() - outcome.duplicates.len()) as u64;
    report.imported += stored;
    report.enrolled += stored - outcome.suppressed.len() as u64;
    report.duplicates += outcome.duplicates.len() as u64;
    report.suppressed += outcome.suppressed.len() as u64;
    keep_lines(&mut report.duplicate_lines, outcome.duplicates);
    keep_lines(&mut report.suppressed_lines, outcome.suppressed);
    batch.clear();
    Ok(())
}

/// Appends lines to a reported list, up to [`MAX_REPORTED_ERRORS`].
pub(super) fn keep_lines(kept: &mut Vec<u64>, lines: Vec<u64>) {
    let room = MAX_REPORTED_ERRORS.saturating_sub(kept.len());
    kept.extend(lines.into_iter().take(room));
}

#[cfg(test)]
mod properties;
