//! The bodies of answers to POSTs that store events. They are rendered inside the storing
//! transaction, because an Idempotency-Key keeps them byte for byte.

use events::FieldError;
use serde::Serialize;

use crate::ids;
use crate::writer::Outcome;

/// What an answer looks like, besides the outcomes of its events.
#[derive(Debug, Clone)]
pub enum Shape {
    /// `POST /v1/events`: one event of this kind.
    Single {
        /// `lead` or `sale`.
        kind: &'static str,
    },
    /// `POST /v1/events/batch`: `total` items, of which these were rejected (by index).
    Batch {
        /// Items in the request.
        total: usize,
        /// The rejected items and why.
        rejected: Vec<(usize, Vec<FieldError>)>,
    },
}

/// A status and a JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// HTTP status.
    pub status: u16,
    /// JSON body.
    pub body: Vec<u8>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EventAccepted<'a> {
    id: String,
    event: &'a str,
    status: &'static str,
    duplicate: bool,
    received_at: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BatchAnswer<'a> {
    accepted: usize,
    duplicates: usize,
    rejected: usize,
    results: Vec<BatchItem<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BatchItem<'a> {
    index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    duplicate: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<&'a [FieldError]>,
}

fn id_of(outcome: Outcome) -> (uuid::Uuid, bool) {
    match outcome {
        Outcome::Accepted(id) => (id, false),
        Outcome::Duplicate(id) => (id, true),
    }
}

/// Renders an answer: a new single event is 202, a duplicate 200, a batch always 200.
pub fn render(shape: &Shape, outcomes: &[Outcome]) -> Rendered {
    let (status, body) = match shape {
        Shape::Single { kind } => {
            let Some(&outcome) = outcomes.first() else {
                return Rendered {
                    status: 500,
                    body: b"{}".to_vec(),
                };
            };
            let (id, duplicate) = id_of(outcome);
            let body = serde_json::to_vec(&EventAccepted {
                id: ids::to_wire(ids::EVENT, id),
                event: kind,
                status: "accepted",
                duplicate,
                received_at: events::format_timestamp(ids::created_at(id)),
            });
            (if duplicate { 200 } else { 202 }, body)
        }
        Shape::Batch { total, rejected } => {
            let mut results = Vec::with_capacity(*total);
            let mut outcomes = outcomes.iter();
            let mut rejected_items = rejected.iter().peekable();
            let (mut accepted, mut duplicates) = (0, 0);
            for index in 0..*total {
                if let Some((_, errors)) = rejected_items.next_if(|(i, _)| *i == index) {
                    results.push(BatchItem {
                        index,
                        id: None,
                        status: "rejected",
                        duplicate: None,
                        errors: Some(errors),
                    });
                } else if let Some(&outcome) = outcomes.next() {
                    let (id, duplicate) = id_of(outcome);
                    if duplicate {
                        duplicates += 1;
                    } else {
                        accepted += 1;
                    }
                    results.push(BatchItem {
                        index,
                        id: Some(ids::to_wire(ids::EVENT, id)),
                        status: "accepted",
                        duplicate: Some(duplicate),
                        errors: None,
                    });
                }
            }
            let body = serde_json::to_vec(&BatchAnswer {
                accepted,
                duplicates,
                rejected: rejected.len(),
                results,
            });
            (200, body)
        }
    };
    match body {
        Ok(body) => Rendered { status, body },
        Err(_) => Rendered {
            status: 500,
            body: b"{}".to_vec(),
        },
    }
}

/// `POST /v1/clicks`: 201 with the click when new, 200 with the first registration when the
/// clickId was known.
pub fn render_click(registered: &attribution_matcher::RegisteredClick) -> Rendered {
    let status = if registered.created { 201 } else { 200 };
    match serde_json::to_vec(&registered.click) {
        Ok(body) => Rendered { status, body },
        Err(_) => Rendered {
            status: 500,
            body: b"{}".to_vec(),
        },
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ClickBatchItem<'a> {
    index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    click_id: Option<&'a str>,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    duplicate: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<&'a [FieldError]>,
}

/// `POST /v1/clicks/batch`: always 200, one result per item in request order.
pub fn render_click_batch(
    total: usize,
    rejected: &[(usize, Vec<FieldError>)],
    registered: &[attribution_matcher::RegisteredClick],
) -> Rendered {
    let mut results = Vec::with_capacity(total);
    let mut registered_items = registered.iter();
    let mut rejected_items = rejected.iter().peekable();
    let (mut accepted, mut duplicates) = (0, 0);
    for index in 0..total {
        if let Some((_, errors)) = rejected_items.next_if(|(i, _)| *i == index) {
            results.push(ClickBatchItem {
                index,
                click_id: None,
                status: "rejected",
                duplicate: None,
                errors: Some(errors),
            });
        } else if let Some(r) = registered_items.next() {
            if r.created {
                accepted += 1;
            } else {
                duplicates += 1;
            }
            results.push(ClickBatchItem {
                index,
                click_id: Some(&r.click.click_id),
                status: "accepted",
                duplicate: Some(!r.created),
                errors: None,
            });
        }
    }
    let body = serde_json::to_vec(&serde_json::json!({
        "accepted": accepted,
        "duplicates": duplicates,
        "rejected": rejected.len(),
        "results": results,
    }));
    match body {
        Ok(body) => Rendered { status: 200, body },
        Err(_) => Rendered {
            status: 500,
            body: b"{}".to_vec(),
        },
    }
}

/// Any serialisable answer as a kept-able status and body.
pub fn json(status: u16, value: &impl Serialize) -> Result<Rendered, crate::problem::ApiError> {
    serde_json::to_vec(value)
        .map(|body| Rendered { status, body })
        .map_err(|e| crate::problem::ApiError::Internal(Box::new(e)))
}
