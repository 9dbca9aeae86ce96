//! `/v1/reports` (read scope): which source brought the revenue; and a conversion's credit.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use deadpool_postgres::Pool;

use crate::auth::Principal;
use crate::keys::Scope;
use crate::problem::ApiError;
use crate::reports;

/// `GET /v1/reports/conversions?from&to&groupBy&model&interval&tier`; `Accept: text/csv` answers
/// the same rows as CSV.
pub async fn conversions(
    req: HttpRequest,
    principal: Principal,
    pool: web::Data<Pool>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Scope::Read)?;
    let query = reports::parse(req.query_string())?;
    let report = reports::conversions(&pool, principal.workspace_id, query).await?;
    if wants_csv(&req) {
        return Ok(HttpResponse::Ok()
            .content_type("text/csv; charset=utf-8")
            .insert_header((
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"conversions.csv\"",
            ))
            .body(::reports::to_csv(&report)));
    }
    Ok(HttpResponse::Ok().json(report))
}

/// Whether the client prefers CSV: `text/csv` is acceptable and ranked above JSON.
fn wants_csv(req: &HttpRequest) -> bool {
    let Some(accept) = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let rank = |wanted: &str| {
        accept
            .split(',')
            .filter_map(|item| {
                let mut parts = item.split(';').map(str::trim);
                let media = parts.next()?.to_ascii_lowercase();
                if media != wanted {
                    return None;
                }
                let q = parts
                    .filter_map(|p| p.strip_prefix("q="))
                    .find_map(|q| q.parse::<f32>().ok())
                    .unwrap_or(1.0);
                Some(q)
            })
            .fold(0.0f32, f32::max)
    };
    let csv = rank("text/csv");
    csv > 0.0 && csv >= rank("application/json")
}

/// `GET /v1/events/{id}/credit`: the conversion's touches and each one's share per model.
pub async fn credit(
    principal: Principal,
    path: web::Path<String>,
    pool: web::Data<Pool>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Scope::Read)?;
    let credit = reports::credit(&pool, principal.workspace_id, &path).await?;
    Ok(HttpResponse::Ok().json(credit))
}
