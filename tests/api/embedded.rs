//! The embedded PostgreSQL and the connection checks: starts as root (as an unprivileged user),
//! survives a restart with its data, refuses roles that cannot bypass RLS, and explains a
//! wrong DATABASE_URL.

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use sqlx::{Connection, PgConnection};
use uuid::Uuid;
use voice_gateway::db::{
    Database, DbError, OpenOptions,
    embedded::{EmbeddedError, EmbeddedPostgres, running_as_root},
};

use crate::helpers::{TestDb, cluster, seed_org};

/// A temp directory the unprivileged database user can traverse.
fn reachable_tempdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread")]
async fn a_persistent_cluster_keeps_its_data_across_restarts() {
    let dir = reachable_tempdir();
    let root = dir.path().join("postgres");

    let first = {
        let root = root.clone();
        tokio::task::spawn_blocking(move || EmbeddedPostgres::start_persistent(&root))
            .await
            .unwrap()
            .unwrap()
    };
    if running_as_root() {
        let owner = std::fs::metadata(root.join("data")).unwrap().uid();
        assert_ne!(
            owner, 0,
            "as root, the cluster must run as an unprivileged user"
        );
    }
    let mut connection = PgConnection::connect(&first.url("postgres")).await.unwrap();
    sqlx::query("CREATE TABLE kept (note text)")
        .execute(&mut connection)
        .await
        .unwrap();
    sqlx::query("INSERT INTO kept VALUES ('still here')")
        .execute(&mut connection)
        .await
        .unwrap();
    connection.close().await.unwrap();
    tokio::task::spawn_blocking(move || first.stop())
        .await
        .unwrap()
        .unwrap();
    assert!(
        !root.join("data/postmaster.pid").exists(),
        "a clean stop removes the pid file"
    );

    let second = {
        let root = root.clone();
        tokio::task::spawn_blocking(move || EmbeddedPostgres::start_persistent(&root))
            .await
            .unwrap()
            .unwrap()
    };
    let mut connection = PgConnection::connect(&second.url("postgres"))
        .await
        .unwrap();
    let note: String = sqlx::query_scalar("SELECT note FROM kept")
        .fetch_one(&mut connection)
        .await
        .unwrap();
    assert_eq!(note, "still here");
    connection.close().await.unwrap();
    tokio::task::spawn_blocking(move || second.stop())
        .await
        .unwrap()
        .unwrap();
    assert!(
        root.join("data/PG_VERSION").exists(),
        "a persistent cluster is kept"
    );
}

#[tokio::test]
async fn a_directory_the_database_user_cannot_reach_is_refused_clearly() {
    let private = tempfile::tempdir().unwrap();
    std::fs::set_permissions(private.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let root = private.path().join("postgres");
    let result = tokio::task::spawn_blocking({
        let root = root.clone();
        move || EmbeddedPostgres::start_persistent(&root)
    })
    .await
    .unwrap();
    if running_as_root() {
        let error = result.expect_err("postgres cannot traverse a 0700 root-owned directory");
        assert!(
            matches!(error, EmbeddedError::Unreachable { .. }),
            "{error}"
        );
        let message = error.to_string();
        assert!(message.contains("cannot reach"), "{message}");
        assert!(message.contains("VG_DATA_DIR"), "{message}");
    } else {
        // Not root: the server runs as us, and our own private directory is fine.
        let cluster = result.expect("our own directory is reachable");
        tokio::task::spawn_blocking(move || cluster.stop())
            .await
            .unwrap()
            .unwrap();
    }
}

#[tokio::test]
async fn a_wrong_database_url_fails_with_a_clear_message() {
    let result = Database::open(OpenOptions {
        url: "postgres://gateway:hunter2@127.0.0.1:1/voice",
        max_connections: 2,
        migrate: true,
    })
    .await;
    let error = result.expect_err("nothing listens on port 1");
    assert!(matches!(error, DbError::Connect { .. }), "{error}");
    let message = error.to_string();
    assert!(
        message.starts_with("cannot connect to PostgreSQL at gateway@127.0.0.1:1/voice: "),
        "{message}"
    );
    assert!(
        !message.contains("hunter2"),
        "the password must not leak: {message}"
    );

    // Right server, wrong password.
    let url = cluster().url("postgres").replace(
        &format!("postgres:{}", password_of(&cluster().url("postgres"))),
        "postgres:wrong",
    );
    let error = Database::open(OpenOptions {
        url: &url,
        max_connections: 2,
        migrate: false,
    })
    .await
    .expect_err("wrong password");
    assert!(
        error.to_string().contains("password authentication failed"),
        "{error}"
    );
}

fn password_of(url: &str) -> String {
    url::Url::parse(url).unwrap().password().unwrap().to_owned()
}

#[tokio::test]
async fn a_role_that_cannot_bypass_rls_is_refused_and_a_service_role_member_is_switched() {
    let test = TestDb::new().await;
    let org = seed_org(test.pool(), "Acme", 1).await;
    let suffix = Uuid::new_v4().simple().to_string();
    let plain = format!("plain_{suffix}");
    let member = format!("svc_{suffix}");
    for statement in [
        format!("CREATE ROLE {plain} LOGIN PASSWORD 'pw'"),
        format!("CREATE ROLE {member} LOGIN PASSWORD 'pw' IN ROLE service_role"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(test.pool())
            .await
            .unwrap();
    }
    let url_for = |role: &str| {
        let mut url = url::Url::parse(&test.url).unwrap();
        url.set_username(role).unwrap();
        url.set_password(Some("pw")).unwrap();
        url.to_string()
    };

    let refused = Database::open(OpenOptions {
        url: &url_for(&plain),
        max_connections: 2,
        migrate: false,
    })
    .await
    .expect_err("a plain role would be subject to RLS");
    assert!(
        matches!(&refused, DbError::NoBypassRls { role } if *role == plain),
        "{refused}"
    );
    assert!(
        refused
            .to_string()
            .contains("cannot bypass row-level security")
    );

    let switched = Database::open(OpenOptions {
        url: &url_for(&member),
        max_connections: 2,
        migrate: false,
    })
    .await
    .expect("a member of service_role is accepted");
    let role: String = sqlx::query_scalar("SELECT current_role::text")
        .fetch_one(switched.pool())
        .await
        .unwrap();
    assert_eq!(role, "service_role");
    let leads: i64 = sqlx::query_scalar("SELECT count(*) FROM leads")
        .fetch_one(switched.pool())
        .await
        .unwrap();
    assert_eq!(leads, 1, "the service role sees every organization's rows");
    let call = voice_gateway::db::calls::CallStart {
        call_sid: "CA-role".into(),
        campaign_id: org.campaign_id,
        lead_id: org.lead_ids[0],
        direction: voice_gateway::domain::Direction::Outbound,
        started_at: chrono::Utc::now(),
        server_name: "gw".into(),
        metadata: serde_json::json!({}),
    };
    switched
        .open_call(&call)
        .await
        .expect("the service role writes calls");
    switched.close().await;
}
