use super::*;

const FRAME: usize = crate::vad::FRAME_SAMPLES;

/// Drives an endpointer with frames whose samples all equal their frame number, so the
/// audio of an utterance shows which frames it holds.
struct Driver {
    ep: Endpointer,
    frames: u32,
}

impl Driver {
    /// Without early hand-over on pauses, which the tests below that are not about it ignore.
    fn new(config: EndpointConfig) -> Self {
        Self::with_pauses(EndpointConfig {
            pause_ms: 0,
            ..config
        })
    }

    fn with_pauses(config: EndpointConfig) -> Self {
        Self {
            ep: Endpointer::new(config),
            frames: 0,
        }
    }

    fn push(&mut self, voiced: bool) -> Option<EndpointEvent> {
        let frame = [self.frames as f32; FRAME];
        self.frames += 1;
        self.ep.push(&frame, voiced)
    }

    /// Pushes `n` frames, returning each event with the number of the frame that caused it.
    fn run(&mut self, n: u32, voiced: bool) -> Vec<(u32, EndpointEvent)> {
        (0..n)
            .filter_map(|_| {
                let index = self.frames;
                self.push(voiced).map(|e| (index, e))
            })
            .collect()
    }
}

fn utterance(event: &EndpointEvent) -> &Utterance {
    match event {
        EndpointEvent::SpeechEnded(u) => u,
        other => panic!("expected SpeechEnded, got {other:?}"),
    }
}

/// Frame numbers present in the audio, in order, each once.
fn frames_in(audio: &[f32]) -> Vec<u32> {
    let mut out: Vec<u32> = Vec::new();
    for &s in audio {
        if out.last() != Some(&(s as u32)) {
            out.push(s as u32);
        }
    }
    out
}

#[test]
fn speech_starts_after_start_frames_consecutive_voiced_frames() {
    let mut d = Driver::new(EndpointConfig::default());
    assert!(d.run(20, false).is_empty());
    assert_eq!(d.push(true), None);
    assert_eq!(d.push(true), None);
    assert!(!d.ep.is_speaking());
    assert_eq!(d.push(true), Some(EndpointEvent::SpeechStarted));
    assert!(d.ep.is_speaking());
    // Only once.
    assert!(d.run(10, true).is_empty());
}

#[test]
fn an_unvoiced_frame_restarts_the_count() {
    let mut d = Driver::new(EndpointConfig::default());
    for _ in 0..10 {
        assert!(d.run(2, true).is_empty());
        assert!(d.run(1, false).is_empty());
    }
    assert!(!d.ep.is_speaking());
    assert_eq!(d.run(3, true), vec![(32, EndpointEvent::SpeechStarted)]);
}

#[test]
fn pre_roll_is_the_audio_just_before_the_first_voiced_frame() {
    let mut d = Driver::new(EndpointConfig::default());
    d.run(50, false); // frames 0..=49
    d.run(20, true); // frames 50..=69
    let events = d.run(40, false);
    let u = utterance(&events[0].1);
    // 200 ms = 3200 samples = 12.5 frames: half of frame 37, then frames 38..=49.
    let pre_roll = &u.audio[..3200];
    assert_eq!(pre_roll[0], 37.0);
    assert_eq!(frames_in(pre_roll), (37..=49).collect::<Vec<_>>());
    assert_eq!(u.audio[3200], 50.0);
    assert_eq!(u.start_sample, 50 * FRAME as u64 - 3200);
}

#[test]
fn pre_roll_is_shorter_when_the_stream_starts_with_speech() {
    let mut d = Driver::new(EndpointConfig::default());
    d.run(2, false);
    d.run(10, true);
    let u = d.run(40, false).remove(0).1;
    let u = utterance(&u);
    assert_eq!(u.start_sample, 0);
    assert_eq!(frames_in(&u.audio)[..3], [0, 1, 2]);
}

#[test]
fn a_voiced_run_that_fails_to_start_keeps_its_frames_in_the_pre_roll() {
    let mut d = Driver::new(EndpointConfig::default());
    d.run(20, false); // 0..=19
    d.run(2, true); // 20, 21: too short to start
    d.run(1, false); // 22
    d.run(10, true); // 23..=32: starts at 25
    let u = d.run(40, false).remove(0).1;
    let u = utterance(&u);
    // 3200 samples before frame 23: half of frame 10, frames 11..=22.
    assert_eq!(frames_in(&u.audio[..3200]), (10..=22).collect::<Vec<_>>());
}

#[test]
fn speech_ends_after_end_silence_not_before() {
    let mut d = Driver::new(EndpointConfig::default());
    d.run(20, false);
    d.run(30, true); // frames 20..=49
    // 500 ms = 8000 samples = 31.25 frames: the 32nd unvoiced frame (frame 81) ends it.
    let events = d.run(31, false);
    assert!(events.is_empty(), "{events:?}");
    assert!(d.ep.is_speaking());
    let events = d.run(1, false);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].0, 81);
    assert!(!d.ep.is_speaking());
    let u = utterance(&events[0].1);
    assert!(!u.forced);
    assert_eq!(u.voiced_ms, 30 * 16);
}

#[test]
fn pauses_inside_speech_do_not_end_it() {
    let mut d = Driver::new(EndpointConfig::default());
    d.run(5, true);
    // A single unvoiced frame, then a pause just short of the end silence.
    assert!(d.run(1, false).is_empty());
    assert!(d.run(5, true).is_empty());
    assert!(d.run(31, false).is_empty());
    assert!(d.run(5, true).is_empty());
    assert!(d.ep.is_speaking());
    let events = d.run(32, false);
    let u = utterance(&events[0].1);
    assert_eq!(u.voiced_ms, 15 * 16);
    // Both pauses are inside the audio.
    let frames = frames_in(&u.audio);
    assert!(frames.contains(&5) && frames.contains(&20));
}

#[test]
fn sample_indexes_and_trailing_silence() {
    let mut d = Driver::new(EndpointConfig::default());
    d.run(100, false); // 0..=99
    d.run(25, true); // 100..=124
    let events = d.run(40, false);
    let u = utterance(&events[0].1);
    let last_voiced_end = 125 * FRAME as u64;
    assert_eq!(u.end_of_voice_sample, last_voiced_end);
    assert_eq!(u.start_sample, 100 * FRAME as u64 - 3200);
    // pre-roll + speech + 160 ms (2560 samples) of trailing silence.
    assert_eq!(u.audio.len(), 3200 + 25 * FRAME + 2560);
    assert_eq!(u.duration_ms(), 200 + 400 + 160);
    assert_eq!(
        u.start_sample + u.audio.len() as u64,
        last_voiced_end + 2560
    );
    // The event came 32 frames after the last voiced one: the latency the caller sees.
    assert_eq!(d.ep.samples_seen(), 165 * FRAME as u64);
    assert_eq!(events[0].0, 124 + 32);
}

#[test]
fn a_blip_is_discarded_after_starting() {
    let mut d = Driver::new(EndpointConfig::default());
    d.run(10, false);
    // 7 voiced frames = 112 ms < 120 ms.
    let events = d.run(7, true);
    assert_eq!(events, vec![(12, EndpointEvent::SpeechStarted)]);
    let events = d.run(40, false);
    assert_eq!(events, vec![(48, EndpointEvent::Discarded)]);
    assert!(!d.ep.is_speaking());
    // 8 voiced frames = 128 ms is enough.
    d.run(8, true);
    let events = d.run(40, false);
    assert_eq!(utterance(&events[0].1).voiced_ms, 128);
}

#[test]
fn max_utterance_forces_an_end_and_speech_goes_on_without_overlap() {
    let config = EndpointConfig {
        max_utterance_ms: 1_000,
        ..EndpointConfig::default()
    };
    let mut d = Driver::new(config);
    d.run(20, false); // 0..=19
    // 1000 ms = 16000 samples = 62.5 frames from the first voiced frame (20): frame 82.
    let events = d.run(75, true); // 20..=94
    assert_eq!(events.len(), 3, "{events:?}");
    assert_eq!(events[0], (22, EndpointEvent::SpeechStarted));
    assert_eq!(events[1].0, 82);
    let first = utterance(&events[1].1).clone();
    assert!(first.forced);
    assert_eq!(first.end_of_voice_sample, 83 * FRAME as u64);
    assert_eq!(*frames_in(&first.audio).last().unwrap(), 82);
    // The next utterance starts from scratch right after, without pre-roll from the first.
    assert_eq!(events[2], (85, EndpointEvent::SpeechStarted));
    let events = d.run(40, false);
    let second = utterance(&events[0].1);
    assert_eq!(second.start_sample, first.end_of_voice_sample);
    assert_eq!(frames_in(&second.audio)[0], 83);
    assert!(!second.forced);
}

#[test]
fn the_default_max_utterance_is_fifteen_seconds() {
    let mut d = Driver::new(EndpointConfig::default());
    let events = d.run(1000, true);
    // 240000 samples = 937.5 frames: the frame numbered 937 completes it.
    assert_eq!(events[1].0, 937);
    assert_eq!(utterance(&events[1].1).voiced_ms, 938 * 16);
}

#[test]
fn flush_ends_speech_in_progress() {
    let mut d = Driver::new(EndpointConfig::default());
    assert_eq!(d.ep.flush(), None);
    d.run(20, true);
    d.run(3, false);
    let event = d.ep.flush().unwrap();
    let u = utterance(&event);
    assert_eq!(u.end_of_voice_sample, 20 * FRAME as u64);
    assert_eq!(u.audio.len(), 23 * FRAME); // all 3 silent frames fit in the 160 ms tail
    assert!(!d.ep.is_speaking());
    assert_eq!(d.ep.flush(), None);
}

#[test]
fn reset_restarts_the_clock_and_forgets_speech() {
    let mut d = Driver::new(EndpointConfig::default());
    d.run(20, true);
    d.ep.reset();
    assert!(!d.ep.is_speaking());
    assert_eq!(d.ep.samples_seen(), 0);
    assert!(d.run(2, true).is_empty());
    d.run(8, true);
    let events = d.run(40, false);
    assert_eq!(utterance(&events[0].1).start_sample, 0);
}

#[test]
fn frames_of_other_sizes_count_by_their_samples() {
    // 20 ms frames: 500 ms of silence is exactly 25 of them.
    let mut ep = Endpointer::new(EndpointConfig {
        pause_ms: 0,
        ..EndpointConfig::default()
    });
    for _ in 0..10 {
        ep.push(&[0.1; 320], true);
    }
    for i in 0..24 {
        assert_eq!(ep.push(&[0.0; 320], false), None, "frame {i}");
    }
    let u = ep.push(&[0.0; 320], false).unwrap();
    assert_eq!(utterance(&u).end_of_voice_sample, 3200);
}

#[test]
fn a_pause_hands_over_the_utterance_early_and_the_end_carries_the_same_audio() {
    let mut d = Driver::with_pauses(EndpointConfig::default());
    d.run(20, false); // 0..=19
    d.run(30, true); // 20..=49, speech from frame 22
    // 240 ms = 15 frames of silence: frame 64 pauses.
    let events = d.run(15, false); // 50..=64
    assert_eq!(events.len(), 1, "{:?}", events.len());
    let (at, EndpointEvent::Paused(early)) = &events[0] else {
        panic!("expected Paused");
    };
    assert_eq!(*at, 64);
    assert_eq!(early.end_of_voice_sample, 50 * FRAME as u64);
    // The silence goes on: the end carries exactly the early audio.
    let events = d.run(17, false); // 65..=81: 32 silent frames end it at 81
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].0, 81);
    assert_eq!(utterance(&events[0].1), early);
}

#[test]
fn voice_after_a_pause_resumes_the_turn_and_pauses_again_later() {
    let mut d = Driver::with_pauses(EndpointConfig::default());
    d.run(10, true);
    let paused = d.run(15, false);
    assert!(matches!(paused[..], [(_, EndpointEvent::Paused(_))]));
    assert_eq!(d.run(1, true), vec![(25, EndpointEvent::Resumed)]);
    assert!(d.run(5, true).is_empty(), "one Resumed");
    let again = d.run(15, false);
    let [(_, EndpointEvent::Paused(second))] = &again[..] else {
        panic!("a second pause: {again:?}");
    };
    assert_eq!(second.end_of_voice_sample, 31 * FRAME as u64);
    assert!(
        d.run(17, false)
            .iter()
            .any(|(_, e)| matches!(e, EndpointEvent::SpeechEnded(_)))
    );
}

#[test]
fn a_blip_never_pauses() {
    let mut d = Driver::with_pauses(EndpointConfig::default());
    d.run(4, true); // 64 ms voiced, below min_speech_ms
    let events = d.run(40, false);
    assert_eq!(events, vec![(35, EndpointEvent::Discarded)]);
}
