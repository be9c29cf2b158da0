//! Calls on Gemini Live end to end: the synthetic Plivo caller, the gateway pointed at the fake
//! Gemini Live server through `GEMINI_LIVE_URL`, and PostgreSQL.

use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;
use voice_gateway::simulators::{
    gemini_live::{FakeGeminiConfig, FakeGeminiMode, FakeGeminiServer, SUMMARY},
    openai_realtime::FakeTurn,
    plivo_caller::{self, CallReport, CallerConfig, Step},
};

use crate::{
    call::{AUTH_TOKEN, call_row, turn},
    helpers::{Org, TestApp, TestDb, seed_org, settings_for},
};

const PUBLIC_URL: &str = "https://gateway.test";

struct Fixture {
    test: TestDb,
    org: Org,
    fake: FakeGeminiServer,
    app: TestApp,
    http: reqwest::Client,
}

impl Fixture {
    async fn start(fake: FakeGeminiConfig, extra: &[(&str, &str)]) -> Self {
        let test = TestDb::new().await;
        let org = seed_org(test.pool(), "Acme Homes", 1).await;
        let fake = FakeGeminiServer::start(fake).await.unwrap();
        let url = fake.url();
        let mut settings = Vec::new();
        if !extra.iter().any(|(key, _)| *key == "VG_AI_PROVIDER") {
            settings.push(("VG_AI_PROVIDER", "gemini"));
        }
        settings.extend([
            ("GEMINI_API_KEY", "g-test-key"),
            ("GEMINI_LIVE_URL", url.as_str()),
            ("PLIVO_AUTH_ID", "MATEST"),
            ("PLIVO_AUTH_TOKEN", AUTH_TOKEN),
            ("VG_GREETING_GUARD_MS", "300"),
        ]);
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

    fn caller(&self, call_sid: &str) -> CallerConfig {
        CallerConfig {
            gateway: format!("http://{}", self.app.address),
            public_url: PUBLIC_URL.to_owned(),
            auth_token: AUTH_TOKEN.to_owned(),
            call_sid: call_sid.to_owned(),
            answer_query: format!(
                "lead_id={}&campaign_id={}",
                self.org.lead_ids[0], self.org.campaign_id
            ),
            from: "14155550100".to_owned(),
            to: "14155550000".to_owned(),
            keep_agent_audio: false,
        }
    }

    async fn call(&self, call_sid: &str, script: &[Step]) -> CallReport {
        let report = tokio::time::timeout(
            Duration::from_secs(60),
            plivo_caller::place_call(&self.caller(call_sid), &self.http, script),
        )
        .await
        .expect("the call finished in time")
        .expect("the call ran");
        assert_eq!(report.answer_status, 200, "{}", report.answer_xml);
        report
    }

    async fn finish(self) -> (TestDb, Org, FakeGeminiServer) {
        self.app.shutdown().await;
        (self.test, self.org, self.fake)
    }
}

fn conversation(turns: Vec<FakeTurn>) -> FakeGeminiConfig {
    FakeGeminiConfig {
        turns,
        ..FakeGeminiConfig::default()
    }
}

/// Greeting, then one caller turn per `turns`, then the gateway closes.
fn script(turns: usize) -> Vec<Step> {
    let mut script = vec![Step::WaitForAgentAudio];
    for _ in 0..turns {
        script.extend([
            Step::WaitForAgentSilence(Duration::from_millis(300)),
            Step::Speak(Duration::from_millis(500)),
            Step::WaitForAgentAudio,
        ]);
    }
    script.push(Step::WaitForClose);
    script
}

/// The `functionResponses` the gateway sent, with the connection each went on.
fn tool_responses(fake: &FakeGeminiServer) -> Vec<(usize, Value)> {
    fake.log(|log| {
        log.of("toolResponse")
            .into_iter()
            .map(|(connection, message)| {
                (
                    connection,
                    message["toolResponse"]["functionResponses"][0].clone(),
                )
            })
            .collect()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_call_on_gemini_from_answer_to_call_log() {
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
        &[],
    )
    .await;
    let report = fixture.call("CA-g-whole", &script(2)).await;
    assert!(
        report.closed_by_gateway,
        "the gateway hung up after end_call"
    );
    assert!(report.frames.iter().all(|(_, size)| *size == 160));
    assert_eq!(report.content_types, [("audio/x-mulaw".to_owned(), 8000)]);
    assert_eq!(report.playback_gaps, 0);

    // The set-up, as documented.
    let setups = fixture.fake.messages_of("setup");
    assert_eq!(setups.len(), 1);
    let setup = &setups[0]["setup"];
    assert_eq!(setup["model"], "models/gemini-3.8-live");
    assert_eq!(
        setup["generationConfig"]["responseModalities"],
        json!(["AUDIO"])
    );
    assert!(
        setup["systemInstruction"]["parts"][0]["text"]
            .as_str()
            .unwrap()
            .contains("Lead 0 of Acme Homes")
    );
    let functions = setup["tools"][0]["functionDeclarations"]
        .as_array()
        .unwrap();
    assert_eq!(functions.len(), 5, "the same tools as OpenAI");
    assert!(functions.iter().any(|f| f["name"] == "opt_out"));
    assert!(functions.iter().any(|f| f["name"] == "schedule_callback"));
    assert_eq!(setup["inputAudioTranscription"], json!({}));
    assert_eq!(setup["outputAudioTranscription"], json!({}));
    assert_eq!(setup["sessionResumption"], json!({}));
    assert_eq!(
        setup["contextWindowCompression"]["slidingWindow"],
        json!({})
    );
    fixture.fake.log(|log| {
        assert_eq!(log.api_keys, ["g-test-key"], "the key in the header");
        assert_eq!(log.audio_mime_types, ["audio/pcm;rate=16000"]);
        assert!(log.audio_frames > 50, "caller audio reached the provider");
        assert_eq!(log.greetings, 1);
    });
    // record_outcome got its result; end_call needs none.
    let responses = tool_responses(&fixture.fake);
    assert_eq!(responses.len(), 1, "{responses:?}");
    assert_eq!(responses[0].1["name"], "record_outcome");
    assert_eq!(responses[0].1["response"], json!({"ok": true}));

    let (test, org, _fake) = fixture.finish().await;
    let row = call_row(&test, "CA-g-whole").await;
    assert_eq!(row.end_reason.as_deref(), Some("agent_ended"));
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
        Some(SUMMARY),
        "the transcription of the spoken summary"
    );
    let metadata = row.metadata.unwrap();
    assert_eq!(metadata["analysis"]["source"], "model", "{metadata}");
    assert_eq!(metadata["interest_level"], "high");
    assert!(
        metadata["provider_usage"]
            .as_array()
            .unwrap()
            .iter()
            .any(|usage| usage["totalTokenCount"] == 120),
        "usageMetadata is kept: {metadata}"
    );
    let status: String = sqlx::query_scalar("SELECT status FROM leads WHERE id = $1")
        .bind(org.lead_ids[0])
        .fetch_one(test.pool())
        .await
        .unwrap();
    assert_eq!(status, "qualified");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn barge_in_on_gemini_clears_at_once_and_drops_the_cut_turn() {
    let mut config = conversation(vec![turn(
        "Tell me everything",
        "Let me tell you all about it at great length, there is so much to say.",
        None,
    )]);
    config.reply_ms = 5000;
    config.generation_speed = 2;
    let fixture = Fixture::start(config, &[]).await;
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
    let report = fixture.call("CA-g-barge", &script).await;
    assert_eq!(report.clears.len(), 1, "one barge-in, one clearAudio");
    let barge_start = report.speech_starts[1];
    let clear_at = report.clears[0];
    assert!(clear_at >= barge_start);
    assert!(
        clear_at - barge_start <= Duration::from_millis(30),
        "clearAudio {:?} after speech start",
        clear_at - barge_start
    );
    let after_clear = report
        .frames
        .iter()
        .filter(|(at, _)| *at > clear_at)
        .count();
    assert_eq!(
        after_clear, 0,
        "nothing of the cut turn plays after the clear"
    );

    let (test, _, _) = fixture.finish().await;
    let row = call_row(&test, "CA-g-barge").await;
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
        "the transcribed part of the cut turn is kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_and_opt_out_tools_round_trip_through_tool_responses() {
    let fixture = Fixture::start(
        conversation(vec![
            turn(
                "Call me back tomorrow at eleven",
                "Sure, I will call you back.",
                Some(("schedule_callback", json!({"when": "tomorrow at 11"}))),
            ),
            turn(
                "Actually, please don't call me again",
                "I understand, you will not be called again.",
                Some(("opt_out", json!({"reason": "please don't call me again"}))),
            ),
        ]),
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
        Step::WaitForAgentAudio,
        Step::WaitForAgentSilence(Duration::from_millis(400)),
        Step::HangUp,
    ];
    fixture.call("CA-g-tools", &script).await;
    fixture
        .fake
        .wait_for(|log| log.of("toolResponse").len() == 2)
        .await;
    let responses = tool_responses(&fixture.fake);
    assert_eq!(responses[0].1["name"], "schedule_callback");
    assert!(
        responses[0].1["id"].as_str().unwrap().starts_with("fc-"),
        "the call's id is answered: {responses:?}"
    );
    assert!(
        responses[0].1["response"]["ok"].is_boolean(),
        "{responses:?}"
    );
    assert_eq!(responses[1].1["name"], "opt_out");
    assert_eq!(
        responses[1].1["response"],
        json!({"ok": true, "suppressed": true})
    );
    let (test, org, _) = fixture.finish().await;
    let row = call_row(&test, "CA-g-tools").await;
    assert_eq!(row.metadata.unwrap()["opted_out"], true);
    let source: String = sqlx::query_scalar(
        "SELECT source FROM do_not_call WHERE organization_id = $1 AND phone_number = '+14155550000'",
    )
    .bind(org.id)
    .fetch_one(test.pool())
    .await
    .unwrap();
    assert_eq!(source, "caller_request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_transfer_tool_on_gemini_hands_the_call_off() {
    let fixture = Fixture::start(
        conversation(vec![turn(
            "I am interested",
            "Sure, one moment.",
            Some((
                "transfer_to_human",
                json!({"department": "sales", "reason": "wants a visit"}),
            )),
        )]),
        &[],
    )
    .await;
    let pool = fixture.test.pool().clone();
    sqlx::query("UPDATE organizations SET caller_id = '+14155550100' WHERE id = $1")
        .bind(fixture.org.id)
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO transfer_targets (organization_id, name, department, phone_number, priority, working_days) VALUES ($1, 'Ana', 'sales', '+14155550201', 1, '{1,2,3,4,5,6,7}')",
    )
    .bind(fixture.org.id)
    .execute(&pool)
    .await
    .unwrap();
    let report = fixture.call("CA-g-transfer", &script(1)).await;
    assert!(report.closed_by_gateway);
    let config = fixture.caller("CA-g-transfer");
    let form = vec![("CallUUID".to_owned(), "CA-g-transfer".to_owned())];
    let xml = plivo_caller::signed_post(&config, &fixture.http, "/plivo/after-stream", &form)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(xml.contains("<Dial"), "{xml}");
    let (test, _, _) = fixture.finish().await;
    let row = call_row(&test, "CA-g-transfer").await;
    assert_eq!(row.end_reason.as_deref(), Some("transferred"));
    let transfer = test
        .db
        .transfer_for_call("CA-g-transfer")
        .await
        .unwrap()
        .unwrap();
    assert!(
        transfer.reason.contains("wants a visit"),
        "{}",
        transfer.reason
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gemini_call_survives_go_away_on_a_resumed_connection_without_a_second_greeting() {
    let fixture = Fixture::start(
        FakeGeminiConfig {
            mode: FakeGeminiMode::GoAwayAfterGreeting,
            ..conversation(record_then_goodbye())
        },
        &[],
    )
    .await;
    let report = fixture.call("CA-g-resume", &script(2)).await;
    assert!(report.closed_by_gateway);
    fixture.fake.log(|log| {
        assert_eq!(log.connections, 2, "one resumption");
        assert_eq!(log.greetings, 1, "the greeting is not repeated");
        let setups = log.of("setup");
        assert_eq!(setups[0].1["setup"]["sessionResumption"], json!({}));
        assert_eq!(
            setups[1].1["setup"]["sessionResumption"]["handle"], "handle-1-2",
            "the latest handle of the first connection (after the greeting)"
        );
        let greetings = log
            .of("clientContent")
            .into_iter()
            .filter(|(_, m)| {
                m["clientContent"]["turns"][0]["parts"][0]["text"]
                    .as_str()
                    .is_some_and(|text| text.contains("Greet the caller"))
            })
            .count();
        assert_eq!(greetings, 1);
    });
    let responses = tool_responses(&fixture.fake);
    assert_eq!(
        responses.iter().map(|(c, _)| *c).collect::<Vec<_>>(),
        [2],
        "the tool result went on the new connection"
    );
    let (test, _, _) = fixture.finish().await;
    let row = call_row(&test, "CA-g-resume").await;
    assert_eq!(row.end_reason.as_deref(), Some("agent_ended"));
    let transcript = row.transcript.unwrap();
    assert_eq!(
        transcript.matches("Hello, this is Maya").count(),
        1,
        "{transcript}"
    );
    for line in [
        "Caller: I would like to hear more",
        "Agent: Great, it is a two bedroom flat by the lake.",
        "Agent: Thank you, goodbye.",
    ] {
        assert!(
            transcript.contains(line),
            "missing {line:?} in\n{transcript}"
        );
    }
}

/// A first turn that ends in a function call (`record_outcome`), then a goodbye (`end_call`).
fn record_then_goodbye() -> Vec<FakeTurn> {
    vec![
        turn(
            "I would like to hear more",
            "Great, it is a two bedroom flat by the lake.",
            Some(("record_outcome", json!({"interest_level": "medium"}))),
        ),
        turn(
            "That is all, goodbye",
            "Thank you, goodbye.",
            Some(("end_call", json!({"reason": "caller is done"}))),
        ),
    ]
}

/// [`record_then_goodbye`] with a goAway right after the function call.
fn tool_then_goodbye(time_left: Duration) -> FakeGeminiConfig {
    FakeGeminiConfig {
        mode: FakeGeminiMode::GoAwayAtToolCall,
        go_away_time_left: time_left,
        ..conversation(record_then_goodbye())
    }
}

/// The call's transcript holds each line once, the greeting and the follow-up included.
async fn assert_whole_transcript(test: &TestDb, call_sid: &str) {
    let row = call_row(test, call_sid).await;
    assert_eq!(row.end_reason.as_deref(), Some("agent_ended"));
    let transcript = row.transcript.unwrap();
    for line in [
        "Agent: Hello, this is Maya",
        "Caller: I would like to hear more",
        "Agent: Great, it is a two bedroom flat by the lake.",
        "Agent: Noted, thank you.",
        "Caller: That is all, goodbye",
        "Agent: Thank you, goodbye.",
    ] {
        assert_eq!(
            transcript.matches(line).count(),
            1,
            "{line:?} once in\n{transcript}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_call_pending_at_go_away_is_answered_before_the_move() {
    // Time enough: the result goes on the old connection, the model speaks on it, and the
    // move waits for a handle that covers both.
    let fixture = Fixture::start(tool_then_goodbye(Duration::from_secs(10)), &[]).await;
    let report = fixture.call("CA-g-tool-away", &script(2)).await;
    assert!(report.closed_by_gateway);
    let responses = tool_responses(&fixture.fake);
    assert_eq!(
        responses
            .iter()
            .map(|(c, r)| (*c, r["name"].as_str().unwrap().to_owned()))
            .collect::<Vec<_>>(),
        [(1, "record_outcome".to_owned())],
        "the pending result once, on the old connection (end_call gets no result)"
    );
    fixture.fake.log(|log| {
        assert_eq!(log.connections, 2, "one resumption");
        assert_eq!(log.greetings, 1, "the greeting is not repeated");
        let setups = log.of("setup");
        let handle = setups[1].1["setup"]["sessionResumption"]["handle"]
            .as_str()
            .unwrap()
            .to_owned();
        // The resumed handle came after the follow-up the tool result prompted (1: set-up,
        // 2: the greeting; the update after the function call is not resumable).
        assert_eq!(handle, "handle-1-3", "the handle after the follow-up");
    });
    let (test, _, _) = fixture.finish().await;
    assert_whole_transcript(&test, "CA-g-tool-away").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gemini_failures_end_only_the_call_with_an_apology_and_a_row() {
    for (call_sid, config, extra) in [
        (
            "CA-g-drop",
            FakeGeminiConfig {
                mode: FakeGeminiMode::DropAfterGreeting,
                ..FakeGeminiConfig::default()
            },
            &[][..],
        ),
        (
            "CA-g-malformed",
            FakeGeminiConfig {
                mode: FakeGeminiMode::MalformedAfterGreeting,
                ..FakeGeminiConfig::default()
            },
            &[][..],
        ),
        (
            "CA-g-never",
            FakeGeminiConfig {
                mode: FakeGeminiMode::NeverReady,
                ..FakeGeminiConfig::default()
            },
            &[("VG_PROVIDER_TIMEOUT_SECS", "1")][..],
        ),
        (
            "CA-g-slow",
            FakeGeminiConfig {
                setup_delay: Duration::from_secs(3),
                ..FakeGeminiConfig::default()
            },
            &[("VG_PROVIDER_TIMEOUT_SECS", "1")][..],
        ),
        (
            "CA-g-badkey",
            FakeGeminiConfig {
                api_key: Some("the-right-key".to_owned()),
                ..FakeGeminiConfig::default()
            },
            &[][..],
        ),
    ] {
        let fixture = Fixture::start(config, extra).await;
        let report = fixture.call(call_sid, &[Step::WaitForClose]).await;
        assert!(report.closed_by_gateway, "{call_sid}");
        assert!(
            report.frames.len() >= 290,
            "{call_sid}: the apology played: {} frames",
            report.frames.len()
        );
        let health = fixture
            .http
            .get(fixture.app.url("/healthz"))
            .send()
            .await
            .unwrap();
        assert_eq!(health.status(), 200, "{call_sid}: the gateway goes on");
        let (test, _, _) = fixture.finish().await;
        assert_eq!(
            call_row(&test, call_sid).await.end_reason.as_deref(),
            Some("provider_error"),
            "{call_sid}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_l16_carrier_is_passed_through_at_16k_and_gets_l16_back() {
    let fixture = Fixture::start(
        conversation(vec![turn(
            "Hello there",
            "Hi, how can I help?",
            Some(("end_call", json!({"reason": "done"}))),
        )]),
        &[],
    )
    .await;
    let config = fixture.caller("CA-g-l16");
    let (status, xml, _) = plivo_caller::answer(&config, &fixture.http).await.unwrap();
    assert_eq!(status, 200);
    let stream_url = plivo_caller::stream_url_of(&xml).unwrap();
    let format = voice_gateway::audio::AudioFormat::L16_16K;
    let report = plivo_caller::run_stream(
        &config,
        &stream_url,
        &script(1),
        format,
        CallReport::default(),
    )
    .await
    .unwrap();
    assert!(report.closed_by_gateway);
    assert_eq!(report.content_types, [("audio/x-l16".to_owned(), 16000)]);
    assert!(report.frames.iter().all(|(_, size)| *size == 640));
    let (test, _, _) = fixture.finish().await;
    let row = call_row(&test, "CA-g-l16").await;
    assert_eq!(row.end_reason.as_deref(), Some("agent_ended"));
    assert!(row.transcript.unwrap().contains("Caller: Hello there"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_on_gemini_runs_on_gemini_beside_an_openai_default() {
    let fixture = Fixture::start(
        conversation(vec![turn(
            "Yes please",
            "Wonderful.",
            Some(("end_call", json!({"reason": "done"}))),
        )]),
        &[("VG_AI_PROVIDER", "openai"), ("OPENAI_API_KEY", "sk-test")],
    )
    .await;
    let ready = fixture
        .http
        .get(fixture.app.url("/readyz"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        ready.contains("openai") && ready.contains("gemini"),
        "{ready}"
    );
    sqlx::query("UPDATE campaigns SET ai_provider = 'gemini' WHERE id = $1")
        .bind(fixture.org.campaign_id)
        .execute(fixture.test.pool())
        .await
        .unwrap();
    let report = fixture.call("CA-g-campaign", &script(1)).await;
    assert!(report.closed_by_gateway);
    assert_eq!(fixture.fake.log(|log| log.connections), 1);
    let (test, _, _) = fixture.finish().await;
    let row = call_row(&test, "CA-g-campaign").await;
    assert_eq!(row.end_reason.as_deref(), Some("agent_ended"));
    assert!(row.transcript.unwrap().contains("Agent: Wonderful."));
}

/// The real binary with JSON logs, a key Gemini refuses: one line names `GEMINI_API_KEY`, none
/// carries its value, and the call ends with the apology.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_gemini_key_is_named_in_one_log_line_without_its_value() {
    use tokio::io::{AsyncBufReadExt, BufReader};

    const BINARY: &str = env!("CARGO_BIN_EXE_voice-gateway");
    const KEY: &str = "g-refused-key-3e9f1c7a5b";
    const DEADLINE: Duration = Duration::from_secs(120);
    let test = TestDb::new().await;
    let org = seed_org(test.pool(), "Acme Homes", 1).await;
    let fake = FakeGeminiServer::start(FakeGeminiConfig {
        api_key: Some("the-only-valid-key".to_owned()),
        ..FakeGeminiConfig::default()
    })
    .await
    .unwrap();
    let data_dir = tempfile::tempdir().unwrap();
    let secret = "s".repeat(48);
    let mut child = tokio::process::Command::new(BINARY)
        .arg("serve")
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .envs([
            ("DATABASE_URL", test.url.as_str()),
            ("VG_DATA_DIR", data_dir.path().to_str().unwrap()),
            ("VG_LISTEN", "127.0.0.1:0"),
            ("VG_PUBLIC_URL", PUBLIC_URL),
            ("VG_SERVER_NAME", "gw-gemini-key"),
            ("VG_STREAM_SECRET", secret.as_str()),
            ("VG_AI_PROVIDER", "gemini"),
            ("GEMINI_API_KEY", KEY),
            ("GEMINI_LIVE_URL", fake.url().as_str()),
            ("PLIVO_AUTH_ID", "MATEST"),
            ("PLIVO_AUTH_TOKEN", AUTH_TOKEN),
            ("VG_DIALER_ENABLED", "false"),
            ("VG_LOG_FORMAT", "json"),
            ("RUST_LOG", "info"),
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn serve");
    let (lines_tx, mut lines_rx) = tokio::sync::mpsc::channel::<String>(1024);
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let reader = tokio::spawn(async move {
        let mut all = Vec::new();
        while let Some(line) = stderr.next_line().await.expect("read stderr") {
            let _ = lines_tx.send(line.clone()).await;
            all.push(line);
        }
        all
    });
    let address = tokio::time::timeout(DEADLINE, async {
        while let Some(line) = lines_rx.recv().await {
            let value: Value = serde_json::from_str(&line).expect("a JSON log line");
            if value["message"] == "listening" {
                return value["address"].as_str().unwrap().to_owned();
            }
        }
        panic!("serve exited before listening");
    })
    .await
    .expect("listening in time");
    tokio::spawn(async move { while lines_rx.recv().await.is_some() {} });

    let caller = CallerConfig {
        gateway: format!("http://{address}"),
        public_url: PUBLIC_URL.to_owned(),
        auth_token: AUTH_TOKEN.to_owned(),
        call_sid: "CA-g-key-log".to_owned(),
        answer_query: format!(
            "lead_id={}&campaign_id={}",
            org.lead_ids[0], org.campaign_id
        ),
        from: "14155550100".to_owned(),
        to: "14155550000".to_owned(),
        keep_agent_audio: false,
    };
    let http = reqwest::Client::new();
    let report = tokio::time::timeout(
        DEADLINE,
        plivo_caller::place_call(&caller, &http, &[Step::WaitForClose]),
    )
    .await
    .expect("the call finished in time")
    .expect("the call ran");
    assert!(report.closed_by_gateway);
    assert!(report.frames.len() >= 290, "the apology played");

    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(DEADLINE, child.wait())
        .await
        .expect("serve exited in time")
        .unwrap();
    assert!(status.success(), "{status}");
    let lines = reader.await.unwrap();
    let naming: Vec<&String> = lines
        .iter()
        .filter(|line| line.contains("GEMINI_API_KEY"))
        .collect();
    assert_eq!(naming.len(), 1, "{naming:#?}");
    assert!(
        lines.iter().all(|line| !line.contains(KEY)),
        "the key's value is never logged"
    );
    assert_eq!(
        call_row(&test, "CA-g-key-log").await.end_reason.as_deref(),
        Some("provider_error")
    );
    fake.stop().await;
}
