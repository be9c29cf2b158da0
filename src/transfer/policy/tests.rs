//! The transfer policy, table-driven: each trigger, each limit, business hours across timezones.

use chrono::{NaiveTime, TimeZone, Utc};
use serde_json::json;
use uuid::Uuid;

use super::*;

fn target(
    name: &str,
    department: &str,
    priority: i32,
    timezone: &str,
    hours: Option<(u32, u32)>,
) -> Target {
    Target {
        id: Uuid::new_v4(),
        name: name.to_owned(),
        department: department.to_owned(),
        phone_number: format!("+1415555{:04}", name.len() * 100 + priority as usize),
        priority,
        timezone: timezone.to_owned(),
        working_days: vec![1, 2, 3, 4, 5],
        hours: hours.map(|(start, end)| {
            (
                NaiveTime::from_hms_opt(start, 0, 0).unwrap(),
                NaiveTime::from_hms_opt(end, 0, 0).unwrap(),
            )
        }),
        active: true,
    }
}

#[test]
fn caller_requests_are_detected_in_many_phrasings() {
    let rules = TransferRules::default();
    for (words, expected) in [
        ("Can I talk to a real person?", Some("real person")),
        ("Agent, please!", Some("agent please")),
        (
            "I want to speak to someone about this",
            Some("speak to someone"),
        ),
        ("Just transfer me", Some("transfer me")),
        ("Is there an operator", Some("operator")),
        ("I would like to hear more about the price", None),
        ("The person next door bought one", None),
        ("", None),
    ] {
        let found = rules.detect_in_caller_words(words);
        match expected {
            Some(phrase) => assert_eq!(
                found,
                Some(Trigger::CallerAsked {
                    phrase: phrase.to_owned(),
                    words: words.trim().to_owned()
                }),
                "{words}"
            ),
            None => assert_eq!(found, None, "{words}"),
        }
    }
}

#[test]
fn agent_announcements_are_detected() {
    let rules = TransferRules::default();
    assert!(matches!(
        rules.detect_in_agent_words("Sure, I'm connecting you to a colleague now."),
        Some(Trigger::AgentAnnounced { .. })
    ));
    assert!(matches!(
        rules.detect_in_agent_words("Let me put you through to our sales team."),
        Some(Trigger::AgentAnnounced { .. })
    ));
    assert_eq!(
        rules.detect_in_agent_words("The flats have two bedrooms."),
        None
    );
}

#[test]
fn dtmf_qualified_unanswered_and_negative_triggers_follow_the_campaign() {
    let default = TransferRules::default();
    assert_eq!(
        default.detect_dtmf("0"),
        Some(Trigger::Dtmf { digit: "0".into() })
    );
    assert_eq!(default.detect_dtmf("5"), None);
    assert_eq!(default.detect_qualified("high"), None, "off by default");
    assert_eq!(default.detect_unanswered(10), None, "off by default");
    assert_eq!(
        default.detect_in_caller_words("This is ridiculous"),
        None,
        "sentiment rule off by default"
    );

    let rules = TransferRules::from_campaign_settings(&json!({"transfer": {
        "dtmf_key": "9", "when_qualified": true, "max_unanswered_turns": 2, "on_negative_sentiment": true,
        "caller_phrases": ["Supervisor"], "default_department": "Support", "fallback": "callback_and_hangup",
        "ring_timeout_secs": 500
    }}));
    assert_eq!(
        rules.detect_dtmf("9"),
        Some(Trigger::Dtmf { digit: "9".into() })
    );
    assert_eq!(rules.detect_dtmf("0"), None);
    assert_eq!(
        rules.detect_qualified("high"),
        Some(Trigger::Qualified {
            interest_level: "high".into()
        })
    );
    assert_eq!(rules.detect_qualified("medium"), None);
    assert_eq!(rules.detect_unanswered(1), None);
    assert_eq!(
        rules.detect_unanswered(2),
        Some(Trigger::UnansweredTurns { count: 2 })
    );
    assert!(matches!(
        rules.detect_in_caller_words("This is ridiculous!"),
        Some(Trigger::NegativeSentiment { .. })
    ));
    assert!(matches!(
        rules.detect_in_caller_words("get me your supervisor"),
        Some(Trigger::CallerAsked { .. })
    ));
    assert_eq!(
        rules.detect_in_caller_words("a real person"),
        None,
        "the campaign's phrases replace the defaults"
    );
    assert_eq!(rules.default_department, "support");
    assert_eq!(rules.fallback, Fallback::CallbackAndHangup);
    assert_eq!(rules.ring_timeout_secs, 120, "clamped");
    let no_key = TransferRules::from_campaign_settings(&json!({"transfer": {"dtmf_key": null}}));
    assert_eq!(no_key.detect_dtmf("0"), None);
}

#[test]
fn limits_refuse_or_offer_a_callback() {
    // Tuesday 2026-11-24 15:00 UTC.
    let now = Utc.with_ymd_and_hms(2026, 11, 24, 15, 0, 0).unwrap();
    let sales = [target("ana", "sales", 1, "UTC", Some((9, 17)))];
    let trigger = || Trigger::Tool {
        department: Some("sales".into()),
        reason: "interested".into(),
    };

    let off = TransferRules {
        enabled: false,
        ..TransferRules::default()
    };
    assert!(
        matches!(decide(&off, false, trigger(), &sales, None, now), Decision::Refused { reason, .. } if reason.contains("does not allow"))
    );
    assert!(
        matches!(decide(&TransferRules::default(), true, trigger(), &sales, None, now), Decision::Refused { reason, .. } if reason.contains("already in progress"))
    );

    let late = Utc.with_ymd_and_hms(2026, 11, 24, 18, 0, 0).unwrap();
    assert!(
        matches!(decide(&TransferRules::default(), false, trigger(), &sales, None, late), Decision::OfferCallback { reason, .. } if reason == "sales is closed now")
    );
    let support = Trigger::Tool {
        department: Some("support".into()),
        reason: "billing".into(),
    };
    assert!(
        matches!(decide(&TransferRules::default(), false, support, &sales, None, now), Decision::OfferCallback { reason, .. } if reason == "no active support target")
    );
}

#[test]
fn targets_are_ordered_assigned_agent_first_then_by_priority() {
    let now = Utc.with_ymd_and_hms(2026, 11, 24, 15, 0, 0).unwrap();
    let targets = [
        target("bob", "sales", 20, "UTC", None),
        target("ana", "sales", 10, "UTC", None),
        target("sam", "support", 1, "UTC", None),
        Target {
            active: false,
            ..target("old", "sales", 0, "UTC", None)
        },
    ];
    let assigned = target("lee", "sales", 99, "UTC", None);
    let Decision::Transfer {
        targets: ordered,
        department,
        ..
    } = decide(
        &TransferRules::default(),
        false,
        Trigger::Dtmf { digit: "0".into() },
        &targets,
        Some(&assigned),
        now,
    )
    else {
        panic!("expected a transfer");
    };
    assert_eq!(department, "sales");
    let names: Vec<&str> = ordered.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["lee", "ana", "bob"]);
    let rules = TransferRules {
        prefer_assigned_agent: false,
        ..TransferRules::default()
    };
    let Decision::Transfer {
        targets: ordered, ..
    } = decide(
        &rules,
        false,
        Trigger::Dtmf { digit: "0".into() },
        &targets,
        Some(&assigned),
        now,
    )
    else {
        panic!("expected a transfer");
    };
    assert_eq!(
        ordered.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        ["ana", "bob"]
    );
}

#[test]
fn business_hours_are_read_in_the_targets_own_timezone() {
    let kolkata = target("priya", "sales", 1, "Asia/Kolkata", Some((9, 18)));
    let new_york = target("jo", "sales", 1, "America/New_York", Some((9, 17)));
    for (utc, expect_kolkata, expect_new_york) in [
        // Tuesday 04:00 UTC = 09:30 in Kolkata, 23:00 Monday in New York.
        (
            Utc.with_ymd_and_hms(2026, 11, 24, 4, 0, 0).unwrap(),
            true,
            false,
        ),
        // Tuesday 15:00 UTC = 20:30 in Kolkata (closed), 10:00 in New York.
        (
            Utc.with_ymd_and_hms(2026, 11, 24, 15, 0, 0).unwrap(),
            false,
            true,
        ),
        // Saturday 15:00 UTC: a weekend for both.
        (
            Utc.with_ymd_and_hms(2026, 11, 28, 15, 0, 0).unwrap(),
            false,
            false,
        ),
        // Across the DST change: 2026-03-09 13:30 UTC is 09:30 EDT (open); on 2026-03-06 it is 08:30 EST (closed).
        (
            Utc.with_ymd_and_hms(2026, 3, 9, 13, 30, 0).unwrap(),
            false,
            true,
        ),
        (
            Utc.with_ymd_and_hms(2026, 3, 6, 13, 30, 0).unwrap(),
            false,
            false,
        ),
    ] {
        assert_eq!(kolkata.is_open(utc), expect_kolkata, "Kolkata at {utc}");
        assert_eq!(new_york.is_open(utc), expect_new_york, "New York at {utc}");
    }
    let inactive = Target {
        active: false,
        ..target("x", "sales", 1, "UTC", None)
    };
    assert!(!inactive.is_open(Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap()));
}

#[test]
fn triggers_carry_their_evidence() {
    let trigger = TransferRules::default()
        .detect_in_caller_words("Can I talk to a real person?")
        .unwrap();
    assert_eq!(trigger.kind(), "caller_asked");
    assert_eq!(
        trigger.reason(),
        "the caller asked for a person: \"Can I talk to a real person?\""
    );
    assert_eq!(
        Trigger::Dtmf { digit: "0".into() }.reason(),
        "the caller pressed 0"
    );
}
