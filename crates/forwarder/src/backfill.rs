//! Backfilling a newly connected destination from history: the workspace's already-attributed
//! conversions it subscribes to, from `since` (default: as far back as its platform accepts),
//! each at most once per destination, behind live traffic.
//!
//! This module owns the progress rows (`backfills`) and turns routed events into backfilled
//! dispatches; the walk through the events (the journal's) and their attribution (the
//! matcher's) belongs to the pipeline, which hands each page here. Events are walked newest
//! first below a cursor, in short transactions, so that a backfill of millions of events never
//! holds a lock for long and a crashed worker's backfill is taken up again after its lease.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::GenericClient;
use events::{FieldError, RoutedEvent};
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::destinations::{load_destination, Destination};
use crate::queue;
use crate::{ids, Error, Result};

/// A backfill's progress, as `GET /v1/destinations/{id}/backfill` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackfillView {
    /// `dst_…`.
    pub destination: String,
    /// `running` or `done`.
    pub status: String,
    /// The oldest receipt time taken.
    pub since: String,
    /// Events of the workspace in the window, counted when the backfill started: the walk's
    /// length, whatever their kind or routing.
    pub total: i64,
    /// Of those, the events looked at so far, newest first (`considered` / `total` is the
    /// progress; events erased or dropped by retention meanwhile are not looked at).
    pub considered: i64,
    /// Conversions queued for the destination.
    pub queued: i32,
    /// Conversions not queued: too old for the platform, or already the destination's.
    pub skipped: i32,
    /// Conversions for the destination handled so far: `queued` + `skipped`. The other events
    /// looked at are not its business (another kind, not routed to its platform, undecided,
    /// retracted).
    pub done: i32,
    /// When it started.
    pub created_at: String,
    /// When it ended.
    pub finished_at: Option<String>,
}

const VIEW: &str = "
    SELECT destination_id, status, since, considered, queued, skipped, created_at, finished_at,
           total
    FROM backfills WHERE workspace_id = $1 AND destination_id = $2";

fn view_of(row: &tokio_postgres::Row) -> Result<BackfillView> {
    let since: OffsetDateTime = row.try_get(2)?;
    let considered: i32 = row.try_get(3)?;
    let queued: i32 = row.try_get(4)?;
    let skipped: i32 = row.try_get(5)?;
    let created_at: OffsetDateTime = row.try_get(6)?;
    let finished_at: Option<OffsetDateTime> = row.try_get(7)?;
    // Started before totals were counted: what was looked at is all that is known.
    let total: Option<i64> = row.try_get(8)?;
    let considered = i64::from(considered);
    Ok(BackfillView {
        destination: ids::to_wire(ids::DESTINATION, row.try_get(0)?),
        status: row.try_get(1)?,
        since: events::format_timestamp(since),
        total: total.unwrap_or(considered),
        considered,
        queued,
        skipped,
        done: queued.saturating_add(skipped),
        created_at: events::format_timestamp(created_at),
        finished_at: finished_at.map(events::format_timestamp),
    })
}

/// A destination's backfill.
///
/// # Errors
/// [`Error::NotFound`] for an unknown destination (or another workspace's) or one never
/// backfilled; [`Error::Database`].
pub async fn get_backfill(
    client: &impl GenericClient,
    workspace_id: Uuid,
    destination: &str,
) -> Result<BackfillView> {
    let id = ids::from_wire(ids::DESTINATION, destination).ok_or(Error::NotFound)?;
    let stmt = client.prepare_cached(VIEW).await?;
    let row = client
        .query_opt(&stmt, &[&workspace_id, &id])
        .await?
        .ok_or(Error::NotFound)?;
    view_of(&row)
}

/// Reads `{"since"?: "…"}`, listing every bad field.
fn read_since(body: &Value) -> Result<Option<OffsetDateTime>> {
    let Some(map) = body.as_object() else {
        return Err(Error::invalid("", "type", "must be an object"));
    };
    let mut errors = Vec::new();
    let mut since = None;
    for (key, value) in map {
        match (key.as_str(), value) {
            ("since", Value::Null) => {}
            // A `since` in the future is taken as it is: there is nothing to send.
            ("since", Value::String(text)) => match events::parse_timestamp(text) {
                Ok(at) => since = Some(at),
                Err(_) => errors.push(FieldError {
                    field: "since".into(),
                    code: "format",
                    message: "must be an RFC 3339 time with offset, e.g. 2026-04-10T12:34:56.000Z"
                        .into(),
                }),
            },
            ("since", _) => errors.push(FieldError {
                field: "since".into(),
                code: "type",
                message: "must be a string".into(),
            }),
            _ => errors.push(FieldError::new(key.clone(), &events::Error::UnknownField)),
        }
    }
    if errors.is_empty() {
        Ok(since)
    } else {
        Err(Error::Invalid(errors))
    }
}

/// The oldest receipt time a platform with these limits can still take a conversion of (its
/// event or click age limit, whichever is longer); `None` when it has none.
fn platform_horizon(limits: &platforms::Limits, now: OffsetDateTime) -> Option<OffsetDateTime> {
    let longest = limits.max_event_age.max(limits.max_click_age)?;
    let longest = time::Duration::try_from(longest).ok()?;
    Some(now - longest)
}

/// A backfill about to start: the destination, the oldest receipt time it takes, and the id
/// below which its walk starts (everything received later is live traffic).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedBackfill {
    destination_id: Uuid,
    /// The oldest receipt time taken: the one asked for, else as far back as the destination's
    /// platform accepts, else the whole history.
    pub since: OffsetDateTime,
    /// The walk considers the events with ids below this one.
    pub cursor: Uuid,
}

/// Reads a backfill request (admin) for a destination of the workspace: `{"since"?: "…"}`.
///
/// # Errors
/// [`Error::NotFound`], [`Error::Invalid`], [`Error::Database`].
pub async fn plan_backfill(
    client: &impl GenericClient,
    workspace_id: Uuid,
    destination: &str,
    body: &Value,
) -> Result<PlannedBackfill> {
    let id = ids::from_wire(ids::DESTINATION, destination).ok_or(Error::NotFound)?;
    let since = read_since(body);
    let destination = load_destination(client, workspace_id, id)
        .await?
        .ok_or(Error::NotFound)?;
    let since = since?;
    let now = OffsetDateTime::now_utc();
    let since = since
        .or_else(|| platform_horizon(&destination.config.limits(), now))
        .unwrap_or(time::macros::datetime!(2000-01-01 0:00 UTC));
    Ok(PlannedBackfill {
        destination_id: id,
        since,
        // Everything received from now on is live traffic: the walk starts below this id.
        cursor: Uuid::now_v7(),
    })
}

/// Starts a planned backfill of `total` events (the workspace's events in its window, which the
/// caller counted in the journal). A backfill already running answers [`Error::Conflict`]; a
/// finished one is started again (only events the destination has no dispatch for are queued).
///
/// # Errors
/// [`Error::Conflict`], [`Error::Database`].
pub async fn start_backfill(
    client: &impl GenericClient,
    workspace_id: Uuid,
    plan: &PlannedBackfill,
    total: i64,
) -> Result<BackfillView> {
    const START: &str = "
        INSERT INTO backfills (workspace_id, destination_id, status, since, cursor, total)
        VALUES ($1, $2, 'running', $3, $4, $5)
        ON CONFLICT (workspace_id, destination_id) DO UPDATE
        SET status = 'running', since = EXCLUDED.since, cursor = EXCLUDED.cursor, considered = 0,
            queued = 0, skipped = 0, total = EXCLUDED.total, due_at = now(), lease_token = NULL,
            created_at = now(), updated_at = now(), finished_at = NULL
        WHERE backfills.status = 'done'
        RETURNING destination_id, status, since, considered, queued, skipped, created_at,
                  finished_at, total";
    let stmt = client.prepare_cached(START).await?;
    match client
        .query_opt(
            &stmt,
            &[
                &workspace_id,
                &plan.destination_id,
                &plan.since,
                &plan.cursor,
                &total,
            ],
        )
        .await?
    {
        Some(row) => {
            tracing::info!(
                destination = %ids::to_wire(ids::DESTINATION, plan.destination_id),
                since = %events::format_timestamp(plan.since),
                total,
                "backfill started"
            );
            view_of(&row)
        }
        None => Err(Error::Conflict(
            "a backfill of this destination is already running".into(),
        )),
    }
}

/// A backfill a worker holds for one page.
#[derive(Debug, Clone)]
pub struct BackfillJob {
    /// Its workspace.
    pub workspace_id: Uuid,
    /// The destination, as it is now.
    pub destination: Arc<Destination>,
    /// The oldest receipt time taken.
    pub since: OffsetDateTime,
    /// Events below this id are still to be considered.
    pub cursor: Uuid,
    /// The token it is held under.
    pub token: Uuid,
}

const CLAIM: &str = "
    WITH due AS (
        SELECT workspace_id, destination_id FROM backfills
        WHERE status = 'running' AND due_at <= now()
        ORDER BY due_at LIMIT 1
        FOR UPDATE SKIP LOCKED
    )
    UPDATE backfills b SET lease_token = $1, due_at = now() + $2::bigint * interval '1 millisecond'
    FROM due
    WHERE b.workspace_id = due.workspace_id AND b.destination_id = due.destination_id
    RETURNING b.workspace_id, b.destination_id, b.since, b.cursor";

const FINISH_ORPHAN: &str = "
    UPDATE backfills SET status = 'done', finished_at = now(), lease_token = NULL, updated_at = now()
    WHERE workspace_id = $1 AND destination_id = $2 AND lease_token = $3";

/// Claims one running backfill for `lease`; a backfill whose destination was deleted ends.
///
/// # Errors
/// [`Error::Database`].
pub async fn claim_backfill(
    client: &impl GenericClient,
    lease: Duration,
) -> Result<Option<BackfillJob>> {
    let token = Uuid::now_v7();
    let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    let stmt = client.prepare_cached(CLAIM).await?;
    let Some(row) = client.query_opt(&stmt, &[&token, &lease_ms]).await? else {
        return Ok(None);
    };
    let workspace_id: Uuid = row.try_get(0)?;
    let destination_id: Uuid = row.try_get(1)?;
    let Some(destination) = load_destination(client, workspace_id, destination_id).await? else {
        let stmt = client.prepare_cached(FINISH_ORPHAN).await?;
        client
            .execute(&stmt, &[&workspace_id, &destination_id, &token])
            .await?;
        return Ok(None);
    };
    Ok(Some(BackfillJob {
        workspace_id,
        destination: Arc::new(destination),
        since: row.try_get(2)?,
        cursor: row.try_get(3)?,
        token,
    }))
}

/// What one page of a backfill did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackfillPage {
    /// Events considered.
    pub considered: usize,
    /// Conversions queued.
    pub queued: usize,
    /// Conversions skipped (too old, or already the destination's).
    pub skipped: usize,
    /// True when the walk reached its end.
    pub finished: bool,
}

const ADVANCE: &str = "
    UPDATE backfills
    SET cursor = $4, considered = considered + $5, queued = queued + $6, skipped = skipped + $7,
        status = CASE WHEN $8 THEN 'done' ELSE status END,
        finished_at = CASE WHEN $8 THEN now() ELSE finished_at END,
        due_at = now(), lease_token = NULL, updated_at = now()
    WHERE workspace_id = $1 AND destination_id = $2 AND lease_token = $3";

/// Records one page of a backfill inside the caller's transaction: of `page` (the events with
/// ids in `[next_cursor, job.cursor)`, newest first, each with its attribution and routing, or
/// `None` when it is not decided or was retracted), the conversions the destination gets by the
/// routing rules of live traffic are queued behind live traffic, except those its platform would
/// refuse for age and those it already has, each with the conversion action or event name the
/// `catalog` maps its event name to for the destination, as live dispatches carry it; the walk
/// continues below `next_cursor`, or ends when `finished`.
///
/// # Errors
/// [`Error::Database`]; [`Error::Conflict`] when the lease was lost (nothing is recorded).
pub async fn record_backfill_page(
    client: &impl GenericClient,
    job: &BackfillJob,
    considered: usize,
    routed: &[RoutedEvent],
    catalog: &queue::CatalogRules,
    next_cursor: Uuid,
    finished: bool,
) -> Result<BackfillPage> {
    let destination = &job.destination;
    let limits = destination.config.limits();
    let now = OffsetDateTime::now_utc();
    let mut rows = Vec::new();
    let mut too_old = 0usize;
    for event in routed {
        if event.received_at < job.since || !queue::routes_to(event, destination) {
            continue;
        }
        let (payload, routing) = queue::stored_forms(event)?;
        let mapping = catalog
            .get(event, destination.id)
            .and_then(|rule| rule.mapping.as_ref())
            .filter(|mapping| !mapping.is_empty());
        let payload = match mapping {
            Some(mapping) => queue::with_mapping(payload, mapping)?,
            None => payload,
        };
        let conversion = platforms::model::Conversion {
            dispatch_id: Uuid::nil(),
            event_id: event.event_id,
            received_at: event.received_at,
            event: event.event.clone(),
            attribution: event.attribution.clone(),
            routing: Value::Null,
            mapping: mapping.cloned(),
        };
        if platforms::too_old(&limits, &conversion, now).is_some() {
            too_old += 1;
            continue;
        }
        rows.push((event.event_id, payload, routing));
    }
    let wanted = rows.len();
    let queued = queue::add_backfilled(client, job.workspace_id, destination, &rows)
        .await?
        .len();
    let page = BackfillPage {
        considered,
        queued,
        skipped: too_old + (wanted - queued),
        finished,
    };
    let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    let stmt = client.prepare_cached(ADVANCE).await?;
    let updated = client
        .execute(
            &stmt,
            &[
                &job.workspace_id,
                &destination.id,
                &job.token,
                &next_cursor,
                &count(page.considered),
                &count(page.queued),
                &count(page.skipped),
                &finished,
            ],
        )
        .await?;
    if updated == 0 {
        return Err(Error::Conflict(
            "the backfill's lease ran out and another worker took it over".into(),
        ));
    }
    if finished {
        tracing::info!(
            destination = %ids::to_wire(ids::DESTINATION, destination.id),
            "backfill finished"
        );
    }
    Ok(page)
}
