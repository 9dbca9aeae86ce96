//! Splitting a claim into parts that share nothing, so that a worker can decide them side by
//! side, each in its own transaction, on as many cores as it has.
//!
//! Two events belong to one part when they are connected: they share an identifier, or their
//! identifiers belong to one stored person (so the persons' clicks, merges and counts a decision
//! reads and writes are one part's alone). An identifier stored as too common links nobody and
//! does not connect events; an identifier new to the graph does, whatever the guardrail later
//! decides of it, because its row is written by whichever part meets it first.
//!
//! Events of one part keep their claim order; parts are independent, so the order in which two
//! parts' decisions are made cannot change either's.

use crate::HashMap;

use time::OffsetDateTime;
use uuid::Uuid;

use events::{Event, IdentifierHash};

use crate::identity::event_identifiers;
use crate::queue::Claim;

use super::KnownGraph;

/// A node of the union: an identifier, or the stored person an identifier belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Node {
    Identifier(IdentifierHash),
    Person(Uuid),
}

/// Union-find over the nodes the claim's events reach.
#[derive(Debug, Default)]
struct Components {
    index: HashMap<Node, usize>,
    parent: Vec<usize>,
}

impl Components {
    fn node(&mut self, node: Node) -> usize {
        let next = self.parent.len();
        let index = *self.index.entry(node).or_insert(next);
        if index == next {
            self.parent.push(next);
        }
        index
    }

    fn find(&mut self, mut index: usize) -> usize {
        while self.parent[index] != index {
            self.parent[index] = self.parent[self.parent[index]];
            index = self.parent[index];
        }
        index
    }

    fn union(&mut self, a: usize, b: usize) -> usize {
        let (a, b) = (self.find(a), self.find(b));
        if a != b {
            self.parent[b] = a;
        }
        a
    }
}

/// Splits `claim` into at most `parts` claims whose events share no identifier and no stored
/// person (see the module's doc), balanced by event count, each in claim order. `events` holds
/// the claimed events that are stored; those that are not go with the first part. Answers the
/// claim whole when its events are all connected (or `parts` is below 2).
pub fn split(
    claim: &Claim,
    events: &[(Uuid, OffsetDateTime, Event)],
    known: &KnownGraph,
    parts: usize,
) -> Vec<Claim> {
    if parts < 2 || claim.event_ids.len() < 2 {
        return vec![claim.clone()];
    }
    let bodies: HashMap<Uuid, &Event> = events.iter().map(|(id, _, event)| (*id, event)).collect();
    let mut components = Components::default();
    // Each claimed event's first node, or none for an event without identifiers (or not stored).
    let mut firsts: Vec<(Uuid, Option<usize>)> = Vec::with_capacity(claim.event_ids.len());
    for &event_id in &claim.event_ids {
        let Some(event) = bodies.get(&event_id) else {
            firsts.push((event_id, None));
            continue;
        };
        let hashed;
        let identifiers = match known.of_event.get(&event_id) {
            Some(identifiers) => identifiers,
            None => {
                hashed = event_identifiers(event);
                &hashed
            }
        };
        let mut first: Option<usize> = None;
        for identifier in identifiers {
            let stored = known.identifiers.get(&identifier.hash);
            if stored.is_some_and(|stored| stored.too_common) {
                continue;
            }
            let mut node = components.node(Node::Identifier(identifier.hash));
            if let Some(stored) = stored {
                let person = components.node(Node::Person(stored.person));
                node = components.union(node, person);
            }
            first = Some(match first {
                Some(first) => components.union(first, node),
                None => node,
            });
        }
        firsts.push((event_id, first));
    }

    // Components by size, largest first, each to the part holding the fewest events so far.
    let mut sizes: HashMap<usize, usize> = HashMap::default();
    let roots: Vec<(Uuid, Option<usize>)> = firsts
        .into_iter()
        .map(|(event_id, first)| (event_id, first.map(|node| components.find(node))))
        .collect();
    for (_, root) in &roots {
        if let Some(root) = root {
            *sizes.entry(*root).or_default() += 1;
        }
    }
    let mut by_size: Vec<(usize, usize)> = sizes.into_iter().collect();
    by_size.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let loose = roots.iter().filter(|(_, root)| root.is_none()).count();
    let mut loads: Vec<usize> = vec![0; parts];
    loads[0] = loose;
    let mut part_of: HashMap<usize, usize> =
        HashMap::with_capacity_and_hasher(by_size.len(), Default::default());
    for (root, size) in by_size {
        let part = (0..parts)
            .min_by_key(|&part| (loads[part], part))
            .unwrap_or(0);
        loads[part] += size;
        part_of.insert(root, part);
    }

    let mut out: Vec<Claim> = (0..parts)
        .map(|_| Claim {
            workspace_id: claim.workspace_id,
            event_ids: Vec::new(),
            others_waiting: claim.others_waiting,
            holds_rows: claim.holds_rows,
            filed_clicks: claim.filed_clicks,
        })
        .collect();
    for (event_id, root) in roots {
        let part = root
            .and_then(|root| part_of.get(&root).copied())
            .unwrap_or(0);
        out[part].event_ids.push(event_id);
    }
    out.retain(|part| !part.event_ids.is_empty());
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::HashSet;

    use proptest::prelude::*;
    use serde_json::json;

    use super::super::step::KnownIdentifier;
    use super::*;
    use crate::identity::{identifier_hash, IdentifierKind};

    fn event(body: serde_json::Value) -> Event {
        let mut body = body;
        body["timestamp"] = json!("2026-04-10T12:00:00Z");
        events::parse_event(&body, time::macros::datetime!(2026-04-10 13:00 UTC)).unwrap()
    }

    fn claim(ids: &[Uuid]) -> Claim {
        Claim {
            workspace_id: Uuid::nil(),
            event_ids: ids.to_vec(),
            others_waiting: false,
            holds_rows: false,
            filed_clicks: false,
        }
    }

    fn stored(known: &mut KnownGraph, kind: IdentifierKind, value: &str, person: Uuid) {
        known.identifiers.insert(
            identifier_hash(kind, value),
            KnownIdentifier {
                person,
                too_common: false,
                has_touch: false,
            },
        );
    }

    #[test]
    fn events_of_one_stored_person_stay_together_whatever_identifier_they_give() {
        let person = Uuid::now_v7();
        let mut known = KnownGraph::default();
        stored(&mut known, IdentifierKind::Email, "a@x.io", person);
        stored(
            &mut known,
            IdentifierKind::CustomerExternalId,
            "cust_a",
            person,
        );
        let bodies = [
            json!({"event": "lead", "email": "a@x.io"}),
            json!({"event": "lead", "email": "b@x.io"}),
            json!({"event": "lead", "customerExternalId": "cust_a"}),
            json!({"event": "lead", "email": "c@x.io", "gclid": "g1"}),
            json!({"event": "lead", "customerExternalId": "cust_c", "gclid": "g1"}),
        ];
        let events: Vec<(Uuid, OffsetDateTime, Event)> = bodies
            .into_iter()
            .map(|b| (Uuid::now_v7(), OffsetDateTime::UNIX_EPOCH, event(b)))
            .collect();
        let ids: Vec<Uuid> = events.iter().map(|e| e.0).collect();
        let parts = split(&claim(&ids), &events, &known, 2);
        assert_eq!(parts.len(), 2);
        let part_of = |id: Uuid| parts.iter().position(|p| p.event_ids.contains(&id));
        // a@x.io and cust_a are one stored person; c@x.io and cust_c share a gclid.
        assert_eq!(part_of(ids[0]), part_of(ids[2]));
        assert_eq!(part_of(ids[3]), part_of(ids[4]));
        assert_ne!(part_of(ids[0]), part_of(ids[3]));
        for part in &parts {
            let mut sorted = part.event_ids.clone();
            sorted.sort_by_key(|id| ids.iter().position(|x| x == id));
            assert_eq!(sorted, part.event_ids, "claim order kept");
        }
    }

    #[test]
    fn a_stored_too_common_identifier_connects_nobody_but_a_new_shared_one_does() {
        let mut known = KnownGraph::default();
        known.identifiers.insert(
            identifier_hash(IdentifierKind::Email, "test@example.com"),
            KnownIdentifier {
                person: Uuid::now_v7(),
                too_common: true,
                has_touch: false,
            },
        );
        let events: Vec<(Uuid, OffsetDateTime, Event)> = (0..6)
            .map(|n| {
                let body = json!({"event": "sale", "customerExternalId": format!("c{n}"),
                    "email": "test@example.com", "amount": 1, "currency": "EUR", "invoiceId": format!("i{n}")});
                (Uuid::now_v7(), OffsetDateTime::UNIX_EPOCH, event(body))
            })
            .collect();
        let ids: Vec<Uuid> = events.iter().map(|e| e.0).collect();
        let parts = split(&claim(&ids), &events, &known, 2);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].event_ids.len(), 3);

        let fresh = split(&claim(&ids), &events, &KnownGraph::default(), 2);
        assert_eq!(fresh.len(), 1, "a new shared e-mail joins them all");
        assert_eq!(fresh[0].event_ids, ids);
    }

    #[test]
    fn events_not_stored_go_with_the_first_part() {
        let events: Vec<(Uuid, OffsetDateTime, Event)> = (0..4)
            .map(|n| {
                let body = json!({"event": "lead", "email": format!("p{n}@x.io")});
                (Uuid::now_v7(), OffsetDateTime::UNIX_EPOCH, event(body))
            })
            .collect();
        let gone = Uuid::now_v7();
        let mut ids: Vec<Uuid> = events.iter().map(|e| e.0).collect();
        ids.insert(1, gone);
        let parts = split(&claim(&ids), &events, &KnownGraph::default(), 2);
        assert!(parts[0].event_ids.contains(&gone));
        let total: usize = parts.iter().map(|p| p.event_ids.len()).sum();
        assert_eq!(total, ids.len());
    }

    proptest! {
        /// Whatever the events and the stored graph: every event lands in exactly one part, and
        /// no identifier or stored person is reached from two parts.
        #[test]
        fn parts_cover_the_claim_and_share_nothing(
            people in proptest::collection::vec((0u8..12, 0u8..6, any::<bool>()), 1..60),
            stored_people in proptest::collection::vec((0u8..12, 0u8..4), 0..10),
            parts in 1usize..4,
        ) {
            let mut known = KnownGraph::default();
            let persons: Vec<Uuid> = (0..4).map(|_| Uuid::now_v7()).collect();
            for (customer, person) in &stored_people {
                stored(&mut known, IdentifierKind::CustomerExternalId, &format!("c{customer}"),
                    persons[usize::from(*person)]);
            }
            let events: Vec<(Uuid, OffsetDateTime, Event)> = people
                .iter()
                .map(|(customer, email, with_email)| {
                    let mut body = json!({"event": "lead", "customerExternalId": format!("c{customer}")});
                    if *with_email {
                        body["email"] = json!(format!("e{email}@x.io"));
                    }
                    (Uuid::now_v7(), OffsetDateTime::UNIX_EPOCH, event(body))
                })
                .collect();
            let ids: Vec<Uuid> = events.iter().map(|e| e.0).collect();
            let out = split(&claim(&ids), &events, &known, parts);
            prop_assert!(out.len() <= parts.max(1));
            let mut seen: HashSet<Uuid> = HashSet::default();
            for part in &out {
                for id in &part.event_ids {
                    prop_assert!(seen.insert(*id));
                }
            }
            prop_assert_eq!(seen.len(), ids.len());
            let reach = |part: &Claim| -> HashSet<Node> {
                part.event_ids.iter().flat_map(|id| {
                    let event = &events.iter().find(|e| e.0 == *id).unwrap().2;
                    event_identifiers(event).into_iter().flat_map(|i| {
                        let person = known.identifiers.get(&i.hash).map(|k| Node::Person(k.person));
                        std::iter::once(Node::Identifier(i.hash)).chain(person)
                    }).collect::<Vec<_>>()
                }).collect()
            };
            for (a, first) in out.iter().enumerate() {
                for second in &out[a + 1..] {
                    prop_assert!(reach(first).is_disjoint(&reach(second)));
                }
            }
        }
    }
}
