//! "Nothing lost, nobody let in": the gate in front of Plivo's routes. V3 only unless V2 is
//! accepted explicitly; a signed request is single-use across every gateway on the database;
//! a body over 64 KiB is refused before it is read; each refusal changes nothing.

use std::time::Duration;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use uuid::Uuid;
use voice_gateway::{
    audio::AudioFormat,
    http::{MAX_WEBHOOK_BODY_BYTES, NONCE_REPLAY_WINDOW},
    plivo::signature::{self, Method},
    simulators::{
        openai_realtime::{FakeRealtimeConfig, FakeRealtimeServer, FakeTurn},
        plivo_caller::{self, CallReport, CallerConfig, Step},
    },
};

use crate::{
    campaign_api::wait_until,
    helpers::{Org, TestApp, TestDb, seed_org, settings_for},
};

const AUTH_TOKEN: &str = "plivo-test-token";
const PUBLIC_URL: &str = "https://gateway.test";
/// A safety net for a raw exchange with the gateway, never a synchronisation point.
const DEADLINE: Duration = Duration::from_secs(30);

/// A gateway named `name` on the test's database, with Plivo's credentials. Its dialer is off:
/// these tests count every row written.
async fn gateway(test: &TestDb, name: &str, extra: &[(&str, &str)]) -> TestApp {
    let mut settings = vec![
        ("PLIVO_AUTH_ID", "MATEST"),
        ("PLIVO_AUTH_TOKEN", AUTH_TOKEN),
        ("VG_DIALER_ENABLED", "false"),
    ];
    settings.extend_from_slice(extra);
    TestApp::spawn(settings_for(&test.url, name, &settings)).await
}

/// A webhook request exactly as Plivo would send it: path, form body and signature headers.
#[derive(Debug, Clone)]
struct Signed {
    path: String,
    body: String,
    /// `(header, value)` pairs: the signature and its nonce.
    headers: [(&'static str, String); 2],
}

fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

fn encode(pairs: &[(String, String)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// Signed with X-Plivo-Signature-V3 over the public URL, the query and the form.
fn v3(path: &str, pairs: &[(String, String)], nonce: &str) -> Signed {
    let signature = signature::v3_signature(
        AUTH_TOKEN.as_bytes(),
        Method::Post,
        &format!("{PUBLIC_URL}{path}"),
        pairs,
        nonce,
    );
    Signed {
        path: path.to_owned(),
        body: encode(pairs),
        headers: [
            ("X-Plivo-Signature-V3", signature),
            ("X-Plivo-Signature-V3-Nonce", nonce.to_owned()),
        ],
    }
}

/// Signed only with the legacy X-Plivo-Signature-V2: the URL without its query, and the nonce.
fn v2(path: &str, pairs: &[(String, String)], nonce: &str) -> Signed {
    let signature =
        signature::v2_signature(AUTH_TOKEN.as_bytes(), &format!("{PUBLIC_URL}{path}"), nonce);
    Signed {
        path: path.to_owned(),
        body: encode(pairs),
        headers: [
            ("X-Plivo-Signature-V2", signature),
            ("X-Plivo-Signature-V2-Nonce", nonce.to_owned()),
        ],
    }
}

async fn send(http: &reqwest::Client, app: &TestApp, request: &Signed) -> reqwest::StatusCode {
    let mut builder = http
        .post(app.url(&request.path))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(request.body.clone());
    for (name, value) in &request.headers {
        builder = builder.header(*name, value);
    }
    builder.send().await.unwrap().status()
}

fn hangup_path(org: &Org, lead: usize) -> String {
    format!(
        "/plivo/hangup?lead_id={}&campaign_id={}",
        org.lead_ids[lead], org.campaign_id
    )
}

/// The hangup callback of a call the line was busy for.
fn busy(call_sid: &str) -> Vec<(String, String)> {
    form(&[
        ("CallUUID", call_sid),
        ("CallStatus", "busy"),
        ("HangupCause", "USER_BUSY"),
        ("Duration", "0"),
    ])
}

/// Every row a webhook can write, with its tuple version (`xmin`): a rewrite with the same
/// values still shows.
async fn snapshot(test: &TestDb) -> Vec<(String, String, String)> {
    sqlx::query_as(
        r#"SELECT 'call_logs', id::text, xmin::text FROM call_logs
           UNION ALL SELECT 'call_events', id::text, xmin::text FROM call_events
           UNION ALL SELECT 'leads', id::text, xmin::text FROM leads
           UNION ALL SELECT 'campaigns', id::text, xmin::text FROM campaigns
           UNION ALL SELECT 'dial_attempts', id::text, xmin::text FROM dial_attempts
           UNION ALL SELECT 'plivo_webhook_nonces', version || ':' || nonce, xmin::text
                     FROM plivo_webhook_nonces
           ORDER BY 1, 2"#,
    )
    .fetch_all(test.pool())
    .await
    .unwrap()
}

async fn end_reason(test: &TestDb, call_sid: &str) -> Option<String> {
    test.db
        .call_log(call_sid)
        .await
        .unwrap()
        .and_then(|row| row.end_reason)
}

async fn nonces(test: &TestDb) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT version || ':' || nonce FROM plivo_webhook_nonces ORDER BY version, nonce",
    )
    .fetch_all(test.pool())
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_signed_only_with_v2_is_refused_unless_v2_is_accepted() {
    let test = TestDb::new().await;
    let org = seed_org(test.pool(), "Acme Homes", 2).await;
    let strict = gateway(&test, "gw-strict", &[]).await;
    let lenient = gateway(&test, "gw-lenient", &[("VG_PLIVO_ACCEPT_V2", "true")]).await;
    let http = reqwest::Client::new();

    let request = v2(&hangup_path(&org, 0), &busy("CA-v2"), "424242");
    let before = snapshot(&test).await;
    assert_eq!(
        send(&http, &strict, &request).await,
        403,
        "V3 only by default"
    );
    assert_eq!(
        snapshot(&test).await,
        before,
        "a refused request changes nothing"
    );

    assert_eq!(send(&http, &lenient, &request).await, 200);
    assert_eq!(end_reason(&test, "CA-v2").await.as_deref(), Some("busy"));
    assert_eq!(
        nonces(&test).await,
        ["v2:424242"],
        "a V2 nonce is remembered too"
    );

    // Why V2 is opt-in: the captured header pair verifies with any query and body (another
    // lead, another call). Only the remembered nonce stops it.
    let forged = Signed {
        path: hangup_path(&org, 1),
        body: encode(&busy("CA-forged")),
        headers: request.headers.clone(),
    };
    let before = snapshot(&test).await;
    assert_eq!(send(&http, &lenient, &forged).await, 403);
    assert_eq!(snapshot(&test).await, before);
    assert_eq!(end_reason(&test, "CA-forged").await, None);

    strict.shutdown().await;
    lenient.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_v3_request_is_refused_by_a_second_gateway_and_changes_nothing() {
    let test = TestDb::new().await;
    let org = seed_org(test.pool(), "Acme Homes", 1).await;
    let first = gateway(&test, "gw-first", &[]).await;
    let second = gateway(&test, "gw-second", &[]).await;
    let http = reqwest::Client::new();

    let request = v3(&hangup_path(&org, 0), &busy("CA-replayed"), "31415926");
    assert_eq!(send(&http, &first, &request).await, 200);
    assert_eq!(
        end_reason(&test, "CA-replayed").await.as_deref(),
        Some("busy")
    );
    assert_eq!(nonces(&test).await, ["v3:31415926"]);

    // The same nonce and signature: refused on the other gateway and on the first, before the
    // handler (which would rewrite the call's row) runs.
    let before = snapshot(&test).await;
    assert_eq!(send(&http, &second, &request).await, 403);
    assert_eq!(send(&http, &first, &request).await, 403);
    assert_eq!(snapshot(&test).await, before, "a replay changes nothing");

    // Plivo's own repeat of a callback carries a fresh nonce, and is served as before.
    let repeat = v3(&hangup_path(&org, 0), &busy("CA-replayed"), "27182818");
    assert_eq!(send(&http, &second, &repeat).await, 200);
    let total: i32 = sqlx::query_scalar("SELECT total_calls FROM campaigns WHERE id = $1")
        .bind(org.campaign_id)
        .fetch_one(test.pool())
        .await
        .unwrap();
    assert_eq!(total, 1, "counted once");

    first.shutdown().await;
    second.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_failed_on_our_side_keeps_no_nonce_so_its_retry_is_served() {
    let test = TestDb::new().await;
    let org = seed_org(test.pool(), "Acme Homes", 1).await;
    // The call's row cannot be written while `flaky` has a row: the database fails the insert.
    sqlx::raw_sql(
        r#"CREATE TABLE flaky (on_purpose boolean);
           INSERT INTO flaky VALUES (true);
           CREATE FUNCTION fail_flaky() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN
               IF NEW.call_sid = 'CA-flaky' AND EXISTS (SELECT 1 FROM flaky) THEN
                   RAISE EXCEPTION 'flaky on purpose';
               END IF;
               RETURN NEW;
           END $$;
           CREATE TRIGGER call_logs_flaky BEFORE INSERT ON call_logs
               FOR EACH ROW EXECUTE FUNCTION fail_flaky();"#,
    )
    .execute(test.pool())
    .await
    .unwrap();
    let app = gateway(&test, "gw-flaky", &[]).await;
    let http = reqwest::Client::new();

    let request = v3(&hangup_path(&org, 0), &busy("CA-flaky"), "55555");
    assert_eq!(send(&http, &app, &request).await, 503);
    assert!(
        nonces(&test).await.is_empty(),
        "the failed request gave its nonce back"
    );

    sqlx::query("DELETE FROM flaky")
        .execute(test.pool())
        .await
        .unwrap();
    assert_eq!(
        send(&http, &app, &request).await,
        200,
        "a retry with the same nonce"
    );
    assert_eq!(end_reason(&test, "CA-flaky").await.as_deref(), Some("busy"));
    assert_eq!(
        send(&http, &app, &request).await,
        403,
        "once served, a replay"
    );
    app.shutdown().await;
}

/// Sends `head` (request line and headers) and `body` as they are, and returns the status line
/// of the answer. The connection stays open for writing: the gateway must answer without
/// waiting for more.
async fn raw_exchange(app: &TestApp, head: &str, body: &[u8]) -> String {
    let exchange = async {
        let mut socket = TcpStream::connect(app.address).await.unwrap();
        socket.write_all(head.as_bytes()).await.unwrap();
        socket.write_all(body).await.unwrap();
        let mut answer = Vec::new();
        let mut buffer = [0u8; 1024];
        while !answer.windows(2).any(|pair| pair == b"\r\n") {
            let read = socket.read(&mut buffer).await.unwrap();
            assert!(read > 0, "the gateway closed without answering");
            answer.extend_from_slice(&buffer[..read]);
        }
        let text = String::from_utf8_lossy(&answer).into_owned();
        text.lines().next().unwrap_or_default().to_owned()
    };
    tokio::time::timeout(DEADLINE, exchange)
        .await
        .expect("an answer in time")
}

fn head(request: &Signed, framing: &str) -> String {
    let mut head = format!(
        "POST {} HTTP/1.1\r\nHost: gateway.test\r\nContent-Type: application/x-www-form-urlencoded\r\n{framing}\r\n",
        request.path
    );
    for (name, value) in &request.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    head
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_body_over_64_kib_is_refused_with_413_before_it_is_read() {
    let test = TestDb::new().await;
    let org = seed_org(test.pool(), "Acme Homes", 1).await;
    let app = gateway(&test, "gw-limits", &[]).await;
    let http = reqwest::Client::new();
    let padded = |call_sid: &str, padding: usize| {
        let mut pairs = busy(call_sid);
        pairs.push(("Padding".to_owned(), "x".repeat(padding)));
        pairs
    };
    let before = snapshot(&test).await;

    // 65 KiB declared: refused on the header, with not one byte of the body sent.
    let large = v3(
        &hangup_path(&org, 0),
        &padded("CA-large", 65 * 1024),
        "1001",
    );
    assert!(large.body.len() > MAX_WEBHOOK_BODY_BYTES);
    let declared = head(&large, &format!("Content-Length: {}", large.body.len()));
    let status = raw_exchange(&app, &declared, b"").await;
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");

    // No length declared: read only up to the limit, refused without waiting for the end.
    let chunked = v3(
        &hangup_path(&org, 0),
        &padded("CA-chunked", 65 * 1024),
        "1002",
    );
    let mut body = Vec::new();
    for chunk in chunked.body.as_bytes()[..MAX_WEBHOOK_BODY_BYTES + 1].chunks(8 * 1024) {
        body.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        body.extend_from_slice(chunk);
        body.extend_from_slice(b"\r\n");
    }
    let status = raw_exchange(&app, &head(&chunked, "Transfer-Encoding: chunked"), &body).await;
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");

    assert_eq!(
        snapshot(&test).await,
        before,
        "no call, no nonce: nothing changed"
    );

    // Exactly at the limit is still a webhook.
    let prefix = encode(&busy("CA-limit")).len() + "&Padding=".len();
    let limit = v3(
        &hangup_path(&org, 0),
        &padded("CA-limit", MAX_WEBHOOK_BODY_BYTES - prefix),
        "1003",
    );
    assert_eq!(limit.body.len(), MAX_WEBHOOK_BODY_BYTES);
    assert_eq!(send(&http, &app, &limit).await, 200);
    assert_eq!(end_reason(&test, "CA-limit").await.as_deref(), Some("busy"));
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_stream_upgrade_is_single_use_across_gateways() {
    let test = TestDb::new().await;
    let org = seed_org(test.pool(), "Acme Homes", 1).await;
    let fake = FakeRealtimeServer::start(FakeRealtimeConfig {
        turns: vec![FakeTurn {
            caller_says: "hi".into(),
            agent_says: "bye".into(),
            tool: None,
        }],
        ..FakeRealtimeConfig::default()
    })
    .await
    .unwrap();
    let fake_url = fake.url();
    let provider = [
        ("VG_AI_PROVIDER", "openai"),
        ("OPENAI_API_KEY", "sk-test"),
        ("OPENAI_REALTIME_URL", fake_url.as_str()),
    ];
    let first = gateway(&test, "gw-first", &provider).await;
    let second = gateway(&test, "gw-second", &provider).await;
    let http = reqwest::Client::new();
    let caller = |app: &TestApp| CallerConfig {
        gateway: format!("http://{}", app.address),
        public_url: PUBLIC_URL.to_owned(),
        auth_token: AUTH_TOKEN.to_owned(),
        call_sid: "CA-stream".to_owned(),
        answer_query: format!(
            "lead_id={}&campaign_id={}",
            org.lead_ids[0], org.campaign_id
        ),
        from: "14155550100".to_owned(),
        to: "14155550000".to_owned(),
        keep_agent_audio: false,
    };
    let (status, xml, _) = plivo_caller::answer(&caller(&first), &http).await.unwrap();
    assert_eq!(status, 200);
    let stream_url = plivo_caller::stream_url_of(&xml).unwrap();
    let path = stream_url
        .strip_prefix("wss://gateway.test")
        .expect("the public stream URL");

    // A signed request for the socket that is no upgrade: the gate records its nonce, the
    // handler refuses it before the call token is looked at.
    let nonce = "8675309";
    let signature =
        signature::v3_signature(AUTH_TOKEN.as_bytes(), Method::Get, &stream_url, &[], nonce);
    let plain = http
        .get(first.url(path))
        .header("X-Plivo-Signature-V3", &signature)
        .header("X-Plivo-Signature-V3-Nonce", nonce)
        .send()
        .await
        .unwrap()
        .status();
    assert!(plain.is_client_error(), "{plain}");
    assert_ne!(plain, 403, "refused as no upgrade, not by the gate");
    assert_eq!(
        nonces(&test).await.len(),
        2,
        "the answer's and the socket's"
    );

    // The same signature as a real upgrade, on the other gateway: the nonce was seen.
    assert!(
        plivo_caller::connect_stream_with_nonce(&caller(&second), &stream_url, nonce)
            .await
            .is_err(),
        "a replayed upgrade is refused"
    );
    // The token itself was never used: with a fresh nonce the call goes through.
    let report = plivo_caller::run_stream(
        &caller(&second),
        &stream_url,
        &[Step::WaitForAgentAudio, Step::HangUp],
        AudioFormat::MULAW_8K,
        CallReport::default(),
    )
    .await
    .expect("the call token still works");
    assert!(!report.frames.is_empty());
    assert_eq!(nonces(&test).await.len(), 3);

    first.shutdown().await;
    second.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nonces_are_forgotten_after_the_replay_window() {
    let test = TestDb::new().await;
    let window_secs = NONCE_REPLAY_WINDOW.as_secs_f64();
    let insert = |nonce: &'static str, age_secs: f64| {
        sqlx::query(
            "INSERT INTO plivo_webhook_nonces (version, nonce, seen_at) VALUES ('v3', $1, now() - make_interval(secs => $2))",
        )
        .bind(nonce)
        .bind(age_secs)
        .execute(test.pool())
    };
    insert("old", window_secs + 3600.0).await.unwrap();
    insert("recent", window_secs - 3600.0).await.unwrap();
    assert_eq!(
        test.db
            .prune_webhook_nonces(NONCE_REPLAY_WINDOW)
            .await
            .unwrap(),
        1
    );
    assert_eq!(nonces(&test).await, ["v3:recent"]);

    // Every gateway prunes in the background, first at start-up.
    insert("stale", window_secs + 60.0).await.unwrap();
    let app = gateway(&test, &format!("gw-{}", Uuid::new_v4().simple()), &[]).await;
    wait_until("the stale nonce pruned", DEADLINE, || async {
        nonces(&test).await == ["v3:recent"]
    })
    .await;
    app.shutdown().await;
}
