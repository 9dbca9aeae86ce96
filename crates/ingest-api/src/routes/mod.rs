//! HTTP routes: thin handlers that extract, call one function, and map the result.

pub mod clicks;
pub mod destinations;
pub mod dispatches;
pub mod docs;
pub mod events;
pub mod ops;
pub mod reports;
pub mod ui;

use actix_web::{web, HttpRequest, HttpResponse};

use crate::problem::ApiError;

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(ops::healthz))
        .route("/readyz", web::get().to(ops::readyz))
        .route("/metrics", web::get().to(ops::metrics))
        .configure(docs::configure)
        .configure(ui::configure)
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
                    web::resource("/clicks")
                        .post(clicks::post_click)
                        .default_service(web::to(method_not_allowed)),
                )
                .service(
                    web::resource("/clicks/batch")
                        .post(clicks::post_click_batch)
                        .default_service(web::to(method_not_allowed)),
                )
                .service(
                    web::resource("/clicks/{click_id}")
                        .get(clicks::get_click)
                        .default_service(web::to(method_not_allowed)),
                )
                .service(
                    web::resource("/destinations")
                        .post(destinations::create)
                        .get(destinations::list)
                        .default_service(web::to(method_not_allowed)),
                )
                .service(
                    web::resource("/destinations/{id}")
                        .get(destinations::get)
                        .patch(destinations::update)
                        .delete(destinations::delete)
                        .default_service(web::to(method_not_allowed)),
                )
                .service(
                    web::resource("/dispatches")
                        .get(dispatches::list)
                        .default_service(web::to(method_not_allowed)),
                )
                .service(
                    web::resource("/dispatches/stats")
                        .get(dispatches::stats)
                        .default_service(web::to(method_not_allowed)),
                )
                .service(
                    web::resource("/dispatches/retry")
                        .post(dispatches::retry_many)
                        .default_service(web::to(method_not_allowed)),
                )
                .service(
                    web::resource("/dispatches/{id}")
                        .get(dispatches::get)
                        .default_service(web::to(method_not_allowed)),
                )
                .service(
                    web::resource("/dispatches/{id}/retry")
                        .post(dispatches::retry)
                        .default_service(web::to(method_not_allowed)),
                )
                .service(
                    web::resource("/reports/conversions")
                        .get(reports::conversions)
                        .default_service(web::to(method_not_allowed)),
                )
                .service(
                    web::resource("/events/{id}/retract")
                        .post(events::retract)
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
