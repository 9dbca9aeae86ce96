//! The identity graph: which identifiers belong to one person.
//!
//! Identifiers seen together on one event belong to one person, and a person is the union of
//! every identifier ever seen together with another of theirs. In the database a person is a
//! `person_id` shared by rows of `identities`, each keyed by the SHA-256 of
//! `"<kind>:<normalised value>"` ([`identifier_hash`]), so no email, phone or customer id is kept
//! in clear here. Merging persons re-points the rows of the losers to the survivor (the oldest
//! person id); the per-workspace advisory lock of [`crate::claim`] makes one transaction at a time
//! write a workspace's graph, so merges are never lost and never deadlock.
//!
//! Within one worker step the graph of the events at hand is worked out in memory (a
//! union-find over persons and identifiers that also carries each person's clicks), and written
//! back in a few batched statements at the end.

use std::collections::HashMap;

use events::{Event, MatchedBy};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::choice::Touch;

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
    /// SHA-256 of `"<kind>:<normalised value>"`.
    pub hash: [u8; 32],
}

/// SHA-256 of `"<kind>:<value>"`, the form an identifier is stored in. `value` must already be
/// normalised (an [`events::Email`] or [`events::PhoneE164`] is).
pub fn identifier_hash(kind: IdentifierKind, value: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(kind.as_str().as_bytes());
    hasher.update(b":");
    hasher.update(value.as_bytes());
    hasher.finalize().into()
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

/// A node of the in-memory graph: a person already in the database, or an identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Node {
    Person(Uuid),
    Identifier([u8; 32]),
}

/// What the graph knows about one set of linked nodes (kept at its root).
#[derive(Debug, Default)]
struct Component {
    /// Indices into [`Graph::touches`].
    touches: Vec<usize>,
    /// The earliest of those clicks.
    earliest_touch: Option<OffsetDateTime>,
    /// True when pending events may belong here: it holds a stored person, or an event of this
    /// step went pending in it.
    may_have_pending: bool,
    /// The earliest click that pending events here may not have seen yet.
    gained_since: Option<OffsetDateTime>,
}

/// A union-find over persons and identifiers that carries each component's clicks, and notes
/// which components gained clicks their pending events may match.
#[derive(Debug, Default)]
pub(crate) struct Graph {
    index: HashMap<Node, usize>,
    nodes: Vec<Node>,
    parent: Vec<usize>,
    components: Vec<Component>,
    touches: Vec<Touch>,
}

impl Graph {
    /// The index of `node`, added as a component of its own when new.
    pub(crate) fn node(&mut self, node: Node) -> usize {
        if let Some(&index) = self.index.get(&node) {
            return index;
        }
        let index = self.nodes.len();
        self.index.insert(node, index);
        self.nodes.push(node);
        self.parent.push(index);
        self.components.push(Component {
            may_have_pending: matches!(node, Node::Person(_)),
            ..Component::default()
        });
        index
    }

    /// The root of `index`'s component.
    pub(crate) fn find(&mut self, mut index: usize) -> usize {
        while self.parent[index] != index {
            let grandparent = self.parent[self.parent[index]];
            self.parent[index] = grandparent;
            index = grandparent;
        }
        index
    }

    /// Links the components of `a` and `b`; answers the root of the result.
    pub(crate) fn union(&mut self, a: usize, b: usize) -> usize {
        let (a, b) = (self.find(a), self.find(b));
        if a == b {
            return a;
        }
        let (big, small) = if self.components[a].touches.len() >= self.components[b].touches.len() {
            (a, b)
        } else {
            (b, a)
        };
        let small_component = std::mem::take(&mut self.components[small]);
        let big_component = &mut self.components[big];
        // Each side's pending events may now match the other side's clicks.
        let mut gained = min_time(big_component.gained_since, small_component.gained_since);
        if big_component.may_have_pending {
            gained = min_time(gained, small_component.earliest_touch);
        }
        if small_component.may_have_pending {
            gained = min_time(gained, big_component.earliest_touch);
        }
        big_component.gained_since = gained;
        big_component.touches.extend(small_component.touches);
        big_component.earliest_touch =
            min_time(big_component.earliest_touch, small_component.earliest_touch);
        big_component.may_have_pending |= small_component.may_have_pending;
        self.parent[small] = big;
        big
    }

    /// Adds a click to the component of `index`: a click already stored with it (`new` false),
    /// or one this step links to it, which its pending events may match (`new` true).
    pub(crate) fn add_touch(&mut self, index: usize, touch: Touch, new: bool) {
        let root = self.find(index);
        let clicked_at = touch.touchpoint.clicked_at;
        let touch_index = self.touches.len();
        self.touches.push(touch);
        let component = &mut self.components[root];
        component.touches.push(touch_index);
        component.earliest_touch = min_time(component.earliest_touch, Some(clicked_at));
        if new && component.may_have_pending {
            component.gained_since = min_time(component.gained_since, Some(clicked_at));
        }
    }

    /// Notes that an event of this step went pending in the component of `index`.
    pub(crate) fn mark_pending(&mut self, index: usize) {
        let root = self.find(index);
        self.components[root].may_have_pending = true;
    }

    /// The clicks of the component whose root is `root`.
    pub(crate) fn touches_of(&self, root: usize) -> impl Iterator<Item = &Touch> + '_ {
        self.components[root]
            .touches
            .iter()
            .map(|&index| &self.touches[index])
    }

    /// Every node, with its index.
    pub(crate) fn nodes(&self) -> impl Iterator<Item = (usize, Node)> + '_ {
        self.nodes.iter().copied().enumerate()
    }

    /// The earliest click gained by the component whose root is `root`, if any.
    pub(crate) fn gained_since(&self, root: usize) -> Option<OffsetDateTime> {
        self.components[root].gained_since
    }
}

fn min_time(a: Option<OffsetDateTime>, b: Option<OffsetDateTime>) -> Option<OffsetDateTime> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use events::{ClickIds, Touchpoint};
    use time::macros::datetime;

    fn touch(owner: u8, at: OffsetDateTime) -> Touch {
        Touch {
            owner: [owner; 32],
            touchpoint: Touchpoint {
                click_id: None,
                clicked_at: at,
                click_ids: ClickIds::default(),
                utm: None,
                url: None,
                referrer: None,
                ip: None,
                user_agent: None,
            },
        }
    }

    #[test]
    fn the_hash_covers_kind_and_value() {
        let email = identifier_hash(IdentifierKind::Email, "user@gmail.com");
        assert_eq!(
            hex_of(&email),
            events::sha256_hex("email:user@gmail.com"),
            "SHA-256 of \"<kind>:<value>\""
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

    #[test]
    fn a_union_notes_clicks_that_the_other_sides_pending_events_have_not_seen() {
        let mut graph = Graph::default();
        let stored = graph.node(Node::Person(Uuid::now_v7()));
        let fresh = graph.node(Node::Identifier([1; 32]));
        graph.add_touch(fresh, touch(1, datetime!(2026-04-01 0:00 UTC)), true);
        // A fresh identifier with no pending events gains nothing from its own click.
        let fresh_root = graph.find(fresh);
        assert_eq!(graph.gained_since(fresh_root), None);
        let root = graph.union(stored, fresh);
        assert_eq!(
            graph.gained_since(root),
            Some(datetime!(2026-04-01 0:00 UTC))
        );
        assert_eq!(graph.touches_of(root).count(), 1);
        assert_eq!(graph.find(stored), graph.find(fresh));
    }

    #[test]
    fn linking_two_fresh_identifiers_gains_nothing() {
        let mut graph = Graph::default();
        let a = graph.node(Node::Identifier([1; 32]));
        let b = graph.node(Node::Identifier([2; 32]));
        graph.add_touch(a, touch(1, datetime!(2026-04-01 0:00 UTC)), true);
        let root = graph.union(a, b);
        assert_eq!(graph.gained_since(root), None);
        graph.mark_pending(b);
        graph.add_touch(b, touch(2, datetime!(2026-04-02 0:00 UTC)), true);
        let root = graph.find(a);
        assert_eq!(
            graph.gained_since(root),
            Some(datetime!(2026-04-02 0:00 UTC))
        );
    }
}
