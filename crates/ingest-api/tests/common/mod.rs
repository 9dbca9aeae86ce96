//! `TestApp`: the real service, in process, on a port of its own, over a fresh database.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;

use ingest_api::keys::{self, Scope};
use ingest_api::{db, Application, Settings};
use serde_json::Value;
use test_support::TestDb;

/// A fresh, migrated database for a test.
pub async fn test_db() -> TestDb {
    TestDb::new(&db::migrations_id(), |client| {
        Box::pin(async move { db::migrate_all(client).await.map_err(|e| e.to_string()) })
    })
    .await
}

/// A time `days` ago, on the wire: platforms refuse clicks and conversions past their age limits,
/// so what must reach a fake platform is recent.
pub fn days_ago(days: i64) -> String {
    events::format_timestamp(time::OffsetDateTime::now_utc() - time::Duration::days(days))
}

/// A fixed test key that seals destination credentials.
pub const SECRET_KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

/// Settings for a service on `database_url`, listening on a free loopback port.
pub fn settings(database_url: &str) -> Settings {
    settings_with(database_url, None)
}

/// Settings whose ad platforms all live at `platforms` (a fake server's address), with a
/// retry schedule of milliseconds.
pub fn settings_with(database_url: &str, platforms: Option<&str>) -> Settings {
    let url = database_url.to_owned();
    let platforms = platforms.map(str::to_owned);
    Settings::from_lookup(move |name| match name {
        "DATABASE_URL" => Some(url.clone()),
        "CONVRELAY_LISTEN" => Some("127.0.0.1:0".into()),
        "CONVRELAY_RATE_LIMIT" => Some("0".into()),
        "CONVRELAY_HTTP_WORKERS" => Some("2".into()),
        "CONVRELAY_DB_TIMEOUT_MS" => Some("2000".into()),
        "CONVRELAY_SECRET_KEY" => Some(SECRET_KEY.into()),
        "CONVRELAY_RETRY_INITIAL_MS" => Some("10".into()),
        "CONVRELAY_RETRY_MAX_MS" => Some("50".into()),
        "CONVRELAY_RETRY_MAX_ATTEMPTS" => Some("3".into()),
        "CONVRELAY_GOOGLE_ADS_URL"
        | "CONVRELAY_GOOGLE_DATA_MANAGER_URL"
        | "CONVRELAY_META_URL"
        | "CONVRELAY_MICROSOFT_ADS_URL"
        | "CONVRELAY_PINTEREST_URL"
        | "CONVRELAY_SNAPCHAT_URL"
        | "CONVRELAY_TIKTOK_URL"
        | "CONVRELAY_REDDIT_URL"
        | "CONVRELAY_LINKEDIN_URL" => platforms.clone(),
        "CONVRELAY_GOOGLE_OAUTH_URL" => platforms.as_ref().map(|p| format!("{p}/token")),
        "CONVRELAY_MICROSOFT_OAUTH_URL" => platforms.as_ref().map(|p| format!("{p}/ms-token")),
        _ => None,
    })
    .unwrap()
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub db: TestDb,
    pub http: reqwest::Client,
    /// A key with the ingest and read scopes.
    pub key: String,
    pub server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl TestApp {
    pub async fn spawn() -> Self {
        let db = test_db().await;
        Self::spawn_with(db, settings).await
    }

    pub async fn spawn_with(db: TestDb, settings: impl FnOnce(&str) -> Settings) -> Self {
        Self::spawn_built(db, settings, true).await
    }

    /// The API alone (`serve --no-workers`): stored events wait for a worker.
    pub async fn spawn_without_workers(db: TestDb) -> Self {
        Self::spawn_built(db, settings, false).await
    }

    async fn spawn_built(
        db: TestDb,
        settings: impl FnOnce(&str) -> Settings,
        workers: bool,
    ) -> Self {
        let app = Application::build_with(settings(&db.url), workers)
            .await
            .unwrap();
        let addr = app.addr();
        let server = tokio::spawn(app.run_until_stopped());
        let key = create_key(&db, "acme", &[Scope::Ingest, Scope::Read]).await;
        Self {
            addr,
            db,
            http: reqwest::Client::new(),
            key,
            server,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// POSTs a JSON body with the app's key.
    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.post_raw(path, &self.key, serde_json::to_vec(body).unwrap(), None)
            .await
    }

    pub async fn post_raw(
        &self,
        path: &str,
        key: &str,
        body: Vec<u8>,
        idempotency_key: Option<&str>,
    ) -> reqwest::Response {
        let mut req = self
            .http
            .post(self.url(path))
            .bearer_auth(key)
            .header("Content-Type", "application/json")
            .body(body);
        if let Some(k) = idempotency_key {
            req = req.header("Idempotency-Key", k);
        }
        req.send().await.unwrap()
    }

    /// GETs with another key.
    pub async fn get_as(&self, key: &str, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
    }

    /// POSTs JSON with another key.
    pub async fn post_as(&self, key: &str, path: &str, body: &Value) -> reqwest::Response {
        self.post_raw(path, key, serde_json::to_vec(body).unwrap(), None)
            .await
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(&self.key)
            .send()
            .await
            .unwrap()
    }

    /// Adds a webhook destination named `CRM` for `events`, sending to `url`, with `key` (admin
    /// scope); checks that it was created.
    pub async fn add_webhook(&self, key: &str, url: &str, events: &[&str]) {
        let hook = serde_json::json!({"type": "webhook", "name": "CRM", "events": events,
                                      "config": {"url": url},
                                      "credentials": {"secret": "whsec_0123456789abcdef"}});
        let res = self.post_as(key, "/v1/destinations", &hook).await;
        assert_eq!(
            res.status(),
            201,
            "{}",
            res.text().await.unwrap_or_default()
        );
    }

    /// Counts the rows of a table in the test's database.
    pub async fn count(&self, table: &str) -> i64 {
        let client = self.db.client().await;
        client
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .unwrap()
            .get(0)
    }
}

pub async fn create_key(db: &TestDb, workspace: &str, scopes: &[Scope]) -> String {
    let pool = db::pool(&db.url, 1, std::time::Duration::from_secs(5)).unwrap();
    let client = pool.get().await.unwrap();
    keys::create_key(&client, workspace, scopes).await.unwrap()
}

pub fn seed_lead() -> Value {
    serde_json::from_str(r#"{"event":"lead","timestamp":"2026-04-10T12:34:56.000Z","clickId":"clickid_123","customerExternalId":"user_123","email":"user@gmail.com","name":"user","mode":"deferred"}"#).unwrap()
}

pub fn seed_sale() -> Value {
    serde_json::from_str(r#"{"event":"sale","timestamp":"2026-04-10T12:45:10.000Z","clickId":"clk_abc123","customerExternalId":"user_123","email":"alex@example.com","currency":"USD","amount":199.0,"invoiceId":"inv_987"}"#).unwrap()
}

pub fn sale(invoice: &str) -> Value {
    let mut s = seed_sale();
    s["invoiceId"] = Value::String(invoice.into());
    s
}
