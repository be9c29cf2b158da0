use std::time::Duration;

use super::*;

const RATE: u32 = 8000;
/// Samples per 20 ms at 8 kHz.
const FRAME: usize = 160;

fn ms(value: u64) -> Duration {
    Duration::from_millis(value)
}

/// Every final block so far, as (left, right) per sample.
fn drain(mixer: &mut Mixer, now: Duration) -> Vec<(i16, i16)> {
    let mut out = vec![0i16; FRAME * 2];
    let mut samples = Vec::new();
    while mixer.next_block(now, &mut out) {
        samples.extend(out.chunks_exact(2).map(|pair| (pair[0], pair[1])));
    }
    samples
}

fn finish(mixer: &mut Mixer, now: Duration) -> Vec<(i16, i16)> {
    let mut samples = drain(mixer, now);
    let mut out = vec![0i16; FRAME * 2];
    while let Some(real) = mixer.finish_block(now, &mut out) {
        samples.extend(
            out[..real * 2]
                .chunks_exact(2)
                .map(|pair| (pair[0], pair[1])),
        );
    }
    samples
}

/// Caller frames of `value` for frames `from..to`, 20 ms apart, each arriving as it ends.
fn caller_frames(mixer: &mut Mixer, from: u64, to: u64, value: i16) {
    for index in from..to {
        mixer.caller(
            Some(1_000_000 + index * 20),
            Some(index),
            &[value; FRAME],
            ms((index + 1) * 20),
        );
    }
}

#[test]
fn caller_audio_goes_left_and_the_agent_channel_is_silent_without_agent_audio() {
    let mut mixer = Mixer::new(RATE);
    caller_frames(&mut mixer, 0, 10, 1000);
    let samples = finish(&mut mixer, ms(200));
    assert_eq!(samples.len(), 10 * FRAME);
    assert!(
        samples
            .iter()
            .all(|&(left, right)| left == 1000 && right == 0)
    );
}

#[test]
fn a_gap_in_the_callers_timestamps_becomes_silence_of_the_same_length() {
    let mut mixer = Mixer::new(RATE);
    caller_frames(&mut mixer, 0, 5, 1000);
    // Frames 5..15 never came (300 ms... 200 ms of loss); the stream's clock went on.
    caller_frames(&mut mixer, 15, 20, 2000);
    let samples = finish(&mut mixer, ms(400));
    assert_eq!(
        samples.len(),
        20 * FRAME,
        "the timeline keeps the stream's length"
    );
    assert!(samples[..5 * FRAME].iter().all(|&(left, _)| left == 1000));
    assert!(
        samples[5 * FRAME..15 * FRAME]
            .iter()
            .all(|&(left, _)| left == 0)
    );
    assert!(samples[15 * FRAME..].iter().all(|&(left, _)| left == 2000));
}

#[test]
fn agent_frames_sent_ahead_play_one_after_the_other_from_the_streams_now() {
    let mut mixer = Mixer::new(RATE);
    caller_frames(&mut mixer, 0, 5, 0);
    // At 100 ms, five agent frames go out at once (the playout lead): they play 100..200 ms.
    for _ in 0..5 {
        mixer.agent(&[500; FRAME], ms(100));
    }
    caller_frames(&mut mixer, 5, 15, 0);
    let samples = finish(&mut mixer, ms(300));
    assert_eq!(samples.len(), 15 * FRAME);
    assert!(samples[..5 * FRAME].iter().all(|&(_, right)| right == 0));
    assert!(
        samples[5 * FRAME..10 * FRAME]
            .iter()
            .all(|&(_, right)| right == 500)
    );
    assert!(samples[10 * FRAME..].iter().all(|&(_, right)| right == 0));
}

#[test]
fn a_clear_removes_the_agent_audio_that_had_not_played_yet() {
    let mut mixer = Mixer::new(RATE);
    caller_frames(&mut mixer, 0, 5, 0);
    // 300 ms of agent audio sent at 100 ms; the caller barges in at 160 ms.
    for _ in 0..15 {
        mixer.agent(&[500; FRAME], ms(100));
    }
    caller_frames(&mut mixer, 5, 8, 0);
    mixer.clear(ms(160));
    caller_frames(&mut mixer, 8, 25, 0);
    let samples = finish(&mut mixer, ms(500));
    let heard = samples.iter().filter(|&&(_, right)| right == 500).count();
    assert_eq!(heard, 3 * FRAME, "only 100..160 ms played");
    assert!(
        samples[5 * FRAME..8 * FRAME]
            .iter()
            .all(|&(_, right)| right == 500)
    );
    assert!(samples[8 * FRAME..].iter().all(|&(_, right)| right == 0));
}

#[test]
fn agent_audio_after_a_clear_plays_from_the_clear_on() {
    let mut mixer = Mixer::new(RATE);
    caller_frames(&mut mixer, 0, 5, 0);
    for _ in 0..10 {
        mixer.agent(&[500; FRAME], ms(100));
    }
    mixer.clear(ms(100));
    mixer.agent(&[700; FRAME], ms(100));
    caller_frames(&mut mixer, 5, 10, 0);
    let samples = finish(&mut mixer, ms(200));
    assert!(
        samples[5 * FRAME..6 * FRAME]
            .iter()
            .all(|&(_, right)| right == 700)
    );
    assert!(samples[6 * FRAME..].iter().all(|&(_, right)| right == 0));
}

#[test]
fn while_the_caller_sends_nothing_the_timeline_goes_on_after_the_hold() {
    let mut mixer = Mixer::new(RATE);
    caller_frames(&mut mixer, 0, 5, 1000);
    assert_eq!(drain(&mut mixer, ms(100)).len(), 5 * FRAME);
    // Nothing from the caller for 500 ms: all but the hold is written, caller silent.
    mixer.agent(&[500; FRAME], ms(120));
    let written = drain(&mut mixer, ms(600));
    assert_eq!(written.len() as u64, (600 - 200 - 100) * 8);
    assert!(written.iter().all(|&(left, _)| left == 0));
    assert!(
        written[FRAME..2 * FRAME]
            .iter()
            .all(|&(_, right)| right == 500)
    );
    // A caller frame from that written past is late: dropped, counted.
    mixer.caller(Some(1_000_000 + 10 * 20), Some(10), &[9; FRAME], ms(600));
    assert_eq!(mixer.late_caller_samples, FRAME as u64);
}

#[test]
fn frames_without_a_clock_follow_each_other() {
    let mut mixer = Mixer::new(RATE);
    for index in 0..4u64 {
        mixer.caller(None, None, &[index as i16 + 1; FRAME], ms((index + 1) * 20));
    }
    let samples = finish(&mut mixer, ms(80));
    assert_eq!(samples.len(), 4 * FRAME);
    assert_eq!(samples[3 * FRAME].0, 4);
}

#[test]
fn a_timestamp_far_ahead_is_not_believed() {
    let mut mixer = Mixer::new(RATE);
    caller_frames(&mut mixer, 0, 2, 1);
    // A clock reset: an hour ahead.
    mixer.caller(Some(1_000_000 + 3_600_000), None, &[2; FRAME], ms(60));
    mixer.caller(Some(1_000_000 + 3_600_020), None, &[3; FRAME], ms(80));
    let samples = finish(&mut mixer, ms(80));
    assert_eq!(samples.len(), 4 * FRAME);
    assert_eq!(samples[2 * FRAME].0, 2);
    assert_eq!(samples[3 * FRAME].0, 3);
}

#[test]
fn agent_audio_far_ahead_is_dropped_and_counted_so_memory_stays_bounded() {
    let mut mixer = Mixer::new(RATE);
    caller_frames(&mut mixer, 0, 1, 0);
    // Five seconds sent at once.
    for _ in 0..250 {
        mixer.agent(&[500; FRAME], ms(20));
    }
    let kept = (MAX_AGENT_AHEAD.as_millis() as u64) * 8;
    assert!(mixer.dropped_agent_samples >= 250 * FRAME as u64 - kept);
    assert!(mixer.held_bytes() <= (kept as usize + 2 * FRAME) * 2 * 2 * 2);
}

#[test]
fn the_end_keeps_the_streams_length_and_leaves_out_agent_audio_that_never_played() {
    let mut mixer = Mixer::new(RATE);
    caller_frames(&mut mixer, 0, 5, 0);
    for _ in 0..10 {
        mixer.agent(&[500; FRAME], ms(100));
    }
    // The caller hangs up at 110 ms: 10 ms of the agent played.
    let samples = finish(&mut mixer, ms(110));
    assert_eq!(samples.len(), 110 * 8);
    assert_eq!(
        samples.iter().filter(|&&(_, right)| right == 500).count(),
        10 * 8
    );
}
