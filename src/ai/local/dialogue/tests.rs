use serde_json::json;
use speech::intent::Intent;

use super::*;

fn context() -> CallContext {
    CallContext {
        organization_name: "Acme Homes".into(),
        lead_name: "Priya Sharma".into(),
        campaign_name: "Spring launch".into(),
        language: "en".into(),
        project_name: Some("Lakeside Towers".into()),
        project_description: Some("Two and three bedroom flats by the lake.".into()),
        project_facts: json!({"price": "Flats start at eighty lakh", "parking": "Every flat has one covered parking space"}),
        script: json!({
            "questions": ["Are you looking to buy this year?", "Would a site visit this weekend work?"],
            "objection_reply": "I understand. It only takes a minute, and prices go up next month. Shall I tell you more?",
            "vocabulary": ["site visit"],
            "examples": {"interested": ["count me in"], "bogus_intent": ["ignored"]}
        }),
        ..CallContext::default()
    }
}

fn dialogue() -> Dialogue {
    let context = context();
    Dialogue::new(&context, Script::for_call(&context))
}

fn tool_names(reply: &Reply) -> Vec<&'static str> {
    reply.tools.iter().map(|tool| tool.name).collect()
}

#[test]
fn script_reads_the_campaign_over_project_defaults() {
    let script = Script::for_call(&context());
    assert_eq!(script.questions.len(), 2);
    assert!(script.pitch.contains("by the lake"), "{}", script.pitch);
    assert!(script.objection_reply.is_some());
    assert_eq!(
        script.examples,
        vec![(Intent::Interested, "count me in".to_owned())]
    );
    assert!(script.stt_prompt().contains("Lakeside Towers"));
    assert!(script.stt_prompt().contains("site visit"));
    assert_eq!(script.facts.len(), 2);

    let bare = CallContext {
        campaign_name: "Spring launch".into(),
        lead_name: "Sam".into(),
        ..CallContext::default()
    };
    let script = Script::for_call(&bare);
    assert_eq!(script.questions.len(), 1, "one default question");
    assert!(script.objection_reply.is_none());
    assert!(script.voicemail_message.contains("Sam"));
}

#[test]
fn an_interested_caller_is_pitched_qualified_and_handed_over() {
    let mut d = dialogue();
    assert!(d.greeting().text.contains("Priya"));
    let pitch = d.on_caller("yes sure", Some(Intent::Interested)).unwrap();
    assert!(pitch.text.contains("by the lake"));
    assert!(pitch.text.contains("buy this year"));
    assert!(pitch.tools.is_empty());
    let next = d.on_caller("yes", Some(Intent::Interested)).unwrap();
    assert!(next.text.contains("site visit"));
    let handover = d
        .on_caller("yes that works", Some(Intent::Interested))
        .unwrap();
    assert_eq!(
        tool_names(&handover),
        vec!["record_outcome", "transfer_to_human"]
    );
    assert_eq!(handover.tools[0].arguments["interest_level"], "high");
    assert!(handover.text.contains("connect you"));
    assert!(d.summary().contains("handed over"), "{}", d.summary());
    assert!(d.summary().contains("yes to 2 of 2"), "{}", d.summary());
    // Words while the hand-off runs get a holding line, no second transfer.
    let hold = d.on_caller("hello?", Some(Intent::Question)).unwrap();
    assert!(hold.tools.is_empty());
}

#[test]
fn a_refused_hand_off_becomes_a_callback_offer() {
    let mut d = dialogue();
    d.on_caller("can I speak to a real person", Some(Intent::WantsHuman))
        .unwrap();
    d.on_tool_result(
        "transfer_to_human",
        &json!({"ok": false, "message": "nobody"}),
    );
    let offer = d.on_continue().expect("apology and callback offer");
    assert!(offer.text.contains("call you back"));
    assert_eq!(d.on_continue(), None, "said once");
    let ask = d.on_caller("yes please", Some(Intent::Interested)).unwrap();
    assert!(ask.text.contains("When"));
    let noted = d.on_caller("tomorrow morning", None).unwrap();
    assert_eq!(
        tool_names(&noted),
        vec!["schedule_callback", "record_outcome"]
    );
    assert_eq!(noted.tools[0].arguments["when"], "tomorrow morning");
}

#[test]
fn the_sessions_apology_is_not_repeated() {
    let mut d = dialogue();
    d.on_caller("real person please", Some(Intent::WantsHuman));
    let said = d.on_say("Sorry, nobody is free. Shall I arrange a callback?");
    assert!(said.text.starts_with("Sorry"));
    d.on_tool_result("transfer_to_human", &json!({"ok": false}));
    assert_eq!(d.on_continue(), None);
}

#[test]
fn callbacks_take_the_time_the_caller_names_or_ask_for_one() {
    let mut d = dialogue();
    let reply = d
        .on_caller(
            "I'm busy, call me back tomorrow evening",
            Some(Intent::CallBack),
        )
        .unwrap();
    assert_eq!(reply.tools[0].name, "schedule_callback");
    assert_eq!(reply.tools[0].arguments["when"], "tomorrow evening");
    assert!(d.summary().contains("called back tomorrow evening"));

    let mut d = dialogue();
    let ask = d
        .on_caller("can you call me later", Some(Intent::CallBack))
        .unwrap();
    // "later" is a time: scheduled at once.
    assert_eq!(ask.tools[0].arguments["when"], "later");

    let mut d = dialogue();
    let ask = d
        .on_caller("not a good time", Some(Intent::CallBack))
        .unwrap();
    assert!(ask.tools.is_empty());
    assert!(ask.text.contains("When"));
    let done = d.on_caller("on friday at 5 pm", None).unwrap();
    assert_eq!(done.tools[0].arguments["when"], "on friday at 5 pm");
}

#[test]
fn not_interested_gets_one_objection_reply_then_a_polite_close() {
    let mut d = dialogue();
    let objection = d
        .on_caller("no thanks", Some(Intent::NotInterested))
        .unwrap();
    assert!(objection.text.contains("prices go up"));
    assert!(objection.tools.is_empty());
    let close = d
        .on_caller("no really not interested", Some(Intent::NotInterested))
        .unwrap();
    assert_eq!(tool_names(&close), vec!["record_outcome", "end_call"]);
    assert_eq!(close.tools[0].arguments["interest_level"], "low");
    assert!(d.summary().contains("not interested"));

    let mut bare = CallContext {
        lead_name: "Sam".into(),
        ..CallContext::default()
    };
    bare.script = json!({});
    let mut d = Dialogue::new(&bare, Script::for_call(&bare));
    let close = d.on_caller("no", Some(Intent::NotInterested)).unwrap();
    assert_eq!(close.tools[0].arguments["interest_level"], "none");
}

#[test]
fn questions_are_answered_from_facts_or_offered_to_a_colleague() {
    let mut d = dialogue();
    let price = d
        .on_caller("how much does it cost", Some(Intent::AsksPrice))
        .unwrap();
    assert!(price.text.starts_with("Flats start at eighty lakh."));
    assert!(price.text.contains("buy this year"), "back to the question");
    let parking = d
        .on_caller("is there parking?", Some(Intent::Question))
        .unwrap();
    assert!(parking.text.contains("covered parking"));
    let unknown = d
        .on_caller("do you allow pets", Some(Intent::Question))
        .unwrap();
    assert!(unknown.text.contains("colleague"));
    assert!(unknown.tools.is_empty());
    let handover = d.on_caller("yes please", Some(Intent::Interested)).unwrap();
    assert_eq!(tool_names(&handover)[1], "transfer_to_human");
    assert!(d.summary().contains("Asked about: price, parking"));
}

#[test]
fn voicemail_and_wrong_person_end_the_call() {
    let mut d = dialogue();
    let reply = d
        .on_caller(
            "You have reached Priya. Please leave a message after the tone.",
            Some(Intent::Voicemail),
        )
        .unwrap();
    assert!(reply.text.contains("Lakeside Towers"));
    assert_eq!(reply.tools[1].name, "end_call");
    assert_eq!(reply.tools[1].arguments["voicemail"], true);
    assert!(d.summary().contains("voicemail"));

    let mut d = dialogue();
    let reply = d
        .on_caller("there is no Priya here", Some(Intent::WrongPerson))
        .unwrap();
    assert_eq!(reply.tools[0].arguments["notes"], "wrong person");
}

#[test]
fn unclear_words_are_asked_again_twice_then_the_call_ends() {
    let mut d = dialogue();
    let again = d.on_caller("mmh blorp", None).unwrap();
    assert!(again.text.starts_with("Sorry, I didn't catch that."));
    assert!(again.text.contains("minute"));
    assert!(d.on_caller("hm", None).unwrap().tools.is_empty());
    let end = d.on_caller("zzz", None).unwrap();
    assert_eq!(tool_names(&end), vec!["record_outcome", "end_call"]);
    assert_eq!(d.on_caller("   ", None), None, "silence is no turn");
}

#[test]
fn a_closing_cut_short_is_said_again_ending_the_call_again() {
    let mut d = dialogue();
    d.on_caller("no", Some(Intent::NotInterested)); // the objection reply
    d.on_caller("no", Some(Intent::NotInterested));
    let again = d.on_caller("sorry what", None).unwrap();
    assert_eq!(tool_names(&again), vec!["end_call"]);
    assert!(again.text.contains("Goodbye"));

    // A callback is scheduled before its closing: only the end is repeated.
    let mut d = dialogue();
    d.on_caller("call me back tomorrow", Some(Intent::CallBack));
    d.on_tool_result(
        "schedule_callback",
        &scheduled("tomorrow at 9 am, your time"),
    );
    d.on_continue().unwrap();
    d.on_cut_short();
    let again = d.on_caller("sorry what", None).unwrap();
    assert_eq!(tool_names(&again), vec!["end_call"]);
    assert_eq!(again.tools[0].arguments["reason"], "callback scheduled");
}

#[test]
fn times_are_found_in_words() {
    assert_eq!(find_time("call me tomorrow"), Some("tomorrow".into()));
    assert_eq!(
        find_time("maybe next week on monday"),
        Some("next week on monday".into())
    );
    assert_eq!(find_time("at 5:30 pm please"), Some("at 5:30 pm".into()));
    assert_eq!(find_time("in an hour"), Some("in an hour".into()));
    assert_eq!(find_time("I am busy"), None);
}

/// The gateway's answer to a scheduled callback.
fn scheduled(say: &str) -> serde_json::Value {
    json!({"ok": true, "scheduled_for": "2026-12-11T17:00:00Z", "say": say, "moved": false})
}

const OPT_OUT_TOOLS: [&str; 3] = ["opt_out", "record_outcome", "end_call"];

#[test]
fn an_opt_out_is_confirmed_suppressed_recorded_and_ended_in_one_reply() {
    let mut d = dialogue();
    let words = "Please take my number off your list.";
    let reply = d.on_caller(words, Some(Intent::OptOut)).unwrap();
    assert_eq!(
        reply.text,
        "I understand. I've taken your number off our list, and you won't be called again. Goodbye."
    );
    assert_eq!(tool_names(&reply), OPT_OUT_TOOLS);
    assert_eq!(reply.tools[0].arguments, json!({"reason": words}));
    assert_eq!(
        reply.tools[1].arguments,
        json!({"interest_level": "none", "notes": "asked not to be called again"})
    );
    assert_eq!(
        reply.tools[2].arguments,
        json!({"reason": "the caller opted out"})
    );
    assert!(
        d.summary()
            .starts_with("Priya asked not to be called again."),
        "{}",
        d.summary()
    );
    let outcome = d.outcome();
    assert!(outcome.opted_out);
    assert!(outcome.not_interested);
    assert_eq!(outcome.interest, Some("none"));
    assert_eq!(outcome.callback_when, None);
}

#[test]
fn a_long_opt_out_is_shortened_for_the_tool() {
    let mut d = dialogue();
    let words = "listen I have told you people three times already so please stop calling me at \
                 home and at work";
    let reply = d.on_caller(words, Some(Intent::OptOut)).unwrap();
    let reason = reply.tools[0].arguments["reason"].as_str().unwrap();
    assert_eq!(
        reason,
        "listen I have told you people three times already so please stop calling me at…"
    );
}

#[test]
fn an_opt_out_is_honoured_at_every_stage() {
    /// What the caller said before opting out.
    type Turns = &'static [(&'static str, Option<Intent>)];
    let cases: &[(&str, Turns)] = &[
        ("opening", &[]),
        ("qualifying", &[("yes", Some(Intent::Interested))]),
        (
            "after the objection reply",
            &[("no", Some(Intent::NotInterested))],
        ),
        ("asked for a time", &[("not now", Some(Intent::CallBack))]),
        (
            "offered a colleague",
            &[("do you allow pets", Some(Intent::Question))],
        ),
        (
            "noting a callback",
            &[("call me tomorrow", Some(Intent::CallBack))],
        ),
        (
            "during a hand-off",
            &[("real person please", Some(Intent::WantsHuman))],
        ),
        (
            "after a goodbye",
            &[
                ("no", Some(Intent::NotInterested)),
                ("no", Some(Intent::NotInterested)),
            ],
        ),
        (
            "after a callback's goodbye",
            &[("call me tomorrow", Some(Intent::CallBack))],
        ),
    ];
    for (stage, before) in cases {
        let mut d = dialogue();
        for (words, intent) in *before {
            d.on_caller(words, *intent);
        }
        if *stage == "after a callback's goodbye" {
            d.on_tool_result("schedule_callback", &scheduled("tomorrow at 9 am"));
            d.on_continue().unwrap();
        }
        let reply = d
            .on_caller("stop calling me", Some(Intent::OptOut))
            .unwrap_or_else(|| panic!("{stage}: no reply"));
        assert_eq!(tool_names(&reply), OPT_OUT_TOOLS, "{stage}");
        assert!(d.outcome().opted_out, "{stage}");
        assert!(
            d.summary().contains("asked not to be called again"),
            "{stage}: {}",
            d.summary()
        );
    }

    // Asked for a callback time, an opt-out is not a time.
    let mut d = dialogue();
    d.on_caller("not a good time", Some(Intent::CallBack));
    let reply = d
        .on_caller("never call me again", Some(Intent::OptOut))
        .unwrap();
    assert!(!tool_names(&reply).contains(&"schedule_callback"));
    // A pending callback answered after an opt-out says nothing more.
    let mut d = dialogue();
    d.on_caller("call me tomorrow", Some(Intent::CallBack));
    d.on_caller("actually, stop calling me", Some(Intent::OptOut));
    d.on_tool_result("schedule_callback", &scheduled("tomorrow at 9 am"));
    assert_eq!(d.on_continue(), None);
    assert_eq!(d.outcome().callback_when, None);
}

#[test]
fn a_voicemail_greeting_cannot_opt_anyone_out() {
    let mut d = dialogue();
    d.on_caller(
        "you have reached Priya, leave a message",
        Some(Intent::Voicemail),
    );
    let reply = d
        .on_caller("and please do not call this number", Some(Intent::OptOut))
        .unwrap();
    assert_eq!(tool_names(&reply), vec!["end_call"]);
    assert_eq!(reply.tools[0].arguments["voicemail"], true);
    assert!(!d.outcome().opted_out);
}

#[test]
fn after_an_opt_out_only_the_end_is_repeated_unless_its_reply_was_cut_short() {
    let mut d = dialogue();
    d.on_caller("remove me from your list", Some(Intent::OptOut));
    // The reply played; the caller talks on.
    let again = d.on_caller("goodbye", None).unwrap();
    assert_eq!(tool_names(&again), vec!["end_call"]);
    assert_eq!(again.tools[0].arguments["reason"], "the caller opted out");
    let again = d
        .on_caller("and don't call me again", Some(Intent::OptOut))
        .unwrap();
    assert_eq!(tool_names(&again), vec!["end_call"]);

    // Cut short before its tools ran: the whole opt-out again, with the first reason.
    let mut d = dialogue();
    d.on_caller("remove me from your list", Some(Intent::OptOut));
    d.on_cut_short();
    let again = d.on_caller("hello?", None).unwrap();
    assert_eq!(tool_names(&again), OPT_OUT_TOOLS);
    assert_eq!(
        again.tools[0].arguments["reason"],
        "remove me from your list"
    );
    assert!(again.text.contains("off our list"));
    // Once: that reply played out.
    assert_eq!(
        tool_names(&d.on_caller("bye", None).unwrap()),
        vec!["end_call"]
    );

    // The gateway answered the opt-out, so it ran: never twice.
    let mut d = dialogue();
    d.on_caller("remove me from your list", Some(Intent::OptOut));
    d.on_tool_result("opt_out", &json!({"ok": true, "suppressed": true}));
    d.on_cut_short();
    let again = d.on_caller("hello?", None).unwrap();
    assert_eq!(tool_names(&again), vec!["end_call"]);
}

#[test]
fn a_callback_is_noted_then_confirmed_with_the_gateways_time() {
    let mut d = dialogue();
    let noted = d
        .on_caller(
            "I'm driving, call me back tomorrow evening",
            Some(Intent::CallBack),
        )
        .unwrap();
    assert_eq!(noted.text, "Let me note that.");
    assert_eq!(
        tool_names(&noted),
        vec!["schedule_callback", "record_outcome"]
    );
    assert_eq!(
        noted.tools[0].arguments,
        json!({"when": "tomorrow evening"})
    );
    assert_eq!(
        noted.tools[1].arguments,
        json!({"interest_level": "medium", "notes": "asked for a callback tomorrow evening"})
    );
    // Before the gateway answers, the request is what is known.
    assert_eq!(
        d.outcome().callback_when.as_deref(),
        Some("tomorrow evening")
    );
    // A `Continue` for another tool's result says nothing.
    d.on_tool_result("record_outcome", &json!({"ok": true}));
    assert_eq!(d.on_continue(), None);
    d.on_tool_result(
        "schedule_callback",
        &scheduled("Friday the 11th at 5 pm, your time"),
    );
    let confirmed = d.on_continue().unwrap();
    assert_eq!(
        confirmed.text,
        "Great, I'll call you back Friday the 11th at 5 pm, your time. Thank you, Priya. Goodbye."
    );
    assert_eq!(tool_names(&confirmed), vec!["end_call"]);
    assert_eq!(confirmed.tools[0].arguments["reason"], "callback scheduled");
    assert_eq!(d.on_continue(), None, "said once");
    assert_eq!(
        d.summary(),
        "Priya asked to be called back tomorrow evening; the callback is set for Friday the \
         11th at 5 pm, your time. Caller turns: 1 (call_back)."
    );
    let outcome = d.outcome();
    assert_eq!(
        outcome.callback_when.as_deref(),
        Some("Friday the 11th at 5 pm, your time")
    );
    assert_eq!(outcome.interest, Some("medium"));
    assert!(!outcome.not_interested);
}

#[test]
fn a_callback_moved_into_the_calling_window_says_so_in_the_summary() {
    let mut d = dialogue();
    d.on_caller("call me at 11 pm tonight", Some(Intent::CallBack));
    d.on_tool_result(
        "schedule_callback",
        &json!({"ok": true, "scheduled_for": "2026-12-12T09:00:00Z", "say": "tomorrow at 9 am, your time", "moved": true}),
    );
    let confirmed = d.on_continue().unwrap();
    assert!(
        confirmed
            .text
            .contains("call you back tomorrow at 9 am, your time")
    );
    assert!(
        d.summary()
            .contains("set for tomorrow at 9 am, your time (moved into the calling window)"),
        "{}",
        d.summary()
    );
}

#[test]
fn a_callback_answer_without_words_to_say_uses_the_callers() {
    // The gateway before this change answers `{"ok": true, "scheduled_for": <the words>}`.
    let mut d = dialogue();
    d.on_caller("call me back tomorrow evening", Some(Intent::CallBack));
    d.on_tool_result(
        "schedule_callback",
        &json!({"ok": true, "scheduled_for": "tomorrow evening"}),
    );
    let confirmed = d.on_continue().unwrap();
    assert_eq!(
        confirmed.text,
        "Great, I'll call you back tomorrow evening. Thank you, Priya. Goodbye."
    );
    assert_eq!(
        d.summary(),
        "Priya asked to be called back tomorrow evening. Caller turns: 1 (call_back)."
    );
}

#[test]
fn an_unreadable_time_is_asked_again_then_scheduled() {
    let mut d = dialogue();
    d.on_caller("call me back later", Some(Intent::CallBack));
    d.on_tool_result(
        "schedule_callback",
        &json!({"ok": false, "error": "could not read a time from `later`", "ask_again": true}),
    );
    let ask = d.on_continue().unwrap();
    assert_eq!(
        ask.text,
        "Sorry, I didn't catch the time. When would suit you, for example tomorrow at 11?"
    );
    assert!(ask.tools.is_empty(), "nothing ended");
    assert_eq!(d.outcome().callback_when, None);
    assert!(
        d.summary()
            .contains("hung up before the conversation ended"),
        "{}",
        d.summary()
    );
    // The answer names the time, whatever its intent.
    let noted = d.on_caller("tomorrow at 11", None).unwrap();
    assert_eq!(noted.tools[0].arguments["when"], "tomorrow at 11");
    d.on_tool_result(
        "schedule_callback",
        &scheduled("tomorrow at 11 am, your time"),
    );
    let confirmed = d.on_continue().unwrap();
    assert!(confirmed.text.contains("tomorrow at 11 am, your time"));
    assert_eq!(tool_names(&confirmed), vec!["end_call"]);
}

#[test]
fn a_time_that_stays_unreadable_ends_the_call_politely() {
    let unreadable = json!({"ok": false, "error": "could not read a time", "ask_again": true});
    let mut d = dialogue();
    d.on_caller("call me back later", Some(Intent::CallBack));
    for _ in 0..MAX_TIME_REPROMPTS {
        d.on_tool_result("schedule_callback", &unreadable);
        assert!(d.on_continue().unwrap().tools.is_empty());
        d.on_caller("whenever", None).unwrap();
    }
    d.on_tool_result("schedule_callback", &unreadable);
    let end = d.on_continue().unwrap();
    assert_eq!(tool_names(&end), vec!["end_call"]);
    assert!(end.text.contains("couldn't note a time"), "{}", end.text);
    assert!(
        d.summary().contains("no time could be read"),
        "{}",
        d.summary()
    );
}

#[test]
fn a_callback_after_the_campaign_ends_is_apologised_for() {
    let mut d = dialogue();
    d.on_caller("call me back next month", Some(Intent::CallBack));
    d.on_tool_result(
        "schedule_callback",
        &json!({"ok": false, "error": "the campaign ends on 2026-12-20", "ask_again": false}),
    );
    let end = d.on_continue().unwrap();
    assert_eq!(
        end.text,
        "I'm sorry, we can't arrange a call back then. Thank you for your time, Priya. Goodbye."
    );
    assert_eq!(tool_names(&end), vec!["end_call"]);
    assert_eq!(d.outcome().callback_when, None);
    assert!(
        d.summary()
            .contains("asked to be called back next month, but the campaign ends before then"),
        "{}",
        d.summary()
    );
}

#[test]
fn words_while_the_callback_is_noted_wait_for_the_gateways_answer() {
    let mut d = dialogue();
    d.on_caller("call me tomorrow", Some(Intent::CallBack));
    assert_eq!(d.on_caller("at 5 if you can", None), None);
    d.on_tool_result("schedule_callback", &scheduled("tomorrow at 9 am"));
    assert!(d.on_continue().unwrap().text.contains("tomorrow at 9 am"));
    assert_eq!(d.summary().matches("unclear").count(), 1, "{}", d.summary());
}

#[test]
fn a_callback_request_cut_short_asks_for_the_time_again() {
    let mut d = dialogue();
    d.on_caller("call me tomorrow", Some(Intent::CallBack));
    // The barge-in cancelled "Let me note that." before schedule_callback ran.
    d.on_cut_short();
    assert_eq!(d.outcome().callback_when, None);
    let noted = d.on_caller("no, on friday at 5 pm", None).unwrap();
    assert_eq!(noted.tools[0].name, "schedule_callback");
    assert_eq!(noted.tools[0].arguments["when"], "on friday at 5 pm");
}

#[test]
fn the_outcome_reports_objections_refusals_and_wishes() {
    let fresh = dialogue().outcome();
    assert_eq!(fresh, DialogueOutcome::default());

    // The objection reply answered a price objection; the caller declined.
    let mut d = dialogue();
    d.on_caller("no thanks, it's too expensive", Some(Intent::NotInterested));
    d.on_caller("no, we already have one", Some(Intent::NotInterested));
    let outcome = d.outcome();
    assert_eq!(outcome.objections, vec!["price", "already has one"]);
    assert!(outcome.not_interested);
    assert_eq!(outcome.interest, Some("low"));
    assert!(!outcome.opted_out && !outcome.wants_human);

    // Asked the price, then declined: price (not while the objection reply may still win).
    let mut d = dialogue();
    d.on_caller("how much does it cost", Some(Intent::AsksPrice));
    d.on_caller("no", Some(Intent::NotInterested));
    assert!(d.outcome().objections.is_empty());
    d.on_caller("no", Some(Intent::NotInterested));
    assert_eq!(d.outcome().objections, vec!["price"]);
    d.on_caller("no, it costs too much", Some(Intent::NotInterested));
    assert_eq!(d.outcome().objections, vec!["price"], "once");
    // Asked the price and stayed: no objection.
    let mut d = dialogue();
    d.on_caller("how much does it cost", Some(Intent::AsksPrice));
    d.on_caller("yes", Some(Intent::Interested));
    assert!(d.outcome().objections.is_empty());
    assert!(!d.outcome().not_interested);

    // Asked for a person.
    let mut d = dialogue();
    d.on_caller("can I talk to a human", Some(Intent::WantsHuman));
    let outcome = d.outcome();
    assert!(outcome.wants_human);
    assert_eq!(outcome.interest, Some("medium"));
    // Accepted the offer of a colleague.
    let mut d = dialogue();
    d.on_caller("do you allow pets", Some(Intent::Question));
    assert!(!d.outcome().wants_human);
    d.on_caller("yes please", Some(Intent::Interested));
    assert!(d.outcome().wants_human);
    // Qualified and handed over for interest, not at their asking.
    let mut d = dialogue();
    for _ in 0..3 {
        d.on_caller("yes", Some(Intent::Interested));
    }
    let outcome = d.outcome();
    assert_eq!(outcome.interest, Some("high"));
    assert!(!outcome.wants_human);
}
