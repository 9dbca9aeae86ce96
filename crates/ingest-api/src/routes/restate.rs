//! `POST /v1/events/{id}/restate`: a conversion's value changed after the fact (a partial
//! refund, a corrected order). Ingest scope, Idempotency-Key honoured; the value history is kept
//! by the forwarder's restatement module, which also tells each destination.

use actix_web::{web, HttpRequest, HttpResponse};
use deadpool_postgres::GenericClient;
use uuid::Uuid;

use crate::auth::Principal;
use crate::body::{self, SINGLE_LIMIT};
use crate::ids;
use crate::ingest::Ingest;
use crate::keys::Scope;
use crate::problem::ApiError;
use crate::routes::write::JsonWrite;

/// `POST /v1/events/{id}/restate` `{"amount": 150.0, "currency"?: "USD", "reason"?: "…"}`.
pub async fn restate(
    req: HttpRequest,
    principal: Principal,
    path: web::Path<String>,
    payload: web::Payload,
    ingest: web::Data<Ingest>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Scope::Ingest)?;
    let write = JsonWrite::read(&req, payload, SINGLE_LIMIT).await?;
    body::reject_nul(write.value())?;
    let new = forwarder::NewValue::from_json(write.value())?;
    let workspace_id = principal.workspace_id;
    let id = path.into_inner();
    write
        .run(&req, &principal, &ingest, move |tx| {
            Box::pin(async move {
                let report = apply(tx, workspace_id, &id, &new).await?;
                crate::responses::json(200, &report)
            })
        })
        .await
}

/// Reads the event (404 for an unknown id or another workspace's, 409 once retracted) and
/// applies the restatement in the request's transaction, to the dispatches and to the reports.
/// It holds the workspace's attribution lock: a conversion decided after it carries the new
/// value, one decided before it gets the restatement.
async fn apply(
    tx: &impl GenericClient,
    workspace_id: Uuid,
    id: &str,
    new: &forwarder::NewValue,
) -> Result<forwarder::RestateReport, ApiError> {
    let event_id = ids::from_wire(ids::EVENT, id).ok_or(ApiError::NotFound)?;
    // As a retraction does: an attribution step that is queueing this conversion commits first,
    // and the restatement then finds (and updates) what it queued.
    attribution_matcher::erase::lock_graph(tx, workspace_id).await?;
    let stored = journal::get_event(tx, workspace_id, event_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    if stored.retracted_at.is_some() {
        return Err(ApiError::Conflict(
            "the event was retracted: a retracted conversion has no value to restate".into(),
        ));
    }
    let event: events::Event =
        serde_json::from_value(stored.payload).map_err(|e| ApiError::Internal(Box::new(e)))?;
    let target = forwarder::RestateTarget {
        workspace_id,
        event_id,
        original: event.value,
        received_at: stored.received_at,
    };
    let report = forwarder::restate(tx, &target, new).await?;
    if report.changed {
        // Reports count the latest value: the rollups move with it, in the same transaction.
        reports::apply_value_change(tx, workspace_id, event_id, report.amount, &report.currency)
            .await?;
    }
    Ok(report)
}
