//! `loadtest`: drives synthetic Plivo calls at a voice-gateway, exactly as Plivo would (signed
//! answer webhook, then the media WebSocket at real-time pace), and reports what the gateway
//! adds: latency histograms, playback gaps, its CPU per call-second and memory per call.
//!
//! By default it runs the whole system locally: an ephemeral PostgreSQL with a seeded campaign,
//! the fake OpenAI Realtime server (with a known think time, so the gateway's own share of each
//! latency can be told apart), and the gateway binary as its own process. With `--gateway` it
//! drives a gateway that is already running: it seeds a campaign through `--database-url`,
//! can run the fake provider for that gateway (`--fake-listen`), and reads the gateway's CPU
//! and memory from its `/metrics`.

mod chaos;
mod environment;
mod report;
mod scenario;

use std::{
    path::PathBuf,
    process::ExitCode,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use clap::Parser;
use voice_gateway::simulators::{
    openai_realtime::{FakeRealtimeConfig, FakeTurn},
    plivo_caller::{self, CallerConfig},
};

use crate::{
    chaos::{ChaosReport, Fault, WriteCounters},
    environment::{CampaignSeed, LocalEnvironment, ProviderKind, RemoteEnvironment, Target},
    report::{Measurements, Percentiles, Report},
    scenario::Mix,
};

#[derive(Parser, Debug)]
#[command(about = "Drive synthetic Plivo calls at a voice-gateway and measure what it adds")]
struct Args {
    /// Concurrent calls to hold.
    #[arg(long, default_value_t = 50)]
    calls: usize,
    /// Seconds over which the calls start.
    #[arg(long, default_value_t = 5.0)]
    ramp_up: f64,
    /// Seconds each call lasts (about).
    #[arg(long, default_value_t = 10.0)]
    hold: f64,
    /// Seconds the test runs; ended calls are replaced until then.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Caller kinds and weights: talkative, silent, barge_in, transfer.
    #[arg(long, default_value = "talkative=4,silent=1,barge_in=2,transfer=1")]
    mix: String,
    /// The provider the calls run on, played by its fake: `openai` (Realtime) or `gemini`
    /// (Live).
    #[arg(long, value_enum, default_value = "openai")]
    provider: ProviderKind,
    /// The fake provider's think time (ms) before each reply.
    #[arg(long, default_value_t = 100)]
    think_ms: u64,
    /// Length of each agent reply (ms of audio).
    #[arg(long, default_value_t = 1500)]
    reply_ms: u64,
    /// The gateway binary (default: `voice-gateway` beside this executable).
    #[arg(long)]
    gateway_bin: Option<PathBuf>,
    /// Write the JSON report here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the SVG chart here.
    #[arg(long)]
    svg: Option<PathBuf>,
    /// Fail when the gateway's share of turn latency at p99 exceeds this (ms).
    #[arg(long)]
    max_gateway_turn_p99_ms: Option<f64>,
    /// Fail when barge-in → clearAudio at p99 exceeds this (ms).
    #[arg(long)]
    max_barge_in_p99_ms: Option<f64>,
    /// Fail on more playback gaps than this.
    #[arg(long)]
    max_playback_gaps: Option<u64>,
    /// Fail on more failed calls than this.
    #[arg(long)]
    max_failed: Option<u64>,
    /// Fail when the gateway uses more memory per live call than this (KiB).
    #[arg(long)]
    max_kib_per_call: Option<f64>,
    /// Drive a gateway that is already running at this base URL (`http://host:port`)
    /// instead of starting one.
    #[arg(long, requires_all = ["public_url", "database_url", "plivo_auth_token"])]
    gateway: Option<String>,
    /// The remote gateway's `VG_PUBLIC_URL` (webhooks are signed against it).
    #[arg(long)]
    public_url: Option<String>,
    /// The remote gateway's database, where a load-test campaign and its leads are seeded.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// The remote gateway's `PLIVO_AUTH_TOKEN`, to sign the webhooks.
    #[arg(long, env = "PLIVO_AUTH_TOKEN", hide_env_values = true)]
    plivo_auth_token: Option<String>,
    /// Run the fake provider (`--provider`) on this address for the remote gateway (point its
    /// `OPENAI_REALTIME_URL` at `ws://<address>/v1/realtime`, or its `GEMINI_LIVE_URL` at
    /// `ws://<address>/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent`).
    #[arg(long)]
    fake_listen: Option<std::net::SocketAddr>,
    /// Inject a fault into the local environment (repeatable): `db-outage=SECONDS@AT` stops
    /// the load test's PostgreSQL AT seconds in for SECONDS; `kill-gateway@AT` SIGKILLs the
    /// gateway and restarts it. The database is audited after the run.
    #[arg(long, value_parser = Fault::parse, conflicts_with = "gateway")]
    chaos: Vec<Fault>,
    /// Record every call (Ogg/Opus, stereo), as a campaign does by default. Without it the
    /// load-test campaign turns recording off, so a run with it and one without, on the same
    /// machine, measure what recording costs.
    #[arg(long)]
    record: bool,
}

/// How long a slot waits after a call that failed before it places the next.
const FAILED_CALL_PAUSE: Duration = Duration::from_millis(500);

/// How long a hangup callback is retried while the gateway cannot take it.
const HANGUP_RETRY_LIMIT: Duration = Duration::from_secs(90);

/// How long the gateway may take after the last call to replay its spool and close its rows
/// before the chaos audit reads the database anyway.
const CHAOS_SETTLE_DEADLINE: Duration = Duration::from_secs(120);

fn main() -> ExitCode {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    match runtime.block_on(run(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(2),
        Err(error) => {
            eprintln!("loadtest: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the test; `Ok(false)` when a threshold was missed.
async fn run(args: Args) -> anyhow::Result<bool> {
    let mix = Mix::parse(&args.mix).map_err(anyhow::Error::msg)?;
    let hold = Duration::from_secs_f64(args.hold);
    let duration = Duration::from_secs_f64(args.duration.max(args.hold));
    let turns_per_call = (args.hold / 3.0).ceil() as usize + 2;
    // Enough leads for every call the run can start (each call needs its own CallUUID, not its own lead).
    let fake = FakeRealtimeConfig {
        think_time: Duration::from_millis(args.think_ms),
        reply_ms: args.reply_ms,
        greeting_ms: 1500,
        turns: (0..turns_per_call)
            .map(|turn| FakeTurn {
                caller_says: format!("caller turn {turn}"),
                agent_says: format!("agent reply {turn}"),
                tool: None,
            })
            .collect(),
        ..FakeRealtimeConfig::default()
    };
    let provider_share =
        fake.think_time + Duration::from_millis(20 * u64::from(fake.end_of_turn_frames));
    let seed = CampaignSeed {
        leads: args.calls.max(1),
        settings: serde_json::json!({"recording": args.record}),
    };
    let environment = match &args.gateway {
        Some(gateway) => Target::Remote(Box::new(
            RemoteEnvironment::start(
                gateway.clone(),
                args.public_url.clone().expect("required by clap"),
                args.plivo_auth_token.clone().expect("required by clap"),
                args.database_url.as_deref().expect("required by clap"),
                &seed,
                args.fake_listen,
                (args.provider, fake),
            )
            .await?,
        )),
        None => {
            let gateway_bin = match args.gateway_bin.clone() {
                Some(path) => path,
                None => std::env::current_exe()?.with_file_name("voice-gateway"),
            };
            Target::Local(Box::new(
                LocalEnvironment::start(
                    gateway_bin,
                    &seed,
                    args.provider,
                    fake,
                    args.calls * 2 + 10,
                )
                .await?,
            ))
        }
    };
    let idle = environment.sample().await;
    if idle.is_none() {
        eprintln!("loadtest: the gateway's CPU and memory cannot be read; they are left out");
    }
    eprintln!(
        "loadtest: gateway {}, {} calls, ramp {:.0} s, hold {:.0} s, run {:.0} s, recording {}",
        environment.gateway_address(),
        args.calls,
        args.ramp_up,
        args.hold,
        duration.as_secs_f64(),
        if args.record { "on" } else { "off" }
    );

    let measurements = Arc::new(Mutex::new(Measurements::default()));
    let live = Arc::new(AtomicU64::new(0));
    let peak_live = Arc::new(AtomicU64::new(0));
    let started_calls = Arc::new(AtomicUsize::new(0));
    let peak_rss = Arc::new(AtomicU64::new(idle.map(|s| s.rss_bytes).unwrap_or(0)));
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    let environment = Arc::new(environment);
    let placed = Arc::new(Mutex::new(Vec::<String>::new()));
    let hangups = Arc::new(Mutex::new(tokio::task::JoinSet::new()));
    let start = Instant::now();
    let deadline = start + duration;
    // The counters of gateway processes a fault killed, scraped just before each kill.
    let dead_counters = Arc::new(Mutex::new(WriteCounters::default()));
    let faults = spawn_faults(&environment, &args.chaos, start, &http, &dead_counters);

    let mut slots = Vec::new();
    for slot in 0..args.calls {
        let delay = Duration::from_secs_f64(args.ramp_up * slot as f64 / args.calls as f64);
        let campaign = environment.campaign();
        let context = (
            environment.gateway_address().to_owned(),
            campaign.lead_ids[slot % campaign.lead_ids.len()],
            campaign.campaign_id,
            environment.public_url().to_owned(),
            environment.auth_token().to_owned(),
        );
        let (placed, hangups) = (placed.clone(), hangups.clone());
        let (measurements, live, peak_live, started_calls, http, mix) = (
            measurements.clone(),
            live.clone(),
            peak_live.clone(),
            started_calls.clone(),
            http.clone(),
            mix.clone(),
        );
        slots.push(tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            // Each slot keeps one call live until the run's end.
            while Instant::now() + Duration::from_secs(1) < deadline {
                let index = started_calls.fetch_add(1, Ordering::Relaxed);
                let behaviour = mix.pick(index);
                let config = CallerConfig {
                    gateway: context.0.clone(),
                    public_url: context.3.clone(),
                    auth_token: context.4.clone(),
                    call_sid: format!("LOAD-{index:07}-{}", uuid::Uuid::new_v4().simple()),
                    answer_query: format!("lead_id={}&campaign_id={}", context.1, context.2),
                    from: "15550000000".to_owned(),
                    to: "14155550100".to_owned(),
                    keep_agent_audio: false,
                };
                let remaining = deadline.saturating_duration_since(Instant::now());
                let call_hold = hold.min(remaining.saturating_sub(Duration::from_millis(500)));
                let script = behaviour.script(call_hold);
                let now_live = live.fetch_add(1, Ordering::Relaxed) + 1;
                peak_live.fetch_max(now_live, Ordering::Relaxed);
                let result = tokio::time::timeout(
                    call_hold + Duration::from_secs(30),
                    plivo_caller::place_call(&config, &http, &script),
                )
                .await;
                live.fetch_sub(1, Ordering::Relaxed);
                if let Ok(Ok(report)) = &result
                    && report.answer_status == 200
                {
                    // Plivo reports every answered call's end, whatever happened on the stream.
                    let (config, http, duration) = (config.clone(), http.clone(), report.duration);
                    hangups.lock().expect("hangups lock").spawn(async move {
                        plivo_caller::hangup_callback(&config, &http, duration, HANGUP_RETRY_LIMIT)
                            .await
                    });
                }
                let failed = !matches!(&result, Ok(Ok(report)) if report.answer_status == 200);
                {
                    let mut measurements = measurements.lock().expect("measurements lock");
                    match result {
                        Ok(Ok(report)) if report.answer_status == 200 => {
                            // Its stream started: the gateway owes it a row.
                            placed
                                .lock()
                                .expect("placed lock")
                                .push(config.call_sid.clone());
                            measurements.add(behaviour, &report, provider_share)
                        }
                        Ok(Ok(report)) => {
                            measurements.fail(&format!("answer status {}", report.answer_status))
                        }
                        Ok(Err(error)) => measurements.fail(&error.to_string()),
                        Err(_) => measurements.fail("call timed out"),
                    }
                }
                if failed {
                    // A gateway that is down is tried again shortly, not in a tight loop.
                    tokio::time::sleep(FAILED_CALL_PAUSE).await;
                }
            }
        }));
    }

    // Progress once per second until every slot is done.
    let progress = {
        let (measurements, live, peak_rss) = (measurements.clone(), live.clone(), peak_rss.clone());
        let environment = environment.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_secs(1));
            loop {
                ticker.tick().await;
                if let Some(sample) = environment.sample().await {
                    peak_rss.fetch_max(sample.rss_bytes, Ordering::Relaxed);
                }
                let mut measurements = measurements.lock().expect("measurements lock");
                let turn = Percentiles::of(&measurements.turn);
                let now_live = live.load(Ordering::Relaxed);
                let elapsed = start.elapsed().as_secs_f64();
                measurements
                    .timeline
                    .push((elapsed, now_live, turn.p50_ms, turn.p99_ms));
                eprint!(
                    "\r[{elapsed:>5.0} s] live {now_live:>5}  done {:>6}  failed {:>4}  turn p50 {:>6.1} ms  p99 {:>6.1} ms   ",
                    measurements.calls_done, measurements.calls_failed, turn.p50_ms, turn.p99_ms
                );
            }
        })
    };
    for slot in slots {
        slot.await?;
    }
    progress.abort();
    let _ = progress.await;
    eprintln!();
    let busy = environment.sample().await;
    let wall = start.elapsed().as_secs_f64();
    for fault in faults {
        fault.await??;
    }
    // Every hangup callback delivered (or given up) before the audit reads the database.
    let mut pending = std::mem::take(&mut *hangups.lock().expect("hangups lock"));
    let mut hangups_failed = 0u64;
    while let Some(done) = pending.join_next().await {
        if !matches!(done, Ok(Ok(status)) if status < 300) {
            hangups_failed += 1;
        }
    }
    if hangups_failed > 0 {
        eprintln!("loadtest: {hangups_failed} hangup callbacks were not accepted");
    }
    let chaos = if args.chaos.is_empty() {
        None
    } else {
        let placed = placed.lock().expect("placed lock").clone();
        let dead = *dead_counters.lock().expect("counters lock");
        Some(audit(&environment, &http, &args.chaos, &placed, dead).await?)
    };
    let recorded_calls = environment.recorded_calls().await;
    let environment = Arc::into_inner(environment).expect("the progress task has ended");
    environment.stop().await?;

    let measurements = measurements.lock().expect("measurements lock");
    let peak_live_calls = peak_live.load(Ordering::Relaxed);
    let peak_rss = peak_rss.load(Ordering::Relaxed);
    let cpu = match (idle, busy) {
        (Some(idle), Some(busy)) => Some(busy.cpu_seconds - idle.cpu_seconds),
        _ => None,
    };
    let report = Report {
        provider: args.provider,
        calls_planned: args.calls,
        calls_done: measurements.calls_done,
        calls_failed: measurements.calls_failed,
        peak_live_calls,
        wall_seconds: wall,
        call_seconds: measurements.call_seconds,
        answer_webhook: Percentiles::of(&measurements.answer),
        first_greeting_audio: Percentiles::of(&measurements.first_audio),
        turn: Percentiles::of(&measurements.turn),
        gateway_turn: Percentiles::of(&measurements.gateway_turn),
        barge_in_clear: Percentiles::of(&measurements.barge_in),
        playback_gaps: measurements.playback_gaps,
        malformed_frames: measurements.malformed_frames,
        frames_received: measurements.frames,
        provider_share_ms: provider_share.as_secs_f64() * 1000.0,
        gateway_cpu_seconds: cpu,
        gateway_cpu_per_call_second: cpu
            .filter(|_| measurements.call_seconds > 0.0)
            .map(|cpu| cpu / measurements.call_seconds),
        gateway_idle_rss_bytes: idle.map(|s| s.rss_bytes),
        gateway_peak_rss_bytes: Some(peak_rss),
        gateway_bytes_per_live_call: idle
            .filter(|_| peak_live_calls > 0)
            .map(|idle| peak_rss.saturating_sub(idle.rss_bytes) as f64 / peak_live_calls as f64),
        outcomes: measurements.outcomes.clone(),
        errors: measurements.errors.clone(),
        timeline: measurements.timeline.clone(),
        recording: args.record,
        recorded_calls,
        chaos,
    };
    print!("{}", report.table());
    if let Some(chaos) = &report.chaos {
        print!("{}", chaos.table());
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    if let Some(path) = &args.svg {
        std::fs::write(path, report.svg())?;
    }

    let mut passed = true;
    let mut check = |name: &str, value: f64, limit: Option<f64>| {
        if let Some(limit) = limit
            && value > limit
        {
            eprintln!("loadtest: threshold missed: {name} = {value:.2} > {limit:.2}");
            passed = false;
        }
    };
    check(
        "gateway turn p99 ms",
        report.gateway_turn.p99_ms,
        args.max_gateway_turn_p99_ms,
    );
    check(
        "barge-in p99 ms",
        report.barge_in_clear.p99_ms,
        args.max_barge_in_p99_ms,
    );
    check(
        "playback gaps",
        report.playback_gaps as f64,
        args.max_playback_gaps.map(|v| v as f64),
    );
    check(
        "failed calls",
        report.calls_failed as f64,
        args.max_failed.map(|v| v as f64),
    );
    check(
        "KiB per live call",
        report.gateway_bytes_per_live_call.unwrap_or(0.0) / 1024.0,
        args.max_kib_per_call,
    );
    if let Some(chaos) = &report.chaos {
        for broken in chaos.violations() {
            eprintln!("loadtest: chaos: {broken}");
            passed = false;
        }
    }
    Ok(passed)
}

/// Starts one task per fault, each acting at its time since `start`.
fn spawn_faults(
    environment: &Arc<Target>,
    faults: &[Fault],
    start: Instant,
    http: &reqwest::Client,
    dead_counters: &Arc<Mutex<WriteCounters>>,
) -> Vec<tokio::task::JoinHandle<anyhow::Result<()>>> {
    faults
        .iter()
        .map(|fault| {
            let (environment, http, dead_counters, fault) = (
                environment.clone(),
                http.clone(),
                dead_counters.clone(),
                *fault,
            );
            tokio::spawn(async move {
                let Target::Local(local) = &*environment else {
                    anyhow::bail!("--chaos needs the local environment");
                };
                tokio::time::sleep_until((start + fault.at()).into()).await;
                eprintln!("\nloadtest: chaos: {}", fault.describe());
                match fault {
                    Fault::DbOutage { length, .. } => {
                        local.stop_database().await?;
                        tokio::time::sleep(length).await;
                        local.restart_database().await?;
                        eprintln!("\nloadtest: chaos: database back");
                    }
                    Fault::KillGateway { .. } => {
                        let last = gateway_counters(&http, &local.gateway_address).await;
                        local.kill_and_restart_gateway().await?;
                        let mut dead = dead_counters.lock().expect("counters lock");
                        *dead = dead.plus(last.unwrap_or_default());
                        eprintln!("\nloadtest: chaos: gateway restarted");
                    }
                }
                Ok(())
            })
        })
        .collect()
}

async fn gateway_counters(http: &reqwest::Client, gateway: &str) -> Option<WriteCounters> {
    let text = http
        .get(format!("{gateway}/metrics"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    Some(WriteCounters::from_exposition(&text))
}

/// Waits until the gateway's spool is empty and no row is open (or the deadline), then reads
/// the database.
async fn audit(
    environment: &Target,
    http: &reqwest::Client,
    faults: &[Fault],
    placed: &[String],
    dead: WriteCounters,
) -> anyhow::Result<ChaosReport> {
    let Target::Local(local) = environment else {
        anyhow::bail!("--chaos needs the local environment");
    };
    let settling = Instant::now();
    let campaign_id = local.campaign.campaign_id;
    loop {
        let counters = gateway_counters(http, &local.gateway_address).await;
        let audit = local.database().load_test_audit(campaign_id, placed).await;
        let settled = matches!((&counters, &audit), (Some(counters), Ok(audit)) if counters.pending_files == 0 && audit.rows_open == 0);
        if settled || settling.elapsed() > CHAOS_SETTLE_DEADLINE {
            let counters = counters.unwrap_or_default();
            return Ok(ChaosReport::new(
                faults,
                placed.len() as u64,
                audit?,
                dead.plus(counters),
                settling.elapsed(),
            ));
        }
        // Polling another process's state: there is no event to wait on.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
