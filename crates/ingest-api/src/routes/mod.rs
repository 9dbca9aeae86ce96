//! HTTP routes: thin handlers that extract, call one function, and map the result.

pub mod backfill;
pub mod clicks;
pub mod conversion_events;
pub mod destinations;
pub mod dispatches;
pub mod docs;
pub mod events;
pub mod ops;
pub mod persons;
pub mod reports;
pub mod restate;
pub mod ui;
pub mod usage;
pub mod write;

use actix_web::{guard, web, HttpRequest, HttpResponse};

use crate::problem::ApiError;

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/healthz")
            .route(get().to(ops::healthz))
            .default_service(only("GET, HEAD")),
    )
    .service(
        web::resource("/readyz")
            .route(get().to(ops::readyz))
            .default_service(only("GET, HEAD")),
    )
    .service(
        web::resource("/metrics")
            .route(get().to(ops::metrics))
            .default_service(only("GET, HEAD")),
    )
    .configure(docs::configure)
    .configure(ui::configure)
    .service(
        web::scope("/v1")
            .service(
                web::resource("/events")
                    .post(events::post_event)
                    .route(get().to(events::list_events))
                    .default_service(only("GET, HEAD, POST")),
            )
            .service(
                web::resource("/events/batch")
                    .post(events::post_batch)
                    .default_service(only("POST")),
            )
            .service(
                web::resource("/clicks")
                    .post(clicks::post_click)
                    .default_service(only("POST")),
            )
            .service(
                web::resource("/clicks/batch")
                    .post(clicks::post_click_batch)
                    .default_service(only("POST")),
            )
            .service(
                web::resource("/clicks/{click_id}")
                    .route(get().to(clicks::get_click))
                    .default_service(only("GET, HEAD")),
            )
            .service(
                web::resource("/destinations")
                    .post(destinations::create)
                    .route(get().to(destinations::list))
                    .default_service(only("GET, HEAD, POST")),
            )
            .service(
                web::resource("/destinations/{id}/backfill")
                    .route(get().to(backfill::progress))
                    .post(backfill::start)
                    .default_service(only("GET, HEAD, POST")),
            )
            .service(
                web::resource("/destinations/{id}")
                    .route(get().to(destinations::get))
                    .patch(destinations::update)
                    .delete(destinations::delete)
                    .default_service(only("GET, HEAD, PATCH, DELETE")),
            )
            .service(
                web::resource("/conversion-events")
                    .route(get().to(conversion_events::list))
                    .default_service(only("GET, HEAD")),
            )
            .service(
                web::resource("/conversion-events/{event_name}")
                    .route(get().to(conversion_events::get))
                    .put(conversion_events::put)
                    .delete(conversion_events::delete)
                    .default_service(only("GET, HEAD, PUT, DELETE")),
            )
            .service(
                web::resource("/dispatches")
                    .route(get().to(dispatches::list))
                    .default_service(only("GET, HEAD")),
            )
            .service(
                web::resource("/dispatches/health")
                    .route(get().to(dispatches::health))
                    .default_service(only("GET, HEAD")),
            )
            .service(
                web::resource("/dispatches/stats")
                    .route(get().to(dispatches::stats))
                    .default_service(only("GET, HEAD")),
            )
            .service(
                web::resource("/dispatches/retry")
                    .post(dispatches::retry_many)
                    .default_service(only("POST")),
            )
            .service(
                web::resource("/dispatches/{id}")
                    .route(get().to(dispatches::get))
                    .default_service(only("GET, HEAD")),
            )
            .service(
                web::resource("/dispatches/{id}/retry")
                    .post(dispatches::retry)
                    .default_service(only("POST")),
            )
            .service(
                web::resource("/persons/erase")
                    .post(persons::erase)
                    .default_service(only("POST")),
            )
            .service(
                web::resource("/usage")
                    .route(get().to(usage::usage))
                    .default_service(only("GET, HEAD")),
            )
            .service(
                web::resource("/reports/conversions")
                    .route(get().to(reports::conversions))
                    .default_service(only("GET, HEAD")),
            )
            .service(
                web::resource("/events/{id}/restate")
                    .post(restate::restate)
                    .default_service(only("POST")),
            )
            .service(
                web::resource("/events/{id}/credit")
                    .route(get().to(reports::credit))
                    .default_service(only("GET, HEAD")),
            )
            .service(
                web::resource("/events/{id}/retract")
                    .post(events::retract)
                    .default_service(only("POST")),
            )
            .service(
                web::resource("/events/{id}")
                    .route(get().to(events::get_event))
                    .default_service(only("GET, HEAD")),
            ),
    );
}

/// The route of a resource's GET, which answers HEAD too: the same status and headers
/// (`Content-Length` included) without the body, which actix-web leaves out of every answer to
/// a HEAD request.
pub fn get() -> actix_web::Route {
    web::route().guard(guard::Any(guard::Get()).or(guard::Head()))
}

/// The answer to any other method on a resource: 405 with the `Allow` header.
pub fn only(allow: &'static str) -> actix_web::Route {
    web::to(move || async move { method_not_allowed(allow) })
}

/// A 405 problem naming the methods the resource takes.
pub fn method_not_allowed(allow: &'static str) -> HttpResponse {
    use actix_web::ResponseError;
    let mut res = ApiError::MethodNotAllowed.error_response();
    res.headers_mut().insert(
        actix_web::http::header::ALLOW,
        actix_web::http::header::HeaderValue::from_static(allow),
    );
    res
}

/// Answers 404 problem+json for every unknown path.
pub async fn not_found(_: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}
