//! Erasing a person (`POST /v1/persons/erase`, admin): everything the workspace holds of the
//! whole connected person some identifiers resolve to goes in one transaction, each crate
//! deleting from its own tables:
//!
//! 1. the matcher resolves the identifiers to the person (its merged persons and every
//!    identifier they hold), under the workspace's graph lock so that no attribution step writes
//!    the graph meanwhile;
//! 2. the journal deletes every event carrying one of those identifiers;
//! 3. the matcher deletes the person's identity links, persons, linked registered clicks, the
//!    decisions about the erased events and their queued work;
//! 4. dedup releases the erased events' natural keys and deletes the kept Idempotency-Key answers
//!    that name them;
//! 5. reports take the erased conversions out of the rollups and delete their rows; the catalog
//!    deletes the values their leads took;
//! 6. the forwarder strips the erased events' dispatches and attempts to ids, status and times.
//!
//! Reports read the journal, so they stop counting the erased conversions at once. Asking again
//! finds nothing and answers zeros; a later event with the same identifiers starts a new person.

use attribution_matcher::{identifier_hash, IdentifierKind};
use deadpool_postgres::GenericClient;
use events::{Email, FieldError, IdentifierHash, PhoneE164};
use serde::Serialize;
use uuid::Uuid;

use crate::ids;
use crate::problem::ApiError;

/// The fields of the request, each an identifier of the person.
const FIELDS: [&str; 3] = ["customerExternalId", "email", "phone"];

/// Every identifier field of a stored event (the person's ids, then the ad platforms' click
/// ids), by its wire name, which is also the kind in the digest ([`events::identifier_hash`]).
fn identifier_fields() -> Vec<&'static str> {
    [
        IdentifierKind::CustomerExternalId,
        IdentifierKind::Email,
        IdentifierKind::Phone,
        IdentifierKind::ClickId,
    ]
    .into_iter()
    .chain(IdentifierKind::CLICK_IDS)
    .map(IdentifierKind::as_str)
    .collect()
}

/// Who to erase: at least one identifier, normalised as events' identifiers are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Erasure {
    customer_external_id: Option<String>,
    email: Option<Email>,
    phone: Option<PhoneE164>,
}

impl Erasure {
    /// Reads `{"customerExternalId"?, "email"?, "phone"?}`; every bad field is reported.
    pub fn parse(value: &serde_json::Value) -> Result<Self, ApiError> {
        let Some(map) = value.as_object() else {
            return Err(ApiError::Validation(vec![FieldError::new(
                "",
                &events::Error::Type {
                    expected: "an object",
                },
            )]));
        };
        let mut errors = Vec::new();
        let mut erasure = Self {
            customer_external_id: None,
            email: None,
            phone: None,
        };
        for (name, v) in map {
            if !FIELDS.contains(&name.as_str()) {
                errors.push(FieldError::new(name.clone(), &events::Error::UnknownField));
                continue;
            }
            let text = match v {
                serde_json::Value::Null => continue,
                serde_json::Value::String(s) => s.as_str(),
                _ => {
                    errors.push(FieldError::new(
                        name.clone(),
                        &events::Error::Type {
                            expected: "a string",
                        },
                    ));
                    continue;
                }
            };
            let parsed = match name.as_str() {
                "email" => Email::parse(text).map(|e| erasure.email = Some(e)),
                "phone" => PhoneE164::parse(text).map(|p| erasure.phone = Some(p)),
                _ => customer_external_id(text).map(|c| erasure.customer_external_id = Some(c)),
            };
            if let Err(e) = parsed {
                errors.push(FieldError::new(name.clone(), &e));
            }
        }
        if errors.is_empty()
            && erasure.customer_external_id.is_none()
            && erasure.email.is_none()
            && erasure.phone.is_none()
        {
            errors.push(FieldError {
                field: String::new(),
                code: "missing_identifier",
                message: "at least one of customerExternalId, email or phone is required".into(),
            });
        }
        if errors.is_empty() {
            Ok(erasure)
        } else {
            Err(ApiError::Validation(errors))
        }
    }

    /// The digests the graph files these identifiers under.
    fn identifiers(&self) -> Vec<IdentifierHash> {
        let mut out = Vec::with_capacity(3);
        if let Some(id) = &self.customer_external_id {
            out.push(identifier_hash(IdentifierKind::CustomerExternalId, id));
        }
        if let Some(email) = &self.email {
            out.push(identifier_hash(IdentifierKind::Email, email.as_str()));
        }
        if let Some(phone) = &self.phone {
            out.push(identifier_hash(IdentifierKind::Phone, phone.as_str()));
        }
        out
    }
}

/// A `customerExternalId` as events take it: a non-empty string of at most
/// [`events::MAX_ID_LENGTH`] characters, kept as sent.
fn customer_external_id(text: &str) -> events::Result<String> {
    if text.trim().is_empty() {
        return Err(events::Error::Empty);
    }
    if text.chars().count() > events::MAX_ID_LENGTH {
        return Err(events::Error::TooLong {
            max: events::MAX_ID_LENGTH,
        });
    }
    Ok(text.to_owned())
}

/// What was erased: `{"erased": {"events": n, "identifiers": n, "dispatches": n}}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Erased {
    /// Events deleted.
    pub events: u64,
    /// Identity links (identifiers of the person's graph) deleted.
    pub identifiers: u64,
    /// Dispatches stripped to ids, status and times.
    pub dispatches: u64,
}

/// The answer's body.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ErasureAnswer {
    /// What was erased.
    pub erased: Erased,
}

/// Erasure reads every event of the workspace (no index holds the identifiers' digests) and waits
/// for the graph lock behind an attribution step, so it gets a longer budget than the API's
/// statements: it is rare, asked for by an operator, and must not fail because the workers are
/// busy.
const ERASURE_TIMEOUTS: &str =
    "SET LOCAL statement_timeout = '120s'; SET LOCAL lock_timeout = '60s'";

/// Erases the person in the caller's transaction (see the module documentation).
pub async fn erase_person(
    tx: &impl GenericClient,
    workspace_id: Uuid,
    erasure: &Erasure,
) -> Result<Erased, ApiError> {
    tx.batch_execute(ERASURE_TIMEOUTS).await?;
    attribution_matcher::erase::lock_graph(tx, workspace_id).await?;
    let person =
        attribution_matcher::erase::resolve_person(tx, workspace_id, &erasure.identifiers())
            .await?;
    let fields = identifier_fields();
    let events = journal::erase_events(tx, workspace_id, &person.identifiers, &fields).await?;
    let event_ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
    let forgotten =
        attribution_matcher::erase::forget_person(tx, workspace_id, &person, &event_ids).await?;
    let keys: Vec<(&str, &str, Uuid)> = events
        .iter()
        .filter_map(|e| Some((e.kind.as_str(), e.natural_key.as_deref()?, e.id)))
        .collect();
    dedup::erase::forget_natural_keys(tx, workspace_id, &keys).await?;
    dedup::erase::forget_responses(tx, workspace_id, &answer_needles(&event_ids, &forgotten))
        .await?;
    reports::erase(tx, workspace_id, &event_ids).await?;
    catalog::erase_lead_values(tx, workspace_id, &event_ids).await?;
    let dispatches = forwarder::erase::strip_dispatches(tx, workspace_id, &event_ids).await?;
    Ok(Erased {
        events: events.len() as u64,
        identifiers: forgotten.identifiers,
        dispatches,
    })
}

/// What a kept answer names an erased event or click by: the event's wire id, and the click's
/// id as the clicks answers write it.
fn answer_needles(
    event_ids: &[Uuid],
    forgotten: &attribution_matcher::erase::Forgotten,
) -> Vec<String> {
    let events = event_ids.iter().map(|id| ids::to_wire(ids::EVENT, *id));
    let clicks = forgotten.click_ids.iter().filter_map(|id| {
        serde_json::to_string(id)
            .ok()
            .map(|quoted| format!("\"clickId\":{quoted}"))
    });
    events.chain(clicks).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(e: ApiError) -> Vec<String> {
        match e {
            ApiError::Validation(errors) => errors.into_iter().map(|e| e.field).collect(),
            other => panic!("not a validation error: {other:?}"),
        }
    }

    #[test]
    fn identifiers_are_normalised_as_events_normalise_them() {
        let erasure = Erasure::parse(
            &json!({"email": "  Alex@Example.COM ", "phone": "+1 (415) 555-0123", "customerExternalId": "u1"}),
        )
        .unwrap();
        assert_eq!(
            erasure.identifiers(),
            vec![
                identifier_hash(IdentifierKind::CustomerExternalId, "u1"),
                identifier_hash(IdentifierKind::Email, "alex@example.com"),
                identifier_hash(IdentifierKind::Phone, "+14155550123"),
            ]
        );
    }

    #[test]
    fn every_bad_field_is_reported() {
        let e = Erasure::parse(
            &json!({"email": "nope", "phone": "12", "customerExternalId": "", "name": "x"}),
        )
        .unwrap_err();
        let mut got = fields(e);
        got.sort();
        assert_eq!(got, ["customerExternalId", "email", "name", "phone"]);
        let e = Erasure::parse(&json!({"email": 5})).unwrap_err();
        assert_eq!(fields(e), ["email"]);
    }

    #[test]
    fn at_least_one_identifier_is_required() {
        assert_eq!(fields(Erasure::parse(&json!({})).unwrap_err()), [""]);
        assert_eq!(
            fields(Erasure::parse(&json!({"email": null})).unwrap_err()),
            [""]
        );
        assert!(Erasure::parse(&json!([])).is_err());
    }
}
