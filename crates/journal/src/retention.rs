//! Retention of the journal: the `events` table is range-partitioned by event id, one partition
//! per calendar month (UTC), because an event id is a UUIDv7 that starts with the millisecond the
//! event was received. The workers create partitions ahead ([`ensure_partitions`]) and drop those
//! wholly past retention ([`expired_partitions`], [`drop_partition`]): dropping a month costs the
//! same whatever it holds. Before a partition goes, the other crates remove what belongs to its
//! events, reading the partition through [`partition_workspaces`] and [`partition_natural_keys`].
//!
//! Other event-sized tables keyed by an event's id (a decision, a conversion's report row) are
//! partitioned the same way ([`MonthlyTable`]), month for month, so that their months go whole too.
//!
//! Partition DDL waits at most [`LOCK_TIMEOUT`] for its locks, so that it never holds up ingest
//! behind a long query; it is tried again at the next round.

use deadpool_postgres::GenericClient;
use time::{Date, Month, OffsetDateTime, Time};
use uuid::Uuid;

/// How long partition DDL waits for its locks before giving up until the next round.
pub const LOCK_TIMEOUT: &str = "2s";

/// A table range-partitioned by month on an event id: partitions `<name>_pYYYYMM` and
/// `<name>_default`, which takes a row no partition covers (the workers were stopped for months),
/// so that nothing is ever refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MonthlyTable {
    /// The partitioned table.
    pub name: &'static str,
    /// Its partition key: a UUIDv7 event id, or an id that begins with the time as one does.
    pub key: &'static str,
    /// The storage parameters each partition is created with (`WITH (…)`, or empty): a
    /// partitioned table has none of its own.
    pub options: &'static str,
}

/// The journal's events, partitioned by their id.
pub const EVENTS: MonthlyTable = MonthlyTable {
    name: "events",
    key: "id",
    options: "",
};

/// The smallest UUID of the millisecond `at`: the time in the first 48 bits, every other bit
/// zero. Every UUIDv7 made at or after `at` sorts at or after it.
pub fn time_bound(at: OffsetDateTime) -> Uuid {
    let millis = (at.unix_timestamp_nanos() / 1_000_000).clamp(0, (1 << 48) - 1) as u64;
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&millis.to_be_bytes()[2..]);
    Uuid::from_bytes(bytes)
}

/// The millisecond a time-ordered id begins with (its first 48 bits): the time of a UUIDv7, or
/// of a [`time_bound`], which it reads back.
pub fn time_of(id: Uuid) -> OffsetDateTime {
    let mut millis = [0u8; 8];
    millis[2..].copy_from_slice(&id.as_bytes()[..6]);
    let millis = i128::from(u64::from_be_bytes(millis));
    OffsetDateTime::from_unix_timestamp_nanos(millis * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// The first instant of the month of `at` (UTC).
pub fn month_start(at: OffsetDateTime) -> OffsetDateTime {
    let at = at.to_offset(time::UtcOffset::UTC);
    Date::from_calendar_date(at.year(), at.month(), 1)
        .map(|d| d.with_time(Time::MIDNIGHT).assume_utc())
        .unwrap_or(at)
}

/// The first instant of the month after the one `start` begins.
fn next_month(start: OffsetDateTime) -> OffsetDateTime {
    let (year, month) = match start.month() {
        Month::December => (start.year() + 1, Month::January),
        m => (start.year(), m.next()),
    };
    Date::from_calendar_date(year, month, 1)
        .map(|d| d.with_time(Time::MIDNIGHT).assume_utc())
        .unwrap_or(start)
}

/// A monthly partition: its name and bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonthPartition {
    /// `<table>_pYYYYMM`.
    pub name: String,
    /// Its first id (inclusive).
    pub from: Uuid,
    /// The first id past it (exclusive).
    pub to: Uuid,
}

impl MonthPartition {
    /// The partition of `table` for the month `at` falls in.
    pub fn of(table: MonthlyTable, at: OffsetDateTime) -> Self {
        let start = month_start(at);
        Self {
            name: format!(
                "{}_p{:04}{:02}",
                table.name,
                start.year(),
                u8::from(start.month())
            ),
            from: time_bound(start),
            to: time_bound(next_month(start)),
        }
    }
}

/// Every ranged partition of a table (all but the default one), by upper bound: its name and
/// bounds, `from` NULL for `MINVALUE` (a legacy partition that holds everything stored before the
/// table was partitioned).
const RANGES: &str = "
    SELECT c.relname::text,
           substring(pg_get_expr(c.relpartbound, c.oid) FROM 'FROM \\(''([0-9a-f-]+)''\\)')::uuid,
           substring(pg_get_expr(c.relpartbound, c.oid) FROM 'TO \\(''([0-9a-f-]+)''\\)')::uuid
    FROM pg_inherits i
    JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = $1::text::regclass AND NOT c.relpartbound IS NULL
      AND pg_get_expr(c.relpartbound, c.oid) <> 'DEFAULT'
    ORDER BY 3";

/// A ranged partition as [`RANGES`] reads it: name, lower bound (`None`: MINVALUE), upper bound
/// (`None`: MAXVALUE).
type Range = (String, Option<Uuid>, Option<Uuid>);

fn range_of(row: &tokio_postgres::Row) -> Result<Range, tokio_postgres::Error> {
    Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?))
}

/// Creates `table`'s monthly partitions from the month of `from` to the month of `to`, those
/// that no partition covers yet (a legacy partition may cover this month), each in a transaction
/// of its own: the table is created detached, the rows of its range that waited in the default
/// partition move into it, and it is attached (which takes no lock that stops writers). Answers
/// the names created.
pub async fn ensure_partitions(
    client: &mut tokio_postgres::Client,
    table: MonthlyTable,
    from: OffsetDateTime,
    to: OffsetDateTime,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let mut created = Vec::new();
    let mut taken: Vec<(Option<Uuid>, Option<Uuid>)> = Vec::new();
    for row in client.query(RANGES, &[&table.name]).await? {
        let (_, lower, upper) = range_of(&row)?;
        taken.push((lower, upper));
    }
    let mut month = month_start(from);
    let last = month_start(to);
    while month <= last {
        let partition = MonthPartition::of(table, month);
        month = next_month(month);
        let overlaps = |&(lower, upper): &(Option<Uuid>, Option<Uuid>)| {
            lower.is_none_or(|lower| lower < partition.to)
                && upper.is_none_or(|upper| partition.from < upper)
        };
        if taken.iter().any(overlaps) {
            continue;
        }
        let tx = client.transaction().await?;
        tx.batch_execute(&format!(
            "SET LOCAL lock_timeout = '{LOCK_TIMEOUT}';
             CREATE TABLE {name} (LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS) {options};
             WITH moved AS (
                 DELETE FROM {default} WHERE {key} >= '{from}' AND {key} < '{to}' RETURNING *
             )
             INSERT INTO {name} SELECT * FROM moved;
             ALTER TABLE {table} ATTACH PARTITION {name} FOR VALUES FROM ('{from}') TO ('{to}');",
            name = quote_ident(&partition.name),
            table = quote_ident(table.name),
            default = quote_ident(&format!("{}_default", table.name)),
            key = quote_ident(table.key),
            from = partition.from,
            to = partition.to,
            options = table.options,
        ))
        .await?;
        tx.commit().await?;
        taken.push((Some(partition.from), Some(partition.to)));
        created.push(partition.name);
    }
    Ok(created)
}

/// A partition with a range (every one but the default partition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// Its table name.
    pub name: String,
    /// The first id past it (exclusive).
    pub to: Uuid,
}

/// `table`'s partitions whose every event was received before `cutoff`, oldest first.
pub async fn expired_partitions(
    client: &impl GenericClient,
    table: MonthlyTable,
    cutoff: OffsetDateTime,
) -> Result<Vec<Partition>, tokio_postgres::Error> {
    let bound = time_bound(cutoff);
    let mut out = Vec::new();
    for row in client.query(RANGES, &[&table.name]).await? {
        let (name, _, to) = range_of(&row)?;
        match to {
            Some(to) if to <= bound => out.push(Partition { name, to }),
            _ => {}
        }
    }
    Ok(out)
}

/// The workspaces with events in the partition: a skip scan of its primary key, one probe per
/// workspace.
pub async fn partition_workspaces(
    client: &impl GenericClient,
    partition: &Partition,
) -> Result<Vec<Uuid>, tokio_postgres::Error> {
    let sql = format!(
        "WITH RECURSIVE w AS (
             (SELECT workspace_id FROM {name} ORDER BY workspace_id LIMIT 1)
             UNION ALL
             SELECT (SELECT workspace_id FROM {name} p WHERE p.workspace_id > w.workspace_id
                     ORDER BY workspace_id LIMIT 1)
             FROM w WHERE w.workspace_id IS NOT NULL
         )
         SELECT workspace_id FROM w WHERE workspace_id IS NOT NULL",
        name = quote_ident(&partition.name),
    );
    client
        .query(&sql, &[])
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect()
}

/// A natural key of an event in a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyOfEvent {
    /// The event's id.
    pub event_id: Uuid,
    /// `lead` or `sale`.
    pub kind: String,
    /// Its `leadId` / `invoiceId`.
    pub key: String,
}

/// One workspace's events of the partition that have a natural key, at most `limit`, after the
/// event `after` (keyset paging over the primary key).
pub async fn partition_natural_keys(
    client: &impl GenericClient,
    partition: &Partition,
    workspace_id: Uuid,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<KeyOfEvent>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT id, kind, natural_key FROM {name}
         WHERE workspace_id = $1 AND id > coalesce($2, '00000000-0000-0000-0000-000000000000'::uuid)
           AND natural_key IS NOT NULL
         ORDER BY id LIMIT $3",
        name = quote_ident(&partition.name),
    );
    client
        .query(&sql, &[&workspace_id, &after, &limit])
        .await?
        .iter()
        .map(|r| {
            Ok(KeyOfEvent {
                event_id: r.try_get(0)?,
                kind: r.try_get(1)?,
                key: r.try_get(2)?,
            })
        })
        .collect()
}

/// Drops a partition (its rows are gone at once, whatever their number). Answers how many rows
/// it held, by the planner's estimate (exact counts would read it).
pub async fn drop_partition(
    client: &mut tokio_postgres::Client,
    partition: &Partition,
) -> Result<i64, tokio_postgres::Error> {
    let name = quote_ident(&partition.name);
    let tx = client.transaction().await?;
    tx.batch_execute(&format!("SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
        .await?;
    let estimate: f32 = tx
        .query_one(
            "SELECT greatest(reltuples, 0) FROM pg_class WHERE oid = $1::text::regclass",
            &[&partition.name],
        )
        .await?
        .try_get(0)?;
    tx.batch_execute(&format!("DROP TABLE {name}")).await?;
    tx.commit().await?;
    Ok(estimate as i64)
}

/// A table name as an SQL identifier (the names here are ours, quoted all the same).
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The workspace's stored events and the time the oldest was received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventUsage {
    /// Events kept.
    pub events: i64,
    /// When the oldest kept event was received.
    pub oldest_received_at: Option<OffsetDateTime>,
}

const COUNT: &str = "SELECT count(*) FROM events WHERE workspace_id = $1";

/// The partitions are in id order, so the oldest event is the first entry of the first partition
/// that has one of the workspace.
const OLDEST: &str = "
    SELECT received_at FROM events WHERE workspace_id = $1 ORDER BY id LIMIT 1";

/// Counts the workspace's events and finds the oldest.
pub async fn event_usage(
    client: &impl GenericClient,
    workspace_id: Uuid,
) -> Result<EventUsage, tokio_postgres::Error> {
    let stmt = client.prepare_cached(COUNT).await?;
    let events: i64 = client
        .query_one(&stmt, &[&workspace_id])
        .await?
        .try_get(0)?;
    let stmt = client.prepare_cached(OLDEST).await?;
    let oldest_received_at = match client.query_opt(&stmt, &[&workspace_id]).await? {
        Some(row) => Some(row.try_get(0)?),
        None => None,
    };
    Ok(EventUsage {
        events,
        oldest_received_at,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn a_bound_sorts_before_every_uuid_v7_of_its_millisecond_and_after_the_earlier_ones() {
        let at = datetime!(2026-12-01 00:00:00 UTC);
        let bound = time_bound(at);
        let ms = u64::try_from(at.unix_timestamp() * 1000).unwrap();
        let same = Uuid::new_v7(uuid::Timestamp::from_unix(uuid::NoContext, ms / 1000, 0));
        let before = Uuid::new_v7(uuid::Timestamp::from_unix(
            uuid::NoContext,
            ms / 1000 - 1,
            999_000_000,
        ));
        assert!(bound <= same, "{bound} {same}");
        assert!(before < bound, "{before} {bound}");
        assert_eq!(bound.to_string(), "01a22ee6-b000-0000-0000-000000000000");
    }

    #[test]
    fn a_bound_reads_back_as_its_time() {
        let at = datetime!(2026-12-01 00:00:00 UTC);
        assert_eq!(time_of(time_bound(at)), at);
    }

    #[test]
    fn months_are_named_and_bounded_in_utc() {
        let p = MonthPartition::of(EVENTS, datetime!(2026-12-31 23:59:59 -01:00));
        assert_eq!(p.name, "events_p202701");
        assert_eq!(p.from, time_bound(datetime!(2027-01-01 00:00 UTC)));
        assert_eq!(p.to, time_bound(datetime!(2027-02-01 00:00 UTC)));
        let p = MonthPartition::of(EVENTS, datetime!(2026-12-05 07:00 UTC));
        assert_eq!(p.name, "events_p202612");
        let table = MonthlyTable {
            name: "attributions",
            key: "event_id",
            options: "",
        };
        assert_eq!(
            MonthPartition::of(table, datetime!(2026-12-05 07:00 UTC)).name,
            "attributions_p202612"
        );
    }
}
