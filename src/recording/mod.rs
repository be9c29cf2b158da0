//! Call recordings: every call in Ogg/Opus, stereo (left the caller, right the agent as the
//! caller heard it), streamed to storage we own.
//!
//! - [`mix`] (pure) puts both channels on the stream's clock;
//! - [`ogg_opus`] (no I/O) encodes 20 ms blocks and builds Ogg pages in memory, and salvages a
//!   file a crash left unfinished;
//! - [`link`] (pure) signs and checks the short-lived links a browser plays;
//! - this module: where files live ([`RecordingStore`]), the bridge's side of one call
//!   ([`CallRecorder`], inline, no I/O) and the call's file writer ([`write_loop`], joined to
//!   the call's task like its database writer), and the recovery of unfinished files at start.
//!
//! Where encoding runs: inline in the bridge, after the frame it follows has gone out (the
//! caller's to the provider, the agent's to Plivo). Measured (`benches/recording.rs`): mixing
//! and encoding one 20 ms block costs about 16 µs, under 0.1 % of the frame's period, while
//! handing each block to another task costs a wake-up per block on the same workers; only
//! the file writes, which can block for as long as the disk likes, leave the bridge: a page
//! every 200 ms goes through a bounded channel to the writer. A writer more than
//! [`PAGES_IN_FLIGHT`] pages behind (a stalled disk) ends the recording, never the call.
//!
//! Files: `{dir}/{call}.ogg` once finished; while the call runs,
//! `{dir}/.partial/{server}/{call}.ogg.part`, so a gateway recovers only its own unfinished
//! files even when several share the directory.

pub mod link;
pub mod mix;
pub mod ogg_opus;
pub mod remote;
pub mod retention;

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use tokio::{io::AsyncWriteExt, sync::mpsc};

use crate::audio::{AudioFormat, Encoding, l16, mulaw};
use mix::Mixer;
use ogg_opus::OggOpusEncoder;

/// Pages (200 ms of audio each) a call may have on their way to its file. The writer takes
/// each as it comes; ten behind means the storage stalled for two seconds: the recording
/// stops.
pub const PAGES_IN_FLIGHT: usize = 10;
/// The file is fsynced every this many pages (10 s, and at the end): a host crash loses at
/// most this much; a process crash loses nothing written.
const PAGES_PER_SYNC: u64 = 50;
/// What `call_logs.recording_url` holds; the close puts the call's id in.
pub const RECORDING_URL_TEMPLATE: &str = "/api/v1/calls/{call_id}/recording";
/// Suffix of a file still being written.
const PART_SUFFIX: &str = ".ogg.part";
/// Suffix of a file too damaged to keep anything of (kept for a human to look at).
const CORRUPT_SUFFIX: &str = ".ogg.corrupt";

/// Whether a call is recorded, and what the caller is told first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingPolicy {
    pub enabled: bool,
    /// Said before the greeting when recording ("This call may be recorded.").
    pub consent_line: Option<String>,
}

impl RecordingPolicy {
    /// What a call does when its settings cannot be read (the database is away): unrecorded,
    /// since an organization that turned recording off must never be recorded.
    pub const UNKNOWN: Self = Self {
        enabled: false,
        consent_line: None,
    };

    /// The policy from `settings.recording` of the organization (the default) and of the
    /// campaign (which overrides it, field by field). Either is `true`/`false`, or
    /// `{"enabled": bool, "consent_line": "..."}`. Recording is on unless a setting says off.
    pub fn from_settings(organization: &serde_json::Value, campaign: &serde_json::Value) -> Self {
        let read = |settings: &serde_json::Value| {
            let value = &settings["recording"];
            match value {
                serde_json::Value::Bool(enabled) => (Some(*enabled), None),
                serde_json::Value::Object(fields) => (
                    fields.get("enabled").and_then(serde_json::Value::as_bool),
                    fields
                        .get("consent_line")
                        .and_then(serde_json::Value::as_str)
                        .map(str::trim)
                        .filter(|line| !line.is_empty())
                        .map(str::to_owned),
                ),
                _ => (None, None),
            }
        };
        let (organization_enabled, organization_line) = read(organization);
        let (campaign_enabled, campaign_line) = read(campaign);
        let enabled = campaign_enabled.or(organization_enabled).unwrap_or(true);
        Self {
            enabled,
            consent_line: campaign_line.or(organization_line).filter(|_| enabled),
        }
    }
}

/// Where recordings are stored (`VG_RECORDINGS_URL`): a `file://` directory, or with
/// `s3://` a local directory where files are written and wait for their upload.
#[derive(Debug, Clone)]
pub struct RecordingStore {
    dir: PathBuf,
    partial: PathBuf,
    remote: Option<std::sync::Arc<remote::RemoteStore>>,
}

impl RecordingStore {
    /// The store in `dir`; this gateway's unfinished files go under `.partial/{server_name}`.
    pub fn new(dir: PathBuf, server_name: &str) -> Self {
        let partial = dir.join(".partial").join(file_stem(server_name));
        Self {
            dir,
            partial,
            remote: None,
        }
    }

    /// Finished files go on to `remote` ([`remote::upload_loop`] uploads them).
    pub fn with_remote(mut self, remote: remote::RemoteStore) -> Self {
        self.remote = Some(std::sync::Arc::new(remote));
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The `s3://` store, if recordings go to one.
    pub fn remote(&self) -> Option<&std::sync::Arc<remote::RemoteStore>> {
        self.remote.as_ref()
    }

    /// `call_sid`'s file is finished: with a remote store, it is queued for upload.
    pub fn finished(&self, call_sid: &str) {
        if let Some(remote) = &self.remote {
            remote.finished(call_sid);
        }
    }

    /// The finished recording of `call_sid`.
    pub fn file(&self, call_sid: &str) -> PathBuf {
        self.dir.join(format!("{}.ogg", file_stem(call_sid)))
    }

    /// The file `call_sid`'s recording is written to while the call runs.
    pub fn part(&self, call_sid: &str) -> PathBuf {
        self.partial
            .join(format!("{}{PART_SUFFIX}", file_stem(call_sid)))
    }

    /// Deletes `call_sid`'s finished recording: the local file and, with a remote store, its
    /// object. One already gone is no error.
    pub async fn delete(&self, call_sid: &str) -> Result<(), remote::RemoteError> {
        match tokio::fs::remove_file(self.file(call_sid)).await {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(error.into()),
        }
        if let Some(remote) = &self.remote {
            remote.delete(call_sid).await?;
        }
        Ok(())
    }

    /// Creates the directories and writes a probe file: the error says why calls will go
    /// unrecorded (start-up warns with it).
    pub fn check_writable(&self) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.partial)?;
        let probe = self.partial.join(".probe");
        std::fs::write(&probe, b"probe")?;
        std::fs::remove_file(&probe)
    }
}

/// A call id as a file name: itself when it is plain (Plivo's are UUIDs), else `~` and hex,
/// so no id can climb out of the directory and every name maps back to its id.
pub fn file_stem(call_sid: &str) -> String {
    let plain = !call_sid.is_empty()
        && call_sid.len() <= 128
        && call_sid
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_');
    if plain {
        call_sid.to_owned()
    } else {
        format!("~{}", hex::encode(call_sid))
    }
}

/// The call id a file name stands for.
pub fn call_sid_of(stem: &str) -> Option<String> {
    match stem.strip_prefix('~') {
        Some(encoded) => String::from_utf8(hex::decode(encoded).ok()?).ok(),
        None => Some(stem.to_owned()),
    }
}

/// What the bridge hands the call's file writer.
#[derive(Debug)]
pub enum WriterMessage {
    /// Finished pages, in order.
    Pages(Vec<u8>),
    /// The last pages: write them, finish the file, and answer with its size.
    Finish(Vec<u8>, tokio::sync::oneshot::Sender<Result<u64, String>>),
}

/// Why a call's recording stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordingFailed {
    #[error("the encoder failed: {0}")]
    Encoder(String),
    /// The file writer failed (it logged why) and stopped.
    #[error("the recording's storage failed (unwritable or full)")]
    Storage,
    /// The file writer is [`PAGES_IN_FLIGHT`] pages behind: the storage stalled.
    #[error("the recording's storage stalled")]
    Stalled,
}

/// The bridge's side of one call's recording: decodes the frames it is shown, mixes them on
/// the stream's clock and encodes what is final. No I/O: pages go to the writer's channel.
pub struct CallRecorder {
    format: AudioFormat,
    mixer: Mixer,
    encoder: OggOpusEncoder,
    pages: mpsc::Sender<WriterMessage>,
    /// The frame being decoded, as samples.
    samples: Vec<i16>,
    /// One stereo block.
    block: Vec<i16>,
}

impl CallRecorder {
    /// A recorder for a stream of `format`, sending pages to `pages`.
    pub fn new(
        format: AudioFormat,
        pages: mpsc::Sender<WriterMessage>,
        serial: u32,
    ) -> Result<Self, RecordingFailed> {
        let encoder = OggOpusEncoder::new(format.sample_rate, serial)
            .map_err(|error| RecordingFailed::Encoder(error.to_string()))?;
        let mixer = Mixer::new(format.sample_rate);
        let block = vec![0; mixer.block_samples() * 2];
        let mut recorder = Self {
            format,
            mixer,
            encoder,
            pages,
            samples: vec![0; format.frame_samples().max(320)],
            block,
        };
        // The header pages go at once: the file exists (or fails) from the call's start.
        recorder.send_pages()?;
        Ok(recorder)
    }

    /// A caller frame (the carrier's bytes) that arrived `now` after the stream started.
    pub fn caller(
        &mut self,
        payload: &[u8],
        timestamp_ms: Option<u64>,
        chunk: Option<u64>,
        now: Duration,
    ) -> Result<(), RecordingFailed> {
        let count = self.decode(payload);
        self.mixer
            .caller(timestamp_ms, chunk, &self.samples[..count], now);
        self.pump(now)
    }

    /// An agent frame (the carrier's bytes) sent to the carrier `now`.
    pub fn agent(&mut self, payload: &[u8], now: Duration) -> Result<(), RecordingFailed> {
        let count = self.decode(payload);
        self.mixer.agent(&self.samples[..count], now);
        self.pump(now)
    }

    /// `clearAudio` went out `now`.
    pub fn clear(&mut self, now: Duration) {
        self.mixer.clear(now);
    }

    /// Encodes what is final; a page goes to the writer once complete.
    pub fn pump(&mut self, now: Duration) -> Result<(), RecordingFailed> {
        // The writer stops (and drops its end) on a failure: noticed at once, not a page later.
        if self.pages.is_closed() {
            return Err(RecordingFailed::Storage);
        }
        while self.mixer.next_block(now, &mut self.block) {
            let real = self.mixer.block_samples();
            self.encoder
                .encode(&self.block, real)
                .map_err(|error| RecordingFailed::Encoder(error.to_string()))?;
        }
        // A page completes every PACKETS_PER_PAGE packets: it goes as soon as it is whole.
        if self.encoder.buffered_bytes() > 0 {
            self.send_pages()?;
        }
        Ok(())
    }

    /// The call ended `now`: the rest of the timeline, the end of the stream. Returns the last
    /// pages for [`WriterMessage::Finish`].
    pub fn finish(
        mut self,
        now: Duration,
    ) -> Result<(Vec<u8>, mpsc::Sender<WriterMessage>), RecordingFailed> {
        self.pump(now)?;
        while let Some(real) = self.mixer.finish_block(now, &mut self.block) {
            self.encoder
                .encode(&self.block, real)
                .map_err(|error| RecordingFailed::Encoder(error.to_string()))?;
        }
        self.encoder
            .finish()
            .map_err(|error| RecordingFailed::Encoder(error.to_string()))?;
        if self.mixer.dropped_agent_samples > 0 || self.mixer.late_caller_samples > 0 {
            tracing::info!(
                dropped_agent_ms =
                    self.mixer.dropped_agent_samples * 1000 / u64::from(self.format.sample_rate),
                late_caller_ms =
                    self.mixer.late_caller_samples * 1000 / u64::from(self.format.sample_rate),
                "recording: audio outside the mixer's window was left out"
            );
        }
        Ok((self.encoder.take_pages(), self.pages))
    }

    /// Milliseconds of the timeline recorded so far.
    pub fn duration_ms(&self) -> u64 {
        self.encoder.duration_ms()
    }

    fn send_pages(&mut self) -> Result<(), RecordingFailed> {
        let pages = self.encoder.take_pages();
        if pages.is_empty() {
            return Ok(());
        }
        self.pages
            .try_send(WriterMessage::Pages(pages))
            .map_err(|error| match error {
                mpsc::error::TrySendError::Full(_) => RecordingFailed::Stalled,
                mpsc::error::TrySendError::Closed(_) => RecordingFailed::Storage,
            })
    }

    fn decode(&mut self, payload: &[u8]) -> usize {
        match self.format.encoding {
            Encoding::Mulaw => {
                let count = payload.len().min(self.samples.len());
                mulaw::decode(&payload[..count], &mut self.samples[..count])
            }
            Encoding::L16 => {
                let count = (payload.len() / 2).min(self.samples.len());
                l16::decode_le(&payload[..count * 2], &mut self.samples[..count])
            }
        }
    }
}

/// Writes one call's pages to `part` as they come, and on `Finish` syncs the file and moves it
/// to `file`. Ends when the bridge drops its sender; a call never recorded creates nothing.
/// Any failure is logged and counted, and the receiver is dropped, so the bridge's next send
/// fails and the call records `recording_failed`.
pub async fn write_loop(part: PathBuf, file: PathBuf, mut pages: mpsc::Receiver<WriterMessage>) {
    let mut output: Option<tokio::fs::File> = None;
    let mut written_pages = 0u64;
    let mut written_bytes = 0u64;
    while let Some(message) = pages.recv().await {
        let (bytes, finish) = match message {
            WriterMessage::Pages(bytes) => (bytes, None),
            WriterMessage::Finish(bytes, reply) => (bytes, Some(reply)),
        };
        let step = async {
            let handle = match &mut output {
                Some(handle) => handle,
                None => output.insert(create(&part).await?),
            };
            handle.write_all(&bytes).await?;
            handle.flush().await?;
            written_pages += 1;
            written_bytes += bytes.len() as u64;
            if finish.is_some() || written_pages.is_multiple_of(PAGES_PER_SYNC) {
                handle.sync_data().await?;
            }
            if finish.is_some() {
                tokio::fs::rename(&part, &file).await?;
            }
            std::io::Result::Ok(())
        };
        match step.await {
            Ok(()) => {
                if let Some(reply) = finish {
                    let _ = reply.send(Ok(written_bytes));
                    return;
                }
            }
            Err(error) => {
                metrics::counter!(crate::metrics::RECORDINGS_FAILED, "stage" => "write")
                    .increment(1);
                tracing::warn!(%error, file = %part.display(), "recording: writing failed; the call goes on unrecorded");
                if let Some(reply) = finish {
                    let _ = reply.send(Err(error.to_string()));
                }
                drop(output.take());
                // What was written is of no use without the rest; best effort.
                let _ = tokio::fs::remove_file(&part).await;
                return;
            }
        }
    }
    if output.is_some() {
        // The bridge went away without finishing (its recorder failed): nothing to keep.
        drop(output.take());
        let _ = tokio::fs::remove_file(&part).await;
    }
}

async fn create(part: &Path) -> std::io::Result<tokio::fs::File> {
    if let Some(parent) = part.parent() {
        tokio::fs::create_dir_all(parent).await?;
    }
    tokio::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(part)
        .await
}

/// What the recovery of unfinished files did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// Files finished, with the call they belong to and whether it was cut.
    pub finished: Vec<(String, bool)>,
    /// Files with nothing to keep, renamed `.ogg.corrupt`.
    pub corrupt: Vec<String>,
}

/// Finishes the files a previous run of this gateway left unfinished (it was killed): each is
/// kept up to its last valid page and moved beside the others; a file with nothing valid is
/// renamed `.ogg.corrupt` and reported. Blocking file work: run it on the blocking pool.
pub fn recover_unfinished(store: &RecordingStore) -> std::io::Result<Recovered> {
    let mut recovered = Recovered::default();
    let entries = match std::fs::read_dir(&store.partial) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(recovered),
        Err(error) => return Err(error),
    };
    for entry in entries {
        let path = entry?.path();
        let Some(stem) = path
            .file_name()
            .and_then(|name| name.to_str())
            .and_then(|name| name.strip_suffix(PART_SUFFIX))
        else {
            continue;
        };
        let Some(call_sid) = call_sid_of(stem) else {
            continue;
        };
        let bytes = std::fs::read(&path)?;
        match ogg_opus::salvage(&bytes) {
            Ok(salvaged) => {
                let target = store.file(&call_sid);
                let temporary = path.with_extension("salvaged");
                std::fs::write(&temporary, &salvaged.bytes)?;
                std::fs::File::open(&temporary)?.sync_all()?;
                std::fs::rename(&temporary, &target)?;
                std::fs::remove_file(&path)?;
                recovered.finished.push((call_sid, !salvaged.complete));
            }
            Err(error) => {
                tracing::warn!(%error, file = %path.display(), "recording: an unfinished file has nothing to keep; renamed .ogg.corrupt");
                std::fs::rename(&path, store.dir.join(format!("{stem}{CORRUPT_SUFFIX}")))?;
                recovered.corrupt.push(call_sid);
            }
        }
    }
    Ok(recovered)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_campaign_overrides_the_organization_and_recording_is_on_by_default() {
        use serde_json::json;
        let policy =
            |organization, campaign| RecordingPolicy::from_settings(&organization, &campaign);
        assert_eq!(
            policy(json!({}), json!({})),
            RecordingPolicy {
                enabled: true,
                consent_line: None
            }
        );
        assert!(!policy(json!({"recording": false}), json!({})).enabled);
        assert!(
            policy(
                json!({"recording": false}),
                json!({"recording": {"enabled": true}})
            )
            .enabled
        );
        assert!(!policy(json!({"recording": true}), json!({"recording": false})).enabled);
        assert_eq!(
            policy(
                json!({"recording": {"consent_line": "This call may be recorded."}}),
                json!({"recording": {"enabled": true}})
            )
            .consent_line
            .as_deref(),
            Some("This call may be recorded.")
        );
        assert_eq!(
            policy(
                json!({"recording": {"consent_line": "org"}}),
                json!({"recording": {"consent_line": "campaign"}})
            )
            .consent_line
            .as_deref(),
            Some("campaign")
        );
        // No notice for a call that is not recorded; nonsense is ignored.
        assert_eq!(
            policy(
                json!({"recording": {"enabled": false, "consent_line": "x"}}),
                json!({})
            )
            .consent_line,
            None
        );
        assert!(policy(json!({"recording": "yes"}), json!({"recording": 1})).enabled);
    }

    #[test]
    fn call_ids_become_safe_file_names_and_back() {
        for sid in [
            "12345678-1234-1234-1234-123456789abc",
            "CA_1",
            "../../etc/passwd",
            "a b",
            "",
            "~x",
        ] {
            let stem = file_stem(sid);
            assert!(
                !stem.contains('/') && !stem.contains('.') && !stem.is_empty(),
                "{stem}"
            );
            assert_eq!(call_sid_of(&stem).as_deref(), Some(sid));
        }
        assert_eq!(file_stem("CA_1"), "CA_1");
    }

    #[test]
    fn unfinished_files_are_finished_and_corrupt_ones_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let store = RecordingStore::new(dir.path().to_path_buf(), "gw-1");
        store.check_writable().unwrap();
        let mut encoder = OggOpusEncoder::new(8000, 3).unwrap();
        let mut file = encoder.take_pages();
        for _ in 0..120 {
            encoder.encode(&[100; 320], 160).unwrap();
            file.extend(encoder.take_pages());
        }
        std::fs::write(store.part("call-a"), &file[..file.len() - 7]).unwrap();
        std::fs::write(store.part("call-b"), b"OggS garbage").unwrap();
        let recovered = recover_unfinished(&store).unwrap();
        assert_eq!(recovered.finished, vec![("call-a".to_owned(), true)]);
        assert_eq!(recovered.corrupt, vec!["call-b".to_owned()]);
        let kept = std::fs::read(store.file("call-a")).unwrap();
        let again = ogg_opus::salvage(&kept).unwrap();
        assert!(again.complete);
        // 119 packets encoded (the last is held for the end): the whole pages among them were
        // written, the last of those torn.
        let whole_pages = 119 / ogg_opus::PACKETS_PER_PAGE;
        assert_eq!(
            again.packets,
            (whole_pages - 1) * ogg_opus::PACKETS_PER_PAGE,
            "the torn page is left out"
        );
        assert!(dir.path().join("call-b.ogg.corrupt").exists());
        assert!(!store.part("call-a").exists());
        // A second pass finds nothing.
        assert_eq!(recover_unfinished(&store).unwrap(), Recovered::default());
    }
}
