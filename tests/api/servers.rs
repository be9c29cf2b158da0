//! The websocket_servers registry: register, heartbeat, pick the best, deactivate.

use std::time::Duration;

use voice_gateway::db::servers::Heartbeat;

use crate::helpers::TestDb;

const BEAT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn the_best_fresh_active_server_is_picked() {
    let test = TestDb::new().await;
    let db = &test.db;
    let fresh = Duration::from_secs(30);
    assert_eq!(
        db.pick_stream_server(fresh).await.unwrap(),
        None,
        "no servers, no pick"
    );

    db.register_server("gw-a", "wss://a.test/plivo/stream", 0, BEAT)
        .await
        .unwrap();
    db.register_server("gw-b", "wss://b.test/plivo/stream", 10, BEAT)
        .await
        .unwrap();
    db.register_server("gw-c", "wss://c.test/plivo/stream", 10, BEAT)
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
    db.register_server("gw-a", "wss://a2.test/plivo/stream", 1, BEAT)
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
