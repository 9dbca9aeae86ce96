//! The types shared by the dispatch queue and the platform clients: what a destination is
//! configured with, the conversion snapshot a dispatch carries, and what a send achieved.

use std::time::Duration;

use events::{Attribution, Event, EventKind};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// Which Google API a `google_ads` destination uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GoogleApi {
    /// Data Manager API `events:ingest` (the default).
    #[default]
    DataManager,
    /// Google Ads API `uploadClickConversions` / `uploadConversionAdjustments` (v26).
    GoogleAdsApi,
}

/// Conversion action per event kind.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PerKind {
    /// For leads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lead: Option<String>,
    /// For sales.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sale: Option<String>,
}

impl PerKind {
    /// The value for a kind.
    pub fn get(&self, kind: EventKind) -> Option<&str> {
        match kind {
            EventKind::Lead => self.lead.as_deref(),
            EventKind::Sale => self.sale.as_deref(),
        }
    }
}

/// `google_ads` destination config (public: returned by the API).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GoogleAdsConfig {
    /// Which API.
    #[serde(default)]
    pub api: GoogleApi,
    /// Customer id, 10 digits (dashes removed).
    pub customer_id: String,
    /// Manager account id sent as `login-customer-id`, 10 digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_customer_id: Option<String>,
    /// Conversion action ids per event kind.
    pub conversion_actions: PerKind,
    /// Data Manager `eventSource` (default `WEB`).
    #[serde(default = "default_event_source")]
    pub event_source: String,
    /// Ask Google to validate without storing.
    #[serde(default)]
    pub validate_only: bool,
}

fn default_event_source() -> String {
    "WEB".into()
}

/// `google_ads` credentials (write-only).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GoogleCredentials {
    /// OAuth client id.
    pub client_id: String,
    /// OAuth client secret.
    pub client_secret: String,
    /// OAuth refresh token.
    pub refresh_token: String,
    /// Developer token, sent when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub developer_token: Option<String>,
}

impl std::fmt::Debug for GoogleCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GoogleCredentials { .. }")
    }
}

/// `meta` destination config (public).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetaConfig {
    /// Pixel (dataset) id, digits.
    pub pixel_id: String,
    /// `action_source` (default `system_generated`).
    #[serde(default = "default_action_source")]
    pub action_source: String,
    /// `test_event_code`, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_event_code: Option<String>,
    /// Event names per kind (default `Lead` / `Purchase`).
    #[serde(default = "default_event_names")]
    pub event_names: PerKind,
    /// Send events without fbclid/fbc, matched on user data only.
    #[serde(default)]
    pub match_without_click_id: bool,
}

fn default_action_source() -> String {
    "system_generated".into()
}

fn default_event_names() -> PerKind {
    PerKind {
        lead: Some("Lead".into()),
        sale: Some("Purchase".into()),
    }
}

/// `meta` credentials (write-only).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetaCredentials {
    /// System-user access token.
    pub access_token: String,
}

impl std::fmt::Debug for MetaCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetaCredentials { .. }")
    }
}

/// `webhook` destination config (public).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookConfig {
    /// Where to POST; https, or http on loopback.
    pub url: String,
}

/// `webhook` credentials (write-only).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookCredentials {
    /// HMAC-SHA256 signing secret.
    pub secret: String,
}

impl std::fmt::Debug for WebhookCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookCredentials { .. }")
    }
}

/// The conversion a dispatch carries: a snapshot taken when it was routed, so that a send
/// needs nothing but the dispatch row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Conversion {
    /// The dispatch's id.
    pub dispatch_id: Uuid,
    /// The event's id: Meta's `event_id`; for leads without leadId also Google's order id.
    pub event_id: Uuid,
    /// When it was received.
    #[serde(with = "events::rfc3339_millis")]
    pub received_at: OffsetDateTime,
    /// The event as stored.
    pub event: Event,
    /// Its attribution (the touchpoint's click ids and click time).
    pub attribution: Attribution,
}

/// What one send did for one conversion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The platform has it.
    Succeeded,
    /// The platform already had it (e.g. Google `ORDER_ID_ALREADY_IN_USE` on a re-send).
    AlreadyDelivered,
    /// Try again later; `after` when the platform said when (Retry-After, retryDelay, 6 h for
    /// `TOO_RECENT_EVENT`).
    Retry {
        /// The platform's message.
        error: String,
        /// The earliest next attempt the platform asked for.
        after: Option<Duration>,
    },
    /// Never going to work: fail now, keeping the platform's message.
    Permanent {
        /// The platform's message.
        error: String,
    },
    /// Not sent, on purpose (expired click, consent denied, …).
    Skipped {
        /// Why.
        reason: String,
    },
}

/// What one request to a platform did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchResult {
    /// The HTTP status, when an answer came.
    pub http_status: Option<u16>,
    /// The start of the answer, with nothing secret in it (at most 2 KiB).
    pub response_excerpt: String,
    /// One outcome per conversion sent, in the order given.
    pub outcomes: Vec<Outcome>,
}
