//! `/v1/destinations/{id}/backfill` (admin scope): send a newly connected destination the
//! workspace's already-attributed conversions from history, and follow its progress.

use actix_web::{web, HttpRequest, HttpResponse};
use deadpool_postgres::Pool;

use crate::auth::Principal;
use crate::body::{self, SINGLE_LIMIT};
use crate::ingest::Ingest;
use crate::keys::Scope;
use crate::problem::ApiError;
use crate::responses;
use crate::routes::write::JsonWrite;

/// `POST /v1/destinations/{id}/backfill` `{"since"?: "…"}`: 202 with the backfill's progress;
/// the workers do the rest behind live traffic.
pub async fn start(
    req: HttpRequest,
    principal: Principal,
    path: web::Path<String>,
    payload: web::Payload,
    ingest: web::Data<Ingest>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Scope::Admin)?;
    let write = JsonWrite::read(&req, payload, SINGLE_LIMIT).await?;
    body::reject_nul(write.value())?;
    let workspace_id = principal.workspace_id;
    let id = path.into_inner();
    let document = write.value().clone();
    write
        .run(&req, &principal, &ingest, move |tx| {
            Box::pin(async move {
                let view = pipeline::start_backfill(tx, workspace_id, &id, &document).await?;
                responses::json(202, &view)
            })
        })
        .await
}

/// `GET /v1/destinations/{id}/backfill`: the progress of its latest backfill.
pub async fn progress(
    principal: Principal,
    path: web::Path<String>,
    pool: web::Data<Pool>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Scope::Admin)?;
    let client = pool.get().await?;
    let view = forwarder::get_backfill(&client, principal.workspace_id, &path).await?;
    Ok(HttpResponse::Ok().json(view))
}
