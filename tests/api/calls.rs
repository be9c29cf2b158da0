//! The call lifecycle's data layer: idempotent by call_sid, counters changed exactly once, even
//! when the same write arrives twice or from two tasks at once.

use chrono::{Duration, Utc};
use serde_json::json;
use uuid::Uuid;
use voice_gateway::{
    db::{
        Database, DbError,
        calls::{Applied, CallEnd, CallEvent, CallStart, TransferRecord, UnreachedCall},
    },
    domain::{CallOutcome, Direction, EndReason, EventKind},
};

use crate::helpers::{Org, TestDb, seed_org};

fn start(org: &Org, lead: usize, call_sid: &str) -> CallStart {
    CallStart {
        call_sid: call_sid.to_owned(),
        campaign_id: org.campaign_id,
        lead_id: org.lead_ids[lead],
        direction: Direction::Outbound,
        started_at: Utc::now() - Duration::seconds(95),
        server_name: "gw-test".to_owned(),
        metadata: json!({"stream_id": "s-1"}),
    }
}

fn end(reason: EndReason) -> CallEnd {
    CallEnd {
        ended_at: Utc::now(),
        end_reason: reason,
        outcome: CallOutcome::Called,
        duration_secs: None,
        summary: Some("The caller wants a two-bedroom flat.".to_owned()),
        recording_url: None,
        metadata: json!({"latency": {"first_audio_ms": 420}}),
        callback: None,
        lead_facts: Default::default(),
        analysis: None,
    }
}

fn transfer() -> TransferRecord {
    TransferRecord {
        at: Utc::now(),
        reason: "caller asked for a person".to_owned(),
        department: Some("sales".to_owned()),
    }
}

fn speech(seq: i32, kind: EventKind, text: &str) -> CallEvent {
    CallEvent {
        seq,
        kind,
        occurred_at: Utc::now(),
        ended_at: None,
        text: Some(text.to_owned()),
        data: json!({}),
    }
}

async fn counters(db: &Database, campaign: Uuid) -> (i32, i32, String) {
    sqlx::query_as(
        "SELECT total_calls, transferred_calls, conversion_rate::text FROM campaigns WHERE id = $1",
    )
    .bind(campaign)
    .fetch_one(db.pool())
    .await
    .unwrap()
}

async fn lead_state(db: &Database, lead: Uuid) -> (String, String, bool, Option<Uuid>) {
    sqlx::query_as(
        "SELECT status, call_status, transferred_to_human, call_log_id FROM leads WHERE id = $1",
    )
    .bind(lead)
    .fetch_one(db.pool())
    .await
    .unwrap()
}

#[tokio::test]
async fn a_whole_call_writes_its_rows_once() {
    let test = TestDb::new().await;
    let db = &test.db;
    let org = seed_org(db.pool(), "Acme", 1).await;

    let (call_log_id, applied) = db.open_call(&start(&org, 0, "CA-1")).await.unwrap();
    assert_eq!(applied, Applied::Now);
    let (again_id, again) = db.open_call(&start(&org, 0, "CA-1")).await.unwrap();
    assert_eq!((again_id, again), (call_log_id, Applied::Already));
    assert_eq!(counters(db, org.campaign_id).await, (1, 0, "0.00".into()));
    let (status, call_status, _, lead_call_log) = lead_state(db, org.lead_ids[0]).await;
    assert_eq!(
        (status.as_str(), call_status.as_str()),
        ("new", "not_called")
    );
    assert_eq!(lead_call_log, Some(call_log_id));

    db.append_call_event(
        "CA-1",
        &speech(
            0,
            EventKind::AgentSpeech,
            "Hello, this is Maya from Lakeside.",
        ),
    )
    .await
    .unwrap();
    db.append_call_event(
        "CA-1",
        &speech(1, EventKind::CallerSpeech, "Hi, tell me more."),
    )
    .await
    .unwrap();
    db.append_call_event("CA-1", &speech(2, EventKind::Dtmf, "5"))
        .await
        .unwrap();
    // A retried append is a no-op.
    let retried = db
        .append_call_event(
            "CA-1",
            &speech(1, EventKind::CallerSpeech, "Hi, tell me more."),
        )
        .await
        .unwrap();
    assert_eq!(retried, Applied::Already);

    assert_eq!(
        db.close_call("CA-1", &end(EndReason::AgentEnded))
            .await
            .unwrap(),
        Applied::Now
    );
    assert_eq!(
        db.close_call("CA-1", &end(EndReason::CallerHangup))
            .await
            .unwrap(),
        Applied::Already
    );

    let row = db.call_log("CA-1").await.unwrap().unwrap();
    assert_eq!(
        row.end_reason.as_deref(),
        Some("agent_ended"),
        "the first end reason stands"
    );
    assert_eq!(row.call_status, "called");
    assert_eq!(
        row.transcript.as_deref(),
        Some("Agent: Hello, this is Maya from Lakeside.\nCaller: Hi, tell me more.")
    );
    assert_eq!(
        row.conversation_summary.as_deref(),
        Some("The caller wants a two-bedroom flat.")
    );
    assert!(
        (94..=97).contains(&row.duration),
        "duration {} from the start time",
        row.duration
    );
    let metadata = row.metadata.unwrap();
    assert_eq!(
        metadata["stream_id"], "s-1",
        "metadata from the open is kept"
    );
    assert_eq!(
        metadata["latency"]["first_audio_ms"], 420,
        "metadata from the close is merged"
    );

    let (status, call_status, transferred, _) = lead_state(db, org.lead_ids[0]).await;
    assert_eq!(
        (status.as_str(), call_status.as_str(), transferred),
        ("contacted", "called", false)
    );
    assert_eq!(counters(db, org.campaign_id).await, (1, 0, "0.00".into()));

    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM call_events WHERE call_log_id = $1")
        .bind(call_log_id)
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(events, 3);
}

#[tokio::test]
async fn a_transferred_call_counts_once_whatever_the_order() {
    let test = TestDb::new().await;
    let db = &test.db;
    let org = seed_org(db.pool(), "Acme", 2).await;

    // Transfer, then close, each twice.
    db.open_call(&start(&org, 0, "CA-T1")).await.unwrap();
    assert_eq!(
        db.record_transfer("CA-T1", &transfer()).await.unwrap(),
        Applied::Now
    );
    assert_eq!(
        db.record_transfer("CA-T1", &transfer()).await.unwrap(),
        Applied::Already
    );
    db.close_call("CA-T1", &end(EndReason::Transferred))
        .await
        .unwrap();
    db.close_call("CA-T1", &end(EndReason::Transferred))
        .await
        .unwrap();

    // Close first (the stream ends before the human answers), then the transfer, twice.
    db.open_call(&start(&org, 1, "CA-T2")).await.unwrap();
    db.close_call("CA-T2", &end(EndReason::Transferred))
        .await
        .unwrap();
    assert_eq!(lead_state(db, org.lead_ids[1]).await.1, "called");
    db.record_transfer("CA-T2", &transfer()).await.unwrap();
    db.record_transfer("CA-T2", &transfer()).await.unwrap();

    assert_eq!(counters(db, org.campaign_id).await, (2, 2, "100.00".into()));
    for (call_sid, lead) in [("CA-T1", 0), ("CA-T2", 1)] {
        let row = db.call_log(call_sid).await.unwrap().unwrap();
        assert!(row.transferred);
        assert_eq!(row.call_status, "transferred", "{call_sid}");
        assert_eq!(row.transfer_department.as_deref(), Some("sales"));
        assert_eq!(
            row.transfer_reason.as_deref(),
            Some("caller asked for a person")
        );
        let (status, call_status, transferred, _) = lead_state(db, org.lead_ids[lead]).await;
        assert_eq!(
            (status.as_str(), call_status.as_str(), transferred),
            ("qualified", "transferred", true),
            "{call_sid}: a human took the call"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_duplicates_change_the_counters_exactly_once() {
    let test = TestDb::new().await;
    let db = test.db.clone();
    let org = seed_org(db.pool(), "Acme", 5).await;

    for lead in 0..5 {
        let call_sid = format!("CA-C{lead}");
        let call = start(&org, lead, &call_sid);
        let racers = |n: usize| {
            (0..n)
                .map(|_| {
                    let db = db.clone();
                    let call = call.clone();
                    tokio::spawn(async move { db.open_call(&call).await.unwrap().1 })
                })
                .collect::<Vec<_>>()
        };
        let mut opened = Vec::new();
        for handle in racers(4) {
            opened.push(handle.await.unwrap());
        }
        assert_eq!(
            opened
                .iter()
                .filter(|applied| **applied == Applied::Now)
                .count(),
            1,
            "{opened:?}"
        );

        let mut tasks = Vec::new();
        for index in 0..6 {
            let db = db.clone();
            let call_sid = call_sid.clone();
            tasks.push(tokio::spawn(async move {
                if index % 2 == 0 {
                    (
                        "transfer",
                        db.record_transfer(&call_sid, &transfer()).await.unwrap(),
                    )
                } else {
                    (
                        "close",
                        db.close_call(&call_sid, &end(EndReason::Transferred))
                            .await
                            .unwrap(),
                    )
                }
            }));
        }
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await.unwrap());
        }
        for kind in ["transfer", "close"] {
            let applied_now = results
                .iter()
                .filter(|(k, a)| *k == kind && *a == Applied::Now)
                .count();
            assert_eq!(
                applied_now, 1,
                "{kind} applied {applied_now} times: {results:?}"
            );
        }
    }
    assert_eq!(
        counters(&db, org.campaign_id).await,
        (5, 5, "100.00".into())
    );
    let transferred_leads: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM leads WHERE organization_id = $1 AND transferred_to_human AND call_status = 'transferred'",
    )
    .bind(org.id)
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(transferred_leads, 5);
}

#[tokio::test]
async fn unreached_calls_are_recorded_once_from_callbacks() {
    let test = TestDb::new().await;
    let db = &test.db;
    let org = seed_org(db.pool(), "Acme", 3).await;
    let unreached = |lead: usize, call_sid: &str, reason: EndReason| UnreachedCall {
        call_sid: call_sid.to_owned(),
        campaign_id: org.campaign_id,
        lead_id: org.lead_ids[lead],
        direction: Direction::Outbound,
        at: Utc::now(),
        end_reason: reason,
        answered: false,
        duration_secs: 0,
        metadata: json!({"hangup_cause": "NO_ANSWER"}),
    };

    assert_eq!(
        db.record_unreached_call(&unreached(0, "CA-N", EndReason::NoAnswer))
            .await
            .unwrap()
            .1,
        Applied::Now
    );
    assert_eq!(
        db.record_unreached_call(&unreached(0, "CA-N", EndReason::NoAnswer))
            .await
            .unwrap()
            .1,
        Applied::Already
    );
    db.record_unreached_call(&unreached(1, "CA-B", EndReason::Busy))
        .await
        .unwrap();
    db.record_unreached_call(&unreached(2, "CA-V", EndReason::Voicemail))
        .await
        .unwrap();

    let row = db.call_log("CA-N").await.unwrap().unwrap();
    assert_eq!(
        (
            row.call_status.as_str(),
            row.end_reason.as_deref(),
            row.duration
        ),
        ("no_answer", Some("no_answer"), 0)
    );
    assert_eq!(
        db.call_log("CA-B").await.unwrap().unwrap().call_status,
        "no_answer"
    );
    assert_eq!(
        db.call_log("CA-V").await.unwrap().unwrap().call_status,
        "voicemail"
    );
    for (lead, expected) in [(0, "no_answer"), (1, "no_answer"), (2, "voicemail")] {
        let (status, call_status, _, call_log_id) = lead_state(db, org.lead_ids[lead]).await;
        assert_eq!(
            (status.as_str(), call_status.as_str()),
            ("new", expected),
            "unreached leads stay new"
        );
        assert!(call_log_id.is_some());
    }
    assert_eq!(counters(db, org.campaign_id).await, (3, 0, "0.00".into()));

    // A call that reached the stream is not rewritten by a late no-answer callback.
    db.open_call(&start(&org, 0, "CA-R")).await.unwrap();
    let (_, applied) = db
        .record_unreached_call(&unreached(0, "CA-R", EndReason::NoAnswer))
        .await
        .unwrap();
    assert_eq!(applied, Applied::Already);
    assert_eq!(db.call_log("CA-R").await.unwrap().unwrap().end_reason, None);
    assert_eq!(counters(db, org.campaign_id).await.0, 4);
}

#[tokio::test]
async fn unknown_calls_and_foreign_leads_are_refused_without_changes() {
    let test = TestDb::new().await;
    let db = &test.db;
    let acme = seed_org(db.pool(), "Acme", 1).await;
    let globex = seed_org(db.pool(), "Globex", 1).await;

    let mut foreign = start(&acme, 0, "CA-X");
    foreign.lead_id = globex.lead_ids[0];
    assert!(matches!(
        db.open_call(&foreign).await,
        Err(DbError::UnknownLead { .. })
    ));
    assert!(matches!(
        db.close_call("CA-none", &end(EndReason::CallerHangup))
            .await,
        Err(DbError::UnknownCall(_))
    ));
    assert!(matches!(
        db.record_transfer("CA-none", &transfer()).await,
        Err(DbError::UnknownCall(_))
    ));
    assert!(matches!(
        db.append_call_event("CA-none", &speech(0, EventKind::Note, "x"))
            .await,
        Err(DbError::UnknownCall(_))
    ));
    assert_eq!(counters(db, acme.campaign_id).await.0, 0);
    assert_eq!(counters(db, globex.campaign_id).await.0, 0);
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM call_logs")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(rows, 0);
}

#[tokio::test]
async fn the_hangup_callback_sets_the_whole_duration() {
    let test = TestDb::new().await;
    let db = &test.db;
    let org = seed_org(db.pool(), "Acme", 1).await;
    db.open_call(&start(&org, 0, "CA-D")).await.unwrap();
    db.close_call("CA-D", &end(EndReason::Transferred))
        .await
        .unwrap();
    db.record_hangup_duration("CA-D", 312, &json!({"hangup_cause": "NORMAL_CLEARING"}))
        .await
        .unwrap();
    db.record_hangup_duration("CA-D", 312, &json!({"hangup_cause": "NORMAL_CLEARING"}))
        .await
        .unwrap();
    let row = db.call_log("CA-D").await.unwrap().unwrap();
    assert_eq!(row.duration, 312);
    assert_eq!(row.metadata.unwrap()["hangup_cause"], "NORMAL_CLEARING");
    assert!(matches!(
        db.record_hangup_duration("CA-none", 1, &json!({})).await,
        Err(DbError::UnknownCall(_))
    ));
}

/// Plivo's hangup callback for an answered call whose open is not written yet.
fn answered_hangup(org: &Org, lead: usize, call_sid: &str, duration: i32) -> UnreachedCall {
    UnreachedCall {
        call_sid: call_sid.to_owned(),
        campaign_id: org.campaign_id,
        lead_id: org.lead_ids[lead],
        direction: Direction::Outbound,
        at: Utc::now(),
        end_reason: EndReason::CallerHangup,
        answered: true,
        duration_secs: duration,
        metadata: json!({"hangup": {"status": "completed", "duration": duration}}),
    }
}

#[tokio::test]
async fn a_hangup_before_the_open_becomes_the_real_call_when_the_open_comes() {
    let test = TestDb::new().await;
    let db = &test.db;
    let org = seed_org(db.pool(), "Acme", 3).await;

    // Answered, hung up, and the callback overtook the stream's open.
    let (provisional_id, _) = db
        .record_unreached_call(&answered_hangup(&org, 0, "CA-H1", 37))
        .await
        .unwrap();
    let row = db.call_log("CA-H1").await.unwrap().unwrap();
    assert_eq!(
        (row.call_status.as_str(), row.end_reason.as_deref()),
        ("called", Some("caller_hangup")),
        "Plivo says it was answered: never no_answer"
    );
    assert_eq!(lead_state(db, org.lead_ids[0]).await.0, "contacted");

    let (opened_id, applied) = db.open_call(&start(&org, 0, "CA-H1")).await.unwrap();
    assert_eq!((opened_id, applied), (provisional_id, Applied::Now));
    let row = db.call_log("CA-H1").await.unwrap().unwrap();
    assert_eq!(
        (row.ended_at, row.end_reason),
        (None, None),
        "the open makes it the live call"
    );
    db.append_call_event(
        "CA-H1",
        &speech(0, EventKind::AgentSpeech, "Hello, this is Maya."),
    )
    .await
    .unwrap();
    db.append_call_event(
        "CA-H1",
        &speech(1, EventKind::CallerSpeech, "Tell me more."),
    )
    .await
    .unwrap();
    assert_eq!(
        db.close_call("CA-H1", &end(EndReason::AgentEnded))
            .await
            .unwrap(),
        Applied::Now
    );
    let row = db.call_log("CA-H1").await.unwrap().unwrap();
    assert_eq!(row.call_status, "called");
    assert_eq!(row.end_reason.as_deref(), Some("agent_ended"));
    assert_eq!(
        row.transcript.as_deref(),
        Some("Agent: Hello, this is Maya.\nCaller: Tell me more.")
    );
    assert_eq!(row.duration, 37, "Plivo's duration of the whole call");
    let metadata = row.metadata.unwrap();
    assert_eq!(metadata["stream_id"], "s-1");
    assert_eq!(metadata["hangup"]["duration"], 37);
    let (status, call_status, _, call_log_id) = lead_state(db, org.lead_ids[0]).await;
    assert_eq!(
        (status.as_str(), call_status.as_str(), call_log_id),
        ("contacted", "called", Some(provisional_id))
    );

    // Even a callback that said "no answer" gives way to a stream that did start.
    let unanswered = UnreachedCall {
        end_reason: EndReason::NoAnswer,
        answered: false,
        duration_secs: 0,
        ..answered_hangup(&org, 1, "CA-H2", 0)
    };
    db.record_unreached_call(&unanswered).await.unwrap();
    assert_eq!(lead_state(db, org.lead_ids[1]).await.1, "no_answer");
    db.open_call(&start(&org, 1, "CA-H2")).await.unwrap();
    db.close_call("CA-H2", &end(EndReason::CallerHangup))
        .await
        .unwrap();
    let row = db.call_log("CA-H2").await.unwrap().unwrap();
    assert_eq!(
        (row.call_status.as_str(), row.end_reason.as_deref()),
        ("called", Some("caller_hangup"))
    );
    assert_eq!(lead_state(db, org.lead_ids[1]).await.1, "called");

    // A machine's row stays a machine's: its late open is not the call.
    let machine = UnreachedCall {
        end_reason: EndReason::Voicemail,
        answered: false,
        duration_secs: 0,
        ..answered_hangup(&org, 2, "CA-M", 0)
    };
    db.record_unreached_call(&machine).await.unwrap();
    assert_eq!(
        db.open_call(&start(&org, 2, "CA-M")).await.unwrap().1,
        Applied::Already
    );
    let row = db.call_log("CA-M").await.unwrap().unwrap();
    assert_eq!(
        (row.call_status.as_str(), row.end_reason.as_deref()),
        ("voicemail", Some("voicemail"))
    );

    assert_eq!(
        counters(db, org.campaign_id).await.0,
        3,
        "each call counted once"
    );
    // A repeated open changes nothing once the stream holds the call.
    assert_eq!(
        db.open_call(&start(&org, 0, "CA-H1")).await.unwrap().1,
        Applied::Already
    );
}

#[tokio::test]
async fn a_hangup_between_the_open_and_the_close_keeps_plivo_s_duration() {
    let test = TestDb::new().await;
    let db = &test.db;
    let org = seed_org(db.pool(), "Acme", 1).await;
    db.open_call(&start(&org, 0, "CA-H3")).await.unwrap();
    db.record_hangup_duration("CA-H3", 41, &json!({"hangup": {"duration": 41}}))
        .await
        .unwrap();
    db.close_call("CA-H3", &end(EndReason::CallerHangup))
        .await
        .unwrap();
    let row = db.call_log("CA-H3").await.unwrap().unwrap();
    assert_eq!(
        row.duration, 41,
        "the close does not overwrite the whole call's duration"
    );
    assert_eq!(row.end_reason.as_deref(), Some("caller_hangup"));
}
