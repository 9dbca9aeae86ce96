//! The ad-platform adapters: one module per platform behind one trait, and the HTTP plumbing
//! they share. Nothing here touches the database: the forwarder hands a batch of
//! [`Conversion`]s and the destination's settings, and gets a [`SendReport`] back.
//!
//! Each platform module implements [`Platform`]: it reads and checks its own `config` and
//! `credentials`, declares its [`Limits`] (batch size, the oldest event and click it accepts, the
//! dedup key it honours, its test mode), normalises and hashes user data by its own rules, builds
//! the requests for a batch and classifies the answer per conversion into an [`Outcome`]
//! (succeeded, already delivered, retry later, permanent, skipped). [`adapter`] is the registry:
//! the forwarder only ever holds a `&dyn Adapter` and drives every platform the same way, and the
//! age limits ([`deliver`]) are applied to all of them before anything is sent.
//!
//! Every platform sends through one loop (`batch`): its module says how one conversion
//! becomes one row of its wire format (or why it is not sent), how the request for some rows is
//! built and what an answer means for each row; the loop groups the rows into requests, gets
//! the OAuth access token where the platform exchanges a refresh token (and refreshes it once
//! after a refusal), retries transport failures, 408, 429 and 5xx honouring `Retry-After`,
//! sends again without the rows a whole-request refusal named (or splits a request refused for
//! a row it did not name), parks the destination on a long 429 and records every request.
//!
//! A call is one attempt for a batch: it may take several HTTP requests (an OAuth refresh, the
//! one retry after a 401, the re-send of events a whole-batch refusal did not name), but it
//! never waits out a backoff: the caller schedules the next attempt with [`RetryPolicy`].
//!
//! Nothing secret or personal leaves an adapter in a log line or a record: response excerpts
//! are redacted (token-like JSON keys and every credential in use) and cut at 2 KiB; errors never
//! carry a URL (some platforms take the token in the query string); identifiers are logged as
//! hash prefixes at most.
//!
//! # Adding a platform
//!
//! 1. One module, `src/<platform>.rs`: its `Config` and `Credentials` (serde, camelCase), their
//!    checks (every bad field listed), its [`Limits`] and the [`Platform`] impl whose `send` is
//!    the shared loop; its steps over that loop (`batch::JsonApi`): the row of one conversion
//!    normalised and hashed by its rules, the request for some rows, the answer classified per
//!    row (and the refresh-token grant, when it has one); unit tests of the wire examples from
//!    the platform's docs.
//! 2. One registry line in [`adapter`], one variant of [`events::DestinationType`], its click ids
//!    in [`events::ClickIds`] and its row in the matcher's routing table, its base address in
//!    [`Endpoints`] (`CONVRELAY_<PLATFORM>_URL`).
//! 3. Its config and credentials schema, with an example, in `openapi.yaml`.
//! 4. Its strict fake in `tests/support/` (refusing what the real API refuses, failing on
//!    purpose when told) and its tests in `tests/<platform>.rs`.

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod adapter;
mod batch;
pub mod classify;
pub mod delivery;
pub mod google;
pub mod hashing;
pub mod ids;
pub mod linkedin;
pub mod mapping;
pub mod meta;
pub mod microsoft;
pub mod model;
mod oauth;
pub mod pinterest;
pub mod reddit;
pub mod retry;
pub mod settings;
pub mod snapchat;
pub mod tiktok;
pub mod webhook;

use std::time::{Duration, Instant};

use events::DestinationType;
use reqwest::header::HeaderMap;
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

pub use adapter::{
    deliver, too_old, Adapter, Limits, Platform, AGE_MARGIN, NOT_SUPPORTED, TOO_OLD_FOR_PLATFORM,
};
use model::{Conversion, Outcome};
pub use oauth::REFRESH_MARGIN;
pub use retry::RetryPolicy;

/// The adapter of a destination type: the registry, one line per platform.
pub fn adapter(destination_type: DestinationType) -> &'static dyn Adapter {
    match destination_type {
        DestinationType::GoogleAds => &google::Google,
        DestinationType::Meta => &meta::Meta,
        DestinationType::MicrosoftAds => &microsoft::MicrosoftAds,
        DestinationType::LinkedIn => &linkedin::LinkedIn,
        DestinationType::Reddit => &reddit::Reddit,
        DestinationType::TikTok => &tiktok::TikTok,
        DestinationType::Snapchat => &snapchat::Snapchat,
        DestinationType::Pinterest => &pinterest::Pinterest,
        DestinationType::Webhook => &webhook::Webhook,
    }
}

/// Most bytes of a response kept in a [`RequestRecord`].
pub const MAX_EXCERPT_BYTES: usize = 2048;

/// Most bytes of a platform's answer read; a Google partial failure for 2,000 rows fits easily.
const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// Where the platforms are. Operators set them (`CONVRELAY_GOOGLE_ADS_URL`, …); tests point
/// them at fake servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// Google Ads API base address (`https://googleads.googleapis.com`).
    pub google_ads: String,
    /// Data Manager API base address (`https://datamanager.googleapis.com`).
    pub google_data_manager: String,
    /// Google's OAuth token endpoint, the full address (`https://oauth2.googleapis.com/token`).
    pub google_oauth: String,
    /// Graph API base address (`https://graph.facebook.com`).
    pub meta: String,
    /// Microsoft Advertising Campaign Management base address
    /// (`https://campaign.api.bingads.microsoft.com`).
    pub microsoft_ads: String,
    /// The Microsoft identity platform's token endpoint, the full address
    /// (`https://login.microsoftonline.com/common/oauth2/v2.0/token`).
    pub microsoft_oauth: String,
    /// LinkedIn Conversions API base address (`https://api.linkedin.com`).
    pub linkedin: String,
    /// Reddit Conversions API base address (`https://ads-api.reddit.com`).
    pub reddit: String,
    /// TikTok Events API base address (`https://business-api.tiktok.com`).
    pub tiktok: String,
    /// Snap Conversions API base address (`https://tr.snapchat.com`).
    pub snapchat: String,
    /// Pinterest Conversions API base address (`https://api.pinterest.com`).
    pub pinterest: String,
}

impl Default for Endpoints {
    fn default() -> Self {
        Self {
            google_ads: "https://googleads.googleapis.com".into(),
            google_data_manager: "https://datamanager.googleapis.com".into(),
            google_oauth: "https://oauth2.googleapis.com/token".into(),
            meta: "https://graph.facebook.com".into(),
            microsoft_ads: "https://campaign.api.bingads.microsoft.com".into(),
            microsoft_oauth: "https://login.microsoftonline.com/common/oauth2/v2.0/token".into(),
            linkedin: "https://api.linkedin.com".into(),
            reddit: "https://ads-api.reddit.com".into(),
            tiktok: "https://business-api.tiktok.com".into(),
            snapchat: "https://tr.snapchat.com".into(),
            pinterest: "https://api.pinterest.com".into(),
        }
    }
}

/// Which call a [`RequestRecord`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestTarget {
    /// Google OAuth refresh-token exchange.
    GoogleOAuth,
    /// Data Manager API `events:ingest`.
    GoogleDataManagerIngest,
    /// Data Manager API `requestStatus:retrieve`.
    GoogleDataManagerRequestStatus,
    /// Google Ads API `uploadClickConversions`.
    GoogleAdsUploadClickConversions,
    /// Google Ads API `uploadConversionAdjustments`.
    GoogleAdsUploadConversionAdjustments,
    /// Meta Conversions API `/{pixel}/events`.
    MetaEvents,
    /// Microsoft identity platform refresh-token exchange.
    MicrosoftOAuth,
    /// Microsoft Advertising `OfflineConversions/Apply`.
    MicrosoftOfflineConversions,
    /// Microsoft Advertising `OfflineConversionAdjustments/Apply` (restatements, retractions).
    MicrosoftOfflineConversionAdjustments,
    /// LinkedIn Conversions API requests.
    LinkedInConversionEvents,
    /// Reddit Conversions API requests.
    RedditConversionEvents,
    /// TikTok Events API requests.
    TikTokEvents,
    /// Snap Conversions API requests.
    SnapchatEvents,
    /// Pinterest Conversions API requests.
    PinterestEvents,
    /// A webhook receiver.
    Webhook,
}

impl RequestTarget {
    /// A stable name for logs and storage.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::GoogleOAuth => "google_oauth",
            Self::GoogleDataManagerIngest => "google_data_manager_ingest",
            Self::GoogleDataManagerRequestStatus => "google_data_manager_request_status",
            Self::GoogleAdsUploadClickConversions => "google_ads_upload_click_conversions",
            Self::GoogleAdsUploadConversionAdjustments => {
                "google_ads_upload_conversion_adjustments"
            }
            Self::MetaEvents => "meta_events",
            Self::MicrosoftOAuth => "microsoft_oauth",
            Self::MicrosoftOfflineConversions => "microsoft_offline_conversions",
            Self::MicrosoftOfflineConversionAdjustments => {
                "microsoft_offline_conversion_adjustments"
            }
            Self::LinkedInConversionEvents => "linkedin_conversion_events",
            Self::RedditConversionEvents => "reddit_conversion_events",
            Self::TikTokEvents => "tiktok_events",
            Self::SnapchatEvents => "snapchat_events",
            Self::PinterestEvents => "pinterest_events",
            Self::Webhook => "webhook",
        }
    }
}

/// One HTTP request made for a send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// What was called.
    pub target: RequestTarget,
    /// The input positions of the conversions this request carried (for an OAuth exchange: the
    /// conversions waiting on it).
    pub conversions: Vec<usize>,
    /// The HTTP status, when an answer came.
    pub http_status: Option<u16>,
    /// From sending the request to the end of the answer (or the failure).
    pub duration: Duration,
    /// The start of the answer, redacted, at most [`MAX_EXCERPT_BYTES`].
    pub response_excerpt: String,
    /// What went wrong with the request as a whole (transport error, timeout, error status), if
    /// anything; per-conversion errors are in the outcomes.
    pub error: Option<String>,
    /// The platform's own id of the request (Google's `request-id` header, Meta's
    /// `fbtrace_id`), for support tickets.
    pub platform_request_id: Option<String>,
}

/// What one send did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendReport {
    /// One outcome per conversion, in input order.
    pub outcomes: Vec<Outcome>,
    /// Every HTTP request made, in the order made.
    pub requests: Vec<RequestRecord>,
    /// Set when the platform asked to come back much later because a quota is spent: the
    /// destination waits, and the conversions this call could not deliver spend no attempt.
    pub park: Option<delivery::Park>,
    /// Set when the token endpoint rotated the destination's refresh token: its credentials
    /// should be stored again with the new one.
    pub rotated: Option<Rotated>,
}

/// A refresh token the token endpoint handed out in place of the destination's, and the
/// destination's credentials with it (filled in by the adapter that knows their shape). Never
/// shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Rotated {
    pub(crate) refresh_token: String,
    pub(crate) credentials: Option<Value>,
}

impl Rotated {
    /// The destination's credentials holding the new refresh token (the credentials' JSON, as
    /// its adapter reads them), when the adapter could write them.
    pub fn credentials(&self) -> Option<&Value> {
        self.credentials.as_ref()
    }
}

impl std::fmt::Debug for Rotated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Rotated { .. }")
    }
}

impl SendReport {
    /// The last request that carried the conversion at input position `index` (the one whose
    /// answer decided its outcome); `None` when it was not sent (skipped, or refused before
    /// sending).
    pub fn request_for(&self, index: usize) -> Option<&RequestRecord> {
        self.requests
            .iter()
            .rev()
            .find(|record| record.conversions.contains(&index))
    }

    /// Every conversion gets the same outcome, with no request made.
    pub fn uniform(count: usize, outcome: &Outcome) -> Self {
        Self {
            outcomes: vec![outcome.clone(); count],
            requests: Vec::new(),
            park: None,
            rotated: None,
        }
    }
}

/// Outcomes being collected for a batch, filled in as answers come.
struct Collector {
    outcomes: Vec<Option<Outcome>>,
    requests: Vec<RequestRecord>,
    /// The longest park an answer asked for.
    park: Option<delivery::Park>,
    /// Credentials in use, blanked out of every outcome's message (a platform may echo them).
    secrets: Vec<String>,
    /// A new refresh token the token endpoint handed out.
    refresh_token: Option<String>,
}

impl Collector {
    fn new(count: usize) -> Self {
        Self {
            outcomes: vec![None; count],
            requests: Vec::new(),
            park: None,
            secrets: Vec::new(),
            refresh_token: None,
        }
    }

    /// Notes the park an answer asks for, if it does (the longest one wins).
    fn park_if(&mut self, http_status: Option<u16>, outcome: &Outcome) {
        if let Some(park) = delivery::park_for(http_status, outcome) {
            if self
                .park
                .as_ref()
                .is_none_or(|known| known.wait < park.wait)
            {
                self.park = Some(park);
            }
        }
    }

    /// The credentials in use, for a record.
    fn secret_list(&self) -> Vec<String> {
        self.secrets.clone()
    }

    fn add_secret(&mut self, secret: &str) {
        if !self.secrets.iter().any(|known| known == secret) {
            self.secrets.push(secret.to_owned());
        }
    }

    fn set(&mut self, index: usize, outcome: Outcome) {
        if let Some(slot) = self.outcomes.get_mut(index) {
            *slot = Some(outcome);
        }
    }

    fn set_all(&mut self, indexes: &[usize], outcome: &Outcome) {
        for &index in indexes {
            self.set(index, outcome.clone());
        }
    }

    fn finish(self) -> SendReport {
        let secrets: Vec<&str> = self.secrets.iter().map(String::as_str).collect();
        let outcomes = self
            .outcomes
            .into_iter()
            .map(|outcome| {
                match outcome.unwrap_or_else(|| {
                    classify::retry(
                        "internal: no outcome was recorded for this conversion",
                        None,
                    )
                }) {
                    Outcome::Retry { error, after } => Outcome::Retry {
                        error: redact_text(&error, &secrets),
                        after,
                    },
                    Outcome::Permanent { error } => Outcome::Permanent {
                        error: redact_text(&error, &secrets),
                    },
                    other => other,
                }
            })
            .collect();
        SendReport {
            outcomes,
            requests: self.requests,
            park: self.park,
            rotated: self.refresh_token.map(|refresh_token| Rotated {
                refresh_token,
                credentials: None,
            }),
        }
    }
}

/// The answer to one HTTP request, or why there was none.
struct Exchange {
    status: Option<u16>,
    headers: HeaderMap,
    body: Vec<u8>,
    duration: Duration,
    transport_error: Option<String>,
}

impl Exchange {
    fn is_success(&self) -> bool {
        self.status
            .is_some_and(|status| (200..300).contains(&status))
    }

    fn retry_after(&self) -> Option<Duration> {
        let value = self
            .headers
            .get(reqwest::header::RETRY_AFTER)?
            .to_str()
            .ok()?;
        classify::parse_retry_after(value, OffsetDateTime::now_utc())
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    }

    /// The outcome when no answer came: a retried failure.
    fn transport_outcome(&self) -> Option<Outcome> {
        self.transport_error
            .as_ref()
            .map(|error| classify::retry(error.clone(), None))
    }

    fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// The platform clients, sharing one connection pool and one OAuth token cache.
#[derive(Debug, Clone)]
pub struct Platforms {
    client: reqwest::Client,
    endpoints: Endpoints,
    timeout: Duration,
    tokens: oauth::TokenCache,
}

impl Platforms {
    /// Clients for `endpoints`; every request (connect, send, answer) must finish within
    /// `timeout`, else it counts as a retried failure. Redirects are not followed.
    pub fn new(endpoints: Endpoints, timeout: Duration) -> Self {
        let built = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("convrelay-forwarder/", env!("CARGO_PKG_VERSION")))
            .build();
        let client = match built {
            Ok(client) => client,
            Err(error) => {
                // Only a broken TLS setup gets here; the default client is the best left.
                tracing::error!(error = %error.without_url(), "building the HTTP client failed");
                reqwest::Client::default()
            }
        };
        Self {
            client,
            endpoints,
            timeout,
            tokens: oauth::TokenCache::default(),
        }
    }

    /// Where requests go.
    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    /// Sends a request and reads the answer (up to a limit), never failing: a transport error
    /// or timeout is recorded in the [`Exchange`], without the URL.
    async fn execute(&self, request: reqwest::RequestBuilder) -> Exchange {
        let started = Instant::now();
        let mut exchange = Exchange {
            status: None,
            headers: HeaderMap::new(),
            body: Vec::new(),
            duration: Duration::ZERO,
            transport_error: None,
        };
        match request.send().await {
            Ok(mut response) => {
                exchange.status = Some(response.status().as_u16());
                exchange.headers = response.headers().clone();
                loop {
                    match response.chunk().await {
                        Ok(Some(chunk)) => {
                            let room = MAX_BODY_BYTES.saturating_sub(exchange.body.len());
                            exchange
                                .body
                                .extend_from_slice(&chunk[..chunk.len().min(room)]);
                            if room <= chunk.len() {
                                break;
                            }
                        }
                        Ok(None) => break,
                        Err(error) => {
                            exchange.transport_error = Some(self.describe(error));
                            break;
                        }
                    }
                }
            }
            Err(error) => exchange.transport_error = Some(self.describe(error)),
        }
        exchange.duration = started.elapsed();
        exchange
    }

    /// A transport error in words, without its URL.
    fn describe(&self, error: reqwest::Error) -> String {
        let kind = if error.is_timeout() {
            format!("timeout after {} ms", self.timeout.as_millis())
        } else if error.is_connect() {
            "connection failed".to_owned()
        } else {
            "request failed".to_owned()
        };
        let error = error.without_url();
        let mut text = format!("{kind}: {error}");
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        text
    }
}

/// Builds the record of one request; `secrets` are replaced wherever they appear.
fn record(
    target: RequestTarget,
    conversions: Vec<usize>,
    exchange: &Exchange,
    error: Option<String>,
    secrets: &[&str],
) -> RequestRecord {
    // A `requestId` in the body comes first: Data Manager's is what an upload's processing
    // status is read back by.
    let from_body = |pointers: &[&str]| {
        exchange.json().and_then(|body| {
            pointers
                .iter()
                .find_map(|pointer| body.pointer(pointer).and_then(Value::as_str))
                .map(str::to_owned)
        })
    };
    let platform_request_id = from_body(&["/requestId"])
        .or_else(|| exchange.header("request-id"))
        .or_else(|| from_body(&["/fbtrace_id", "/error/fbtrace_id"]));
    let error = error
        .or_else(|| exchange.transport_error.clone())
        .or_else(|| {
            exchange
                .status
                .filter(|status| !(200..300).contains(status))
                .map(|status| format!("HTTP {status}"))
        });
    RequestRecord {
        target,
        conversions,
        http_status: exchange.status,
        duration: exchange.duration,
        response_excerpt: excerpt(&exchange.body, secrets),
        error: error.map(|text| redact_text(&text, secrets)),
        platform_request_id,
    }
}

/// The start of a response body with nothing secret in it: values under token-, secret- or
/// password-like JSON keys and every known credential are replaced, then the text is cut at
/// [`MAX_EXCERPT_BYTES`] on a character boundary.
pub fn excerpt(body: &[u8], secrets: &[&str]) -> String {
    let text = match serde_json::from_slice::<Value>(body) {
        Ok(mut value) => {
            redact_json(&mut value);
            value.to_string()
        }
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    };
    truncate(redact_text(&text, secrets), MAX_EXCERPT_BYTES)
}

fn redact_json(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                let key = key.to_ascii_lowercase();
                if ["token", "secret", "password", "authorization"]
                    .iter()
                    .any(|word| key.contains(word))
                {
                    *value = Value::String("[redacted]".into());
                } else {
                    redact_json(value);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_json),
        _ => {}
    }
}

fn redact_text(text: &str, secrets: &[&str]) -> String {
    secrets
        .iter()
        .filter(|secret| secret.len() >= 4)
        .fold(text.to_owned(), |text, secret| {
            text.replace(secret, "[redacted]")
        })
}

fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// Our public id of an event, as the API shows it: `evt_` and the UUID's hex.
pub fn event_wire_id(id: Uuid) -> String {
    ids::to_wire(ids::EVENT, id)
}

/// The id a platform deduplicates a conversion by (Google's `orderId` / `transactionId`, Meta's
/// `custom_data.order_id`): the sale's invoice id or the lead's id, else our event id. The same
/// on every attempt, so that a re-send is counted once.
pub fn order_id(conversion: &Conversion) -> String {
    conversion
        .event
        .natural_key()
        .map(str::to_owned)
        .unwrap_or_else(|| event_wire_id(conversion.event_id))
}

/// A base address joined with a path, with no doubled slash.
fn join(base: &str, path: &str) -> String {
    format!("{}{path}", base.trim_end_matches('/'))
}

/// A click id or cookie of a conversion by its wire name (`msclkid`, `liFatId`, …): the
/// touchpoint's, else the event's own; blank counts as absent.
pub(crate) fn click_value<'a>(conversion: &'a Conversion, wire: &str) -> Option<&'a str> {
    let usable = |value: Option<&'a str>| value.map(str::trim).filter(|v| !v.is_empty());
    usable(
        conversion
            .attribution
            .click
            .as_ref()
            .and_then(|click| click.click_ids.get(wire)),
    )
    .or_else(|| usable(conversion.event.click_ids.get(wire)))
}

/// The person's IP address and user agent: the event's, else the touchpoint's.
pub(crate) fn client_of(conversion: &Conversion) -> (Option<String>, Option<&str>) {
    let event = &conversion.event;
    let touchpoint = conversion.attribution.click.as_ref();
    let ip = event
        .ip
        .or_else(|| touchpoint.and_then(|click| click.ip))
        .map(|ip| ip.to_string());
    let agent = event
        .user_agent
        .as_deref()
        .or_else(|| touchpoint.and_then(|click| click.user_agent.as_deref()))
        .map(str::trim)
        .filter(|agent| !agent.is_empty());
    (ip, agent)
}

/// The page of the conversion (`pageUrl`, else the touchpoint's landing page), if it is http(s).
pub(crate) fn page_of(conversion: &Conversion) -> Option<&str> {
    conversion
        .event
        .page_url
        .as_deref()
        .or_else(|| {
            conversion
                .attribution
                .click
                .as_ref()
                .and_then(|click| click.url.as_deref())
        })
        .map(str::trim)
        .filter(|url| url.starts_with("https://") || url.starts_with("http://"))
}

/// True when the person denied ad user data: no user data leaves for ad platforms.
pub(crate) fn user_data_denied(conversion: &Conversion) -> bool {
    conversion
        .event
        .consent
        .is_some_and(|consent| consent.ad_user_data_denied())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn excerpts_hide_tokens_and_known_secrets_and_stay_short() {
        let body = serde_json::to_vec(
            &json!({"access_token": "ya29.secret", "nested": [{"refresh_token": "1//x"}],
            "message": "token abcd1234 was refused"}),
        )
        .unwrap();
        let text = excerpt(&body, &["abcd1234"]);
        assert!(
            !text.contains("ya29.secret") && !text.contains("1//x") && !text.contains("abcd1234"),
            "{text}"
        );
        assert!(text.contains("[redacted]"));
        let long = "é".repeat(5000);
        let cut = excerpt(long.as_bytes(), &[]);
        assert!(cut.len() <= MAX_EXCERPT_BYTES && cut.len() >= MAX_EXCERPT_BYTES - 1);
        let plain = excerpt(b"<html>sk_live_1234 oops</html>", &["sk_live_1234"]);
        assert_eq!(plain, "<html>[redacted] oops</html>");
    }

    #[test]
    fn default_endpoints_are_the_real_addresses() {
        let endpoints = Endpoints::default();
        assert_eq!(
            endpoints.google_oauth,
            "https://oauth2.googleapis.com/token"
        );
        assert_eq!(
            join(&endpoints.meta, "/v26.0/1/events"),
            "https://graph.facebook.com/v26.0/1/events"
        );
        assert_eq!(join("http://x/", "/a"), "http://x/a");
    }
}
