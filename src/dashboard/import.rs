//! A campaign's CSV upload (`POST /app/campaigns/{id}/leads/import`, `leads:write`): a
//! `multipart/form-data` form that works without JavaScript (the script only adds a progress
//! bar), imported by the API's own [`import_leads`], so with its limits, its one transaction
//! and its report. The answer is a page: what was imported, skipped and suppressed, and every
//! refused line with its number and reason; or why the file was refused whole, with nothing
//! imported.
//!
//! The form's small fields come first (browsers send them in the page's order); the file part
//! is streamed into the import as it arrives, never collected, through a small channel, so the
//! import's own byte, record and pace limits apply to it as to an API upload.

use std::io;

use askama::Template;
use axum::{
    body::{Body, Bytes},
    extract::{
        Multipart, Path, State,
        multipart::{Field, MultipartError},
    },
    http::StatusCode,
    response::{Html, IntoResponse, Response},
};
use uuid::Uuid;

use super::{DashError, card, session::Session, views::ImportPage};
use crate::{
    api::{
        csv_upload::{CsvUpload, MAX_IMPORT_BYTES},
        leads::{ImportOptions, ImportOutcome, import_leads},
        tokens::Scope,
    },
    http::AppState,
};

/// The largest form accepted: the largest file the import takes, and room for the other
/// fields and the parts' headers. The file's own limit is the import's (counted on the file).
pub(super) const MAX_FORM_BYTES: usize = MAX_IMPORT_BYTES as usize + 64 * 1024;
/// The longest small field (the CSRF token, a checkbox, a country code).
const MAX_FIELD_BYTES: usize = 1024;
/// Chunks of the file in flight between the form and the import.
const PUMP_CHUNKS: usize = 4;

/// What the form's small fields said.
#[derive(Debug, Default)]
struct Fields {
    csrf: String,
    skip_invalid: bool,
    default_country_code: Option<String>,
}

fn unreadable(error: MultipartError) -> DashError {
    DashError::BadRequest(format!("the form could not be read: {}", error.body_text()))
}

/// A small field's text, refused past [`MAX_FIELD_BYTES`].
async fn small_text(field: &mut Field<'_>) -> Result<String, DashError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(unreadable)? {
        if bytes.len() + chunk.len() > MAX_FIELD_BYTES {
            return Err(DashError::BadRequest("a form field is too long".to_owned()));
        }
        bytes.extend_from_slice(&chunk);
    }
    String::from_utf8(bytes).map_err(|_| DashError::BadRequest("a form field is not UTF-8".into()))
}

/// `POST /app/campaigns/{id}/leads/import`.
pub(super) async fn import(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<Uuid>,
    mut multipart: Multipart,
) -> Result<Response, DashError> {
    let mut fields = Fields::default();
    while let Some(mut field) = multipart.next_field().await.map_err(unreadable)? {
        match field.name().unwrap_or_default() {
            "file" => {
                // Nothing of the file is read before the form is known to be this session's.
                session.check_csrf(&fields.csrf)?;
                session.require(Scope::CampaignsRead)?;
                session.require(Scope::LeadsWrite)?;
                let campaign = card(&state, session.organization_id, id).await?;
                let options = ImportOptions {
                    default_country_code: fields.default_country_code.as_deref(),
                    skip_invalid: fields.skip_invalid,
                };
                let outcome = stream_import(&state, &session, id, field, options).await;
                let mut page = ImportPage {
                    csrf: session.csrf().to_owned(),
                    campaign_id: id,
                    campaign_name: campaign.name,
                    refused: None,
                    report: None,
                    unlisted: 0,
                };
                let status = match outcome {
                    Ok(ImportOutcome::Imported(report)) => {
                        page.report = Some(report);
                        StatusCode::OK
                    }
                    Ok(ImportOutcome::Refused(mut report)) => {
                        // Rolled back: whatever its batches had counted was not kept.
                        report.imported = 0;
                        report.enrolled = 0;
                        report.suppressed = 0;
                        report.duplicates = 0;
                        report.suppressed_lines.clear();
                        report.duplicate_lines.clear();
                        page.refused = Some(format!(
                            "{} of its {} rows are invalid (listed below); fix them, or tick \
                             “skip the invalid rows”",
                            report.invalid, report.rows
                        ));
                        page.report = Some(report);
                        StatusCode::UNPROCESSABLE_ENTITY
                    }
                    Err(error) if error.status.is_client_error() => {
                        // The page says once that nothing was imported.
                        let message = error.message.trim_end_matches("; nothing was imported");
                        page.refused = Some(message.to_owned());
                        error.status
                    }
                    Err(error) => return Err(error.into()),
                };
                // The report lists the first refused lines; the page says how many more.
                page.unlisted = page.report.as_ref().map_or(0, |report| {
                    report.invalid.saturating_sub(report.errors.len() as u64)
                });
                return Ok((status, Html(page.render()?)).into_response());
            }
            "csrf" => fields.csrf = small_text(&mut field).await?,
            "skip_invalid" => fields.skip_invalid = !small_text(&mut field).await?.is_empty(),
            "default_country_code" => {
                let code = small_text(&mut field).await?;
                let code = code.trim();
                fields.default_country_code = (!code.is_empty()).then(|| code.to_owned());
            }
            _ => {}
        }
    }
    session.check_csrf(&fields.csrf)?;
    Err(DashError::BadRequest(
        "choose a CSV file to upload".to_owned(),
    ))
}

/// Runs the import on the file part as it arrives: the part is pumped into a channel whose
/// other end is the import's body (the import may stop reading early: the pump then stops).
async fn stream_import(
    state: &AppState,
    session: &Session,
    campaign_id: Uuid,
    mut field: Field<'_>,
    options: ImportOptions<'_>,
) -> Result<ImportOutcome, crate::api::error::ApiError> {
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(PUMP_CHUNKS);
    let body = Body::from_stream(futures_util::stream::poll_fn(move |context| {
        receiver.poll_recv(context)
    }));
    let pump = async move {
        loop {
            let chunk = match field.chunk().await {
                Ok(Some(chunk)) => Ok(chunk),
                Ok(None) => return,
                Err(error) => Err(io::Error::other(error)),
            };
            let failed = chunk.is_err();
            if sender.send(chunk).await.is_err() || failed {
                return;
            }
        }
    };
    let import = async {
        let upload = CsvUpload::new(body, state.settings.imports)?;
        import_leads(state, session.organization_id, campaign_id, upload, options).await
    };
    tokio::pin!(import);
    tokio::select! {
        // Done, or refused early: what the pump still waits for is not wanted.
        outcome = &mut import => outcome,
        // The whole file handed over: the import finishes reading it.
        () = pump => import.await,
    }
}
