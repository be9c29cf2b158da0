//! The typed settings tree, loaded once from the environment (and an optional TOML file) and
//! validated before anything binds a port.
//!
//! This is the only module that reads the process environment. Loading goes through
//! [`Source`], a plain map, so tests build settings without touching the environment.
//! Every error names the variable it is about, in one line.

use std::{
    collections::HashMap,
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::plivo::signature::V2Policy;

/// Every setting: its environment name and its key in the TOML file, in one table, so the two
/// spellings cannot drift apart.
const KEYS: &[(&str, &str)] = &[
    ("DATABASE_URL", "database.url"),
    ("VG_DB_MAX_CONNECTIONS", "database.max_connections"),
    ("VG_DATA_DIR", "database.data_dir"),
    ("VG_SPOOL_MAX_MB", "database.spool_max_mb"),
    ("VG_RECORDINGS_URL", "recordings.url"),
    // The AWS ecosystem's own names, for an `s3://` recordings store.
    ("AWS_ACCESS_KEY_ID", "recordings.s3.access_key_id"),
    ("AWS_SECRET_ACCESS_KEY", "recordings.s3.secret_access_key"),
    ("AWS_SESSION_TOKEN", "recordings.s3.session_token"),
    ("AWS_REGION", "recordings.s3.region"),
    ("AWS_DEFAULT_REGION", "recordings.s3.default_region"),
    ("AWS_ENDPOINT_URL_S3", "recordings.s3.endpoint_url_s3"),
    ("AWS_ENDPOINT_URL", "recordings.s3.endpoint_url"),
    ("VG_LISTEN", "server.listen"),
    ("VG_PUBLIC_URL", "server.public_url"),
    ("VG_SERVER_NAME", "server.name"),
    ("VG_SERVER_PRIORITY", "server.priority"),
    ("VG_HEARTBEAT_SECS", "server.heartbeat_secs"),
    ("VG_SHUTDOWN_GRACE_SECS", "server.shutdown_grace_secs"),
    ("VG_STREAM_SECRET", "server.stream_secret"),
    (
        "VG_HTTP_HEADER_TIMEOUT_SECS",
        "server.http_header_timeout_secs",
    ),
    ("VG_HTTP_IDLE_TIMEOUT_SECS", "server.http_idle_timeout_secs"),
    ("VG_HTTP_MAX_CONNECTIONS", "server.http_max_connections"),
    ("VG_MAX_CALLS", "calls.max_live"),
    ("VG_PLAYOUT_LEAD_MS", "calls.playout_lead_ms"),
    ("VG_GREETING_GUARD_MS", "calls.greeting_guard_ms"),
    ("VG_PROVIDER_TIMEOUT_SECS", "calls.provider_timeout_secs"),
    ("VG_TRANSFER_STRATEGY", "calls.transfer_strategy"),
    ("VG_LOG_FORMAT", "telemetry.log_format"),
    ("VG_MODELS_DIR", "ai.models_dir"),
    ("VG_AI_PROVIDER", "ai.provider"),
    ("VG_LOCAL_THREADS", "ai.local_threads"),
    ("OPENAI_API_KEY", "ai.openai.api_key"),
    ("OPENAI_REALTIME_URL", "ai.openai.realtime_url"),
    ("OPENAI_REALTIME_MODEL", "ai.openai.model"),
    ("GEMINI_API_KEY", "ai.gemini.api_key"),
    ("GEMINI_LIVE_URL", "ai.gemini.live_url"),
    ("GEMINI_LIVE_MODEL", "ai.gemini.model"),
    ("PLIVO_AUTH_ID", "plivo.auth_id"),
    ("PLIVO_AUTH_TOKEN", "plivo.auth_token"),
    ("PLIVO_API_URL", "plivo.api_url"),
    ("VG_PLIVO_ACCEPT_V2", "plivo.accept_v2"),
    ("VG_DIALER_ENABLED", "dialer.enabled"),
    ("VG_DIALER_CPS", "dialer.cps"),
    ("VG_DIALER_POLL_MS", "dialer.poll_ms"),
    ("VG_DIALER_STUCK_MARGIN_SECS", "dialer.stuck_margin_secs"),
    ("VG_IMPORT_MIN_BYTES_PER_SEC", "imports.min_bytes_per_sec"),
    ("VG_IMPORT_RATE_GRACE_SECS", "imports.rate_grace_secs"),
];

/// The variable that names the optional TOML file.
pub const CONFIG_FILE_VAR: &str = "VG_CONFIG";

/// Where a raw value came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Origin {
    Env,
    File(PathBuf),
}

/// Raw settings as strings, keyed by environment name. Environment wins over the file.
#[derive(Debug, Default, Clone)]
pub struct Source {
    values: HashMap<&'static str, (String, Origin)>,
}

/// A setting that is missing or malformed. Its `Display` is the one line start-up prints.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}{origin}: {message}")]
pub struct ConfigError {
    /// The environment variable the error is about.
    pub key: String,
    origin: String,
    message: String,
}

impl ConfigError {
    fn new(key: &str, message: impl Into<String>) -> Self {
        Self {
            key: key.to_owned(),
            origin: String::new(),
            message: message.into(),
        }
    }
}

impl Source {
    /// Reads the process environment, and the TOML file named by `VG_CONFIG` if set.
    #[allow(clippy::disallowed_methods)] // The one place that reads the environment.
    pub fn from_process_env() -> Result<Self, ConfigError> {
        let env: HashMap<String, String> = std::env::vars().collect();
        let mut source = match env.get(CONFIG_FILE_VAR) {
            Some(path) if !path.is_empty() => Self::from_toml_file(Path::new(path))?,
            _ => Self::default(),
        };
        source.overlay_env(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        Ok(source)
    }

    /// A source from explicit `(ENV_NAME, value)` pairs, as if they were the environment.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut source = Self::default();
        source.overlay_env(pairs);
        source
    }

    /// Loads a TOML file whose tables mirror [`KEYS`] (`[server] listen = "..."`).
    pub fn from_toml_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| {
            ConfigError::new(
                CONFIG_FILE_VAR,
                format!("cannot read {}: {error}", path.display()),
            )
        })?;
        Self::from_toml_str(&text, path)
    }

    fn from_toml_str(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let table: toml::Table = toml::from_str(text).map_err(|error| {
            let detail = error.message().to_owned();
            ConfigError::new(
                CONFIG_FILE_VAR,
                format!("{} is not valid TOML: {detail}", path.display()),
            )
        })?;
        let mut flat = Vec::new();
        flatten_toml("", &table, &mut flat);
        let mut source = Self::default();
        for (dotted, value) in flat {
            let Some((env_name, _)) = KEYS.iter().find(|(_, key)| *key == dotted) else {
                return Err(ConfigError::new(
                    CONFIG_FILE_VAR,
                    format!("{}: unknown setting `{dotted}`", path.display()),
                ));
            };
            source
                .values
                .insert(env_name, (value, Origin::File(path.to_owned())));
        }
        Ok(source)
    }

    fn overlay_env<'a>(&mut self, pairs: impl IntoIterator<Item = (&'a str, &'a str)>) {
        for (name, value) in pairs {
            if let Some((known, _)) = KEYS.iter().find(|(env_name, _)| *env_name == name) {
                self.values.insert(known, (value.to_owned(), Origin::Env));
            }
        }
    }

    /// The trimmed value of `key`; an empty value counts as unset.
    fn get(&self, key: &'static str) -> Option<&str> {
        self.values
            .get(key)
            .map(|(value, _)| value.trim())
            .filter(|value| !value.is_empty())
    }

    fn error(&self, key: &'static str, message: impl Into<String>) -> ConfigError {
        let origin = match self.values.get(key) {
            Some((_, Origin::File(path))) => format!(" (in {})", path.display()),
            _ => String::new(),
        };
        ConfigError {
            key: key.to_owned(),
            origin,
            message: message.into(),
        }
    }

    fn parse<T>(
        &self,
        key: &'static str,
        what: &str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Result<Option<T>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(raw) => parse(raw)
                .map(Some)
                .ok_or_else(|| self.error(key, format!("invalid value {raw:?}: expected {what}"))),
        }
    }

    fn url(&self, key: &'static str, schemes: &[&str]) -> Result<Option<Url>, ConfigError> {
        let Some(raw) = self.get(key) else {
            return Ok(None);
        };
        // A provider's URL may carry its key: errors show it without query or credentials.
        let shown = crate::telemetry::RedactedUrl(raw).to_string();
        let url = Url::parse(raw)
            .map_err(|error| self.error(key, format!("invalid URL {shown:?}: {error}")))?;
        if !schemes.contains(&url.scheme()) {
            return Err(self.error(
                key,
                format!(
                    "URL {shown:?} must use {}",
                    schemes
                        .iter()
                        .map(|scheme| format!("{scheme}://"))
                        .collect::<Vec<_>>()
                        .join(" or ")
                ),
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(self.error(key, format!("URL {shown:?} has no host")));
        }
        Ok(Some(url))
    }

    fn secret(&self, key: &'static str) -> Option<SecretString> {
        self.get(key)
            .map(|value| SecretString::from(value.to_owned()))
    }
}

fn flatten_toml(prefix: &str, table: &toml::Table, out: &mut Vec<(String, String)>) {
    for (key, value) in table {
        let dotted = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            toml::Value::Table(inner) => flatten_toml(&dotted, inner, out),
            toml::Value::String(text) => out.push((dotted, text.clone())),
            other => out.push((dotted, other.to_string())),
        }
    }
}

/// The whole configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub server: ServerSettings,
    pub calls: CallSettings,
    pub database: DatabaseSettings,
    pub telemetry: TelemetrySettings,
    pub ai: AiSettings,
    pub plivo: PlivoSettings,
    pub dialer: DialerSettings,
    pub imports: ImportSettings,
    pub recordings: RecordingSettings,
}

/// Where call recordings go (`recordings`).
#[derive(Debug, Clone)]
pub struct RecordingSettings {
    /// The directory of `VG_RECORDINGS_URL` (`file://…`; by default `VG_DATA_DIR/recordings`).
    /// Several gateways serving one API need it shared (a network file system): a recording is
    /// served by whichever gateway takes the request. With `s3://`, `VG_DATA_DIR/recordings`,
    /// where files are written and wait for their upload.
    pub dir: PathBuf,
    /// The `s3://bucket/prefix` store, if recordings go to one.
    pub s3: Option<S3Settings>,
}

/// An S3-compatible store (`VG_RECORDINGS_URL=s3://bucket/prefix`) and its credentials, under
/// the AWS ecosystem's usual names. Without keys, `object_store`'s chain (web identity, the
/// instance's metadata) is tried.
#[derive(Debug, Clone)]
pub struct S3Settings {
    pub bucket: String,
    /// Every key starts with it (no leading or trailing `/`).
    pub prefix: String,
    /// `AWS_REGION`, else `AWS_DEFAULT_REGION`, else `us-east-1`.
    pub region: String,
    /// `AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL`: another S3-compatible store (path-style
    /// requests; `http://` allowed for one on a private network).
    pub endpoint: Option<Url>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<SecretString>,
    pub session_token: Option<SecretString>,
}

/// Limits of the streamed CSV imports (`imports`), beyond the fixed ones in `api::csv_upload`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportSettings {
    /// After the grace period an upload must have arrived at this average rate or better, or it
    /// is abandoned with 408 and nothing imported (`VG_IMPORT_MIN_BYTES_PER_SEC`).
    pub min_bytes_per_sec: u64,
    /// How long an upload may take before the minimum rate applies
    /// (`VG_IMPORT_RATE_GRACE_SECS`).
    pub rate_grace: Duration,
}

/// The campaign dialer (`dialer`).
#[derive(Debug, Clone)]
pub struct DialerSettings {
    /// Whether this gateway claims and places campaign calls (`VG_DIALER_ENABLED`); it also
    /// needs the Plivo credentials.
    pub enabled: bool,
    /// Outbound calls per second for the whole Plivo account, across every gateway on the
    /// database (`VG_DIALER_CPS`; Plivo's default is 2).
    pub cps: u32,
    /// How often the dialer looks for due attempts (`VG_DIALER_POLL_MS`).
    pub poll_interval: Duration,
    /// An attempt with no callback for its ring timeout plus its maximum duration plus this
    /// margin is finished as failed (`VG_DIALER_STUCK_MARGIN_SECS`).
    pub stuck_margin: Duration,
}

#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Where the HTTP and WebSocket listener binds (`VG_LISTEN`).
    pub listen: SocketAddr,
    /// The https base URL Plivo reaches (`VG_PUBLIC_URL`); signatures are computed on it and
    /// the `wss://` stream URL is derived from it.
    pub public_url: Url,
    /// This instance's name in `websocket_servers` (`VG_SERVER_NAME`).
    pub name: String,
    /// Load-balancing weight in `websocket_servers`: the highest active, verified server wins.
    pub priority: i32,
    /// How often the server row is refreshed; a row older than three intervals is stale.
    pub heartbeat_interval: Duration,
    /// How long live calls may run on after SIGTERM before they end with reason `shutdown`.
    pub shutdown_grace: Duration,
    /// Signs the per-call stream tokens. Random per process when unset on a single embedded
    /// instance; required with an external database, where several gateways must agree.
    pub stream_secret: SecretString,
    /// Whether `stream_secret` was generated rather than configured.
    pub stream_secret_generated: bool,
    /// What every HTTP connection is held to before a handler sees it.
    pub http: HttpLimits,
}

/// Limits of the HTTP server, applied to every connection (`http::server`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// A request's head (request line and headers) must be complete within this long of the
    /// connection opening, or of the first byte after a keep-alive pause; else the connection
    /// is closed (`VG_HTTP_HEADER_TIMEOUT_SECS`). This is the slowloris guard.
    pub header_timeout: Duration,
    /// A keep-alive connection that starts no new request for this long is closed
    /// (`VG_HTTP_IDLE_TIMEOUT_SECS`).
    pub idle_timeout: Duration,
    /// Connections open at once, upgraded media WebSockets included; one more is answered 503
    /// and closed (`VG_HTTP_MAX_CONNECTIONS`).
    pub max_connections: usize,
}

/// How calls are run on this gateway.
#[derive(Debug, Clone)]
pub struct CallSettings {
    /// Live calls this gateway accepts at once (`VG_MAX_CALLS`).
    pub max_live: usize,
    /// How far ahead of real time agent audio is sent to Plivo (`VG_PLAYOUT_LEAD_MS`): more is
    /// robust to network jitter, less makes a barge-in discard less.
    pub playout_lead: Duration,
    /// Caller speech during the first part of the greeting is taken for the agent's own echo
    /// (`VG_GREETING_GUARD_MS`; 0 turns the guard off).
    pub greeting_guard: Duration,
    /// How long a provider may take to open a session or take a message (`VG_PROVIDER_TIMEOUT_SECS`).
    pub provider_timeout: Duration,
    /// How a transfer leaves the stream (`VG_TRANSFER_STRATEGY`).
    pub transfer_strategy: TransferStrategy,
}

/// How a transfer leaves the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferStrategy {
    /// Close the stream; Plivo follows the answer's `<Redirect>` to `/plivo/after-stream`.
    Dial,
    /// Move the call with Plivo's Call Transfer API to `/plivo/after-stream`, then close the
    /// stream; if the API fails, the `<Redirect>` still gets there.
    Rest,
}

#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    /// External PostgreSQL (`DATABASE_URL`); `None` runs the embedded cluster under `data_dir`.
    pub url: Option<SecretString>,
    pub max_connections: u32,
    /// State of this instance (`VG_DATA_DIR`): the embedded cluster lives in `postgres/` here,
    /// the spool of call writes in `spool/`.
    pub data_dir: PathBuf,
    /// The most the spool of call writes may hold (`VG_SPOOL_MAX_MB`).
    pub spool_max_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines, for terminals.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

#[derive(Debug, Clone)]
pub struct TelemetrySettings {
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AiProviderKind {
    /// The embedded offline pipeline (the default).
    Local,
    OpenAi,
    Gemini,
}

impl AiProviderKind {
    pub const ALL: [Self; 3] = [Self::Local, Self::OpenAi, Self::Gemini];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::OpenAi => "openai",
            Self::Gemini => "gemini",
        }
    }

    /// The provider spelled `text` (`local`, `openai`, `gemini`), any case.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.to_string().eq_ignore_ascii_case(text))
    }
}

impl fmt::Display for AiProviderKind {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

#[derive(Debug, Clone)]
pub struct AiSettings {
    pub provider: AiProviderKind,
    /// The local pipeline's models (`VG_MODELS_DIR`), made by `scripts/fetch-models`.
    pub models_dir: PathBuf,
    /// Threads running the local pipeline's speech-to-text, intents and synthesis
    /// (`VG_LOCAL_THREADS`); they never run on the async workers.
    pub local_threads: usize,
    pub openai: OpenAiSettings,
    pub gemini: GeminiSettings,
}

impl AiSettings {
    /// The providers this gateway can run a call on: the local pipeline when it is the
    /// default (it is loaded at start-up only then), OpenAI and Gemini Live when their keys are
    /// set.
    pub fn configured(&self) -> Vec<AiProviderKind> {
        let mut configured = Vec::new();
        if self.provider == AiProviderKind::Local {
            configured.push(AiProviderKind::Local);
        }
        if self.openai.api_key.is_some() {
            configured.push(AiProviderKind::OpenAi);
        }
        if self.gemini.api_key.is_some() {
            configured.push(AiProviderKind::Gemini);
        }
        configured
    }

    /// Whether a call can run on `provider` here.
    pub fn is_configured(&self, provider: AiProviderKind) -> bool {
        self.configured().contains(&provider)
    }
}

#[derive(Debug, Clone)]
pub struct OpenAiSettings {
    pub api_key: Option<SecretString>,
    pub realtime_url: Url,
    pub model: String,
}

#[derive(Debug, Clone)]
pub struct GeminiSettings {
    pub api_key: Option<SecretString>,
    pub live_url: Url,
    /// `GEMINI_LIVE_MODEL`, without or with the `models/` prefix.
    pub model: String,
}

#[derive(Debug, Clone)]
pub struct PlivoSettings {
    pub auth_id: Option<String>,
    /// Verifies webhook signatures and authenticates REST calls. Without it every `/plivo/*`
    /// request is refused, since none can be verified.
    pub auth_token: Option<SecretString>,
    pub api_url: Url,
    /// Whether a request signed only with the legacy `X-Plivo-Signature-V2` is verified
    /// (`VG_PLIVO_ACCEPT_V2=true`) or refused (the default): V2 covers neither the query nor
    /// the body, so a captured V2 header pair is valid with any parameters.
    pub v2_policy: V2Policy,
}

/// Defaults for the optional settings.
pub mod defaults {
    pub const LISTEN: &str = "0.0.0.0:8080";
    pub const OPENAI_REALTIME_URL: &str = "wss://api.openai.com/v1/realtime";
    pub const OPENAI_REALTIME_MODEL: &str = "gpt-realtime";
    pub const GEMINI_LIVE_URL: &str = "wss://generativelanguage.googleapis.com/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent";
    /// Google's stable native-audio Live model (September 2026).
    pub const GEMINI_LIVE_MODEL: &str = "gemini-3.8-live";
    pub const PLIVO_API_URL: &str = "https://api.plivo.com";
    pub const DB_MAX_CONNECTIONS: u32 = 20;
    pub const HEARTBEAT_SECS: u64 = 10;
    pub const SHUTDOWN_GRACE_SECS: u64 = 30;
    /// Shorter secrets make stream tokens guessable.
    pub const MIN_STREAM_SECRET_LEN: usize = 32;
    pub const MAX_CALLS: usize = 2000;
    pub const PLAYOUT_LEAD_MS: u64 = 300;
    pub const GREETING_GUARD_MS: u64 = 800;
    pub const PROVIDER_TIMEOUT_SECS: u64 = 8;
    /// Plivo's default outbound calls per second per account.
    pub const DIALER_CPS: u32 = 2;
    pub const DIALER_POLL_MS: u64 = 1000;
    pub const DIALER_STUCK_MARGIN_SECS: u64 = 300;
    /// Plivo sends a webhook's head in one packet; 10 s is generous for any real client.
    pub const HTTP_HEADER_TIMEOUT_SECS: u64 = 10;
    pub const HTTP_IDLE_TIMEOUT_SECS: u64 = 60;
    /// Well above `MAX_CALLS` (each call holds one connection) plus webhooks and the API.
    pub const HTTP_MAX_CONNECTIONS: usize = 10_000;
    pub const IMPORT_MIN_BYTES_PER_SEC: u64 = 1024;
    pub const IMPORT_RATE_GRACE_SECS: u64 = 10;
    /// A 60 s outage at 2,000 calls spools about 20 MiB (events of ~1 KiB, a few per call).
    pub const SPOOL_MAX_MB: u64 = 256;
}

impl Settings {
    /// Loads from the process environment (and `VG_CONFIG`).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::load(&Source::from_process_env()?, &HostFacts::current())
    }

    /// Builds and validates settings from a source. `host` supplies the facts the defaults
    /// depend on (home directory, whether we run as root, the host name).
    pub fn load(source: &Source, host: &HostFacts) -> Result<Self, ConfigError> {
        let listen = source
            .parse("VG_LISTEN", "an address like 0.0.0.0:8080", |raw| {
                raw.parse::<SocketAddr>().ok()
            })?
            .unwrap_or_else(|| defaults::LISTEN.parse().expect("valid default"));

        let public_url = match source.url("VG_PUBLIC_URL", &["https", "http"])? {
            Some(url) => url,
            None => {
                let port = listen.port();
                Url::parse(&format!("http://localhost:{port}")).expect("valid default URL")
            }
        };
        if public_url.query().is_some() || public_url.fragment().is_some() {
            return Err(source.error(
                "VG_PUBLIC_URL",
                "must be a base URL without query or fragment",
            ));
        }

        let name = match source.get("VG_SERVER_NAME") {
            Some(name) if name.len() > 128 => {
                return Err(source.error("VG_SERVER_NAME", "must be at most 128 characters"));
            }
            Some(name) => name.to_owned(),
            None => format!("{}:{}", host.hostname, listen.port()),
        };
        let priority = source
            .parse("VG_SERVER_PRIORITY", "an integer", |raw| {
                raw.parse::<i32>().ok()
            })?
            .unwrap_or(0);
        let heartbeat_interval = Duration::from_secs(
            source
                .parse(
                    "VG_HEARTBEAT_SECS",
                    "a whole number of seconds from 1 to 3600",
                    |raw| {
                        raw.parse::<u64>()
                            .ok()
                            .filter(|secs| (1..=3600).contains(secs))
                    },
                )?
                .unwrap_or(defaults::HEARTBEAT_SECS),
        );
        let shutdown_grace = Duration::from_secs(
            source
                .parse(
                    "VG_SHUTDOWN_GRACE_SECS",
                    "a whole number of seconds up to 86400",
                    |raw| raw.parse::<u64>().ok().filter(|secs| *secs <= 86_400),
                )?
                .unwrap_or(defaults::SHUTDOWN_GRACE_SECS),
        );

        let http = HttpLimits {
            header_timeout: Duration::from_secs(
                source
                    .parse(
                        "VG_HTTP_HEADER_TIMEOUT_SECS",
                        "a whole number of seconds from 1 to 300",
                        |raw| {
                            raw.parse::<u64>()
                                .ok()
                                .filter(|secs| (1..=300).contains(secs))
                        },
                    )?
                    .unwrap_or(defaults::HTTP_HEADER_TIMEOUT_SECS),
            ),
            idle_timeout: Duration::from_secs(
                source
                    .parse(
                        "VG_HTTP_IDLE_TIMEOUT_SECS",
                        "a whole number of seconds from 1 to 3600",
                        |raw| {
                            raw.parse::<u64>()
                                .ok()
                                .filter(|secs| (1..=3600).contains(secs))
                        },
                    )?
                    .unwrap_or(defaults::HTTP_IDLE_TIMEOUT_SECS),
            ),
            max_connections: source
                .parse(
                    "VG_HTTP_MAX_CONNECTIONS",
                    "a whole number from 1 to 1000000",
                    |raw| {
                        raw.parse::<usize>()
                            .ok()
                            .filter(|n| (1..=1_000_000).contains(n))
                    },
                )?
                .unwrap_or(defaults::HTTP_MAX_CONNECTIONS),
        };

        let database_url = match source.get("DATABASE_URL") {
            None => None,
            Some(raw) => {
                let url = Url::parse(raw).map_err(|error| {
                    source.error("DATABASE_URL", format!("invalid URL: {error}"))
                })?;
                if !matches!(url.scheme(), "postgres" | "postgresql") {
                    return Err(source.error(
                        "DATABASE_URL",
                        "must start with postgres:// or postgresql://",
                    ));
                }
                Some(SecretString::from(raw.to_owned()))
            }
        };
        let max_connections = source
            .parse(
                "VG_DB_MAX_CONNECTIONS",
                "a whole number from 2 to 1000",
                |raw| raw.parse::<u32>().ok().filter(|n| (2..=1000).contains(n)),
            )?
            .unwrap_or(defaults::DB_MAX_CONNECTIONS);
        let data_dir = source
            .get("VG_DATA_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| host.default_data_dir());
        let spool_max_bytes = source
            .parse(
                "VG_SPOOL_MAX_MB",
                "a whole number of MiB from 1 to 1048576",
                |raw| {
                    raw.parse::<u64>()
                        .ok()
                        .filter(|mb| (1..=1_048_576).contains(mb))
                },
            )?
            .unwrap_or(defaults::SPOOL_MAX_MB)
            * 1024
            * 1024;

        let recordings = match source.get("VG_RECORDINGS_URL") {
            None => RecordingSettings {
                dir: data_dir.join("recordings"),
                s3: None,
            },
            Some(raw) => match recordings_store(raw)
                .map_err(|message| source.error("VG_RECORDINGS_URL", message))?
            {
                RecordingsStore::Dir(dir) => RecordingSettings { dir, s3: None },
                RecordingsStore::S3 { bucket, prefix } => RecordingSettings {
                    dir: data_dir.join("recordings"),
                    s3: Some(S3Settings {
                        bucket,
                        prefix,
                        region: source
                            .get("AWS_REGION")
                            .or_else(|| source.get("AWS_DEFAULT_REGION"))
                            .unwrap_or("us-east-1")
                            .to_owned(),
                        endpoint: match source.url("AWS_ENDPOINT_URL_S3", &["https", "http"])? {
                            Some(url) => Some(url),
                            None => source.url("AWS_ENDPOINT_URL", &["https", "http"])?,
                        },
                        access_key_id: source.get("AWS_ACCESS_KEY_ID").map(str::to_owned),
                        secret_access_key: source.secret("AWS_SECRET_ACCESS_KEY"),
                        session_token: source.secret("AWS_SESSION_TOKEN"),
                    }),
                },
            },
        };
        if let Some(s3) = &recordings.s3
            && s3.access_key_id.is_some() != s3.secret_access_key.is_some()
        {
            return Err(source.error(
                "AWS_SECRET_ACCESS_KEY",
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are set together or not at all",
            ));
        }

        let (stream_secret, stream_secret_generated) = match source.get("VG_STREAM_SECRET") {
            Some(secret) if secret.len() < defaults::MIN_STREAM_SECRET_LEN => {
                return Err(source.error(
                    "VG_STREAM_SECRET",
                    format!(
                        "must be at least {} characters",
                        defaults::MIN_STREAM_SECRET_LEN
                    ),
                ));
            }
            Some(secret) => (SecretString::from(secret.to_owned()), false),
            None if database_url.is_some() => {
                return Err(source.error(
                    "VG_STREAM_SECRET",
                    "is required with DATABASE_URL, so that every gateway on the database accepts the same stream tokens",
                ));
            }
            None => (SecretString::from(host.random_secret.clone()), true),
        };

        let log_format = source
            .parse("VG_LOG_FORMAT", "`text` or `json`", |raw| {
                match raw.to_ascii_lowercase().as_str() {
                    "text" | "pretty" => Some(LogFormat::Text),
                    "json" => Some(LogFormat::Json),
                    _ => None,
                }
            })?
            .unwrap_or(LogFormat::Text);

        let provider = source
            .parse(
                "VG_AI_PROVIDER",
                "`local`, `openai` or `gemini`",
                AiProviderKind::parse,
            )?
            .unwrap_or(AiProviderKind::Local);
        let models_dir = source
            .get("VG_MODELS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| data_dir.join("models"));
        let local_threads = source
            .parse("VG_LOCAL_THREADS", "a whole number from 1 to 64", |raw| {
                raw.parse::<usize>().ok().filter(|n| (1..=64).contains(n))
            })?
            .unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
            });
        let openai = OpenAiSettings {
            api_key: source.secret("OPENAI_API_KEY"),
            realtime_url: source
                .url("OPENAI_REALTIME_URL", &["wss", "ws"])?
                .unwrap_or_else(|| Url::parse(defaults::OPENAI_REALTIME_URL).expect("valid")),
            model: source
                .get("OPENAI_REALTIME_MODEL")
                .unwrap_or(defaults::OPENAI_REALTIME_MODEL)
                .to_owned(),
        };
        let gemini = GeminiSettings {
            api_key: source.secret("GEMINI_API_KEY"),
            live_url: source
                .url("GEMINI_LIVE_URL", &["wss", "ws"])?
                .unwrap_or_else(|| Url::parse(defaults::GEMINI_LIVE_URL).expect("valid")),
            model: source
                .get("GEMINI_LIVE_MODEL")
                .unwrap_or(defaults::GEMINI_LIVE_MODEL)
                .to_owned(),
        };
        match provider {
            AiProviderKind::OpenAi if openai.api_key.is_none() => {
                return Err(
                    source.error("OPENAI_API_KEY", "is required when VG_AI_PROVIDER=openai")
                );
            }
            AiProviderKind::Gemini if gemini.api_key.is_none() => {
                return Err(
                    source.error("GEMINI_API_KEY", "is required when VG_AI_PROVIDER=gemini")
                );
            }
            _ => {}
        }

        let plivo = PlivoSettings {
            auth_id: source.get("PLIVO_AUTH_ID").map(str::to_owned),
            auth_token: source.secret("PLIVO_AUTH_TOKEN"),
            api_url: source
                .url("PLIVO_API_URL", &["https", "http"])?
                .unwrap_or_else(|| Url::parse(defaults::PLIVO_API_URL).expect("valid")),
            v2_policy: match source.parse("VG_PLIVO_ACCEPT_V2", "`true` or `false`", boolean)? {
                Some(true) => V2Policy::Accept,
                Some(false) | None => V2Policy::Refuse,
            },
        };
        if plivo.auth_id.is_some() != plivo.auth_token.is_some() {
            let missing = if plivo.auth_id.is_some() {
                "PLIVO_AUTH_TOKEN"
            } else {
                "PLIVO_AUTH_ID"
            };
            return Err(source.error(
                missing,
                "is required: PLIVO_AUTH_ID and PLIVO_AUTH_TOKEN are set together",
            ));
        }

        let calls = CallSettings {
            max_live: source
                .parse("VG_MAX_CALLS", "a whole number from 1 to 100000", |raw| {
                    raw.parse::<usize>()
                        .ok()
                        .filter(|n| (1..=100_000).contains(n))
                })?
                .unwrap_or(defaults::MAX_CALLS),
            playout_lead: Duration::from_millis(
                source
                    .parse(
                        "VG_PLAYOUT_LEAD_MS",
                        "milliseconds from 20 to 5000",
                        |raw| {
                            raw.parse::<u64>()
                                .ok()
                                .filter(|ms| (20..=5000).contains(ms))
                        },
                    )?
                    .unwrap_or(defaults::PLAYOUT_LEAD_MS),
            ),
            greeting_guard: Duration::from_millis(
                source
                    .parse("VG_GREETING_GUARD_MS", "milliseconds up to 10000", |raw| {
                        raw.parse::<u64>().ok().filter(|ms| *ms <= 10_000)
                    })?
                    .unwrap_or(defaults::GREETING_GUARD_MS),
            ),
            provider_timeout: Duration::from_secs(
                source
                    .parse("VG_PROVIDER_TIMEOUT_SECS", "seconds from 1 to 120", |raw| {
                        raw.parse::<u64>()
                            .ok()
                            .filter(|secs| (1..=120).contains(secs))
                    })?
                    .unwrap_or(defaults::PROVIDER_TIMEOUT_SECS),
            ),
            transfer_strategy: source
                .parse("VG_TRANSFER_STRATEGY", "`dial` or `rest`", |raw| match raw
                    .to_ascii_lowercase()
                    .as_str()
                {
                    "dial" => Some(TransferStrategy::Dial),
                    "rest" => Some(TransferStrategy::Rest),
                    _ => None,
                })?
                .unwrap_or(TransferStrategy::Dial),
        };
        if calls.transfer_strategy == TransferStrategy::Rest
            && source.get("PLIVO_AUTH_TOKEN").is_none()
        {
            return Err(source.error(
                "VG_TRANSFER_STRATEGY",
                "`rest` needs PLIVO_AUTH_ID and PLIVO_AUTH_TOKEN",
            ));
        }

        let dialer = DialerSettings {
            enabled: source
                .parse("VG_DIALER_ENABLED", "`true` or `false`", boolean)?
                .unwrap_or(true),
            cps: source
                .parse(
                    "VG_DIALER_CPS",
                    "a whole number of calls per second from 1 to 1000 (Plivo's default is 2)",
                    |raw| raw.parse::<u32>().ok().filter(|n| (1..=1000).contains(n)),
                )?
                .unwrap_or(defaults::DIALER_CPS),
            poll_interval: Duration::from_millis(
                source
                    .parse(
                        "VG_DIALER_POLL_MS",
                        "milliseconds from 10 to 60000",
                        |raw| {
                            raw.parse::<u64>()
                                .ok()
                                .filter(|ms| (10..=60_000).contains(ms))
                        },
                    )?
                    .unwrap_or(defaults::DIALER_POLL_MS),
            ),
            stuck_margin: Duration::from_secs(
                source
                    .parse(
                        "VG_DIALER_STUCK_MARGIN_SECS",
                        "seconds from 10 to 86400",
                        |raw| {
                            raw.parse::<u64>()
                                .ok()
                                .filter(|secs| (10..=86_400).contains(secs))
                        },
                    )?
                    .unwrap_or(defaults::DIALER_STUCK_MARGIN_SECS),
            ),
        };

        let imports = ImportSettings {
            min_bytes_per_sec: source
                .parse(
                    "VG_IMPORT_MIN_BYTES_PER_SEC",
                    "a whole number of bytes per second from 1 to 104857600",
                    |raw| {
                        raw.parse::<u64>()
                            .ok()
                            .filter(|rate| (1..=100 * 1024 * 1024).contains(rate))
                    },
                )?
                .unwrap_or(defaults::IMPORT_MIN_BYTES_PER_SEC),
            rate_grace: Duration::from_secs(
                source
                    .parse(
                        "VG_IMPORT_RATE_GRACE_SECS",
                        "a whole number of seconds from 1 to 3600",
                        |raw| {
                            raw.parse::<u64>()
                                .ok()
                                .filter(|secs| (1..=3600).contains(secs))
                        },
                    )?
                    .unwrap_or(defaults::IMPORT_RATE_GRACE_SECS),
            ),
        };

        Ok(Self {
            dialer,
            imports,
            recordings,
            calls,
            server: ServerSettings {
                listen,
                public_url,
                name,
                priority,
                heartbeat_interval,
                shutdown_grace,
                stream_secret,
                stream_secret_generated,
                http,
            },
            database: DatabaseSettings {
                url: database_url,
                max_connections,
                data_dir,
                spool_max_bytes,
            },
            telemetry: TelemetrySettings { log_format },
            ai: AiSettings {
                provider,
                models_dir,
                local_threads,
                openai,
                gemini,
            },
            plivo,
        })
    }
}

impl ServerSettings {
    /// The `wss://` (or `ws://` for a plain-http public URL) base derived from the public URL.
    pub fn public_ws_url(&self) -> Url {
        let mut url = self.public_url.clone();
        let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
        url.set_scheme(scheme).expect("http(s) → ws(s) is allowed");
        url
    }
}

impl DatabaseSettings {
    /// The external URL, if any, for connecting; it stays secret everywhere else.
    pub fn external_url(&self) -> Option<&str> {
        self.url.as_ref().map(|url| url.expose_secret())
    }
}

/// Facts about the host that defaults depend on, gathered once so loading stays a pure function.
#[derive(Debug, Clone)]
pub struct HostFacts {
    pub hostname: String,
    pub home: Option<PathBuf>,
    pub is_root: bool,
    /// A fresh random secret, used when no stream secret is configured.
    pub random_secret: String,
}

impl HostFacts {
    #[allow(clippy::disallowed_methods)] // Reads HOME, like the rest of this module reads the environment.
    pub fn current() -> Self {
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|name| name.trim().to_owned())
            .ok()
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "voice-gateway".to_owned());
        Self {
            hostname,
            home: std::env::var_os("HOME").map(PathBuf::from),
            is_root: crate::db::embedded::running_as_root(),
            random_secret: random_hex(32),
        }
    }

    /// `/var/lib/voice-gateway` for root (readable by the unprivileged database user), else
    /// the XDG data directory in the user's home.
    fn default_data_dir(&self) -> PathBuf {
        match (&self.home, self.is_root) {
            (Some(home), false) => home.join(".local/share/voice-gateway"),
            _ => PathBuf::from("/var/lib/voice-gateway"),
        }
    }
}

/// What `VG_RECORDINGS_URL` names.
enum RecordingsStore {
    Dir(PathBuf),
    S3 { bucket: String, prefix: String },
}

/// The directory of a `file://` recordings URL, or the bucket and prefix of an `s3://` one.
fn recordings_store(raw: &str) -> Result<RecordingsStore, String> {
    let url = Url::parse(raw).map_err(|error| format!("invalid URL: {error}"))?;
    match url.scheme() {
        "file" => {
            if url
                .host_str()
                .is_some_and(|host| !host.is_empty() && host != "localhost")
            {
                return Err("a file:// URL names a local directory (file:///path)".to_owned());
            }
            url.to_file_path()
                .map(RecordingsStore::Dir)
                .map_err(|()| "a file:// URL names an absolute directory (file:///path)".to_owned())
        }
        "s3" => {
            let bucket = url.host_str().unwrap_or_default();
            if bucket.is_empty() {
                return Err("an s3:// URL names its bucket (s3://bucket/prefix)".to_owned());
            }
            if url.query().is_some() || !url.username().is_empty() || url.password().is_some() {
                return Err("an s3:// URL is s3://bucket/prefix; credentials go in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".to_owned());
            }
            Ok(RecordingsStore::S3 {
                bucket: bucket.to_owned(),
                prefix: url.path().trim_matches('/').to_owned(),
            })
        }
        other => Err(format!(
            "`{other}://` is not a recordings store; use file:///path or s3://bucket/prefix"
        )),
    }
}

/// A switch: `true`, `1`, `yes`, `on` or `false`, `0`, `no`, `off`, in any case.
fn boolean(raw: &str) -> Option<bool> {
    match raw.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// `bytes` random bytes from the operating system, as lowercase hex.
pub fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    getrandom::fill(&mut buffer).expect("the operating system provides randomness");
    hex::encode(buffer)
}

#[cfg(test)]
mod tests;
