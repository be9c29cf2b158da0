//! Plivo Audio Streams wire format, both directions (pure).
//!
//! Inbound (Plivo → gateway): `start`, `media`, `dtmf`, `playedStream` (and its older name
//! `played`), `clearedAudio`, `stop`/`end`, plus `playFailed`/`error` seen in the field. Unknown
//! events parse to [`InboundEvent::Unknown`] and are counted, never fatal. Parsing is lenient
//! where Plivo is inconsistent (`sequenceNumber` and `timestamp` as number or string, the
//! `extra_headers` formats) and strict where it matters: a `media` frame whose payload does
//! not decode is an error for that frame.
//!
//! Outbound (gateway → Plivo): `playAudio`, `checkpoint`, `clearAudio`, `sendDTMF`, written into
//! a caller-owned `String` so the hot path reuses one buffer.
//!
//! The synthetic caller speaks the other side with the same module: it writes inbound events
//! and parses outbound messages.

use std::borrow::Cow;

use base64::Engine as _;
use serde::{Deserialize, Deserializer, de};

use crate::audio::AudioFormat;

/// Media payloads above this many bytes of text are refused without decoding: 20 ms of the
/// largest format (L16 16 kHz) is 640 bytes, 856 in base64.
pub const MAX_MEDIA_TEXT_BYTES: usize = 64 * 1024;

/// A frame Plivo sent us.
#[derive(Debug, Clone, PartialEq)]
pub enum InboundEvent<'a> {
    Start(Start),
    Media(Media<'a>),
    Dtmf(Dtmf),
    /// A checkpoint's audio has played (also sent as `played` by older accounts).
    PlayedStream {
        name: String,
    },
    /// Plivo acknowledged our `clearAudio`.
    ClearedAudio,
    /// Early notice that the stream ends (`stop` or `end`); the socket closing is authoritative.
    Stop {
        reason: Option<String>,
    },
    /// `playFailed` or `error`: logged, not fatal.
    Failure {
        event: String,
        reason: Option<String>,
    },
    /// Anything else: ignored and counted.
    Unknown {
        event: String,
    },
}

/// The `start` frame: which call, which stream, which audio format.
#[derive(Debug, Clone, PartialEq)]
pub struct Start {
    pub call_id: String,
    pub stream_id: String,
    pub account_id: Option<String>,
    pub format: AudioFormat,
    pub extra_headers: Vec<(String, String)>,
}

/// A `media` frame; the payload stays base64 until [`Media::decode_into`].
#[derive(Debug, Clone, PartialEq)]
pub struct Media<'a> {
    pub sequence_number: Option<u64>,
    /// Milliseconds (epoch or since stream start; only differences matter).
    pub timestamp_ms: Option<u64>,
    pub chunk: Option<u64>,
    pub payload_base64: Cow<'a, str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dtmf {
    pub digit: String,
    pub timestamp_ms: Option<u64>,
}

/// Why a frame was refused. Each ends only that frame (or, by policy, that call).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame is not valid JSON: {0}")]
    Json(String),
    #[error("frame has no `event` field")]
    MissingEvent,
    #[error("`{event}` frame lacks `{field}`")]
    MissingField {
        event: &'static str,
        field: &'static str,
    },
    #[error("unsupported media format {encoding:?} at {sample_rate} Hz")]
    UnsupportedFormat { encoding: String, sample_rate: u32 },
    #[error("media payload of {0} bytes is too large")]
    Oversized(usize),
    #[error("media payload is not valid base64")]
    BadPayload,
    #[error("media payload of {len} bytes does not fit the {capacity}-byte frame buffer")]
    PayloadTooLong { len: usize, capacity: usize },
}

impl Media<'_> {
    /// Decodes the payload into `buffer`, returning the bytes written. No allocation.
    pub fn decode_into(&self, buffer: &mut [u8]) -> Result<usize, FrameError> {
        let text = self.payload_base64.as_bytes();
        if text.len() > MAX_MEDIA_TEXT_BYTES {
            return Err(FrameError::Oversized(text.len()));
        }
        let needed = base64::decoded_len_estimate(text.len());
        if needed > buffer.len() + 2 {
            return Err(FrameError::PayloadTooLong {
                len: needed,
                capacity: buffer.len(),
            });
        }
        base64::engine::general_purpose::STANDARD
            .decode_slice(text, buffer)
            .map_err(|error| match error {
                base64::DecodeSliceError::OutputSliceTooSmall => FrameError::PayloadTooLong {
                    len: needed,
                    capacity: buffer.len(),
                },
                base64::DecodeSliceError::DecodeError(_) => FrameError::BadPayload,
            })
    }
}

/// Parses one text frame from Plivo.
pub fn parse_inbound(text: &str) -> Result<InboundEvent<'_>, FrameError> {
    let envelope: Envelope<'_> =
        serde_json::from_str(text).map_err(|error| FrameError::Json(error.to_string()))?;
    let event = envelope.event.ok_or(FrameError::MissingEvent)?;
    match event.as_ref() {
        "media" => {
            let media = envelope.media.ok_or(FrameError::MissingField {
                event: "media",
                field: "media",
            })?;
            let payload = media.payload.ok_or(FrameError::MissingField {
                event: "media",
                field: "media.payload",
            })?;
            if payload.len() > MAX_MEDIA_TEXT_BYTES {
                return Err(FrameError::Oversized(payload.len()));
            }
            Ok(InboundEvent::Media(Media {
                sequence_number: envelope.sequence_number.and_then(|n| n.0),
                timestamp_ms: media.timestamp.and_then(|n| n.0),
                chunk: media.chunk.and_then(|n| n.0),
                payload_base64: payload,
            }))
        }
        "start" => {
            let start = envelope.start.ok_or(FrameError::MissingField {
                event: "start",
                field: "start",
            })?;
            let missing = |field| FrameError::MissingField {
                event: "start",
                field,
            };
            let call_id = start.call_id.ok_or(missing("start.callId"))?;
            let stream_id = start.stream_id.ok_or(missing("start.streamId"))?;
            let media_format = start.media_format.ok_or(missing("start.mediaFormat"))?;
            let encoding = media_format.encoding.unwrap_or_default();
            let sample_rate = media_format.sample_rate.and_then(|n| n.0).unwrap_or(8000) as u32;
            let format = AudioFormat::from_plivo(&encoding, sample_rate).ok_or(
                FrameError::UnsupportedFormat {
                    encoding: encoding.clone(),
                    sample_rate,
                },
            )?;
            Ok(InboundEvent::Start(Start {
                call_id,
                stream_id,
                account_id: start.account_id,
                format,
                extra_headers: envelope
                    .extra_headers
                    .map(|raw| parse_extra_headers(&raw))
                    .unwrap_or_default(),
            }))
        }
        "dtmf" => {
            let dtmf = envelope.dtmf.ok_or(FrameError::MissingField {
                event: "dtmf",
                field: "dtmf",
            })?;
            let digit = dtmf.digit.ok_or(FrameError::MissingField {
                event: "dtmf",
                field: "dtmf.digit",
            })?;
            Ok(InboundEvent::Dtmf(Dtmf {
                digit,
                timestamp_ms: dtmf.timestamp.and_then(|n| n.0),
            }))
        }
        "playedStream" | "played" => Ok(InboundEvent::PlayedStream {
            name: envelope.name.ok_or(FrameError::MissingField {
                event: "playedStream",
                field: "name",
            })?,
        }),
        "clearedAudio" => Ok(InboundEvent::ClearedAudio),
        "stop" | "end" => Ok(InboundEvent::Stop {
            reason: envelope.reason,
        }),
        "playFailed" | "error" => Ok(InboundEvent::Failure {
            event: event.into_owned(),
            reason: envelope.reason,
        }),
        _ => Ok(InboundEvent::Unknown {
            event: event.into_owned(),
        }),
    }
}

/// `extra_headers` arrives as a JSON object (as a string or inline), or as `k=v` pairs
/// separated by `;` or `,`. Anything unparseable yields no pairs.
pub fn parse_extra_headers(raw: &ExtraHeaders) -> Vec<(String, String)> {
    let text = match raw {
        ExtraHeaders::Object(map) => return object_pairs(map),
        ExtraHeaders::Text(text) => text.trim(),
    };
    if text.starts_with('{') {
        return match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(text) {
            Ok(map) => object_pairs(&map),
            Err(_) => Vec::new(),
        };
    }
    text.split([';', ','])
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            let key = key.trim();
            (!key.is_empty()).then(|| (key.to_owned(), value.trim().to_owned()))
        })
        .collect()
}

fn object_pairs(map: &serde_json::Map<String, serde_json::Value>) -> Vec<(String, String)> {
    map.iter()
        .map(|(key, value)| {
            let value = match value {
                serde_json::Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            (key.clone(), value)
        })
        .collect()
}

/// The raw `extra_headers` value.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum ExtraHeaders {
    Text(String),
    Object(serde_json::Map<String, serde_json::Value>),
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    event: Option<Cow<'a, str>>,
    #[serde(rename = "sequenceNumber")]
    sequence_number: Option<Lenient>,
    #[serde(borrow)]
    media: Option<MediaBody<'a>>,
    start: Option<StartBody>,
    dtmf: Option<DtmfBody>,
    name: Option<String>,
    reason: Option<String>,
    extra_headers: Option<ExtraHeaders>,
}

#[derive(Deserialize)]
struct MediaBody<'a> {
    timestamp: Option<Lenient>,
    chunk: Option<Lenient>,
    // serde's automatic borrowing does not reach inside `Option<Cow>`: borrow by hand so the
    // base64 payload is not copied.
    #[serde(borrow, default, deserialize_with = "borrowed_str")]
    payload: Option<Cow<'a, str>>,
}

fn borrowed_str<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Cow<'de, str>>, D::Error> {
    struct Visitor;
    impl<'de> de::Visitor<'de> for Visitor {
        type Value = Option<Cow<'de, str>>;
        fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            formatter.write_str("a string")
        }
        fn visit_borrowed_str<E: de::Error>(self, value: &'de str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Borrowed(value)))
        }
        fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(value.to_owned())))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    deserializer.deserialize_any(Visitor)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StartBody {
    call_id: Option<String>,
    stream_id: Option<String>,
    account_id: Option<String>,
    media_format: Option<MediaFormatBody>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MediaFormatBody {
    encoding: Option<String>,
    sample_rate: Option<Lenient>,
}

#[derive(Deserialize)]
struct DtmfBody {
    digit: Option<String>,
    timestamp: Option<Lenient>,
}

/// A number that may arrive as a JSON number or a string of digits; garbage becomes `None`.
struct Lenient(Option<u64>);

impl<'de> Deserialize<'de> for Lenient {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Lenient;
            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("a number or a string of digits")
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<Lenient, E> {
                Ok(Lenient(Some(value)))
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<Lenient, E> {
                Ok(Lenient(u64::try_from(value).ok()))
            }
            fn visit_f64<E: de::Error>(self, value: f64) -> Result<Lenient, E> {
                Ok(Lenient((value >= 0.0).then_some(value as u64)))
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<Lenient, E> {
                Ok(Lenient(value.trim().parse().ok()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Lenient, E> {
                Ok(Lenient(None))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

// === Outbound: gateway → Plivo ===

/// Appends a `playAudio` message carrying `audio` (raw bytes in `format`) to `out`.
pub fn write_play_audio(out: &mut String, format: AudioFormat, audio: &[u8]) {
    out.push_str(r#"{"event":"playAudio","media":{"contentType":""#);
    out.push_str(format.plivo_content_type());
    out.push_str(r#"","sampleRate":"#);
    push_u64(out, u64::from(format.sample_rate));
    out.push_str(r#","payload":""#);
    base64::engine::general_purpose::STANDARD.encode_string(audio, out);
    out.push_str(r#""}}"#);
}

/// Appends a `checkpoint` message.
pub fn write_checkpoint(out: &mut String, stream_id: &str, name: &str) {
    out.push_str(r#"{"event":"checkpoint","streamId":"#);
    push_json_string(out, stream_id);
    out.push_str(r#","name":"#);
    push_json_string(out, name);
    out.push('}');
}

/// Appends a `clearAudio` message.
pub fn write_clear_audio(out: &mut String, stream_id: &str) {
    out.push_str(r#"{"event":"clearAudio","streamId":"#);
    push_json_string(out, stream_id);
    out.push('}');
}

/// Appends a `sendDTMF` message.
pub fn write_send_dtmf(out: &mut String, digits: &str) {
    out.push_str(r#"{"event":"sendDTMF","dtmf":"#);
    push_json_string(out, digits);
    out.push('}');
}

fn push_u64(out: &mut String, value: u64) {
    use std::fmt::Write as _;
    let _ = write!(out, "{value}");
}

fn push_json_string(out: &mut String, text: &str) {
    if text
        .bytes()
        .all(|byte| byte >= 0x20 && byte != b'"' && byte != b'\\')
    {
        out.push('"');
        out.push_str(text);
        out.push('"');
    } else {
        out.push_str(&serde_json::to_string(text).expect("strings serialise"));
    }
}

/// A message the gateway sent, as the synthetic caller parses it.
#[derive(Debug, Clone, PartialEq)]
pub enum OutboundMessage {
    PlayAudio {
        content_type: String,
        sample_rate: u32,
        payload: Vec<u8>,
    },
    Checkpoint {
        stream_id: String,
        name: String,
    },
    ClearAudio {
        stream_id: Option<String>,
    },
    SendDtmf {
        digits: String,
    },
    Unknown {
        event: String,
    },
}

/// Parses a gateway → Plivo message (the synthetic caller's side of the protocol).
pub fn parse_outbound(text: &str) -> Result<OutboundMessage, FrameError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Raw {
        event: Option<String>,
        stream_id: Option<String>,
        name: Option<String>,
        dtmf: Option<String>,
        media: Option<RawMedia>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct RawMedia {
        content_type: Option<String>,
        sample_rate: Option<u32>,
        payload: Option<String>,
    }
    let raw: Raw =
        serde_json::from_str(text).map_err(|error| FrameError::Json(error.to_string()))?;
    let event = raw.event.ok_or(FrameError::MissingEvent)?;
    let missing = |event, field| FrameError::MissingField { event, field };
    match event.as_str() {
        "playAudio" => {
            let media = raw.media.ok_or(missing("playAudio", "media"))?;
            let payload = media.payload.ok_or(missing("playAudio", "media.payload"))?;
            Ok(OutboundMessage::PlayAudio {
                content_type: media
                    .content_type
                    .ok_or(missing("playAudio", "media.contentType"))?,
                sample_rate: media
                    .sample_rate
                    .ok_or(missing("playAudio", "media.sampleRate"))?,
                payload: base64::engine::general_purpose::STANDARD
                    .decode(payload)
                    .map_err(|_| FrameError::BadPayload)?,
            })
        }
        "checkpoint" => Ok(OutboundMessage::Checkpoint {
            stream_id: raw.stream_id.ok_or(missing("checkpoint", "streamId"))?,
            name: raw.name.ok_or(missing("checkpoint", "name"))?,
        }),
        "clearAudio" => Ok(OutboundMessage::ClearAudio {
            stream_id: raw.stream_id,
        }),
        "sendDTMF" => Ok(OutboundMessage::SendDtmf {
            digits: raw.dtmf.ok_or(missing("sendDTMF", "dtmf"))?,
        }),
        _ => Ok(OutboundMessage::Unknown { event }),
    }
}

/// Plivo's `start` frame, as the synthetic caller writes it.
pub fn write_start(
    out: &mut String,
    sequence: u64,
    call_id: &str,
    stream_id: &str,
    format: AudioFormat,
) {
    let value = serde_json::json!({
        "event": "start",
        "sequenceNumber": sequence,
        "start": {
            "callId": call_id,
            "streamId": stream_id,
            "accountId": "MASIMULATOR0000000000",
            "tracks": ["inbound"],
            "mediaFormat": {"encoding": format.plivo_content_type(), "sampleRate": format.sample_rate},
        },
        "extra_headers": "",
    });
    out.push_str(&value.to_string());
}

/// Plivo's `media` frame, as the synthetic caller writes it.
pub fn write_media(
    out: &mut String,
    sequence: u64,
    stream_id: &str,
    timestamp_ms: u64,
    chunk: u64,
    audio: &[u8],
) {
    out.push_str(r#"{"event":"media","sequenceNumber":"#);
    push_u64(out, sequence);
    out.push_str(r#","streamId":"#);
    push_json_string(out, stream_id);
    out.push_str(r#","media":{"track":"inbound","timestamp":""#);
    push_u64(out, timestamp_ms);
    out.push_str(r#"","chunk":"#);
    push_u64(out, chunk);
    out.push_str(r#","payload":""#);
    base64::engine::general_purpose::STANDARD.encode_string(audio, out);
    out.push_str(r#""},"extra_headers":""}"#);
}

/// Plivo's `dtmf`, `playedStream`, `clearedAudio` and `stop` frames, as the synthetic caller
/// writes them.
pub fn write_event(out: &mut String, sequence: u64, stream_id: &str, event: &SimulatedEvent<'_>) {
    let value = match event {
        SimulatedEvent::Dtmf(digit) => serde_json::json!({
            "event": "dtmf", "sequenceNumber": sequence, "streamId": stream_id,
            "dtmf": {"track": "inbound", "digit": digit, "timestamp": "0"},
        }),
        SimulatedEvent::PlayedStream(name) => serde_json::json!({
            "event": "playedStream", "sequenceNumber": sequence, "streamId": stream_id, "name": name,
        }),
        SimulatedEvent::ClearedAudio => serde_json::json!({
            "event": "clearedAudio", "sequenceNumber": sequence, "streamId": stream_id,
        }),
        SimulatedEvent::Stop => serde_json::json!({
            "event": "stop", "sequenceNumber": sequence, "streamId": stream_id, "reason": "hangup",
        }),
    };
    out.push_str(&value.to_string());
}

/// Non-media events the synthetic caller sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimulatedEvent<'a> {
    Dtmf(&'a str),
    PlayedStream(&'a str),
    ClearedAudio,
    Stop,
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod properties;
