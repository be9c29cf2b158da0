//! Property tests of the inbound frame parser: whatever a socket delivers (any text, JSON of
//! any shape with Plivo's field names, valid frames cut and spliced), parsing and decoding end
//! in a value or a typed [`FrameError`], never a panic; a media frame gives back its audio.

use proptest::prelude::*;
use serde_json::{Map, Value};

use super::*;

/// Room for one frame of the largest format, as the bridge's buffer.
const FRAME_BUFFER_BYTES: usize = 1024;

/// Parses, and decodes a media payload as the bridge would; must not panic.
fn parse_and_decode(text: &str) {
    if let Ok(InboundEvent::Media(media)) = parse_inbound(text) {
        let mut buffer = [0u8; FRAME_BUFFER_BYTES];
        let _ = media.decode_into(&mut buffer);
    }
}

/// Keys Plivo's frames use, so generated objects reach the parser's branches.
const KEYS: &[&str] = &[
    "event",
    "sequenceNumber",
    "streamId",
    "media",
    "track",
    "timestamp",
    "chunk",
    "payload",
    "start",
    "callId",
    "accountId",
    "tracks",
    "mediaFormat",
    "encoding",
    "sampleRate",
    "dtmf",
    "digit",
    "name",
    "reason",
    "extra_headers",
];

/// Values that mean something to the parser, besides arbitrary ones.
const WORDS: &[&str] = &[
    "media",
    "start",
    "dtmf",
    "playedStream",
    "played",
    "clearedAudio",
    "stop",
    "end",
    "playFailed",
    "error",
    "audio/x-mulaw",
    "AUDIO/X-L16",
    "8000",
    "16000",
    "/////w==",
    "a=b;c=d",
    "{\"k\": 1}",
    "",
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop::sample::select(WORDS).prop_map(Value::from),
        any::<String>().prop_map(Value::String),
        prop::collection::vec(any::<u8>(), 0..700).prop_map(|bytes| {
            Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
        }),
    ];
    leaf.prop_recursive(4, 48, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..8).prop_map(|pairs| {
                Value::Object(
                    pairs
                        .into_iter()
                        .map(|(key, value)| (key.to_owned(), value))
                        .collect::<Map<_, _>>(),
                )
            }),
        ]
    })
}

/// A valid frame of each kind the caller sends.
fn valid_frame() -> impl Strategy<Value = String> {
    let start = (any::<u64>(), ".{0,40}", ".{0,40}", 0..3usize).prop_map(
        |(sequence, call_id, stream_id, format)| {
            // The formats Plivo streams.
            let format = [
                AudioFormat::MULAW_8K,
                AudioFormat::L16_8K,
                AudioFormat::L16_16K,
            ][format];
            let mut out = String::new();
            write_start(&mut out, sequence, &call_id, &stream_id, format);
            out
        },
    );
    let media = (
        any::<u64>(),
        ".{0,40}",
        any::<u64>(),
        any::<u64>(),
        prop::collection::vec(any::<u8>(), 0..700),
    )
        .prop_map(|(sequence, stream_id, timestamp, chunk, audio)| {
            let mut out = String::new();
            write_media(&mut out, sequence, &stream_id, timestamp, chunk, &audio);
            out
        });
    let event = (any::<u64>(), ".{0,40}", ".{0,12}", 0..4usize).prop_map(
        |(sequence, stream_id, text, kind)| {
            let event = match kind {
                0 => SimulatedEvent::Dtmf(&text),
                1 => SimulatedEvent::PlayedStream(&text),
                2 => SimulatedEvent::ClearedAudio,
                _ => SimulatedEvent::Stop,
            };
            let mut out = String::new();
            write_event(&mut out, sequence, &stream_id, &event);
            out
        },
    );
    prop_oneof![start, media, event]
}

/// One edit of a frame, at a position taken modulo its length in characters.
#[derive(Debug, Clone)]
enum Edit {
    Delete { at: usize, len: usize },
    Insert { at: usize, text: String },
    Replace { at: usize, with: char },
    Truncate { at: usize },
    Repeat { at: usize, len: usize },
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 1..16usize).prop_map(|(at, len)| Edit::Delete { at, len }),
        (
            any::<usize>(),
            prop_oneof![".{1,4}", r#"[{}\[\]",:\\0-9a-z]{1,4}"#]
        )
            .prop_map(|(at, text)| Edit::Insert { at, text }),
        (any::<usize>(), any::<char>()).prop_map(|(at, with)| Edit::Replace { at, with }),
        any::<usize>().prop_map(|at| Edit::Truncate { at }),
        (any::<usize>(), 1..32usize).prop_map(|(at, len)| Edit::Repeat { at, len }),
    ]
}

fn apply(text: &str, edit: &Edit) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    let position = |at: usize| at % (chars.len() + 1);
    match edit {
        Edit::Delete { at, len } => {
            let start = position(*at);
            let end = (start + len).min(chars.len());
            chars.drain(start..end);
        }
        Edit::Insert { at, text } => {
            let start = position(*at);
            chars.splice(start..start, text.chars());
        }
        Edit::Replace { at, with } => {
            if !chars.is_empty() {
                let index = at % chars.len();
                chars[index] = *with;
            }
        }
        Edit::Truncate { at } => {
            let end = position(*at);
            chars.truncate(end);
        }
        Edit::Repeat { at, len } => {
            let start = position(*at);
            let end = (start + len).min(chars.len());
            let copy: Vec<char> = chars[start..end].to_vec();
            chars.splice(end..end, copy);
        }
    }
    chars.into_iter().collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn any_text_parses_or_is_a_typed_error(text in any::<String>()) {
        parse_and_decode(&text);
    }

    #[test]
    fn json_of_any_shape_with_plivos_names_parses_or_is_a_typed_error(value in json_value()) {
        parse_and_decode(&value.to_string());
        // The same under a valid event name, so each kind's fields are tried.
        if let Value::Object(mut object) = value {
            for event in ["media", "start", "dtmf", "playedStream", "stop", "error"] {
                object.insert("event".to_owned(), Value::from(event));
                parse_and_decode(&Value::Object(object.clone()).to_string());
            }
        }
    }

    #[test]
    fn cut_and_spliced_frames_parse_or_are_typed_errors(
        frame in valid_frame(),
        edits in prop::collection::vec(edit(), 1..4),
    ) {
        prop_assert!(parse_inbound(&frame).is_ok(), "the unedited frame is valid: {}", frame);
        let edited = edits.iter().fold(frame, |text, edit| apply(&text, edit));
        parse_and_decode(&edited);
    }

    #[test]
    fn a_media_frame_gives_back_its_audio(
        audio in prop::collection::vec(any::<u8>(), 0..=FRAME_BUFFER_BYTES),
        sequence in any::<u64>(),
    ) {
        let mut text = String::new();
        write_media(&mut text, sequence, "stream", 0, 1, &audio);
        let InboundEvent::Media(media) = parse_inbound(&text).unwrap() else {
            panic!("not a media frame: {text}");
        };
        prop_assert_eq!(media.sequence_number, Some(sequence));
        let mut buffer = [0u8; FRAME_BUFFER_BYTES];
        let written = media.decode_into(&mut buffer).unwrap();
        prop_assert_eq!(&buffer[..written], &audio[..]);
    }
}
