//! Registered clicks per day and group, counted as they are registered (inside the registering
//! transaction), for `clicks` and `clickToLeadRate` in reports.

use std::collections::BTreeMap;

use deadpool_postgres::GenericClient;
use events::Touchpoint;
use time::Date;
use uuid::Uuid;

use crate::query::GroupBy;
use crate::shares::channel;
use crate::{Result, NONE_KEY};

const ADD_CLICKS: &str = "
    INSERT INTO report_clicks AS r (workspace_id, dim, day, key, clicks)
    SELECT $1, q.* FROM unnest($2::smallint[], $3::date[], $4::text[], $5::bigint[])
        AS q(dim, day, key, clicks)
    ORDER BY q.dim, q.day, q.key
    ON CONFLICT (workspace_id, dim, day, key) DO UPDATE SET clicks = r.clicks + excluded.clicks";

/// Counts newly registered clicks under their channel, source, medium and campaign.
pub async fn count_clicks(
    client: &impl GenericClient,
    workspace_id: Uuid,
    clicks: &[&Touchpoint],
) -> Result<()> {
    let mut sums: BTreeMap<(i16, Date, String), i64> = BTreeMap::new();
    for click in clicks {
        let day = click.clicked_at.to_offset(time::UtcOffset::UTC).date();
        let utm = click.utm.as_ref();
        let keys = [
            (GroupBy::Channel, Some(channel(Some(click)))),
            (GroupBy::Source, utm.and_then(|u| u.source.clone())),
            (GroupBy::Medium, utm.and_then(|u| u.medium.clone())),
            (GroupBy::Campaign, utm.and_then(|u| u.campaign.clone())),
        ];
        for (dim, key) in keys {
            let key = key.unwrap_or_else(|| NONE_KEY.into());
            *sums.entry((dim.number(), day, key)).or_default() += 1;
        }
    }
    if sums.is_empty() {
        return Ok(());
    }
    let mut dims = Vec::with_capacity(sums.len());
    let mut days = Vec::with_capacity(sums.len());
    let mut keys = Vec::with_capacity(sums.len());
    let mut counts = Vec::with_capacity(sums.len());
    for ((dim, day, key), n) in sums {
        dims.push(dim);
        days.push(day);
        keys.push(key);
        counts.push(n);
    }
    let statement = client.prepare_cached(ADD_CLICKS).await?;
    client
        .execute(&statement, &[&workspace_id, &dims, &days, &keys, &counts])
        .await?;
    Ok(())
}
