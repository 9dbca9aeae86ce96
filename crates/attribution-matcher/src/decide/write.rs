//! What a step writes back: merges, persons and their days of use, new identifiers and clicks,
//! too-common marks, decisions, and re-checks of pending events that gained clicks.
//!
//! The statements are pipelined: all are sent at once, in the order they must apply (a re-check
//! must see the merges and decisions before it), and executed by the server one after the other.

use crate::HashMap;
use std::future::Future;
use std::pin::Pin;

use deadpool_postgres::GenericClient;
use events::ClickGroups;
use time::OffsetDateTime;
use tokio_postgres::types::ToSql;
use tokio_postgres::Statement;
use tracing::debug;
use uuid::Uuid;

use crate::routing::Stage;
use crate::window::INSERT_CLICK_GROUPS;
use crate::Result;

use super::cache::{write_mark, WriterMark};
use super::step::{status_of, Step};

const MERGE_PERSONS: &str = "
    INSERT INTO persons (workspace_id, person_id, merged_into)
    SELECT $1, * FROM unnest($2::uuid[], $3::uuid[])
    ON CONFLICT (workspace_id, person_id) DO UPDATE SET
        merged_into = excluded.merged_into, members = '{}'";

/// Persons written by a step (new ones, survivors of merges, changed counts): all used today.
const UPSERT_PERSONS: &str = "
    INSERT INTO persons (workspace_id, person_id, members, customer_ids, emails, phones, used_on)
    SELECT $1, t.person_id, t.members::uuid[], t.customer_ids, t.emails, t.phones, $7
    FROM unnest($2::uuid[], $3::text[], $4::int[], $5::int[], $6::int[])
        AS t(person_id, members, customer_ids, emails, phones)
    ON CONFLICT (workspace_id, person_id) DO UPDATE SET
        merged_into = NULL,
        members = excluded.members,
        customer_ids = excluded.customer_ids,
        emails = excluded.emails,
        phones = excluded.phones,
        used_on = excluded.used_on";

/// Stored persons the step's events named, last used before today.
const MARK_USED: &str = "
    UPDATE persons SET used_on = $3
    WHERE workspace_id = $1 AND person_id = ANY($2::uuid[])
      AND (used_on IS NULL OR used_on < $3)";

const MERGE_PENDING: &str = "
    UPDATE attributions AS a SET person_id = m.survivor
    FROM unnest($2::uuid[], $3::uuid[]) AS m(loser, survivor)
    WHERE a.workspace_id = $1 AND a.status = 'pending' AND a.person_id = m.loser";

/// New identifiers. A plain insert: the step read every identifier it writes under the
/// workspace's lock, so none of them can exist (a conflict would be a bug, and fail the step).
const INSERT_IDENTITIES: &str = "
    INSERT INTO identities (workspace_id, identifier, kind, person_id, clicked_at, source_event,
                            too_common, click_group)
    SELECT $1, * FROM unnest($2::bytea[], $3::text[], $4::uuid[], $5::timestamptz[], $6::uuid[],
                             $7::bool[], $8::bigint[])";

/// Stored identifiers that now own a click (their person stays).
const FILE_TOUCHES: &str = "
    UPDATE identities AS i
    SET clicked_at = t.clicked_at, source_event = t.source_event, click_group = t.click_group
    FROM unnest($2::bytea[], $3::timestamptz[], $4::uuid[], $5::bigint[])
         AS t(identifier, clicked_at, source_event, click_group)
    WHERE i.workspace_id = $1 AND i.identifier = t.identifier AND i.clicked_at IS NULL";

const MARK_TOO_COMMON: &str = "
    UPDATE identities SET too_common = true
    WHERE workspace_id = $1 AND identifier = ANY($2::bytea[])";

/// First decisions: a plain insert (the step found no row for these events under the
/// workspace's lock).
const INSERT_ATTRIBUTIONS: &str = "
    INSERT INTO attributions (workspace_id, event_id, status, stage, matched_by, touch,
                              first_touch, ignored, occurred_at, pending_until, person_id,
                              named_click, decided_at)
    SELECT $1, t.*, $13
    FROM unnest($2::uuid[], $3::text[], $4::text[], $5::text[], $6::bytea[], $7::bytea[],
                $8::text[], $9::timestamptz[], $10::timestamptz[], $11::uuid[], $12::bytea[])
        AS t(event_id, status, stage, matched_by, touch, first_touch, ignored, occurred_at,
             pending_until, person_id, named_click)
";

/// Decisions about events decided before (pending ones looked at again).
const UPSERT_ATTRIBUTIONS: &str = "
    INSERT INTO attributions (workspace_id, event_id, status, stage, matched_by, touch,
                              first_touch, ignored, occurred_at, pending_until, person_id,
                              named_click, decided_at)
    SELECT $1, t.*, $13
    FROM unnest($2::uuid[], $3::text[], $4::text[], $5::text[], $6::bytea[], $7::bytea[],
                $8::text[], $9::timestamptz[], $10::timestamptz[], $11::uuid[], $12::bytea[])
        AS t(event_id, status, stage, matched_by, touch, first_touch, ignored, occurred_at,
             pending_until, person_id, named_click)
    ON CONFLICT (workspace_id, event_id) DO UPDATE SET
        status = excluded.status,
        stage = excluded.stage,
        matched_by = excluded.matched_by,
        touch = excluded.touch,
        first_touch = excluded.first_touch,
        ignored = excluded.ignored,
        occurred_at = excluded.occurred_at,
        pending_until = excluded.pending_until,
        person_id = excluded.person_id,
        named_click = excluded.named_click,
        decided_at = excluded.decided_at,
        attribution = NULL,
        routes = NULL";

const CLOSE_GONE: &str = "
    UPDATE attributions
    SET status = 'unmatched', stage = 'expired', matched_by = NULL, touch = NULL,
        first_touch = NULL, attribution = NULL, routes = NULL, occurred_at = NULL,
        pending_until = NULL, person_id = NULL, named_click = NULL, decided_at = $3
    WHERE workspace_id = $1 AND event_id = ANY($2) AND status = 'pending'";

/// Queues for another look the pending events of persons who gained clicks no earlier than the
/// event.
const MARK_PENDING: &str = "
    INSERT INTO match_queue (workspace_id, event_ids)
    SELECT $1, array_agg(DISTINCT a.event_id ORDER BY a.event_id)
    FROM unnest($2::uuid[], $3::timestamptz[]) AS g(person_id, since)
    JOIN attributions a
      ON a.workspace_id = $1 AND a.status = 'pending' AND a.person_id = g.person_id
     AND a.occurred_at >= g.since
    HAVING count(*) > 0
    RETURNING cardinality(event_ids)";

/// A statement of the write phase, sent at its first poll.
type Write<'a> = Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>>;

/// Writes the step back, in one pipelined burst.
pub(crate) async fn write(
    client: &impl GenericClient,
    workspace_id: Uuid,
    now: OffsetDateTime,
    step: &Step,
    gone: &[Uuid],
    carried: &HashMap<Uuid, (i64, ClickGroups)>,
    mark: WriterMark,
) -> Result<()> {
    // Every parameter first.
    let merged_persons: Vec<Uuid> = step.merged.iter().map(|(p, _)| *p).collect();
    let merged_into: Vec<Uuid> = step.merged.iter().map(|(_, into)| *into).collect();
    let losers: Vec<Uuid> = step.merges.iter().map(|(loser, _)| *loser).collect();
    let survivors: Vec<Uuid> = step.merges.iter().map(|(_, s)| *s).collect();

    let person_ids: Vec<Uuid> = step.persons.iter().map(|p| p.person).collect();
    let person_members: Vec<String> = step
        .persons
        .iter()
        .map(|p| {
            let ids: Vec<String> = p.members.iter().map(Uuid::to_string).collect();
            format!("{{{}}}", ids.join(","))
        })
        .collect();
    let count = |kind: usize| -> Vec<i32> {
        step.persons
            .iter()
            .map(|p| i32::try_from(p.counts[kind]).unwrap_or(i32::MAX))
            .collect()
    };
    let (customer_ids, emails, phones) = (count(0), count(1), count(2));
    let today = super::step::used_on(now);

    let identity_hashes: Vec<&[u8]> = step
        .identities
        .iter()
        .map(|i| &i.identifier.hash[..])
        .collect();
    let identity_kinds: Vec<&str> = step
        .identities
        .iter()
        .map(|i| i.identifier.kind.as_str())
        .collect();
    let identity_persons: Vec<Uuid> = step.identities.iter().map(|i| i.person).collect();
    let clicked_at: Vec<Option<OffsetDateTime>> = step
        .identities
        .iter()
        .map(|i| i.touch.as_ref().map(|(at, _)| *at))
        .collect();
    let sources: Vec<Option<Uuid>> = step
        .identities
        .iter()
        .map(|i| i.touch.as_ref().and_then(|(_, source)| *source))
        .collect();
    let too_common: Vec<bool> = step.identities.iter().map(|i| i.too_common).collect();
    // A click an event carried is filed with the id of its groups, which the report stage reads
    // instead of the event.
    let group_of = |source: &Option<Uuid>| source.and_then(|s| carried.get(&s)).map(|(id, _)| *id);
    let identity_groups: Vec<Option<i64>> = sources.iter().map(group_of).collect();
    let flagged: Vec<&[u8]> = step.too_common.iter().map(|h| &h[..]).collect();
    let filed_owners: Vec<&[u8]> = step.filed.iter().map(|(h, _)| &h[..]).collect();
    let filed_at: Vec<OffsetDateTime> = step.filed.iter().map(|(_, (at, _))| *at).collect();
    let filed_sources: Vec<Option<Uuid>> = step.filed.iter().map(|(_, (_, s))| *s).collect();
    let filed_groups: Vec<Option<i64>> = filed_sources.iter().map(group_of).collect();
    let mut groups: Vec<(i64, &ClickGroups)> = sources
        .iter()
        .chain(&filed_sources)
        .filter_map(|s| s.and_then(|s| carried.get(&s)))
        .map(|(id, g)| (*id, g))
        .collect();
    groups.sort_unstable_by_key(|(id, _)| *id);
    groups.dedup_by_key(|(id, _)| *id);
    let group_ids: Vec<i64> = groups.iter().map(|(id, _)| *id).collect();
    let group_channels: Vec<&str> = groups.iter().map(|(_, g)| g.channel.as_str()).collect();
    let group_sources: Vec<Option<&str>> =
        groups.iter().map(|(_, g)| g.source.as_deref()).collect();
    let group_media: Vec<Option<&str>> = groups.iter().map(|(_, g)| g.medium.as_deref()).collect();
    let group_campaigns: Vec<Option<&str>> =
        groups.iter().map(|(_, g)| g.campaign.as_deref()).collect();

    let attribution_rows = [
        AttributionRows::of(step, false),
        AttributionRows::of(step, true),
    ];

    let gained: Vec<Uuid> = step.gains.iter().map(|(person, _)| *person).collect();
    let gained_since: Vec<OffsetDateTime> = step.gains.iter().map(|(_, since)| *since).collect();

    // Then the statements, prepared before any is sent so that they go out in this order (the
    // mark of the graph's writer stands apart: it names a row nothing else here touches).
    let mut writes: Vec<Write<'_>> = Vec::new();
    if mark != WriterMark::Keep {
        writes.push(Box::pin(write_mark(client, workspace_id, mark)));
    }
    if !step.merged.is_empty() {
        writes.push(
            execute(
                client,
                MERGE_PERSONS,
                vec![&workspace_id, &merged_persons, &merged_into],
            )
            .await?,
        );
    }
    if !step.merges.is_empty() {
        writes.push(
            execute(
                client,
                MERGE_PENDING,
                vec![&workspace_id, &losers, &survivors],
            )
            .await?,
        );
    }
    if !step.persons.is_empty() {
        writes.push(
            execute(
                client,
                UPSERT_PERSONS,
                vec![
                    &workspace_id,
                    &person_ids,
                    &person_members,
                    &customer_ids,
                    &emails,
                    &phones,
                    &today,
                ],
            )
            .await?,
        );
    }
    if !step.used.is_empty() {
        writes.push(execute(client, MARK_USED, vec![&workspace_id, &step.used, &today]).await?);
    }
    if !step.identities.is_empty() {
        writes.push(
            execute(
                client,
                INSERT_IDENTITIES,
                vec![
                    &workspace_id,
                    &identity_hashes,
                    &identity_kinds,
                    &identity_persons,
                    &clicked_at,
                    &sources,
                    &too_common,
                    &identity_groups,
                ],
            )
            .await?,
        );
    }
    if !step.filed.is_empty() {
        writes.push(
            execute(
                client,
                FILE_TOUCHES,
                vec![
                    &workspace_id,
                    &filed_owners,
                    &filed_at,
                    &filed_sources,
                    &filed_groups,
                ],
            )
            .await?,
        );
    }
    if !groups.is_empty() {
        writes.push(
            execute(
                client,
                INSERT_CLICK_GROUPS,
                vec![
                    &workspace_id,
                    &group_ids,
                    &group_channels,
                    &group_sources,
                    &group_media,
                    &group_campaigns,
                ],
            )
            .await?,
        );
    }
    if !step.too_common.is_empty() {
        writes.push(execute(client, MARK_TOO_COMMON, vec![&workspace_id, &flagged]).await?);
    }
    for (sql, rows) in [INSERT_ATTRIBUTIONS, UPSERT_ATTRIBUTIONS]
        .into_iter()
        .zip(&attribution_rows)
    {
        if rows.ids.is_empty() {
            continue;
        }
        writes.push(
            execute(
                client,
                sql,
                vec![
                    &workspace_id,
                    &rows.ids,
                    &rows.statuses,
                    &rows.stages,
                    &rows.matched_by,
                    &rows.touches,
                    &rows.first_touches,
                    &rows.ignored,
                    &rows.occurred_at,
                    &rows.pending_until,
                    &rows.pending_persons,
                    &rows.named,
                    &now,
                ],
            )
            .await?,
        );
    }
    if !gone.is_empty() {
        writes.push(execute(client, CLOSE_GONE, vec![&workspace_id, &gone, &now]).await?);
    }
    if !step.gains.is_empty() {
        let statement = client.prepare_cached(MARK_PENDING).await?;
        let (gained, gained_since) = (&gained, &gained_since);
        writes.push(Box::pin(async move {
            if let Some(row) = client
                .query_opt(&statement, &[&workspace_id, gained, gained_since])
                .await?
            {
                let marked: i32 = row.try_get(0)?;
                debug!(%workspace_id, marked, "pending events queued for another look");
            }
            Ok(())
        }));
    }
    futures_util::future::try_join_all(writes).await?;
    Ok(())
}

/// The parameters of a batch of attribution rows.
struct AttributionRows<'a> {
    ids: Vec<Uuid>,
    statuses: Vec<&'static str>,
    stages: Vec<&'static str>,
    matched_by: Vec<Option<&'static str>>,
    touches: Vec<Option<&'a [u8]>>,
    first_touches: Vec<Option<&'a [u8]>>,
    ignored: Vec<Option<&'a str>>,
    occurred_at: Vec<Option<OffsetDateTime>>,
    pending_until: Vec<Option<OffsetDateTime>>,
    pending_persons: Vec<Option<Uuid>>,
    named: Vec<Option<&'a [u8]>>,
}

impl<'a> AttributionRows<'a> {
    /// The step's records that are re-checks (`recheck`) or first decisions.
    fn of(step: &'a Step, recheck: bool) -> Self {
        let records: Vec<&'a super::step::Record> = step
            .records
            .iter()
            .filter(|r| r.recheck == recheck)
            .collect();
        Self {
            ids: records.iter().map(|r| r.event_id).collect(),
            statuses: records
                .iter()
                .map(|r| status_name(status_of(r.stage)))
                .collect(),
            stages: records.iter().map(|r| stage_name(r.stage)).collect(),
            matched_by: records
                .iter()
                .map(|r| {
                    step.decided[r.decided]
                        .attribution
                        .matched_by
                        .map(matched_by_name)
                })
                .collect(),
            touches: records
                .iter()
                .map(|r| r.touch.as_ref().map(|h| &h[..]))
                .collect(),
            first_touches: records
                .iter()
                .map(|r| r.first_touch.as_ref().map(|h| &h[..]))
                .collect(),
            ignored: records.iter().map(|r| r.ignored.as_deref()).collect(),
            occurred_at: records
                .iter()
                .map(|r| r.pending.as_ref().map(|p| p.occurred_at))
                .collect(),
            pending_until: records
                .iter()
                .map(|r| r.pending.as_ref().map(|p| p.until))
                .collect(),
            pending_persons: records
                .iter()
                .map(|r| r.pending.as_ref().and_then(|p| p.person))
                .collect(),
            named: records
                .iter()
                .map(|r| {
                    r.pending
                        .as_ref()
                        .and_then(|p| p.named_click.as_ref())
                        .map(|h| &h[..])
                })
                .collect(),
        }
    }
}

/// A statement of the write phase: prepared now (so that the statements go out in the order they
/// are queued), sent when first polled.
async fn execute<'a>(
    client: &'a impl GenericClient,
    sql: &str,
    params: Vec<&'a (dyn ToSql + Sync)>,
) -> Result<Write<'a>> {
    let statement: Statement = client.prepare_cached(sql).await?;
    Ok(Box::pin(async move {
        client.execute(&statement, &params).await?;
        Ok(())
    }))
}

fn status_name(status: events::AttributionStatus) -> &'static str {
    match status {
        events::AttributionStatus::Matched => "matched",
        events::AttributionStatus::Unmatched => "unmatched",
        events::AttributionStatus::Pending => "pending",
    }
}

/// The stored name of a stage.
pub(crate) fn stage_name(stage: Stage) -> &'static str {
    match stage {
        Stage::Deferred => "deferred",
        Stage::Matched => "matched",
        Stage::Unmatched => "unmatched",
        Stage::Pending => "pending",
        Stage::MatchedLate => "matched_late",
        Stage::Expired => "expired",
    }
}

/// The stage of a stored name.
pub(crate) fn stage_from_name(name: &str) -> Option<Stage> {
    Some(match name {
        "deferred" => Stage::Deferred,
        "matched" => Stage::Matched,
        "unmatched" => Stage::Unmatched,
        "pending" => Stage::Pending,
        "matched_late" => Stage::MatchedLate,
        "expired" => Stage::Expired,
        _ => return None,
    })
}

/// The stored name of how a touchpoint was found.
pub(crate) fn matched_by_name(matched_by: events::MatchedBy) -> &'static str {
    match matched_by {
        events::MatchedBy::Direct => "direct",
        events::MatchedBy::ClickId => "clickId",
        events::MatchedBy::CustomerExternalId => "customerExternalId",
        events::MatchedBy::Email => "email",
        events::MatchedBy::Phone => "phone",
    }
}

/// How a touchpoint was found, from its stored name.
pub(crate) fn matched_by_from_name(name: &str) -> Option<events::MatchedBy> {
    Some(match name {
        "direct" => events::MatchedBy::Direct,
        "clickId" => events::MatchedBy::ClickId,
        "customerExternalId" => events::MatchedBy::CustomerExternalId,
        "email" => events::MatchedBy::Email,
        "phone" => events::MatchedBy::Phone,
        _ => return None,
    })
}
