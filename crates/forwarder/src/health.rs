//! Delivery health over time: per destination and period (hour or UTC day in which the event a
//! dispatch carries was received), how many dispatches stand succeeded, retrying, failed, queued
//! (or in flight) and skipped (or cancelled). Read by `GET /v1/dispatches/health` and the
//! dashboard. A dispatch's id begins with its event's time, so a range of periods is a range of
//! the primary key: a backfill, a retraction or a restatement counts with the day of its event,
//! as its conversion does.

use deadpool_postgres::GenericClient;
use serde::Serialize;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::ids;
use crate::Result;

/// The length of a period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthInterval {
    /// Hours (UTC).
    Hour,
    /// UTC days.
    Day,
}

impl HealthInterval {
    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthInterval::Hour => "hour",
            HealthInterval::Day => "day",
        }
    }

    /// The interval of a wire name.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "hour" => Some(HealthInterval::Hour),
            "day" => Some(HealthInterval::Day),
            _ => None,
        }
    }

    fn length(self) -> Duration {
        match self {
            HealthInterval::Hour => Duration::HOUR,
            HealthInterval::Day => Duration::DAY,
        }
    }

    /// The start of the period holding `at`.
    pub fn start(self, at: OffsetDateTime) -> OffsetDateTime {
        let at = at.to_offset(time::UtcOffset::UTC);
        let day = at.date().midnight().assume_utc();
        match self {
            HealthInterval::Day => day,
            HealthInterval::Hour => at
                .replace_minute(0)
                .and_then(|t| t.replace_second(0))
                .and_then(|t| t.replace_nanosecond(0))
                .unwrap_or(day),
        }
    }
}

/// The most periods one answer may have.
pub const MAX_HEALTH_PERIODS: usize = 1000;

/// One destination's dispatches created in one period, by status now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthRow {
    /// The destination (`dst_…`).
    pub destination: String,
    /// Its name (`null` once deleted).
    pub name: Option<String>,
    /// Its type (`null` once deleted).
    #[serde(rename = "type")]
    pub destination_type: Option<String>,
    /// The period's start.
    pub period: String,
    /// Delivered.
    pub succeeded: i64,
    /// Waiting for another attempt.
    pub retrying: i64,
    /// Given up (permanent error or attempts exhausted).
    pub failed: i64,
    /// Not attempted yet, or being attempted now.
    pub queued: i64,
    /// Skipped (with a reason) or cancelled.
    pub skipped: i64,
}

/// `received`: the millisecond the id begins with (its first 48 bits).
const SELECT_HEALTH: &str = "
    SELECT d.destination_id, ds.name, ds.type,
           CASE $4::text WHEN 'hour' THEN date_trunc('hour', received AT TIME ZONE 'UTC')
                         ELSE date_trunc('day', received AT TIME ZONE 'UTC') END AS period,
           count(*) FILTER (WHERE d.status = 'succeeded'),
           count(*) FILTER (WHERE d.status = 'retrying'),
           count(*) FILTER (WHERE d.status = 'failed'),
           count(*) FILTER (WHERE d.status IN ('queued', 'in_flight')),
           count(*) FILTER (WHERE d.status IN ('skipped', 'cancelled'))
    FROM dispatches d
    CROSS JOIN LATERAL (
        SELECT to_timestamp(('x' || translate(left(d.id::text, 13), '-', ''))::bit(48)::bigint
                            / 1000.0) AS received
    ) AS t
    LEFT JOIN destinations ds ON ds.workspace_id = d.workspace_id AND ds.id = d.destination_id
    WHERE d.workspace_id = $1 AND d.id >= $2 AND d.id < $3
    GROUP BY 1, 2, 3, 4";

/// Every destination with dispatches of events received in `[from, to)`, with a row for each of
/// its periods (empty ones included), destinations by name, periods in order.
pub async fn delivery_health(
    client: &impl GenericClient,
    workspace_id: Uuid,
    from: OffsetDateTime,
    to: OffsetDateTime,
    interval: HealthInterval,
) -> Result<Vec<HealthRow>> {
    let low = journal::retention::time_bound(from);
    let high = journal::retention::time_bound(to);
    let statement = client.prepare_cached(SELECT_HEALTH).await?;
    let rows = client
        .query(
            &statement,
            &[&workspace_id, &low, &high, &interval.as_str()],
        )
        .await?;
    let mut destinations: std::collections::BTreeMap<
        (String, Uuid),
        (Option<String>, Option<String>),
    > = std::collections::BTreeMap::new();
    let mut counts: std::collections::HashMap<(Uuid, OffsetDateTime), [i64; 5]> =
        std::collections::HashMap::new();
    for row in rows {
        let id: Uuid = row.try_get(0)?;
        let name: Option<String> = row.try_get(1)?;
        let kind: Option<String> = row.try_get(2)?;
        let period: time::PrimitiveDateTime = row.try_get(3)?;
        destinations.insert((name.clone().unwrap_or_default(), id), (name, kind));
        counts.insert(
            (id, period.assume_utc()),
            [
                row.try_get(4)?,
                row.try_get(5)?,
                row.try_get(6)?,
                row.try_get(7)?,
                row.try_get(8)?,
            ],
        );
    }
    let mut periods = Vec::new();
    let mut at = interval.start(from);
    while at < to && periods.len() < MAX_HEALTH_PERIODS {
        periods.push(at);
        match at.checked_add(interval.length()) {
            Some(next) => at = next,
            None => break,
        }
    }
    let mut out = Vec::with_capacity(destinations.len() * periods.len());
    for ((_, id), (name, kind)) in destinations {
        for period in &periods {
            let c = counts.get(&(id, *period)).copied().unwrap_or_default();
            out.push(HealthRow {
                destination: ids::to_wire(ids::DESTINATION, id),
                name: name.clone(),
                destination_type: kind.clone(),
                period: events::format_timestamp(*period),
                succeeded: c[0],
                retrying: c[1],
                failed: c[2],
                queued: c[3],
                skipped: c[4],
            });
        }
    }
    Ok(out)
}

/// How many periods `[from, to)` holds.
pub fn health_periods(from: OffsetDateTime, to: OffsetDateTime, interval: HealthInterval) -> i64 {
    let span = to - interval.start(from);
    let length = interval.length();
    (span.whole_seconds() + length.whole_seconds() - 1) / length.whole_seconds()
}
