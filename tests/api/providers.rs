//! Each campaign chooses its provider: `campaigns.ai_provider` wins over `VG_AI_PROVIDER`, a
//! provider the gateway cannot run is refused when the campaign names it (422), and a call is
//! never moved to another provider than its campaign's.

use reqwest::Method;
use serde_json::json;
use voice_gateway::simulators::{openai_realtime::FakeRealtimeConfig, plivo_caller::Step};

use crate::{
    call::{Fixture, call_row},
    campaign_api::Api,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_naming_a_provider_this_gateway_cannot_run_is_refused_with_422() {
    // The test gateway runs OpenAI only.
    let api = Api::start().await;
    for (provider, why) in [
        ("gemini", "not configured"),
        ("local", "not configured"),
        ("watson", "local, openai or gemini"),
    ] {
        let (status, body) = api
            .post("/campaigns", json!({"name": "x", "ai_provider": provider}))
            .await;
        assert_eq!(
            (status, body["error"]["field"].as_str()),
            (422, Some("ai_provider")),
            "{provider}: {body}"
        );
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(why), "{provider}: {message}");
    }
    let (status, body) = api
        .post("/campaigns", json!({"name": "x", "ai_provider": "openai"}))
        .await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    let (status, body) = api
        .send(
            Method::PATCH,
            &format!("/campaigns/{id}"),
            Some(&api.token),
            Some(json!({"ai_provider": "gemini"})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("ai_provider")),
        "{body}"
    );
    let ready = api.http.get(api.app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.text().await.unwrap(), "ready; providers: openai");
    let metrics = api
        .http
        .get(api.app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("vg_ai_provider_configured{provider=\"openai\"} 1")
            && metrics.contains("vg_ai_provider_configured{provider=\"gemini\"} 0"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_campaigns_provider_wins_over_the_gateways_default() {
    // The gateway's default is the local pipeline; the campaign runs on OpenAI (the fake).
    let fixture = Fixture::start(
        FakeRealtimeConfig::default(),
        1,
        &[("VG_AI_PROVIDER", "local")],
    )
    .await;
    sqlx::query("UPDATE campaigns SET ai_provider = 'openai' WHERE id = $1")
        .bind(fixture.org.campaign_id)
        .execute(fixture.test.pool())
        .await
        .unwrap();
    let report = fixture
        .call(
            0,
            "CA-openai",
            &[
                Step::WaitForAgentAudio,
                Step::WaitForAgentSilence(std::time::Duration::from_millis(300)),
                Step::HangUp,
            ],
        )
        .await;
    assert!(report.frames.len() > 20, "the greeting was heard");
    assert_eq!(
        fixture.fake.log(|log| log.connections),
        1,
        "the call ran on the campaign's provider"
    );
    let (test, _, _) = fixture.finish().await;
    let row = call_row(&test, "CA-openai").await;
    assert_eq!(row.end_reason.as_deref(), Some("caller_hangup"));
    assert!(
        row.transcript
            .unwrap_or_default()
            .contains("Hello, this is Maya"),
        "the fake's greeting, not the local pipeline's"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_campaign_names_a_provider_not_configured_here_is_never_moved_to_another() {
    let fixture = Fixture::start(FakeRealtimeConfig::default(), 1, &[]).await;
    // As a campaign made through another gateway, configured otherwise, would be.
    sqlx::query("UPDATE campaigns SET ai_provider = 'local' WHERE id = $1")
        .bind(fixture.org.campaign_id)
        .execute(fixture.test.pool())
        .await
        .unwrap();
    let report = fixture.call(0, "CA-local", &[Step::WaitForClose]).await;
    assert!(report.closed_by_gateway);
    assert!(report.frames.len() >= 290, "the apology played");
    assert_eq!(
        fixture.fake.log(|log| log.connections),
        0,
        "the gateway's default provider was not used instead"
    );
    let (test, _, _) = fixture.finish().await;
    let row = call_row(&test, "CA-local").await;
    assert_eq!(row.end_reason.as_deref(), Some("provider_error"));
}
