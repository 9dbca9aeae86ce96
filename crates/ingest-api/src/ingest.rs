//! Taking events in: the Idempotency-Key rules, validation into domain events, and the hand-over
//! to the group-commit writer. Handlers call one function of this module.

use deadpool_postgres::Pool;
use dedup::idempotency::{self, Admission, NewResponse, Replay};
use dedup::{IdempotencyKey, InFlight, InFlightGuard, RequestFingerprint};
use events::Event;
use futures_util::future::BoxFuture;
use uuid::Uuid;

use crate::auth::Principal;
use crate::ids;
use crate::problem::ApiError;
use crate::responses::{Rendered, Shape};
use crate::writer::{Answer, IdempotencyClaim, Job, Writer};
use journal::NewEvent;

/// What ingestion needs.
#[derive(Debug, Clone)]
pub struct Ingest {
    /// The group-commit writer.
    pub writer: Writer,
    /// For reading kept Idempotency-Key answers.
    pub pool: Pool,
    /// Idempotency-Keys in flight in this process.
    pub inflight: InFlight,
    /// How long kept answers live.
    pub idempotency_ttl: std::time::Duration,
}

/// A POST as received.
#[derive(Debug)]
pub struct Post<'a> {
    /// The caller.
    pub principal: &'a Principal,
    /// The `Idempotency-Key` header, checked.
    pub idempotency_key: Option<IdempotencyKey>,
    /// The request path (part of what "the same request" means).
    pub path: &'a str,
    /// The raw body.
    pub body: &'a [u8],
    /// The body parsed.
    pub value: &'a serde_json::Value,
}

/// The answer to a storing POST.
#[derive(Debug)]
pub struct Stored {
    /// Status and body.
    pub rendered: Rendered,
    /// Whether this replays a kept answer.
    pub replayed: bool,
}

impl Ingest {
    /// `POST /v1/events`.
    pub async fn single(&self, post: Post<'_>) -> Result<Stored, ApiError> {
        self.run(post, |value, workspace_id| {
            let (id, received_at) = ids::new_event_id();
            let event = events::parse_event(value, received_at).map_err(|e| {
                count_rejected(value);
                ApiError::Validation(e.0)
            })?;
            let shape = Shape::Single {
                kind: event.kind().as_str(),
            };
            Ok((
                vec![new_event(workspace_id, id, received_at, &event)],
                shape,
            ))
        })
        .await
    }

    /// `POST /v1/events/batch`: valid items are stored even when others are not.
    pub async fn batch(&self, post: Post<'_>) -> Result<Stored, ApiError> {
        self.run(post, |value, workspace_id| {
            let items = events::parse_batch(value).map_err(|e| ApiError::Validation(e.0))?;
            let mut stored = Vec::with_capacity(items.len());
            let mut rejected = Vec::new();
            for (index, item) in items.iter().enumerate() {
                let (id, received_at) = ids::new_event_id();
                match events::parse_event(item, received_at) {
                    Ok(event) => stored.push(new_event(workspace_id, id, received_at, &event)),
                    Err(errors) => {
                        count_rejected(item);
                        rejected.push((index, errors.0));
                    }
                }
            }
            let shape = Shape::Batch {
                total: items.len(),
                rejected,
            };
            Ok((stored, shape))
        })
        .await
    }

    /// Holds the request's Idempotency-Key in this process and answers a kept answer at once:
    /// `Ok(Err(stored))` is the replay, `Ok(Ok(guard))` means go on.
    async fn admit(
        &self,
        post: &Post<'_>,
        fingerprint: &RequestFingerprint,
    ) -> Result<Result<Option<InFlightGuard>, Stored>, ApiError> {
        let Some(key) = &post.idempotency_key else {
            return Ok(Ok(None));
        };
        let workspace_id = post.principal.workspace_id;
        // Held until the answer is sent: a second request with the key meanwhile gets 409.
        let guard = self
            .inflight
            .try_enter(workspace_id, key.as_str())
            .ok_or(ApiError::IdempotencyKeyInFlight)?;
        let client = self.pool.get().await?;
        let kept = idempotency::find_responses(&client, &[(workspace_id, key)]).await?;
        match kept.into_iter().next().flatten() {
            Some(kept) => replay(kept, fingerprint).map(Err),
            None => Ok(Ok(Some(guard))),
        }
    }

    async fn run(
        &self,
        post: Post<'_>,
        parse: impl FnOnce(&serde_json::Value, Uuid) -> Result<(Vec<NewEvent>, Shape), ApiError>,
    ) -> Result<Stored, ApiError> {
        let workspace_id = post.principal.workspace_id;
        let fingerprint = RequestFingerprint::new("POST", post.path, post.body);
        let _guard = match self.admit(&post, &fingerprint).await? {
            Ok(guard) => guard,
            Err(replayed) => return Ok(replayed),
        };
        let (events, shape) = parse(post.value, workspace_id)?;
        let job = Job {
            workspace_id,
            events,
            shape,
            idempotency: post
                .idempotency_key
                .map(|key| IdempotencyClaim { key, fingerprint }),
        };
        match self.writer.submit(job).await? {
            Answer::Respond { rendered, replayed } => Ok(Stored { rendered, replayed }),
            Answer::KeyReused => Err(ApiError::IdempotencyKeyReused),
            Answer::KeyInFlight => Err(ApiError::IdempotencyKeyInFlight),
        }
    }

    /// Runs a storing operation other than events (clicks, destinations, retries) in a
    /// transaction of its own, under the same Idempotency-Key rules: the answer is kept in that
    /// transaction, and only when it is a success.
    pub async fn in_transaction<F>(&self, post: Post<'_>, op: F) -> Result<Stored, ApiError>
    where
        F: for<'t> FnOnce(
            &'t deadpool_postgres::Transaction<'t>,
        ) -> BoxFuture<'t, Result<Rendered, ApiError>>,
    {
        let workspace_id = post.principal.workspace_id;
        let fingerprint = RequestFingerprint::new("POST", post.path, post.body);
        let _guard = match self.admit(&post, &fingerprint).await? {
            Ok(guard) => guard,
            Err(replayed) => return Ok(replayed),
        };
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        if let Some(key) = &post.idempotency_key {
            let admitted = idempotency::admit(&tx, &[(workspace_id, key, fingerprint)]).await?;
            match admitted.into_iter().next() {
                Some(Admission::Proceed) | None => {}
                Some(Admission::InFlight) => return Err(ApiError::IdempotencyKeyInFlight),
                Some(Admission::Reused) => return Err(ApiError::IdempotencyKeyReused),
                Some(Admission::Replay(kept)) => return replay(kept, &fingerprint),
            }
        }
        let rendered = op(&tx).await?;
        if let Some(key) = &post.idempotency_key {
            if (200..300).contains(&rendered.status) {
                let answer = NewResponse {
                    workspace_id,
                    key,
                    fingerprint,
                    status: rendered.status,
                    body: &rendered.body,
                };
                let expires_at = time::OffsetDateTime::now_utc() + self.idempotency_ttl;
                idempotency::store_responses(&tx, &[answer], expires_at).await?;
            }
        }
        tx.commit().await?;
        Ok(Stored {
            rendered,
            replayed: false,
        })
    }
}

fn replay(
    kept: dedup::StoredResponse,
    fingerprint: &RequestFingerprint,
) -> Result<Stored, ApiError> {
    match kept.replay_for(fingerprint) {
        Replay::Same(s) => Ok(Stored {
            rendered: Rendered {
                status: s.status,
                body: s.body,
            },
            replayed: true,
        }),
        Replay::Reused => Err(ApiError::IdempotencyKeyReused),
    }
}

/// Counts a rejected event under the kind it claimed to be.
fn count_rejected(value: &serde_json::Value) {
    let kind = match value.get("event").and_then(|v| v.as_str()) {
        Some("lead") => "lead",
        Some("sale") => "sale",
        _ => "unknown",
    };
    metrics::counter!("convrelay_events_total", "kind" => kind, "outcome" => "rejected")
        .increment(1);
}

fn new_event(
    workspace_id: Uuid,
    id: Uuid,
    received_at: time::OffsetDateTime,
    event: &Event,
) -> NewEvent {
    NewEvent {
        workspace_id,
        id,
        kind: event.kind().as_str(),
        occurred_at: event.timestamp,
        received_at,
        natural_key: event.natural_key().map(str::to_owned),
        customer_external_id: event.customer_external_id.clone(),
        mode: event.mode.as_str(),
        amount: event.value.as_ref().map(|m| m.amount()),
        currency: event.value.as_ref().map(|m| m.currency().code().to_owned()),
        payload: serde_json::to_value(event).unwrap_or_default(),
    }
}
