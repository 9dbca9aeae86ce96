//! The durable dispatch queue: one row per (event, destination, kind), from routing to the
//! platform's answer.
//!
//! - [`enqueue`] runs inside the attribution step's transaction, so a routing decision and its
//!   dispatches commit together. A dispatch's id is made from its event, destination, kind and
//!   revision ([`dispatch_id`]), so the primary key makes a second enqueue of the same event a
//!   no-op; the id begins with the event's time, so a month of dispatches lives (and goes) with
//!   its month of events.
//! - What a dispatch sends (the conversion as routed and its routing decision) is written with it
//!   into `dispatch_payloads`, not into the dispatch row: every transition writes a new version
//!   of the whole row, and they made most of it. Only a restatement of a conversion not sent
//!   yet rewrites a payload; the claim reads the payloads of what it took.
//! - [`claim_due`] takes due work in one statement: `FOR UPDATE SKIP LOCKED` so that concurrent
//!   workers never take the same row, and a lease (`due_at` moves to the lease's end, a fresh
//!   `lease_token` names the claim) so that a crashed worker's rows come back when it runs out.
//! - [`record_results`] writes the attempts and new statuses in one statement, only for rows still
//!   held under the claim's token: a worker that lost its lease cannot overwrite another's result.
//!   The platform requests that decided them are written in the same statement, once each
//!   (`dispatch_requests`: one answer excerpt per request, not per conversion it carried).
//! - Both walk the indexes (`SET LOCAL` in a transaction of their own): a queue fills faster
//!   than the planner's statistics follow, and a plan chosen for a small queue would read the
//!   whole backlog on every step.
//!
//! Statuses: `queued` → `in_flight` → `succeeded` | `retrying` | `failed` | `skipped`, and
//! `cancelled` when the destination is deleted or the event retracted before the send (a send
//! already under way when its destination is deleted keeps its real outcome: it may land); an
//! operator's retry takes `failed` or `skipped` back to `queued`. This module is the only writer
//! of a dispatch's status: every transition is one named function here ([`claim_due`],
//! [`record_results`], `requeue_one`, `requeue_many`, `cancel_unsent`,
//! `cancel_for_deleted_destination`, `add_retractions`), which the views and destinations call.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::GenericClient;
use events::{Attribution, AttributionStatus, Event, EventKind, Mode, RouteDecision, RoutedEvent};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use tokio_postgres::types::Json;
use uuid::Uuid;

use crate::destinations::{self, Destination};
use crate::model::Conversion;
use crate::{Error, Result};
use platforms::delivery::ConfirmationStatus;

/// Where a dispatch stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DispatchStatus {
    /// Waiting for its first attempt (or for its destination to be enabled).
    Queued,
    /// A worker holds it and is sending it.
    InFlight,
    /// The platform has it.
    Succeeded,
    /// An attempt failed; the next one is due at `nextAttemptAt`.
    Retrying,
    /// A permanent error, or attempts exhausted; `lastError` keeps the platform's message.
    Failed,
    /// Not sent on purpose; `reason` says why.
    Skipped,
    /// Not sent: its destination was deleted or its event retracted first.
    Cancelled,
}

impl DispatchStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [Self; 7] = [
        Self::Queued,
        Self::InFlight,
        Self::Succeeded,
        Self::Retrying,
        Self::Failed,
        Self::Skipped,
        Self::Cancelled,
    ];

    /// The wire and column name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::InFlight => "in_flight",
            Self::Succeeded => "succeeded",
            Self::Retrying => "retrying",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
            Self::Cancelled => "cancelled",
        }
    }

    /// Reads a wire name.
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }
}

impl fmt::Display for DispatchStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a dispatch delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DispatchKind {
    /// The conversion itself.
    Conversion,
    /// The undoing of a conversion delivered before (Google Ads `RETRACTION`).
    Retraction,
    /// A new value of a conversion delivered before (Google Ads `RESTATEMENT`).
    Restatement,
}

impl DispatchKind {
    /// The wire and column name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Conversion => "conversion",
            Self::Retraction => "retraction",
            Self::Restatement => "restatement",
        }
    }

    /// Reads a column value.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "conversion" => Some(Self::Conversion),
            "retraction" => Some(Self::Retraction),
            "restatement" => Some(Self::Restatement),
            _ => None,
        }
    }
}

/// The id of the dispatch of `kind` and `revision` (0 but for restatements) of one event to one
/// destination: the same inputs always make the same id, so that a second enqueue meets the
/// first one's primary key.
///
/// - The first 48 bits are the event id's: the millisecond the event was received. A dispatch
///   sorts with its event's time (the events of one millisecond in no particular order), and
///   lives in the partition of its event's month.
/// - Then the version (8: custom) and 12 bits that order one event's dispatches as they happen:
///   the conversion, its restatements by revision, the retraction (a retracted sale is never
///   restated).
/// - The remaining 62 bits (after the variant) are the first of the SHA-256 of the event id, the
///   destination id, the kind and the revision.
pub fn dispatch_id(
    event_id: Uuid,
    destination_id: Uuid,
    kind: DispatchKind,
    revision: i32,
) -> Uuid {
    use sha2::{Digest, Sha256};
    const RETRACTION: u16 = 0x0fff;
    let order: u16 = match kind {
        DispatchKind::Conversion => 0,
        DispatchKind::Restatement => u16::try_from(revision.clamp(1, 0x0ffe)).unwrap_or(0x0ffe),
        DispatchKind::Retraction => RETRACTION,
    };
    let digest = Sha256::new()
        .chain_update(event_id.as_bytes())
        .chain_update(destination_id.as_bytes())
        .chain_update(kind.as_str().as_bytes())
        .chain_update(revision.to_be_bytes())
        .finalize();
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&event_id.as_bytes()[..6]);
    let [high, low] = order.to_be_bytes();
    bytes[6] = 0x80 | (high & 0x0f);
    bytes[7] = low;
    bytes[8..].copy_from_slice(&digest[..8]);
    bytes[8] = 0x80 | (bytes[8] & 0x3f);
    Uuid::from_bytes(bytes)
}

/// The conversion as routed, stored for each dispatch (`dispatch_payloads.payload`): everything a
/// send needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Snapshot {
    pub event_id: Uuid,
    #[serde(with = "events::rfc3339_millis")]
    pub received_at: OffsetDateTime,
    pub event: Event,
    pub attribution: Attribution,
    /// What the conversion-events catalog chose for this dispatch's destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mapping: Option<platforms::model::EventMapping>,
}

impl Snapshot {
    pub(crate) fn into_conversion(self, dispatch_id: Uuid, routing: Value) -> Conversion {
        Conversion {
            dispatch_id,
            event_id: self.event_id,
            received_at: self.received_at,
            event: self.event,
            attribution: self.attribution,
            routing,
            mapping: self.mapping,
        }
    }
}

/// True when an event may go to a destination matched on user data alone: attribution has
/// decided (matched or unmatched, neither pending nor a deferred lead), it names the person
/// (email, phone or customerExternalId) and user data may leave.
fn user_data_only_candidate(routed: &RoutedEvent) -> bool {
    let event = &routed.event;
    let decided = matches!(
        routed.attribution.status,
        AttributionStatus::Matched | AttributionStatus::Unmatched
    );
    let names_person =
        event.email.is_some() || event.phone.is_some() || event.customer_external_id.is_some();
    let consent_denied = event.consent.is_some_and(|c| c.ad_user_data_denied());
    decided && event.mode != Mode::Deferred && names_person && !consent_denied
}

/// True when a destination that opted in to user-data-only matching (`matchWithoutClickId`)
/// gets this event although its route is off: a candidate without any of its platform's click
/// ids, on the event or its touchpoint.
fn user_data_only(routed: &RoutedEvent, destination: &Destination) -> bool {
    let adapter = destination.config.adapter();
    if !adapter.matches_without_click_id(destination.config.json()) {
        return false;
    }
    let destination_type = destination.destination_type();
    let route_off = routed
        .routes
        .iter()
        .filter(|r| r.destination_type == destination_type)
        .all(|r| !r.dispatch);
    let has_click = adapter.click_ids().iter().any(|name| {
        routed.event.click_ids.get(name).is_some()
            || routed
                .attribution
                .click
                .as_ref()
                .is_some_and(|c| c.click_ids.get(name).is_some())
    });
    route_off && !has_click && user_data_only_candidate(routed)
}

/// True when `destination` gets `routed`.
fn routed_to(routed: &RoutedEvent, destination: &Destination) -> bool {
    if !destination.subscribes_to(routed.event.kind()) {
        return false;
    }
    let destination_type = destination.destination_type();
    let by_route = routed
        .routes
        .iter()
        .any(|r| r.destination_type == destination_type && r.dispatch);
    by_route || user_data_only(routed, destination)
}

/// A dispatch and its payload row, the latter only for dispatches actually created (a second
/// enqueue of the same event adds neither).
const INSERT_DISPATCHES: &str = "
    WITH u AS (
        SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::text[], $6::jsonb[],
                             $7::jsonb[], $8::text[], $9::text[])
            AS u(workspace_id, id, event_id, destination_id, destination_type, payload, routing,
                 status, reason)
    ), created AS (
        INSERT INTO dispatches
            (workspace_id, id, event_id, destination_id, destination_type, kind, status, reason)
        SELECT u.workspace_id, u.id, u.event_id, u.destination_id, u.destination_type, 'conversion',
               u.status, u.reason
        FROM u
        ON CONFLICT DO NOTHING
        RETURNING workspace_id, id
    ), payloads AS (
        INSERT INTO dispatch_payloads (workspace_id, dispatch_id, payload, routing)
        SELECT DISTINCT ON (u.workspace_id, u.id) u.workspace_id, u.id, u.payload, u.routing
        FROM created JOIN u ON u.workspace_id = created.workspace_id AND u.id = created.id
    )
    SELECT id FROM created";

/// What the conversion-events catalog says about one event name for one destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogRule {
    /// False: the destination gets no conversion of this event name (its dispatch is recorded
    /// `skipped`, with the reason).
    pub enabled: bool,
    /// The conversion action or event name the destination's platform gets instead of its
    /// per-kind setting.
    pub mapping: Option<platforms::model::EventMapping>,
}

/// The catalog's rules per workspace, event name and destination, as [`enqueue_with_catalog`]
/// applies them. Empty: every destination's own settings apply.
#[derive(Debug, Clone, Default)]
pub struct CatalogRules {
    rules: HashMap<(Uuid, String, EventKind), HashMap<Uuid, CatalogRule>>,
}

impl CatalogRules {
    /// Sets the rule for `destination_id` of the `kind` events named `event_name` in
    /// `workspace_id` (a definition applies to events of its own kind only).
    pub fn insert(
        &mut self,
        workspace_id: Uuid,
        event_name: &str,
        kind: EventKind,
        destination_id: Uuid,
        rule: CatalogRule,
    ) {
        self.rules
            .entry((workspace_id, event_name.to_owned(), kind))
            .or_default()
            .insert(destination_id, rule);
    }

    /// True when no rule is set.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub(crate) fn get(&self, routed: &RoutedEvent, destination_id: Uuid) -> Option<&CatalogRule> {
        // Most workspaces define nothing: no key to build for every dispatch then.
        if self.rules.is_empty() {
            return None;
        }
        let key = (
            routed.workspace_id,
            routed.event.event_name.clone(),
            routed.event.kind(),
        );
        self.rules.get(&key)?.get(&destination_id)
    }
}

/// The reason of a dispatch the catalog turned off.
pub fn catalog_skip_reason(event_name: &str) -> String {
    format!(
        "turned_off_in_catalog: the conversion event {event_name:?} is turned off for this destination"
    )
}

/// Turns routed conversions into dispatches, inside the caller's transaction.
///
/// For each route with `dispatch = true`, one dispatch per destination of that type in the
/// event's workspace that subscribes to the event's kind, enabled or not (a disabled
/// destination's dispatches wait until it is enabled). A destination with
/// `matchWithoutClickId` also gets decided events that have none of its platform's click ids but name the person.
/// Each dispatch stores the conversion and its routing as they are now, status `queued`, due now.
/// Enqueueing the same event again adds nothing. Answers how many dispatches were created.
///
/// # Errors
/// [`Error::Database`]; [`Error::Corrupt`] when a stored destination cannot be read.
pub async fn enqueue(client: &impl GenericClient, routed: &[RoutedEvent]) -> Result<usize> {
    enqueue_with_catalog(client, routed, &CatalogRules::default()).await
}

/// [`enqueue`], applying the conversion-events catalog: a destination its event name's
/// definition turns off gets its dispatch recorded `skipped` with the reason (nothing is sent),
/// and a mapped destination's dispatch carries the conversion action or event name to use.
///
/// # Errors
/// As [`enqueue`].
pub async fn enqueue_with_catalog(
    client: &impl GenericClient,
    routed: &[RoutedEvent],
    catalog: &CatalogRules,
) -> Result<usize> {
    let interesting: Vec<&RoutedEvent> = routed
        .iter()
        .filter(|r| r.routes.iter().any(|d| d.dispatch) || user_data_only_candidate(r))
        .collect();
    if interesting.is_empty() {
        return Ok(0);
    }
    let mut workspaces: Vec<Uuid> = interesting.iter().map(|r| r.workspace_id).collect();
    workspaces.sort_unstable();
    workspaces.dedup();
    let mut by_workspace: HashMap<Uuid, Vec<Destination>> = HashMap::new();
    for destination in destinations::destinations_of(client, &workspaces).await? {
        by_workspace
            .entry(destination.workspace_id)
            .or_default()
            .push(destination);
    }

    struct Row<'a> {
        routed: &'a RoutedEvent,
        destination: &'a Destination,
    }
    let mut rows: Vec<Row<'_>> = Vec::new();
    for routed in &interesting {
        for destination in by_workspace.get(&routed.workspace_id).into_iter().flatten() {
            if routed_to(routed, destination) {
                rows.push(Row {
                    routed,
                    destination,
                });
            }
        }
    }
    if rows.is_empty() {
        return Ok(0);
    }
    // One lock order for every transaction, as in the dedup crate.
    rows.sort_by_key(|r| (r.routed.workspace_id, r.routed.event_id, r.destination.id));
    rows.dedup_by_key(|r| (r.routed.workspace_id, r.routed.event_id, r.destination.id));

    let mut ws = Vec::with_capacity(rows.len());
    let mut ids = Vec::with_capacity(rows.len());
    let mut event_ids = Vec::with_capacity(rows.len());
    let mut destination_ids = Vec::with_capacity(rows.len());
    let mut types = Vec::with_capacity(rows.len());
    let mut payloads = Vec::with_capacity(rows.len());
    let mut routings = Vec::with_capacity(rows.len());
    let mut statuses = Vec::with_capacity(rows.len());
    let mut reasons: Vec<Option<String>> = Vec::with_capacity(rows.len());
    let mut payload_of: HashMap<Uuid, (Value, Value)> = HashMap::new();
    for row in &rows {
        let routed = row.routed;
        let (payload, routing) = match payload_of.get(&routed.event_id) {
            Some(cached) => cached.clone(),
            None => {
                let made = (snapshot_json(routed)?, routing_json(&routed.routes)?);
                payload_of.insert(routed.event_id, made.clone());
                made
            }
        };
        let rule = catalog.get(routed, row.destination.id);
        let (payload, status, reason) = match rule {
            Some(rule) if !rule.enabled => (
                payload,
                DispatchStatus::Skipped,
                Some(catalog_skip_reason(&routed.event.event_name)),
            ),
            Some(CatalogRule {
                mapping: Some(mapping),
                ..
            }) if !mapping.is_empty() => (
                with_mapping(payload, mapping)?,
                DispatchStatus::Queued,
                None,
            ),
            _ => (payload, DispatchStatus::Queued, None),
        };
        ws.push(routed.workspace_id);
        ids.push(dispatch_id(
            routed.event_id,
            row.destination.id,
            DispatchKind::Conversion,
            0,
        ));
        event_ids.push(routed.event_id);
        destination_ids.push(row.destination.id);
        types.push(row.destination.destination_type().as_str());
        payloads.push(payload);
        routings.push(routing);
        statuses.push(status.as_str());
        reasons.push(reason);
    }
    let stmt = client.prepare_cached(INSERT_DISPATCHES).await?;
    let created = client
        .query(
            &stmt,
            &[
                &ws,
                &ids,
                &event_ids,
                &destination_ids,
                &types,
                &payloads,
                &routings,
                &statuses,
                &reasons,
            ],
        )
        .await?;
    Ok(created.len())
}

/// The stored conversion with the catalog's mapping for its destination.
pub(crate) fn with_mapping(
    mut payload: Value,
    mapping: &platforms::model::EventMapping,
) -> Result<Value> {
    let mapping = serde_json::to_value(mapping).map_err(|e| Error::Corrupt {
        what: "catalog mapping",
        detail: e.to_string(),
    })?;
    if let Value::Object(map) = &mut payload {
        map.insert("mapping".into(), mapping);
    }
    Ok(payload)
}

fn snapshot_json(routed: &RoutedEvent) -> Result<Value> {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct SnapshotRef<'a> {
        event_id: Uuid,
        #[serde(with = "events::rfc3339_millis")]
        received_at: OffsetDateTime,
        event: &'a Event,
        attribution: &'a Attribution,
    }
    serde_json::to_value(SnapshotRef {
        event_id: routed.event_id,
        received_at: routed.received_at,
        event: &routed.event,
        attribution: &routed.attribution,
    })
    .map_err(|e| Error::Corrupt {
        what: "routed event",
        detail: e.to_string(),
    })
}

fn routing_json(routes: &[RouteDecision]) -> Result<Value> {
    serde_json::to_value(routes).map_err(|e| Error::Corrupt {
        what: "routing",
        detail: e.to_string(),
    })
}

/// A dispatch a worker holds, ready to send.
#[derive(Debug, Clone)]
pub struct ClaimedDispatch {
    /// Its workspace.
    pub workspace_id: Uuid,
    /// Its id.
    pub id: Uuid,
    /// Conversion or retraction.
    pub kind: DispatchKind,
    /// Attempts made, this one included.
    pub attempts: i32,
    /// `attempts` at the last manual retry: the retry budget counts from there.
    pub retry_from: i32,
    /// Its destination (shared by the claim's dispatches to it).
    pub destination: Arc<Destination>,
    /// What to send, with its routing decision (unreadable payloads are reported in
    /// [`Claim::unreadable`]).
    pub conversion: Conversion,
}

/// What one claim took.
#[derive(Debug, Default)]
pub struct Claim {
    /// The token every row of this claim holds; results are recorded only under it.
    pub token: Uuid,
    /// Rows to send.
    pub dispatches: Vec<ClaimedDispatch>,
    /// Rows held under the token whose stored payload or destination cannot be read: to be
    /// recorded as failed, never sent.
    pub unreadable: Vec<(Uuid, Uuid, i32, String)>,
    /// Rows of deleted destinations found due, now `cancelled`.
    pub cancelled: usize,
    /// Rows whose worker's lease ran out with no attempts left, now `failed`.
    pub exhausted: usize,
    /// Rows whose worker's lease ran out while their destination is disabled, back to `queued`.
    pub released: usize,
}

/// Claiming due work, all in one statement (so no explicit transaction is needed):
/// - `due`: live rows before backfilled ones (a backfill never delays live traffic), each
///   oldest due first: queued or retrying rows whose time has come and whose destination is enabled and
///   not parked (its platform asked to come back later), and in-flight rows whose lease ran out, oldest due first, locked with `SKIP LOCKED` so that
///   concurrent workers split the work instead of waiting for each other;
/// - `decided`: a row of a deleted destination is cancelled; an expired in-flight row with no
///   attempts left fails; an expired one of a disabled destination goes back to queued; every
///   other row goes in flight under `$2` until `now() + $3 ms`, its attempt counted;
/// - `expired`: the lost attempt of every expired in-flight row is written down.
const CLAIM: &str = "
    WITH due AS (
        SELECT d.workspace_id, d.id, d.status AS was, d.attempts AS old_attempts, d.retry_from,
               t.id IS NULL AS orphan, coalesce(t.enabled, false) AS enabled
        FROM dispatches d
        LEFT JOIN destinations t ON t.workspace_id = d.workspace_id AND t.id = d.destination_id
        WHERE d.status IN ('queued', 'retrying', 'in_flight') AND d.due_at <= now()
          AND (t.enabled OR t.id IS NULL OR d.status = 'in_flight')
          AND (d.status = 'in_flight' OR NOT EXISTS (
                  SELECT 1 FROM destination_parks p
                  WHERE p.workspace_id = d.workspace_id AND p.destination_id = d.destination_id
                    AND p.parked_until > now()))
        ORDER BY d.backfill, d.due_at
        LIMIT $1
        FOR UPDATE OF d SKIP LOCKED
    ), decided AS (
        SELECT due.*, CASE
            WHEN orphan THEN 'cancelled'
            WHEN was = 'in_flight' AND old_attempts - retry_from >= $4 THEN 'failed'
            WHEN NOT enabled THEN 'queued'
            ELSE 'in_flight' END AS next
        FROM due
    ), claimed AS (
        UPDATE dispatches d SET
            status = decided.next,
            attempts = d.attempts + (decided.next = 'in_flight')::int,
            lease_token = CASE WHEN decided.next = 'in_flight' THEN $2::uuid END,
            due_at = CASE WHEN decided.next = 'in_flight'
                          THEN now() + $3::bigint * interval '1 millisecond' ELSE now() END,
            reason = CASE WHEN decided.next = 'cancelled' THEN 'destination deleted' ELSE d.reason END,
            last_error = CASE WHEN decided.next = 'failed'
                              THEN 'attempts exhausted: the last attempt''s worker stopped before recording a result'
                              ELSE d.last_error END,
            updated_at = now()
        FROM decided
        WHERE d.workspace_id = decided.workspace_id AND d.id = decided.id
        RETURNING d.workspace_id, d.id, d.status, d.destination_id, d.kind, d.attempts,
                  d.retry_from
    ), expired AS (
        INSERT INTO dispatch_attempts (workspace_id, dispatch_id, attempt, at, duration_ms, outcome, error)
        SELECT workspace_id, id, old_attempts, now(), 0, 'lease_expired',
               'no result was recorded before the worker''s lease ran out (it stopped or was too slow)'
        FROM decided WHERE was = 'in_flight' AND old_attempts > 0
        ON CONFLICT DO NOTHING
    )
    SELECT workspace_id, id, status, destination_id, kind, attempts, retry_from
    FROM claimed";

/// The payloads of claimed rows. A statement of its own, after the claim: under read committed it
/// sees a restatement of a queued conversion that committed while the claim was taking the row
/// (the claim follows the row's new version, but its own snapshot still holds the old payload).
const CLAIMED_PAYLOADS: &str = "
    SELECT p.workspace_id, p.dispatch_id, p.payload, p.routing
    FROM dispatch_payloads p
    JOIN unnest($1::uuid[], $2::uuid[]) AS u(workspace_id, id)
      ON p.workspace_id = u.workspace_id AND p.dispatch_id = u.id";

/// Rows claimed a moment ago whose destination was deleted before it could be read: nothing was
/// sent, so they are cancelled and the attempt the claim counted is given back.
const CANCEL_VANISHED: &str = "
    UPDATE dispatches d SET status = 'cancelled', reason = 'destination deleted',
           attempts = d.attempts - 1, lease_token = NULL, due_at = now(), updated_at = now()
    FROM unnest($1::uuid[], $2::uuid[]) AS u(workspace_id, id)
    WHERE d.workspace_id = u.workspace_id AND d.id = u.id
      AND d.lease_token = $3 AND d.status = 'in_flight'";

/// The destinations of claimed rows, each once.
const CLAIMED_DESTINATIONS: &str = "
    SELECT t.workspace_id, t.id, t.type, t.name, t.enabled, t.events, t.config, t.credentials,
           t.revision, t.created_at, t.updated_at
    FROM destinations t
    JOIN unnest($1::uuid[], $2::uuid[]) AS u(workspace_id, id)
      ON t.workspace_id = u.workspace_id AND t.id = u.id";

/// The claim walks the due index in its order, whatever the planner's statistics say. A queue
/// fills and drains faster than statistics follow: with a backlog the planner still believes
/// small, it would read and sort every due row to take the first thousand, each claim costing as
/// much as the backlog. `SET LOCAL` keeps this to the claim's own transaction. The costs that
/// steer the planner off a path would also switch on JIT compilation (over a second of LLVM
/// per statement): off.
const CLAIM_BY_INDEX: &str = "
    SET LOCAL enable_seqscan = off;
    SET LOCAL enable_bitmapscan = off;
    SET LOCAL enable_sort = off;
    SET LOCAL jit = off";

/// The record finds its rows by primary key, never by scanning the table for the claim's token
/// (which stale statistics make look cheap).
const RECORD_BY_KEY: &str = "
    SET LOCAL enable_seqscan = off;
    SET LOCAL enable_bitmapscan = off;
    SET LOCAL jit = off";

/// Claims up to `limit` due dispatches for `lease`, in a transaction of its own on `client`.
/// `max_attempts` is the retry policy's budget: a dispatch whose worker vanished on its last
/// allowed attempt fails instead of going again.
///
/// # Errors
/// [`Error::Database`].
pub async fn claim_due(
    client: &mut deadpool_postgres::ClientWrapper,
    limit: usize,
    lease: Duration,
    max_attempts: u32,
) -> Result<Claim> {
    let tx = client.transaction().await?;
    tx.batch_execute(CLAIM_BY_INDEX).await?;
    let claim = claim_in(&tx, limit, lease, max_attempts).await?;
    tx.commit().await?;
    Ok(claim)
}

async fn claim_in(
    client: &impl GenericClient,
    limit: usize,
    lease: Duration,
    max_attempts: u32,
) -> Result<Claim> {
    let token = Uuid::now_v7();
    let stmt = client.prepare_cached(CLAIM).await?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    let max_attempts = i32::try_from(max_attempts).unwrap_or(i32::MAX);
    let rows = client
        .query(&stmt, &[&limit, &token, &lease_ms, &max_attempts])
        .await?;
    let mut claim = Claim {
        token,
        ..Claim::default()
    };
    let mut held = Vec::with_capacity(rows.len());
    for row in rows {
        match row.try_get::<_, &str>("status")? {
            "cancelled" => claim.cancelled += 1,
            "failed" => claim.exhausted += 1,
            "queued" => claim.released += 1,
            _ => held.push(row),
        }
    }
    if held.is_empty() {
        return Ok(claim);
    }
    let mut wanted: Vec<(Uuid, Uuid)> = held
        .iter()
        .map(|row| Ok((row.try_get("workspace_id")?, row.try_get("destination_id")?)))
        .collect::<Result<_>>()?;
    wanted.sort_unstable();
    wanted.dedup();
    let ws: Vec<Uuid> = wanted.iter().map(|w| w.0).collect();
    let ids: Vec<Uuid> = wanted.iter().map(|w| w.1).collect();
    let stmt = client.prepare_cached(CLAIMED_DESTINATIONS).await?;
    let mut destinations: HashMap<(Uuid, Uuid), std::result::Result<Arc<Destination>, String>> =
        HashMap::with_capacity(wanted.len());
    for row in client.query(&stmt, &[&ws, &ids]).await? {
        let key = (row.try_get("workspace_id")?, row.try_get("id")?);
        let destination = Destination::from_row(&row)
            .map(Arc::new)
            .map_err(|e| e.to_string());
        destinations.insert(key, destination);
    }
    let (held_ws, held_ids): (Vec<Uuid>, Vec<Uuid>) = held
        .iter()
        .map(|row| Ok((row.try_get("workspace_id")?, row.try_get("id")?)))
        .collect::<Result<Vec<(Uuid, Uuid)>>>()?
        .into_iter()
        .unzip();
    let stmt = client.prepare_cached(CLAIMED_PAYLOADS).await?;
    let mut payloads: HashMap<(Uuid, Uuid), tokio_postgres::Row> =
        HashMap::with_capacity(held.len());
    for row in client.query(&stmt, &[&held_ws, &held_ids]).await? {
        payloads.insert(
            (row.try_get("workspace_id")?, row.try_get("dispatch_id")?),
            row,
        );
    }
    let mut vanished: (Vec<Uuid>, Vec<Uuid>) = (Vec::new(), Vec::new());
    for row in held {
        let workspace_id: Uuid = row.try_get("workspace_id")?;
        let id: Uuid = row.try_get("id")?;
        let attempts: i32 = row.try_get("attempts")?;
        let destination_id: Uuid = row.try_get("destination_id")?;
        let Some(destination) = destinations.get(&(workspace_id, destination_id)) else {
            // Deleted between the claim and this read.
            vanished.0.push(workspace_id);
            vanished.1.push(id);
            continue;
        };
        let read = || -> std::result::Result<ClaimedDispatch, String> {
            let destination = destination.clone()?;
            let kind_raw: &str = row.try_get("kind").map_err(|e| e.to_string())?;
            let kind = DispatchKind::parse(kind_raw)
                .ok_or_else(|| format!("stored dispatch kind cannot be read: {kind_raw}"))?;
            // None for a dispatch whose person was erased while it was in flight.
            let stored = payloads
                .get(&(workspace_id, id))
                .ok_or_else(|| "the dispatch's payload is no longer stored".to_owned())?;
            let Json(snapshot): Json<Snapshot> = stored
                .try_get("payload")
                .map_err(|e| format!("stored dispatch payload cannot be read: {e}"))?;
            let routing: Option<Value> = stored.try_get("routing").map_err(|e| e.to_string())?;
            Ok(ClaimedDispatch {
                workspace_id,
                id,
                kind,
                attempts,
                retry_from: row.try_get("retry_from").map_err(|e| e.to_string())?,
                destination,
                conversion: snapshot.into_conversion(id, routing.unwrap_or(Value::Null)),
            })
        };
        match read() {
            Ok(dispatch) => claim.dispatches.push(dispatch),
            Err(error) => claim.unreadable.push((workspace_id, id, attempts, error)),
        }
    }
    if !vanished.0.is_empty() {
        let stmt = client.prepare_cached(CANCEL_VANISHED).await?;
        let cancelled = client
            .execute(&stmt, &[&vanished.0, &vanished.1, &token])
            .await?;
        claim.cancelled += usize::try_from(cancelled).unwrap_or(usize::MAX);
    }
    Ok(claim)
}

const EXTEND: &str = "
    UPDATE dispatches SET due_at = now() + $4::bigint * interval '1 millisecond'
    FROM unnest($1::uuid[], $2::uuid[]) AS u(workspace_id, id)
    WHERE dispatches.workspace_id = u.workspace_id AND dispatches.id = u.id
      AND dispatches.lease_token = $3 AND dispatches.status = 'in_flight'";

/// Extends the lease on rows still held under `token`, for sends that take long. Answers how many
/// rows are still held.
///
/// # Errors
/// [`Error::Database`].
pub async fn extend_lease(
    client: &impl GenericClient,
    rows: &[(Uuid, Uuid)],
    token: Uuid,
    lease: Duration,
) -> Result<u64> {
    let ws: Vec<Uuid> = rows.iter().map(|r| r.0).collect();
    let ids: Vec<Uuid> = rows.iter().map(|r| r.1).collect();
    let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    let stmt = client.prepare_cached(EXTEND).await?;
    Ok(client
        .execute(&stmt, &[&ws, &ids, &token, &lease_ms])
        .await?)
}

/// The result of one attempt of one dispatch, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptResult {
    /// The dispatch's workspace.
    pub workspace_id: Uuid,
    /// The dispatch.
    pub id: Uuid,
    /// Its new status: succeeded, retrying, failed or skipped.
    pub status: DispatchStatus,
    /// For `retrying`: how long until the next attempt.
    pub retry_in: Option<Duration>,
    /// The error to show as `lastError` (`None` clears it).
    pub last_error: Option<String>,
    /// For `skipped`: why.
    pub reason: Option<String>,
    /// When the attempt started.
    pub at: OffsetDateTime,
    /// How long it took.
    pub duration: Duration,
    /// The HTTP status of the answer that decided it.
    pub http_status: Option<u16>,
    /// `succeeded`, `already_delivered`, `retry`, `permanent`, `skipped` or `error`.
    pub outcome: &'static str,
    /// The attempt's error.
    pub error: Option<String>,
    /// The platform request whose answer decided it (one of the [`RequestResult`]s recorded
    /// with it), which keeps the answer's excerpt once for every conversion it carried.
    pub request: Option<Uuid>,
    /// For `succeeded`: `confirmed` (the platform answered synchronously) or `pending` (it
    /// processes the upload later).
    pub confirmation: Option<ConfirmationStatus>,
    /// For a `pending` confirmation: the platform's id of the upload request, checked once for
    /// every conversion it carried.
    pub confirmation_request: Option<String>,
    /// For a `pending` confirmation: when to check the upload request first.
    pub check_in: Option<Duration>,
    /// Not sent after all (paced to the quota, or the destination parked): the row goes back to
    /// waiting, due after `retry_in`, its attempt given back and none written down.
    pub released: bool,
}

/// One platform request that decided attempts, recorded once however many conversions it
/// carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestResult {
    /// Its workspace (that of the dispatches it carried).
    pub workspace_id: Uuid,
    /// Its id, as the attempts it decided name it ([`AttemptResult::request`]).
    pub id: Uuid,
    /// The destination it went to.
    pub destination_id: Uuid,
    /// When the send that made it started.
    pub at: OffsetDateTime,
    /// How long it took.
    pub duration: Duration,
    /// The HTTP status of its answer, when one came.
    pub http_status: Option<u16>,
    /// The start of the answer, with nothing secret in it.
    pub response_excerpt: Option<String>,
}

/// How long an upload request's status is checked before checking stops (Google: 24 h).
pub const CONFIRMATION_DEADLINE: Duration = Duration::from_secs(24 * 3600);

/// Recording results: the status changes only for rows still in flight under the claim's token,
/// the attempt is written for every row still held under the token, and the token is released.
/// A send whose destination was deleted meanwhile keeps its real outcome (it may have landed),
/// except that one that would be retried is `cancelled` instead: there is nothing left to retry
/// against (`orphan`, looked up only for rows that would be retried). The requests that decided
/// the recorded attempts are written once each, with their answer's excerpt.
const RECORD: &str = "
    WITH u AS (
        SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::bigint[], $5::text[], $6::text[],
                             $7::timestamptz[], $8::int[], $9::int2[], $10::text[], $11::text[], $12::uuid[],
                             $14::text[], $15::text[], $16::bigint[], $17::bool[])
            AS u(workspace_id, id, status, retry_ms, last_error, reason,
                 at, duration_ms, http_status, outcome, error, request_id,
                 confirmation, confirmation_request, check_ms, released)
    ), updated AS (
        UPDATE dispatches d SET
            status = CASE WHEN d.status <> 'in_flight' THEN d.status
                          WHEN o.orphan THEN 'cancelled'
                          WHEN u.released AND d.attempts > d.retry_from + 1 THEN 'retrying'
                          WHEN u.released THEN 'queued'
                          ELSE u.status END,
            attempts = CASE WHEN d.status = 'in_flight' AND u.released AND NOT o.orphan
                            THEN d.attempts - 1 ELSE d.attempts END,
            due_at = CASE WHEN d.status = 'in_flight' AND u.retry_ms IS NOT NULL AND NOT o.orphan
                          THEN now() + u.retry_ms * interval '1 millisecond' ELSE d.due_at END,
            last_error = CASE WHEN d.status = 'in_flight' AND NOT u.released THEN u.last_error
                              ELSE d.last_error END,
            reason = CASE WHEN d.status <> 'in_flight' OR u.released THEN d.reason
                          WHEN o.orphan THEN 'destination deleted' ELSE u.reason END,
            confirmation = CASE WHEN d.status = 'in_flight' AND u.status = 'succeeded'
                                     AND NOT u.released
                                THEN u.confirmation ELSE d.confirmation END,
            confirmation_request = CASE WHEN d.status = 'in_flight' AND u.status = 'succeeded'
                                             AND NOT u.released
                                        THEN u.confirmation_request ELSE d.confirmation_request END,
            confirmation_checked_at = CASE WHEN d.status = 'in_flight' AND u.status = 'succeeded'
                                                AND u.confirmation = 'confirmed' AND NOT u.released
                                           THEN now() ELSE d.confirmation_checked_at END,
            lease_token = NULL,
            updated_at = now()
        FROM u, LATERAL (
            SELECT u.status = 'retrying' AND NOT EXISTS (
                       SELECT 1 FROM destinations t
                       WHERE t.workspace_id = u.workspace_id
                         AND t.id = (SELECT x.destination_id FROM dispatches x
                                     WHERE x.workspace_id = u.workspace_id AND x.id = u.id)) AS orphan
        ) o
        WHERE d.workspace_id = u.workspace_id AND d.id = u.id AND d.lease_token = $13
        RETURNING d.workspace_id, d.id, d.attempts, d.destination_id, d.confirmation,
                  d.confirmation_request, u.request_id, u.released
    ), checks AS (
        INSERT INTO upload_checks (workspace_id, destination_id, request_id, status, due_at, deadline_at)
        SELECT DISTINCT ON (updated.workspace_id, updated.destination_id, updated.confirmation_request)
               updated.workspace_id, updated.destination_id, updated.confirmation_request, 'pending',
               now() + coalesce(u.check_ms, 0) * interval '1 millisecond',
               now() + $18::bigint * interval '1 millisecond'
        FROM updated JOIN u ON u.workspace_id = updated.workspace_id AND u.id = updated.id
        WHERE updated.confirmation = 'pending' AND updated.confirmation_request IS NOT NULL
        ORDER BY updated.workspace_id, updated.destination_id, updated.confirmation_request
        ON CONFLICT DO NOTHING
    ), requests AS (
        INSERT INTO dispatch_requests
            (workspace_id, id, destination_id, at, duration_ms, http_status, response_excerpt)
        SELECT q.workspace_id, q.id, q.destination_id, q.at, q.duration_ms, q.http_status, q.excerpt
        FROM unnest($19::uuid[], $20::uuid[], $21::uuid[], $22::timestamptz[], $23::int[], $24::int2[],
                    $25::text[])
            AS q(workspace_id, id, destination_id, at, duration_ms, http_status, excerpt)
        WHERE q.id IN (SELECT updated.request_id FROM updated WHERE NOT updated.released)
        ON CONFLICT DO NOTHING
    ), attempts AS (
        INSERT INTO dispatch_attempts
            (workspace_id, dispatch_id, attempt, at, duration_ms, http_status, outcome, error, request_id)
        SELECT updated.workspace_id, updated.id, updated.attempts, u.at, u.duration_ms, u.http_status,
               u.outcome, u.error, u.request_id
        FROM updated JOIN u ON u.workspace_id = updated.workspace_id AND u.id = updated.id
        WHERE NOT u.released
        ON CONFLICT DO NOTHING
    )
    SELECT id FROM updated";

/// Records attempts held under `token`, and the `requests` that decided them, in a transaction
/// of its own on `client`. Answers the ids recorded; a result whose lease was lost (another
/// worker took the row over) is left out and changes nothing, and a request none of whose
/// attempts is recorded is not kept. A succeeded dispatch whose confirmation is `pending` gets
/// its upload request scheduled for checking (once per request); a released one goes back to
/// waiting with its attempt given back.
///
/// # Errors
/// [`Error::Database`].
pub async fn record_results(
    client: &mut deadpool_postgres::ClientWrapper,
    token: Uuid,
    results: &[AttemptResult],
    requests: &[RequestResult],
) -> Result<Vec<Uuid>> {
    if results.is_empty() {
        return Ok(Vec::new());
    }
    let tx = client.transaction().await?;
    tx.batch_execute(RECORD_BY_KEY).await?;
    let recorded = record_in(&tx, token, results, requests).await?;
    tx.commit().await?;
    Ok(recorded)
}

fn millis(duration: Duration) -> i32 {
    i32::try_from(duration.as_millis()).unwrap_or(i32::MAX)
}

fn status_code(status: Option<u16>) -> Option<i16> {
    status.and_then(|s| i16::try_from(s).ok())
}

async fn record_in(
    client: &impl GenericClient,
    token: Uuid,
    results: &[AttemptResult],
    requests: &[RequestResult],
) -> Result<Vec<Uuid>> {
    let ws: Vec<Uuid> = results.iter().map(|r| r.workspace_id).collect();
    let ids: Vec<Uuid> = results.iter().map(|r| r.id).collect();
    let status: Vec<&str> = results.iter().map(|r| r.status.as_str()).collect();
    let retry_ms: Vec<Option<i64>> = results
        .iter()
        .map(|r| {
            r.retry_in
                .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        })
        .collect();
    let last_error: Vec<Option<&str>> = results.iter().map(|r| r.last_error.as_deref()).collect();
    let reason: Vec<Option<&str>> = results.iter().map(|r| r.reason.as_deref()).collect();
    let at: Vec<OffsetDateTime> = results.iter().map(|r| r.at).collect();
    let duration_ms: Vec<i32> = results.iter().map(|r| millis(r.duration)).collect();
    let http_status: Vec<Option<i16>> =
        results.iter().map(|r| status_code(r.http_status)).collect();
    let outcome: Vec<&str> = results.iter().map(|r| r.outcome).collect();
    let error: Vec<Option<&str>> = results.iter().map(|r| r.error.as_deref()).collect();
    let request: Vec<Option<Uuid>> = results.iter().map(|r| r.request).collect();
    let confirmation: Vec<Option<&str>> = results
        .iter()
        .map(|r| r.confirmation.map(ConfirmationStatus::as_str))
        .collect();
    let confirmation_request: Vec<Option<&str>> = results
        .iter()
        .map(|r| r.confirmation_request.as_deref())
        .collect();
    let check_ms: Vec<Option<i64>> = results
        .iter()
        .map(|r| {
            r.check_in
                .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        })
        .collect();
    let released: Vec<bool> = results.iter().map(|r| r.released).collect();
    let deadline_ms = i64::try_from(CONFIRMATION_DEADLINE.as_millis()).unwrap_or(i64::MAX);
    let q_ws: Vec<Uuid> = requests.iter().map(|q| q.workspace_id).collect();
    let q_ids: Vec<Uuid> = requests.iter().map(|q| q.id).collect();
    let q_destinations: Vec<Uuid> = requests.iter().map(|q| q.destination_id).collect();
    let q_at: Vec<OffsetDateTime> = requests.iter().map(|q| q.at).collect();
    let q_duration_ms: Vec<i32> = requests.iter().map(|q| millis(q.duration)).collect();
    let q_http_status: Vec<Option<i16>> = requests
        .iter()
        .map(|q| status_code(q.http_status))
        .collect();
    let q_excerpt: Vec<Option<&str>> = requests
        .iter()
        .map(|q| q.response_excerpt.as_deref())
        .collect();
    let stmt = client.prepare_cached(RECORD).await?;
    let rows = client
        .query(
            &stmt,
            &[
                &ws,
                &ids,
                &status,
                &retry_ms,
                &last_error,
                &reason,
                &at,
                &duration_ms,
                &http_status,
                &outcome,
                &error,
                &request,
                &token,
                &confirmation,
                &confirmation_request,
                &check_ms,
                &released,
                &deadline_ms,
                &q_ws,
                &q_ids,
                &q_destinations,
                &q_at,
                &q_duration_ms,
                &q_http_status,
                &q_excerpt,
            ],
        )
        .await?;
    rows.iter().map(|r| Ok(r.try_get::<_, Uuid>(0)?)).collect()
}

// ---- Status transitions asked for by operators and by the destinations module. This module is
// the only writer of a dispatch's status; each transition is one named function.

/// Putting a failed or skipped dispatch back in the queue: due now, with a fresh retry budget
/// (`retry_from`), as long as its destination still exists.
const REQUEUE_ONE: &str = "
    UPDATE dispatches d
    SET status = 'queued', due_at = now(), retry_from = d.attempts, reason = NULL, updated_at = now()
    WHERE d.workspace_id = $1 AND d.id = $2 AND d.status IN ('failed', 'skipped')
      AND EXISTS (SELECT 1 FROM destinations t
                  WHERE t.workspace_id = d.workspace_id AND t.id = d.destination_id)
    RETURNING d.workspace_id, d.id, d.event_id, d.destination_id, d.destination_type, d.kind,
              d.status, d.attempts, d.due_at, d.last_error, d.reason, d.retract_reason,
              d.created_at, d.updated_at";

/// `failed | skipped → queued` for one dispatch (an operator's retry): due now, with a fresh retry
/// budget, as long as its destination still exists. Answers the row as the views read it, or
/// `None` when it is in another state, unknown, or its destination is gone.
///
/// # Errors
/// [`Error::Database`].
pub(crate) async fn requeue_one(
    client: &impl GenericClient,
    workspace_id: Uuid,
    id: Uuid,
) -> Result<Option<tokio_postgres::Row>> {
    let stmt = client.prepare_cached(REQUEUE_ONE).await?;
    Ok(client.query_opt(&stmt, &[&workspace_id, &id]).await?)
}

/// The rows are locked in id order first, as an erasure's strip locks them
/// ([`crate::erase::strip_dispatches`]), so that a replay and an erasure of one workspace never
/// wait on each other in a circle.
const REQUEUE_MANY: &str = "
    WITH target AS (
        SELECT d.workspace_id, d.id FROM dispatches d
        WHERE d.workspace_id = $1 AND d.status = $2
          AND ($3::uuid IS NULL OR d.destination_id = $3)
          AND ($4::timestamptz IS NULL OR d.created_at >= $4)
          AND EXISTS (SELECT 1 FROM destinations t
                      WHERE t.workspace_id = d.workspace_id AND t.id = d.destination_id)
        ORDER BY d.id
        FOR UPDATE OF d
    )
    UPDATE dispatches d
    SET status = 'queued', due_at = now(), retry_from = d.attempts, reason = NULL, updated_at = now()
    FROM target t
    WHERE d.workspace_id = t.workspace_id AND d.id = t.id AND d.status = $2";

/// `failed | skipped → queued` in bulk (an operator's replay) for every dispatch of `status`, of
/// `destination` when given, created since `since` when given; dispatches of deleted
/// destinations stay as they are. Answers how many.
///
/// # Errors
/// [`Error::Database`].
pub(crate) async fn requeue_many(
    client: &impl GenericClient,
    workspace_id: Uuid,
    status: DispatchStatus,
    destination: Option<Uuid>,
    since: Option<OffsetDateTime>,
) -> Result<u64> {
    let stmt = client.prepare_cached(REQUEUE_MANY).await?;
    Ok(client
        .execute(
            &stmt,
            &[&workspace_id, &status.as_str(), &destination, &since],
        )
        .await?)
}

/// `queued | retrying → cancelled` for an event's dispatches of one kind not sent yet. Like every
/// statement that changes several dispatches, it locks them in id order first (see
/// [`REQUEUE_MANY`]).
const CANCEL_UNSENT: &str = "
    WITH target AS (
        SELECT workspace_id, id FROM dispatches
        WHERE workspace_id = $1 AND event_id = $2 AND kind = $4
          AND status IN ('queued', 'retrying')
        ORDER BY id
        FOR UPDATE
    )
    UPDATE dispatches d SET status = 'cancelled', reason = $3, updated_at = now()
    FROM target t
    WHERE d.workspace_id = t.workspace_id AND d.id = t.id AND d.status IN ('queued', 'retrying')";

/// `queued | retrying → cancelled` for an event's conversion dispatches not sent yet (the event
/// was retracted), with `reason`. Answers how many.
///
/// # Errors
/// [`Error::Database`].
pub(crate) async fn cancel_unsent(
    client: &impl GenericClient,
    workspace_id: Uuid,
    event_id: Uuid,
    reason: &str,
) -> Result<u64> {
    let stmt = client.prepare_cached(CANCEL_UNSENT).await?;
    Ok(client
        .execute(&stmt, &[&workspace_id, &event_id, &reason, &"conversion"])
        .await?)
}

/// Cancelling a deleted destination's waiting dispatches. A dispatch in flight is left to its
/// worker, which already holds the destination and may be delivering it right now: its real
/// outcome is recorded, and should its worker vanish, the next claim cancels it.
/// The rows are locked in id order first (see [`REQUEUE_MANY`]).
const CANCEL_FOR_DELETED_DESTINATION: &str = "
    WITH target AS (
        SELECT workspace_id, id FROM dispatches
        WHERE workspace_id = $1 AND destination_id = $2
          AND status IN ('queued', 'retrying')
          AND NOT EXISTS (SELECT 1 FROM destinations t WHERE t.workspace_id = $1 AND t.id = $2)
        ORDER BY id
        FOR UPDATE
    )
    UPDATE dispatches d
    SET status = 'cancelled', reason = 'destination deleted', updated_at = now()
    FROM target t
    WHERE d.workspace_id = t.workspace_id AND d.id = t.id AND d.status IN ('queued', 'retrying')";

/// `queued | retrying → cancelled` (reason `destination deleted`) for every waiting dispatch of
/// a destination that no longer exists. Answers how many.
///
/// # Errors
/// [`Error::Database`].
pub(crate) async fn cancel_for_deleted_destination(
    client: &impl GenericClient,
    workspace_id: Uuid,
    destination_id: Uuid,
) -> Result<u64> {
    let stmt = client
        .prepare_cached(CANCEL_FOR_DELETED_DESTINATION)
        .await?;
    Ok(client
        .execute(&stmt, &[&workspace_id, &destination_id])
        .await?)
}

/// New retraction dispatches of one event, one per destination that had its conversion, as
/// parallel columns.
pub(crate) struct Retractions {
    pub ids: Vec<Uuid>,
    pub destination_ids: Vec<Uuid>,
    pub types: Vec<String>,
    /// `queued` where the destination can retract, else `skipped`.
    pub statuses: Vec<DispatchStatus>,
    pub payloads: Vec<Value>,
    /// `not_supported` for the skipped ones.
    pub reasons: Vec<Option<&'static str>>,
}

const INSERT_RETRACTIONS: &str = "
    WITH u AS (
        SELECT * FROM unnest($4::uuid[], $5::uuid[], $6::text[], $7::text[], $8::jsonb[], $9::text[])
            AS u(id, destination_id, destination_type, status, payload, reason)
    ), created AS (
        INSERT INTO dispatches (workspace_id, id, event_id, destination_id, destination_type, kind,
                                status, retract_reason, reason)
        SELECT $1, u.id, $2, u.destination_id, u.destination_type, 'retraction', u.status, $3,
               u.reason
        FROM u
        ON CONFLICT DO NOTHING
        RETURNING id, status
    ), payloads AS (
        INSERT INTO dispatch_payloads (workspace_id, dispatch_id, payload)
        SELECT DISTINCT ON (u.id) $1, u.id, u.payload FROM created JOIN u ON u.id = created.id
    )
    SELECT status FROM created";

/// `→ queued | skipped`: creates an event's retraction dispatches (none twice for a destination).
/// Answers the status of each one created.
///
/// # Errors
/// [`Error::Database`].
pub(crate) async fn add_retractions(
    client: &impl GenericClient,
    workspace_id: Uuid,
    event_id: Uuid,
    reason: &str,
    rows: &Retractions,
) -> Result<Vec<DispatchStatus>> {
    let statuses: Vec<&str> = rows.statuses.iter().map(|s| s.as_str()).collect();
    let stmt = client.prepare_cached(INSERT_RETRACTIONS).await?;
    let created = client
        .query(
            &stmt,
            &[
                &workspace_id,
                &event_id,
                &reason,
                &rows.ids,
                &rows.destination_ids,
                &rows.types,
                &statuses,
                &rows.payloads,
                &rows.reasons,
            ],
        )
        .await?;
    created
        .iter()
        .map(|row| {
            let raw: &str = row.try_get(0)?;
            DispatchStatus::parse(raw).ok_or_else(|| Error::Corrupt {
                what: "dispatch status",
                detail: raw.to_owned(),
            })
        })
        .collect()
}

// ---- Confirmation of accepted uploads. A succeeded dispatch of a platform that processes
// uploads later is `pending` under its upload request; one status check per request settles
// every dispatch it carried.

/// An upload request a worker holds for one status check.
#[derive(Debug, Clone)]
pub struct UploadToCheck {
    /// Its workspace.
    pub workspace_id: Uuid,
    /// The destination it went to.
    pub destination_id: Uuid,
    /// The platform's id of the request.
    pub request_id: String,
    /// Checks made, this one included.
    pub checks: i32,
    /// When checking stops.
    pub deadline_at: OffsetDateTime,
    /// The destination, or why it cannot be had (deleted, unreadable).
    pub destination: std::result::Result<Arc<Destination>, String>,
}

/// What one claim of upload checks took.
#[derive(Debug, Default)]
pub struct UploadClaim {
    /// The token the rows are held under.
    pub token: Uuid,
    /// The requests to check.
    pub uploads: Vec<UploadToCheck>,
}

const CLAIM_UPLOAD_CHECKS: &str = "
    WITH due AS (
        SELECT workspace_id, destination_id, request_id FROM upload_checks
        WHERE status = 'pending' AND due_at <= now()
        ORDER BY due_at
        LIMIT $1
        FOR UPDATE SKIP LOCKED
    )
    UPDATE upload_checks c
    SET lease_token = $2, checks = c.checks + 1,
        due_at = now() + $3::bigint * interval '1 millisecond'
    FROM due
    WHERE c.workspace_id = due.workspace_id AND c.destination_id = due.destination_id
      AND c.request_id = due.request_id
    RETURNING c.workspace_id, c.destination_id, c.request_id, c.checks, c.deadline_at";

/// Claims up to `limit` upload requests whose next status check is due, for `lease` (a worker
/// that vanishes gives them back when it runs out).
///
/// # Errors
/// [`Error::Database`].
pub async fn claim_upload_checks(
    client: &impl GenericClient,
    limit: usize,
    lease: Duration,
) -> Result<UploadClaim> {
    let token = Uuid::now_v7();
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    let stmt = client.prepare_cached(CLAIM_UPLOAD_CHECKS).await?;
    let rows = client.query(&stmt, &[&limit, &token, &lease_ms]).await?;
    let mut claim = UploadClaim {
        token,
        uploads: Vec::with_capacity(rows.len()),
    };
    if rows.is_empty() {
        return Ok(claim);
    }
    let mut wanted: Vec<(Uuid, Uuid)> = rows
        .iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect::<Result<_>>()?;
    wanted.sort_unstable();
    wanted.dedup();
    let ws: Vec<Uuid> = wanted.iter().map(|w| w.0).collect();
    let ids: Vec<Uuid> = wanted.iter().map(|w| w.1).collect();
    let stmt = client.prepare_cached(CLAIMED_DESTINATIONS).await?;
    let mut destinations: HashMap<(Uuid, Uuid), std::result::Result<Arc<Destination>, String>> =
        HashMap::new();
    for row in client.query(&stmt, &[&ws, &ids]).await? {
        let key = (row.try_get("workspace_id")?, row.try_get("id")?);
        destinations.insert(
            key,
            Destination::from_row(&row)
                .map(Arc::new)
                .map_err(|e| e.to_string()),
        );
    }
    for row in rows {
        let workspace_id: Uuid = row.try_get(0)?;
        let destination_id: Uuid = row.try_get(1)?;
        claim.uploads.push(UploadToCheck {
            workspace_id,
            destination_id,
            request_id: row.try_get(2)?,
            checks: row.try_get(3)?,
            deadline_at: row.try_get(4)?,
            destination: destinations
                .get(&(workspace_id, destination_id))
                .cloned()
                .unwrap_or_else(|| Err("the destination was deleted".to_owned())),
        });
    }
    Ok(claim)
}

/// Settling an upload request: its row takes the final status, and so does every dispatch it
/// carried that still waits for it, in one statement.
const SETTLE_UPLOAD: &str = "
    WITH checked AS (
        UPDATE upload_checks
        SET status = $5, detail = $6, checked_at = now(), lease_token = NULL
        WHERE workspace_id = $1 AND destination_id = $2 AND request_id = $3 AND lease_token = $4
        RETURNING workspace_id, destination_id, request_id
    )
    UPDATE dispatches d
    SET confirmation = $5, confirmation_detail = $6, confirmation_checked_at = now()
    FROM checked
    WHERE d.workspace_id = checked.workspace_id AND d.destination_id = checked.destination_id
      AND d.confirmation_request = checked.request_id AND d.confirmation = 'pending'
    RETURNING d.destination_type";

/// Still processing: the next check is due after `next` (never after the deadline); the
/// dispatches show what the last check found.
const RESCHEDULE_UPLOAD: &str = "
    WITH checked AS (
        UPDATE upload_checks
        SET detail = $6, checked_at = now(), lease_token = NULL,
            due_at = least(deadline_at, now() + $5::bigint * interval '1 millisecond')
        WHERE workspace_id = $1 AND destination_id = $2 AND request_id = $3 AND lease_token = $4
        RETURNING workspace_id, destination_id, request_id
    )
    UPDATE dispatches d
    SET confirmation_detail = $6, confirmation_checked_at = now()
    FROM checked
    WHERE d.workspace_id = checked.workspace_id AND d.destination_id = checked.destination_id
      AND d.confirmation_request = checked.request_id AND d.confirmation = 'pending'
    RETURNING d.destination_type";

/// `pending → confirmed | partially_failed | failed` for every dispatch an upload request
/// carried, under the claim's `token`. Answers the destination type of each dispatch settled
/// (none when the claim was lost).
///
/// # Errors
/// [`Error::Database`].
pub async fn settle_upload(
    client: &impl GenericClient,
    upload: &UploadToCheck,
    token: Uuid,
    status: ConfirmationStatus,
    detail: &str,
) -> Result<Vec<String>> {
    let stmt = client.prepare_cached(SETTLE_UPLOAD).await?;
    let rows = client
        .query(
            &stmt,
            &[
                &upload.workspace_id,
                &upload.destination_id,
                &upload.request_id,
                &token,
                &status.as_str(),
                &detail,
            ],
        )
        .await?;
    rows.iter()
        .map(|row| Ok(row.try_get::<_, String>(0)?))
        .collect()
}

/// Keeps an upload request `pending`, checked again after `next`. Answers how many dispatches
/// wait for it.
///
/// # Errors
/// [`Error::Database`].
pub async fn reschedule_upload(
    client: &impl GenericClient,
    upload: &UploadToCheck,
    token: Uuid,
    next: Duration,
    detail: &str,
) -> Result<usize> {
    let next_ms = i64::try_from(next.as_millis()).unwrap_or(i64::MAX);
    let stmt = client.prepare_cached(RESCHEDULE_UPLOAD).await?;
    Ok(client
        .query(
            &stmt,
            &[
                &upload.workspace_id,
                &upload.destination_id,
                &upload.request_id,
                &token,
                &next_ms,
                &detail,
            ],
        )
        .await?
        .len())
}

// ---- Restatements.

/// The dispatch rows are updated too, not only read: the update locks them against a claim (which
/// skips them meanwhile, or, having taken one first, makes this wait and then leave it to a
/// restatement), as when the payload was a column of theirs.
const REVALUE_UNSENT: &str = "
    WITH target AS (
        SELECT workspace_id, id FROM dispatches
        WHERE workspace_id = $1 AND event_id = $2 AND kind = 'conversion'
          AND status IN ('queued', 'retrying')
        ORDER BY id
        FOR UPDATE
    ), unsent AS (
        UPDATE dispatches d SET updated_at = now()
        FROM target t
        WHERE d.workspace_id = t.workspace_id AND d.id = t.id
          AND d.status IN ('queued', 'retrying')
        RETURNING d.workspace_id, d.id
    ), revalued AS (
        UPDATE dispatch_payloads p
        SET payload = jsonb_set(jsonb_set(p.payload, '{event,amount}', to_jsonb($3::numeric)),
                                '{event,currency}', to_jsonb($4::text))
        FROM unsent
        WHERE p.workspace_id = unsent.workspace_id AND p.dispatch_id = unsent.id
    )
    SELECT count(*) FROM unsent";

/// An event's conversion dispatches not sent yet carry its new value: they go out restated.
/// Answers how many.
///
/// # Errors
/// [`Error::Database`].
pub(crate) async fn revalue_unsent(
    client: &impl GenericClient,
    workspace_id: Uuid,
    event_id: Uuid,
    amount: rust_decimal::Decimal,
    currency: &str,
) -> Result<u64> {
    let stmt = client.prepare_cached(REVALUE_UNSENT).await?;
    let n: i64 = client
        .query_one(&stmt, &[&workspace_id, &event_id, &amount, &currency])
        .await?
        .try_get(0)?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// `queued | retrying → cancelled` for an event's restatements not sent yet: a newer value
/// replaces them. Answers how many.
///
/// # Errors
/// [`Error::Database`].
pub(crate) async fn supersede_restatements(
    client: &impl GenericClient,
    workspace_id: Uuid,
    event_id: Uuid,
    reason: &str,
) -> Result<u64> {
    let stmt = client.prepare_cached(CANCEL_UNSENT).await?;
    Ok(client
        .execute(&stmt, &[&workspace_id, &event_id, &reason, &"restatement"])
        .await?)
}

const INSERT_RESTATEMENTS: &str = "
    WITH u AS (
        SELECT * FROM unnest($6::uuid[], $7::uuid[], $8::text[], $9::text[], $10::jsonb[],
                             $11::jsonb[], $12::text[])
            AS u(id, destination_id, destination_type, status, payload, routing, reason)
    ), created AS (
        INSERT INTO dispatches (workspace_id, id, event_id, destination_id, destination_type, kind,
                                status, reason, revision)
        SELECT $1, u.id, $2, u.destination_id, u.destination_type, 'restatement', u.status,
               u.reason, $5
        FROM u
        ON CONFLICT DO NOTHING
        RETURNING id, status
    ), payloads AS (
        INSERT INTO dispatch_payloads (workspace_id, dispatch_id, payload, routing)
        SELECT DISTINCT ON (u.id) $1, u.id,
               jsonb_set(jsonb_set(u.payload, '{event,amount}', to_jsonb($3::numeric)),
                         '{event,currency}', to_jsonb($4::text)),
               u.routing
        FROM created JOIN u ON u.id = created.id
    )
    SELECT status FROM created";

/// New restatement dispatches of one event's `revision`, one per destination that has (or is
/// sending) its conversion, as parallel columns.
pub(crate) struct Restatements {
    pub ids: Vec<Uuid>,
    pub destination_ids: Vec<Uuid>,
    pub types: Vec<String>,
    /// `queued` where the destination can restate, else `skipped`.
    pub statuses: Vec<DispatchStatus>,
    /// The conversion's payload; the new value is set in it here.
    pub payloads: Vec<Value>,
    pub routings: Vec<Option<Value>>,
    /// `not_supported` for the skipped ones.
    pub reasons: Vec<Option<&'static str>>,
}

/// `→ queued | skipped`: creates the restatement dispatches of `revision` carrying the new value
/// (none twice for a destination and revision). Answers the status of each one created.
///
/// # Errors
/// [`Error::Database`].
pub(crate) async fn add_restatements(
    client: &impl GenericClient,
    workspace_id: Uuid,
    event_id: Uuid,
    amount: rust_decimal::Decimal,
    currency: &str,
    revision: i32,
    rows: &Restatements,
) -> Result<Vec<DispatchStatus>> {
    let statuses: Vec<&str> = rows.statuses.iter().map(|s| s.as_str()).collect();
    let stmt = client.prepare_cached(INSERT_RESTATEMENTS).await?;
    let created = client
        .query(
            &stmt,
            &[
                &workspace_id,
                &event_id,
                &amount,
                &currency,
                &revision,
                &rows.ids,
                &rows.destination_ids,
                &rows.types,
                &statuses,
                &rows.payloads,
                &rows.routings,
                &rows.reasons,
            ],
        )
        .await?;
    created
        .iter()
        .map(|row| {
            let raw: &str = row.try_get(0)?;
            DispatchStatus::parse(raw).ok_or_else(|| Error::Corrupt {
                what: "dispatch status",
                detail: raw.to_owned(),
            })
        })
        .collect()
}

const INSERT_BACKFILLED: &str = "
    WITH u AS (
        SELECT * FROM unnest($4::uuid[], $5::uuid[], $6::jsonb[], $7::jsonb[])
            AS u(id, event_id, payload, routing)
    ), created AS (
        INSERT INTO dispatches
            (workspace_id, id, event_id, destination_id, destination_type, kind, status, backfill)
        SELECT $1, u.id, u.event_id, $2, $3, 'conversion', 'queued', true
        FROM u
        ON CONFLICT DO NOTHING
        RETURNING id, event_id
    ), payloads AS (
        INSERT INTO dispatch_payloads (workspace_id, dispatch_id, payload, routing)
        SELECT DISTINCT ON (u.id) $1, u.id, u.payload, u.routing
        FROM created JOIN u ON u.id = created.id
    )
    SELECT event_id FROM created";

/// `→ queued`: backfilled conversion dispatches to one destination, behind live traffic; an event
/// the destination already has a dispatch for gets none (one per event and destination, ever).
/// Answers the events queued.
///
/// # Errors
/// [`Error::Database`].
pub(crate) async fn add_backfilled(
    client: &impl GenericClient,
    workspace_id: Uuid,
    destination: &Destination,
    rows: &[(Uuid, Value, Value)],
) -> Result<Vec<Uuid>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = rows
        .iter()
        .map(|r| dispatch_id(r.0, destination.id, DispatchKind::Conversion, 0))
        .collect();
    let event_ids: Vec<Uuid> = rows.iter().map(|r| r.0).collect();
    let payloads: Vec<&Value> = rows.iter().map(|r| &r.1).collect();
    let routings: Vec<&Value> = rows.iter().map(|r| &r.2).collect();
    let stmt = client.prepare_cached(INSERT_BACKFILLED).await?;
    let created = client
        .query(
            &stmt,
            &[
                &workspace_id,
                &destination.id,
                &destination.destination_type().as_str(),
                &ids,
                &event_ids,
                &payloads,
                &routings,
            ],
        )
        .await?;
    created.iter().map(|r| Ok(r.try_get(0)?)).collect()
}

/// A routed event as a dispatch stores it: its snapshot and its routing, as JSON.
pub(crate) fn stored_forms(routed: &RoutedEvent) -> Result<(Value, Value)> {
    Ok((snapshot_json(routed)?, routing_json(&routed.routes)?))
}

/// True when `destination` gets `routed` by the routing rules of live traffic.
pub(crate) fn routes_to(routed: &RoutedEvent, destination: &Destination) -> bool {
    routed_to(routed, destination)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_dispatch_id_is_made_from_what_the_dispatch_is_and_sorts_with_its_event() {
        let events: Vec<Uuid> = (0..2).map(|_| Uuid::now_v7()).collect();
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let conversion = dispatch_id(events[0], a, DispatchKind::Conversion, 0);
        assert_eq!(
            conversion,
            dispatch_id(events[0], a, DispatchKind::Conversion, 0)
        );
        assert_ne!(
            conversion,
            dispatch_id(events[0], b, DispatchKind::Conversion, 0)
        );
        assert_ne!(
            conversion,
            dispatch_id(events[1], a, DispatchKind::Conversion, 0)
        );
        // It begins with its event's time, so it falls in its event's partition.
        assert_eq!(conversion.as_bytes()[..6], events[0].as_bytes()[..6]);
        assert_eq!(conversion.get_version_num(), 8);
        assert_eq!(conversion.get_variant(), uuid::Variant::RFC4122);
        // One event's dispatches in the order they happen, whatever their destinations.
        let sequence = [
            dispatch_id(events[0], b, DispatchKind::Conversion, 0),
            dispatch_id(events[0], a, DispatchKind::Restatement, 1),
            dispatch_id(events[0], b, DispatchKind::Restatement, 2),
            dispatch_id(events[0], a, DispatchKind::Retraction, 0),
        ];
        for pair in sequence.windows(2) {
            assert!(pair[0] < pair[1], "{pair:?}");
        }
        assert!(conversion < sequence[1]);
        // Events of different milliseconds in the order they were received, their dispatches
        // too.
        let ids: Vec<Uuid> = (0..50u32)
            .map(|ms| {
                let at = uuid::Timestamp::from_unix(uuid::NoContext, 1_800_000_000, ms * 1_000_000);
                dispatch_id(Uuid::new_v7(at), a, DispatchKind::Retraction, 0)
            })
            .collect();
        for pair in ids.windows(2) {
            assert!(pair[0] < pair[1], "{pair:?}");
        }
    }
}
