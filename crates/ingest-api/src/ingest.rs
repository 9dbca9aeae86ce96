//! Taking events in: the Idempotency-Key rules, validation into domain events, and the hand-over
//! to the group-commit writer. Handlers call one function of this module.

use std::collections::HashMap;

use deadpool_postgres::Pool;
use dedup::idempotency::{self, Admission, NewResponse, Replay};
use dedup::{IdempotencyKey, InFlight, InFlightGuard, RequestFingerprint};
use events::{Event, EventKind, FieldError};
use futures_util::future::BoxFuture;
use serde_json::Value;
use uuid::Uuid;

use crate::auth::Principal;
use crate::config::UndefinedEventNames;
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
    /// Whether an event whose `eventName` the catalog does not define is refused.
    pub undefined_event_names: UndefinedEventNames,
}

/// The kinds of the event names a request uses that the catalog defines; `None` when undefined
/// names are accepted (nothing is looked up then).
type Defined = Option<HashMap<String, EventKind>>;

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
        let defined = self
            .defined(
                post.principal.workspace_id,
                std::slice::from_ref(post.value),
            )
            .await?;
        self.run(post, move |value, workspace_id| {
            let (id, received_at) = ids::new_event_id();
            let undefined = undefined_event_name(defined.as_ref(), value);
            let event = match events::parse_event(value, received_at) {
                Ok(event) if undefined.is_none() => event,
                Ok(_) => {
                    count_rejected(value);
                    return Err(ApiError::Validation(undefined.into_iter().collect()));
                }
                Err(e) => {
                    count_rejected(value);
                    return Err(ApiError::Validation(with(e.0, undefined)));
                }
            };
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
        let body: &Value = post.value;
        let items = body
            .get("events")
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice);
        let defined = self.defined(post.principal.workspace_id, items).await?;
        self.run(post, move |value, workspace_id| {
            let items = events::parse_batch(value).map_err(|e| ApiError::Validation(e.0))?;
            let mut stored = Vec::with_capacity(items.len());
            let mut rejected = Vec::new();
            for (index, item) in items.iter().enumerate() {
                let (id, received_at) = ids::new_event_id();
                let undefined = undefined_event_name(defined.as_ref(), item);
                match events::parse_event(item, received_at) {
                    Ok(event) if undefined.is_none() => {
                        stored.push(new_event(workspace_id, id, received_at, &event));
                    }
                    Ok(_) => {
                        count_rejected(item);
                        rejected.push((index, undefined.into_iter().collect()));
                    }
                    Err(errors) => {
                        count_rejected(item);
                        rejected.push((index, with(errors.0, undefined)));
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

    /// With `CONVRELAY_UNDEFINED_EVENT_NAMES=reject`: which of the event names `items` use the
    /// workspace's catalog defines, and as what kind (one query for a whole batch).
    async fn defined(&self, workspace_id: Uuid, items: &[Value]) -> Result<Defined, ApiError> {
        if self.undefined_event_names == UndefinedEventNames::Accept {
            return Ok(None);
        }
        let mut names: Vec<&str> = items.iter().filter_map(event_name_of).collect();
        names.sort_unstable();
        names.dedup();
        let client = self.pool.get().await?;
        Ok(Some(
            catalog::defined_kinds(&client, workspace_id, &names).await?,
        ))
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

/// The `eventName` an event body uses: its own, else its kind's default (`lead`, `sale`);
/// `None` when it names neither in a readable way (the parser reports that).
fn event_name_of(value: &Value) -> Option<&str> {
    match value.get("eventName") {
        Some(Value::String(name)) => Some(name),
        Some(Value::Null) | None => match value.get("event").and_then(Value::as_str) {
            Some(kind @ ("lead" | "sale")) => Some(kind),
            _ => None,
        },
        Some(_) => None,
    }
}

/// The error on `eventName` when undefined names are refused and this one has no definition,
/// or a definition of the other kind.
fn undefined_event_name(
    defined: Option<&HashMap<String, EventKind>>,
    value: &Value,
) -> Option<FieldError> {
    let defined = defined?;
    let name = event_name_of(value)?;
    match defined.get(name) {
        None => Some(FieldError {
            field: "eventName".into(),
            code: "undefined_event_name",
            message: "has no definition in the conversion-events catalog, and this service refuses undefined event names (PUT /v1/conversion-events/{eventName} defines one)".into(),
        }),
        Some(kind) => {
            let sent = value.get("event").and_then(Value::as_str)?;
            (sent != kind.as_str()).then(|| FieldError {
                field: "eventName".into(),
                code: "kind_mismatch",
                message: format!("is defined in the conversion-events catalog as a {kind} event"),
            })
        }
    }
}

/// The parser's `errors` and `extra`, unless the parser already reported that field.
fn with(mut errors: Vec<FieldError>, extra: Option<FieldError>) -> Vec<FieldError> {
    if let Some(extra) = extra {
        if !errors.iter().any(|e| e.field == extra.field) {
            errors.push(extra);
        }
    }
    errors
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
