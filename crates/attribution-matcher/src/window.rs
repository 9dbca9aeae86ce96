//! Every click of a person within an event's attribution window, for the stages that share a
//! conversion's credit among its touches (reports). The decision keeps only the last and the first
//! click; this reads the others by bounded range scans of `identities_touches`, one per person
//! merged into the event's person, so the cost does not grow with the person's history outside
//! the window and never exceeds `limit` touches per person.

use std::collections::HashMap;

use deadpool_postgres::GenericClient;
use events::Touchpoint;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::decide::direct_touchpoint;
use crate::{from_json, Result};

/// One event whose window is wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowProbe {
    /// The decided event.
    pub event_id: Uuid,
    /// When the conversion happened: the window's end (inclusive).
    pub at: OffsetDateTime,
    /// The window's start (inclusive).
    pub since: OffsetDateTime,
}

/// A click of the person, owned by an identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowTouch {
    /// The identifier that owns the click (what a decision's touch references).
    pub owner: [u8; 32],
    /// The click as an attribution shows it (`clicked_at` as the identity graph filed it).
    pub touchpoint: Touchpoint,
}

/// The person of each event's stored touch (its root after merges, and every person merged into
/// it), then each person's clicks in the window, latest first, at most `limit` per person.
const SELECT_WINDOW_TOUCHES: &str = "
    WITH q AS (
        SELECT * FROM unnest($2::uuid[], $3::timestamptz[], $4::timestamptz[]) AS q(event_id, at, since)
    ), owned AS (
        SELECT q.event_id, q.at, q.since, coalesce(p.merged_into, i.person_id) AS root
        FROM q
        JOIN attributions a ON a.workspace_id = $1 AND a.event_id = q.event_id
        JOIN identities i ON i.workspace_id = $1 AND i.identifier = a.touch
        LEFT JOIN persons p ON p.workspace_id = $1 AND p.person_id = i.person_id
    ), members AS (
        SELECT DISTINCT o.event_id, o.at, o.since, m.person_id
        FROM owned o
        LEFT JOIN persons r ON r.workspace_id = $1 AND r.person_id = o.root
        CROSS JOIN LATERAL unnest(array_prepend(o.root, coalesce(r.members, '{}'::uuid[])))
            AS m(person_id)
    )
    SELECT m.event_id, t.identifier, t.clicked_at, t.source_event, t.touchpoint,
           c.click_id, c.click_ids, c.utm, c.url, c.referrer, c.ip, c.user_agent
    FROM members m
    CROSS JOIN LATERAL (
        SELECT identifier, clicked_at, source_event, touchpoint FROM identities
        WHERE workspace_id = $1 AND person_id = m.person_id AND clicked_at IS NOT NULL
          AND clicked_at <= m.at AND clicked_at >= m.since
        ORDER BY clicked_at DESC, identifier DESC
        LIMIT $5
    ) AS t
    LEFT JOIN LATERAL (
        SELECT click_id, click_ids, utm, url, referrer, host(ip) AS ip, user_agent FROM clicks
        WHERE workspace_id = $1 AND identifier = t.identifier
          AND t.source_event IS NULL AND t.touchpoint IS NULL
        LIMIT 1
    ) AS c ON true";

/// The clicks in the window of each probed event, by event, in no particular order. An event
/// without a stored touch (unmatched, pending, not decided) has none; so has a click whose data
/// is gone (its registration or the event that carried it was erased).
pub async fn touches_in_window(
    client: &impl GenericClient,
    workspace_id: Uuid,
    probes: &[WindowProbe],
    limit: i64,
) -> Result<HashMap<Uuid, Vec<WindowTouch>>> {
    let mut out: HashMap<Uuid, Vec<WindowTouch>> = HashMap::new();
    if probes.is_empty() {
        return Ok(out);
    }
    let ids: Vec<Uuid> = probes.iter().map(|p| p.event_id).collect();
    let at: Vec<OffsetDateTime> = probes.iter().map(|p| p.at).collect();
    let since: Vec<OffsetDateTime> = probes.iter().map(|p| p.since).collect();
    let statement = client.prepare_cached(SELECT_WINDOW_TOUCHES).await?;
    let rows = client
        .query(&statement, &[&workspace_id, &ids, &at, &since, &limit])
        .await?;
    // Clicks carried by events are read from the journal, once per event.
    let mut carried_by: Vec<Uuid> = rows
        .iter()
        .filter_map(|row| row.try_get::<_, Option<Uuid>>(3).ok().flatten())
        .collect();
    carried_by.sort_unstable();
    carried_by.dedup();
    let mut carried: HashMap<Uuid, Touchpoint> = HashMap::with_capacity(carried_by.len());
    if !carried_by.is_empty() {
        for stored in journal::get_events(client, workspace_id, &carried_by).await? {
            if let Ok(event) = &stored.event {
                carried.insert(stored.id, direct_touchpoint(event));
            }
        }
    }
    for row in rows {
        let event_id: Uuid = row.try_get(0)?;
        let owner: Vec<u8> = row.try_get(1)?;
        let Ok(owner) = <[u8; 32]>::try_from(owner.as_slice()) else {
            continue;
        };
        let clicked_at: OffsetDateTime = row.try_get(2)?;
        let source_event: Option<Uuid> = row.try_get(3)?;
        let copy: Option<serde_json::Value> = row.try_get(4)?;
        let click_id: Option<String> = row.try_get(5)?;
        let touchpoint = match (source_event, copy, click_id) {
            (Some(event), _, _) => match carried.get(&event) {
                Some(touchpoint) => touchpoint.clone(),
                None => continue,
            },
            (None, Some(copy), _) => from_json::<Touchpoint>("touchpoint", copy)?,
            (None, None, Some(click_id)) => {
                let click_ids: serde_json::Value = row.try_get(6)?;
                let utm: Option<serde_json::Value> = row.try_get(7)?;
                let ip: Option<String> = row.try_get(10)?;
                Touchpoint {
                    click_id: Some(click_id),
                    clicked_at,
                    click_ids: from_json("click ids", click_ids)?,
                    utm: utm.map(|utm| from_json("utm", utm)).transpose()?,
                    url: row.try_get(8)?,
                    referrer: row.try_get(9)?,
                    ip: ip.and_then(|ip| ip.parse().ok()),
                    user_agent: row.try_get(11)?,
                }
            }
            (None, None, None) => continue,
        };
        out.entry(event_id).or_default().push(WindowTouch {
            owner,
            touchpoint: Touchpoint {
                clicked_at,
                ..touchpoint
            },
        });
    }
    Ok(out)
}
