//! The journal: every accepted event, normalised, stored once. Inserted in batches through
//! `unnest` arrays by the group-commit writer; read back by id, listed newest first, and read in
//! arrival order by the matcher (which also reads the clicks events carried from here). It owns
//! the `events` table.

mod body;
pub mod erase;
pub mod retention;
pub mod window;

pub use body::Body;
pub use erase::{erase_events, ErasedEvent};
pub use window::{window_counts, CurrencySales, WindowCounts};

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// The name of this crate's migration history table.
pub const MIGRATION_TABLE: &str = "events_schema_history";

/// Applies this crate's pending migrations (forward only).
pub async fn migrate(client: &mut tokio_postgres::Client) -> Result<(), refinery::Error> {
    embedded::migrations::runner()
        .set_migration_table_name(MIGRATION_TABLE)
        .run_async(client)
        .await?;
    Ok(())
}

/// The migrations this crate embeds, as `(version, name, checksum)`.
pub fn migrations() -> Vec<(i32, String, u64)> {
    embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| (m.version(), m.name().to_owned(), m.checksum()))
        .collect()
}

use deadpool_postgres::GenericClient;
use events::Event;
use rust_decimal::Decimal;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::body::BODY;

/// An event about to be stored.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// Its workspace.
    pub workspace_id: Uuid,
    /// Its id (UUIDv7, made when the request arrived).
    pub id: Uuid,
    /// `lead` or `sale`.
    pub kind: &'static str,
    /// When it happened, by the sender's clock.
    pub occurred_at: OffsetDateTime,
    /// When we received it.
    pub received_at: OffsetDateTime,
    /// `leadId` / `invoiceId`.
    pub natural_key: Option<String>,
    /// The sender's user id.
    pub customer_external_id: Option<String>,
    /// `async`, `wait` or `deferred`.
    pub mode: &'static str,
    /// The amount, if any.
    pub amount: Option<Decimal>,
    /// Its currency.
    pub currency: Option<String>,
    /// The normalised event in its wire form (kept compressed, see [`body`]).
    pub payload: serde_json::Value,
}

const INSERT: &str = "
    INSERT INTO events (workspace_id, id, kind, occurred_at, received_at, natural_key,
                        customer_external_id, mode, amount, currency, body)
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::timestamptz[], $5::timestamptz[],
                         $6::text[], $7::text[], $8::text[], $9::numeric[], $10::text[], $11::bytea[])";

/// Stores events in the caller's transaction.
pub async fn insert_events(
    client: &impl GenericClient,
    events: &[&NewEvent],
) -> Result<(), tokio_postgres::Error> {
    if events.is_empty() {
        return Ok(());
    }
    let ws: Vec<Uuid> = events.iter().map(|e| e.workspace_id).collect();
    let ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind).collect();
    let occurred: Vec<OffsetDateTime> = events.iter().map(|e| e.occurred_at).collect();
    let received: Vec<OffsetDateTime> = events.iter().map(|e| e.received_at).collect();
    let natural: Vec<Option<&str>> = events.iter().map(|e| e.natural_key.as_deref()).collect();
    let customers: Vec<Option<&str>> = events
        .iter()
        .map(|e| e.customer_external_id.as_deref())
        .collect();
    let modes: Vec<&str> = events.iter().map(|e| e.mode).collect();
    let amounts: Vec<Option<Decimal>> = events.iter().map(|e| e.amount).collect();
    let currencies: Vec<Option<&str>> = events.iter().map(|e| e.currency.as_deref()).collect();
    let bodies: Vec<Vec<u8>> = events.iter().map(|e| body::encode(&e.payload)).collect();
    let stmt = client.prepare_cached(INSERT).await?;
    client
        .execute(
            &stmt,
            &[
                &ws,
                &ids,
                &kinds,
                &occurred,
                &received,
                &natural,
                &customers,
                &modes,
                &amounts,
                &currencies,
                &bodies,
            ],
        )
        .await?;
    Ok(())
}

/// An event as read back.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    /// Its id.
    pub id: Uuid,
    /// When we received it.
    pub received_at: OffsetDateTime,
    /// The normalised event in its wire form.
    pub payload: serde_json::Value,
    /// When it was retracted, if it was.
    pub retracted_at: Option<OffsetDateTime>,
    /// Why.
    pub retract_reason: Option<String>,
}

impl StoredEvent {
    fn from_row(r: &tokio_postgres::Row) -> Result<Self, tokio_postgres::Error> {
        Ok(Self {
            id: r.try_get(0)?,
            received_at: r.try_get(1)?,
            payload: r.try_get::<_, Body<serde_json::Value>>(2)?.0,
            retracted_at: r.try_get(3)?,
            retract_reason: r.try_get(4)?,
        })
    }
}

/// The columns [`StoredEvent::from_row`] reads.
fn stored_columns() -> String {
    format!("id, received_at, {BODY}, retracted_at, retract_reason")
}

fn get_sql() -> String {
    format!(
        "SELECT {} FROM events WHERE workspace_id = $1 AND id = $2",
        stored_columns()
    )
}

/// One event of a workspace.
pub async fn get_event(
    client: &impl GenericClient,
    workspace_id: Uuid,
    id: Uuid,
) -> Result<Option<StoredEvent>, tokio_postgres::Error> {
    let stmt = client.prepare_cached(&get_sql()).await?;
    client
        .query_opt(&stmt, &[&workspace_id, &id])
        .await?
        .map(|r| StoredEvent::from_row(&r))
        .transpose()
}

/// Filters of the event list; every one optional.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// `lead` or `sale`.
    pub kind: Option<&'static str>,
    /// The sender's user id.
    pub customer_external_id: Option<String>,
    /// A sale's invoiceId or a lead's leadId (with `kind`), resolved through the dedup crate.
    pub natural_key: Option<String>,
    /// Only this event (what `natural_key` resolved to).
    pub only: Option<Uuid>,
    /// Received at or after.
    pub since: Option<OffsetDateTime>,
    /// Only ids before this one (the cursor).
    pub before: Option<Uuid>,
    /// At most this many.
    pub limit: i64,
}

fn list_sql() -> String {
    format!(
        "SELECT {} FROM events
         WHERE workspace_id = $1
           AND ($2::text IS NULL OR kind = $2)
           AND ($3::text IS NULL OR customer_external_id = $3)
           AND ($4::uuid IS NULL OR id = $4)
           AND ($5::timestamptz IS NULL OR received_at >= $5)
           AND ($6::uuid IS NULL OR id < $6)
         ORDER BY id DESC
         LIMIT $7",
        stored_columns()
    )
}

/// A page of a workspace's events, newest first.
pub async fn list_events(
    client: &impl GenericClient,
    workspace_id: Uuid,
    filter: &EventFilter,
) -> Result<Vec<StoredEvent>, tokio_postgres::Error> {
    let stmt = client.prepare_cached(&list_sql()).await?;
    client
        .query(
            &stmt,
            &[
                &workspace_id,
                &filter.kind,
                &filter.customer_external_id,
                &filter.only,
                &filter.since,
                &filter.before,
                &filter.limit,
            ],
        )
        .await?
        .iter()
        .map(StoredEvent::from_row)
        .collect()
}

/// One primary-key probe per id, whatever the planner believes of the workspace's size (with
/// `id = ANY($2)`, or a plain join, it may read every event of the workspace and filter, as it
/// does while a fast-growing table has no statistics yet).
fn get_for_matching_sql() -> String {
    format!(
        "SELECT e.id, e.received_at, e.body, e.retracted_at IS NOT NULL
         FROM unnest($2::uuid[]) AS q(id)
         CROSS JOIN LATERAL (
             SELECT id, received_at, {BODY} AS body, retracted_at FROM events
             WHERE workspace_id = $1 AND id = q.id
             LIMIT 1
         ) AS e"
    )
}

/// An event as the matcher reads it: typed straight from the stored bytes.
#[derive(Debug, Clone)]
pub struct JournalEvent {
    /// Its id.
    pub id: Uuid,
    /// When we received it.
    pub received_at: OffsetDateTime,
    /// The event, or why its stored form cannot be read (which would be a bug).
    pub event: Result<Event, String>,
    /// Whether it was retracted.
    pub retracted: bool,
}

/// Several events of a workspace, in id (arrival) order; ids not found are left out.
pub async fn get_events(
    client: &impl GenericClient,
    workspace_id: Uuid,
    ids: &[Uuid],
) -> Result<Vec<JournalEvent>, tokio_postgres::Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let stmt = client.prepare_cached(&get_for_matching_sql()).await?;
    let mut events = client
        .query(&stmt, &[&workspace_id, &ids])
        .await?
        .into_iter()
        .map(|r| {
            Ok(JournalEvent {
                id: r.try_get(0)?,
                received_at: r.try_get(1)?,
                // Parsed from the stored bytes directly, without a `serde_json::Value` between.
                event: r
                    .try_get::<_, Body<Event>>(2)
                    .map(|Body(event)| event)
                    .map_err(|e| e.to_string()),
                retracted: r.try_get(3)?,
            })
        })
        .collect::<Result<Vec<_>, tokio_postgres::Error>>()?;
    events.sort_unstable_by_key(|event| event.id);
    events.dedup_by_key(|event| event.id);
    Ok(events)
}

/// The first id a UUIDv7 made at or after `at` can have: ids carry their receipt time to the
/// millisecond, so `received_at >= at` holds exactly for the ids from this one on (the
/// partitions' [`retention::time_bound`] of `at` rounded up to its millisecond).
pub fn first_id_at(at: OffsetDateTime) -> Uuid {
    retention::time_bound(at + time::Duration::nanoseconds(999_999))
}

const COUNT_RECEIVED: &str = "
    SELECT count(*) FROM events WHERE workspace_id = $1 AND id >= $2 AND id < $3";

/// How many of the workspace's events were received from `since` on and have ids below
/// `before`: what a walk of [`list_events`] with those filters will see (one index range count).
pub async fn count_received(
    client: &impl GenericClient,
    workspace_id: Uuid,
    since: OffsetDateTime,
    before: Uuid,
) -> Result<i64, tokio_postgres::Error> {
    let stmt = client.prepare_cached(COUNT_RECEIVED).await?;
    let row = client
        .query_one(&stmt, &[&workspace_id, &first_id_at(since), &before])
        .await?;
    row.try_get(0)
}

fn retract_sql() -> String {
    format!(
        "UPDATE events SET retracted_at = coalesce(retracted_at, now()),
                           retract_reason = coalesce(retract_reason, $3)
         WHERE workspace_id = $1 AND id = $2
         RETURNING {}",
        stored_columns()
    )
}

/// Marks an event retracted (the first retraction's time and reason stay); `None` when the
/// workspace has no such event.
pub async fn retract_event(
    client: &impl GenericClient,
    workspace_id: Uuid,
    id: Uuid,
    reason: &str,
) -> Result<Option<StoredEvent>, tokio_postgres::Error> {
    let stmt = client.prepare_cached(&retract_sql()).await?;
    client
        .query_opt(&stmt, &[&workspace_id, &id, &reason])
        .await?
        .map(|r| StoredEvent::from_row(&r))
        .transpose()
}

/// An event as reports count it.
#[derive(Debug, Clone)]
pub struct Countable {
    /// Its id.
    pub id: Uuid,
    /// `lead` or `sale`.
    pub kind: String,
    /// When it happened.
    pub occurred_at: OffsetDateTime,
    /// Its amount, if any.
    pub amount: Option<Decimal>,
    /// Its currency.
    pub currency: Option<String>,
}

const COUNTABLE: &str = "
    SELECT id, kind, occurred_at, amount, currency FROM events
    WHERE workspace_id = $1 AND occurred_at >= $2 AND occurred_at < $3
      AND retracted_at IS NULL AND mode <> 'deferred'
    ORDER BY id";

/// The events reports count in `[from, to)` by the time they happened: neither retracted nor
/// deferred.
pub async fn countable_events(
    client: &impl GenericClient,
    workspace_id: Uuid,
    from: OffsetDateTime,
    to: OffsetDateTime,
) -> Result<Vec<Countable>, tokio_postgres::Error> {
    let stmt = client.prepare_cached(COUNTABLE).await?;
    Ok(client
        .query(&stmt, &[&workspace_id, &from, &to])
        .await?
        .into_iter()
        .map(|r| Countable {
            id: r.get(0),
            kind: r.get(1),
            occurred_at: r.get(2),
            amount: r.get(3),
            currency: r.get(4),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_id_at_a_time_sorts_before_every_id_received_then_and_after_every_earlier_one() {
        let at = time::macros::datetime!(2026-12-05 10:00:00.000_400 UTC);
        let first = first_id_at(at);
        // 10:00:00.0004 rounds up: an event received at 10:00:00.000 was before it.
        let millis = (at.unix_timestamp() as u64) * 1000 + 1;
        assert_eq!(first.as_bytes()[..6], millis.to_be_bytes()[2..]);
        assert_eq!(first.as_bytes()[6..], [0; 10]);
        let exact = time::macros::datetime!(2026-12-05 10:00:00.001 UTC);
        assert_eq!(first_id_at(exact), first);
        let received = Uuid::new_v7(uuid::Timestamp::from_unix(
            uuid::NoContext,
            exact.unix_timestamp() as u64,
            1_000_000,
        ));
        assert!(received >= first);
        let earlier = Uuid::new_v7(uuid::Timestamp::from_unix(
            uuid::NoContext,
            at.unix_timestamp() as u64,
            0,
        ));
        assert!(earlier < first);
    }
}
