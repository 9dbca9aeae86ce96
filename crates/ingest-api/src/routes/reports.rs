//! `/v1/reports` (read scope): which source brought the revenue.

use actix_web::{web, HttpRequest, HttpResponse};
use deadpool_postgres::Pool;

use crate::auth::Principal;
use crate::keys::Scope;
use crate::problem::ApiError;
use crate::reports::{self, ReportQuery};

/// `GET /v1/reports/conversions?from&to&groupBy&model`.
pub async fn conversions(
    req: HttpRequest,
    principal: Principal,
    pool: web::Data<Pool>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Scope::Read)?;
    let query = ReportQuery::parse(req.query_string())?;
    let report = reports::conversions(&pool, principal.workspace_id, query).await?;
    Ok(HttpResponse::Ok().json(report))
}
