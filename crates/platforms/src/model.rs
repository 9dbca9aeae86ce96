//! The types every adapter shares: the conversion snapshot a dispatch carries, what a send
//! achieved for each conversion, and the per-event-kind setting most platforms need.

use std::time::Duration;

use events::{Attribution, Event, EventKind};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

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
    /// The routing decision as `GET /v1/events/{id}` shows it (webhooks send it along); `null`
    /// where nobody needs it.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub routing: Value,
    /// What the conversion-events catalog chose for this destination and the event's
    /// `eventName`: the platform's conversion action or event name to use instead of the
    /// destination's per-kind setting. `None` without a definition (or one that maps nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mapping: Option<EventMapping>,
}

impl Conversion {
    /// The conversion action the catalog chose for this destination (Google Ads conversion
    /// action id, Microsoft conversion goal name, LinkedIn conversion rule id), if any.
    pub fn mapped_conversion_action(&self) -> Option<&str> {
        self.mapping
            .as_ref()
            .and_then(|m| m.conversion_action.as_deref())
    }

    /// The platform event name the catalog chose for this destination (Meta, TikTok, Reddit,
    /// Snapchat, Pinterest), if any.
    pub fn mapped_event_name(&self) -> Option<&str> {
        self.mapping.as_ref().and_then(|m| m.event_name.as_deref())
    }
}

/// A conversion-events catalog mapping for one destination: which of the platform's conversion
/// actions, or which of its event names, an `eventName` is sent as.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventMapping {
    /// The platform's conversion action (or conversion goal, or conversion rule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversion_action: Option<String>,
    /// The platform's event name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_name: Option<String>,
}

impl EventMapping {
    /// True when it chooses nothing.
    pub fn is_empty(&self) -> bool {
        self.conversion_action.is_none() && self.event_name.is_none()
    }
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
    /// Not sent, on purpose (too old for the platform, consent denied, …).
    Skipped {
        /// Why.
        reason: String,
    },
}
