//! The embedded PostgreSQL: a private cluster run from the server binaries installed on the
//! machine, used when `DATABASE_URL` is unset and by the test harness.
//!
//! - Persistent ([`EmbeddedPostgres::start_persistent`]): lives under `VG_DATA_DIR/postgres`,
//!   initialised once, reused by every later start.
//! - Ephemeral ([`EmbeddedPostgres::start_ephemeral`]): a throwaway cluster in the temp
//!   directory, for one test run.
//!
//! PostgreSQL refuses to run as root, so when we are root the cluster runs as the `postgres`
//! user (or `nobody`). It listens on 127.0.0.1 only, on a free port, with password
//! authentication (a random superuser password kept in the cluster directory) and no unix
//! socket (socket paths have a length limit and a permission story we do not need).
//!
//! The server is started from a dedicated thread that waits on it, with a parent-death signal:
//! if our process dies without stopping it, the kernel asks it to shut down. It runs in its
//! own process group so that a Ctrl-C on the terminal reaches only us, and we stop it after
//! live calls have drained. Everything here blocks: call it through `spawn_blocking`.

use std::{
    fs,
    io::{self, Read},
    net::{TcpListener, TcpStream},
    os::unix::{
        fs::{MetadataExt, PermissionsExt},
        process::CommandExt,
    },
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Stdio},
    sync::mpsc,
    time::{Duration, SystemTime},
};

/// The superuser of every embedded cluster.
pub const SUPERUSER: &str = "postgres";
/// How long the server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a fast shutdown may take before the server is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Name prefix of ephemeral clusters in the temp directory.
const EPHEMERAL_PREFIX: &str = "vg-pg-";
/// Ephemeral clusters left behind by a killed process are removed after this long.
const STALE_EPHEMERAL_AGE: Duration = Duration::from_secs(3600);
/// The hint every "no binaries" error carries.
const INSTALL_HINT: &str = "install them (Debian/Ubuntu: `apt-get install postgresql`) or set DATABASE_URL to an existing PostgreSQL";

/// Why the embedded cluster could not start or stop.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error(
        "no PostgreSQL server binaries (initdb, postgres) found on PATH, through pg_config or under /usr/lib/postgresql: {INSTALL_HINT}"
    )]
    NoBinaries,
    #[error(
        "the database user `{user}` cannot reach {path}: {blocker} is not searchable by other users; choose a VG_DATA_DIR outside it (for example /var/lib/voice-gateway)"
    )]
    Unreachable {
        user: String,
        path: PathBuf,
        blocker: PathBuf,
    },
    #[error("initdb failed for {path}: {output}")]
    Initdb { path: PathBuf, output: String },
    #[error("PostgreSQL did not start from {path}: {log}")]
    Start { path: PathBuf, log: String },
    #[error("embedded PostgreSQL at {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> EmbeddedError + '_ {
    move |source| EmbeddedError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A running embedded cluster. Dropping it stops the server (and removes an ephemeral one).
#[derive(Debug)]
pub struct EmbeddedPostgres {
    /// The cluster directory: `data/`, `postgres.log`, `superuser.password`.
    root: PathBuf,
    port: u16,
    pid: u32,
    password: String,
    ephemeral: bool,
    /// Receives the server's exit status from the thread that waits on it. In a mutex only
    /// so that the handle is `Sync` and can live in a `static` (the test harness's cluster).
    exited: std::sync::Mutex<Option<Exited>>,
}

/// Where the server binaries are: a directory, or `None` for "on PATH".
#[derive(Debug, Clone)]
struct Binaries {
    dir: Option<PathBuf>,
}

/// The unprivileged account the server runs as when we are root.
#[derive(Debug, Clone)]
struct RunAs {
    name: String,
    uid: u32,
    gid: u32,
}

impl EmbeddedPostgres {
    /// Starts the persistent cluster in `root`, initialising it on first use.
    pub fn start_persistent(root: &Path) -> Result<Self, EmbeddedError> {
        let binaries = Binaries::find()?;
        let run_as = RunAs::for_current_user();
        fs::create_dir_all(root).map_err(io_error(root))?;
        let root = root.canonicalize().map_err(io_error(root))?;
        if let Some(run_as) = &run_as {
            check_reachable(&root, run_as)?;
        }
        if !root.join("data/PG_VERSION").exists() {
            initialise(&binaries, run_as.as_ref(), &root)?;
        }
        Self::launch(&binaries, run_as.as_ref(), root, false)
    }

    /// Starts a throwaway cluster in the temp directory; it is removed when stopped or dropped.
    /// Clusters left behind by killed processes are swept first.
    pub fn start_ephemeral() -> Result<Self, EmbeddedError> {
        let binaries = Binaries::find()?;
        let run_as = RunAs::for_current_user();
        let temp = std::env::temp_dir();
        sweep_stale_ephemeral(&temp);
        let root = temp.join(format!(
            "{EPHEMERAL_PREFIX}{}",
            crate::config::random_hex(8)
        ));
        if let Some(run_as) = &run_as {
            check_reachable(&temp, run_as)?;
        }
        let started = initialise(&binaries, run_as.as_ref(), &root)
            .and_then(|()| Self::launch(&binaries, run_as.as_ref(), root.clone(), true));
        if started.is_err() {
            let _ = fs::remove_dir_all(&root);
        }
        started
    }

    /// A connection URL for `database` as the superuser.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://{SUPERUSER}:{}@127.0.0.1:{}/{database}",
            self.password, self.port
        )
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Fast shutdown (open transactions roll back, data is flushed), then removal if ephemeral.
    pub fn stop(mut self) -> Result<(), EmbeddedError> {
        self.shutdown()
    }

    /// Stops the server (fast shutdown) and keeps its files, so [`EmbeddedPostgres::restart`]
    /// can bring the same cluster back: a database outage, on purpose (`loadtest --chaos`).
    pub fn stop_for_outage(&mut self) -> Result<(), EmbeddedError> {
        self.shutdown_keep_files()
    }

    /// Starts the stopped cluster again on the same port, so its clients reconnect.
    pub fn restart(&mut self) -> Result<(), EmbeddedError> {
        let binaries = Binaries::find()?;
        let run_as = RunAs::for_current_user();
        let (pid, exited) = spawn_server(&binaries, run_as.as_ref(), &self.root, self.port)
            .map_err(io_error(&self.root))?;
        self.pid = pid;
        *self
            .exited
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(exited);
        self.wait_ready()
    }

    fn shutdown(&mut self) -> Result<(), EmbeddedError> {
        let Some(exited) = self
            .exited
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
        else {
            return Ok(());
        };
        signal(self.pid, libc::SIGINT);
        if exited.recv_timeout(STOP_TIMEOUT).is_err() {
            tracing::warn!(
                pid = self.pid,
                "embedded PostgreSQL did not stop in time, killing it"
            );
            signal(self.pid, libc::SIGKILL);
            let _ = exited.recv_timeout(STOP_TIMEOUT);
        }
        if self.ephemeral {
            fs::remove_dir_all(&self.root).map_err(io_error(&self.root))?;
        }
        Ok(())
    }

    fn launch(
        binaries: &Binaries,
        run_as: Option<&RunAs>,
        root: PathBuf,
        ephemeral: bool,
    ) -> Result<Self, EmbeddedError> {
        let password = fs::read_to_string(root.join("superuser.password"))
            .map_err(io_error(&root))?
            .trim()
            .to_owned();
        // The port is chosen by binding port 0; another process could take it in between, so
        // a failed bind is retried on a fresh port.
        let mut last_error = None;
        for _ in 0..3 {
            let port = free_port().map_err(io_error(&root))?;
            match spawn_server(binaries, run_as, &root, port) {
                Ok((pid, exited)) => {
                    let mut server = Self {
                        root: root.clone(),
                        port,
                        pid,
                        password: password.clone(),
                        ephemeral,
                        exited: std::sync::Mutex::new(Some(exited)),
                    };
                    match server.wait_ready() {
                        Ok(()) => return Ok(server),
                        Err(error) => {
                            // Already exited or not ready: make sure it is gone before retrying.
                            let _ = server.shutdown_keep_files();
                            let retry = matches!(&error, EmbeddedError::Start { log, .. } if log.contains("could not bind") || log.contains("Address already in use"));
                            last_error = Some(error);
                            if !retry {
                                break;
                            }
                        }
                    }
                }
                Err(error) => return Err(io_error(&root)(error)),
            }
        }
        Err(last_error.expect("at least one attempt was made"))
    }

    fn shutdown_keep_files(&mut self) -> Result<(), EmbeddedError> {
        let ephemeral = std::mem::replace(&mut self.ephemeral, false);
        let result = self.shutdown();
        self.ephemeral = ephemeral;
        result
    }

    /// Waits until the server says it is ready and accepts TCP connections.
    fn wait_ready(&mut self) -> Result<(), EmbeddedError> {
        let started = std::time::Instant::now();
        let pid_file = self.root.join("data/postmaster.pid");
        loop {
            let exited = self
                .exited
                .get_mut()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some(Ok(status)) = exited.as_ref().map(mpsc::Receiver::try_recv) {
                *exited = None;
                let status = status
                    .map(|status| status.to_string())
                    .unwrap_or_else(|error| error.to_string());
                return Err(EmbeddedError::Start {
                    path: self.root.clone(),
                    log: format!("server exited ({status}): {}", log_tail(&self.root)),
                });
            }
            let ready = fs::read_to_string(&pid_file)
                .map(|text| {
                    text.lines()
                        .nth(7)
                        .is_some_and(|line| line.trim() == "ready")
                })
                .unwrap_or(false);
            if ready && TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            if started.elapsed() > START_TIMEOUT {
                return Err(EmbeddedError::Start {
                    path: self.root.clone(),
                    log: format!(
                        "not ready after {START_TIMEOUT:?}: {}",
                        log_tail(&self.root)
                    ),
                });
            }
            // Polling an external process's pid file: there is no event to wait on.
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for EmbeddedPostgres {
    fn drop(&mut self) {
        if let Err(error) = self.shutdown() {
            tracing::warn!(%error, "stopping the embedded PostgreSQL failed");
        }
    }
}

/// Whether this process runs with effective uid 0.
pub fn running_as_root() -> bool {
    // /proc/self is owned by the effective uid of the process reading it.
    fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0)
}

impl Binaries {
    fn find() -> Result<Self, EmbeddedError> {
        if probe(Path::new("initdb")) && probe(Path::new("postgres")) {
            return Ok(Self { dir: None });
        }
        if let Ok(output) = Command::new("pg_config").arg("--bindir").output() {
            let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
            if output.status.success() && has_server(&dir) {
                return Ok(Self { dir: Some(dir) });
            }
        }
        let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let version = entry.file_name().to_string_lossy().parse::<u32>().ok()?;
                let dir = entry.path().join("bin");
                has_server(&dir).then_some((version, dir))
            })
            .collect();
        versions.sort();
        match versions.pop() {
            Some((_, dir)) => Ok(Self { dir: Some(dir) }),
            None => Err(EmbeddedError::NoBinaries),
        }
    }

    fn command(&self, name: &str) -> Command {
        match &self.dir {
            Some(dir) => Command::new(dir.join(name)),
            None => Command::new(name),
        }
    }
}

fn has_server(dir: &Path) -> bool {
    dir.join("initdb").is_file() && dir.join("postgres").is_file()
}

fn probe(program: &Path) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

impl RunAs {
    /// `None` when we are not root (the server runs as us); otherwise `postgres` or `nobody`.
    fn for_current_user() -> Option<Self> {
        if !running_as_root() {
            return None;
        }
        let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
        ["postgres", "nobody"]
            .into_iter()
            .find_map(|wanted| {
                passwd.lines().find_map(|line| {
                    let fields: Vec<&str> = line.split(':').collect();
                    (fields.len() >= 4 && fields[0] == wanted).then(|| Self {
                        name: wanted.to_owned(),
                        uid: fields[2].parse().unwrap_or(65534),
                        gid: fields[3].parse().unwrap_or(65534),
                    })
                })
            })
            .or(Some(Self {
                name: "nobody".to_owned(),
                uid: 65534,
                gid: 65534,
            }))
    }

    fn apply(&self, command: &mut Command) {
        command.uid(self.uid).gid(self.gid);
    }

    fn chown(&self, path: &Path) -> Result<(), EmbeddedError> {
        std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid)).map_err(io_error(path))
    }
}

/// Refuses early, with a clear message, a directory the unprivileged user cannot reach.
fn check_reachable(path: &Path, run_as: &RunAs) -> Result<(), EmbeddedError> {
    for ancestor in path.ancestors().skip(1) {
        let Ok(meta) = fs::metadata(ancestor) else {
            continue;
        };
        let mode = meta.permissions().mode();
        let searchable = mode & 0o001 != 0
            || (meta.uid() == run_as.uid && mode & 0o100 != 0)
            || (meta.gid() == run_as.gid && mode & 0o010 != 0);
        if !searchable {
            return Err(EmbeddedError::Unreachable {
                user: run_as.name.clone(),
                path: path.to_owned(),
                blocker: ancestor.to_owned(),
            });
        }
    }
    Ok(())
}

/// Creates `root` (owned by the server's user, mode 0700) and runs initdb into `root/data`.
fn initialise(
    binaries: &Binaries,
    run_as: Option<&RunAs>,
    root: &Path,
) -> Result<(), EmbeddedError> {
    fs::create_dir_all(root).map_err(io_error(root))?;
    fs::set_permissions(root, fs::Permissions::from_mode(0o700)).map_err(io_error(root))?;
    if let Some(run_as) = run_as {
        run_as.chown(root)?;
    }
    let password_file = root.join("superuser.password");
    fs::write(&password_file, crate::config::random_hex(24)).map_err(io_error(&password_file))?;
    fs::set_permissions(&password_file, fs::Permissions::from_mode(0o600))
        .map_err(io_error(&password_file))?;
    if let Some(run_as) = run_as {
        run_as.chown(&password_file)?;
    }
    let data = root.join("data");
    let mut command = binaries.command("initdb");
    command
        .arg("-D")
        .arg(&data)
        .args([
            "-U",
            SUPERUSER,
            "-A",
            "scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C",
        ])
        .args(["--no-instructions"])
        .arg(format!("--pwfile={}", password_file.display()))
        .current_dir(root)
        .env("LC_ALL", "C")
        .env_remove("PGDATA");
    if let Some(run_as) = run_as {
        run_as.apply(&mut command);
    }
    let output = command.output().map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => EmbeddedError::NoBinaries,
        _ => io_error(root)(source),
    })?;
    if !output.status.success() {
        let mut text = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        if text.is_empty() {
            text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        }
        return Err(EmbeddedError::Initdb {
            path: root.to_owned(),
            output: text.replace('\n', " | "),
        });
    }
    Ok(())
}

type Exited = mpsc::Receiver<io::Result<ExitStatus>>;

/// Starts `postgres` from a thread that lives as long as the server, so the parent-death
/// signal fires only when our process goes away.
fn spawn_server(
    binaries: &Binaries,
    run_as: Option<&RunAs>,
    root: &Path,
    port: u16,
) -> io::Result<(u32, Exited)> {
    let log_path = root.join("postgres.log");
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)?;
    if let Some(run_as) = run_as {
        std::os::unix::fs::chown(&log_path, Some(run_as.uid), Some(run_as.gid))?;
    }
    let mut command = binaries.command("postgres");
    command
        .arg("-D")
        .arg(root.join("data"))
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-c", "unix_socket_directories="])
        .args(["-c", "max_connections=300", "-c", "shared_buffers=64MB"])
        .args([
            "-c",
            "log_min_messages=warning",
            "-c",
            "logging_collector=off",
        ])
        .current_dir(root)
        .env("LC_ALL", "C")
        .env_remove("PGDATA")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        // Its own process group: a terminal's Ctrl-C goes to us, and we stop it after draining.
        .process_group(0);
    if let Some(run_as) = run_as {
        run_as.apply(&mut command);
    }
    set_parent_death_signal(&mut command);

    let (spawned_tx, spawned_rx) = mpsc::sync_channel(1);
    let (exited_tx, exited_rx) = mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("embedded-postgres".to_owned())
        .spawn(move || match command.spawn() {
            Err(error) => {
                let _ = spawned_tx.send(Err(error));
            }
            Ok(mut child) => {
                let _ = spawned_tx.send(Ok(child.id()));
                let _ = exited_tx.send(child.wait());
            }
        })?;
    let pid = spawned_rx
        .recv()
        .map_err(|_| io::Error::other("the embedded-postgres thread ended early"))??;
    Ok((pid, exited_rx))
}

#[allow(unsafe_code)]
fn set_parent_death_signal(command: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec and only calls prctl, which is
    // async-signal-safe. std applies uid/gid before pre_exec closures, so the setting survives
    // the credential change (which would otherwise clear it).
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGINT as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[allow(unsafe_code)]
fn signal(pid: u32, signal: libc::c_int) {
    // SAFETY: kill(2) has no memory-safety preconditions; a stale pid only yields ESRCH.
    unsafe {
        libc::kill(pid as libc::pid_t, signal);
    }
}

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The last lines of the server log, for error messages.
fn log_tail(root: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut file) = fs::File::open(root.join("postgres.log")) {
        let _ = file.read_to_string(&mut text);
    }
    let lines: Vec<&str> = text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .collect();
    let tail = &lines[lines.len().saturating_sub(5)..];
    if tail.is_empty() {
        "(the server log is empty)".to_owned()
    } else {
        tail.join(" | ")
    }
}

/// Removes ephemeral clusters whose server is gone and that are older than an hour.
fn sweep_stale_ephemeral(temp: &Path) {
    let Ok(entries) = fs::read_dir(temp) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry
            .file_name()
            .to_string_lossy()
            .starts_with(EPHEMERAL_PREFIX)
        {
            continue;
        }
        let path = entry.path();
        let old = entry
            .metadata()
            .and_then(|meta| meta.modified())
            .ok()
            .and_then(|modified| SystemTime::now().duration_since(modified).ok())
            .is_some_and(|age| age > STALE_EPHEMERAL_AGE);
        let server_alive = fs::read_to_string(path.join("data/postmaster.pid"))
            .ok()
            .and_then(|text| text.lines().next().map(str::trim).map(str::to_owned))
            .is_some_and(|pid| Path::new("/proc").join(pid).exists());
        if old && !server_alive {
            let _ = fs::remove_dir_all(&path);
        }
    }
}
