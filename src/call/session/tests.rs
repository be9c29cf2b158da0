//! The call state machine, driven with a fake clock.

use std::time::{Duration, Instant};

use super::*;
use crate::ai::{ProviderCommand, ProviderEvent, ResponseStatus};
use crate::transfer::policy::{Target, TransferRules};

fn config() -> SessionConfig {
    SessionConfig {
        format: AudioFormat::MULAW_8K,
        playout_lead: Duration::from_millis(300),
        greeting_guard: Duration::from_millis(500),
        silence_timeout: Duration::from_secs(10),
        max_duration: Duration::from_secs(600),
        final_playout_limit: Duration::from_secs(5),
        transfer: TransferConfig::default(),
        first_event_seq: 0,
        schedule: CallSchedule::default(),
    }
}

struct Harness {
    session: CallSession,
    now: Instant,
    sent_frames: Vec<Instant>,
    checkpoints: Vec<String>,
    actions: Vec<Action>,
}

impl Harness {
    fn new() -> Self {
        let now = Instant::now();
        Self {
            session: CallSession::new(config(), now),
            now,
            sent_frames: Vec::new(),
            checkpoints: Vec::new(),
            actions: Vec::new(),
        }
    }

    fn input(&mut self, input: Input) {
        self.session.handle(input, self.now);
        self.pump();
    }

    fn provider(&mut self, event: ProviderEvent) {
        self.input(Input::Provider(event));
    }

    fn audio(&mut self, response: &str, item: &str, bytes: usize) {
        self.provider(ProviderEvent::Audio {
            response_id: response.into(),
            item_id: item.into(),
            audio: vec![0x55; bytes],
        });
    }

    /// Advances the clock in 5 ms steps, sending whatever is due, like the bridge would.
    fn advance(&mut self, by: Duration) {
        let until = self.now + by;
        while self.now < until {
            self.now += Duration::from_millis(5);
            self.session.tick(self.now);
            self.pump();
        }
    }

    fn pump(&mut self) {
        let mut buffer = [0u8; 640];
        while let Some(transmit) = self.session.poll_transmit(self.now, &mut buffer) {
            match transmit {
                Transmit::Frame(bytes) => {
                    assert_eq!(bytes, 160, "exact 20 ms frames");
                    self.sent_frames.push(self.now);
                }
                Transmit::Checkpoint(name) => self.checkpoints.push(name),
            }
        }
        while let Some(action) = self.session.poll_action() {
            self.actions.push(action);
        }
    }

    fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }

    fn records(&self, kind: EventKind) -> Vec<RecordedEvent> {
        self.actions
            .iter()
            .filter_map(|action| match action {
                Action::Record(event) if event.kind == kind => Some(event.clone()),
                _ => None,
            })
            .collect()
    }
}

/// A sales colleague who takes calls around the clock.
fn always_open_target() -> Target {
    Target {
        id: uuid::Uuid::nil(),
        name: "Ana".into(),
        department: "sales".into(),
        phone_number: "+14155550201".into(),
        priority: 1,
        timezone: "UTC".into(),
        working_days: vec![1, 2, 3, 4, 5, 6, 7],
        hours: None,
        active: true,
    }
}

fn greeting(harness: &mut Harness, bytes: usize) {
    harness.provider(ProviderEvent::ResponseStarted {
        response_id: "r0".into(),
    });
    harness.audio("r0", "i0", bytes);
}

#[test]
fn audio_is_paced_at_most_the_lead_ahead_of_real_time() {
    let mut harness = Harness::new();
    greeting(&mut harness, 160 * 100); // 2 s of audio at once
    // At once: the lead (300 ms) plus the frame that starts playing now.
    assert_eq!(harness.sent_frames.len(), 16);
    harness.advance(Duration::from_millis(1000));
    // After 1 s: 50 frames played plus the lead, topped up in batches of about 100 ms.
    let sent = harness.sent_frames.len();
    assert!((60..=67).contains(&sent), "{sent} frames after 1 s");
    let bursts = harness
        .sent_frames
        .windows(2)
        .filter(|pair| pair[1] > pair[0])
        .count();
    assert!(
        bursts <= 12,
        "frames leave in batches, not one per wake-up: {bursts} sends after the first"
    );
    harness.advance(Duration::from_millis(2000));
    assert_eq!(
        harness.sent_frames.len(),
        100,
        "everything is sent, nothing more"
    );
    assert_eq!(harness.session.stats().first_audio_ms, Some(0));
}

#[test]
fn unplayed_agent_audio_is_capped_and_the_excess_dropped_and_counted() {
    let mut harness = Harness::new();
    let second = 8000; // μ-law at 8 kHz
    let cap = MAX_UNPLAYED_AGENT_AUDIO_SECS * second;
    greeting(&mut harness, cap - second);
    let sent_at_once = harness.sent_frames.len() * 160;
    assert_eq!(harness.session.stats().agent_audio_overflow, 0);
    // Two more seconds at once: what fits under the cap is queued, the rest dropped.
    harness.audio("r0", "i0", 2 * second);
    let room = second + sent_at_once;
    assert_eq!(
        harness.session.stats().agent_audio_overflow,
        (2 * second - room) as u64
    );
    // At the cap, a whole delta is dropped.
    harness.audio("r0", "i0", second);
    assert_eq!(
        harness.session.stats().agent_audio_overflow,
        (3 * second - room) as u64
    );
    // Playing frees room again.
    harness.advance(Duration::from_secs(1));
    harness.audio("r0", "i0", second / 2);
    assert_eq!(
        harness.session.stats().agent_audio_overflow,
        (3 * second - room) as u64,
        "half a second fits once a second has played"
    );
    harness.provider(ProviderEvent::AudioDone {
        response_id: "r0".into(),
        item_id: "i0".into(),
    });
    harness.advance(Duration::from_secs(
        MAX_UNPLAYED_AGENT_AUDIO_SECS as u64 + 5,
    ));
    let queued = cap - second + room + second / 2;
    assert_eq!(
        harness.sent_frames.len(),
        queued.div_ceil(160),
        "exactly what was kept is played"
    );
    assert_eq!(harness.checkpoints, ["i0"]);
}

#[test]
fn partial_frames_are_padded_at_the_end_of_an_item_and_followed_by_its_checkpoint() {
    let mut harness = Harness::new();
    greeting(&mut harness, 250);
    assert_eq!(harness.sent_frames.len(), 1, "only whole frames go out");
    harness.provider(ProviderEvent::AudioDone {
        response_id: "r0".into(),
        item_id: "i0".into(),
    });
    assert_eq!(
        harness.sent_frames.len(),
        2,
        "the rest is padded to a frame"
    );
    assert_eq!(harness.checkpoints, ["i0"]);
}

#[test]
fn barge_in_clears_truncates_to_what_was_heard_and_cancels() {
    let mut harness = Harness::new();
    harness.provider(ProviderEvent::ResponseStarted {
        response_id: "r0".into(),
    });
    harness.audio("r0", "i0", 160 * 10);
    harness.provider(ProviderEvent::AudioDone {
        response_id: "r0".into(),
        item_id: "i0".into(),
    });
    harness.provider(ProviderEvent::ResponseDone {
        response_id: "r0".into(),
        status: ResponseStatus::Completed,
        usage: None,
    });
    harness.advance(Duration::from_secs(1));
    harness.provider(ProviderEvent::ResponseStarted {
        response_id: "r1".into(),
    });
    harness.audio("r1", "i1", 160 * 250); // 5 s answer
    harness.provider(ProviderEvent::AgentTranscript {
        item_id: "i1".into(),
        text: "one two three four five six seven eight nine ten".into(),
    });
    harness.advance(Duration::from_millis(1000));
    harness.take_actions();
    let sent_before = harness.sent_frames.len();

    harness.provider(ProviderEvent::CallerSpeechStarted);
    let actions = harness.take_actions();
    assert_eq!(
        actions[0],
        Action::ClearPlivo,
        "clearAudio first, in the same step"
    );
    let Some(Action::Provider(ProviderCommand::Interrupt {
        item_id,
        audio_end_ms,
        cancel_response,
    })) = actions.get(1).cloned()
    else {
        panic!("expected an interrupt, got {actions:?}");
    };
    assert_eq!(item_id, "i1");
    assert!(cancel_response, "the response was still running");
    let sent_ms = (harness.sent_frames.len() - 10) as u64 * 20;
    assert!(
        audio_end_ms <= sent_ms,
        "heard {audio_end_ms} ms of {sent_ms} ms sent"
    );
    assert!(
        (950..=1020).contains(&audio_end_ms),
        "about 1 s was heard, got {audio_end_ms}"
    );

    // Nothing more goes out, late audio of the cancelled response is ignored.
    harness.audio("r1", "i1", 160 * 50);
    harness.advance(Duration::from_millis(500));
    assert_eq!(harness.sent_frames.len(), sent_before);
    assert_eq!(harness.session.stats().barge_ins, 1);
    assert!(harness.session.stats().late_audio_dropped >= 8000);

    let speech: Vec<RecordedEvent> = harness
        .actions
        .iter()
        .chain(actions.iter())
        .filter_map(|a| match a {
            Action::Record(e) if e.kind == EventKind::AgentSpeech => Some(e.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(speech.len(), 1);
    assert_eq!(speech[0].data["interrupted"], true);
    assert_eq!(
        speech[0].text.as_deref(),
        Some("one two…"),
        "only the words heard are kept"
    );
}

#[test]
fn the_greeting_is_protected_from_its_own_echo() {
    let mut harness = Harness::new();
    greeting(&mut harness, 160 * 150);
    harness.advance(Duration::from_millis(200));
    harness.take_actions();
    harness.provider(ProviderEvent::CallerSpeechStarted);
    assert!(
        harness
            .take_actions()
            .iter()
            .all(|a| *a != Action::ClearPlivo),
        "inside the guard: no barge-in"
    );
    assert_eq!(harness.session.stats().ignored_barge_ins, 1);
    harness.advance(Duration::from_millis(600));
    harness.provider(ProviderEvent::CallerSpeechStarted);
    assert_eq!(
        harness.take_actions().first(),
        Some(&Action::ClearPlivo),
        "after the guard the caller can interrupt"
    );
}

#[test]
fn speech_while_nothing_plays_is_not_a_barge_in() {
    let mut harness = Harness::new();
    harness.provider(ProviderEvent::CallerSpeechStarted);
    assert!(harness.take_actions().is_empty());
    assert_eq!(harness.session.stats().barge_ins, 0);
}

#[test]
fn tool_side_effects_run_only_for_completed_responses() {
    let mut harness = Harness::new();
    harness.provider(ProviderEvent::ResponseStarted {
        response_id: "r1".into(),
    });
    harness.provider(ProviderEvent::ToolCall {
        response_id: "r1".into(),
        call_id: "c1".into(),
        name: "record_outcome".into(),
        arguments: r#"{"interest_level":"high"}"#.into(),
    });
    harness.provider(ProviderEvent::ResponseDone {
        response_id: "r1".into(),
        status: ResponseStatus::Cancelled,
        usage: None,
    });
    let actions = harness.take_actions();
    assert!(
        actions.iter().all(|a| !matches!(a, Action::Provider(_))),
        "no output for a cancelled response: {actions:?}"
    );
    assert_eq!(harness.session.stats().interest_level, None);

    harness.provider(ProviderEvent::ResponseStarted {
        response_id: "r2".into(),
    });
    harness.provider(ProviderEvent::ToolCall {
        response_id: "r2".into(),
        call_id: "c2".into(),
        name: "record_outcome".into(),
        arguments: r#"{"interest_level":"high","notes":"2BHK"}"#.into(),
    });
    harness.provider(ProviderEvent::ResponseDone {
        response_id: "r2".into(),
        status: ResponseStatus::Completed,
        usage: Some(serde_json::json!({"total_tokens": 10})),
    });
    let actions = harness.take_actions();
    assert!(
        actions.contains(&Action::Provider(ProviderCommand::ToolResult {
            call_id: "c2".into(),
            output: serde_json::json!({"ok": true})
        }))
    );
    assert_eq!(
        actions.last(),
        Some(&Action::Provider(ProviderCommand::Continue)),
        "the output round trip ends with a response.create"
    );
    assert_eq!(
        harness.session.stats().interest_level.as_deref(),
        Some("high")
    );
    assert_eq!(harness.session.stats().usage.len(), 1);
}

#[test]
fn end_call_waits_for_the_goodbye_to_play() {
    let mut harness = Harness::new();
    harness.provider(ProviderEvent::ResponseStarted {
        response_id: "r1".into(),
    });
    harness.audio("r1", "i1", 160 * 50); // 1 s goodbye
    harness.provider(ProviderEvent::AudioDone {
        response_id: "r1".into(),
        item_id: "i1".into(),
    });
    harness.provider(ProviderEvent::ToolCall {
        response_id: "r1".into(),
        call_id: "c".into(),
        name: "end_call".into(),
        arguments: r#"{"reason":"done"}"#.into(),
    });
    harness.provider(ProviderEvent::ResponseDone {
        response_id: "r1".into(),
        status: ResponseStatus::Completed,
        usage: None,
    });
    assert!(!harness.session.is_ended());
    harness.advance(Duration::from_millis(1000));
    assert!(
        !harness.session.is_ended(),
        "sent, but Plivo has not confirmed it played"
    );
    assert_eq!(harness.sent_frames.len(), 50, "the whole goodbye was sent");
    assert_eq!(harness.checkpoints, ["i1"]);
    // Plivo's playedStream releases the caller at once.
    harness.input(Input::Played { name: "i1".into() });
    assert!(harness.session.is_ended());
    assert!(
        harness
            .actions
            .contains(&Action::End(EndReason::AgentEnded))
    );
}

#[test]
fn exactly_one_end_reason() {
    let mut harness = Harness::new();
    harness.input(Input::CallerGone);
    harness.input(Input::Shutdown);
    harness.advance(Duration::from_secs(700));
    let ends: Vec<&Action> = harness
        .actions
        .iter()
        .filter(|a| matches!(a, Action::End(_)))
        .collect();
    assert_eq!(ends, [&Action::End(EndReason::CallerHangup)]);
}

#[test]
fn a_carrier_violation_ends_the_call_at_once_with_protocol_error() {
    let mut harness = Harness::new();
    harness.input(Input::CarrierViolation);
    harness.input(Input::CallerGone);
    let ends: Vec<&Action> = harness
        .actions
        .iter()
        .filter(|a| matches!(a, Action::End(_)))
        .collect();
    assert_eq!(ends, [&Action::End(EndReason::ProtocolError)]);
}

#[test]
fn silence_and_maximum_duration_end_the_call() {
    let mut harness = Harness::new();
    harness.advance(Duration::from_secs(9));
    assert!(!harness.session.is_ended());
    harness.advance(Duration::from_millis(1100));
    assert!(harness.actions.contains(&Action::End(EndReason::Silence)));

    let mut harness = Harness::new();
    for _ in 0..70 {
        harness.provider(ProviderEvent::CallerSpeechStarted);
        harness.provider(ProviderEvent::CallerSpeechStopped);
        harness.advance(Duration::from_secs(9));
    }
    assert!(
        harness
            .actions
            .contains(&Action::End(EndReason::MaxDuration))
    );
}

#[test]
fn a_provider_failure_plays_the_apology_then_ends() {
    let mut harness = Harness::new();
    greeting(&mut harness, 160 * 100);
    harness.advance(Duration::from_millis(100));
    harness.input(Input::ProviderFailed {
        message: "dropped".into(),
        apology: vec![0x66; 160 * 25],
    });
    harness.advance(Duration::from_millis(300));
    assert!(!harness.session.is_ended());
    harness.advance(Duration::from_secs(2));
    assert!(
        harness
            .actions
            .contains(&Action::End(EndReason::ProviderError))
    );
    assert_eq!(harness.records(EventKind::ProviderError).len(), 1);
}

#[test]
fn poll_timeout_wakes_to_top_up_the_lead_in_batches() {
    let mut harness = Harness::new();
    greeting(&mut harness, 160 * 100);
    // The greeting filled the 300 ms lead; the next wake-up comes when 200 ms are left ahead
    // (a 100 ms batch), not every 20 ms.
    let wake = harness.session.poll_timeout(harness.now).unwrap();
    let ahead = wake.saturating_duration_since(harness.now);
    assert!(
        (Duration::from_millis(80)..=Duration::from_millis(120)).contains(&ahead),
        "the next top-up comes a batch later, got {ahead:?}"
    );
    // At that moment five frames go out at once, and the lead is full again.
    harness.now = wake;
    let mut buffer = vec![0u8; 160];
    let mut frames = 0;
    while let Some(Transmit::Frame(_)) = harness.session.poll_transmit(harness.now, &mut buffer) {
        frames += 1;
    }
    assert!((4..=6).contains(&frames), "{frames} frames in the batch");
}

#[test]
fn events_are_numbered_in_order() {
    let mut harness = Harness::new();
    harness.provider(ProviderEvent::CallerTranscript {
        item_id: "u1".into(),
        text: "hello".into(),
    });
    harness.input(Input::Dtmf { digit: "5".into() });
    harness.provider(ProviderEvent::CallerTranscript {
        item_id: "u2".into(),
        text: "   ".into(),
    });
    let seqs: Vec<i32> = harness
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Record(e) => Some(e.seq),
            _ => None,
        })
        .collect();
    assert_eq!(seqs, [0, 1], "blank transcripts are not recorded");
}

#[test]
fn an_item_that_runs_dry_counts_an_underrun() {
    let mut harness = Harness::new();
    greeting(&mut harness, 160 * 5);
    harness.advance(Duration::from_millis(300));
    assert_eq!(harness.session.stats().underruns, 0);
    harness.audio("r0", "i0", 160 * 5); // the same item resumes after its audio ran out
    assert_eq!(harness.session.stats().underruns, 1);
    harness.audio("r0", "i0", 160 * 5);
    assert_eq!(
        harness.session.stats().underruns,
        1,
        "continuous audio is no underrun"
    );
}

#[test]
fn a_qualified_caller_is_transferred_when_the_campaign_says_so() {
    let mut config = config();
    config.transfer = TransferConfig {
        rules: TransferRules {
            when_qualified: true,
            ..TransferRules::default()
        },
        targets: vec![always_open_target()],
        assigned: None,
        wall_start: chrono::Utc::now(),
    };
    let now = Instant::now();
    let mut session = CallSession::new(config, now);
    session.handle(
        Input::Provider(ProviderEvent::ResponseStarted {
            response_id: "r1".into(),
        }),
        now,
    );
    session.handle(
        Input::Provider(ProviderEvent::ToolCall {
            response_id: "r1".into(),
            call_id: "c1".into(),
            name: "record_outcome".into(),
            arguments: r#"{"interest_level":"high"}"#.into(),
        }),
        now,
    );
    session.handle(
        Input::Provider(ProviderEvent::ResponseDone {
            response_id: "r1".into(),
            status: ResponseStatus::Completed,
            usage: None,
        }),
        now,
    );
    let mut actions = Vec::new();
    while let Some(action) = session.poll_action() {
        actions.push(action);
    }
    let plan = actions.iter().find_map(|action| match action {
        Action::Transfer(plan) => Some(plan.clone()),
        _ => None,
    });
    let plan = plan.expect("a transfer was planned");
    assert_eq!(plan.trigger, "qualified");
    assert_eq!(plan.targets.len(), 1);
    assert!(
        plan.handoff_line.is_some(),
        "the agent did not announce it, so Plivo will"
    );
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::Provider(ProviderCommand::ToolResult { .. }))),
        "no reply: the call is leaving"
    );
    assert_eq!(session.end_reason(), Some(EndReason::Transferred));
}

#[test]
fn a_lost_played_stream_ends_the_call_on_the_estimate_plus_a_margin() {
    let mut harness = Harness::new();
    harness.provider(ProviderEvent::ResponseStarted {
        response_id: "r1".into(),
    });
    harness.audio("r1", "i1", 160 * 25); // 0.5 s goodbye
    harness.provider(ProviderEvent::AudioDone {
        response_id: "r1".into(),
        item_id: "i1".into(),
    });
    harness.provider(ProviderEvent::ToolCall {
        response_id: "r1".into(),
        call_id: "c".into(),
        name: "end_call".into(),
        arguments: "{}".into(),
    });
    harness.provider(ProviderEvent::ResponseDone {
        response_id: "r1".into(),
        status: ResponseStatus::Completed,
        usage: None,
    });
    // Playout ends at 0.5 s; the checkpoint never comes back.
    harness.advance(Duration::from_millis(950));
    assert!(!harness.session.is_ended(), "waiting for playedStream");
    harness.advance(Duration::from_millis(100));
    assert!(harness.session.is_ended(), "the margin is 500 ms");
}

#[test]
fn an_end_with_everything_already_heard_is_immediate() {
    let mut harness = Harness::new();
    greeting(&mut harness, 160 * 10);
    harness.provider(ProviderEvent::AudioDone {
        response_id: "r0".into(),
        item_id: "i0".into(),
    });
    harness.provider(ProviderEvent::ResponseDone {
        response_id: "r0".into(),
        status: ResponseStatus::Completed,
        usage: None,
    });
    harness.advance(Duration::from_millis(250));
    harness.input(Input::Played { name: "i0".into() });
    harness.provider(ProviderEvent::ResponseStarted {
        response_id: "r1".into(),
    });
    harness.provider(ProviderEvent::ToolCall {
        response_id: "r1".into(),
        call_id: "c".into(),
        name: "end_call".into(),
        arguments: "{}".into(),
    });
    harness.provider(ProviderEvent::ResponseDone {
        response_id: "r1".into(),
        status: ResponseStatus::Completed,
        usage: None,
    });
    assert!(harness.session.is_ended(), "nothing left to hear");
}

#[test]
fn a_person_asked_for_mid_reply_cuts_the_reply_and_hands_off_at_once() {
    let mut config = config();
    config.transfer = TransferConfig {
        rules: TransferRules::default(),
        targets: vec![always_open_target()],
        assigned: None,
        wall_start: chrono::Utc::now(),
    };
    let mut harness = Harness::new();
    harness.session = CallSession::new(config, harness.now);
    harness.provider(ProviderEvent::ResponseStarted {
        response_id: "r1".into(),
    });
    harness.audio("r1", "i1", 160 * 150); // a 3 s reply, still streaming
    harness.advance(Duration::from_millis(600));
    harness.take_actions();
    harness.provider(ProviderEvent::CallerTranscript {
        item_id: "u1".into(),
        text: "Can I please speak to a real person?".into(),
    });
    let actions = harness.take_actions();
    assert!(actions.contains(&Action::ClearPlivo), "{actions:?}");
    assert!(
        actions.iter().any(|action| matches!(
            action,
            Action::Provider(ProviderCommand::Interrupt {
                cancel_response: true,
                ..
            })
        )),
        "the reply is truncated and cancelled: {actions:?}"
    );
    let plan = actions
        .iter()
        .find_map(|action| match action {
            Action::Transfer(plan) => Some(plan.clone()),
            _ => None,
        })
        .expect("a transfer");
    assert_eq!(plan.handoff_line.as_deref(), Some(HANDOFF_LINE));
    assert!(
        harness.session.is_ended(),
        "nothing left to play: the hand-off starts now"
    );
    assert_eq!(actions.last(), Some(&Action::End(EndReason::Transferred)));
    // Late audio of the cut reply goes nowhere.
    let frames = harness.sent_frames.len();
    harness.audio("r1", "i1", 160 * 10);
    harness.advance(Duration::from_millis(200));
    assert_eq!(harness.sent_frames.len(), frames);
}

#[test]
fn a_person_asked_for_while_the_reply_is_being_written_cancels_it() {
    let mut config = config();
    config.transfer.rules = TransferRules::default();
    config.transfer.targets = vec![always_open_target()];
    let mut harness = Harness::new();
    harness.session = CallSession::new(config, harness.now);
    harness.provider(ProviderEvent::ResponseStarted {
        response_id: "r1".into(),
    });
    harness.provider(ProviderEvent::CallerTranscript {
        item_id: "u1".into(),
        text: "I want to talk to a real person".into(),
    });
    let actions = harness.take_actions();
    assert!(
        actions.contains(&Action::Provider(ProviderCommand::CancelResponse)),
        "{actions:?}"
    );
    assert!(harness.session.is_ended());
}

/// Runs one completed response that calls `tool` with `arguments`; returns the actions.
fn call_tool(harness: &mut Harness, response: &str, tool: &str, arguments: &str) -> Vec<Action> {
    harness.provider(ProviderEvent::ResponseStarted {
        response_id: response.into(),
    });
    harness.provider(ProviderEvent::ToolCall {
        response_id: response.into(),
        call_id: format!("call-{response}"),
        name: tool.into(),
        arguments: arguments.into(),
    });
    harness.provider(ProviderEvent::ResponseDone {
        response_id: response.into(),
        status: ResponseStatus::Completed,
        usage: None,
    });
    harness.take_actions()
}

fn tool_output(actions: &[Action]) -> Value {
    actions
        .iter()
        .find_map(|action| match action {
            Action::Provider(ProviderCommand::ToolResult { output, .. }) => Some(output.clone()),
            _ => None,
        })
        .expect("a tool result")
}

#[test]
fn a_callback_time_is_resolved_said_back_and_kept() {
    let mut config = config();
    // Monday 7 December 2026, 10:00 in New York.
    config.transfer.wall_start = "2026-12-07T15:00:00Z".parse().unwrap();
    config.schedule = CallSchedule {
        lead_timezone: Some("America/New_York".into()),
        campaign_timezone: "UTC".into(),
        organization_timezone: "UTC".into(),
        window: Some(CallingWindow {
            start: chrono::NaiveTime::from_hms_opt(9, 0, 0).unwrap(),
            end: chrono::NaiveTime::from_hms_opt(18, 0, 0).unwrap(),
            days: vec![1, 2, 3, 4, 5],
            starts_on: None,
            ends_on: None,
        }),
    };
    let mut harness = Harness::new();
    harness.session = CallSession::new(config, harness.now);

    // Unreadable: ask again, keep nothing.
    let actions = call_tool(
        &mut harness,
        "r1",
        "schedule_callback",
        r#"{"when":"whenever"}"#,
    );
    let output = tool_output(&actions);
    assert_eq!(output["ok"], false);
    assert_eq!(output["ask_again"], true);
    assert!(actions.contains(&Action::Provider(ProviderCommand::Continue)));
    assert_eq!(harness.session.stats().callback, None);

    // Readable: tomorrow 11:00 New York (16:00 UTC), said back in words.
    let actions = call_tool(
        &mut harness,
        "r2",
        "schedule_callback",
        r#"{"when":"tomorrow at 11"}"#,
    );
    let output = tool_output(&actions);
    assert_eq!(output["ok"], true, "{output}");
    assert_eq!(output["scheduled_for"], "2026-12-08T16:00:00+00:00");
    assert_eq!(output["say"], "tomorrow at 11 am, your time");
    assert!(actions.contains(&Action::Provider(ProviderCommand::Continue)));
    let callback = harness.session.stats().callback.clone().unwrap();
    assert_eq!(
        callback.at,
        "2026-12-08T16:00:00Z".parse::<DateTime<Utc>>().unwrap()
    );
    assert_eq!(callback.phrase, "tomorrow at 11");
    assert!(!callback.moved);

    // Outside the window (21:00): the next opening, Wednesday 09:00, said as such.
    let actions = call_tool(
        &mut harness,
        "r3",
        "schedule_callback",
        r#"{"when":"tomorrow at 9 pm"}"#,
    );
    let output = tool_output(&actions);
    assert_eq!(output["ok"], true, "{output}");
    assert_eq!(output["moved"], true);
    assert_eq!(output["scheduled_for"], "2026-12-09T14:00:00+00:00");
}

#[test]
fn an_opt_out_is_suppressed_at_once_and_the_agent_confirms() {
    let mut harness = Harness::new();
    let actions = call_tool(
        &mut harness,
        "r1",
        "opt_out",
        r#"{"reason":"stop calling me"}"#,
    );
    assert!(
        actions.contains(&Action::OptOut {
            reason: "stop calling me".into()
        }),
        "{actions:?}"
    );
    assert_eq!(
        tool_output(&actions),
        json!({"ok": true, "suppressed": true})
    );
    assert!(
        actions.contains(&Action::Provider(ProviderCommand::Continue)),
        "the agent confirms and says goodbye"
    );
    assert!(harness.session.stats().opted_out);
    assert!(!harness.session.is_ended(), "the agent still says goodbye");
}
