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
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        let matches = given.is_some_and(|g| {
            crate::auth::constant_time_eq(g.as_bytes(), expected.expose().as_bytes())
        });
        if !matches {
            // The same problem+json answer (with `WWW-Authenticate: Bearer`) as every other 401.
            return actix_web::ResponseError::error_response(
                &crate::problem::ApiError::Unauthorized,
            );
        }
    }
    let status = pool.status();
    metrics::gauge!("convrelay_db_pool_connections", "state" => "max").set(status.max_size as f64);
    metrics::gauge!("convrelay_db_pool_connections", "state" => "idle")
        .set(status.available as f64);
    metrics::gauge!("convrelay_db_pool_connections", "state" => "in_use")
        .set(status.size.saturating_sub(status.available) as f64);
    if let Err(e) = queue_gauges(&pool).await {
        tracing::debug!(error = %e, "queue gauges unavailable");
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(crate::metrics::handle().render())
}

/// The token `/metrics` asks for, if any.
#[derive(Debug, Clone)]
pub struct MetricsToken(pub Option<crate::config::Secret>);

/// Reads the depth and age of the attribution and dispatch queues into gauges.
async fn queue_gauges(pool: &Pool) -> Result<(), crate::problem::ApiError> {
    let client = pool.get().await?;
    let matcher = attribution_matcher::queue_stats(&client).await?;
    metrics::gauge!("convrelay_matcher_queue_depth").set(matcher.queued as f64);
    metrics::gauge!("convrelay_matcher_pending").set(matcher.pending as f64);
    let oldest = matcher.oldest_queued_at.map_or(0.0, |at| {
        (time::OffsetDateTime::now_utc() - at)
            .as_seconds_f64()
            .max(0.0)
    });
    metrics::gauge!("convrelay_matcher_oldest_queued_age_seconds").set(oldest);
    for status in ["queued", "retrying", "in_flight"] {
        for t in events::DestinationType::ALL {
            metrics::gauge!("convrelay_dispatch_queue_depth", "destination_type" => t.as_str(), "status" => status).set(0.0);
            metrics::gauge!("convrelay_dispatch_oldest_age_seconds", "destination_type" => t.as_str(), "status" => status).set(0.0);
        }
    }
    for g in forwarder::queue_gauges(&client).await? {
        let labels = [
            ("destination_type", g.destination_type.clone()),
            ("status", g.status.clone()),
        ];
        metrics::gauge!("convrelay_dispatch_queue_depth", &labels).set(g.count as f64);
        metrics::gauge!("convrelay_dispatch_oldest_age_seconds", &labels).set(g.oldest_age_seconds);
    }
    for status in ["pending", "partially_failed", "failed"] {
        for t in events::DestinationType::ALL {
            metrics::gauge!("convrelay_dispatch_confirmations", "destination_type" => t.as_str(), "status" => status).set(0.0);
        }
    }
    for (destination_type, status, count) in forwarder::confirmation_gauges(&client).await? {
        let labels = [("destination_type", destination_type), ("status", status)];
        metrics::gauge!("convrelay_dispatch_confirmations", &labels).set(count as f64);
    }
    Ok(())
}
