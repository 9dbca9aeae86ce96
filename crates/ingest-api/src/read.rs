//! Reading events back: one by id, or a page of a workspace's events.

use deadpool_postgres::Pool;
use serde::Serialize;
use uuid::Uuid;

use crate::ids;
use crate::journal::{self, EventFilter, StoredEvent};
use crate::problem::ApiError;
use crate::query::EventQuery;

/// An event as shown: its id and arrival, then the event as stored (normalised).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventView {
    id: String,
    received_at: String,
    #[serde(flatten)]
    event: events::Event,
}

/// A page of a list.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    data: Vec<T>,
    next_cursor: Option<String>,
}

fn view(stored: StoredEvent) -> Result<EventView, ApiError> {
    let event: events::Event =
        serde_json::from_value(stored.payload).map_err(|e| ApiError::Internal(Box::new(e)))?;
    Ok(EventView {
        id: ids::to_wire(ids::EVENT, stored.id),
        received_at: events::format_timestamp(stored.received_at),
        event,
    })
}

/// One event of the workspace, by its wire id; 404 when it is not the workspace's.
pub async fn event(pool: &Pool, workspace_id: Uuid, id: &str) -> Result<EventView, ApiError> {
    let id = ids::from_wire(ids::EVENT, id).ok_or(ApiError::NotFound)?;
    let client = pool.get().await?;
    let stored = journal::get_event(&client, workspace_id, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    view(stored)
}

/// A page of the workspace's events, newest first.
pub async fn events(
    pool: &Pool,
    workspace_id: Uuid,
    EventQuery(filter): EventQuery,
) -> Result<Page<EventView>, ApiError> {
    let client = pool.get().await?;
    // One more than asked tells whether there is a next page.
    let probe = EventFilter {
        limit: filter.limit + 1,
        ..filter.clone()
    };
    let mut rows = journal::list_events(&client, workspace_id, &probe).await?;
    let more = rows.len() as i64 > filter.limit;
    rows.truncate(usize::try_from(filter.limit).unwrap_or(0));
    let next_cursor = more
        .then(|| rows.last().map(|r| ids::to_wire(ids::EVENT, r.id)))
        .flatten();
    Ok(Page {
        data: rows.into_iter().map(view).collect::<Result<_, _>>()?,
        next_cursor,
    })
}
