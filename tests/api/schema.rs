//! The seed schema's constraints and computed column, and the gateway's vocabularies, checked
//! against the real database.

use sqlx::PgPool;
use uuid::Uuid;
use voice_gateway::domain::{CallOutcome, Direction, EndReason, EventKind};

use crate::helpers::{TestDb, seed_org};

/// Runs `statement` with one text parameter and returns the violated constraint, if any.
async fn violated(
    pool: &PgPool,
    statement: &'static str,
    ids: &[Uuid],
    value: &str,
) -> Option<String> {
    let mut query = sqlx::query(statement);
    for id in ids {
        query = query.bind(*id);
    }
    match query.bind(value).execute(pool).await {
        Ok(_) => None,
        Err(error) => Some(
            error
                .as_database_error()
                .and_then(|db| db.constraint().map(str::to_owned))
                .unwrap_or_else(|| panic!("not a constraint violation: {error}")),
        ),
    }
}

#[tokio::test]
async fn lead_checks_accept_the_listed_values_and_nothing_else() {
    let test = TestDb::new().await;
    let org = seed_org(test.pool(), "Acme", 0).await;
    let insert_status = "INSERT INTO leads (organization_id, name, status) VALUES ($1, 'x', $2)";
    for status in ["new", "contacted", "qualified", "converted", "lost"] {
        assert_eq!(
            violated(test.pool(), insert_status, &[org.id], status).await,
            None,
            "{status}"
        );
    }
    assert_eq!(
        violated(test.pool(), insert_status, &[org.id], "hot")
            .await
            .as_deref(),
        Some("leads_status_check")
    );

    let insert_source = "INSERT INTO leads (organization_id, name, source) VALUES ($1, 'x', $2)";
    for source in ["manual", "csv_upload", "website", "referral"] {
        assert_eq!(
            violated(test.pool(), insert_source, &[org.id], source).await,
            None,
            "{source}"
        );
    }
    assert_eq!(
        violated(test.pool(), insert_source, &[org.id], "cold_call")
            .await
            .as_deref(),
        Some("leads_source_check")
    );

    let insert_call_status =
        "INSERT INTO leads (organization_id, name, call_status) VALUES ($1, 'x', $2)";
    for status in [
        "not_called",
        "called",
        "transferred",
        "no_answer",
        "voicemail",
    ] {
        assert_eq!(
            violated(test.pool(), insert_call_status, &[org.id], status).await,
            None,
            "{status}"
        );
    }
    assert_eq!(
        violated(test.pool(), insert_call_status, &[org.id], "calling")
            .await
            .as_deref(),
        Some("leads_call_status_check")
    );

    let defaults: (String, String, String, bool) = sqlx::query_as(
        "INSERT INTO leads (organization_id, name) VALUES ($1, 'd') RETURNING source, status, call_status, transferred_to_human",
    )
    .bind(org.id)
    .fetch_one(test.pool())
    .await
    .unwrap();
    assert_eq!(
        defaults,
        ("manual".into(), "new".into(), "not_called".into(), false)
    );
}

#[tokio::test]
async fn call_log_and_server_checks_reject_unknown_statuses() {
    let test = TestDb::new().await;
    let org = seed_org(test.pool(), "Acme", 1).await;
    let insert = "INSERT INTO call_logs (campaign_id, lead_id, organization_id, call_status) VALUES ($1, $2, $3, $4)";
    let ids = [org.campaign_id, org.lead_ids[0], org.id];
    for status in ["called", "transferred", "no_answer", "voicemail"] {
        assert_eq!(
            violated(test.pool(), insert, &ids, status).await,
            None,
            "{status}"
        );
    }
    for status in ["in_progress", "completed", "not_called"] {
        assert_eq!(
            violated(test.pool(), insert, &ids, status).await.as_deref(),
            Some("call_logs_call_status_check"),
            "{status}"
        );
    }

    let insert_server = "INSERT INTO websocket_servers (name, url, status) VALUES (gen_random_uuid()::text, 'wss://x', $1)";
    for status in ["pending", "verified", "failed"] {
        assert_eq!(
            violated(test.pool(), insert_server, &[], status).await,
            None,
            "{status}"
        );
    }
    assert_eq!(
        violated(test.pool(), insert_server, &[], "up")
            .await
            .as_deref(),
        Some("websocket_servers_status_check")
    );
}

#[tokio::test]
async fn foreign_keys_cascade_and_set_null_as_specified() {
    let test = TestDb::new().await;
    let org = seed_org(test.pool(), "Acme", 1).await;
    let lead = org.lead_ids[0];
    let call_log: Uuid = sqlx::query_scalar(
        "INSERT INTO call_logs (campaign_id, lead_id, organization_id, call_status, call_sid) VALUES ($1, $2, $3, 'called', 'sid-1') RETURNING id",
    )
    .bind(org.campaign_id)
    .bind(lead)
    .bind(org.id)
    .fetch_one(test.pool())
    .await
    .unwrap();
    sqlx::query("UPDATE leads SET call_log_id = $1 WHERE id = $2")
        .bind(call_log)
        .bind(lead)
        .execute(test.pool())
        .await
        .unwrap();

    // Deleting the call log leaves the lead, with call_log_id set to NULL.
    sqlx::query("DELETE FROM call_logs WHERE id = $1")
        .bind(call_log)
        .execute(test.pool())
        .await
        .unwrap();
    let (call_log_id, project_id): (Option<Uuid>, Option<Uuid>) =
        sqlx::query_as("SELECT call_log_id, project_id FROM leads WHERE id = $1")
            .bind(lead)
            .fetch_one(test.pool())
            .await
            .unwrap();
    assert_eq!(call_log_id, None);
    assert!(project_id.is_some());

    // Deleting the project sets the lead's project_id to NULL.
    sqlx::query("DELETE FROM projects WHERE organization_id = $1")
        .bind(org.id)
        .execute(test.pool())
        .await
        .unwrap();
    let project_id: Option<Uuid> = sqlx::query_scalar("SELECT project_id FROM leads WHERE id = $1")
        .bind(lead)
        .fetch_one(test.pool())
        .await
        .unwrap();
    assert_eq!(project_id, None);

    // Deleting the organization removes its leads and campaigns.
    sqlx::query("DELETE FROM organizations WHERE id = $1")
        .bind(org.id)
        .execute(test.pool())
        .await
        .unwrap();
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM leads WHERE id = $1")
        .bind(lead)
        .fetch_one(test.pool())
        .await
        .unwrap();
    assert_eq!(left, 0);
}

#[tokio::test]
async fn conversion_rate_is_computed_including_zero_calls() {
    let test = TestDb::new().await;
    let org = seed_org(test.pool(), "Acme", 0).await;
    let rate = |total: i32, transferred: i32| {
        let pool = test.pool().clone();
        let campaign = org.campaign_id;
        async move {
            sqlx::query_scalar::<_, String>(
                "UPDATE campaigns SET total_calls = $2, transferred_calls = $3 WHERE id = $1 RETURNING conversion_rate::text",
            )
            .bind(campaign)
            .bind(total)
            .bind(transferred)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    assert_eq!(rate(0, 0).await, "0.00");
    assert_eq!(rate(4, 1).await, "25.00");
    assert_eq!(rate(3, 1).await, "33.33");
    assert_eq!(rate(3, 2).await, "66.67");
    assert_eq!(rate(7, 7).await, "100.00");

    // It is generated: writing it directly is refused.
    let error = sqlx::query("UPDATE campaigns SET conversion_rate = 5 WHERE id = $1")
        .bind(org.campaign_id)
        .execute(test.pool())
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("conversion_rate\" can only be updated to DEFAULT"),
        "{error}"
    );
}

#[tokio::test]
async fn updated_at_moves_on_lead_updates() {
    let test = TestDb::new().await;
    let org = seed_org(test.pool(), "Acme", 1).await;
    let lead = org.lead_ids[0];
    sqlx::query("UPDATE leads SET updated_at = now() - interval '1 day' WHERE id = $1")
        .bind(lead)
        .execute(test.pool())
        .await
        .unwrap();
    let fresh: bool = sqlx::query_scalar(
        "UPDATE leads SET notes = 'called back' WHERE id = $1 RETURNING updated_at > now() - interval '1 minute'",
    )
    .bind(lead)
    .fetch_one(test.pool())
    .await
    .unwrap();
    assert!(fresh, "the trigger must reset updated_at on every update");
}

#[tokio::test]
async fn seed_indexes_and_policies_exist_by_name() {
    let test = TestDb::new().await;
    let indexes: Vec<String> =
        sqlx::query_scalar("SELECT indexname::text FROM pg_indexes WHERE schemaname = 'public'")
            .fetch_all(test.pool())
            .await
            .unwrap();
    for name in [
        "idx_leads_org",
        "idx_leads_project",
        "idx_leads_status",
        "idx_leads_call_status",
        "idx_leads_created",
        "idx_leads_email",
        "idx_leads_phone",
        "idx_leads_transferred",
        "idx_leads_call_log_id",
        "idx_call_logs_campaign",
        "idx_call_logs_lead",
        "idx_call_logs_org",
        "idx_call_logs_call_sid",
        "idx_call_logs_timestamp",
        "idx_call_logs_transferred",
        "idx_call_logs_transferred_at",
        "idx_websocket_servers_active",
        "idx_campaigns_conversion",
    ] {
        assert!(
            indexes.iter().any(|index| index == name),
            "missing index {name}"
        );
    }
    let unique: bool = sqlx::query_scalar(
        "SELECT indisunique FROM pg_index WHERE indexrelid = 'idx_call_logs_call_sid'::regclass",
    )
    .fetch_one(test.pool())
    .await
    .unwrap();
    assert!(
        unique,
        "call_sid must be unique so every write is idempotent"
    );

    let policies: Vec<(String, String, String)> =
        sqlx::query_as("SELECT tablename::text, policyname::text, cmd::text FROM pg_policies WHERE tablename IN ('leads', 'call_logs')")
            .fetch_all(test.pool())
            .await
            .unwrap();
    for (table, name, command) in [
        (
            "leads",
            "Users can view leads in their organization",
            "SELECT",
        ),
        (
            "leads",
            "Users can create leads in their organization",
            "INSERT",
        ),
        (
            "leads",
            "Users can update leads in their organization",
            "UPDATE",
        ),
        (
            "leads",
            "Users can delete leads in their organization",
            "DELETE",
        ),
        (
            "call_logs",
            "Users can view call logs in their organization",
            "SELECT",
        ),
        (
            "call_logs",
            "Users can create call logs in their organization",
            "INSERT",
        ),
    ] {
        assert!(
            policies
                .iter()
                .any(|(t, n, c)| t == table && n == name && c == command),
            "missing policy {name:?} on {table}"
        );
    }
    let without_rls: Vec<String> = sqlx::query_scalar(
        "SELECT relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'public' AND c.relkind = 'r' AND NOT c.relrowsecurity AND relname <> '_sqlx_migrations'",
    )
    .fetch_all(test.pool())
    .await
    .unwrap();
    assert!(
        without_rls.is_empty(),
        "tables without RLS: {without_rls:?}"
    );
}

#[tokio::test]
async fn the_database_accepts_every_spelling_of_our_vocabularies() {
    let test = TestDb::new().await;
    let org = seed_org(test.pool(), "Acme", 1).await;
    let call: Uuid = sqlx::query_scalar(
        "INSERT INTO call_logs (campaign_id, lead_id, organization_id, call_status, call_sid) VALUES ($1, $2, $3, 'called', 'v') RETURNING id",
    )
    .bind(org.campaign_id)
    .bind(org.lead_ids[0])
    .bind(org.id)
    .fetch_one(test.pool())
    .await
    .unwrap();
    for reason in EndReason::ALL {
        sqlx::query("UPDATE call_logs SET end_reason = $2, ended_at = now() WHERE id = $1")
            .bind(call)
            .bind(reason.as_str())
            .execute(test.pool())
            .await
            .unwrap_or_else(|error| panic!("end reason {reason}: {error}"));
    }
    for outcome in CallOutcome::ALL {
        sqlx::query("UPDATE call_logs SET call_status = $2 WHERE id = $1")
            .bind(call)
            .bind(outcome.as_str())
            .execute(test.pool())
            .await
            .unwrap_or_else(|error| panic!("outcome {outcome}: {error}"));
    }
    for direction in Direction::ALL {
        sqlx::query("UPDATE call_logs SET direction = $2 WHERE id = $1")
            .bind(call)
            .bind(direction.as_str())
            .execute(test.pool())
            .await
            .unwrap_or_else(|error| panic!("direction {direction}: {error}"));
    }
    for (seq, kind) in EventKind::ALL.iter().enumerate() {
        sqlx::query(
            "INSERT INTO call_events (call_log_id, organization_id, seq, kind, occurred_at) VALUES ($1, $2, $3, $4, now())",
        )
        .bind(call)
        .bind(org.id)
        .bind(seq as i32)
        .bind(kind.as_str())
        .execute(test.pool())
        .await
        .unwrap_or_else(|error| panic!("event kind {kind}: {error}"));
    }
    let refused = sqlx::query("UPDATE call_logs SET end_reason = 'bored' WHERE id = $1")
        .bind(call)
        .execute(test.pool())
        .await;
    assert!(refused.is_err(), "an unknown end reason must be refused");
    let half_ended = sqlx::query("UPDATE call_logs SET end_reason = NULL WHERE id = $1")
        .bind(call)
        .execute(test.pool())
        .await;
    assert!(
        half_ended.is_err(),
        "ended_at and end_reason are set together"
    );
}

#[tokio::test]
async fn migrations_apply_to_an_empty_database_and_again_as_a_no_op() {
    let test = TestDb::empty().await;
    voice_gateway::db::MIGRATOR
        .run(test.pool())
        .await
        .expect("first run");
    voice_gateway::db::MIGRATOR
        .run(test.pool())
        .await
        .expect("second run is a no-op");
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(test.pool())
        .await
        .unwrap();
    assert_eq!(applied as usize, voice_gateway::db::MIGRATOR.iter().count());
    let bypass: bool =
        sqlx::query_scalar("SELECT rolbypassrls FROM pg_roles WHERE rolname = 'service_role'")
            .fetch_one(test.pool())
            .await
            .unwrap();
    assert!(bypass);
}
