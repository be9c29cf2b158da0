//! "The stream token is spent only after the call is admitted": a full gateway refuses the
//! media WebSocket with 503 and leaves the token good; a database that cannot record the token
//! does not keep the call out, and the gateway that accepted it still refuses its replay.

use std::time::Duration;

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;
use voice_gateway::{
    audio::AudioFormat,
    simulators::{
        openai_realtime::FakeRealtimeConfig,
        plivo_caller::{self, CallReport, CallerError, Step},
    },
};

use crate::{call::Fixture, campaign_api::wait_until, helpers::TestDb};

/// The stream URL the answer webhook gives `call_sid`.
async fn stream_url(fixture: &Fixture, lead: usize, call_sid: &str) -> String {
    let (status, xml, _) = plivo_caller::answer(&fixture.caller(lead, call_sid), &fixture.http)
        .await
        .unwrap();
    assert_eq!(status, 200, "{xml}");
    plivo_caller::stream_url_of(&xml).expect("a <Stream> answer")
}

/// How many claims of stream tokens the database holds for `call_sid`.
async fn token_claims(test: &TestDb, call_sid: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM stream_token_uses WHERE call_sid = $1")
        .bind(call_sid)
        .fetch_one(test.pool())
        .await
        .unwrap()
}

/// A short call on `stream_url`: the agent's greeting is heard, then the caller hangs up.
async fn short_call(
    fixture: &Fixture,
    lead: usize,
    call_sid: &str,
    stream_url: &str,
) -> CallReport {
    let report = tokio::time::timeout(
        Duration::from_secs(60),
        plivo_caller::run_stream(
            &fixture.caller(lead, call_sid),
            stream_url,
            &[Step::WaitForAgentAudio, Step::HangUp],
            AudioFormat::MULAW_8K,
            CallReport::default(),
        ),
    )
    .await
    .expect("the call in time")
    .expect("the stream accepted");
    assert!(!report.frames.is_empty(), "the agent was heard");
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_gateway_refuses_the_stream_with_503_and_the_same_token_works_once_a_place_frees() {
    let fixture = Fixture::start(FakeRealtimeConfig::default(), 2, &[("VG_MAX_CALLS", "1")]).await;
    let registry = fixture.app.state.runtime.registry.clone();

    // The first call takes the only place and holds it.
    let first_url = stream_url(&fixture, 0, "CA-first").await;
    let mut first = plivo_caller::connect_stream(&fixture.caller(0, "CA-first"), &first_url)
        .await
        .unwrap();
    let mut start = String::new();
    voice_gateway::plivo::stream::write_start(
        &mut start,
        1,
        "CA-first",
        "stream-first",
        AudioFormat::MULAW_8K,
    );
    first.send(Message::text(start)).await.unwrap();
    assert_eq!(registry.len(), 1, "admitted before the upgrade");
    // While it is live, its own token again is a replay (403); another token for the same
    // call is a duplicate (409), left unspent.
    let replay = plivo_caller::connect_stream(&fixture.caller(0, "CA-first"), &first_url).await;
    assert!(
        matches!(replay, Err(CallerError::Refused(403))),
        "{replay:?}"
    );
    let again_url = stream_url(&fixture, 0, "CA-first").await;
    let again = plivo_caller::connect_stream(&fixture.caller(0, "CA-first"), &again_url).await;
    assert!(matches!(again, Err(CallerError::Refused(409))), "{again:?}");
    assert_eq!(token_claims(&fixture.test, "CA-first").await, 1);

    let second_url = stream_url(&fixture, 1, "CA-second").await;
    let refused = plivo_caller::connect_stream(&fixture.caller(1, "CA-second"), &second_url).await;
    assert!(
        matches!(refused, Err(CallerError::Refused(503))),
        "{refused:?}"
    );
    assert_eq!(
        token_claims(&fixture.test, "CA-second").await,
        0,
        "token not spent"
    );
    assert_eq!(
        fixture.test.db.call_log("CA-second").await.unwrap(),
        None,
        "nothing written"
    );
    assert_eq!(registry.len(), 1, "the refusal took no place");

    // The first call ends; its place frees and the very same token is accepted.
    let _ = first.close(None).await;
    drop(first);
    wait_until(
        "the first call's place freed",
        Duration::from_secs(30),
        || {
            let registry = registry.clone();
            async move { registry.is_empty() }
        },
    )
    .await;
    short_call(&fixture, 1, "CA-second", &second_url).await;
    assert_eq!(
        token_claims(&fixture.test, "CA-second").await,
        1,
        "spent now"
    );
    // Spent: a replay is refused.
    let replay = plivo_caller::connect_stream(&fixture.caller(1, "CA-second"), &second_url).await;
    assert!(
        matches!(replay, Err(CallerError::Refused(403))),
        "{replay:?}"
    );

    let (test, _, _) = fixture.finish().await;
    let row = test.db.call_log("CA-second").await.unwrap().unwrap();
    assert!(
        row.ended_at.is_some(),
        "the admitted call was served and closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_a_database_outage_a_stream_token_is_accepted_once_and_its_replay_refused() {
    let fixture = Fixture::start(FakeRealtimeConfig::default(), 1, &[]).await;
    let url = stream_url(&fixture, 0, "CA-outage").await;

    // The gateway's pool fails every statement from now on (a transient failure), the
    // webhook gate's nonce claim and the token's claim included.
    drop(fixture.app.state.db.pool().close());
    assert!(fixture.app.state.db.ping().await.is_err());

    short_call(&fixture, 0, "CA-outage", &url).await;
    let replay = plivo_caller::connect_stream(&fixture.caller(0, "CA-outage"), &url).await;
    assert!(
        matches!(replay, Err(CallerError::Refused(403))),
        "a replay to the gateway that accepted the token: {replay:?}"
    );
    assert_eq!(
        fixture.app.state.unrecorded_tokens.lock().unwrap().len(),
        1,
        "remembered in the process, until it expires"
    );
    assert_eq!(
        token_claims(&fixture.test, "CA-outage").await,
        0,
        "the database never saw it"
    );
    // No graceful stop: the call's writes would wait out their retries against the closed
    // pool. The test's runtime ends the gateway's tasks.
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_the_database_refuses_for_good_is_503_and_frees_the_place() {
    let fixture = Fixture::start(FakeRealtimeConfig::default(), 1, &[]).await;
    let url = stream_url(&fixture, 0, "CA-refused").await;
    // Not a transient failure: the claim fails the same way every time.
    sqlx::raw_sql(
        r#"CREATE FUNCTION refuse_claims() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN RAISE EXCEPTION 'claims refused on purpose'; END $$;
           CREATE TRIGGER stream_token_uses_refused BEFORE INSERT ON stream_token_uses
               FOR EACH ROW EXECUTE FUNCTION refuse_claims();"#,
    )
    .execute(fixture.test.pool())
    .await
    .unwrap();

    let refused = plivo_caller::connect_stream(&fixture.caller(0, "CA-refused"), &url).await;
    assert!(
        matches!(refused, Err(CallerError::Refused(503))),
        "{refused:?}"
    );
    assert!(
        fixture.app.state.runtime.registry.is_empty(),
        "the place is freed"
    );
    assert!(
        fixture
            .app
            .state
            .unrecorded_tokens
            .lock()
            .unwrap()
            .is_empty(),
        "only a transient failure is let through"
    );

    sqlx::raw_sql("DROP TRIGGER stream_token_uses_refused ON stream_token_uses")
        .execute(fixture.test.pool())
        .await
        .unwrap();
    short_call(&fixture, 0, "CA-refused", &url).await;
    assert_eq!(token_claims(&fixture.test, "CA-refused").await, 1);
    fixture.finish().await;
}
