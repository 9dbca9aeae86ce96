//! HTTP routes: thin handlers that extract, call one function, and map the result.

pub mod events;
pub mod ops;

use actix_web::{web, HttpRequest, HttpResponse};

use crate::problem::ApiError;

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(ops::healthz))
        .route("/readyz", web::get().to(ops::readyz))
        .route("/metrics", web::get().to(ops::metrics))
        .service(
            web::scope("/v1")
                .service(
                    web::resource("/events")
                        .post(events::post_event)
                        .get(events::list_events)
                        .default_service(web::to(method_not_allowed)),
                )
                .service(
                    web::resource("/events/batch")
                        .post(events::post_batch)
                        .default_service(web::to(method_not_allowed)),
                )
                .service(
                    web::resource("/events/{id}")
                        .get(events::get_event)
                        .default_service(web::to(method_not_allowed)),
                ),
        );
}

async fn method_not_allowed() -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed)
}

/// Answers 404 problem+json for every unknown path.
pub async fn not_found(_: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}
