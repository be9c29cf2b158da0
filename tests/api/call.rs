//! A call end to end through real sockets: the synthetic Plivo caller, the gateway, the fake
//! OpenAI Realtime server, and PostgreSQL.

use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;
use voice_gateway::simulators::{
    openai_realtime::{FakeMode, FakeRealtimeConfig, FakeRealtimeServer, FakeTurn},
    plivo_caller::{self, CallReport, CallerConfig, Step},
};

use crate::helpers::{Org, TestApp, TestDb, seed_org, settings_for};

pub const AUTH_TOKEN: &str = "plivo-test-token";
const PUBLIC_URL: &str = "https://gateway.test";

pub struct Fixture {
    pub test: TestDb,
    pub org: Org,
    pub fake: FakeRealtimeServer,
    pub app: TestApp,
    pub http: reqwest::Client,
}

impl Fixture {
    pub async fn start(fake: FakeRealtimeConfig, leads: usize, extra: &[(&str, &str)]) -> Self {
        let test = TestDb::new().await;
        let org = seed_org(test.pool(), "Acme Homes", leads).await;
        let fake = FakeRealtimeServer::start(fake).await.unwrap();
        let url = fake.url();
        let mut settings = vec![
            ("VG_AI_PROVIDER", "openai"),
            ("OPENAI_API_KEY", "sk-test"),
            ("OPENAI_REALTIME_URL", url.as_str()),
            ("PLIVO_AUTH_ID", "MATEST"),
            ("PLIVO_AUTH_TOKEN", AUTH_TOKEN),
            ("VG_GREETING_GUARD_MS", "300"),
        ];
        settings.extend_from_slice(extra);
        let name = format!("gw-{}", Uuid::new_v4().simple());
        let app = TestApp::spawn(settings_for(&test.url, &name, &settings)).await;
        Self {
            test,
            org,
            fake,
            app,
            http: reqwest::Client::new(),
        }
    }

    pub fn caller(&self, lead: usize, call_sid: &str) -> CallerConfig {
        CallerConfig {
            gateway: format!("http://{}", self.app.address),
            public_url: PUBLIC_URL.to_owned(),
            auth_token: AUTH_TOKEN.to_owned(),
            call_sid: call_sid.to_owned(),
            answer_query: format!(
                "lead_id={}&campaign_id={}",
                self.org.lead_ids[lead], self.org.campaign_id
            ),
            from: "14155550100".to_owned(),
            to: format!("1415555{lead:04}"),
            keep_agent_audio: false,
        }
    }

    pub async fn call(&self, lead: usize, call_sid: &str, script: &[Step]) -> CallReport {
        let report = tokio::time::timeout(
            Duration::from_secs(60),
            plivo_caller::place_call(&self.caller(lead, call_sid), &self.http, script),
        )
        .await
        .expect("the call finished in time")
        .expect("the call ran");
        assert_eq!(report.answer_status, 200, "{}", report.answer_xml);
        report
    }

    /// Stops the gateway; its drain waits for every call to write its rows.
    pub async fn finish(self) -> (TestDb, Org, FakeRealtimeServer) {
        self.app.shutdown().await;
        (self.test, self.org, self.fake)
    }
}

pub fn turn(caller: &str, agent: &str, tool: Option<(&str, Value)>) -> FakeTurn {
    FakeTurn {
        caller_says: caller.to_owned(),
        agent_says: agent.to_owned(),
        tool: tool.map(|(name, args)| (name.to_owned(), args)),
    }
}

pub(crate) async fn call_row(
    test: &TestDb,
    call_sid: &str,
) -> voice_gateway::db::calls::CallLogRow {
    test.db
        .call_log(call_sid)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no call_logs row for {call_sid}"))
}

pub fn conversation(turns: Vec<FakeTurn>) -> FakeRealtimeConfig {
    FakeRealtimeConfig {
        turns,
        ..FakeRealtimeConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_call_from_answer_to_call_log() {
    let fixture = Fixture::start(
        conversation(vec![
            turn(
                "I would like to hear more",
                "Great, it is a two bedroom flat by the lake.",
                Some((
                    "record_outcome",
                    json!({"interest_level": "high", "notes": "wants details"}),
                )),
            ),
            turn(
                "No thanks, that is all, goodbye",
                "Thank you, goodbye.",
                Some(("end_call", json!({"reason": "caller is done"}))),
            ),
        ]),
        1,
        &[],
    )
    .await;
    let script = [
        Step::WaitForAgentAudio,
        Step::WaitForAgentSilence(Duration::from_millis(300)),
        Step::Speak(Duration::from_millis(500)),
        Step::WaitForAgentAudio,
        Step::WaitForAgentSilence(Duration::from_millis(400)),
        Step::Speak(Duration::from_millis(500)),
        Step::WaitForClose,
    ];
    let report = fixture.call(0, "CA-whole", &script).await;

    // The answer pointed at this gateway's stream, with a token, then the after-stream redirect.
    assert!(
        report
            .stream_url
            .as_deref()
            .unwrap()
            .starts_with("wss://gateway.test/plivo/stream?token=")
    );
    assert!(
        report.closed_by_gateway,
        "the gateway hung up after end_call"
    );

    // The provider got a GA session.update with μ-law both ways.
    let updates = fixture.fake.events_of("session.update");
    assert_eq!(updates.len(), 1);
    let session = &updates[0]["session"];
    assert_eq!(session["type"], "realtime");
    assert_eq!(session["audio"]["input"]["format"]["type"], "audio/pcmu");
    assert_eq!(session["audio"]["output"]["format"]["type"], "audio/pcmu");
    assert_eq!(
        session["audio"]["input"]["turn_detection"]["type"],
        "server_vad"
    );
    assert_eq!(
        session["audio"]["input"]["turn_detection"]["interrupt_response"],
        false
    );
    assert!(
        session["instructions"]
            .as_str()
            .unwrap()
            .contains("Lead 0 of Acme Homes")
    );
    assert_eq!(session["tools"].as_array().unwrap().len(), 5);
    assert!(
        fixture.fake.log(|log| log.appended_frames) > 50,
        "caller audio reached the provider"
    );
    // The tool round trip: output, then response.create.
    let outputs = fixture.fake.events_of("conversation.item.create");
    assert_eq!(
        outputs.len(),
        1,
        "one tool output (record_outcome); end_call needs none"
    );
    assert_eq!(outputs[0]["item"]["type"], "function_call_output");

    // The greeting reached the caller as 160-byte μ-law frames at real-time pace.
    assert!(
        report.frames.iter().all(|(_, size)| *size == 160),
        "exact 20 ms frames"
    );
    assert_eq!(report.content_types, [("audio/x-mulaw".to_owned(), 8000)]);
    let greeting_frames: Vec<Duration> = report.frames.iter().take(60).map(|(at, _)| *at).collect();
    let span = *greeting_frames.last().unwrap() - greeting_frames[0];
    assert!(
        span >= Duration::from_millis(800),
        "1.2 s of greeting sent over {span:?}: paced, not burst"
    );
    assert!(
        span <= Duration::from_millis(1300),
        "and not slower than real time: {span:?}"
    );
    assert_eq!(report.playback_gaps, 0);

    let (test, org, _fake) = fixture.finish().await;
    let row = call_row(&test, "CA-whole").await;
    assert_eq!(row.end_reason.as_deref(), Some("agent_ended"));
    assert_eq!(row.call_status, "called");
    let transcript = row.transcript.unwrap();
    for line in [
        "Agent: Hello, this is Maya from Acme Homes.",
        "Caller: I would like to hear more",
        "Agent: Great, it is a two bedroom flat by the lake.",
        "Caller: No thanks, that is all, goodbye",
        "Agent: Thank you, goodbye.",
    ] {
        assert!(
            transcript.contains(line),
            "missing {line:?} in\n{transcript}"
        );
    }
    assert_eq!(
        row.conversation_summary.as_deref(),
        Some("The caller talked with the agent about the offer; the call ended normally."),
        "the provider's text summary"
    );
    let metadata = row.metadata.unwrap();
    assert_eq!(metadata["interest_level"], "high");
    assert!(metadata["latency"]["first_audio_ms"].as_u64().is_some());
    assert!(
        !metadata["provider_usage"].as_array().unwrap().is_empty(),
        "response.done usage is kept"
    );
    let (status, call_status, total_calls): (String, String, i32) = sqlx::query_as(
        "SELECT l.status, l.call_status, c.total_calls FROM leads l JOIN campaigns c ON c.id = $2 WHERE l.id = $1",
    )
    .bind(org.lead_ids[0])
    .bind(org.campaign_id)
    .fetch_one(test.pool())
    .await
    .unwrap();
    assert_eq!(
        (status.as_str(), call_status.as_str(), total_calls),
        ("qualified", "called", 1),
        "the agent recorded high interest"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_caller_is_released_when_the_goodbye_has_played_and_the_summary_follows() {
    // A model takes seconds to write text: the summary must not hold the line.
    let mut fake = conversation(vec![turn(
        "No thanks, that is all, goodbye",
        "Thank you for your time, goodbye.",
        Some(("end_call", json!({"reason": "caller is done"}))),
    )]);
    fake.text_time = Duration::from_millis(1500);
    let fixture = Fixture::start(fake, 1, &[]).await;
    let script = [
        Step::WaitForAgentAudio,
        Step::WaitForAgentSilence(Duration::from_millis(300)),
        Step::Speak(Duration::from_millis(500)),
        Step::WaitForClose,
    ];
    let report = fixture.call(0, "CA-release", &script).await;
    let closed_at = report.closed_at.expect("the gateway closed the stream");
    // The goodbye is the last checkpoint the caller confirmed.
    let (played_at, name) = report
        .played
        .last()
        .expect("a playedStream was sent")
        .clone();
    assert_eq!(
        report.checkpoints.last(),
        Some(&name),
        "the goodbye's checkpoint: {:?}",
        report.checkpoints
    );
    let release = closed_at.saturating_sub(played_at);
    eprintln!("released {release:?} after the goodbye's playedStream");
    assert!(
        closed_at >= played_at && release <= Duration::from_millis(300),
        "closed {release:?} after the goodbye's playedStream (played at {played_at:?}, closed at {closed_at:?})"
    );
    // Asked for after the socket closed: the drain waits for them.
    let (test, _, fake) = fixture.finish().await;
    let purposes: Vec<Value> = fake
        .events_of("response.create")
        .iter()
        .filter(|event| event["response"]["output_modalities"] == json!(["text"]))
        .map(|event| event["response"]["metadata"]["purpose"].clone())
        .collect();
    assert_eq!(
        purposes,
        [json!("summary"), json!("analysis")],
        "the summary and the analysis were asked for, together"
    );
    let row = call_row(&test, "CA-release").await;
    assert_eq!(row.end_reason.as_deref(), Some("agent_ended"));
    assert_eq!(
        row.conversation_summary.as_deref(),
        Some("The caller talked with the agent about the offer; the call ended normally."),
        "the provider's summary, written after the caller was released"
    );
    let analysis = &row.metadata.unwrap()["analysis"];
    assert_eq!(analysis["source"], "model", "{analysis}");
    assert_eq!(analysis["version"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_analysis_that_is_not_json_falls_back_and_the_lead_still_moves_on() {
    let mut fake = conversation(vec![turn(
        "No, I am not interested, it is too expensive",
        "I understand, goodbye.",
        Some(("end_call", json!({"reason": "not interested"}))),
    )]);
    fake.analysis = "Sure! The caller seemed unhappy.".to_owned();
    fake.text_time = Duration::from_millis(200);
    let fixture = Fixture::start(fake, 1, &[]).await;
    let script = [
        Step::WaitForAgentAudio,
        Step::WaitForAgentSilence(Duration::from_millis(300)),
        Step::Speak(Duration::from_millis(500)),
        Step::WaitForClose,
    ];
    fixture.call(0, "CA-bad-analysis", &script).await;
    let (test, org, _) = fixture.finish().await;
    let row = call_row(&test, "CA-bad-analysis").await;
    assert_eq!(
        row.end_reason.as_deref(),
        Some("agent_ended"),
        "the close was written"
    );
    let analysis = row.metadata.unwrap()["analysis"].clone();
    assert_eq!(analysis["source"], "deterministic", "{analysis}");
    assert_eq!(analysis["interest"], "none");
    assert_eq!(
        analysis["objections"],
        json!(["not interested", "too expensive"])
    );
    assert!(analysis["sentiment"].as_f64().unwrap() < 0.0, "{analysis}");
    let (status, metadata): (String, Value) =
        sqlx::query_as("SELECT status, metadata FROM leads WHERE id = $1")
            .bind(org.lead_ids[0])
            .fetch_one(test.pool())
            .await
            .unwrap();
    assert_eq!(status, "lost", "not interested");
    assert_eq!(metadata["latest_analysis"], analysis);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_who_opts_out_is_suppressed_before_the_call_ends_in_every_campaign() {
    let fixture = Fixture::start(
        conversation(vec![turn(
            "Please don't call me again",
            "I understand, you will not be called again.",
            Some(("opt_out", json!({"reason": "please don't call me again"}))),
        )]),
        1,
        &[],
    )
    .await;
    let pool = fixture.test.pool().clone();
    // The same lead waits for a retry in another campaign of the organization.
    let other: Uuid = sqlx::query_scalar(
        "INSERT INTO campaigns (organization_id, name, status) VALUES ($1, 'Autumn', 'running') RETURNING id",
    )
    .bind(fixture.org.id)
    .fetch_one(&pool)
    .await
    .unwrap();
    let retry: Uuid = sqlx::query_scalar(
        "INSERT INTO dial_attempts (organization_id, campaign_id, lead_id, attempt_number, due_at)
         VALUES ($1, $2, $3, 2, now() + interval '1 day') RETURNING id",
    )
    .bind(fixture.org.id)
    .bind(other)
    .bind(fixture.org.lead_ids[0])
    .fetch_one(&pool)
    .await
    .unwrap();
    let script = [
        Step::WaitForAgentAudio,
        Step::WaitForAgentSilence(Duration::from_millis(300)),
        Step::Speak(Duration::from_millis(500)),
        Step::WaitForAgentAudio,
        Step::WaitForAgentSilence(Duration::from_millis(400)),
        Step::HangUp,
    ];
    fixture.call(0, "CA-opt-out", &script).await;
    let outputs: Vec<Value> = fixture
        .fake
        .events_of("conversation.item.create")
        .into_iter()
        .map(|event| serde_json::from_str(event["item"]["output"].as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(outputs, [json!({"ok": true, "suppressed": true})]);
    let (test, org, _) = fixture.finish().await;
    let row = call_row(&test, "CA-opt-out").await;
    let (source, call_sid, listed_at): (String, Option<String>, chrono::DateTime<chrono::Utc>) =
        sqlx::query_as(
            "SELECT source, call_sid, created_at FROM do_not_call
             WHERE organization_id = $1 AND phone_number = '+14155550000'",
        )
        .bind(org.id)
        .fetch_one(test.pool())
        .await
        .unwrap();
    assert_eq!(source, "caller_request");
    assert_eq!(call_sid.as_deref(), Some("CA-opt-out"));
    assert!(
        listed_at < row.ended_at.unwrap(),
        "suppressed before the call ended"
    );
    let (status, error): (String, Option<String>) =
        sqlx::query_as("SELECT status, error FROM dial_attempts WHERE id = $1")
            .bind(retry)
            .fetch_one(test.pool())
            .await
            .unwrap();
    assert_eq!(
        (status.as_str(), error.as_deref()),
        ("canceled", Some("do_not_call"))
    );
    let audit: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT action, actor, actor_call_sid FROM do_not_call_audit WHERE organization_id = $1",
    )
    .bind(org.id)
    .fetch_all(test.pool())
    .await
    .unwrap();
    assert_eq!(
        audit,
        [(
            "add".to_owned(),
            "call".to_owned(),
            Some("CA-opt-out".to_owned())
        )]
    );
    let metadata = row.metadata.unwrap();
    assert_eq!(metadata["opted_out"], true);
    assert_eq!(metadata["analysis"]["next_step"], "do_not_call");
    let status: String = sqlx::query_scalar("SELECT status FROM leads WHERE id = $1")
        .bind(org.lead_ids[0])
        .fetch_one(test.pool())
        .await
        .unwrap();
    assert_eq!(status, "lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn barge_in_clears_at_once_and_truncates_to_what_was_sent() {
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
        Step::Silence(Duration::from_millis(500)),
        Step::HangUp,
    ];
    let report = fixture.call(0, "CA-barge", &script).await;
    assert_eq!(report.clears.len(), 1, "one barge-in, one clearAudio");
    let barge_start = report.speech_starts[1];
    let clear_at = report.clears[0];
    assert!(clear_at >= barge_start);
    assert!(
        clear_at - barge_start <= Duration::from_millis(30),
        "clearAudio {:?} after speech start",
        clear_at - barge_start
    );

    fixture
        .fake
        .wait_for(|log| {
            log.events
                .iter()
                .any(|(_, e)| e["type"] == "conversation.item.truncate")
        })
        .await;
    let truncate = fixture
        .fake
        .events_of("conversation.item.truncate")
        .remove(0);
    let audio_end_ms = truncate["audio_end_ms"].as_u64().unwrap();
    let reply_frames_before_clear = report
        .frames
        .iter()
        .filter(|(at, _)| *at > report.speech_ends[0] && *at <= clear_at)
        .count() as u64;
    assert!(
        audio_end_ms <= reply_frames_before_clear * 20,
        "truncated at {audio_end_ms} ms, {reply_frames_before_clear} frames sent"
    );
    assert!(
        audio_end_ms >= 900,
        "about 1.2 s was heard, truncated at {audio_end_ms} ms"
    );
    assert_eq!(
        fixture.fake.events_of("response.cancel").len(),
        1,
        "the running response was cancelled"
    );
    assert!(
        fixture.fake.log(|log| log.errors_sent.is_empty()),
        "the provider accepted every truncate and cancel"
    );
    // Nothing of the cancelled reply was played after the clear.
    let after_clear = report
        .frames
        .iter()
        .filter(|(at, _)| *at > clear_at)
        .count();
    assert_eq!(
        after_clear, 0,
        "late audio of the cancelled response is dropped"
    );

    let (test, _, _) = fixture.finish().await;
    let row = call_row(&test, "CA-barge").await;
    assert_eq!(row.end_reason.as_deref(), Some("caller_hangup"));
    let barge_ins: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM call_events WHERE call_log_id = $1 AND kind = 'barge_in'",
    )
    .bind(row.id)
    .fetch_one(test.pool())
    .await
    .unwrap();
    assert_eq!(barge_ins, 1);
    assert!(
        row.transcript.unwrap().contains("Agent: Let me tell you"),
        "the heard part of the reply is kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_drops_gets_the_caller_an_apology_and_a_clean_end() {
    let config = FakeRealtimeConfig {
        mode: FakeMode::DropAfterGreeting,
        ..FakeRealtimeConfig::default()
    };
    let fixture = Fixture::start(config, 1, &[]).await;
    let report = fixture
        .call(0, "CA-drop", &[Step::WaitForAgentAudio, Step::WaitForClose])
        .await;
    assert!(report.closed_by_gateway);
    // The apology (5.9 s) follows whatever of the greeting arrived.
    assert!(
        report.frames.len() >= 290,
        "the apology played: {} frames",
        report.frames.len()
    );
    let health = fixture
        .http
        .get(fixture.app.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let (test, _, _) = fixture.finish().await;
    let row = call_row(&test, "CA-drop").await;
    assert_eq!(row.end_reason.as_deref(), Some("provider_error"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_never_answers_ends_the_call_with_provider_error() {
    let config = FakeRealtimeConfig {
        mode: FakeMode::NeverReady,
        ..FakeRealtimeConfig::default()
    };
    let fixture = Fixture::start(config, 1, &[("VG_PROVIDER_TIMEOUT_SECS", "1")]).await;
    let report = fixture.call(0, "CA-stall", &[Step::WaitForClose]).await;
    assert!(report.closed_by_gateway);
    assert!(report.frames.len() >= 290, "the apology played");
    let (test, _, _) = fixture.finish().await;
    assert_eq!(
        call_row(&test, "CA-stall").await.end_reason.as_deref(),
        Some("provider_error")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_are_skipped_and_counted_without_ending_the_call() {
    let fixture = Fixture::start(FakeRealtimeConfig::default(), 1, &[]).await;
    // Far more audio than a frame, yet under the socket's 64 KiB limit (see `limits`).
    let huge = format!(
        r#"{{"event":"media","media":{{"payload":"{}"}}}}"#,
        "A".repeat(32 * 1024)
    );
    let script = [
        Step::WaitForAgentAudio,
        Step::SendRaw("{this is not json".to_owned()),
        Step::SendRaw(r#"{"event":"media","media":{"payload":"***not base64***"}}"#.to_owned()),
        Step::SendRaw(huge),
        Step::SendRaw(r#"{"event":"muteStream","streamId":"x"}"#.to_owned()),
        Step::SendRaw(r#"{"sequenceNumber":3}"#.to_owned()),
        Step::Silence(Duration::from_millis(200)),
        Step::HangUp,
    ];
    let report = fixture.call(0, "CA-junk", &script).await;
    assert!(
        !report.closed_by_gateway,
        "the caller hung up; the gateway kept the call"
    );
    let health = fixture
        .http
        .get(fixture.app.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let (test, _, _) = fixture.finish().await;
    let row = call_row(&test, "CA-junk").await;
    assert_eq!(row.end_reason.as_deref(), Some("caller_hangup"));
    let frames = &row.metadata.unwrap()["frames"];
    assert_eq!(frames["rejected"], 4, "{frames}");
    assert_eq!(frames["unknown_events"], 1, "{frames}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_calls_at_once_keep_their_own_transcripts_and_counters() {
    let fixture = Fixture::start(
        conversation(vec![turn(
            "Yes please",
            "Wonderful.",
            Some(("end_call", json!({"reason": "done"}))),
        )]),
        10,
        &[],
    )
    .await;
    let script = [
        Step::WaitForAgentAudio,
        Step::WaitForAgentSilence(Duration::from_millis(300)),
        Step::Speak(Duration::from_millis(400)),
        Step::WaitForClose,
    ];
    let calls = (0..10).map(|lead| {
        let fixture = &fixture;
        let script = &script;
        async move { fixture.call(lead, &format!("CA-many-{lead}"), script).await }
    });
    let reports = futures_util::future::join_all(calls).await;
    assert!(reports.iter().all(|report| report.closed_by_gateway));
    let (test, org, _) = fixture.finish().await;
    for lead in 0..10 {
        let row = call_row(&test, &format!("CA-many-{lead}")).await;
        assert_eq!(row.lead_id, org.lead_ids[lead]);
        assert_eq!(row.end_reason.as_deref(), Some("agent_ended"));
        let transcript = row.transcript.unwrap();
        assert_eq!(
            transcript.matches("Caller: Yes please").count(),
            1,
            "{transcript}"
        );
        assert_eq!(
            transcript.matches("Agent: Wonderful.").count(),
            1,
            "{transcript}"
        );
    }
    let total: i32 = sqlx::query_scalar("SELECT total_calls FROM campaigns WHERE id = $1")
        .bind(org.campaign_id)
        .fetch_one(test.pool())
        .await
        .unwrap();
    assert_eq!(total, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_l16_carrier_is_resampled_to_pcm_24k_and_back() {
    let fixture = Fixture::start(
        conversation(vec![turn(
            "Hello there",
            "Hi, how can I help?",
            Some(("end_call", json!({"reason": "done"}))),
        )]),
        1,
        &[],
    )
    .await;
    let config = fixture.caller(0, "CA-l16");
    let (status, xml, _) = plivo_caller::answer(&config, &fixture.http).await.unwrap();
    assert_eq!(status, 200);
    let stream_url = plivo_caller::stream_url_of(&xml).unwrap();
    let script = [
        Step::WaitForAgentAudio,
        Step::WaitForAgentSilence(Duration::from_millis(300)),
        Step::Speak(Duration::from_millis(500)),
        Step::WaitForClose,
    ];
    let format = voice_gateway::audio::AudioFormat::L16_16K;
    let report =
        plivo_caller::run_stream(&config, &stream_url, &script, format, CallReport::default())
            .await
            .unwrap();
    assert!(report.closed_by_gateway);
    assert_eq!(
        report.content_types,
        [("audio/x-l16".to_owned(), 16000)],
        "agent audio comes back in the carrier's format"
    );
    assert!(
        report.frames.iter().all(|(_, size)| *size == 640),
        "20 ms of L16 at 16 kHz per frame"
    );
    let update = fixture.fake.events_of("session.update").remove(0);
    assert_eq!(
        update["session"]["audio"]["input"]["format"],
        json!({"type": "audio/pcm", "rate": 24000})
    );
    assert_eq!(
        update["session"]["audio"]["output"]["format"],
        json!({"type": "audio/pcm", "rate": 24000})
    );
    let (test, _, _) = fixture.finish().await;
    let row = call_row(&test, "CA-l16").await;
    assert_eq!(row.end_reason.as_deref(), Some("agent_ended"));
    assert!(
        row.transcript.unwrap().contains("Caller: Hello there"),
        "the caller's resampled speech was heard by the provider's VAD"
    );
}

/// A Plivo media socket that sends `start` and then never reads again: a small receive buffer,
/// so the kernel stops taking the gateway's audio after a few kilobytes.
async fn stalled_carrier(
    fixture: &Fixture,
    stream_url: &str,
    call_sid: &str,
) -> tokio_tungstenite::WebSocketStream<tokio::net::TcpStream> {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest, http::HeaderValue};
    use voice_gateway::plivo::signature::{self, Method};

    let nonce = "stalled0nonce";
    let signature =
        signature::v3_signature(AUTH_TOKEN.as_bytes(), Method::Get, stream_url, &[], nonce);
    let path = &stream_url[stream_url.find("/plivo/stream").unwrap()..];
    let mut request = format!("ws://{}{path}", fixture.app.address)
        .into_client_request()
        .unwrap();
    let headers = request.headers_mut();
    headers.insert(
        "X-Plivo-Signature-V3",
        HeaderValue::from_str(&signature).unwrap(),
    );
    headers.insert(
        "X-Plivo-Signature-V3-Nonce",
        HeaderValue::from_static(nonce),
    );
    let tcp = tokio::net::TcpSocket::new_v4().unwrap();
    // Set before connecting, so the advertised window stays this small.
    tcp.set_recv_buffer_size(4096).unwrap();
    let tcp = tcp.connect(fixture.app.address).await.unwrap();
    let (mut socket, _) = tokio_tungstenite::client_async(request, tcp).await.unwrap();
    let mut start = String::new();
    voice_gateway::plivo::stream::write_start(
        &mut start,
        1,
        call_sid,
        "stream-stalled",
        voice_gateway::audio::AudioFormat::MULAW_8K,
    );
    socket.send(Message::text(start)).await.unwrap();
    socket
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plivo_socket_that_stops_reading_ends_the_call_and_keeps_its_row() {
    // The agent would talk for two minutes; the drain would wait as long for the call.
    let fake = FakeRealtimeConfig {
        greeting_ms: 120_000,
        ..FakeRealtimeConfig::default()
    };
    let fixture = Fixture::start(fake, 1, &[("VG_SHUTDOWN_GRACE_SECS", "60")]).await;
    let config = fixture.caller(0, "CA-stalled");
    let (status, xml, _) = plivo_caller::answer(&config, &fixture.http).await.unwrap();
    assert_eq!(status, 200);
    let stream_url = plivo_caller::stream_url_of(&xml).unwrap();
    // Held, never read, until the end of the test.
    let carrier = stalled_carrier(&fixture, &stream_url, "CA-stalled").await;
    crate::campaign_api::wait_until("the call opened", Duration::from_secs(60), || async {
        fixture
            .test
            .db
            .call_log("CA-stalled")
            .await
            .unwrap()
            .is_some()
    })
    .await;

    // SIGTERM's drain: the call is not held up by the dead socket, and it ends by itself.
    let drain_started = std::time::Instant::now();
    let (test, _org, _fake) = fixture.finish().await;
    let drained_in = drain_started.elapsed();
    assert!(
        drained_in < Duration::from_secs(45),
        "the stalled call ended on its own (socket buffers, then the 5 s write timeout), well inside the 60 s grace: {drained_in:?}"
    );
    let row = call_row(&test, "CA-stalled").await;
    assert!(row.ended_at.is_some(), "the close is written");
    assert_eq!(
        row.end_reason.as_deref(),
        Some("caller_hangup"),
        "nobody hears the call any more"
    );
    let metadata = row.metadata.unwrap();
    assert_eq!(metadata["carrier_stalled"], true, "{metadata}");
    assert!(
        metadata["frames"]["out"].as_u64().unwrap() > 0,
        "audio went out before the stall: {metadata}"
    );
    drop(carrier);
}
