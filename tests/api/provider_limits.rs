//! "Per-call memory is bounded whatever the provider sends": a provider message over the limit
//! and a provider that keeps expiring its sessions each end that call as `provider_error`,
//! after the apology, and the gateway goes on serving.

use voice_gateway::{
    ai::openai_realtime::MAX_RECONNECTS,
    simulators::{
        openai_realtime::{FakeMode, FakeRealtimeConfig},
        plivo_caller::Step,
    },
};

use crate::{call::Fixture, helpers::TestDb};

/// The texts of the call's `provider_error` events.
async fn provider_errors(test: &TestDb, call_sid: &str) -> Vec<String> {
    sqlx::query_scalar(
        r#"SELECT e.text FROM call_events e JOIN call_logs c ON c.id = e.call_log_id
           WHERE c.call_sid = $1 AND e.kind = 'provider_error' ORDER BY e.seq"#,
    )
    .bind(call_sid)
    .fetch_all(test.pool())
    .await
    .unwrap()
}

/// A call that hears the greeting, then waits for the gateway to end it.
async fn call_until_the_gateway_ends_it(fixture: &Fixture, call_sid: &str) {
    let report = fixture
        .call(0, call_sid, &[Step::WaitForAgentAudio, Step::WaitForClose])
        .await;
    assert!(report.closed_by_gateway, "the gateway ended the call");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_message_over_the_limit_ends_that_call_as_provider_error() {
    let fake = FakeRealtimeConfig {
        mode: FakeMode::OversizedEvent,
        greeting_ms: 400,
        ..FakeRealtimeConfig::default()
    };
    let fixture = Fixture::start(fake, 1, &[]).await;
    call_until_the_gateway_ends_it(&fixture, "CA-oversized").await;
    // The gateway itself is unharmed.
    let health = fixture
        .http
        .get(fixture.app.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    let (test, _, _) = fixture.finish().await;
    let row = test.db.call_log("CA-oversized").await.unwrap().unwrap();
    assert_eq!(row.end_reason.as_deref(), Some("provider_error"));
    let errors = provider_errors(&test, "CA-oversized").await;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("too long"), "the size limit: {errors:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_keeps_expiring_sessions_is_reopened_at_most_the_cap_then_ends_the_call() {
    let fake = FakeRealtimeConfig {
        mode: FakeMode::ExpireEverySession,
        greeting_ms: 400,
        ..FakeRealtimeConfig::default()
    };
    let fixture = Fixture::start(fake, 1, &[]).await;
    call_until_the_gateway_ends_it(&fixture, "CA-expiring").await;
    let (test, _, fake) = fixture.finish().await;
    assert_eq!(
        fake.log(|log| log.connections),
        1 + MAX_RECONNECTS as usize,
        "the first session and {MAX_RECONNECTS} reopens, no more"
    );
    let row = test.db.call_log("CA-expiring").await.unwrap().unwrap();
    assert_eq!(row.end_reason.as_deref(), Some("provider_error"));
    let errors = provider_errors(&test, "CA-expiring").await;
    assert!(
        errors.len() == 1 && errors[0].contains("expired again"),
        "{errors:?}"
    );
}
