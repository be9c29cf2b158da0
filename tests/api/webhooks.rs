//! Plivo's webhooks and the media WebSocket's admission: signatures, tokens, replays, the
//! answer XML, unknown calls, hang-up callbacks, draining.

use std::time::Duration;

use uuid::Uuid;
use voice_gateway::{
    audio::AudioFormat,
    plivo::signature::{self, Method},
    simulators::{
        openai_realtime::{FakeMode, FakeRealtimeConfig, FakeRealtimeServer, FakeTurn},
        plivo_caller::{self, CallReport, CallerConfig, Step},
    },
};

use crate::helpers::{Org, TestApp, TestDb, seed_org, settings_for};

const AUTH_TOKEN: &str = "plivo-test-token";

async fn start(
    fake: FakeRealtimeConfig,
    extra: &[(&str, &str)],
) -> (TestDb, Org, FakeRealtimeServer, TestApp, String) {
    let test = TestDb::new().await;
    let org = seed_org(test.pool(), "Acme Homes", 2).await;
    let fake = FakeRealtimeServer::start(fake).await.unwrap();
    let url = fake.url();
    let name = format!("gw-{}", Uuid::new_v4().simple());
    let mut settings = vec![
        ("VG_AI_PROVIDER", "openai"),
        ("OPENAI_API_KEY", "sk-test"),
        ("OPENAI_REALTIME_URL", url.as_str()),
        ("PLIVO_AUTH_ID", "MATEST"),
        ("PLIVO_AUTH_TOKEN", AUTH_TOKEN),
    ];
    settings.extend_from_slice(extra);
    let app = TestApp::spawn(settings_for(&test.url, &name, &settings)).await;
    (test, org, fake, app, name)
}

fn caller(app: &TestApp, org: &Org, lead: usize, call_sid: &str) -> CallerConfig {
    CallerConfig {
        gateway: format!("http://{}", app.address),
        public_url: "https://gateway.test".to_owned(),
        auth_token: AUTH_TOKEN.to_owned(),
        call_sid: call_sid.to_owned(),
        answer_query: format!(
            "lead_id={}&campaign_id={}",
            org.lead_ids[lead], org.campaign_id
        ),
        from: "14155550100".to_owned(),
        to: "14155550000".to_owned(),
        keep_agent_audio: false,
    }
}

async fn call_rows(test: &TestDb) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM call_logs")
        .fetch_one(test.pool())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_answer_is_the_documented_stream_xml() {
    let (_test, org, _fake, app, _) = start(FakeRealtimeConfig::default(), &[]).await;
    let http = reqwest::Client::new();
    let (status, xml, _) = plivo_caller::answer(&caller(&app, &org, 0, "CA-xml"), &http)
        .await
        .unwrap();
    assert_eq!(status, 200);
    let stream_url = plivo_caller::stream_url_of(&xml).unwrap();
    let token = stream_url
        .strip_prefix("wss://gateway.test/plivo/stream?token=")
        .expect("the registered server's stream URL with a token");
    let expected = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response>\n<Stream bidirectional=\"true\" keepCallAlive=\"true\" contentType=\"audio/x-mulaw;rate=8000\" statusCallbackUrl=\"https://gateway.test/plivo/stream-status\" statusCallbackMethod=\"POST\">wss://gateway.test/plivo/stream?token={token}</Stream>\n<Redirect method=\"POST\">https://gateway.test/plivo/after-stream</Redirect>\n</Response>\n"
    );
    assert_eq!(xml, expected);
    let document = roxmltree::Document::parse(&xml).expect("well-formed XML");
    let names: Vec<&str> = document
        .root_element()
        .children()
        .filter(|n| n.is_element())
        .map(|n| n.tag_name().name())
        .collect();
    assert_eq!(names, ["Stream", "Redirect"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_and_wrongly_signed_webhooks_are_refused_and_change_nothing() {
    let (test, org, _fake, app, _) = start(FakeRealtimeConfig::default(), &[]).await;
    let http = reqwest::Client::new();
    let form = [
        ("CallUUID", "CA-x"),
        ("CallStatus", "busy"),
        ("From", "1"),
        ("To", "2"),
    ];
    let query = format!(
        "lead_id={}&campaign_id={}",
        org.lead_ids[0], org.campaign_id
    );
    for path in [
        "/plivo/answer",
        "/plivo/hangup",
        "/plivo/stream-status",
        "/plivo/after-stream",
    ] {
        let url = app.url(&format!("{path}?{query}"));
        let unsigned = http.post(&url).form(&form).send().await.unwrap();
        assert_eq!(unsigned.status(), 403, "{path} unsigned");
        let wrong = http
            .post(&url)
            .header("X-Plivo-Signature-V3", "bm90IGEgc2lnbmF0dXJl")
            .header("X-Plivo-Signature-V3-Nonce", "12345")
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 403, "{path} wrongly signed");
        // Signed for another URL (a replay against a different host) is refused too.
        let nonce = "998877";
        let pairs: Vec<(String, String)> = form
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let elsewhere = signature::v3_signature(
            AUTH_TOKEN.as_bytes(),
            Method::Post,
            &format!("https://evil.test{path}?{query}"),
            &pairs,
            nonce,
        );
        let moved = http
            .post(&url)
            .header("X-Plivo-Signature-V3", elsewhere)
            .header("X-Plivo-Signature-V3-Nonce", nonce)
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(moved.status(), 403, "{path} signed for another URL");
    }
    assert_eq!(
        call_rows(&test).await,
        0,
        "a refused busy hang-up recorded nothing"
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_media_socket_needs_a_signature_and_a_fresh_token() {
    let turns = vec![FakeTurn {
        caller_says: "hi".into(),
        agent_says: "bye".into(),
        tool: None,
    }];
    let (test, org, _fake, app, _) = start(
        FakeRealtimeConfig {
            turns,
            ..FakeRealtimeConfig::default()
        },
        &[],
    )
    .await;
    let http = reqwest::Client::new();
    let config = caller(&app, &org, 0, "CA-token");
    let (_, xml, _) = plivo_caller::answer(&config, &http).await.unwrap();
    let stream_url = plivo_caller::stream_url_of(&xml).unwrap();

    // No token.
    let bare = plivo_caller::connect_stream(&config, "wss://gateway.test/plivo/stream").await;
    assert!(bare.is_err(), "a stream without a token is refused");
    // A forged token.
    let forged = plivo_caller::connect_stream(&config, &format!("{}x", stream_url)).await;
    assert!(forged.is_err(), "a tampered token is refused");
    // Signed with the wrong auth token.
    let mut wrong_signer = config.clone();
    wrong_signer.auth_token = "not-the-token".into();
    assert!(
        plivo_caller::connect_stream(&wrong_signer, &stream_url)
            .await
            .is_err(),
        "a bad signature is refused"
    );

    // The real one works once...
    let report = plivo_caller::run_stream(
        &config,
        &stream_url,
        &[Step::WaitForAgentAudio, Step::HangUp],
        voice_gateway::audio::AudioFormat::MULAW_8K,
        CallReport::default(),
    )
    .await
    .expect("the first use of the token");
    assert!(!report.frames.is_empty());
    // ...and is refused when replayed.
    let replay = plivo_caller::connect_stream(&config, &stream_url).await;
    assert!(replay.is_err(), "a replayed token is refused");
    app.shutdown().await;
    assert_eq!(call_rows(&test).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_call_gets_a_polite_goodbye() {
    let (_test, org, _fake, app, _) = start(FakeRealtimeConfig::default(), &[]).await;
    let http = reqwest::Client::new();
    let mut config = caller(&app, &org, 0, "CA-unknown");
    config.answer_query = format!("lead_id={}&campaign_id={}", Uuid::new_v4(), org.campaign_id);
    let (status, xml, _) = plivo_caller::answer(&config, &http).await.unwrap();
    assert_eq!(status, 200);
    assert!(
        xml.contains("<Speak voice=\"WOMAN\" language=\"en-US\">"),
        "{xml}"
    );
    assert!(xml.contains("<Hangup/>"), "{xml}");
    assert!(!xml.contains("<Stream"), "{xml}");
    // Inbound from a number nobody knows, to a number nobody owns.
    config.answer_query = String::new();
    let (_, xml, _) = plivo_caller::answer(&config, &http).await.unwrap();
    assert!(
        xml.contains("<Hangup/>") && !xml.contains("<Stream"),
        "{xml}"
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hangup_callbacks_record_unreached_calls_once_and_after_stream_hangs_up() {
    let (test, org, _fake, app, _) = start(FakeRealtimeConfig::default(), &[]).await;
    let http = reqwest::Client::new();
    let config = caller(&app, &org, 1, "CA-busy");
    let path = format!(
        "/plivo/hangup?lead_id={}&campaign_id={}",
        org.lead_ids[1], org.campaign_id
    );
    let form: Vec<(String, String)> = [
        ("CallUUID", "CA-busy"),
        ("CallStatus", "busy"),
        ("HangupCause", "USER_BUSY"),
        ("Duration", "0"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for _ in 0..2 {
        let response = plivo_caller::signed_post(&config, &http, &path, &form)
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let row = test.db.call_log("CA-busy").await.unwrap().unwrap();
    assert_eq!(
        (row.call_status.as_str(), row.end_reason.as_deref()),
        ("no_answer", Some("busy"))
    );
    let (total, lead_status): (i32, String) = sqlx::query_as("SELECT c.total_calls, l.call_status FROM campaigns c, leads l WHERE c.id = $1 AND l.id = $2")
        .bind(org.campaign_id)
        .bind(org.lead_ids[1])
        .fetch_one(test.pool())
        .await
        .unwrap();
    assert_eq!(
        (total, lead_status.as_str()),
        (1, "no_answer"),
        "counted once though Plivo posted twice"
    );

    let after = plivo_caller::signed_post(
        &config,
        &http,
        "/plivo/after-stream",
        &[("CallUUID".into(), "CA-busy".into())],
    )
    .await
    .unwrap();
    assert_eq!(after.status(), 200);
    assert!(after.text().await.unwrap().contains("<Hangup/>"));
    let status = plivo_caller::signed_post(
        &config,
        &http,
        "/plivo/stream-status",
        &[("Event".into(), "DroppedStream".into())],
    )
    .await
    .unwrap();
    assert_eq!(status.status(), 200);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_provider_session_is_reopened_with_the_conversation() {
    let turns = vec![FakeTurn {
        caller_says: "Tell me the price".into(),
        agent_says: "It starts at eighty lakh.".into(),
        tool: None,
    }];
    let config = FakeRealtimeConfig {
        mode: FakeMode::ExpireAfterGreeting,
        turns,
        ..FakeRealtimeConfig::default()
    };
    let (test, org, fake, app, _) = start(config, &[]).await;
    let http = reqwest::Client::new();
    let script = [
        Step::WaitForAgentAudio,
        Step::WaitForAgentSilence(Duration::from_millis(300)),
        Step::Speak(Duration::from_millis(500)),
        Step::WaitForAgentAudio,
        Step::WaitForAgentSilence(Duration::from_millis(300)),
        Step::HangUp,
    ];
    let report = plivo_caller::place_call(&caller(&app, &org, 0, "CA-expire"), &http, &script)
        .await
        .unwrap();
    assert!(!report.closed_by_gateway, "the call survived the expiry");
    assert_eq!(fake.log(|log| log.connections), 2, "one reconnect");
    let replayed: Vec<_> = fake.log(|log| {
        log.events
            .iter()
            .filter(|(connection, e)| *connection == 2 && e["type"] == "conversation.item.create")
            .map(|(_, e)| e.clone())
            .collect()
    });
    assert_eq!(
        replayed.len(),
        1,
        "the greeting was replayed into the new session"
    );
    assert_eq!(replayed[0]["item"]["role"], "assistant");
    app.shutdown().await;
    let row = test.db.call_log("CA-expire").await.unwrap().unwrap();
    assert!(
        row.transcript
            .unwrap()
            .contains("Agent: It starts at eighty lakh.")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_live_calls_and_refuses_new_ones() {
    let (test, org, fake, app, name) = start(
        FakeRealtimeConfig::default(),
        &[("VG_SHUTDOWN_GRACE_SECS", "1")],
    )
    .await;
    let http = reqwest::Client::new();
    let config = caller(&app, &org, 0, "CA-live");
    let (_, xml, _) = plivo_caller::answer(&config, &http).await.unwrap();
    let stream_url = plivo_caller::stream_url_of(&xml).unwrap();
    let live = tokio::spawn({
        let config = config.clone();
        async move {
            plivo_caller::run_stream(
                &config,
                &stream_url,
                &[Step::WaitForAgentAudio, Step::WaitForClose],
                voice_gateway::audio::AudioFormat::MULAW_8K,
                CallReport::default(),
            )
            .await
            .unwrap()
        }
    });
    // The call is live once the provider session is configured.
    fake.wait_for(|log| {
        log.events
            .iter()
            .any(|(_, e)| e["type"] == "session.update")
    })
    .await;
    // A second call answered before the drain, whose stream arrives during it.
    let second = caller(&app, &org, 1, "CA-late");
    let (_, xml, _) = plivo_caller::answer(&second, &http).await.unwrap();
    let late_url = plivo_caller::stream_url_of(&xml).unwrap();
    let readyz = app.url("/readyz");
    let lifecycle = app.lifecycle.clone();
    let shutdown = tokio::spawn(app.shutdown());
    lifecycle.draining().await;
    assert_eq!(
        http.get(&readyz).send().await.unwrap().status(),
        503,
        "not ready while draining"
    );
    assert!(
        plivo_caller::connect_stream(&second, &late_url)
            .await
            .is_err(),
        "no new calls while draining"
    );
    assert!(
        live.await.unwrap().closed_by_gateway,
        "the live call was ended by the gateway"
    );
    shutdown.await.unwrap();

    let row = test.db.call_log("CA-live").await.unwrap().unwrap();
    assert_eq!(row.end_reason.as_deref(), Some("shutdown"));
    assert!(test.db.call_log("CA-late").await.unwrap().is_none());
    let server = test.db.stream_server(&name).await.unwrap().unwrap();
    assert!(!server.is_active);
}

/// Plivo's hangup callback of an answered call that lasted `duration` seconds.
async fn post_answered_hangup(
    config: &CallerConfig,
    http: &reqwest::Client,
    org: &Org,
    lead: usize,
    duration: &str,
) {
    let path = format!(
        "/plivo/hangup?lead_id={}&campaign_id={}",
        org.lead_ids[lead], org.campaign_id
    );
    let form: Vec<(String, String)> = [
        ("CallUUID", config.call_sid.as_str()),
        ("CallStatus", "completed"),
        ("HangupCause", "NORMAL_CLEARING"),
        ("HangupSource", "Callee"),
        ("Duration", duration),
        ("BillDuration", duration),
        ("AnswerTime", "2026-12-07 10:00:00"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let response = plivo_caller::signed_post(config, http, &path, &form)
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

async fn lead_and_total(test: &TestDb, org: &Org, lead: usize) -> (String, String, i32) {
    sqlx::query_as(
        "SELECT l.status, l.call_status, c.total_calls FROM campaigns c, leads l WHERE c.id = $1 AND l.id = $2",
    )
    .bind(org.campaign_id)
    .bind(org.lead_ids[lead])
    .fetch_one(test.pool())
    .await
    .unwrap()
}

fn one_turn() -> FakeRealtimeConfig {
    FakeRealtimeConfig {
        turns: vec![FakeTurn {
            caller_says: "Tell me the price".into(),
            agent_says: "It starts at eighty lakh.".into(),
            tool: None,
        }],
        ..FakeRealtimeConfig::default()
    }
}

const ONE_TURN_THEN_HANG_UP: [Step; 6] = [
    Step::WaitForAgentAudio,
    Step::WaitForAgentSilence(Duration::from_millis(300)),
    Step::Speak(Duration::from_millis(500)),
    Step::WaitForAgentAudio,
    Step::WaitForAgentSilence(Duration::from_millis(300)),
    Step::HangUp,
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hangup_callback_that_overtakes_the_stream_leaves_the_call_whole() {
    let (test, org, _fake, app, _) = start(one_turn(), &[]).await;
    let http = reqwest::Client::new();
    let config = caller(&app, &org, 0, "CA-overtaken");
    let (status, xml, _) = plivo_caller::answer(&config, &http).await.unwrap();
    assert_eq!(status, 200);
    let stream_url = plivo_caller::stream_url_of(&xml).unwrap();

    // Plivo's hangup callback arrives before the stream's open is written.
    post_answered_hangup(&config, &http, &org, 0, "37").await;
    let row = test.db.call_log("CA-overtaken").await.unwrap().unwrap();
    assert_eq!(
        (row.call_status.as_str(), row.end_reason.as_deref()),
        ("called", Some("caller_hangup")),
        "answered, so never no_answer"
    );

    // Then the stream: the open takes the row over, the close writes the conversation.
    plivo_caller::run_stream(
        &config,
        &stream_url,
        &ONE_TURN_THEN_HANG_UP,
        AudioFormat::MULAW_8K,
        CallReport::default(),
    )
    .await
    .unwrap();
    app.shutdown().await;

    let row = test.db.call_log("CA-overtaken").await.unwrap().unwrap();
    assert_eq!(
        (row.call_status.as_str(), row.end_reason.as_deref()),
        ("called", Some("caller_hangup"))
    );
    let transcript = row.transcript.unwrap_or_default();
    assert!(
        transcript.contains("Caller: Tell me the price")
            && transcript.contains("Agent: It starts at eighty lakh."),
        "the conversation is kept: {transcript:?}"
    );
    assert!(row.conversation_summary.is_some());
    assert_eq!(row.duration, 37, "Plivo's duration of the whole call");
    let metadata = row.metadata.unwrap();
    assert!(metadata["stream_id"].is_string(), "{metadata}");
    assert!(metadata["analysis"].is_object(), "{metadata}");
    assert_eq!(
        lead_and_total(&test, &org, 0).await,
        ("contacted".to_owned(), "called".to_owned(), 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hangup_callback_before_the_close_keeps_plivo_s_duration() {
    // The summary takes its time, so the close comes well after the caller hung up.
    let fake = FakeRealtimeConfig {
        text_time: Duration::from_secs(4),
        ..one_turn()
    };
    let (test, org, _fake, app, _) = start(fake, &[]).await;
    let http = reqwest::Client::new();
    let config = caller(&app, &org, 1, "CA-before-close");
    plivo_caller::place_call(&config, &http, &ONE_TURN_THEN_HANG_UP)
        .await
        .unwrap();
    let row = test.db.call_log("CA-before-close").await.unwrap().unwrap();
    assert_eq!(row.ended_at, None, "the close waits for the summary");
    post_answered_hangup(&config, &http, &org, 1, "41").await;
    app.shutdown().await;

    let row = test.db.call_log("CA-before-close").await.unwrap().unwrap();
    assert_eq!(row.end_reason.as_deref(), Some("caller_hangup"));
    assert_eq!(
        row.duration, 41,
        "the close does not overwrite the whole call's duration"
    );
    assert!(row.transcript.unwrap_or_default().contains("eighty lakh"));
    assert_eq!(lead_and_total(&test, &org, 1).await.2, 1);
}
