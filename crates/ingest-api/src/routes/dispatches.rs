//! `/v1/dispatches`: what was sent where, every attempt, retries (read scope; retry needs admin).

use actix_web::{web, HttpRequest, HttpResponse};
use deadpool_postgres::Pool;
use forwarder::{DispatchFilter, DispatchStatus};

use crate::auth::Principal;
use crate::body::{self, SINGLE_LIMIT};
use crate::ids;
use crate::keys::Scope;
use crate::problem::ApiError;
use crate::query::Params;

fn filter(query: &str) -> Result<DispatchFilter, ApiError> {
    let params = Params::parse(
        query,
        &[
            "status",
            "destination",
            "eventId",
            "since",
            "limit",
            "cursor",
        ],
    )?;
    let mut errors = Vec::new();
    let status = match params.get("status") {
        None => None,
        Some(raw) => {
            let status = DispatchStatus::parse(raw);
            if status.is_none() {
                errors.push(events::FieldError {
                    field: "status".into(),
                    code: "invalid_value",
                    message: "must be one of: queued, in_flight, succeeded, retrying, failed, skipped, cancelled".into(),
                });
            }
            status
        }
    };
    let event_id = match params.get("eventId") {
        None => None,
        Some(raw) => {
            let id = ids::from_wire(ids::EVENT, raw);
            if id.is_none() {
                errors.push(events::FieldError {
                    field: "eventId".into(),
                    code: "format",
                    message: "must be an event id (evt_…)".into(),
                });
            }
            id
        }
    };
    let since = params.time("since").unwrap_or_else(|e| {
        errors.push(e);
        None
    });
    let limit = match params.limit() {
        Ok(limit) => limit,
        Err(ApiError::Validation(mut e)) => {
            errors.append(&mut e);
            0
        }
        Err(other) => return Err(other),
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    Ok(DispatchFilter {
        status,
        destination: params.get("destination").map(str::to_owned),
        event_id,
        since,
        limit,
        cursor: params.get("cursor").map(str::to_owned),
    })
}

/// `GET /v1/dispatches`: newest first, filtered, a page at a time.
pub async fn list(
    req: HttpRequest,
    principal: Principal,
    pool: web::Data<Pool>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Scope::Read)?;
    let filter = filter(req.query_string())?;
    let client = pool.get().await?;
    let page = forwarder::list_dispatches(&client, principal.workspace_id, filter).await?;
    Ok(HttpResponse::Ok().json(page))
}

/// `GET /v1/dispatches/{id}`: with every attempt.
pub async fn get(
    principal: Principal,
    path: web::Path<String>,
    pool: web::Data<Pool>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Scope::Read)?;
    let client = pool.get().await?;
    let detail = forwarder::get_dispatch(&client, principal.workspace_id, &path).await?;
    Ok(HttpResponse::Ok().json(detail))
}

/// `POST /v1/dispatches/{id}/retry`: a failed or skipped dispatch goes back to `queued`.
pub async fn retry(
    principal: Principal,
    path: web::Path<String>,
    pool: web::Data<Pool>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Scope::Admin)?;
    let client = pool.get().await?;
    let view = forwarder::retry_dispatch(&client, principal.workspace_id, &path).await?;
    Ok(HttpResponse::Ok().json(view))
}

/// `POST /v1/dispatches/retry`: bulk replay, e.g. every failed dispatch of a destination.
pub async fn retry_many(
    req: HttpRequest,
    principal: Principal,
    payload: web::Payload,
    pool: web::Data<Pool>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Scope::Admin)?;
    let (_, value) = body::read_json(&req, payload, SINGLE_LIMIT).await?;
    let client = pool.get().await?;
    let queued = forwarder::retry_dispatches(&client, principal.workspace_id, &value).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "queued": queued })))
}

/// `GET /v1/dispatches/stats`: counts per destination and status, oldest queued age.
pub async fn stats(principal: Principal, pool: web::Data<Pool>) -> Result<HttpResponse, ApiError> {
    principal.require(Scope::Read)?;
    let client = pool.get().await?;
    let stats = forwarder::dispatch_stats(&client, principal.workspace_id).await?;
    Ok(HttpResponse::Ok().json(stats))
}
