//! The whole media path per 20 ms frame, JSON and base64 included (DESIGN.md budgets:
//! μ-law passthrough ≤ 5 µs each way, resampled ≤ 15 µs each way).
//!
//! - inbound: a Plivo `media` frame (text) → parsed, payload decoded → the provider's
//!   `input_audio_buffer.append` message (text);
//! - outbound: an OpenAI `response.output_audio.delta` (text, 100 ms) → decoded, converted →
//!   re-chunked into 20 ms frames → Plivo `playAudio` messages (text); reported per frame.
//!
//! Run with `cargo bench --bench media_path -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;

use base64::Engine as _;
use criterion::{Criterion, criterion_group, criterion_main};
use voice_gateway::{
    ai::openai_realtime::{MediaConverter, audio_delta},
    audio::{AudioFormat, framing::Rechunker, tone},
    plivo::stream::{self, InboundEvent},
};

/// One Plivo media frame of `format`, as Plivo sends it.
fn plivo_frame(format: AudioFormat) -> String {
    let audio = match format {
        AudioFormat::MULAW_8K => tone::sine_mulaw(300.0, 0.5, 20),
        _ => vec![0x10; format.frame_bytes()],
    };
    let mut text = String::new();
    stream::write_media(
        &mut text,
        4242,
        "87654321-4321-4321-4321-cba987654321",
        1_705_312_200_000,
        4241,
        &audio,
    );
    text
}

fn inbound(c: &mut Criterion) {
    let mut group = c.benchmark_group("inbound_frame");
    for (name, format) in [
        ("passthrough_mulaw", AudioFormat::MULAW_8K),
        ("resampled_l16_8k_to_24k", AudioFormat::L16_8K),
        ("resampled_l16_16k_to_24k", AudioFormat::L16_16K),
    ] {
        let text = plivo_frame(format);
        let mut converter = MediaConverter::new(format).unwrap();
        let mut buffer = [0u8; 640];
        let mut out = String::with_capacity(4096);
        group.bench_function(name, |b| {
            b.iter(|| {
                let InboundEvent::Media(media) = stream::parse_inbound(black_box(&text)).unwrap()
                else {
                    unreachable!()
                };
                let length = media.decode_into(&mut buffer).unwrap();
                out.clear();
                converter
                    .write_append(&buffer[..length], &media.payload_base64, &mut out)
                    .unwrap();
                black_box(out.len())
            })
        });
    }
    group.finish();
}

/// A 100 ms OpenAI audio delta event in the session's format.
fn openai_delta(format: AudioFormat) -> String {
    let audio = match format {
        AudioFormat::MULAW_8K => tone::sine_mulaw(440.0, 0.3, 100),
        _ => vec![0x10; 4800],
    };
    let delta = base64::engine::general_purpose::STANDARD.encode(audio);
    format!(
        r#"{{"type":"response.output_audio.delta","event_id":"event_1","response_id":"resp_1","item_id":"item_1","output_index":0,"content_index":0,"delta":"{delta}"}}"#
    )
}

fn outbound(c: &mut Criterion) {
    let mut group = c.benchmark_group("outbound_5_frames");
    for (name, format) in [
        ("passthrough_mulaw", AudioFormat::MULAW_8K),
        ("resampled_24k_to_l16_8k", AudioFormat::L16_8K),
        ("resampled_24k_to_l16_16k", AudioFormat::L16_16K),
    ] {
        let text = openai_delta(format);
        let mut converter = MediaConverter::new(format).unwrap();
        let mut framer = Rechunker::new(format.frame_bytes());
        let mut out = String::with_capacity(4096);
        group.bench_function(name, |b| {
            b.iter(|| {
                let decoded = audio_delta(black_box(&text)).unwrap();
                let carrier = converter.agent_audio(decoded).unwrap();
                let mut frames = 0;
                framer.push(&carrier, |frame| {
                    out.clear();
                    stream::write_play_audio(&mut out, format, frame);
                    frames += 1;
                    black_box(out.len());
                });
                black_box(frames)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, inbound, outbound);
criterion_main!(benches);
