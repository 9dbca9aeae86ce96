//! The shape every idempotent JSON write shares (`POST`s that store, `PUT`s): read the
//! `Idempotency-Key` and the body once, let the handler check the body, then run its work in one
//! transaction under that key, answering the kept response when the request is replayed.

use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use dedup::IdempotencyKey;
use futures_util::future::BoxFuture;

use crate::auth::Principal;
use crate::body;
use crate::ingest::{Ingest, Post};
use crate::problem::ApiError;
use crate::responses::Rendered;
use crate::routes::events::{idempotency_key, respond};

/// A JSON write as read from its request.
pub struct JsonWrite {
    idempotency_key: Option<IdempotencyKey>,
    raw: Bytes,
    value: serde_json::Value,
}

impl JsonWrite {
    /// Reads the `Idempotency-Key` header and a JSON body of at most `limit` bytes (its model
    /// checks the values, NUL characters included: see [`body::reject_nul`]).
    pub async fn read(
        req: &HttpRequest,
        payload: web::Payload,
        limit: usize,
    ) -> Result<Self, ApiError> {
        let idempotency_key = idempotency_key(req)?;
        let (raw, value) = body::read_json(req, payload, limit).await?;
        Ok(Self {
            idempotency_key,
            raw,
            value,
        })
    }

    /// The body.
    pub fn value(&self) -> &serde_json::Value {
        &self.value
    }

    /// Runs `op` in one transaction under the request's `Idempotency-Key` and answers what it
    /// rendered (or the response kept for the key).
    pub async fn run<F>(
        self,
        req: &HttpRequest,
        principal: &Principal,
        ingest: &Ingest,
        op: F,
    ) -> Result<HttpResponse, ApiError>
    where
        F: for<'t> FnOnce(
            &'t deadpool_postgres::Transaction<'t>,
        ) -> BoxFuture<'t, Result<Rendered, ApiError>>,
    {
        let post = Post {
            principal,
            idempotency_key: self.idempotency_key,
            path: req.path(),
            body: &self.raw,
            value: &self.value,
        };
        Ok(respond(ingest.in_transaction(post, op).await?))
    }
}
