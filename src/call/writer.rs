//! A call's database writes: applied in order by the call's own writer task, retried briefly,
//! and kept in the durable [`spool`](super::spool) when the database cannot take them; and the
//! replayer that applies the spool once the database is back.
//!
//! Once one write of a stream has gone to the spool, every later write of that stream goes
//! there too, so the database sees the call's writes in their order (an event never lands
//! before its call's open). Every write is idempotent by `call_sid`, which makes a replay after
//! a crash safe.

use std::{sync::Arc, time::Duration};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::spool::{SealedFile, Spool, SpoolFile};
use crate::db::{
    Database, DbError,
    calls::{CallEnd, CallEvent, CallStart},
    transfers::NewTransfer,
};

/// How long a failing write is retried in memory before it goes to the spool (a blip of the
/// database costs no disk). A pool acquisition waits at most 5 s, so one attempt fits.
const DIRECT_RETRY_BUDGET: Duration = Duration::from_secs(5);
/// How often a call whose writes are spooled tries the database again (on its next write).
const DRAIN_PROBE_INTERVAL: Duration = Duration::from_secs(2);
/// How long a failing write is retried when there is no spool, before it is given up.
const NO_SPOOL_RETRY_BUDGET: Duration = Duration::from_secs(60);
/// The replayer's first wait after the database refused a replay; doubled up to the maximum.
const REPLAY_BACKOFF_MIN: Duration = Duration::from_secs(1);
const REPLAY_BACKOFF_MAX: Duration = Duration::from_secs(15);
/// How often the replayer looks at the spool when nothing woke it.
const REPLAY_IDLE_POLL: Duration = Duration::from_secs(30);

/// A write about the call, applied in order.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", content = "write", rename_all = "snake_case")]
pub enum CallWrite {
    Open(CallStart),
    /// A second stream after a transfer nobody took, held by this gateway (`server_name`).
    Resume {
        server_name: String,
    },
    Event(CallEvent),
    Transfer(NewTransfer),
    /// The caller opted out: their number joins the organization's do-not-call list.
    OptOut {
        lead_id: uuid::Uuid,
        reason: String,
    },
    Close(CallEnd),
    /// Answered once every write before it is applied (or kept in the spool).
    #[serde(skip)]
    Barrier(tokio::sync::oneshot::Sender<()>),
}

impl Clone for CallWrite {
    /// A barrier has one waiter and is never spooled; its clone is an unanswered one.
    fn clone(&self) -> Self {
        match self {
            Self::Open(start) => Self::Open(start.clone()),
            Self::Resume { server_name } => Self::Resume {
                server_name: server_name.clone(),
            },
            Self::Event(event) => Self::Event(event.clone()),
            Self::Transfer(transfer) => Self::Transfer(transfer.clone()),
            Self::OptOut { lead_id, reason } => Self::OptOut {
                lead_id: *lead_id,
                reason: reason.clone(),
            },
            Self::Close(end) => Self::Close(end.clone()),
            Self::Barrier(_) => Self::Barrier(tokio::sync::oneshot::channel().0),
        }
    }
}

impl CallWrite {
    /// The write's name in logs and metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Open(_) => "open",
            Self::Resume { .. } => "resume",
            Self::Event(_) => "event",
            Self::Transfer(_) => "transfer",
            Self::OptOut { .. } => "opt_out",
            Self::Close(_) => "close",
            Self::Barrier(_) => "barrier",
        }
    }
}

/// Applies one write. The one place that maps a call's write to the data layer, for the live
/// writer and the replayer alike.
async fn apply(db: &Database, call_sid: &str, write: &CallWrite) -> Result<(), DbError> {
    match write {
        CallWrite::Open(start) => db.open_call(start).await.map(|_| ()),
        CallWrite::Resume { server_name } => {
            db.resume_call(call_sid, server_name).await.map(|_| ())
        }
        CallWrite::Transfer(transfer) => db.create_transfer(transfer).await.map(|_| ()),
        CallWrite::Event(event) => db.append_call_event(call_sid, event).await.map(|_| ()),
        CallWrite::OptOut { lead_id, reason } => db
            .suppress_from_call(*lead_id, call_sid, reason)
            .await
            .map(|_| ()),
        CallWrite::Close(end) => db.close_call(call_sid, end).await.map(|_| ()),
        CallWrite::Barrier(_) => Ok(()),
    }
}

/// Applies `write`, retrying transient failures with backoff within `budget`.
async fn apply_with_retry(
    db: &Database,
    call_sid: &str,
    write: &CallWrite,
    budget: Duration,
) -> Result<(), DbError> {
    let deadline = tokio::time::Instant::now() + budget;
    let mut backoff = Duration::from_millis(50);
    loop {
        match apply(db, call_sid, write).await {
            Ok(()) => return Ok(()),
            Err(error)
                if error.is_transient() && tokio::time::Instant::now() + backoff < deadline =>
            {
                metrics::counter!(crate::metrics::DB_WRITE_RETRIES).increment(1);
                tracing::warn!(%error, ?backoff, write = write.kind(), "call write failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(error) => return Err(error),
        }
    }
}

/// Applies a call's writes in order until the bridge drops its sender. A write the database
/// cannot take goes to `spool` (when there is one), and so does every later write of the call;
/// the file is sealed for the replayer when the call's writes are done.
pub async fn write_loop(
    db: Database,
    spool: Option<Arc<Spool>>,
    call_sid: String,
    mut writes: mpsc::Receiver<CallWrite>,
) {
    let mut spooled: Option<SpoolFile> = None;
    let mut last_tried = tokio::time::Instant::now();
    while let Some(write) = writes.recv().await {
        if let CallWrite::Barrier(done) = write {
            let _ = done.send(());
            continue;
        }
        metrics::counter!(crate::metrics::CALL_WRITES, "kind" => write.kind()).increment(1);
        // The database may be back while the call goes on: its spooled writes go in first,
        // then the call writes directly again (the live transcript resumes).
        if let (Some(spool), Some(_)) = (&spool, &spooled)
            && last_tried.elapsed() >= DRAIN_PROBE_INTERVAL
        {
            last_tried = tokio::time::Instant::now();
            if drain_own(&db, spool, &mut spooled, &call_sid).await {
                tracing::info!("the database is back; the call's spooled writes are in");
            }
        }
        if spooled.is_none() {
            let budget = if spool.is_some() {
                DIRECT_RETRY_BUDGET
            } else {
                NO_SPOOL_RETRY_BUDGET
            };
            match apply_with_retry(&db, &call_sid, &write, budget).await {
                Ok(()) => continue,
                Err(error) if error.is_transient() && spool.is_some() => {
                    last_tried = tokio::time::Instant::now();
                    tracing::warn!(%error, write = write.kind(), "the database cannot take the call's writes; spooling them");
                }
                Err(error) => {
                    lost(&write, &error.to_string());
                    continue;
                }
            }
        }
        let Some(spool) = &spool else { continue };
        let kind = write.kind();
        match spool_write(spool, &mut spooled, &call_sid, write).await {
            Ok(()) => metrics::counter!(crate::metrics::SPOOL_WRITES, "kind" => kind).increment(1),
            Err(error) => {
                metrics::counter!(crate::metrics::DB_WRITE_FAILURES).increment(1);
                tracing::error!(%error, write = kind, "call write lost: neither the database nor the spool took it");
            }
        }
    }
    if let (Some(spool), Some(file)) = (spool, spooled) {
        let result = tokio::task::spawn_blocking(move || spool.seal(file)).await;
        match result {
            Ok(Ok(())) => tracing::info!("the call's spooled writes wait for the database"),
            Ok(Err(error)) => {
                tracing::error!(%error, "sealing the call's spool file failed; it is replayed at the next start")
            }
            Err(error) => tracing::error!(%error, "sealing the call's spool file panicked"),
        }
    }
}

/// Applies a live call's own spool file (it holds no close yet, so applying its writes again
/// after a partial attempt is harmless) and removes it. `true` when the call writes directly
/// again; `false` when the database still refuses (the file stays and grows).
async fn drain_own(
    db: &Database,
    spool: &Arc<Spool>,
    spooled: &mut Option<SpoolFile>,
    call_sid: &str,
) -> bool {
    let Some(path) = spooled.as_ref().map(|file| file.path().to_owned()) else {
        return true;
    };
    let sealed = {
        let (spool, path) = (spool.clone(), path.clone());
        match tokio::task::spawn_blocking(move || spool.read(&path)).await {
            Ok(Ok(sealed)) => sealed,
            _ => return false,
        }
    };
    for write in &sealed.writes {
        // Bounded, and skipped while the database has just failed someone: a probe never
        // stalls the call's writes for long.
        match db.live_step(apply(db, call_sid, write)).await {
            Ok(()) => {}
            Err(error) if error.is_transient() => return false,
            Err(error) => lost(write, &error.to_string()),
        }
    }
    metrics::counter!(crate::metrics::SPOOL_REPLAYED).increment(sealed.writes.len() as u64);
    // Closing our handle before the file goes.
    *spooled = None;
    let spool = spool.clone();
    if let Ok(Err(error)) = tokio::task::spawn_blocking(move || spool.remove(&path)).await {
        tracing::warn!(%error, "removing the call's drained spool file failed");
    }
    true
}

fn lost(write: &CallWrite, error: &str) {
    metrics::counter!(crate::metrics::DB_WRITE_FAILURES).increment(1);
    tracing::error!(error, write = write.kind(), "call write given up");
}

/// Appends `write` to the call's spool file (created on first use), on the blocking pool.
async fn spool_write(
    spool: &Arc<Spool>,
    spooled: &mut Option<SpoolFile>,
    call_sid: &str,
    write: CallWrite,
) -> Result<(), super::spool::SpoolError> {
    let (spool, file, call_sid) = (spool.clone(), spooled.take(), call_sid.to_owned());
    let (file, result) = tokio::task::spawn_blocking(move || {
        let mut opened = match file {
            Some(file) => file,
            None => match spool.create(&call_sid) {
                Ok(file) => file,
                Err(error) => return (None, Err(error)),
            },
        };
        let result = spool.append(&mut opened, &call_sid, &write);
        (Some(opened), result)
    })
    .await
    .unwrap_or_else(|error| {
        (
            None,
            Err(super::spool::SpoolError::Io {
                path: Default::default(),
                source: std::io::Error::other(error.to_string()),
            }),
        )
    });
    *spooled = file;
    result
}

/// What one replay pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReplayPass {
    /// Files applied in full and removed.
    pub files: usize,
    /// Writes applied (or found already applied) in this pass.
    pub writes: usize,
    /// The database refused (transiently): files remain for the next pass.
    pub blocked: bool,
}

/// How many calls' spool files are replayed at once (each call's own files in order).
const REPLAY_CONCURRENCY: usize = 8;

/// Applies every sealed spool file: each call's files oldest first, several calls at once,
/// each call stopping at its first transient failure.
pub async fn replay_spool(db: &Database, spool: &Arc<Spool>) -> ReplayPass {
    use futures_util::StreamExt;
    let files = {
        let spool = spool.clone();
        match tokio::task::spawn_blocking(move || spool.ready_files()).await {
            Ok(Ok(files)) => files,
            Ok(Err(error)) => {
                tracing::error!(%error, "reading the spool failed");
                return ReplayPass::default();
            }
            Err(_) => return ReplayPass::default(),
        }
    };
    let passes: Vec<ReplayPass> = futures_util::stream::iter(by_call(files))
        .map(|paths| replay_call(db, spool, paths))
        .buffer_unordered(REPLAY_CONCURRENCY)
        .collect()
        .await;
    let pass = passes
        .into_iter()
        .fold(ReplayPass::default(), |total, pass| ReplayPass {
            files: total.files + pass.files,
            writes: total.writes + pass.writes,
            blocked: total.blocked || pass.blocked,
        });
    if pass.writes > 0 {
        metrics::counter!(crate::metrics::SPOOL_REPLAYED).increment(pass.writes as u64);
        tracing::info!(
            files = pass.files,
            writes = pass.writes,
            remaining = *spool.pending().borrow(),
            "spooled call writes replayed"
        );
    }
    pass
}

/// Sealed files grouped by call (the name after the creation time), each group oldest first.
fn by_call(files: Vec<std::path::PathBuf>) -> Vec<Vec<std::path::PathBuf>> {
    let mut groups: Vec<(String, Vec<std::path::PathBuf>)> = Vec::new();
    let mut index = std::collections::HashMap::new();
    for path in files {
        let stem = path
            .file_stem()
            .map(|stem| stem.to_string_lossy().into_owned())
            .unwrap_or_default();
        let call = stem
            .split_once('-')
            .map_or(stem.clone(), |(_, call)| call.to_owned());
        let slot = *index.entry(call.clone()).or_insert_with(|| {
            groups.push((call, Vec::new()));
            groups.len() - 1
        });
        groups[slot].1.push(path);
    }
    groups.into_iter().map(|(_, paths)| paths).collect()
}

/// Replays one call's files in order; stops at the first transient failure.
async fn replay_call(
    db: &Database,
    spool: &Arc<Spool>,
    paths: Vec<std::path::PathBuf>,
) -> ReplayPass {
    let mut pass = ReplayPass::default();
    for path in paths {
        let sealed = {
            let (spool, path) = (spool.clone(), path.clone());
            match tokio::task::spawn_blocking(move || spool.read(&path)).await {
                Ok(Ok(sealed)) => sealed,
                Ok(Err(error)) => {
                    // Its later files must wait for it: the call's order.
                    tracing::error!(%error, "reading a spool file failed; it is tried again later");
                    pass.blocked = true;
                    return pass;
                }
                Err(_) => {
                    pass.blocked = true;
                    return pass;
                }
            }
        };
        match replay_file(db, spool, &sealed).await {
            Ok(applied) => pass.writes += applied,
            Err(applied) => {
                pass.writes += applied;
                pass.blocked = true;
                return pass;
            }
        }
        let finish = {
            let (spool, path, corrupt) =
                (spool.clone(), sealed.path.clone(), sealed.corrupt.clone());
            tokio::task::spawn_blocking(move || match corrupt {
                None => spool.remove(&path).map(|()| None),
                Some(reason) => spool.set_aside(&path).map(|aside| Some((aside, reason))),
            })
            .await
        };
        match finish {
            Ok(Ok(None)) => pass.files += 1,
            Ok(Ok(Some((aside, reason)))) => {
                metrics::counter!(crate::metrics::SPOOL_CORRUPT_FILES).increment(1);
                tracing::error!(call_sid = %sealed.call_sid, path = %aside.display(), reason, "a spool file is corrupt past its last readable record; replayed that far and set aside");
            }
            Ok(Err(error)) => tracing::error!(%error, "removing a replayed spool file failed"),
            Err(_) => {}
        }
    }
    pass
}

/// Applies a sealed file's writes after those already applied, keeping the mark after a close.
/// `Err` carries how many were applied before the database refused.
async fn replay_file(
    db: &Database,
    spool: &Arc<Spool>,
    sealed: &SealedFile,
) -> Result<usize, usize> {
    let mut applied = 0;
    for (index, write) in sealed.writes.iter().enumerate().skip(sealed.applied) {
        match apply(db, &sealed.call_sid, write).await {
            Ok(()) => {}
            Err(error) if error.is_transient() => {
                tracing::warn!(%error, "the database refused a spooled write; replay waits");
                return Err(applied);
            }
            Err(error) => {
                // It will fail the same way again: keep the call's other writes.
                lost(write, &error.to_string());
            }
        }
        applied += 1;
        // Re-applying a write is harmless except an open or a resume after the call's close,
        // which would reopen it: so the mark is kept once a close is in.
        if matches!(write, CallWrite::Close(_)) {
            let (spool, path) = (spool.clone(), sealed.path.clone());
            let marked =
                tokio::task::spawn_blocking(move || spool.mark_applied(&path, index + 1)).await;
            if let Ok(Err(error)) = marked {
                tracing::warn!(%error, "keeping the replay's progress failed");
            }
        }
    }
    Ok(applied)
}

/// The replayer: a tracked background task that replays the spool whenever a file is sealed,
/// while the database refuses with backoff, and at least every [`REPLAY_IDLE_POLL`].
pub async fn replay_loop(db: Database, spool: Arc<Spool>, stop: CancellationToken) {
    let mut backoff = REPLAY_BACKOFF_MIN;
    loop {
        let wait = if *spool.pending().borrow() == 0 {
            backoff = REPLAY_BACKOFF_MIN;
            REPLAY_IDLE_POLL
        } else {
            let pass = replay_spool(&db, &spool).await;
            let progressed = pass.files > 0 || pass.writes > 0;
            if pass.blocked || !progressed {
                // The database refused, or a file could not be read: wait, then try again.
                let wait = backoff;
                backoff = (backoff * 2).min(REPLAY_BACKOFF_MAX);
                wait
            } else {
                backoff = REPLAY_BACKOFF_MIN;
                continue;
            }
        };
        tokio::select! {
            () = stop.cancelled() => return,
            () = spool.sealed(), if wait == REPLAY_IDLE_POLL => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::by_call;

    #[test]
    fn a_calls_files_replay_together_in_their_order_and_calls_apart() {
        let files: Vec<PathBuf> = [
            "/s/00000000000000000001-CA-1.ready",
            "/s/00000000000000000002-CA-2.ready",
            "/s/00000000000000000003-CA-1.ready",
        ]
        .into_iter()
        .map(PathBuf::from)
        .collect();
        assert_eq!(
            by_call(files),
            vec![
                vec![
                    PathBuf::from("/s/00000000000000000001-CA-1.ready"),
                    PathBuf::from("/s/00000000000000000003-CA-1.ready"),
                ],
                vec![PathBuf::from("/s/00000000000000000002-CA-2.ready")],
            ]
        );
    }
}
