//! `/v1/events`: send events (one or a batch), read one, list them.

use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use dedup::IdempotencyKey;

use crate::auth::Principal;
use crate::body::{self, BATCH_LIMIT, SINGLE_LIMIT};
use crate::ingest::{Ingest, Post, Stored};
use crate::keys::Scope;
use crate::problem::ApiError;
use crate::query::EventQuery;
use crate::read;
use crate::routes::write::JsonWrite;

/// The header set on an answer replayed for an Idempotency-Key.
pub const REPLAYED: &str = "Idempotent-Replayed";

pub(crate) fn idempotency_key(req: &HttpRequest) -> Result<Option<IdempotencyKey>, ApiError> {
    req.headers()
        .get("Idempotency-Key")
        .map(|v| IdempotencyKey::parse(v.as_bytes()).map_err(ApiError::from))
        .transpose()
}

pub(crate) fn respond(stored: Stored) -> HttpResponse {
    let status = StatusCode::from_u16(stored.rendered.status).unwrap_or(StatusCode::OK);
    let mut res = HttpResponse::build(status);
    res.insert_header((header::CONTENT_TYPE, "application/json"));
    if stored.replayed {
        res.insert_header((REPLAYED, "true"));
    }
    res.body(stored.rendered.body)
}

/// `POST /v1/events`: one lead or sale.
pub async fn post_event(
    req: HttpRequest,
    principal: Principal,
    payload: web::Payload,
    ingest: web::Data<Ingest>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Scope::Ingest)?;
    let idempotency_key = idempotency_key(&req)?;
    let (raw, value) = body::read_json(&req, payload, SINGLE_LIMIT).await?;
    let wait = value.get("mode").and_then(|m| m.as_str()) == Some("wait");
    let post = Post {
        principal: &principal,
        idempotency_key,
        path: req.path(),
        body: &raw,
        value: &value,
    };
    let mut stored = ingest.single(post).await?;
    // The kept Idempotency-Key answer is the accepted body; every answer in wait mode (a replay
    // or a duplicate too) adds the event's attribution as it stands.
    if wait && matches!(stored.rendered.status, 200 | 202) {
        stored.rendered.body =
            read::await_decision(&ingest.pool, principal.workspace_id, &stored.rendered.body)
                .await?;
    }
    Ok(respond(stored))
}

/// `POST /v1/events/batch`: up to 1000 events; each valid one is stored.
pub async fn post_batch(
    req: HttpRequest,
    principal: Principal,
    payload: web::Payload,
    ingest: web::Data<Ingest>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Scope::Ingest)?;
    let idempotency_key = idempotency_key(&req)?;
    let (raw, value) = body::read_json(&req, payload, BATCH_LIMIT).await?;
    let post = Post {
        principal: &principal,
        idempotency_key,
        path: req.path(),
        body: &raw,
        value: &value,
    };
    Ok(respond(ingest.batch(post).await?))
}

/// `GET /v1/events/{id}`: one event as stored; another workspace's is 404.
pub async fn get_event(
    principal: Principal,
    path: web::Path<String>,
    pool: web::Data<deadpool_postgres::Pool>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Scope::Read)?;
    let event = read::event(&pool, principal.workspace_id, &path).await?;
    Ok(HttpResponse::Ok().json(event))
}

/// `GET /v1/events`: newest first, filtered, a page at a time.
pub async fn list_events(
    req: HttpRequest,
    principal: Principal,
    pool: web::Data<deadpool_postgres::Pool>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Scope::Read)?;
    let filter = EventQuery::parse(req.query_string()).map_err(ApiError::Validation)?;
    let page = read::events(&pool, principal.workspace_id, filter).await?;
    Ok(HttpResponse::Ok().json(page))
}

/// `POST /v1/events/{id}/retract` `{"reason": "refund"}`: undo a conversion. Idempotent.
pub async fn retract(
    req: HttpRequest,
    principal: Principal,
    path: web::Path<String>,
    payload: web::Payload,
    ingest: web::Data<Ingest>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Scope::Ingest)?;
    let write = JsonWrite::read(&req, payload, SINGLE_LIMIT).await?;
    body::reject_nul(write.value())?;
    let reason = retract_reason(write.value())?;
    let workspace_id = principal.workspace_id;
    let id = path.into_inner();
    write
        .run(&req, &principal, &ingest, move |tx| {
            Box::pin(async move {
                let answer = read::retract(tx, workspace_id, &id, &reason).await?;
                crate::responses::json(200, &answer)
            })
        })
        .await
}

/// The body of a retraction: `{"reason"?: "…"}` (default `"retracted"`).
fn retract_reason(value: &serde_json::Value) -> Result<String, ApiError> {
    let mut errors = Vec::new();
    let mut reason = "retracted".to_owned();
    if let Some(map) = value.as_object() {
        for (name, v) in map {
            match (name.as_str(), v) {
                ("reason", serde_json::Value::String(s))
                    if !s.trim().is_empty() && s.chars().count() <= 255 =>
                {
                    reason = s.trim().to_owned();
                }
                ("reason", _) => errors.push(events::FieldError {
                    field: "reason".into(),
                    code: "type",
                    message: "must be a non-empty string of at most 255 characters".into(),
                }),
                _ => errors.push(events::FieldError {
                    field: name.clone(),
                    code: "unknown_field",
                    message: "is not a field of this request".into(),
                }),
            }
        }
    }
    if errors.is_empty() {
        Ok(reason)
    } else {
        Err(ApiError::Validation(errors))
    }
}
