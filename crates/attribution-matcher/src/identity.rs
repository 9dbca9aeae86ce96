//! The identity graph: which identifiers belong to one person.
//!
//! Identifiers seen together on one event belong to one person, and a person is the union of
//! every identifier ever seen together with another of theirs. In the database an identifier is
//! a row of `identities` keyed by the SHA-256 of `"<kind>:<normalised value>"`
//! ([`identifier_hash`]), so no email, phone or customer id is kept in clear here, filed under a
//! person of `persons`. Merging persons writes the merge, not the persons' pasts: the person that
//! joins another is marked `merged_into` it and listed among its `members`, and keeps its rows.
//! The per-workspace advisory lock of [`crate::claim`] makes one transaction at a time write a
//! workspace's graph, so merges are never lost and never deadlock.
//!
//! Within one worker step the graph of the events at hand is worked out in memory (see
//! [`crate::decide::step`]), and written back in a few batched statements at the end.

use events::{Event, IdentifierHash, MatchedBy};

/// What an identifier is; its wire name is part of the hashed text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IdentifierKind {
    /// The sender's stable user id.
    CustomerExternalId,
    /// A normalised email address.
    Email,
    /// A phone number in E.164.
    Phone,
    /// The id of a click registered with `POST /v1/clicks` (or named before it was).
    ClickId,
    /// Google Ads click id.
    Gclid,
    /// Google Ads click id for app campaigns on iOS.
    Gbraid,
    /// Google Ads click id for iOS web campaigns.
    Wbraid,
    /// Meta click id.
    Fbclid,
    /// Meta `_fbc` cookie.
    Fbc,
    /// Meta `_fbp` browser cookie.
    Fbp,
    /// TikTok click id.
    Ttclid,
    /// Microsoft Advertising click id.
    Msclkid,
    /// TikTok `_ttp` browser cookie.
    Ttp,
    /// LinkedIn first-party ad tracking id.
    LiFatId,
    /// Reddit click id.
    RdtCid,
    /// Snapchat click id.
    ScCid,
    /// Snapchat `_scid` browser cookie.
    Scid,
    /// Pinterest click id.
    Epik,
}

impl IdentifierKind {
    /// The kinds of the ad platforms' click ids, in the wire order of [`events::ClickIds`].
    pub const CLICK_IDS: [Self; 14] = [
        Self::Gclid,
        Self::Gbraid,
        Self::Wbraid,
        Self::Fbclid,
        Self::Fbc,
        Self::Fbp,
        Self::Ttclid,
        Self::Msclkid,
        Self::Ttp,
        Self::LiFatId,
        Self::RdtCid,
        Self::ScCid,
        Self::Scid,
        Self::Epik,
    ];

    /// The wire name of the field the identifier comes from.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CustomerExternalId => "customerExternalId",
            Self::Email => "email",
            Self::Phone => "phone",
            Self::ClickId => "clickId",
            Self::Gclid => "gclid",
            Self::Gbraid => "gbraid",
            Self::Wbraid => "wbraid",
            Self::Fbclid => "fbclid",
            Self::Fbc => "fbc",
            Self::Fbp => "fbp",
            Self::Ttclid => "ttclid",
            Self::Msclkid => "msclkid",
            Self::Ttp => "ttp",
            Self::LiFatId => "liFatId",
            Self::RdtCid => "rdtCid",
            Self::ScCid => "scCid",
            Self::Scid => "scid",
            Self::Epik => "epik",
        }
    }

    /// How a touchpoint found through an identifier of this kind was matched. The ad platforms'
    /// click ids are the event's own touchpoint, so they read as `direct`.
    pub fn matched_by(self) -> MatchedBy {
        match self {
            Self::CustomerExternalId => MatchedBy::CustomerExternalId,
            Self::Email => MatchedBy::Email,
            Self::Phone => MatchedBy::Phone,
            Self::ClickId => MatchedBy::ClickId,
            _ => MatchedBy::Direct,
        }
    }

    fn from_click_id_field(name: &str) -> Option<Self> {
        Self::CLICK_IDS
            .into_iter()
            .find(|kind| kind.as_str() == name)
    }
}

/// One identifier of an event, hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Identifier {
    /// What it is.
    pub kind: IdentifierKind,
    /// The head of SHA-256 of `"<kind>:<normalised value>"` ([`events::identifier_hash`]).
    pub hash: IdentifierHash,
}

/// The form an identifier of `kind` is stored in ([`events::identifier_hash`]). `value` must
/// already be normalised (an [`events::Email`] or [`events::PhoneE164`] is).
pub fn identifier_hash(kind: IdentifierKind, value: &str) -> IdentifierHash {
    events::identifier_hash(kind.as_str(), value)
}

/// The identifiers of `event` in the order that decides `matchedBy` when several could have
/// linked it: `customerExternalId`, email, phone, `clickId`, then the ad platforms' click ids.
pub fn event_identifiers(event: &Event) -> Vec<Identifier> {
    let mut out = Vec::with_capacity(4);
    let mut push = |kind, value: &str| {
        out.push(Identifier {
            kind,
            hash: identifier_hash(kind, value),
        });
    };
    if let Some(id) = &event.customer_external_id {
        push(IdentifierKind::CustomerExternalId, id);
    }
    if let Some(email) = &event.email {
        push(IdentifierKind::Email, email.as_str());
    }
    if let Some(phone) = &event.phone {
        push(IdentifierKind::Phone, phone.as_str());
    }
    if let Some(click_id) = &event.click_id {
        push(IdentifierKind::ClickId, click_id);
    }
    for (name, value) in event.click_ids.iter() {
        if let Some(kind) = IdentifierKind::from_click_id_field(name) {
            push(kind, value);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_covers_kind_and_value() {
        let email = identifier_hash(IdentifierKind::Email, "user@gmail.com");
        assert_eq!(
            hex_of(&email),
            events::sha256_hex("email:user@gmail.com")[..32],
            "the head of SHA-256 of \"<kind>:<value>\""
        );
        assert_ne!(
            identifier_hash(IdentifierKind::CustomerExternalId, "x"),
            identifier_hash(IdentifierKind::ClickId, "x")
        );
    }

    fn hex_of(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn identifiers_come_in_matched_by_order() {
        let event: Event = serde_json::from_value(serde_json::json!({
            "event": "lead", "timestamp": "2026-04-10T12:00:00Z", "eventName": "lead",
            "gclid": "g", "clickId": "c", "phone": "+14155550123", "email": "a@b.co",
            "customerExternalId": "u",
        }))
        .unwrap();
        let kinds: Vec<_> = event_identifiers(&event).iter().map(|i| i.kind).collect();
        assert_eq!(
            kinds,
            [
                IdentifierKind::CustomerExternalId,
                IdentifierKind::Email,
                IdentifierKind::Phone,
                IdentifierKind::ClickId,
                IdentifierKind::Gclid
            ]
        );
    }
}
