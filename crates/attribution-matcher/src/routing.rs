//! Which kinds of destination get a conversion, and why: the table of API.md's Routing section.
//!
//! | stage | google_ads | meta | microsoft_ads | webhook |
//! |---|---|---|---|---|
//! | matched (first decision) | iff gclid / gbraid / wbraid | iff fbclid / fbc | iff msclkid | yes |
//! | unmatched (first decision) | no | no | no | yes |
//! | pending | no, until it matches | no, until it matches | no, until it matches | yes, now |
//! | matched late (was pending) | iff gclid / gbraid / wbraid | iff fbclid / fbc | iff msclkid | no: already sent |
//! | pending window over | no | no | no | no: already sent |
//! | deferred lead | no | no | no | no |
//!
//! Each decision carries a reason for people, naming what was present or missing. Whether a
//! destination subscribes to the event's kind is the forwarder's business.

use crate::HashMap;
use std::borrow::Cow;
use std::sync::OnceLock;

use events::{ClickIds, DestinationType, RouteDecision, Touchpoint};

/// Where an event's attribution stands when it is routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// A lead sent with `mode: "deferred"`: its identifiers were linked, nothing else.
    Deferred,
    /// First decision: a touchpoint was found.
    Matched,
    /// First decision: no touchpoint, and none is awaited.
    Unmatched,
    /// First decision: no touchpoint yet; a late link may still match it.
    Pending,
    /// A pending event was matched by a late link.
    MatchedLate,
    /// A pending event's window ended without a match.
    Expired,
}

impl Stage {
    /// Every stage.
    pub const ALL: [Stage; 6] = [
        Stage::Deferred,
        Stage::Matched,
        Stage::Unmatched,
        Stage::Pending,
        Stage::MatchedLate,
        Stage::Expired,
    ];
}

const GOOGLE_IDS: [&str; 3] = ["gclid", "gbraid", "wbraid"];
const META_IDS: [&str; 2] = ["fbclid", "fbc"];
const MICROSOFT_IDS: [&str; 1] = ["msclkid"];
const PINTEREST_IDS: [&str; 1] = ["epik"];
const SNAPCHAT_IDS: [&str; 1] = ["scCid"];
const TIKTOK_IDS: [&str; 1] = ["ttclid"];
const REDDIT_IDS: [&str; 1] = ["rdtCid"];
const LINKEDIN_IDS: [&str; 1] = ["liFatId"];

/// One decision per kind of destination, in the order of [`DestinationType::ALL`]. `click` is the
/// touchpoint of a matched event.
pub fn route(stage: Stage, click: Option<&Touchpoint>) -> Vec<RouteDecision> {
    let table = reasons();
    DestinationType::ALL
        .into_iter()
        .map(|destination_type| {
            let present = present_mask(
                click.map(|click| &click.click_ids),
                wanted_ids(destination_type),
            );
            let (dispatch, reason) = match table.get(&(stage, destination_type, present)) {
                Some((dispatch, reason)) => (*dispatch, Cow::Borrowed(reason.as_str())),
                None => {
                    let (dispatch, reason) = decide_one(stage, destination_type, present);
                    (dispatch, Cow::Owned(reason))
                }
            };
            RouteDecision {
                destination_type,
                dispatch,
                reason,
            }
        })
        .collect()
}

/// Decisions by stage, kind of destination and the click ids present (see [`reasons`]).
type Reasons = HashMap<(Stage, DestinationType, u8), (bool, String)>;

/// Every decision [`decide_one`] makes, computed once: it depends on the stage, the kind of
/// destination and which of the click ids that kind wants are present, nothing else.
fn reasons() -> &'static Reasons {
    static REASONS: OnceLock<Reasons> = OnceLock::new();
    REASONS.get_or_init(|| {
        let mut table = HashMap::default();
        for stage in Stage::ALL {
            for destination_type in DestinationType::ALL {
                for present in 0..(1u8 << wanted_ids(destination_type).len()) {
                    table.insert(
                        (stage, destination_type, present),
                        decide_one(stage, destination_type, present),
                    );
                }
            }
        }
        table
    })
}

/// The decision for one kind of destination; `present` has bit `i` set when the `i`-th of the
/// click ids the kind wants ([`wanted_ids`]) is present on the matched click.
fn decide_one(stage: Stage, destination_type: DestinationType, present: u8) -> (bool, String) {
    let name = destination_type.as_str();
    match (stage, destination_type) {
        (Stage::Deferred, _) => (
            false,
            "deferred lead: identifiers linked; not counted or dispatched".to_owned(),
        ),
        (Stage::Pending, DestinationType::Webhook) => {
            (true, "attribution pending: webhooks get it now".to_owned())
        }
        (Stage::Pending, _) => (
            false,
            "attribution pending: sent if and when it matches".to_owned(),
        ),
        (Stage::Matched, DestinationType::Webhook) => (
            true,
            "matched: webhooks get every subscribed event".to_owned(),
        ),
        (Stage::Unmatched, DestinationType::Webhook) => (
            true,
            "unmatched: webhooks get every subscribed event".to_owned(),
        ),
        (Stage::MatchedLate | Stage::Expired, DestinationType::Webhook) => {
            (false, "already sent while pending".to_owned())
        }
        (Stage::Matched | Stage::MatchedLate, platform) => {
            let wanted = wanted_ids(platform);
            let action = match platform {
                DestinationType::GoogleAds => "google_ads offline click conversion",
                DestinationType::MicrosoftAds => "microsoft_ads offline conversion",
                DestinationType::Pinterest => "pinterest conversions api event",
                DestinationType::Snapchat => "snapchat conversions api event",
                DestinationType::TikTok => "tiktok events api event",
                DestinationType::Reddit => "reddit conversions api event",
                DestinationType::LinkedIn => "linkedin conversions api event",
                _ => "meta conversions api event",
            };
            let present: Vec<&str> = wanted
                .iter()
                .enumerate()
                .filter(|(i, _)| present & (1 << i) != 0)
                .map(|(_, name)| *name)
                .collect();
            let late = if stage == Stage::MatchedLate {
                "matched late; "
            } else {
                ""
            };
            if present.is_empty() {
                (
                    false,
                    format!("{late}no {}: {name} not applicable", wanted.join("/")),
                )
            } else {
                (
                    true,
                    format!("{late}{} present: {action}", present.join(", ")),
                )
            }
        }
        (Stage::Unmatched, platform) => (
            false,
            format!(
                "unmatched, no {}: {name} not applicable",
                wanted_ids(platform).join("/")
            ),
        ),
        (Stage::Expired, platform) => (
            false,
            format!(
                "pending window over without a match, no {}: {name} not applicable",
                wanted_ids(platform).join("/")
            ),
        ),
    }
}

fn wanted_ids(platform: DestinationType) -> &'static [&'static str] {
    match platform {
        DestinationType::GoogleAds => &GOOGLE_IDS,
        DestinationType::MicrosoftAds => &MICROSOFT_IDS,
        DestinationType::Pinterest => &PINTEREST_IDS,
        DestinationType::Snapchat => &SNAPCHAT_IDS,
        DestinationType::TikTok => &TIKTOK_IDS,
        DestinationType::Reddit => &REDDIT_IDS,
        DestinationType::LinkedIn => &LINKEDIN_IDS,
        _ => &META_IDS,
    }
}

/// Bit `i` set for each of `wanted` present in `ids`.
fn present_mask(ids: Option<&ClickIds>, wanted: &[&str]) -> u8 {
    let Some(ids) = ids else { return 0 };
    wanted
        .iter()
        .enumerate()
        .filter(|(_, name)| ids.get(name).is_some())
        .fold(0, |mask, (i, _)| mask | (1 << i))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn click(ids: ClickIds) -> Touchpoint {
        Touchpoint {
            click_id: None,
            clicked_at: datetime!(2026-04-10 12:00 UTC),
            click_ids: ids,
            utm: None,
            url: None,
            referrer: None,
            ip: None,
            user_agent: None,
        }
    }

    fn decisions(stage: Stage, click: Option<&Touchpoint>) -> Vec<(&'static str, bool, String)> {
        route(stage, click)
            .into_iter()
            .map(|r| {
                (
                    r.destination_type.as_str(),
                    r.dispatch,
                    r.reason.into_owned(),
                )
            })
            .collect()
    }

    /// The destination types the decisions dispatch to, in order.
    fn dispatched(routes: &[RouteDecision]) -> Vec<&'static str> {
        routes
            .iter()
            .filter(|r| r.dispatch)
            .map(|r| r.destination_type.as_str())
            .collect()
    }

    /// The decision for one destination type.
    fn decision(routes: &[RouteDecision], destination_type: DestinationType) -> &RouteDecision {
        routes
            .iter()
            .find(|r| r.destination_type == destination_type)
            .unwrap()
    }

    #[test]
    fn a_gclid_goes_to_google_ads_and_webhooks_only() {
        let touch = click(ClickIds {
            gclid: Some("g".into()),
            wbraid: Some("w".into()),
            ..ClickIds::default()
        });
        let decided = decisions(Stage::Matched, Some(&touch));
        assert_eq!(
            decided[0],
            (
                "google_ads",
                true,
                "gclid, wbraid present: google_ads offline click conversion".into()
            )
        );
        assert_eq!(
            decided[1],
            ("meta", false, "no fbclid/fbc: meta not applicable".into())
        );
        assert!(decided.contains(&(
            "microsoft_ads",
            false,
            "no msclkid: microsoft_ads not applicable".into()
        )));
        assert_eq!(
            decided.last(),
            Some(&(
                "webhook",
                true,
                "matched: webhooks get every subscribed event".into()
            ))
        );
        assert_eq!(
            dispatched(&route(Stage::Matched, Some(&touch))),
            ["google_ads", "webhook"]
        );
    }

    #[test]
    fn an_fbc_goes_to_meta() {
        let touch = click(ClickIds {
            fbc: Some("fb.1.2.3".into()),
            ..ClickIds::default()
        });
        let routes = route(Stage::Matched, Some(&touch));
        assert!(!routes[0].dispatch);
        assert_eq!(
            routes[0].reason,
            "no gclid/gbraid/wbraid: google_ads not applicable"
        );
        assert!(routes[1].dispatch);
        assert_eq!(routes[1].reason, "fbc present: meta conversions api event");
    }

    #[test]
    fn pending_goes_to_webhooks_now_and_ad_platforms_later() {
        let routes = route(Stage::Pending, None);
        assert_eq!(dispatched(&routes), ["webhook"]);
        assert_eq!(
            routes[0].reason,
            "attribution pending: sent if and when it matches"
        );
        assert_eq!(
            decision(&routes, DestinationType::Webhook).reason,
            "attribution pending: webhooks get it now"
        );
    }

    #[test]
    fn a_late_match_skips_webhooks_that_already_have_it() {
        let touch = click(ClickIds {
            gclid: Some("g".into()),
            fbclid: Some("f".into()),
            ..ClickIds::default()
        });
        let routes = route(Stage::MatchedLate, Some(&touch));
        assert_eq!(dispatched(&routes), ["google_ads", "meta"]);
        assert_eq!(
            decision(&routes, DestinationType::Webhook).reason,
            "already sent while pending"
        );
    }

    #[test]
    fn nothing_is_dispatched_for_deferred_or_expired_events() {
        for stage in [Stage::Deferred, Stage::Expired] {
            assert!(route(stage, None).iter().all(|r| !r.dispatch), "{stage:?}");
        }
        let unmatched = route(Stage::Unmatched, None);
        assert_eq!(dispatched(&unmatched), ["webhook"]);
        assert_eq!(
            unmatched[0].reason,
            "unmatched, no gclid/gbraid/wbraid: google_ads not applicable"
        );
    }

    #[test]
    fn an_msclkid_goes_to_microsoft_ads_and_several_click_ids_to_several_platforms() {
        let touch = click(ClickIds {
            msclkid: Some("m".into()),
            ..ClickIds::default()
        });
        let routes = route(Stage::Matched, Some(&touch));
        assert_eq!(dispatched(&routes), ["microsoft_ads", "webhook"]);
        assert_eq!(
            decision(&routes, DestinationType::MicrosoftAds).reason,
            "msclkid present: microsoft_ads offline conversion"
        );
        let touch = click(ClickIds {
            gclid: Some("g".into()),
            msclkid: Some("m".into()),
            ..ClickIds::default()
        });
        let routes = route(Stage::Matched, Some(&touch));
        assert_eq!(
            dispatched(&routes),
            ["google_ads", "microsoft_ads", "webhook"]
        );
    }

    #[test]
    fn every_destination_type_gets_one_decision_in_order() {
        for stage in Stage::ALL {
            let types: Vec<_> = route(stage, None)
                .iter()
                .map(|r| r.destination_type)
                .collect();
            assert_eq!(types, DestinationType::ALL);
        }
    }
}
