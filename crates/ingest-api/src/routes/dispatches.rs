//! `/v1/dispatches`: what was sent where, every attempt, retries (read scope; retry needs admin).

use actix_web::{web, HttpRequest, HttpResponse};
use deadpool_postgres::Pool;
use forwarder::DispatchFilter;

use crate::auth::Principal;
use crate::body::{self, SINGLE_LIMIT};
use crate::keys::Scope;
use crate::problem::ApiError;

fn filter(query: &str) -> Result<DispatchFilter, ApiError> {
    let pairs = crate::query::pairs(query).map_err(ApiError::Validation)?;
    Ok(DispatchFilter::from_pairs(pairs)?)
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
    body::reject_nul(&value)?;
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

/// `GET /v1/dispatches/health?from&to&interval`: per destination and hour (or day), the
/// dispatches created then by status now. Defaults: the last 24 hours, by hour.
pub async fn health(
    req: HttpRequest,
    principal: Principal,
    pool: web::Data<Pool>,
) -> Result<HttpResponse, ApiError> {
    use forwarder::HealthInterval;
    principal.require(Scope::Read)?;
    let params = crate::query::Params::parse(req.query_string(), &["from", "to", "interval"])?;
    let mut errors = Vec::new();
    let to = params.time("to").map_err(|e| errors.push(e)).ok().flatten();
    let from = params
        .time("from")
        .map_err(|e| errors.push(e))
        .ok()
        .flatten();
    let interval = match params.get("interval") {
        None => Some(HealthInterval::Hour),
        Some(raw) => HealthInterval::parse(raw),
    };
    if interval.is_none() {
        errors.push(events::FieldError {
            field: "interval".into(),
            code: "enum",
            message: "must be one of: hour, day".into(),
        });
    }
    let to = to.unwrap_or_else(time::OffsetDateTime::now_utc);
    let from = from.unwrap_or(to - time::Duration::DAY);
    if errors.is_empty() && to <= from {
        errors.push(events::FieldError {
            field: "to".into(),
            code: "range",
            message: "must be after from".into(),
        });
    }
    let Some(interval) = interval.filter(|_| errors.is_empty()) else {
        return Err(ApiError::Validation(errors));
    };
    let periods = forwarder::health::health_periods(from, to, interval);
    if periods > forwarder::health::MAX_HEALTH_PERIODS as i64 {
        return Err(ApiError::Validation(vec![events::FieldError {
            field: "interval".into(),
            code: "too_many_periods",
            message: format!(
                "the range holds {periods} periods of this interval, more than {}: use a longer \
                 interval or a shorter range",
                forwarder::health::MAX_HEALTH_PERIODS
            ),
        }]));
    }
    let client = pool.get().await?;
    let data =
        forwarder::delivery_health(&client, principal.workspace_id, from, to, interval).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "from": events::format_timestamp(from),
        "to": events::format_timestamp(to),
        "interval": interval.as_str(),
        "data": data,
    })))
}
