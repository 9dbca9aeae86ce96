//! The connection pool and the migrations of every crate, applied in a fixed order.

use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// History table of this crate's migrations (workspaces, API keys, the events journal).
const MIGRATION_TABLE: &str = "journal_schema_history";

/// Errors of start-up database work.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The connection string is not valid.
    #[error("DATABASE_URL is not a valid PostgreSQL connection string")]
    Url(#[source] tokio_postgres::Error),
    /// The pool could not be built.
    #[error("cannot build the connection pool")]
    Pool(#[from] deadpool_postgres::BuildError),
    /// The database could not be reached.
    #[error("cannot connect to the database")]
    Connect(#[source] tokio_postgres::Error),
    /// A migration failed.
    #[error("migration failed")]
    Migrate(#[from] refinery::Error),
    /// The dedup crate's migrations failed.
    #[error("migration failed")]
    Dedup(#[from] dedup::Error),
    /// The matcher's migrations failed.
    #[error("migration failed")]
    Matcher(#[from] attribution_matcher::Error),
    /// The forwarder's migrations failed.
    #[error("migration failed")]
    Forwarder(#[from] forwarder::Error),
    /// The reports crate's migrations failed.
    #[error("migration failed")]
    Reports(#[from] reports::Error),
    /// The catalog's migrations failed.
    #[error("migration failed")]
    Catalog(#[from] catalog::Error),
}

/// Builds a pool. Connections fail fast (`timeout`) so that a database outage becomes a 503,
/// never a hang; statements are bounded by a server-side `statement_timeout`.
pub fn pool(url: &str, size: usize, timeout: Duration) -> Result<Pool, DbError> {
    let mut config = tokio_postgres::Config::from_str(url).map_err(DbError::Url)?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(timeout);
    }
    if config.get_application_name().is_none() {
        config.application_name("convrelay");
    }
    config.keepalives(true);
    config.keepalives_idle(Duration::from_secs(30));
    config.options(format!(
        "-c statement_timeout={} -c lock_timeout={}",
        timeout.as_millis(),
        timeout.as_millis()
    ));
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Ok(Pool::builder(manager)
        .max_size(size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(timeout))
        .create_timeout(Some(timeout))
        .recycle_timeout(Some(timeout))
        .build()?)
}

/// How long opening the plain connection may take when the URL does not say
/// (`connect_timeout`): an unreachable server is an error, not a hang.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens one plain connection (for migrations and the command line).
pub async fn connect(url: &str) -> Result<tokio_postgres::Client, DbError> {
    let mut config = tokio_postgres::Config::from_str(url).map_err(DbError::Url)?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    let (client, connection) = config.connect(NoTls).await.map_err(DbError::Connect)?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "migration connection closed");
        }
    });
    Ok(client)
}

/// Applies every crate's pending migrations, in dependency order. Safe to run from several
/// processes at once: an advisory lock lets one migrate while the others wait.
pub async fn migrate_all(client: &mut tokio_postgres::Client) -> Result<(), DbError> {
    client
        .execute("SELECT pg_advisory_lock(7477001)", &[])
        .await
        .map_err(DbError::Connect)?;
    let result = async {
        embedded::migrations::runner()
            .set_migration_table_name(MIGRATION_TABLE)
            .run_async(client)
            .await?;
        journal::migrate(client).await?;
        dedup::migrate(client).await?;
        attribution_matcher::migrate(client).await?;
        forwarder::migrate(client).await?;
        reports::migrate(client).await?;
        catalog::migrate(client).await?;
        Ok(())
    }
    .await;
    client
        .execute("SELECT pg_advisory_unlock(7477001)", &[])
        .await
        .map_err(DbError::Connect)?;
    result
}

/// Names the full set of migrations, so that a test template is rebuilt when one is added.
pub fn migrations_id() -> String {
    let mut id = String::new();
    for m in embedded::migrations::runner().get_migrations() {
        id.push_str(&format!(
            "journal:{}:{}:{};",
            m.version(),
            m.name(),
            m.checksum()
        ));
    }
    let crates = [
        ("events", journal::migrations()),
        ("dedup", dedup::migrations()),
        ("matcher", attribution_matcher::migrations()),
        ("forwarder", forwarder::migrations()),
        ("reports", reports::migrations()),
        ("catalog", catalog::migrations()),
    ];
    for (krate, migrations) in crates {
        for (v, name, checksum) in migrations {
            id.push_str(&format!("{krate}:{v}:{name}:{checksum};"));
        }
    }
    id
}

/// The newest version of each history table that this binary expects, for `/readyz`.
pub fn expected_versions() -> Vec<(&'static str, i32)> {
    let newest = |v: Vec<i32>| v.into_iter().max().unwrap_or(0);
    vec![
        (
            MIGRATION_TABLE,
            newest(
                embedded::migrations::runner()
                    .get_migrations()
                    .iter()
                    .map(|m| m.version())
                    .collect(),
            ),
        ),
        (
            journal::MIGRATION_TABLE,
            newest(
                journal::migrations()
                    .into_iter()
                    .map(|(v, _, _)| v)
                    .collect(),
            ),
        ),
        (
            dedup::MIGRATION_TABLE,
            newest(dedup::migrations().into_iter().map(|(v, _, _)| v).collect()),
        ),
        (
            attribution_matcher::MIGRATION_TABLE,
            newest(
                attribution_matcher::migrations()
                    .into_iter()
                    .map(|(v, _, _)| v)
                    .collect(),
            ),
        ),
        (
            forwarder::MIGRATION_TABLE,
            newest(
                forwarder::migrations()
                    .into_iter()
                    .map(|(v, _, _)| v)
                    .collect(),
            ),
        ),
        (
            reports::MIGRATION_TABLE,
            newest(
                reports::migrations()
                    .into_iter()
                    .map(|(v, _, _)| v)
                    .collect(),
            ),
        ),
        (
            catalog::MIGRATION_TABLE,
            newest(
                catalog::migrations()
                    .into_iter()
                    .map(|(v, _, _)| v)
                    .collect(),
            ),
        ),
    ]
}

/// Whether the database answers and every history table is at the version this binary expects.
pub async fn check_ready(pool: &Pool) -> Result<(), String> {
    let client = pool
        .get()
        .await
        .map_err(|_| "the database cannot be reached".to_owned())?;
    for (table, expected) in expected_versions() {
        let sql = format!("SELECT coalesce(max(version), 0) FROM {table}");
        let row = client
            .query_one(&sql, &[])
            .await
            .map_err(|_| format!("migrations are not applied ({table} is missing)"))?;
        let applied: i32 = row.get(0);
        if applied < expected {
            return Err(format!(
                "migrations are behind ({table} at {applied}, expected {expected})"
            ));
        }
    }
    Ok(())
}
