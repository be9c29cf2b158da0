//! The websocket_servers registry: register, heartbeat, pick the best with room (full and
//! stale gateways skipped, a place reserved), deactivate.

use std::time::Duration;

use voice_gateway::{
    db::servers::Heartbeat,
    simulators::plivo_caller::{self, CallerConfig},
};

use crate::helpers::{TestApp, TestDb, seed_org, settings_for};

const BEAT: Duration = Duration::from_secs(10);
/// The capacity of the gateways these tests register, unless a test says otherwise.
const ROOMY: usize = 100;

async fn live_calls(db: &voice_gateway::db::Database, name: &str) -> i32 {
    db.stream_server(name).await.unwrap().unwrap().live_calls
}

/// Moves a gateway's last heartbeat `seconds` into the past.
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
async fn the_best_fresh_active_server_is_picked() {
    let test = TestDb::new().await;
    let db = &test.db;
    let fresh = BEAT;
    assert_eq!(
        db.pick_stream_server(fresh).await.unwrap(),
        None,
        "no servers, no pick"
    );

    db.register_server("gw-a", "wss://a.test/plivo/stream", 0, BEAT, ROOMY)
        .await
        .unwrap();
    db.register_server("gw-b", "wss://b.test/plivo/stream", 10, BEAT, ROOMY)
        .await
        .unwrap();
    db.register_server("gw-c", "wss://c.test/plivo/stream", 10, BEAT, ROOMY)
        .await
        .unwrap();
    assert_eq!(
        db.heartbeat_server("gw-b", 40, BEAT).await.unwrap(),
        Heartbeat::Active
    );
    assert_eq!(
        db.heartbeat_server("gw-c", 3, BEAT).await.unwrap(),
        Heartbeat::Active
    );
    let best = db.pick_stream_server(fresh).await.unwrap().unwrap();
    assert_eq!(
        best.name, "gw-c",
        "highest priority, then fewest live calls"
    );
    assert_eq!(best.url, "wss://c.test/plivo/stream");
    assert_eq!(
        best.max_calls,
        Some(ROOMY as i32),
        "the capacity registered"
    );
    assert_eq!(best.live_calls, 4, "a place reserved by the pick");
    assert_eq!(live_calls(db, "gw-c").await, 4);

    // A server that stopped heartbeating is stale and skipped.
    sqlx::query("UPDATE websocket_servers SET last_verified_at = now() - interval '5 minutes' WHERE name = 'gw-c'")
        .execute(db.pool())
        .await
        .unwrap();
    assert_eq!(
        db.pick_stream_server(fresh).await.unwrap().unwrap().name,
        "gw-b"
    );

    // Deactivated and failed servers are skipped; the heartbeat does not reactivate them.
    db.deactivate_server("gw-b").await.unwrap();
    assert_eq!(
        db.heartbeat_server("gw-b", 1, BEAT).await.unwrap(),
        Heartbeat::Inactive
    );
    assert!(!db.stream_server("gw-b").await.unwrap().unwrap().is_active);
    db.mark_server_failed("gw-a", "TLS handshake failed")
        .await
        .unwrap();
    assert_eq!(db.pick_stream_server(fresh).await.unwrap(), None);

    // Re-registering brings a server back, with the same row.
    db.register_server("gw-a", "wss://a2.test/plivo/stream", 1, BEAT, ROOMY)
        .await
        .unwrap();
    let back = db.pick_stream_server(fresh).await.unwrap().unwrap();
    assert_eq!(
        (back.name.as_str(), back.url.as_str(), back.status.as_str()),
        ("gw-a", "wss://a2.test/plivo/stream", "verified")
    );
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM websocket_servers")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(rows, 3);
}

#[tokio::test]
async fn full_and_stale_gateways_are_skipped_and_the_best_remaining_is_picked() {
    let test = TestDb::new().await;
    let db = &test.db;
    // (name, priority, heartbeat, capacity, live calls, heartbeat age in seconds)
    for (name, priority, heartbeat, capacity, live, age) in [
        ("gw-full", 10, 10, 5, 5, 0),    // the best priority, but full
        ("gw-stale", 10, 1, 100, 0, 4),  // 3 × its own 1 s: stale
        ("gw-slow", 5, 60, 100, 7, 100), // 3 × its own 60 s: alive, though old
        ("gw-busy", 5, 10, 100, 9, 0),   // same priority, more calls
        ("gw-low", 0, 10, 100, 0, 0),    // the lowest priority
    ] {
        db.register_server(
            name,
            &format!("wss://{name}.test/plivo/stream"),
            priority,
            Duration::from_secs(heartbeat),
            capacity,
        )
        .await
        .unwrap();
        db.heartbeat_server(name, live, Duration::from_secs(heartbeat))
            .await
            .unwrap();
        age_heartbeat(&test, name, age).await;
    }

    let picked = db.pick_stream_server(BEAT).await.unwrap().unwrap();
    assert_eq!(
        picked.name, "gw-slow",
        "full and stale skipped; then priority, then fewest calls"
    );
    assert_eq!(live_calls(db, "gw-slow").await, 8, "reserved");
    for (name, live) in [
        ("gw-full", 5),
        ("gw-stale", 0),
        ("gw-busy", 9),
        ("gw-low", 0),
    ] {
        assert_eq!(live_calls(db, name).await, live, "{name} untouched");
    }

    // Its heartbeat brings the stale gateway back; a place freed on the full one makes it
    // the best again.
    db.heartbeat_server("gw-stale", 6, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(
        db.pick_stream_server(BEAT).await.unwrap().unwrap().name,
        "gw-stale"
    );
    db.heartbeat_server("gw-full", 4, BEAT).await.unwrap();
    assert_eq!(
        db.pick_stream_server(BEAT).await.unwrap().unwrap().name,
        "gw-full"
    );
    assert_eq!(live_calls(db, "gw-full").await, 5, "full again");
    assert_eq!(
        db.pick_stream_server(BEAT).await.unwrap().unwrap().name,
        "gw-stale"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_picks_reserve_places_and_never_overfill_a_gateway() {
    let test = TestDb::new().await;
    let db = &test.db;
    for name in ["gw-a", "gw-b"] {
        db.register_server(
            name,
            &format!("wss://{name}.test/plivo/stream"),
            0,
            BEAT,
            10,
        )
        .await
        .unwrap();
    }
    // A burst of answers between two heartbeats.
    let picks = futures_util::future::join_all((0..25).map(|_| db.pick_stream_server(BEAT))).await;
    let picked: Vec<String> = picks
        .into_iter()
        .filter_map(|pick| pick.unwrap().map(|server| server.name))
        .collect();
    assert_eq!(picked.len(), 20, "as many as there are places: {picked:?}");
    for name in ["gw-a", "gw-b"] {
        assert_eq!(picked.iter().filter(|n| *n == name).count(), 10, "{name}");
        assert_eq!(live_calls(db, name).await, 10, "{name} full, never over");
    }
    assert_eq!(
        db.pick_stream_server(BEAT).await.unwrap(),
        None,
        "nobody has room"
    );

    // The heartbeat writes the real count: reservations whose stream never came are freed.
    db.heartbeat_server("gw-b", 3, BEAT).await.unwrap();
    assert_eq!(
        db.pick_stream_server(BEAT).await.unwrap().unwrap().name,
        "gw-b"
    );
    assert_eq!(live_calls(db, "gw-b").await, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_with_no_gateway_to_pick_streams_to_the_gateway_that_answered() {
    let test = TestDb::new().await;
    let org = seed_org(test.pool(), "Acme Homes", 1).await;
    let app = TestApp::spawn(settings_for(
        &test.url,
        "gw-self",
        &[
            ("PLIVO_AUTH_ID", "MATEST"),
            ("PLIVO_AUTH_TOKEN", crate::call::AUTH_TOKEN),
            ("VG_DIALER_ENABLED", "false"),
        ],
    ))
    .await;
    // Its own row is full, a peer with a better priority is full too, another is stale.
    sqlx::query("UPDATE websocket_servers SET max_calls = 0 WHERE name = 'gw-self'")
        .execute(test.pool())
        .await
        .unwrap();
    let db = &test.db;
    db.register_server("gw-full", "wss://full.test/plivo/stream", 10, BEAT, 1)
        .await
        .unwrap();
    db.heartbeat_server("gw-full", 1, BEAT).await.unwrap();
    db.register_server("gw-stale", "wss://stale.test/plivo/stream", 10, BEAT, ROOMY)
        .await
        .unwrap();
    age_heartbeat(&test, "gw-stale", 31).await;
    let http = reqwest::Client::new();
    let caller = CallerConfig {
        gateway: format!("http://{}", app.address),
        public_url: "https://gateway.test".to_owned(),
        auth_token: crate::call::AUTH_TOKEN.to_owned(),
        call_sid: "CA-nobody".to_owned(),
        answer_query: format!(
            "lead_id={}&campaign_id={}",
            org.lead_ids[0], org.campaign_id
        ),
        from: "14155550100".to_owned(),
        to: "14155550000".to_owned(),
        keep_agent_audio: false,
    };
    let url = answer_stream_url(&caller, &http).await;
    assert!(
        url.starts_with("wss://gateway.test/plivo/stream?token="),
        "the answering gateway's own stream: {url}"
    );
    for (name, live) in [("gw-self", 0), ("gw-full", 1), ("gw-stale", 0)] {
        assert_eq!(live_calls(db, name).await, live, "{name}: nothing reserved");
    }

    // Once the peer has room again, it gets the stream.
    db.heartbeat_server("gw-full", 0, BEAT).await.unwrap();
    let url = answer_stream_url(&caller, &http).await;
    assert!(
        url.starts_with("wss://full.test/plivo/stream?token="),
        "{url}"
    );
    app.shutdown().await;
}

async fn answer_stream_url(caller: &CallerConfig, http: &reqwest::Client) -> String {
    let (status, xml, _) = plivo_caller::answer(caller, http).await.unwrap();
    assert_eq!(status, 200, "{xml}");
    plivo_caller::stream_url_of(&xml).expect("a <Stream> answer")
}
