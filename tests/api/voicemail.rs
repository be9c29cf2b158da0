//! Leaving the campaign's voicemail message when machine detection says "machine": the call is
//! moved with the Call Transfer API to the signed `/plivo/voicemail`, whose document waits for
//! the beep, speaks the message with the lead's name and hangs up; the call log says whether
//! the message was left. Against real PostgreSQL and the fake Plivo REST API, which places the
//! call, reports the machine, records the transfer and follows it as Plivo does.

use std::sync::Arc;

use chrono::Utc;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;
use voice_gateway::{
    dialer::{
        ManualClock,
        callbacks::{self, Machine},
    },
    lifecycle::Lifecycle,
    plivo::{rest::PlivoRest, xml},
    simulators::{
        plivo_api::{FakePlivoApi, Outcome, Script},
        plivo_caller::{self, CallerConfig},
    },
};

use crate::{
    dialer::{
        AUTH_ID, AUTH_TOKEN, CALLER_ID, build_gateway, hangups_delivered, manual_dialer, run,
        target, wait,
    },
    helpers::{TestApp, TestDb, settings_for},
};

const PUBLIC_URL: &str = "https://gateway.test";
const LEAD_PHONE: &str = "+14155550123";
/// Markup and quotes in the message: escaped in the document, read back unchanged.
const TEMPLATE: &str =
    "Hi {name}, this is Maya from \"Lakeside <Towers>\" & Co. Please call us back!";
const SPOKEN: &str = "Hi Priya, this is Maya from \"Lakeside <Towers>\" & Co. Please call us back!";

/// An organization, a running campaign callable at any hour, one lead (Priya Sharma) and its
/// first attempt, due now.
struct Seeded {
    campaign: Uuid,
    lead: Uuid,
    attempt: Uuid,
}

async fn seed(pool: &PgPool, campaign_settings: &str, org_settings: &str) -> Seeded {
    let org: Uuid = sqlx::query_scalar(
        "INSERT INTO organizations (name, caller_id, settings) VALUES ('Voicemail Co', $1, $2::jsonb)
         RETURNING id",
    )
    .bind(CALLER_ID)
    .bind(org_settings)
    .fetch_one(pool)
    .await
    .unwrap();
    let campaign: Uuid = sqlx::query_scalar(
        "INSERT INTO campaigns (organization_id, name, status, settings, calling_window_start,
                                calling_window_end, calling_days)
         VALUES ($1, 'Voicemail test', 'running', $2::jsonb, '00:00', '23:59:59.999999',
                 '{1,2,3,4,5,6,7}')
         RETURNING id",
    )
    .bind(org)
    .bind(campaign_settings)
    .fetch_one(pool)
    .await
    .unwrap();
    let lead: Uuid = sqlx::query_scalar(
        "INSERT INTO leads (organization_id, name, phone) VALUES ($1, 'Priya Sharma', $2) RETURNING id",
    )
    .bind(org)
    .bind(LEAD_PHONE)
    .fetch_one(pool)
    .await
    .unwrap();
    let attempt: Uuid = sqlx::query_scalar(
        "INSERT INTO dial_attempts (organization_id, campaign_id, lead_id, attempt_number, status, due_at)
         VALUES ($1, $2, $3, 1, 'scheduled', now()) RETURNING id",
    )
    .bind(org)
    .bind(campaign)
    .bind(lead)
    .fetch_one(pool)
    .await
    .unwrap();
    Seeded {
        campaign,
        lead,
        attempt,
    }
}

fn script_message() -> String {
    serde_json::json!({"script": {"voicemail_message": TEMPLATE}}).to_string()
}

fn ids_query(seeded: &Seeded) -> String {
    format!(
        "attempt_id={}&lead_id={}&campaign_id={}",
        seeded.attempt, seeded.lead, seeded.campaign
    )
}

fn plivo_config(gateway: std::net::SocketAddr, call_sid: &str, token: &str) -> CallerConfig {
    CallerConfig {
        gateway: format!("http://{gateway}"),
        public_url: PUBLIC_URL.to_owned(),
        auth_token: token.to_owned(),
        call_sid: call_sid.to_owned(),
        answer_query: String::new(),
        from: CALLER_ID.to_owned(),
        to: LEAD_PHONE.to_owned(),
        keep_agent_audio: false,
    }
}

/// A signed POST of `/plivo/voicemail?{query}` as Plivo fetches it: status, content type, body.
async fn fetch_voicemail(
    gateway: std::net::SocketAddr,
    token: &str,
    query: &str,
    call_sid: &str,
) -> (u16, String, String) {
    let response = plivo_caller::signed_post(
        &plivo_config(gateway, call_sid, token),
        &reqwest::Client::new(),
        &format!("/plivo/voicemail?{query}"),
        &[
            ("CallUUID".to_owned(), call_sid.to_owned()),
            ("CallStatus".to_owned(), "in-progress".to_owned()),
            ("Direction".to_owned(), "outbound".to_owned()),
        ],
    )
    .await
    .unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, content_type, response.text().await.unwrap())
}

/// The call log's status, end reason and metadata.
async fn call_log(pool: &PgPool, call_sid: &str) -> (String, Option<String>, Value) {
    sqlx::query_as(
        "SELECT call_status, end_reason, coalesce(metadata, '{}'::jsonb) FROM call_logs
         WHERE call_sid = $1",
    )
    .bind(call_sid)
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn attempt_status(pool: &PgPool, attempt: Uuid) -> String {
    sqlx::query_scalar("SELECT status FROM dial_attempts WHERE id = $1")
        .bind(attempt)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn lead_call_status(pool: &PgPool, lead: Uuid) -> String {
    sqlx::query_scalar("SELECT call_status FROM leads WHERE id = $1")
        .bind(lead)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// The element names under `<Response>`.
fn elements(xml: &str) -> Vec<String> {
    let document = roxmltree::Document::parse(xml).expect("well-formed XML");
    assert_eq!(document.root_element().tag_name().name(), "Response");
    document
        .root_element()
        .children()
        .filter(|n| n.is_element())
        .map(|n| n.tag_name().name().to_owned())
        .collect()
}

/// Checks the voicemail document: the beep wait, the message as spoken, the hangup.
fn assert_voicemail_document(xml: &str) {
    assert_eq!(elements(xml), ["Wait", "Speak", "Hangup"], "{xml}");
    let document = roxmltree::Document::parse(xml).unwrap();
    let mut children = document
        .root_element()
        .children()
        .filter(|n| n.is_element());
    let wait = children.next().unwrap();
    assert_eq!(wait.attribute("beep"), Some("true"));
    assert!(wait.attribute("length").unwrap().parse::<u32>().unwrap() >= 1);
    let speak = children.next().unwrap();
    assert_eq!(speak.text(), Some(SPOKEN));
    assert_eq!(speak.attribute("voice"), Some("WOMAN"));
    assert_eq!(speak.attribute("language"), Some("en-US"));
}

/// Places the seeded attempt through a manual dialer, to a machine, with a gateway serving the
/// callbacks; returns once the call ended.
async fn dial_a_machine(
    test: &TestDb,
    fake: &FakePlivoApi,
    name: &str,
) -> (
    crate::dialer::Gateway,
    voice_gateway::simulators::plivo_api::FakeState,
) {
    let script: Script = Arc::new(|_| Outcome::Machine);
    fake.set_script(script);
    let gateway = build_gateway(&test.url, name, fake, &[("VG_DIALER_ENABLED", "false")]).await;
    fake.set_callback_target(target(&[&gateway]));
    let gateway = run(gateway);
    let dialer = manual_dialer(&test.db, fake, 10, &ManualClock::new(Utc::now()));
    assert_eq!(dialer.pass(&Lifecycle::default()).await.unwrap().placed, 1);
    let state = wait(fake, "the machine's call to end", |s| {
        hangups_delivered(s) == 1
    })
    .await;
    (gateway, state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_machine_is_moved_to_the_campaign_message_which_names_the_lead_then_hangs_up() {
    let test = TestDb::new().await;
    let pool = test.pool();
    let seeded = seed(pool, &script_message(), "{}").await;
    let fake = FakePlivoApi::start(false).await.unwrap();
    let (gateway, state) = dial_a_machine(&test, &fake, "voicemail-left").await;
    let call_uuid = state.calls[0].call_uuid.clone();

    // The transfer, as the REST API received it: the live call's A leg, to the signed route.
    let expected_url = format!("{PUBLIC_URL}/plivo/voicemail?{}", ids_query(&seeded));
    let transfers: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path != format!("/v1/Account/{AUTH_ID}/Call/"))
        .collect();
    assert_eq!(transfers.len(), 1, "one transfer request");
    assert_eq!(
        transfers[0].path,
        format!("/v1/Account/{AUTH_ID}/Call/{call_uuid}/")
    );
    assert_eq!(transfers[0].body["legs"], "aleg");
    assert_eq!(transfers[0].body["aleg_url"], expected_url.as_str());
    assert_eq!(transfers[0].body["aleg_method"], "POST");
    assert_eq!(state.transfers.len(), 1);
    assert_eq!(state.transfers[0].call_uuid, call_uuid);
    assert!(
        state.hangups.is_empty(),
        "the message's document hung up, not the API"
    );

    // Plivo followed it: the signed fetch got the message, and the call ended after it.
    let fetched: Vec<_> = state
        .callbacks
        .iter()
        .filter(|c| c.kind == "transfer")
        .collect();
    assert_eq!(fetched.len(), 1);
    assert_eq!(fetched[0].status, 200);
    assert_voicemail_document(fetched[0].document.as_deref().unwrap());

    // The call log, the attempt and the lead: voicemail, with the message left.
    let (status, end_reason, metadata) = call_log(pool, &call_uuid).await;
    assert_eq!(status, "voicemail");
    assert_eq!(end_reason.as_deref(), Some("voicemail"));
    assert_eq!(metadata["voicemail_left"], true, "{metadata}");
    assert_eq!(metadata["machine_detection"]["machine"], true);
    assert!(metadata.get("voicemail_error").is_none(), "{metadata}");
    let left_at = metadata["voicemail_left_at"].clone();
    assert!(left_at.is_string(), "{metadata}");
    assert_eq!(attempt_status(pool, seeded.attempt).await, "voicemail");
    assert_eq!(lead_call_status(pool, seeded.lead).await, "voicemail");

    // Plivo fetching the route again gets the same document, and the log is unchanged.
    let query = url::Url::parse(&expected_url)
        .unwrap()
        .query()
        .unwrap()
        .to_owned();
    let (code, content_type, xml) =
        fetch_voicemail(gateway.address, AUTH_TOKEN, &query, &call_uuid).await;
    assert_eq!(code, 200);
    assert_eq!(content_type, "application/xml");
    assert_voicemail_document(&xml);
    let (_, _, again) = call_log(pool, &call_uuid).await;
    assert_eq!(again["voicemail_left"], true);
    assert_eq!(again["voicemail_left_at"], left_at, "recorded once");

    // A repeated machine report acts on the call no more: no second transfer, no hang-up.
    let requests_before = fake.requests().len();
    let repeated = plivo_caller::signed_post(
        &plivo_config(gateway.address, &call_uuid, AUTH_TOKEN),
        &reqwest::Client::new(),
        &format!(
            "/plivo/machine-detection?lead_id={}&campaign_id={}&attempt_id={}",
            seeded.lead, seeded.campaign, seeded.attempt
        ),
        &[
            ("CallUUID".to_owned(), call_uuid.clone()),
            ("Machine".to_owned(), "true".to_owned()),
        ],
    )
    .await
    .unwrap();
    assert_eq!(repeated.status(), 200);
    assert_eq!(fake.requests().len(), requests_before);
    assert_eq!(call_log(pool, &call_uuid).await.2["voicemail_left"], true);

    gateway.shutdown().await;
    fake.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_message_a_machine_is_hung_up_and_no_message_is_left() {
    let test = TestDb::new().await;
    let pool = test.pool();
    // Blank messages count as none.
    let seeded = seed(
        pool,
        r#"{"script": {"voicemail_message": "  "}, "voicemail_message": ""}"#,
        "{}",
    )
    .await;
    let fake = FakePlivoApi::start(false).await.unwrap();
    let (gateway, state) = dial_a_machine(&test, &fake, "voicemail-none").await;
    let call_uuid = state.calls[0].call_uuid.clone();

    assert_eq!(
        state.hangups,
        vec![call_uuid.clone()],
        "hung up through the API"
    );
    assert!(state.transfers.is_empty(), "no transfer");
    assert!(state.callbacks.iter().all(|c| c.kind != "transfer"));
    assert!(
        fake.requests()
            .iter()
            .all(|r| !(r.method == "POST" && r.path.ends_with(&format!("/{call_uuid}/"))))
    );
    let (status, end_reason, metadata) = call_log(pool, &call_uuid).await;
    assert_eq!(status, "voicemail");
    assert_eq!(end_reason.as_deref(), Some("voicemail"));
    assert_eq!(metadata["voicemail_left"], false, "{metadata}");
    assert!(metadata.get("voicemail_error").is_none(), "{metadata}");
    assert_eq!(attempt_status(pool, seeded.attempt).await, "voicemail");
    assert_eq!(lead_call_status(pool, seeded.lead).await, "voicemail");

    // Fetched anyway (say, by hand): nothing to say, and nothing recorded as left.
    let (code, _, xml) =
        fetch_voicemail(gateway.address, AUTH_TOKEN, &ids_query(&seeded), &call_uuid).await;
    assert_eq!(code, 200);
    assert_eq!(xml, xml::hangup());
    assert_eq!(call_log(pool, &call_uuid).await.2["voicemail_left"], false);

    gateway.shutdown().await;
    fake.stop().await;
}

/// Marks the seeded attempt as a call in progress, as the answer callback does.
async fn answer(pool: &PgPool, seeded: &Seeded, call_sid: &str) {
    sqlx::query(
        "UPDATE dial_attempts SET status = 'in_progress', call_sid = $2, answered_at = now()
         WHERE id = $1",
    )
    .bind(seeded.attempt)
    .bind(call_sid)
    .execute(pool)
    .await
    .unwrap();
}

fn plivo_client(fake: &FakePlivoApi) -> PlivoRest {
    PlivoRest::new(
        url::Url::parse(&fake.url()).unwrap(),
        AUTH_ID.to_owned(),
        AUTH_TOKEN.to_owned().into(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_transfer_falls_back_to_hanging_up_and_records_why() {
    let test = TestDb::new().await;
    let pool = test.pool();
    let seeded = seed(pool, &script_message(), "{}").await;
    answer(pool, &seeded, "CA-failing").await;
    // Every request to this fake gets a 500.
    let fake = FakePlivoApi::start(true).await.unwrap();
    let plivo = plivo_client(&fake);
    let machine = Machine {
        attempt_id: seeded.attempt,
        lead_id: seeded.lead,
        campaign_id: seeded.campaign,
        call_sid: "CA-failing",
    };
    callbacks::on_machine(&test.db, Some(&plivo), PUBLIC_URL, &machine)
        .await
        .unwrap();

    let requests: Vec<(String, String)> = fake
        .requests()
        .into_iter()
        .map(|r| (r.method, r.path))
        .collect();
    let call_path = format!("/v1/Account/{AUTH_ID}/Call/CA-failing/");
    assert_eq!(
        requests,
        [
            ("POST".to_owned(), call_path.clone()),
            ("DELETE".to_owned(), call_path)
        ],
        "the transfer, then the hang-up"
    );
    let (status, end_reason, metadata) = call_log(pool, "CA-failing").await;
    assert_eq!(status, "voicemail");
    assert_eq!(end_reason.as_deref(), Some("voicemail"));
    assert_eq!(metadata["voicemail_left"], false, "{metadata}");
    let error = metadata["voicemail_error"].as_str().unwrap_or_default();
    assert!(error.contains("500"), "{metadata}");
    assert_eq!(attempt_status(pool, seeded.attempt).await, "voicemail");

    // A repeated report sends nothing more.
    callbacks::on_machine(&test.db, Some(&plivo), PUBLIC_URL, &machine)
        .await
        .unwrap();
    assert_eq!(fake.requests().len(), 2);
    fake.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_voicemail_route_is_signed_and_hangs_up_on_anything_it_does_not_know() {
    let test = TestDb::new().await;
    let pool = test.pool();
    let seeded = seed(pool, &script_message(), "{}").await;
    let name = format!("gw-{}", Uuid::new_v4().simple());
    let app = TestApp::spawn(settings_for(
        &test.url,
        &name,
        &[
            ("PLIVO_AUTH_ID", AUTH_ID),
            ("PLIVO_AUTH_TOKEN", AUTH_TOKEN),
            // Nothing may reach Plivo from here: no dialer, and no API behind the URL.
            ("VG_DIALER_ENABLED", "false"),
            ("PLIVO_API_URL", "http://127.0.0.1:9"),
        ],
    ))
    .await;
    // A machine's call, already reported (no Plivo API: nothing is transferred or hung up).
    answer(pool, &seeded, "CA-route").await;
    let machine = Machine {
        attempt_id: seeded.attempt,
        lead_id: seeded.lead,
        campaign_id: seeded.campaign,
        call_sid: "CA-route",
    };
    callbacks::on_machine(&test.db, None, PUBLIC_URL, &machine)
        .await
        .unwrap();
    let left = || async { call_log(pool, "CA-route").await.2["voicemail_left"].clone() };
    assert_eq!(left().await, false);

    // Unsigned, wrongly signed, signed with another token: 403, nothing recorded.
    let http = reqwest::Client::new();
    let url = app.url(&format!("/plivo/voicemail?{}", ids_query(&seeded)));
    let form = [("CallUUID", "CA-route")];
    let unsigned = http.post(&url).form(&form).send().await.unwrap();
    assert_eq!(unsigned.status(), 403);
    let wrong = http
        .post(&url)
        .header("X-Plivo-Signature-V3", "bm90IGEgc2lnbmF0dXJl")
        .header("X-Plivo-Signature-V3-Nonce", "12345")
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 403);
    let (code, _, _) = fetch_voicemail(
        app.address,
        "another-token",
        &ids_query(&seeded),
        "CA-route",
    )
    .await;
    assert_eq!(code, 403);
    assert_eq!(left().await, false, "a refused request changes nothing");

    // Signed, but about no attempt we know, or without its ids, or for another call: a plain
    // hang-up document, never an error.
    let unknown = format!(
        "attempt_id={}&lead_id={}&campaign_id={}",
        Uuid::new_v4(),
        seeded.lead,
        seeded.campaign
    );
    let other_lead = format!(
        "attempt_id={}&lead_id={}&campaign_id={}",
        seeded.attempt,
        Uuid::new_v4(),
        seeded.campaign
    );
    for (query, call_sid) in [
        (unknown.as_str(), "CA-route"),
        (other_lead.as_str(), "CA-route"),
        ("attempt_id=not-a-uuid", "CA-route"),
        ("", "CA-route"),
        (ids_query(&seeded).as_str(), "CA-someone-else"),
    ] {
        let (code, content_type, xml) =
            fetch_voicemail(app.address, AUTH_TOKEN, query, call_sid).await;
        assert_eq!(code, 200, "{query}");
        assert_eq!(content_type, "application/xml");
        assert_eq!(xml, xml::hangup(), "{query}");
        assert_eq!(elements(&xml), ["Hangup"]);
    }
    assert_eq!(left().await, false);

    // An attempt that is not a machine's hears nothing either.
    let live = seed(pool, &script_message(), "{}").await;
    answer(pool, &live, "CA-live").await;
    let (code, _, xml) =
        fetch_voicemail(app.address, AUTH_TOKEN, &ids_query(&live), "CA-live").await;
    assert_eq!((code, xml), (200, xml::hangup()));

    // The right request gets the message, and only now is it recorded as left.
    let (code, _, xml) =
        fetch_voicemail(app.address, AUTH_TOKEN, &ids_query(&seeded), "CA-route").await;
    assert_eq!(code, 200);
    assert_voicemail_document(&xml);
    assert_eq!(left().await, true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_message_is_the_scripts_else_the_campaigns_else_the_organizations() {
    let test = TestDb::new().await;
    let pool = test.pool();
    let seeded = seed(
        pool,
        r#"{"script": {"voicemail_message": "From the script, {name}."},
            "voicemail_message": "From the campaign."}"#,
        r#"{"voicemail_message": "From the organization."}"#,
    )
    .await;
    let message = || async {
        test.db
            .voicemail_for_attempt(seeded.attempt, seeded.lead, seeded.campaign)
            .await
            .unwrap()
            .and_then(|attempt| attempt.messages.choose().map(str::to_owned))
    };
    assert_eq!(message().await.as_deref(), Some("From the script, {name}."));
    let set = |table: &'static str, settings: &'static str| async move {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE {table} SET settings = $1::jsonb"
        )))
        .bind(settings)
        .execute(pool)
        .await
        .unwrap();
    };
    set(
        "campaigns",
        r#"{"script": {"pitch": "…"}, "voicemail_message": "From the campaign."}"#,
    )
    .await;
    assert_eq!(message().await.as_deref(), Some("From the campaign."));
    set("campaigns", r#"{"voicemail_message": 42}"#).await;
    assert_eq!(message().await.as_deref(), Some("From the organization."));
    set(
        "organizations",
        r#"{"voicemail_message": {"text": "not a string"}}"#,
    )
    .await;
    assert_eq!(message().await, None);
    let found = test
        .db
        .voicemail_for_attempt(seeded.attempt, seeded.lead, seeded.campaign)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.lead_name, "Priya Sharma");
    assert_eq!(found.language, "en");
    assert_eq!(found.status, "scheduled");
    // The three ids must agree.
    assert!(
        test.db
            .voicemail_for_attempt(seeded.attempt, seeded.lead, Uuid::new_v4())
            .await
            .unwrap()
            .is_none()
    );
}
