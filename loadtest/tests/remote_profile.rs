//! The remote mode: `loadtest --gateway` against a gateway that is already running, with the
//! fake provider served by the load test itself and the gateway's CPU and memory read from
//! its `/metrics`.

use std::{path::PathBuf, process::Stdio, time::Duration};

use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::Command,
};
use voice_gateway::db::{Database, OpenOptions, embedded::EmbeddedPostgres};

const AUTH_TOKEN: &str = "remote-plivo-token";
const PUBLIC_URL: &str = "https://gateway.remote.test";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_calls_against_a_running_gateway_measured_through_its_metrics() {
    let cluster = tokio::task::spawn_blocking(EmbeddedPostgres::start_ephemeral)
        .await
        .unwrap()
        .unwrap();
    let url = cluster.url("postgres");
    Database::open(OpenOptions {
        url: &url,
        max_connections: 1,
        migrate: true,
    })
    .await
    .unwrap()
    .close()
    .await;
    let fake = format!("127.0.0.1:{}", free_port());
    let fake_url = format!("ws://{fake}/v1/realtime");
    let loadtest = PathBuf::from(env!("CARGO_BIN_EXE_loadtest"));
    let secret = "r".repeat(48);
    let mut gateway = Command::new(loadtest.with_file_name("voice-gateway"))
        .arg("serve")
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .envs([
            ("DATABASE_URL", url.as_str()),
            ("VG_LISTEN", "127.0.0.1:0"),
            ("VG_PUBLIC_URL", PUBLIC_URL),
            ("VG_SERVER_NAME", "remote-gateway"),
            ("VG_STREAM_SECRET", secret.as_str()),
            ("VG_AI_PROVIDER", "openai"),
            ("OPENAI_API_KEY", "sk-remote"),
            ("OPENAI_REALTIME_URL", fake_url.as_str()),
            ("PLIVO_AUTH_ID", "MAREMOTE"),
            ("PLIVO_AUTH_TOKEN", AUTH_TOKEN),
            ("VG_LOG_FORMAT", "json"),
            ("RUST_LOG", "warn,voice_gateway::startup=info"),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the gateway starts");
    let mut lines = BufReader::new(gateway.stderr.take().unwrap()).lines();
    let address = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if value["message"] == "listening" {
                return value["address"].as_str().unwrap().to_owned();
            }
        }
        panic!("the gateway exited before listening")
    })
    .await
    .expect("the gateway listens in time");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    let json = std::env::temp_dir().join(format!("loadtest-remote-{}.json", std::process::id()));
    let output = Command::new(&loadtest)
        .args(["--gateway", &format!("http://{address}")])
        .args(["--public-url", PUBLIC_URL])
        .args(["--database-url", &url])
        .args(["--plivo-auth-token", AUTH_TOKEN])
        .args(["--fake-listen", &fake])
        .args([
            "--calls",
            "20",
            "--ramp-up",
            "2",
            "--hold",
            "5",
            "--duration",
            "6",
        ])
        .args(["--max-failed", "0"])
        .arg("--json")
        .arg(&json)
        .output()
        .await
        .expect("loadtest runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "loadtest failed:\n{stdout}\n{stderr}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert!(report["calls_done"].as_u64().unwrap() >= 20, "{report}");
    assert_eq!(report["calls_failed"], 0, "{report}");
    assert!(report["turn"]["count"].as_u64().unwrap() > 0, "{report}");
    let cpu = report["gateway_cpu_per_call_second"].as_f64();
    assert!(
        cpu.is_some_and(|cpu| cpu > 0.0),
        "CPU per call-second from /metrics: {report}"
    );
    assert!(
        report["gateway_idle_rss_bytes"].as_u64().unwrap() > 1024 * 1024,
        "memory from /metrics: {report}"
    );
    std::fs::remove_file(&json).ok();

    let _ = std::process::Command::new("kill")
        .args(["-TERM", &gateway.id().unwrap().to_string()])
        .status();
    let _ = tokio::time::timeout(Duration::from_secs(30), gateway.wait()).await;
    tokio::task::spawn_blocking(move || cluster.stop())
        .await
        .unwrap()
        .unwrap();
}
