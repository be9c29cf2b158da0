//! `s3://` recordings against a real S3-compatible server: moto's (`moto_server`, from PyPI,
//! installed by `scripts/install-test-tools`), reached through `AWS_ENDPOINT_URL` as any
//! S3-compatible store would be. The object arrives after the call, multipart; with the store
//! stopped the call still ends cleanly and the object arrives once the store is back.

use std::{
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use voice_gateway::{api::tokens::Scope, simulators::plivo_caller::Step};

use crate::{
    call::{Fixture, conversation},
    campaign_api::{issue, wait_until},
    recording::{GREETING_ONLY, get_recording},
};

const BUCKET: &str = "calls";
const PREFIX: &str = "recordings/test";

/// A `moto_server` process on a loopback port, killed when dropped.
pub(crate) struct S3Server {
    child: Child,
    pub port: u16,
}

impl S3Server {
    #[allow(clippy::disallowed_methods)] // Where scripts/install-test-tools put it.
    fn binary() -> PathBuf {
        let base = std::env::var_os("VG_TEST_TOOLS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
                    .join(".cache/voice-gateway/test-tools")
            });
        let binary = base.join("moto/bin/moto_server");
        assert!(
            binary.exists(),
            "{} is missing: run scripts/install-test-tools (scripts/test does)",
            binary.display()
        );
        binary
    }

    /// A server on a free port, with the bucket created.
    pub(crate) async fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Self::start_on(port).await
    }

    /// A server on `port` (an empty store: moto keeps objects in memory), with the bucket.
    pub(crate) async fn start_on(port: u16) -> Self {
        // reqwest needs the process's TLS provider, which the test cluster installs.
        crate::helpers::cluster();
        let child = Command::new(Self::binary())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts");
        let server = Self { child, port };
        let http = reqwest::Client::new();
        let bucket = server.url(BUCKET);
        wait_until("moto_server answers", Duration::from_secs(30), || async {
            http.put(&bucket)
                .send()
                .await
                .is_ok_and(|response| response.status().is_success())
        })
        .await;
        server
    }

    pub(crate) fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.endpoint())
    }

    /// The object `key` of the bucket: its bytes and ETag, or `None` when absent.
    pub(crate) async fn object(&self, key: &str) -> Option<(Vec<u8>, String)> {
        let response = reqwest::get(self.url(&format!("{BUCKET}/{key}")))
            .await
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        let etag = response.headers()["etag"].to_str().unwrap().to_owned();
        Some((response.bytes().await.ok()?.to_vec(), etag))
    }

    /// Kills the server (SIGKILL: the store is gone, mid-request or not).
    pub(crate) fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The gateway's settings for `server`.
fn s3_settings(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("VG_RECORDINGS_URL", format!("s3://{BUCKET}/{PREFIX}")),
        ("AWS_ENDPOINT_URL", endpoint.to_owned()),
        ("AWS_ACCESS_KEY_ID", "AKIATEST".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "test-secret".to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
    ]
}

async fn start_fixture(endpoint: &str) -> Fixture {
    let settings = s3_settings(endpoint);
    let extra: Vec<(&str, &str)> = settings
        .iter()
        .map(|(key, value)| (*key, value.as_str()))
        .collect();
    Fixture::start(conversation(Vec::new()), 1, &extra).await
}

async fn recording_url(fixture: &Fixture, call_sid: &str) -> Option<(uuid::Uuid, String)> {
    sqlx::query_as::<_, (uuid::Uuid, Option<String>)>(
        "SELECT id, recording_url FROM call_logs WHERE call_sid = $1",
    )
    .bind(call_sid)
    .fetch_optional(fixture.test.pool())
    .await
    .unwrap()
    .and_then(|(id, url)| url.map(|url| (id, url)))
}

const SCRIPT: [Step; 3] = GREETING_ONLY;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recording_arrives_in_the_s3_store_after_the_call_multipart() {
    let store = S3Server::start().await;
    let fixture = start_fixture(&store.endpoint()).await;
    fixture.call(0, "CA-s3-1", &SCRIPT).await;
    let key = format!("{PREFIX}/CA-s3-1.ogg");
    wait_until(
        "the object in the store",
        Duration::from_secs(30),
        || async { store.object(&key).await.is_some() },
    )
    .await;
    let (object, etag) = store.object(&key).await.unwrap();
    assert_eq!(&object[..4], b"OggS", "an Ogg file");
    // S3 gives a multipart upload's object an ETag of the parts' MD5 and their count.
    assert!(
        etag.trim_matches('"').ends_with("-1"),
        "uploaded multipart (one part), ETag {etag}"
    );
    // The local copy goes once the store has it.
    let local = fixture.app.state.runtime.recordings.file("CA-s3-1");
    wait_until(
        "the local copy removed",
        Duration::from_secs(10),
        || async { !local.exists() },
    )
    .await;
    // An independent decoder reads what the store holds.
    let dir = tempfile::tempdir().unwrap();
    let downloaded = dir.path().join("CA-s3-1.ogg");
    std::fs::write(&downloaded, &object).unwrap();
    let status = Command::new("opusdec")
        .args(["--quiet"])
        .arg(&downloaded)
        .arg(dir.path().join("CA-s3-1.wav"))
        .status()
        .expect("opusdec runs");
    assert!(status.success());

    // The API serves it from the store, whole and by range.
    let (id, url) = recording_url(&fixture, "CA-s3-1").await.unwrap();
    assert_eq!(url, format!("/api/v1/calls/{id}/recording"));
    let token = issue(&fixture.test, fixture.org.id, &[Scope::CallsRead]).await;
    let resource = fixture.app.url(&url);
    let whole = get_recording(&fixture.http, &resource, &token, None).await;
    assert_eq!(whole.status().as_u16(), 200);
    assert_eq!(whole.headers()["content-type"], "audio/ogg");
    assert_eq!(whole.bytes().await.unwrap().as_ref(), object.as_slice());
    let part = get_recording(&fixture.http, &resource, &token, Some("bytes=10-49")).await;
    assert_eq!(part.status().as_u16(), 206);
    assert_eq!(
        part.headers()["content-range"],
        format!("bytes 10-49/{}", object.len()).as_str()
    );
    assert_eq!(part.bytes().await.unwrap().as_ref(), &object[10..50]);
    fixture.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_store_down_the_call_ends_cleanly_and_the_object_arrives_when_it_is_back() {
    let mut store = S3Server::start().await;
    let port = store.port;
    let fixture = start_fixture(&store.endpoint()).await;
    store.stop();

    let report = fixture.call(0, "CA-s3-down", &SCRIPT).await;
    assert!(report.duration > Duration::ZERO);
    // The call closes as any call does, its recording linked: it waits on disk.
    wait_until("the call's close", Duration::from_secs(30), || async {
        recording_url(&fixture, "CA-s3-down").await.is_some()
    })
    .await;
    let row = crate::call::call_row(&fixture.test, "CA-s3-down").await;
    assert!(row.ended_at.is_some());
    let local = fixture.app.state.runtime.recordings.file("CA-s3-down");
    let bytes = std::fs::read(&local).expect("the file waits on local disk");
    // Served from the disk meanwhile.
    let (id, url) = recording_url(&fixture, "CA-s3-down").await.unwrap();
    assert_eq!(url, format!("/api/v1/calls/{id}/recording"));
    let token = issue(&fixture.test, fixture.org.id, &[Scope::CallsRead]).await;
    let served = get_recording(&fixture.http, &fixture.app.url(&url), &token, None).await;
    assert_eq!(served.status().as_u16(), 200);
    assert_eq!(served.bytes().await.unwrap().as_ref(), bytes.as_slice());

    // The store comes back (empty, on the same address): the retry delivers the same bytes.
    let store = S3Server::start_on(port).await;
    let key = format!("{PREFIX}/CA-s3-down.ogg");
    wait_until(
        "the object after the store's return",
        Duration::from_secs(60),
        || async { store.object(&key).await.is_some() },
    )
    .await;
    assert_eq!(store.object(&key).await.unwrap().0, bytes);
    wait_until(
        "the local copy removed",
        Duration::from_secs(10),
        || async { !local.exists() },
    )
    .await;
    fixture.finish().await;
}
