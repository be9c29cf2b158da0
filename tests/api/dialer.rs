//! The campaign dialer against real PostgreSQL and the fake Plivo REST API (which plays the
//! calls' callbacks, signed, to the gateways): two gateways on one database, calling windows
//! across timezones and a DST change on a clock the test sets, retries by class, voicemail,
//! pause, resume and cancel, recovery of attempts nobody heard back about.
//!
//! Nothing sleeps to synchronise: the tests wait on the fake's state changes, or run the
//! dialer's passes themselves on a manual clock.

use std::{collections::HashMap, sync::Arc, time::Duration};

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::PgPool;
use uuid::Uuid;
use voice_gateway::{
    db::Database,
    dialer::{Clock, Dialer, ManualClock},
    lifecycle::Lifecycle,
    plivo::rest::PlivoRest,
    simulators::plivo_api::{CallbackTarget, FakePlivoApi, FakeState, Outcome, Script},
    startup::Application,
};

use crate::helpers::{TestDb, settings_for};

pub(crate) const AUTH_ID: &str = "MADIALER";
pub(crate) const AUTH_TOKEN: &str = "dialer-test-token";
pub(crate) const CALLER_ID: &str = "+14155550100";
/// Generous: the machine is small and the suite runs tests in parallel.
const WAIT: Duration = Duration::from_secs(120);

pub(crate) fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

/// An organization (caller ID, concurrency limit) and one campaign.
pub(crate) struct Campaign {
    pub(crate) org: Uuid,
    pub(crate) id: Uuid,
}

/// Inserts an organization and a campaign; `columns` sets campaign columns by SQL.
pub(crate) async fn seed_campaign(pool: &PgPool, org_limit: i32, columns: &str) -> Campaign {
    let org: Uuid = sqlx::query_scalar(
        "INSERT INTO organizations (name, caller_id, max_concurrent_calls) VALUES ('Dialer Co', $1, $2) RETURNING id",
    )
    .bind(CALLER_ID)
    .bind(org_limit)
    .fetch_one(pool)
    .await
    .unwrap();
    let id = add_campaign(pool, org, columns).await;
    Campaign { org, id }
}

pub(crate) async fn add_campaign(pool: &PgPool, org: Uuid, columns: &str) -> Uuid {
    let id: Uuid = sqlx::query_scalar(
        "INSERT INTO campaigns (organization_id, name, status) VALUES ($1, 'Dial test', 'running') RETURNING id",
    )
    .bind(org)
    .fetch_one(pool)
    .await
    .unwrap();
    if !columns.is_empty() {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE campaigns SET {columns} WHERE id = $1"
        )))
        .bind(id)
        .execute(pool)
        .await
        .unwrap();
    }
    id
}

/// `count` leads with phones `+1415{prefix}NNNNNN`, each enrolled (attempt 1 scheduled, due
/// at `due`), in creation order.
pub(crate) async fn enroll(
    pool: &PgPool,
    campaign: &Campaign,
    prefix: u32,
    count: i32,
    due: DateTime<Utc>,
) -> Vec<(Uuid, String)> {
    let leads: Vec<(Uuid, String)> = sqlx::query_as(
        "INSERT INTO leads (organization_id, name, phone)
         SELECT $1, 'Lead ' || i, '+1415' || $2::text || lpad(i::text, 6, '0')
         FROM generate_series(1, $3) AS i ORDER BY i
         RETURNING id, phone",
    )
    .bind(campaign.org)
    .bind(prefix.to_string())
    .bind(count)
    .fetch_all(pool)
    .await
    .unwrap();
    for (lead_id, _) in &leads {
        schedule(pool, campaign, *lead_id, due).await;
    }
    leads
}

pub(crate) async fn schedule(
    pool: &PgPool,
    campaign: &Campaign,
    lead_id: Uuid,
    due: DateTime<Utc>,
) -> Uuid {
    sqlx::query_scalar(
        "INSERT INTO dial_attempts (organization_id, campaign_id, lead_id, attempt_number, status, due_at)
         VALUES ($1, $2, $3, 1, 'scheduled', $4) RETURNING id",
    )
    .bind(campaign.org)
    .bind(campaign.id)
    .bind(lead_id)
    .bind(due)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// An attempt as the tests read it back.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct Attempt {
    pub(crate) id: Uuid,
    pub(crate) lead_id: Uuid,
    pub(crate) attempt_number: i32,
    pub(crate) status: String,
    pub(crate) due_at: DateTime<Utc>,
    pub(crate) ended_at: Option<DateTime<Utc>>,
    pub(crate) claimed_by: Option<String>,
    pub(crate) request_uuid: Option<String>,
    pub(crate) call_sid: Option<String>,
    pub(crate) hangup_cause: Option<String>,
    pub(crate) error: Option<String>,
}

pub(crate) async fn attempts(pool: &PgPool, campaign_id: Uuid) -> Vec<Attempt> {
    sqlx::query_as(
        "SELECT id, lead_id, attempt_number, status, due_at, ended_at, claimed_by, request_uuid,
                call_sid, hangup_cause, error
         FROM dial_attempts WHERE campaign_id = $1 ORDER BY lead_id, attempt_number",
    )
    .bind(campaign_id)
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn campaign_status(pool: &PgPool, id: Uuid) -> (String, Option<DateTime<Utc>>) {
    sqlx::query_as("SELECT status, completed_at FROM campaigns WHERE id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// A gateway running in this process, with the dialer on (or off) and its own clock.
pub(crate) struct Gateway {
    pub(crate) address: std::net::SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

pub(crate) async fn build_gateway(
    url: &str,
    name: &str,
    fake: &FakePlivoApi,
    extra: &[(&str, &str)],
) -> Application {
    let fake_url = fake.url();
    let mut pairs = vec![
        ("PLIVO_AUTH_ID", AUTH_ID),
        ("PLIVO_AUTH_TOKEN", AUTH_TOKEN),
        ("PLIVO_API_URL", fake_url.as_str()),
        ("VG_DIALER_POLL_MS", "50"),
    ];
    pairs.extend_from_slice(extra);
    Application::build(settings_for(url, name, &pairs))
        .await
        .expect("build the gateway")
}

pub(crate) fn run(application: Application) -> Gateway {
    let address = application.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(application.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    Gateway {
        address,
        stop,
        task,
    }
}

impl Gateway {
    pub(crate) async fn shutdown(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().expect("a clean shutdown");
    }
}

pub(crate) fn target(gateways: &[&Application]) -> CallbackTarget {
    CallbackTarget {
        auth_token: AUTH_TOKEN.to_owned(),
        gateways: gateways
            .iter()
            .map(|app| format!("http://{}", app.local_addr()))
            .collect(),
    }
}

/// A dialer driven by the test, pass by pass, on a manual clock.
pub(crate) fn manual_dialer(
    db: &Database,
    fake: &FakePlivoApi,
    cps: u32,
    clock: &ManualClock,
) -> Dialer {
    manual_dialer_with(db, fake, clock, &[("VG_DIALER_CPS", &cps.to_string())])
}

fn manual_dialer_with(
    db: &Database,
    fake: &FakePlivoApi,
    clock: &ManualClock,
    extra: &[(&str, &str)],
) -> Dialer {
    let settings = settings_for("postgres://unused@localhost/unused", "manual-dialer", extra);
    let plivo = PlivoRest::new(
        url::Url::parse(&fake.url()).unwrap(),
        AUTH_ID.to_owned(),
        AUTH_TOKEN.to_owned().into(),
    )
    .unwrap();
    Dialer::new(
        db.clone(),
        plivo,
        AUTH_ID.to_owned(),
        "manual-dialer".to_owned(),
        &settings.server.public_url,
        settings.dialer,
        Clock::Manual(clock.clone()),
    )
}

pub(crate) fn hangups_delivered(state: &FakeState) -> usize {
    state
        .callbacks
        .iter()
        .filter(|c| c.kind == "hangup")
        .count()
}

pub(crate) async fn wait(
    fake: &FakePlivoApi,
    what: &str,
    done: impl Fn(&FakeState) -> bool,
) -> FakeState {
    match fake.wait_for(WAIT, done).await {
        Ok(state) => state,
        Err(state) => panic!(
            "timed out waiting for {what}: {} calls, {} live, {} callbacks",
            state.calls.len(),
            state.live,
            state.callbacks.len()
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_gateways_dial_500_leads_once_each_within_concurrency_and_cps() {
    const LEADS: usize = 500;
    const CONCURRENCY: usize = 20;
    const CPS: usize = 40;
    let test = TestDb::new().await;
    let pool = test.pool();
    let campaign = seed_campaign(
        pool,
        100,
        "max_concurrent_calls = 20, calls_per_minute = 100000, max_attempts = 1,
         calling_window_start = '00:00', calling_window_end = '23:59:59.999999',
         calling_days = '{1,2,3,4,5,6,7}'",
    )
    .await;
    let leads = enroll(pool, &campaign, 1, LEADS as i32, Utc::now()).await;
    let fake = FakePlivoApi::start(false).await.unwrap();
    // Hold times from 200 to 900 ms: concurrency binds most of the time, CPS in bursts.
    let script: Script = Arc::new(|call| Outcome::Answer {
        hold: Duration::from_millis(200 + (call.index as u64 * 37) % 700),
    });
    fake.set_script(script);
    let cps = CPS.to_string();
    let extra = [("VG_DIALER_CPS", cps.as_str())];
    let first = build_gateway(&test.url, "dialer-a", &fake, &extra).await;
    let second = build_gateway(&test.url, "dialer-b", &fake, &extra).await;
    fake.set_callback_target(target(&[&first, &second]));
    let started = std::time::Instant::now();
    let (first, second) = (run(first), run(second));

    let state = wait(&fake, "every lead's hangup", |state| {
        hangups_delivered(state) == LEADS
    })
    .await;
    let elapsed = started.elapsed();
    eprintln!(
        "500 leads on two gateways: {elapsed:?}, max live {}",
        state.max_live
    );

    // Every lead dialed exactly once, by exactly one attempt.
    let mut per_number: HashMap<&str, usize> = HashMap::new();
    for call in &state.calls {
        *per_number.entry(call.to.as_str()).or_default() += 1;
    }
    assert_eq!(state.calls.len(), LEADS, "one call per lead");
    for (_, phone) in &leads {
        assert_eq!(per_number.get(phone.as_str()), Some(&1), "{phone}");
    }
    assert!(
        state.callbacks.iter().all(|c| c.status == 200),
        "every callback accepted: {:?}",
        state.callbacks.iter().find(|c| c.status != 200)
    );
    // Concurrency as Plivo counts it, and the limit was reached (so it was what held calls).
    assert!(
        state.max_live <= CONCURRENCY,
        "{} calls live at once",
        state.max_live
    );
    assert!(
        state.max_live >= CONCURRENCY - 4,
        "the limit was never approached ({}): the test proves nothing",
        state.max_live
    );
    // Calls per second as Plivo counts arrivals: any CPS + 1 consecutive requests span ≥ 1 s.
    let mut arrivals: Vec<_> = state.calls.iter().map(|c| c.received_at).collect();
    arrivals.sort();
    for window in arrivals.windows(CPS + 1) {
        let span = window[CPS] - window[0];
        assert!(
            span >= Duration::from_secs(1),
            "{} calls within {span:?}",
            CPS + 1
        );
    }

    // In the database: one completed attempt per lead, placed with the fake's request id,
    // claimed by both gateways.
    let rows = attempts(pool, campaign.id).await;
    assert_eq!(rows.len(), LEADS);
    let request_uuids: HashMap<&str, &str> = state
        .calls
        .iter()
        .map(|c| (c.request_uuid.as_str(), c.to.as_str()))
        .collect();
    let mut by_gateway: HashMap<String, usize> = HashMap::new();
    for row in &rows {
        assert_eq!(row.status, "completed", "{row:?}");
        assert_eq!(row.attempt_number, 1);
        let uuid = row.request_uuid.as_deref().expect("request_uuid stored");
        assert!(request_uuids.contains_key(uuid), "{row:?}");
        assert!(row.call_sid.is_some(), "{row:?}");
        *by_gateway
            .entry(row.claimed_by.clone().unwrap_or_default())
            .or_default() += 1;
    }
    assert_eq!(by_gateway.len(), 2, "both gateways claimed: {by_gateway:?}");
    // The answer URL named the attempt, once per attempt.
    let mut answer_attempts: Vec<String> = state
        .calls
        .iter()
        .map(|c| {
            let url = url::Url::parse(c.body["answer_url"].as_str().unwrap()).unwrap();
            url.query_pairs()
                .find(|(k, _)| k == "attempt_id")
                .unwrap()
                .1
                .into_owned()
        })
        .collect();
    answer_attempts.sort();
    answer_attempts.dedup();
    assert_eq!(answer_attempts.len(), LEADS);

    // Nothing left: the campaign completes (a pass run here, or a gateway's, does it). A pass
    // skips a campaign another gateway's pass holds locked, so look until one has finished it.
    let clock = ManualClock::new(Utc::now());
    let dialer = manual_dialer(&test.db, &fake, 2, &clock);
    crate::campaign_api::wait_until(
        "the campaign to complete",
        Duration::from_secs(10),
        || async {
            let pass = dialer.pass(&Lifecycle::default()).await.unwrap();
            assert_eq!(pass.placed, 0);
            campaign_status(pool, campaign.id).await.0 == "completed"
        },
    )
    .await;
    let (status, completed_at) = campaign_status(pool, campaign.id).await;
    assert_eq!(status, "completed");
    assert!(completed_at.is_some());

    // The dialer's work shows on `/metrics` (the recorder is per process, so at least ours).
    let exposition = reqwest::get(format!("http://{}/metrics", first.address))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let counted = |prefix: &str| -> f64 {
        exposition
            .lines()
            .find(|line| line.starts_with(prefix))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|value| value.parse().ok())
            .unwrap_or(0.0)
    };
    assert!(counted("vg_dialer_calls_total{result=\"placed\"}") >= LEADS as f64);
    assert!(
        counted("vg_dialer_attempts_ended_total{class=\"completed\"}") >= LEADS as f64,
        "{exposition}"
    );

    first.shutdown().await;
    second.shutdown().await;
    fake.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calling_windows_follow_each_leads_timezone_across_the_dst_change() {
    let test = TestDb::new().await;
    let pool = test.pool();
    // 09:00–17:00 in New York, every day; 2026-03-08 is the day clocks move to EDT.
    let campaign = seed_campaign(
        pool,
        10,
        "timezone = 'America/New_York', calling_window_start = '09:00',
         calling_window_end = '17:00', calling_days = '{1,2,3,4,5,6,7}'",
    )
    .await;
    let due = utc("2026-03-07T00:00:00Z");
    let leads = enroll(pool, &campaign, 2, 4, due).await;
    let zones = [
        None,
        Some("Asia/Tokyo"),
        Some("Europe/London"),
        Some("Mars/Olympus_Mons"),
    ];
    for ((lead_id, _), zone) in leads.iter().zip(zones) {
        sqlx::query("UPDATE leads SET timezone = $2 WHERE id = $1")
            .bind(lead_id)
            .bind(zone)
            .execute(pool)
            .await
            .unwrap();
    }
    let [new_york, tokyo, london, unknown] = [0, 1, 2, 3].map(|i| (leads[i].0, leads[i].1.clone()));
    // A paused campaign's test call is placed at once, outside its window too.
    let paused = add_campaign(
        pool,
        campaign.org,
        "status = 'paused', timezone = 'Asia/Tokyo', calling_window_start = '09:00',
         calling_window_end = '10:00'",
    )
    .await;
    let test_call: Uuid = sqlx::query_scalar(
        "INSERT INTO dial_attempts (organization_id, campaign_id, lead_id, attempt_number, is_test, due_at)
         VALUES ($1, $2, $3, 1, TRUE, $4) RETURNING id",
    )
    .bind(campaign.org)
    .bind(paused)
    .bind(tokyo.0)
    .bind(due)
    .fetch_one(pool)
    .await
    .unwrap();

    let fake = FakePlivoApi::start(false).await.unwrap();
    let clock = ManualClock::new(utc("2026-03-08T12:30:00Z")); // 08:30 EDT, 12:30 GMT, 21:30 JST.
    // The fake plays no callbacks here: calls stay in flight, and a day's margin keeps the
    // recovery from ending them while the clock jumps ahead.
    let dialer = manual_dialer_with(
        &test.db,
        &fake,
        &clock,
        &[
            ("VG_DIALER_CPS", "10"),
            ("VG_DIALER_STUCK_MARGIN_SECS", "86400"),
        ],
    );
    let lifecycle = Lifecycle::default();

    // The test call and London go; the rest wait for their windows.
    let pass = dialer.pass(&lifecycle).await.unwrap();
    assert_eq!((pass.placed, pass.rescheduled), (2, 3), "{pass:?}");
    let state = wait(&fake, "the first calls", |s| s.calls.len() == 2).await;
    let numbers = |calls: &[voice_gateway::simulators::plivo_api::PlacedCall]| {
        let mut numbers: Vec<String> = calls.iter().map(|c| c.to.clone()).collect();
        numbers.sort();
        numbers
    };
    let sorted = |mut list: Vec<String>| {
        list.sort();
        list
    };
    assert_eq!(
        numbers(&state.calls),
        sorted(vec![london.1.clone(), tokyo.1.clone()])
    );
    let rows: HashMap<Uuid, Attempt> = attempts(pool, campaign.id)
        .await
        .into_iter()
        .map(|a| (a.lead_id, a))
        .collect();
    // 09:00 EDT (13:00 UTC, not EST's 14:00), 09:00 JST the next day; an unknown zone falls
    // back to the campaign's.
    assert_eq!(rows[&new_york.0].due_at, utc("2026-03-08T13:00:00Z"));
    assert_eq!(rows[&unknown.0].due_at, utc("2026-03-08T13:00:00Z"));
    assert_eq!(rows[&tokyo.0].due_at, utc("2026-03-09T00:00:00Z"));
    assert_eq!(rows[&new_york.0].status, "scheduled");
    assert_ne!(rows[&london.0].status, "scheduled");
    // The request Plivo got, as protocols.md B.2 describes it.
    let london_call = state.calls.iter().find(|c| c.to == london.1).unwrap();
    let body = &london_call.body;
    assert_eq!(body["from"], CALLER_ID);
    assert_eq!(body["ring_timeout"], 30);
    assert_eq!(body["time_limit"], 600);
    assert_eq!(body["machine_detection"], "true");
    let attempt_id = rows[&london.0].id;
    for (key, path) in [
        ("answer_url", "answer"),
        ("hangup_url", "hangup"),
        ("machine_detection_url", "machine-detection"),
    ] {
        assert_eq!(
            body[key].as_str().unwrap(),
            format!(
                "https://gateway.test/plivo/{path}?lead_id={}&campaign_id={}&attempt_id={attempt_id}",
                london.0, campaign.id
            )
        );
    }

    // A second before 09:00 EDT: nothing placed, nothing moved again (no churn).
    clock.set(utc("2026-03-08T12:59:59Z"));
    let pass = dialer.pass(&lifecycle).await.unwrap();
    assert_eq!((pass.placed, pass.rescheduled), (0, 0), "{pass:?}");
    // At 09:00 EDT both New York leads go.
    clock.set(utc("2026-03-08T13:00:00Z"));
    let pass = dialer.pass(&lifecycle).await.unwrap();
    assert_eq!((pass.placed, pass.rescheduled), (2, 0), "{pass:?}");
    let state = wait(&fake, "New York's calls", |s| s.calls.len() == 4).await;
    assert_eq!(
        numbers(&state.calls[2..]),
        sorted(vec![new_york.1.clone(), unknown.1.clone()])
    );
    // Tokyo's lead still has its test call in flight: its own attempt waits even when due.
    clock.set(utc("2026-03-09T00:00:00Z"));
    let pass = dialer.pass(&lifecycle).await.unwrap();
    assert_eq!(pass.placed, 0, "one call in flight per lead: {pass:?}");
    sqlx::query("UPDATE dial_attempts SET status = 'completed', ended_at = now() WHERE id = $1")
        .bind(test_call)
        .execute(pool)
        .await
        .unwrap();
    clock.set(utc("2026-03-08T23:59:59Z"));
    assert_eq!(
        dialer.pass(&lifecycle).await.unwrap().placed,
        0,
        "08:59:59 JST"
    );
    clock.set(utc("2026-03-09T00:00:00Z"));
    assert_eq!(
        dialer.pass(&lifecycle).await.unwrap().placed,
        1,
        "09:00 JST"
    );
    let state = wait(&fake, "Tokyo's call", |s| s.calls.len() == 5).await;
    assert_eq!(state.calls[4].to, tokyo.1);
    fake.stop().await;
}

/// What the call log and the lead say about a call.
async fn call_log_of(pool: &PgPool, call_sid: &str) -> (String, Option<String>) {
    sqlx::query_as("SELECT call_status, end_reason FROM call_logs WHERE call_sid = $1")
        .bind(call_sid)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn lead_call_status(pool: &PgPool, lead_id: Uuid) -> String {
    sqlx::query_scalar("SELECT call_status FROM leads WHERE id = $1")
        .bind(lead_id)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_class_ends_its_attempt_and_retries_as_its_class_says() {
    let test = TestDb::new().await;
    let pool = test.pool();
    let campaign = seed_campaign(
        pool,
        10,
        "max_attempts = 3, retry_backoff_seconds = 60, calling_window_start = '00:00',
         calling_window_end = '23:59:59.999999', calling_days = '{1,2,3,4,5,6,7}'",
    )
    .await;
    let start = Utc::now();
    let leads = enroll(pool, &campaign, 3, 5, start).await;
    let [no_answer, busy, failed, invalid, machine] =
        [0, 1, 2, 3, 4].map(|i| (leads[i].0, leads[i].1.clone()));
    let fake = FakePlivoApi::start(false).await.unwrap();
    let outcomes: HashMap<String, Vec<Outcome>> = HashMap::from([
        (no_answer.1.clone(), vec![Outcome::NoAnswer; 3]),
        (
            busy.1.clone(),
            vec![
                Outcome::Busy,
                Outcome::Answer {
                    hold: Duration::from_millis(50),
                },
            ],
        ),
        (failed.1.clone(), vec![Outcome::Failed; 2]),
        (invalid.1.clone(), vec![Outcome::InvalidNumber]),
        (machine.1.clone(), vec![Outcome::Machine]),
    ]);
    let script: Script = Arc::new(move |call| {
        outcomes[&call.to]
            .get(call.nth_to_number)
            .copied()
            .unwrap_or(Outcome::Failed)
    });
    fake.set_script(script);
    // The gateway serves the callbacks; the test runs the dialer's passes on its own clock.
    let gateway = build_gateway(
        &test.url,
        "callbacks",
        &fake,
        &[("VG_DIALER_ENABLED", "false")],
    )
    .await;
    fake.set_callback_target(target(&[&gateway]));
    let gateway = run(gateway);
    let clock = ManualClock::new(start);
    let dialer = manual_dialer(&test.db, &fake, 10, &clock);
    let lifecycle = Lifecycle::default();

    assert_eq!(dialer.pass(&lifecycle).await.unwrap().placed, 5);
    let state = wait(&fake, "five hangups", |s| hangups_delivered(s) == 5).await;
    let machine_call = state.calls.iter().find(|c| c.to == machine.1).unwrap();
    assert_eq!(
        state.hangups,
        vec![machine_call.call_uuid.clone()],
        "the machine's call was hung up through the API, and only it"
    );
    let by_lead = |rows: Vec<Attempt>| -> HashMap<Uuid, Vec<Attempt>> {
        let mut map: HashMap<Uuid, Vec<Attempt>> = HashMap::new();
        for row in rows {
            map.entry(row.lead_id).or_default().push(row);
        }
        map
    };
    let rows = by_lead(attempts(pool, campaign.id).await);
    let statuses = |lead: Uuid, rows: &HashMap<Uuid, Vec<Attempt>>| -> Vec<String> {
        rows[&lead].iter().map(|a| a.status.clone()).collect()
    };
    assert_eq!(statuses(no_answer.0, &rows), ["no_answer", "scheduled"]);
    assert_eq!(statuses(busy.0, &rows), ["busy", "scheduled"]);
    assert_eq!(statuses(failed.0, &rows), ["failed", "scheduled"]);
    assert_eq!(statuses(invalid.0, &rows), ["invalid_number"]);
    assert_eq!(statuses(machine.0, &rows), ["voicemail"]);
    let first = &rows[&no_answer.0][0];
    assert_eq!(first.hangup_cause.as_deref(), Some("No Answer (3000)"));
    assert!(first.call_sid.is_some());
    assert!(
        rows[&invalid.0][0]
            .hangup_cause
            .as_deref()
            .unwrap()
            .contains("2000")
    );
    // The retry is due exactly the backoff after the attempt ended.
    let retry = &rows[&no_answer.0][1];
    assert_eq!(retry.attempt_number, 2);
    assert_eq!(
        retry.due_at - first.ended_at.unwrap(),
        TimeDelta::seconds(60)
    );
    // The machine: voicemail on the lead and on the call log.
    assert_eq!(lead_call_status(pool, machine.0).await, "voicemail");
    assert_eq!(
        call_log_of(pool, &machine_call.call_uuid).await,
        ("voicemail".to_owned(), Some("voicemail".to_owned()))
    );
    // Unanswered calls are logged as such.
    assert_eq!(lead_call_status(pool, no_answer.0).await, "no_answer");

    // Not a millisecond before the backoff is over; then the three retries go.
    let due = [no_answer.0, busy.0, failed.0]
        .iter()
        .map(|lead| rows[lead][1].due_at)
        .max()
        .unwrap();
    let earliest = [no_answer.0, busy.0, failed.0]
        .iter()
        .map(|lead| rows[lead][1].due_at)
        .min()
        .unwrap();
    clock.set(earliest - TimeDelta::milliseconds(1));
    assert_eq!(dialer.pass(&lifecycle).await.unwrap().placed, 0);
    clock.set(due);
    assert_eq!(dialer.pass(&lifecycle).await.unwrap().placed, 3);
    wait(&fake, "eight hangups", |s| hangups_delivered(s) == 8).await;
    let rows = by_lead(attempts(pool, campaign.id).await);
    assert_eq!(
        statuses(no_answer.0, &rows),
        ["no_answer", "no_answer", "scheduled"]
    );
    assert_eq!(statuses(busy.0, &rows), ["busy", "completed"]);
    assert_eq!(
        statuses(failed.0, &rows),
        ["failed", "failed"],
        "failed is retried once"
    );

    // The third no-answer is the last: max_attempts = 3.
    clock.set(rows[&no_answer.0][2].due_at);
    assert_eq!(dialer.pass(&lifecycle).await.unwrap().placed, 1);
    wait(&fake, "nine hangups", |s| hangups_delivered(s) == 9).await;
    let rows = by_lead(attempts(pool, campaign.id).await);
    assert_eq!(
        statuses(no_answer.0, &rows),
        ["no_answer", "no_answer", "no_answer"]
    );
    // A callback Plivo repeats changes nothing (idempotent by attempt).
    let state = fake.state();
    let last = state.calls.last().unwrap();
    let repeated = voice_gateway::simulators::plivo_caller::signed_post(
        &voice_gateway::simulators::plivo_caller::CallerConfig {
            gateway: format!("http://{}", gateway.address),
            public_url: "https://gateway.test".to_owned(),
            auth_token: AUTH_TOKEN.to_owned(),
            call_sid: last.call_uuid.clone(),
            answer_query: String::new(),
            from: CALLER_ID.to_owned(),
            to: last.to.clone(),
            keep_agent_audio: false,
        },
        &reqwest::Client::new(),
        &format!(
            "/plivo/hangup?{}",
            url::Url::parse(last.body["hangup_url"].as_str().unwrap())
                .unwrap()
                .query()
                .unwrap()
        ),
        &[
            ("CallUUID".to_owned(), last.call_uuid.clone()),
            ("CallStatus".to_owned(), "no-answer".to_owned()),
            ("HangupCause".to_owned(), "No Answer".to_owned()),
            ("HangupCauseCode".to_owned(), "3000".to_owned()),
        ],
    )
    .await
    .unwrap();
    assert_eq!(repeated.status(), 200);
    assert_eq!(attempts(pool, campaign.id).await.len(), 9, "no new attempt");

    // An unsigned machine report is refused and changes nothing.
    let busy_attempt = &rows[&busy.0][1];
    let forged = reqwest::Client::new()
        .post(format!(
            "http://{}/plivo/machine-detection?lead_id={}&campaign_id={}&attempt_id={}",
            gateway.address, busy.0, campaign.id, busy_attempt.id
        ))
        .form(&[("CallUUID", "forged"), ("Machine", "true")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    assert_eq!(lead_call_status(pool, busy.0).await, "no_answer");

    // Nothing left: the campaign completes.
    let pass = dialer.pass(&lifecycle).await.unwrap();
    assert_eq!(pass.completed_campaigns, vec![campaign.id]);
    assert_eq!(campaign_status(pool, campaign.id).await.0, "completed");
    gateway.shutdown().await;
    fake.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_stops_claims_at_once_resume_continues_and_cancel_leaves_nothing_pending() {
    let test = TestDb::new().await;
    let pool = test.pool();
    let campaign = seed_campaign(
        pool,
        10,
        "max_concurrent_calls = 4, max_attempts = 1, calling_window_start = '00:00',
         calling_window_end = '23:59:59.999999', calling_days = '{1,2,3,4,5,6,7}'",
    )
    .await;
    enroll(pool, &campaign, 4, 60, Utc::now()).await;
    let fake = FakePlivoApi::start(false).await.unwrap();
    let script: Script = Arc::new(|_| Outcome::Answer {
        hold: Duration::from_millis(150),
    });
    fake.set_script(script);
    let gateway = build_gateway(&test.url, "pausing", &fake, &[("VG_DIALER_CPS", "50")]).await;
    fake.set_callback_target(target(&[&gateway]));
    let gateway = run(gateway);
    let claimed = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM dial_attempts WHERE campaign_id = $1 AND status <> 'scheduled'",
        )
        .bind(campaign.id)
        .fetch_one(pool)
        .await
        .unwrap()
    };

    wait(&fake, "ten calls", |s| s.calls.len() >= 10).await;
    // The pause as the API commits it; what is claimed is counted inside its transaction,
    // after its row lock (a claim in progress holds the campaign share-locked, so the pause
    // waits for it): nothing may be claimed after this commits.
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("UPDATE campaigns SET status = 'paused', paused_at = now() WHERE id = $1")
        .bind(campaign.id)
        .execute(&mut *tx)
        .await
        .unwrap();
    let at_pause: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM dial_attempts WHERE campaign_id = $1 AND status <> 'scheduled'",
    )
    .bind(campaign.id)
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    // Every call claimed before the pause is placed and ends; capacity frees call by call while
    // the gateway polls every 50 ms, so a claim after the pause would show as one call too many
    // and this wait would never end.
    let state = wait(&fake, "the calls in flight to end", |s| {
        s.calls.len() as i64 == at_pause && hangups_delivered(s) as i64 == at_pause
    })
    .await;
    assert_eq!(state.live, 0);
    // And a pass of our own, with all capacity free, places nothing either.
    let clock = ManualClock::new(Utc::now());
    let pass = manual_dialer(&test.db, &fake, 2, &clock)
        .pass(&Lifecycle::default())
        .await
        .unwrap();
    assert_eq!(pass.placed, 0, "a paused campaign is not dialed");
    assert_eq!(
        claimed().await,
        at_pause,
        "nothing claimed after the pause committed"
    );
    assert!(at_pause < 60);

    // Resume: dialing continues.
    sqlx::query("UPDATE campaigns SET status = 'running' WHERE id = $1")
        .bind(campaign.id)
        .execute(pool)
        .await
        .unwrap();
    let target_calls = at_pause as usize + 10;
    wait(&fake, "ten more calls", |s| s.calls.len() >= target_calls).await;

    // Cancel, as the API does: the campaign and its scheduled attempts in one transaction.
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("UPDATE campaigns SET status = 'cancelled' WHERE id = $1")
        .bind(campaign.id)
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE dial_attempts SET status = 'canceled' WHERE campaign_id = $1 AND status = 'scheduled'",
    )
    .bind(campaign.id)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let at_cancel = claimed().await;
    let canceled: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM dial_attempts WHERE campaign_id = $1 AND status = 'canceled'",
    )
    .bind(campaign.id)
    .fetch_one(pool)
    .await
    .unwrap();
    let placed_before_cancel = at_cancel - canceled;
    wait(&fake, "the last calls to end", |s| {
        s.calls.len() as i64 == placed_before_cancel
            && hangups_delivered(s) as i64 == placed_before_cancel
    })
    .await;
    let pending: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM dial_attempts WHERE campaign_id = $1
         AND status IN ('scheduled', 'dialing', 'ringing', 'in_progress')",
    )
    .bind(campaign.id)
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(pending, 0, "nothing pending after a cancel");
    assert!(canceled > 0, "the cancel came before the end");
    assert_eq!(campaign_status(pool, campaign.id).await.0, "cancelled");
    gateway.shutdown().await;
    fake.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_nobody_hears_back_about_fails_after_its_limit_and_the_campaign_completes() {
    let test = TestDb::new().await;
    let pool = test.pool();
    // Ring 30 s + at most 600 s + the 300 s margin = 930 s without news.
    let campaign = seed_campaign(pool, 10, "max_attempts = 1").await;
    let placed_at = utc("2026-06-15T14:00:00Z");
    let leads = enroll(pool, &campaign, 5, 1, placed_at).await;
    sqlx::query(
        "UPDATE dial_attempts SET status = 'ringing', claimed_at = $2, placed_at = $2,
                claimed_by = 'a-gateway-that-died', request_uuid = 'lost'
         WHERE lead_id = $1",
    )
    .bind(leads[0].0)
    .bind(placed_at)
    .execute(pool)
    .await
    .unwrap();
    let fake = FakePlivoApi::start(false).await.unwrap();
    let clock = ManualClock::new(placed_at + TimeDelta::seconds(929));
    let dialer = manual_dialer(&test.db, &fake, 2, &clock);
    let lifecycle = Lifecycle::default();
    let pass = dialer.pass(&lifecycle).await.unwrap();
    assert_eq!(pass.recovered, 0, "still within its limit");
    assert_eq!(campaign_status(pool, campaign.id).await.0, "running");
    clock.set(placed_at + TimeDelta::seconds(931));
    let pass = dialer.pass(&lifecycle).await.unwrap();
    assert_eq!(pass.recovered, 1);
    assert_eq!(pass.completed_campaigns, vec![campaign.id]);
    let rows = attempts(pool, campaign.id).await;
    assert_eq!(rows.len(), 1, "max_attempts = 1: no retry");
    assert_eq!(rows[0].status, "failed");
    assert!(
        rows[0].error.as_deref().unwrap().contains("no callback"),
        "{:?}",
        rows[0].error
    );
    let (status, completed_at) = campaign_status(pool, campaign.id).await;
    assert_eq!(status, "completed");
    assert!(completed_at.is_some());
    assert!(fake.state().calls.is_empty());
    fake.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_gateway_claims_nothing() {
    let test = TestDb::new().await;
    let pool = test.pool();
    let campaign = seed_campaign(
        pool,
        10,
        "calling_window_start = '00:00', calling_window_end = '23:59:59.999999',
         calling_days = '{1,2,3,4,5,6,7}'",
    )
    .await;
    let now = Utc::now();
    enroll(pool, &campaign, 6, 1, now).await;
    let fake = FakePlivoApi::start(false).await.unwrap();
    let clock = ManualClock::new(now);
    let dialer = manual_dialer(&test.db, &fake, 2, &clock);
    let draining = Lifecycle::default();
    draining.start_draining();
    assert_eq!(dialer.pass(&draining).await.unwrap().placed, 0);
    assert_eq!(attempts(pool, campaign.id).await[0].status, "scheduled");
    assert_eq!(dialer.pass(&Lifecycle::default()).await.unwrap().placed, 1);
    wait(&fake, "the call", |s| s.calls.len() == 1).await;
    fake.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lead_enrolled_while_the_campaign_is_completing_keeps_it_running() {
    let test = TestDb::new().await;
    let pool = test.pool();
    let campaign = seed_campaign(pool, 10, "").await;
    let now = utc("2026-06-15T14:00:00Z");
    let first = enroll(pool, &campaign, 6, 1, now).await;
    sqlx::query("UPDATE dial_attempts SET status = 'completed', ended_at = $2 WHERE lead_id = $1")
        .bind(first[0].0)
        .bind(now)
        .execute(pool)
        .await
        .unwrap();
    // An enrollment in progress, as the API does it: the campaign share-locked, the lead and
    // its attempt 1 inserted, not yet committed.
    let mut enrolling = pool.begin().await.unwrap();
    sqlx::query("SELECT status FROM campaigns WHERE id = $1 FOR SHARE")
        .bind(campaign.id)
        .execute(&mut *enrolling)
        .await
        .unwrap();
    let lead: Uuid = sqlx::query_scalar(
        "INSERT INTO leads (organization_id, name, phone) VALUES ($1, 'Late', '+14156000099') RETURNING id",
    )
    .bind(campaign.org)
    .fetch_one(&mut *enrolling)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO dial_attempts (organization_id, campaign_id, lead_id, attempt_number, status, due_at)
         VALUES ($1, $2, $3, 1, 'scheduled', $4)",
    )
    .bind(campaign.org)
    .bind(campaign.id)
    .bind(lead)
    .bind(now)
    .execute(&mut *enrolling)
    .await
    .unwrap();
    // The completion check neither waits for the enrollment nor completes behind its back.
    let completed = tokio::time::timeout(WAIT, test.db.complete_finished_campaigns())
        .await
        .expect("the completion check must not wait behind an enrollment")
        .unwrap();
    assert!(completed.is_empty(), "skipped while being enrolled into");
    enrolling.commit().await.unwrap();
    let completed = test.db.complete_finished_campaigns().await.unwrap();
    assert!(completed.is_empty(), "the new lead is still to be dialed");
    assert_eq!(campaign_status(pool, campaign.id).await.0, "running");
    sqlx::query("UPDATE dial_attempts SET status = 'no_answer', ended_at = $2 WHERE lead_id = $1")
        .bind(lead)
        .bind(now)
        .execute(pool)
        .await
        .unwrap();
    let completed = test.db.complete_finished_campaigns().await.unwrap();
    assert_eq!(completed, vec![campaign.id]);
    assert_eq!(campaign_status(pool, campaign.id).await.0, "completed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_hangup_callback_never_re_dials_a_lead_the_call_reached() {
    use voice_gateway::{db::calls::CallStart, domain::Direction};
    let test = TestDb::new().await;
    let pool = test.pool();
    let campaign = seed_campaign(pool, 10, "max_attempts = 3").await;
    let placed_at = utc("2026-06-15T14:00:00Z");
    let leads = enroll(pool, &campaign, 6, 3, placed_at).await;
    // Lead 0 was answered (the answer callback linked the call), lead 1 too (but the answer
    // callback never reached its attempt), lead 2 never: every hangup callback was lost.
    for (lead, status, call_sid) in [
        (0, "in_progress", Some("CA-reached")),
        (1, "ringing", None),
        (2, "ringing", None),
    ] {
        sqlx::query(
            "UPDATE dial_attempts SET status = $2, claimed_at = $3, placed_at = $3,
                    answered_at = CASE WHEN $4::text IS NULL THEN NULL ELSE $3 END,
                    call_sid = $4, claimed_by = 'a-gateway', request_uuid = 'lost'
             WHERE lead_id = $1",
        )
        .bind(leads[lead].0)
        .bind(status)
        .bind(placed_at)
        .bind(call_sid)
        .execute(pool)
        .await
        .unwrap();
    }
    for (lead, call_sid) in [(0, "CA-reached"), (1, "CA-unlinked")] {
        test.db
            .open_call(&CallStart {
                call_sid: call_sid.to_owned(),
                campaign_id: campaign.id,
                lead_id: leads[lead].0,
                direction: Direction::Outbound,
                started_at: placed_at + TimeDelta::seconds(20),
                server_name: "a-gateway".to_owned(),
                metadata: serde_json::json!({}),
            })
            .await
            .unwrap();
    }
    let fake = FakePlivoApi::start(false).await.unwrap();
    let clock = ManualClock::new(placed_at + TimeDelta::seconds(931));
    let dialer = manual_dialer(&test.db, &fake, 2, &clock);
    let pass = dialer.pass(&Lifecycle::default()).await.unwrap();
    assert_eq!(pass.recovered, 3);

    let rows = attempts(pool, campaign.id).await;
    let of = |lead: usize| -> Vec<&Attempt> {
        rows.iter()
            .filter(|attempt| attempt.lead_id == leads[lead].0)
            .collect()
    };
    for (lead, call_sid) in [(0, "CA-reached"), (1, "CA-unlinked")] {
        let attempts = of(lead);
        assert_eq!(
            attempts.len(),
            1,
            "lead {lead} reached: never dialled again"
        );
        assert_eq!(attempts[0].status, "completed", "lead {lead}");
        assert_eq!(attempts[0].call_sid.as_deref(), Some(call_sid));
        assert!(
            attempts[0]
                .hangup_cause
                .as_deref()
                .unwrap()
                .contains("call log says called"),
            "{:?}",
            attempts[0].hangup_cause
        );
    }
    let unreached = of(2);
    assert_eq!(
        unreached
            .iter()
            .map(|attempt| attempt.status.as_str())
            .collect::<Vec<_>>(),
        ["failed", "scheduled"],
        "no record of the call: failed, and retried"
    );
    assert!(fake.state().calls.is_empty());
    fake.stop().await;
}
