//! What the pipeline takes from the catalog while it decides a step's events: their names'
//! definitions, the value each lead without an amount takes, and the per-destination rules the
//! forwarder applies when it queues their dispatches.
//!
//! A lead's value is frozen when attribution first decides it: the value (fixed, or the
//! close-rate estimate of that moment) is recorded in `conversion_lead_values`, and every later
//! reader (a late match's dispatches, the report stage, `GET /v1/events/{id}`) reads that
//! record, so that what the platforms were sent and what the reports count agree even after the
//! definition or the estimate changes. A definition applies to events of its own kind only.

use std::collections::HashMap;

use deadpool_postgres::GenericClient;
use events::{Event, EventKind, Mode, Money};
use rust_decimal::Decimal;
use serde::Serialize;
use uuid::Uuid;

use crate::definition::LeadValue;
use crate::estimate;
use crate::store::{Definition, BY_NAMES};
use crate::{Error, Result};

/// The definitions of those of `event_names` the workspace defines, by name.
///
/// # Errors
/// [`Error::Database`]; [`Error::Corrupt`] for an unreadable row.
pub async fn definitions_for(
    client: &impl GenericClient,
    workspace_id: Uuid,
    event_names: &[&str],
) -> Result<HashMap<String, Definition>> {
    if event_names.is_empty() {
        return Ok(HashMap::new());
    }
    let stmt = client.prepare_cached(BY_NAMES).await?;
    client
        .query(&stmt, &[&workspace_id, &event_names])
        .await?
        .iter()
        .map(|row| Definition::from_row(row).map(|d| (d.event_name.clone(), d)))
        .collect()
}

/// The forwarder's rules for `definitions` (one workspace's).
pub fn catalog_rules(definitions: &HashMap<String, Definition>) -> forwarder::CatalogRules {
    let mut rules = forwarder::CatalogRules::default();
    for definition in definitions.values() {
        for (destination_id, rule) in &definition.destinations {
            let mapping = rule.mapping();
            rules.insert(
                definition.workspace_id,
                &definition.event_name,
                definition.kind,
                *destination_id,
                forwarder::CatalogRule {
                    enabled: rule.enabled,
                    mapping: (!mapping.is_empty()).then_some(mapping),
                },
            );
        }
    }
    rules
}

/// Where a lead's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueSource {
    /// The definition's fixed amount.
    Fixed,
    /// The workspace's close-rate estimate at the time.
    CloseRate,
}

impl ValueSource {
    fn as_str(self) -> &'static str {
        match self {
            Self::Fixed => "fixed",
            Self::CloseRate => "close_rate",
        }
    }
}

/// The value a lead took from its definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedValue {
    /// The amount and currency.
    pub money: Money,
    /// Fixed or estimated.
    pub source: ValueSource,
}

const FREEZE: &str = "
    INSERT INTO conversion_lead_values (workspace_id, event_id, event_name, amount, currency, source)
    SELECT $1, u.event_id, u.event_name, u.amount, u.currency, u.source
    FROM unnest($2::uuid[], $3::text[], $4::numeric[], $5::text[], $6::text[])
        AS u(event_id, event_name, amount, currency, source)
    ON CONFLICT (workspace_id, event_id) DO NOTHING";

/// Records, for each lead of `events` sent without an amount whose name has a lead definition
/// with a value, the value it takes now (unless it took one before), and answers the value of
/// every such lead that has one.
///
/// # Errors
/// [`Error::Database`].
pub async fn freeze_lead_values(
    client: &impl GenericClient,
    workspace_id: Uuid,
    events: &[(Uuid, &Event)],
    definitions: &HashMap<String, Definition>,
    now: time::OffsetDateTime,
) -> Result<HashMap<Uuid, AppliedValue>> {
    let unvalued: Vec<(Uuid, &Event)> = events
        .iter()
        .filter(|(_, e)| {
            e.kind() == EventKind::Lead && e.value.is_none() && e.mode != Mode::Deferred
        })
        .map(|(id, e)| (*id, *e))
        .collect();
    if unvalued.is_empty() {
        return Ok(HashMap::new());
    }
    let mut estimate = None;
    let mut ids = Vec::new();
    let mut names = Vec::new();
    let mut amounts: Vec<Decimal> = Vec::new();
    let mut currencies = Vec::new();
    let mut sources = Vec::new();
    for (event_id, event) in &unvalued {
        let Some(definition) = definitions
            .get(&event.event_name)
            .filter(|d| d.kind == EventKind::Lead)
        else {
            continue;
        };
        let (money, source) = match &definition.value {
            None => continue,
            Some(LeadValue::Fixed(money)) => (*money, ValueSource::Fixed),
            Some(LeadValue::CloseRate) => {
                if estimate.is_none() {
                    estimate = Some(
                        match estimate::stored_estimate(client, workspace_id).await? {
                            Some(stored) => stored,
                            None => estimate::refresh_estimate(client, workspace_id, now).await?,
                        },
                    );
                }
                let Some((amount, currency)) = estimate.as_ref().and_then(|e| e.value.clone())
                else {
                    continue;
                };
                let Some(money) = events::Currency::parse(&currency)
                    .ok()
                    .and_then(|c| Money::new(amount, c).ok())
                else {
                    continue;
                };
                (money, ValueSource::CloseRate)
            }
        };
        ids.push(*event_id);
        names.push(event.event_name.clone());
        amounts.push(money.amount());
        currencies.push(money.currency().code().to_owned());
        sources.push(source.as_str());
    }
    if !ids.is_empty() {
        let stmt = client.prepare_cached(FREEZE).await?;
        client
            .execute(
                &stmt,
                &[&workspace_id, &ids, &names, &amounts, &currencies, &sources],
            )
            .await?;
    }
    let all: Vec<Uuid> = unvalued.iter().map(|(id, _)| *id).collect();
    lead_values(client, workspace_id, &all).await
}

const READ: &str = "
    SELECT event_id, amount, currency, source FROM conversion_lead_values
    WHERE workspace_id = $1 AND event_id = ANY($2::uuid[])";

/// The values those of `event_ids` took from their definitions.
///
/// # Errors
/// [`Error::Database`]; [`Error::Corrupt`] for an unreadable row.
pub async fn lead_values(
    client: &impl GenericClient,
    workspace_id: Uuid,
    event_ids: &[Uuid],
) -> Result<HashMap<Uuid, AppliedValue>> {
    let mut out = HashMap::new();
    if event_ids.is_empty() {
        return Ok(out);
    }
    let stmt = client.prepare_cached(READ).await?;
    for row in client.query(&stmt, &[&workspace_id, &event_ids]).await? {
        let corrupt = |detail: String| Error::Corrupt {
            what: "lead value",
            detail,
        };
        let event_id: Uuid = row.try_get(0)?;
        let amount: Decimal = row.try_get(1)?;
        let currency: String = row.try_get(2)?;
        let source: String = row.try_get(3)?;
        let currency = events::Currency::parse(&currency).map_err(|e| corrupt(e.to_string()))?;
        let money = Money::new(amount, currency).map_err(|e| corrupt(e.to_string()))?;
        let source = if source == "close_rate" {
            ValueSource::CloseRate
        } else {
            ValueSource::Fixed
        };
        out.insert(event_id, AppliedValue { money, source });
    }
    Ok(out)
}

/// The values leads took, partitioned by month on their event's id with the bounds of the
/// events': a month of them is dropped whole with its month of events.
pub const LEAD_VALUES: journal::retention::MonthlyTable = journal::retention::MonthlyTable {
    name: "conversion_lead_values",
    key: "event_id",
    options: "",
};

const FORGET: &str = "DELETE FROM conversion_lead_values WHERE workspace_id = $1 AND event_id < $2";

/// Retention: removes what an older, wider partition (or the default one) still holds of the
/// values taken by `workspace_id`'s events with ids below `before` (UUIDv7: received before the
/// time its first 48 bits hold), as the journal drops them.
///
/// # Errors
/// [`Error::Database`].
pub async fn forget_lead_values(
    client: &impl GenericClient,
    workspace_id: Uuid,
    before: Uuid,
) -> Result<u64> {
    let stmt = client.prepare_cached(FORGET).await?;
    Ok(client.execute(&stmt, &[&workspace_id, &before]).await?)
}

const ERASE: &str =
    "DELETE FROM conversion_lead_values WHERE workspace_id = $1 AND event_id = ANY($2::uuid[])";

/// Erasing a person: removes the values their erased events took.
///
/// # Errors
/// [`Error::Database`].
pub async fn erase_lead_values(
    client: &impl GenericClient,
    workspace_id: Uuid,
    event_ids: &[Uuid],
) -> Result<u64> {
    if event_ids.is_empty() {
        return Ok(0);
    }
    let stmt = client.prepare_cached(ERASE).await?;
    Ok(client.execute(&stmt, &[&workspace_id, &event_ids]).await?)
}
