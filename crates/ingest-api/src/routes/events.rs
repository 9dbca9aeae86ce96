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

/// The header set on an answer replayed for an Idempotency-Key.
pub const REPLAYED: &str = "Idempotent-Replayed";

fn idempotency_key(req: &HttpRequest) -> Result<Option<IdempotencyKey>, ApiError> {
    req.headers()
        .get("Idempotency-Key")
        .map(|v| IdempotencyKey::parse(v.as_bytes()).map_err(ApiError::from))
        .transpose()
}

fn respond(stored: Stored) -> HttpResponse {
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
    let post = Post {
        principal: &principal,
        idempotency_key,
        path: req.path(),
        body: &raw,
        value: &value,
    };
    Ok(respond(ingest.single(post).await?))
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
