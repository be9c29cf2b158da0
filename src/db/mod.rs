//! The database: the connection pool, migrations, the service-role check, the embedded
//! PostgreSQL, and every SQL statement the gateway runs.
//!
//! **Invariant:** no other module contains SQL. Each operation here is one transaction and is
//! idempotent by the call's Plivo CallUUID (`call_sid`), because Plivo's callbacks and the
//! media stream race and repeat.

pub mod answer;
pub mod call_queries;
pub mod callbacks;
pub mod calls;
pub mod campaigns;
pub mod dashboard;
pub mod dialer;
pub mod embedded;
pub mod leads;
pub mod nonces;
pub mod notifications;
pub mod organization;
pub mod recordings;
pub mod seed;
pub mod servers;
pub mod suppression;
pub mod tokens;
pub mod transfers;

use std::time::Duration;

use sqlx::{
    Connection, Executor, PgConnection, PgPool,
    postgres::{PgConnectOptions, PgPoolOptions},
};

/// How long connecting may take before start-up gives up with a clear error.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request may wait for a pooled connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// The migrations in `migrations/`, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

/// Failures of the data layer.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot connect to PostgreSQL at {target}: {reason}")]
    Connect { target: String, reason: String },
    #[error("applying migrations failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(
        "database role `{role}` cannot bypass row-level security: connect as a role with BYPASSRLS (such as Supabase's `postgres` or a member of `service_role`)"
    )]
    NoBypassRls { role: String },
    #[error("no call with call_sid {0:?}")]
    UnknownCall(String),
    #[error(
        "lead {lead_id} does not belong to the organization of campaign {campaign_id}, or one of them does not exist"
    )]
    UnknownLead {
        lead_id: uuid::Uuid,
        campaign_id: uuid::Uuid,
    },
    #[error("lead {lead_id} cannot be put on the do-not-call list: {why}")]
    NotSuppressible {
        lead_id: uuid::Uuid,
        why: &'static str,
    },
    /// Another transaction changed the same row between our statements; retrying is safe.
    #[error("{0} changed concurrently; retry")]
    ConcurrentChange(&'static str),
    /// A live step gave up on the database: it did not answer in time, or failed just before.
    #[error("the database is unreachable ({0})")]
    Unreachable(&'static str),
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
}

impl DbError {
    /// Whether retrying the same operation later may succeed (the database was unreachable or
    /// busy), as opposed to a request that will fail again.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Connect { .. } | Self::ConcurrentChange(_) | Self::Unreachable(_) => true,
            Self::Sqlx(error) => {
                matches!(
                    error,
                    sqlx::Error::Io(_)
                        | sqlx::Error::PoolTimedOut
                        | sqlx::Error::PoolClosed
                        | sqlx::Error::WorkerCrashed
                        | sqlx::Error::Tls(_)
                ) || error
                    .as_database_error()
                    .and_then(|db| db.code())
                    .is_some_and(|code| transient_sqlstate(&code))
            }
            _ => false,
        }
    }
}

/// SQLSTATEs after which the same statement may succeed later: class 08 (connection lost),
/// 40001 (serialization failure) and 40P01 (deadlock), 53300 (too many connections) and 53400
/// (a configured limit), 55P03 (lock not available), 57P01–57P05 (the server shutting down, a
/// failover, idle sessions ended), 57014 (a statement cancelled, such as a timeout).
fn transient_sqlstate(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("57P0")
        || matches!(
            code,
            "40001" | "40P01" | "53300" | "53400" | "55P03" | "57014"
        )
}

/// Whether the gateway's own role bypasses RLS or has to switch to `service_role`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceRole {
    /// The login role is a superuser or has BYPASSRLS.
    LoginRoleBypasses,
    /// The login role is a member of `service_role`; every connection runs `SET ROLE service_role`.
    SetRole,
}

/// The gateway's handle on PostgreSQL: a pool whose connections all bypass RLS.
#[derive(Debug, Clone)]
pub struct Database {
    pool: PgPool,
    reachability: std::sync::Arc<Reachability>,
}

/// How long one database step of a live call's webhooks (the answer, the stream's token) may
/// take before it counts as failed: Plivo and the caller wait on it.
pub const LIVE_STEP_TIMEOUT: Duration = Duration::from_millis(1500);
/// After a live step failed for want of the database, the next ones skip it this long (one
/// probe per window), so an outage costs each answer nothing rather than a timeout each.
const UNREACHABLE_HOLD: Duration = Duration::from_secs(2);

/// Whether the database recently failed a live step.
#[derive(Debug)]
struct Reachability {
    epoch: std::time::Instant,
    /// Milliseconds since `epoch` of the last failure; 0 while it answers.
    failed_at_ms: std::sync::atomic::AtomicU64,
    /// A step is finding out whether a database that failed answers again: the others skip.
    probing: std::sync::atomic::AtomicBool,
}

/// Records a live step's outcome when it ends, however it ends.
struct StepGuard<'a> {
    reachability: &'a Reachability,
    access: Access,
    reachable: bool,
}

impl Drop for StepGuard<'_> {
    fn drop(&mut self) {
        self.reachability.record(self.access, self.reachable);
    }
}

/// What a live step may do with the database now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// It answers: go ahead.
    Open,
    /// It failed: this step finds out whether it is back.
    Probe,
    /// It failed a moment ago, or another step is finding out: go on without it.
    Skip,
}

impl Reachability {
    fn new() -> Self {
        Self {
            epoch: std::time::Instant::now(),
            failed_at_ms: std::sync::atomic::AtomicU64::new(0),
            probing: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn now_ms(&self) -> u64 {
        (self.epoch.elapsed().as_millis() as u64).max(1)
    }

    fn access(&self) -> Access {
        use std::sync::atomic::Ordering;
        let failed = self.failed_at_ms.load(Ordering::Relaxed);
        if failed == 0 {
            return Access::Open;
        }
        if self.now_ms().saturating_sub(failed) < UNREACHABLE_HOLD.as_millis() as u64 {
            return Access::Skip;
        }
        match self
            .probing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
        {
            Ok(_) => Access::Probe,
            Err(_) => Access::Skip,
        }
    }

    fn record(&self, access: Access, reachable: bool) {
        use std::sync::atomic::Ordering;
        let value = if reachable { 0 } else { self.now_ms() };
        self.failed_at_ms.store(value, Ordering::Relaxed);
        if access == Access::Probe {
            self.probing.store(false, Ordering::Release);
        }
    }
}

/// How to open the database.
#[derive(Debug, Clone)]
pub struct OpenOptions<'a> {
    pub url: &'a str,
    pub max_connections: u32,
    /// Apply the embedded migrations before use.
    pub migrate: bool,
}

impl Database {
    /// Runs one database step of a live call's webhook within [`LIVE_STEP_TIMEOUT`]. While
    /// the database has just failed one, or another step is finding out whether it is back,
    /// answers [`DbError::Unreachable`] at once. The caller then goes on without it (each such
    /// step has a fallback), so an outage costs a call at most one probe's wait, mostly none.
    pub async fn live_step<T>(
        &self,
        step: impl std::future::Future<Output = Result<T, DbError>>,
    ) -> Result<T, DbError> {
        let access = self.reachability.access();
        if access == Access::Skip {
            return Err(DbError::Unreachable("it failed a moment ago"));
        }
        // Reset on every way out, a cancelled request included.
        let mut step_guard = StepGuard {
            reachability: &self.reachability,
            access,
            reachable: false,
        };
        match tokio::time::timeout(LIVE_STEP_TIMEOUT, step).await {
            Ok(Ok(value)) => {
                step_guard.reachable = true;
                Ok(value)
            }
            Ok(Err(error)) => {
                step_guard.reachable = !error.is_transient();
                Err(error)
            }
            Err(_) => Err(DbError::Unreachable("no answer in time")),
        }
    }

    /// Connects, applies migrations if asked, checks that the role bypasses RLS, and builds the
    /// pool. Migrations run on the login role, before any `SET ROLE`.
    pub async fn open(options: OpenOptions<'_>) -> Result<Self, DbError> {
        let connect_options: PgConnectOptions =
            options
                .url
                .parse()
                .map_err(|error: sqlx::Error| DbError::Connect {
                    target: "DATABASE_URL".to_owned(),
                    reason: error.to_string(),
                })?;
        let target = describe_target(&connect_options);
        let connect_error = |reason: String| DbError::Connect {
            target: target.clone(),
            reason,
        };

        let mut connection = tokio::time::timeout(
            CONNECT_TIMEOUT,
            PgConnection::connect_with(&connect_options),
        )
        .await
        .map_err(|_| connect_error(format!("no answer within {CONNECT_TIMEOUT:?}")))?
        .map_err(|error| connect_error(error.to_string()))?;
        if options.migrate {
            MIGRATOR.run(&mut connection).await?;
        }
        let role = check_service_role(&mut connection).await?;
        connection.close().await.ok();

        let mut pool_options = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(ACQUIRE_TIMEOUT);
        if role == ServiceRole::SetRole {
            pool_options = pool_options.after_connect(|connection, _meta| {
                Box::pin(async move {
                    connection.execute("SET ROLE service_role").await?;
                    Ok(())
                })
            });
        }
        let pool = pool_options
            .connect_with(connect_options)
            .await
            .map_err(|error| connect_error(error.to_string()))?;
        tracing::info!(%target, ?role, "database ready");
        Ok(Self {
            pool,
            reachability: std::sync::Arc::new(Reachability::new()),
        })
    }

    /// Wraps an existing pool (tests that prepare their own database).
    pub fn from_pool(pool: PgPool) -> Self {
        Self {
            pool,
            reachability: std::sync::Arc::new(Reachability::new()),
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A cheap round trip, for readiness.
    pub async fn ping(&self) -> Result<(), DbError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Refuses a role that would be subject to RLS: the gateway writes every organization's rows.
pub async fn check_service_role(connection: &mut PgConnection) -> Result<ServiceRole, DbError> {
    let row = sqlx::query!(
        r#"SELECT current_user::text AS "role!",
                  (rolsuper OR rolbypassrls) AS "bypasses!",
                  (EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role')
                   AND pg_has_role(current_user, 'service_role', 'MEMBER')) AS "member!"
           FROM pg_roles WHERE rolname = current_user"#
    )
    .fetch_one(&mut *connection)
    .await?;
    if row.bypasses {
        return Ok(ServiceRole::LoginRoleBypasses);
    }
    if row.member {
        return Ok(ServiceRole::SetRole);
    }
    Err(DbError::NoBypassRls { role: row.role })
}

/// `user@host:port/database`, never the password.
fn describe_target(options: &PgConnectOptions) -> String {
    format!(
        "{}@{}:{}/{}",
        options.get_username(),
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or("(default)")
    )
}

/// Creates `name` in the cluster behind `admin_url` unless it exists (for the embedded
/// cluster, whose only database at first is `postgres`).
pub async fn ensure_database(admin_url: &str, name: &str) -> Result<(), DbError> {
    let mut connection =
        PgConnection::connect(admin_url)
            .await
            .map_err(|error| DbError::Connect {
                target: "embedded PostgreSQL".to_owned(),
                reason: error.to_string(),
            })?;
    let exists = sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS "exists!""#,
        name
    )
    .fetch_one(&mut connection)
    .await?;
    if !exists {
        // CREATE DATABASE takes no parameters; the name is quoted as an identifier.
        let statement = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
            .execute(&mut connection)
            .await?;
    }
    connection.close().await.ok();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{Access, Reachability, transient_sqlstate};

    #[test]
    fn after_a_failure_live_steps_skip_the_database_and_one_at_a_time_probes_it() {
        let reachability = Reachability::new();
        assert_eq!(reachability.access(), Access::Open);
        reachability.record(Access::Open, false);
        assert_eq!(reachability.access(), Access::Skip, "within the hold");
        // The hold is over: one step probes, the others skip while it does.
        let reachability = Reachability {
            epoch: std::time::Instant::now() - 2 * super::UNREACHABLE_HOLD,
            ..Reachability::new()
        };
        reachability.record(Access::Open, false);
        reachability
            .failed_at_ms
            .store(1, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(reachability.access(), Access::Probe);
        assert_eq!(reachability.access(), Access::Skip, "one probe at a time");
        reachability.record(Access::Probe, false);
        assert_eq!(
            reachability.access(),
            Access::Skip,
            "failed again: held off"
        );
        reachability
            .failed_at_ms
            .store(1, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(reachability.access(), Access::Probe);
        reachability.record(Access::Probe, true);
        assert_eq!(reachability.access(), Access::Open, "back");
    }

    #[test]
    fn failover_overload_and_contention_are_transient_and_mistakes_are_not() {
        for code in [
            "08000", "08006", "08P01", "40001", "40P01", "53300", "53400", "55P03", "57014",
            "57P01", "57P02", "57P03", "57P05",
        ] {
            assert!(transient_sqlstate(code), "{code}");
        }
        for code in [
            "23505", "23514", "42P01", "42703", "22P02", "53100", "XX000",
        ] {
            assert!(!transient_sqlstate(code), "{code}");
        }
    }
}
