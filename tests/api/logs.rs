//! What the gateway logs at `info` carries no caller's number, no person's name, no token and no
//! key: the real binary with JSON logs, a whole call (answer, media WebSocket, fake OpenAI
//! Realtime, the close), a replayed stream URL, Plivo's stream-status and hangup callbacks, an
//! unknown caller, and the campaign API with a bearer token; then every line is searched.

use std::{process::Stdio, time::Duration};

use reqwest::Method;
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::Command,
    sync::mpsc,
};
use voice_gateway::{
    api::tokens::Scope,
    simulators::{
        openai_realtime::FakeRealtimeServer,
        plivo_caller::{self, CallerConfig, Step},
    },
};

use crate::{
    call::{conversation, turn},
    campaign_api::issue,
    helpers::{TestDb, seed_org},
};

const BINARY: &str = env!("CARGO_BIN_EXE_voice-gateway");
/// A safety net for a hung child or call, never a synchronisation point.
const DEADLINE: Duration = Duration::from_secs(120);
const PUBLIC_URL: &str = "https://gateway.test";

const PLIVO_AUTH_TOKEN: &str = "plivo-auth-token-logcheck-7d1f";
const OPENAI_API_KEY: &str = "sk-logcheck-0a1b2c3d4e5f6a7b8c9d";
/// A key some deployments put in the provider's URL (Azure's `api-key`, Gemini's `key`).
const URL_KEY: &str = "urlkey-logcheck-9f8e7d6c";
const STREAM_SECRET: &str = "stream-secret-logcheck-0123456789abcdef0123";

/// The seeded lead's number (`seed_org`: `+1415555` and the index) and name.
const LEAD_PHONE: &str = "14155550000";
const LEAD_NAME: &str = "Lead 0 of Logged Homes";
/// Our caller ID on the outbound call.
const CALLER_ID: &str = "442079460958";
/// An inbound caller nobody knows, calling a number nobody owns.
const STRANGER: &str = "4915112345678";
const STRANGER_DIALLED: &str = "14155559876";
/// A lead created through the API, and a number put on the do-not-call list.
const API_LEAD_PHONE: &str = "33612345678";
const API_LEAD_NAME: &str = "Marie Sklodowska";
const DNC_PHONE: &str = "61412345678";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_logs_of_a_whole_call_and_the_api_hold_no_numbers_names_tokens_or_keys() {
    let test = TestDb::new().await;
    let org = seed_org(test.pool(), "Logged Homes", 1).await;
    let fake = FakeRealtimeServer::start(conversation(vec![
        turn(
            "I would like to hear more",
            "Great, it is a two bedroom flat by the lake.",
            None,
        ),
        turn(
            "No thanks, that is all, goodbye",
            "Thank you, goodbye.",
            Some(("end_call", json!({"reason": "caller is done"}))),
        ),
    ]))
    .await
    .unwrap();
    let data_dir = tempfile::tempdir().unwrap();
    let realtime_url = format!("{}?api-key={URL_KEY}", fake.url());
    let mut child = Command::new(BINARY)
        .arg("serve")
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .envs([
            ("DATABASE_URL", test.url.as_str()),
            ("VG_DATA_DIR", data_dir.path().to_str().unwrap()),
            ("VG_LISTEN", "127.0.0.1:0"),
            ("VG_PUBLIC_URL", PUBLIC_URL),
            ("VG_SERVER_NAME", "gw-logs"),
            ("VG_STREAM_SECRET", STREAM_SECRET),
            ("VG_AI_PROVIDER", "openai"),
            ("OPENAI_API_KEY", OPENAI_API_KEY),
            ("OPENAI_REALTIME_URL", realtime_url.as_str()),
            ("PLIVO_AUTH_ID", "MALOGCHECK"),
            ("PLIVO_AUTH_TOKEN", PLIVO_AUTH_TOKEN),
            ("VG_DIALER_ENABLED", "false"),
            ("VG_GREETING_GUARD_MS", "300"),
            ("VG_LOG_FORMAT", "json"),
            ("RUST_LOG", "info"),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn serve");

    // Every line is kept; the ones read so far are also handed over as they arrive.
    let (lines_tx, mut lines_rx) = mpsc::channel::<String>(1024);
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let reader = tokio::spawn(async move {
        let mut all = Vec::new();
        while let Some(line) = stderr.next_line().await.expect("read stderr") {
            let _ = lines_tx.send(line.clone()).await;
            all.push(line);
        }
        all
    });
    let listening = tokio::time::timeout(DEADLINE, async {
        while let Some(line) = lines_rx.recv().await {
            let value: Value = serde_json::from_str(&line).expect("a JSON log line");
            if value["message"] == "listening" {
                return value;
            }
        }
        panic!("serve exited before listening");
    })
    .await
    .expect("listening in time");
    // The reader must never block on a full channel: drain it from now on.
    tokio::spawn(async move { while lines_rx.recv().await.is_some() {} });
    let address = listening["address"].as_str().unwrap().to_owned();
    let http = reqwest::Client::new();

    // A whole outbound call: the agent ends it after the caller's goodbye.
    let caller = CallerConfig {
        gateway: format!("http://{address}"),
        public_url: PUBLIC_URL.to_owned(),
        auth_token: PLIVO_AUTH_TOKEN.to_owned(),
        call_sid: "CA-logs".to_owned(),
        answer_query: format!(
            "lead_id={}&campaign_id={}",
            org.lead_ids[0], org.campaign_id
        ),
        from: CALLER_ID.to_owned(),
        to: LEAD_PHONE.to_owned(),
        keep_agent_audio: false,
    };
    let script = [
        Step::WaitForAgentAudio,
        Step::WaitForAgentSilence(Duration::from_millis(300)),
        Step::Speak(Duration::from_millis(500)),
        Step::WaitForAgentAudio,
        Step::WaitForAgentSilence(Duration::from_millis(400)),
        Step::Speak(Duration::from_millis(500)),
        Step::WaitForClose,
    ];
    let report = tokio::time::timeout(DEADLINE, plivo_caller::place_call(&caller, &http, &script))
        .await
        .expect("the call finished in time")
        .expect("the call ran");
    assert_eq!(report.answer_status, 200, "{}", report.answer_xml);
    assert!(report.closed_by_gateway, "the agent ended the call");
    let stream_url = report.stream_url.clone().unwrap();
    let stream_token = stream_url.split_once("token=").unwrap().1.to_owned();

    // The same stream URL again: refused as a replay.
    assert!(
        plivo_caller::connect_stream(&caller, &stream_url)
            .await
            .is_err()
    );
    // Plivo's stream-status callback (with the stream's URL) and the hangup callback.
    let form = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect()
    };
    let stream_status = form(&[
        ("Event", "StopStream"),
        ("CallUUID", "CA-logs"),
        ("StreamID", "stream-CA-logs"),
        ("From", CALLER_ID),
        ("To", LEAD_PHONE),
        ("ServiceURL", &stream_url),
        ("Timestamp", "2026-06-15 13:20:00"),
    ]);
    let answered =
        plivo_caller::signed_post(&caller, &http, "/plivo/stream-status", &stream_status)
            .await
            .unwrap();
    assert_eq!(answered.status(), 200);
    let hangup = form(&[
        ("CallUUID", "CA-logs"),
        ("From", CALLER_ID),
        ("To", LEAD_PHONE),
        ("CallStatus", "completed"),
        ("Duration", "7"),
        ("HangupCause", "NORMAL_CLEARING"),
    ]);
    let answered = plivo_caller::signed_post(&caller, &http, "/plivo/hangup", &hangup)
        .await
        .unwrap();
    assert_eq!(answered.status(), 200);
    // A stranger calls a number nobody owns: a polite goodbye, and a warning.
    let stranger = form(&[
        ("CallUUID", "CA-stranger"),
        ("From", STRANGER),
        ("To", STRANGER_DIALLED),
        ("Direction", "inbound"),
        ("CallStatus", "in-progress"),
    ]);
    let answered = plivo_caller::signed_post(&caller, &http, "/plivo/answer", &stranger)
        .await
        .unwrap();
    assert_eq!(answered.status(), 200);

    // The campaign API with a bearer token: a lead, the do-not-call list, a wrong token.
    let bearer = issue(&test, org.id, Scope::ALL).await;
    let wrong_bearer = "vg_logcheck_not_a_real_token_31337";
    let api = |method: Method, path: String, token: &str, body: Option<Value>| {
        let mut request = http
            .request(method, format!("http://{address}/api/v1{path}"))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };
    let campaign = org.campaign_id;
    let lead = json!({"name": API_LEAD_NAME, "phone": format!("+{API_LEAD_PHONE}")});
    assert_eq!(
        api(
            Method::POST,
            format!("/campaigns/{campaign}/leads"),
            &bearer,
            Some(lead.clone())
        )
        .await,
        201
    );
    assert_eq!(
        api(
            Method::POST,
            format!("/campaigns/{campaign}/leads"),
            &bearer,
            Some(lead)
        )
        .await,
        409,
        "a duplicate"
    );
    let listed =
        json!({"phone_number": format!("+{DNC_PHONE}"), "reason": "asked", "source": "api"});
    assert_eq!(
        api(
            Method::POST,
            "/do-not-call".to_owned(),
            &bearer,
            Some(listed)
        )
        .await,
        201
    );
    assert_eq!(
        api(
            Method::DELETE,
            format!("/do-not-call/%2B{DNC_PHONE}"),
            &bearer,
            None
        )
        .await,
        204
    );
    assert_eq!(
        api(Method::GET, "/campaigns".to_owned(), wrong_bearer, None).await,
        401
    );

    // Stop the gateway (the drain writes the call), then read what it logged.
    let pid = child.id().expect("running").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(DEADLINE, child.wait())
        .await
        .expect("serve stopped in time")
        .unwrap();
    assert!(status.success(), "serve exits 0 after SIGTERM: {status}");
    let lines = reader.await.unwrap();
    fake.stop().await;

    // Not vacuous: the call, the callbacks, the stranger and the API were logged.
    let messages: Vec<String> = lines
        .iter()
        .map(|line| {
            let value: Value = serde_json::from_str(line).expect("a JSON log line");
            value["message"].as_str().unwrap_or_default().to_owned()
        })
        .collect();
    for expected in [
        "call answered",
        "call ended",
        "stream refused: token replayed",
        "stream status",
        "unknown call: no matching lead and campaign",
        "stopped",
    ] {
        assert!(
            messages.iter().any(|message| message == expected),
            "{expected:?} was logged: {messages:#?}"
        );
    }

    let forbidden = [
        ("the lead's number", LEAD_PHONE.to_owned()),
        ("the lead's name", LEAD_NAME.to_owned()),
        ("the caller ID", CALLER_ID.to_owned()),
        ("the stranger's number", STRANGER.to_owned()),
        (
            "the number the stranger dialled",
            STRANGER_DIALLED.to_owned(),
        ),
        ("the API lead's number", API_LEAD_PHONE.to_owned()),
        ("the API lead's name", API_LEAD_NAME.to_owned()),
        ("the do-not-call number", DNC_PHONE.to_owned()),
        ("a URL with a token", "token=".to_owned()),
        ("the stream token", stream_token),
        ("the stream secret", STREAM_SECRET.to_owned()),
        ("the API bearer token", bearer),
        ("a refused bearer token", wrong_bearer.to_owned()),
        ("the Plivo auth token", PLIVO_AUTH_TOKEN.to_owned()),
        ("the OpenAI API key", OPENAI_API_KEY.to_owned()),
        ("the key in the provider's URL", URL_KEY.to_owned()),
    ];
    let leaks: Vec<String> = forbidden
        .iter()
        .flat_map(|(what, needle)| {
            lines
                .iter()
                .filter(move |line| line.contains(needle.as_str()))
                .map(move |line| format!("{what}: {line}"))
        })
        .collect();
    assert!(leaks.is_empty(), "leaked at info:\n{}", leaks.join("\n"));

    // Numbers are shortened, not dropped: the stranger's last digits tell calls apart.
    let unknown = lines
        .iter()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .find(|value| value["message"] == "unknown call: no matching lead and campaign")
        .unwrap();
    assert_eq!(unknown["from"], "…5678", "{unknown}");
    assert_eq!(unknown["to"], "…9876", "{unknown}");
}
