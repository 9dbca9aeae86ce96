//! Every click of a person within an event's attribution window, for the stages that share a
//! conversion's credit among its touches (reports). The decision keeps only the last and the first
//! click; this reads the others by bounded range scans of `identities_touches`, one per person
//! merged into the event's person, so the cost does not grow with the person's history outside
//! the window and never exceeds `limit` touches per person.
//!
//! Everything is read for a whole batch of events in two statements, and the clicks are answered
//! as references: a click an event carried names that event, and the caller reads (or keeps) the
//! event's click ids and utm itself, so that a long-lived stage reads each carried click from the
//! journal once, not once per conversion that it touched.

use crate::HashMap;

use deadpool_postgres::GenericClient;
use events::{ClickGroups, ClickIds, IdentifierHash, Touchpoint, Utm};
use time::OffsetDateTime;
use uuid::Uuid;

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

/// What a stored decision says of an event's touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecidedTouches {
    /// The identifier owning the matcher's touchpoint (the last click), if the event matched.
    pub touch: Option<IdentifierHash>,
    /// The identifier owning the first click in the window, when it is another click.
    pub first_touch: Option<IdentifierHash>,
    /// The decision was stored as a copy of its attribution, before decisions referenced their
    /// touches: [`crate::get_attributions`] tells its clicks.
    pub copied: bool,
}

/// Where a click's data is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WindowSource {
    /// Its groups are in `click_groups` ([`WindowClick::group`]), which is all a report needs of
    /// it: nothing else was read.
    Grouped,
    /// In the journal: the event that carried the click (events never change once stored, so
    /// what the caller read of it once stays right).
    Carried(Uuid),
    /// Here: a registered click, or a copy kept before clicks referenced their events.
    Stored {
        /// The click's ad click ids.
        click_ids: Box<ClickIds>,
        /// Its utm parameters.
        utm: Option<Box<Utm>>,
    },
}

/// A click of the person in an event's window, owned by an identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowClick {
    /// The identifier that owns the click (what a decision's touch references).
    pub owner: IdentifierHash,
    /// When the click happened, as the identity graph filed it.
    pub clicked_at: OffsetDateTime,
    /// Where its click ids and utm are.
    pub source: WindowSource,
    /// The id of its groups in `click_groups`, when it was filed with them (see
    /// [`events::ClickGroups::id`]); then its source is [`WindowSource::Grouped`].
    pub group: Option<i64>,
}

const SELECT_DECIDED: &str = "
    SELECT q.event_id, a.touch, a.first_touch, a.copied
    FROM unnest($2::uuid[]) AS q(event_id)
    CROSS JOIN LATERAL (
        SELECT touch, first_touch, touch IS NULL AND attribution IS NOT NULL AS copied
        FROM attributions
        WHERE workspace_id = $1 AND event_id = q.event_id
        LIMIT 1
    ) AS a";

/// The stored decisions of those of `event_ids` that have one (decided or pending), by event.
pub async fn decided_touches(
    client: &impl GenericClient,
    workspace_id: Uuid,
    event_ids: &[Uuid],
) -> Result<HashMap<Uuid, DecidedTouches>> {
    let mut out = HashMap::with_capacity_and_hasher(event_ids.len(), Default::default());
    if event_ids.is_empty() {
        return Ok(out);
    }
    let statement = client.prepare_cached(SELECT_DECIDED).await?;
    for row in client
        .query(&statement, &[&workspace_id, &event_ids])
        .await?
    {
        out.insert(
            row.try_get(0)?,
            DecidedTouches {
                touch: hash(row.try_get(1)?),
                first_touch: hash(row.try_get(2)?),
                copied: row.try_get(3)?,
            },
        );
    }
    Ok(out)
}

fn hash(bytes: Option<Vec<u8>>) -> Option<IdentifierHash> {
    bytes.and_then(|b| <IdentifierHash>::try_from(b.as_slice()).ok())
}

/// For each probed event with a stored touch: the person of that touch (its root after merges,
/// and every person merged into it), each person's clicks in the window (latest first, at most
/// `$5` per person), and the decision's own touch and first touch wherever they are. Every
/// look-up is a key probe or a bounded range scan (see `decide::read`); the range scans read
/// `identities_touches` alone (it carries each click's group id), and only a click filed without
/// a group id is looked up again for where its data is. The workspace is named as
/// `(SELECT $1::uuid)` throughout (see [`crate::ANY_WORKSPACE`]).
const SELECT_WINDOW_CLICKS: &str = "
    WITH q AS MATERIALIZED (
        SELECT q.event_id, q.at, q.since, a.touch, a.first_touch
        FROM unnest($2::uuid[], $3::timestamptz[], $4::timestamptz[]) AS q(event_id, at, since)
        CROSS JOIN LATERAL (
            SELECT touch, first_touch FROM attributions
            WHERE workspace_id = (SELECT $1::uuid) AND event_id = q.event_id AND touch IS NOT NULL
            LIMIT 1
        ) AS a
    ), members AS MATERIALIZED (
        SELECT DISTINCT q.event_id, q.at, q.since, m.person_id
        FROM q
        CROSS JOIN LATERAL (
            SELECT person_id FROM identities
            WHERE workspace_id = (SELECT $1::uuid) AND identifier = q.touch
            LIMIT 1
        ) AS i
        LEFT JOIN LATERAL (
            SELECT merged_into FROM persons
            WHERE workspace_id = (SELECT $1::uuid) AND person_id = i.person_id
            LIMIT 1
        ) AS p ON true
        LEFT JOIN LATERAL (
            SELECT members FROM persons
            WHERE workspace_id = (SELECT $1::uuid) AND person_id = coalesce(p.merged_into, i.person_id)
            LIMIT 1
        ) AS r ON true
        CROSS JOIN LATERAL unnest(array_prepend(coalesce(p.merged_into, i.person_id),
                                                coalesce(r.members, '{}'::uuid[]))) AS m(person_id)
    ), found AS (
        SELECT m.event_id, t.identifier, t.clicked_at, t.click_group
        FROM members m
        CROSS JOIN LATERAL (
            SELECT identifier, clicked_at, click_group FROM identities
            WHERE workspace_id = (SELECT $1::uuid) AND person_id = m.person_id
              AND clicked_at IS NOT NULL
              AND clicked_at <= m.at AND clicked_at >= m.since
            ORDER BY clicked_at DESC, identifier DESC
            LIMIT $5
        ) AS t
        UNION ALL
        SELECT q.event_id, t.identifier, t.clicked_at, t.click_group
        FROM q
        CROSS JOIN LATERAL unnest(ARRAY[q.touch, q.first_touch]) AS o(owner)
        CROSS JOIN LATERAL (
            SELECT identifier, clicked_at, click_group FROM identities
            WHERE workspace_id = (SELECT $1::uuid) AND identifier = o.owner AND clicked_at IS NOT NULL
            LIMIT 1
        ) AS t
    )
    SELECT f.event_id, f.identifier, f.clicked_at, s.source_event, s.touchpoint, c.click_ids,
           c.utm, f.click_group
    FROM found f
    LEFT JOIN LATERAL (
        SELECT source_event, touchpoint FROM identities
        WHERE f.click_group IS NULL AND workspace_id = (SELECT $1::uuid) AND identifier = f.identifier
        LIMIT 1
    ) AS s ON true
    LEFT JOIN LATERAL (
        SELECT click_ids, utm FROM clicks
        WHERE f.click_group IS NULL AND workspace_id = (SELECT $1::uuid)
          AND identifier = f.identifier
          AND s.source_event IS NULL AND s.touchpoint IS NULL
        LIMIT 1
    ) AS c ON true";

/// Writes the groups given that `click_groups` does not hold yet (few per statement: a
/// workspace has few channel, source, medium and campaign combinations), in the order given.
pub(crate) const INSERT_CLICK_GROUPS: &str = "
    INSERT INTO click_groups (workspace_id, id, channel, source, medium, campaign)
    SELECT $1, * FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[])
    ON CONFLICT DO NOTHING";

/// Keeps `groups` in `click_groups`, under their [`ClickGroups::id`], those it does not hold
/// yet. A step files the groups of the clicks it files; the stages that name a touch's groups by
/// id keep those of the other clicks (a registered click's) through this. Written in id order,
/// as a step writes them, so that two writers of one new group wait on each other in one order.
pub async fn keep_click_groups(
    client: &impl GenericClient,
    workspace_id: Uuid,
    groups: &[ClickGroups],
) -> Result<()> {
    if groups.is_empty() {
        return Ok(());
    }
    let mut groups: Vec<(i64, &ClickGroups)> = groups.iter().map(|g| (g.id(), g)).collect();
    groups.sort_unstable_by_key(|(id, _)| *id);
    groups.dedup_by_key(|(id, _)| *id);
    let ids: Vec<i64> = groups.iter().map(|(id, _)| *id).collect();
    let channels: Vec<&str> = groups.iter().map(|(_, g)| g.channel.as_str()).collect();
    let sources: Vec<Option<&str>> = groups.iter().map(|(_, g)| g.source.as_deref()).collect();
    let media: Vec<Option<&str>> = groups.iter().map(|(_, g)| g.medium.as_deref()).collect();
    let campaigns: Vec<Option<&str>> = groups.iter().map(|(_, g)| g.campaign.as_deref()).collect();
    let statement = client.prepare_cached(INSERT_CLICK_GROUPS).await?;
    client
        .execute(
            &statement,
            &[&workspace_id, &ids, &channels, &sources, &media, &campaigns],
        )
        .await?;
    Ok(())
}

/// [`SELECT_WINDOW_CLICKS`], for the planner test.
pub(crate) fn window_statement() -> &'static str {
    SELECT_WINDOW_CLICKS
}

/// The clicks in the window of each probed event, by event, in no particular order and possibly
/// naming a click twice (the decision's touch is also one of the window's): the person's latest
/// `limit` clicks per person merged into it, and the decision's touch and first touch even when
/// they are not among them. An event without a stored touch (unmatched, pending, not decided)
/// has none; so has a registered click that is no longer stored.
pub async fn clicks_in_window(
    client: &impl GenericClient,
    workspace_id: Uuid,
    probes: &[WindowProbe],
    limit: i64,
) -> Result<HashMap<Uuid, Vec<WindowClick>>> {
    let mut out: HashMap<Uuid, Vec<WindowClick>> = HashMap::default();
    if probes.is_empty() {
        return Ok(out);
    }
    let ids: Vec<Uuid> = probes.iter().map(|p| p.event_id).collect();
    let at: Vec<OffsetDateTime> = probes.iter().map(|p| p.at).collect();
    let since: Vec<OffsetDateTime> = probes.iter().map(|p| p.since).collect();
    let statement = client.prepare_cached(SELECT_WINDOW_CLICKS).await?;
    for row in client
        .query(&statement, &[&workspace_id, &ids, &at, &since, &limit])
        .await?
    {
        let event_id: Uuid = row.try_get(0)?;
        let Some(owner) = hash(row.try_get(1)?) else {
            continue;
        };
        let source_event: Option<Uuid> = row.try_get(3)?;
        let copy: Option<serde_json::Value> = row.try_get(4)?;
        let click_ids: Option<serde_json::Value> = row.try_get(5)?;
        let group: Option<i64> = row.try_get(7)?;
        let source = match (source_event, copy, click_ids) {
            _ if group.is_some() => WindowSource::Grouped,
            (Some(event), _, _) => WindowSource::Carried(event),
            (None, Some(copy), _) => {
                let touchpoint: Touchpoint = from_json("touchpoint", copy)?;
                WindowSource::Stored {
                    click_ids: Box::new(touchpoint.click_ids),
                    utm: touchpoint.utm.map(Box::new),
                }
            }
            (None, None, Some(click_ids)) => {
                let utm: Option<serde_json::Value> = row.try_get(6)?;
                WindowSource::Stored {
                    click_ids: Box::new(from_json("click ids", click_ids)?),
                    utm: utm.map(|utm| from_json("utm", utm)).transpose()?,
                }
            }
            (None, None, None) => continue,
        };
        out.entry(event_id).or_default().push(WindowClick {
            owner,
            clicked_at: row.try_get(2)?,
            source,
            group,
        });
    }
    Ok(out)
}
