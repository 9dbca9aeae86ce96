//! The `conversion_events` table: create or replace, read, list, delete. SQL sits next to the
//! function that runs it; every statement is scoped by workspace.

use std::collections::{BTreeMap, HashMap};

use base64::alphabet::URL_SAFE;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use deadpool_postgres::GenericClient;
use events::{EventKind, FieldError, Money};
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::{json, Value};
use time::OffsetDateTime;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::definition::{self, DefinitionView, DestinationRule, LeadValue, Tier};
use crate::estimate::{self, Estimate};
use crate::{Error, Result};

/// The most definitions a page holds.
const LIMIT_MAX: i64 = 100;

/// Cursors: the page's last name in unpadded base64url. Any string of that alphabet whose
/// length base64 allows is read as a position (trailing bits ignored, bytes that are not UTF-8
/// replaced), so that only what cannot be decoded at all is refused.
const CURSOR: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(true),
);

/// A stored definition.
#[derive(Debug, Clone, PartialEq)]
pub struct Definition {
    /// Its workspace.
    pub workspace_id: Uuid,
    /// The event name it defines.
    pub event_name: String,
    /// Lead or sale.
    pub kind: EventKind,
    /// Macro or micro.
    pub tier: Tier,
    /// What it is.
    pub description: Option<String>,
    /// Who answers for it.
    pub owner: Option<String>,
    /// The value of a lead sent without an amount.
    pub value: Option<LeadValue>,
    /// Per destination id.
    pub destinations: BTreeMap<Uuid, DestinationRule>,
    /// When first defined.
    pub created_at: OffsetDateTime,
    /// When last replaced.
    pub updated_at: OffsetDateTime,
}

impl Definition {
    pub(crate) fn from_row(row: &Row) -> Result<Self> {
        let corrupt = |detail: String| Error::Corrupt {
            what: "conversion event",
            detail,
        };
        let kind: String = row.try_get("kind")?;
        let kind = match kind.as_str() {
            "lead" => EventKind::Lead,
            "sale" => EventKind::Sale,
            other => return Err(corrupt(format!("kind {other:?}"))),
        };
        let tier: String = row.try_get("tier")?;
        let tier = Tier::parse(&tier).ok_or_else(|| corrupt(format!("tier {tier:?}")))?;
        let amount: Option<Decimal> = row.try_get("value_amount")?;
        let currency: Option<String> = row.try_get("value_currency")?;
        let estimate: Option<String> = row.try_get("value_estimate")?;
        let value = match (amount, currency, estimate.as_deref()) {
            (Some(amount), Some(currency), _) => {
                let currency =
                    events::Currency::parse(&currency).map_err(|e| corrupt(e.to_string()))?;
                Some(LeadValue::Fixed(
                    Money::new(amount, currency).map_err(|e| corrupt(e.to_string()))?,
                ))
            }
            (_, _, Some("close_rate")) => Some(LeadValue::CloseRate),
            _ => None,
        };
        let stored: Value = row.try_get("destinations")?;
        let by_wire: BTreeMap<String, DestinationRule> =
            serde_json::from_value(stored).map_err(|e| corrupt(e.to_string()))?;
        let destinations = by_wire
            .into_iter()
            .filter_map(|(key, rule)| {
                forwarder::ids::from_wire(forwarder::ids::DESTINATION, &key).map(|id| (id, rule))
            })
            .collect();
        Ok(Self {
            workspace_id: row.try_get("workspace_id")?,
            event_name: row.try_get("event_name")?,
            kind,
            tier,
            description: row.try_get("description")?,
            owner: row.try_get("owner")?,
            value,
            destinations,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }

    /// The API's view; `estimate` is the workspace's close-rate estimate, shown with a
    /// close-rate value.
    pub fn view(&self, estimate: Option<&Estimate>) -> DefinitionView {
        let value = self.value.as_ref().map(|v| match v {
            LeadValue::Fixed(money) => json!({
                "amount": money_number(money.amount()),
                "currency": money.currency().code(),
            }),
            LeadValue::CloseRate => json!({"estimate": "close_rate"}),
        });
        let (estimated_value, basis) = match self.value {
            Some(LeadValue::CloseRate) => match estimate {
                Some(estimate) => (Some(estimate.value_view()), Some(estimate.basis())),
                None => (Some(None), Some(estimate::not_computed())),
            },
            _ => (None, None),
        };
        DefinitionView {
            event_name: self.event_name.clone(),
            kind: self.kind.as_str(),
            tier: self.tier.as_str(),
            description: self.description.clone(),
            owner: self.owner.clone(),
            value,
            estimated_value,
            basis,
            destinations: self
                .destinations
                .iter()
                .map(|(id, rule)| {
                    (
                        forwarder::ids::to_wire(forwarder::ids::DESTINATION, *id),
                        rule.clone(),
                    )
                })
                .collect(),
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// An exact amount as a JSON number.
pub(crate) fn money_number(amount: Decimal) -> Value {
    serde_json::from_str(&amount.normalize().to_string()).unwrap_or(Value::Null)
}

/// What a PUT did.
#[derive(Debug, Clone, PartialEq)]
pub struct PutOutcome {
    /// True when the definition is new (201), false when it replaced one (200).
    pub created: bool,
    /// The definition as stored.
    pub view: DefinitionView,
}

const UPSERT: &str = "
    INSERT INTO conversion_events
        (workspace_id, event_name, kind, tier, description, owner, value_amount, value_currency,
         value_estimate, destinations)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
    ON CONFLICT (workspace_id, event_name) DO UPDATE SET
        kind = EXCLUDED.kind, tier = EXCLUDED.tier, description = EXCLUDED.description,
        owner = EXCLUDED.owner, value_amount = EXCLUDED.value_amount,
        value_currency = EXCLUDED.value_currency, value_estimate = EXCLUDED.value_estimate,
        destinations = EXCLUDED.destinations, updated_at = now()
    RETURNING (xmax = 0) AS created, workspace_id, event_name, kind, tier, description, owner,
              value_amount, value_currency, value_estimate, destinations, created_at, updated_at";

/// `PUT /v1/conversion-events/{eventName}`: checks the body whole (its destinations against
/// their platforms) and creates or replaces the definition; a close-rate value has its estimate
/// computed at once, in the caller's transaction.
///
/// # Errors
/// [`Error::Invalid`] listing every bad field (the path's `eventName` included);
/// [`Error::Database`].
pub async fn put_definition(
    client: &impl GenericClient,
    workspace_id: Uuid,
    event_name: &str,
    body: &Value,
) -> Result<PutOutcome> {
    let mut errors = definition::check_event_name(event_name)
        .err()
        .unwrap_or_default();
    let (draft, body_errors) = definition::check_body(body);
    errors.extend(body_errors);
    let mut rules = BTreeMap::new();
    if let Some(draft) = &draft {
        for (id, (key, raw)) in &draft.destinations {
            match forwarder::destinations::load_destination(client, workspace_id, *id).await? {
                None => errors.push(FieldError {
                    field: format!("destinations.{key}"),
                    code: "not_found",
                    message: "is not a destination of this workspace".into(),
                }),
                Some(destination) => {
                    if let Some(rule) = definition::check_rule(
                        &mut errors,
                        key,
                        destination.destination_type(),
                        raw,
                    ) {
                        rules.insert(key.clone(), rule);
                    }
                }
            }
        }
    }
    let draft = match draft {
        Some(draft) if errors.is_empty() => draft,
        _ => return Err(Error::Invalid(errors)),
    };
    let (amount, currency, estimate) = match &draft.value {
        Some(LeadValue::Fixed(money)) => (
            Some(money.amount()),
            Some(money.currency().code().to_owned()),
            None,
        ),
        Some(LeadValue::CloseRate) => (None, None, Some("close_rate")),
        None => (None, None, None),
    };
    let destinations = serde_json::to_value(&rules).map_err(|e| Error::Corrupt {
        what: "destinations",
        detail: e.to_string(),
    })?;
    let stmt = client.prepare_cached(UPSERT).await?;
    let row = client
        .query_one(
            &stmt,
            &[
                &workspace_id,
                &event_name,
                &draft.kind.as_str(),
                &draft.tier.as_str(),
                &draft.description,
                &draft.owner,
                &amount,
                &currency,
                &estimate,
                &destinations,
            ],
        )
        .await?;
    let created: bool = row.try_get("created")?;
    let definition = Definition::from_row(&row)?;
    let estimate = match definition.value {
        Some(LeadValue::CloseRate) => {
            Some(estimate::refresh_estimate(client, workspace_id, OffsetDateTime::now_utc()).await?)
        }
        _ => None,
    };
    Ok(PutOutcome {
        created,
        view: definition.view(estimate.as_ref()),
    })
}

const GET: &str = "SELECT workspace_id, event_name, kind, tier, description, owner, value_amount, \
    value_currency, value_estimate, destinations, created_at, updated_at \
    FROM conversion_events WHERE workspace_id = $1 AND event_name = $2";

/// `GET /v1/conversion-events/{eventName}`.
///
/// # Errors
/// [`Error::NotFound`] when the workspace has no such definition; [`Error::Database`].
pub async fn get_definition(
    client: &impl GenericClient,
    workspace_id: Uuid,
    event_name: &str,
) -> Result<DefinitionView> {
    let stmt = client.prepare_cached(GET).await?;
    let row = client
        .query_opt(&stmt, &[&workspace_id, &event_name])
        .await?
        .ok_or(Error::NotFound)?;
    let definition = Definition::from_row(&row)?;
    let estimate = match definition.value {
        Some(LeadValue::CloseRate) => estimate::stored_estimate(client, workspace_id).await?,
        _ => None,
    };
    Ok(definition.view(estimate.as_ref()))
}

/// A page of a list: `{"data": [...], "nextCursor": "…" | null}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    /// The items.
    pub data: Vec<T>,
    /// Pass as `cursor` for the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

const LIST: &str =
    "SELECT workspace_id, event_name, kind, tier, description, owner, value_amount, \
    value_currency, value_estimate, destinations, created_at, updated_at \
    FROM conversion_events \
    WHERE workspace_id = $1 AND ($2::text IS NULL OR event_name COLLATE \"C\" > $2 COLLATE \"C\") \
    ORDER BY event_name COLLATE \"C\" LIMIT $3";

/// `GET /v1/conversion-events`: a page in event-name order (byte order of the UTF-8 names).
///
/// # Errors
/// [`Error::Invalid`] for a `limit` outside 1..=100 or a cursor that is not a `nextCursor`;
/// [`Error::Database`].
pub async fn list_definitions(
    client: &impl GenericClient,
    workspace_id: Uuid,
    cursor: Option<&str>,
    limit: i64,
) -> Result<Page<DefinitionView>> {
    let mut errors = Vec::new();
    if !(1..=LIMIT_MAX).contains(&limit) {
        errors.push(FieldError {
            field: "limit".into(),
            code: "range",
            message: format!("must be an integer from 1 to {LIMIT_MAX}"),
        });
    }
    let after = match cursor {
        None => None,
        Some(raw) => {
            let name = CURSOR
                .decode(raw)
                .ok()
                .filter(|bytes| !bytes.is_empty())
                .map(|bytes| {
                    // No name holds NUL (nor can PostgreSQL text): the names after "ab\0…" are
                    // exactly those after "ab".
                    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
                    String::from_utf8_lossy(&bytes[..end]).into_owned()
                });
            if name.is_none() {
                errors.push(FieldError {
                    field: "cursor".into(),
                    code: "format",
                    message: "must be a nextCursor of a previous page".into(),
                });
            }
            name
        }
    };
    if !errors.is_empty() {
        return Err(Error::Invalid(errors));
    }
    let stmt = client.prepare_cached(LIST).await?;
    let rows = client
        .query(&stmt, &[&workspace_id, &after, &(limit + 1)])
        .await?;
    let mut definitions = rows
        .iter()
        .map(Definition::from_row)
        .collect::<Result<Vec<_>>>()?;
    let more = definitions.len() as i64 > limit;
    definitions.truncate(usize::try_from(limit).unwrap_or(0));
    let estimate = if definitions
        .iter()
        .any(|d| d.value == Some(LeadValue::CloseRate))
    {
        estimate::stored_estimate(client, workspace_id).await?
    } else {
        None
    };
    let next_cursor = more
        .then(|| {
            definitions
                .last()
                .map(|d| CURSOR.encode(d.event_name.as_bytes()))
        })
        .flatten();
    Ok(Page {
        data: definitions
            .iter()
            .map(|d| d.view(estimate.as_ref()))
            .collect(),
        next_cursor,
    })
}

const DELETE: &str = "DELETE FROM conversion_events WHERE workspace_id = $1 AND event_name = $2";

/// `DELETE /v1/conversion-events/{eventName}`: events of that name are relayed with their
/// destinations' own settings again; values already taken by leads stay as they were.
///
/// # Errors
/// [`Error::NotFound`] when the workspace has no such definition; [`Error::Database`].
pub async fn delete_definition(
    client: &impl GenericClient,
    workspace_id: Uuid,
    event_name: &str,
) -> Result<()> {
    let stmt = client.prepare_cached(DELETE).await?;
    match client.execute(&stmt, &[&workspace_id, &event_name]).await? {
        0 => Err(Error::NotFound),
        _ => Ok(()),
    }
}

const DEFINED: &str = "SELECT event_name, kind FROM conversion_events \
    WHERE workspace_id = $1 AND event_name = ANY($2::text[])";

/// The kinds of those of `event_names` the workspace defines (for
/// `CONVRELAY_UNDEFINED_EVENT_NAMES=reject`).
///
/// # Errors
/// [`Error::Database`].
pub async fn defined_kinds(
    client: &impl GenericClient,
    workspace_id: Uuid,
    event_names: &[&str],
) -> Result<HashMap<String, EventKind>> {
    let mut out = HashMap::new();
    if event_names.is_empty() {
        return Ok(out);
    }
    let stmt = client.prepare_cached(DEFINED).await?;
    for row in client.query(&stmt, &[&workspace_id, &event_names]).await? {
        let name: String = row.try_get(0)?;
        let kind: String = row.try_get(1)?;
        let kind = if kind == "sale" {
            EventKind::Sale
        } else {
            EventKind::Lead
        };
        out.insert(name, kind);
    }
    Ok(out)
}

/// `SELECT` of every column for `names` of one workspace.
pub(crate) const BY_NAMES: &str = "SELECT workspace_id, event_name, kind, tier, description, \
    owner, value_amount, value_currency, value_estimate, destinations, created_at, updated_at \
    FROM conversion_events WHERE workspace_id = $1 AND event_name = ANY($2::text[])";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cursor_of_the_documented_shape_decodes() {
        for raw in ["0a", "AAA", "AAAA", "_-_-ab", "ZGVtb19ib29rZWQ"] {
            assert!(CURSOR.decode(raw).is_ok(), "{raw}");
        }
        for raw in ["0", "AAAAA", "a.b", "!"] {
            assert!(CURSOR.decode(raw).is_err(), "{raw}");
        }
        assert_eq!(CURSOR.encode("demo_booked"), "ZGVtb19ib29rZWQ");
    }
}
