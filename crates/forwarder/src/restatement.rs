//! Restating a conversion's value (a partial refund, a corrected order): the value history of
//! each event, the current value for reports, and one restatement dispatch per destination
//! that has the conversion.
//!
//! The event as received is never rewritten. Its value history lives in `event_values`
//! (revision 0: the value as first received; 1, 2, …: each restatement), and the current value
//! is the latest revision: [`current_values`] for Rust callers, and for SQL readers the function
//! `event_current_value(workspace_id, event_id)` and the view `event_current_values` (one row
//! per restated event; an event never restated has none, so readers take
//! `coalesce(restated, the event's own amount)`).
//!
//! [`restate`] applies one restatement inside the caller's transaction: it is the one place a
//! value changes, so that everything derived from values (report rollups) can be updated in the
//! same transaction.

use std::collections::HashMap;

use deadpool_postgres::GenericClient;
use events::FieldError;
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::destinations::{parse_type, DestinationConfig};
use crate::queue::{self, DispatchKind, DispatchStatus};
use crate::views::{dispatches_for_event, DispatchSummary, NOT_SUPPORTED};
use crate::{ids, Error, Result};

/// Most characters of a restatement's reason.
pub const MAX_REASON: usize = 255;

/// A new value for an event, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewValue {
    /// The new total (100 → 70 is 70), at least 0, at most 4 decimal places.
    pub amount: Decimal,
    /// Its currency as named by the request, trimmed and upper-cased (three letters), when it
    /// named one: it must be the event's, and is checked against ISO 4217 only where the event
    /// has none.
    pub currency: Option<String>,
    /// Why (`partial refund`).
    pub reason: Option<String>,
}

impl NewValue {
    /// Reads `{"amount": 150.0, "currency"?: "USD", "reason"?: "partial refund"}`, listing every
    /// bad field.
    ///
    /// # Errors
    /// [`Error::Invalid`].
    pub fn from_json(body: &Value) -> Result<Self> {
        let Some(map) = body.as_object() else {
            return Err(Error::invalid("", "type", "must be an object"));
        };
        let mut errors = Vec::new();
        let mut amount = None;
        let mut currency = None;
        let mut reason = None;
        for (key, value) in map {
            match (key.as_str(), value) {
                ("amount", Value::Number(number)) => match events::amount_from_json(number) {
                    Ok(value) => amount = Some(value),
                    Err(error) => errors.push(FieldError::new("amount", &error)),
                },
                ("amount", _) => errors.push(FieldError::new(
                    "amount",
                    &events::Error::Type {
                        expected: "a number",
                    },
                )),
                ("currency", Value::String(code)) => {
                    let code = code.trim();
                    if code.len() == 3 && code.bytes().all(|b| b.is_ascii_alphabetic()) {
                        currency = Some(code.to_ascii_uppercase());
                    } else {
                        errors.push(FieldError::new("currency", &events::Error::InvalidCurrency));
                    }
                }
                ("currency", _) => errors.push(FieldError::new(
                    "currency",
                    &events::Error::Type {
                        expected: "a string",
                    },
                )),
                ("reason", Value::String(text)) => {
                    let text = text.trim();
                    if text.is_empty() {
                        errors.push(FieldError::new("reason", &events::Error::Empty));
                    } else if text.chars().count() > MAX_REASON {
                        errors.push(FieldError::new(
                            "reason",
                            &events::Error::TooLong { max: MAX_REASON },
                        ));
                    } else {
                        reason = Some(text.to_owned());
                    }
                }
                ("reason", _) => errors.push(FieldError::new(
                    "reason",
                    &events::Error::Type {
                        expected: "a string",
                    },
                )),
                _ => errors.push(FieldError::new(key.clone(), &events::Error::UnknownField)),
            }
        }
        if amount.is_none() && !map.contains_key("amount") {
            errors.push(FieldError::new("amount", &events::Error::Required));
        }
        match (amount, errors.is_empty()) {
            (Some(amount), true) => Ok(Self {
                amount,
                currency,
                reason,
            }),
            _ => Err(Error::Invalid(errors)),
        }
    }
}

/// One value an event had.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ValueEntry {
    /// 0: as first received; then one per restatement.
    pub revision: i32,
    /// The total.
    #[serde(with = "events::amount_serde")]
    pub amount: Decimal,
    /// Its currency.
    pub currency: String,
    /// Why it changed (`null` for the value as received).
    pub reason: Option<String>,
    /// When it took effect.
    pub at: String,
}

/// What a restatement did.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RestateReport {
    /// `evt_…`.
    pub id: String,
    /// The current value after this call.
    #[serde(with = "events::amount_serde")]
    pub amount: Decimal,
    /// Its currency.
    pub currency: String,
    /// The current revision.
    pub revision: i32,
    /// False when the amount asked for was already the current one: nothing changed.
    pub changed: bool,
    /// Every value, oldest first.
    pub value_history: Vec<ValueEntry>,
    /// Every restatement dispatch of the event (this call's and earlier ones'), oldest first.
    pub restatements: Vec<DispatchSummary>,
    /// Restatements this call queued.
    pub queued: usize,
    /// Destinations this call recorded as `not_supported`.
    pub not_supported: usize,
    /// Older restatements not sent yet, cancelled because this value replaces them.
    pub superseded: u64,
    /// Conversion dispatches not sent yet, which now carry the new value.
    pub revalued: u64,
}

/// The event being restated, as its owner (the journal) knows it.
#[derive(Debug, Clone)]
pub struct RestateTarget {
    /// Its workspace.
    pub workspace_id: Uuid,
    /// Its id.
    pub event_id: Uuid,
    /// Its value as received (`None` for a lead sent without one).
    pub original: Option<events::Money>,
    /// When it was received (the time of revision 0).
    pub received_at: OffsetDateTime,
}

const LOCK: &str =
    "SELECT pg_advisory_xact_lock(hashtextextended($1::text || ':' || $2::text, 14))";

const HISTORY: &str = "
    SELECT revision, amount, currency, reason, recorded_at FROM event_values
    WHERE workspace_id = $1 AND event_id = $2 ORDER BY revision";

const RECORD_VALUE: &str = "
    INSERT INTO event_values (workspace_id, event_id, revision, amount, currency, reason, recorded_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7)";

/// The conversions of the event at its destinations, delivered or being delivered: each gets a
/// restatement. An erased person's dispatch has no payload left: `{}`, as its column was blanked
/// before.
const DELIVERED: &str = "
    SELECT d.destination_id, d.destination_type, coalesce(p.payload, '{}') AS payload, p.routing,
           t.type AS t_type, t.config
    FROM dispatches d
    LEFT JOIN dispatch_payloads p ON p.workspace_id = d.workspace_id AND p.dispatch_id = d.id
    LEFT JOIN destinations t ON t.workspace_id = d.workspace_id AND t.id = d.destination_id
    WHERE d.workspace_id = $1 AND d.event_id = $2 AND d.kind = 'conversion'
      AND d.status IN ('succeeded', 'in_flight')
    ORDER BY d.destination_id";

/// An event's value history, oldest first; empty when it was never restated.
///
/// # Errors
/// [`Error::Database`].
pub async fn value_history(
    client: &impl GenericClient,
    workspace_id: Uuid,
    event_id: Uuid,
) -> Result<Vec<ValueEntry>> {
    let stmt = client.prepare_cached(HISTORY).await?;
    client
        .query(&stmt, &[&workspace_id, &event_id])
        .await?
        .iter()
        .map(|row| {
            let at: OffsetDateTime = row.try_get(4)?;
            Ok(ValueEntry {
                revision: row.try_get(0)?,
                amount: row.try_get(1)?,
                currency: row.try_get(2)?,
                reason: row.try_get(3)?,
                at: events::format_timestamp(at),
            })
        })
        .collect()
}

const CURRENT_VALUES: &str = "
    SELECT event_id, amount, currency FROM event_current_values
    WHERE workspace_id = $1 AND event_id = ANY($2)";

/// The current value of each restated event among `event_ids` (events never restated are
/// absent: their own amount stands).
///
/// # Errors
/// [`Error::Database`].
pub async fn current_values(
    client: &impl GenericClient,
    workspace_id: Uuid,
    event_ids: &[Uuid],
) -> Result<HashMap<Uuid, (Decimal, String)>> {
    if event_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let stmt = client.prepare_cached(CURRENT_VALUES).await?;
    client
        .query(&stmt, &[&workspace_id, &event_ids])
        .await?
        .iter()
        .map(|row| Ok((row.try_get(0)?, (row.try_get(1)?, row.try_get(2)?))))
        .collect()
}

/// Applies a restatement inside the caller's transaction: the new value joins the event's
/// history (with the value as received as revision 0 the first time), conversions not sent yet
/// carry it, older restatements not sent yet are cancelled, and each destination that has (or
/// is sending) the conversion gets a restatement dispatch — queued where its platform takes
/// adjustments (Google Ads API `RESTATEMENT`), `skipped` with reason `not_supported` elsewhere.
/// Idempotent: the current amount again changes nothing. The caller checks that the event
/// exists and is not retracted.
///
/// # Errors
/// [`Error::Conflict`] for a currency other than the event's, or none for an event sent without
/// a value; [`Error::Database`].
pub async fn restate(
    client: &impl GenericClient,
    target: &RestateTarget,
    new: &NewValue,
) -> Result<RestateReport> {
    let RestateTarget {
        workspace_id,
        event_id,
        ..
    } = *target;
    let original_currency = target.original.map(|money| money.currency());
    let currency = match (new.currency.as_deref(), original_currency) {
        // Both depend on the event, not on the request alone: the request conflicts with it.
        (Some(asked), Some(own)) if asked != own.code() => {
            return Err(Error::Conflict(format!(
                "the event's currency is {}: a restatement changes the amount, not the currency ({asked} asked)",
                own.code(),
            )))
        }
        (_, Some(own)) => own,
        (Some(asked), None) => events::Currency::parse(asked)
            .map_err(|error| Error::Invalid(vec![FieldError::new("currency", &error)]))?,
        (None, None) => {
            return Err(Error::Conflict(
                "the event was sent without a value, so it has no currency to keep: give `currency`"
                    .into(),
            ))
        }
    };
    let currency = currency.code();
    let lock = client.prepare_cached(LOCK).await?;
    client
        .execute(&lock, &[&workspace_id.to_string(), &event_id.to_string()])
        .await?;
    let mut history = value_history(client, workspace_id, event_id).await?;
    let current = history
        .last()
        .map(|entry| (entry.amount, entry.currency.clone()))
        .or_else(|| {
            target
                .original
                .map(|money| (money.amount(), money.currency().code().to_owned()))
        });
    let unchanged = current
        .as_ref()
        .is_some_and(|(amount, code)| *amount == new.amount && code == currency);
    if unchanged {
        let restatements = restatements_of(client, workspace_id, event_id).await?;
        return Ok(RestateReport {
            id: ids::to_wire(ids::EVENT, event_id),
            amount: new.amount,
            currency: currency.to_owned(),
            revision: history.last().map_or(0, |entry| entry.revision),
            changed: false,
            value_history: history,
            restatements,
            queued: 0,
            not_supported: 0,
            superseded: 0,
            revalued: 0,
        });
    }
    let record = client.prepare_cached(RECORD_VALUE).await?;
    if history.is_empty() {
        if let Some(original) = target.original {
            let no_reason: Option<&str> = None;
            client
                .execute(
                    &record,
                    &[
                        &workspace_id,
                        &event_id,
                        &0i32,
                        &original.amount(),
                        &original.currency().code(),
                        &no_reason,
                        &target.received_at,
                    ],
                )
                .await?;
        }
    }
    let revision = history.last().map_or(1, |entry| entry.revision + 1);
    let now = OffsetDateTime::now_utc();
    client
        .execute(
            &record,
            &[
                &workspace_id,
                &event_id,
                &revision,
                &new.amount,
                &currency,
                &new.reason,
                &now,
            ],
        )
        .await?;
    history = value_history(client, workspace_id, event_id).await?;

    let revalued =
        queue::revalue_unsent(client, workspace_id, event_id, new.amount, currency).await?;
    let superseded = queue::supersede_restatements(
        client,
        workspace_id,
        event_id,
        &format!("superseded by revision {revision}"),
    )
    .await?;

    let stmt = client.prepare_cached(DELIVERED).await?;
    let delivered = client.query(&stmt, &[&workspace_id, &event_id]).await?;
    let mut rows = queue::Restatements {
        ids: Vec::new(),
        destination_ids: Vec::new(),
        types: Vec::new(),
        statuses: Vec::new(),
        payloads: Vec::new(),
        routings: Vec::new(),
        reasons: Vec::new(),
    };
    for row in &delivered {
        let config: Option<Value> = row.try_get("config")?;
        let supported = match (row.try_get::<_, Option<&str>>("t_type")?, config) {
            (Some(t), Some(config)) => DestinationConfig::from_json(parse_type(t)?, config)
                .is_ok_and(|config| config.adapter().supports_restatement(config.json())),
            _ => false,
        };
        let destination_id: Uuid = row.try_get("destination_id")?;
        rows.ids.push(queue::dispatch_id(
            event_id,
            destination_id,
            queue::DispatchKind::Restatement,
            revision,
        ));
        rows.destination_ids.push(destination_id);
        rows.types.push(row.try_get("destination_type")?);
        rows.payloads.push(row.try_get("payload")?);
        rows.routings.push(row.try_get("routing")?);
        if supported {
            rows.statuses.push(DispatchStatus::Queued);
            rows.reasons.push(None);
        } else {
            rows.statuses.push(DispatchStatus::Skipped);
            rows.reasons.push(Some(NOT_SUPPORTED));
        }
    }
    let (mut queued, mut not_supported) = (0, 0);
    if !rows.ids.is_empty() {
        for status in queue::add_restatements(
            client,
            workspace_id,
            event_id,
            new.amount,
            currency,
            revision,
            &rows,
        )
        .await?
        {
            match status {
                DispatchStatus::Queued => queued += 1,
                _ => not_supported += 1,
            }
        }
    }
    tracing::info!(
        event = %ids::to_wire(ids::EVENT, event_id),
        revision,
        queued,
        not_supported,
        superseded,
        revalued,
        "event value restated"
    );
    Ok(RestateReport {
        id: ids::to_wire(ids::EVENT, event_id),
        amount: new.amount,
        currency: currency.to_owned(),
        revision,
        changed: true,
        value_history: history,
        restatements: restatements_of(client, workspace_id, event_id).await?,
        queued,
        not_supported,
        superseded,
        revalued,
    })
}

async fn restatements_of(
    client: &impl GenericClient,
    workspace_id: Uuid,
    event_id: Uuid,
) -> Result<Vec<DispatchSummary>> {
    Ok(dispatches_for_event(client, workspace_id, event_id)
        .await?
        .into_iter()
        .filter(|d| d.kind == DispatchKind::Restatement)
        .collect())
}
