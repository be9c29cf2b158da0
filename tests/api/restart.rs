//! A gateway that dies (SIGKILL) leaves no call open for ever: its own next start closes its
//! open calls as `gateway_restart` before it serves, and any other gateway closes them from
//! its heartbeat once the dead one's heartbeat is stale. A draining gateway keeps beating, so
//! nobody takes the calls it still holds.

use std::time::Duration;

use chrono::Utc;
use serde_json::json;
use tokio::{
    io::{AsyncBufReadExt, BufReader, Lines},
    process::{Child, ChildStderr},
};
use uuid::Uuid;
use voice_gateway::{
    db::calls::{Applied, CallEnd, CallEvent, CallStart},
    domain::{CallOutcome, Direction, EndReason, EventKind},
    simulators::{
        openai_realtime::{FakeRealtimeConfig, FakeRealtimeServer},
        plivo_caller::{self, CallerConfig, Step},
    },
};

use crate::{
    campaign_api::wait_until,
    helpers::{Org, TestApp, TestDb, seed_org, settings_for},
    serve::{gateway, wait_for_log},
};

pub(crate) const AUTH_TOKEN: &str = "plivo-test-token";
/// How long a condition may take before the test fails; never a synchronisation by itself.
pub(crate) const DEADLINE: Duration = Duration::from_secs(60);
const BEAT: Duration = Duration::from_secs(10);

fn start(org: &Org, lead: usize, call_sid: &str, server_name: &str) -> CallStart {
    CallStart {
        call_sid: call_sid.to_owned(),
        campaign_id: org.campaign_id,
        lead_id: org.lead_ids[lead],
        direction: Direction::Outbound,
        started_at: Utc::now() - chrono::Duration::seconds(60),
        server_name: server_name.to_owned(),
        metadata: json!({"stream_id": "s-1"}),
    }
}

fn speech(seq: i32, kind: EventKind, text: &str, seconds_ago: i64) -> CallEvent {
    CallEvent {
        seq,
        kind,
        occurred_at: Utc::now() - chrono::Duration::seconds(seconds_ago),
        ended_at: None,
        text: Some(text.to_owned()),
        data: json!({}),
    }
}

pub(crate) async fn lead_status(test: &TestDb, lead: Uuid) -> (String, String) {
    sqlx::query_as("SELECT status, call_status FROM leads WHERE id = $1")
        .bind(lead)
        .fetch_one(test.pool())
        .await
        .unwrap()
}

pub(crate) async fn total_calls(test: &TestDb, org: &Org) -> i32 {
    sqlx::query_scalar("SELECT total_calls FROM campaigns WHERE id = $1")
        .bind(org.campaign_id)
        .fetch_one(test.pool())
        .await
        .unwrap()
}

/// Makes a server's heartbeat `seconds` old.
async fn age_heartbeat(test: &TestDb, name: &str, seconds: i32) {
    sqlx::query(
        "UPDATE websocket_servers SET last_verified_at = now() - make_interval(secs => $2) WHERE name = $1",
    )
    .bind(name)
    .bind(f64::from(seconds))
    .execute(test.pool())
    .await
    .unwrap();
}

#[tokio::test]
async fn the_open_calls_of_a_gateway_that_is_gone_are_closed_once_keeping_what_they_said() {
    let test = TestDb::new().await;
    let db = &test.db;
    let org = seed_org(db.pool(), "Acme", 3).await;
    db.register_server("gw-a", "wss://a.test/plivo/stream", 0, BEAT, 100)
        .await
        .unwrap();
    db.open_call(&start(&org, 0, "CA-A1", "gw-a"))
        .await
        .unwrap();
    db.append_call_event(
        "CA-A1",
        &speech(0, EventKind::AgentSpeech, "Hello, this is Maya.", 20),
    )
    .await
    .unwrap();
    db.append_call_event("CA-A1", &speech(1, EventKind::CallerSpeech, "Go on.", 10))
        .await
        .unwrap();
    db.open_call(&start(&org, 1, "CA-A2", "gw-a"))
        .await
        .unwrap();
    db.open_call(&start(&org, 2, "CA-B1", "gw-b"))
        .await
        .unwrap();
    // gw-a's last heartbeat was 40 s ago; its first call's last event 10 s ago.
    age_heartbeat(&test, "gw-a", 40).await;

    let mut closed = db.close_orphaned_calls("gw-a", "gw-b").await.unwrap();
    closed.sort();
    assert_eq!(closed, ["CA-A1", "CA-A2"]);
    assert!(
        db.close_orphaned_calls("gw-a", "gw-b")
            .await
            .unwrap()
            .is_empty(),
        "closed once"
    );

    let row = db.call_log("CA-A1").await.unwrap().unwrap();
    assert_eq!(row.end_reason.as_deref(), Some("gateway_restart"));
    assert_eq!(row.call_status, "called");
    assert_eq!(
        row.transcript.as_deref(),
        Some("Agent: Hello, this is Maya.\nCaller: Go on.")
    );
    assert!(
        (49..=51).contains(&row.duration),
        "ended at its last sign of life (its last event, 10 s ago): {}",
        row.duration
    );
    let metadata = row.metadata.unwrap();
    assert_eq!(
        metadata["gateway_restart"],
        json!({"server": "gw-a", "closed_by": "gw-b"})
    );
    assert_eq!(metadata["stream_id"], "s-1", "the open's metadata is kept");
    let row = db.call_log("CA-A2").await.unwrap().unwrap();
    assert_eq!(row.end_reason.as_deref(), Some("gateway_restart"));
    assert!(
        (19..=21).contains(&row.duration),
        "no event: ended at the gateway's last heartbeat, 40 s ago: {}",
        row.duration
    );
    assert_eq!(
        db.call_log("CA-B1").await.unwrap().unwrap().ended_at,
        None,
        "another gateway's call is not touched"
    );
    assert_eq!(
        lead_status(&test, org.lead_ids[0]).await,
        ("contacted".to_owned(), "called".to_owned()),
        "the lead moves as in any close"
    );
    assert_eq!(
        total_calls(&test, &org).await,
        3,
        "counted once, at the open"
    );

    // The holder's own close, late, changes nothing: one end reason.
    let late = CallEnd {
        ended_at: Utc::now(),
        end_reason: EndReason::AgentEnded,
        outcome: CallOutcome::Called,
        duration_secs: None,
        summary: None,
        recording_url: None,
        metadata: json!({}),
        callback: None,
        lead_facts: Default::default(),
        analysis: None,
    };
    assert_eq!(
        db.close_call("CA-A1", &late).await.unwrap(),
        Applied::Already
    );
    assert_eq!(
        db.call_log("CA-A1").await.unwrap().unwrap().end_reason,
        Some("gateway_restart".to_owned())
    );
}

#[tokio::test]
async fn a_gateway_is_stale_after_three_of_its_own_heartbeats() {
    let test = TestDb::new().await;
    let db = &test.db;
    let org = seed_org(db.pool(), "Acme", 4).await;
    for (name, heartbeat, age) in [
        ("gw-quick", 1, 4),   // 3 × 1 s: stale
        ("gw-slow", 60, 100), // 3 × 60 s: alive
        ("gw-idle", 1, 60),   // stale, but nothing open
        ("gw-self", 1, 60),   // the one asking
    ] {
        db.register_server(
            name,
            "wss://x.test/plivo/stream",
            0,
            Duration::from_secs(heartbeat),
            100,
        )
        .await
        .unwrap();
        age_heartbeat(&test, name, age).await;
    }
    db.open_call(&start(&org, 0, "CA-Q", "gw-quick"))
        .await
        .unwrap();
    db.open_call(&start(&org, 1, "CA-S", "gw-slow"))
        .await
        .unwrap();
    db.open_call(&start(&org, 2, "CA-SELF", "gw-self"))
        .await
        .unwrap();
    assert_eq!(
        db.stale_servers_with_open_calls("gw-self", Duration::from_secs(10))
            .await
            .unwrap(),
        ["gw-quick"]
    );
}

/// The gateway binary against the test's database, with the fake provider.
fn spawn_binary(test: &TestDb, fake: &FakeRealtimeServer, name: &str, data_dir: &str) -> Child {
    spawn_binary_at(&test.url, fake, name, data_dir)
}

/// The gateway binary against the database at `url` (a test's, or a proxy in front of it).
pub(crate) fn spawn_binary_at(
    url: &str,
    fake: &FakeRealtimeServer,
    name: &str,
    data_dir: &str,
) -> Child {
    let secret = "s".repeat(48);
    let realtime = fake.url();
    gateway(
        &["serve"],
        &[
            ("DATABASE_URL", url),
            ("VG_DATA_DIR", data_dir),
            ("VG_LISTEN", "127.0.0.1:0"),
            ("VG_LOG_FORMAT", "json"),
            ("VG_SERVER_NAME", name),
            ("VG_PUBLIC_URL", "https://gateway.test"),
            ("VG_STREAM_SECRET", &secret),
            ("VG_HEARTBEAT_SECS", "1"),
            ("VG_AI_PROVIDER", "openai"),
            ("OPENAI_API_KEY", "sk-test"),
            ("OPENAI_REALTIME_URL", &realtime),
            ("PLIVO_AUTH_ID", "MATEST"),
            ("PLIVO_AUTH_TOKEN", AUTH_TOKEN),
            ("VG_DIALER_ENABLED", "false"),
            ("RUST_LOG", "info"),
        ],
    )
    .spawn()
    .expect("spawn serve")
}

/// Waits for `listening` and returns the address.
pub(crate) async fn listening(lines: &mut Lines<BufReader<ChildStderr>>) -> String {
    let listening = wait_for_log(lines, "listening").await;
    listening["address"]
        .as_str()
        .expect("the address is logged")
        .to_owned()
}

pub(crate) fn caller(address: &str, org: &Org, lead: usize, call_sid: &str) -> CallerConfig {
    CallerConfig {
        gateway: format!("http://{address}"),
        public_url: "https://gateway.test".to_owned(),
        auth_token: AUTH_TOKEN.to_owned(),
        call_sid: call_sid.to_owned(),
        answer_query: format!(
            "lead_id={}&campaign_id={}",
            org.lead_ids[lead], org.campaign_id
        ),
        from: "14155550100".to_owned(),
        to: format!("1415555{lead:04}"),
        keep_agent_audio: false,
    }
}

/// A call that stays up (the caller listens to the greeting, then stays silent) until the
/// gateway goes; returns once its greeting is on record.
pub(crate) async fn live_call(
    test: &TestDb,
    config: CallerConfig,
    silence: Duration,
) -> tokio::task::JoinHandle<()> {
    let call_sid = config.call_sid.clone();
    let task = tokio::spawn(async move {
        let script = [
            Step::WaitForAgentAudio,
            Step::WaitForAgentSilence(Duration::from_millis(300)),
            Step::Silence(silence),
            Step::HangUp,
        ];
        // The gateway may die under it: how the caller's side ends is not the point.
        let _ = plivo_caller::place_call(&config, &reqwest::Client::new(), &script).await;
    });
    wait_until("the greeting on record", DEADLINE, || async {
        let said: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM call_events e JOIN call_logs c ON c.id = e.call_log_id
             WHERE c.call_sid = $1 AND e.kind = 'agent_speech'",
        )
        .bind(&call_sid)
        .fetch_one(test.pool())
        .await
        .unwrap();
        said > 0
    })
    .await;
    task
}

pub(crate) async fn kill(mut child: Child) {
    child.start_kill().expect("SIGKILL");
    child.wait().await.expect("reaped");
}

pub(crate) async fn terminate(mut child: Child, lines: &mut Lines<BufReader<ChildStderr>>) {
    let pid = child.id().expect("running").to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    wait_for_log(lines, "stopped").await;
    child.wait().await.unwrap();
}

/// A test database with a campaign whose calls outlive the test's silences, and the fake.
pub(crate) async fn world() -> (TestDb, Org, FakeRealtimeServer, tempfile::TempDir) {
    let test = TestDb::new().await;
    let org = seed_org(test.pool(), "Acme Homes", 2).await;
    sqlx::query("UPDATE campaigns SET silence_timeout_seconds = 600 WHERE id = $1")
        .bind(org.campaign_id)
        .execute(test.pool())
        .await
        .unwrap();
    let fake = FakeRealtimeServer::start(FakeRealtimeConfig::default())
        .await
        .unwrap();
    (test, org, fake, tempfile::tempdir().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_gateway_closes_its_open_calls_before_it_serves_again() {
    let (test, org, fake, dir) = world().await;
    let data_dir = dir.path().to_str().unwrap();
    let mut child = spawn_binary(&test, &fake, "gw-a", data_dir);
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let address = listening(&mut lines).await;
    let call = live_call(
        &test,
        caller(&address, &org, 0, "CA-killed"),
        Duration::from_secs(600),
    )
    .await;

    kill(child).await;
    call.await.unwrap();
    let row = test.db.call_log("CA-killed").await.unwrap().unwrap();
    assert_eq!(row.ended_at, None, "a killed gateway writes nothing more");

    let mut child = spawn_binary(&test, &fake, "gw-a", data_dir);
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let closed = wait_for_log(
        &mut lines,
        "calls left open by this gateway's previous run closed as gateway_restart",
    )
    .await;
    assert_eq!(closed["calls"], 1, "{closed}");
    listening(&mut lines).await;
    let row = test.db.call_log("CA-killed").await.unwrap().unwrap();
    assert_eq!(row.end_reason.as_deref(), Some("gateway_restart"));
    assert!(row.ended_at.is_some());
    assert!(
        row.transcript
            .as_deref()
            .unwrap_or_default()
            .starts_with("Agent: Hello, this is Maya"),
        "{:?}",
        row.transcript
    );
    assert_eq!(
        row.metadata.unwrap()["gateway_restart"],
        json!({"server": "gw-a", "closed_by": "gw-a"})
    );
    assert_eq!(
        lead_status(&test, org.lead_ids[0]).await,
        ("contacted".to_owned(), "called".to_owned())
    );
    assert_eq!(total_calls(&test, &org).await, 1);
    terminate(child, &mut lines).await;
    fake.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_closes_the_calls_of_a_killed_gateway_once_its_heartbeat_is_stale() {
    let (test, org, fake, dir) = world().await;
    let mut child = spawn_binary(&test, &fake, "gw-a", dir.path().to_str().unwrap());
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let address = listening(&mut lines).await;
    let call = live_call(
        &test,
        caller(&address, &org, 0, "CA-orphan"),
        Duration::from_secs(600),
    )
    .await;
    // A third gateway, alive (a slow heartbeat, recently heard), holds a call too.
    test.db
        .register_server(
            "gw-c",
            "wss://c.test/plivo/stream",
            0,
            Duration::from_secs(60),
            100,
        )
        .await
        .unwrap();
    test.db
        .open_call(&start(&org, 1, "CA-alive", "gw-c"))
        .await
        .unwrap();

    kill(child).await;
    call.await.unwrap();
    let peer = TestApp::spawn(settings_for(
        &test.url,
        "gw-b",
        &[("VG_HEARTBEAT_SECS", "1")],
    ))
    .await;
    wait_until("gw-b closes gw-a's call", DEADLINE, || async {
        let row = test.db.call_log("CA-orphan").await.unwrap().unwrap();
        row.ended_at.is_some()
    })
    .await;
    let row = test.db.call_log("CA-orphan").await.unwrap().unwrap();
    assert_eq!(row.end_reason.as_deref(), Some("gateway_restart"));
    assert_eq!(
        row.metadata.unwrap()["gateway_restart"],
        json!({"server": "gw-a", "closed_by": "gw-b"})
    );
    assert!(
        row.transcript
            .unwrap_or_default()
            .starts_with("Agent: Hello, this is Maya")
    );
    assert_eq!(
        test.db
            .call_log("CA-alive")
            .await
            .unwrap()
            .unwrap()
            .ended_at,
        None,
        "a gateway whose heartbeat is fresh keeps its calls"
    );
    peer.shutdown().await;
    fake.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_gateway_keeps_its_heartbeat_so_nobody_takes_its_calls() {
    let (test, org, fake, _dir) = world().await;
    let realtime = fake.url();
    let provider = [
        ("VG_AI_PROVIDER", "openai"),
        ("OPENAI_API_KEY", "sk-test"),
        ("OPENAI_REALTIME_URL", realtime.as_str()),
        ("PLIVO_AUTH_ID", "MATEST"),
        ("PLIVO_AUTH_TOKEN", AUTH_TOKEN),
        ("VG_HEARTBEAT_SECS", "1"),
        ("VG_SHUTDOWN_GRACE_SECS", "120"),
    ];
    let draining = TestApp::spawn(settings_for(&test.url, "gw-draining", &provider)).await;
    let peer = TestApp::spawn(settings_for(&test.url, "gw-peer", &provider)).await;
    let address = draining.address.to_string();
    // The caller stays on for many heartbeats of the drain, then hangs up.
    let call = live_call(
        &test,
        caller(&address, &org, 0, "CA-drained"),
        Duration::from_secs(8),
    )
    .await;
    let drain = tokio::spawn(draining.shutdown());
    call.await.unwrap();
    drain.await.unwrap();

    let row = test.db.call_log("CA-drained").await.unwrap().unwrap();
    assert_eq!(
        row.end_reason.as_deref(),
        Some("caller_hangup"),
        "the draining gateway closed its own call"
    );
    let server = test.db.stream_server("gw-draining").await.unwrap().unwrap();
    assert!(!server.is_active, "out of rotation after the drain");
    peer.shutdown().await;
    fake.stop().await;
}

#[tokio::test]
async fn a_resumed_call_belongs_to_the_gateway_that_resumed_it() {
    let test = TestDb::new().await;
    let db = &test.db;
    let org = seed_org(db.pool(), "Acme", 1).await;
    db.open_call(&start(&org, 0, "CA-R", "gw-a")).await.unwrap();
    // Closed for a transfer nobody took; the caller comes back to the AI on gw-b.
    let transferred = CallEnd {
        ended_at: Utc::now(),
        end_reason: EndReason::Transferred,
        outcome: CallOutcome::Called,
        duration_secs: None,
        summary: None,
        recording_url: None,
        metadata: json!({}),
        callback: None,
        lead_facts: Default::default(),
        analysis: None,
    };
    db.close_call("CA-R", &transferred).await.unwrap();
    db.resume_call("CA-R", "gw-b").await.unwrap();

    assert!(
        db.close_orphaned_calls("gw-a", "gw-c")
            .await
            .unwrap()
            .is_empty(),
        "gw-a no longer holds it"
    );
    assert_eq!(db.call_log("CA-R").await.unwrap().unwrap().ended_at, None);
    assert_eq!(
        db.close_orphaned_calls("gw-b", "gw-c").await.unwrap(),
        ["CA-R"]
    );
}
