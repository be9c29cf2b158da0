//! Per-frame costs of the realtime audio path: μ-law codec, L16 resampling between Plivo's
//! 8 kHz and OpenAI's 24 kHz, and re-chunking a typical OpenAI audio delta.
//!
//! Run with `cargo bench --bench audio -- --warm-up-time 1 --measurement-time 2`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use voice_gateway::audio::{framing::Rechunker, l16, mulaw, resample::Resampler, tone};

fn mulaw_codec(c: &mut Criterion) {
    let frame = tone::sine_mulaw(440.0, 0.5, 20);
    let mut pcm = [0i16; 160];
    let mut bytes = [0u8; 160];
    let mut group = c.benchmark_group("mulaw");
    group.throughput(Throughput::Elements(160));
    group.bench_function("decode_160", |b| {
        b.iter(|| mulaw::decode(black_box(&frame), black_box(&mut pcm)))
    });
    mulaw::decode(&frame, &mut pcm);
    group.bench_function("encode_160", |b| {
        b.iter(|| mulaw::encode(black_box(&pcm), black_box(&mut bytes)))
    });
    group.bench_function("decode_encode_160", |b| {
        b.iter(|| {
            mulaw::decode(black_box(&frame), &mut pcm);
            mulaw::encode(&pcm, black_box(&mut bytes))
        })
    });
    group.finish();
}

/// One frame of L16 LE bytes in, one frame of L16 LE bytes out, as the bridge does it.
fn resample_l16(c: &mut Criterion) {
    let mut group = c.benchmark_group("resample_l16");
    for (from, to) in [(8000u32, 24000u32), (24000, 8000)] {
        let mut resampler = Resampler::new(from, to).unwrap();
        let in_len = resampler.input_frame_len();
        let out_len = resampler.output_frame_len();
        let input: Vec<u8> = (0..in_len)
            .flat_map(|i| (((i as f32 * 0.3).sin() * 8000.0) as i16).to_le_bytes())
            .collect();
        let mut pcm_in = vec![0i16; in_len];
        let mut pcm_out = vec![0i16; out_len];
        let mut output = vec![0u8; out_len * 2];
        group.bench_function(format!("{}k_to_{}k_frame", from / 1000, to / 1000), |b| {
            b.iter(|| {
                l16::decode_le(black_box(&input), &mut pcm_in);
                resampler.process_frame(&pcm_in, &mut pcm_out).unwrap();
                l16::encode_le(&pcm_out, black_box(&mut output))
            })
        });
    }
    group.finish();
}

/// A 100 ms OpenAI delta (4800 bytes) split into 160-byte μ-law frames.
fn rechunk(c: &mut Criterion) {
    let delta = vec![0x55u8; 4800];
    let mut rechunker = Rechunker::new(160);
    c.bench_function("rechunker_push_4800", |b| {
        b.iter(|| {
            let mut frames = 0usize;
            rechunker.push(black_box(&delta), |f| {
                black_box(f);
                frames += 1;
            });
            frames
        })
    });
}

criterion_group!(benches, mulaw_codec, resample_l16, rechunk);
criterion_main!(benches);
