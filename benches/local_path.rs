//! The local pipeline's per-frame work, which runs inline on the async worker that carries
//! the call: carrier decode, 8 → 16 kHz, voice activity (earshot) and end-of-turn detection.
//! Everything heavier runs on the inference pool. Budget (DESIGN.md): ≤ 15 µs per frame for
//! a resampled path.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use speech::{
    endpoint::{EndpointConfig, Endpointer},
    vad::{VadConfig, VoiceDetector},
};
use voice_gateway::{ai::local::carrier::Inbound, audio::AudioFormat};

/// Two seconds of a vowel-like signal with pauses: speech and silence alternate, so the
/// detector and the endpointer take both branches.
fn caller_audio() -> Vec<u8> {
    let mut samples = Vec::new();
    for index in 0..16_000 {
        let t = index as f32 / 8000.0;
        let voiced = (index / 4000) % 2 == 0;
        let value = if voiced {
            0.4 * (2.0 * std::f32::consts::PI * 150.0 * t).sin()
                + 0.2 * (2.0 * std::f32::consts::PI * 450.0 * t).sin()
        } else {
            0.0
        };
        samples.push((value * 32767.0) as i16);
    }
    let mut bytes = vec![0u8; samples.len()];
    voice_gateway::audio::mulaw::encode(&samples, &mut bytes);
    bytes
}

fn local_frame_path(c: &mut Criterion) {
    let audio = caller_audio();
    let frames: Vec<&[u8]> = audio.chunks(160).collect();
    let mut inbound = Inbound::new(AudioFormat::MULAW_8K).unwrap();
    let mut detector = VoiceDetector::new(VadConfig::default());
    let mut endpointer = Endpointer::new(EndpointConfig::default());
    let mut index = 0;
    c.bench_function("local: μ-law frame → 16 kHz → VAD → endpoint", |b| {
        b.iter(|| {
            let frame = frames[index % frames.len()];
            index += 1;
            let mut events = 0;
            inbound.push(black_box(frame), |speech| {
                detector.push(speech, |vad_frame, decision| {
                    if endpointer.push(vad_frame, decision.voiced).is_some() {
                        events += 1;
                    }
                });
            });
            black_box(events)
        })
    });
}

/// The same path in its parts, to see where the time goes.
fn local_frame_parts(c: &mut Criterion) {
    let audio = caller_audio();
    let frames: Vec<&[u8]> = audio.chunks(160).collect();
    let mut inbound = Inbound::new(AudioFormat::MULAW_8K).unwrap();
    let mut index = 0;
    c.bench_function("local part: μ-law frame → 16 kHz f32", |b| {
        b.iter(|| {
            let frame = frames[index % frames.len()];
            index += 1;
            let mut sum = 0.0;
            inbound.push(black_box(frame), |speech| sum += speech[0]);
            black_box(sum)
        })
    });
    let mut speech = Vec::new();
    Inbound::new(AudioFormat::MULAW_8K)
        .unwrap()
        .push(&audio, |frame| speech.extend_from_slice(frame));
    let chunks: Vec<&[f32]> = speech.chunks(320).collect();
    let mut detector = VoiceDetector::new(VadConfig::default());
    c.bench_function("local part: VAD on 20 ms at 16 kHz", |b| {
        b.iter(|| {
            let chunk = chunks[index % chunks.len()];
            index += 1;
            let mut voiced = 0;
            detector.push(black_box(chunk), |_, decision| {
                voiced += usize::from(decision.voiced)
            });
            black_box(voiced)
        })
    });
}

criterion_group!(benches, local_frame_path, local_frame_parts);
criterion_main!(benches);
