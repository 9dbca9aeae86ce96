//! Logs and request ids: one `tracing` subscriber for the process, a request id on every
//! request's span, in the `X-Request-Id` header and in problem bodies.

use std::io::IsTerminal;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::HttpMessage;
use tracing::Instrument;
use tracing_subscriber::EnvFilter;

/// The header that carries the request id both ways.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being served, if any (for problem bodies).
pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// The request id, also available to handlers as a request extension.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Sets up logging: `CONVRELAY_LOG` as the filter (default `info`), human-readable on a
/// terminal, JSON lines otherwise.
pub fn init() {
    let filter = EnvFilter::try_from_env("CONVRELAY_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,refinery_core=warn,tokio_postgres=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if std::io::stderr().is_terminal() {
        builder.try_init()
    } else {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init()
    };
}

/// Accepts a caller's id when it is short and plain, else makes one.
fn request_id_for(req: &ServiceRequest) -> String {
    req.headers()
        .get(&REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .map_or_else(
            || format!("req_{}", uuid::Uuid::now_v7().simple()),
            str::to_owned,
        )
}

/// Middleware: gives each request its id and span, and logs its outcome at debug level
/// (server errors are logged once, where they are turned into answers).
pub async fn request_id(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = request_id_for(&req);
    req.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %req.method(),
        path = %req.path(),
    );
    let started = Instant::now();
    let mut res = REQUEST_ID
        .scope(id.clone(), next.call(req))
        .instrument(span.clone())
        .await?;
    if let Ok(value) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let route = res
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".into());
    metrics::histogram!(
        "convrelay_http_request_duration_seconds",
        "method" => res.request().method().to_string(),
        "route" => route,
        "status" => res.status().as_u16().to_string(),
    )
    .record(elapsed);
    tracing::debug!(
        parent: &span,
        status = res.status().as_u16(),
        duration_ms = elapsed * 1000.0,
        "answered"
    );
    Ok(res)
}
