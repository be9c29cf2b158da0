//! The recording's cost per call (issue 13's budgets: at most 0.5 ms of CPU per call-second,
//! at most 64 KiB more memory per live call), on speech (the apology, 8 kHz, and the same
//! resampled to 16 kHz):
//!
//! - `recording_block/*`: one 20 ms block through the whole bridge-side path (a caller frame
//!   and an agent frame decoded, mixed, encoded, pages taken); ×50 is the cost per
//!   call-second;
//! - `opus_mode/*`: one second of stereo speech through libopus at complexity 0 in each mode,
//!   the measurement the settings were chosen by (`recording::ogg_opus`);
//! - memory: printed first, the resident memory 200 live recorders add, per recorder.
//!
//! Run with `cargo bench --bench recording -- --warm-up-time 1 --measurement-time 3`.

use std::{hint::black_box, time::Duration};

use audiopus::{Application, Bitrate, Channels, SampleRate, coder::Encoder};
use criterion::{Criterion, criterion_group};
use tokio::sync::mpsc;
use voice_gateway::{
    audio::{AudioFormat, l16, mulaw, resample::Resampler},
    recording::{CallRecorder, WriterMessage, ogg_opus::BITRATE},
};

static SPEECH_MULAW: &[u8] = include_bytes!("../assets/apology.ulaw");

/// The apology as 8 kHz samples, and resampled to 16 kHz.
fn speech(rate: u32) -> Vec<i16> {
    let mut samples = vec![0i16; SPEECH_MULAW.len()];
    mulaw::decode(SPEECH_MULAW, &mut samples);
    if rate == 8000 {
        return samples;
    }
    let mut resampler = Resampler::new(8000, rate).unwrap();
    let mut out = vec![0i16; resampler.output_frame_len()];
    let mut resampled = Vec::new();
    for chunk in samples.chunks_exact(160) {
        let written = resampler.process_frame(chunk, &mut out).unwrap();
        resampled.extend_from_slice(&out[..written]);
    }
    resampled
}

/// The speech as the carrier's frames of `format`: (caller frames, agent frames), the agent
/// half a file behind so the channels differ.
fn frames(format: AudioFormat) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let samples = speech(format.sample_rate);
    let frame = format.frame_samples();
    let encode = |chunk: &[i16]| match format {
        AudioFormat::MULAW_8K => {
            let mut bytes = vec![0u8; chunk.len()];
            mulaw::encode(chunk, &mut bytes);
            bytes
        }
        _ => {
            let mut bytes = vec![0u8; chunk.len() * 2];
            l16::encode_le(chunk, &mut bytes);
            bytes
        }
    };
    let caller: Vec<Vec<u8>> = samples.chunks_exact(frame).map(encode).collect();
    let mut agent = caller.clone();
    agent.rotate_left(caller.len() / 2);
    (caller, agent)
}

fn recording_block(c: &mut Criterion) {
    let mut group = c.benchmark_group("recording_block");
    for (name, format) in [
        ("mulaw_8k", AudioFormat::MULAW_8K),
        ("l16_16k", AudioFormat::L16_16K),
    ] {
        let (caller, agent) = frames(format);
        let (pages, mut written) = mpsc::channel::<WriterMessage>(4);
        let mut recorder = CallRecorder::new(format, pages, 1).unwrap();
        let mut index = 0u64;
        group.bench_function(name, |b| {
            b.iter(|| {
                let frame = (index as usize) % caller.len();
                let now = Duration::from_millis((index + 1) * 20);
                recorder
                    .caller(
                        black_box(&caller[frame]),
                        Some(index * 20),
                        Some(index),
                        now,
                    )
                    .unwrap();
                recorder.agent(black_box(&agent[frame]), now).unwrap();
                // The writer's side: take the pages as they come.
                while written.try_recv().is_ok() {}
                index += 1;
            })
        });
    }
    group.finish();
}

fn opus_mode(c: &mut Criterion) {
    let mut group = c.benchmark_group("opus_mode");
    group.sample_size(20);
    for rate in [8000u32, 16000] {
        let samples = speech(rate);
        let second = rate as usize;
        let stereo: Vec<i16> = (0..second)
            .flat_map(|index| {
                [
                    samples[index],
                    samples[(index + samples.len() / 2) % samples.len()],
                ]
            })
            .collect();
        for (name, application) in [
            ("celt_restricted_lowdelay", Application::LowDelay),
            ("silk_voip", Application::Voip),
        ] {
            let sample_rate = if rate == 8000 {
                SampleRate::Hz8000
            } else {
                SampleRate::Hz16000
            };
            let mut encoder = Encoder::new(sample_rate, Channels::Stereo, application).unwrap();
            encoder.set_force_channels(Channels::Stereo).unwrap();
            encoder.set_complexity(0).unwrap();
            encoder
                .set_bitrate(Bitrate::BitsPerSecond(BITRATE))
                .unwrap();
            let mut packet = vec![0u8; 1275];
            group.bench_function(format!("{name}_{}k_one_second", rate / 1000), |b| {
                b.iter(|| {
                    for block in stereo.chunks_exact(rate as usize / 50 * 2) {
                        black_box(encoder.encode(block, &mut packet).unwrap());
                    }
                })
            });
        }
    }
    group.finish();
}

/// Resident memory (KiB) of this process.
fn resident_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|field| field.parse().ok())
        .unwrap_or(0);
    pages * 4
}

/// What one live recorder holds, measured as resident memory (libopus's state included).
fn memory_per_call() {
    // Every format's recorders stay alive to the end, so a later count never reuses memory an
    // earlier one freed; one recorder made and dropped first warms the allocator up.
    let mut live = Vec::new();
    live.push(fed_recorders(AudioFormat::MULAW_8K, 1));
    live.clear();
    for (name, format) in [
        ("mulaw_8k", AudioFormat::MULAW_8K),
        ("l16_16k", AudioFormat::L16_16K),
    ] {
        let before = resident_kib();
        live.push(fed_recorders(format, 200));
        let after = resident_kib();
        println!(
            "memory/{name}: {} KiB per live recorder (resident, 200 recorders)",
            after.saturating_sub(before) / 200
        );
    }
}

type Live = Vec<(CallRecorder, mpsc::Receiver<WriterMessage>)>;

/// `count` recorders, each fed 5 s of a call with the agent a playout lead (300 ms) ahead, so
/// every buffer is at its working size.
fn fed_recorders(format: AudioFormat, count: usize) -> Live {
    let (caller, agent) = frames(format);
    let mut live = Vec::new();
    for _ in 0..count {
        let (pages, mut written) = mpsc::channel::<WriterMessage>(4);
        let mut recorder = CallRecorder::new(format, pages, 1).unwrap();
        for index in 0..250u64 {
            let now = Duration::from_millis((index + 1) * 20);
            let frame = index as usize % caller.len();
            recorder
                .caller(&caller[frame], Some(index * 20), Some(index), now)
                .unwrap();
            // Topped up by 100 ms, as the session's pacing does.
            let batch = match index {
                0 => 15,
                _ if index.is_multiple_of(5) => 5,
                _ => 0,
            };
            for _ in 0..batch {
                recorder.agent(&agent[frame], now).unwrap();
            }
            while written.try_recv().is_ok() {}
        }
        live.push((recorder, written));
    }
    live
}

criterion_group!(benches, recording_block, opus_mode);

fn main() {
    memory_per_call();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
