//! Every current status against representative calls, cell by cell.

use super::*;

use LeadStatus::{Contacted, Converted, Lost, New, Qualified};

/// The columns of `TABLE`'s expectations.
const CURRENT: [LeadStatus; 5] = [New, Contacted, Qualified, Converted, Lost];

const REACHED: CallFacts = CallFacts {
    reached: true,
    transfer_accepted: false,
    interest: None,
    opted_out: false,
    not_interested: false,
};

const EVERYTHING_BUT_REACHED: CallFacts = CallFacts {
    reached: false,
    transfer_accepted: true,
    interest: Some(Interest::High),
    opted_out: true,
    not_interested: true,
};

fn interest(level: Interest) -> Option<Interest> {
    Some(level)
}

/// (call, facts, status after it from each of `CURRENT`).
fn table() -> Vec<(&'static str, CallFacts, [LeadStatus; 5])> {
    vec![
        (
            "not reached",
            CallFacts::default(),
            [New, Contacted, Qualified, Converted, Lost],
        ),
        (
            "not reached, contradictory facts ignored",
            EVERYTHING_BUT_REACHED,
            [New, Contacted, Qualified, Converted, Lost],
        ),
        (
            "reached, nothing recorded",
            REACHED,
            [Contacted, Contacted, Qualified, Converted, Lost],
        ),
        (
            "reached, interest medium",
            CallFacts {
                interest: interest(Interest::Medium),
                ..REACHED
            },
            [Contacted, Contacted, Qualified, Converted, Lost],
        ),
        (
            "reached, interest low",
            CallFacts {
                interest: interest(Interest::Low),
                ..REACHED
            },
            [Contacted, Contacted, Qualified, Converted, Lost],
        ),
        (
            "interest high",
            CallFacts {
                interest: interest(Interest::High),
                ..REACHED
            },
            [Qualified, Qualified, Qualified, Converted, Qualified],
        ),
        (
            "transfer accepted",
            CallFacts {
                transfer_accepted: true,
                ..REACHED
            },
            [Qualified, Qualified, Qualified, Converted, Qualified],
        ),
        (
            "not interested",
            CallFacts {
                not_interested: true,
                ..REACHED
            },
            [Lost, Lost, Qualified, Converted, Lost],
        ),
        (
            "interest none",
            CallFacts {
                interest: interest(Interest::None),
                ..REACHED
            },
            [Lost, Lost, Qualified, Converted, Lost],
        ),
        (
            "not interested, interest medium",
            CallFacts {
                not_interested: true,
                interest: interest(Interest::Medium),
                ..REACHED
            },
            [Lost, Lost, Qualified, Converted, Lost],
        ),
        (
            "opted out",
            CallFacts {
                opted_out: true,
                ..REACHED
            },
            [Lost, Lost, Lost, Converted, Lost],
        ),
        (
            "opted out after a transfer and high interest",
            CallFacts {
                opted_out: true,
                transfer_accepted: true,
                interest: interest(Interest::High),
                ..REACHED
            },
            [Lost, Lost, Lost, Converted, Lost],
        ),
        (
            "not interested, then a human took the transfer",
            CallFacts {
                not_interested: true,
                transfer_accepted: true,
                ..REACHED
            },
            [Qualified, Qualified, Qualified, Converted, Qualified],
        ),
        (
            "not interested, then interest high",
            CallFacts {
                not_interested: true,
                interest: interest(Interest::High),
                ..REACHED
            },
            [Qualified, Qualified, Qualified, Converted, Qualified],
        ),
        (
            "interest none, but a human took the transfer",
            CallFacts {
                interest: interest(Interest::None),
                transfer_accepted: true,
                ..REACHED
            },
            [Qualified, Qualified, Qualified, Converted, Qualified],
        ),
    ]
}

#[test]
fn every_status_against_every_call() {
    let mut failures = Vec::new();
    for (call, facts, expected) in table() {
        for (current, expected) in CURRENT.into_iter().zip(expected) {
            let actual = next_status(current, &facts);
            if actual != expected {
                failures.push(format!("{current} + {call}: {actual}, expected {expected}"));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn converted_and_unreached_never_change_and_a_call_applied_twice_changes_nothing_more() {
    for (call, facts, _) in table() {
        assert_eq!(next_status(Converted, &facts), Converted, "{call}");
        let unreached = CallFacts {
            reached: false,
            ..facts
        };
        for current in LeadStatus::ALL.iter().copied() {
            assert_eq!(next_status(current, &unreached), current, "{call}");
            let once = next_status(current, &facts);
            assert_eq!(next_status(once, &facts), once, "{current} + {call} twice");
        }
    }
}

#[test]
fn spellings_are_the_database_check_constraint() {
    let schema = include_str!("../../../migrations/20261121000003_seed_schema.sql");
    let check = schema
        .split("CONSTRAINT leads_status_check")
        .nth(1)
        .and_then(|rest| rest.split("CHECK (status IN (").nth(1))
        .and_then(|rest| rest.split("))").next())
        .expect("the leads_status_check constraint");
    let allowed: Vec<&str> = check
        .split(',')
        .map(|value| value.trim().trim_matches('\''))
        .collect();
    let ours: Vec<&str> = LeadStatus::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(ours, allowed);
    for status in LeadStatus::ALL.iter().copied() {
        assert_eq!(LeadStatus::parse(status.as_str()), Some(status));
        assert_eq!(
            serde_json::to_value(status).unwrap(),
            serde_json::json!(status.as_str())
        );
    }
    assert_eq!(LeadStatus::parse("won"), None);
}
