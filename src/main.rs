//! The `voice-gateway` binary: parses the command line, loads and validates the settings
//! before anything binds a port, and hands over to the library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use voice_gateway::{
    config::Settings,
    plivo::signature::V2Policy,
    startup::{self, Application},
    telemetry,
};

/// Exit code for a missing or malformed setting (EX_USAGE).
const EXIT_CONFIG: u8 = 64;
/// Exit code for any other start-up or run failure.
const EXIT_FAILURE: u8 = 1;

#[derive(Parser)]
#[command(version, about = "Realtime voice-AI calling gateway")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway: Plivo webhooks, media streams, health and metrics.
    Serve,
    /// Apply the database migrations and exit.
    Migrate,
    /// The whole job offline: a gateway with the local voice pipeline on a private database,
    /// simulated calls into it, live transcripts and a table of outcomes.
    Demo,
    /// Manage API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a bearer token for an organization and print it (the only time it is shown).
    Create {
        /// The organization's id (uuid).
        #[arg(long)]
        organization: uuid::Uuid,
        /// A name to tell the token apart.
        #[arg(long)]
        name: String,
        /// Scopes, comma-separated or repeated (campaigns:read, campaigns:write, leads:read,
        /// leads:write, calls:read, calls:write, settings:read, settings:write), or `all`.
        #[arg(long = "scope", value_delimiter = ',', required = true)]
        scopes: Vec<String>,
        /// Days until the token expires (default: never).
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
    /// List an organization's tokens (id, prefix, name, scopes, state); never their secrets.
    List {
        /// The organization's id (uuid).
        #[arg(long)]
        organization: uuid::Uuid,
    },
    /// Revoke a token at once: requests presenting it get 401 `token_revoked`.
    Revoke {
        /// The token's id, as `token create` and `token list` print it.
        #[arg(long)]
        id: uuid::Uuid,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("voice-gateway: configuration error: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    telemetry::init(settings.telemetry.log_format);
    rustls_provider();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("voice-gateway: cannot start the async runtime: {error}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve => serve(settings).await,
            Command::Migrate => migrate(settings).await,
            Command::Demo => voice_gateway::demo::run(settings).await,
            Command::Token { command } => token(settings, command).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("voice-gateway: {error:#}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    telemetry::log_build_info();
    if settings.server.stream_secret_generated {
        tracing::warn!("VG_STREAM_SECRET is unset: using a random secret for this process only");
    }
    if settings.plivo.auth_token.is_none() {
        tracing::warn!(
            "PLIVO_AUTH_TOKEN is unset: Plivo webhooks cannot be verified and will be refused"
        );
    }
    if settings.plivo.v2_policy == V2Policy::Accept {
        tracing::warn!(
            "VG_PLIVO_ACCEPT_V2=true: requests signed only with X-Plivo-Signature-V2 are accepted, and V2 covers neither the query nor the body"
        );
    }
    let application = Application::build(settings).await?;
    application
        .run_until_stopped(startup::shutdown_signal())
        .await
}

async fn migrate(settings: Settings) -> anyhow::Result<()> {
    let opened = startup::open_database(&settings).await?;
    let applied = voice_gateway::db::MIGRATOR.iter().count();
    println!("migrations up to date ({applied} known)");
    opened.close().await
}

async fn token(settings: Settings, command: TokenCommand) -> anyhow::Result<()> {
    use voice_gateway::api::tokens::{Scope, TokenRequest, create_token};
    let (organization, name, scopes, expires_in_days) = match command {
        TokenCommand::Create {
            organization,
            name,
            scopes,
            expires_in_days,
        } => (organization, name, scopes, expires_in_days),
        TokenCommand::List { organization } => {
            let opened = startup::open_database(&settings).await?;
            let tokens = opened.db.api_tokens_of(organization).await;
            opened.close().await?;
            print!(
                "{}",
                voice_gateway::api::tokens::token_table(&tokens?, chrono::Utc::now())
            );
            return Ok(());
        }
        TokenCommand::Revoke { id } => {
            let opened = startup::open_database(&settings).await?;
            let revoked = opened.db.revoke_api_token(id).await;
            opened.close().await?;
            if !revoked? {
                anyhow::bail!("no live token with id {id}");
            }
            println!("token {id} revoked");
            return Ok(());
        }
    };
    let scopes = scopes
        .iter()
        .map(|text| match text.trim() {
            "all" => Ok(Scope::ALL.to_vec()),
            text => Scope::parse(text)
                .map(|scope| vec![scope])
                .ok_or_else(|| anyhow::anyhow!("unknown scope {text:?}")),
        })
        .collect::<anyhow::Result<Vec<_>>>()?
        .concat();
    let now = chrono::Utc::now();
    let expires_at = expires_in_days.map(|days| now + chrono::Duration::days(i64::from(days)));
    let opened = startup::open_database(&settings).await?;
    let issued = create_token(
        &opened.db,
        &TokenRequest {
            organization_id: organization,
            name: &name,
            scopes: &scopes,
            expires_at,
        },
        now,
    )
    .await;
    opened.close().await?;
    let issued = issued?;
    eprintln!(
        "token {} ({}) for organization {organization}, scopes {}, {}; store it now, it is not shown again:",
        issued.id,
        issued.prefix,
        issued
            .scopes
            .iter()
            .map(|scope| scope.as_str())
            .collect::<Vec<_>>()
            .join(","),
        issued
            .expires_at
            .map_or("never expires".to_owned(), |at| format!("expires {at}")),
    );
    println!("{}", issued.secret);
    Ok(())
}

/// TLS for outbound connections (providers, Plivo's API) uses ring; exactly one provider must be
/// installed before the first TLS client is built.
fn rustls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
