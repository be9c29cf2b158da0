//! The campaign API (`/api/v1`) against a real gateway and PostgreSQL: bearer tokens and
//! organization scoping, the campaign lifecycle and its statistics, leads and CSV imports
//! (bad rows, malformed files, a streamed 100k-row upload), calls, a hang-up that reaches the
//! gateway holding the call through NOTIFY, and the OpenAPI document against the routes.

use std::{
    future::Future,
    net::SocketAddr,
    time::{Duration, Instant},
};

use chrono::Utc;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    sync::mpsc,
};
use uuid::Uuid;
use voice_gateway::{
    api::tokens::{Scope, TokenError, TokenRequest, create_token, hash_secret},
    simulators::{
        openai_realtime::{FakeRealtimeConfig, FakeRealtimeServer},
        plivo_caller::{self, CallerConfig, Step},
    },
};

use crate::helpers::{Org, TestApp, TestDb, seed_org, settings_for};

/// How long a condition may take before the test fails; never a synchronisation by itself.
const DEADLINE: Duration = Duration::from_secs(60);

/// Polls `condition` until it holds, failing after `deadline`.
pub(crate) async fn wait_until<F, Fut>(what: &str, deadline: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    while !condition().await {
        assert!(started.elapsed() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub(crate) async fn issue(test: &TestDb, organization_id: Uuid, scopes: &[Scope]) -> String {
    create_token(
        &test.db,
        &TokenRequest {
            organization_id,
            name: "test",
            scopes,
            expires_at: None,
        },
        Utc::now(),
    )
    .await
    .expect("a token")
    .secret
}

/// A gateway, two organizations, a token with every scope for each.
pub(crate) struct Api {
    pub(crate) test: TestDb,
    pub(crate) app: TestApp,
    pub(crate) http: reqwest::Client,
    pub(crate) org: Org,
    pub(crate) token: String,
    pub(crate) other: Org,
    pub(crate) other_token: String,
}

impl Api {
    pub(crate) async fn start() -> Self {
        let test = TestDb::new().await;
        let org = seed_org(test.pool(), "Acme Homes", 2).await;
        let other = seed_org(test.pool(), "Globex", 1).await;
        let token = issue(&test, org.id, Scope::ALL).await;
        let other_token = issue(&test, other.id, Scope::ALL).await;
        let name = format!("gw-{}", Uuid::new_v4().simple());
        let app = TestApp::spawn(settings_for(&test.url, &name, &[])).await;
        Self {
            test,
            app,
            http: reqwest::Client::new(),
            org,
            token,
            other,
            other_token,
        }
    }

    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, self.app.url(&format!("/api/v1{path}")));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the request was answered");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, body)
    }

    pub(crate) async fn get(&self, path: &str) -> (u16, Value) {
        self.send(Method::GET, path, Some(&self.token), None).await
    }

    pub(crate) async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(Method::POST, path, Some(&self.token), Some(body))
            .await
    }

    pub(crate) async fn patch(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(Method::PATCH, path, Some(&self.token), Some(body))
            .await
    }

    pub(crate) async fn upload(&self, path: &str, csv: &str) -> (u16, Value) {
        let response = self
            .http
            .post(self.app.url(&format!("/api/v1{path}")))
            .bearer_auth(&self.token)
            .header("content-type", "text/csv")
            .body(csv.to_owned())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    pub(crate) async fn new_campaign(&self) -> Uuid {
        let (status, body) = self
            .post("/campaigns", json!({"name": "Autumn launch"}))
            .await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().unwrap().parse().unwrap()
    }

    pub(crate) async fn count(&self, sql: &str, id: Uuid) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
            .bind(id)
            .fetch_one(self.test.pool())
            .await
            .unwrap()
    }

    pub(crate) async fn finish(self) {
        self.app.shutdown().await;
    }
}

pub(crate) fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<no error code>")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_checked_missing_wrong_expired_revoked_and_unscoped() {
    let api = Api::start().await;
    let campaign = api.org.campaign_id;
    let path = format!("/campaigns/{campaign}");

    let (status, body) = api.send(Method::GET, &path, None, None).await;
    assert_eq!((status, code(&body)), (401, "missing_token"));
    let (status, body) = api
        .send(Method::GET, &path, Some("vg_not-a-real-token"), None)
        .await;
    assert_eq!((status, code(&body)), (401, "invalid_token"));
    let response = api
        .http
        .get(api.app.url(&format!("/api/v1{path}")))
        .header("authorization", format!("Basic {}", api.token))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401, "only Bearer is accepted");
    assert_eq!(
        response.headers()["www-authenticate"].to_str().unwrap(),
        "Bearer"
    );

    // Expired: issued with an expiry, then the clock (the row) moves past it.
    let expiring = create_token(
        &api.test.db,
        &TokenRequest {
            organization_id: api.org.id,
            name: "expiring",
            scopes: Scope::ALL,
            expires_at: Some(Utc::now() + chrono::Duration::hours(1)),
        },
        Utc::now(),
    )
    .await
    .unwrap();
    let (status, _) = api
        .send(Method::GET, &path, Some(&expiring.secret), None)
        .await;
    assert_eq!(status, 200, "valid until it expires");
    sqlx::query("UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE id = $1")
        .bind(expiring.id)
        .execute(api.test.pool())
        .await
        .unwrap();
    let (status, body) = api
        .send(Method::GET, &path, Some(&expiring.secret), None)
        .await;
    assert_eq!((status, code(&body)), (401, "token_expired"));

    // Revoked.
    let revoked = create_token(
        &api.test.db,
        &TokenRequest {
            organization_id: api.org.id,
            name: "revoked",
            scopes: Scope::ALL,
            expires_at: None,
        },
        Utc::now(),
    )
    .await
    .unwrap();
    assert!(api.test.db.revoke_api_token(revoked.id).await.unwrap());
    let (status, body) = api
        .send(Method::GET, &path, Some(&revoked.secret), None)
        .await;
    assert_eq!((status, code(&body)), (401, "token_revoked"));

    // A read-only token reads but does not write.
    let reader = issue(&api.test, api.org.id, &[Scope::CampaignsRead]).await;
    let (status, _) = api.send(Method::GET, &path, Some(&reader), None).await;
    assert_eq!(status, 200);
    let (status, body) = api
        .send(
            Method::POST,
            &format!("{path}/pause"),
            Some(&reader),
            Some(json!({})),
        )
        .await;
    assert_eq!((status, code(&body)), (403, "insufficient_scope"));
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("campaigns:write")
    );
    let (status, _) = api.send(Method::GET, "/calls", Some(&reader), None).await;
    assert_eq!(status, 403, "calls:read is another scope");
    assert_eq!(
        api.count(
            "SELECT count(*) FROM campaigns WHERE id = $1 AND status = 'running'",
            campaign
        )
        .await,
        1,
        "the refused pause changed nothing"
    );

    // Use is recorded.
    let used: Option<chrono::DateTime<Utc>> =
        sqlx::query_scalar("SELECT last_used_at FROM api_tokens WHERE token_hash = $1")
            .bind(hash_secret(&reader).to_vec())
            .fetch_one(api.test.pool())
            .await
            .unwrap();
    assert!(used.is_some(), "last_used_at is set");
    api.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_organizations_objects_are_not_found() {
    let api = Api::start().await;
    // Organization B's campaign, lead and call.
    let call_id: Uuid = sqlx::query_scalar(
        "INSERT INTO call_logs (campaign_id, lead_id, organization_id, call_sid, call_status)
         VALUES ($1, $2, $3, 'CA-other', 'called') RETURNING id",
    )
    .bind(api.other.campaign_id)
    .bind(api.other.lead_ids[0])
    .bind(api.other.id)
    .fetch_one(api.test.pool())
    .await
    .unwrap();
    let foreign = [
        (Method::GET, format!("/campaigns/{}", api.other.campaign_id)),
        (Method::GET, format!("/leads/{}", api.other.lead_ids[0])),
        (Method::GET, format!("/calls/{call_id}")),
        (Method::POST, format!("/calls/{call_id}/hangup")),
        (
            Method::POST,
            format!("/campaigns/{}/pause", api.other.campaign_id),
        ),
        (
            Method::GET,
            format!("/campaigns/{}/leads", api.other.campaign_id),
        ),
        (
            Method::POST,
            format!(
                "/campaigns/{}/leads/{}/test-call",
                api.org.campaign_id, api.other.lead_ids[0]
            ),
        ),
    ];
    for (method, path) in &foreign {
        let (status, body) = api
            .send(method.clone(), path, Some(&api.token), Some(json!({})))
            .await;
        assert_eq!((status, code(&body)), (404, "not_found"), "{method} {path}");
        // The owner sees its own objects through the same routes.
        if *method == Method::GET {
            let (status, _) = api
                .send(Method::GET, path, Some(&api.other_token), None)
                .await;
            assert_eq!(status, 200, "{path} for its owner");
        }
    }
    let (status, body) = api
        .patch(
            &format!("/campaigns/{}", api.other.campaign_id),
            json!({"name": "Hijacked"}),
        )
        .await;
    assert_eq!((status, code(&body)), (404, "not_found"));
    // Lists hold only the token's organization.
    let (_, campaigns) = api.get("/campaigns").await;
    let ids: Vec<&str> = campaigns["campaigns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|campaign| campaign["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [api.org.campaign_id.to_string()]);
    let (_, calls) = api.get("/calls").await;
    assert_eq!(calls["calls"].as_array().unwrap().len(), 0);
    let name: String = sqlx::query_scalar("SELECT name FROM campaigns WHERE id = $1")
        .bind(api.other.campaign_id)
        .fetch_one(api.test.pool())
        .await
        .unwrap();
    assert_eq!(name, "Spring launch");
    api.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_create_stores_only_a_hash_and_refuses_bad_requests() {
    let test = TestDb::new().await;
    let org = seed_org(test.pool(), "Acme Homes", 0).await;
    let now = Utc::now();
    let issued = create_token(
        &test.db,
        &TokenRequest {
            organization_id: org.id,
            name: "dashboard",
            scopes: &[Scope::CallsRead, Scope::CampaignsRead, Scope::CallsRead],
            expires_at: Some(now + chrono::Duration::days(30)),
        },
        now,
    )
    .await
    .unwrap();
    assert!(issued.secret.starts_with("vg_"));
    let (hash, prefix, scopes, organization_id): (Vec<u8>, String, Vec<String>, Uuid) =
        sqlx::query_as(
            "SELECT token_hash, token_prefix, scopes, organization_id FROM api_tokens WHERE id = $1",
        )
        .bind(issued.id)
        .fetch_one(test.pool())
        .await
        .unwrap();
    assert_eq!(hash, hash_secret(&issued.secret).to_vec());
    assert!(issued.secret.starts_with(&prefix) && prefix.len() < issued.secret.len());
    assert_eq!(
        scopes,
        ["campaigns:read", "calls:read"],
        "sorted, no repeats"
    );
    assert_eq!(organization_id, org.id);
    let stored_secret: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM api_tokens WHERE position($1 in name || token_prefix) > 0",
    )
    .bind(&issued.secret)
    .fetch_one(test.pool())
    .await
    .unwrap();
    assert_eq!(stored_secret, 0, "the secret itself is nowhere");

    let request = |organization_id, scopes, expires_at| TokenRequest {
        organization_id,
        name: "x",
        scopes,
        expires_at,
    };
    let unknown = Uuid::new_v4();
    assert!(matches!(
        create_token(&test.db, &request(unknown, Scope::ALL, None), now).await,
        Err(TokenError::UnknownOrganization(id)) if id == unknown
    ));
    assert!(matches!(
        create_token(&test.db, &request(org.id, &[], None), now).await,
        Err(TokenError::NoScopes)
    ));
    assert!(matches!(
        create_token(
            &test.db,
            &request(org.id, Scope::ALL, Some(now - chrono::Duration::seconds(1))),
            now
        )
        .await,
        Err(TokenError::ExpiryInPast(_))
    ));

    // The subcommand prints the secret once, on stdout.
    let organization = org.id.to_string();
    let output = token_cli(
        &test,
        &[
            "create",
            "--organization",
            &organization,
            "--name",
            "cli",
            "--scope",
            "campaigns:read,leads:write",
            "--expires-in-days",
            "7",
        ],
    )
    .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let secret = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    assert!(secret.starts_with("vg_"), "{secret:?}");
    let (scopes, expires_at): (Vec<String>, Option<chrono::DateTime<Utc>>) =
        sqlx::query_as("SELECT scopes, expires_at FROM api_tokens WHERE token_hash = $1")
            .bind(hash_secret(&secret).to_vec())
            .fetch_one(test.pool())
            .await
            .unwrap();
    assert_eq!(scopes, ["campaigns:read", "leads:write"]);
    let days = (expires_at.unwrap() - Utc::now()).num_hours();
    assert!((167..=168).contains(&days), "expires in 7 days: {days} h");
}

/// Runs `voice-gateway token …` against the test's database.
async fn token_cli(test: &TestDb, args: &[&str]) -> std::process::Output {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_voice-gateway"))
        .arg("token")
        .args(args)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("DATABASE_URL", &test.url)
        .env("VG_STREAM_SECRET", "s".repeat(48))
        .env("VG_AI_PROVIDER", "openai")
        .env("OPENAI_API_KEY", "sk-test-unused")
        .output();
    tokio::time::timeout(DEADLINE, output)
        .await
        .expect("the binary finished")
        .expect("the binary ran")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_list_shows_no_secret_and_token_revoke_ends_a_token_at_once() {
    let api = Api::start().await;
    let now = Utc::now();
    let issued = create_token(
        &api.test.db,
        &TokenRequest {
            organization_id: api.org.id,
            name: "wallboard",
            scopes: &[Scope::CampaignsRead],
            expires_at: None,
        },
        now,
    )
    .await
    .unwrap();
    let organization = api.org.id.to_string();
    let listed = token_cli(&api.test, &["list", "--organization", &organization]).await;
    assert!(listed.status.success());
    let table = String::from_utf8(listed.stdout).unwrap();
    let line = table
        .lines()
        .find(|line| line.starts_with(&issued.id.to_string()))
        .unwrap_or_else(|| panic!("the token is listed: {table}"));
    assert!(line.contains(&issued.prefix) && line.contains("live") && line.contains("wallboard"));
    assert!(!table.contains(&issued.secret), "never the secret");

    let ok = |token: &str| {
        let request = api
            .http
            .get(api.app.url("/api/v1/campaigns"))
            .bearer_auth(token.to_owned())
            .send();
        async move { request.await.unwrap().status().as_u16() }
    };
    assert_eq!(ok(&issued.secret).await, 200);
    let id = issued.id.to_string();
    let revoked = token_cli(&api.test, &["revoke", "--id", &id]).await;
    assert!(
        revoked.status.success(),
        "{}",
        String::from_utf8_lossy(&revoked.stderr)
    );
    assert_eq!(ok(&issued.secret).await, 401, "refused at once");
    let listed = token_cli(&api.test, &["list", "--organization", &organization]).await;
    let table = String::from_utf8(listed.stdout).unwrap();
    assert!(
        table
            .lines()
            .any(|line| line.starts_with(&id) && line.contains("revoked")),
        "{table}"
    );
    let again = token_cli(&api.test, &["revoke", "--id", &id]).await;
    assert!(
        !again.status.success(),
        "a revoked token cannot be revoked again"
    );
    assert!(String::from_utf8_lossy(&again.stderr).contains("no live token"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_lifecycle_with_illegal_transitions_and_a_cancel_that_leaves_nothing_scheduled() {
    let api = Api::start().await;
    // Validation names the field.
    let (status, body) = api.post("/campaigns", json!({"name": "  "})).await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("name"))
    );
    let (status, body) = api
        .post(
            "/campaigns",
            json!({"name": "x", "ring_timeout_seconds": 2}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("ring_timeout_seconds"))
    );
    let (status, body) = api
        .post("/campaigns", json!({"name": "x", "max_attempts": "three"}))
        .await;
    assert_eq!(
        (status, code(&body), body["error"]["field"].as_str()),
        (422, "invalid_field", Some("max_attempts"))
    );
    let (status, body) = api
        .post("/campaigns", json!({"name": "x", "colour": "red"}))
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("colour"))
    );
    let (status, body) = api
        .post(
            "/campaigns",
            json!({"name": "x", "timezone": "Mars/Olympus"}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("timezone"))
    );
    let (status, body) = api
        .post(
            "/campaigns",
            json!({"name": "x", "calling_window_start": "18:00", "calling_window_end": "09:00"}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("calling_window_end"))
    );
    let (status, body) = api
        .post(
            "/campaigns",
            json!({"name": "x", "caller_id": "+14155550999"}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("caller_id")),
        "not one of the organization's numbers"
    );
    let response = api
        .http
        .post(api.app.url("/api/v1/campaigns"))
        .bearer_auth(&api.token)
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(code(&body), "malformed_json");

    // Create, with the organization's timezone by default.
    sqlx::query("UPDATE organizations SET timezone = 'Europe/Lisbon' WHERE id = $1")
        .bind(api.org.id)
        .execute(api.test.pool())
        .await
        .unwrap();
    let (status, created) = api
        .post(
            "/campaigns",
            json!({"name": "Autumn launch", "calling_days": [5, 1, 1], "calling_window_start": "10:30",
                   "settings": {"vocabulary": ["lakeside"]}}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["status"], "draft");
    assert_eq!(created["timezone"], "Europe/Lisbon");
    assert_eq!(created["calling_days"], json!([1, 5]));
    assert_eq!(created["calling_window_start"], "10:30:00");
    assert_eq!(created["stats"]["attempts_pending"], 0);
    let id = created["id"].as_str().unwrap().to_owned();

    // Update: a field set, a nullable one cleared, the rest kept.
    let (status, updated) = api
        .patch(
            &format!("/campaigns/{id}"),
            json!({"description": "lakeside flats", "max_attempts": 5}),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(
        (
            updated["description"].as_str(),
            updated["max_attempts"].as_i64()
        ),
        (Some("lakeside flats"), Some(5))
    );
    let (_, updated) = api
        .patch(&format!("/campaigns/{id}"), json!({"description": null}))
        .await;
    assert_eq!(updated["description"], Value::Null);
    assert_eq!(updated["max_attempts"], 5);
    assert_eq!(updated["name"], "Autumn launch");

    // Three leads enrolled, one of them already in flight.
    for (index, phone) in ["+14155550101", "+14155550102", "+14155550103"]
        .iter()
        .enumerate()
    {
        let (status, body) = api
            .post(
                &format!("/campaigns/{id}/leads"),
                json!({"name": format!("Lead {index}"), "phone": phone}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let campaign_id: Uuid = id.parse().unwrap();
    sqlx::query(
        "UPDATE dial_attempts SET status = 'dialing' WHERE id = (
             SELECT id FROM dial_attempts WHERE campaign_id = $1 ORDER BY created_at LIMIT 1)",
    )
    .bind(campaign_id)
    .execute(api.test.pool())
    .await
    .unwrap();

    let transition = |action: &'static str| {
        let path = format!("/campaigns/{id}/{action}");
        let api = &api;
        async move { api.post(&path, json!({})).await }
    };
    let (status, body) = transition("pause").await;
    assert_eq!((status, code(&body)), (409, "illegal_transition"));
    assert_eq!(body["error"]["details"]["status"], "draft");
    let (status, body) = transition("resume").await;
    assert_eq!((status, code(&body)), (409, "illegal_transition"));
    let (status, body) = transition("start").await;
    assert_eq!((status, body["status"].as_str()), (200, Some("running")));
    assert!(body["started_at"].is_string());
    let (status, body) = transition("start").await;
    assert_eq!((status, code(&body)), (409, "illegal_transition"));
    let (status, body) = transition("pause").await;
    assert_eq!((status, body["status"].as_str()), (200, Some("paused")));
    assert!(body["paused_at"].is_string());
    let (status, body) = transition("resume").await;
    assert_eq!((status, body["status"].as_str()), (200, Some("running")));
    assert_eq!(body["stats"]["attempts_pending"], 2);
    assert_eq!(body["stats"]["attempts_in_flight"], 1);

    let (status, body) = transition("cancel").await;
    assert_eq!((status, body["status"].as_str()), (200, Some("cancelled")));
    assert_eq!(body["stats"]["attempts_pending"], 0, "{body}");
    assert_eq!(
        api.count(
            "SELECT count(*) FROM dial_attempts WHERE campaign_id = $1 AND status = 'scheduled'",
            campaign_id
        )
        .await,
        0
    );
    assert_eq!(
        api.count(
            "SELECT count(*) FROM dial_attempts WHERE campaign_id = $1 AND status = 'canceled'",
            campaign_id
        )
        .await,
        2
    );
    assert_eq!(
        body["stats"]["attempts_in_flight"], 1,
        "a call in progress is not cut by the cancel"
    );
    for action in ["start", "pause", "resume", "cancel"] {
        let (status, body) = transition(action).await;
        assert_eq!(
            (status, code(&body)),
            (409, "illegal_transition"),
            "{action}"
        );
    }
    let (status, body) = api
        .patch(&format!("/campaigns/{id}"), json!({"name": "Again"}))
        .await;
    assert_eq!((status, code(&body)), (409, "campaign_finished"));
    let (status, body) = api
        .post(
            &format!("/campaigns/{id}/leads"),
            json!({"name": "Late", "phone": "+14155550199"}),
        )
        .await;
    assert_eq!((status, code(&body)), (409, "campaign_finished"));
    let (status, body) = api
        .upload(
            &format!("/campaigns/{id}/leads/import"),
            "name,phone\nLate,+14155550198\n",
        )
        .await;
    assert_eq!((status, code(&body)), (409, "campaign_finished"));

    let (status, body) = api.get("/campaigns?status=cancelled").await;
    assert_eq!(status, 200);
    assert_eq!(body["campaigns"].as_array().unwrap().len(), 1);
    let (status, body) = api.get("/campaigns?limit=0").await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("limit"))
    );
    let (status, body) = api.get("/campaigns?status=sleeping").await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("status"))
    );
    api.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_statistics_count_calls_outcomes_and_attempts() {
    let api = Api::start().await;
    let id = api.new_campaign().await;
    let mut leads = Vec::new();
    for index in 0..4 {
        let (status, body) = api
            .post(
                &format!("/campaigns/{id}/leads"),
                json!({"name": format!("Lead {index}"), "phone": format!("+1415555020{index}")}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        leads.push(body["id"].as_str().unwrap().parse::<Uuid>().unwrap());
    }
    let pool = api.test.pool();
    // Four calls, one transferred, one still live; lead outcomes; one attempt ringing.
    for (index, (status, live)) in [
        ("called", false),
        ("transferred", false),
        ("no_answer", false),
        ("called", true),
    ]
    .iter()
    .enumerate()
    {
        sqlx::query(
            "INSERT INTO call_logs (campaign_id, lead_id, organization_id, call_sid, call_status,
                                    transferred, ended_at, end_reason)
             VALUES ($1, $2, $3, $4, $5, $5 = 'transferred',
                     CASE WHEN $6 THEN NULL ELSE now() END,
                     CASE WHEN $6 THEN NULL ELSE 'caller_hangup' END)",
        )
        .bind(id)
        .bind(leads[index])
        .bind(api.org.id)
        .bind(format!("CA-stats-{index}"))
        .bind(status)
        .bind(live)
        .execute(pool)
        .await
        .unwrap();
        if !live {
            sqlx::query("UPDATE leads SET call_status = $2 WHERE id = $1")
                .bind(leads[index])
                .bind(status)
                .execute(pool)
                .await
                .unwrap();
        }
    }
    sqlx::query("UPDATE campaigns SET total_calls = 3, transferred_calls = 1 WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE dial_attempts SET status = CASE WHEN lead_id = $2 THEN 'in_progress' ELSE 'completed' END
         WHERE campaign_id = $1 AND lead_id <> $3",
    )
    .bind(id)
    .bind(leads[3])
    .bind(leads[2])
    .execute(pool)
    .await
    .unwrap();

    let (status, body) = api.get(&format!("/campaigns/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(
        body["stats"],
        json!({
            "total_calls": 3,
            "transferred_calls": 1,
            "callbacks_pending": 0,
            "conversion_rate": 33.33,
            "live_calls": 1,
            "leads": 4,
            "outcomes": {"called": 1, "transferred": 1, "no_answer": 1, "not_called": 1},
            "attempts_pending": 1,
            "attempts_in_flight": 1,
            "attempts": {"completed": 2, "in_progress": 1, "scheduled": 1},
        })
    );
    api.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leads_are_normalised_deduplicated_and_test_called() {
    let api = Api::start().await;
    let id = api.new_campaign().await;
    let leads = format!("/campaigns/{id}/leads");
    let (status, body) = api
        .post(&leads, json!({"name": "Ada", "phone": "(415) 555-0100"}))
        .await;
    assert_eq!(
        (status, code(&body), body["error"]["field"].as_str()),
        (422, "phone_no_country_code", Some("phone"))
    );
    let (status, lead) = api
        .post(
            &format!("{leads}?default_country_code=1"),
            json!({"name": " Ada ", "phone": "(415) 555-0100", "email": "ada@example.com",
                   "timezone": "America/Los_Angeles", "metadata": {"budget": "400k"}}),
        )
        .await;
    assert_eq!(status, 201, "{lead}");
    assert_eq!(
        (
            lead["name"].as_str(),
            lead["phone"].as_str(),
            lead["source"].as_str()
        ),
        (Some("Ada"), Some("+14155550100"), Some("manual"))
    );
    // The organization's default country code applies when the request gives none.
    sqlx::query(
        "UPDATE organizations SET settings = '{\"default_country_code\": \"44\"}' WHERE id = $1",
    )
    .bind(api.org.id)
    .execute(api.test.pool())
    .await
    .unwrap();
    let (status, uk) = api
        .post(&leads, json!({"name": "Brit", "phone": "020 7946 0958"}))
        .await;
    assert_eq!((status, uk["phone"].as_str()), (201, Some("+442079460958")));
    let (status, body) = api
        .post(
            &leads,
            json!({"name": "Ada again", "phone": "+1 415 555 0100"}),
        )
        .await;
    assert_eq!((status, code(&body)), (409, "duplicate_lead"));
    assert_eq!(body["error"]["details"]["lead_id"], lead["id"]);

    let lead_id = lead["id"].as_str().unwrap();
    let (status, detail) = api.get(&format!("/leads/{lead_id}")).await;
    assert_eq!(status, 200);
    let attempts = detail["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(
        (
            attempts[0]["attempt_number"].as_i64(),
            attempts[0]["status"].as_str(),
            attempts[0]["is_test"].as_bool()
        ),
        (Some(1), Some("scheduled"), Some(false))
    );

    // A test call: the next attempt number, flagged, due now; once, not twice.
    let test_call = format!("/campaigns/{id}/leads/{lead_id}/test-call");
    let (status, call) = api.post(&test_call, json!({})).await;
    assert_eq!(status, 202, "{call}");
    assert_eq!(call["attempt_number"], 2);
    let (is_test, status_text, number): (bool, String, i32) =
        sqlx::query_as("SELECT is_test, status, attempt_number FROM dial_attempts WHERE id = $1")
            .bind(
                call["attempt_id"]
                    .as_str()
                    .unwrap()
                    .parse::<Uuid>()
                    .unwrap(),
            )
            .fetch_one(api.test.pool())
            .await
            .unwrap();
    assert_eq!(
        (is_test, status_text.as_str(), number),
        (true, "scheduled", 2)
    );
    let (status, body) = api.post(&test_call, json!({})).await;
    assert_eq!((status, code(&body)), (409, "test_call_pending"));
    sqlx::query("UPDATE dial_attempts SET status = 'ringing' WHERE id = $1")
        .bind(
            call["attempt_id"]
                .as_str()
                .unwrap()
                .parse::<Uuid>()
                .unwrap(),
        )
        .execute(api.test.pool())
        .await
        .unwrap();
    let (status, body) = api.post(&test_call, json!({})).await;
    assert_eq!((status, code(&body)), (409, "call_in_flight"));

    let (status, listed) = api.get(&format!("{leads}?limit=10")).await;
    assert_eq!(status, 200);
    assert_eq!(listed["leads"].as_array().unwrap().len(), 2);
    api.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_import_reports_bad_rows_by_line_and_never_half_imports() {
    let api = Api::start().await;
    let id = api.new_campaign().await;
    let import = format!("/campaigns/{id}/leads/import");
    let leads_of_campaign = "SELECT count(*) FROM leads l JOIN dial_attempts d ON d.lead_id = l.id
                             WHERE d.campaign_id = $1";
    let csv = "\u{feff}Name,Phone,Email,Timezone,Notes,Budget\n\
               Ada Lovelace,+44 20 7946 0958,ada@example.com,Europe/London,mornings,400k\n\
               ,+14155550111,,,,\n\
               Grace Hopper,(415) 555-0112,grace@example.com,,,\n\
               Alan Turing,+44 20 7946 0959,not-an-email,,,\n\
               Edsger,+31 20 123 4567,,Europe/Nowhere,,\n\
               \"Hopper, Grace\",0044 20 7946 0958,,,\"quoted, with comma\",\n";

    // By default one bad row refuses the file, and every bad line is listed.
    let (status, body) = api.upload(&import, csv).await;
    assert_eq!((status, code(&body)), (422, "invalid_rows"), "{body}");
    let errors: Vec<(u64, &str, &str)> = body["error"]["details"]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|error| {
            (
                error["line"].as_u64().unwrap(),
                error["field"].as_str().unwrap(),
                error["code"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        errors,
        [
            (3, "name", "name_empty"),
            (4, "phone", "phone_no_country_code"),
            (5, "email", "email_invalid"),
            (6, "timezone", "timezone_invalid"),
        ]
    );
    assert_eq!(
        api.count(leads_of_campaign, id).await,
        0,
        "nothing imported"
    );

    // With skip_invalid the good rows go in; a number already in the file is a duplicate.
    let (status, report) = api
        .upload(&format!("{import}?skip_invalid=true"), csv)
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        (
            report["rows"].as_u64(),
            report["imported"].as_u64(),
            report["duplicates"].as_u64(),
            report["invalid"].as_u64()
        ),
        (Some(6), Some(1), Some(1), Some(4))
    );
    assert_eq!(report["duplicate_lines"], json!([7]));
    let (name, phone, email, timezone, notes, source, metadata): ImportedLead = sqlx::query_as(
        "SELECT l.name, l.phone, l.email, l.timezone, l.notes, l.source, l.metadata
         FROM leads l JOIN dial_attempts d ON d.lead_id = l.id WHERE d.campaign_id = $1",
    )
    .bind(id)
    .fetch_one(api.test.pool())
    .await
    .unwrap();
    assert_eq!(
        (
            name.as_str(),
            phone.as_str(),
            email.as_deref(),
            timezone.as_deref(),
            notes.as_deref(),
            source.as_str()
        ),
        (
            "Ada Lovelace",
            "+442079460958",
            Some("ada@example.com"),
            Some("Europe/London"),
            Some("mornings"),
            "csv_upload"
        )
    );
    assert_eq!(metadata, Some(json!({"budget": "400k"})));

    // National numbers with a default country code; the same file again adds nothing new.
    let (status, report) = api
        .upload(
            &format!("{import}?default_country_code=1"),
            "name,phone\nGrace Hopper,(415) 555-0112\nAda Lovelace,+44 20 7946 0958\n",
        )
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        (report["imported"].as_u64(), report["duplicates"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(
        api.count(
            "SELECT count(*) FROM leads WHERE phone = '+14155550112' AND organization_id = (SELECT organization_id FROM campaigns WHERE id = $1)",
            id
        )
        .await,
        1
    );

    // A malformed file is refused whole, even after batches were inserted and with skip_invalid.
    let before = api.count(leads_of_campaign, id).await;
    let mut malformed = String::from("name,phone\n");
    for index in 0..2500 {
        malformed.push_str(&format!("Lead {index},+1212555{index:04}\n"));
    }
    malformed.push_str("Broken,+12125559999,extra field\n");
    let (status, body) = api
        .upload(&format!("{import}?skip_invalid=true"), &malformed)
        .await;
    assert_eq!((status, code(&body)), (400, "malformed_csv"), "{body}");
    assert_eq!(body["error"]["details"]["line"], 2502);
    assert_eq!(
        api.count(leads_of_campaign, id).await,
        before,
        "nothing half-imported"
    );
    let (status, body) = api
        .upload(&import, "name,email\nAda,ada@example.com\n")
        .await;
    assert_eq!(
        (status, code(&body), body["error"]["field"].as_str()),
        (422, "missing_column", Some("phone"))
    );
    let response = api
        .http
        .post(api.app.url(&format!("/api/v1{import}")))
        .bearer_auth(&api.token)
        .header("content-type", "text/csv")
        .body(b"name,phone\nJos\xe9,+14155550177\n".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        (code(&body), body["error"]["details"]["line"].as_u64()),
        ("malformed_csv", Some(2))
    );
    let response = api
        .http
        .post(api.app.url(&format!("/api/v1{import}")))
        .bearer_auth(&api.token)
        .header("content-type", "application/json")
        .body("[]")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 415);
    api.finish().await;
}

/// A lead's columns as an import wrote them.
type ImportedLead = (
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    Option<Value>,
);

/// Posts `chunks` as a chunked request body over a raw connection, so the test decides when
/// each part of the body leaves; returns the status and the JSON answer.
pub(crate) async fn upload_stream(
    address: SocketAddr,
    path: String,
    token: String,
    mut chunks: mpsc::Receiver<Vec<u8>>,
) -> (u16, Value) {
    let mut socket = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: text/csv\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    while let Some(chunk) = chunks.recv().await {
        let framed = [
            format!("{:x}\r\n", chunk.len()).into_bytes(),
            chunk,
            b"\r\n".to_vec(),
        ]
        .concat();
        if socket.write_all(&framed).await.is_err() {
            break; // The server answered early; read what it said.
        }
    }
    let _ = socket.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    socket.read_to_end(&mut answer).await.unwrap();
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut decoded = String::new();
        let mut rest = body;
        while let Some((size, after)) = rest.split_once("\r\n") {
            let size = usize::from_str_radix(size.trim(), 16).unwrap();
            if size == 0 {
                break;
            }
            decoded.push_str(&after[..size]);
            rest = &after[size + 2..];
        }
        decoded
    } else {
        body.to_owned()
    };
    (
        status,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100k_row_import_streams_into_the_database_as_it_arrives() {
    const ROWS: usize = 100_000;
    const ROWS_PER_CHUNK: usize = 500;
    let api = Api::start().await;
    let id = api.new_campaign().await;
    let (chunks, receiver) = mpsc::channel::<Vec<u8>>(4);
    let started = Instant::now();
    let upload = tokio::spawn(upload_stream(
        api.app.address,
        format!("/api/v1/campaigns/{id}/leads/import"),
        api.token.clone(),
        receiver,
    ));
    let rows = |range: std::ops::Range<usize>| {
        let mut chunk = String::with_capacity(ROWS_PER_CHUNK * 48);
        for index in range {
            chunk.push_str(&format!(
                "Lead {index},+1 646 {index:07},lead{index}@example.com,America/New_York\n"
            ));
        }
        chunk.into_bytes()
    };
    chunks
        .send(b"name,phone,email,timezone\n".to_vec())
        .await
        .unwrap();
    for start in (0..ROWS / 2).step_by(ROWS_PER_CHUNK) {
        chunks
            .send(rows(start..start + ROWS_PER_CHUNK))
            .await
            .unwrap();
    }
    // Half the file is out and the rest not yet: the server must already be inserting, inside
    // its open transaction (a server that read the whole body first could not be).
    let pool = api.test.pool().clone();
    wait_until("a batch inserted before the upload ended", DEADLINE, || {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND pid <> pg_backend_pid()
                   AND xact_start IS NOT NULL AND query LIKE 'WITH input AS (%UNNEST%'",
            )
            .fetch_one(&pool)
            .await
            .unwrap()
                > 0
        }
    })
    .await;
    let half_inserted_at = started.elapsed();
    assert!(!upload.is_finished(), "the upload is still open");
    for start in (ROWS / 2..ROWS).step_by(ROWS_PER_CHUNK) {
        chunks
            .send(rows(start..start + ROWS_PER_CHUNK))
            .await
            .unwrap();
    }
    drop(chunks);
    let (status, report) = tokio::time::timeout(Duration::from_secs(300), upload)
        .await
        .expect("the import finished")
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["rows"], ROWS);
    assert_eq!(report["imported"], ROWS);
    assert_eq!(report["invalid"], 0);
    assert_eq!(
        api.count(
            "SELECT count(*) FROM dial_attempts WHERE campaign_id = $1 AND status = 'scheduled' AND attempt_number = 1",
            id
        )
        .await,
        ROWS as i64
    );
    assert_eq!(
        api.count(
            "SELECT count(*) FROM leads WHERE organization_id = (SELECT organization_id FROM campaigns WHERE id = $1)
             AND source = 'csv_upload' AND phone ~ '^\\+1646[0-9]{7}$'",
            id
        )
        .await,
        ROWS as i64
    );
    eprintln!(
        "100k-row CSV import: {elapsed:?} end to end ({} ms in the server, {:.0} rows/s); \
         first batch in the database {half_inserted_at:?} after the upload began",
        report["elapsed_ms"],
        ROWS as f64 / elapsed.as_secs_f64()
    );
    api.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_listed_filtered_and_read_with_transcript_and_events() {
    let api = Api::start().await;
    let pool = api.test.pool();
    let mut ids = Vec::new();
    for (index, (status, reason, hours_ago)) in [
        ("called", Some("agent_ended"), 30),
        ("transferred", Some("transferred"), 2),
        ("called", None, 0),
    ]
    .iter()
    .enumerate()
    {
        let id: Uuid = sqlx::query_scalar(
            "INSERT INTO call_logs (campaign_id, lead_id, organization_id, call_sid, call_status,
                                    end_reason, ended_at, call_timestamp, transcript, conversation_summary)
             VALUES ($1, $2, $3, $4, $5, $6, CASE WHEN $6 IS NULL THEN NULL ELSE now() END,
                     now() - make_interval(hours => $7), 'Agent: Hello', 'A short call')
             RETURNING id",
        )
        .bind(api.org.campaign_id)
        .bind(api.org.lead_ids[index % 2])
        .bind(api.org.id)
        .bind(format!("CA-list-{index}"))
        .bind(status)
        .bind(reason)
        .bind(*hours_ago)
        .fetch_one(pool)
        .await
        .unwrap();
        ids.push(id);
    }
    for (seq, kind, text) in [(0, "agent_speech", "Hello"), (1, "caller_speech", "Hi")] {
        sqlx::query(
            "INSERT INTO call_events (call_log_id, organization_id, seq, kind, occurred_at, text)
             VALUES ($1, $2, $3, $4, now(), $5)",
        )
        .bind(ids[0])
        .bind(api.org.id)
        .bind(seq)
        .bind(kind)
        .bind(text)
        .execute(pool)
        .await
        .unwrap();
    }
    let listed = |body: &Value| -> Vec<String> {
        body["calls"]
            .as_array()
            .unwrap_or_else(|| panic!("no calls in {body}"))
            .iter()
            .map(|call| call["call_sid"].as_str().unwrap().to_owned())
            .collect()
    };
    let (status, body) = api.get("/calls").await;
    assert_eq!(status, 200);
    assert_eq!(
        listed(&body),
        ["CA-list-2", "CA-list-1", "CA-list-0"],
        "newest first"
    );
    let (_, body) = api.get("/calls?status=transferred").await;
    assert_eq!(listed(&body), ["CA-list-1"]);
    let (_, body) = api.get("/calls?end_reason=agent_ended").await;
    assert_eq!(listed(&body), ["CA-list-0"]);
    let since = (Utc::now() - chrono::Duration::hours(5)).to_rfc3339();
    let (_, body) = api
        .get(&format!("/calls?from={}", since.replace('+', "%2B")))
        .await;
    assert_eq!(listed(&body), ["CA-list-2", "CA-list-1"]);
    let (_, body) = api
        .get(&format!(
            "/calls?campaign_id={}&limit=1&offset=1",
            api.org.campaign_id
        ))
        .await;
    assert_eq!(listed(&body), ["CA-list-1"]);
    let (_, body) = api
        .get(&format!("/calls?campaign_id={}", Uuid::new_v4()))
        .await;
    assert_eq!(listed(&body), Vec::<String>::new());
    let (_, body) = api.get("/calls/live").await;
    assert_eq!(listed(&body), ["CA-list-2"]);
    let (status, body) = api.get("/calls?status=lost").await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("status"))
    );
    let (status, body) = api.get("/calls?from=yesterday").await;
    assert_eq!(
        (status, code(&body), body["error"]["field"].as_str()),
        (400, "invalid_query", Some("from"))
    );

    let (status, call) = api.get(&format!("/calls/{}", ids[0])).await;
    assert_eq!(status, 200);
    assert_eq!(
        (
            call["transcript"].as_str(),
            call["conversation_summary"].as_str(),
            call["end_reason"].as_str()
        ),
        (
            Some("Agent: Hello"),
            Some("A short call"),
            Some("agent_ended")
        )
    );
    let events: Vec<(&str, &str)> = call["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| {
            (
                event["kind"].as_str().unwrap(),
                event["text"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(events, [("agent_speech", "Hello"), ("caller_speech", "Hi")]);
    let (status, body) = api
        .post(&format!("/calls/{}/hangup", ids[0]), json!({}))
        .await;
    assert_eq!(
        (status, code(&body)),
        (404, "not_found"),
        "an ended call is not live"
    );
    let (status, _) = api.get(&format!("/calls/{}", Uuid::new_v4())).await;
    assert_eq!(status, 404);
    api.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_targets_and_caller_ids_are_managed() {
    let api = Api::start().await;
    let (status, target) = api
        .post(
            "/organization/transfer-targets",
            json!({"name": "Sales desk", "department": "sales", "phone_number": "+14155550150",
                   "timezone": "America/New_York", "working_hours_start": "09:00", "working_hours_end": "17:30"}),
        )
        .await;
    assert_eq!(status, 201, "{target}");
    assert_eq!(target["working_hours_end"], "17:30:00");
    assert_eq!(target["priority"], 100);
    let path = format!(
        "/organization/transfer-targets/{}",
        target["id"].as_str().unwrap()
    );
    let (status, body) = api
        .post(
            "/organization/transfer-targets",
            json!({"name": "x", "department": "Sales Team", "phone_number": "+14155550150"}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("department"))
    );
    let (status, body) = api
        .post(
            "/organization/transfer-targets",
            json!({"name": "x", "department": "sales", "phone_number": "415 555 0150"}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("phone_number"))
    );
    let (status, updated) = api
        .patch(
            &path,
            json!({"priority": 5, "working_hours_start": null, "working_hours_end": null}),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(
        (
            updated["priority"].as_i64(),
            &updated["working_hours_start"]
        ),
        (Some(5), &Value::Null)
    );
    let (status, body) = api
        .patch(&path, json!({"working_hours_start": "10:00"}))
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("working_hours_end"))
    );
    let (_, listed) = api.get("/organization/transfer-targets").await;
    assert_eq!(listed["transfer_targets"].as_array().unwrap().len(), 1);
    let (status, _) = api
        .send(Method::GET, &path, Some(&api.other_token), None)
        .await;
    assert_eq!(status, 404, "another organization's target");
    let (status, _) = api
        .send(Method::DELETE, &path, Some(&api.token), None)
        .await;
    assert_eq!(status, 204);
    let (status, _) = api.get(&path).await;
    assert_eq!(status, 404);

    let (status, number) = api
        .post(
            "/organization/caller-ids",
            json!({"phone_number": "+14155550160", "label": "main"}),
        )
        .await;
    assert_eq!(status, 201, "{number}");
    let (status, body) = api
        .send(
            Method::POST,
            "/organization/caller-ids",
            Some(&api.other_token),
            Some(json!({"phone_number": "+14155550160"})),
        )
        .await;
    assert_eq!((status, code(&body)), (409, "phone_number_taken"));
    let (status, body) = api
        .send(
            Method::PUT,
            "/organization/caller-ids/default",
            Some(&api.token),
            Some(json!({"caller_id": "+14155550999"})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("caller_id"))
    );
    let (status, ids) = api
        .send(
            Method::PUT,
            "/organization/caller-ids/default",
            Some(&api.token),
            Some(json!({"caller_id": "+14155550160"})),
        )
        .await;
    assert_eq!(status, 200, "{ids}");
    assert_eq!(ids["default_caller_id"], "+14155550160");
    assert_eq!(ids["numbers"][0]["label"], "main");
    // Now a campaign may use it.
    let (status, body) = api
        .post(
            "/campaigns",
            json!({"name": "With caller ID", "caller_id": "+14155550160"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, _) = api
        .send(
            Method::DELETE,
            &format!(
                "/organization/caller-ids/{}",
                number["id"].as_str().unwrap()
            ),
            Some(&api.token),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (_, ids) = api.get("/organization/caller-ids").await;
    assert_eq!(ids["numbers"], json!([]));
    api.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_matches_the_routes() {
    let api = Api::start().await;
    let (status, document) = api.send(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(status, 200, "served without a token");
    assert_eq!(document["openapi"], "3.1.0");
    let paths = document["paths"].as_object().unwrap();
    assert!(paths.len() >= 15, "{} paths", paths.len());
    let methods = ["get", "post", "put", "patch", "delete"];
    let mut documented = 0;
    for (path, item) in paths {
        assert!(path.starts_with("/api/v1/"), "{path}");
        // Path parameters become fresh ids: the route must answer, and refuse without a token.
        let concrete: String = path
            .split('/')
            .map(|segment| {
                if segment.starts_with('{') {
                    Uuid::new_v4().to_string()
                } else {
                    segment.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        for method in methods {
            let response = api
                .http
                .request(
                    Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap(),
                    api.app.url(&concrete),
                )
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            match item.get(method) {
                Some(operation) => {
                    documented += 1;
                    let secured = !operation["security"].as_array().unwrap().is_empty();
                    // A signed link's signature is its credential: without one, 403.
                    let signed = operation["parameters"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|parameter| parameter["name"] == "sig");
                    let expected = match (secured, signed) {
                        (true, _) => 401,
                        (false, true) => 403,
                        (false, false) => 200,
                    };
                    assert_eq!(status, expected, "{method} {path} is documented and routed");
                    if secured {
                        let scope = operation["security"][0]["bearer"][0].as_str().unwrap();
                        assert!(Scope::parse(scope).is_some(), "{scope}");
                        assert!(operation["responses"]["403"].is_object());
                    }
                }
                None => assert_eq!(
                    status, 405,
                    "{method} {path} is not documented, so not routed"
                ),
            }
        }
    }
    assert_eq!(documented, voice_gateway::api::operations().len());
    // A path outside the document is no route at all.
    let (status, body) = api.get("/campaigns/not/a/route").await;
    assert_eq!((status, code(&body)), (404, "no_route"));
    let schemas = document["components"]["schemas"].as_object().unwrap();
    let text = document.to_string();
    for name in text.split("#/components/schemas/").skip(1) {
        let name = name.split('"').next().unwrap();
        assert!(
            schemas.contains_key(name),
            "a $ref to a missing schema {name}"
        );
    }
    api.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hangup_reaches_the_call_held_by_the_other_instance() {
    const AUTH_TOKEN: &str = "plivo-test-token";
    let test = TestDb::new().await;
    let org = seed_org(test.pool(), "Acme Homes", 1).await;
    let token = issue(&test, org.id, &[Scope::CallsRead, Scope::CallsWrite]).await;
    let fake = FakeRealtimeServer::start(FakeRealtimeConfig::default())
        .await
        .unwrap();
    let fake_url = fake.url();
    let settings = [
        ("OPENAI_REALTIME_URL", fake_url.as_str()),
        ("PLIVO_AUTH_ID", "MATEST"),
        ("PLIVO_AUTH_TOKEN", AUTH_TOKEN),
        ("VG_DIALER_ENABLED", "false"),
    ];
    let instance_a = TestApp::spawn(settings_for(&test.url, "gw-a", &settings)).await;
    let instance_b = TestApp::spawn(settings_for(&test.url, "gw-b", &settings)).await;
    let http = reqwest::Client::new();

    // A call through instance B, which waits until the gateway closes it.
    let caller = CallerConfig {
        gateway: format!("http://{}", instance_b.address),
        public_url: "https://gateway.test".to_owned(),
        auth_token: AUTH_TOKEN.to_owned(),
        call_sid: "CA-hangup".to_owned(),
        answer_query: format!(
            "lead_id={}&campaign_id={}",
            org.lead_ids[0], org.campaign_id
        ),
        from: "14155550100".to_owned(),
        to: "14155550000".to_owned(),
        keep_agent_audio: false,
    };
    let call = tokio::spawn({
        let http = http.clone();
        async move {
            plivo_caller::place_call(
                &caller,
                &http,
                &[Step::WaitForAgentAudio, Step::WaitForClose],
            )
            .await
        }
    });
    let pool = test.pool().clone();
    wait_until("the live call on instance B", DEADLINE, || {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, String>(
                "SELECT server_name FROM call_logs WHERE call_sid = 'CA-hangup' AND ended_at IS NULL",
            )
            .fetch_optional(&pool)
            .await
            .unwrap()
            .as_deref()
                == Some("gw-b")
        }
    })
    .await;
    // Both instances listen before the request (a notification sent earlier would be lost).
    wait_until("both hang-up listeners", DEADLINE, || {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND query = 'LISTEN \"vg_call_hangup\"'",
            )
            .fetch_one(&pool)
            .await
            .unwrap()
                >= 2
        }
    })
    .await;
    let call_id: Uuid = sqlx::query_scalar("SELECT id FROM call_logs WHERE call_sid = 'CA-hangup'")
        .fetch_one(&pool)
        .await
        .unwrap();

    let live: Value = http
        .get(instance_a.url("/api/v1/calls/live"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        live["calls"][0]["call_sid"], "CA-hangup",
        "instance A sees B's live call"
    );
    assert!(!call.is_finished(), "the call is still up");

    let response = http
        .post(instance_a.url(&format!("/api/v1/calls/{call_id}/hangup")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    let accepted: Value = response.json().await.unwrap();
    assert_eq!(accepted["call_sid"], "CA-hangup");

    let report = tokio::time::timeout(DEADLINE, call)
        .await
        .expect("the call ended after the hang-up")
        .unwrap()
        .expect("the call ran");
    assert!(report.closed_by_gateway, "instance B hung up");
    wait_until("the call's close row", DEADLINE, || {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, Option<String>>(
                "SELECT end_reason FROM call_logs WHERE call_sid = 'CA-hangup'",
            )
            .fetch_one(&pool)
            .await
            .unwrap()
            .is_some()
        }
    })
    .await;
    let (end_reason, server_name): (String, String) = sqlx::query_as(
        "SELECT end_reason, server_name FROM call_logs WHERE call_sid = 'CA-hangup'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        (end_reason.as_str(), server_name.as_str()),
        ("hangup_requested", "gw-b")
    );
    let response = http
        .post(instance_a.url(&format!("/api/v1/calls/{call_id}/hangup")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404, "no longer live");
    instance_a.shutdown().await;
    instance_b.shutdown().await;
}
