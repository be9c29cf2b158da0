//! The agent's tools: their JSON schemas (as every provider declares them) and the parsing of a
//! call's arguments into a typed request.

use serde::Deserialize;
use serde_json::{Value, json};

/// A tool call the agent made, parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolRequest {
    TransferToHuman {
        department: String,
        reason: String,
    },
    EndCall {
        reason: String,
        /// A voicemail greeting answered, not the lead.
        voicemail: bool,
    },
    ScheduleCallback {
        when: String,
    },
    RecordOutcome {
        interest_level: InterestLevel,
        notes: Option<String>,
    },
    /// The caller asked never to be called again.
    OptOut {
        reason: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InterestLevel {
    High,
    Medium,
    Low,
    None,
}

impl InterestLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::High => "high",
            Self::Medium => "medium",
            Self::Low => "low",
            Self::None => "none",
        }
    }
}

/// Why a tool call could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ToolError {
    #[error("unknown tool `{0}`")]
    Unknown(String),
    #[error("bad arguments for `{tool}`: {message}")]
    BadArguments { tool: String, message: String },
}

/// Parses a call of tool `name` with JSON `arguments`.
pub fn parse(name: &str, arguments: &str) -> Result<ToolRequest, ToolError> {
    let bad = |message: String| ToolError::BadArguments {
        tool: name.to_owned(),
        message,
    };
    let value: Value = match arguments.trim() {
        "" => json!({}),
        text => serde_json::from_str(text).map_err(|error| bad(error.to_string()))?,
    };
    let text = |key: &str| {
        value
            .get(key)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    match name {
        "transfer_to_human" => Ok(ToolRequest::TransferToHuman {
            department: text("department").unwrap_or("sales").to_ascii_lowercase(),
            reason: text("reason")
                .unwrap_or("the caller asked for a person")
                .to_owned(),
        }),
        "end_call" => Ok(ToolRequest::EndCall {
            reason: text("reason").unwrap_or("conversation finished").to_owned(),
            voicemail: value.get("voicemail").and_then(Value::as_bool) == Some(true),
        }),
        "schedule_callback" => Ok(ToolRequest::ScheduleCallback {
            when: text("when")
                .ok_or_else(|| bad("`when` is required".to_owned()))?
                .to_owned(),
        }),
        "record_outcome" => {
            let level = value
                .get("interest_level")
                .cloned()
                .ok_or_else(|| bad("`interest_level` is required".to_owned()))?;
            let interest_level: InterestLevel =
                serde_json::from_value(level).map_err(|error| bad(error.to_string()))?;
            Ok(ToolRequest::RecordOutcome {
                interest_level,
                notes: text("notes").map(str::to_owned),
            })
        }
        "opt_out" => Ok(ToolRequest::OptOut {
            reason: text("reason")
                .unwrap_or("the caller asked not to be called again")
                .to_owned(),
        }),
        other => Err(ToolError::Unknown(other.to_owned())),
    }
}

/// The tool declarations, in the function-tool shape OpenAI Realtime expects.
pub fn declarations() -> Value {
    json!([
        {
            "type": "function",
            "name": "transfer_to_human",
            "description": "Transfer the caller to a human colleague. Use it when the caller asks for a person, or is interested and agrees to speak with a specialist. Say a short hand-off line first.",
            "parameters": {
                "type": "object",
                "properties": {
                    "department": {"type": "string", "description": "Which team: sales or support.", "enum": ["sales", "support"]},
                    "reason": {"type": "string", "description": "Why the caller needs a human, in a few words."}
                },
                "required": ["department", "reason"]
            }
        },
        {
            "type": "function",
            "name": "end_call",
            "description": "End the call after saying goodbye: the caller is not interested, asked to stop, is the wrong person, or the conversation is complete. After leaving a message on a voicemail greeting, set voicemail to true.",
            "parameters": {
                "type": "object",
                "properties": {
                    "reason": {"type": "string", "description": "Why the call ends."},
                    "voicemail": {"type": "boolean", "description": "True when a voicemail greeting answered instead of the lead."}
                },
                "required": ["reason"]
            }
        },
        {
            "type": "function",
            "name": "schedule_callback",
            "description": "Schedule a call back at the time the caller asked for. The result says the time as the caller should hear it (`say`): confirm it in those words. If the result is not ok, ask the caller again for a day and time.",
            "parameters": {
                "type": "object",
                "properties": {"when": {"type": "string", "description": "When to call back: the caller's own words (\"tomorrow at 11\", \"Friday evening\"), or ISO 8601 with offset."}},
                "required": ["when"]
            }
        },
        {
            "type": "function",
            "name": "opt_out",
            "description": "The caller asked not to be called again (\"remove me from your list\", \"stop calling me\", \"do not call me again\"). Their number is removed from every campaign at once. Then confirm politely that they will not be called again, say goodbye and end the call.",
            "parameters": {
                "type": "object",
                "properties": {"reason": {"type": "string", "description": "What the caller said, in a few words."}},
                "required": []
            }
        },
        {
            "type": "function",
            "name": "record_outcome",
            "description": "Record how interested the caller is, with short notes.",
            "parameters": {
                "type": "object",
                "properties": {
                    "interest_level": {"type": "string", "enum": ["high", "medium", "low", "none"]},
                    "notes": {"type": "string"}
                },
                "required": ["interest_level"]
            }
        }
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_tool_parses() {
        assert_eq!(
            parse(
                "transfer_to_human",
                r#"{"department":"Support","reason":"billing question"}"#
            ),
            Ok(ToolRequest::TransferToHuman {
                department: "support".into(),
                reason: "billing question".into()
            })
        );
        assert_eq!(
            parse("end_call", r#"{"reason":"not interested"}"#),
            Ok(ToolRequest::EndCall {
                reason: "not interested".into(),
                voicemail: false
            })
        );
        assert_eq!(
            parse("end_call", r#"{"reason":"voicemail","voicemail":true}"#),
            Ok(ToolRequest::EndCall {
                reason: "voicemail".into(),
                voicemail: true
            })
        );
        assert_eq!(
            parse("end_call", ""),
            Ok(ToolRequest::EndCall {
                reason: "conversation finished".into(),
                voicemail: false
            })
        );
        assert_eq!(
            parse(
                "schedule_callback",
                r#"{"when":"2026-11-23T10:00:00+05:30"}"#
            ),
            Ok(ToolRequest::ScheduleCallback {
                when: "2026-11-23T10:00:00+05:30".into()
            })
        );
        assert_eq!(
            parse(
                "record_outcome",
                r#"{"interest_level":"high","notes":"wants 2BHK"}"#
            ),
            Ok(ToolRequest::RecordOutcome {
                interest_level: InterestLevel::High,
                notes: Some("wants 2BHK".into())
            })
        );
    }

    #[test]
    fn opt_out_parses_with_or_without_a_reason() {
        assert_eq!(
            parse("opt_out", r#"{"reason":"stop calling me"}"#),
            Ok(ToolRequest::OptOut {
                reason: "stop calling me".into()
            })
        );
        assert_eq!(
            parse("opt_out", ""),
            Ok(ToolRequest::OptOut {
                reason: "the caller asked not to be called again".into()
            })
        );
    }

    #[test]
    fn bad_calls_are_errors_not_panics() {
        assert_eq!(
            parse("launch_rocket", "{}"),
            Err(ToolError::Unknown("launch_rocket".into()))
        );
        assert!(matches!(
            parse("schedule_callback", "{}"),
            Err(ToolError::BadArguments { .. })
        ));
        assert!(matches!(
            parse("record_outcome", r#"{"interest_level":"ecstatic"}"#),
            Err(ToolError::BadArguments { .. })
        ));
        assert!(matches!(
            parse("end_call", "{not json"),
            Err(ToolError::BadArguments { .. })
        ));
    }

    #[test]
    fn declarations_name_every_tool() {
        let names: Vec<String> = declarations()
            .as_array()
            .unwrap()
            .iter()
            .map(|tool| tool["name"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            names,
            [
                "transfer_to_human",
                "end_call",
                "schedule_callback",
                "opt_out",
                "record_outcome"
            ]
        );
    }
}
