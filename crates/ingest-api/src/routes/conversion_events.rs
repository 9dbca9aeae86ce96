//! `/v1/conversion-events` — the conversion-events catalog. Writes need the `admin` scope;
//! reading a definition needs `read` or `admin` (analysts read tiers and owners, and nothing
//! in a definition is secret).

use actix_web::{web, HttpRequest, HttpResponse};
use deadpool_postgres::Pool;

use crate::auth::Principal;
use crate::body::{self, SINGLE_LIMIT};
use crate::ingest::Ingest;
use crate::keys::Scope;
use crate::problem::ApiError;
use crate::query::{Params, LIMIT_DEFAULT};
use crate::responses;
use crate::routes::write::JsonWrite;

fn require_reader(principal: &Principal) -> Result<(), ApiError> {
    principal
        .require(Scope::Admin)
        .or_else(|_| principal.require(Scope::Read))
}

/// `PUT /v1/conversion-events/{eventName}`: 201 with the new definition, 200 when it replaced
/// one. `Idempotency-Key` honoured as on POSTs.
pub async fn put(
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
    let event_name = path.into_inner();
    let document = write.value().clone();
    write
        .run(&req, &principal, &ingest, move |tx| {
            Box::pin(async move {
                let put = catalog::put_definition(tx, workspace_id, &event_name, &document).await?;
                responses::json(if put.created { 201 } else { 200 }, &put.view)
            })
        })
        .await
}

/// `GET /v1/conversion-events`: a page in event-name order.
pub async fn list(
    req: HttpRequest,
    principal: Principal,
    pool: web::Data<Pool>,
) -> Result<HttpResponse, ApiError> {
    require_reader(&principal)?;
    let params = Params::parse(req.query_string(), &["limit", "cursor"])?;
    // Checked with the cursor by the catalog, so that both are reported at once.
    let limit = params
        .get("limit")
        .map_or(LIMIT_DEFAULT, |raw| raw.trim().parse::<i64>().unwrap_or(0));
    let client = pool.get().await?;
    let page =
        catalog::list_definitions(&client, principal.workspace_id, params.get("cursor"), limit)
            .await?;
    Ok(HttpResponse::Ok().json(page))
}

/// `GET /v1/conversion-events/{eventName}`: the definition, with the close-rate estimate and
/// its basis when its value is estimated.
pub async fn get(
    principal: Principal,
    path: web::Path<String>,
    pool: web::Data<Pool>,
) -> Result<HttpResponse, ApiError> {
    require_reader(&principal)?;
    let client = pool.get().await?;
    let view = catalog::get_definition(&client, principal.workspace_id, &path).await?;
    Ok(HttpResponse::Ok().json(view))
}

/// `DELETE /v1/conversion-events/{eventName}`: 204.
pub async fn delete(
    principal: Principal,
    path: web::Path<String>,
    pool: web::Data<Pool>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Scope::Admin)?;
    let client = pool.get().await?;
    catalog::delete_definition(&client, principal.workspace_id, &path).await?;
    Ok(HttpResponse::NoContent().finish())
}
