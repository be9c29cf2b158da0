//! Transfer to a human, end to end: the decision in the call, the hand-off through Plivo's
//! after-stream redirect, the Dial with its whisper, fallbacks, and counters that count only
//! accepted transfers, once.

use std::time::Duration;

use serde_json::json;
use voice_gateway::simulators::plivo_caller::{self, CallReport, CallerConfig, Step};

use crate::{
    call::{Fixture, conversation, turn},
    helpers::{TestApp, settings_for},
};

/// Two always-open sales targets, and a caller ID for the organization.
async fn seed_targets(fixture: &Fixture) {
    sqlx::query("UPDATE organizations SET caller_id = '+14155550100' WHERE id = $1")
        .bind(fixture.org.id)
        .execute(fixture.test.pool())
        .await
        .unwrap();
    for (name, phone, priority) in [("Ana", "+14155550201", 1), ("Bob", "+14155550202", 2)] {
        sqlx::query(
            "INSERT INTO transfer_targets (organization_id, name, department, phone_number, priority, working_days) VALUES ($1, $2, 'sales', $3, $4, '{1,2,3,4,5,6,7}')",
        )
        .bind(fixture.org.id)
        .bind(name)
        .bind(phone)
        .bind(priority)
        .execute(fixture.test.pool())
        .await
        .unwrap();
    }
}

async fn post(
    config: &CallerConfig,
    http: &reqwest::Client,
    path: &str,
    form: &[(&str, &str)],
) -> (u16, String) {
    let form: Vec<(String, String)> = form
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let response = plivo_caller::signed_post(config, http, path, &form)
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

async fn counters(fixture: &Fixture) -> (i32, i32) {
    sqlx::query_as("SELECT total_calls, transferred_calls FROM campaigns WHERE id = $1")
        .bind(fixture.org.campaign_id)
        .fetch_one(fixture.test.pool())
        .await
        .unwrap()
}

/// Element `name`'s attribute `attribute` in `xml`.
fn attribute(xml: &str, name: &str, attribute: &str) -> Option<String> {
    let document = roxmltree::Document::parse(xml).ok()?;
    let node = document
        .descendants()
        .find(|node| node.has_tag_name(name))?;
    node.attribute(attribute).map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dtmf_transfer_is_handed_off_and_counted_once_by_another_gateway() {
    let fixture = Fixture::start(conversation(Vec::new()), 1, &[]).await;
    seed_targets(&fixture).await;
    let report = fixture
        .call(
            0,
            "CA-dtmf",
            &[
                Step::WaitForAgentAudio,
                Step::Dtmf("0".into()),
                Step::WaitForClose,
            ],
        )
        .await;
    assert!(
        report.closed_by_gateway,
        "the gateway ended the stream for the hand-off"
    );

    // A second gateway on the same database serves every later step.
    let other = TestApp::spawn(settings_for(
        &fixture.test.url,
        "gw-other",
        &[
            ("PLIVO_AUTH_ID", "MATEST"),
            ("PLIVO_AUTH_TOKEN", crate::call::AUTH_TOKEN),
            ("VG_AI_PROVIDER", "openai"),
            ("OPENAI_API_KEY", "sk"),
        ],
    ))
    .await;
    let mut config = fixture.caller(0, "CA-dtmf");
    config.gateway = format!("http://{}", other.address);
    let http = &fixture.http;

    let (status, xml) = post(
        &config,
        http,
        "/plivo/after-stream",
        &[("CallUUID", "CA-dtmf")],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        attribute(&xml, "Dial", "action").as_deref(),
        Some("https://gateway.test/plivo/dial-status?call=CA-dtmf&attempt=0")
    );
    assert_eq!(attribute(&xml, "Dial", "confirmKey").as_deref(), Some("1"));
    assert_eq!(
        attribute(&xml, "Dial", "confirmSound").as_deref(),
        Some("https://gateway.test/plivo/transfer-whisper?call=CA-dtmf")
    );
    assert_eq!(
        attribute(&xml, "Dial", "callerId").as_deref(),
        Some("14155550100")
    );
    assert_eq!(attribute(&xml, "Dial", "timeout").as_deref(), Some("25"));
    assert!(
        xml.contains("<Number>14155550201</Number>"),
        "the first target by priority: {xml}"
    );
    assert!(
        xml.contains("<Speak voice=\"WOMAN\" language=\"en-US\">Let me connect you"),
        "Plivo says the hand-off line the agent did not: {xml}"
    );
    // Only attributes Plivo's XML reference defines for <Dial> and <Number>.
    let document = roxmltree::Document::parse(&xml).unwrap();
    const DIAL_ATTRIBUTES: &[&str] = &[
        "action",
        "method",
        "timeout",
        "timeLimit",
        "callerId",
        "callerName",
        "hangupOnStar",
        "redirect",
        "callbackUrl",
        "callbackMethod",
        "confirmSound",
        "confirmKey",
        "confirmTimeout",
        "dialMusic",
        "digitsMatch",
        "digitsMatchBLeg",
        "sipHeaders",
    ];
    for node in document.descendants().filter(|node| node.is_element()) {
        let allowed: &[&str] = match node.tag_name().name() {
            "Dial" => DIAL_ATTRIBUTES,
            "Number" => &["sendDigits", "sendOnPreanswer", "sendDigitsMode"],
            "Speak" => &["voice", "language", "loop"],
            "Response" => &[],
            other => panic!("unexpected element {other}"),
        };
        for attribute in node.attributes() {
            assert!(
                allowed.contains(&attribute.name()),
                "<{}> has no attribute {}",
                node.tag_name().name(),
                attribute.name()
            );
        }
    }

    let (_, whisper) = post(&config, http, "/plivo/transfer-whisper?call=CA-dtmf", &[]).await;
    assert!(
        whisper.contains("Lead 0 of Acme Homes") && whisper.contains("Spring launch"),
        "{whisper}"
    );
    assert!(
        whisper.contains("the caller pressed 0") && whisper.contains("Press 1 to accept"),
        "{whisper}"
    );

    // Busy on the first target, then the second answers and accepts.
    let (_, xml) = post(
        &config,
        http,
        "/plivo/dial-status?call=CA-dtmf&attempt=0",
        &[("DialStatus", "busy"), ("DialBLegUUID", "")],
    )
    .await;
    assert!(xml.contains("<Number>14155550202</Number>"), "{xml}");
    assert!(!xml.contains("<Speak"), "the hand-off line is said once");
    assert_eq!(
        counters(&fixture).await,
        (1, 0),
        "a failed attempt counts nothing"
    );

    let accepted = [("DialStatus", "completed"), ("DialBLegUUID", "leg-b-1")];
    let hangup = [
        ("CallUUID", "CA-dtmf"),
        ("CallStatus", "completed"),
        ("Duration", "312"),
    ];
    // Plivo's callbacks, repeated and out of order.
    post(&config, http, "/plivo/hangup", &hangup).await;
    let (_, xml) = post(
        &config,
        http,
        "/plivo/dial-status?call=CA-dtmf&attempt=1",
        &accepted,
    )
    .await;
    assert!(xml.contains("<Hangup/>"), "{xml}");
    post(
        &config,
        http,
        "/plivo/dial-status?call=CA-dtmf&attempt=1",
        &accepted,
    )
    .await;
    post(
        &config,
        http,
        "/plivo/dial-status?call=CA-dtmf&attempt=0",
        &[("DialStatus", "busy")],
    )
    .await;
    post(&config, http, "/plivo/hangup", &hangup).await;

    assert_eq!(
        counters(&fixture).await,
        (1, 1),
        "one accepted transfer, counted once"
    );
    other.shutdown().await;
    let (test, org, _) = fixture.finish().await;
    let row = test.db.call_log("CA-dtmf").await.unwrap().unwrap();
    assert!(row.transferred);
    assert_eq!(row.call_status, "transferred");
    assert_eq!(row.end_reason.as_deref(), Some("transferred"));
    assert_eq!(row.transfer_department.as_deref(), Some("sales"));
    assert_eq!(row.transfer_reason.as_deref(), Some("the caller pressed 0"));
    assert_eq!(
        row.duration, 312,
        "the whole call, AI and human parts, from the hangup callback"
    );
    let (transferred, call_status): (bool, String) =
        sqlx::query_as("SELECT transferred_to_human, call_status FROM leads WHERE id = $1")
            .bind(org.lead_ids[0])
            .fetch_one(test.pool())
            .await
            .unwrap();
    assert_eq!((transferred, call_status.as_str()), (true, "transferred"));
    let kinds: Vec<String> = sqlx::query_scalar("SELECT kind FROM call_events WHERE call_log_id = $1 AND kind LIKE 'transfer%' ORDER BY seq")
        .bind(row.id)
        .fetch_all(test.pool())
        .await
        .unwrap();
    assert_eq!(
        kinds,
        ["transfer_decision", "transfer_attempt", "transfer_attempt"],
        "the decision and each attempt, once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_asking_for_a_person_is_transferred_even_without_the_tool() {
    let fixture = Fixture::start(
        conversation(vec![turn(
            "Can I talk to a real person please",
            "Of course.",
            None,
        )]),
        1,
        &[],
    )
    .await;
    seed_targets(&fixture).await;
    let script = [
        Step::WaitForAgentAudio,
        Step::WaitForAgentSilence(Duration::from_millis(300)),
        Step::Speak(Duration::from_millis(500)),
        Step::WaitForClose,
    ];
    let report = fixture.call(0, "CA-person", &script).await;
    assert!(report.closed_by_gateway);
    let config = fixture.caller(0, "CA-person");
    let (_, xml) = post(
        &config,
        &fixture.http,
        "/plivo/after-stream",
        &[("CallUUID", "CA-person")],
    )
    .await;
    assert!(
        xml.contains("<Dial") && xml.contains("<Number>14155550201</Number>"),
        "{xml}"
    );
    let (test, _, _) = fixture.finish().await;
    let transfer = test
        .db
        .transfer_for_call("CA-person")
        .await
        .unwrap()
        .unwrap();
    assert!(
        transfer.reason.contains("real person"),
        "{}",
        transfer.reason
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_asked_for_while_the_agent_replies_hands_off_without_silence() {
    // A real model's transcript of the caller arrives after its reply has begun: the request
    // for a person is read while the agent is talking about something else.
    let mut fake = conversation(vec![turn(
        "Can I please speak to a real person?",
        "Sure, but first let me tell you about our lakeside flats and their parking.",
        None,
    )]);
    fake.reply_ms = 4000;
    fake.transcript_delay = Duration::from_millis(700);
    fake.text_time = Duration::from_millis(1500);
    let fixture = Fixture::start(fake, 1, &[]).await;
    seed_targets(&fixture).await;
    let script = [
        Step::WaitForAgentAudio,
        Step::WaitForAgentSilence(Duration::from_millis(300)),
        Step::Speak(Duration::from_millis(500)),
        Step::WaitForClose,
    ];
    let report = fixture.call(0, "CA-cut", &script).await;
    let closed_at = report.closed_at.expect("the gateway closed the stream");
    let spoke_until = *report.speech_ends.last().unwrap();
    // The reply had begun, and was cleared when the transfer was decided.
    assert!(
        report
            .first_frame_after(spoke_until)
            .is_some_and(|at| at < closed_at),
        "the agent's reply had started"
    );
    let cleared_at = *report
        .clears
        .last()
        .expect("the reply was cleared for the hand-off");
    assert!(cleared_at > spoke_until);
    let silence = closed_at.saturating_sub(cleared_at.max(spoke_until));
    eprintln!("{silence:?} of silence before the hand-off");
    assert!(
        silence <= Duration::from_secs(1),
        "{silence:?} of silence before the hand-off"
    );
    assert!(
        fixture.fake.events_of("response.cancel").len() == 1,
        "the reply was cancelled"
    );
    let (test, _, _) = fixture.finish().await;
    let transfer = test.db.transfer_for_call("CA-cut").await.unwrap().unwrap();
    assert_eq!(
        transfer.handoff_line.as_deref(),
        Some(voice_gateway::call::session::HANDOFF_LINE),
        "Plivo says the short line before dialling"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tool_and_an_agent_announcement_both_transfer_without_a_second_hand_off_line() {
    for (call_sid, reply, tool) in [
        (
            "CA-tool",
            "Sure, one moment.",
            Some((
                "transfer_to_human",
                json!({"department": "sales", "reason": "wants a visit"}),
            )),
        ),
        (
            "CA-announce",
            "I am transferring you to a colleague now.",
            None,
        ),
    ] {
        let fixture = Fixture::start(
            conversation(vec![turn("I am interested", reply, tool.clone())]),
            1,
            &[],
        )
        .await;
        seed_targets(&fixture).await;
        let script = [
            Step::WaitForAgentAudio,
            Step::WaitForAgentSilence(Duration::from_millis(300)),
            Step::Speak(Duration::from_millis(500)),
            Step::WaitForClose,
        ];
        let report = fixture.call(0, call_sid, &script).await;
        assert!(report.closed_by_gateway, "{call_sid}");
        let config = fixture.caller(0, call_sid);
        let (_, xml) = post(
            &config,
            &fixture.http,
            "/plivo/after-stream",
            &[("CallUUID", call_sid)],
        )
        .await;
        assert!(xml.contains("<Dial"), "{call_sid}: {xml}");
        assert!(
            !xml.contains("<Speak"),
            "{call_sid}: the agent already said it: {xml}"
        );
        let (test, _, _) = fixture.finish().await;
        let transfer = test.db.transfer_for_call(call_sid).await.unwrap().unwrap();
        let expected = if tool.is_some() {
            "wants a visit"
        } else {
            "the agent promised a transfer"
        };
        assert!(
            transfer.reason.contains(expected),
            "{call_sid}: {}",
            transfer.reason
        );
        assert_eq!(
            test.db
                .call_log(call_sid)
                .await
                .unwrap()
                .unwrap()
                .end_reason
                .as_deref(),
            Some("transferred")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_nobody_accepts_the_caller_goes_back_to_the_ai_and_nothing_is_counted() {
    let fixture = Fixture::start(conversation(Vec::new()), 1, &[]).await;
    seed_targets(&fixture).await;
    fixture
        .call(
            0,
            "CA-none",
            &[
                Step::WaitForAgentAudio,
                Step::Dtmf("0".into()),
                Step::WaitForClose,
            ],
        )
        .await;
    let config = fixture.caller(0, "CA-none");
    let http = &fixture.http;
    post(
        &config,
        http,
        "/plivo/after-stream",
        &[("CallUUID", "CA-none")],
    )
    .await;
    post(
        &config,
        http,
        "/plivo/dial-status?call=CA-none&attempt=0",
        &[("DialStatus", "no-answer")],
    )
    .await;
    let (_, xml) = post(
        &config,
        http,
        "/plivo/dial-status?call=CA-none&attempt=1",
        &[("DialStatus", "completed")],
    )
    .await;
    // Answered but never bridged (no key press): declined, so back to the AI.
    let stream_url =
        plivo_caller::stream_url_of(&xml).unwrap_or_else(|| panic!("a new stream: {xml}"));
    let report = plivo_caller::run_stream(
        &config,
        &stream_url,
        &[Step::WaitForAgentAudio, Step::HangUp],
        voice_gateway::audio::AudioFormat::MULAW_8K,
        CallReport::default(),
    )
    .await
    .unwrap();
    assert!(!report.frames.is_empty(), "the agent speaks again");
    // After the resumed stream, the redirect hangs up.
    let (_, xml) = post(
        &config,
        http,
        "/plivo/after-stream",
        &[("CallUUID", "CA-none")],
    )
    .await;
    assert!(xml.contains("<Hangup/>"), "{xml}");
    let greeting = fixture
        .fake
        .events_of("response.create")
        .into_iter()
        .filter(|e| {
            e["response"]["instructions"]
                .as_str()
                .is_some_and(|i| i.contains("none of my colleagues"))
        })
        .count();
    assert_eq!(greeting, 1, "the resumed agent knows nobody was available");
    assert_eq!(counters(&fixture).await, (1, 0));
    let (test, _, _) = fixture.finish().await;
    let row = test.db.call_log("CA-none").await.unwrap().unwrap();
    assert!(!row.transferred);
    assert_eq!(row.call_status, "called");
    assert_eq!(
        row.transfer_reason.as_deref(),
        Some("the caller pressed 0"),
        "the attempt's reason is kept"
    );
    assert_eq!(
        row.end_reason.as_deref(),
        Some("caller_hangup"),
        "the resumed stream's end"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callback_fallback_says_goodbye_and_records_the_callback() {
    let fixture = Fixture::start(conversation(Vec::new()), 1, &[]).await;
    seed_targets(&fixture).await;
    sqlx::query("UPDATE campaigns SET settings = $2 WHERE id = $1")
        .bind(fixture.org.campaign_id)
        .bind(json!({"transfer": {"fallback": "callback_and_hangup"}}))
        .execute(fixture.test.pool())
        .await
        .unwrap();
    fixture
        .call(
            0,
            "CA-cb",
            &[
                Step::WaitForAgentAudio,
                Step::Dtmf("0".into()),
                Step::WaitForClose,
            ],
        )
        .await;
    let config = fixture.caller(0, "CA-cb");
    let http = &fixture.http;
    post(
        &config,
        http,
        "/plivo/after-stream",
        &[("CallUUID", "CA-cb")],
    )
    .await;
    post(
        &config,
        http,
        "/plivo/dial-status?call=CA-cb&attempt=0",
        &[("DialStatus", "failed")],
    )
    .await;
    let (_, xml) = post(
        &config,
        http,
        "/plivo/dial-status?call=CA-cb&attempt=1",
        &[("DialStatus", "busy")],
    )
    .await;
    assert!(
        xml.contains("<Speak") && xml.contains("call you back") && xml.contains("<Hangup/>"),
        "{xml}"
    );
    assert_eq!(counters(&fixture).await, (1, 0));
    let (test, _, _) = fixture.finish().await;
    let row = test.db.call_log("CA-cb").await.unwrap().unwrap();
    let callbacks: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM call_events WHERE call_log_id = $1 AND kind = 'callback_scheduled'",
    )
    .bind(row.id)
    .fetch_one(test.pool())
    .await
    .unwrap();
    assert_eq!(callbacks, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rest_strategy_moves_the_call_with_the_documented_request_and_falls_back_cleanly() {
    use voice_gateway::simulators::plivo_api::FakePlivoApi;
    for fail in [false, true] {
        let api = FakePlivoApi::start(fail).await.unwrap();
        let url = api.url();
        let fixture = Fixture::start(
            conversation(Vec::new()),
            1,
            &[
                ("VG_TRANSFER_STRATEGY", "rest"),
                ("PLIVO_API_URL", url.as_str()),
            ],
        )
        .await;
        seed_targets(&fixture).await;
        let call_sid = if fail { "CA-rest-fail" } else { "CA-rest" };
        let report = fixture
            .call(
                0,
                call_sid,
                &[
                    Step::WaitForAgentAudio,
                    Step::Dtmf("0".into()),
                    Step::WaitForClose,
                ],
            )
            .await;
        assert!(report.closed_by_gateway, "the stream ends either way");
        let requests = api.requests();
        assert_eq!(requests.len(), 1, "exactly one API request: {requests:?}");
        let request = &requests[0];
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, format!("/v1/Account/MATEST/Call/{call_sid}/"));
        assert_eq!(
            request.basic_auth.as_deref(),
            Some(format!("MATEST:{}", crate::call::AUTH_TOKEN).as_str())
        );
        assert_eq!(request.content_type.as_deref(), Some("application/json"));
        assert_eq!(
            request.body,
            json!({"legs": "aleg", "aleg_url": "https://gateway.test/plivo/after-stream", "aleg_method": "POST"})
        );
        // Whether the API moved the call or the stream's redirect did, after-stream dials.
        let config = fixture.caller(0, call_sid);
        let (_, xml) = post(
            &config,
            &fixture.http,
            "/plivo/after-stream",
            &[("CallUUID", call_sid)],
        )
        .await;
        assert!(
            xml.contains("<Dial") && xml.contains("<Number>14155550201</Number>"),
            "{xml}"
        );
        let (test, _, _) = fixture.finish().await;
        let transfer = test.db.transfer_for_call(call_sid).await.unwrap().unwrap();
        assert_eq!(transfer.status, "dialing");
        api.stop().await;
    }
}
