//! The demo's callers: what each says and what the gateway must make of it. The end-to-end
//! tests run the same scenarios and assert the expectations.

/// One thing the caller says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line {
    /// Waits until the agent has spoken and fallen silent, then says this.
    AfterAgent(&'static str),
    /// Says this as soon as the line opens, over the agent's greeting (a voicemail greeting).
    AtOnce(&'static str),
}

impl Line {
    pub fn text(self) -> &'static str {
        match self {
            Self::AfterAgent(text) | Self::AtOnce(text) => text,
        }
    }
}

/// What the call must end with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expect {
    /// `leads.call_status` afterwards.
    pub lead_status: &'static str,
    /// `call_logs.end_reason`.
    pub end_reason: &'static str,
    pub transferred: bool,
    /// Words the caller's side of the transcript must contain (lower case).
    pub caller_words: &'static [&'static str],
    /// Words the agent's side must contain (lower case).
    pub agent_words: &'static [&'static str],
}

/// A simulated caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scenario {
    /// Short label for the table.
    pub name: &'static str,
    /// The lead's name in the seeded campaign.
    pub lead: &'static str,
    pub lines: &'static [Line],
    pub expect: Expect,
}

/// The campaign's script for the local pipeline (`campaigns.settings.script`).
pub fn campaign_settings() -> serde_json::Value {
    serde_json::json!({
        "script": {
            "pitch": "Lakeside Towers has two and three bedroom flats right by the lake, with possession in December 2027.",
            "questions": [
                "Are you looking to buy a home this year?",
                "Would you like a site visit this weekend?"
            ],
            "objection_reply": "I understand. It takes just one minute, and the launch prices end this month. Shall I tell you more?",
            "vocabulary": ["Lakeside Towers", "site visit", "lakh"]
        },
        "transfer": {"department": "sales"}
    })
}

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "interested",
        lead: "Priya Sharma",
        lines: &[
            Line::AfterAgent("Yes, I have a minute."),
            Line::AfterAgent("Yes, we want to buy a flat this year."),
            Line::AfterAgent("Yes, a site visit sounds great."),
        ],
        expect: Expect {
            lead_status: "transferred",
            end_reason: "transferred",
            transferred: true,
            caller_words: &["minute", "site visit"],
            agent_words: &["lakeside towers", "connect you"],
        },
    },
    Scenario {
        name: "not interested",
        lead: "Rahul Verma",
        lines: &[
            Line::AfterAgent("No thanks, I am not interested."),
            Line::AfterAgent("No, really, please do not call me again."),
        ],
        expect: Expect {
            lead_status: "called",
            end_reason: "agent_ended",
            transferred: false,
            caller_words: &["not interested"],
            agent_words: &["launch prices", "goodbye"],
        },
    },
    Scenario {
        name: "callback",
        lead: "Anita Desai",
        lines: &[Line::AfterAgent(
            "I am driving right now. Please call me back tomorrow evening.",
        )],
        expect: Expect {
            lead_status: "called",
            end_reason: "agent_ended",
            transferred: false,
            caller_words: &["call me back", "tomorrow"],
            agent_words: &["let me note that", "call you back", "your time"],
        },
    },
    Scenario {
        name: "question",
        lead: "Vikram Rao",
        lines: &[
            Line::AfterAgent("How much does a flat cost?"),
            Line::AfterAgent("I need to think about it. Call me back next week."),
        ],
        expect: Expect {
            lead_status: "called",
            end_reason: "agent_ended",
            transferred: false,
            caller_words: &["cost", "next week"],
            agent_words: &["80 lakh", "call you back", "at 10 am, your time"],
        },
    },
    Scenario {
        name: "voicemail",
        lead: "Sam Wilson",
        lines: &[Line::AtOnce(
            "Hi, you have reached Sam. I cannot take your call right now. Please leave a message after the tone.",
        )],
        expect: Expect {
            lead_status: "voicemail",
            end_reason: "voicemail",
            transferred: false,
            caller_words: &["leave a message"],
            agent_words: &["try you again"],
        },
    },
];
