//! `GET /v1/usage` (read scope): what the workspace has stored, and how long it is kept.

use actix_web::HttpResponse;
use deadpool_postgres::Pool;
use serde::Serialize;
use time::OffsetDateTime;

use crate::auth::Principal;
use crate::keys::Scope;
use crate::problem::ApiError;

/// `CONVRELAY_RETENTION_DAYS`, for the answer.
#[derive(Debug, Clone, Copy)]
pub struct RetentionDays(pub u32);

/// The workspace's stored counts.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Stored {
    events: i64,
    clicks: i64,
    identifiers: i64,
    persons: i64,
    dispatches: i64,
    attempts: i64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Usage {
    stored: Stored,
    oldest_event_at: Option<String>,
    retention_days: u32,
    /// Events received before this are removed by the next retention rounds.
    retention_cutoff: String,
}

/// `GET /v1/usage`: the workspace's stored counts and the oldest event kept.
pub async fn usage(
    principal: Principal,
    pool: actix_web::web::Data<Pool>,
    retention: actix_web::web::Data<RetentionDays>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Scope::Read)?;
    let ws = principal.workspace_id;
    let client = pool.get().await?;
    let events = journal::retention::event_usage(&client, ws).await?;
    let graph = attribution_matcher::retention::usage(&client, ws).await?;
    let dispatches = forwarder::retention::usage(&client, ws).await?;
    let days = retention.0;
    let cutoff = OffsetDateTime::now_utc() - time::Duration::days(i64::from(days));
    Ok(HttpResponse::Ok().json(Usage {
        stored: Stored {
            events: events.events,
            clicks: graph.clicks,
            identifiers: graph.identifiers,
            persons: graph.persons,
            dispatches: dispatches.dispatches,
            attempts: dispatches.attempts,
        },
        oldest_event_at: events.oldest_received_at.map(events::format_timestamp),
        retention_days: days,
        retention_cutoff: events::format_timestamp(cutoff),
    }))
}
