//! The running service: migrations, the pool, the writer, the HTTP server and its background
//! tasks, started together and stopped together (SIGTERM drains).

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use anyhow::Context;
use attribution_matcher::MatchSettings;
use deadpool_postgres::Pool;
use dedup::InFlight;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::auth::Authenticator;
use crate::config::Settings;
use crate::ingest::Ingest;
use crate::writer::{Writer, WriterConfig};
use crate::{db, routes, telemetry};
use pipeline::Workers;

/// Connections of the pipeline workers inside `convrelay serve`: three per attribution loop (its
/// claim, and the two parts of a split claim), the forwarder's parallel steps plus one for lease
/// extensions, and one per report-stage loop.
const WORKER_POOL_SIZE: usize = 11;

/// A built, listening service.
pub struct Application {
    server: Server,
    addr: SocketAddr,
    writer: JoinHandle<()>,
    background: Vec<JoinHandle<()>>,
    workers: Option<Workers>,
}

/// The attribution settings of the operator's settings.
pub fn match_settings(settings: &Settings) -> MatchSettings {
    MatchSettings {
        pending_window: settings.pending_window,
        identity_max_links: settings.identity_max_links,
        identity_max_customer_ids: settings.identity_max_customer_ids,
        ..MatchSettings::default()
    }
}

/// The key that seals destination credentials, if the operator gave one.
pub fn cipher(settings: &Settings) -> anyhow::Result<Option<forwarder::Cipher>> {
    settings
        .secret_key
        .as_ref()
        .map(|key| forwarder::Cipher::from_key(key.expose()))
        .transpose()
        .map_err(|_| {
            anyhow::anyhow!("CONVRELAY_SECRET_KEY must be 32 bytes, as 64 hex digits or base64")
        })
}

/// The forwarder as the operator configured it; none without a secret key (nothing could be
/// unsealed), which is said once in the log.
pub fn forwarder(
    settings: &Settings,
    pool: &Pool,
    cipher: Option<forwarder::Cipher>,
) -> Option<forwarder::Forwarder> {
    let Some(cipher) = cipher else {
        tracing::warn!(
            "CONVRELAY_SECRET_KEY is not set: destinations are disabled and nothing is forwarded"
        );
        return None;
    };
    let config = forwarder::ForwarderConfig {
        endpoints: forwarder::Endpoints {
            google_ads: settings.google_ads_url.clone(),
            google_data_manager: settings.google_data_manager_url.clone(),
            google_oauth: settings.google_oauth_url.clone(),
            meta: settings.meta_url.clone(),
            microsoft_ads: settings.microsoft_ads_url.clone(),
            microsoft_oauth: settings.microsoft_oauth_url.clone(),
            pinterest: settings.pinterest_url.clone(),
            snapchat: settings.snapchat_url.clone(),
            tiktok: settings.tiktok_url.clone(),
            reddit: settings.reddit_url.clone(),
            linkedin: settings.linkedin_url.clone(),
        },
        retry: forwarder::RetryPolicy::from_settings(
            settings.retry_initial_ms,
            settings.retry_max_ms,
            settings.retry_max_attempts,
        ),
        lease: settings.lease,
        confirmation_poll: settings.confirmation_poll,
        quota_share: settings.quota_share,
        ..forwarder::ForwarderConfig::default()
    };
    Some(forwarder::Forwarder::new(pool.clone(), cipher, config))
}

/// Applies pending migrations and builds the pool of `CONVRELAY_DB_POOL_SIZE` connections.
async fn prepare(settings: &Settings) -> anyhow::Result<Pool> {
    let mut client = db::connect(&settings.database_url).await?;
    db::migrate_all(&mut client).await?;
    drop(client);
    Ok(db::pool(
        &settings.database_url,
        settings.db_pool_size,
        settings.db_timeout,
    )?)
}

/// The retention worker's settings.
fn retention_settings(settings: &Settings) -> pipeline::retention::RetentionSettings {
    pipeline::retention::RetentionSettings {
        days: settings.retention_days,
    }
}

/// `convrelay worker`: the pipeline workers alone, until SIGTERM/SIGINT.
pub async fn run_workers(settings: Settings) -> anyhow::Result<()> {
    let pool = prepare(&settings).await?;
    let forwarder = forwarder(&settings, &pool, cipher(&settings)?);
    let workers = Workers::start_with(
        pool,
        match_settings(&settings),
        Arc::new(Notify::new()),
        forwarder,
        retention_settings(&settings),
    );
    tracing::info!("workers running");
    wait_for_signal().await;
    tracing::info!("stopping: workers finish what they hold");
    workers.stop().await;
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

impl Application {
    /// Applies pending migrations, connects, binds and prepares to serve, with the pipeline
    /// workers in the same process.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        Self::build_with(settings, true).await
    }

    /// As [`Application::build`]; `workers: false` serves the API alone (`serve --no-workers`).
    pub async fn build_with(settings: Settings, workers: bool) -> anyhow::Result<Self> {
        let pool = prepare(&settings).await?;
        let stored = Arc::new(Notify::new());
        let cipher = cipher(&settings)?;
        let workers = if workers {
            // The workers get connections of their own: the API's are never taken by a worker
            // step, and each connection's buffers stay sized for the one kind of work it does.
            let worker_pool = db::pool(
                &settings.database_url,
                WORKER_POOL_SIZE,
                settings.db_timeout,
            )?;
            Some(Workers::start_with(
                worker_pool.clone(),
                match_settings(&settings),
                Arc::clone(&stored),
                forwarder(&settings, &worker_pool, cipher.clone()),
                retention_settings(&settings),
            ))
        } else {
            None
        };
        let (writer, writer_task) = Writer::spawn(
            pool.clone(),
            WriterConfig {
                concurrency: 6,
                max_events: 2000,
                queue: 100_000,
                timeout: settings.db_timeout,
                idempotency_ttl: settings.idempotency_ttl,
                stored,
            },
        );
        let ingest = web::Data::new(Ingest {
            writer,
            pool: pool.clone(),
            inflight: InFlight::default(),
            idempotency_ttl: settings.idempotency_ttl,
            undefined_event_names: settings.undefined_event_names,
        });
        let auth = web::Data::new(Authenticator::new(pool.clone(), settings.rate_limit));
        let background = vec![
            tokio::spawn(flush_key_use(auth.clone())),
            tokio::spawn(keep_idempotency_days(
                pool.clone(),
                settings.idempotency_ttl,
            )),
            tokio::spawn(metrics_upkeep()),
        ];
        let pool = web::Data::new(pool);
        let cipher = web::Data::new(crate::routes::destinations::Sealing(cipher));
        crate::metrics::handle();
        crate::metrics::describe();
        let retention =
            web::Data::new(crate::routes::usage::RetentionDays(settings.retention_days));
        let metrics_token = web::Data::new(crate::routes::ops::MetricsToken(
            settings.metrics_token.clone(),
        ));

        let listener = TcpListener::bind(settings.listen)
            .with_context(|| format!("cannot listen on {}", settings.listen))?;
        let addr = listener.local_addr()?;
        let server = HttpServer::new(move || {
            App::new()
                .wrap(from_fn(telemetry::request_id))
                .app_data(ingest.clone())
                .app_data(auth.clone())
                .app_data(pool.clone())
                .app_data(metrics_token.clone())
                .app_data(cipher.clone())
                .app_data(retention.clone())
                .configure(routes::configure)
                .default_service(web::to(routes::not_found))
        })
        .workers(settings.http_workers.max(1))
        .shutdown_timeout(30)
        .listen(listener)?
        .run();
        Ok(Self {
            server,
            addr,
            writer: writer_task,
            background,
            workers,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until SIGTERM/SIGINT (or the server handle stops it), answers what is in flight,
    /// lets the writer finish its last groups, then returns.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        for task in &self.background {
            task.abort();
        }
        if let Some(workers) = self.workers {
            workers.stop().await;
        }
        if tokio::time::timeout(Duration::from_secs(10), self.writer)
            .await
            .is_err()
        {
            tracing::warn!("the writer did not finish in time");
        }
        tracing::info!("stopped");
        result
    }
}

/// Writes `last_used_at` of the keys used lately, every few seconds.
async fn flush_key_use(auth: web::Data<Authenticator>) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        if let Err(e) = auth.flush_last_used().await {
            tracing::debug!(error = %e, "could not record key use");
        }
    }
}

/// Folds recorded histogram samples into their buckets every few seconds. The exporter keeps
/// each sample until then: without this, a server nobody scrapes would hold every latency it
/// ever recorded.
async fn metrics_upkeep() {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        crate::metrics::handle().run_upkeep();
    }
}

/// Keeps the days of Idempotency-Key answers: creates them ahead and drops those past, at start
/// and every minute (see [`dedup::idempotency::keep_days`]).
async fn keep_idempotency_days(pool: deadpool_postgres::Pool, ttl: Duration) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tick.tick().await;
        let Ok(mut client) = pool.get().await else {
            continue;
        };
        match dedup::idempotency::keep_days(&mut client, time::OffsetDateTime::now_utc(), ttl).await
        {
            Ok(kept) => {
                for name in &kept.created {
                    tracing::debug!(partition = %name, "idempotency answers: day created");
                }
                for name in &kept.dropped {
                    tracing::debug!(partition = %name, "idempotency answers: day past, dropped");
                }
            }
            Err(e) => {
                // The database's own words (a lock timeout, say): the error alone says "database".
                let detail = std::error::Error::source(&e)
                    .map(ToString::to_string)
                    .unwrap_or_default();
                tracing::warn!(
                    error = %e,
                    detail,
                    "could not keep the days of idempotency answers; trying again in a minute"
                );
            }
        }
    }
}
