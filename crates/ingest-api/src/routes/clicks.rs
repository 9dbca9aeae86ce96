//! `/v1/clicks`: register ad and short-link clicks so that later events can name them.

use actix_web::{web, HttpRequest, HttpResponse};
use deadpool_postgres::Pool;

use crate::auth::Principal;
use crate::body::{BATCH_LIMIT, SINGLE_LIMIT};
use crate::ingest::Ingest;
use crate::keys::Scope;
use crate::problem::ApiError;
use crate::responses;
use crate::routes::write::JsonWrite;

/// `POST /v1/clicks`: one click; 201 when new, 200 with the first when its clickId is known.
pub async fn post_click(
    req: HttpRequest,
    principal: Principal,
    payload: web::Payload,
    ingest: web::Data<Ingest>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Scope::Ingest)?;
    let write = JsonWrite::read(&req, payload, SINGLE_LIMIT).await?;
    let click = events::parse_click(write.value(), time::OffsetDateTime::now_utc())
        .map_err(|e| ApiError::Validation(e.0))?;
    let workspace_id = principal.workspace_id;
    write
        .run(&req, &principal, &ingest, move |tx| {
            Box::pin(async move {
                let registered =
                    attribution_matcher::register_clicks(tx, workspace_id, &[click]).await?;
                count_new(tx, workspace_id, &registered).await?;
                registered
                    .first()
                    .map(responses::render_click)
                    .ok_or_else(|| ApiError::Internal("no click was registered".into()))
            })
        })
        .await
}

/// `POST /v1/clicks/batch`: up to 1000 clicks; each valid one is registered.
pub async fn post_click_batch(
    req: HttpRequest,
    principal: Principal,
    payload: web::Payload,
    ingest: web::Data<Ingest>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Scope::Ingest)?;
    let write = JsonWrite::read(&req, payload, BATCH_LIMIT).await?;
    let items = events::parse_click_batch(write.value()).map_err(|e| ApiError::Validation(e.0))?;
    let now = time::OffsetDateTime::now_utc();
    let total = items.len();
    let mut clicks = Vec::with_capacity(total);
    let mut rejected = Vec::new();
    for (index, item) in items.iter().enumerate() {
        match events::parse_click(item, now) {
            Ok(click) => clicks.push(click),
            Err(errors) => rejected.push((index, errors.0)),
        }
    }
    let workspace_id = principal.workspace_id;
    write
        .run(&req, &principal, &ingest, move |tx| {
            Box::pin(async move {
                let registered =
                    attribution_matcher::register_clicks(tx, workspace_id, &clicks).await?;
                count_new(tx, workspace_id, &registered).await?;
                Ok(responses::render_click_batch(total, &rejected, &registered))
            })
        })
        .await
}

/// Counts the clicks this registration stored (not those answered with a first registration)
/// in the report rollups, in the registering transaction.
async fn count_new(
    tx: &impl deadpool_postgres::GenericClient,
    workspace_id: uuid::Uuid,
    registered: &[attribution_matcher::RegisteredClick],
) -> Result<(), ApiError> {
    let touchpoints: Vec<events::Touchpoint> = registered
        .iter()
        .filter(|r| r.created)
        .map(|r| r.click.touchpoint())
        .collect();
    let refs: Vec<&events::Touchpoint> = touchpoints.iter().collect();
    reports::count_clicks(tx, workspace_id, &refs).await?;
    Ok(())
}

/// `GET /v1/clicks/{clickId}`.
pub async fn get_click(
    principal: Principal,
    path: web::Path<String>,
    pool: web::Data<Pool>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Scope::Read)?;
    if path.contains('\0') {
        return Err(ApiError::NotFound);
    }
    let client = pool.get().await?;
    let click = attribution_matcher::get_click(&client, principal.workspace_id, &path)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok().json(click))
}
