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
//! takes a token from both or waits for the later one. `share` (operator setting `CONVRELAY_QUOTA_SHARE`) is the part of each quota this
//! service may use: less when other tools send through the same Cloud project; tests shrink it.
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

/// The bucket's size and refill rate under `share` of `quota`'s minute.
pub fn bucket_shape(quota: &Quota, share: f64) -> (f64, f64) {
    let per_minute = f64::from(quota.per_minute) * share.clamp(0.0, 1.0);
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

/// The buckets a send under `quota` takes a token from: the minute's, and the day's where the
/// platform counts one (`<bucket>:day`). Name, capacity, refill per second.
fn buckets(quota: &Quota, share: f64) -> Vec<(String, f64, f64)> {
    let (capacity, per_second) = bucket_shape(quota, share);
    let mut buckets = vec![(quota.bucket.clone(), capacity, per_second)];
    if let Some(per_day) = quota.per_day {
        let (capacity, per_second) = day_bucket_shape(per_day, share);
        buckets.push((format!("{}:day", quota.bucket), capacity, per_second));
    }
    buckets
}

const CREATE_BUCKET: &str = "
    INSERT INTO quota_buckets (bucket, tokens, updated_at)
    VALUES ($1, $2, now())
    ON CONFLICT (bucket) DO NOTHING";

/// Refill each bucket, then take a token from every one if each has a whole one, else from none:
/// the row locks (taken in name order) make concurrent takers queue, and each sees the tokens
/// the one before left.
const TAKE: &str = "
    WITH wanted AS (
        SELECT * FROM unnest($1::text[], $2::float8[], $3::float8[]) AS w(bucket, capacity, rate)
    ), current AS (
        SELECT b.bucket, w.rate,
               least(w.capacity, b.tokens
                     + greatest(0, extract(epoch FROM clock_timestamp() - b.updated_at)) * w.rate)
                 AS available
        FROM quota_buckets b
        JOIN wanted w ON w.bucket = b.bucket
        ORDER BY b.bucket
        FOR UPDATE OF b
    ), verdict AS (
        SELECT bool_and(available >= 1) AS granted FROM current
    )
    UPDATE quota_buckets b
    SET tokens = c.available - CASE WHEN v.granted THEN 1 ELSE 0 END,
        updated_at = clock_timestamp()
    FROM current c, verdict v
    WHERE b.bucket = c.bucket
    RETURNING c.available, c.rate";

/// Takes one request's token from `quota`'s buckets (the minute's, and the day's where the
/// platform counts one), shared by every worker and workspace: from both or from neither.
///
/// # Errors
/// [`crate::Error::Database`].
pub async fn take(client: &impl GenericClient, quota: &Quota, share: f64) -> Result<Permit> {
    let buckets = buckets(quota, share);
    let create = client.prepare_cached(CREATE_BUCKET).await?;
    for (bucket, capacity, _) in &buckets {
        client.execute(&create, &[bucket, capacity]).await?;
    }
    let names: Vec<&str> = buckets.iter().map(|b| b.0.as_str()).collect();
    let capacities: Vec<f64> = buckets.iter().map(|b| b.1).collect();
    let rates: Vec<f64> = buckets.iter().map(|b| b.2).collect();
    let stmt = client.prepare_cached(TAKE).await?;
    let mut wait: Option<f64> = None;
    for row in client.query(&stmt, &[&names, &capacities, &rates]).await? {
        let available: f64 = row.try_get(0)?;
        let rate: f64 = row.try_get(1)?;
        if available < 1.0 {
            let this = (1.0 - available) / rate;
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
            per_minute,
            per_day: None,
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
        let names: Vec<String> = buckets(&daily, 1.0).into_iter().map(|b| b.0).collect();
        assert_eq!(names, ["b", "b:day"]);
        assert_eq!(buckets(&quota(300), 1.0).len(), 1);
    }

    #[test]
    fn no_minute_gets_more_than_the_quota() {
        for per_minute in [1, 3, 300, 5000] {
            for share in [0.01, 0.5, 1.0] {
                let (capacity, per_second) = bucket_shape(&quota(per_minute), share);
                let allowed = f64::from(per_minute) * share;
                let most_in_a_minute = capacity + per_second * 60.0;
                assert!(
                    most_in_a_minute <= allowed.max(1.0) + 1e-9 || capacity <= 1.0,
                    "{per_minute} × {share}: {most_in_a_minute} > {allowed}"
                );
            }
        }
        let (capacity, per_second) = bucket_shape(&quota(300), 1.0);
        assert_eq!(capacity, 30.0);
        assert!((per_second - 4.5).abs() < 1e-9);
    }
}
