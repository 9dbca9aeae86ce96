//! `/v1/destinations` (admin scope): where conversions go, with write-only sealed credentials.

use actix_web::{web, HttpRequest, HttpResponse};
use deadpool_postgres::Pool;

use crate::auth::Principal;
use crate::body::{self, SINGLE_LIMIT};
use crate::ingest::Ingest;
use crate::keys::Scope;
use crate::problem::ApiError;
use crate::query::Params;
use crate::responses;
use crate::routes::write::JsonWrite;

/// The cipher that seals credentials, when the operator configured one.
pub struct Sealing(pub Option<forwarder::Cipher>);

impl Sealing {
    fn cipher(&self) -> Result<&forwarder::Cipher, ApiError> {
        self.0.as_ref().ok_or(ApiError::SecretKeyMissing)
    }
}

/// `POST /v1/destinations`: 201 with the destination (never its credentials).
pub async fn create(
    req: HttpRequest,
    principal: Principal,
    payload: web::Payload,
    ingest: web::Data<Ingest>,
    sealing: web::Data<Sealing>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Scope::Admin)?;
    sealing.cipher()?;
    let write = JsonWrite::read(&req, payload, SINGLE_LIMIT).await?;
    body::reject_nul(write.value())?;
    let workspace_id = principal.workspace_id;
    let document = write.value().clone();
    write
        .run(&req, &principal, &ingest, move |tx| {
            Box::pin(async move {
                let cipher = sealing.cipher()?;
                let view =
                    forwarder::create_destination(tx, cipher, workspace_id, &document).await?;
                responses::json(201, &view)
            })
        })
        .await
}

/// `GET /v1/destinations`: a page, newest first.
pub async fn list(
    req: HttpRequest,
    principal: Principal,
    pool: web::Data<Pool>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Scope::Admin)?;
    let params = Params::parse(req.query_string(), &["limit", "cursor"])?;
    let limit = params.limit()?;
    let client = pool.get().await?;
    let page =
        forwarder::list_destinations(&client, principal.workspace_id, params.get("cursor"), limit)
            .await?;
    Ok(HttpResponse::Ok().json(page))
}

/// `GET /v1/destinations/{id}`.
pub async fn get(
    principal: Principal,
    path: web::Path<String>,
    pool: web::Data<Pool>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Scope::Admin)?;
    let client = pool.get().await?;
    let view = forwarder::get_destination(&client, principal.workspace_id, &path).await?;
    Ok(HttpResponse::Ok().json(view))
}

/// `PATCH /v1/destinations/{id}`: name, enabled, events, config, credentials.
pub async fn update(
    req: HttpRequest,
    principal: Principal,
    path: web::Path<String>,
    payload: web::Payload,
    pool: web::Data<Pool>,
    sealing: web::Data<Sealing>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Scope::Admin)?;
    let cipher = sealing.cipher()?;
    let (_, value) = body::read_json(&req, payload, SINGLE_LIMIT).await?;
    body::reject_nul(&value)?;
    let client = pool.get().await?;
    let view =
        forwarder::update_destination(&client, cipher, principal.workspace_id, &path, &value)
            .await?;
    Ok(HttpResponse::Ok().json(view))
}

/// `DELETE /v1/destinations/{id}`: 204; its queued dispatches are cancelled.
pub async fn delete(
    principal: Principal,
    path: web::Path<String>,
    pool: web::Data<Pool>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Scope::Admin)?;
    let client = pool.get().await?;
    forwarder::delete_destination(&client, principal.workspace_id, &path).await?;
    Ok(HttpResponse::NoContent().finish())
}
