//! Configuration tests: every error names its variable, defaults are what the docs say.

use std::path::{Path, PathBuf};

use secrecy::ExposeSecret;

use super::*;

fn host() -> HostFacts {
    HostFacts {
        hostname: "gw-test".to_owned(),
        home: Some(PathBuf::from("/home/tester")),
        is_root: false,
        random_secret: "r".repeat(64),
    }
}

fn load(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    Settings::load(&Source::from_pairs(pairs.iter().copied()), &host())
}

#[track_caller]
fn check_error(pairs: &[(&str, &str)], key: &str, fragment: &str) {
    let error = load(pairs).expect_err("configuration should be refused");
    let line = error.to_string();
    assert_eq!(error.key, key, "wrong variable in {line:?}");
    assert!(line.starts_with(key), "{line:?} should start with {key}");
    assert!(
        line.contains(fragment),
        "{line:?} should mention {fragment:?}"
    );
    assert!(!line.contains('\n'), "{line:?} should be one line");
}

#[test]
fn defaults_need_no_environment() {
    let settings = load(&[]).unwrap();
    assert_eq!(settings.server.listen.to_string(), "0.0.0.0:8080");
    assert_eq!(
        settings.server.public_url.as_str(),
        "http://localhost:8080/"
    );
    assert_eq!(
        settings.server.public_ws_url().as_str(),
        "ws://localhost:8080/"
    );
    assert_eq!(settings.server.name, "gw-test:8080");
    assert_eq!(settings.server.priority, 0);
    assert!(settings.server.stream_secret_generated);
    assert!(settings.database.url.is_none());
    assert_eq!(
        settings.database.data_dir,
        Path::new("/home/tester/.local/share/voice-gateway")
    );
    assert_eq!(settings.ai.provider, AiProviderKind::Local);
    assert_eq!(
        settings.ai.models_dir,
        Path::new("/home/tester/.local/share/voice-gateway/models")
    );
    assert_eq!(settings.telemetry.log_format, LogFormat::Text);
    assert_eq!(settings.plivo.api_url.as_str(), "https://api.plivo.com/");
    assert_eq!(
        settings.ai.openai.realtime_url.as_str(),
        "wss://api.openai.com/v1/realtime"
    );
}

#[test]
fn root_defaults_to_a_directory_the_database_user_can_reach() {
    let mut facts = host();
    facts.is_root = true;
    let settings = Settings::load(&Source::default(), &facts).unwrap();
    assert_eq!(
        settings.database.data_dir,
        Path::new("/var/lib/voice-gateway")
    );
}

#[test]
fn explicit_values_are_used() {
    let settings = load(&[
        ("VG_LISTEN", "127.0.0.1:9000"),
        ("VG_PUBLIC_URL", "https://gw.example.com"),
        ("VG_SERVER_NAME", "gw-1"),
        ("VG_SERVER_PRIORITY", "-5"),
        ("DATABASE_URL", "postgres://u:p@db/voice"),
        ("VG_STREAM_SECRET", &"s".repeat(40)),
        ("VG_LOG_FORMAT", "JSON"),
        ("VG_AI_PROVIDER", "openai"),
        ("OPENAI_API_KEY", "sk-test"),
        ("PLIVO_AUTH_ID", "MAXXXX"),
        ("PLIVO_AUTH_TOKEN", "token"),
        ("PLIVO_API_URL", "http://127.0.0.1:4010"),
        ("UNRELATED", "ignored"),
    ])
    .unwrap();
    assert_eq!(settings.server.listen.port(), 9000);
    assert_eq!(
        settings.server.public_ws_url().as_str(),
        "wss://gw.example.com/"
    );
    assert_eq!(settings.server.name, "gw-1");
    assert_eq!(settings.server.priority, -5);
    assert!(!settings.server.stream_secret_generated);
    assert_eq!(
        settings.database.external_url(),
        Some("postgres://u:p@db/voice")
    );
    assert_eq!(settings.telemetry.log_format, LogFormat::Json);
    assert_eq!(settings.ai.provider, AiProviderKind::OpenAi);
    assert_eq!(settings.plivo.auth_token.unwrap().expose_secret(), "token");
    assert_eq!(settings.plivo.api_url.as_str(), "http://127.0.0.1:4010/");
}

#[test]
fn malformed_values_name_their_variable() {
    check_error(
        &[("VG_LISTEN", "nowhere")],
        "VG_LISTEN",
        "expected an address",
    );
    check_error(&[("VG_PUBLIC_URL", "ftp://x")], "VG_PUBLIC_URL", "https://");
    check_error(
        &[("VG_PUBLIC_URL", "not a url")],
        "VG_PUBLIC_URL",
        "invalid URL",
    );
    check_error(
        &[("VG_PUBLIC_URL", "https://x/?a=1")],
        "VG_PUBLIC_URL",
        "without query",
    );
    // A refused URL is named without the key or password it may carry.
    for (key, value) in [
        (
            "OPENAI_REALTIME_URL",
            "https://api.test/v1/realtime?api-key=sk-secret",
        ),
        ("GEMINI_LIVE_URL", "wss://user:sk-secret@/live"),
    ] {
        let line = load(&[(key, value)]).expect_err("refused").to_string();
        assert!(
            line.starts_with(key) && !line.contains("sk-secret"),
            "{line}"
        );
    }
    check_error(
        &[("VG_SERVER_PRIORITY", "high")],
        "VG_SERVER_PRIORITY",
        "integer",
    );
    check_error(
        &[("VG_HEARTBEAT_SECS", "0")],
        "VG_HEARTBEAT_SECS",
        "seconds",
    );
    check_error(
        &[("VG_SHUTDOWN_GRACE_SECS", "-1")],
        "VG_SHUTDOWN_GRACE_SECS",
        "seconds",
    );
    check_error(
        &[("DATABASE_URL", "mysql://x/y")],
        "DATABASE_URL",
        "postgres://",
    );
    check_error(
        &[("VG_DB_MAX_CONNECTIONS", "1")],
        "VG_DB_MAX_CONNECTIONS",
        "2 to 1000",
    );
    check_error(&[("VG_LOG_FORMAT", "xml")], "VG_LOG_FORMAT", "`json`");
    check_error(
        &[("VG_AI_PROVIDER", "watson")],
        "VG_AI_PROVIDER",
        "`gemini`",
    );
    check_error(
        &[("OPENAI_REALTIME_URL", "https://x")],
        "OPENAI_REALTIME_URL",
        "wss://",
    );
    check_error(
        &[("VG_STREAM_SECRET", "short")],
        "VG_STREAM_SECRET",
        "at least 32",
    );
}

#[test]
fn missing_required_values_name_their_variable() {
    check_error(
        &[("VG_AI_PROVIDER", "openai")],
        "OPENAI_API_KEY",
        "required",
    );
    check_error(
        &[("VG_AI_PROVIDER", "gemini")],
        "GEMINI_API_KEY",
        "required",
    );
    check_error(&[("PLIVO_AUTH_ID", "MA1")], "PLIVO_AUTH_TOKEN", "together");
    check_error(&[("PLIVO_AUTH_TOKEN", "t")], "PLIVO_AUTH_ID", "together");
    check_error(
        &[("DATABASE_URL", "postgres://db/voice")],
        "VG_STREAM_SECRET",
        "required with DATABASE_URL",
    );
}

#[test]
fn empty_values_count_as_unset() {
    let settings = load(&[("VG_LISTEN", ""), ("DATABASE_URL", "  ")]).unwrap();
    assert_eq!(settings.server.listen.port(), 8080);
    assert!(settings.database.url.is_none());
}

#[test]
fn toml_file_is_read_and_environment_wins() {
    let path = Path::new("/etc/vg.toml");
    let mut source = Source::from_toml_str(
        r#"
        [server]
        listen = "127.0.0.1:7000"
        name = "from-file"
        priority = 3

        [ai.openai]
        model = "gpt-test"
        "#,
        path,
    )
    .unwrap();
    source.overlay_env([("VG_SERVER_NAME", "from-env")]);
    let settings = Settings::load(&source, &host()).unwrap();
    assert_eq!(settings.server.listen.port(), 7000);
    assert_eq!(settings.server.name, "from-env");
    assert_eq!(settings.server.priority, 3);
    assert_eq!(settings.ai.openai.model, "gpt-test");
}

#[test]
fn toml_errors_name_the_variable_and_the_file() {
    let path = Path::new("/etc/vg.toml");
    let source = Source::from_toml_str("[server]\nlisten = \"bad\"\n", path).unwrap();
    let error = Settings::load(&source, &host()).unwrap_err();
    assert_eq!(error.key, "VG_LISTEN");
    assert!(
        error
            .to_string()
            .starts_with("VG_LISTEN (in /etc/vg.toml): "),
        "{error}"
    );

    let unknown = Source::from_toml_str("[server]\nlistn = \"x\"\n", path).unwrap_err();
    assert_eq!(unknown.key, "VG_CONFIG");
    assert!(
        unknown
            .to_string()
            .contains("unknown setting `server.listn`"),
        "{unknown}"
    );

    let broken = Source::from_toml_str("[server\n", path).unwrap_err();
    assert_eq!(broken.key, "VG_CONFIG");
    assert!(broken.to_string().contains("not valid TOML"), "{broken}");
}

#[test]
fn dialer_settings_have_defaults_and_refuse_nonsense() {
    let settings = load(&[]).unwrap();
    assert!(settings.dialer.enabled);
    assert_eq!(settings.dialer.cps, 2);
    assert_eq!(settings.dialer.poll_interval, Duration::from_secs(1));
    assert_eq!(settings.dialer.stuck_margin, Duration::from_secs(300));
    let settings = load(&[("VG_DIALER_CPS", "30"), ("VG_DIALER_ENABLED", "false")]).unwrap();
    assert_eq!(settings.dialer.cps, 30);
    assert!(!settings.dialer.enabled);
    check_error(
        &[("VG_DIALER_CPS", "0")],
        "VG_DIALER_CPS",
        "calls per second",
    );
    check_error(&[("VG_DIALER_CPS", "two")], "VG_DIALER_CPS", "\"two\"");
    check_error(
        &[("VG_DIALER_POLL_MS", "5")],
        "VG_DIALER_POLL_MS",
        "milliseconds",
    );
    check_error(
        &[("VG_DIALER_ENABLED", "maybe")],
        "VG_DIALER_ENABLED",
        "`true` or `false`",
    );
}

#[test]
fn v2_signatures_are_refused_unless_explicitly_accepted() {
    assert_eq!(load(&[]).unwrap().plivo.v2_policy, V2Policy::Refuse);
    for (raw, policy) in [
        ("true", V2Policy::Accept),
        ("ON", V2Policy::Accept),
        ("false", V2Policy::Refuse),
        ("0", V2Policy::Refuse),
    ] {
        let settings = load(&[("VG_PLIVO_ACCEPT_V2", raw)]).unwrap();
        assert_eq!(settings.plivo.v2_policy, policy, "{raw}");
    }
    check_error(
        &[("VG_PLIVO_ACCEPT_V2", "v2")],
        "VG_PLIVO_ACCEPT_V2",
        "`true` or `false`",
    );

    let path = Path::new("/etc/vg.toml");
    let source = Source::from_toml_str("[plivo]\naccept_v2 = true\n", path).unwrap();
    let settings = Settings::load(&source, &host()).unwrap();
    assert_eq!(settings.plivo.v2_policy, V2Policy::Accept);
    let source = Source::from_toml_str("[plivo]\naccept_v2 = \"perhaps\"\n", path).unwrap();
    let error = Settings::load(&source, &host()).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("VG_PLIVO_ACCEPT_V2 (in /etc/vg.toml): "),
        "{error}"
    );
}

#[test]
fn http_and_import_limits_have_defaults_and_refuse_nonsense() {
    let settings = load(&[]).unwrap();
    assert_eq!(
        settings.server.http,
        HttpLimits {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 10_000,
        }
    );
    assert_eq!(
        settings.imports,
        ImportSettings {
            min_bytes_per_sec: 1024,
            rate_grace: Duration::from_secs(10),
        }
    );
    let settings = load(&[
        ("VG_HTTP_HEADER_TIMEOUT_SECS", "2"),
        ("VG_HTTP_IDLE_TIMEOUT_SECS", "30"),
        ("VG_HTTP_MAX_CONNECTIONS", "3"),
        ("VG_IMPORT_MIN_BYTES_PER_SEC", "4096"),
        ("VG_IMPORT_RATE_GRACE_SECS", "1"),
    ])
    .unwrap();
    assert_eq!(settings.server.http.header_timeout, Duration::from_secs(2));
    assert_eq!(settings.server.http.idle_timeout, Duration::from_secs(30));
    assert_eq!(settings.server.http.max_connections, 3);
    assert_eq!(settings.imports.min_bytes_per_sec, 4096);
    assert_eq!(settings.imports.rate_grace, Duration::from_secs(1));
    for (key, value, fragment) in [
        ("VG_HTTP_HEADER_TIMEOUT_SECS", "0", "seconds from 1 to 300"),
        ("VG_HTTP_HEADER_TIMEOUT_SECS", "ten", "\"ten\""),
        ("VG_HTTP_IDLE_TIMEOUT_SECS", "0", "seconds from 1 to 3600"),
        ("VG_HTTP_MAX_CONNECTIONS", "0", "from 1 to 1000000"),
        ("VG_IMPORT_MIN_BYTES_PER_SEC", "0", "bytes per second"),
        ("VG_IMPORT_RATE_GRACE_SECS", "-1", "seconds from 1 to 3600"),
    ] {
        check_error(&[(key, value)], key, fragment);
    }
    let source = Source::from_toml_str(
        "[server]\nhttp_max_connections = 50\n[imports]\nmin_bytes_per_sec = 2048\n",
        Path::new("/etc/vg.toml"),
    )
    .unwrap();
    let settings = Settings::load(&source, &host()).unwrap();
    assert_eq!(settings.server.http.max_connections, 50);
    assert_eq!(settings.imports.min_bytes_per_sec, 2048);
}

#[test]
fn recordings_default_under_the_data_directory_and_take_a_file_url() {
    let settings = load(&[("VG_DATA_DIR", "/srv/vg")]).unwrap();
    assert_eq!(settings.recordings.dir, Path::new("/srv/vg/recordings"));
    let settings = load(&[("VG_RECORDINGS_URL", "file:///mnt/shared/recordings")]).unwrap();
    assert_eq!(settings.recordings.dir, Path::new("/mnt/shared/recordings"));
    assert!(settings.recordings.s3.is_none());
}

#[test]
fn an_s3_store_takes_the_aws_ecosystems_variables() {
    let settings = load(&[
        ("VG_DATA_DIR", "/srv/vg"),
        ("VG_RECORDINGS_URL", "s3://calls/recordings/eu/"),
        ("AWS_ACCESS_KEY_ID", "AKIA"),
        ("AWS_SECRET_ACCESS_KEY", "s3cr3t"),
        ("AWS_DEFAULT_REGION", "eu-west-1"),
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:9000"),
        ("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9001"),
    ])
    .unwrap();
    // Files are written, and wait for their upload, under the data directory.
    assert_eq!(settings.recordings.dir, Path::new("/srv/vg/recordings"));
    let s3 = settings.recordings.s3.expect("an s3 store");
    assert_eq!(s3.bucket, "calls");
    assert_eq!(s3.prefix, "recordings/eu");
    assert_eq!(s3.region, "eu-west-1");
    // The S3-specific endpoint wins over the general one, as in the AWS SDKs.
    assert_eq!(s3.endpoint.unwrap().as_str(), "http://127.0.0.1:9001/");
    assert_eq!(s3.access_key_id.as_deref(), Some("AKIA"));
    let defaults = load(&[("VG_RECORDINGS_URL", "s3://calls")]).unwrap();
    let s3 = defaults.recordings.s3.unwrap();
    assert_eq!((s3.prefix.as_str(), s3.region.as_str()), ("", "us-east-1"));
    assert!(s3.endpoint.is_none() && s3.access_key_id.is_none());
}

#[test]
fn recordings_stores_we_do_not_honour_are_refused_at_start() {
    check_error(
        &[("VG_RECORDINGS_URL", "s3:///prefix")],
        "VG_RECORDINGS_URL",
        "names its bucket",
    );
    check_error(
        &[("VG_RECORDINGS_URL", "s3://key:secret@bucket/prefix")],
        "VG_RECORDINGS_URL",
        "AWS_ACCESS_KEY_ID",
    );
    check_error(
        &[
            ("VG_RECORDINGS_URL", "s3://bucket/prefix"),
            ("AWS_ACCESS_KEY_ID", "AKIA"),
        ],
        "AWS_SECRET_ACCESS_KEY",
        "together",
    );
    check_error(
        &[
            ("VG_RECORDINGS_URL", "s3://bucket/prefix"),
            ("AWS_ENDPOINT_URL", "ftp://store"),
        ],
        "AWS_ENDPOINT_URL",
        "must use",
    );
    check_error(
        &[("VG_RECORDINGS_URL", "https://example.com/r")],
        "VG_RECORDINGS_URL",
        "is not a recordings store",
    );
    check_error(
        &[("VG_RECORDINGS_URL", "file://elsewhere/r")],
        "VG_RECORDINGS_URL",
        "local directory",
    );
    check_error(
        &[("VG_RECORDINGS_URL", "/no/scheme")],
        "VG_RECORDINGS_URL",
        "invalid URL",
    );
}

#[test]
fn gemini_is_configured_by_its_key_with_a_default_live_model() {
    let settings = load(&[("VG_AI_PROVIDER", "gemini"), ("GEMINI_API_KEY", "g-key")]).unwrap();
    assert_eq!(settings.ai.provider, AiProviderKind::Gemini);
    assert_eq!(settings.ai.gemini.model, defaults::GEMINI_LIVE_MODEL);
    assert_eq!(settings.ai.configured(), [AiProviderKind::Gemini]);

    let settings = load(&[
        ("OPENAI_API_KEY", "sk"),
        ("GEMINI_API_KEY", "g-key"),
        (
            "GEMINI_LIVE_MODEL",
            "gemini-2.5-flash-native-audio-preview-12-2025",
        ),
    ])
    .unwrap();
    assert_eq!(
        settings.ai.configured(),
        [
            AiProviderKind::Local,
            AiProviderKind::OpenAi,
            AiProviderKind::Gemini
        ],
        "one gateway serves campaigns on all three"
    );
    assert_eq!(
        settings.ai.gemini.model,
        "gemini-2.5-flash-native-audio-preview-12-2025"
    );
}
