//! Call recordings end to end: a real call through the synthetic Plivo caller and the fake
//! OpenAI server, the file decoded by `opusdec` (opus-tools, an independent decoder), the API
//! with Range requests and signed links, the policy, an unwritable store, and the recovery of
//! a file a crash left unfinished.

use std::{path::Path, time::Duration};

use chrono::Utc;
use uuid::Uuid;
use voice_gateway::{
    api::tokens::Scope,
    db::calls::CallStart,
    domain::Direction,
    recording::{
        RecordingStore,
        link::{LINK_TTL, LinkKey},
        ogg_opus::{OggOpusEncoder, PACKETS_PER_PAGE},
    },
    simulators::plivo_caller::{CallReport, Step},
};

use crate::{
    call::{Fixture, conversation, turn},
    campaign_api::{issue, wait_until},
    helpers::{TestApp, TestDb, seed_org, settings_for},
};

/// The rate `opusdec` is asked for: the stream's.
const RATE: usize = 8000;
/// Tolerance on where things sit in the file: a frame and a half of network and scheduling.
const SLACK: Duration = Duration::from_millis(60);

/// The file decoded by opusdec: left and right channels at 8 kHz.
fn decode(file: &Path) -> (Vec<i16>, Vec<i16>) {
    let wav = file.with_extension("wav");
    let status = std::process::Command::new("opusdec")
        .args(["--quiet", "--rate", "8000"])
        .arg(file)
        .arg(&wav)
        .status()
        .expect("opusdec runs (opus-tools, scripts/install-system-deps)");
    assert!(status.success(), "opusdec refused {}", file.display());
    let bytes = std::fs::read(&wav).unwrap();
    assert_eq!(&bytes[..4], b"RIFF");
    let channels = u16::from_le_bytes([bytes[22], bytes[23]]);
    let rate = u32::from_le_bytes(bytes[24..28].try_into().unwrap());
    assert_eq!((channels, rate), (2, RATE as u32));
    let data = bytes
        .windows(4)
        .position(|window| window == b"data")
        .expect("a data chunk")
        + 8;
    let samples: Vec<i16> = bytes[data..]
        .chunks_exact(2)
        .map(|pair| i16::from_le_bytes([pair[0], pair[1]]))
        .collect();
    let left = samples.iter().step_by(2).copied().collect();
    let right = samples.iter().skip(1).step_by(2).copied().collect();
    (left, right)
}

/// Root mean square of `channel` between two times.
fn rms(channel: &[i16], from: Duration, to: Duration) -> f64 {
    let index = |at: Duration| ((at.as_secs_f64() * RATE as f64) as usize).min(channel.len());
    let window = &channel[index(from)..index(to)];
    assert!(!window.is_empty(), "{from:?}..{to:?} is outside the file");
    (window.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / window.len() as f64).sqrt()
}

/// A call that hears the greeting and hangs up.
pub(crate) const GREETING_ONLY: [Step; 3] = [
    Step::WaitForAgentAudio,
    Step::WaitForAgentSilence(Duration::from_millis(200)),
    Step::HangUp,
];

/// GET a recording resource with the token and, if given, a Range header.
pub(crate) async fn get_recording(
    http: &reqwest::Client,
    resource: &str,
    token: &str,
    range: Option<&str>,
) -> reqwest::Response {
    let mut request = http.get(resource).bearer_auth(token);
    if let Some(range) = range {
        request = request.header("range", range);
    }
    request.send().await.unwrap()
}

async fn call_id(test: &TestDb, call_sid: &str) -> (Uuid, Option<String>) {
    sqlx::query_as("SELECT id, recording_url FROM call_logs WHERE call_sid = $1")
        .bind(call_sid)
        .fetch_one(test.pool())
        .await
        .unwrap()
}

async fn recorded_call(fixture: &Fixture, call_sid: &str, script: &[Step]) -> CallReport {
    let report = fixture.call(0, call_sid, script).await;
    let test = &fixture.test;
    wait_until("the call's close", Duration::from_secs(30), || async {
        call_id(test, call_sid).await.1.is_some()
    })
    .await;
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_is_recorded_in_stereo_on_the_streams_clock() {
    let fixture = Fixture::start(
        conversation(vec![turn(
            "Tell me more",
            "It is a flat by the lake.",
            None,
        )]),
        1,
        &[],
    )
    .await;
    let script = [
        Step::WaitForAgentAudio,
        Step::WaitForAgentSilence(Duration::from_millis(300)),
        Step::Speak(Duration::from_millis(800)),
        Step::WaitForAgentAudio,
        Step::WaitForAgentSilence(Duration::from_millis(300)),
        Step::HangUp,
    ];
    let report = recorded_call(&fixture, "CA-rec-1", &script).await;
    let (id, url) = call_id(&fixture.test, "CA-rec-1").await;
    assert_eq!(
        url.as_deref(),
        Some(format!("/api/v1/calls/{id}/recording").as_str())
    );
    let file = fixture.app.state.runtime.recordings.file("CA-rec-1");
    let (left, right) = decode(&file);

    let duration = Duration::from_secs_f64(left.len() as f64 / RATE as f64);
    let difference = duration.abs_diff(report.duration);
    assert!(
        difference <= SLACK,
        "the file lasts {duration:?}, the stream {:?}",
        report.duration
    );

    // The greeting: the agent on the right, the caller (sending silence) quiet on the left.
    let greeting = report.first_audio().unwrap();
    let greeting_span = (greeting + SLACK, greeting + Duration::from_millis(1000));
    assert!(
        rms(&right, greeting_span.0, greeting_span.1) > 2000.0,
        "the greeting is on the right"
    );
    assert!(rms(&left, greeting_span.0, greeting_span.1) < 300.0);
    // The caller's words: on the left, and the agent silent there (its reply comes after).
    let (spoke, stopped) = (report.speech_starts[0], report.speech_ends[0]);
    let reply = report.first_frame_after(stopped).unwrap();
    assert!(reply > stopped);
    let caller_level = rms(&left, spoke + SLACK, stopped - SLACK);
    assert!(
        caller_level > 5000.0,
        "the caller's tone is on the left ({caller_level})"
    );
    let agent_level = rms(&right, spoke + SLACK, stopped.min(reply) - SLACK);
    assert!(
        agent_level < caller_level / 50.0,
        "the agent channel is silent while the caller speaks ({agent_level} against {caller_level})"
    );
    // The reply sits where it played, after the caller.
    assert!(rms(&right, reply + SLACK, reply + Duration::from_millis(600)) > 2000.0);
    fixture.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_barge_in_the_cleared_part_of_the_agents_line_is_absent() {
    let mut config = conversation(vec![turn(
        "Tell me everything",
        "Let me tell you all about it at great length, there is so much to say.",
        None,
    )]);
    config.reply_ms = 5000;
    config.generation_speed = 2;
    let fixture = Fixture::start(config, 1, &[]).await;
    let script = [
        Step::WaitForAgentAudio,
        Step::WaitForAgentSilence(Duration::from_millis(300)),
        Step::Speak(Duration::from_millis(500)),
        Step::WaitForAgentAudio,
        Step::WaitForAgentAudioFor(Duration::from_millis(1200)),
        Step::Speak(Duration::from_millis(400)),
        Step::Silence(Duration::from_millis(800)),
        Step::HangUp,
    ];
    let report = recorded_call(&fixture, "CA-rec-barge", &script).await;
    assert_eq!(report.clears.len(), 1, "one barge-in");
    let clear = report.clears[0];
    // Frames went out up to the clear, the playout lead (300 ms) ahead of it: those after the
    // clear's moment were sent but never played, and are not in the file.
    let sent_until = report
        .frames
        .iter()
        .map(|(at, _)| *at)
        .filter(|at| *at <= clear)
        .max()
        .unwrap();
    let file = fixture.app.state.runtime.recordings.file("CA-rec-barge");
    let (left, right) = decode(&file);
    let before = rms(&right, clear - Duration::from_millis(400), clear - SLACK);
    assert!(
        before > 2000.0,
        "the reply played up to the barge-in ({before})"
    );
    let after = rms(
        &right,
        clear + SLACK,
        clear + Duration::from_millis(300) + SLACK,
    );
    assert!(
        after < before / 50.0,
        "the cleared audio (sent until {sent_until:?}, cleared at {clear:?}) is absent ({after} against {before})"
    );
    let end = Duration::from_secs_f64(right.len() as f64 / RATE as f64);
    assert!(
        rms(&right, clear + SLACK, end) < before / 50.0,
        "nothing of the reply after the clear"
    );
    // The caller's barge-in is on the left.
    let (spoke, stopped) = (report.speech_starts[1], report.speech_ends[1]);
    assert!(rms(&left, spoke + SLACK, stopped - SLACK) > 5000.0);
    fixture.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recording_is_served_with_ranges_and_signed_links_to_its_organization_only() {
    let fixture = Fixture::start(conversation(Vec::new()), 1, &[]).await;
    let script = GREETING_ONLY;
    recorded_call(&fixture, "CA-rec-api", &script).await;
    let (id, _) = call_id(&fixture.test, "CA-rec-api").await;
    let file = std::fs::read(fixture.app.state.runtime.recordings.file("CA-rec-api")).unwrap();
    let length = file.len();
    let token = issue(&fixture.test, fixture.org.id, &[Scope::CallsRead]).await;
    let other = seed_org(fixture.test.pool(), "Other Homes", 0).await;
    let other_token = issue(&fixture.test, other.id, Scope::ALL).await;
    let http = &fixture.http;
    let resource = fixture.app.url(&format!("/api/v1/calls/{id}/recording"));

    let whole = get_recording(http, &resource, &token, None).await;
    assert_eq!(whole.status().as_u16(), 200);
    assert_eq!(whole.headers()["content-type"], "audio/ogg");
    assert_eq!(whole.headers()["accept-ranges"], "bytes");
    assert_eq!(whole.bytes().await.unwrap().as_ref(), file.as_slice());

    let part = get_recording(http, &resource, &token, Some("bytes=100-199")).await;
    assert_eq!(part.status().as_u16(), 206);
    assert_eq!(
        part.headers()["content-range"],
        format!("bytes 100-199/{length}").as_str()
    );
    assert_eq!(part.bytes().await.unwrap().as_ref(), &file[100..200]);
    let outside = get_recording(http, &resource, &token, Some(&format!("bytes={length}-"))).await;
    assert_eq!(outside.status().as_u16(), 416);
    assert_eq!(
        outside.headers()["content-range"],
        format!("bytes */{length}").as_str()
    );

    // Another organization's call is a 404, as if it did not exist; no token is a 401.
    let foreign = get_recording(http, &resource, &other_token, None).await;
    assert_eq!(foreign.status().as_u16(), 404);
    let foreign_link = http
        .get(format!("{resource}/link"))
        .bearer_auth(&other_token)
        .send()
        .await
        .unwrap();
    assert_eq!(foreign_link.status().as_u16(), 404);
    assert_eq!(
        http.get(&resource).send().await.unwrap().status().as_u16(),
        401
    );

    // The signed link plays without the token, ranges included.
    let link: serde_json::Value = http
        .get(format!("{resource}/link"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = link["url"].as_str().unwrap();
    let path = url
        .strip_prefix("https://gateway.test")
        .expect("on the public URL");
    assert!(path.starts_with(&format!("/api/v1/recordings/{id}?exp=")));
    let played = http.get(fixture.app.url(path)).send().await.unwrap();
    assert_eq!(played.status().as_u16(), 200);
    assert_eq!(played.bytes().await.unwrap().as_ref(), file.as_slice());
    let seek = http
        .get(fixture.app.url(path))
        .header("range", "bytes=-50")
        .send()
        .await
        .unwrap();
    assert_eq!(seek.status().as_u16(), 206);
    assert_eq!(seek.bytes().await.unwrap().as_ref(), &file[length - 50..]);

    // Expired or forged: 403 before anything is looked up.
    let key = LinkKey::derive("s".repeat(48).as_bytes());
    let expired = key.sign(id, Utc::now() - chrono::Duration::seconds(1));
    let response = http
        .get(
            fixture
                .app
                .url(&format!("/api/v1/recordings/{id}?{expired}")),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 403);
    let forged = path.replace("sig=", "sig=00");
    assert_eq!(
        http.get(fixture.app.url(&forged))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        403
    );
    let other_call = key.sign(Uuid::new_v4(), Utc::now() + LINK_TTL);
    let response = http
        .get(
            fixture
                .app
                .url(&format!("/api/v1/recordings/{id}?{other_call}")),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 403, "a link signs one call");
    let unknown = Uuid::new_v4();
    let valid_but_absent = key.sign(unknown, Utc::now() + LINK_TTL);
    let response = http
        .get(
            fixture
                .app
                .url(&format!("/api/v1/recordings/{unknown}?{valid_but_absent}")),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
    fixture.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_off_in_the_organizations_settings_records_nothing() {
    let fixture = Fixture::start(conversation(Vec::new()), 1, &[]).await;
    sqlx::query("UPDATE organizations SET settings = '{\"recording\": false}' WHERE id = $1")
        .bind(fixture.org.id)
        .execute(fixture.test.pool())
        .await
        .unwrap();
    let script = GREETING_ONLY;
    fixture.call(0, "CA-rec-off", &script).await;
    let test = &fixture.test;
    wait_until("the call's close", Duration::from_secs(30), || async {
        sqlx::query_scalar::<_, bool>(
            "SELECT ended_at IS NOT NULL FROM call_logs WHERE call_sid = 'CA-rec-off'",
        )
        .fetch_optional(test.pool())
        .await
        .unwrap()
        .unwrap_or(false)
    })
    .await;
    let store = fixture.app.state.runtime.recordings.clone();
    let (id, url) = call_id(&fixture.test, "CA-rec-off").await;
    assert_eq!(url, None);
    let token = issue(&fixture.test, fixture.org.id, &[Scope::CallsRead]).await;
    let response = fixture
        .http
        .get(fixture.app.url(&format!("/api/v1/calls/{id}/recording")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
    fixture.finish().await;
    assert!(!store.file("CA-rec-off").exists());
    assert!(!store.part("CA-rec-off").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_store_leaves_the_call_unrecorded_with_an_event() {
    let blocker = tempfile::NamedTempFile::new().unwrap();
    // A regular file where the directory should be: unwritable even for root.
    let url = format!("file://{}/recordings", blocker.path().display());
    let fixture = Fixture::start(
        conversation(Vec::new()),
        1,
        &[("VG_RECORDINGS_URL", url.as_str())],
    )
    .await;
    let script = GREETING_ONLY;
    let report = fixture.call(0, "CA-rec-fail", &script).await;
    assert!(report.first_audio().is_some(), "the call went on");
    let test = &fixture.test;
    wait_until("the recording_failed event", Duration::from_secs(30), || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM call_events e JOIN call_logs c ON c.id = e.call_log_id
             WHERE c.call_sid = 'CA-rec-fail' AND e.kind = 'recording_failed' AND c.ended_at IS NOT NULL",
        )
        .fetch_one(test.pool())
        .await
        .unwrap()
            == 1
    })
    .await;
    let (_, url) = call_id(&fixture.test, "CA-rec-fail").await;
    assert_eq!(url, None);
    let metrics = fixture
        .http
        .get(fixture.app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("vg_recordings_failed_total{stage=\"write\"}"),
        "the failure is counted"
    );
    fixture.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_a_crash_left_unfinished_are_finished_and_linked_at_start() {
    let test = TestDb::new().await;
    let org = seed_org(test.pool(), "Acme Homes", 1).await;
    let name = format!("gw-{}", Uuid::new_v4().simple());
    let data_dir = crate::helpers::test_data_dir();
    // The killed run's call, still open, and its torn file.
    test.db
        .open_call(&CallStart {
            call_sid: "CA-rec-crash".to_owned(),
            campaign_id: org.campaign_id,
            lead_id: org.lead_ids[0],
            direction: Direction::Outbound,
            started_at: Utc::now(),
            server_name: name.clone(),
            metadata: serde_json::json!({}),
        })
        .await
        .unwrap();
    let store = RecordingStore::new(Path::new(&data_dir).join("recordings"), &name);
    store.check_writable().unwrap();
    let mut encoder = OggOpusEncoder::new(8000, 9).unwrap();
    let mut bytes = encoder.take_pages();
    for _ in 0..130 {
        encoder.encode(&[300; 320], 160).unwrap();
        bytes.extend(encoder.take_pages());
    }
    std::fs::write(store.part("CA-rec-crash"), &bytes[..bytes.len() - 9]).unwrap();
    std::fs::write(store.part("CA-rec-gone"), b"OggS and then nothing").unwrap();

    let app = TestApp::spawn(settings_for(
        &test.url,
        &name,
        &[("VG_DATA_DIR", data_dir.as_str())],
    ))
    .await;
    wait_until("the recording linked", Duration::from_secs(30), || async {
        call_id(&test, "CA-rec-crash").await.1.is_some()
    })
    .await;
    let (id, url) = call_id(&test, "CA-rec-crash").await;
    assert_eq!(url, Some(format!("/api/v1/calls/{id}/recording")));
    let (left, _) = decode(&store.file("CA-rec-crash"));
    // 129 packets were encoded (the last is held for the end): the whole pages among them
    // were written, the last of those torn, so one page fewer was kept. The encoder's
    // lookahead (2.5 ms, 120 granules at 48 kHz) is skipped by the decoder.
    let kept_packets = (129 / PACKETS_PER_PAGE - 1) as usize * PACKETS_PER_PAGE as usize;
    assert_eq!(
        left.len(),
        kept_packets * RATE / 50 - 120 * RATE / 48_000,
        "the kept pages' audio less the pre-skip"
    );
    assert!(!store.part("CA-rec-crash").exists());
    assert!(
        store.dir().join("CA-rec-gone.ogg.corrupt").exists(),
        "the corrupt file is set aside"
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recordings_past_their_retention_are_deleted_unlinked_and_audited() {
    use voice_gateway::recording::retention::{Expired, expire_once};
    let fixture = Fixture::start(conversation(Vec::new()), 2, &[]).await;
    let pool = fixture.test.pool();
    sqlx::query("UPDATE organizations SET settings = settings || '{\"recording_retention_days\": 30}' WHERE id = $1")
        .bind(fixture.org.id)
        .execute(pool)
        .await
        .unwrap();
    let script = GREETING_ONLY;
    recorded_call(&fixture, "CA-ret-old", &script).await;
    let report = fixture.call(1, "CA-ret-new", &script).await;
    assert!(report.duration > Duration::ZERO);
    wait_until("the second close", Duration::from_secs(30), || async {
        call_id(&fixture.test, "CA-ret-new").await.1.is_some()
    })
    .await;
    let age = |call_sid: &'static str, days: i32| async move {
        sqlx::query("UPDATE call_logs SET ended_at = now() - make_interval(days => $2), call_timestamp = now() - make_interval(days => $2) WHERE call_sid = $1")
            .bind(call_sid)
            .bind(days)
            .execute(pool)
            .await
            .unwrap();
    };
    let store = &fixture.app.state.runtime.recordings;
    let pass = || expire_once(&fixture.app.state.db, store, "gw-retention");
    let (old_id, old_url) = call_id(&fixture.test, "CA-ret-old").await;

    // 29 days old: kept.
    age("CA-ret-old", 29).await;
    assert_eq!(pass().await.unwrap(), Expired::default());
    // 31 days: deleted, unlinked, audited; the newer call is untouched.
    age("CA-ret-old", 31).await;
    assert_eq!(
        pass().await.unwrap(),
        Expired {
            deleted: 1,
            failed: 0
        }
    );
    assert!(!store.file("CA-ret-old").exists());
    assert_eq!(call_id(&fixture.test, "CA-ret-old").await.1, None);
    assert!(store.file("CA-ret-new").exists());
    assert!(call_id(&fixture.test, "CA-ret-new").await.1.is_some());
    let audit: Vec<(uuid::Uuid, String, String, String, serde_json::Value, serde_json::Value)> =
        sqlx::query_as(
            "SELECT call_log_id, action, reason, server_name, before, after FROM recording_audit WHERE organization_id = $1",
        )
        .bind(fixture.org.id)
        .fetch_all(pool)
        .await
        .unwrap();
    assert_eq!(audit.len(), 1);
    let (call_log_id, action, reason, server, before, after) = &audit[0];
    assert_eq!(*call_log_id, old_id);
    assert_eq!(
        (action.as_str(), reason.as_str(), server.as_str()),
        ("delete", "retention", "gw-retention")
    );
    assert_eq!(before["recording_url"].as_str(), old_url.as_deref());
    assert_eq!(before["retention_days"], 30);
    assert_eq!(after["recording_url"], serde_json::Value::Null);
    // The trail is append-only, even for the service role.
    assert!(
        sqlx::query("UPDATE recording_audit SET reason = 'retention'")
            .execute(pool)
            .await
            .is_err()
    );
    // The API has nothing to serve any more.
    let token = issue(&fixture.test, fixture.org.id, &[Scope::CallsRead]).await;
    let gone = fixture
        .http
        .get(
            fixture
                .app
                .url(&format!("/api/v1/calls/{old_id}/recording")),
        )
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status().as_u16(), 404);
    // A second pass (another gateway's, say) finds nothing: one audit row.
    assert_eq!(pass().await.unwrap(), Expired::default());

    // The campaign's setting overrides the organization's: 90 days keep a 31-day-old call.
    sqlx::query("UPDATE campaigns SET settings = settings || '{\"recording_retention_days\": 90}' WHERE id = $1")
        .bind(fixture.org.campaign_id)
        .execute(pool)
        .await
        .unwrap();
    age("CA-ret-new", 31).await;
    assert_eq!(pass().await.unwrap(), Expired::default());
    assert!(store.file("CA-ret-new").exists());
    age("CA-ret-new", 91).await;
    assert_eq!(pass().await.unwrap().deleted, 1);
    assert!(!store.file("CA-ret-new").exists());
    // A setting that is not a whole number of days keeps recordings.
    for nonsense in ["\"30\"", "0", "2.5", "-1", "null"] {
        let days: Option<i32> = sqlx::query_scalar(
            "SELECT public.vg_retention_days(jsonb_build_object('recording_retention_days', $1::jsonb))",
        )
        .bind(nonsense)
        .fetch_one(pool)
        .await
        .unwrap();
        assert_eq!(days, None, "{nonsense}");
    }
    fixture.finish().await;
}
