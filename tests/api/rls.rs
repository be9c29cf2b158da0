//! Row-level security: an authenticated user sees and writes only their organization's rows;
//! without claims nothing; the service role everything.

use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::helpers::{Org, TestDb, seed_org};

/// Creates an auth user with a profile in `org`.
async fn member(pool: &PgPool, org: &Org, email: &str) -> Uuid {
    let user: Uuid = sqlx::query_scalar("INSERT INTO auth.users (email) VALUES ($1) RETURNING id")
        .bind(email)
        .fetch_one(pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO profiles (id, organization_id, email) VALUES ($1, $2, $3)")
        .bind(user)
        .bind(org.id)
        .bind(email)
        .execute(pool)
        .await
        .unwrap();
    user
}

/// A transaction running as `role` with the given JWT claims, as PostgREST would set them.
async fn as_role(
    pool: &PgPool,
    role: &str,
    claims: Option<serde_json::Value>,
) -> Transaction<'static, Postgres> {
    let mut tx = pool.begin().await.unwrap();
    if let Some(claims) = claims {
        sqlx::query("SELECT set_config('request.jwt.claims', $1, true)")
            .bind(claims.to_string())
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    sqlx::query(sqlx::AssertSqlSafe(format!("SET LOCAL ROLE {role}")))
        .execute(&mut *tx)
        .await
        .unwrap();
    tx
}

async fn count(tx: &mut Transaction<'static, Postgres>, table: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
        .fetch_one(&mut **tx)
        .await
        .unwrap()
}

async fn seed_call(pool: &PgPool, org: &Org, call_sid: &str) {
    sqlx::query(
        "INSERT INTO call_logs (campaign_id, lead_id, organization_id, call_status, call_sid) VALUES ($1, $2, $3, 'called', $4)",
    )
    .bind(org.campaign_id)
    .bind(org.lead_ids[0])
    .bind(org.id)
    .bind(call_sid)
    .execute(pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn organizations_are_isolated() {
    let test = TestDb::new().await;
    let pool = test.pool();
    let acme = seed_org(pool, "Acme", 2).await;
    let globex = seed_org(pool, "Globex", 3).await;
    seed_call(pool, &acme, "CA-a").await;
    seed_call(pool, &globex, "CA-g").await;
    let alice = member(pool, &acme, "alice@acme.test").await;

    let claims = serde_json::json!({"sub": alice, "role": "authenticated"});
    let mut tx = as_role(pool, "authenticated", Some(claims.clone())).await;
    assert_eq!(
        count(&mut tx, "leads").await,
        2,
        "alice sees Acme's leads only"
    );
    assert_eq!(
        count(&mut tx, "call_logs").await,
        1,
        "alice sees Acme's call logs only"
    );
    assert_eq!(count(&mut tx, "campaigns").await, 1);
    let visible_org: Vec<Uuid> = sqlx::query_scalar("SELECT organization_id FROM leads")
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    assert!(visible_org.iter().all(|org| *org == acme.id));
    // She can write into her own organization...
    sqlx::query("INSERT INTO leads (organization_id, name) VALUES ($1, 'walk-in')")
        .bind(acme.id)
        .execute(&mut *tx)
        .await
        .expect("insert into her own organization");
    // ...and updating Globex's leads touches nothing, because she cannot see them.
    let touched = sqlx::query("UPDATE leads SET notes = 'mine now' WHERE organization_id = $1")
        .bind(globex.id)
        .execute(&mut *tx)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(touched, 0);
    tx.commit().await.unwrap();

    // Inserting into Globex is refused by the policy.
    let mut tx = as_role(pool, "authenticated", Some(claims.clone())).await;
    let error = sqlx::query("INSERT INTO leads (organization_id, name) VALUES ($1, 'intruder')")
        .bind(globex.id)
        .execute(&mut *tx)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("row-level security"), "{error}");
    drop(tx);
    let mut tx = as_role(pool, "authenticated", Some(claims)).await;
    let error = sqlx::query(
        "INSERT INTO call_logs (campaign_id, lead_id, organization_id, call_status) VALUES ($1, $2, $3, 'called')",
    )
    .bind(globex.campaign_id)
    .bind(globex.lead_ids[0])
    .bind(globex.id)
    .execute(&mut *tx)
    .await
    .unwrap_err();
    assert!(error.to_string().contains("row-level security"), "{error}");
    drop(tx);

    let globex_notes: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM leads WHERE notes = 'mine now' OR name = 'intruder'",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(globex_notes, 0, "nothing of Globex's changed");
}

#[tokio::test]
async fn no_claims_means_no_rows() {
    let test = TestDb::new().await;
    let pool = test.pool();
    let acme = seed_org(pool, "Acme", 2).await;
    seed_call(pool, &acme, "CA-a").await;
    for role in ["authenticated", "anon"] {
        let mut tx = as_role(pool, role, None).await;
        if role == "anon" {
            // anon has no table privileges at all.
            let error = sqlx::query("SELECT count(*) FROM leads")
                .execute(&mut *tx)
                .await
                .unwrap_err();
            assert!(error.to_string().contains("permission denied"), "{error}");
            continue;
        }
        assert_eq!(count(&mut tx, "leads").await, 0);
        assert_eq!(count(&mut tx, "call_logs").await, 0);
        assert_eq!(count(&mut tx, "organizations").await, 0);
    }
    // A user without a profile sees nothing either.
    let stranger = serde_json::json!({"sub": Uuid::new_v4(), "role": "authenticated"});
    let mut tx = as_role(pool, "authenticated", Some(stranger)).await;
    assert_eq!(count(&mut tx, "leads").await, 0);
}

#[tokio::test]
async fn the_service_role_reads_and_writes_every_organization() {
    let test = TestDb::new().await;
    let pool = test.pool();
    let acme = seed_org(pool, "Acme", 2).await;
    let globex = seed_org(pool, "Globex", 3).await;
    seed_call(pool, &acme, "CA-a").await;
    let mut tx = as_role(pool, "service_role", None).await;
    assert_eq!(count(&mut tx, "leads").await, 5);
    assert_eq!(count(&mut tx, "call_logs").await, 1);
    for org in [&acme, &globex] {
        sqlx::query("INSERT INTO leads (organization_id, name) VALUES ($1, 'service')")
            .bind(org.id)
            .execute(&mut *tx)
            .await
            .expect("the service role writes any organization");
    }
    sqlx::query(
        "INSERT INTO call_logs (campaign_id, lead_id, organization_id, call_status, call_sid) VALUES ($1, $2, $3, 'called', 'CA-svc')",
    )
    .bind(globex.campaign_id)
    .bind(globex.lead_ids[0])
    .bind(globex.id)
    .execute(&mut *tx)
    .await
    .expect("the service role writes call logs");
    assert_eq!(count(&mut tx, "leads").await, 7);
    tx.commit().await.unwrap();
}
