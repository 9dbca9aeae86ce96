//! What the attribution stage decides about an event, and what it hands to the forwarder: the
//! touchpoint (the ad click behind a conversion), how it was found, and which kinds of
//! destination the conversion is routed to, with a human-readable reason for each.
//!
//! These types are the contract between the `attribution-matcher` crate, which makes them, and
//! the `forwarder` crate, which turns routes into dispatches. Their serde form is the wire form of
//! `attribution` and `routing` in `GET /v1/events/{id}`.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::event::{ClickIds, Event, Utm};
use crate::timestamp::rfc3339_millis;

/// Where attribution stands for an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttributionStatus {
    /// A touchpoint was found.
    Matched,
    /// Nothing links the event to a click (the pending window is over, or it was never needed).
    Unmatched,
    /// Nothing links it yet; a later event or click may, until the pending window ends.
    Pending,
}

/// How the touchpoint was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum MatchedBy {
    /// Click ids on the event itself (`gclid`, `fbclid`, …).
    Direct,
    /// The event's `clickId` names a registered click.
    ClickId,
    /// Through the person's `customerExternalId`.
    CustomerExternalId,
    /// Through the person's email.
    Email,
    /// Through the person's phone.
    Phone,
}

/// An ad click or short-link click: the touchpoint of a conversion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Touchpoint {
    /// The registered click's id, when the touchpoint is a registered click.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub click_id: Option<String>,
    /// When the click happened (for a direct touchpoint: when the event happened).
    #[serde(with = "rfc3339_millis")]
    pub clicked_at: OffsetDateTime,
    /// The ad platforms' click ids (`gclid`, `fbclid`, …), at the top level on the wire.
    #[serde(flatten)]
    pub click_ids: ClickIds,
    /// UTM parameters of the click.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utm: Option<Utm>,
    /// Landing page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Referrer of the click.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referrer: Option<String>,
    /// Client IP at the click.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpAddr>,
    /// Client user agent at the click.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

/// The attribution of one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attribution {
    /// Matched, unmatched or pending.
    pub status: AttributionStatus,
    /// How the touchpoint was found (when matched).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matched_by: Option<MatchedBy>,
    /// The touchpoint under the model (`last_click`: the most recent click in the window).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub click: Option<Touchpoint>,
    /// Always `"last_click"` for `click`.
    pub model: String,
    /// The person's first click in the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_touch: Option<Touchpoint>,
    /// Until when a pending event waits for a late link.
    #[serde(
        default,
        with = "rfc3339_millis::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub pending_until: Option<OffsetDateTime>,
    /// When this was decided.
    #[serde(with = "rfc3339_millis")]
    pub decided_at: OffsetDateTime,
    /// Identifiers of the event that attribution did not use, and why (an identifier shared by
    /// too many people stops linking them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignored_identifiers: Vec<IgnoredIdentifier>,
}

/// An identifier of an event that attribution left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IgnoredIdentifier {
    /// The event's field that holds it (`email`, `phone`, `customerExternalId`, …); never its value.
    pub field: String,
    /// Why: `too_common` (it would link more people into one person than the operator allows).
    pub reason: String,
}

/// The kinds of destination a conversion can be routed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DestinationType {
    /// Google Ads offline click conversions (gclid, gbraid, wbraid).
    GoogleAds,
    /// Meta Conversions API (fbclid, fbc).
    Meta,
    /// Microsoft Advertising offline conversions (msclkid).
    MicrosoftAds,
    /// LinkedIn Conversions API (liFatId)
    #[serde(rename = "linkedin")]
    LinkedIn,
    /// Reddit Conversions API (rdtCid)
    Reddit,
    /// TikTok Events API (ttclid)
    #[serde(rename = "tiktok")]
    TikTok,
    /// Snap Conversions API (scCid)
    Snapchat,
    /// Pinterest Conversions API (epik)
    Pinterest,
    /// Signed webhooks: every subscribed event.
    Webhook,
}

impl DestinationType {
    /// Every destination type, in a fixed order.
    pub const ALL: [Self; 9] = [
        Self::GoogleAds,
        Self::Meta,
        Self::MicrosoftAds,
        Self::LinkedIn,
        Self::Reddit,
        Self::TikTok,
        Self::Snapchat,
        Self::Pinterest,
        Self::Webhook,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::GoogleAds => "google_ads",
            Self::Meta => "meta",
            Self::MicrosoftAds => "microsoft_ads",
            Self::LinkedIn => "linkedin",
            Self::Reddit => "reddit",
            Self::TikTok => "tiktok",
            Self::Snapchat => "snapchat",
            Self::Pinterest => "pinterest",
            Self::Webhook => "webhook",
        }
    }
}

/// Whether one kind of destination gets the conversion, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteDecision {
    /// The kind of destination.
    #[serde(rename = "type")]
    pub destination_type: DestinationType,
    /// True when destinations of this type that subscribe to the event's kind get it now.
    pub dispatch: bool,
    /// Why, for people: what was present, what was missing (one of a fixed set of sentences,
    /// shared rather than copied for every event).
    pub reason: std::borrow::Cow<'static, str>,
}

/// An event whose attribution was decided (first decision or a late match), with its routes:
/// what the forwarder turns into dispatches, in the same transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct RoutedEvent {
    /// The event's workspace.
    pub workspace_id: Uuid,
    /// The event's id.
    pub event_id: Uuid,
    /// When it was received.
    pub received_at: OffsetDateTime,
    /// The event as stored.
    pub event: Event,
    /// Its attribution.
    pub attribution: Attribution,
    /// One decision per destination type.
    pub routes: Vec<RouteDecision>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destination_types_serialise_as_their_wire_names() {
        for destination_type in DestinationType::ALL {
            assert_eq!(
                serde_json::to_value(destination_type).unwrap(),
                serde_json::Value::String(destination_type.as_str().to_owned())
            );
            let back: DestinationType =
                serde_json::from_value(serde_json::Value::String(destination_type.as_str().into()))
                    .unwrap();
            assert_eq!(back, destination_type);
        }
    }
}
