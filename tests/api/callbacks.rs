//! Callbacks a caller asks for: resolved in the lead's timezone and the campaign's window,
//! stored with the call's close, placed by the dialer at that instant and not before, and the
//! callback call's agent told why it is calling.

use std::time::Duration;

use chrono::{Datelike, SubsecRound, TimeDelta, TimeZone, Utc};
use chrono_tz::America::New_York;
use serde_json::{Value, json};
use uuid::Uuid;
use voice_gateway::{
    dialer::ManualClock,
    lifecycle::Lifecycle,
    simulators::{
        openai_realtime::{FakeRealtimeServer, FakeTurn},
        plivo_api::FakePlivoApi,
        plivo_caller::Step,
    },
};

use crate::{
    call::{Fixture, conversation, turn},
    dialer::{manual_dialer, wait},
    helpers::{TestApp, settings_for},
};

/// The outputs the gateway gave for the agent's tool calls, in order.
fn tool_outputs(fake: &FakeRealtimeServer) -> Vec<Value> {
    fake.events_of("conversation.item.create")
        .into_iter()
        .filter(|event| event["item"]["type"] == "function_call_output")
        .map(|event| serde_json::from_str(event["item"]["output"].as_str().unwrap()).unwrap())
        .collect()
}

#[derive(Debug, sqlx::FromRow)]
struct CallbackAttempt {
    id: Uuid,
    status: String,
    due_at: chrono::DateTime<Utc>,
    is_callback: bool,
    callback_phrase: Option<String>,
    callback_call_sid: Option<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_asked_for_in_a_call_is_placed_at_its_time_and_the_agent_knows_why() {
    let callback = |when: &str| Some(("schedule_callback", json!({ "when": when })));
    let fake = conversation(vec![
        turn(
            "Call me whenever",
            "Sure, when?",
            callback("whenever suits you"),
        ),
        turn(
            "Tomorrow at 11",
            "Let me note that.",
            callback("tomorrow at 11"),
        ),
    ]);
    let fixture = Fixture::start(fake, 1, &[]).await;
    let pool = fixture.test.pool().clone();
    sqlx::query(
        "UPDATE campaigns SET timezone = 'America/New_York', calling_window_start = '09:00',
                calling_window_end = '20:00', calling_days = '{1,2,3,4,5,6,7}' WHERE id = $1",
    )
    .bind(fixture.org.campaign_id)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("UPDATE organizations SET caller_id = '+14155550100' WHERE id = $1")
        .bind(fixture.org.id)
        .execute(&pool)
        .await
        .unwrap();
    let asked_at = Utc::now();
    let script = [
        Step::WaitForAgentAudio,
        Step::WaitForAgentSilence(Duration::from_millis(300)),
        Step::Speak(Duration::from_millis(500)),
        Step::WaitForAgentAudio, // "Sure, when?"
        Step::WaitForAgentAudio, // the agent asks again for a time it can read
        Step::WaitForAgentSilence(Duration::from_millis(400)),
        Step::Speak(Duration::from_millis(500)),
        Step::WaitForAgentAudio,
        Step::WaitForAgentSilence(Duration::from_millis(400)),
        Step::HangUp,
    ];
    fixture.call(0, "CA-callback-1", &script).await;

    // The unreadable time was refused with "ask again"; the readable one came back in words.
    let outputs = tool_outputs(&fixture.fake);
    assert_eq!(outputs.len(), 2, "{outputs:?}");
    assert_eq!(outputs[0]["ok"], false);
    assert_eq!(outputs[0]["ask_again"], true);
    assert_eq!(outputs[1]["ok"], true, "{}", outputs[1]);
    assert_eq!(outputs[1]["say"], "tomorrow at 11 am, your time");
    let (test, org, _fake) = fixture.finish().await;

    // Tomorrow at 11:00 in New York, stored with the close: one attempt, not two.
    let tomorrow = asked_at.with_timezone(&New_York).date_naive() + TimeDelta::days(1);
    let due = New_York
        .with_ymd_and_hms(tomorrow.year(), tomorrow.month(), tomorrow.day(), 11, 0, 0)
        .single()
        .unwrap()
        .with_timezone(&Utc);
    let rows: Vec<CallbackAttempt> = sqlx::query_as(
        "SELECT id, status, due_at, is_callback, callback_phrase, callback_call_sid
         FROM dial_attempts WHERE lead_id = $1",
    )
    .bind(org.lead_ids[0])
    .fetch_all(test.pool())
    .await
    .unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    let attempt = &rows[0];
    assert!(attempt.is_callback);
    assert_eq!(attempt.status, "scheduled");
    assert_eq!(attempt.due_at, due);
    assert_eq!(attempt.callback_phrase.as_deref(), Some("tomorrow at 11"));
    assert_eq!(attempt.callback_call_sid.as_deref(), Some("CA-callback-1"));
    let stats = test
        .db
        .campaign_stats(org.id, org.campaign_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stats.callbacks_pending, 1);

    // The dialer places it at 11:00 local time, and not a second before.
    let plivo = FakePlivoApi::start(false).await.unwrap();
    let clock = ManualClock::new(due - TimeDelta::seconds(1));
    let dialer = manual_dialer(&test.db, &plivo, 10, &clock);
    let lifecycle = Lifecycle::default();
    let pass = dialer.pass(&lifecycle).await.unwrap();
    assert_eq!(pass.placed, 0, "a second early: {pass:?}");
    clock.set(due);
    let pass = dialer.pass(&lifecycle).await.unwrap();
    assert_eq!(pass.placed, 1, "{pass:?}");
    let state = wait(&plivo, "the callback call", |s| s.calls.len() == 1).await;
    assert_eq!(state.calls[0].to, "+14155550000");
    assert!(
        state.calls[0].body["answer_url"]
            .as_str()
            .unwrap()
            .contains(&attempt.id.to_string())
    );

    // The callback call: the agent is told it is one, when it was asked for and in what words.
    let second = FakeRealtimeServer::start(conversation(Vec::<FakeTurn>::new()))
        .await
        .unwrap();
    let url = second.url();
    let app = TestApp::spawn(settings_for(
        &test.url,
        "gw-callback-2",
        &[
            ("VG_AI_PROVIDER", "openai"),
            ("OPENAI_API_KEY", "sk-test"),
            ("OPENAI_REALTIME_URL", url.as_str()),
            ("PLIVO_AUTH_ID", "MATEST"),
            ("PLIVO_AUTH_TOKEN", crate::call::AUTH_TOKEN),
        ],
    ))
    .await;
    let caller = voice_gateway::simulators::plivo_caller::CallerConfig {
        gateway: format!("http://{}", app.address),
        public_url: "https://gateway.test".to_owned(),
        auth_token: crate::call::AUTH_TOKEN.to_owned(),
        call_sid: "CA-callback-2".to_owned(),
        answer_query: format!(
            "lead_id={}&campaign_id={}",
            org.lead_ids[0], org.campaign_id
        ),
        from: "14155550100".to_owned(),
        to: "14155550000".to_owned(),
        keep_agent_audio: false,
    };
    let http = reqwest::Client::new();
    voice_gateway::simulators::plivo_caller::place_call(
        &caller,
        &http,
        &[Step::WaitForAgentAudio, Step::HangUp],
    )
    .await
    .unwrap();
    let updates = second.events_of("session.update");
    let instructions = updates[0]["session"]["instructions"].as_str().unwrap();
    assert!(
        instructions.contains("This call is a callback that Lead 0 of Acme Homes asked for")
            && instructions.contains("(\"tomorrow at 11\")"),
        "{instructions}"
    );
    app.shutdown().await;
    plivo.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_callbacks_are_listed_moved_and_cancelled_within_the_organization() {
    use crate::campaign_api::{Api, code};
    let api = Api::start().await;
    let pool = api.test.pool().clone();
    let insert = |lead: Uuid, number: i32, due: chrono::DateTime<Utc>, callback: bool| {
        let pool = pool.clone();
        let (org, campaign) = (api.org.id, api.org.campaign_id);
        async move {
            sqlx::query_scalar::<_, Uuid>(
                "INSERT INTO dial_attempts (organization_id, campaign_id, lead_id, attempt_number,
                                            due_at, is_callback, callback_call_sid,
                                            callback_requested_at, callback_phrase)
                 VALUES ($1, $2, $3, $4, $5, $6, CASE WHEN $6 THEN 'CA-asked' END,
                         CASE WHEN $6 THEN now() END, CASE WHEN $6 THEN 'friday at 5' END)
                 RETURNING id",
            )
            .bind(org)
            .bind(campaign)
            .bind(lead)
            .bind(number)
            .bind(due)
            .bind(callback)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    let soon = Utc::now() + TimeDelta::hours(2);
    let later = Utc::now() + TimeDelta::days(2);
    let second = insert(api.org.lead_ids[1], 1, later, true).await;
    let first = insert(api.org.lead_ids[0], 1, soon, true).await;
    insert(api.org.lead_ids[0], 2, soon, false).await; // a retry, not a callback
    let campaign = api.org.campaign_id;

    let (status, body) = api.get(&format!("/campaigns/{campaign}/callbacks")).await;
    assert_eq!(status, 200, "{body}");
    let ids: Vec<&str> = body["callbacks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|callback| callback["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [first.to_string(), second.to_string()],
        "soonest first"
    );
    assert_eq!(body["callbacks"][0]["phrase"], "friday at 5");
    assert_eq!(body["callbacks"][0]["requested_in_call"], "CA-asked");
    let (_, detail) = api.get(&format!("/campaigns/{campaign}")).await;
    assert_eq!(detail["stats"]["callbacks_pending"], 2);

    // Moving one: to the future only.
    let path = format!("/campaigns/{campaign}/callbacks/{second}");
    let (status, body) = api
        .patch(
            &path,
            json!({"due_at": (Utc::now() - TimeDelta::hours(1)).to_rfc3339()}),
        )
        .await;
    assert_eq!((status, code(&body)), (422, "invalid_field"), "{body}");
    assert_eq!(body["error"]["field"], "due_at");
    let moved = (Utc::now() + TimeDelta::days(3)).trunc_subsecs(0);
    let (status, body) = api
        .patch(&path, json!({"due_at": moved.to_rfc3339()}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["due_at"]
            .as_str()
            .unwrap()
            .parse::<chrono::DateTime<Utc>>()
            .unwrap(),
        moved
    );

    // Cancelling one: once; a second time is a conflict.
    let cancel = format!("/campaigns/{campaign}/callbacks/{first}/cancel");
    let (status, body) = api.post(&cancel, json!({})).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("canceled")),
        "{body}"
    );
    let (status, body) = api.post(&cancel, json!({})).await;
    assert_eq!(
        (status, code(&body)),
        (409, "callback_not_pending"),
        "{body}"
    );
    let (_, detail) = api.get(&format!("/campaigns/{campaign}")).await;
    assert_eq!(detail["stats"]["callbacks_pending"], 1);

    // Another organization sees none of it.
    let (status, _) = api
        .send(
            reqwest::Method::POST,
            &format!("/campaigns/{campaign}/callbacks/{second}/cancel"),
            Some(&api.other_token),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = api
        .send(
            reqwest::Method::GET,
            &format!("/campaigns/{campaign}/callbacks"),
            Some(&api.other_token),
            None,
        )
        .await;
    assert_eq!(status, 404);
    api.finish().await;
}
