//! The system under test. Locally: an ephemeral PostgreSQL with a seeded campaign, the fake
//! OpenAI Realtime server, and the gateway as its own process (so its CPU and memory are its
//! own, not the load generator's). Remotely: a gateway already running elsewhere, a campaign
//! seeded in its database, optionally the fake provider for it, and its `/metrics` for CPU and
//! memory.

use std::{
    path::PathBuf,
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

/// How long a killed gateway is restarted, again and again, before the run gives up.
const RESTART_PATIENCE: Duration = Duration::from_secs(120);
/// How many of the gateway's last log lines an early exit reports.
const STARTUP_LOG_LINES: usize = 20;

use anyhow::Context;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};
use voice_gateway::{
    db::{Database, OpenOptions, embedded::EmbeddedPostgres, seed::SeededCampaign},
    metrics::ProcessSample,
    simulators::{
        gemini_live::{FakeGeminiConfig, FakeGeminiServer},
        openai_realtime::{FakeRealtimeConfig, FakeRealtimeServer},
    },
};

/// The provider the gateway's calls run on, each played by its fake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    Openai,
    Gemini,
}

/// The fake provider of a run: the same conversation, timing and voice activity thresholds
/// whichever protocol it speaks, so runs on either are comparable.
pub enum FakeProvider {
    OpenAi(FakeRealtimeServer),
    Gemini(FakeGeminiServer),
}

impl FakeProvider {
    pub async fn start_on(
        address: std::net::SocketAddr,
        kind: ProviderKind,
        config: FakeRealtimeConfig,
    ) -> std::io::Result<Self> {
        Ok(match kind {
            ProviderKind::Openai => {
                Self::OpenAi(FakeRealtimeServer::start_on(address, config).await?)
            }
            ProviderKind::Gemini => {
                Self::Gemini(FakeGeminiServer::start_on(address, gemini_config(config)).await?)
            }
        })
    }

    /// The gateway's settings that point it at this fake.
    pub fn gateway_env(&self) -> Vec<(&'static str, String)> {
        match self {
            Self::OpenAi(fake) => vec![
                ("VG_AI_PROVIDER", "openai".to_owned()),
                ("OPENAI_API_KEY", "sk-loadtest".to_owned()),
                ("OPENAI_REALTIME_URL", fake.url()),
            ],
            Self::Gemini(fake) => vec![
                ("VG_AI_PROVIDER", "gemini".to_owned()),
                ("GEMINI_API_KEY", "g-loadtest".to_owned()),
                ("GEMINI_LIVE_URL", fake.url()),
            ],
        }
    }

    pub async fn stop(self) {
        match self {
            Self::OpenAi(fake) => fake.stop().await,
            Self::Gemini(fake) => fake.stop().await,
        }
    }
}

/// The Gemini fake playing the same conversation as the OpenAI fake's `config`.
fn gemini_config(config: FakeRealtimeConfig) -> FakeGeminiConfig {
    FakeGeminiConfig {
        greeting: config.greeting,
        greeting_ms: config.greeting_ms,
        reply_ms: config.reply_ms,
        think_time: config.think_time,
        text_time: config.text_time,
        generation_speed: config.generation_speed,
        chunk_ms: config.delta_ms,
        turns: config.turns,
        follow_up: config.follow_up,
        speech_threshold: config.speech_threshold,
        end_of_turn_frames: config.end_of_turn_frames,
        analysis: config.analysis,
        // Set up at once, as the OpenAI fake is: the greeting's latency is then comparable.
        setup_delay: Duration::ZERO,
        ..FakeGeminiConfig::default()
    }
}

/// The auth token the local gateway and the synthetic calls share.
pub const AUTH_TOKEN: &str = "loadtest-plivo-token";
/// The public URL the local gateway signs against.
pub const PUBLIC_URL: &str = "https://gateway.loadtest";

/// Everything running for a local load test.
pub struct LocalEnvironment {
    pub gateway_address: String,
    pub campaign: SeededCampaign,
    pub fake: FakeProvider,
    gateway: tokio::sync::Mutex<Child>,
    gateway_pid: AtomicU32,
    gateway_bin: PathBuf,
    gateway_env: Vec<(String, String)>,
    database: Database,
    /// Behind a lock so that `--chaos` can stop and restart it mid-run.
    cluster: Arc<std::sync::Mutex<Option<EmbeddedPostgres>>>,
    /// The gateway's `VG_DATA_DIR` (its spool), kept across a restart.
    _data_dir: tempfile::TempDir,
}

impl LocalEnvironment {
    pub async fn start(
        gateway_bin: PathBuf,
        seed: &CampaignSeed,
        provider: ProviderKind,
        fake: FakeRealtimeConfig,
        max_calls: usize,
    ) -> anyhow::Result<Self> {
        let cluster = tokio::task::spawn_blocking(EmbeddedPostgres::start_ephemeral)
            .await?
            .context("starting an ephemeral PostgreSQL")?;
        let url = cluster.url("postgres");
        let database = Database::open(OpenOptions {
            url: &url,
            max_connections: 4,
            migrate: true,
        })
        .await?;
        let campaign = database
            .seed_campaign("Load test", seed.leads, &seed.settings)
            .await?;
        let fake =
            FakeProvider::start_on("127.0.0.1:0".parse().expect("valid"), provider, fake).await?;
        let data_dir = tempfile::tempdir().context("a data directory for the gateway")?;
        // A fixed port, so a restarted gateway (`--chaos kill-gateway`) is where callers look.
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut gateway_env: Vec<(String, String)> = [
            ("DATABASE_URL", url.as_str()),
            ("VG_LISTEN", &format!("127.0.0.1:{port}")),
            ("VG_PUBLIC_URL", PUBLIC_URL),
            ("VG_SERVER_NAME", "loadtest-gateway"),
            ("VG_STREAM_SECRET", &"l".repeat(48)),
            ("VG_DATA_DIR", &data_dir.path().to_string_lossy()),
            ("PLIVO_AUTH_ID", "MALOADTEST"),
            ("PLIVO_AUTH_TOKEN", AUTH_TOKEN),
            ("VG_MAX_CALLS", &max_calls.to_string()),
            ("VG_DB_MAX_CONNECTIONS", "40"),
            ("VG_SHUTDOWN_GRACE_SECS", "5"),
            ("VG_LOG_FORMAT", "json"),
            ("RUST_LOG", "warn,voice_gateway::startup=info"),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect();
        gateway_env.extend(
            fake.gateway_env()
                .into_iter()
                .map(|(key, value)| (key.to_owned(), value)),
        );
        let (gateway, address) = spawn_gateway(&gateway_bin, &gateway_env).await?;
        let gateway_pid = gateway.id().context("the gateway exited at once")?;
        Ok(Self {
            gateway_address: format!("http://{address}"),
            campaign,
            fake,
            gateway: tokio::sync::Mutex::new(gateway),
            gateway_pid: AtomicU32::new(gateway_pid),
            gateway_bin,
            gateway_env,
            database,
            cluster: Arc::new(std::sync::Mutex::new(Some(cluster))),
            _data_dir: data_dir,
        })
    }

    pub fn gateway_pid(&self) -> u32 {
        self.gateway_pid.load(Ordering::Relaxed)
    }

    pub fn database(&self) -> &Database {
        &self.database
    }

    /// Stops the load test's PostgreSQL (fast shutdown, files kept).
    pub async fn stop_database(&self) -> anyhow::Result<()> {
        let cluster = self.cluster.clone();
        tokio::task::spawn_blocking(move || {
            let mut cluster = cluster.lock().expect("cluster lock");
            match cluster.as_mut() {
                Some(cluster) => cluster.stop_for_outage().map_err(anyhow::Error::from),
                None => Ok(()),
            }
        })
        .await?
    }

    /// Starts it again on the same port.
    pub async fn restart_database(&self) -> anyhow::Result<()> {
        let cluster = self.cluster.clone();
        tokio::task::spawn_blocking(move || {
            let mut cluster = cluster.lock().expect("cluster lock");
            match cluster.as_mut() {
                Some(cluster) => cluster.restart().map_err(anyhow::Error::from),
                None => Ok(()),
            }
        })
        .await?
    }

    /// SIGKILLs the gateway and starts it again with the same settings (address, data
    /// directory, server name), as a supervisor would after a crash.
    pub async fn kill_and_restart_gateway(&self) -> anyhow::Result<()> {
        let mut gateway = self.gateway.lock().await;
        gateway.start_kill().context("SIGKILL the gateway")?;
        gateway.wait().await?;
        // As a supervisor does: again and again, since a gateway cannot start while its
        // database is down.
        let given_up = std::time::Instant::now() + RESTART_PATIENCE;
        let restarted = loop {
            match spawn_gateway(&self.gateway_bin, &self.gateway_env).await {
                Ok((restarted, _)) => break restarted,
                Err(error) if std::time::Instant::now() < given_up => {
                    eprintln!("\nloadtest: the gateway did not start ({error:#}); trying again");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(error) => return Err(error.context("restarting the killed gateway")),
            }
        };
        self.gateway_pid.store(
            restarted
                .id()
                .context("the restarted gateway exited at once")?,
            Ordering::Relaxed,
        );
        *gateway = restarted;
        Ok(())
    }

    /// Stops the gateway (SIGTERM, drained), the fake and the database.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.gateway_pid().to_string()])
            .status();
        let mut gateway = self.gateway.into_inner();
        let _ = tokio::time::timeout(Duration::from_secs(30), gateway.wait()).await;
        self.fake.stop().await;
        self.database.close().await;
        let cluster = self.cluster.lock().expect("cluster lock").take();
        if let Some(cluster) = cluster {
            tokio::task::spawn_blocking(move || cluster.stop()).await??;
        }
        Ok(())
    }
}

/// Starts the gateway binary with `env` and waits until it listens; returns its address.
async fn spawn_gateway(
    gateway_bin: &PathBuf,
    env: &[(String, String)],
) -> anyhow::Result<(Child, String)> {
    let mut gateway = Command::new(gateway_bin)
        .arg("serve")
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .envs(env.iter().map(|(key, value)| (key, value)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting the gateway {}", gateway_bin.display()))?;
    let mut lines = BufReader::new(gateway.stderr.take().expect("piped")).lines();
    let address = tokio::time::timeout(Duration::from_secs(60), async {
        // The last lines, to say why the gateway stopped if it does.
        let mut last = std::collections::VecDeque::with_capacity(STARTUP_LOG_LINES);
        while let Some(line) = lines.next_line().await? {
            let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) else {
                if last.len() == STARTUP_LOG_LINES {
                    last.pop_front();
                }
                last.push_back(line);
                continue;
            };
            if value["message"] == "listening" {
                return Ok::<_, anyhow::Error>(
                    value["address"].as_str().unwrap_or_default().to_owned(),
                );
            }
            if last.len() == STARTUP_LOG_LINES {
                last.pop_front();
            }
            last.push_back(line);
        }
        let said: Vec<String> = last.into();
        anyhow::bail!("the gateway exited before listening:\n{}", said.join("\n"))
    })
    .await
    .context("the gateway did not start in time")??;
    // Keep draining the gateway's log so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((gateway, address))
}

/// A gateway that is already running, reached over the network.
pub struct RemoteEnvironment {
    pub gateway_address: String,
    pub public_url: String,
    pub auth_token: String,
    pub campaign: SeededCampaign,
    fake: Option<FakeProvider>,
    database: Database,
    http: reqwest::Client,
}

/// The load-test campaign: its leads and its `settings`.
pub struct CampaignSeed {
    pub leads: usize,
    pub settings: serde_json::Value,
}

impl RemoteEnvironment {
    /// Seeds a campaign of `leads` leads through `database_url` (the gateway's database,
    /// already migrated) and, with `fake_listen`, runs the fake provider there.
    pub async fn start(
        gateway_address: String,
        public_url: String,
        auth_token: String,
        database_url: &str,
        seed: &CampaignSeed,
        fake_listen: Option<std::net::SocketAddr>,
        (provider, fake): (ProviderKind, FakeRealtimeConfig),
    ) -> anyhow::Result<Self> {
        let database = Database::open(OpenOptions {
            url: database_url,
            max_connections: 2,
            migrate: false,
        })
        .await
        .context("opening the gateway's database")?;
        let campaign = database
            .seed_campaign("Load test", seed.leads, &seed.settings)
            .await
            .context("seeding the load-test campaign")?;
        let fake = match fake_listen {
            Some(address) => Some(
                FakeProvider::start_on(address, provider, fake)
                    .await
                    .with_context(|| format!("starting the fake provider on {address}"))?,
            ),
            None => None,
        };
        Ok(Self {
            gateway_address: gateway_address.trim_end_matches('/').to_owned(),
            public_url,
            auth_token,
            campaign,
            fake,
            database,
            http: reqwest::Client::new(),
        })
    }

    /// The gateway's CPU and memory, from its `/metrics`.
    pub async fn sample(&self) -> Option<ProcessSample> {
        let text = self
            .http
            .get(format!("{}/metrics", self.gateway_address))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        ProcessSample::from_exposition(&text)
    }

    pub async fn stop(self) {
        if let Some(fake) = self.fake {
            fake.stop().await;
        }
        self.database.close().await;
    }
}

/// What the load test runs against.
pub enum Target {
    Local(Box<LocalEnvironment>),
    Remote(Box<RemoteEnvironment>),
}

impl Target {
    pub fn gateway_address(&self) -> &str {
        match self {
            Self::Local(local) => &local.gateway_address,
            Self::Remote(remote) => &remote.gateway_address,
        }
    }

    pub fn public_url(&self) -> &str {
        match self {
            Self::Local(_) => PUBLIC_URL,
            Self::Remote(remote) => &remote.public_url,
        }
    }

    pub fn auth_token(&self) -> &str {
        match self {
            Self::Local(_) => AUTH_TOKEN,
            Self::Remote(remote) => &remote.auth_token,
        }
    }

    pub fn campaign(&self) -> &SeededCampaign {
        match self {
            Self::Local(local) => &local.campaign,
            Self::Remote(remote) => &remote.campaign,
        }
    }

    /// How many of the load-test campaign's calls have a recording.
    pub async fn recorded_calls(&self) -> Option<voice_gateway::db::recordings::RecordedCalls> {
        let database = match self {
            Self::Local(local) => &local.database,
            Self::Remote(remote) => &remote.database,
        };
        database
            .recorded_calls(self.campaign().campaign_id)
            .await
            .ok()
    }

    /// The gateway's CPU seconds and resident memory now: from `/proc` for the local
    /// process, from `/metrics` for a remote one.
    pub async fn sample(&self) -> Option<ProcessSample> {
        match self {
            Self::Local(local) => ProcessSample::of_pid(local.gateway_pid()),
            Self::Remote(remote) => remote.sample().await,
        }
    }

    pub async fn stop(self) -> anyhow::Result<()> {
        match self {
            Self::Local(local) => (*local).stop().await,
            Self::Remote(remote) => {
                remote.stop().await;
                Ok(())
            }
        }
    }
}
