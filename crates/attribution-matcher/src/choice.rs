//! The touchpoint rules, as pure functions.
//!
//! For an event, in this order:
//! 1. click ids on the event itself (`gclid`, `fbclid`, …) are the touchpoint (`direct`);
//! 2. else the registered click its `clickId` names (`clickId`);
//! 3. else the most recent click of the person within the attribution window before the event
//!    (`last_click`), matched by the kind of the event's identifier that linked the event to that
//!    click's person.
//!
//! `firstTouch` is the earliest of the person's clicks in the window and the touchpoint itself.
//! Ties in time are broken by the click's identifier, so that the choice never depends on the
//! order rows come back from the database.

use events::{IdentifierHash, MatchedBy, Touchpoint};
use time::{Duration, OffsetDateTime};

/// A click of a person: a registered click the person's events named, or click ids captured on
/// one of the person's events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Touch {
    /// The identifier (hashed) the click hangs off in the graph: `clickId:<id>` of a registered
    /// click, the first ad-platform click id of an event otherwise.
    pub owner: IdentifierHash,
    /// The click as an attribution shows it.
    pub touchpoint: Touchpoint,
}

impl Touch {
    /// The order of clicks: by time, ties broken by owner.
    pub fn key(&self) -> (OffsetDateTime, &IdentifierHash) {
        (self.touchpoint.clicked_at, &self.owner)
    }
}

/// The clicks the model keeps among a person's clicks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chosen<'a> {
    /// The most recent click in the window: the `last_click` touchpoint.
    pub last: &'a Touch,
    /// The earliest click in the window: `firstTouch`.
    pub first: &'a Touch,
}

/// The last and the first click among `candidates` that happened no later than `at` and no
/// earlier than `at - window` (both ends included); `None` when there is none.
pub fn choose_touches<'a>(
    candidates: impl IntoIterator<Item = &'a Touch>,
    at: OffsetDateTime,
    window: Duration,
) -> Option<Chosen<'a>> {
    let since = at.saturating_sub(window);
    let mut chosen: Option<Chosen<'a>> = None;
    for touch in candidates {
        let clicked_at = touch.touchpoint.clicked_at;
        if clicked_at > at || clicked_at < since {
            continue;
        }
        chosen = Some(match chosen {
            None => Chosen {
                last: touch,
                first: touch,
            },
            Some(Chosen { last, first }) => Chosen {
                last: if touch.key() > last.key() {
                    touch
                } else {
                    last
                },
                first: if touch.key() < first.key() {
                    touch
                } else {
                    first
                },
            },
        });
    }
    chosen
}

/// The clicks of one person that an event's identifier of one kind reached before the event
/// linked anything: how `matchedBy` is told when the touchpoint comes from the person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Linked<'a> {
    /// The kind of the identifier that reached this person.
    pub matched_by: MatchedBy,
    /// That person's clicks under the model, from [`choose_touches`].
    pub chosen: Option<Chosen<'a>>,
}

/// The touchpoint of an event and how it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Which rule found it.
    pub matched_by: MatchedBy,
    /// The touchpoint.
    pub click: Touch,
    /// The earliest click of the person in the window (the touchpoint itself when there is no
    /// earlier one).
    pub first_touch: Touch,
}

/// Applies the three rules: `direct` is the event's own click ids as a touch, `named` the
/// registered click its `clickId` names, `linked` the persons its identifiers reached, in the
/// order of [`crate::event_identifiers`] (the first one wins a tie).
pub fn find_touchpoint(
    direct: Option<&Touch>,
    named: Option<&Touch>,
    linked: &[Linked<'_>],
) -> Option<Found> {
    let earliest = linked
        .iter()
        .filter_map(|link| link.chosen.map(|chosen| chosen.first))
        .min_by(|a, b| a.key().cmp(&b.key()));
    let first_touch = |click: &Touch| match earliest {
        Some(first) if first.touchpoint.clicked_at < click.touchpoint.clicked_at => first.clone(),
        _ => click.clone(),
    };
    if let Some(click) = direct {
        return Some(Found {
            matched_by: MatchedBy::Direct,
            click: click.clone(),
            first_touch: first_touch(click),
        });
    }
    if let Some(click) = named {
        return Some(Found {
            matched_by: MatchedBy::ClickId,
            click: click.clone(),
            first_touch: first_touch(click),
        });
    }
    let mut best: Option<(MatchedBy, &Touch)> = None;
    for link in linked {
        let Some(chosen) = link.chosen else { continue };
        if best.is_none_or(|(_, last)| chosen.last.key() > last.key()) {
            best = Some((link.matched_by, chosen.last));
        }
    }
    let (matched_by, last) = best?;
    // The earliest of every linked person's clicks, which is never later than `last`.
    let first = earliest.unwrap_or(last);
    Some(Found {
        matched_by,
        click: last.clone(),
        first_touch: first.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use events::ClickIds;
    use proptest::prelude::*;
    use time::macros::datetime;

    const AT: OffsetDateTime = datetime!(2026-04-10 12:00 UTC);

    fn touch(owner: u8, clicked_at: OffsetDateTime) -> Touch {
        Touch {
            owner: [owner; 16],
            touchpoint: Touchpoint {
                click_id: Some(format!("clk_{owner}")),
                clicked_at,
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
    fn the_window_includes_both_ends_and_nothing_after_the_event() {
        let window = Duration::days(90);
        let touches = [
            touch(1, AT - Duration::days(90)),
            touch(2, AT),
            touch(3, AT + Duration::milliseconds(1)),
            touch(4, AT - Duration::days(90) - Duration::milliseconds(1)),
        ];
        let chosen = choose_touches(&touches, AT, window).unwrap();
        assert_eq!(chosen.last.owner, [2; 16]);
        assert_eq!(chosen.first.owner, [1; 16]);
        assert_eq!(choose_touches(&touches[2..], AT, window), None);
    }

    #[test]
    fn direct_beats_named_beats_the_person() {
        let person = [touch(1, AT - Duration::days(3))];
        let linked = [Linked {
            matched_by: MatchedBy::Email,
            chosen: choose_touches(&person, AT, Duration::days(90)),
        }];
        let direct = touch(9, AT);
        let named = touch(8, AT - Duration::days(1));
        let found = find_touchpoint(Some(&direct), Some(&named), &linked).unwrap();
        assert_eq!(found.matched_by, MatchedBy::Direct);
        assert_eq!(found.click, direct);
        assert_eq!(found.first_touch, person[0]);
        let found = find_touchpoint(None, Some(&named), &linked).unwrap();
        assert_eq!(found.matched_by, MatchedBy::ClickId);
        assert_eq!(found.click, named);
        let found = find_touchpoint(None, None, &linked).unwrap();
        assert_eq!(found.matched_by, MatchedBy::Email);
        assert_eq!(found.click, person[0]);
        assert_eq!(found.first_touch, person[0]);
        assert_eq!(find_touchpoint(None, None, &[]), None);
    }

    #[test]
    fn the_most_recent_click_tells_which_identifier_linked_it() {
        let by_customer = [touch(1, AT - Duration::days(5))];
        let by_phone = [
            touch(2, AT - Duration::days(1)),
            touch(3, AT - Duration::days(40)),
        ];
        let window = Duration::days(90);
        let linked = [
            Linked {
                matched_by: MatchedBy::CustomerExternalId,
                chosen: choose_touches(&by_customer, AT, window),
            },
            Linked {
                matched_by: MatchedBy::Phone,
                chosen: choose_touches(&by_phone, AT, window),
            },
        ];
        let found = find_touchpoint(None, None, &linked).unwrap();
        assert_eq!(found.matched_by, MatchedBy::Phone);
        assert_eq!(found.click.touchpoint.click_id.as_deref(), Some("clk_2"));
        assert_eq!(
            found.first_touch.touchpoint.click_id.as_deref(),
            Some("clk_3")
        );
    }

    #[test]
    fn a_named_click_after_the_event_is_its_own_first_touch() {
        let named = touch(8, AT + Duration::hours(1));
        let found = find_touchpoint(None, Some(&named), &[]).unwrap();
        assert_eq!(found.first_touch, named);
    }

    fn arbitrary_touches() -> impl Strategy<Value = Vec<Touch>> {
        // Minutes around the event, a 60-minute window, owners that may collide in time.
        proptest::collection::vec((0u8..32, -120i64..30), 0..24).prop_map(|specs| {
            specs
                .into_iter()
                .enumerate()
                .map(|(i, (owner, minutes))| {
                    let mut t = touch(owner, AT + Duration::minutes(minutes));
                    t.owner[0] = u8::try_from(i).unwrap();
                    t
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn the_choice_is_the_latest_and_earliest_eligible_click(touches in arbitrary_touches()) {
            let window = Duration::minutes(60);
            let eligible: Vec<&Touch> = touches
                .iter()
                .filter(|t| {
                    let at = t.touchpoint.clicked_at;
                    at <= AT && at >= AT - window
                })
                .collect();
            let chosen = choose_touches(&touches, AT, window);
            prop_assert_eq!(chosen.is_none(), eligible.is_empty());
            if let Some(chosen) = chosen {
                prop_assert!(eligible.contains(&chosen.last));
                prop_assert!(eligible.contains(&chosen.first));
                for t in &eligible {
                    prop_assert!(t.key() <= chosen.last.key());
                    prop_assert!(t.key() >= chosen.first.key());
                }
            }
        }

        #[test]
        fn the_choice_does_not_depend_on_the_order_of_the_candidates(
            touches in arbitrary_touches(),
            seed in any::<u64>(),
        ) {
            let window = Duration::minutes(60);
            let mut shuffled = touches.clone();
            // A cheap deterministic shuffle.
            let len = shuffled.len();
            for i in 0..len {
                let j = usize::try_from((seed.rotate_left(u32::try_from(i).unwrap()) ^ i as u64) % len as u64).unwrap();
                shuffled.swap(i, j);
            }
            let a = choose_touches(&touches, AT, window).map(|c| (c.last.clone(), c.first.clone()));
            let b = choose_touches(&shuffled, AT, window).map(|c| (c.last.clone(), c.first.clone()));
            prop_assert_eq!(a, b);
        }

        #[test]
        fn the_identity_touchpoint_is_the_latest_over_all_linked_persons(
            groups in proptest::collection::vec(arbitrary_touches(), 1..4),
        ) {
            let window = Duration::minutes(60);
            let kinds = [MatchedBy::CustomerExternalId, MatchedBy::Email, MatchedBy::Phone, MatchedBy::ClickId];
            // Owners unique across groups, as a click belongs to one person.
            let groups: Vec<Vec<Touch>> = groups
                .into_iter()
                .enumerate()
                .map(|(g, touches)| touches.into_iter().map(|mut t| { t.owner[1] = u8::try_from(g).unwrap(); t }).collect())
                .collect();
            let linked: Vec<Linked<'_>> = groups
                .iter()
                .zip(kinds)
                .map(|(touches, matched_by)| Linked { matched_by, chosen: choose_touches(touches, AT, window) })
                .collect();
            let all = choose_touches(groups.iter().flatten(), AT, window);
            let found = find_touchpoint(None, None, &linked);
            prop_assert_eq!(found.is_none(), all.is_none());
            if let (Some(found), Some(all)) = (found, all) {
                prop_assert_eq!(&found.click, all.last);
                prop_assert_eq!(&found.first_touch, all.first);
                let owner_group = usize::from(all.last.owner[1]);
                prop_assert_eq!(found.matched_by, kinds[owner_group]);
            }
        }
    }
}
