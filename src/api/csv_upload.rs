//! The streamed CSV upload the imports share (leads, the do-not-call list): the media type, a
//! slot among [`MAX_CONCURRENT_IMPORTS`], the body read as it arrives (at most
//! [`MAX_IMPORT_BYTES`], abandoned after [`IMPORT_IDLE_TIMEOUT`] of silence), the header's
//! columns, and the errors of a malformed file (400 `malformed_csv` with its line) or of a bad
//! row (a [`RowError`]).

use std::{collections::BTreeMap, io, pin::Pin, time::Duration};

use axum::{
    body::Body,
    http::{HeaderMap, StatusCode, header},
};
use csv_async::{AsyncReader, AsyncReaderBuilder, ErrorKind, StringRecord};
use futures_util::TryStreamExt;
use serde::Serialize;
use serde_json::json;
use tokio::sync::{Semaphore, SemaphorePermit};

use super::error::ApiError;

/// Bad rows listed in an answer; the count covers them all.
pub const MAX_REPORTED_ERRORS: usize = 1000;
/// The largest file accepted.
pub const MAX_IMPORT_BYTES: u64 = 512 * 1024 * 1024;
/// Imports running at once in this process, of any kind; each holds a pooled connection in a
/// transaction for as long as its upload lasts, so more are refused (429) rather than starving
/// the pool.
pub const MAX_CONCURRENT_IMPORTS: usize = 4;
/// An upload that sends nothing for this long is abandoned (its transaction rolled back).
pub const IMPORT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
static IMPORT_SLOTS: Semaphore = Semaphore::const_new(MAX_CONCURRENT_IMPORTS);

/// A refused row of an import.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RowError {
    /// The file's line (the header is line 1).
    pub line: u64,
    pub field: &'static str,
    pub code: &'static str,
    pub message: String,
}

/// The body being read as CSV, with its import slot.
pub struct CsvUpload {
    reader: AsyncReader<Pin<Box<dyn tokio::io::AsyncRead + Send>>>,
    _slot: SemaphorePermit<'static>,
}

impl CsvUpload {
    /// Checks the media type and takes a slot (415 or 429 otherwise); nothing is read yet.
    pub fn open(headers: &HeaderMap, body: Body) -> Result<Self, ApiError> {
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
        let Ok(slot) = IMPORT_SLOTS.try_acquire() else {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_imports",
                format!("{MAX_CONCURRENT_IMPORTS} imports are running; retry when one is done"),
            ));
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
        let source: Pin<Box<dyn tokio::io::AsyncRead + Send>> =
            Box::pin(tokio_util::io::StreamReader::new(stream));
        let reader = AsyncReaderBuilder::new()
            .has_headers(true)
            .flexible(false)
            .create_reader(source);
        Ok(Self {
            reader,
            _slot: slot,
        })
    }

    /// Reads the header row: its columns by lowercase name (a byte-order mark and blanks
    /// trimmed; a repeated name or an empty file is malformed).
    pub async fn columns(&mut self) -> Result<Columns, ApiError> {
        let header = tokio::time::timeout(IMPORT_IDLE_TIMEOUT, self.reader.headers())
            .await
            .map_err(|_| stalled())?
            .map_err(csv_error)?
            .clone();
        if header.is_empty() {
            return Err(malformed(1, "the file is empty".to_owned()));
        }
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
        Ok(Columns { positions })
    }

    /// Reads the next row into `record`; `false` at the end of the file.
    pub async fn next_record(&mut self, record: &mut StringRecord) -> Result<bool, ApiError> {
        tokio::time::timeout(IMPORT_IDLE_TIMEOUT, self.reader.read_record(record))
            .await
            .map_err(|_| stalled())?
            .map_err(csv_error)
    }
}

/// The line of a row just read, the `rows`-th data row.
pub fn line_of(record: &StringRecord, rows: u64) -> u64 {
    record
        .position()
        .map_or(rows + 1, |position| position.line())
}

/// The header's columns by name.
#[derive(Debug, Clone)]
pub struct Columns {
    positions: BTreeMap<String, usize>,
}

impl Columns {
    /// A column the file must have (422 `missing_column` naming it).
    pub fn required(&self, name: &'static str) -> Result<usize, ApiError> {
        self.positions.get(name).copied().ok_or_else(|| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "missing_column",
                format!("the header has no {name:?} column"),
            )
            .with_field(name)
        })
    }

    pub fn optional(&self, name: &str) -> Option<usize> {
        self.positions.get(name).copied()
    }

    /// The columns not in `known`, with their positions.
    pub fn others(&self, known: &[&str]) -> Vec<(usize, String)> {
        self.positions
            .iter()
            .filter(|(name, _)| !known.contains(&name.as_str()))
            .map(|(name, index)| (*index, name.clone()))
            .collect()
    }
}

/// 422 `invalid_rows`: the file had bad rows and nothing was imported.
pub fn invalid_rows(rows: u64, invalid: u64, errors: &[RowError]) -> ApiError {
    let message = format!(
        "{invalid} invalid rows; nothing was imported (fix them, or send ?skip_invalid=true)"
    );
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_rows", message)
        .with_details(json!({"rows": rows, "invalid": invalid, "errors": errors}))
}

pub fn malformed(line: u64, message: String) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "malformed_csv",
        format!("line {line}: {message}; nothing was imported"),
    )
    .with_details(json!({"line": line}))
}

fn stalled() -> ApiError {
    ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "upload_stalled",
        format!("nothing arrived for {IMPORT_IDLE_TIMEOUT:?}; nothing was imported"),
    )
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
