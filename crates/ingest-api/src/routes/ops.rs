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
