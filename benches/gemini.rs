//! The Gemini Live media path per 20 ms frame, JSON and base64 included (budget: ≤ 15 µs per
//! frame each way, the resampled path of DESIGN.md).
//!
//! - inbound: a Plivo `media` frame (text) → parsed, payload decoded → μ-law decoded and
//!   resampled 8 → 16 kHz (or L16 16 kHz passed through) → the `realtimeInput` message (text);
//! - outbound: a Gemini `serverContent.modelTurn` message carrying 100 ms of 24 kHz PCM (text)
//!   → parsed, decoded, resampled to the carrier's rate and encoded → re-chunked into 20 ms
//!   frames → Plivo `playAudio` messages (text); five frames per iteration.
//!
//! Run with `cargo bench --bench gemini -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;

use base64::Engine as _;
use criterion::{Criterion, criterion_group, criterion_main};
use voice_gateway::{
    ai::{
        ProviderEvent,
        gemini_live::protocol::{MediaConverter, Translator},
    },
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
    let mut group = c.benchmark_group("gemini_inbound_frame");
    for (name, format) in [
        ("mulaw_8k_to_pcm_16k", AudioFormat::MULAW_8K),
        ("l16_16k_passthrough", AudioFormat::L16_16K),
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
                    .write_audio_message(&buffer[..length], &media.payload_base64, &mut out)
                    .unwrap();
                black_box(out.len())
            })
        });
    }
    group.finish();
}

/// A `serverContent` message with 100 ms of 24 kHz PCM (a 440 Hz tone).
fn gemini_audio_message() -> String {
    let mut pcm = Vec::with_capacity(4800);
    for index in 0..2400 {
        let value =
            (0.3 * 32767.0 * (2.0 * std::f32::consts::PI * 440.0 * index as f32 / 24_000.0).sin())
                as i16;
        pcm.extend_from_slice(&value.to_le_bytes());
    }
    let data = base64::engine::general_purpose::STANDARD.encode(pcm);
    format!(
        r#"{{"serverContent":{{"modelTurn":{{"role":"model","parts":[{{"inlineData":{{"mimeType":"audio/pcm;rate=24000","data":"{data}"}}}}]}}}}}}"#
    )
}

fn outbound(c: &mut Criterion) {
    let mut group = c.benchmark_group("gemini_outbound_5_frames");
    let text = gemini_audio_message();
    for (name, format) in [
        ("pcm_24k_to_mulaw_8k", AudioFormat::MULAW_8K),
        ("pcm_24k_to_l16_16k", AudioFormat::L16_16K),
    ] {
        let mut translator = Translator::new(format).unwrap();
        let mut framer = Rechunker::new(format.frame_bytes());
        let mut out = String::with_capacity(4096);
        group.bench_function(name, |b| {
            b.iter(|| {
                translator.handle(black_box(&text)).unwrap();
                let mut frames = 0;
                while let Some(event) = translator.events.pop_front() {
                    let ProviderEvent::Audio { audio, .. } = event else {
                        continue;
                    };
                    framer.push(&audio, |frame| {
                        out.clear();
                        stream::write_play_audio(&mut out, format, frame);
                        frames += 1;
                        black_box(out.len());
                    });
                }
                black_box(frames)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, inbound, outbound);
criterion_main!(benches);
