//! Plivo stream wire format: every documented event, the lenient fields, the strict payload.

use super::*;

#[test]
fn start_frame_gives_call_stream_and_format() {
    let text = r#"{"event":"start","sequenceNumber":1,"start":{"callId":"12345678-1234-1234-1234-123456789abc",
        "streamId":"87654321-4321-4321-4321-cba987654321","accountId":"MAXXXXXXXXXXXXXXXXXX","tracks":["inbound"],
        "mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000}},"extra_headers":"userId=12345;sessionId=abc-xyz"}"#;
    let InboundEvent::Start(start) = parse_inbound(text).unwrap() else {
        panic!("not a start frame");
    };
    assert_eq!(start.call_id, "12345678-1234-1234-1234-123456789abc");
    assert_eq!(start.stream_id, "87654321-4321-4321-4321-cba987654321");
    assert_eq!(start.account_id.as_deref(), Some("MAXXXXXXXXXXXXXXXXXX"));
    assert_eq!(start.format, AudioFormat::MULAW_8K);
    assert_eq!(
        start.extra_headers,
        vec![
            ("userId".into(), "12345".into()),
            ("sessionId".into(), "abc-xyz".into())
        ]
    );
}

#[test]
fn start_accepts_l16_and_refuses_unknown_formats() {
    let frame = |encoding: &str, rate: &str| {
        format!(
            r#"{{"event":"start","start":{{"callId":"c","streamId":"s","mediaFormat":{{"encoding":"{encoding}","sampleRate":{rate}}}}}}}"#
        )
    };
    let parsed = |text: String| match parse_inbound(&text) {
        Ok(InboundEvent::Start(start)) => Ok(start.format),
        Ok(other) => panic!("unexpected {other:?}"),
        Err(error) => Err(error),
    };
    assert_eq!(
        parsed(frame("audio/x-l16", "16000")),
        Ok(AudioFormat::L16_16K)
    );
    assert_eq!(
        parsed(frame("audio/x-l16", "\"8000\"")),
        Ok(AudioFormat::L16_8K)
    );
    assert!(matches!(
        parsed(frame("audio/opus", "48000")),
        Err(FrameError::UnsupportedFormat { .. })
    ));
    assert!(matches!(
        parse_inbound(r#"{"event":"start","start":{"streamId":"s"}}"#),
        Err(FrameError::MissingField {
            field: "start.callId",
            ..
        })
    ));
}

#[test]
fn extra_headers_in_every_format_seen() {
    let parse = |raw: ExtraHeaders| parse_extra_headers(&raw);
    let expected = vec![
        ("a".to_owned(), "1".to_owned()),
        ("b".to_owned(), "2".to_owned()),
    ];
    assert_eq!(parse(ExtraHeaders::Text("a=1;b=2".into())), expected);
    assert_eq!(parse(ExtraHeaders::Text("a=1,b=2".into())), expected);
    assert_eq!(
        parse(ExtraHeaders::Text(r#"{"a":"1","b":2}"#.into())),
        expected
    );
    let mut map = serde_json::Map::new();
    map.insert("a".into(), "1".into());
    map.insert("b".into(), 2.into());
    assert_eq!(parse(ExtraHeaders::Object(map)), expected);
    assert_eq!(parse(ExtraHeaders::Text(String::new())), Vec::new());
    assert_eq!(parse(ExtraHeaders::Text("{broken".into())), Vec::new());
}

#[test]
fn media_frame_borrows_and_decodes_its_payload() {
    let audio = [0xFFu8; 160];
    let mut text = String::new();
    write_media(&mut text, 42, "s-1", 1_705_312_200_000, 41, &audio);
    let InboundEvent::Media(media) = parse_inbound(&text).unwrap() else {
        panic!("not media");
    };
    assert!(
        matches!(media.payload_base64, Cow::Borrowed(_)),
        "no copy of the payload"
    );
    assert_eq!(media.sequence_number, Some(42));
    assert_eq!(media.timestamp_ms, Some(1_705_312_200_000));
    assert_eq!(media.chunk, Some(41));
    let mut buffer = [0u8; 640];
    let written = media.decode_into(&mut buffer).unwrap();
    assert_eq!(&buffer[..written], &audio[..]);
}

#[test]
fn sequence_numbers_and_timestamps_are_lenient() {
    let text = r#"{"event":"media","sequenceNumber":"7","media":{"timestamp":1234,"chunk":"3","payload":"/w=="}}"#;
    let InboundEvent::Media(media) = parse_inbound(text).unwrap() else {
        panic!("not media");
    };
    assert_eq!(
        (media.sequence_number, media.timestamp_ms, media.chunk),
        (Some(7), Some(1234), Some(3))
    );
    let garbage =
        r#"{"event":"media","sequenceNumber":"x","media":{"timestamp":null,"payload":"/w=="}}"#;
    let InboundEvent::Media(media) = parse_inbound(garbage).unwrap() else {
        panic!("not media");
    };
    assert_eq!((media.sequence_number, media.timestamp_ms), (None, None));
}

#[test]
fn escaped_payloads_still_decode() {
    // JSON allows "\/" for "/": the payload is then owned, and still decodes.
    let text = r#"{"event":"media","media":{"payload":"\/w=="}}"#;
    let InboundEvent::Media(media) = parse_inbound(text).unwrap() else {
        panic!("not media");
    };
    let mut buffer = [0u8; 4];
    assert_eq!(media.decode_into(&mut buffer), Ok(1));
    assert_eq!(buffer[0], 0xFF);
}

#[test]
fn bad_media_is_an_error_for_that_frame() {
    let bad = r#"{"event":"media","media":{"payload":"not base64!!"}}"#;
    let InboundEvent::Media(media) = parse_inbound(bad).unwrap() else {
        panic!("not media");
    };
    assert_eq!(
        media.decode_into(&mut [0u8; 640]),
        Err(FrameError::BadPayload)
    );
    assert!(matches!(
        parse_inbound(r#"{"event":"media","media":{}}"#),
        Err(FrameError::MissingField {
            field: "media.payload",
            ..
        })
    ));
    let huge = format!(
        r#"{{"event":"media","media":{{"payload":"{}"}}}}"#,
        "A".repeat(MAX_MEDIA_TEXT_BYTES + 4)
    );
    assert!(matches!(
        parse_inbound(&huge),
        Err(FrameError::Oversized(_))
    ));
    let long = format!(
        r#"{{"event":"media","media":{{"payload":"{}"}}}}"#,
        "A".repeat(4000)
    );
    let InboundEvent::Media(media) = parse_inbound(&long).unwrap() else {
        panic!("not media");
    };
    assert!(matches!(
        media.decode_into(&mut [0u8; 640]),
        Err(FrameError::PayloadTooLong { .. })
    ));
    assert!(matches!(
        parse_inbound("{not json"),
        Err(FrameError::Json(_))
    ));
    assert_eq!(
        parse_inbound(r#"{"sequenceNumber":1}"#),
        Err(FrameError::MissingEvent)
    );
}

#[test]
fn control_events_and_unknowns() {
    assert_eq!(
        parse_inbound(
            r#"{"event":"dtmf","sequenceNumber":57,"dtmf":{"track":"inbound","digit":"5","timestamp":"1705312201234"}}"#
        ),
        Ok(InboundEvent::Dtmf(Dtmf {
            digit: "5".into(),
            timestamp_ms: Some(1_705_312_201_234)
        }))
    );
    for name in ["playedStream", "played"] {
        assert_eq!(
            parse_inbound(&format!(
                r#"{{"event":"{name}","sequenceNumber":"90","streamId":"s","name":"turn-3"}}"#
            )),
            Ok(InboundEvent::PlayedStream {
                name: "turn-3".into()
            })
        );
    }
    assert_eq!(
        parse_inbound(r#"{"event":"clearedAudio","streamId":"s"}"#),
        Ok(InboundEvent::ClearedAudio)
    );
    assert_eq!(
        parse_inbound(r#"{"event":"stop","reason":"hangup"}"#),
        Ok(InboundEvent::Stop {
            reason: Some("hangup".into())
        })
    );
    assert_eq!(
        parse_inbound(r#"{"event":"end"}"#),
        Ok(InboundEvent::Stop { reason: None })
    );
    assert_eq!(
        parse_inbound(r#"{"event":"playFailed","reason":"incorrectPayload"}"#),
        Ok(InboundEvent::Failure {
            event: "playFailed".into(),
            reason: Some("incorrectPayload".into())
        })
    );
    assert_eq!(
        parse_inbound(r#"{"event":"muteStream"}"#),
        Ok(InboundEvent::Unknown {
            event: "muteStream".into()
        })
    );
}

#[test]
fn outbound_messages_have_the_documented_shape() {
    let mut out = String::new();
    write_play_audio(&mut out, AudioFormat::MULAW_8K, &[0xFF, 0x7F]);
    assert_eq!(
        out,
        r#"{"event":"playAudio","media":{"contentType":"audio/x-mulaw","sampleRate":8000,"payload":"/38="}}"#
    );
    out.clear();
    write_play_audio(&mut out, AudioFormat::L16_16K, &[0, 0]);
    assert_eq!(
        out,
        r#"{"event":"playAudio","media":{"contentType":"audio/x-l16","sampleRate":16000,"payload":"AAA="}}"#
    );
    out.clear();
    write_checkpoint(&mut out, "s-1", "item_1:3");
    assert_eq!(
        out,
        r#"{"event":"checkpoint","streamId":"s-1","name":"item_1:3"}"#
    );
    out.clear();
    write_clear_audio(&mut out, "s-1");
    assert_eq!(out, r#"{"event":"clearAudio","streamId":"s-1"}"#);
    out.clear();
    write_send_dtmf(&mut out, "12#");
    assert_eq!(out, r#"{"event":"sendDTMF","dtmf":"12#"}"#);
    out.clear();
    write_checkpoint(&mut out, "s", "quote\"name");
    assert_eq!(
        out,
        r#"{"event":"checkpoint","streamId":"s","name":"quote\"name"}"#
    );
}

#[test]
fn both_sides_round_trip() {
    let mut out = String::new();
    write_play_audio(&mut out, AudioFormat::MULAW_8K, &[1, 2, 3]);
    assert_eq!(
        parse_outbound(&out),
        Ok(OutboundMessage::PlayAudio {
            content_type: "audio/x-mulaw".into(),
            sample_rate: 8000,
            payload: vec![1, 2, 3]
        })
    );
    out.clear();
    write_start(&mut out, 1, "call", "stream", AudioFormat::MULAW_8K);
    assert!(
        matches!(parse_inbound(&out), Ok(InboundEvent::Start(start)) if start.call_id == "call" && start.stream_id == "stream")
    );
    for (event, expected) in [
        (
            SimulatedEvent::Dtmf("7"),
            InboundEvent::Dtmf(Dtmf {
                digit: "7".into(),
                timestamp_ms: Some(0),
            }),
        ),
        (
            SimulatedEvent::PlayedStream("n"),
            InboundEvent::PlayedStream { name: "n".into() },
        ),
        (SimulatedEvent::ClearedAudio, InboundEvent::ClearedAudio),
        (
            SimulatedEvent::Stop,
            InboundEvent::Stop {
                reason: Some("hangup".into()),
            },
        ),
    ] {
        out.clear();
        write_event(&mut out, 2, "stream", &event);
        assert_eq!(parse_inbound(&out), Ok(expected));
    }
}
