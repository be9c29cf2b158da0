//! The recording's cost per call (issue 13's budgets: at most 0.5 ms of CPU per call-second,
//! at most 64 KiB more memory per live call), on speech (the apology, 8 kHz, and the same
//! resampled to 16 kHz):
//!
//! - `recording_block/*`: one 20 ms block through the whole bridge-side path (a caller frame
//!   and an agent frame decoded, mixed, encoded, pages taken); ×50 is the cost per
//!   call-second. `mulaw_8k` and `l16_16k` are the worst case, both sides speaking all the
//!   time; `*_in_turns` is closer to a call: each side speaks half the time, in turns, the
//!   caller's channel line noise and the agent's exact zeros while quiet;
//! - `opus_mode/*`: one second of stereo speech through libopus at complexity 0 in each mode,
//!   the measurement the settings were chosen by (`recording::ogg_opus`);
//! - `opus_layout/*`: the other layouts and settings weighed (two mono streams, silent
//!   channels, DTX, 60 ms packets);
//! - memory: printed first, the resident memory 200 live recorders add, per recorder, and
//!   what one libopus encoder holds, mono and stereo.
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

/// Line noise a quiet caller sends (a few steps of μ-law around zero, never exact zeros).
fn line_noise(length: usize) -> Vec<i16> {
    let mut state = 12_345u32;
    (0..length)
        .map(|_| {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            ((state >> 16) % 33) as i16 - 16
        })
        .collect()
}

/// A call closer to a real one: each side speaks half the time, in turns of 2 s (the caller
/// first); the caller's channel carries line noise when the caller is quiet, the agent's
/// exact zeros when the agent is (nothing played).
fn frames_in_turns(format: AudioFormat) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let (speech, _) = frames(format);
    let frame = format.frame_samples();
    let bytes_per_sample = speech[0].len() / frame;
    let encode = |samples: &[i16]| match format {
        AudioFormat::MULAW_8K => {
            let mut bytes = vec![0u8; samples.len()];
            mulaw::encode(samples, &mut bytes);
            bytes
        }
        _ => {
            let mut bytes = vec![0u8; samples.len() * bytes_per_sample];
            l16::encode_le(samples, &mut bytes);
            bytes
        }
    };
    let noise = line_noise(frame * speech.len());
    let silence = encode(&vec![0i16; frame]);
    let (mut caller, mut agent) = (Vec::new(), Vec::new());
    for (index, spoken) in speech.iter().enumerate() {
        // Turns of 100 frames (2 s).
        if (index / 100).is_multiple_of(2) {
            caller.push(spoken.clone());
            agent.push(silence.clone());
        } else {
            caller.push(encode(&noise[index * frame..(index + 1) * frame]));
            agent.push(spoken.clone());
        }
    }
    (caller, agent)
}

fn recording_block(c: &mut Criterion) {
    let mut group = c.benchmark_group("recording_block");
    for (name, format, in_turns) in [
        ("mulaw_8k", AudioFormat::MULAW_8K, false),
        ("l16_16k", AudioFormat::L16_16K, false),
        ("mulaw_8k_in_turns", AudioFormat::MULAW_8K, true),
        ("l16_16k_in_turns", AudioFormat::L16_16K, true),
    ] {
        let (caller, agent) = match in_turns {
            false => frames(format),
            true => frames_in_turns(format),
        };
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
    let mut encoders = Vec::new();
    for (name, channels) in [("mono", Channels::Mono), ("stereo", Channels::Stereo)] {
        let before = resident_kib();
        for _ in 0..200 {
            encoders
                .push(Encoder::new(SampleRate::Hz8000, channels, Application::LowDelay).unwrap());
        }
        println!(
            "memory/libopus_{name}_encoder: {} KiB each (resident, 200 encoders)",
            resident_kib().saturating_sub(before) / 200
        );
    }
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

/// `OPUS_SET_DTX_REQUEST` (opus_defines.h), which `audiopus` has no setter for.
const OPUS_SET_DTX: i32 = 4016;

/// The layouts and inputs weighed against the stereo stream, one second of 8 kHz audio each
/// at complexity 0, CELT, narrowband: two mono streams (what each would cost at a lower
/// bitrate, and on a silent or quiet channel), 60 ms packets, and libopus's own DTX on
/// digital silence. The bytes a second each makes are printed first.
fn opus_layout(c: &mut Criterion) {
    let mut group = c.benchmark_group("opus_layout");
    group.sample_size(20);
    let samples = speech(8000);
    let speech_second = &samples[..8000];
    let zeros = vec![0i16; 16000];
    let noise = line_noise(8000);
    let stereo: Vec<i16> = (0..8000)
        .flat_map(|index| {
            [
                samples[index],
                samples[(index + samples.len() / 2) % samples.len()],
            ]
        })
        .collect();
    let make = |channels: Channels, bitrate: i32, dtx: bool| {
        let mut encoder =
            Encoder::new(SampleRate::Hz8000, channels, Application::LowDelay).unwrap();
        encoder.set_complexity(0).unwrap();
        encoder
            .set_bitrate(Bitrate::BitsPerSecond(bitrate))
            .unwrap();
        encoder
            .set_max_bandwidth(audiopus::Bandwidth::Narrowband)
            .unwrap();
        if channels == Channels::Stereo {
            encoder.set_force_channels(Channels::Stereo).unwrap();
        }
        if dtx {
            encoder.set_encoder_ctl_request(OPUS_SET_DTX, 1).unwrap();
        }
        encoder
    };
    let caller_only: Vec<i16> = samples[..8000]
        .iter()
        .flat_map(|&sample| [sample, 0])
        .collect();
    let cases: [(&str, Channels, i32, bool, &[i16]); 11] = [
        (
            "stereo_40k_speech",
            Channels::Stereo,
            40_000,
            false,
            &stereo,
        ),
        (
            "stereo_40k_speech_60ms",
            Channels::Stereo,
            40_000,
            false,
            &stereo,
        ),
        (
            "stereo_40k_caller_only",
            Channels::Stereo,
            40_000,
            false,
            &caller_only,
        ),
        ("stereo_40k_zeros", Channels::Stereo, 40_000, false, &zeros),
        (
            "mono_24k_speech",
            Channels::Mono,
            24_000,
            false,
            speech_second,
        ),
        (
            "mono_20k_speech",
            Channels::Mono,
            20_000,
            false,
            speech_second,
        ),
        (
            "mono_16k_speech",
            Channels::Mono,
            16_000,
            false,
            speech_second,
        ),
        (
            "mono_12k_speech",
            Channels::Mono,
            12_000,
            false,
            speech_second,
        ),
        ("mono_20k_line_noise", Channels::Mono, 20_000, false, &noise),
        (
            "mono_20k_zeros",
            Channels::Mono,
            20_000,
            false,
            &zeros[..8000],
        ),
        (
            "mono_20k_zeros_dtx",
            Channels::Mono,
            20_000,
            true,
            &zeros[..8000],
        ),
    ];
    for (name, channels, bitrate, dtx, input) in cases {
        let encoder = make(channels, bitrate, dtx);
        let mut block = 160 * if channels == Channels::Stereo { 2 } else { 1 };
        if name.ends_with("60ms") {
            block *= 3;
        }
        let mut packet = vec![0u8; 1275];
        let mut bytes = 0usize;
        for chunk in input.chunks_exact(block) {
            bytes += encoder.encode(chunk, &mut packet).unwrap();
        }
        println!("opus_layout/{name}: {bytes} bytes a second");
        group.bench_function(name, |b| {
            b.iter(|| {
                for chunk in input.chunks_exact(block) {
                    black_box(encoder.encode(chunk, &mut packet).unwrap());
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, recording_block, opus_mode, opus_layout);

fn main() {
    memory_per_call();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
