//! Liveness and readiness.

use actix_web::{web, HttpResponse};
use deadpool_postgres::Pool;
use serde_json::json;

/// `GET /healthz`: the process is alive.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// `GET /readyz`: the database answers and carries every migration this binary expects.
pub async fn readyz(pool: web::Data<Pool>) -> HttpResponse {
    match crate::db::check_ready(&pool).await {
        Ok(()) => HttpResponse::Ok().json(json!({"status": "ready"})),
        Err(reason) => {
            tracing::warn!(%reason, "not ready");
            HttpResponse::ServiceUnavailable()
                .insert_header(("Retry-After", "2"))
                .json(json!({"status": "unavailable", "reason": reason}))
        }
    }
}

/// `GET /metrics`: Prometheus text. When the operator sets `CONVRELAY_METRICS_TOKEN`, it needs
/// `Authorization: Bearer <that token>`.
pub async fn metrics(
    req: actix_web::HttpRequest,
    pool: web::Data<Pool>,
    token: web::Data<MetricsToken>,
) -> HttpResponse {
    if let Some(expected) = &token.0 {
        let given = req
            .headers()
            .get("Authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given.map(str::as_bytes) != Some(expected.expose().as_bytes()) {
            return HttpResponse::Unauthorized()
                .insert_header(("WWW-Authenticate", "Bearer"))
                .finish();
        }
    }
    let status = pool.status();
    metrics::gauge!("convrelay_db_pool_connections", "state" => "max").set(status.max_size as f64);
    metrics::gauge!("convrelay_db_pool_connections", "state" => "idle")
        .set(status.available as f64);
    metrics::gauge!("convrelay_db_pool_connections", "state" => "in_use")
        .set(status.size.saturating_sub(status.available) as f64);
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(crate::metrics::handle().render())
}

/// The token `/metrics` asks for, if any.
#[derive(Debug, Clone)]
pub struct MetricsToken(pub Option<crate::config::Secret>);
