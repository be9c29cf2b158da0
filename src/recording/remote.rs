//! `s3://bucket/prefix` recordings: any S3-compatible store, through `object_store`.
//!
//! A call's file is written on local disk as with `file://` (the store is never on the call's
//! path); once finished it is uploaded, multipart, by one background task per gateway
//! ([`upload_loop`]), and removed from the disk only when the store has it. A store that is
//! down leaves the file where it is, retried with backoff (1 s doubling to 5 min), never
//! dropped; the next start uploads what a stopped run left. Until a file is uploaded the
//! gateway that holds it serves it from its disk.

use std::{collections::BTreeMap, path::PathBuf, sync::Arc, time::Duration};

use bytes::Bytes;
use futures_util::stream::BoxStream;
use object_store::{
    GetOptions, GetRange, ObjectStore, ObjectStoreExt, RetryConfig, WriteMultipart,
    aws::{AmazonS3, AmazonS3Builder},
    path::Path as ObjectPath,
};
use secrecy::ExposeSecret;
use tokio::{io::AsyncReadExt, sync::mpsc};
use tokio_util::sync::CancellationToken;

use crate::config::S3Settings;

/// Parts of a multipart upload (S3's minimum part size, except the last).
const PART_BYTES: usize = 5 * 1024 * 1024;
/// The first retry of a failed upload, doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Finished files announced to the uploader and not yet taken; a full queue loses nothing,
/// since the uploader also looks at the directory (at start, and whenever it has retries).
pub const UPLOAD_QUEUE: usize = 1024;

/// Why the store refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("the recordings store refused its settings: {0}")]
    Settings(String),
    #[error("the recordings store failed: {0}")]
    Store(#[from] object_store::Error),
    #[error("reading the local recording failed: {0}")]
    Local(#[from] std::io::Error),
}

/// A bucket and the prefix every recording's key starts with.
#[derive(Debug)]
pub struct RemoteStore {
    store: AmazonS3,
    prefix: String,
    /// Where finished files wait for their upload: the uploader's queue.
    uploads: mpsc::Sender<String>,
    /// Its other end, until [`upload_loop`] takes it.
    queue: std::sync::Mutex<Option<mpsc::Receiver<String>>>,
}

impl RemoteStore {
    /// The store for `settings`. Builds the client only: nothing is sent until the first
    /// upload.
    pub fn new(settings: &S3Settings) -> Result<Self, RemoteError> {
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&settings.bucket)
            .with_region(&settings.region)
            // Our own backoff retries an upload for as long as it takes; the client's own
            // retries only ride out a blip, so a store that is down is noticed in seconds.
            .with_retry(RetryConfig {
                max_retries: 2,
                retry_timeout: Duration::from_secs(15),
                ..RetryConfig::default()
            })
            .with_client_options(
                object_store::ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(5))
                    .with_timeout(Duration::from_secs(60)),
            );
        if let Some(endpoint) = &settings.endpoint {
            builder = builder
                .with_endpoint(endpoint.as_str().trim_end_matches('/'))
                .with_allow_http(endpoint.scheme() == "http");
        }
        if let Some(key_id) = &settings.access_key_id {
            builder = builder.with_access_key_id(key_id);
        }
        if let Some(secret) = &settings.secret_access_key {
            builder = builder.with_secret_access_key(secret.expose_secret());
        }
        if let Some(token) = &settings.session_token {
            builder = builder.with_token(token.expose_secret());
        }
        let store = builder
            .build()
            .map_err(|error| RemoteError::Settings(error.to_string()))?;
        let (uploads, queue) = mpsc::channel(UPLOAD_QUEUE);
        Ok(Self {
            store,
            prefix: settings.prefix.trim_matches('/').to_owned(),
            uploads,
            queue: std::sync::Mutex::new(Some(queue)),
        })
    }

    /// The object key of `call_sid`'s recording.
    pub fn key(&self, call_sid: &str) -> ObjectPath {
        let name = format!("{}.ogg", super::file_stem(call_sid));
        if self.prefix.is_empty() {
            ObjectPath::from(name)
        } else {
            ObjectPath::from(format!("{}/{name}", self.prefix))
        }
    }

    /// Tells the uploader `call_sid`'s file is finished.
    pub fn finished(&self, call_sid: &str) {
        // Full: the uploader's next look at the directory finds it.
        let _ = self.uploads.try_send(call_sid.to_owned());
    }

    /// Uploads `file` as `call_sid`'s object, multipart, then removes it from the disk.
    pub async fn upload(&self, call_sid: &str, file: &std::path::Path) -> Result<u64, RemoteError> {
        let mut local = tokio::fs::File::open(file).await?;
        let upload = self.store.put_multipart(&self.key(call_sid)).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let mut buffer = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        let read = async {
            loop {
                let count = local.read(&mut buffer).await?;
                if count == 0 {
                    return std::io::Result::Ok(());
                }
                total += count as u64;
                // At most a few parts in flight: the upload's memory stays bounded.
                writer
                    .wait_for_capacity(2)
                    .await
                    .map_err(std::io::Error::other)?;
                writer.write(&buffer[..count]);
            }
        }
        .await;
        if let Err(error) = read {
            let _ = writer.abort().await;
            return Err(error.into());
        }
        writer.finish().await?;
        tokio::fs::remove_file(file).await?;
        Ok(total)
    }

    /// The size of `call_sid`'s object, or `None` when the store has none.
    pub async fn size(&self, call_sid: &str) -> Result<Option<u64>, RemoteError> {
        match self.store.head(&self.key(call_sid)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    /// Bytes `start..end` of `call_sid`'s object, as they arrive.
    pub async fn read(
        &self,
        call_sid: &str,
        start: u64,
        end: u64,
    ) -> Result<BoxStream<'static, object_store::Result<Bytes>>, RemoteError> {
        let options = GetOptions {
            range: Some(GetRange::Bounded(start..end)),
            ..GetOptions::default()
        };
        Ok(self
            .store
            .get_opts(&self.key(call_sid), options)
            .await?
            .into_stream())
    }

    /// Deletes `call_sid`'s object; one already gone is no error.
    pub async fn delete(&self, call_sid: &str) -> Result<(), RemoteError> {
        match self.store.delete(&self.key(call_sid)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }
}

/// Uploads finished recordings as they are announced, and what the directory already holds
/// (a stopped run's), retrying each failure with backoff until the store takes it. Runs until
/// `stop`; what is left waits on disk for the next start.
pub async fn upload_loop(store: Arc<super::RecordingStore>, stop: CancellationToken) {
    let Some(remote) = store.remote().cloned() else {
        return;
    };
    let Some(mut queue) = remote.queue.lock().expect("not poisoned").take() else {
        return;
    };
    // Due time and the wait before the next try, by call.
    let mut pending: BTreeMap<String, (tokio::time::Instant, Duration)> = BTreeMap::new();
    let now = tokio::time::Instant::now();
    for call_sid in finished_files(store.dir()).await {
        pending.insert(call_sid, (now, FIRST_BACKOFF));
    }
    loop {
        // The soonest retry, if any.
        let next = pending.values().map(|(due, _)| *due).min();
        let sleep = async {
            match next {
                Some(due) => tokio::time::sleep_until(due).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = stop.cancelled() => return,
            announced = queue.recv() => match announced {
                Some(call_sid) => {
                    pending.entry(call_sid).or_insert((tokio::time::Instant::now(), FIRST_BACKOFF));
                }
                None => return,
            },
            () = sleep => {}
        }
        let now = tokio::time::Instant::now();
        let due: Vec<String> = pending
            .iter()
            .filter(|(_, (at, _))| *at <= now)
            .map(|(call_sid, _)| call_sid.clone())
            .collect();
        for call_sid in due {
            let file = store.file(&call_sid);
            let result = tokio::select! {
                () = stop.cancelled() => return,
                result = remote.upload(&call_sid, &file) => result,
            };
            match result {
                Ok(bytes) => {
                    pending.remove(&call_sid);
                    metrics::counter!(crate::metrics::RECORDINGS_UPLOADED).increment(1);
                    tracing::info!(%call_sid, bytes, "recording uploaded");
                }
                Err(RemoteError::Local(error)) if error.kind() == std::io::ErrorKind::NotFound => {
                    // Uploaded and removed by an earlier try, or deleted by retention.
                    pending.remove(&call_sid);
                }
                Err(error) => {
                    metrics::counter!(crate::metrics::RECORDING_UPLOAD_FAILURES).increment(1);
                    let entry = pending
                        .entry(call_sid.clone())
                        .or_insert((now, FIRST_BACKOFF));
                    let wait = entry.1;
                    *entry = (
                        tokio::time::Instant::now() + wait,
                        (wait * 2).min(MAX_BACKOFF),
                    );
                    tracing::warn!(%call_sid, %error, retry_in_s = wait.as_secs(), "recording upload failed; the file waits on disk");
                    // The store is likely down for every file: try the others at their turn.
                    break;
                }
            }
        }
        metrics::gauge!(crate::metrics::RECORDINGS_UPLOADS_PENDING).set(pending.len() as f64);
    }
}

/// The call ids of the finished files in `dir`.
async fn finished_files(dir: &std::path::Path) -> Vec<String> {
    let dir: PathBuf = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        entries
            .filter_map(|entry| {
                let name = entry.ok()?.file_name();
                let stem = name.to_str()?.strip_suffix(".ogg")?.to_owned();
                super::call_sid_of(&stem)
            })
            .collect()
    })
    .await
    .unwrap_or_default()
}
