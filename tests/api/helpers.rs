//! The test harness: one ephemeral PostgreSQL cluster for the whole test run (started by the
//! gateway's own embedded-database code), a migrated template database, and a fresh database
//! per test copied from it. Plus fixtures and an in-process application on port 0.

use std::sync::OnceLock;

use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::{Mutex, OnceCell};
use uuid::Uuid;
use voice_gateway::{
    config::{HostFacts, Settings, Source},
    db::{Database, OpenOptions, embedded::EmbeddedPostgres},
    startup::Application,
};

static CLUSTER: OnceLock<EmbeddedPostgres> = OnceLock::new();
static TEMPLATE: OnceCell<()> = OnceCell::const_new();
/// CREATE DATABASE ... TEMPLATE refuses to copy while another copy is in progress.
static CREATE_LOCK: Mutex<()> = Mutex::const_new(());
const TEMPLATE_DB: &str = "vg_template";

/// The cluster shared by every test in this binary.
pub fn cluster() -> &'static EmbeddedPostgres {
    let _ = rustls::crypto::ring::default_provider().install_default();
    test_logs();
    CLUSTER.get_or_init(|| {
        EmbeddedPostgres::start_ephemeral()
            .unwrap_or_else(|error| panic!("the test cluster could not start: {error}"))
    })
}

async fn admin() -> PgConnection {
    PgConnection::connect(&cluster().url("postgres"))
        .await
        .expect("connect to the test cluster")
}

/// A fresh, migrated database for one test.
pub struct TestDb {
    pub url: String,
    pub db: Database,
}

impl TestDb {
    pub async fn new() -> Self {
        Self::create(true).await
    }

    /// An empty database with no migrations applied.
    pub async fn empty() -> Self {
        Self::create(false).await
    }

    async fn create(from_template: bool) -> Self {
        TEMPLATE
            .get_or_init(|| async {
                let mut connection = admin().await;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "CREATE DATABASE {TEMPLATE_DB}"
                )))
                .execute(&mut connection)
                .await
                .expect("create the template database");
                connection.close().await.ok();
                let template = Database::open(OpenOptions {
                    url: &cluster().url(TEMPLATE_DB),
                    max_connections: 2,
                    migrate: true,
                })
                .await
                .expect("migrate the template database");
                template.close().await;
            })
            .await;
        let name = format!("t_{}", Uuid::new_v4().simple());
        {
            let _guard = CREATE_LOCK.lock().await;
            let mut connection = admin().await;
            let statement = if from_template {
                format!("CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB}")
            } else {
                format!("CREATE DATABASE {name}")
            };
            sqlx::query(sqlx::AssertSqlSafe(statement))
                .execute(&mut connection)
                .await
                .expect("create the test database");
            connection.close().await.ok();
        }
        let url = cluster().url(&name);
        let db = Database::open(OpenOptions {
            url: &url,
            max_connections: 10,
            migrate: from_template,
        })
        .await
        .expect("open the test database");
        Self { url, db }
    }

    pub fn pool(&self) -> &PgPool {
        self.db.pool()
    }
}

/// An organization with a project, a campaign and leads.
pub struct Org {
    pub id: Uuid,
    pub campaign_id: Uuid,
    pub lead_ids: Vec<Uuid>,
}

/// Inserts an organization, a project, a running campaign and `leads` new leads.
pub async fn seed_org(pool: &PgPool, name: &str, leads: usize) -> Org {
    let id: Uuid = sqlx::query_scalar("INSERT INTO organizations (name) VALUES ($1) RETURNING id")
        .bind(name)
        .fetch_one(pool)
        .await
        .unwrap();
    let project_id: Uuid = sqlx::query_scalar(
        "INSERT INTO projects (organization_id, name) VALUES ($1, 'Lakeside Towers') RETURNING id",
    )
    .bind(id)
    .fetch_one(pool)
    .await
    .unwrap();
    let campaign_id: Uuid = sqlx::query_scalar(
        "INSERT INTO campaigns (organization_id, project_id, name, status) VALUES ($1, $2, 'Spring launch', 'running') RETURNING id",
    )
    .bind(id)
    .bind(project_id)
    .fetch_one(pool)
    .await
    .unwrap();
    let mut lead_ids = Vec::new();
    for index in 0..leads {
        let lead_id: Uuid = sqlx::query_scalar(
            "INSERT INTO leads (organization_id, project_id, name, phone) VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(id)
        .bind(project_id)
        .bind(format!("Lead {index} of {name}"))
        .bind(format!("+1415555{index:04}"))
        .fetch_one(pool)
        .await
        .unwrap();
        lead_ids.push(lead_id);
    }
    Org {
        id,
        campaign_id,
        lead_ids,
    }
}

/// Settings for an in-process gateway on port 0 against `url`.
pub fn settings_for(url: &str, server_name: &str, extra: &[(&str, &str)]) -> Settings {
    let secret = "s".repeat(48);
    let mut pairs = vec![
        ("DATABASE_URL", url),
        ("VG_LISTEN", "127.0.0.1:0"),
        ("VG_SERVER_NAME", server_name),
        ("VG_STREAM_SECRET", secret.as_str()),
        ("VG_PUBLIC_URL", "https://gateway.test"),
    ];
    // Tests that are not about the AI pipeline need no models: they name their provider.
    let named = |name: &str| extra.iter().any(|(key, _)| *key == name);
    if !named("VG_AI_PROVIDER") {
        pairs.push(("VG_AI_PROVIDER", "openai"));
        if !named("OPENAI_API_KEY") {
            pairs.push(("OPENAI_API_KEY", "sk-test-unused"));
        }
    }
    pairs.extend_from_slice(extra);
    let mut settings = Settings::load(&Source::from_pairs(pairs), &HostFacts::current())
        .expect("valid test settings");
    // Each gateway its own data directory, so a spool is replayed into its own database
    // only; the models stay where the default data directory has them.
    if !named("VG_DATA_DIR") {
        settings.database.data_dir = test_data_dir().into();
        // The recordings too (a file:// store, or an s3:// store's local files): a shared
        // directory would let one test's uploader take another test's files.
        if !named("VG_RECORDINGS_URL") || settings.recordings.s3.is_some() {
            settings.recordings.dir = settings.database.data_dir.join("recordings");
        }
    }
    settings
}

/// A fresh directory for one gateway's state, under this test run's own directory.
pub fn test_data_dir() -> String {
    static RUN: OnceLock<tempfile::TempDir> = OnceLock::new();
    let run = RUN.get_or_init(|| tempfile::tempdir().expect("a temporary directory"));
    let dir = run.path().join(Uuid::new_v4().simple().to_string());
    std::fs::create_dir_all(&dir).expect("a data directory");
    dir.to_str().expect("a UTF-8 path").to_owned()
}

/// A gateway running in this process, stopped by dropping or sending on `stop`.
pub struct TestApp {
    pub address: std::net::SocketAddr,
    pub lifecycle: voice_gateway::lifecycle::Lifecycle,
    /// What the handlers share: the registry of live calls, the gateway's own pool.
    pub state: voice_gateway::http::AppState,
    pub stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
    /// The gateway's spool of call writes.
    pub spool: Option<std::sync::Arc<voice_gateway::call::spool::Spool>>,
}

impl TestApp {
    pub async fn spawn(settings: Settings) -> Self {
        let application = Application::build(settings)
            .await
            .expect("build the application");
        let address = application.local_addr();
        let lifecycle = application.state().lifecycle.clone();
        let spool = application.state().runtime.spool.clone();
        let state = application.state().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(application.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        Self {
            address,
            lifecycle,
            state,
            stop: Some(stop),
            task,
            spool,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// Signals shutdown and waits for the drain to complete.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task)
            .await
            .expect("the application task")
            .expect("a clean shutdown");
    }
}

/// Logs to stderr when `TEST_LOG` is set (for debugging a failing test), silent otherwise.
#[allow(clippy::disallowed_methods)] // The test harness's own switch, not a gateway setting.
fn test_logs() {
    if std::env::var_os("TEST_LOG").is_some() {
        voice_gateway::telemetry::init(voice_gateway::config::LogFormat::Text);
    }
}
