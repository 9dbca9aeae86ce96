//! The running service: migrations, the pool, the writer, the HTTP server and its background
//! tasks, started together and stopped together (SIGTERM drains).

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use dedup::InFlight;
use tokio::task::JoinHandle;

use crate::auth::Authenticator;
use crate::config::Settings;
use crate::ingest::Ingest;
use crate::writer::{Writer, WriterConfig};
use crate::{db, routes, telemetry};

/// A built, listening service.
pub struct Application {
    server: Server,
    addr: SocketAddr,
    writer: JoinHandle<()>,
    background: Vec<JoinHandle<()>>,
}

impl Application {
    /// Applies pending migrations, connects, binds and prepares to serve.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let mut client = db::connect(&settings.database_url).await?;
        db::migrate_all(&mut client).await?;
        drop(client);

        let pool = db::pool(
            &settings.database_url,
            settings.db_pool_size,
            settings.db_timeout,
        )?;
        let (writer, writer_task) = Writer::spawn(
            pool.clone(),
            WriterConfig {
                concurrency: 4,
                max_events: 5000,
                queue: 100_000,
                timeout: settings.db_timeout,
                idempotency_ttl: settings.idempotency_ttl,
            },
        );
        let ingest = web::Data::new(Ingest {
            writer,
            pool: pool.clone(),
            inflight: InFlight::default(),
            idempotency_ttl: settings.idempotency_ttl,
        });
        let auth = web::Data::new(Authenticator::new(pool.clone(), settings.rate_limit));
        let background = vec![
            tokio::spawn(flush_key_use(auth.clone())),
            tokio::spawn(purge_idempotency_keys(pool.clone())),
        ];
        let pool = web::Data::new(pool);
        crate::metrics::handle();
        crate::metrics::describe();
        let metrics_token = web::Data::new(crate::routes::ops::MetricsToken(
            settings.metrics_token.clone(),
        ));

        let listener = TcpListener::bind(settings.listen)?;
        let addr = listener.local_addr()?;
        let server = HttpServer::new(move || {
            App::new()
                .wrap(from_fn(telemetry::request_id))
                .app_data(ingest.clone())
                .app_data(auth.clone())
                .app_data(pool.clone())
                .app_data(metrics_token.clone())
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

/// Deletes expired Idempotency-Key answers, a bounded slice at a time.
async fn purge_idempotency_keys(pool: deadpool_postgres::Pool) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tick.tick().await;
        let Ok(client) = pool.get().await else {
            continue;
        };
        loop {
            match dedup::idempotency::purge_expired(&client, 10_000).await {
                Ok(n) if n > 0 => tracing::debug!(purged = n, "expired idempotency keys"),
                Ok(_) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "could not purge idempotency keys");
                    break;
                }
            }
        }
    }
}
