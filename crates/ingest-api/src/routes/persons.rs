//! `/v1/persons` (admin scope): erasing a person.

use actix_web::{web, HttpRequest, HttpResponse};

use crate::auth::Principal;
use crate::body::{self, SINGLE_LIMIT};
use crate::erase::{self, Erasure, ErasureAnswer};
use crate::ingest::{Ingest, Post};
use crate::keys::Scope;
use crate::problem::ApiError;
use crate::routes::events::{idempotency_key, respond};

/// `POST /v1/persons/erase` `{"customerExternalId"?, "email"?, "phone"?}`: 200 with what was
/// erased; asking again answers zeros.
pub async fn erase(
    req: HttpRequest,
    principal: Principal,
    payload: web::Payload,
    ingest: web::Data<Ingest>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Scope::Admin)?;
    let idempotency_key = idempotency_key(&req)?;
    let (raw, value) = body::read_json(&req, payload, SINGLE_LIMIT).await?;
    body::reject_nul(&value)?;
    let erasure = Erasure::parse(&value)?;
    let workspace_id = principal.workspace_id;
    let post = Post {
        principal: &principal,
        idempotency_key,
        path: req.path(),
        body: &raw,
        value: &value,
    };
    let stored = ingest
        .in_transaction(post, move |tx| {
            Box::pin(async move {
                let erased = erase::erase_person(tx, workspace_id, &erasure).await?;
                tracing::info!(
                    %workspace_id,
                    events = erased.events,
                    identifiers = erased.identifiers,
                    dispatches = erased.dispatches,
                    "person erased"
                );
                crate::responses::json(200, &ErasureAnswer { erased })
            })
        })
        .await?;
    Ok(respond(stored))
}
