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
    /// The key that seals destination credentials (`CONVRELAY_SECRET_KEY`, 32 bytes, hex or
    /// base64). Without it, destinations cannot be created and nothing is forwarded.
    pub secret_key: Option<Secret>,
    /// Google Ads API address (`CONVRELAY_GOOGLE_ADS_URL`).
    pub google_ads_url: String,
    /// Google Data Manager API address (`CONVRELAY_GOOGLE_DATA_MANAGER_URL`).
    pub google_data_manager_url: String,
    /// Google OAuth token endpoint (`CONVRELAY_GOOGLE_OAUTH_URL`).
    pub google_oauth_url: String,
    /// Meta Graph API address (`CONVRELAY_META_URL`).
    pub meta_url: String,
    /// Microsoft Advertising API address (`CONVRELAY_MICROSOFT_ADS_URL`).
    pub microsoft_ads_url: String,
    /// Microsoft identity platform token endpoint (`CONVRELAY_MICROSOFT_OAUTH_URL`).
    pub microsoft_oauth_url: String,
    /// Pinterest Conversions API address (`CONVRELAY_PINTEREST_URL`).
    pub pinterest_url: String,
    /// Snap Conversions API address (`CONVRELAY_SNAPCHAT_URL`).
    pub snapchat_url: String,
    /// TikTok Events API address (`CONVRELAY_TIKTOK_URL`).
    pub tiktok_url: String,
    /// Reddit Conversions API address (`CONVRELAY_REDDIT_URL`).
    pub reddit_url: String,
    /// LinkedIn Conversions API address (`CONVRELAY_LINKEDIN_URL`).
    pub linkedin_url: String,
    /// First retry delay (`CONVRELAY_RETRY_INITIAL_MS`).
    pub retry_initial_ms: u64,
    /// Longest retry delay (`CONVRELAY_RETRY_MAX_MS`).
    pub retry_max_ms: u64,
    /// Attempts before a dispatch fails (`CONVRELAY_RETRY_MAX_ATTEMPTS`).
    pub retry_max_attempts: u32,
    /// How long an unmatched sale waits for a late link (`CONVRELAY_PENDING_WINDOW_SECS`).
    pub pending_window: Duration,
    /// The most identifiers of one kind (customer ids, emails, phones) a person may hold before
    /// the one that would add more is too common to link (`CONVRELAY_IDENTITY_MAX_LINKS`).
    pub identity_max_links: usize,
    /// The most customer ids a person may hold (`CONVRELAY_IDENTITY_MAX_CUSTOMER_IDS`): an
    /// e-mail or phone that would join two customers is shared and stops linking.
    pub identity_max_customer_ids: usize,
    /// How long a worker's claim lasts (`CONVRELAY_LEASE_SECS`).
    pub lease: Duration,
    /// Days events (and idle identity links and clicks) are kept (`CONVRELAY_RETENTION_DAYS`).
    pub retention_days: u32,
    /// First status check of an upload a platform processes later, and the backoff's base
    /// (`CONVRELAY_CONFIRMATION_POLL_MS`, default 30 minutes).
    pub confirmation_poll: Duration,
    /// The part of each platform's published request quota this service may use
    /// (`CONVRELAY_QUOTA_SHARE`, above 0 and at most 1).
    pub quota_share: f64,
    /// The bearer token `/metrics` asks for (`CONVRELAY_METRICS_TOKEN`); open when unset.
    pub metrics_token: Option<Secret>,
    /// What happens to an event whose `eventName` the conversion-events catalog does not define
    /// (`CONVRELAY_UNDEFINED_EVENT_NAMES`, `accept` or `reject`).
    pub undefined_event_names: UndefinedEventNames,
}

/// `CONVRELAY_UNDEFINED_EVENT_NAMES`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UndefinedEventNames {
    /// Taken like any other (the default).
    #[default]
    Accept,
    /// A 422 on `eventName`.
    Reject,
}

impl std::str::FromStr for UndefinedEventNames {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "accept" => Ok(Self::Accept),
            "reject" => Ok(Self::Reject),
            other => Err(format!("must be accept or reject, not {other:?}")),
        }
    }
}

/// A secret setting: never printed.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
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
            db_pool_size: parse(&lookup, "CONVRELAY_DB_POOL_SIZE", "10")?,
            http_workers: match lookup("CONVRELAY_HTTP_WORKERS") {
                Some(_) => parse(&lookup, "CONVRELAY_HTTP_WORKERS", "")?,
                None => std::thread::available_parallelism().map_or(2, |n| n.get()),
            },
            db_timeout: Duration::from_millis(parse(&lookup, "CONVRELAY_DB_TIMEOUT_MS", "5000")?),
            secret_key: lookup("CONVRELAY_SECRET_KEY")
                .filter(|s| !s.trim().is_empty())
                .map(|s| Secret(s.trim().to_owned())),
            google_ads_url: text(
                &lookup,
                "CONVRELAY_GOOGLE_ADS_URL",
                "https://googleads.googleapis.com",
            ),
            google_data_manager_url: text(
                &lookup,
                "CONVRELAY_GOOGLE_DATA_MANAGER_URL",
                "https://datamanager.googleapis.com",
            ),
            google_oauth_url: text(
                &lookup,
                "CONVRELAY_GOOGLE_OAUTH_URL",
                "https://oauth2.googleapis.com/token",
            ),
            meta_url: text(&lookup, "CONVRELAY_META_URL", "https://graph.facebook.com"),
            microsoft_ads_url: text(
                &lookup,
                "CONVRELAY_MICROSOFT_ADS_URL",
                "https://campaign.api.bingads.microsoft.com",
            ),
            linkedin_url: text(
                &lookup,
                "CONVRELAY_LINKEDIN_URL",
                "https://api.linkedin.com",
            ),
            reddit_url: text(
                &lookup,
                "CONVRELAY_REDDIT_URL",
                "https://ads-api.reddit.com",
            ),
            tiktok_url: text(
                &lookup,
                "CONVRELAY_TIKTOK_URL",
                "https://business-api.tiktok.com",
            ),
            snapchat_url: text(&lookup, "CONVRELAY_SNAPCHAT_URL", "https://tr.snapchat.com"),
            pinterest_url: text(
                &lookup,
                "CONVRELAY_PINTEREST_URL",
                "https://api.pinterest.com",
            ),
            microsoft_oauth_url: text(
                &lookup,
                "CONVRELAY_MICROSOFT_OAUTH_URL",
                "https://login.microsoftonline.com/common/oauth2/v2.0/token",
            ),
            retry_initial_ms: parse(&lookup, "CONVRELAY_RETRY_INITIAL_MS", "5000")?,
            retry_max_ms: parse(&lookup, "CONVRELAY_RETRY_MAX_MS", "3600000")?,
            retry_max_attempts: parse(&lookup, "CONVRELAY_RETRY_MAX_ATTEMPTS", "12")?,
            pending_window: Duration::from_secs(parse(
                &lookup,
                "CONVRELAY_PENDING_WINDOW_SECS",
                "86400",
            )?),
            identity_max_links: parse(&lookup, "CONVRELAY_IDENTITY_MAX_LINKS", "50")?,
            identity_max_customer_ids: parse(&lookup, "CONVRELAY_IDENTITY_MAX_CUSTOMER_IDS", "1")?,
            lease: Duration::from_secs(parse(&lookup, "CONVRELAY_LEASE_SECS", "30")?),
            retention_days: retention_days(&lookup)?,
            confirmation_poll: Duration::from_millis(
                parse::<u64>(&lookup, "CONVRELAY_CONFIRMATION_POLL_MS", "1800000")?.max(1),
            ),
            quota_share: share(&lookup)?,
            metrics_token: lookup("CONVRELAY_METRICS_TOKEN")
                .filter(|s| !s.trim().is_empty())
                .map(|s| Secret(s.trim().to_owned())),
            undefined_event_names: parse(&lookup, "CONVRELAY_UNDEFINED_EVENT_NAMES", "accept")?,
        })
    }
}

/// `CONVRELAY_RETENTION_DAYS`: 1 to 36500 (a hundred years), default 400.
fn retention_days(lookup: &impl Fn(&str) -> Option<String>) -> Result<u32, SettingError> {
    const NAME: &str = "CONVRELAY_RETENTION_DAYS";
    let days: u32 = parse(lookup, NAME, "400")?;
    if (1..=36_500).contains(&days) {
        Ok(days)
    } else {
        Err(SettingError {
            name: NAME,
            problem: format!("must be between 1 and 36500 days, not {days}"),
        })
    }
}

/// `CONVRELAY_QUOTA_SHARE`: a fraction above 0, at most 1.
fn share(lookup: &impl Fn(&str) -> Option<String>) -> Result<f64, SettingError> {
    let name = "CONVRELAY_QUOTA_SHARE";
    let value: f64 = parse(lookup, name, "1")?;
    if value.is_finite() && value > 0.0 && value <= 1.0 {
        Ok(value)
    } else {
        Err(SettingError {
            name,
            problem: format!("must be above 0 and at most 1, not {value}"),
        })
    }
}

fn text(lookup: &impl Fn(&str) -> Option<String>, name: &str, default: &str) -> String {
    lookup(name)
        .map(|v| v.trim().trim_end_matches('/').to_owned())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
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
        assert_eq!(s.map(|s| s.retention_days), Ok(400));
        assert_eq!(
            s.map(|s| s.undefined_event_names),
            Ok(UndefinedEventNames::Accept)
        );
    }

    #[test]
    fn undefined_event_names_are_accepted_or_rejected_and_nothing_else() {
        let read = |value: &'static str| {
            Settings::from_lookup(move |n| match n {
                "DATABASE_URL" => Some("postgres://x/y".into()),
                "CONVRELAY_UNDEFINED_EVENT_NAMES" => Some(value.into()),
                _ => None,
            })
            .map(|s| s.undefined_event_names)
            .map_err(|e| e.to_string())
        };
        assert_eq!(read("reject"), Ok(UndefinedEventNames::Reject));
        assert_eq!(read(" accept "), Ok(UndefinedEventNames::Accept));
        let err = read("drop").err().unwrap_or_default();
        assert!(err.starts_with("CONVRELAY_UNDEFINED_EVENT_NAMES"), "{err}");
    }

    #[test]
    fn retention_days_must_be_at_least_one() {
        for bad in ["0", "-1", "36501", "soon"] {
            let err = Settings::from_lookup(|n| match n {
                "DATABASE_URL" => Some("postgres://x/y".into()),
                "CONVRELAY_RETENTION_DAYS" => Some(bad.into()),
                _ => None,
            })
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
            assert!(err.starts_with("CONVRELAY_RETENTION_DAYS"), "{bad}: {err}");
        }
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
