//! A fresh database per test, copied from a template that is migrated once per set of migrations.

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;

use sha2::{Digest, Sha256};
use tokio_postgres::{Client, NoTls};

/// A database of its own for one test. It is left behind for inspection; `make test` drops the
/// leftovers of earlier runs before it starts.
#[derive(Debug, Clone)]
pub struct TestDb {
    /// Connection string of the test's database.
    pub url: String,
    /// Its name.
    pub name: String,
}

/// The boxed future a migration function returns.
pub type MigrateFuture<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// Connection string of the maintenance database: `DATABASE_URL`, else the project's local cluster.
pub fn admin_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("DATABASE_URL") {
            return url;
        }
        let script = crate::repo_root().join("scripts/localpg.sh");
        let out = std::process::Command::new("bash")
            .arg(script)
            .arg("url")
            .output()
            .expect("run scripts/localpg.sh url");
        assert!(
            out.status.success(),
            "scripts/localpg.sh url failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    })
    .clone()
}

/// The same server, another database.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let slash = base.rfind('/').expect("a database in the URL");
    let mut out = format!("{}/{}", &base[..slash], db);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

async fn connect(url: &str) -> Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

impl TestDb {
    /// Creates an empty migrated database. `migrations_id` names the set of migrations (the
    /// template is rebuilt when it changes); `migrate` applies them to a fresh database.
    pub async fn new<F>(migrations_id: &str, migrate: F) -> Self
    where
        F: for<'c> FnOnce(&'c mut Client) -> MigrateFuture<'c>,
    {
        let admin = admin_url();
        let digest = hex::encode(&Sha256::digest(migrations_id.as_bytes())[..6]);
        let template = format!("cr_tpl_{digest}");
        let client = connect(&admin).await;
        // One process at a time builds the template.
        client
            .execute("SELECT pg_advisory_lock(747701)", &[])
            .await
            .unwrap();
        let exists = client
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&template])
            .await
            .unwrap()
            .is_some();
        if !exists {
            let building = format!("{template}_building");
            client
                .batch_execute(&format!("DROP DATABASE IF EXISTS {building}"))
                .await
                .unwrap();
            client
                .batch_execute(&format!("CREATE DATABASE {building}"))
                .await
                .unwrap();
            {
                let mut tpl = connect(&with_database(&admin, &building)).await;
                migrate(&mut tpl).await.expect("migrate the template");
            }
            // No session may connect to a template once it is built: autovacuum would, to
            // analyze the tables the migrations just made, and a copy waits for no session to
            // be connected to its source.
            client
                .batch_execute(&format!(
                    "ALTER DATABASE {building} RENAME TO {template};
                     ALTER DATABASE {template} WITH ALLOW_CONNECTIONS false"
                ))
                .await
                .unwrap();
        }
        client
            .execute("SELECT pg_advisory_unlock(747701)", &[])
            .await
            .unwrap();
        let name = format!("cr_test_{}", uuid::Uuid::now_v7().simple());
        // A template cannot be copied while another session is connected to it (the migrating
        // session closing, an autovacuum worker of a template built before connections were
        // shut off): such sessions are ended, and the copy tried again, for at most 10 s.
        let mut tries = 0;
        loop {
            match client
                .batch_execute(&format!(
                    "CREATE DATABASE {name} TEMPLATE {template} STRATEGY FILE_COPY"
                ))
                .await
            {
                Ok(()) => break,
                Err(e) if tries < 100 => {
                    tries += 1;
                    let _ = e;
                    let _ = client
                        .execute(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                             WHERE datname = $1 AND pid <> pg_backend_pid()",
                            &[&template],
                        )
                        .await;
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(e) => panic!(
                    "create test database: {}",
                    e.as_db_error().map_or(e.to_string(), |db| format!(
                        "{}: {}",
                        db.message(),
                        db.detail().unwrap_or("")
                    ))
                ),
            }
        }
        Self {
            url: with_database(&admin, &name),
            name,
        }
    }

    /// A new connection to this database.
    pub async fn client(&self) -> Client {
        connect(&self.url).await
    }

    /// A pool of at most `max_size` connections to this database.
    pub fn pool(&self, max_size: usize) -> deadpool_postgres::Pool {
        let config: tokio_postgres::Config = self.url.parse().expect("a test database URL");
        deadpool_postgres::Pool::builder(deadpool_postgres::Manager::new(
            config,
            tokio_postgres::NoTls,
        ))
        .max_size(max_size)
        .build()
        .expect("a pool of the test database")
    }
}
