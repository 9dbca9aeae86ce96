//! Reading a JSON body: content type (415), size (413), syntax (400), a repeated key (400),
//! object (400). Every body of the API comes through here, read once.

use actix_web::http::header;
use actix_web::{web, HttpRequest};
use bytes::{Bytes, BytesMut};
use events::json::JsonError;
use futures_util::StreamExt;

use crate::problem::ApiError;

/// The largest body of `POST /v1/events` (and other single-object POSTs).
pub const SINGLE_LIMIT: usize = 1024 * 1024;
/// The largest body of a batch.
pub const BATCH_LIMIT: usize = 10 * 1024 * 1024;

/// Reads the body of a JSON request: answers its raw bytes and the parsed object.
pub async fn read_json(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<(Bytes, serde_json::Value), ApiError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    let json = essence.eq_ignore_ascii_case("application/json")
        || (essence.len() > 5
            && essence[..essence.len() - 5]
                .to_ascii_lowercase()
                .starts_with("application/")
            && essence.to_ascii_lowercase().ends_with("+json"));
    if !json {
        return Err(ApiError::UnsupportedMediaType);
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let mut body = BytesMut::with_capacity(declared.unwrap_or(1024).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadRequest {
            detail: format!("The body could not be read: {e}"),
            errors: Vec::new(),
        })?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    let body = body.freeze();
    let value = events::json::from_slice_strict(&body).map_err(|e| match e {
        JsonError::Syntax(e) => ApiError::BadRequest {
            detail: format!("The body is not valid JSON: {e}"),
            errors: Vec::new(),
        },
        JsonError::DuplicateKeys(errors) => ApiError::BadRequest {
            detail: format!(
                "The body repeats {} in one object; which value was meant cannot be known.",
                errors
                    .iter()
                    .map(|e| format!("`{}`", e.field))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            errors,
        },
    })?;
    if !value.is_object() {
        return Err(ApiError::BadRequest {
            detail: "The body must be a JSON object.".into(),
            errors: Vec::new(),
        });
    }
    Ok((body, value))
}

/// 422 for strings holding NUL characters, listed by path (for bodies without a model of their
/// own in the events crate, which checks its bodies itself).
pub fn reject_nul(value: &serde_json::Value) -> Result<(), ApiError> {
    let errors = events::nul_errors(value);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Validation(errors))
    }
}
