//! OAuth 2.0 access tokens from a destination's refresh token (Google's token endpoint, the
//! Microsoft identity platform's), one cache for every platform that needs them.
//!
//! An access token lives an hour; it is cached per credential set and used until
//! [`REFRESH_MARGIN`] before it expires, so a busy destination exchanges its refresh token about
//! once an hour rather than once a request. Concurrent sends of one destination wait for a
//! single exchange. A 401 from the platform drops the cached token (once: whoever sees the 401 for the
//! token in the cache) so that the next call refreshes.
//!
//! A token endpoint that answers with a new refresh token (Microsoft's rotates them) has it
//! reported with the send ([`crate::Rotated`]), so that the destination's stored credentials
//! keep the newest one.
//!
//! A refresh token that the endpoint refuses with `invalid_grant` was revoked or has expired: nothing
//! but the customer reconnecting the account helps, so it is a permanent failure for every
//! conversion waiting on it. Tokens never appear in logs or records.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{classify, record, Collector, Platforms, RequestTarget};
use crate::model::Outcome;

/// A refresh-token grant: where to exchange it and with what.
#[derive(Clone, Copy)]
pub(crate) struct RefreshGrant<'a> {
    /// Who issues the token, for messages (`Google`, `Microsoft`).
    pub provider: &'static str,
    /// The token endpoint's full address.
    pub url: &'a str,
    /// How the exchange is recorded.
    pub target: RequestTarget,
    /// OAuth client id.
    pub client_id: &'a str,
    /// OAuth client secret (public clients have none).
    pub client_secret: Option<&'a str>,
    /// The refresh token.
    pub refresh_token: &'a str,
    /// The scope asked for, where the endpoint wants one.
    pub scope: Option<&'static str>,
}

/// How long before its expiry a cached access token is replaced.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(300);

#[derive(Debug, Clone)]
struct CachedToken {
    access_token: String,
    refresh_at: Instant,
}

type Slot = Arc<tokio::sync::Mutex<Option<CachedToken>>>;

/// Access tokens per credential set, shared by every send of a [`Platforms`].
#[derive(Clone, Default)]
pub struct TokenCache {
    slots: Arc<Mutex<HashMap<String, Slot>>>,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenCache { .. }")
    }
}

/// The cache key of a credential set: a hash, so the map holds no secret in the clear.
fn key(grant: &RefreshGrant<'_>) -> String {
    events::sha256_hex(&format!(
        "{}\u{0}{}\u{0}{}\u{0}{}",
        grant.url,
        grant.client_id,
        grant.client_secret.unwrap_or_default(),
        grant.refresh_token
    ))
}

impl TokenCache {
    fn slot(&self, grant: &RefreshGrant<'_>) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots.entry(key(grant)).or_default().clone()
    }

    /// A valid access token for `creds`: the cached one, or a fresh one from the token
    /// endpoint (the exchange is recorded in `collector`, against the conversions `waiting`).
    /// The error is the outcome for every conversion waiting on it.
    pub(super) async fn access_token(
        &self,
        platforms: &Platforms,
        grant: &RefreshGrant<'_>,
        waiting: &[usize],
        collector: &mut Collector,
    ) -> Result<String, Outcome> {
        let slot = self.slot(grant);
        let mut cached = slot.lock().await;
        if let Some(token) = cached.as_ref() {
            if Instant::now() < token.refresh_at {
                return Ok(token.access_token.clone());
            }
        }
        *cached = None;
        let (access_token, lifetime) = refresh(platforms, grant, waiting, collector).await?;
        if lifetime > REFRESH_MARGIN {
            *cached = Some(CachedToken {
                access_token: access_token.clone(),
                refresh_at: Instant::now() + (lifetime - REFRESH_MARGIN),
            });
        }
        Ok(access_token)
    }

    /// Forgets `used` after the platform refused it (401), unless another send already
    /// replaced it.
    pub(super) async fn invalidate(&self, grant: &RefreshGrant<'_>, used: &str) {
        let slot = self.slot(grant);
        let mut cached = slot.lock().await;
        if cached
            .as_ref()
            .is_some_and(|token| token.access_token == used)
        {
            *cached = None;
        }
    }
}

/// `application/x-www-form-urlencoded` text of `pairs`.
fn form_encode(pairs: &[(&str, &str)]) -> String {
    fn encode(text: &str, out: &mut String) {
        for byte in text.bytes() {
            match byte {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                    out.push(char::from(byte));
                }
                b' ' => out.push('+'),
                _ => out.push_str(&format!("%{byte:02X}")),
            }
        }
    }
    let mut out = String::new();
    for (position, (name, value)) in pairs.iter().enumerate() {
        if position > 0 {
            out.push('&');
        }
        encode(name, &mut out);
        out.push('=');
        encode(value, &mut out);
    }
    out
}

/// The refresh-token exchange: the new access token and how long it lives.
async fn refresh(
    platforms: &Platforms,
    grant: &RefreshGrant<'_>,
    waiting: &[usize],
    collector: &mut Collector,
) -> Result<(String, Duration), Outcome> {
    let mut pairs = vec![
        ("grant_type", "refresh_token"),
        ("client_id", grant.client_id),
    ];
    if let Some(secret) = grant.client_secret {
        pairs.push(("client_secret", secret));
    }
    pairs.push(("refresh_token", grant.refresh_token));
    if let Some(scope) = grant.scope {
        pairs.push(("scope", scope));
    }
    let body = form_encode(&pairs);
    let request = platforms
        .client
        .post(grant.url)
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .header(reqwest::header::ACCEPT, "application/json")
        .body(body);
    let exchange = platforms.execute(request).await;
    let parsed = exchange.json();
    let access_token = parsed
        .as_ref()
        .filter(|_| exchange.is_success())
        .and_then(|body| body.get("access_token"))
        .and_then(Value::as_str)
        .filter(|token| !token.is_empty())
        .map(str::to_owned);
    // Microsoft hands out a new refresh token with every exchange (and the old one expires on
    // its own schedule): the send reports it, for the destination's credentials to keep it.
    let rotated = parsed
        .as_ref()
        .filter(|_| access_token.is_some())
        .and_then(|body| body.get("refresh_token"))
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|token| !token.is_empty() && *token != grant.refresh_token)
        .map(str::to_owned);
    let mut secrets = vec![grant.refresh_token];
    if let Some(secret) = grant.client_secret {
        secrets.push(secret);
    }
    if let Some(token) = access_token.as_deref() {
        secrets.push(token);
    }
    if let Some(token) = rotated.as_deref() {
        secrets.push(token);
    }

    let result = match (exchange.transport_outcome(), access_token.clone()) {
        (Some(outcome), _) => Err(outcome),
        (None, Some(token)) => {
            let lifetime = parsed
                .as_ref()
                .and_then(|body| body.get("expires_in"))
                .and_then(Value::as_u64)
                .unwrap_or(3600);
            Ok((token, Duration::from_secs(lifetime)))
        }
        (None, None) => Err(token_failure(
            exchange.status.unwrap_or(0),
            exchange.retry_after(),
            parsed.as_ref(),
            grant.provider,
        )),
    };
    let error = result.as_ref().err().map(|outcome| match outcome {
        Outcome::Retry { error, .. } | Outcome::Permanent { error } => error.clone(),
        other => format!("{other:?}"),
    });
    collector.requests.push(record(
        grant.target,
        waiting.to_vec(),
        &exchange,
        error,
        &secrets,
    ));
    if let Some(token) = rotated {
        collector.add_secret(&token);
        collector.refresh_token = Some(token);
    }
    match &result {
        Ok(_) => tracing::debug!(
            provider = grant.provider,
            status = ?exchange.status,
            "access token refreshed"
        ),
        Err(outcome) => tracing::warn!(
            provider = grant.provider,
            status = ?exchange.status,
            outcome = ?outcome,
            "token refresh failed"
        ),
    }
    result
}

/// Why the token endpoint gave no token, as the outcome for the conversions waiting on it.
fn token_failure(
    status: u16,
    retry_after: Option<Duration>,
    body: Option<&Value>,
    provider: &str,
) -> Outcome {
    let code = body
        .and_then(|body| body.get("error"))
        .and_then(Value::as_str);
    let description = body
        .and_then(|body| body.get("error_description"))
        .and_then(Value::as_str)
        .unwrap_or("");
    match code {
        Some("invalid_grant") => classify::permanent(format!(
            "{provider} refused the refresh token (invalid_grant: it was revoked or has expired{}); \
             reconnect the {provider} account and update the destination's credentials",
            if description.is_empty() {
                String::new()
            } else {
                format!(": {description}")
            }
        )),
        Some(code @ ("invalid_client" | "unauthorized_client" | "invalid_scope")) => {
            classify::permanent(format!(
                "{provider} refused the OAuth client ({code}{}); check the destination's clientId and clientSecret",
                if description.is_empty() {
                    String::new()
                } else {
                    format!(": {description}")
                }
            ))
        }
        _ if status == 200 => classify::unexpected_body(status, "no access_token in the token answer"),
        Some(code) if (400..500).contains(&status) && status != 429 && status != 408 => {
            classify::permanent(format!("HTTP {status} from the token endpoint: {code}"))
        }
        Some(_) => classify::retry(format!("HTTP {status} from the token endpoint"), retry_after),
        None => classify::unexpected_body(status, "not an OAuth token answer"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn form_encoding_escapes_reserved_characters() {
        assert_eq!(
            form_encode(&[("a", "1//0x+y z"), ("b", "é&=")]),
            "a=1%2F%2F0x%2By+z&b=%C3%A9%26%3D"
        );
    }

    #[test]
    fn invalid_grant_is_permanent_and_outages_are_retried() {
        let revoked = json!({"error": "invalid_grant", "error_description": "Token has been expired or revoked."});
        let Outcome::Permanent { error } = token_failure(400, None, Some(&revoked), "Google")
        else {
            panic!("not permanent");
        };
        assert!(
            error.contains("invalid_grant") && error.contains("reconnect"),
            "{error}"
        );
        assert!(matches!(
            token_failure(
                400,
                None,
                Some(&json!({"error": "invalid_client"})),
                "Google"
            ),
            Outcome::Permanent { .. }
        ));
        assert!(matches!(
            token_failure(
                503,
                None,
                Some(&json!({"error": "backend_error"})),
                "Google"
            ),
            Outcome::Retry { .. }
        ));
        assert!(matches!(
            token_failure(502, None, None, "Google"),
            Outcome::Retry { .. }
        ));
        assert!(matches!(
            token_failure(200, None, Some(&json!({"token_type": "Bearer"})), "Google"),
            Outcome::Retry { .. }
        ));
    }
}
