//! The local voice pipeline with the real models: every demo scenario end to end through real
//! sockets, intent accuracy on held-out phrasings heard through the phone path, the agent's
//! own audio transcribed back, barge-in, and a missing model stopping start-up.
//!
//! The models come from `scripts/fetch-models` (run by `scripts/test` and CI); a missing one
//! fails these tests loudly.

use std::{sync::Arc, time::Duration};

use speech::{intent::Intent, tts::Voice};
use voice_gateway::{
    ai::local::{LocalEngine, carrier},
    audio::AudioFormat,
    config::Settings,
    demo::{
        CallResult, DemoWorld,
        scenarios::{self, Scenario},
    },
    simulators::plivo_caller::Step,
    startup::Application,
};

use crate::helpers::{TestDb, settings_for};

fn local_settings(url: &str, name: &str) -> Settings {
    settings_for(url, name, &[("VG_AI_PROVIDER", "local")])
}

/// The engine every test here shares (the gateway's own, loaded once per process).
fn engine() -> Arc<LocalEngine> {
    let settings = local_settings("postgres://unused@127.0.0.1/x", "engine");
    LocalEngine::shared(&settings.ai.models_dir, settings.ai.local_threads).unwrap_or_else(
        |error| {
            panic!("the local pipeline's models must be present (scripts/fetch-models): {error}")
        },
    )
}

/// Carrier audio (μ-law 8 kHz) → the 16 kHz samples the pipeline hears, as in a call.
fn phone_path(mulaw: &[u8]) -> Vec<f32> {
    let mut inbound = carrier::Inbound::new(AudioFormat::MULAW_8K).unwrap();
    let mut samples = Vec::new();
    inbound.push(mulaw, |frame| samples.extend_from_slice(frame));
    samples
}

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric() && c != '\'')
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

async fn run_scenario(
    name: &str,
) -> (
    Scenario,
    CallResult,
    voice_gateway::db::seed::LeadReport,
    (i32, i32),
) {
    let scenario: Scenario = *scenarios::SCENARIOS
        .iter()
        .find(|s| s.name == name)
        .expect("a demo scenario");
    let test = TestDb::new().await;
    let world = DemoWorld::start(local_settings(&test.url, &format!("gw-{name}")))
        .await
        .expect("the demo world starts");
    let result = world
        .call(scenario, 0, false, false)
        .await
        .expect("the call completes");
    let (leads, counters) = world.report().await.unwrap();
    world.stop().await.unwrap();
    let lead = leads
        .into_iter()
        .find(|lead| lead.lead_name == scenario.lead)
        .unwrap();
    (
        scenario,
        result,
        lead,
        (counters.total_calls, counters.transferred_calls),
    )
}

/// Asserts the scenario's expectations on the rows and the transcript.
async fn check_scenario(name: &str) -> CallResult {
    let (scenario, result, lead, counters) = run_scenario(name).await;
    let expect = scenario.expect;
    let said = |kind: &str| {
        result
            .transcript
            .iter()
            .filter(|(k, _)| k == kind)
            .map(|(_, text)| text.to_lowercase())
            .collect::<Vec<_>>()
            .join(" | ")
    };
    let caller = said("caller_speech");
    let agent = said("agent_speech");
    for word in expect.caller_words {
        assert!(
            caller.contains(word),
            "{name}: caller said {caller:?}, missing {word:?}"
        );
    }
    for word in expect.agent_words {
        assert!(
            agent.contains(word),
            "{name}: agent said {agent:?}, missing {word:?}"
        );
    }
    assert_eq!(
        lead.lead_status, expect.lead_status,
        "{name}: {:?}",
        result.transcript
    );
    assert_eq!(
        lead.end_reason.as_deref(),
        Some(expect.end_reason),
        "{name}: {:?}",
        result.transcript
    );
    assert_eq!(lead.transferred, expect.transferred, "{name}");
    assert_eq!(
        counters,
        (1, i32::from(expect.transferred)),
        "{name}: campaign counters"
    );
    let summary = lead.summary.unwrap_or_default();
    assert!(!summary.is_empty(), "{name}: a summary is written");
    assert!(
        result.report.closed_by_gateway,
        "{name}: the gateway ended the call"
    );
    assert_eq!(result.report.playback_gaps, 0, "{name}: no playback gaps");
    assert_eq!(
        result.reply_latencies.len(),
        scenario.lines.len(),
        "{name}: the agent answered every line"
    );
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interested_caller_is_qualified_and_transferred() {
    let result = check_scenario("interested").await;
    let decisions: Vec<&String> = result
        .transcript
        .iter()
        .filter(|(kind, _)| kind == "transfer_decision")
        .map(|(_, text)| text)
        .collect();
    assert_eq!(
        decisions.len(),
        1,
        "one transfer decision: {:?}",
        result.transcript
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_who_is_not_interested_gets_one_objection_reply_and_a_goodbye() {
    check_scenario("not interested").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_who_asks_for_a_callback_gets_one_scheduled() {
    let result = check_scenario("callback").await;
    assert!(
        result
            .transcript
            .iter()
            .any(|(kind, text)| kind == "callback_scheduled" && text.ends_with(", your time")),
        "{:?}",
        result.transcript
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_question_is_answered_from_the_projects_facts() {
    check_scenario("question").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voicemail_greeting_gets_a_message_and_the_lead_is_marked_voicemail() {
    check_scenario("voicemail").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intents_are_understood_on_held_out_phrasings_through_the_phone_path() {
    let engine = engine();
    let held_out = include_str!("../../speech/tests/data/held_out_intents.tsv");
    let synthesizer = Arc::new(speech::tts::Synthesizer::new().unwrap());
    let mut total = 0;
    let mut correct = 0;
    let mut misses = Vec::new();
    for line in held_out
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
    {
        let (name, phrase) = line.split_once('\t').expect("intent<TAB>phrase");
        let expected = *Intent::ALL
            .iter()
            .find(|intent| intent.as_str() == name)
            .unwrap_or_else(|| panic!("unknown intent {name}"));
        let samples = {
            let synthesizer = Arc::clone(&synthesizer);
            let phrase = phrase.to_owned();
            tokio::task::spawn_blocking(move || synthesizer.synthesize(&phrase, Voice::Kal16))
                .await
                .unwrap()
                .unwrap()
        };
        let mulaw = carrier::encode_speech(&samples, AudioFormat::MULAW_8K).unwrap();
        let heard = engine
            .understand(
                phone_path(&mulaw),
                "Phone call about Lakeside Towers.".into(),
                Arc::default(),
            )
            .await
            .unwrap();
        total += 1;
        if heard.intent == Some(expected) {
            correct += 1;
        } else {
            misses.push(format!(
                "{name}: {phrase:?} heard {:?} → {:?} ({:.2})",
                heard.text, heard.intent, heard.score
            ));
        }
    }
    assert!(total >= 40, "at least 40 held-out phrasings, got {total}");
    let accuracy = correct as f64 / total as f64;
    println!(
        "intent accuracy {correct}/{total} = {:.1} %; misses: {misses:#?}",
        accuracy * 100.0
    );
    assert!(
        accuracy >= 0.9,
        "accuracy {:.1} % < 90 %: {misses:#?}",
        accuracy * 100.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agents_own_audio_transcribes_back_to_what_it_meant_to_say() {
    let engine = engine();
    let lines = [
        "Hello Priya, this is Maya from Acme Homes. I'm calling about Lakeside Towers. Do you have a minute?",
        "Lakeside Towers has two and three bedroom flats right by the lake.",
        "Of course. Someone will call you back tomorrow evening. Thank you, Priya. Goodbye.",
        "Wonderful. Let me connect you with a colleague now. Please hold.",
    ];
    // The words the campaign's calls would prompt Whisper with (project, organization, agent).
    let prompt = "Phone call about Lakeside Towers, Acme Homes, Maya.".to_owned();
    let (mut meant_total, mut found_total) = (0, 0);
    for line in lines {
        let audio = engine
            .phrase(line, Voice::Slt, AudioFormat::MULAW_8K)
            .await
            .unwrap();
        let heard = engine
            .understand(phone_path(&audio), prompt.clone(), Arc::default())
            .await
            .unwrap();
        let meant = words(line);
        let got = words(&heard.text);
        let found = meant.iter().filter(|word| got.contains(word)).count();
        println!("meant {line:?}, heard {:?}", heard.text);
        // Each line is recognisably itself; tiny.en misses a word here and there.
        assert!(
            found * 10 >= meant.len() * 6,
            "meant {line:?}, heard {:?}",
            heard.text
        );
        meant_total += meant.len();
        found_total += found;
    }
    let recall = found_total as f64 / meant_total as f64;
    assert!(
        recall >= 0.85,
        "{:.0} % of the agent's words came back",
        recall * 100.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_barging_in_stops_the_local_agent_at_once() {
    let test = TestDb::new().await;
    let world = DemoWorld::start(local_settings(&test.url, "gw-barge"))
        .await
        .unwrap();
    let yes = world.caller_audio("Yes, I have a minute.").await.unwrap();
    let question = world
        .caller_audio("Sorry, how much does a flat cost?")
        .await
        .unwrap();
    let script = vec![
        Step::WaitForAgentAudio,
        Step::WaitForAgentSilence(Duration::from_millis(700)),
        Step::Say(yes),
        Step::WaitForAgentAudio,
        // Talk over the pitch once it is well under way.
        Step::WaitForAgentAudioFor(Duration::from_millis(1500)),
        Step::Say(question),
        Step::WaitForAgentAudio,
        Step::WaitForAgentSilence(Duration::from_millis(700)),
        Step::HangUp,
    ];
    let result = world
        .call_with_script("Priya Sharma", 0, script, false)
        .await
        .unwrap();
    let (leads, _) = world.report().await.unwrap();
    let lead = leads
        .iter()
        .find(|lead| lead.lead_name == "Priya Sharma")
        .unwrap();
    world.stop().await.unwrap();
    let report = &result.report;
    assert_eq!(
        report.clears.len(),
        1,
        "one clearAudio: {:?}",
        result.transcript
    );
    let talk_over = report.speech_starts[1];
    let clear = report.clears[0];
    assert!(clear > talk_over, "the clear follows the caller's speech");
    assert!(
        // Voice activity needs the onset and three voiced 16 ms frames; the clear itself
        // follows the decision at once (the session test measures that part).
        clear - talk_over < Duration::from_millis(600),
        "voice activity stops the agent quickly: {:?}",
        clear - talk_over
    );
    let kinds: Vec<&str> = result
        .transcript
        .iter()
        .map(|(kind, _)| kind.as_str())
        .collect();
    assert!(kinds.contains(&"barge_in"), "{kinds:?}");
    let agent = result
        .transcript
        .iter()
        .filter(|(kind, _)| kind == "agent_speech")
        .map(|(_, text)| text.as_str())
        .collect::<Vec<_>>();
    assert!(
        agent.last().is_some_and(|text| text.contains("80 lakh")),
        "the agent answers the question it was interrupted with: {agent:?}"
    );
    assert_eq!(lead.end_reason.as_deref(), Some("caller_hangup"));
}

#[tokio::test]
async fn a_missing_model_stops_start_up_naming_the_command_that_fetches_it() {
    let test = TestDb::new().await;
    let empty = tempfile::tempdir().unwrap();
    let settings = settings_for(
        &test.url,
        "gw-nomodels",
        &[
            ("VG_AI_PROVIDER", "local"),
            ("VG_MODELS_DIR", empty.path().to_str().unwrap()),
        ],
    );
    let error = match Application::build(settings).await {
        Ok(_) => panic!("start-up must fail without models"),
        Err(error) => format!("{error:#}"),
    };
    assert!(error.contains("scripts/fetch-models"), "{error}");
    assert!(
        error.contains("ggml-tiny.en.bin") || error.contains("minilm"),
        "{error}"
    );
}
