use super::*;

#[test]
fn ordinary_text_passes_unchanged() {
    for text in [
        "Yes, I am interested.",
        "Can I talk to a real person?",
        "What is the price of the two bedroom apartment?",
        "No thanks. Not interested.",
        "I'm at 42 Main Street, apartment 3B.",
        "Bye bye.",
        "No, no.",
        "Call me back tomorrow. Tomorrow afternoon works.",
        "Okay",
    ] {
        assert_eq!(clean_transcript(text), text);
    }
}

#[test]
fn whitespace_is_trimmed_and_collapsed() {
    assert_eq!(clean_transcript("  Yes,   please.\n"), "Yes, please.");
}

#[test]
fn non_speech_markers_are_dropped() {
    for (raw, clean) in [
        ("[BLANK_AUDIO]", ""),
        (" [Music]", ""),
        ("(silence)", ""),
        ("[ Silence ]", ""),
        ("*coughs*", ""),
        ("♪ ♪", ""),
        ("[Music] Hello, is this Anna?", "Hello, is this Anna?"),
        ("Yes. *coughs* I am interested.", "Yes. I am interested."),
        ("Yes (laughs) please.", "Yes please."),
        ("Hello[BLANK_AUDIO]there", "Hello there"),
        (
            "Call me back [inaudible (noise)] tomorrow.",
            "Call me back tomorrow.",
        ),
    ] {
        assert_eq!(clean_transcript(raw), clean, "{raw:?}");
    }
}

#[test]
fn an_unclosed_marker_drops_the_rest() {
    assert_eq!(clean_transcript("Sure. [BLANK_AUD"), "Sure.");
    assert_eq!(clean_transcript("Yes (laughs"), "Yes");
}

#[test]
fn a_lone_star_is_dropped_alone() {
    assert_eq!(clean_transcript("Five * stars"), "Five stars");
}

#[test]
fn nothing_but_punctuation_is_empty() {
    assert_eq!(clean_transcript(" ."), "");
    assert_eq!(clean_transcript("[Music] ..."), "");
    assert_eq!(clean_transcript(""), "");
}

#[test]
fn a_sentence_repeated_back_to_back_is_kept_once() {
    assert_eq!(
        clean_transcript(
            "Please call me back tomorrow. Please call me back tomorrow. \
             please, call me back tomorrow!"
        ),
        "Please call me back tomorrow."
    );
    assert_eq!(
        clean_transcript("Yes. I'm interested. I'm interested."),
        "Yes. I'm interested."
    );
}

#[test]
fn a_sentence_repeated_later_is_kept() {
    assert_eq!(
        clean_transcript("Yes. What is the price? Yes."),
        "Yes. What is the price? Yes."
    );
}

#[test]
fn a_loop_cut_by_the_token_budget_loses_its_unfinished_copy() {
    assert_eq!(
        clean_transcript("Please call me back tomorrow. Please call me back"),
        "Please call me back tomorrow."
    );
    // An unfinished sentence that says something new stays.
    assert_eq!(
        clean_transcript("Please call me back tomorrow. After five"),
        "Please call me back tomorrow. After five"
    );
}

#[test]
fn a_word_repeated_three_times_or_more_is_kept_once() {
    assert_eq!(clean_transcript("no no no no no"), "no");
    assert_eq!(clean_transcript("No, no, no, no."), "No.");
    assert_eq!(clean_transcript("the the the the price"), "the price");
    // Twice is how people talk.
    assert_eq!(clean_transcript("no no"), "no no");
}

#[test]
fn a_phrase_repeated_three_times_or_more_is_kept_once() {
    assert_eq!(
        clean_transcript("I'm sorry, I'm sorry, I'm sorry, I'm sorry."),
        "I'm sorry."
    );
    assert_eq!(
        clean_transcript("Thank you. Thank you. Thank you. Goodbye."),
        "Thank you. Goodbye."
    );
    assert_eq!(
        clean_transcript(
            "so what is the price so what is the price so what is the price of the flat"
        ),
        "so what is the price of the flat"
    );
}

#[test]
fn a_long_phrase_repeated_twice_is_kept_once() {
    let phrase = "please send me the brochure by email";
    assert_eq!(clean_transcript(&[phrase; 2].join(" ")), phrase);
    // As whisper.cpp produced it with a short encoder context, cut by the token budget.
    assert_eq!(
        clean_transcript(
            " what is the price of the two bedroom apartment, what is the price of the two \
             bedroom apartment, what is the price"
        ),
        "what is the price of the two bedroom apartment,"
    );
    // One loop inside another.
    assert_eq!(
        clean_transcript(
            " What is the price of the two bedroom apartment, apartment, apartment, what is \
             the price of the two bedroom apartment,"
        ),
        "What is the price of the two bedroom apartment,"
    );
}

#[test]
fn three_words_said_twice_stay() {
    assert_eq!(
        clean_transcript("I don't know, I don't know."),
        "I don't know, I don't know."
    );
}

#[test]
fn repeated_digits_are_not_a_loop() {
    for text in [
        "My number is 5 5 5 1 2 3 4.",
        "Zero zero zero seven.",
        "It's 12 12 12 12.",
    ] {
        assert_eq!(clean_transcript(text), text);
    }
}

#[test]
fn whisper_loops_seen_in_practice_are_cleaned() {
    for (raw, clean) in [
        (
            " Yes, I am interested. Yes, I am interested. Yes, I am interested",
            "Yes, I am interested.",
        ),
        (
            " Please call me back tomorrow. Please call me back tomorrow. Please call me back \
             tomorrow. Please call me",
            "Please call me back tomorrow.",
        ),
        (
            " Can I talk to a real person? Can I talk to a real person? Can I talk to",
            "Can I talk to a real person?",
        ),
        (
            " Yes Yes Yes Yes Yes Yes Yes Yes Yes Yes Yes Yes Yes",
            "Yes",
        ),
        (" Yes. Yes. Yes. Yes. Yes. Yes. Yes", "Yes."),
        (" you", "you"),
    ] {
        assert_eq!(clean_transcript(raw), clean, "{raw:?}");
    }
}

#[test]
fn decode_settings_follow_the_utterance_length() {
    assert_eq!(DecodeSettings::for_samples(0), None);
    assert_eq!(DecodeSettings::for_samples(1_599), None);
    let one_second = DecodeSettings::for_samples(16_000).expect("long enough");
    assert_eq!(one_second.audio_ctx, 50 + 64);
    assert_eq!(one_second.max_tokens, 6 + 8);
    let two_and_a_half = DecodeSettings::for_samples(40_000).expect("long enough");
    assert_eq!(two_and_a_half.audio_ctx, 125 + 64);
    assert_eq!(two_and_a_half.max_tokens, 15 + 8);
    let long = DecodeSettings::for_samples(16_000 * 60).expect("long enough");
    assert_eq!(long.audio_ctx, 1500);
}

#[test]
fn whisper_and_transcriber_can_cross_threads() {
    fn shared<T: Send + Sync>() {}
    fn moved<T: Send>() {}
    shared::<Whisper>();
    moved::<Transcriber>();
}

#[test]
fn loading_a_missing_model_names_the_path() {
    let path = std::env::temp_dir().join("speech-stt-no-such-model.bin");
    let error = Whisper::load(&path).expect_err("missing");
    let message = error.to_string();
    assert!(
        message.starts_with(&format!(
            "cannot load the Whisper model {}:",
            path.display()
        )),
        "{message}"
    );
}

#[test]
fn loading_a_file_that_is_not_a_model_fails_cleanly() {
    let path =
        std::env::temp_dir().join(format!("speech-stt-not-a-model-{}.bin", std::process::id()));
    std::fs::write(&path, b"this is not a ggml file").expect("write");
    let result = Whisper::load(&path);
    let _ = std::fs::remove_file(&path);
    let message = result.expect_err("not a model").to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
}
