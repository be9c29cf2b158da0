//! The post-call analysis stored as `call_logs.metadata.analysis`: a versioned schema, the
//! instruction asking a model for it, the strict reading of the model's answer, and a
//! deterministic analysis from what the gateway itself knows (for when no model answered, or
//! its answer was refused). Pure: no I/O, no clock.
//!
//! # The stored object, version 1
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `version` | integer, always [`ANALYSIS_VERSION`] | a reader refuses any other |
//! | `sentiment` | number in −1..1 | the caller's overall tone: −1 hostile, 0 neutral, 1 delighted |
//! | `interest` | `high`, `medium`, `low`, `none` | how interested the caller is in the offer |
//! | `objections` | at most 10 strings of 1 to 200 characters | the caller's objections, a few words each, in order |
//! | `next_step` | `none`, `callback`, `transfer`, `send_info`, `do_not_call`, `follow_up` | what should happen next |
//! | `callback_at` | RFC 3339 time, or `null` | the agreed callback time, stored in UTC |
//! | `source` | `model`, `deterministic` | who produced it; a model leaves it out and gets `model` |
//!
//! Versioning: anything a version-1 reader would misread (a field renamed, removed or retyped,
//! a range widened, an enum value added) bumps [`ANALYSIS_VERSION`]. A new optional field does
//! not: readers ignore fields they do not know.
//!
//! Reading is strict on what is stored and lenient on wrapping: ```` ```json ```` fences and
//! surrounding white space are accepted, unknown fields are dropped, but a missing field, a
//! wrong type, an out-of-range number or an unknown enum value refuses the whole answer with the
//! reason ([`InvalidAnalysis`]), and the gateway falls back to [`deterministic`].
//!
//! [`Interest`] is this schema's own vocabulary rather than `ai::tools::InterestLevel`: the
//! stored schema is versioned and must not change when the tool declaration does. The tool's
//! level converts with `From`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::ai::tools::InterestLevel;
use crate::domain::EndReason;

/// The version of the schema this module writes and reads.
pub const ANALYSIS_VERSION: u32 = 1;
/// At most this many objections.
pub const MAX_OBJECTIONS: usize = 10;
/// At most this many characters (not bytes) per objection.
pub const MAX_OBJECTION_CHARS: usize = 200;

/// Generates `ALL`, `as_str`, `parse`, `Display` and serde spellings for a fieldless enum,
/// so each value has exactly one spelling.
macro_rules! spelled {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        pub enum $name { $($(#[$vmeta])* #[serde(rename = $text)] $variant,)+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant,)+];

            /// The one spelling, in JSON and in the database.
            pub const fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text,)+ }
            }

            /// The value spelled `text`, if any.
            pub fn parse(text: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|value| value.as_str() == text)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use spelled;

spelled! {
    /// How interested the caller is in the offer.
    Interest {
        /// Wants to buy, or to talk to sales now.
        High => "high",
        /// Interested, not ready yet.
        Medium => "medium",
        /// Listened, showed little interest.
        Low => "low",
        /// Not interested, or refused to talk.
        None => "none",
    }
}

spelled! {
    /// What should happen next with this lead.
    NextStep {
        /// Nothing.
        None => "none",
        /// Call back, at `callback_at` when a time was agreed.
        Callback => "callback",
        /// The call went to a human.
        Transfer => "transfer",
        /// Send the details in writing.
        SendInfo => "send_info",
        /// The caller asked never to be called again.
        DoNotCall => "do_not_call",
        /// Worth another call: undecided, interrupted or not reached.
        FollowUp => "follow_up",
    }
}

spelled! {
    /// Who produced an analysis.
    Source {
        /// The AI provider's model, read by [`parse_model_answer`].
        Model => "model",
        /// The gateway's own rules, [`deterministic`].
        Deterministic => "deterministic",
    }
}

impl From<InterestLevel> for Interest {
    fn from(level: InterestLevel) -> Self {
        match level {
            InterestLevel::High => Self::High,
            InterestLevel::Medium => Self::Medium,
            InterestLevel::Low => Self::Low,
            InterestLevel::None => Self::None,
        }
    }
}

/// `call_logs.metadata.analysis`: see the module documentation for each field.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Analysis {
    pub version: u32,
    /// −1 (hostile) ..= 1 (delighted).
    pub sentiment: f32,
    pub interest: Interest,
    /// At most [`MAX_OBJECTIONS`], each 1 to [`MAX_OBJECTION_CHARS`] characters.
    pub objections: Vec<String>,
    pub next_step: NextStep,
    pub callback_at: Option<DateTime<Utc>>,
    pub source: Source,
}

impl Analysis {
    /// What the gateway knows for certain overrides a model's reading of the call: an opt-out
    /// means no interest and no next step but the do-not-call list; a callback the gateway
    /// scheduled is the callback time.
    pub fn with_known_facts(mut self, opted_out: bool, callback_at: Option<DateTime<Utc>>) -> Self {
        if opted_out {
            self.interest = Interest::None;
            self.next_step = NextStep::DoNotCall;
            self.callback_at = None;
        } else if let Some(at) = callback_at {
            self.callback_at = Some(at);
            if self.next_step == NextStep::None {
                self.next_step = NextStep::Callback;
            }
        }
        self
    }
}

/// Why a model's answer was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidAnalysis {
    #[error("the answer is empty")]
    Empty,
    #[error("the answer is not JSON: {0}")]
    NotJson(String),
    #[error("the answer is not a JSON object")]
    NotAnObject,
    #[error("the field `{0}` is missing")]
    MissingField(&'static str),
    #[error("the field `{field}` is not {expected}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
    },
    #[error("version {0} is not the supported version {ANALYSIS_VERSION}")]
    WrongVersion(String),
    #[error("sentiment {0} is outside -1..1")]
    SentimentOutOfRange(f64),
    #[error("`{value}` is not a valid `{field}`")]
    UnknownValue { field: &'static str, value: String },
    #[error("{0} objections, at most {MAX_OBJECTIONS} are allowed")]
    TooManyObjections(usize),
    #[error("objection {index} has {chars} characters, at most {MAX_OBJECTION_CHARS} are allowed")]
    ObjectionTooLong { index: usize, chars: usize },
    #[error("objection {0} is empty")]
    EmptyObjection(usize),
    #[error("callback_at `{0}` is not an RFC 3339 time")]
    BadCallbackTime(String),
}

/// The JSON Schema (draft 2020-12) of the object the model must answer with. `source` is
/// optional: the model leaves it out. Every rule here is one [`parse_model_answer`] enforces.
pub fn json_schema() -> Value {
    let spellings = |all: &[&str]| Value::from(all.to_vec());
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Call analysis",
        "description": "What a sales call achieved, judged from the caller's side.",
        "type": "object",
        "additionalProperties": false,
        "required": ["version", "sentiment", "interest", "objections", "next_step", "callback_at"],
        "properties": {
            "version": {
                "description": "The schema version: always 1.",
                "type": "integer",
                "const": ANALYSIS_VERSION,
            },
            "sentiment": {
                "description": "The caller's overall tone: -1 hostile, 0 neutral, 1 delighted.",
                "type": "number",
                "minimum": -1,
                "maximum": 1,
            },
            "interest": {
                "description": "How interested the caller is in the offer. high: wants to buy or to talk to sales now; medium: interested but not ready; low: listened, little interest; none: not interested or refused to talk.",
                "type": "string",
                "enum": spellings(&Interest::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>()),
            },
            "objections": {
                "description": "The caller's objections in a few words each, in the order raised (for example \"too expensive\", \"already has one\"); empty when none.",
                "type": "array",
                "maxItems": MAX_OBJECTIONS,
                "items": {"type": "string", "minLength": 1, "maxLength": MAX_OBJECTION_CHARS},
            },
            "next_step": {
                "description": "What should happen next. none: nothing; callback: the caller asked to be called back; transfer: the caller was handed to a human; send_info: the caller asked for details in writing; do_not_call: the caller asked never to be called again; follow_up: worth another call (undecided or interrupted).",
                "type": "string",
                "enum": spellings(&NextStep::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>()),
            },
            "callback_at": {
                "description": "The agreed callback time as RFC 3339 with a UTC offset, or null when no time with a date was agreed.",
                "type": ["string", "null"],
                "format": "date-time",
            },
            "source": {
                "description": "Leave this out: the gateway fills it in.",
                "type": "string",
                "enum": spellings(&Source::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>()),
            },
        },
    })
}

/// The instruction of the post-call analysis response: answer with only a JSON object matching
/// [`json_schema`], which it embeds.
pub fn instructions() -> String {
    format!(
        "The call is over. Analyse it for the sales team, judging the caller, not the agent. \
         Answer with ONLY a JSON object, with no prose and no code fences, that matches this \
         JSON Schema: {schema} Set \"version\" to {ANALYSIS_VERSION}. Leave out \"source\". \
         Give at most {MAX_OBJECTIONS} objections of a few words each. Set \"callback_at\" only \
         when the caller agreed a time whose date you know; otherwise null. Do not address the \
         caller.",
        schema = json_schema(),
    )
}

/// Reads a model's answer: the JSON object of [`json_schema`], optionally in a ```` ``` ````
/// fence. Unknown fields are dropped; `source` defaults to [`Source::Model`] (a stored
/// analysis keeps its own, so an analysis survives being written and read back).
pub fn parse_model_answer(text: &str) -> Result<Analysis, InvalidAnalysis> {
    let body = strip_fence(text);
    if body.is_empty() {
        return Err(InvalidAnalysis::Empty);
    }
    let value: Value =
        serde_json::from_str(body).map_err(|error| InvalidAnalysis::NotJson(error.to_string()))?;
    let Value::Object(object) = value else {
        return Err(InvalidAnalysis::NotAnObject);
    };
    // The version first: another version is another schema, its other fields mean nothing here.
    let version = required(&object, "version")?;
    if version.as_u64() != Some(u64::from(ANALYSIS_VERSION)) {
        return Err(InvalidAnalysis::WrongVersion(version.to_string()));
    }
    let sentiment = required(&object, "sentiment")?
        .as_f64()
        .ok_or(InvalidAnalysis::WrongType {
            field: "sentiment",
            expected: "a number",
        })?;
    if !(-1.0..=1.0).contains(&sentiment) {
        return Err(InvalidAnalysis::SentimentOutOfRange(sentiment));
    }
    let interest = spelling(required(&object, "interest")?, "interest", Interest::parse)?;
    let objections = objections(required(&object, "objections")?)?;
    let next_step = spelling(
        required(&object, "next_step")?,
        "next_step",
        NextStep::parse,
    )?;
    let callback_at = match required(&object, "callback_at")? {
        Value::Null => None,
        Value::String(text) => Some(
            DateTime::parse_from_rfc3339(text.trim())
                .map_err(|_| InvalidAnalysis::BadCallbackTime(text.clone()))?
                .with_timezone(&Utc),
        ),
        _ => {
            return Err(InvalidAnalysis::WrongType {
                field: "callback_at",
                expected: "an RFC 3339 string or null",
            });
        }
    };
    let source = match object.get("source") {
        None | Some(Value::Null) => Source::Model,
        Some(value) => spelling(value, "source", Source::parse)?,
    };
    Ok(Analysis {
        version: ANALYSIS_VERSION,
        sentiment: sentiment as f32,
        interest,
        objections,
        next_step,
        callback_at,
        source,
    })
}

/// What the gateway knows of a call, for [`deterministic`].
#[derive(Debug, Clone, PartialEq)]
pub struct DeterministicInput<'a> {
    /// What the caller said, turn by turn, in order.
    pub caller_turns: &'a [&'a str],
    /// The interest the agent recorded (`record_outcome`), if it did.
    pub interest: Option<Interest>,
    pub transfer: Transfer,
    /// The caller asked not to be called again.
    pub opted_out: bool,
    /// The agent scheduled a callback (`schedule_callback`), with or without a usable time.
    pub callback_requested: bool,
    /// The callback time, when the caller's words resolved to one (implies a callback).
    pub callback_at: Option<DateTime<Utc>>,
    pub end_reason: EndReason,
}

/// What became of a hand-over to a human, as far as the gateway knows when it analyses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transfer {
    /// No hand-over was decided.
    #[default]
    None,
    /// The call left the AI for a human; whether one took it is not known yet.
    Decided,
    /// A human took the call.
    Accepted,
    /// A hand-over was decided but nobody could take it (none free, outside hours, no answer).
    Unavailable,
}

/// The analysis from what the gateway knows, by documented rules; always valid.
///
/// **Sentiment**, over the caller's words only: each word of [`POSITIVE_WORDS`] counts +1 and
/// of [`NEGATIVE_WORDS`] −1; a [`NEGATORS`] word flips the next two words of its clause ("not
/// interested" −1, "not bad" +1, "no thank you" −1). The score is `(positive − negative) /
/// max(positive + negative, 2)`, so one word alone is ±0.5, clamped to −1..1 and rounded to
/// two decimals. No scored word: 0.
///
/// **Objections**: the labels of [`OBJECTION_CUES`] whose cue phrase the caller said (as whole
/// words, not right after a negator: "not busy" is no objection), in the order first said,
/// each once.
///
/// **Interest**, first rule that applies: opted out → none; the agent's recorded interest; a
/// human took the transfer → high; a hand-over decided or unavailable → medium; "not
/// interested" said → none; a callback → medium; the caller said nothing → none; sentiment
/// ≥ 0.5 → medium; otherwise low.
///
/// **Next step**, first rule that applies: opted out → do_not_call; a hand-over decided or
/// accepted → transfer; a callback → callback; the call did not reach anyone (voicemail, no
/// answer, busy, failed, canceled) → follow_up; the caller asked for details in writing
/// ([`SEND_INFO_CUES`]) → send_info; interest none → none; a hand-over nobody could take →
/// follow_up; the call was cut short (provider or internal error, shutdown, maximum duration)
/// → follow_up; interest high or medium → follow_up; otherwise none.
pub fn deterministic(input: &DeterministicInput<'_>) -> Analysis {
    let turns: Vec<Vec<Vec<String>>> = input.caller_turns.iter().map(|t| clauses(t)).collect();
    let sentiment = sentiment(&turns);
    let objections = objections_said(&turns);
    let said_not_interested = objections.iter().any(|label| label == NOT_INTERESTED);
    let asked_for_info = SEND_INFO_CUES.iter().any(|cue| said(&turns, cue));
    let callback = input.callback_requested || input.callback_at.is_some();
    let silent = turns.iter().flatten().all(|clause| clause.is_empty());

    let interest = if input.opted_out {
        Interest::None
    } else if let Some(recorded) = input.interest {
        recorded
    } else {
        match input.transfer {
            Transfer::Accepted => Interest::High,
            Transfer::Decided | Transfer::Unavailable => Interest::Medium,
            Transfer::None if said_not_interested => Interest::None,
            Transfer::None if callback => Interest::Medium,
            Transfer::None if silent => Interest::None,
            Transfer::None if sentiment >= 0.5 => Interest::Medium,
            Transfer::None => Interest::Low,
        }
    };

    let next_step = if input.opted_out {
        NextStep::DoNotCall
    } else if matches!(input.transfer, Transfer::Decided | Transfer::Accepted) {
        NextStep::Transfer
    } else if callback {
        NextStep::Callback
    } else if is_unreached(input.end_reason) {
        NextStep::FollowUp
    } else if asked_for_info {
        NextStep::SendInfo
    } else if interest == Interest::None {
        NextStep::None
    } else if input.transfer == Transfer::Unavailable
        || is_cut_short(input.end_reason)
        || matches!(interest, Interest::High | Interest::Medium)
    {
        NextStep::FollowUp
    } else {
        NextStep::None
    };

    Analysis {
        version: ANALYSIS_VERSION,
        sentiment,
        interest,
        objections,
        next_step,
        callback_at: input.callback_at,
        source: Source::Deterministic,
    }
}

/// Words that make the caller's tone more positive.
pub const POSITIVE_WORDS: &[&str] = &[
    "yes",
    "yeah",
    "yep",
    "sure",
    "great",
    "good",
    "interested",
    "interesting",
    "love",
    "perfect",
    "excellent",
    "wonderful",
    "nice",
    "happy",
    "glad",
    "thanks",
    "thank",
    "absolutely",
    "definitely",
    "awesome",
    "fantastic",
    "helpful",
];

/// Words that make the caller's tone more negative.
pub const NEGATIVE_WORDS: &[&str] = &[
    "expensive",
    "costly",
    "busy",
    "annoying",
    "annoyed",
    "stop",
    "waste",
    "bad",
    "terrible",
    "awful",
    "hate",
    "angry",
    "scam",
    "spam",
    "unhappy",
    "rude",
    "useless",
];

/// Words that flip the polarity of the next two words of their clause.
pub const NEGATORS: &[&str] = &[
    "not", "no", "never", "don't", "dont", "doesn't", "doesnt", "isn't", "isnt", "can't", "cant",
    "cannot", "won't", "wont", "wasn't", "wasnt", "didn't", "didnt", "aren't", "arent",
];

const NOT_INTERESTED: &str = "not interested";

/// Objection labels and the cue phrases that raise them.
pub const OBJECTION_CUES: &[(&str, &[&str])] = &[
    (
        "too expensive",
        &[
            "too expensive",
            "too costly",
            "too much money",
            "can't afford",
            "cannot afford",
            "price is too high",
            "out of my budget",
            "over my budget",
        ],
    ),
    (
        "not now",
        &[
            "not now",
            "not right now",
            "bad time",
            "not a good time",
            "maybe later",
            "some other time",
        ],
    ),
    (
        "already have",
        &[
            "already have",
            "already bought",
            "already own",
            "already booked",
            "already found",
        ],
    ),
    (
        NOT_INTERESTED,
        &[
            "not interested",
            "not really interested",
            "no interest",
            "don't want",
            "do not want",
            "not looking",
        ],
    ),
    ("busy", &["busy", "in a meeting", "driving"]),
];

/// Cue phrases of a caller asking for the details in writing.
pub const SEND_INFO_CUES: &[&str] = &[
    "send me",
    "email me",
    "mail me",
    "send the details",
    "send details",
    "brochure",
    "whatsapp me",
    "text me",
];

/// The JSON inside an optional ```` ```json ```` fence, trimmed.
fn strip_fence(text: &str) -> &str {
    let text = text.trim();
    let Some(fenced) = text.strip_prefix("```") else {
        return text;
    };
    // The info string (`json`) runs up to the object.
    let fenced = fenced.trim_start_matches(|c: char| c.is_ascii_alphanumeric());
    fenced.strip_suffix("```").unwrap_or(fenced).trim()
}

fn required<'a>(
    object: &'a Map<String, Value>,
    field: &'static str,
) -> Result<&'a Value, InvalidAnalysis> {
    object
        .get(field)
        .ok_or(InvalidAnalysis::MissingField(field))
}

fn spelling<T>(
    value: &Value,
    field: &'static str,
    parse: fn(&str) -> Option<T>,
) -> Result<T, InvalidAnalysis> {
    let text = value.as_str().ok_or(InvalidAnalysis::WrongType {
        field,
        expected: "a string",
    })?;
    parse(text).ok_or_else(|| InvalidAnalysis::UnknownValue {
        field,
        value: text.to_owned(),
    })
}

fn objections(value: &Value) -> Result<Vec<String>, InvalidAnalysis> {
    let items = value.as_array().ok_or(InvalidAnalysis::WrongType {
        field: "objections",
        expected: "an array of strings",
    })?;
    if items.len() > MAX_OBJECTIONS {
        return Err(InvalidAnalysis::TooManyObjections(items.len()));
    }
    items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let text = item
                .as_str()
                .ok_or(InvalidAnalysis::WrongType {
                    field: "objections",
                    expected: "an array of strings",
                })?
                .trim();
            let chars = text.chars().count();
            match chars {
                0 => Err(InvalidAnalysis::EmptyObjection(index)),
                _ if chars > MAX_OBJECTION_CHARS => {
                    Err(InvalidAnalysis::ObjectionTooLong { index, chars })
                }
                _ => Ok(text.to_owned()),
            }
        })
        .collect()
}

/// A turn as clauses (split at punctuation) of lower-case words (apostrophes kept).
fn clauses(turn: &str) -> Vec<Vec<String>> {
    turn.to_lowercase()
        .replace(['\u{2019}', '\u{2018}'], "'")
        .split(['.', ',', '!', '?', ';', ':'])
        .map(|clause| {
            clause
                .split(|c: char| !(c.is_alphanumeric() || c == '\''))
                .map(|word| word.trim_matches('\''))
                .filter(|word| !word.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

fn sentiment(turns: &[Vec<Vec<String>>]) -> f32 {
    let (mut positive, mut negative) = (0u32, 0u32);
    for clause in turns.iter().flatten() {
        let mut flip_left = 0u8;
        for word in clause {
            let word = word.as_str();
            if NEGATORS.contains(&word) {
                flip_left = 2;
                continue;
            }
            let polarity = if POSITIVE_WORDS.contains(&word) {
                1
            } else if NEGATIVE_WORDS.contains(&word) {
                -1
            } else {
                0
            };
            let polarity = if flip_left > 0 { -polarity } else { polarity };
            flip_left = flip_left.saturating_sub(1);
            match polarity {
                1 => positive += 1,
                -1 => negative += 1,
                _ => {}
            }
        }
    }
    let scored = (positive + negative).max(2) as f32;
    let score = ((positive as f32 - negative as f32) / scored).clamp(-1.0, 1.0);
    (score * 100.0).round() / 100.0
}

/// The objection labels said, in the order first said, each once.
fn objections_said(turns: &[Vec<Vec<String>>]) -> Vec<String> {
    // (turn, clause, word) of each label's first cue.
    let mut found: Vec<((usize, usize, usize), &str)> = OBJECTION_CUES
        .iter()
        .filter_map(|(label, cues)| {
            cues.iter()
                .filter_map(|cue| first_position(turns, cue))
                .min()
                .map(|position| (position, *label))
        })
        .collect();
    found.sort();
    found
        .into_iter()
        .take(MAX_OBJECTIONS)
        .map(|(_, label)| label.to_owned())
        .collect()
}

fn said(turns: &[Vec<Vec<String>>], cue: &str) -> bool {
    first_position(turns, cue).is_some()
}

/// Where the caller first said `cue` as whole words, not right after a negator.
fn first_position(turns: &[Vec<Vec<String>>], cue: &str) -> Option<(usize, usize, usize)> {
    let cue: Vec<&str> = cue.split_whitespace().collect();
    turns.iter().enumerate().find_map(|(turn_index, clauses)| {
        clauses
            .iter()
            .enumerate()
            .find_map(|(clause_index, words)| {
                (0..words.len().saturating_sub(cue.len() - 1))
                    .find(|&start| {
                        words[start..start + cue.len()]
                            .iter()
                            .zip(&cue)
                            .all(|(word, cue_word)| word == cue_word)
                            && !(start > 0 && NEGATORS.contains(&words[start - 1].as_str()))
                    })
                    .map(|start| (turn_index, clause_index, start))
            })
    })
}

/// Nobody was reached: the lead's own words were never heard.
fn is_unreached(end_reason: EndReason) -> bool {
    matches!(
        end_reason,
        EndReason::Voicemail
            | EndReason::NoAnswer
            | EndReason::Busy
            | EndReason::Failed
            | EndReason::Canceled
    )
}

/// The conversation ended before it could finish, through no choice of the caller.
fn is_cut_short(end_reason: EndReason) -> bool {
    matches!(
        end_reason,
        EndReason::ProviderError
            | EndReason::InternalError
            | EndReason::Shutdown
            | EndReason::MaxDuration
            | EndReason::ProtocolError
    )
}

#[cfg(test)]
mod tests;
