//! The dashboard (`/app`) over plain HTTP: sign-in and its cookie, sessions ended by their
//! token, CSRF, organization scoping, the security headers, server-rendered pages (no
//! JavaScript needed to read them), paging, and the live pages' Server-Sent Events fed by
//! PostgreSQL notifications.

use std::time::{Duration, Instant};

use reqwest::{StatusCode, header};
use serde_json::json;
use sha2::{Digest, Sha256};
use uuid::Uuid;
use voice_gateway::api::tokens::{Scope, hash_secret};

use crate::campaign_api::Api;

const DEADLINE: Duration = Duration::from_secs(30);

/// A signed-in browser, without one: cookies and redirects by hand, to see them.
struct Dash {
    api: Api,
    http: reqwest::Client,
    cookie: String,
}

impl Dash {
    async fn start() -> Self {
        let api = Api::start().await;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let mut dash = Self {
            api,
            http,
            cookie: String::new(),
        };
        let token = dash.api.token.clone();
        dash.cookie = dash.sign_in(&token).await;
        dash
    }

    fn url(&self, path: &str) -> String {
        self.api.app.url(path)
    }

    /// Signs in with `token`; the `name=value` of the session cookie.
    async fn sign_in(&self, token: &str) -> String {
        let response = self
            .http
            .post(self.url("/app/login"))
            .form(&[("token", token)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(response.headers()[header::LOCATION], "/app");
        let set_cookie = response.headers()[header::SET_COOKIE].to_str().unwrap();
        set_cookie.split(';').next().unwrap().to_owned()
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.get_as(&self.cookie, path).await
    }

    /// A GET in the session of `cookie`.
    async fn get_as(&self, cookie: &str, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .header(header::COOKIE, cookie)
            .send()
            .await
            .unwrap()
    }

    async fn page(&self, path: &str) -> String {
        let response = self.get(path).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        response.text().await.unwrap()
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.post_as(&self.cookie, path, form).await
    }

    /// A form posted in the session of `cookie`.
    async fn post_as(&self, cookie: &str, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .header(header::COOKIE, cookie)
            .form(form)
            .send()
            .await
            .unwrap()
    }

    async fn csrf(&self) -> String {
        self.csrf_as(&self.cookie).await
    }

    /// The CSRF token of the session of `cookie`.
    async fn csrf_as(&self, cookie: &str) -> String {
        let response = self.get_as(cookie, "/app").await;
        assert_eq!(response.status(), StatusCode::OK);
        let page = response.text().await.unwrap();
        let start = page.find(r#"name="csrf" value=""#).expect("a CSRF field") + 19;
        page[start..start + 64].to_owned()
    }

    /// The session cookie of a new token of the organization with `scopes`.
    async fn session_with(&self, scopes: &[Scope]) -> String {
        let token = crate::campaign_api::issue(&self.api.test, self.api.org.id, scopes).await;
        self.sign_in(&token).await
    }

    /// The organization's API tokens.
    async fn tokens(&self) -> i64 {
        self.api
            .count(
                "SELECT count(*) FROM api_tokens WHERE organization_id = $1",
                self.api.org.id,
            )
            .await
    }

    async fn token_id(&self, secret: &str) -> Uuid {
        sqlx::query_scalar("SELECT id FROM api_tokens WHERE token_hash = $1")
            .bind(hash_secret(secret).to_vec())
            .fetch_one(self.api.test.pool())
            .await
            .unwrap()
    }

    /// Posts the campaign page's upload form as a browser does (`multipart/form-data`, the
    /// fields in the page's order, the file last); the status and the page.
    async fn upload(
        &self,
        campaign: Uuid,
        fields: &[(&str, &str)],
        csv: &str,
    ) -> (StatusCode, String) {
        let boundary = "----vg-dashboard-test-boundary";
        let mut body = Vec::new();
        for (name, value) in fields {
            body.extend_from_slice(
                format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                    .as_bytes(),
            );
        }
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"leads.csv\"\r\nContent-Type: text/csv\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(csv.as_bytes());
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let response = self
            .http
            .post(self.url(&format!("/app/campaigns/{campaign}/leads/import")))
            .header(header::COOKIE, &self.cookie)
            .header(
                header::CONTENT_TYPE,
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.text().await.unwrap())
    }

    /// Leads the organization has, and attempts the campaign has.
    async fn leads_and_attempts(&self, campaign: Uuid) -> (i64, i64) {
        let leads = self
            .api
            .count(
                "SELECT count(*) FROM leads WHERE organization_id = $1",
                self.api.org.id,
            )
            .await;
        let attempts = self
            .api
            .count(
                "SELECT count(*) FROM dial_attempts WHERE campaign_id = $1",
                campaign,
            )
            .await;
        (leads, attempts)
    }

    /// The status of `GET /api/v1/campaigns` with `token`.
    async fn api_status(&self, token: &str) -> u16 {
        self.api
            .send(reqwest::Method::GET, "/campaigns", Some(token), None)
            .await
            .0
    }

    async fn campaign_status(&self, id: Uuid) -> String {
        sqlx::query_scalar("SELECT status FROM campaigns WHERE id = $1")
            .bind(id)
            .fetch_one(self.api.test.pool())
            .await
            .unwrap()
    }

    async fn insert_call(
        &self,
        organization_id: Uuid,
        campaign_id: Uuid,
        lead_id: Uuid,
        sid: &str,
    ) -> Uuid {
        sqlx::query_scalar(
            "INSERT INTO call_logs (campaign_id, lead_id, organization_id, call_sid, call_status)
             VALUES ($1, $2, $3, $4, 'called') RETURNING id",
        )
        .bind(campaign_id)
        .bind(lead_id)
        .bind(organization_id)
        .bind(sid)
        .fetch_one(self.api.test.pool())
        .await
        .unwrap()
    }
}

/// Reads a Server-Sent Events response until its text so far contains `needle`.
async fn read_until(response: &mut reqwest::Response, seen: &mut String, needle: &str) {
    let started = Instant::now();
    while !seen.contains(needle) {
        let left = DEADLINE.saturating_sub(started.elapsed());
        let chunk = tokio::time::timeout(left, response.chunk())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {needle:?} in {seen}"))
            .unwrap()
            .unwrap_or_else(|| panic!("the stream ended before {needle:?}: {seen}"));
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test]
async fn sign_in_opens_a_strict_session_and_pages_render_without_javascript() {
    let dash = Dash::start().await;
    // Signed out: every page sends the browser to sign in.
    let response = dash.http.get(dash.url("/app")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[header::LOCATION], "/app/login");

    let login = dash.http.get(dash.url("/app/login")).send().await.unwrap();
    assert_eq!(login.status(), StatusCode::OK);
    let csp = login.headers()[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("default-src 'self'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(login.headers()[header::X_FRAME_OPTIONS], "DENY");
    assert_eq!(login.headers()[header::REFERRER_POLICY], "no-referrer");
    assert!(
        login
            .text()
            .await
            .unwrap()
            .contains(r#"<form method="post" action="/app/login">"#)
    );

    // A wrong token: no session.
    let refused = dash
        .http
        .post(dash.url("/app/login"))
        .form(&[("token", "vg_not-a-token")])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert!(refused.headers().get(header::SET_COOKIE).is_none());
    // A good token posted from another site's form: refused (login CSRF).
    let cross_site = dash
        .http
        .post(dash.url("/app/login"))
        .header(header::ORIGIN, "https://attacker.example")
        .form(&[("token", dash.api.token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(cross_site.status(), StatusCode::FORBIDDEN);
    assert!(cross_site.headers().get(header::SET_COOKIE).is_none());
    let cross_site = dash
        .http
        .post(dash.url("/app/login"))
        .header("sec-fetch-site", "cross-site")
        .header(header::ORIGIN, "null")
        .form(&[("token", dash.api.token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(cross_site.status(), StatusCode::FORBIDDEN);

    // The cookie: HttpOnly, SameSite=Strict, Path=/app, Secure (the public URL is https).
    let response = dash
        .http
        .post(dash.url("/app/login"))
        .form(&[("token", dash.api.token.as_str())])
        .send()
        .await
        .unwrap();
    let cookie = response.headers()[header::SET_COOKIE].to_str().unwrap();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/app", "Secure"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    // Only the session id's hash is stored, and no token is in the cookie.
    let id = cookie
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("vg_session=");
    assert!(!cookie.contains(&dash.api.token));
    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM dashboard_sessions WHERE id_hash = $1")
            .bind(Sha256::digest(id.as_bytes()).to_vec())
            .fetch_one(dash.api.test.pool())
            .await
            .unwrap();
    assert_eq!(stored, 1);

    // The campaigns page, server-rendered: the campaign, its figures, its actions; the only
    // script is the file.
    let page = dash.page("/app").await;
    assert!(page.contains("Spring launch"), "{page}");
    assert!(page.contains("Conversion") && page.contains("Pending attempts"));
    assert!(page.contains(&format!(
        r#"action="/app/campaigns/{}/pause""#,
        dash.api.org.campaign_id
    )));
    assert_eq!(page.matches("<script").count(), 1);
    assert!(page.contains(r#"<script src="/app/assets/dashboard.js" defer></script>"#));
    assert!(!page.contains(&dash.api.token));
    // The navigation says where the page is, to screen readers too.
    assert_eq!(page.matches(r#"aria-current="page""#).count(), 1);
    assert!(page.contains(r#"<a href="/app" aria-current="page">Campaigns</a>"#));
    let tokens = dash.page("/app/tokens").await;
    assert!(tokens.contains(r#"<a href="/app/tokens" aria-current="page">Tokens</a>"#));
    assert_eq!(tokens.matches(r#"aria-current="page""#).count(), 1);
    let script = dash.get("/app/assets/dashboard.js").await;
    assert_eq!(script.status(), StatusCode::OK);
    assert!(
        script.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    dash.api.finish().await;
}

#[tokio::test]
async fn a_revoked_or_expired_tokens_session_is_signed_out_at_its_next_request() {
    let dash = Dash::start().await;
    assert_eq!(dash.get("/app").await.status(), StatusCode::OK);
    let token = dash
        .api
        .test
        .db
        .api_token_by_hash(&hash_secret(&dash.api.token))
        .await
        .unwrap()
        .unwrap();
    assert!(dash.api.test.db.revoke_api_token(token.id).await.unwrap());
    let response = dash.get("/app/calls/live").await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[header::LOCATION], "/app/login");
    let sessions: i64 =
        sqlx::query_scalar("SELECT count(*) FROM dashboard_sessions WHERE token_id = $1")
            .bind(token.id)
            .fetch_one(dash.api.test.pool())
            .await
            .unwrap();
    assert_eq!(sessions, 0, "the session is gone, not just refused");

    // Expired: the other organization's token, signed in, then past its expiry.
    let mut other = Dash {
        api: dash.api,
        http: dash.http,
        cookie: String::new(),
    };
    let other_token = other.api.other_token.clone();
    other.cookie = other.sign_in(&other_token).await;
    assert_eq!(other.get("/app").await.status(), StatusCode::OK);
    sqlx::query(
        "UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE token_hash = $1",
    )
    .bind(hash_secret(&other_token).to_vec())
    .execute(other.api.test.pool())
    .await
    .unwrap();
    assert_eq!(other.get("/app").await.status(), StatusCode::SEE_OTHER);
    other.api.finish().await;
}

#[tokio::test]
async fn expired_sessions_are_refused_and_pruned() {
    let dash = Dash::start().await;
    let pool = dash.api.test.pool();
    sqlx::query("UPDATE dashboard_sessions SET expires_at = now() - interval '1 second'")
        .execute(pool)
        .await
        .unwrap();
    assert_eq!(dash.get("/app").await.status(), StatusCode::SEE_OTHER);
    // The gateway's own pruning task makes its first pass at start, which may come after the
    // expiry above: whichever pass takes it, the session goes once.
    let pruned = dash.api.test.db.prune_dashboard_sessions().await.unwrap();
    assert!(pruned <= 1, "{pruned} sessions pruned");
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM dashboard_sessions")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(left, 0);
    dash.api.finish().await;
}

#[tokio::test]
async fn forms_need_the_sessions_csrf_token_and_run_the_transitions() {
    let dash = Dash::start().await;
    let campaign = dash.api.org.campaign_id;
    let csrf = dash.csrf().await;
    let path = format!("/app/campaigns/{campaign}/pause");
    for forged in ["", "0000", &"0".repeat(64)] {
        let response = dash.post(&path, &[("csrf", forged)]).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{forged:?}");
    }
    assert_eq!(dash.campaign_status(campaign).await, "running");

    let response = dash
        .post(&path, &[("csrf", &csrf), ("back", "campaign")])
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        response.headers()[header::LOCATION],
        format!("/app/campaigns/{campaign}")
    );
    assert_eq!(dash.campaign_status(campaign).await, "paused");
    // Not allowed from paused: 409, nothing changes.
    let again = dash.post(&path, &[("csrf", &csrf)]).await;
    assert_eq!(again.status(), StatusCode::CONFLICT);
    let resume = dash
        .post(
            &format!("/app/campaigns/{campaign}/resume"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(resume.status(), StatusCode::SEE_OTHER);
    assert_eq!(dash.campaign_status(campaign).await, "running");

    // Sign-out needs the token too, and then the cookie opens nothing.
    assert_eq!(
        dash.post("/app/logout", &[("csrf", "forged")])
            .await
            .status(),
        StatusCode::FORBIDDEN
    );
    let out = dash.post("/app/logout", &[("csrf", &csrf)]).await;
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert!(
        out.headers()[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    assert_eq!(dash.get("/app").await.status(), StatusCode::SEE_OTHER);
    dash.api.finish().await;
}

#[tokio::test]
async fn another_organizations_campaign_and_call_are_not_found() {
    let dash = Dash::start().await;
    let csrf = dash.csrf().await;
    let other = &dash.api.other;
    let call = dash
        .insert_call(other.id, other.campaign_id, other.lead_ids[0], "CA-other")
        .await;
    for path in [
        format!("/app/campaigns/{}", other.campaign_id),
        format!("/app/calls/{call}"),
        format!("/app/calls/{call}/events"),
        format!("/app/campaigns/{}", Uuid::new_v4()),
    ] {
        assert_eq!(
            dash.get(&path).await.status(),
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    for path in [
        format!("/app/campaigns/{}/pause", other.campaign_id),
        format!("/app/calls/{call}/hangup"),
    ] {
        let response = dash.post(&path, &[("csrf", &csrf)]).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
    }
    assert_eq!(dash.campaign_status(other.campaign_id).await, "running");
    // The live list shows none of it.
    assert!(!dash.page("/app/calls/live").await.contains("CA-other"));
    dash.api.finish().await;
}

/// The path a page's `rel` ("next" or "prev") paging link leads to.
fn link(page: &str, rel: &str) -> String {
    let marker = format!(r#"rel="{rel}" href=""#);
    let start = page.find(&marker).expect("the link") + marker.len();
    let end = start + page[start..].find('"').unwrap();
    page[start..end].replace("&amp;", "&")
}

#[tokio::test]
async fn a_campaigns_leads_are_listed_by_status_a_page_at_a_time() {
    let dash = Dash::start().await;
    let org = &dash.api.org;
    let pool = dash.api.test.pool();
    sqlx::query(
        "WITH new AS (
             INSERT INTO leads (organization_id, name, phone, call_status)
             SELECT $1, 'Paged ' || lpad(n::text, 3, '0'), '+1415556' || lpad(n::text, 4, '0'),
                    CASE WHEN n % 5 = 0 THEN 'transferred' ELSE 'called' END
             FROM generate_series(1, 55) n RETURNING id)
         INSERT INTO dial_attempts (organization_id, campaign_id, lead_id, attempt_number, status)
         SELECT $1, $2, id, 1, 'completed' FROM new",
    )
    .bind(org.id)
    .bind(org.campaign_id)
    .execute(pool)
    .await
    .unwrap();
    let base = format!("/app/campaigns/{}", org.campaign_id);
    let names = |page: &str| -> Vec<String> {
        page.match_indices("Paged ")
            .map(|(at, _)| page[at..at + 9].to_owned())
            .collect()
    };
    let first = dash.page(&base).await;
    assert_eq!(first.matches("Paged ").count(), 50);
    assert!(first.contains(r#"rel="next""#) && !first.contains(r#"rel="prev""#));
    let second = dash.page(&link(&first, "next")).await;
    assert_eq!(second.matches("Paged ").count(), 5);
    assert!(!second.contains(r#"rel="next""#) && second.contains(r#"rel="prev""#));
    assert!(second.contains("Page 2"));
    // Back again: the first page, whole.
    let back = dash.page(&link(&second, "prev")).await;
    assert_eq!(back.matches("Paged ").count(), 50);
    assert!(back.contains("Page 1") && !back.contains(r#"rel="prev""#));
    assert_eq!(names(&back), names(&first));
    // A forged place is refused, not guessed at.
    for bad in [
        "after=12.x",
        "before=nonsense",
        "after=1.00000000-0000-0000-0000-000000000000&before=1.00000000-0000-0000-0000-000000000000",
    ] {
        assert_eq!(
            dash.get(&format!("{base}?{bad}")).await.status(),
            StatusCode::BAD_REQUEST,
            "{bad}"
        );
    }
    // The two pages together: every lead once.
    let mut all = names(&first);
    all.extend(names(&second));
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 55);
    let transferred = dash.page(&format!("{base}?status=transferred")).await;
    assert_eq!(transferred.matches("Paged ").count(), 11);
    assert_eq!(
        dash.get(&format!("{base}?status=nonsense")).await.status(),
        StatusCode::BAD_REQUEST
    );
    dash.api.finish().await;
}

#[tokio::test]
async fn live_calls_and_a_transcript_arrive_through_server_sent_events() {
    let dash = Dash::start().await;
    let org = &dash.api.org;
    let pool = dash.api.test.pool().clone();

    let mut live = dash.get("/app/calls/live/events").await;
    assert_eq!(live.status(), StatusCode::OK);
    assert!(
        live.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut seen = String::new();
    // The stream starts with the rows as they are.
    read_until(&mut live, &mut seen, "No live calls.").await;

    // A call opens (any gateway would do: the notification comes from the database).
    let call = dash
        .insert_call(org.id, org.campaign_id, org.lead_ids[0], "CA-dash-live")
        .await;
    read_until(&mut live, &mut seen, "CA-dash-live").await;
    let page = dash.page(&format!("/app/calls/{call}")).await;
    assert!(page.contains(r#"id="hangup""#) && page.contains("data-events="));

    let mut lines = dash
        .get(&format!("/app/calls/{call}/events?after=-1"))
        .await;
    assert_eq!(lines.status(), StatusCode::OK);
    let mut transcript = String::new();
    for (seq, kind, text, data) in [
        (
            0,
            "agent_speech",
            "Hello, this is Ava from Lakeside.",
            json!({}),
        ),
        (1, "caller_speech", "Can I talk to a person?", json!({})),
        (2, "barge_in", "", json!({})),
        (
            3,
            "transfer_decision",
            "the caller asked for a human",
            json!({"decision": "transfer"}),
        ),
    ] {
        sqlx::query(
            "INSERT INTO call_events (call_log_id, organization_id, seq, kind, occurred_at, text, data)
             VALUES ($1, $2, $3, $4, now(), NULLIF($5, ''), $6)",
        )
        .bind(call)
        .bind(org.id)
        .bind(seq)
        .bind(kind)
        .bind(text)
        .bind(data)
        .execute(&pool)
        .await
        .unwrap();
        read_until(&mut lines, &mut transcript, &format!(r#"data-seq="{seq}""#)).await;
    }
    assert!(transcript.contains("Can I talk to a person?"));
    assert!(transcript.contains(r#"class="barge-in""#));
    assert!(transcript.contains("Transfer decision: transfer"));

    // It ends: the transcript stream says so, the live list empties, the page shows the
    // summary and the analysis.
    sqlx::query(
        "UPDATE call_logs SET ended_at = now(), end_reason = 'agent_ended',
                conversation_summary = 'Wants a viewing on Saturday.',
                metadata = '{\"analysis\": {\"interest\": \"high\"}}'
         WHERE id = $1",
    )
    .bind(call)
    .execute(&pool)
    .await
    .unwrap();
    read_until(&mut lines, &mut transcript, "event: ended").await;
    let mut after_close = String::new();
    read_until(&mut live, &mut after_close, "No live calls.").await;
    let page = dash.page(&format!("/app/calls/{call}")).await;
    assert!(page.contains("Wants a viewing on Saturday."));
    assert!(page.contains("interest") && page.contains("high"));
    assert!(page.contains("This call has no recording."));
    assert!(!page.contains(r#"id="hangup""#));
    assert!(page.contains("Hello, this is Ava from Lakeside."));

    // With a recording: an <audio> player on the signed link, relative to the page (the CSP's
    // media-src 'self'), which the recordings route accepts.
    sqlx::query("UPDATE call_logs SET recording_url = 'file:///nowhere.ogg' WHERE id = $1")
        .bind(call)
        .execute(&pool)
        .await
        .unwrap();
    let page = dash.page(&format!("/app/calls/{call}")).await;
    let player = r#"<audio controls preload="none" src=""#;
    let start = page.find(player).expect("a player") + player.len();
    let src = page[start..]
        .split('"')
        .next()
        .unwrap()
        .replace("&#38;", "&")
        .replace("&amp;", "&");
    assert!(
        src.starts_with(&format!("/api/v1/recordings/{call}?")),
        "{src}"
    );
    let played = dash.http.get(dash.url(&src)).send().await.unwrap();
    assert_ne!(played.status(), StatusCode::FORBIDDEN, "{src}");
    drop((live, lines));
    dash.api.finish().await;
}

/// The secret a token page shows once, in its read-only field.
fn shown_secret(page: &str) -> String {
    let field = page
        .find(r#"id="new-token""#)
        .expect("the new token's field");
    let start = field + page[field..].find(r#"value=""#).unwrap() + 7;
    page[start..].split('"').next().unwrap().to_owned()
}

#[tokio::test]
async fn tokens_are_listed_created_with_their_secret_shown_once_and_revoked() {
    let dash = Dash::start().await;
    let csrf = dash.csrf().await;
    let page = dash.page("/app/tokens").await;
    // The session's own token by its label, never its secret.
    assert!(page.contains(&dash.api.token[..10]), "{page}");
    assert!(page.contains("(this session’s)"), "{page}");
    assert!(!page.contains(&dash.api.token));
    assert!(page.contains(r#"<a href="/app/tokens" aria-current="page">Tokens</a>"#));

    // Created: the secret once, in the answer, and it works against the API.
    let before = dash.tokens().await;
    let response = dash
        .post(
            "/app/tokens",
            &[
                ("csrf", &csrf),
                ("name", "CI deploy"),
                ("scope", "campaigns:read"),
                ("scope", "leads:read"),
                ("expires_on", "2099-12-31"),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let page = response.text().await.unwrap();
    let secret = shown_secret(&page);
    assert!(secret.starts_with("vg_") && secret.len() == 46, "{secret}");
    assert_eq!(dash.api_status(&secret).await, 200);
    assert_eq!(dash.tokens().await, before + 1);
    let (scopes, expires): (Vec<String>, String) = sqlx::query_as(
        "SELECT scopes, to_char(expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') FROM api_tokens WHERE token_hash = $1",
    )
    .bind(hash_secret(&secret).to_vec())
    .fetch_one(dash.api.test.pool())
    .await
    .unwrap();
    assert_eq!(scopes, ["campaigns:read", "leads:read"]);
    assert_eq!(expires, "2100-01-01 00:00");
    // Listed afterwards by its name and label, without the secret.
    let listed = dash.page("/app/tokens").await;
    assert!(listed.contains("CI deploy") && listed.contains(&secret[..10]));
    assert!(!listed.contains(&secret));

    // A forged CSRF token creates and revokes nothing.
    let forged = dash
        .post(
            "/app/tokens",
            &[
                ("csrf", &"0".repeat(64)),
                ("name", "forged"),
                ("scope", "campaigns:read"),
            ],
        )
        .await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert_eq!(dash.tokens().await, before + 1);
    let id = dash.token_id(&secret).await;
    let revoke = format!("/app/tokens/{id}/revoke");
    let forged = dash.post(&revoke, &[("csrf", "forged")]).await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert_eq!(dash.api_status(&secret).await, 200);

    // Revoked: its API requests are 401 from then on.
    let revoked = dash.post(&revoke, &[("csrf", &csrf)]).await;
    assert_eq!(revoked.status(), StatusCode::SEE_OTHER);
    assert_eq!(revoked.headers()[header::LOCATION], "/app/tokens");
    assert_eq!(dash.api_status(&secret).await, 401);
    assert!(dash.page("/app/tokens").await.contains("revoked 20"));

    // Another organization's token is not found, and stays good.
    let other = dash.token_id(&dash.api.other_token).await;
    let response = dash
        .post(&format!("/app/tokens/{other}/revoke"), &[("csrf", &csrf)])
        .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(dash.api_status(&dash.api.other_token).await, 200);
    assert!(
        !dash
            .page("/app/tokens")
            .await
            .contains(&dash.api.other_token[..10])
    );

    // Revoking the session's own token signs it out at its next request.
    let own = dash.token_id(&dash.api.token).await;
    let response = dash
        .post(&format!("/app/tokens/{own}/revoke"), &[("csrf", &csrf)])
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let next = dash.get("/app/tokens").await;
    assert_eq!(next.status(), StatusCode::SEE_OTHER);
    assert_eq!(next.headers()[header::LOCATION], "/app/login");
    dash.api.finish().await;
}

#[tokio::test]
async fn a_dashboard_token_carries_no_scope_its_session_lacks_and_needs_settings_write() {
    let dash = Dash::start().await;
    let manager = dash
        .session_with(&[
            Scope::CampaignsRead,
            Scope::SettingsRead,
            Scope::SettingsWrite,
        ])
        .await;
    let csrf = dash.csrf_as(&manager).await;
    let page = dash
        .get_as(&manager, "/app/tokens")
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("calls:write (your token lacks it)"), "{page}");
    let before = dash.tokens().await;

    // A scope the session's token lacks: the page says why, and nothing is created.
    let refused = dash
        .post_as(
            &manager,
            "/app/tokens",
            &[
                ("csrf", &csrf),
                ("name", "escalate"),
                ("scope", "campaigns:read"),
                ("scope", "calls:write"),
            ],
        )
        .await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = refused.text().await.unwrap();
    assert!(
        page.contains("your token lacks calls:write, so a token made here cannot have it"),
        "{page}"
    );
    assert!(!page.contains(r#"id="new-token""#));
    // No scope at all, or an expiry in the past: refused the same way.
    for form in [
        [
            ("csrf", csrf.as_str()),
            ("name", "none"),
            ("expires_on", ""),
        ],
        [
            ("csrf", csrf.as_str()),
            ("name", "old"),
            ("expires_on", "2001-01-01"),
        ],
    ] {
        let response = dash.post_as(&manager, "/app/tokens", &form).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    }
    assert_eq!(dash.tokens().await, before);
    // What the session holds, it may hand on.
    let allowed = dash
        .post_as(
            &manager,
            "/app/tokens",
            &[
                ("csrf", &csrf),
                ("name", "reader"),
                ("scope", "campaigns:read"),
            ],
        )
        .await;
    assert_eq!(allowed.status(), StatusCode::CREATED);
    assert_eq!(dash.tokens().await, before + 1);

    // settings:read alone: the list, no form, and a post is 403.
    let reader = dash
        .session_with(&[Scope::CampaignsRead, Scope::SettingsRead])
        .await;
    let csrf = dash.csrf_as(&reader).await;
    let page = dash
        .get_as(&reader, "/app/tokens")
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("reader") && !page.contains(r#"action="/app/tokens""#));
    let response = dash
        .post_as(
            &reader,
            "/app/tokens",
            &[
                ("csrf", &csrf),
                ("name", "nope"),
                ("scope", "campaigns:read"),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let own = dash.token_id(&dash.api.token).await;
    let response = dash
        .post_as(
            &reader,
            &format!("/app/tokens/{own}/revoke"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(dash.tokens().await, before + 2);
    assert_eq!(dash.api_status(&dash.api.token).await, 200);

    // Without settings:read the page itself is 403.
    let campaigns_only = dash.session_with(&[Scope::CampaignsRead]).await;
    assert_eq!(
        dash.get_as(&campaigns_only, "/app/tokens").await.status(),
        StatusCode::FORBIDDEN
    );
    dash.api.finish().await;
}

#[tokio::test]
async fn the_do_not_call_list_is_paged_and_takes_numbers_as_the_api_does() {
    let dash = Dash::start().await;
    let csrf = dash.csrf().await;
    let pool = dash.api.test.pool();
    // Another organization's entry, through the API.
    let (status, body) = dash
        .api
        .send(
            reqwest::Method::POST,
            "/do-not-call",
            Some(&dash.api.other_token),
            Some(json!({"phone_number": "+14155550177", "reason": "theirs"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let page = dash.page("/app/do-not-call").await;
    assert!(page.contains("No numbers on the list."), "{page}");
    assert!(!page.contains("+14155550177"));
    assert!(page.contains(r#"<a href="/app/do-not-call" aria-current="page">Do not call</a>"#));

    // Added as written, normalised as the API normalises it.
    let added = dash
        .post(
            "/app/do-not-call",
            &[
                ("csrf", &csrf),
                ("phone_number", "+1 (415) 555-0199"),
                ("reason", "asked twice"),
                ("source", "complaint"),
            ],
        )
        .await;
    assert_eq!(added.status(), StatusCode::SEE_OTHER);
    assert_eq!(added.headers()[header::LOCATION], "/app/do-not-call");
    let page = dash.page("/app/do-not-call").await;
    assert!(
        page.contains("+14155550199") && page.contains("asked twice"),
        "{page}"
    );
    assert!(page.contains("a complaint"));
    assert!(
        !page.contains("+14155550177"),
        "another organization's entry"
    );
    let (status, body) = dash.api.get("/do-not-call").await;
    assert_eq!(status, 200);
    assert_eq!(body["entries"][0]["phone_number"], "+14155550199", "{body}");
    assert_eq!(body["entries"][0]["source"], "complaint");
    // Audited as the API's own adds are, by the session's token.
    let audited = dash
        .api
        .count(
            "SELECT count(*) FROM do_not_call_audit WHERE organization_id = $1 AND action = 'add'
               AND actor_token_id IS NOT NULL",
            dash.api.org.id,
        )
        .await;
    assert_eq!(audited, 1);

    // A number the API refuses: the page says why, nothing is added.
    let refused = dash
        .post(
            "/app/do-not-call",
            &[
                ("csrf", &csrf),
                ("phone_number", "+1 415 CALL ME"),
                ("reason", "x"),
                ("source", "complaint"),
            ],
        )
        .await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = refused.text().await.unwrap();
    assert!(
        page.contains(r#"role="alert""#) && page.contains("+1 415 CALL ME"),
        "{page}"
    );
    // The form comes back as it was sent, its source included.
    assert!(
        page.contains(r#"<option value="complaint" selected>"#),
        "{page}"
    );
    // Forged CSRF tokens add and remove nothing.
    let forged = dash
        .post(
            "/app/do-not-call",
            &[
                ("csrf", "forged"),
                ("phone_number", "+14155550100"),
                ("reason", "x"),
            ],
        )
        .await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let forged = dash
        .post(
            "/app/do-not-call/remove",
            &[("csrf", &"1".repeat(64)), ("phone_number", "+14155550199")],
        )
        .await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let listed = dash
        .api
        .count(
            "SELECT count(*) FROM do_not_call WHERE organization_id = $1",
            dash.api.org.id,
        )
        .await;
    assert_eq!(listed, 1);

    // Removed; another organization's number is not found, and stays listed.
    let removed = dash
        .post(
            "/app/do-not-call/remove",
            &[("csrf", &csrf), ("phone_number", "+14155550199")],
        )
        .await;
    assert_eq!(removed.status(), StatusCode::SEE_OTHER);
    assert!(!dash.page("/app/do-not-call").await.contains("+14155550199"));
    let (_, body) = dash.api.get("/do-not-call").await;
    assert_eq!(body["entries"], json!([]), "{body}");
    let theirs = dash
        .post(
            "/app/do-not-call/remove",
            &[("csrf", &csrf), ("phone_number", "+14155550177")],
        )
        .await;
    assert_eq!(theirs.status(), StatusCode::NOT_FOUND);
    let theirs = dash
        .api
        .count(
            "SELECT count(*) FROM do_not_call WHERE organization_id = $1",
            dash.api.other.id,
        )
        .await;
    assert_eq!(theirs, 1);

    // Paged, 50 at a time.
    sqlx::query(
        "INSERT INTO do_not_call (organization_id, phone_number, reason, source)
         SELECT $1, '+1415557' || lpad(n::text, 4, '0'), 'bulk', 'import' FROM generate_series(1, 55) n",
    )
    .bind(dash.api.org.id)
    .execute(pool)
    .await
    .unwrap();
    let first = dash.page("/app/do-not-call").await;
    // Each number three times: its cell, its remove form's field and the button's label.
    assert_eq!(first.matches("+1415557").count(), 50 * 3);
    assert!(first.contains(r#"rel="next""#));
    let second = dash.page("/app/do-not-call?page=1").await;
    assert_eq!(second.matches("+1415557").count(), 5 * 3);
    assert!(second.contains(r#"rel="prev""#) && !second.contains(r#"rel="next""#));

    // leads:read alone reads the list and has no forms; adding is 403.
    let reader = dash
        .session_with(&[Scope::CampaignsRead, Scope::LeadsRead])
        .await;
    let reader_csrf = dash.csrf_as(&reader).await;
    let page = dash
        .get_as(&reader, "/app/do-not-call")
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("+14155570001") && !page.contains("Add number"));
    let response = dash
        .post_as(
            &reader,
            "/app/do-not-call",
            &[
                ("csrf", &reader_csrf),
                ("phone_number", "+14155550100"),
                ("reason", "x"),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    dash.api.finish().await;
}

#[tokio::test]
async fn a_campaign_shows_its_transfer_targets() {
    let dash = Dash::start().await;
    let pool = dash.api.test.pool();
    let (org, other) = (dash.api.org.id, dash.api.other.id);
    let mut ids = Vec::new();
    for (organization, name, department, number, priority, active) in [
        (org, "Sales desk", "sales", "+14155550900", 10, true),
        (org, "Night line", "support", "+14155550901", 20, false),
        (other, "Globex desk", "sales", "+14155550902", 10, true),
    ] {
        let id: Uuid = sqlx::query_scalar(
            "INSERT INTO transfer_targets (organization_id, name, department, phone_number, priority,
                                           is_active, timezone, working_hours_start, working_hours_end)
             VALUES ($1, $2, $3, $4, $5, $6, 'Europe/Lisbon', '09:00', '17:30') RETURNING id",
        )
        .bind(organization)
        .bind(name)
        .bind(department)
        .bind(number)
        .bind(priority)
        .bind(active)
        .fetch_one(pool)
        .await
        .unwrap();
        ids.push(id);
    }
    let path = format!("/app/campaigns/{}", dash.api.org.campaign_id);
    // Naming none, the campaign may use every target of its organization, and only those.
    let page = dash.page(&path).await;
    let table = &page[page
        .find(r#"<table id="transfer-targets">"#)
        .expect("the targets")..];
    assert!(
        table.contains("Sales desk") && table.contains("+14155550900"),
        "{table}"
    );
    assert!(table.contains("Night line") && table.contains("<td>no</td>"));
    assert!(
        table.contains("Mon Tue Wed Thu Fri, 09:00–17:30 (Europe/Lisbon)"),
        "{table}"
    );
    assert!(!page.contains("Globex desk"));
    assert!(page.contains("The campaign names none"));
    // Naming one, it uses that one.
    sqlx::query(
        "INSERT INTO campaign_transfer_targets (campaign_id, transfer_target_id, organization_id)
         VALUES ($1, $2, $3)",
    )
    .bind(dash.api.org.campaign_id)
    .bind(ids[1])
    .bind(org)
    .execute(pool)
    .await
    .unwrap();
    let page = dash.page(&path).await;
    assert!(
        page.contains("Night line") && !page.contains("Sales desk"),
        "{page}"
    );
    assert!(page.contains("The targets this campaign names."));
    // Without settings:read, the page says so instead.
    let reader = dash.session_with(&[Scope::CampaignsRead]).await;
    let page = dash.get_as(&reader, &path).await.text().await.unwrap();
    assert!(!page.contains("Night line") && page.contains("lacks <code>settings:read</code>"));
    assert!(
        !page.contains("enctype=\"multipart/form-data\""),
        "no upload without leads:write"
    );
    dash.api.finish().await;
}

#[tokio::test]
async fn a_csv_upload_imports_through_the_apis_import_and_shows_refused_lines() {
    let dash = Dash::start().await;
    let campaign = dash.api.new_campaign().await;
    let csrf = dash.csrf().await;
    let page = dash.page(&format!("/app/campaigns/{campaign}")).await;
    assert!(page.contains(&format!(
        r#"action="/app/campaigns/{campaign}/leads/import" enctype="multipart/form-data""#
    )));
    assert!(page.contains(r#"<progress id="import-progress""#));
    // A number on the do-not-call list is stored, not enrolled.
    let (status, _) = dash
        .api
        .post(
            "/do-not-call",
            json!({"phone_number": "+14155550102", "reason": "asked"}),
        )
        .await;
    assert_eq!(status, 201);
    let before = dash.leads_and_attempts(campaign).await;

    // A good file: three leads, one suppressed, one line a duplicate.
    let (status, page) = dash
        .upload(
            campaign,
            &[("csrf", &csrf)],
            "name,phone,notes\nAda,+14155550100,first\nBo,+14155550101,\nCy,+14155550102,\nAda again,+14155550100,\n",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains(r#"<dd id="imported">3</dd>"#), "{page}");
    assert!(page.contains(r#"<dd id="suppressed">1</dd>"#));
    assert!(page.contains(r#"<dd id="duplicates">1</dd>"#));
    assert!(page.contains("do-not-call list: lines 4."), "{page}");
    assert!(page.contains("earlier in the file: lines 5."), "{page}");
    assert_eq!(
        dash.leads_and_attempts(campaign).await,
        (before.0 + 3, before.1 + 2)
    );

    // Bad lines: the whole file refused, each bad line listed by number, nothing imported.
    let bad = "name,phone\nDi,+14155550110\n,+14155550111\nEd,12ab\nFay,+14155550113\n";
    let (status, page) = dash.upload(campaign, &[("csrf", &csrf)], bad).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{page}");
    assert!(page.contains("Nothing was imported."), "{page}");
    assert!(page.contains("<tr><td>3</td><td>name</td>"), "{page}");
    assert!(page.contains("<tr><td>4</td><td>phone</td>"), "{page}");
    assert!(page.contains(r#"<dd id="imported">0</dd>"#));
    assert_eq!(
        dash.leads_and_attempts(campaign).await,
        (before.0 + 3, before.1 + 2)
    );
    // The same file, skipping the bad lines: the good ones imported, the bad ones listed.
    let (status, page) = dash
        .upload(campaign, &[("csrf", &csrf), ("skip_invalid", "true")], bad)
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains(r#"<dd id="imported">2</dd>"#), "{page}");
    assert!(page.contains(r#"<dd id="invalid">2</dd>"#));
    assert!(
        page.contains("<tr><td>3</td><td>name</td>")
            && page.contains("<tr><td>4</td><td>phone</td>")
    );
    assert_eq!(
        dash.leads_and_attempts(campaign).await,
        (before.0 + 5, before.1 + 4)
    );
    let imported = dash.leads_and_attempts(campaign).await;

    // Refused whole, each with its reason on the page and nothing imported: a record over the
    // import's limit, a file without a phone column, a row with a field too many.
    let long = format!(
        "name,phone,notes\nGus,+14155550120,{}\n",
        "n".repeat(65 * 1024)
    );
    for (csv, expected_status, says) in [
        (
            long.as_str(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "line 2: a record longer than 65536 bytes",
        ),
        (
            "name,email\nHal,hal@example.com\n",
            StatusCode::UNPROCESSABLE_ENTITY,
            "the header has no &#34;phone&#34; column",
        ),
        (
            "name,phone\nIvy,+14155550121\nJo,+14155550122,extra\n",
            StatusCode::BAD_REQUEST,
            "line 3: 3 fields where the header has 2",
        ),
    ] {
        let (status, page) = dash
            .upload(campaign, &[("csrf", &csrf), ("skip_invalid", "true")], csv)
            .await;
        assert_eq!(status, expected_status, "{page}");
        let refused = &page[page.find(r#"id="import-refused""#).expect("the refusal")..];
        assert!(refused.contains(says), "{refused}");
        assert!(refused.contains("Nothing was imported."));
        assert_eq!(dash.leads_and_attempts(campaign).await, imported, "{says}");
    }

    // A forged CSRF token, or none before the file: refused before the file is read.
    for fields in [vec![("csrf", "forged")], Vec::new()] {
        let (status, _) = dash
            .upload(campaign, &fields, "name,phone\nKim,+14155550130\n")
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    // Another organization's campaign: not found, nothing imported there.
    let other = dash.api.other.campaign_id;
    let attempts = dash
        .api
        .count(
            "SELECT count(*) FROM dial_attempts WHERE campaign_id = $1",
            other,
        )
        .await;
    let (status, _) = dash
        .upload(other, &[("csrf", &csrf)], "name,phone\nLee,+14155550131\n")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        dash.api
            .count(
                "SELECT count(*) FROM dial_attempts WHERE campaign_id = $1",
                other
            )
            .await,
        attempts
    );
    assert_eq!(dash.leads_and_attempts(campaign).await, imported);
    dash.api.finish().await;
}

#[tokio::test]
async fn a_finished_call_shows_its_transfer_trail_and_its_campaign() {
    let dash = Dash::start().await;
    let org = &dash.api.org;
    let pool = dash.api.test.pool();
    let call = dash
        .insert_call(org.id, org.campaign_id, org.lead_ids[0], "CA-dash-transfer")
        .await;
    for (seq, kind, at, text, data) in [
        (
            2,
            "transfer_decision",
            "10:00:01",
            "the caller asked for a human",
            json!({"decision": "transfer", "department": "sales"}),
        ),
        (
            1_000_000,
            "transfer_attempt",
            "10:00:20",
            "no-answer",
            json!({"attempt": 0, "dial_status": "no-answer", "accepted": false}),
        ),
        (
            1_000_001,
            "transfer_attempt",
            "10:00:40",
            "completed",
            json!({"attempt": 1, "dial_status": "completed", "accepted": true}),
        ),
    ] {
        sqlx::query(
            "INSERT INTO call_events (call_log_id, organization_id, seq, kind, occurred_at, text, data)
             VALUES ($1, $2, $3, $4, ('2026-12-07 ' || $5)::timestamptz, $6, $7)",
        )
        .bind(call)
        .bind(org.id)
        .bind(seq)
        .bind(kind)
        .bind(at)
        .bind(text)
        .bind(data)
        .execute(pool)
        .await
        .unwrap();
    }
    sqlx::query(
        "INSERT INTO call_transfers (call_sid, call_log_id, organization_id, trigger, reason, department,
                                     targets, attempt, status, whisper, connected_at)
         VALUES ('CA-dash-transfer', $1, $2, 'caller_request', 'the caller asked for a human', 'sales',
                 $3, 1, 'connected', 'A caller for sales', '2026-12-07 10:00:41+00')",
    )
    .bind(call)
    .bind(org.id)
    .bind(json!([
        {"name": "Sales desk", "phone_number": "+14155550900"},
        {"name": "Night line", "phone_number": "+14155550901"},
    ]))
    .execute(pool)
    .await
    .unwrap();
    sqlx::query("UPDATE call_logs SET ended_at = now(), end_reason = 'transferred' WHERE id = $1")
        .bind(call)
        .execute(pool)
        .await
        .unwrap();

    let page = dash.page(&format!("/app/calls/{call}")).await;
    assert!(
        page.contains(&format!(
            r#"<a href="/app/campaigns/{}" id="call-campaign">Spring launch</a>"#,
            org.campaign_id
        )),
        "{page}"
    );
    let trail = &page[page.find(r#"<ol id="transfer-trail""#).expect("the trail")..];
    let trail = &trail[..trail.find("</ol>").unwrap()];
    let steps = [
        "Decided: transfer</strong>: the caller asked for a human (to sales)",
        "Dialled Sales desk (+14155550900)</strong>: no-answer",
        "Dialled Night line (+14155550901)</strong>: accepted",
        "Connected</strong>: Night line (+14155550901)",
    ];
    let mut from = 0;
    for step in steps {
        let found = trail[from..]
            .find(step)
            .unwrap_or_else(|| panic!("{step:?} in order in {trail}"));
        from += found + step.len();
    }
    // A call without a transfer has no trail.
    let plain = dash
        .insert_call(org.id, org.campaign_id, org.lead_ids[1], "CA-dash-plain")
        .await;
    let page = dash.page(&format!("/app/calls/{plain}")).await;
    assert!(!page.contains("transfer-trail") && page.contains("Spring launch"));
    dash.api.finish().await;
}

/// The figures a campaign's card shows on the campaigns page, by their labels.
fn card_figures(page: &str, campaign: Uuid) -> Vec<(String, String)> {
    let start = page
        .find(&format!(r#"aria-labelledby="c-{campaign}""#))
        .unwrap_or_else(|| panic!("no card of {campaign}"));
    let card = &page[start..];
    let card = &card[..card.find("</section>").unwrap()];
    card.split("<div><dt>")
        .skip(1)
        .map(|figure| {
            let (label, rest) = figure.split_once("</dt><dd").unwrap();
            let value = rest.split_once('>').unwrap().1;
            (
                label.to_owned(),
                value.split_once("</dd>").unwrap().0.to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_campaigns_page_shows_each_campaigns_own_figures_as_the_api_counts_them() {
    let dash = Dash::start().await;
    let org = &dash.api.org;
    let pool = dash.api.test.pool();
    let spring = org.campaign_id;
    let autumn = dash.api.new_campaign().await;
    let empty = dash.api.new_campaign().await;
    // Spring: a live call, calls counted; Autumn (a draft, which no dialer claims): two leads
    // enrolled, a scheduled attempt and a scheduled callback.
    dash.insert_call(org.id, spring, org.lead_ids[0], "CA-dash-figures")
        .await;
    sqlx::query("UPDATE campaigns SET total_calls = 8, transferred_calls = 2 WHERE id = $1")
        .bind(spring)
        .execute(pool)
        .await
        .unwrap();
    for (lead, attempt, status, callback) in [
        (org.lead_ids[0], 1, "completed", false),
        (org.lead_ids[0], 2, "scheduled", true),
        (org.lead_ids[1], 1, "scheduled", false),
    ] {
        sqlx::query(
            "INSERT INTO dial_attempts (organization_id, campaign_id, lead_id, attempt_number, status, is_callback)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(org.id)
        .bind(autumn)
        .bind(lead)
        .bind(attempt)
        .bind(status)
        .bind(callback)
        .execute(pool)
        .await
        .unwrap();
    }
    let page = dash.page("/app").await;
    for campaign in [spring, autumn, empty] {
        let (status, body) = dash.api.get(&format!("/campaigns/{campaign}")).await;
        assert_eq!(status, 200, "{body}");
        let stats = &body["stats"];
        let number = |name: &str| stats[name].as_i64().unwrap().to_string();
        let expected = [
            ("Calls", number("total_calls")),
            ("Transferred", number("transferred_calls")),
            (
                "Conversion",
                format!("{:.1} %", stats["conversion_rate"].as_f64().unwrap()),
            ),
            ("Live calls", number("live_calls")),
            ("Pending attempts", number("attempts_pending")),
            ("Callbacks", number("callbacks_pending")),
            ("Leads", number("leads")),
        ];
        let shown = card_figures(&page, campaign);
        for (label, value) in expected {
            assert!(
                shown.iter().any(|(l, v)| l == label && *v == value),
                "{campaign}: {label} = {value} in {shown:?}"
            );
        }
    }
    // The figures are the campaigns' own, not all alike.
    let figure = |campaign, label: &str| {
        card_figures(&page, campaign)
            .into_iter()
            .find(|(l, _)| l == label)
            .unwrap()
            .1
    };
    assert_eq!(figure(spring, "Live calls"), "1");
    assert_eq!(figure(spring, "Calls"), "8");
    assert_eq!(figure(autumn, "Pending attempts"), "2");
    assert_eq!(figure(autumn, "Callbacks"), "1");
    assert_eq!(figure(autumn, "Leads"), "2");
    assert_eq!(figure(empty, "Leads"), "0");
    // The campaign page's card is the same.
    let single = dash.page(&format!("/app/campaigns/{autumn}")).await;
    assert!(
        single.contains("<div><dt>Callbacks</dt><dd>1</dd></div>"),
        "{single}"
    );
    dash.api.finish().await;
}

/// A headless Chromium driven through chromedriver (WebDriver), both from Debian's packages
/// (`scripts/install-system-deps`). Dropping it ends both processes, even when a failed
/// assertion left the WebDriver session open.
struct Browser {
    client: fantoccini::Client,
    driver: tokio::process::Child,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        // chromedriver leads its own process group, and Chromium stays in it: end them all.
        if let Some(pid) = self.driver.id() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .status();
        }
    }
}

impl Browser {
    async fn start() -> Self {
        // A free port for chromedriver: bound, read, released.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = tokio::process::Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver (scripts/install-system-deps installs it)");
        let status = format!("http://127.0.0.1:{port}/status");
        let http = reqwest::Client::new();
        crate::campaign_api::wait_until("chromedriver", DEADLINE, || {
            let (http, status) = (http.clone(), status.clone());
            async move {
                http.get(&status)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            }
        })
        .await;
        let profile = tempfile::tempdir().unwrap();
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".to_owned(),
            json!({
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    // Containers give /dev/shm little room.
                    "--disable-dev-shm-usage",
                    "--window-size=1280,800",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        let client = fantoccini::ClientBuilder::new(
            hyper_util::client::legacy::connect::HttpConnector::new(),
        )
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a WebDriver session");
        // The viewport at 1280×800 (the screenshots' size): the window is larger by its frame.
        let inner = client
            .execute("return [window.innerWidth, window.innerHeight];", vec![])
            .await
            .unwrap();
        let inner = |index: usize| u32::try_from(inner[index].as_u64().unwrap()).unwrap();
        // Started at 1280×800, the window shows inner(); grow it by the difference.
        let (width, height) = (2 * 1280 - inner(0), 2 * 800 - inner(1));
        client.set_window_size(width, height).await.unwrap();
        Self {
            client,
            driver,
            _profile: profile,
        }
    }

    /// Waits (up to the deadline) for the element `xpath` selects.
    async fn wait_for(&self, xpath: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(DEADLINE)
            .for_element(fantoccini::Locator::XPath(xpath))
            .await
            .unwrap_or_else(|error| panic!("no {xpath} in time: {error}"))
    }

    async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("docs")
            .join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, png).unwrap();
    }
}

#[tokio::test]
async fn a_real_browser_signs_in_starts_a_campaign_watches_a_call_live_and_hangs_it_up() {
    use crate::call::{Fixture, conversation, turn};
    use voice_gateway::simulators::plivo_caller::{self, Gate, Step};

    const CALLER_SAYS: &str = "Is the two-bedroom flat still available?";
    const AGENT_SAYS: &str = "It is, and there is a viewing on Saturday.";
    // Plain http: the browser talks to the gateway on loopback, where a Secure cookie would
    // need https.
    let fixture = Fixture::start(
        conversation(vec![turn(CALLER_SAYS, AGENT_SAYS, None)]),
        1,
        &[
            ("VG_PUBLIC_URL", "http://gateway.test"),
            ("VG_DIALER_ENABLED", "false"),
        ],
    )
    .await;
    let pool = fixture.test.pool().clone();
    let org = fixture.org.id;
    let other = crate::helpers::seed_org(&pool, "Globex", 1).await;
    let token =
        crate::campaign_api::issue(&fixture.test, org, voice_gateway::api::tokens::Scope::ALL)
            .await;
    let draft: Uuid = sqlx::query_scalar(
        "INSERT INTO campaigns (organization_id, name, status) VALUES ($1, 'Autumn viewings', 'draft') RETURNING id",
    )
    .bind(org)
    .fetch_one(&pool)
    .await
    .unwrap();
    let base = format!("http://{}", fixture.app.address);
    let browser = Browser::start().await;
    let client = &browser.client;

    // Sign in.
    client.goto(&format!("{base}/app/login")).await.unwrap();
    browser
        .wait_for("//input[@id='token']")
        .await
        .send_keys(&token)
        .await
        .unwrap();
    browser
        .wait_for("//form[@action='/app/login']//button")
        .await
        .click()
        .await
        .unwrap();
    browser.wait_for("//h1[.='Campaigns']").await;

    // Start the draft campaign from its button.
    browser
        .wait_for(&format!(
            "//form[@action='/app/campaigns/{draft}/start']//button"
        ))
        .await
        .click()
        .await
        .unwrap();
    browser
        .wait_for(&format!(
            "//section[.//a[@href='/app/campaigns/{draft}']]//dd[@class='status'][.='running']"
        ))
        .await;
    browser.screenshot("dashboard-campaigns.png").await;

    // A simulated call that talks once the page is watching (the gate).
    let gate = Gate::default();
    let mut caller = fixture.caller(0, "CA-browser");
    caller.public_url = "http://gateway.test".to_owned();
    let call = tokio::spawn({
        let (http, gate) = (fixture.http.clone(), gate.clone());
        async move {
            plivo_caller::place_call(
                &caller,
                &http,
                &[
                    Step::WaitForAgentAudio,
                    Step::WaitForAgentSilence(Duration::from_millis(300)),
                    Step::WaitForGate(gate),
                    Step::Speak(Duration::from_millis(800)),
                    Step::Silence(Duration::from_millis(600)),
                    Step::WaitForClose,
                ],
            )
            .await
        }
    });

    // The live list shows it (it was opened after the page, or before: either way).
    client
        .goto(&format!("{base}/app/calls/live"))
        .await
        .unwrap();
    browser
        .wait_for("//tbody[@id='live-calls']//a[.='CA-browser']")
        .await;
    browser.screenshot("dashboard-live-calls.png").await;

    // The call page: the greeting, then the turn, appended live while the call runs.
    browser
        .wait_for("//tbody[@id='live-calls']//a[.='CA-browser']")
        .await
        .click()
        .await
        .unwrap();
    browser.wait_for("//h1[.='Call CA-browser']").await;
    browser
        .wait_for("//ol[@id='transcript']/li[contains(., 'Maya from Acme Homes')]")
        .await;
    let before = client
        .find_all(fantoccini::Locator::XPath("//ol[@id='transcript']/li"))
        .await
        .unwrap()
        .len();
    gate.open();
    browser
        .wait_for(&format!(
            "//ol[@id='transcript']/li[contains(., '{CALLER_SAYS}')]"
        ))
        .await;
    browser
        .wait_for(&format!(
            "//ol[@id='transcript']/li[contains(., '{AGENT_SAYS}')]"
        ))
        .await;
    // Appended by the stream, not by a reload: the page still has its first lines' nodes.
    let after = client
        .find_all(fantoccini::Locator::XPath("//ol[@id='transcript']/li"))
        .await
        .unwrap()
        .len();
    assert!(after >= before + 2, "{before} lines, then {after}");
    browser.screenshot("dashboard-live-call.png").await;

    // Hang up from the page, once this gateway listens for hang-up requests.
    crate::campaign_api::wait_until("the hang-up listener", DEADLINE, || {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND query = 'LISTEN \"vg_call_hangup\"'",
            )
            .fetch_one(&pool)
            .await
            .unwrap()
                >= 1
        }
    })
    .await;
    browser
        .wait_for("//button[@id='hangup']")
        .await
        .click()
        .await
        .unwrap();
    browser
        .wait_for("//dd[@id='call-state'][starts-with(., 'ended')]")
        .await;
    let report = tokio::time::timeout(DEADLINE, call)
        .await
        .expect("the call ended in time")
        .unwrap()
        .expect("the call ran");
    assert_eq!(report.answer_status, 200);
    let reason: String =
        sqlx::query_scalar("SELECT end_reason FROM call_logs WHERE call_sid = 'CA-browser'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(reason, "hangup_requested");

    // A CSV upload from the campaign's page, skipping its one bad line: the script sends it
    // with a progress bar and puts the import's page in place of the form's.
    let files = tempfile::tempdir().unwrap();
    let csv = files.path().join("viewings.csv");
    std::fs::write(
        &csv,
        "name,phone,notes\nAda Lovelace,+14155550140,Saturday\nBo Diddley,+14155550141,\n\
         Cy Twombly,+14155550142,mornings\nNo Number,,\n",
    )
    .unwrap();
    let campaign_page = format!("{base}/app/campaigns/{draft}");
    client.goto(&campaign_page).await.unwrap();
    browser
        .wait_for("//input[@id='import-skip']")
        .await
        .click()
        .await
        .unwrap();
    browser
        .wait_for("//input[@id='import-file']")
        .await
        .send_keys(&csv.display().to_string())
        .await
        .unwrap();
    browser
        .wait_for("//form[@data-progress]//button[@type='submit']")
        .await
        .click()
        .await
        .unwrap();
    browser
        .wait_for("//h1[.='Import into Autumn viewings']")
        .await;
    browser.wait_for("//dd[@id='imported'][.='3']").await;
    browser
        .wait_for("//table[@id='refused-lines']//tr[td[1]='5'][td[2]='phone']")
        .await;
    // The page was replaced by the script, not left by a plain form post.
    assert_eq!(client.current_url().await.unwrap().as_str(), campaign_page);
    let enrolled: i64 =
        sqlx::query_scalar("SELECT count(*) FROM dial_attempts WHERE campaign_id = $1")
            .bind(draft)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(enrolled, 3);
    browser.screenshot("dashboard-import.png").await;

    // On a phone's width (390 CSS pixels) the campaign's page fits: only its tables scroll
    // sideways, never the page.
    let frame = client
        .execute(
            "return [window.outerWidth - window.innerWidth, window.outerHeight - window.innerHeight];",
            vec![],
        )
        .await
        .unwrap();
    let frame = |index: usize| u32::try_from(frame[index].as_u64().unwrap()).unwrap();
    client
        .set_window_size(390 + frame(0), 844 + frame(1))
        .await
        .unwrap();
    client.goto(&campaign_page).await.unwrap();
    browser.wait_for("//h1[.='Autumn viewings']").await;
    let widths = client
        .execute(
            "return [document.documentElement.scrollWidth, window.innerWidth];",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(widths[1], 390, "{widths:?}");
    assert!(
        widths[0].as_u64() <= widths[1].as_u64(),
        "the page scrolls sideways: {widths:?}"
    );
    browser.screenshot("dashboard-phone.png").await;

    // Another organization's campaign: the not-found page.
    client
        .goto(&format!("{base}/app/campaigns/{}", other.campaign_id))
        .await
        .unwrap();
    browser.wait_for("//h1[.='Not found']").await;

    browser.client.clone().close().await.unwrap();
    drop(browser);
    fixture.finish().await;
}

/// The campaign page at the issue's scale (100,000 leads, 10,000 calls): every page of leads,
/// filtered or not, renders its rows. The time each takes is printed (run with `--nocapture`)
/// and its figures are in README; it is measured here, not asserted, since a test's timing
/// depends on the machine's load (the issue's budget is 200 ms; medians were 70-135 ms in a
/// debug build on 2 cores).
#[tokio::test]
async fn the_campaign_page_pages_100k_leads_and_10k_calls() {
    let dash = Dash::start().await;
    let org = &dash.api.org;
    let pool = dash.api.test.pool();
    sqlx::query(
        "WITH new AS (
             INSERT INTO leads (organization_id, name, phone, call_status)
             SELECT $1, 'Bulk ' || n, '+1415' || lpad(n::text, 7, '0'),
                    (ARRAY['not_called', 'called', 'transferred', 'no_answer', 'voicemail'])[1 + n % 5]
             FROM generate_series(1, 100000) n RETURNING id)
         INSERT INTO dial_attempts (organization_id, campaign_id, lead_id, attempt_number, status)
         SELECT $1, $2, id, 1, 'completed' FROM new",
    )
    .bind(org.id)
    .bind(org.campaign_id)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO call_logs (campaign_id, lead_id, organization_id, call_sid, call_status, ended_at, end_reason)
         SELECT $2, l.id, $1, 'CA-bulk-' || row_number() OVER (), 'called', now(), 'agent_ended'
         FROM (SELECT id FROM leads WHERE organization_id = $1 LIMIT 10000) l",
    )
    .bind(org.id)
    .bind(org.campaign_id)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query("ANALYZE").execute(pool).await.unwrap();
    let base = format!("/app/campaigns/{}", org.campaign_id);
    // Deep pages are reached through their links; these are the places the links of pages
    // 1,000 and of the voicemails' 300 carry (the lead before each, in the list's order).
    let place = |status: Option<&str>, rank: i64| {
        let pool = pool.clone();
        let status = status.map(str::to_owned);
        async move {
            let (at, id): (chrono::DateTime<chrono::Utc>, Uuid) = sqlx::query_as(
                "SELECT created_at, id FROM leads WHERE organization_id = $1
                   AND ($2::text IS NULL OR call_status = $2)
                 ORDER BY created_at, id OFFSET $3 LIMIT 1",
            )
            .bind(org.id)
            .bind(status)
            .bind(rank - 1)
            .fetch_one(&pool)
            .await
            .unwrap();
            format!("after={}.{id}", at.timestamp_micros())
        }
    };
    let deep = place(None, 999 * 50).await;
    let deep_voicemail = place(Some("voicemail"), 299 * 50).await;
    for path in [
        base.clone(),
        format!("{base}?status=transferred"),
        format!("{base}?{deep}&page=999"),
        format!("{base}?status=voicemail&{deep_voicemail}&page=299"),
    ] {
        let mut times = Vec::new();
        for _ in 0..5 {
            let started = Instant::now();
            let page = dash.page(&path).await;
            times.push(started.elapsed());
            assert_eq!(page.matches("Bulk ").count(), 50, "{path}");
        }
        times.sort();
        eprintln!("{path}: median {:?} of {times:?}", times[2]);
    }
    dash.api.finish().await;
}
