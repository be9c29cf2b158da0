//! The schema against good and bad answers, the reader's refusals, and the deterministic
//! analysis table, which must always pass its own reader.

use chrono::TimeZone;
use serde_json::json;

use super::*;

/// The subset of JSON Schema that `json_schema` uses, checked strictly: an unknown keyword
/// panics, so the schema cannot grow a rule this check silently skips.
fn validate(schema: &Value, value: &Value) -> Result<(), String> {
    const KEYWORDS: &[&str] = &[
        "$schema",
        "title",
        "description",
        "type",
        "const",
        "enum",
        "minimum",
        "maximum",
        "minLength",
        "maxLength",
        "maxItems",
        "items",
        "format",
        "required",
        "properties",
        "additionalProperties",
    ];
    let schema = schema.as_object().expect("a schema is an object");
    for keyword in schema.keys() {
        assert!(
            KEYWORDS.contains(&keyword.as_str()),
            "unknown keyword {keyword}"
        );
    }
    if let Some(types) = schema.get("type") {
        let types: Vec<&str> = match types {
            Value::String(one) => vec![one.as_str()],
            Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
            other => panic!("bad type {other}"),
        };
        let matches = types.iter().any(|kind| match *kind {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "number" => value.is_number(),
            "integer" => value.is_u64() || value.is_i64(),
            "null" => value.is_null(),
            other => panic!("unsupported type {other}"),
        });
        if !matches {
            return Err(format!("{value} is not {types:?}"));
        }
    }
    if let Some(constant) = schema.get("const")
        && constant != value
    {
        return Err(format!("{value} is not {constant}"));
    }
    if let Some(Value::Array(allowed)) = schema.get("enum")
        && !allowed.contains(value)
    {
        return Err(format!("{value} is not one of {allowed:?}"));
    }
    if let Some(number) = value.as_f64() {
        if schema
            .get("minimum")
            .and_then(Value::as_f64)
            .is_some_and(|min| number < min)
        {
            return Err(format!("{number} is below the minimum"));
        }
        if schema
            .get("maximum")
            .and_then(Value::as_f64)
            .is_some_and(|max| number > max)
        {
            return Err(format!("{number} is above the maximum"));
        }
    }
    if let Some(text) = value.as_str() {
        let chars = text.chars().count() as u64;
        if schema
            .get("minLength")
            .and_then(Value::as_u64)
            .is_some_and(|min| chars < min)
        {
            return Err(format!("{text:?} is too short"));
        }
        if schema
            .get("maxLength")
            .and_then(Value::as_u64)
            .is_some_and(|max| chars > max)
        {
            return Err(format!("{text:?} is too long"));
        }
        if schema.get("format") == Some(&json!("date-time"))
            && DateTime::parse_from_rfc3339(text).is_err()
        {
            return Err(format!("{text:?} is not a date-time"));
        }
    }
    if let Some(items) = value.as_array() {
        if schema
            .get("maxItems")
            .and_then(Value::as_u64)
            .is_some_and(|max| items.len() as u64 > max)
        {
            return Err(format!("{} items is too many", items.len()));
        }
        if let Some(item_schema) = schema.get("items") {
            for item in items {
                validate(item_schema, item)?;
            }
        }
    }
    if let Some(object) = value.as_object() {
        for required in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = required.as_str().expect("a field name");
            if !object.contains_key(name) {
                return Err(format!("`{name}` is missing"));
            }
        }
        let properties = schema.get("properties").and_then(Value::as_object);
        for (name, field) in object {
            match properties.and_then(|properties| properties.get(name)) {
                Some(field_schema) => validate(field_schema, field)?,
                None if schema.get("additionalProperties") == Some(&json!(false)) => {
                    return Err(format!("`{name}` is not allowed"));
                }
                None => {}
            }
        }
    }
    Ok(())
}

fn good() -> Value {
    json!({
        "version": 1,
        "sentiment": 0.6,
        "interest": "high",
        "objections": ["price", "wants a bigger balcony"],
        "next_step": "callback",
        "callback_at": "2026-11-23T10:00:00+05:30",
    })
}

fn with(field: &str, value: Value) -> Value {
    let mut answer = good();
    answer[field] = value;
    answer
}

fn without(field: &str) -> Value {
    let mut answer = good();
    answer.as_object_mut().unwrap().remove(field);
    answer
}

#[test]
fn a_good_answer_passes_the_schema_and_reads_as_the_model_s() {
    validate(&json_schema(), &good()).unwrap();
    assert_eq!(
        parse_model_answer(&good().to_string()),
        Ok(Analysis {
            version: 1,
            sentiment: 0.6,
            interest: Interest::High,
            objections: vec!["price".into(), "wants a bigger balcony".into()],
            next_step: NextStep::Callback,
            callback_at: Some(Utc.with_ymd_and_hms(2026, 11, 23, 4, 30, 0).unwrap()),
            source: Source::Model,
        })
    );
}

#[test]
fn fenced_and_padded_answers_are_read() {
    let expected = parse_model_answer(&good().to_string()).unwrap();
    let body = serde_json::to_string_pretty(&good()).unwrap();
    for text in [
        format!("```json\n{body}\n```"),
        format!("```JSON\n{body}\n```\n"),
        format!("```\n{body}\n```"),
        format!("```json {} ```", good()),
        format!("\n\n  {body}  \n"),
    ] {
        assert_eq!(parse_model_answer(&text).as_ref(), Ok(&expected), "{text}");
    }
}

#[test]
fn the_limits_themselves_are_accepted() {
    for answer in [
        with("sentiment", json!(-1)),
        with("sentiment", json!(1.0)),
        with("objections", json!([])),
        with(
            "objections",
            json!(vec!["é".repeat(MAX_OBJECTION_CHARS); MAX_OBJECTIONS]),
        ),
        with("callback_at", Value::Null),
        with("next_step", json!("do_not_call")),
        with("interest", json!("none")),
        with("source", json!("model")),
    ] {
        validate(&json_schema(), &answer).unwrap();
        assert!(parse_model_answer(&answer.to_string()).is_ok(), "{answer}");
    }
}

#[test]
fn each_kind_of_invalid_answer_is_refused_by_the_schema_and_the_reader_alike() {
    let too_long = "x".repeat(MAX_OBJECTION_CHARS + 1);
    let cases: Vec<(&str, Value, InvalidAnalysis)> = vec![
        ("an array", json!([good()]), InvalidAnalysis::NotAnObject),
        (
            "version 2",
            with("version", json!(2)),
            InvalidAnalysis::WrongVersion("2".into()),
        ),
        (
            "version as text",
            with("version", json!("1")),
            InvalidAnalysis::WrongVersion("\"1\"".into()),
        ),
        (
            "no version",
            without("version"),
            InvalidAnalysis::MissingField("version"),
        ),
        (
            "sentiment 1.5",
            with("sentiment", json!(1.5)),
            InvalidAnalysis::SentimentOutOfRange(1.5),
        ),
        (
            "sentiment -1.01",
            with("sentiment", json!(-1.01)),
            InvalidAnalysis::SentimentOutOfRange(-1.01),
        ),
        (
            "sentiment as text",
            with("sentiment", json!("positive")),
            InvalidAnalysis::WrongType {
                field: "sentiment",
                expected: "a number",
            },
        ),
        (
            "no sentiment",
            without("sentiment"),
            InvalidAnalysis::MissingField("sentiment"),
        ),
        (
            "unknown interest",
            with("interest", json!("ecstatic")),
            InvalidAnalysis::UnknownValue {
                field: "interest",
                value: "ecstatic".into(),
            },
        ),
        (
            "interest in capitals",
            with("interest", json!("High")),
            InvalidAnalysis::UnknownValue {
                field: "interest",
                value: "High".into(),
            },
        ),
        (
            "no interest",
            without("interest"),
            InvalidAnalysis::MissingField("interest"),
        ),
        (
            "unknown next step",
            with("next_step", json!("buy_now")),
            InvalidAnalysis::UnknownValue {
                field: "next_step",
                value: "buy_now".into(),
            },
        ),
        (
            "no next step",
            without("next_step"),
            InvalidAnalysis::MissingField("next_step"),
        ),
        (
            "unknown source",
            with("source", json!("human")),
            InvalidAnalysis::UnknownValue {
                field: "source",
                value: "human".into(),
            },
        ),
        (
            "no objections",
            without("objections"),
            InvalidAnalysis::MissingField("objections"),
        ),
        (
            "objections as text",
            with("objections", json!("too expensive")),
            InvalidAnalysis::WrongType {
                field: "objections",
                expected: "an array of strings",
            },
        ),
        (
            "a number among the objections",
            with("objections", json!(["price", 3])),
            InvalidAnalysis::WrongType {
                field: "objections",
                expected: "an array of strings",
            },
        ),
        (
            "too many objections",
            with("objections", json!(vec!["price"; MAX_OBJECTIONS + 1])),
            InvalidAnalysis::TooManyObjections(MAX_OBJECTIONS + 1),
        ),
        (
            "an objection too long",
            with("objections", json!(["price", too_long])),
            InvalidAnalysis::ObjectionTooLong {
                index: 1,
                chars: MAX_OBJECTION_CHARS + 1,
            },
        ),
        (
            "an empty objection",
            with("objections", json!([""])),
            InvalidAnalysis::EmptyObjection(0),
        ),
        (
            "no callback_at",
            without("callback_at"),
            InvalidAnalysis::MissingField("callback_at"),
        ),
        (
            "callback_at in words",
            with("callback_at", json!("tomorrow at ten")),
            InvalidAnalysis::BadCallbackTime("tomorrow at ten".into()),
        ),
        (
            "callback_at as a number",
            with("callback_at", json!(1_790_000_000)),
            InvalidAnalysis::WrongType {
                field: "callback_at",
                expected: "an RFC 3339 string or null",
            },
        ),
    ];
    for (case, answer, expected) in cases {
        assert!(
            validate(&json_schema(), &answer).is_err(),
            "the schema accepted {case}"
        );
        assert_eq!(
            parse_model_answer(&answer.to_string()),
            Err(expected),
            "{case}"
        );
    }
}

#[test]
fn text_that_is_no_json_object_is_refused() {
    for (text, expected) in [
        ("", InvalidAnalysis::Empty),
        ("  \n", InvalidAnalysis::Empty),
        ("```json\n```", InvalidAnalysis::Empty),
        (
            "\"interest\": \"high\"",
            InvalidAnalysis::NotJson(String::new()),
        ),
        (
            "The caller was interested.",
            InvalidAnalysis::NotJson(String::new()),
        ),
        ("{\"version\": 1,", InvalidAnalysis::NotJson(String::new())),
        ("null", InvalidAnalysis::NotAnObject),
    ] {
        let refused = parse_model_answer(text).unwrap_err();
        match (&refused, &expected) {
            (InvalidAnalysis::NotJson(why), InvalidAnalysis::NotJson(_)) => {
                assert!(!why.is_empty(), "{text}")
            }
            _ => assert_eq!(refused, expected, "{text}"),
        }
    }
}

#[test]
fn unknown_fields_are_dropped_though_the_schema_forbids_them() {
    // The schema tells the model not to add fields; a reply that does is still worth keeping.
    let answer = with("reasoning", json!("the caller asked twice about the price"));
    assert!(validate(&json_schema(), &answer).is_err());
    assert_eq!(
        parse_model_answer(&answer.to_string()),
        parse_model_answer(&good().to_string())
    );
}

#[test]
fn the_schema_spells_every_value_and_the_instructions_embed_it() {
    let schema = json_schema();
    let spellings = |field: &str| -> Vec<String> {
        schema["properties"][field]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(spellings("interest"), ["high", "medium", "low", "none"]);
    assert_eq!(
        spellings("next_step"),
        [
            "none",
            "callback",
            "transfer",
            "send_info",
            "do_not_call",
            "follow_up"
        ]
    );
    assert_eq!(spellings("source"), ["model", "deterministic"]);
    for value in Interest::ALL {
        assert_eq!(serde_json::to_value(value).unwrap(), json!(value.as_str()));
        assert_eq!(Interest::parse(value.as_str()), Some(*value));
    }
    for value in NextStep::ALL {
        assert_eq!(serde_json::to_value(value).unwrap(), json!(value.as_str()));
    }
    for value in Source::ALL {
        assert_eq!(serde_json::to_value(value).unwrap(), json!(value.as_str()));
    }
    let instructions = instructions();
    assert!(instructions.contains(&schema.to_string()));
    assert!(instructions.contains("ONLY a JSON object"));
}

#[test]
fn the_tool_s_interest_level_converts() {
    for (level, interest) in [
        (InterestLevel::High, Interest::High),
        (InterestLevel::Medium, Interest::Medium),
        (InterestLevel::Low, Interest::Low),
        (InterestLevel::None, Interest::None),
    ] {
        assert_eq!(Interest::from(level), interest);
        assert_eq!(level.as_str(), interest.as_str());
    }
}

fn input<'a>(turns: &'a [&'a str], end_reason: EndReason) -> DeterministicInput<'a> {
    DeterministicInput {
        caller_turns: turns,
        interest: None,
        transfer: Transfer::None,
        opted_out: false,
        callback_requested: false,
        callback_at: None,
        end_reason,
    }
}

fn analysis(
    sentiment: f32,
    interest: Interest,
    objections: &[&str],
    next_step: NextStep,
    callback_at: Option<DateTime<Utc>>,
) -> Analysis {
    Analysis {
        version: ANALYSIS_VERSION,
        sentiment,
        interest,
        objections: objections.iter().map(|o| (*o).to_owned()).collect(),
        next_step,
        callback_at,
        source: Source::Deterministic,
    }
}

/// (call, input, expected analysis).
fn deterministic_table() -> Vec<(&'static str, DeterministicInput<'static>, Analysis)> {
    let tomorrow_ten = Utc.with_ymd_and_hms(2026, 11, 23, 4, 30, 0).unwrap();
    vec![
        (
            "an interested caller a human took",
            DeterministicInput {
                interest: Some(Interest::High),
                transfer: Transfer::Accepted,
                ..input(
                    &[
                        "Yes, I have a minute.",
                        "That sounds great, I'm interested in a two bedroom flat.",
                    ],
                    EndReason::Transferred,
                )
            },
            analysis(1.0, Interest::High, &[], NextStep::Transfer, None),
        ),
        (
            "not interested: too expensive",
            input(
                &[
                    "Hmm, what's the price?",
                    "That's too expensive. I'm not interested, thank you.",
                ],
                EndReason::AgentEnded,
            ),
            analysis(
                -0.33,
                Interest::None,
                &["too expensive", "not interested"],
                NextStep::None,
                None,
            ),
        ),
        (
            "an opt-out overrides the recorded interest",
            DeterministicInput {
                interest: Some(Interest::Low),
                opted_out: true,
                ..input(
                    &["Stop calling me. Remove me from your list."],
                    EndReason::CallerHangup,
                )
            },
            analysis(-0.5, Interest::None, &[], NextStep::DoNotCall, None),
        ),
        (
            "a callback",
            DeterministicInput {
                callback_requested: true,
                callback_at: Some(tomorrow_ten),
                ..input(
                    &["I'm busy right now, can you call me tomorrow at 10?"],
                    EndReason::AgentEnded,
                )
            },
            analysis(
                -0.5,
                Interest::Medium,
                &["busy"],
                NextStep::Callback,
                Some(tomorrow_ten),
            ),
        ),
        (
            "a callback whose time did not resolve",
            DeterministicInput {
                callback_requested: true,
                ..input(&["Call me some other time."], EndReason::AgentEnded)
            },
            analysis(
                0.0,
                Interest::Medium,
                &["not now"],
                NextStep::Callback,
                None,
            ),
        ),
        (
            "voicemail",
            input(&[], EndReason::Voicemail),
            analysis(0.0, Interest::None, &[], NextStep::FollowUp, None),
        ),
        (
            "asks for the brochure",
            input(
                &["Not right now, but send me the brochure."],
                EndReason::CallerHangup,
            ),
            analysis(0.0, Interest::Low, &["not now"], NextStep::SendInfo, None),
        ),
        (
            "handed over, acceptance unknown",
            DeterministicInput {
                transfer: Transfer::Decided,
                ..input(&["Can I talk to a person?"], EndReason::Transferred)
            },
            analysis(0.0, Interest::Medium, &[], NextStep::Transfer, None),
        ),
        (
            "nobody could take the hand-over, then the provider failed",
            DeterministicInput {
                transfer: Transfer::Unavailable,
                ..input(&["yes please"], EndReason::ProviderError)
            },
            analysis(0.5, Interest::Medium, &[], NextStep::FollowUp, None),
        ),
        (
            "a negated objection is none",
            input(
                &["I'm not busy, go ahead, sounds good."],
                EndReason::CallerHangup,
            ),
            analysis(1.0, Interest::Medium, &[], NextStep::FollowUp, None),
        ),
        (
            "a lukewarm caller who hung up",
            input(
                &["Okay.", "I already have an agent and I can't afford it."],
                EndReason::CallerHangup,
            ),
            analysis(
                0.0,
                Interest::Low,
                &["already have", "too expensive"],
                NextStep::None,
                None,
            ),
        ),
        (
            "the caller said nothing",
            input(&[""], EndReason::Silence),
            analysis(0.0, Interest::None, &[], NextStep::None, None),
        ),
    ]
}

#[test]
fn deterministic_analysis_by_table() {
    for (call, input, expected) in deterministic_table() {
        assert_eq!(deterministic(&input), expected, "{call}");
    }
}

#[test]
fn a_deterministic_analysis_always_passes_its_own_reader_and_the_schema() {
    for (call, input, _) in deterministic_table() {
        let analysis = deterministic(&input);
        let stored = serde_json::to_value(&analysis).unwrap();
        validate(&json_schema(), &stored).unwrap_or_else(|why| panic!("{call}: {why}"));
        assert_eq!(
            parse_model_answer(&stored.to_string()).as_ref(),
            Ok(&analysis),
            "{call}"
        );
    }
}

#[test]
fn sentiment_by_lexicon() {
    for (words, expected) in [
        ("", 0.0),
        ("Hello?", 0.0),
        ("great", 0.5),
        ("Great, perfect!", 1.0),
        ("Thanks! THANKS! Thanks.", 1.0),
        ("not interested", -0.5),
        ("not really interested", -0.5),
        ("not bad", 0.5),
        ("no thank you", -0.5),
        ("No, that sounds great", 0.5),
        ("yes but it's too expensive", 0.0),
        ("terrible terrible awful scam", -1.0),
        ("I don\u{2019}t love it", -0.5),
        ("good good good bad", 0.5),
    ] {
        let turns = [words];
        let analysis = deterministic(&input(&turns, EndReason::CallerHangup));
        assert_eq!(analysis.sentiment, expected, "{words:?}");
    }
}

#[test]
fn objections_by_cue() {
    for (words, expected) in [
        ("It's not too expensive.", Vec::<&str>::new()),
        ("Business is good.", Vec::new()),
        (
            "I'm driving, and I am not interested. NOT INTERESTED!",
            vec!["busy", "not interested"],
        ),
        (
            "We already bought one; it was too costly.",
            vec!["already have", "too expensive"],
        ),
        (
            "Maybe later. I\u{2019}m in a meeting.",
            vec!["not now", "busy"],
        ),
    ] {
        let turns = [words];
        let analysis = deterministic(&input(&turns, EndReason::CallerHangup));
        assert_eq!(analysis.objections, expected, "{words:?}");
    }
}

#[test]
fn known_facts_override_the_models_reading() {
    let model = parse_model_answer(
        r#"{"version":1,"sentiment":0.2,"interest":"medium","objections":[],"next_step":"follow_up","callback_at":null}"#,
    )
    .unwrap();
    let opted_out = model.clone().with_known_facts(true, None);
    assert_eq!(opted_out.next_step, NextStep::DoNotCall);
    assert_eq!(opted_out.interest, Interest::None);
    let at: DateTime<Utc> = "2026-12-08T16:00:00Z".parse().unwrap();
    let callback = model.clone().with_known_facts(false, Some(at));
    assert_eq!(callback.callback_at, Some(at));
    assert_eq!(
        callback.next_step,
        NextStep::FollowUp,
        "a chosen step is kept"
    );
    assert_eq!(model.clone().with_known_facts(false, None), model);
}
