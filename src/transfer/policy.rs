//! When a human must take over, and who (pure).
//!
//! Every decision is data: the trigger, its evidence, the targets in order, the time. The
//! triggers are the agent's `transfer_to_human` tool, the caller asking for a person (detected
//! by the gateway on the caller's own words, so it works when the model forgets the tool), the
//! agent announcing a transfer without calling the tool (the gateway completes what it
//! promised), a DTMF key, and the campaign's rules (qualified caller, turns the agent could not
//! answer, strong negative sentiment). The limits: one transfer at a time, a department that is
//! closed gets a callback offer instead, a campaign may forbid transfers.

use chrono::{DateTime, Datelike, NaiveTime, Utc};
use chrono_tz::Tz;
use serde_json::Value;
use uuid::Uuid;

/// What set a transfer off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// The agent called `transfer_to_human`.
    Tool {
        department: Option<String>,
        reason: String,
    },
    /// The caller asked for a person; `phrase` is what matched.
    CallerAsked { phrase: String, words: String },
    /// The agent said it would transfer without calling the tool.
    AgentAnnounced { phrase: String, words: String },
    /// The caller pressed the campaign's transfer key.
    Dtmf { digit: String },
    /// The agent recorded a qualified (highly interested) caller.
    Qualified { interest_level: String },
    /// The agent could not answer this many turns.
    UnansweredTurns { count: u32 },
    /// The caller's words were strongly negative.
    NegativeSentiment { phrase: String, words: String },
}

impl Trigger {
    /// A short label for events, metrics and `call_logs.transfer_reason`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Tool { .. } => "tool",
            Self::CallerAsked { .. } => "caller_asked",
            Self::AgentAnnounced { .. } => "agent_announced",
            Self::Dtmf { .. } => "dtmf",
            Self::Qualified { .. } => "qualified",
            Self::UnansweredTurns { .. } => "unanswered_turns",
            Self::NegativeSentiment { .. } => "negative_sentiment",
        }
    }

    /// A human-readable reason, for the transfer record and the whisper.
    pub fn reason(&self) -> String {
        match self {
            Self::Tool { reason, .. } => reason.clone(),
            Self::CallerAsked { words, .. } => {
                format!("the caller asked for a person: \"{words}\"")
            }
            Self::AgentAnnounced { words, .. } => {
                format!("the agent promised a transfer: \"{words}\"")
            }
            Self::Dtmf { digit } => format!("the caller pressed {digit}"),
            Self::Qualified { interest_level } => {
                format!("qualified lead (interest {interest_level})")
            }
            Self::UnansweredTurns { count } => {
                format!("the agent could not answer {count} questions")
            }
            Self::NegativeSentiment { words, .. } => format!("the caller was upset: \"{words}\""),
        }
    }
}

/// What happens when no human can be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// The caller returns to the AI, which offers a callback.
    BackToAi,
    /// A polite message, a scheduled callback and a hang-up.
    CallbackAndHangup,
}

/// A campaign's transfer rules (from `campaigns.settings.transfer`; defaults where unset).
#[derive(Debug, Clone, PartialEq)]
pub struct TransferRules {
    pub enabled: bool,
    pub caller_phrases: Vec<String>,
    pub agent_phrases: Vec<String>,
    pub negative_phrases: Vec<String>,
    /// `None` turns the key off.
    pub dtmf_key: Option<String>,
    pub when_qualified: bool,
    /// Transfer after this many turns the agent could not answer.
    pub max_unanswered_turns: Option<u32>,
    pub on_negative_sentiment: bool,
    pub default_department: String,
    /// The lead's assigned agent is tried first.
    pub prefer_assigned_agent: bool,
    pub fallback: Fallback,
    /// How long each target may ring.
    pub ring_timeout_secs: u32,
}

const CALLER_PHRASES: &[&str] = &[
    "real person",
    "a human",
    "human being",
    "speak to someone",
    "talk to someone",
    "speak with someone",
    "talk with someone",
    "speak to a person",
    "talk to a person",
    "speak to an agent",
    "talk to an agent",
    "speak to a representative",
    "talk to a representative",
    "agent please",
    "representative please",
    "operator",
    "transfer me",
    "connect me",
    "customer service",
    "your manager",
    "speak to a manager",
];
const AGENT_PHRASES: &[&str] = &[
    "connecting you",
    "connect you to",
    "connect you with",
    "transferring you",
    "transfer you to",
    "transfer you now",
    "put you through",
    "hand you over",
    "let me get a colleague",
    "one of my colleagues will",
];
const NEGATIVE_PHRASES: &[&str] = &[
    "this is ridiculous",
    "waste of my time",
    "i am angry",
    "i'm angry",
    "very upset",
    "terrible service",
    "this is a scam",
    "i will complain",
    "i'll complain",
    "unacceptable",
];

impl Default for TransferRules {
    fn default() -> Self {
        Self {
            enabled: true,
            caller_phrases: CALLER_PHRASES.iter().map(|p| (*p).to_owned()).collect(),
            agent_phrases: AGENT_PHRASES.iter().map(|p| (*p).to_owned()).collect(),
            negative_phrases: NEGATIVE_PHRASES.iter().map(|p| (*p).to_owned()).collect(),
            dtmf_key: Some("0".to_owned()),
            when_qualified: false,
            max_unanswered_turns: None,
            on_negative_sentiment: false,
            default_department: "sales".to_owned(),
            prefer_assigned_agent: true,
            fallback: Fallback::BackToAi,
            ring_timeout_secs: 25,
        }
    }
}

impl TransferRules {
    /// Reads `settings.transfer` of a campaign; unknown or malformed fields keep their default.
    pub fn from_campaign_settings(settings: &Value) -> Self {
        let mut rules = Self::default();
        let Some(transfer) = settings.get("transfer") else {
            return rules;
        };
        let flag = |key: &str, default: bool| {
            transfer
                .get(key)
                .and_then(Value::as_bool)
                .unwrap_or(default)
        };
        let phrases = |key: &str, default: &Vec<String>| {
            transfer
                .get(key)
                .and_then(Value::as_array)
                .map(|list| {
                    list.iter()
                        .filter_map(Value::as_str)
                        .map(normalise)
                        .filter(|p| !p.is_empty())
                        .collect()
                })
                .unwrap_or_else(|| default.clone())
        };
        rules.enabled = flag("enabled", rules.enabled);
        rules.caller_phrases = phrases("caller_phrases", &rules.caller_phrases);
        rules.agent_phrases = phrases("agent_phrases", &rules.agent_phrases);
        rules.negative_phrases = phrases("negative_phrases", &rules.negative_phrases);
        rules.dtmf_key = match transfer.get("dtmf_key") {
            Some(Value::Null) => None,
            Some(Value::String(key)) if key.is_empty() => None,
            Some(Value::String(key)) => Some(key.clone()),
            _ => rules.dtmf_key,
        };
        rules.when_qualified = flag("when_qualified", rules.when_qualified);
        rules.max_unanswered_turns = transfer
            .get("max_unanswered_turns")
            .and_then(Value::as_u64)
            .map(|n| n as u32)
            .filter(|n| *n > 0);
        rules.on_negative_sentiment = flag("on_negative_sentiment", rules.on_negative_sentiment);
        if let Some(department) = transfer.get("default_department").and_then(Value::as_str) {
            rules.default_department = department.to_ascii_lowercase();
        }
        rules.prefer_assigned_agent = flag("prefer_assigned_agent", rules.prefer_assigned_agent);
        rules.fallback = match transfer.get("fallback").and_then(Value::as_str) {
            Some("callback_and_hangup") => Fallback::CallbackAndHangup,
            _ => Fallback::BackToAi,
        };
        if let Some(secs) = transfer.get("ring_timeout_secs").and_then(Value::as_u64) {
            rules.ring_timeout_secs = secs.clamp(5, 120) as u32;
        }
        rules
    }

    /// The trigger in the caller's words, if any: a request for a person, or (when the rule is
    /// on) strong negative sentiment.
    pub fn detect_in_caller_words(&self, words: &str) -> Option<Trigger> {
        let text = normalise(words);
        if let Some(phrase) = find_phrase(&text, &self.caller_phrases) {
            return Some(Trigger::CallerAsked {
                phrase,
                words: words.trim().to_owned(),
            });
        }
        if self.on_negative_sentiment
            && let Some(phrase) = find_phrase(&text, &self.negative_phrases)
        {
            return Some(Trigger::NegativeSentiment {
                phrase,
                words: words.trim().to_owned(),
            });
        }
        None
    }

    /// The trigger in the agent's own words: it announced a transfer.
    pub fn detect_in_agent_words(&self, words: &str) -> Option<Trigger> {
        let text = normalise(words);
        find_phrase(&text, &self.agent_phrases).map(|phrase| Trigger::AgentAnnounced {
            phrase,
            words: words.trim().to_owned(),
        })
    }

    /// The trigger of a key press.
    pub fn detect_dtmf(&self, digit: &str) -> Option<Trigger> {
        (self.dtmf_key.as_deref() == Some(digit)).then(|| Trigger::Dtmf {
            digit: digit.to_owned(),
        })
    }

    /// The trigger of a recorded interest level, when the campaign transfers qualified callers.
    pub fn detect_qualified(&self, interest_level: &str) -> Option<Trigger> {
        (self.when_qualified && interest_level == "high").then(|| Trigger::Qualified {
            interest_level: interest_level.to_owned(),
        })
    }

    /// The trigger of unanswered turns, when the campaign counts them.
    pub fn detect_unanswered(&self, count: u32) -> Option<Trigger> {
        self.max_unanswered_turns
            .filter(|limit| count >= *limit)
            .map(|_| Trigger::UnansweredTurns { count })
    }
}

/// Lowercase words separated by single spaces, apostrophes kept.
fn normalise(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '\'' {
                c.to_ascii_lowercase()
            } else {
                ' '
            }
        })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The first phrase found as whole words in `text`.
fn find_phrase(text: &str, phrases: &[String]) -> Option<String> {
    let padded = format!(" {text} ");
    phrases
        .iter()
        .find(|phrase| padded.contains(&format!(" {} ", normalise(phrase))))
        .cloned()
}

/// A human who can take a call.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Target {
    pub id: Uuid,
    pub name: String,
    pub department: String,
    /// E.164.
    pub phone_number: String,
    /// Lower first.
    pub priority: i32,
    pub timezone: String,
    /// ISO weekdays, 1 = Monday.
    pub working_days: Vec<i16>,
    /// `None`: around the clock on working days.
    pub hours: Option<(NaiveTime, NaiveTime)>,
    pub active: bool,
}

impl Target {
    /// Whether the target works at `now`, in its own timezone (an unknown timezone is UTC).
    pub fn is_open(&self, now: DateTime<Utc>) -> bool {
        if !self.active {
            return false;
        }
        let zone: Tz = self.timezone.parse().unwrap_or(Tz::UTC);
        let local = now.with_timezone(&zone);
        let weekday = local.weekday().number_from_monday() as i16;
        if !self.working_days.contains(&weekday) {
            return false;
        }
        match self.hours {
            None => true,
            Some((start, end)) => {
                let time = local.time();
                time >= start && time < end
            }
        }
    }
}

/// What the policy decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Transfer: try these targets in order.
    Transfer {
        trigger: Trigger,
        department: String,
        targets: Vec<Target>,
        at: DateTime<Utc>,
    },
    /// Nobody in the department works now (or none exists): offer a callback instead.
    OfferCallback {
        trigger: Trigger,
        department: String,
        reason: String,
        at: DateTime<Utc>,
    },
    /// Not allowed: transfers are off, or one is already running.
    Refused {
        trigger: Trigger,
        reason: String,
        at: DateTime<Utc>,
    },
}

/// Decides a transfer. `targets` are the organization's (already narrowed to the campaign's if
/// it names some); `assigned` is the lead's assigned agent as a target, if any.
pub fn decide(
    rules: &TransferRules,
    transfer_in_progress: bool,
    trigger: Trigger,
    targets: &[Target],
    assigned: Option<&Target>,
    now: DateTime<Utc>,
) -> Decision {
    if !rules.enabled {
        return Decision::Refused {
            trigger,
            reason: "the campaign does not allow transfers".to_owned(),
            at: now,
        };
    }
    if transfer_in_progress {
        return Decision::Refused {
            trigger,
            reason: "a transfer is already in progress".to_owned(),
            at: now,
        };
    }
    let department = match &trigger {
        Trigger::Tool {
            department: Some(department),
            ..
        } => department.to_ascii_lowercase(),
        _ => rules.default_department.clone(),
    };
    let mut ordered: Vec<Target> = Vec::new();
    if rules.prefer_assigned_agent
        && let Some(agent) = assigned.filter(|agent| agent.is_open(now))
    {
        ordered.push(agent.clone());
    }
    let mut in_department: Vec<&Target> = targets
        .iter()
        .filter(|t| t.department == department && t.is_open(now))
        .collect();
    in_department.sort_by_key(|t| (t.priority, t.name.clone()));
    for target in in_department {
        if !ordered
            .iter()
            .any(|known| known.phone_number == target.phone_number)
        {
            ordered.push(target.clone());
        }
    }
    if ordered.is_empty() {
        let exists = targets
            .iter()
            .any(|t| t.department == department && t.active);
        let reason = if exists {
            format!("{department} is closed now")
        } else {
            format!("no active {department} target")
        };
        return Decision::OfferCallback {
            trigger,
            department,
            reason,
            at: now,
        };
    }
    Decision::Transfer {
        trigger,
        department,
        targets: ordered,
        at: now,
    }
}

#[cfg(test)]
mod tests;
