//! Reading events back: one by id (with its attribution, routing and dispatches), or a page of a
//! workspace's events.

use deadpool_postgres::{GenericClient, Pool};
use events::{Attribution, RouteDecision};
use serde::Serialize;
use uuid::Uuid;

use crate::ids;
use crate::problem::ApiError;
use crate::query::EventQuery;
use journal::{self, EventFilter, StoredEvent};

/// An event as listed: its id and arrival, then the event as stored (normalised).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventView {
    id: String,
    received_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    retracted_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retract_reason: Option<String>,
    #[serde(flatten)]
    event: events::Event,
}

/// An event with what the pipeline made of it: `attribution` (null until decided), `routing`
/// (why each destination type was or was not chosen) and `dispatches`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventDetail {
    #[serde(flatten)]
    view: EventView,
    attribution: Option<Attribution>,
    routing: Vec<RouteDecision>,
    dispatches: Vec<forwarder::DispatchSummary>,
    /// Every value the event had, oldest first (empty until it is first restated).
    value_history: Vec<forwarder::ValueEntry>,
    /// For a lead sent without an amount: the value it took from its conversion-events
    /// definition when it was attributed, which its dispatches carried and reports count.
    #[serde(skip_serializing_if = "Option::is_none")]
    lead_value: Option<LeadValueView>,
}

/// The value a lead took from the catalog.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LeadValueView {
    #[serde(with = "events::amount_serde")]
    amount: rust_decimal::Decimal,
    currency: &'static str,
    /// `fixed` (the definition's amount) or `close_rate` (the estimate at the time).
    source: catalog::ValueSource,
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
        retracted_at: stored.retracted_at.map(events::format_timestamp),
        retract_reason: stored.retract_reason,
        event,
    })
}

/// An event's detail, from its stored form.
pub async fn detail(
    client: &impl GenericClient,
    workspace_id: Uuid,
    stored: StoredEvent,
) -> Result<EventDetail, ApiError> {
    let id = stored.id;
    let view = view(stored)?;
    let decision =
        attribution_matcher::get_decision(client, workspace_id, id, Some(&view.event)).await?;
    let dispatches = forwarder::dispatches_for_event(client, workspace_id, id).await?;
    let value_history = forwarder::value_history(client, workspace_id, id).await?;
    let lead_value = if view.event.value.is_none() {
        catalog::lead_values(client, workspace_id, &[id])
            .await?
            .remove(&id)
            .map(|applied| LeadValueView {
                amount: applied.money.amount(),
                currency: applied.money.currency().code(),
                source: applied.source,
            })
    } else {
        None
    };
    let (attribution, routing) = match decision {
        Some(d) => (Some(d.attribution), d.routes),
        None => (None, Vec::new()),
    };
    Ok(EventDetail {
        view,
        attribution,
        routing,
        dispatches,
        value_history,
        lead_value,
    })
}

/// One event of the workspace, by its wire id; 404 when it is not the workspace's.
pub async fn event(pool: &Pool, workspace_id: Uuid, id: &str) -> Result<EventDetail, ApiError> {
    let id = ids::from_wire(ids::EVENT, id).ok_or(ApiError::NotFound)?;
    let client = pool.get().await?;
    let stored = journal::get_event(&client, workspace_id, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    detail(&client, workspace_id, stored).await
}

/// A page of the workspace's events, newest first.
pub async fn events(
    pool: &Pool,
    workspace_id: Uuid,
    EventQuery(filter): EventQuery,
) -> Result<Page<EventView>, ApiError> {
    let client = pool.get().await?;
    // One more than asked tells whether there is a next page.
    let mut probe = EventFilter {
        limit: filter.limit + 1,
        ..filter.clone()
    };
    if let (Some(key), Some(kind)) = (&filter.natural_key, filter.kind) {
        match dedup::natural::find_event(&client, workspace_id, kind, key).await? {
            Some(id) => probe.only = Some(id),
            None => {
                return Ok(Page {
                    data: Vec::new(),
                    next_cursor: None,
                })
            }
        }
    }
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

/// `POST /v1/events/{id}/retract`, in the caller's transaction: the event leaves reports;
/// destinations that can retract get a retraction, the others record `not_supported`. Idempotent.
///
/// It holds the workspace's attribution lock (as a worker's step does): a step that read the
/// event before it was retracted commits its dispatches first, and this cancels them; a step
/// after it finds the event retracted and queues none.
pub async fn retract(
    tx: &impl GenericClient,
    workspace_id: Uuid,
    id: &str,
    reason: &str,
) -> Result<serde_json::Value, ApiError> {
    let id = ids::from_wire(ids::EVENT, id).ok_or(ApiError::NotFound)?;
    attribution_matcher::erase::lock_graph(tx, workspace_id).await?;
    let stored = journal::retract_event(tx, workspace_id, id, reason)
        .await?
        .ok_or(ApiError::NotFound)?;
    reports::retract(tx, workspace_id, id).await?;
    let report = forwarder::retract(tx, workspace_id, id, reason).await?;
    Ok(serde_json::json!({
        "id": ids::to_wire(ids::EVENT, id),
        "retractedAt": stored.retracted_at.map(events::format_timestamp),
        "reason": stored.retract_reason,
        "retractions": report.retractions,
        "cancelled": report.cancelled,
    }))
}

/// How long `mode: "wait"` waits for attribution before it answers without it.
pub const WAIT_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(serde::Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct Accepted {
    id: String,
    event: String,
    status: String,
    duplicate: bool,
    received_at: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Decided {
    #[serde(flatten)]
    accepted: Accepted,
    attribution: Option<Attribution>,
    routing: Vec<RouteDecision>,
    dispatches: Vec<forwarder::DispatchSummary>,
}

/// `mode: "wait"`: waits until attribution has decided (matched, unmatched or pending — the
/// pending window is not waited out) and routing is recorded, then answers the accepted body
/// with `attribution`, `routing` and `dispatches` added. Polls with a deadline ([`WAIT_LIMIT`]);
/// past it, `attribution` is null.
pub async fn await_decision(
    pool: &Pool,
    workspace_id: Uuid,
    accepted: &[u8],
) -> Result<Vec<u8>, ApiError> {
    let accepted: Accepted =
        serde_json::from_slice(accepted).map_err(|e| ApiError::Internal(Box::new(e)))?;
    let id = ids::from_wire(ids::EVENT, &accepted.id)
        .ok_or_else(|| ApiError::Internal("an accepted event has no id".into()))?;
    let deadline = tokio::time::Instant::now() + WAIT_LIMIT;
    let mut pause = std::time::Duration::from_millis(2);
    let decision = loop {
        let client = pool.get().await?;
        if let Some(d) = attribution_matcher::get_decision(&client, workspace_id, id, None).await? {
            break Some(d);
        }
        drop(client);
        if tokio::time::Instant::now() + pause > deadline {
            break None;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(std::time::Duration::from_millis(50));
    };
    let client = pool.get().await?;
    let dispatches = forwarder::dispatches_for_event(&client, workspace_id, id).await?;
    let (attribution, routing) = match decision {
        Some(d) => (Some(d.attribution), d.routes),
        None => (None, Vec::new()),
    };
    serde_json::to_vec(&Decided {
        accepted,
        attribution,
        routing,
        dispatches,
    })
    .map_err(|e| ApiError::Internal(Box::new(e)))
}
