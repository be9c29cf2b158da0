//! The system under test, when `loadtest` runs it locally: an ephemeral PostgreSQL with a
//! seeded campaign, the fake OpenAI Realtime server, and the gateway as its own process (so
//! its CPU and memory are its own, not the load generator's).

use std::{path::PathBuf, process::Stdio, time::Duration};

use anyhow::Context;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};
use voice_gateway::{
    db::{Database, OpenOptions, embedded::EmbeddedPostgres, seed::SeededCampaign},
    simulators::openai_realtime::{FakeRealtimeConfig, FakeRealtimeServer},
};

/// The auth token the local gateway and the synthetic calls share.
pub const AUTH_TOKEN: &str = "loadtest-plivo-token";
/// The public URL the local gateway signs against.
pub const PUBLIC_URL: &str = "https://gateway.loadtest";

/// Everything running for a local load test.
pub struct LocalEnvironment {
    pub gateway_address: String,
    pub gateway_pid: u32,
    pub campaign: SeededCampaign,
    pub fake: FakeRealtimeServer,
    gateway: Child,
    database: Database,
    cluster: Option<EmbeddedPostgres>,
}

impl LocalEnvironment {
    pub async fn start(
        gateway_bin: PathBuf,
        leads: usize,
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
            .seed_campaign("Load test", leads, &serde_json::json!({}))
            .await?;
        let fake = FakeRealtimeServer::start(fake).await?;
        let fake_url = fake.url();
        let max_calls = max_calls.to_string();
        let secret = "l".repeat(48);
        let mut gateway = Command::new(&gateway_bin)
            .arg("serve")
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .envs([
                ("DATABASE_URL", url.as_str()),
                ("VG_LISTEN", "127.0.0.1:0"),
                ("VG_PUBLIC_URL", PUBLIC_URL),
                ("VG_SERVER_NAME", "loadtest-gateway"),
                ("VG_STREAM_SECRET", secret.as_str()),
                ("VG_AI_PROVIDER", "openai"),
                ("OPENAI_API_KEY", "sk-loadtest"),
                ("OPENAI_REALTIME_URL", fake_url.as_str()),
                ("PLIVO_AUTH_ID", "MALOADTEST"),
                ("PLIVO_AUTH_TOKEN", AUTH_TOKEN),
                ("VG_MAX_CALLS", max_calls.as_str()),
                ("VG_DB_MAX_CONNECTIONS", "40"),
                ("VG_SHUTDOWN_GRACE_SECS", "5"),
                ("VG_LOG_FORMAT", "json"),
                ("RUST_LOG", "warn,voice_gateway::startup=info"),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting the gateway {}", gateway_bin.display()))?;
        let gateway_pid = gateway.id().context("the gateway exited at once")?;
        let mut lines = BufReader::new(gateway.stderr.take().expect("piped")).lines();
        let address = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await? {
                let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                if value["message"] == "listening" {
                    return Ok::<_, anyhow::Error>(
                        value["address"].as_str().unwrap_or_default().to_owned(),
                    );
                }
            }
            anyhow::bail!("the gateway exited before listening")
        })
        .await
        .context("the gateway did not start in time")??;
        // Keep draining the gateway's log so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self {
            gateway_address: format!("http://{address}"),
            gateway_pid,
            campaign,
            fake,
            gateway,
            database,
            cluster: Some(cluster),
        })
    }

    /// Stops the gateway (SIGTERM, drained), the fake and the database.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.gateway_pid.to_string()])
            .status();
        let _ = tokio::time::timeout(Duration::from_secs(30), self.gateway.wait()).await;
        self.fake.stop().await;
        self.database.close().await;
        if let Some(cluster) = self.cluster.take() {
            tokio::task::spawn_blocking(move || cluster.stop()).await??;
        }
        Ok(())
    }
}

/// CPU seconds (user + system) and resident memory of a process, from /proc.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessSample {
    pub cpu_seconds: f64,
    pub rss_bytes: u64,
}

/// Reads `/proc/<pid>/stat` and `/proc/<pid>/status`. Clock ticks are Linux's 100 per second.
pub fn sample_process(pid: u32) -> Option<ProcessSample> {
    const CLOCK_TICKS: f64 = 100.0;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib: u64 = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(ProcessSample {
        cpu_seconds: (utime + stime) / CLOCK_TICKS,
        rss_bytes: rss_kib * 1024,
    })
}
