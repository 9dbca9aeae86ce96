//! Who is calling: the `Authorization: Bearer` key, looked up through a short-lived cache (a
//! revocation reaches every server within [`CACHE_TTL`]), checked against its scopes, and held to
//! its rate limit.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
use deadpool_postgres::Pool;
use futures_util::future::LocalBoxFuture;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use uuid::Uuid;

use crate::keys::{self, KeyRecord, Scope};
use crate::problem::ApiError;

/// How long a looked-up key is trusted before it is read again.
pub const CACHE_TTL: Duration = Duration::from_secs(2);

/// The caller of a `/v1` request.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The workspace every query of this request is scoped to.
    pub workspace_id: Uuid,
    /// The key's public prefix (safe to log).
    pub key_prefix: String,
    scopes: Vec<Scope>,
}

impl Principal {
    /// Answers 403 unless the key has `scope`.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.scopes.contains(&scope) {
            Ok(())
        } else {
            Err(ApiError::Forbidden {
                scope: scope.as_str(),
            })
        }
    }
}

/// Looks keys up, caches them briefly, and rate-limits them.
pub struct Authenticator {
    pool: Pool,
    cache: Mutex<HashMap<String, (Instant, Option<KeyRecord>)>>,
    used: Mutex<HashSet<String>>,
    limiter: Option<DefaultKeyedRateLimiter<String>>,
}

impl Authenticator {
    /// `rate_limit` requests per second per key (burst twice that); 0 turns limiting off.
    pub fn new(pool: Pool, rate_limit: u32) -> Self {
        let limiter = NonZeroU32::new(rate_limit).map(|rate| {
            let burst = rate.saturating_mul(NonZeroU32::MIN.saturating_add(1));
            RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        });
        Self {
            pool,
            cache: Mutex::new(HashMap::new()),
            used: Mutex::new(HashSet::new()),
            limiter,
        }
    }

    async fn record(&self, prefix: &str) -> Result<Option<KeyRecord>, ApiError> {
        {
            let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some((at, record)) = cache.get(prefix) {
                if at.elapsed() < CACHE_TTL {
                    return Ok(record.clone());
                }
            }
        }
        let client = self.pool.get().await?;
        let record = keys::find_key(&client, prefix).await?;
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() > 100_000 {
            cache.clear();
        }
        cache.insert(prefix.to_owned(), (Instant::now(), record.clone()));
        Ok(record)
    }

    /// Checks the `Authorization` header of a request.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Principal, ApiError> {
        // The scheme is case-insensitive (RFC 9110).
        let key = authorization
            .and_then(|h| h.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, key)| key.trim())
            .ok_or(ApiError::Unauthorized)?;
        let prefix = keys::key_prefix(key).ok_or(ApiError::Unauthorized)?;
        let record = self.record(prefix).await?.ok_or(ApiError::Unauthorized)?;
        let presented = keys::hash_key(key);
        if record.revoked || !constant_time_eq(&presented, &record.key_hash) {
            return Err(ApiError::Unauthorized);
        }
        if let Some(limiter) = &self.limiter {
            if let Err(not_until) = limiter.check_key(&record.prefix) {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                return Err(ApiError::RateLimited {
                    retry_after: wait.as_secs().max(1),
                });
            }
        }
        self.used
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(record.prefix.clone());
        Ok(Principal {
            workspace_id: record.workspace_id,
            key_prefix: record.prefix,
            scopes: record.scopes,
        })
    }

    /// Writes the keys used since the last call as used now (run every few seconds).
    pub async fn flush_last_used(&self) -> Result<(), ApiError> {
        let used: Vec<String> =
            std::mem::take(&mut *self.used.lock().unwrap_or_else(PoisonError::into_inner))
                .into_iter()
                .collect();
        if used.is_empty() {
            return Ok(());
        }
        let client = self.pool.get().await?;
        keys::touch_keys(&client, &used).await?;
        if let Some(limiter) = &self.limiter {
            limiter.retain_recent();
        }
        Ok(())
    }
}

/// Compares secrets in time that does not depend on where they differ.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl FromRequest for Principal {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let auth = req.app_data::<web::Data<Authenticator>>().cloned();
        let header = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Box::pin(async move {
            let auth: Arc<Authenticator> = auth
                .ok_or_else(|| ApiError::Internal("authenticator not configured".into()))?
                .into_inner();
            auth.authenticate(header.as_deref()).await
        })
    }
}
