//! The durable spool of call writes the database could not take.
//!
//! When PostgreSQL is unreachable, a call's writes (open, events, transfer, opt-out, close) go
//! to an append-only file of its own under `VG_DATA_DIR/spool`, one JSON record per line, each
//! line flushed to disk (`fdatasync`) before the write counts as kept. Once the call's writer
//! is done, the file is sealed (`.open` → `.ready`) and the replayer applies it when the
//! database is back; a file still `.open` at start-up belongs to a run that stopped (SIGKILL,
//! SIGTERM during an outage) and is sealed then. Every write is idempotent by `call_sid`, and a
//! file's progress is kept beside it once its close is applied (`.applied`, the count of records
//! applied), so a replay that stops after it (the gateway died before removing the file)
//! never reopens the call by applying its open again.
//!
//! The spool is bounded (`VG_SPOOL_MAX_MB`): beyond it a write is refused and counted as lost,
//! never buffered in memory. A torn last line (a crash mid-append) is dropped on reading: it
//! was never acknowledged.
//!
//! File I/O is blocking; the async callers run it on the blocking pool.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, BufRead, BufReader, Write},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};

use super::writer::CallWrite;

/// The spool's file format version, the first field of every record.
const FORMAT_VERSION: u32 = 1;
const OPEN_SUFFIX: &str = "open";
const READY_SUFFIX: &str = "ready";
const APPLIED_SUFFIX: &str = "applied";

/// Why a write could not be spooled.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("the spool is full ({used} of {max} bytes)")]
    Full { used: u64, max: u64 },
    #[error("spool file {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("spool record: {0}")]
    Encode(#[from] serde_json::Error),
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_owned(),
        source,
    }
}

/// One line of a spool file.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    v: u32,
    call_sid: String,
    write: CallWrite,
}

/// The spool directory of this gateway.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    used: AtomicU64,
    /// Sealed files waiting for the replayer.
    pending: watch::Sender<usize>,
    /// Wakes the replayer when a file is sealed.
    sealed: Notify,
}

/// A live call's spool file, appended to by its writer only.
#[derive(Debug)]
pub struct SpoolFile {
    path: PathBuf,
    file: File,
    records: u64,
}

/// A sealed file's records, to replay.
#[derive(Debug)]
pub struct SealedFile {
    pub path: PathBuf,
    pub call_sid: String,
    /// Every record in the file, in order.
    pub writes: Vec<CallWrite>,
    /// How many of `writes` an earlier replay already applied.
    pub applied: usize,
    /// A complete line that could not be read: the file's end was reached early.
    pub corrupt: Option<String>,
}

impl SpoolFile {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Spool {
    /// Opens (creating) the spool in `dir`: seals the files a previous run left open, and
    /// counts what is waiting.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Arc<Self>, SpoolError> {
        fs::create_dir_all(dir).map_err(io_error(dir))?;
        // Probe: a directory we cannot write to must be found now, not during an outage.
        let probe = dir.join(".probe");
        File::create(&probe).map_err(io_error(&probe))?;
        let _ = fs::remove_file(&probe);
        let mut used = 0;
        for entry in fs::read_dir(dir).map_err(io_error(dir))? {
            let path = entry.map_err(io_error(dir))?.path();
            if path.extension().is_some_and(|ext| ext == OPEN_SUFFIX) {
                let ready = path.with_extension(READY_SUFFIX);
                fs::rename(&path, &ready).map_err(io_error(&path))?;
            }
        }
        let spool = Arc::new(Self {
            dir: dir.to_owned(),
            max_bytes,
            used: AtomicU64::new(0),
            pending: watch::Sender::new(0),
            sealed: Notify::new(),
        });
        for path in spool.ready_files()? {
            used += fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        }
        spool.used.store(used, Ordering::Relaxed);
        spool.refresh_pending();
        Ok(spool)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes held by the spool's files.
    pub fn used_bytes(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Sealed files waiting to be replayed, as it changes.
    pub fn pending(&self) -> watch::Receiver<usize> {
        self.pending.subscribe()
    }

    /// Resolves when a file has been sealed since the last call.
    pub async fn sealed(&self) {
        self.sealed.notified().await;
    }

    /// A new file for one stream of `call_sid`. Names sort by creation, so a call's second
    /// stream (a resumed one) replays after its first.
    pub fn create(&self, call_sid: &str) -> Result<SpoolFile, SpoolError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos())
            .unwrap_or_default();
        let safe: String = call_sid
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .take(80)
            .collect();
        let path = self.dir.join(format!("{nanos:020}-{safe}.{OPEN_SUFFIX}"));
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(io_error(&path))?;
        sync_dir(&self.dir);
        Ok(SpoolFile {
            path,
            file,
            records: 0,
        })
    }

    /// Appends one write and flushes it to disk; only then is it kept.
    pub fn append(
        &self,
        file: &mut SpoolFile,
        call_sid: &str,
        write: &CallWrite,
    ) -> Result<(), SpoolError> {
        let mut line = serde_json::to_vec(&Record {
            v: FORMAT_VERSION,
            call_sid: call_sid.to_owned(),
            write: write.clone(),
        })?;
        line.push(b'\n');
        let size = line.len() as u64;
        let used = self.used.fetch_add(size, Ordering::Relaxed);
        if used + size > self.max_bytes {
            self.used.fetch_sub(size, Ordering::Relaxed);
            return Err(SpoolError::Full {
                used,
                max: self.max_bytes,
            });
        }
        let written = file
            .file
            .write_all(&line)
            .and_then(|()| file.file.sync_data());
        if let Err(error) = written {
            self.used.fetch_sub(size, Ordering::Relaxed);
            return Err(io_error(&file.path)(error));
        }
        file.records += 1;
        Ok(())
    }

    /// The call's writer is done: the file becomes the replayer's.
    pub fn seal(&self, file: SpoolFile) -> Result<(), SpoolError> {
        let ready = file.path.with_extension(READY_SUFFIX);
        drop(file.file);
        fs::rename(&file.path, &ready).map_err(io_error(&file.path))?;
        sync_dir(&self.dir);
        self.refresh_pending();
        self.sealed.notify_one();
        Ok(())
    }

    /// The sealed files, oldest first.
    pub fn ready_files(&self) -> Result<Vec<PathBuf>, SpoolError> {
        let mut files: Vec<PathBuf> = fs::read_dir(&self.dir)
            .map_err(io_error(&self.dir))?
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == READY_SUFFIX))
            .collect();
        files.sort();
        Ok(files)
    }

    /// Reads a sealed file. A torn last line is dropped; a complete line that cannot be read
    /// ends the records there and is reported.
    pub fn read(&self, path: &Path) -> Result<SealedFile, SpoolError> {
        let reader = BufReader::new(File::open(path).map_err(io_error(path))?);
        let mut writes = Vec::new();
        let mut call_sid = String::new();
        let mut corrupt = None;
        let mut lines = reader.split(b'\n').peekable();
        while let Some(line) = lines.next() {
            let line = line.map_err(io_error(path))?;
            let last = lines.peek().is_none();
            match serde_json::from_slice::<Record>(&line) {
                Ok(record) if record.v == FORMAT_VERSION => {
                    call_sid = record.call_sid;
                    writes.push(record.write);
                }
                Ok(record) => {
                    corrupt = Some(format!("unknown format version {}", record.v));
                    break;
                }
                // An unterminated last line is a torn append: never acknowledged, not lost.
                Err(_) if last && !ends_with_newline(path) => break,
                Err(error) => {
                    corrupt = Some(error.to_string());
                    break;
                }
            }
        }
        let applied = fs::read_to_string(path.with_extension(APPLIED_SUFFIX))
            .ok()
            .and_then(|text| text.trim().parse::<usize>().ok())
            .unwrap_or(0);
        Ok(SealedFile {
            path: path.to_owned(),
            call_sid,
            writes,
            applied,
            corrupt,
        })
    }

    /// Records that the first `count` writes of a sealed file are in the database.
    pub fn mark_applied(&self, path: &Path, count: usize) -> Result<(), SpoolError> {
        let marker = path.with_extension(APPLIED_SUFFIX);
        let mut file = File::create(&marker).map_err(io_error(&marker))?;
        file.write_all(count.to_string().as_bytes())
            .and_then(|()| file.sync_data())
            .map_err(io_error(&marker))
    }

    /// A sealed file is done (replayed, or set aside as corrupt): removes it and its marker.
    pub fn remove(&self, path: &Path) -> Result<(), SpoolError> {
        let size = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        fs::remove_file(path).map_err(io_error(path))?;
        let _ = fs::remove_file(path.with_extension(APPLIED_SUFFIX));
        sync_dir(&self.dir);
        self.release(size);
        self.refresh_pending();
        Ok(())
    }

    /// Moves a file that cannot be replayed out of the way, into `failed/`, for a person.
    pub fn set_aside(&self, path: &Path) -> Result<PathBuf, SpoolError> {
        let failed = self.dir.join("failed");
        fs::create_dir_all(&failed).map_err(io_error(&failed))?;
        let size = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let target = failed.join(path.file_name().unwrap_or_default());
        fs::rename(path, &target).map_err(io_error(path))?;
        let _ = fs::remove_file(path.with_extension(APPLIED_SUFFIX));
        self.release(size);
        self.refresh_pending();
        Ok(target)
    }

    fn release(&self, size: u64) {
        let _ = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                Some(used.saturating_sub(size))
            });
    }

    fn refresh_pending(&self) {
        let count = self.ready_files().map(|files| files.len()).unwrap_or(0);
        self.pending.send_replace(count);
        metrics::gauge!(crate::metrics::SPOOL_PENDING_FILES).set(count as f64);
        metrics::gauge!(crate::metrics::SPOOL_BYTES).set(self.used_bytes() as f64);
    }
}

fn ends_with_newline(path: &Path) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut file) = File::open(path) else {
        return false;
    };
    let mut last = [0u8; 1];
    file.seek(SeekFrom::End(-1)).is_ok() && file.read_exact(&mut last).is_ok() && last[0] == b'\n'
}

/// Makes a file's creation, rename or removal durable.
fn sync_dir(dir: &Path) {
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{db::calls::CallEvent, domain::EventKind};

    fn event(seq: i32) -> CallWrite {
        CallWrite::Event(CallEvent {
            seq,
            kind: EventKind::CallerSpeech,
            occurred_at: chrono::Utc::now(),
            ended_at: None,
            text: Some(format!("line {seq}")),
            data: serde_json::json!({"n": seq}),
        })
    }

    fn seq_of(write: &CallWrite) -> i32 {
        match write {
            CallWrite::Event(event) => event.seq,
            other => panic!("not an event: {other:?}"),
        }
    }

    #[test]
    fn sealed_files_read_back_in_order_and_resume_after_the_applied_mark() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 1 << 20).unwrap();
        let mut file = spool.create("CA-1").unwrap();
        for seq in 0..3 {
            spool.append(&mut file, "CA-1", &event(seq)).unwrap();
        }
        assert_eq!(*spool.pending().borrow(), 0, "an open file is not pending");
        spool.seal(file).unwrap();
        assert_eq!(*spool.pending().borrow(), 1);
        let path = spool.ready_files().unwrap().remove(0);
        let sealed = spool.read(&path).unwrap();
        assert_eq!(sealed.call_sid, "CA-1");
        assert_eq!(
            sealed.writes.iter().map(seq_of).collect::<Vec<_>>(),
            [0, 1, 2]
        );
        assert_eq!(sealed.applied, 0);
        spool.mark_applied(&path, 2).unwrap();
        assert_eq!(spool.read(&path).unwrap().applied, 2);
        spool.remove(&path).unwrap();
        assert_eq!(*spool.pending().borrow(), 0);
        assert_eq!(spool.used_bytes(), 0);
    }

    #[test]
    fn a_torn_last_line_is_dropped_and_a_corrupt_one_reported() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 1 << 20).unwrap();
        let mut file = spool.create("CA-2").unwrap();
        spool.append(&mut file, "CA-2", &event(0)).unwrap();
        let path = file.path.clone();
        file.file
            .write_all(b"{\"v\":1,\"call_sid\":\"CA-2\",\"wri")
            .unwrap();
        drop(file);
        // A previous run left it open: opening the spool seals it.
        let spool = Spool::open(dir.path(), 1 << 20).unwrap();
        let ready = path.with_extension(READY_SUFFIX);
        let sealed = spool.read(&ready).unwrap();
        assert_eq!(sealed.writes.len(), 1, "the torn append is dropped");
        assert!(sealed.corrupt.is_none());

        fs::write(&ready, b"not json\n").unwrap();
        let sealed = spool.read(&ready).unwrap();
        assert!(sealed.writes.is_empty());
        assert!(sealed.corrupt.is_some(), "a complete bad line is reported");
        let aside = spool.set_aside(&ready).unwrap();
        assert!(aside.exists());
        assert!(spool.ready_files().unwrap().is_empty());
    }

    #[test]
    fn a_full_spool_refuses_the_write_and_keeps_what_it_had() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 300).unwrap();
        let mut file = spool.create("CA-3").unwrap();
        let mut kept = 0;
        let refused = loop {
            match spool.append(&mut file, "CA-3", &event(kept)) {
                Ok(()) => kept += 1,
                Err(error) => break error,
            }
        };
        assert!(matches!(refused, SpoolError::Full { max: 300, .. }));
        assert!(kept >= 1);
        assert!(spool.used_bytes() <= 300);
        spool.seal(file).unwrap();
        let path = spool.ready_files().unwrap().remove(0);
        assert_eq!(spool.read(&path).unwrap().writes.len(), kept as usize);
    }

    #[test]
    fn an_unwritable_directory_is_refused_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        fs::write(&file, b"x").unwrap();
        assert!(matches!(
            Spool::open(&file.join("spool"), 1 << 20),
            Err(SpoolError::Io { .. })
        ));
    }
}
