//! The streamed CSV upload the imports share (leads, the do-not-call list): the media type, a
//! slot among [`MAX_CONCURRENT_IMPORTS`], the body read as it arrives, the header's columns,
//! and the errors of a malformed file (400 `malformed_csv` with its line) or of a bad row (a
//! [`RowError`]).
//!
//! Limits, each refused with one log line, and nothing imported (the import is one
//! transaction, rolled back):
//! - at most [`MAX_IMPORT_BYTES`] in all (413 `payload_too_large`);
//! - at most [`MAX_RECORD_BYTES`] per record, the header included (413 `record_too_large`,
//!   naming the record's line). A record is cut off once it grows past the limit plus the
//!   reader's buffer, so memory stays bounded whatever the client sends;
//! - after [`ImportSettings::rate_grace`], the body must have arrived at
//!   [`ImportSettings::min_bytes_per_sec`] on average since the request began, or the upload
//!   is abandoned (408 `upload_too_slow`): a trickling client cannot hold a transaction and a
//!   pooled connection for hours by sending a byte before each idle timeout;
//! - an upload that sends nothing for [`IMPORT_IDLE_TIMEOUT`] is abandoned (408
//!   `upload_stalled`).

use std::{
    collections::BTreeMap,
    future::Future,
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    body::Body,
    http::{HeaderMap, StatusCode, header},
};
use csv_async::{AsyncReader, AsyncReaderBuilder, ErrorKind, StringRecord};
use futures_util::TryStreamExt;
use serde::Serialize;
use serde_json::json;
use tokio::{
    io::{AsyncRead, ReadBuf},
    sync::{Semaphore, SemaphorePermit},
    time::{Instant, Sleep},
};

use super::error::ApiError;
use crate::config::ImportSettings;

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
/// The longest record (a row with its line break, and any blank lines before it; or the
/// header) accepted. A lead's fields are cut to 2,000 characters anyway; a longer record is a
/// broken file or an attack on memory.
pub const MAX_RECORD_BYTES: u64 = 64 * 1024;
/// The CSV reader's buffer: at most this much of the body is read ahead of the parser.
const READ_BUFFER_BYTES: usize = 8 * 1024;
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
    reader: AsyncReader<UploadSource>,
    /// Where the record being read begins, shared with the source's guard.
    record_start: Arc<RecordStart>,
    _slot: SemaphorePermit<'static>,
}

impl CsvUpload {
    /// Checks the media type and takes a slot (415 or 429 otherwise); nothing is read yet. The
    /// pace the body must keep counts from here.
    pub fn open(headers: &HeaderMap, body: Body, limits: ImportSettings) -> Result<Self, ApiError> {
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
        Self::new(body, limits)
    }

    /// Takes a slot (429 otherwise) for a body known to be the file (the dashboard's form part,
    /// whose media type browsers spell many ways); nothing is read yet. The pace the body must
    /// keep counts from here.
    pub fn new(body: Body, limits: ImportSettings) -> Result<Self, ApiError> {
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
        let record_start = Arc::new(RecordStart::default());
        let pace = Pace {
            started: Instant::now(),
            min_bytes_per_sec: limits.min_bytes_per_sec,
            grace: limits.rate_grace,
        };
        let source = UploadSource {
            body: Box::pin(tokio_util::io::StreamReader::new(stream)),
            received: 0,
            timer: Box::pin(tokio::time::sleep_until(pace.deadline(0))),
            pace,
            record_start: Arc::clone(&record_start),
        };
        let reader = AsyncReaderBuilder::new()
            .has_headers(true)
            .flexible(false)
            .buffer_capacity(READ_BUFFER_BYTES)
            .create_reader(source);
        Ok(Self {
            reader,
            record_start,
            _slot: slot,
        })
    }

    /// Refuses the record just read if it is longer than [`MAX_RECORD_BYTES`] (one that grew
    /// much longer was cut off while it was read); else the next one begins where it ended.
    fn record_read(&mut self) -> Result<(), ApiError> {
        let end = self.reader.position();
        let start = self.record_start.byte.load(Ordering::Acquire);
        if end.byte().saturating_sub(start) > MAX_RECORD_BYTES {
            return Err(record_too_large(
                self.record_start.line.load(Ordering::Acquire),
            ));
        }
        self.record_start.byte.store(end.byte(), Ordering::Release);
        self.record_start.line.store(end.line(), Ordering::Release);
        Ok(())
    }

    /// Reads the header row: its columns by lowercase name (a byte-order mark and blanks
    /// trimmed; a repeated name or an empty file is malformed).
    pub async fn columns(&mut self) -> Result<Columns, ApiError> {
        let header = tokio::time::timeout(IMPORT_IDLE_TIMEOUT, self.reader.headers())
            .await
            .map_err(|_| stalled())?
            .map_err(csv_error)?
            .clone();
        self.record_read()?;
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
        let read = tokio::time::timeout(IMPORT_IDLE_TIMEOUT, self.reader.read_record(record))
            .await
            .map_err(|_| stalled())?
            .map_err(csv_error)?;
        self.record_read()?;
        Ok(read)
    }
}

/// The byte offset and line where the record being read begins (after the previous record's
/// line break).
#[derive(Debug)]
struct RecordStart {
    byte: AtomicU64,
    line: AtomicU64,
}

impl Default for RecordStart {
    fn default() -> Self {
        Self {
            byte: AtomicU64::new(0),
            line: AtomicU64::new(1),
        }
    }
}

/// The pace an upload must keep. Pure: time is a parameter.
#[derive(Debug, Clone, Copy)]
struct Pace {
    started: Instant,
    min_bytes_per_sec: u64,
    grace: Duration,
}

impl Pace {
    /// When the upload is too slow if nothing more than `received` bytes has arrived: the
    /// grace period, or as long as `received` bytes take at the minimum rate, whichever is
    /// later (the average since the start must stay at the minimum rate or better).
    fn deadline(&self, received: u64) -> Instant {
        let earned = Duration::from_secs_f64(received as f64 / self.min_bytes_per_sec as f64);
        self.started + self.grace.max(earned)
    }
}

/// The request body as the CSV reader's source: counts what arrives, refuses a record that
/// grows too long, and fails the read once the upload falls behind its pace.
struct UploadSource {
    body: Pin<Box<dyn AsyncRead + Send>>,
    received: u64,
    pace: Pace,
    /// Armed at the pace's deadline while the body has nothing to read.
    timer: Pin<Box<Sleep>>,
    record_start: Arc<RecordStart>,
}

impl AsyncRead for UploadSource {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match this.body.as_mut().poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                this.received += (buf.filled().len() - before) as u64;
                // The parser is at most the reader's buffer behind what arrived: past this,
                // the record being read is longer than the limit for certain.
                let start = this.record_start.byte.load(Ordering::Acquire);
                if this.received.saturating_sub(start) > MAX_RECORD_BYTES + READ_BUFFER_BYTES as u64
                {
                    let line = this.record_start.line.load(Ordering::Acquire);
                    return Poll::Ready(Err(io::Error::other(RecordTooLarge { line })));
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            // Only while waiting on the client: time the import spends in the database is not
            // held against it.
            Poll::Pending => {
                let deadline = this.pace.deadline(this.received);
                if this.timer.deadline() != deadline {
                    this.timer.as_mut().reset(deadline);
                }
                match this.timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(io::Error::other(TooSlow {
                        received: this.received,
                        elapsed: this.pace.started.elapsed(),
                        minimum: this.pace.min_bytes_per_sec,
                    }))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
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

/// 413 `record_too_large`: one record is longer than [`MAX_RECORD_BYTES`].
fn record_too_large(line: u64) -> ApiError {
    tracing::warn!(
        line,
        limit = MAX_RECORD_BYTES,
        "import refused: a record is too long"
    );
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "record_too_large",
        format!("line {line}: a record longer than {MAX_RECORD_BYTES} bytes; nothing was imported"),
    )
    .with_details(json!({"line": line, "max_record_bytes": MAX_RECORD_BYTES}))
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

/// A record grew past [`MAX_RECORD_BYTES`] (and the reader's buffer) while it was read.
#[derive(Debug, thiserror::Error)]
#[error("the record at line {line} is longer than {MAX_RECORD_BYTES} bytes")]
struct RecordTooLarge {
    line: u64,
}

/// The upload fell behind the minimum rate.
#[derive(Debug, thiserror::Error)]
#[error("{received} bytes in {elapsed:?}, under the minimum of {minimum} bytes per second")]
struct TooSlow {
    received: u64,
    elapsed: Duration,
    minimum: u64,
}

fn csv_error(error: csv_async::Error) -> ApiError {
    let line = error
        .position()
        .map(|position| position.line())
        .unwrap_or(0);
    match error.kind() {
        ErrorKind::Io(io_error) => {
            let inner = io_error.get_ref();
            if inner.is_some_and(|inner| inner.is::<TooLarge>()) {
                tracing::warn!(
                    limit = MAX_IMPORT_BYTES,
                    "import refused: the file is too large"
                );
                return ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    TooLarge.to_string(),
                );
            }
            if let Some(RecordTooLarge { line }) = inner.and_then(|inner| inner.downcast_ref()) {
                return record_too_large(*line);
            }
            if let Some(slow) = inner.and_then(|inner| inner.downcast_ref::<TooSlow>()) {
                tracing::warn!(
                    received = slow.received,
                    elapsed = ?slow.elapsed,
                    minimum = slow.minimum,
                    "import refused: the upload is too slow"
                );
                return ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "upload_too_slow",
                    format!("the upload arrived too slowly: {slow}; nothing was imported"),
                )
                .with_details(json!({
                    "received_bytes": slow.received,
                    "min_bytes_per_sec": slow.minimum,
                }));
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

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use futures_util::StreamExt;

    use super::*;

    const LIMITS: ImportSettings = ImportSettings {
        min_bytes_per_sec: 1000,
        rate_grace: Duration::from_secs(10),
    };

    fn csv_headers() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv"));
        headers
    }

    /// Reads every record; the first error, if any.
    async fn read_all(upload: &mut CsvUpload) -> Result<u64, ApiError> {
        upload.columns().await?;
        let mut record = StringRecord::new();
        let mut rows = 0;
        while upload.next_record(&mut record).await? {
            rows += 1;
        }
        Ok(rows)
    }

    #[test]
    fn the_pace_allows_the_grace_period_then_the_minimum_rate_on_average() {
        let started = Instant::now();
        let pace = Pace {
            started,
            min_bytes_per_sec: 1000,
            grace: Duration::from_secs(10),
        };
        assert_eq!(pace.deadline(0), started + Duration::from_secs(10));
        assert_eq!(pace.deadline(9_999), started + Duration::from_secs(10));
        assert_eq!(
            pace.deadline(25_000),
            started + Duration::from_secs(25),
            "what arrived early buys time later"
        );
    }

    #[tokio::test]
    async fn a_record_over_the_limit_is_refused_with_its_line_however_long() {
        let field = |bytes: usize| "x".repeat(bytes);
        let body = format!(
            "name,phone\nAda,+14155550100\n{},+14155550101\nBo,+14155550102\n",
            field(MAX_RECORD_BYTES as usize + 100)
        );
        // A record that never ends is cut off as it grows, long before the file's own limit.
        let endless = futures_util::stream::iter(["name,phone\nAda,+14155550100\n".to_owned()])
            .chain(futures_util::stream::repeat(field(4096)))
            .map(Ok::<_, io::Error>);
        for (body, how) in [
            (Body::from(body), "measured once read"),
            (Body::from_stream(endless), "cut off while read"),
        ] {
            let mut upload = CsvUpload::open(&csv_headers(), body, LIMITS).unwrap();
            let error = read_all(&mut upload).await.expect_err(how);
            assert_eq!(error.status, StatusCode::PAYLOAD_TOO_LARGE, "{how}");
            assert_eq!(error.code, "record_too_large", "{how}");
            assert!(
                error.message.starts_with("line 3: "),
                "{how}: {}",
                error.message
            );
        }
        // Just under the limit passes.
        let body = format!("name,phone\n{},+14155550101\n", field(60 * 1024));
        let mut upload = CsvUpload::open(&csv_headers(), Body::from(body), LIMITS).unwrap();
        assert_eq!(read_all(&mut upload).await.unwrap(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_upload_behind_its_pace_is_abandoned_with_408() {
        let (chunks, receiver) = tokio::sync::mpsc::channel::<&'static str>(8);
        let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
            let chunk = receiver.recv().await?;
            Some((Ok::<_, io::Error>(chunk), receiver))
        });
        let mut upload =
            CsvUpload::open(&csv_headers(), Body::from_stream(stream), LIMITS).unwrap();
        let started = Instant::now();
        chunks.send("name,phone\n").await.unwrap();
        let feeder = tokio::spawn(async move {
            // A row every 5 s, each before the idle timeout: 3 bytes a second.
            let mut ticker = tokio::time::interval(Duration::from_secs(5));
            loop {
                ticker.tick().await;
                if chunks.send("Ada,+14155550100\n").await.is_err() {
                    return;
                }
            }
        });
        let error = read_all(&mut upload).await.expect_err("too slow");
        assert_eq!(error.status, StatusCode::REQUEST_TIMEOUT);
        assert_eq!(error.code, "upload_too_slow");
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(10),
            "refused when the grace period ends"
        );
        feeder.abort();
    }
}
