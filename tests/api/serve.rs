//! `voice-gateway` as operators run it: the real binary for configuration errors, migrations
//! and the embedded database; an in-process application for readiness and draining.

use std::{os::unix::fs::PermissionsExt, process::Stdio, time::Duration};

use sqlx::{Connection, PgConnection};
use tokio::{
    io::{AsyncBufReadExt, BufReader, Lines},
    process::{Child, ChildStderr, Command},
};
use voice_gateway::db::embedded::EmbeddedPostgres;

use crate::helpers::{TestApp, TestDb, settings_for};

const BINARY: &str = env!("CARGO_BIN_EXE_voice-gateway");
/// A safety net for a hung child, never a synchronisation point.
pub(crate) const CHILD_DEADLINE: Duration = Duration::from_secs(120);

/// The binary with a clean environment plus `vars`.
pub(crate) fn gateway(args: &[&str], vars: &[(&str, &str)]) -> Command {
    let mut command = Command::new(BINARY);
    command
        .args(args)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .envs(vars.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

async fn run(args: &[&str], vars: &[(&str, &str)]) -> (i32, String, String) {
    let output = tokio::time::timeout(CHILD_DEADLINE, gateway(args, vars).output())
        .await
        .expect("the binary finished")
        .expect("the binary ran");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_configuration_error_stops_start_up_with_one_line_naming_the_variable() {
    for (name, value, fragment) in [
        ("VG_LISTEN", "nowhere", "expected an address"),
        ("VG_AI_PROVIDER", "watson", "expected `local`"),
        ("DATABASE_URL", "mysql://db/x", "postgres://"),
    ] {
        let (code, _, stderr) = run(&["serve"], &[(name, value)]).await;
        assert_eq!(code, 64, "{name}: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "exactly one line: {stderr:?}");
        assert!(
            lines[0].contains(name) && lines[0].contains(fragment),
            "{stderr:?}"
        );
    }
}

#[tokio::test]
async fn a_wrong_database_url_fails_start_up_clearly() {
    let secret = "k".repeat(40);
    let (code, _, stderr) = run(
        &["migrate"],
        &[
            ("DATABASE_URL", "postgres://gw:secretpw@127.0.0.1:1/voice"),
            ("VG_STREAM_SECRET", &secret),
        ],
    )
    .await;
    assert_eq!(code, 1, "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains("cannot connect to PostgreSQL at gw@127.0.0.1:1/voice"),
        "{stderr}"
    );
    assert!(!stderr.contains("secretpw"), "{stderr}");
}

#[tokio::test]
async fn migrate_applies_the_schema_to_an_empty_database() {
    let test = TestDb::empty().await;
    let secret = "k".repeat(40);
    let (code, stdout, stderr) = run(
        &["migrate"],
        &[("DATABASE_URL", &test.url), ("VG_STREAM_SECRET", &secret)],
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("migrations up to date"), "{stdout}");
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public' AND table_name IN ('leads', 'call_logs', 'websocket_servers', 'campaigns')",
    )
    .fetch_one(test.pool())
    .await
    .unwrap();
    assert_eq!(tables, 4);
}

/// Reads JSON log lines until one has `message == wanted`; returns it.
pub(crate) async fn wait_for_log(
    lines: &mut Lines<BufReader<ChildStderr>>,
    wanted: &str,
) -> serde_json::Value {
    let read = async {
        while let Some(line) = lines.next_line().await.expect("read stderr") {
            let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) else {
                panic!("not a JSON log line: {line}");
            };
            if value["message"] == wanted {
                return value;
            }
        }
        panic!("the gateway exited before logging {wanted:?}");
    };
    tokio::time::timeout(CHILD_DEADLINE, read)
        .await
        .expect("log line in time")
}

async fn start_serve(data_dir: &str) -> (Child, Lines<BufReader<ChildStderr>>, String) {
    // The default provider, `local`, with the models `scripts/fetch-models` put in place.
    let models = settings_for(
        "postgres://unused@127.0.0.1/x",
        "models",
        &[("VG_AI_PROVIDER", "local")],
    )
    .ai
    .models_dir;
    let models = models.to_str().expect("a UTF-8 path").to_owned();
    let mut child = gateway(
        &["serve"],
        &[
            ("VG_DATA_DIR", data_dir),
            ("VG_MODELS_DIR", &models),
            ("VG_LISTEN", "127.0.0.1:0"),
            ("VG_LOG_FORMAT", "json"),
            ("VG_SERVER_NAME", "gw-embedded"),
            ("VG_PUBLIC_URL", "https://gw.test"),
            ("RUST_LOG", "info"),
        ],
    )
    .spawn()
    .expect("spawn serve");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let listening = wait_for_log(&mut lines, "listening").await;
    let address = listening["address"]
        .as_str()
        .expect("the address is logged")
        .to_owned();
    (child, lines, address)
}

async fn terminate(mut child: Child, lines: &mut Lines<BufReader<ChildStderr>>) {
    let pid = child.id().expect("running").to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    wait_for_log(lines, "stopped").await;
    let status = tokio::time::timeout(CHILD_DEADLINE, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "serve exits 0 after SIGTERM: {status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_on_the_embedded_database_registers_drains_and_restarts_with_its_data() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let data_dir = dir.path().to_str().unwrap().to_owned();
    let http = reqwest::Client::new();

    let (child, mut lines, address) = start_serve(&data_dir).await;
    let health = http
        .get(format!("http://{address}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let ready = http
        .get(format!("http://{address}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    assert_eq!(ready.text().await.unwrap(), "ready; providers: local");
    terminate(child, &mut lines).await;

    // The cluster is stopped with the gateway; open it to look at what the gateway left.
    let root = dir.path().join("postgres");
    let cluster = {
        let root = root.clone();
        tokio::task::spawn_blocking(move || EmbeddedPostgres::start_persistent(&root))
            .await
            .unwrap()
            .unwrap()
    };
    let mut connection = PgConnection::connect(&cluster.url("voice_gateway"))
        .await
        .unwrap();
    let (url, active): (String, bool) =
        sqlx::query_as("SELECT url, is_active FROM websocket_servers WHERE name = 'gw-embedded'")
            .fetch_one(&mut connection)
            .await
            .unwrap();
    assert_eq!(url, "wss://gw.test/plivo/stream");
    assert!(!active, "a stopped gateway is out of rotation");
    sqlx::query("INSERT INTO organizations (name) VALUES ('survives restarts')")
        .execute(&mut connection)
        .await
        .unwrap();
    connection.close().await.unwrap();
    tokio::task::spawn_blocking(move || cluster.stop())
        .await
        .unwrap()
        .unwrap();

    // A second start reuses the data and re-registers the same row.
    let (child, mut lines, address) = start_serve(&data_dir).await;
    let ready = http
        .get(format!("http://{address}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    terminate(child, &mut lines).await;
    let cluster = tokio::task::spawn_blocking(move || EmbeddedPostgres::start_persistent(&root))
        .await
        .unwrap()
        .unwrap();
    let mut connection = PgConnection::connect(&cluster.url("voice_gateway"))
        .await
        .unwrap();
    let kept: i64 =
        sqlx::query_scalar("SELECT count(*) FROM organizations WHERE name = 'survives restarts'")
            .fetch_one(&mut connection)
            .await
            .unwrap();
    assert_eq!(kept, 1);
    let servers: i64 = sqlx::query_scalar("SELECT count(*) FROM websocket_servers")
        .fetch_one(&mut connection)
        .await
        .unwrap();
    assert_eq!(servers, 1);
    connection.close().await.unwrap();
    tokio::task::spawn_blocking(move || cluster.stop())
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn readiness_metrics_and_the_registry_follow_the_lifecycle() {
    let test = TestDb::new().await;
    let app = TestApp::spawn(settings_for(&test.url, "gw-inproc", &[])).await;
    let http = reqwest::Client::new();

    let server = test
        .db
        .stream_server("gw-inproc")
        .await
        .unwrap()
        .expect("registered by build");
    assert!(server.is_active);
    assert_eq!(server.status, "verified");
    assert_eq!(server.url, "wss://gateway.test/plivo/stream");
    let picked = test
        .db
        .pick_stream_server(Duration::from_secs(10))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(picked.name, "gw-inproc");

    let ready = http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let metrics = http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(
        metrics.text().await.unwrap().contains("vg_draining"),
        "the metrics text lists our gauges"
    );

    app.shutdown().await;
    let server = test.db.stream_server("gw-inproc").await.unwrap().unwrap();
    assert!(!server.is_active, "shutdown marks the server inactive");
    assert_eq!(
        test.db
            .pick_stream_server(Duration::from_secs(10))
            .await
            .unwrap(),
        None
    );
}

/// Starts `serve` on the test's database and returns every log line up to "listening".
async fn start_up_lines(test: &TestDb, extra: &[(&str, &str)]) -> Vec<serde_json::Value> {
    let secret = "k".repeat(40);
    let mut vars = vec![
        ("DATABASE_URL", test.url.as_str()),
        ("VG_STREAM_SECRET", secret.as_str()),
        ("VG_AI_PROVIDER", "openai"),
        ("OPENAI_API_KEY", "sk-test-unused"),
        ("PLIVO_AUTH_ID", "MATEST"),
        ("PLIVO_AUTH_TOKEN", "plivo-test-token"),
        ("VG_DIALER_ENABLED", "false"),
        ("VG_LISTEN", "127.0.0.1:0"),
        ("VG_LOG_FORMAT", "json"),
        ("VG_SERVER_NAME", "gw-start-up"),
        ("RUST_LOG", "info"),
    ];
    vars.extend_from_slice(extra);
    let mut child = gateway(&["serve"], &vars).spawn().expect("spawn serve");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let read = async {
        let mut seen = Vec::new();
        while let Some(line) = lines.next_line().await.expect("read stderr") {
            let value: serde_json::Value = serde_json::from_str(&line)
                .unwrap_or_else(|_| panic!("not a JSON log line: {line}"));
            let listening = value["message"] == "listening";
            seen.push(value);
            if listening {
                return seen;
            }
        }
        panic!("the gateway exited before listening: {seen:?}");
    };
    let seen = tokio::time::timeout(CHILD_DEADLINE, read)
        .await
        .expect("listening in time");
    // Its shutdown is not under test, and its database is thrown away.
    child.kill().await.expect("stop the gateway");
    seen
}

#[tokio::test]
async fn accepting_v2_signatures_is_said_once_at_start_up() {
    let test = TestDb::new().await;
    let about_v2 = |lines: &[serde_json::Value]| -> Vec<String> {
        lines
            .iter()
            .filter(|line| {
                line["message"]
                    .as_str()
                    .is_some_and(|message| message.contains("VG_PLIVO_ACCEPT_V2"))
            })
            .map(|line| format!("{} {}", line["level"], line["message"]))
            .collect()
    };
    let strict = start_up_lines(&test, &[]).await;
    assert_eq!(about_v2(&strict), Vec::<String>::new(), "{strict:?}");
    let lenient = start_up_lines(&test, &[("VG_PLIVO_ACCEPT_V2", "true")]).await;
    let said = about_v2(&lenient);
    assert_eq!(said.len(), 1, "{lenient:?}");
    assert!(said[0].starts_with("\"WARN\""), "{said:?}");
}
