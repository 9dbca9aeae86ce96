//! Every error answer: `application/problem+json` (RFC 9457) with a stable `type`, and for bad
//! input the list of every offending field. Each library error maps to a status here, once.

use std::fmt;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use events::FieldError;
use serde::Serialize;

/// Where problem types live; each `type` is this plus a slug.
pub const PROBLEM_BASE: &str = "https://convrelay.dev/problems/";

/// An error answer of the API.
#[derive(Debug)]
pub enum ApiError {
    /// 400: the body is not JSON, not an object, or a header is malformed.
    BadRequest {
        /// What is wrong.
        detail: String,
        /// Fields at fault, if any.
        errors: Vec<FieldError>,
    },
    /// 401: no key or an unknown one.
    Unauthorized,
    /// 403: the key lacks the scope.
    Forbidden {
        /// The scope needed.
        scope: &'static str,
    },
    /// 404: no such resource in this workspace.
    NotFound,
    /// 405: the path exists, the method does not.
    MethodNotAllowed,
    /// 409: the `Idempotency-Key` is held by a request still in flight.
    IdempotencyKeyInFlight,
    /// 409: the resource is not in a state that allows this (e.g. retrying a succeeded dispatch).
    Conflict(String),
    /// 503: destinations need `CONVRELAY_SECRET_KEY`, which the operator has not set.
    SecretKeyMissing,
    /// 413: the body is over the limit.
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// 415: the body is not `application/json`.
    UnsupportedMediaType,
    /// 422: the body breaks the schema.
    Validation(Vec<FieldError>),
    /// 422: the `Idempotency-Key` was used with another request.
    IdempotencyKeyReused,
    /// 429: the key's rate limit is exhausted.
    RateLimited {
        /// Seconds until a request will be let through.
        retry_after: u64,
    },
    /// 503: the database cannot be reached; nothing was written.
    Unavailable(Box<dyn std::error::Error + Send + Sync>),
    /// 500: a fault of ours.
    Internal(Box<dyn std::error::Error + Send + Sync>),
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: String,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    errors: &'a [FieldError],
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
}

impl ApiError {
    fn parts(&self) -> (&'static str, &'static str, String) {
        match self {
            Self::BadRequest { detail, .. } => ("bad-request", "Bad request", detail.clone()),
            Self::Unauthorized => (
                "unauthorized",
                "Unauthorized",
                "Send `Authorization: Bearer <api key>` with a valid key.".into(),
            ),
            Self::Forbidden { scope } => (
                "forbidden",
                "Forbidden",
                format!("This API key lacks the `{scope}` scope."),
            ),
            Self::NotFound => ("not-found", "Not found", "No such resource.".into()),
            Self::MethodNotAllowed => (
                "method-not-allowed",
                "Method not allowed",
                "This path does not take that method.".into(),
            ),
            Self::IdempotencyKeyInFlight => (
                "idempotency-key-in-flight",
                "Idempotency-Key in use",
                "A request with this Idempotency-Key is still in flight; retry once it has been answered.".into(),
            ),
            Self::Conflict(detail) => ("conflict", "Conflict", detail.clone()),
            Self::SecretKeyMissing => (
                "secret-key-missing",
                "Destinations unavailable",
                "The operator has not set CONVRELAY_SECRET_KEY, so credentials cannot be sealed.".into(),
            ),
            Self::PayloadTooLarge { limit } => (
                "payload-too-large",
                "Payload too large",
                format!("The body is over the limit of {limit} bytes."),
            ),
            Self::UnsupportedMediaType => (
                "unsupported-media-type",
                "Unsupported media type",
                "Send the body as `Content-Type: application/json`.".into(),
            ),
            Self::Validation(errors) => (
                "validation",
                "Invalid request",
                format!(
                    "{} field{} failed validation.",
                    errors.len(),
                    if errors.len() == 1 { "" } else { "s" }
                ),
            ),
            Self::IdempotencyKeyReused => (
                "idempotency-key-reused",
                "Idempotency-Key reused",
                "This Idempotency-Key was used with a different request; use a new key for a new request.".into(),
            ),
            Self::RateLimited { retry_after } => (
                "rate-limited",
                "Too many requests",
                format!("The rate limit of this API key is exhausted; retry in {retry_after} s."),
            ),
            Self::Unavailable(e) if timed_out(e.as_ref()) => (
                "unavailable",
                "Service unavailable",
                "The database did not answer in time (it is busy); nothing was stored. Retry later."
                    .into(),
            ),
            Self::Unavailable(_) => (
                "unavailable",
                "Service unavailable",
                "The database cannot be reached; nothing was stored. Retry later.".into(),
            ),
            Self::Internal(_) => (
                "internal",
                "Internal error",
                "Something went wrong on our side; nothing was stored. Quote the request id if you report it.".into(),
            ),
        }
    }
}

impl ApiError {
    /// The same failure for another request of a failed group (server errors keep their message).
    pub fn replicate(&self) -> Self {
        match self {
            Self::Unavailable(e) => Self::Unavailable(chain(e.as_ref()).into()),
            Self::Internal(e) => Self::Internal(chain(e.as_ref()).into()),
            other => Self::Internal(other.to_string().into()),
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (_, title, detail) = self.parts();
        write!(f, "{title}: {detail}")
    }
}

impl std::error::Error for ApiError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Unavailable(e) | Self::Internal(e) => Some(e.as_ref()),
            _ => None,
        }
    }
}

/// Renders an error and its sources as one line, for the log.
fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden { .. } => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::IdempotencyKeyInFlight | Self::Conflict(_) => StatusCode::CONFLICT,
            Self::SecretKeyMissing => StatusCode::SERVICE_UNAVAILABLE,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Validation(_) | Self::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            Self::Internal(e) => tracing::error!(error = %chain(e.as_ref()), "internal error"),
            Self::Unavailable(e) if timed_out(e.as_ref()) => {
                tracing::warn!(error = %chain(e.as_ref()), "database timed out")
            }
            Self::Unavailable(e) => {
                tracing::warn!(error = %chain(e.as_ref()), "database unavailable")
            }
            _ => {}
        }
        let status = self.status_code();
        let (slug, title, detail) = self.parts();
        let errors: &[FieldError] = match self {
            Self::Validation(errors) | Self::BadRequest { errors, .. } => errors,
            _ => &[],
        };
        let problem = Problem {
            kind: format!("{PROBLEM_BASE}{slug}"),
            title,
            status: status.as_u16(),
            detail,
            errors,
            request_id: crate::telemetry::current_request_id(),
        };
        let mut res = HttpResponse::build(status);
        res.insert_header((header::CONTENT_TYPE, "application/problem+json"));
        match self {
            Self::RateLimited { retry_after } => {
                res.insert_header((header::RETRY_AFTER, retry_after.to_string()));
            }
            Self::Unavailable(_) => {
                res.insert_header((header::RETRY_AFTER, HeaderValue::from_static("2")));
            }
            Self::Unauthorized => {
                res.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            _ => {}
        }
        match serde_json::to_vec(&problem) {
            Ok(body) => res.body(body),
            Err(_) => res.finish(),
        }
    }
}

impl From<tokio_postgres::Error> for ApiError {
    fn from(e: tokio_postgres::Error) -> Self {
        if is_unavailable(&e) {
            Self::Unavailable(Box::new(e))
        } else {
            Self::Internal(Box::new(e))
        }
    }
}

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Self::Unavailable(Box::new(e))
    }
}

impl From<dedup::Error> for ApiError {
    fn from(e: dedup::Error) -> Self {
        match e {
            dedup::Error::InvalidIdempotencyKey => Self::BadRequest {
                detail: e.to_string(),
                errors: vec![FieldError {
                    field: "Idempotency-Key".into(),
                    code: "format",
                    message: e.to_string(),
                }],
            },
            dedup::Error::Database(e) => e.into(),
            dedup::Error::Migration(e) => Self::Internal(Box::new(e)),
        }
    }
}

impl From<attribution_matcher::Error> for ApiError {
    fn from(e: attribution_matcher::Error) -> Self {
        match e {
            attribution_matcher::Error::Database(e) => e.into(),
            other => Self::Internal(Box::new(other)),
        }
    }
}

impl From<reports::Error> for ApiError {
    fn from(e: reports::Error) -> Self {
        match e {
            reports::Error::Database(e) => e.into(),
            reports::Error::Touches(e) => e.into(),
            other => Self::Internal(Box::new(other)),
        }
    }
}

impl From<forwarder::Error> for ApiError {
    fn from(e: forwarder::Error) -> Self {
        match e {
            forwarder::Error::Invalid(errors) => Self::Validation(errors),
            forwarder::Error::NotFound => Self::NotFound,
            forwarder::Error::Conflict(detail) => Self::Conflict(detail),
            forwarder::Error::Database(e) => e.into(),
            forwarder::Error::Pool(e) => e.into(),
            other => Self::Internal(Box::new(other)),
        }
    }
}

impl From<catalog::Error> for ApiError {
    fn from(e: catalog::Error) -> Self {
        match e {
            catalog::Error::Invalid(errors) => Self::Validation(errors),
            catalog::Error::NotFound => Self::NotFound,
            catalog::Error::Database(e) => e.into(),
            other => Self::Internal(Box::new(other)),
        }
    }
}

/// Whether the failure was the database running out of time (a statement or lock timeout), not
/// an unreachable database: the two get different words, in the answer and in the log.
fn timed_out(err: &(dyn std::error::Error + 'static)) -> bool {
    use tokio_postgres::error::SqlState;
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(code) = e
            .downcast_ref::<tokio_postgres::Error>()
            .and_then(tokio_postgres::Error::code)
        {
            return *code == SqlState::QUERY_CANCELED || *code == SqlState::LOCK_NOT_AVAILABLE;
        }
        current = e.source();
    }
    false
}

/// Whether a database error means "cannot reach the database now" (retry later) rather than a
/// fault in our SQL: a closed connection, a timeout, or the server shutting down.
pub fn is_unavailable(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    if e.is_closed() {
        return true;
    }
    match e.code() {
        None => true,
        Some(code) => {
            *code == SqlState::QUERY_CANCELED
                || *code == SqlState::LOCK_NOT_AVAILABLE
                || *code == SqlState::ADMIN_SHUTDOWN
                || *code == SqlState::CRASH_SHUTDOWN
                || *code == SqlState::CANNOT_CONNECT_NOW
                || *code == SqlState::TOO_MANY_CONNECTIONS
                || *code == SqlState::T_R_SERIALIZATION_FAILURE
                || *code == SqlState::T_R_DEADLOCK_DETECTED
                || code.code().starts_with("08")
                || code.code().starts_with("53")
        }
    }
}
