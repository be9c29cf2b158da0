//! Limits before work: what a misbehaving peer gets before it costs real work. The HTTP
//! server's header timeout, idle timeout and connection cap (over raw sockets, so the test
//! decides when each byte leaves), the media WebSocket's message size and rate, and the CSV
//! import's record size and pace.

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::mpsc;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use uuid::Uuid;
use voice_gateway::{
    api::tokens::Scope,
    simulators::{openai_realtime::FakeRealtimeConfig, plivo_caller::Step},
};

use crate::{
    call::Fixture,
    campaign_api::{issue, upload_stream},
    helpers::{TestApp, TestDb, seed_org, settings_for},
};

/// A safety net for a read that should end much sooner; never a synchronisation by itself.
const DEADLINE: Duration = Duration::from_secs(20);
const HEALTH_REQUEST: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n";

async fn gateway(extra: &[(&str, &str)]) -> (TestDb, TestApp) {
    let test = TestDb::new().await;
    let name = format!("gw-{}", Uuid::new_v4().simple());
    let app = TestApp::spawn(settings_for(&test.url, &name, extra)).await;
    (test, app)
}

/// Reads one HTTP/1.1 answer with a `content-length`: its status and body.
async fn read_answer(socket: &mut (impl AsyncRead + Unpin)) -> (u16, String) {
    let read = async {
        let mut received = Vec::new();
        let mut byte = [0u8; 1];
        while !received.ends_with(b"\r\n\r\n") {
            let read = socket.read(&mut byte).await.expect("an answer");
            assert_eq!(read, 1, "closed mid-answer: {received:?}");
            received.push(byte[0]);
        }
        let head = String::from_utf8(received).unwrap();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        let length: usize = head
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().unwrap())
            })
            .expect("a content-length");
        let mut body = vec![0u8; length];
        socket.read_exact(&mut body).await.unwrap();
        (status, String::from_utf8(body).unwrap())
    };
    tokio::time::timeout(DEADLINE, read)
        .await
        .expect("an answer in time")
}

/// Waits until the server closes `socket`, returning whatever it sent first.
async fn read_until_closed(socket: &mut (impl AsyncRead + Unpin)) -> Vec<u8> {
    let mut received = Vec::new();
    let read = async {
        let mut buffer = [0u8; 1024];
        loop {
            match socket.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(read) => received.extend_from_slice(&buffer[..read]),
            }
        }
    };
    tokio::time::timeout(DEADLINE, read)
        .await
        .expect("the server closed the connection in time");
    received
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_sent_byte_by_byte_slower_than_the_header_timeout_is_cut_off() {
    let (_test, app) = gateway(&[
        ("VG_HTTP_HEADER_TIMEOUT_SECS", "1"),
        ("VG_HTTP_IDLE_TIMEOUT_SECS", "60"),
    ])
    .await;
    let started = Instant::now();
    let (mut reader, mut writer) = TcpStream::connect(app.address).await.unwrap().into_split();
    // 41 bytes at one per 100 ms: the head would be complete after about 4 s.
    let sender = tokio::spawn(async move {
        let mut ticker = tokio::time::interval(Duration::from_millis(100));
        for byte in HEALTH_REQUEST {
            ticker.tick().await;
            if writer.write_all(&[*byte]).await.is_err() {
                return;
            }
        }
        std::future::pending::<()>().await;
    });
    let answer = read_until_closed(&mut reader).await;
    let cut_after = started.elapsed();
    sender.abort();
    assert!(
        answer.is_empty(),
        "a head that never completed gets no answer: {:?}",
        String::from_utf8_lossy(&answer)
    );
    assert!(
        cut_after >= Duration::from_secs(1),
        "not before the timeout: {cut_after:?}"
    );

    // A client that sends its head at once is served as ever.
    let mut socket = TcpStream::connect(app.address).await.unwrap();
    socket.write_all(HEALTH_REQUEST).await.unwrap();
    assert_eq!(read_answer(&mut socket).await, (200, "ok".to_owned()));
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    // The header timeout is far longer than the test's deadline: only the idle timeout can
    // close this connection in time.
    let (_test, app) = gateway(&[
        ("VG_HTTP_HEADER_TIMEOUT_SECS", "120"),
        ("VG_HTTP_IDLE_TIMEOUT_SECS", "1"),
    ])
    .await;
    let mut socket = TcpStream::connect(app.address).await.unwrap();
    for _ in 0..2 {
        socket.write_all(HEALTH_REQUEST).await.unwrap();
        assert_eq!(read_answer(&mut socket).await, (200, "ok".to_owned()));
    }
    let answered = Instant::now();
    let after = read_until_closed(&mut socket).await;
    assert!(after.is_empty(), "{:?}", String::from_utf8_lossy(&after));
    assert!(
        answered.elapsed() < Duration::from_secs(10),
        "closed by the idle timeout, not the header timeout"
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_over_the_cap_is_answered_503_and_the_freed_place_is_reused() {
    let (_test, app) = gateway(&[("VG_HTTP_MAX_CONNECTIONS", "2")]).await;
    // Two keep-alive connections, served, and held open.
    let mut first = TcpStream::connect(app.address).await.unwrap();
    let mut second = TcpStream::connect(app.address).await.unwrap();
    for socket in [&mut first, &mut second] {
        socket.write_all(HEALTH_REQUEST).await.unwrap();
        assert_eq!(read_answer(socket).await, (200, "ok".to_owned()));
    }

    let mut third = TcpStream::connect(app.address).await.unwrap();
    third.write_all(HEALTH_REQUEST).await.unwrap();
    let refused = String::from_utf8(read_until_closed(&mut third).await).unwrap();
    assert!(
        refused.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{refused:?}"
    );
    assert!(refused.contains("connection: close\r\n"), "{refused:?}");
    assert!(refused.ends_with("too many connections\n"), "{refused:?}");

    // The two held connections were not disturbed.
    second.write_all(HEALTH_REQUEST).await.unwrap();
    assert_eq!(read_answer(&mut second).await, (200, "ok".to_owned()));

    // A closed connection frees its place (once the server has seen it close).
    drop(first);
    let started = Instant::now();
    loop {
        let mut socket = TcpStream::connect(app.address).await.unwrap();
        socket.write_all(HEALTH_REQUEST).await.unwrap();
        let answer = String::from_utf8(read_until_closed_or_answer(&mut socket).await).unwrap();
        if answer.starts_with("HTTP/1.1 200 OK\r\n") {
            break;
        }
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer:?}");
        assert!(
            started.elapsed() < DEADLINE,
            "the closed connection's place was never freed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.shutdown().await;
}

/// The first answer on `socket`: a 200's head, or a refusal until the server closed.
async fn read_until_closed_or_answer(socket: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    let read = async {
        let mut buffer = [0u8; 1024];
        while !received.windows(4).any(|window| window == b"\r\n\r\n") {
            match socket.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(read) => received.extend_from_slice(&buffer[..read]),
            }
        }
    };
    tokio::time::timeout(DEADLINE, read)
        .await
        .expect("an answer in time");
    received
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgraded_websocket_keeps_its_place_under_the_cap_and_does_not_hold_the_shutdown() {
    use axum::{extract::ws::WebSocketUpgrade, routing::get};
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let router = axum::Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/ws",
            get(|upgrade: WebSocketUpgrade| async move {
                upgrade.on_upgrade(|mut socket| async move {
                    while let Some(Ok(message)) = socket.recv().await {
                        if socket.send(message).await.is_err() {
                            return;
                        }
                    }
                })
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let limits = voice_gateway::config::HttpLimits {
        header_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
        max_connections: 1,
    };
    let server = tokio::spawn(voice_gateway::http::server::serve(
        listener,
        router,
        limits,
        stop.clone(),
    ));

    let (mut websocket, _) = tokio_tungstenite::connect_async(format!("ws://{address}/ws"))
        .await
        .unwrap();
    websocket.send(Message::text("ping")).await.unwrap();
    assert_eq!(
        websocket.next().await.unwrap().unwrap(),
        Message::text("ping")
    );
    // The upgraded socket is the one connection allowed.
    let mut plain = TcpStream::connect(address).await.unwrap();
    plain.write_all(HEALTH_REQUEST).await.unwrap();
    let refused = String::from_utf8(read_until_closed(&mut plain).await).unwrap();
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused:?}");

    // The server stops without waiting for the WebSocket, which lives on.
    stop.cancel();
    tokio::time::timeout(DEADLINE, server)
        .await
        .expect("the server stopped with a WebSocket open")
        .unwrap();
    websocket.send(Message::text("still here")).await.unwrap();
    assert_eq!(
        websocket.next().await.unwrap().unwrap(),
        Message::text("still here")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_media_message_over_64_kib_closes_the_socket_with_1009_and_the_call_is_closed() {
    let fixture = Fixture::start(FakeRealtimeConfig::default(), 1, &[]).await;
    // 65 KiB of JSON: one frame over the limit, however well-formed.
    let oversized = format!(
        r#"{{"event":"media","media":{{"payload":"{}"}}}}"#,
        "A".repeat(65 * 1024)
    );
    let script = [
        Step::WaitForAgentAudio,
        Step::SendRaw(oversized),
        Step::WaitForClose,
    ];
    let report = fixture.call(0, "CA-too-big", &script).await;
    assert!(report.closed_by_gateway);
    assert_eq!(report.close_code, Some(1009), "message too big");
    let health = fixture
        .http
        .get(fixture.app.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200, "one call ended, not the gateway");
    let (test, _, _) = fixture.finish().await;
    let row = test.db.call_log("CA-too-big").await.unwrap().unwrap();
    assert_eq!(row.end_reason.as_deref(), Some("protocol_error"));
    assert!(row.ended_at.is_some(), "the call's row is closed");
    assert_eq!(
        row.metadata.unwrap()["end_reason"],
        "protocol_error",
        "written by the call's own close"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_media_frames_is_dropped_above_the_ceiling_and_the_call_goes_on() {
    const FLOOD: usize = 3000;
    let fixture = Fixture::start(FakeRealtimeConfig::default(), 1, &[]).await;
    let script = [
        Step::WaitForAgentAudio,
        Step::Flood(FLOOD),
        Step::Silence(Duration::from_millis(300)),
        Step::HangUp,
    ];
    let report = fixture.call(0, "CA-flood", &script).await;
    assert!(
        !report.closed_by_gateway,
        "the caller hung up; the gateway kept the call through the flood"
    );
    let appended = fixture.fake.log(|log| log.appended_frames);
    let (test, _, _) = fixture.finish().await;
    let row = test.db.call_log("CA-flood").await.unwrap().unwrap();
    assert_eq!(row.end_reason.as_deref(), Some("caller_hangup"));
    let frames = &row.metadata.unwrap()["frames"];
    let flooded = frames["flooded"].as_u64().expect("flooded frames counted");
    let admitted = frames["in"].as_u64().unwrap();
    eprintln!("a flood of {FLOOD} frames: {frames}, {appended} appended to the provider");
    // At most a second's burst (200) plus 200 a second passes; 3,000 sent at once cannot.
    assert!(flooded > 0, "{frames}");
    assert!(admitted < FLOOD as u64, "{frames}");
    assert!(
        appended < FLOOD as u64,
        "the flood did not reach the provider: {appended} appends"
    );
}

/// A gateway with `extra` settings, an organization with a campaign, and a token for it.
struct Importer {
    test: TestDb,
    app: TestApp,
    campaign_id: Uuid,
    token: String,
}

impl Importer {
    async fn start(extra: &[(&str, &str)]) -> Self {
        let (test, app) = gateway(extra).await;
        let org = seed_org(test.pool(), "Acme Homes", 0).await;
        let token = issue(&test, org.id, Scope::ALL).await;
        Self {
            test,
            app,
            campaign_id: org.campaign_id,
            token,
        }
    }

    fn import_path(&self) -> String {
        format!("/api/v1/campaigns/{}/leads/import", self.campaign_id)
    }

    async fn upload(&self, csv: String) -> (u16, Value) {
        let response = reqwest::Client::new()
            .post(self.app.url(&self.import_path()))
            .bearer_auth(&self.token)
            .header("content-type", "text/csv")
            .body(csv)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    /// Leads and attempts an import left in the campaign.
    async fn imported(&self) -> (i64, i64) {
        let leads = sqlx::query_scalar(
            "SELECT count(*) FROM leads WHERE source = 'csv_upload'
               AND organization_id = (SELECT organization_id FROM campaigns WHERE id = $1)",
        )
        .bind(self.campaign_id)
        .fetch_one(self.test.pool())
        .await
        .unwrap();
        let attempts =
            sqlx::query_scalar("SELECT count(*) FROM dial_attempts WHERE campaign_id = $1")
                .bind(self.campaign_id)
                .fetch_one(self.test.pool())
                .await
                .unwrap();
        (leads, attempts)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csv_record_over_64_kib_is_refused_naming_its_line_and_nothing_is_imported() {
    let importer = Importer::start(&[]).await;
    let notes = "n".repeat(65 * 1024);
    let csv = format!(
        "name,phone,notes\nAda,+14155550100,first\nBo,+14155550101,{notes}\nCy,+14155550102,last\n"
    );
    let (status, body) = importer.upload(csv).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "record_too_large", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("line 3: "), "{message}");
    assert!(message.contains("nothing was imported"), "{message}");
    assert_eq!(importer.imported().await, (0, 0));

    // The same file without the long record imports whole.
    let csv = "name,phone,notes\nAda,+14155550100,first\nCy,+14155550102,last\n".to_owned();
    let (status, body) = importer.upload(csv).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(importer.imported().await, (2, 2));
    importer.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickling_csv_upload_is_abandoned_with_408_and_nothing_is_imported() {
    // After a second the body must have arrived at 1,000 bytes a second on average.
    let importer = Importer::start(&[
        ("VG_IMPORT_RATE_GRACE_SECS", "1"),
        ("VG_IMPORT_MIN_BYTES_PER_SEC", "1000"),
    ])
    .await;
    let (chunks, receiver) = mpsc::channel::<Vec<u8>>(1);
    let started = Instant::now();
    let upload = tokio::spawn(upload_stream(
        importer.app.address,
        importer.import_path(),
        importer.token.clone(),
        receiver,
    ));
    // A row every 100 ms (about 200 bytes a second), for 20 s at most.
    let feeder = tokio::spawn(async move {
        chunks.send(b"name,phone\n".to_vec()).await.ok()?;
        let mut ticker = tokio::time::interval(Duration::from_millis(100));
        for index in 0..200 {
            ticker.tick().await;
            let row = format!("Lead {index},+1415555{index:04}\n");
            chunks.send(row.into_bytes()).await.ok()?;
        }
        Some(())
    });
    let (status, body) = tokio::time::timeout(DEADLINE, upload)
        .await
        .expect("the upload was answered in time")
        .unwrap();
    let answered_after = started.elapsed();
    feeder.abort();
    assert_eq!(status, 408, "{body}");
    assert_eq!(body["error"]["code"], "upload_too_slow", "{body}");
    assert!(
        answered_after >= Duration::from_secs(1),
        "not before the grace period: {answered_after:?}"
    );
    assert_eq!(
        importer.imported().await,
        (0, 0),
        "the transaction rolled back"
    );

    // An upload at an honest pace, under the same settings, imports.
    let (status, body) = importer
        .upload("name,phone\nAda,+14155550100\n".to_owned())
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(importer.imported().await, (1, 1));
    importer.app.shutdown().await;
}
