//! Intent accuracy on text: the held-out phrasings (`tests/data/held_out_intents.tsv`)
//! classified with MiniLM and the default examples, with every miss and its scores.
//!
//! `cargo run -p speech --example intent_accuracy -- MODELS_DIR [PHRASE…]`: with phrases,
//! classifies those instead (for trying out examples). The end-to-end test in
//! `tests/api/local.rs` measures the same set through synthesised speech and Whisper.

use std::{path::PathBuf, sync::Arc};

use speech::{
    intent::{Embedder, Intent, IntentClassifier, MiniLm, examples},
    models::ModelPaths,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(
        args.next()
            .ok_or("usage: intent_accuracy MODELS_DIR [PHRASE…]")?,
    );
    let phrases: Vec<String> = args.collect();
    let paths = ModelPaths::in_dir(&dir)?;
    let embedder = Arc::new(MiniLm::load(&paths.minilm)?);
    let classifier = IntentClassifier::with_default_examples(embedder.clone())?;
    let show = |phrase: &str| -> Result<Option<Intent>, Box<dyn std::error::Error>> {
        let r = classifier.classify(phrase)?;
        println!(
            "{phrase:?} → {} (best {} {:.3}, runner-up {} {:.3})",
            r.intent.map_or("none", Intent::as_str),
            r.best,
            r.score,
            r.runner_up.0,
            r.runner_up.1
        );
        Ok(r.intent)
    };
    if !phrases.is_empty() {
        // The nearest examples too (embedded as written: punctuation and case kept).
        let texts: Vec<&str> = examples::DEFAULT.iter().map(|(_, text)| *text).collect();
        let embedded = embedder.embed_batch(&texts)?;
        for phrase in &phrases {
            show(phrase)?;
            let query = embedder.embed(phrase)?;
            let mut near: Vec<(f32, Intent, &str)> = embedded
                .iter()
                .zip(examples::DEFAULT)
                .map(|(e, (intent, text))| {
                    (
                        e.iter().zip(&query).map(|(a, b)| a * b).sum(),
                        *intent,
                        *text,
                    )
                })
                .collect();
            near.sort_by(|a, b| b.0.total_cmp(&a.0));
            for (score, intent, text) in near.iter().take(3) {
                println!("    {score:.3} {intent}: {text:?}");
            }
        }
        return Ok(());
    }
    let held_out = include_str!("../tests/data/held_out_intents.tsv");
    let (mut total, mut correct) = (0, 0);
    for line in held_out
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
    {
        let (name, phrase) = line.split_once('\t').ok_or("intent<TAB>phrase")?;
        let expected = Intent::from_name(name).ok_or_else(|| format!("unknown intent {name}"))?;
        let r = classifier.classify(phrase)?;
        total += 1;
        if r.intent == Some(expected) {
            correct += 1;
        } else {
            print!("miss, expected {expected}: ");
            show(phrase)?;
        }
    }
    println!(
        "intent accuracy on text: {correct}/{total} = {:.1} %",
        100.0 * f64::from(correct) / f64::from(total)
    );
    Ok(())
}
