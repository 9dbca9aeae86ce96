//! Pacing every destination's sends to its platform's published request quota, and parking a
//! destination whose platform asked to come back much later.
//!
//! The quota is a token bucket in PostgreSQL, one row per quota (what the platform counts
//! against, such as a Google Cloud project), shared by every workspace that sends through it:
//! every worker process takes its tokens from the same row in one atomic statement, so that any
//! number of workers and workspaces together stay within the quota, and a backlog drains at the
//! quota instead of running into 429s. The bucket refills at 90 % of the quota and holds a tenth
//! of a minute's quota, so that no minute ever sees more than the quota (a burst plus the
//! refill). `share` (operator setting `CONVRELAY_QUOTA_SHARE`) is the part of each quota this
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

/// The bucket's size and refill rate under `share` of `quota`.
pub fn bucket_shape(quota: &Quota, share: f64) -> (f64, f64) {
    let per_minute = f64::from(quota.per_minute) * share.clamp(0.0, 1.0);
    let capacity = (per_minute / 10.0).max(1.0);
    let per_second = (per_minute * 0.9 / 60.0).max(1e-6);
    (capacity, per_second)
}

const CREATE_BUCKET: &str = "
    INSERT INTO quota_buckets (bucket, tokens, updated_at)
    VALUES ($1, $2, now())
    ON CONFLICT (bucket) DO NOTHING";

/// Refill, then take a token if one is whole: the row lock makes concurrent takers queue, and
/// each sees the tokens the one before left.
const TAKE: &str = "
    WITH current AS (
        SELECT bucket,
               least($2::float8, tokens
                     + greatest(0, extract(epoch FROM clock_timestamp() - updated_at)) * $3::float8)
                 AS available
        FROM quota_buckets
        WHERE bucket = $1
        FOR UPDATE
    )
    UPDATE quota_buckets b
    SET tokens = current.available - CASE WHEN current.available >= 1 THEN 1 ELSE 0 END,
        updated_at = clock_timestamp()
    FROM current
    WHERE b.bucket = current.bucket
    RETURNING current.available";

/// Takes one request's token from `quota`'s bucket, shared by every worker and workspace.
///
/// # Errors
/// [`crate::Error::Database`].
pub async fn take(client: &impl GenericClient, quota: &Quota, share: f64) -> Result<Permit> {
    let (capacity, per_second) = bucket_shape(quota, share);
    let create = client.prepare_cached(CREATE_BUCKET).await?;
    client.execute(&create, &[&quota.bucket, &capacity]).await?;
    let stmt = client.prepare_cached(TAKE).await?;
    let row = client
        .query_opt(&stmt, &[&quota.bucket, &capacity, &per_second])
        .await?;
    let available: f64 = match row {
        Some(row) => row.try_get(0)?,
        None => return Ok(Permit::Granted),
    };
    if available >= 1.0 {
        metrics::counter!("convrelay_pacing_total", "result" => "granted").increment(1);
        Ok(Permit::Granted)
    } else {
        metrics::counter!("convrelay_pacing_total", "result" => "deferred").increment(1);
        let wait = ((1.0 - available) / per_second).clamp(0.001, 3600.0);
        Ok(Permit::Wait(Duration::from_secs_f64(wait)))
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
            source: "test",
        }
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
