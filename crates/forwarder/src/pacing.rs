//! Pacing every destination's sends to its platform's published request quota, and parking a
//! destination whose platform asked to come back much later.
//!
//! The quota is a token bucket in PostgreSQL, one row per quota (what the platform counts
//! against, such as a Google Cloud project), shared by every workspace that sends through it:
//! every worker process takes its tokens from the same row in one atomic statement, so that any
//! number of workers and workspaces together stay within the quota, and a backlog drains at the
//! quota instead of running into 429s. The bucket refills at 90 % of the quota and holds a tenth
//! of a minute's quota, so that no minute ever sees more than the quota (a burst plus the
//! refill). A platform that also counts a day (Data Manager: 100,000 requests) gets a second
//! bucket, `<quota>:day`, holding an hour's requests and refilling at 90 % of the day's: a send
//! takes a token from both or waits for the later one. `share` (operator setting
//! `CONVRELAY_QUOTA_SHARE`) is the part of each quota this service may use: less when other
//! tools send through the same Cloud project; tests shrink it.
//!
//! A park (Google `RESOURCE_EXHAUSTED` with a long `retryDelay`, a 429 with a long
//! `Retry-After`) keeps the destination's dispatches from being claimed until it ends; the
//! dispatches wait without spending attempts, and operators see why.

use std::time::Duration;

use deadpool_postgres::GenericClient;
use platforms::delivery::{Park, Quota};
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{ids, Result};

/// Whether a send may go now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Permit {
    /// A token was taken: send.
    Granted,
    /// The bucket is empty: the next token comes after this long.
    Wait(Duration),
}

/// The minute's bucket under `share` of `per_minute`: it holds a tenth of the minute's requests
/// and refills at 90 % of them.
pub fn bucket_shape(per_minute: u32, share: f64) -> (f64, f64) {
    let per_minute = f64::from(per_minute) * share.clamp(0.0, 1.0);
    let capacity = (per_minute / 10.0).max(1.0);
    let per_second = (per_minute * 0.9 / 60.0).max(1e-6);
    (capacity, per_second)
}

/// The day's bucket under `share` of `per_day`: it holds an hour's requests and refills at 90 %
/// of the day's, so that no 24 hours ever see more than the quota (an hour's burst plus the
/// refill).
pub fn day_bucket_shape(per_day: u32, share: f64) -> (f64, f64) {
    let per_day = f64::from(per_day) * share.clamp(0.0, 1.0);
    let capacity = (per_day / 24.0).max(1.0);
    let per_second = (per_day * 0.9 / 86_400.0).max(1e-9);
    (capacity, per_second)
}

/// The most operations one request may carry under `share` of `quota`: all of the operations
/// day's bucket at most, so that a request is never too large ever to be let through. `None`:
/// the quota does not count operations.
pub fn max_operations(quota: &Quota, share: f64) -> Option<usize> {
    let (capacity, _) = day_bucket_shape(quota.operations_per_day?, share);
    // A whole number of operations that floating point made a hair smaller stays whole.
    Some(((capacity + 1e-6).floor() as usize).max(1))
}

/// The buckets a request of `operations` under `quota` takes tokens from: the minute's where the
/// platform counts one (`<bucket>`: a token), the day's (`<bucket>:day`: a token), the
/// operations day's (`<bucket>:operations`: a token per operation). Name, capacity, refill per
/// second, tokens taken.
fn buckets(quota: &Quota, share: f64, operations: usize) -> Vec<(String, f64, f64, f64)> {
    let mut buckets = Vec::new();
    if let Some(per_minute) = quota.per_minute {
        let (capacity, per_second) = bucket_shape(per_minute, share);
        buckets.push((quota.bucket.clone(), capacity, per_second, 1.0));
    }
    if let Some(per_day) = quota.per_day {
        let (capacity, per_second) = day_bucket_shape(per_day, share);
        buckets.push((format!("{}:day", quota.bucket), capacity, per_second, 1.0));
    }
    if let Some(per_day) = quota.operations_per_day {
        let (capacity, per_second) = day_bucket_shape(per_day, share);
        // Never more than the bucket holds: a larger request would wait for ever.
        let taken = (operations.max(1) as f64).min(capacity);
        buckets.push((
            format!("{}:operations", quota.bucket),
            capacity,
            per_second,
            taken,
        ));
    }
    buckets
}

/// The buckets, full, where they do not exist yet.
const CREATE_BUCKETS: &str = "
    INSERT INTO quota_buckets (bucket, tokens, updated_at)
    SELECT b.bucket, b.capacity, now() FROM unnest($1::text[], $2::float8[]) AS b(bucket, capacity)
    ON CONFLICT (bucket) DO NOTHING";

/// Refill each bucket, then take its tokens from every one if each has them all, else from none:
/// the row locks (taken in name order) make concurrent takers queue, and each sees the tokens
/// the one before left.
const TAKE: &str = "
    WITH wanted AS (
        SELECT * FROM unnest($1::text[], $2::float8[], $3::float8[], $4::float8[])
            AS w(bucket, capacity, rate, taken)
    ), current AS (
        SELECT b.bucket, w.rate, w.taken,
               least(w.capacity, b.tokens
                     + greatest(0, extract(epoch FROM clock_timestamp() - b.updated_at)) * w.rate)
                 AS available
        FROM quota_buckets b
        JOIN wanted w ON w.bucket = b.bucket
        ORDER BY b.bucket
        FOR UPDATE OF b
    ), verdict AS (
        SELECT bool_and(available >= taken) AS granted FROM current
    )
    UPDATE quota_buckets b
    SET tokens = c.available - CASE WHEN v.granted THEN c.taken ELSE 0 END,
        updated_at = clock_timestamp()
    FROM current c, verdict v
    WHERE b.bucket = c.bucket
    RETURNING c.available, c.rate, c.taken";

/// Takes the tokens of one request carrying `operations` conversions from `quota`'s buckets (see
/// [`buckets`]), shared by every worker and workspace: from all of them or from none.
///
/// # Errors
/// [`crate::Error::Database`].
pub async fn take(
    client: &impl GenericClient,
    quota: &Quota,
    share: f64,
    operations: usize,
) -> Result<Permit> {
    let buckets = buckets(quota, share, operations);
    let names: Vec<&str> = buckets.iter().map(|b| b.0.as_str()).collect();
    let capacities: Vec<f64> = buckets.iter().map(|b| b.1).collect();
    let rates: Vec<f64> = buckets.iter().map(|b| b.2).collect();
    let taken: Vec<f64> = buckets.iter().map(|b| b.3).collect();
    let create = client.prepare_cached(CREATE_BUCKETS).await?;
    client.execute(&create, &[&names, &capacities]).await?;
    let stmt = client.prepare_cached(TAKE).await?;
    let mut wait: Option<f64> = None;
    for row in client
        .query(&stmt, &[&names, &capacities, &rates, &taken])
        .await?
    {
        let available: f64 = row.try_get(0)?;
        let rate: f64 = row.try_get(1)?;
        let taken: f64 = row.try_get(2)?;
        if available < taken {
            let this = (taken - available) / rate;
            wait = Some(wait.map_or(this, |w| w.max(this)));
        }
    }
    match wait {
        None => {
            metrics::counter!("convrelay_pacing_total", "result" => "granted").increment(1);
            Ok(Permit::Granted)
        }
        Some(wait) => {
            metrics::counter!("convrelay_pacing_total", "result" => "deferred").increment(1);
            Ok(Permit::Wait(Duration::from_secs_f64(
                wait.clamp(0.001, 3600.0),
            )))
        }
    }
}

const PARK: &str = "
    INSERT INTO destination_parks (workspace_id, destination_id, parked_until, reason, parked_at)
    VALUES ($1, $2, now() + $3::bigint * interval '1 millisecond', $4, now())
    ON CONFLICT (workspace_id, destination_id) DO UPDATE
    SET parked_until = EXCLUDED.parked_until, reason = EXCLUDED.reason, parked_at = now()";

/// Parks a destination for `park.wait`: its dispatches are not claimed until then.
///
/// # Errors
/// [`crate::Error::Database`].
pub async fn park(
    client: &impl GenericClient,
    workspace_id: Uuid,
    destination_id: Uuid,
    park: &Park,
) -> Result<()> {
    let wait_ms = i64::try_from(park.wait.as_millis()).unwrap_or(i64::MAX);
    let stmt = client.prepare_cached(PARK).await?;
    client
        .execute(
            &stmt,
            &[&workspace_id, &destination_id, &wait_ms, &park.reason],
        )
        .await?;
    tracing::warn!(
        destination = %ids::to_wire(ids::DESTINATION, destination_id),
        wait_secs = park.wait.as_secs(),
        reason = %park.reason,
        "the platform asked to come back later: destination parked"
    );
    Ok(())
}

/// A parked destination, as operators see it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ParkView {
    /// `dst_…`.
    pub destination: String,
    /// Until when its dispatches wait.
    pub parked_until: String,
    /// When it was parked.
    pub parked_at: String,
    /// What the platform said.
    pub reason: String,
    /// Dispatches waiting for it (queued or retrying).
    pub waiting: i64,
}

const PARKS: &str = "
    SELECT p.destination_id, p.parked_until, p.parked_at, p.reason,
           (SELECT count(*) FROM dispatches d
            WHERE d.workspace_id = p.workspace_id AND d.destination_id = p.destination_id
              AND d.status IN ('queued', 'retrying')) AS waiting
    FROM destination_parks p
    WHERE p.workspace_id = $1 AND p.parked_until > now()
    ORDER BY p.destination_id";

/// The workspace's destinations parked now.
///
/// # Errors
/// [`crate::Error::Database`].
pub async fn parked_destinations(
    client: &impl GenericClient,
    workspace_id: Uuid,
) -> Result<Vec<ParkView>> {
    let stmt = client.prepare_cached(PARKS).await?;
    client
        .query(&stmt, &[&workspace_id])
        .await?
        .iter()
        .map(|row| {
            let until: OffsetDateTime = row.try_get(1)?;
            let at: OffsetDateTime = row.try_get(2)?;
            Ok(ParkView {
                destination: ids::to_wire(ids::DESTINATION, row.try_get(0)?),
                parked_until: events::format_timestamp(until),
                parked_at: events::format_timestamp(at),
                reason: row.try_get(3)?,
                waiting: row.try_get(4)?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(per_minute: u32) -> Quota {
        Quota {
            bucket: "b".into(),
            per_minute: Some(per_minute),
            per_day: None,
            operations_per_day: None,
            source: "test",
        }
    }

    #[test]
    fn no_day_gets_more_than_the_quota() {
        for per_day in [1, 100_000, 300_000] {
            for share in [0.01, 0.5, 1.0] {
                let (capacity, per_second) = day_bucket_shape(per_day, share);
                let allowed = f64::from(per_day) * share;
                let most_in_a_day = capacity + per_second * 86_400.0;
                assert!(
                    most_in_a_day <= allowed.max(1.0) + 1e-9 || capacity <= 1.0,
                    "{per_day} × {share}: {most_in_a_day} > {allowed}"
                );
            }
        }
        let daily = Quota {
            per_day: Some(100_000),
            ..quota(300)
        };
        let names: Vec<String> = buckets(&daily, 1.0, 1).into_iter().map(|b| b.0).collect();
        assert_eq!(names, ["b", "b:day"]);
        assert_eq!(buckets(&quota(300), 1.0, 1).len(), 1);
    }

    #[test]
    fn operations_are_counted_per_conversion_and_a_request_fits_the_bucket() {
        let explorer = Quota {
            per_minute: None,
            operations_per_day: Some(2_880),
            ..quota(300)
        };
        // An hour's operations: 120; a request carries no more.
        assert_eq!(max_operations(&explorer, 1.0), Some(120));
        assert_eq!(max_operations(&quota(300), 1.0), None);
        let buckets = buckets(&explorer, 1.0, 50);
        assert_eq!(buckets.len(), 1);
        assert_eq!(buckets[0].0, "b:operations");
        assert_eq!(buckets[0].3, 50.0);
        assert_eq!(super::buckets(&explorer, 1.0, 5_000)[0].3, 120.0);
    }

    #[test]
    fn no_minute_gets_more_than_the_quota() {
        for per_minute in [1, 3, 300, 5000] {
            for share in [0.01, 0.5, 1.0] {
                let (capacity, per_second) = bucket_shape(per_minute, share);
                let allowed = f64::from(per_minute) * share;
                let most_in_a_minute = capacity + per_second * 60.0;
                assert!(
                    most_in_a_minute <= allowed.max(1.0) + 1e-9 || capacity <= 1.0,
                    "{per_minute} × {share}: {most_in_a_minute} > {allowed}"
                );
            }
        }
        let (capacity, per_second) = bucket_shape(300, 1.0);
        assert_eq!(capacity, 30.0);
        assert!((per_second - 4.5).abs() < 1e-9);
    }
}
