//! `/v1/persons` (admin scope): erasing a person.

use actix_web::{web, HttpRequest, HttpResponse};

use crate::auth::Principal;
use crate::body::{self, SINGLE_LIMIT};
use crate::erase::{self, Erasure, ErasureAnswer};
use crate::ingest::Ingest;
use crate::keys::Scope;
use crate::problem::ApiError;
use crate::routes::write::JsonWrite;

/// `POST /v1/persons/erase` `{"customerExternalId"?, "email"?, "phone"?}`: 200 with what was
/// erased; asking again answers zeros.
pub async fn erase(
    req: HttpRequest,
    principal: Principal,
    payload: web::Payload,
    ingest: web::Data<Ingest>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Scope::Admin)?;
    let write = JsonWrite::read(&req, payload, SINGLE_LIMIT).await?;
    body::reject_nul(write.value())?;
    let erasure = Erasure::parse(write.value())?;
    let workspace_id = principal.workspace_id;
    write
        .run(&req, &principal, &ingest, move |tx| {
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
        .await
}
