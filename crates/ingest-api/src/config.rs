//! Operator settings, read from the environment once at start.

use std::net::SocketAddr;
use std::time::Duration;

/// Everything the service can be told by its operator.
#[derive(Debug, Clone)]
pub struct Settings {
    /// PostgreSQL connection string (`DATABASE_URL`).
    pub database_url: String,
    /// Where the API listens (`CONVRELAY_LISTEN`).
    pub listen: SocketAddr,
    /// Requests per second per API key, burst twice that; 0 turns it off (`CONVRELAY_RATE_LIMIT`).
    pub rate_limit: u32,
    /// How long an `Idempotency-Key` answer is kept (`CONVRELAY_IDEMPOTENCY_TTL_SECS`).
    pub idempotency_ttl: Duration,
    /// Database connections in the pool (`CONVRELAY_DB_POOL_SIZE`).
    pub db_pool_size: usize,
    /// HTTP worker threads (`CONVRELAY_HTTP_WORKERS`, default: one per core).
    pub http_workers: usize,
    /// How long a request may wait for the database before it is answered 503
    /// (`CONVRELAY_DB_TIMEOUT_MS`).
    pub db_timeout: Duration,
}

/// A setting that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{name}: {problem}")]
pub struct SettingError {
    name: &'static str,
    problem: String,
}

impl Settings {
    /// Reads the settings from the process environment.
    pub fn from_env() -> Result<Self, SettingError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `lookup` (the environment, or a test's map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SettingError> {
        let database_url = lookup("DATABASE_URL").ok_or(SettingError {
            name: "DATABASE_URL",
            problem: "is not set (`make run` starts a local PostgreSQL and sets it)".into(),
        })?;
        Ok(Self {
            database_url,
            listen: parse(&lookup, "CONVRELAY_LISTEN", "127.0.0.1:8080")?,
            rate_limit: parse(&lookup, "CONVRELAY_RATE_LIMIT", "1000")?,
            idempotency_ttl: Duration::from_secs(parse(
                &lookup,
                "CONVRELAY_IDEMPOTENCY_TTL_SECS",
                "86400",
            )?),
            db_pool_size: parse(&lookup, "CONVRELAY_DB_POOL_SIZE", "16")?,
            http_workers: match lookup("CONVRELAY_HTTP_WORKERS") {
                Some(_) => parse(&lookup, "CONVRELAY_HTTP_WORKERS", "")?,
                None => std::thread::available_parallelism().map_or(2, |n| n.get()),
            },
            db_timeout: Duration::from_millis(parse(&lookup, "CONVRELAY_DB_TIMEOUT_MS", "5000")?),
        })
    }
}

fn parse<T: std::str::FromStr>(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: &str,
) -> Result<T, SettingError>
where
    T::Err: std::fmt::Display,
{
    let raw = lookup(name).unwrap_or_else(|| default.to_owned());
    raw.trim().parse().map_err(|e: T::Err| SettingError {
        name,
        problem: format!("cannot read {raw:?}: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_when_only_the_database_is_given() {
        let s = Settings::from_lookup(|n| (n == "DATABASE_URL").then(|| "postgres://x/y".into()))
            .map_err(|e| e.to_string());
        let s = s.as_ref().map_err(String::as_str);
        assert_eq!(s.map(|s| s.listen.to_string()), Ok("127.0.0.1:8080".into()));
        assert_eq!(s.map(|s| s.rate_limit), Ok(1000));
        assert_eq!(s.map(|s| s.idempotency_ttl.as_secs()), Ok(86400));
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        let err = Settings::from_lookup(|n| match n {
            "DATABASE_URL" => Some("postgres://x/y".into()),
            "CONVRELAY_RATE_LIMIT" => Some("lots".into()),
            _ => None,
        })
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(err.starts_with("CONVRELAY_RATE_LIMIT"), "{err}");
    }

    #[test]
    fn a_missing_database_url_is_explained() {
        let err = Settings::from_lookup(|_| None).err().map(|e| e.to_string());
        assert!(err.unwrap_or_default().contains("make run"));
    }
}
