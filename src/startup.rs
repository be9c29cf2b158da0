//! Building and running the application: open the database (embedded or external), bind the
//! listener, register in `websocket_servers`, serve, and shut down in order.

use std::{future::Future, net::SocketAddr, path::Path, sync::Arc, time::Duration};

use anyhow::Context;
use tokio::net::TcpListener;

use crate::{
    ai::{ConfiguredProvider, local::LocalEngine},
    call::{
        bridge::{CallRuntime, CallTiming},
        registry::Registry,
        spool::Spool,
        writer::{replay_loop, replay_spool},
    },
    config::AiProviderKind,
    config::Settings,
    db::{self, Database, OpenOptions, embedded::EmbeddedPostgres, servers::Heartbeat},
    dialer::{Clock, Dialer},
    http::{self, AppState},
    lifecycle::{DrainOutcome, Lifecycle},
    plivo::rest::PlivoRest,
    recording::RecordingStore,
};

/// The embedded cluster's database for the gateway.
pub const EMBEDDED_DATABASE: &str = "voice_gateway";
/// How long ended calls get to write their logs after the grace period.
const CALL_WRITE_DEADLINE: Duration = Duration::from_secs(15);
/// How long background tasks get to stop.
const BACKGROUND_STOP_DEADLINE: Duration = Duration::from_secs(5);
/// How often the replay guards (webhook nonces, stream token claims) are pruned.
const REPLAY_PRUNE_INTERVAL: Duration = Duration::from_secs(60 * 60);

/// A database handle plus the embedded cluster behind it, if any (stopped on shutdown).
pub struct OpenedDatabase {
    pub db: Database,
    pub embedded: Option<EmbeddedPostgres>,
}

impl OpenedDatabase {
    /// Closes the pool, then stops the embedded cluster.
    pub async fn close(self) -> anyhow::Result<()> {
        self.db.close().await;
        if let Some(embedded) = self.embedded {
            tokio::task::spawn_blocking(move || embedded.stop())
                .await
                .context("stopping the embedded PostgreSQL")??;
        }
        Ok(())
    }
}

/// Opens `DATABASE_URL`, or starts the embedded cluster under `VG_DATA_DIR` when it is unset;
/// applies the migrations; checks the service role.
pub async fn open_database(settings: &Settings) -> anyhow::Result<OpenedDatabase> {
    let max_connections = settings.database.max_connections;
    if let Some(url) = settings.database.external_url() {
        let db = Database::open(OpenOptions {
            url,
            max_connections,
            migrate: true,
        })
        .await?;
        return Ok(OpenedDatabase { db, embedded: None });
    }
    let cluster_dir = settings.database.data_dir.join("postgres");
    let embedded = start_embedded(&cluster_dir).await?;
    tracing::info!(dir = %cluster_dir.display(), port = embedded.port(), "embedded PostgreSQL started");
    let opened = async {
        db::ensure_database(&embedded.url("postgres"), EMBEDDED_DATABASE).await?;
        Database::open(OpenOptions {
            url: &embedded.url(EMBEDDED_DATABASE),
            max_connections,
            migrate: true,
        })
        .await
    }
    .await;
    match opened {
        Ok(db) => Ok(OpenedDatabase {
            db,
            embedded: Some(embedded),
        }),
        Err(error) => {
            let _ = tokio::task::spawn_blocking(move || embedded.stop()).await;
            Err(error.into())
        }
    }
}

/// Loads the local voice pipeline when it is the configured provider.
async fn load_local_pipeline(settings: &Settings) -> anyhow::Result<Option<Arc<LocalEngine>>> {
    if settings.ai.provider != AiProviderKind::Local {
        return Ok(None);
    }
    let dir = settings.ai.models_dir.clone();
    let threads = settings.ai.local_threads;
    let engine = tokio::task::spawn_blocking(move || LocalEngine::shared(&dir, threads))
        .await
        .context("the model loading task failed")?
        .context("loading the local voice pipeline (VG_AI_PROVIDER=local)")?;
    Ok(Some(engine))
}

async fn start_embedded(dir: &Path) -> anyhow::Result<EmbeddedPostgres> {
    let dir = dir.to_owned();
    let embedded = tokio::task::spawn_blocking(move || EmbeddedPostgres::start_persistent(&dir))
        .await
        .context("the embedded PostgreSQL start-up task failed")??;
    Ok(embedded)
}

/// The built application: database open, listener bound, server registered.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    database: OpenedDatabase,
    /// The dialer's clock: the system's, unless a test sets one.
    dialer_clock: Clock,
}

impl Application {
    /// Opens the database, binds `VG_LISTEN`, closes the calls a previous run of this gateway
    /// left open (it was killed: nothing else would ever close them), and registers this
    /// server (active, verified), so that once this returns the registry knows it. Port 0 is
    /// allowed; [`Application::local_addr`] tells the port chosen.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        // Models first: a missing one stops start-up before anything else happens.
        let local = load_local_pipeline(&settings).await?;
        // The recorder first: what start-up does (the spool's replay) is counted too.
        let metrics = crate::metrics::handle();
        let database = open_database(&settings).await?;
        let listener = match TcpListener::bind(settings.server.listen).await {
            Ok(listener) => listener,
            Err(error) => {
                database.close().await.ok();
                return Err(anyhow::anyhow!(
                    "cannot listen on VG_LISTEN={}: {error}",
                    settings.server.listen
                ));
            }
        };
        let stream_url = stream_url(&settings);
        // What a previous run could not write goes in first, so its own closes (a SIGTERM
        // during an outage) stand rather than the `gateway_restart` below.
        let spool = open_spool(&settings).await;
        if let Some(spool) = &spool {
            let pass = replay_spool(&database.db, spool).await;
            if pass.blocked {
                tracing::warn!(
                    remaining = *spool.pending().borrow(),
                    "the spool could not be replayed in full; the rest follows when the database takes it"
                );
            }
        }
        // Before registering: the row still holds the dead run's last heartbeat, the calls'
        // last sign of life.
        match database
            .db
            .close_orphaned_calls(&settings.server.name, &settings.server.name)
            .await
        {
            Ok(closed) if closed.is_empty() => {}
            Ok(closed) => {
                metrics::counter!(crate::metrics::CALLS_CLOSED_AFTER_RESTART)
                    .increment(closed.len() as u64);
                tracing::warn!(calls = closed.len(), call_sids = ?closed, "calls left open by this gateway's previous run closed as gateway_restart");
            }
            Err(error) => {
                database.close().await.ok();
                return Err(anyhow::Error::new(error)
                    .context("closing the calls this gateway left open when it stopped"));
            }
        }
        if let Err(error) = database
            .db
            .register_server(
                &settings.server.name,
                stream_url.as_str(),
                settings.server.priority,
                settings.server.heartbeat_interval,
                settings.calls.max_live,
            )
            .await
        {
            database.close().await.ok();
            return Err(anyhow::Error::new(error).context("registering in websocket_servers"));
        }
        metrics::gauge!(crate::metrics::DRAINING).set(0.0);
        for provider in AiProviderKind::ALL {
            let configured = settings.ai.is_configured(provider);
            metrics::gauge!(crate::metrics::AI_PROVIDER_CONFIGURED, "provider" => provider.as_str())
                .set(if configured { 1.0 } else { 0.0 });
        }
        let recordings = open_recordings(&settings).await?;
        let plivo = match (&settings.plivo.auth_id, &settings.plivo.auth_token) {
            (Some(auth_id), Some(auth_token)) => Some(
                PlivoRest::new(
                    settings.plivo.api_url.clone(),
                    auth_id.clone(),
                    auth_token.clone(),
                )
                .context("building the Plivo API client")?,
            ),
            _ => None,
        };
        let after_stream_url = format!(
            "{}/plivo/after-stream",
            settings.server.public_url.as_str().trim_end_matches('/')
        );
        let runtime = CallRuntime {
            db: database.db.clone(),
            plivo,
            transfer_strategy: settings.calls.transfer_strategy,
            after_stream_url,
            providers: Arc::new(ConfiguredProvider::new(
                settings.ai.clone(),
                settings.calls.provider_timeout,
                local,
            )),
            registry: Registry::new(settings.calls.max_live),
            server_name: settings.server.name.clone(),
            timing: CallTiming {
                playout_lead: settings.calls.playout_lead,
                greeting_guard: settings.calls.greeting_guard,
                start_timeout: Duration::from_secs(10),
                provider_send_timeout: settings.calls.provider_timeout,
                summary_timeout: Duration::from_secs(5),
                carrier_write_timeout: crate::call::bridge::CARRIER_WRITE_TIMEOUT,
                final_playout_limit: Duration::from_secs(15),
            },
            spool,
            recordings: Arc::new(recordings),
        };
        let state = AppState {
            runtime,
            settings: Arc::new(settings),
            db: database.db.clone(),
            lifecycle: Lifecycle::default(),
            metrics,
            unrecorded_tokens: Arc::default(),
            dashboard: crate::dashboard::Live::default(),
        };
        Ok(Self {
            listener,
            state,
            database,
            dialer_clock: Clock::System,
        })
    }

    /// Runs the dialer on `clock` instead of the system's (tests of calling windows and
    /// retries).
    pub fn set_dialer_clock(&mut self, clock: Clock) {
        self.dialer_clock = clock;
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes, then drains: readiness false, registry row inactive,
    /// live calls finish (or end with reason `shutdown` after the grace period), background
    /// tasks stop, the HTTP server stops, the database closes.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Self {
            listener,
            state,
            database,
            dialer_clock,
        } = self;
        let settings = state.settings.clone();
        let server = &settings.server;
        let stream_url = stream_url(&settings);
        tracing::info!(
            address = %listener.local_addr()?,
            name = %server.name,
            stream_url = %stream_url,
            "listening"
        );
        spawn_heartbeat(&state, stream_url.to_string());
        if let Some(spool) = state.runtime.spool.clone() {
            let (db, stop) = (state.db.clone(), state.lifecycle.background_stop_token());
            state
                .lifecycle
                .spawn_background(replay_loop(db, spool, stop));
        }
        spawn_replay_pruning(&state);
        spawn_recording_recovery(&state);
        state
            .lifecycle
            .spawn_background(crate::recording::retention::retention_loop(
                state.db.clone(),
                state.runtime.recordings.clone(),
                state.runtime.server_name.clone(),
                state.lifecycle.background_stop_token(),
            ));
        if state.runtime.recordings.remote().is_some() {
            let (store, stop) = (
                state.runtime.recordings.clone(),
                state.lifecycle.background_stop_token(),
            );
            state
                .lifecycle
                .spawn_background(crate::recording::remote::upload_loop(store, stop));
        }
        // Hang-up requests from the API, whichever gateway served it.
        crate::api::spawn_hangup_listener(
            state.db.clone(),
            state.runtime.registry.clone(),
            &state.lifecycle,
        );
        // Call changes for the dashboard's live pages, whichever gateway wrote them.
        state
            .dashboard
            .spawn_listener(state.db.clone(), &state.lifecycle);
        spawn_dialer(&state, dialer_clock);
        spawn_metrics_upkeep(&state);

        let http_stop = tokio_util::sync::CancellationToken::new();
        let router = http::router(state.clone());
        let serve = tokio::spawn(http::server::serve(
            listener,
            router,
            server.http,
            http_stop.clone(),
        ));

        shutdown.await;
        let lifecycle = &state.lifecycle;
        lifecycle.start_draining();
        tracing::info!(live_calls = lifecycle.live_calls(), grace = ?server.shutdown_grace, "draining");
        if let Err(error) = state.db.deactivate_server(&server.name).await {
            tracing::error!(%error, "could not mark this server inactive");
        }
        match lifecycle
            .drain_calls(server.shutdown_grace, CALL_WRITE_DEADLINE)
            .await
        {
            DrainOutcome::Finished => tracing::info!("all calls finished"),
            DrainOutcome::CutShort => tracing::warn!("calls were ended by the shutdown"),
        }
        lifecycle.stop_background(BACKGROUND_STOP_DEADLINE).await;
        // The heartbeat may have raced the deactivation; the row must end inactive.
        if let Err(error) = state.db.deactivate_server(&server.name).await {
            tracing::error!(%error, "could not mark this server inactive");
        }
        http_stop.cancel();
        if let Err(error) = serve.await {
            tracing::error!(%error, "HTTP server task failed");
        }
        drop(state);
        database.close().await?;
        tracing::info!("stopped");
        Ok(())
    }
}

/// The recordings' store. An unwritable directory is a warning, not a failure: calls run
/// unrecorded, each with its `recording_failed` event.
async fn open_recordings(settings: &Settings) -> anyhow::Result<RecordingStore> {
    let mut store = RecordingStore::new(settings.recordings.dir.clone(), &settings.server.name);
    if let Some(s3) = &settings.recordings.s3 {
        let remote = crate::recording::remote::RemoteStore::new(s3)
            .context("VG_RECORDINGS_URL: the s3:// store")?;
        tracing::info!(bucket = %s3.bucket, prefix = %s3.prefix, "recordings go to an s3:// store after each call");
        store = store.with_remote(remote);
    }
    let probe = store.clone();
    match tokio::task::spawn_blocking(move || probe.check_writable()).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            tracing::warn!(%error, dir = %store.dir().display(), "the recordings directory is not writable: calls will go unrecorded")
        }
        Err(error) => tracing::warn!(%error, "checking the recordings directory failed"),
    }
    Ok(store)
}

/// Finishes the recordings this gateway's previous run left unfinished and links each to its
/// call, in the background: start-up never waits for it, and a file it cannot read is
/// reported, never fatal.
fn spawn_recording_recovery(state: &AppState) {
    let (db, store) = (state.db.clone(), state.runtime.recordings.clone());
    state.lifecycle.spawn_background(async move {
        let recovered = match tokio::task::spawn_blocking({
            let store = store.clone();
            move || crate::recording::recover_unfinished(&store)
        })
        .await
        {
            Ok(Ok(recovered)) => recovered,
            Ok(Err(error)) => {
                tracing::warn!(%error, "recovering unfinished recordings failed");
                return;
            }
            Err(error) => {
                tracing::warn!(%error, "recovering unfinished recordings failed");
                return;
            }
        };
        for call_sid in &recovered.corrupt {
            metrics::counter!(crate::metrics::RECORDINGS_RECOVERED, "result" => "corrupt").increment(1);
            tracing::warn!(%call_sid, "an unfinished recording had nothing to keep");
        }
        for (call_sid, cut) in &recovered.finished {
            metrics::counter!(crate::metrics::RECORDINGS_RECOVERED, "result" => "finished").increment(1);
            match db
                .link_recording(call_sid, crate::recording::RECORDING_URL_TEMPLATE)
                .await
            {
                Ok(linked) => {
                    store.finished(call_sid);
                    tracing::info!(%call_sid, cut, linked, "unfinished recording finished");
                }
                Err(error) => tracing::warn!(%call_sid, %error, "an unfinished recording was finished but not linked to its call"),
            }
        }
    });
}

/// The spool of call writes under `VG_DATA_DIR/spool`; an unwritable directory is a warning,
/// not a failure: calls still run, and their writes are retried in memory, then given up.
async fn open_spool(settings: &Settings) -> Option<Arc<Spool>> {
    let dir = settings.database.data_dir.join("spool");
    let max = settings.database.spool_max_bytes;
    let opened = {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || Spool::open(&dir, max)).await
    };
    match opened {
        Ok(Ok(spool)) => {
            let pending = *spool.pending().borrow();
            if pending > 0 {
                tracing::info!(
                    files = pending,
                    bytes = spool.used_bytes(),
                    "spooled call writes from a previous run"
                );
            }
            Some(spool)
        }
        Ok(Err(error)) => {
            tracing::warn!(%error, dir = %dir.display(), "no spool for call writes: during a database outage they are retried for 60 s, then lost");
            None
        }
        Err(error) => {
            tracing::warn!(%error, "opening the spool failed");
            None
        }
    }
}

/// The media WebSocket URL this gateway registers: the public URL's `wss://` twin.
pub fn stream_url(settings: &Settings) -> url::Url {
    settings
        .server
        .public_ws_url()
        .join("plivo/stream")
        .expect("a relative path joins a base URL")
}

/// Drains the histograms' sample buffers into their summaries every few seconds. Without it the
/// buffers grow with every frame until `/metrics` is scraped, which may be never.
fn spawn_metrics_upkeep(state: &AppState) {
    let stop = state.lifecycle.background_stop_token();
    state.lifecycle.spawn_background(async move {
        let handle = crate::metrics::handle();
        let mut ticker = tokio::time::interval(crate::metrics::UPKEEP_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = ticker.tick() => handle.run_upkeep(),
            }
        }
    });
}

/// Forgets webhook nonces older than the replay window, stream token claims older than a
/// day and expired dashboard sessions, at start-up and then every [`REPLAY_PRUNE_INTERVAL`]. Every gateway prunes; the deletes
/// are idempotent.
fn spawn_replay_pruning(state: &AppState) {
    let db = state.db.clone();
    let stop = state.lifecycle.background_stop_token();
    state.lifecycle.spawn_background(async move {
        let mut ticker = tokio::time::interval(REPLAY_PRUNE_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = ticker.tick() => {}
            }
            match db.prune_webhook_nonces(http::NONCE_REPLAY_WINDOW).await {
                Ok(pruned) => tracing::debug!(pruned, "webhook nonces pruned"),
                Err(error) => tracing::warn!(%error, "webhook nonces not pruned"),
            }
            match db.prune_stream_tokens().await {
                Ok(pruned) => tracing::debug!(pruned, "stream token claims pruned"),
                Err(error) => tracing::warn!(%error, "stream token claims not pruned"),
            }
            match db.prune_dashboard_sessions().await {
                Ok(pruned) => tracing::debug!(pruned, "expired dashboard sessions pruned"),
                Err(error) => tracing::warn!(%error, "expired dashboard sessions not pruned"),
            }
        }
    });
}

/// Refreshes this server's registry row every heartbeat interval, re-registering it if the row
/// vanished (but not if an operator deactivated it, nor while draining), then closes the open
/// calls of gateways whose heartbeat is stale. It keeps beating while the gateway drains: the
/// row is out of rotation, but the gateway is alive and still holds calls nobody else may close.
fn spawn_heartbeat(state: &AppState, stream_url: String) {
    let db = state.db.clone();
    let lifecycle = state.lifecycle.clone();
    let registry = state.runtime.registry.clone();
    let max_calls = state.settings.calls.max_live;
    let stop = lifecycle.background_stop_token();
    let server = state.settings.server.clone();
    state.lifecycle.spawn_background(async move {
        let mut ticker = tokio::time::interval(server.heartbeat_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await; // The first tick is immediate; registration just happened.
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = ticker.tick() => {}
            }
            // The calls admitted here, as counted against VG_MAX_CALLS: this also corrects the
            // places the server pick reserved for streams that never came.
            let live_calls = i32::try_from(registry.len()).unwrap_or(i32::MAX);
            let beat = db
                .heartbeat_server(&server.name, live_calls, server.heartbeat_interval)
                .await;
            let result = match beat {
                Ok(Heartbeat::Active | Heartbeat::Inactive) => Ok(()),
                Ok(Heartbeat::Missing) if lifecycle.is_draining() => Ok(()),
                Ok(Heartbeat::Missing) => {
                    db.register_server(
                        &server.name,
                        &stream_url,
                        server.priority,
                        server.heartbeat_interval,
                        max_calls,
                    )
                    .await
                }
                Err(error) => Err(error),
            };
            match result {
                Ok(()) => close_calls_of_stale_servers(&db, &server).await,
                Err(error) => {
                    metrics::counter!(crate::metrics::HEARTBEAT_FAILURES).increment(1);
                    tracing::warn!(%error, "heartbeat failed");
                }
            }
        }
    });
}

/// Closes the open calls of every other gateway whose heartbeat is stale, as `gateway_restart`.
/// Only after this gateway's own heartbeat went through: a gateway cut off from the database
/// judges nobody.
async fn close_calls_of_stale_servers(db: &Database, server: &crate::config::ServerSettings) {
    let stale = match db
        .stale_servers_with_open_calls(&server.name, server.heartbeat_interval)
        .await
    {
        Ok(stale) => stale,
        Err(error) => {
            tracing::warn!(%error, "looking for gateways that are gone failed");
            return;
        }
    };
    for gone in stale {
        match db.close_orphaned_calls(&gone, &server.name).await {
            Ok(closed) if closed.is_empty() => {}
            Ok(closed) => {
                metrics::counter!(crate::metrics::CALLS_CLOSED_AFTER_RESTART)
                    .increment(closed.len() as u64);
                tracing::warn!(server = %gone, calls = closed.len(), call_sids = ?closed, "calls of a gateway whose heartbeat is stale closed as gateway_restart");
            }
            Err(error) => {
                tracing::warn!(server = %gone, %error, "closing the calls of a gateway that is gone failed")
            }
        }
    }
}

/// Starts the campaign dialer when it is enabled and Plivo's credentials are there to place
/// calls with.
fn spawn_dialer(state: &AppState, clock: Clock) {
    let settings = &state.settings;
    if !settings.dialer.enabled {
        tracing::info!("dialer disabled (VG_DIALER_ENABLED=false)");
        return;
    }
    let (Some(plivo), Some(account)) =
        (state.runtime.plivo.clone(), settings.plivo.auth_id.clone())
    else {
        tracing::info!("dialer off: PLIVO_AUTH_ID and PLIVO_AUTH_TOKEN are not set");
        return;
    };
    Dialer::new(
        state.db.clone(),
        plivo,
        account,
        settings.server.name.clone(),
        &settings.server.public_url,
        settings.dialer.clone(),
        clock,
    )
    .spawn(&state.lifecycle);
}

/// Completes on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    let mut interrupt = signal(SignalKind::interrupt()).expect("installing a SIGINT handler");
    let name = tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
    };
    tracing::info!(signal = name, "shutdown requested");
}
