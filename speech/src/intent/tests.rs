use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

const DIMS: usize = 4096;

/// Bag of words hashed into `DIMS` buckets: texts sharing words are similar, texts sharing
/// none are orthogonal. Counts its calls.
#[derive(Default)]
struct BagOfWords {
    calls: AtomicUsize,
}

impl Embedder for BagOfWords {
    fn embed(&self, text: &str) -> Result<Vec<f32>, IntentError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let mut v = vec![0.0f32; DIMS];
        for word in text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
        {
            let hash = word
                .to_lowercase()
                .bytes()
                .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                    (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
                });
            v[(hash % DIMS as u64) as usize] += 1.0;
        }
        normalize(&mut v);
        Ok(v)
    }
}

struct Failing;

impl Embedder for Failing {
    fn embed(&self, _: &str) -> Result<Vec<f32>, IntentError> {
        Err(IntentError::Embed("out of cheese".into()))
    }
}

const SMALL: &[(Intent, &str)] = &[
    (Intent::Interested, "yes please tell me more"),
    (Intent::NotInterested, "no thanks not interested"),
    (Intent::CallBack, "call me back tomorrow"),
    (Intent::AsksPrice, "how much does it cost"),
];

fn classifier(examples: &[(Intent, &str)]) -> (Arc<BagOfWords>, IntentClassifier) {
    let embedder = Arc::new(BagOfWords::default());
    let c = IntentClassifier::new(embedder.clone(), examples).unwrap();
    (embedder, c)
}

#[test]
fn the_nearest_example_wins() {
    let (_, c) = classifier(SMALL);
    let r = c.classify("yes, tell me").unwrap();
    assert_eq!(r.intent, Some(Intent::Interested));
    assert_eq!(r.best, Intent::Interested);
    let r = c.classify("Could you call me tomorrow?").unwrap();
    assert_eq!(r.intent, Some(Intent::CallBack));
    let r = c.classify("How much?").unwrap();
    assert_eq!(r.intent, Some(Intent::AsksPrice));
}

#[test]
fn the_runner_up_is_the_next_intent_and_scores_lower() {
    let (_, c) = classifier(SMALL);
    // Shares "me" with call-back and "tell me" with interested, "tomorrow" only with call back.
    let r = c.classify("tell me tomorrow").unwrap();
    assert_eq!(r.best, Intent::CallBack);
    assert_eq!(r.runner_up.0, Intent::Interested);
    assert!(r.runner_up.1 < r.score);
    assert!(r.runner_up.1 > 0.0);
}

#[test]
fn below_the_threshold_there_is_no_intent() {
    let (_, c) = classifier(SMALL);
    // No word in common with any example.
    let r = c.classify("the weather is lovely").unwrap();
    assert_eq!(r.intent, None);
    assert!(r.score.abs() < 1e-6);
    // A weak match: one shared word out of several.
    let r = c.classify("much ado about nothing today").unwrap();
    assert_eq!(r.best, Intent::AsksPrice);
    assert!(r.score > 0.0 && r.score < DEFAULT_THRESHOLD, "{}", r.score);
    assert_eq!(r.intent, None);
    // The same match passes a lower threshold.
    let c = c.with_threshold(r.score - 0.01);
    assert_eq!(c.threshold(), r.score - 0.01);
    let again = c.classify("much ado about nothing today").unwrap();
    assert_eq!(again.intent, Some(Intent::AsksPrice));
}

#[test]
fn extra_examples_extend_what_is_understood() {
    let (embedder, c) = classifier(SMALL);
    assert_eq!(c.classify("transfer me to sales").unwrap().intent, None);
    let before = embedder.calls.load(Ordering::Relaxed);
    let c = c
        .with_examples(&[(Intent::WantsHuman, "transfer me to sales")])
        .unwrap();
    // Embedded once, when added.
    assert_eq!(embedder.calls.load(Ordering::Relaxed), before + 1);
    assert_eq!(c.example_count(), SMALL.len() + 1);
    let r = c.classify("please transfer me to sales").unwrap();
    assert_eq!(r.intent, Some(Intent::WantsHuman));
    // The original examples still work.
    assert_eq!(
        c.classify("no thanks").unwrap().intent,
        Some(Intent::NotInterested)
    );
}

#[test]
fn examples_are_embedded_once_and_queries_once_each() {
    let (embedder, c) = classifier(SMALL);
    assert_eq!(embedder.calls.load(Ordering::Relaxed), SMALL.len());
    c.classify("yes").unwrap();
    c.classify("no").unwrap();
    assert_eq!(embedder.calls.load(Ordering::Relaxed), SMALL.len() + 2);
}

#[test]
fn empty_or_filler_only_text_has_no_intent_and_skips_the_embedder() {
    let (embedder, c) = classifier(SMALL);
    let before = embedder.calls.load(Ordering::Relaxed);
    for text in ["", "   ", "...", "Uh, um... hmm."] {
        let r = c.classify(text).unwrap();
        assert_eq!(r.intent, None, "{text:?}");
        assert_eq!(r.score, 0.0);
    }
    assert_eq!(embedder.calls.load(Ordering::Relaxed), before);
}

#[test]
fn filler_words_and_punctuation_do_not_count() {
    assert_eq!(normalize_text("Uh, yes, um, please."), "yes please");
    assert_eq!(normalize_text("  Well   I mean\tno "), "well i mean no");
    assert_eq!(normalize_text("Don't call, OK?"), "don't call ok");
    assert_eq!(normalize_text("..."), "");
    // Words that merely contain a filler stay.
    assert_eq!(normalize_text("umbrella error"), "umbrella error");
}

#[test]
fn no_examples_is_an_error() {
    let err = IntentClassifier::new(Arc::new(BagOfWords::default()), &[]).unwrap_err();
    assert!(matches!(err, IntentError::NoExamples));
}

#[test]
fn embedder_errors_propagate() {
    let err = IntentClassifier::new(Arc::new(Failing), SMALL).unwrap_err();
    assert!(matches!(err, IntentError::Embed(_)), "{err}");
}

#[test]
fn intents_without_examples_score_lowest() {
    let (_, c) = classifier(&[(Intent::Voicemail, "leave a message after the tone")]);
    let r = c.classify("leave a message").unwrap();
    assert_eq!(r.intent, Some(Intent::Voicemail));
    assert_eq!(r.runner_up.1, -1.0);
}

#[test]
fn intent_names_round_trip() {
    let names: HashSet<&str> = Intent::ALL.iter().map(|i| i.as_str()).collect();
    assert_eq!(names.len(), Intent::ALL.len());
    for intent in Intent::ALL {
        assert_eq!(Intent::from_name(intent.as_str()), Some(intent));
        assert_eq!(intent.to_string(), intent.as_str());
    }
    assert_eq!(
        Intent::from_name("not_interested"),
        Some(Intent::NotInterested)
    );
    assert_eq!(Intent::from_name("NotInterested"), None);
}

#[test]
fn the_default_examples_cover_every_intent_without_duplicates() {
    for intent in Intent::ALL {
        let n = examples::DEFAULT
            .iter()
            .filter(|(i, _)| *i == intent)
            .count();
        assert!(n >= 8, "{intent}: {n} examples");
    }
    let unique: HashSet<String> = examples::DEFAULT
        .iter()
        .map(|(_, t)| t.to_lowercase())
        .collect();
    assert_eq!(unique.len(), examples::DEFAULT.len());
}

/// Lowercase words only, for comparing phrases regardless of punctuation.
fn words(text: &str) -> String {
    text.split(|c: char| !c.is_alphanumeric() && c != '\'')
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn the_held_out_set_is_well_formed_and_disjoint_from_the_examples() {
    let tsv = include_str!("../../tests/data/held_out_intents.tsv");
    let examples: HashSet<String> = examples::DEFAULT.iter().map(|(_, t)| words(t)).collect();
    let mut per_intent = [0usize; Intent::ALL.len()];
    for line in tsv.lines().filter(|l| !l.trim().is_empty()) {
        let (name, phrase) = line.split_once('\t').expect("intent<TAB>phrase");
        let intent = Intent::from_name(name).unwrap_or_else(|| panic!("unknown intent {name}"));
        per_intent[intent.index()] += 1;
        assert!(
            !examples.contains(&words(phrase)),
            "held-out phrase is an example: {phrase}"
        );
    }
    for intent in Intent::ALL {
        assert!(per_intent[intent.index()] >= 6, "{intent}");
    }
    assert!(per_intent.iter().sum::<usize>() >= 48);
}

#[test]
fn a_nearer_neutral_phrase_means_no_intent() {
    let (_, c) = classifier(SMALL);
    let c = c.with_neutral(&["hello there"]).unwrap();
    assert_eq!(c.example_count(), SMALL.len() + 1);
    // "hello" matches only the neutral phrase; the intents still report their best.
    let r = c.classify("hello").unwrap();
    assert_eq!(r.intent, None);
    // Close to an intent and farther from the neutral phrase: the intent stands.
    let r = c.classify("hello, how much does it cost").unwrap();
    assert_eq!(r.intent, Some(Intent::AsksPrice));
    // Without neutral phrases, the same classifier has nothing to prefer over intents.
    let (_, plain) = classifier(&[(Intent::Interested, "hello yes")]);
    assert_eq!(
        plain.classify("hello").unwrap().intent,
        Some(Intent::Interested)
    );
    let c = c
        .with_examples(&[(Intent::Interested, "hello yes")])
        .unwrap();
    assert_eq!(c.classify("hello").unwrap().intent, None);
    assert_eq!(
        c.classify("hello yes").unwrap().intent,
        Some(Intent::Interested)
    );
}

#[test]
fn the_default_classifier_includes_neutral_phrases() {
    let embedder = Arc::new(BagOfWords::default());
    let c = IntentClassifier::with_default_examples(embedder.clone()).unwrap();
    assert_eq!(
        c.example_count(),
        examples::DEFAULT.len() + examples::NEUTRAL.len()
    );
    assert_eq!(c.threshold(), DEFAULT_THRESHOLD);
    assert_eq!(c.classify("hello?").unwrap().intent, None);
    assert_eq!(
        c.classify("wrong number").unwrap().intent,
        Some(Intent::WrongPerson)
    );
}

#[test]
fn batch_embedding_defaults_to_one_call_per_text() {
    let embedder = BagOfWords::default();
    let batch = embedder.embed_batch(&["yes", "no thanks"]).unwrap();
    assert_eq!(batch.len(), 2);
    assert_eq!(batch[1], embedder.embed("no thanks").unwrap());
    assert!((dot(&batch[0], &batch[0]) - 1.0).abs() < 1e-6);
}

#[test]
fn a_campaigns_examples_count_for_its_calls_only() {
    let (_, c) = classifier(SMALL);
    let before = c.classify("book a site visit").unwrap();
    assert_ne!(before.intent, Some(Intent::Interested));
    let extra = c
        .embed_examples(&[(Intent::Interested, "book a site visit".to_owned())])
        .unwrap();
    let with = c.classify_with("book a site visit", &extra).unwrap();
    assert_eq!(with.intent, Some(Intent::Interested));
    assert!(with.score > 0.99);
    // The shared classifier is unchanged.
    assert_eq!(c.classify("book a site visit").unwrap(), before);
    assert!(c.embed_examples(&[]).is_ok());
}

#[test]
fn fixed_formulae_settle_the_intent_and_a_leading_no_is_a_no() {
    let (_, c) = classifier(SMALL);
    let r = c
        .classify("Hi, you've reached Mark. Please leave a message.")
        .unwrap();
    assert_eq!(r.intent, Some(Intent::Voicemail));
    let r = c.classify("Sorry, wrong number.").unwrap();
    assert_eq!(r.intent, Some(Intent::WrongPerson));
    // The embedding alone says interested ("yes please tell me more" shares words).
    let r = c.classify("No, please don't tell me more").unwrap();
    assert_eq!(r.best, Intent::Interested);
    assert_eq!(r.intent, Some(Intent::NotInterested));
    // "no" inside a word or later in the sentence is no cue.
    assert_eq!(
        c.classify("yes please tell me more, no rush")
            .unwrap()
            .intent,
        Some(Intent::Interested)
    );
    assert_eq!(
        c.classify("nobody minds, yes please tell me more")
            .unwrap()
            .intent,
        Some(Intent::Interested)
    );
}

#[test]
fn a_leading_yes_is_assent_unless_something_else_is_asked() {
    let (_, c) = classifier(SMALL);
    // Nothing the examples know follows the yes.
    let r = c.classify("Yes, a site visit sounds great").unwrap();
    assert_eq!(r.intent, Some(Intent::Interested));
    // A clear other intent after the yes stays.
    let r = c.classify("Yes, call me back tomorrow").unwrap();
    assert_eq!(r.intent, Some(Intent::CallBack));
}

#[test]
fn absolutely_not_is_no_assent() {
    let (_, c) = classifier(SMALL);
    // The embedding says not interested ("not" is shared); "absolutely" must not turn it.
    let r = c.classify("Absolutely not, not interested").unwrap();
    assert_eq!(r.best, Intent::NotInterested);
    assert_eq!(r.intent, Some(Intent::NotInterested));
    let r = c.classify("Definitely not interested, no thanks").unwrap();
    assert_eq!(r.intent, Some(Intent::NotInterested));
    // Assent followed by anything else is still assent.
    let r = c.classify("Absolutely, no thanks needed").unwrap();
    assert_eq!(r.best, Intent::NotInterested);
    assert_eq!(r.intent, Some(Intent::Interested));
}

#[test]
fn opting_out_formulae_settle_the_intent_whatever_the_embedding_says() {
    let (_, c) = classifier(&[
        (Intent::Interested, "yes please sign me up"),
        (Intent::NotInterested, "no thanks not interested"),
    ]);
    // The embedding alone says interested ("please", "me" are shared).
    let r = c.classify("Please unsubscribe me.").unwrap();
    assert_eq!(r.best, Intent::Interested);
    assert_eq!(r.intent, Some(Intent::OptOut));
    // A leading "no" does not turn it into a plain refusal.
    let r = c
        .classify("No thanks, put me on your do not call list")
        .unwrap();
    assert_eq!(r.intent, Some(Intent::OptOut));
    let r = c.classify("I'm on the do-not-call registry").unwrap();
    assert_eq!(r.intent, Some(Intent::OptOut));
    // Whisper's "of" for "off" changes nothing.
    let r = c.classify("Yes, please take me of your list.").unwrap();
    assert_eq!(r.intent, Some(Intent::OptOut));
    // Without a formula the nearest example decides.
    let r = c.classify("no thanks, not interested").unwrap();
    assert_eq!(r.intent, Some(Intent::NotInterested));
}

#[test]
fn an_opt_out_must_lead_clearly_or_it_is_asked_again() {
    let (_, c) = classifier(&[
        (Intent::OptOut, "stop calling me"),
        (Intent::CallBack, "call me back tomorrow"),
    ]);
    // Near both: the opt-out leads, by less than the margin.
    let r = c.classify("stop calling me back tomorrow please").unwrap();
    assert_eq!(r.best, Intent::OptOut);
    assert_eq!(r.runner_up.0, Intent::CallBack);
    assert!(r.score - r.runner_up.1 < OPT_OUT_MARGIN, "{r:?}");
    assert!(r.score >= DEFAULT_THRESHOLD, "{r:?}");
    assert_eq!(r.intent, None);
    // Well ahead: an opt-out.
    let r = c.classify("stop calling").unwrap();
    assert!(r.score - r.runner_up.1 >= OPT_OUT_MARGIN, "{r:?}");
    assert_eq!(r.intent, Some(Intent::OptOut));
    // The margin is the opt-out's alone: a call-back as close to an opt-out stands.
    let r = c.classify("please call me back, calling me").unwrap();
    assert_eq!(r.best, Intent::CallBack);
    assert!(r.score - r.runner_up.1 < OPT_OUT_MARGIN, "{r:?}");
    assert_eq!(r.intent, Some(Intent::CallBack));
}
