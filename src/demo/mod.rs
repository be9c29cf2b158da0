//! `voice-gateway demo`: the whole job, offline, in one command. It starts the gateway on an
//! embedded database with the local voice pipeline, seeds a campaign with transfer targets and
//! leads, and places simulated Plivo calls into itself: callers whose words are synthesised in
//! a different voice than the agent's. Each call's transcript is printed as it happens, then a
//! table of outcomes read back from `call_logs`, `leads` and `campaigns`.
//!
//! The end-to-end tests drive the same [`DemoWorld`] and [`scenarios::SCENARIOS`].

pub mod scenarios;

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use secrecy::SecretString;
use speech::tts::{Synthesizer, Voice};
use uuid::Uuid;

use self::scenarios::{Line, Scenario};
use crate::{
    ai::local::carrier,
    audio::AudioFormat,
    config::{AiProviderKind, Settings},
    db::{
        Database, OpenOptions,
        embedded::EmbeddedPostgres,
        seed::{CampaignCounters, LeadReport},
    },
    lifecycle::Lifecycle,
    simulators::plivo_caller::{self, CallReport, CallerConfig, Step},
    startup::Application,
};

/// The callers' voice: not the agent's.
pub const CALLER_VOICE: Voice = Voice::Kal16;
/// How long the caller lets the agent be silent before answering.
const CALLER_PAUSE: Duration = Duration::from_millis(700);
/// No demo call may take longer.
const CALL_LIMIT: Duration = Duration::from_secs(120);
const PUBLIC_URL: &str = "https://demo.voice-gateway.test";

/// A running gateway with a seeded campaign, ready for simulated calls.
pub struct DemoWorld {
    pub db: Database,
    pub campaign_id: Uuid,
    pub leads: Vec<(String, Uuid)>,
    address: std::net::SocketAddr,
    auth_token: String,
    http: reqwest::Client,
    callers: Arc<Synthesizer>,
    lifecycle: Lifecycle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
    embedded: Option<EmbeddedPostgres>,
}

/// What one simulated call produced.
#[derive(Debug)]
pub struct CallResult {
    pub call_sid: String,
    pub report: CallReport,
    /// From the caller's last voiced frame to the agent's next frame, per answered line.
    pub reply_latencies: Vec<Duration>,
    /// The call's events: `(kind, text)` in order (text empty for events without one).
    pub transcript: Vec<(String, String)>,
}

impl DemoWorld {
    /// Starts a gateway with the local pipeline. Without `DATABASE_URL` it runs on a private
    /// ephemeral embedded cluster, so the demo leaves nothing behind.
    pub async fn start(mut settings: Settings) -> anyhow::Result<Self> {
        let embedded = match settings.database.external_url() {
            Some(_) => None,
            None => Some(
                tokio::task::spawn_blocking(EmbeddedPostgres::start_ephemeral)
                    .await
                    .context("the embedded PostgreSQL start-up task failed")??,
            ),
        };
        if let Some(embedded) = &embedded {
            settings.database.url = Some(SecretString::from(embedded.url("postgres")));
        }
        let auth_token = crate::config::random_hex(20);
        settings.ai.provider = AiProviderKind::Local;
        settings.server.listen = "127.0.0.1:0".parse().expect("valid address");
        settings.server.public_url = PUBLIC_URL.parse().expect("valid URL");
        settings.plivo.auth_id = Some("MADEMO".to_owned());
        settings.plivo.auth_token = Some(SecretString::from(auth_token.clone()));
        let db = Database::open(OpenOptions {
            url: settings
                .database
                .external_url()
                .expect("set above or by DATABASE_URL"),
            max_connections: 4,
            migrate: true,
        })
        .await
        .context("opening the demo database")?;
        let names: Vec<String> = scenarios::SCENARIOS
            .iter()
            .map(|scenario| scenario.lead.to_owned())
            .collect();
        let seeded = db
            .seed_campaign_with_leads("Acme Homes", &names, &scenarios::campaign_settings())
            .await
            .context("seeding the demo campaign")?;
        let application = Application::build(settings).await?;
        let address = application.local_addr();
        let lifecycle = application.state().lifecycle.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(application.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        let callers = tokio::task::spawn_blocking(Synthesizer::new)
            .await
            .context("the synthesiser start-up task failed")??;
        Ok(Self {
            db,
            campaign_id: seeded.campaign_id,
            leads: names.into_iter().zip(seeded.lead_ids).collect(),
            address,
            auth_token,
            http: reqwest::Client::new(),
            callers: Arc::new(callers),
            lifecycle,
            stop: Some(stop),
            server,
            embedded,
        })
    }

    /// The caller's audio for `text`, in the carrier's format, without trailing silence (so
    /// the end of the last frame sent is the end of speech).
    pub async fn caller_audio(&self, text: &str) -> anyhow::Result<Arc<[u8]>> {
        let synthesizer = Arc::clone(&self.callers);
        let text = text.to_owned();
        let samples =
            tokio::task::spawn_blocking(move || synthesizer.synthesize(&text, CALLER_VOICE))
                .await
                .context("the synthesis task failed")??;
        let end = samples
            .iter()
            .rposition(|sample| sample.unsigned_abs() > 300)
            .map_or(0, |last| last + 1);
        Ok(carrier::encode_speech(&samples[..end], AudioFormat::MULAW_8K)?.into())
    }

    /// Places `scenario`'s call, prints its transcript live when `live` is set, and completes
    /// a transfer as Plivo and an accepting colleague would.
    pub async fn call(
        &self,
        scenario: Scenario,
        index: usize,
        keep_agent_audio: bool,
        live: bool,
    ) -> anyhow::Result<CallResult> {
        let mut script = Vec::new();
        for line in scenario.lines {
            let audio = self.caller_audio(line.text()).await?;
            match line {
                Line::AfterAgent(_) => script.extend([
                    Step::WaitForAgentAudio,
                    Step::WaitForAgentSilence(CALLER_PAUSE),
                    Step::Say(audio),
                ]),
                Line::AtOnce(_) => script.push(Step::Say(audio)),
            }
        }
        script.push(Step::WaitForClose);
        self.place(scenario.lead, index, script, keep_agent_audio, live)
            .await
    }

    /// Places a call to `lead` with a caller script of the test's own.
    pub async fn call_with_script(
        &self,
        lead: &str,
        index: usize,
        script: Vec<Step>,
        keep_agent_audio: bool,
    ) -> anyhow::Result<CallResult> {
        self.place(lead, index, script, keep_agent_audio, false)
            .await
    }

    async fn place(
        &self,
        lead: &str,
        index: usize,
        script: Vec<Step>,
        keep_agent_audio: bool,
        live: bool,
    ) -> anyhow::Result<CallResult> {
        let lead_id = self
            .leads
            .iter()
            .find(|(name, _)| name == lead)
            .map(|(_, id)| *id)
            .context("the lead was not seeded")?;
        let call_sid = format!("DEMO-{index}-{}", crate::config::random_hex(4));
        let config = CallerConfig {
            gateway: format!("http://{}", self.address),
            public_url: PUBLIC_URL.to_owned(),
            auth_token: self.auth_token.clone(),
            call_sid: call_sid.clone(),
            answer_query: format!("lead_id={lead_id}&campaign_id={}", self.campaign_id),
            from: "14155550100".to_owned(),
            to: format!("1415555{index:04}"),
            keep_agent_audio,
        };
        let (done, finished) = tokio::sync::oneshot::channel::<()>();
        let printer = live.then(|| {
            let db = self.db.clone();
            let call_sid = call_sid.clone();
            let who = lead
                .split_whitespace()
                .next()
                .unwrap_or("caller")
                .to_owned();
            tokio::spawn(async move { print_live(db, call_sid, who, finished).await })
        });
        let placed = tokio::time::timeout(
            CALL_LIMIT,
            plivo_caller::place_call(&config, &self.http, &script),
        )
        .await;
        let _ = done.send(());
        if let Some(printer) = printer {
            let _ = printer.await;
        }
        let report = placed
            .with_context(|| format!("{call_sid} took longer than {CALL_LIMIT:?}"))?
            .with_context(|| format!("{call_sid} failed"))?;
        let row = self.closed_call(&call_sid).await?;
        if row.end_reason.as_deref() == Some("transferred") {
            self.complete_transfer(&config, &call_sid).await?;
        }
        let reply_latencies = report
            .speech_ends
            .iter()
            .filter_map(|end| Some(report.first_frame_after(*end)? - *end))
            .collect();
        let transcript = self
            .db
            .transcript_since(&call_sid, -1)
            .await?
            .into_iter()
            .map(|line| (line.kind, line.text.unwrap_or_default()))
            .collect();
        Ok(CallResult {
            call_sid,
            report,
            reply_latencies,
            transcript,
        })
    }

    /// The call's row once the gateway has written its close: the socket closes first, the
    /// close (transcript, summary, outcome) follows from the call's writer.
    async fn closed_call(&self, call_sid: &str) -> anyhow::Result<crate::db::calls::CallLogRow> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        let mut poll = tokio::time::interval(Duration::from_millis(50));
        loop {
            poll.tick().await;
            if let Some(row) = self.db.call_log(call_sid).await?
                && row.end_reason.is_some()
            {
                return Ok(row);
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "{call_sid}: the gateway did not close the call's row in time"
            );
        }
    }

    /// Plays Plivo's part after the stream closed for a hand-off: the redirect to
    /// after-stream, the dial that a colleague answers and accepts, the final hang-up.
    async fn complete_transfer(&self, config: &CallerConfig, call_sid: &str) -> anyhow::Result<()> {
        let dial = self
            .post_form(
                config,
                "/plivo/after-stream".into(),
                &[("CallUUID", call_sid)],
            )
            .await?;
        anyhow::ensure!(dial.contains("<Dial"), "after-stream did not dial: {dial}");
        self.post_form(
            config,
            format!("/plivo/dial-status?call={call_sid}&attempt=0"),
            &[
                ("DialStatus", "completed"),
                ("DialBLegUUID", "demo-colleague"),
            ],
        )
        .await?;
        self.post_form(
            config,
            "/plivo/hangup".into(),
            &[
                ("CallUUID", call_sid),
                ("CallStatus", "completed"),
                ("Duration", "95"),
            ],
        )
        .await?;
        Ok(())
    }

    /// Posts a form signed as Plivo signs it; returns the body of a successful answer.
    async fn post_form(
        &self,
        config: &CallerConfig,
        path: String,
        form: &[(&str, &str)],
    ) -> anyhow::Result<String> {
        let form: Vec<(String, String)> = form
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect();
        let response = plivo_caller::signed_post(config, &self.http, &path, &form)
            .await
            .map_err(|error| anyhow::anyhow!("{path}: {error}"))?;
        anyhow::ensure!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        Ok(response.text().await?)
    }

    /// Leads, outcomes and the campaign's counters, read back from the database.
    pub async fn report(&self) -> anyhow::Result<(Vec<LeadReport>, CampaignCounters)> {
        Ok(self.db.campaign_report(self.campaign_id).await?)
    }

    /// Drains and stops the gateway, then the database.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = &self.lifecycle;
        let served = (&mut self.server).await;
        self.db.close().await;
        if let Some(embedded) = self.embedded.take() {
            tokio::task::spawn_blocking(move || embedded.stop()).await??;
        }
        served.context("the gateway task failed")??;
        Ok(())
    }
}

/// Prints a call's transcript lines as the gateway records them, until `finished`, then
/// prints what is left.
async fn print_live(
    db: Database,
    call_sid: String,
    who: String,
    mut finished: tokio::sync::oneshot::Receiver<()>,
) {
    let mut seen = -1;
    let mut ticker = tokio::time::interval(Duration::from_millis(200));
    let mut last = false;
    while !last {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = &mut finished => last = true,
        }
        let Ok(lines) = db.transcript_since(&call_sid, seen).await else {
            continue;
        };
        for line in lines {
            seen = line.seq;
            if let Some(text) = describe(&line.kind, line.text.as_deref()) {
                println!("[{who:<7}] {text}");
            }
        }
    }
}

fn describe(kind: &str, text: Option<&str>) -> Option<String> {
    let text = text.unwrap_or_default();
    Some(match kind {
        "caller_speech" => format!("caller: {text}"),
        "agent_speech" => format!("agent:  {text}"),
        "tool_call" => format!("        → {text}"),
        "barge_in" => "        (caller barged in)".to_owned(),
        "transfer_decision" => format!("        transfer: {text}"),
        "callback_scheduled" => format!("        callback: {text}"),
        _ => return None,
    })
}

/// Runs the demo: every scenario at once, transcripts live, then the table.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    println!("voice-gateway demo: starting the gateway with the local voice pipeline…");
    let world = DemoWorld::start(settings).await?;
    println!(
        "gateway on http://{}; placing {} simulated calls at once\n",
        world.address,
        scenarios::SCENARIOS.len()
    );
    let calls = scenarios::SCENARIOS
        .iter()
        .enumerate()
        .map(|(index, scenario)| world.call(*scenario, index, false, true));
    let results = futures_util::future::join_all(calls).await;
    let mut latencies = Vec::new();
    let mut failures = 0;
    for result in &results {
        match result {
            Ok(call) => latencies.extend(call.reply_latencies.iter().copied()),
            Err(error) => {
                failures += 1;
                eprintln!("call failed: {error:#}");
            }
        }
    }
    let (leads, counters) = world.report().await?;
    println!(
        "\n{:<14} {:<15} {:<12} {:<12} {:>5}  summary",
        "lead", "scenario", "lead status", "end reason", "secs"
    );
    for lead in &leads {
        let scenario = scenarios::SCENARIOS
            .iter()
            .find(|s| s.lead == lead.lead_name)
            .map_or("", |s| s.name);
        println!(
            "{:<14} {:<15} {:<12} {:<12} {:>5}  {}",
            lead.lead_name,
            scenario,
            lead.lead_status,
            lead.end_reason.as_deref().unwrap_or("-"),
            lead.duration_secs.map_or("-".to_owned(), |d| d.to_string()),
            lead.summary.as_deref().unwrap_or("")
        );
    }
    println!(
        "\ncampaign: {} calls, {} transferred, conversion rate {} %",
        counters.total_calls, counters.transferred_calls, counters.conversion_rate
    );
    latencies.sort();
    if !latencies.is_empty() {
        let at = |p: usize| latencies[(latencies.len() * p / 100).min(latencies.len() - 1)];
        println!(
            "reply latency (caller's last voiced frame → agent's first frame), {} turns: p50 {} ms, max {} ms",
            latencies.len(),
            at(50).as_millis(),
            latencies.last().expect("non-empty").as_millis()
        );
    }
    world.stop().await?;
    anyhow::ensure!(failures == 0, "{failures} demo calls failed");
    Ok(())
}
