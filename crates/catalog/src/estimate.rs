//! The close-rate estimate of a lead's value: the workspace's sales ÷ leads over the trailing
//! [`WINDOW_DAYS`] days × its median sale amount, per currency. The estimate a lead takes is the
//! one of the currency with the most sales in the window; every currency's figures are kept in
//! the basis.
//!
//! The rate is capped at 1 (more sales than leads means sales that never were leads: a lead is
//! never worth more than the median sale), and the estimate is rounded to the currency's minor
//! unit. Where there are no leads or no sales in the window, the estimate is null and the basis
//! says why.
//!
//! Cost is bounded: the journal reads at most [`MAX_EVENTS`] of the window's newest events
//! (the basis then says `sampled` and where the window really began). The workers refresh each
//! workspace that has a close-rate definition when its estimate is older than the age they are
//! given (12 hours in `convrelay serve`), a few workspaces a round.

use deadpool_postgres::GenericClient;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::definition::MoneyView;
use crate::store::money_number;
use crate::{Error, Result};

/// The trailing window, in days.
pub const WINDOW_DAYS: i32 = 90;

/// The most events one estimate reads.
pub const MAX_EVENTS: i64 = 200_000;

/// One currency's figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CurrencyBasis {
    /// ISO 4217.
    pub currency: String,
    /// Sales in the window.
    pub sales: i64,
    /// Their median amount.
    #[serde(with = "events::amount_serde")]
    pub median_sale: Decimal,
    /// The estimate in this currency (null without leads).
    #[serde(default, with = "events::amount_serde::option")]
    pub estimated_value: Option<Decimal>,
}

/// A workspace's estimate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Estimate {
    /// When it was computed.
    pub computed_at: OffsetDateTime,
    /// The window read: its start (later than `to - 90 days` when sampled) and end.
    pub from: OffsetDateTime,
    /// The window's end.
    pub to: OffsetDateTime,
    /// Leads in the window.
    pub leads: i64,
    /// Whether the cap on events read was reached before the window's start.
    pub sampled: bool,
    /// Per currency, most sales first.
    pub currencies: Vec<CurrencyBasis>,
    /// What a lead takes: the estimate of the currency with the most sales.
    pub value: Option<(Decimal, String)>,
    /// Why there is no value.
    pub reason: Option<String>,
}

impl Estimate {
    /// `estimatedValue` on the wire.
    pub(crate) fn value_view(&self) -> Option<MoneyView> {
        self.value.as_ref().map(|(amount, currency)| MoneyView {
            amount: *amount,
            currency: currency.clone(),
        })
    }

    /// `basis` on the wire.
    pub(crate) fn basis(&self) -> Value {
        let main = self.currencies.first();
        let close_rate = main.and_then(|c| close_rate(c.sales, self.leads));
        json!({
            "method": "close_rate",
            "window": {
                "from": events::format_timestamp(self.from),
                "to": events::format_timestamp(self.to),
                "days": WINDOW_DAYS,
            },
            "leads": self.leads,
            "sales": main.map_or(0, |c| c.sales),
            "closeRate": close_rate.and_then(|r| r.round_dp(6).to_f64()),
            "medianSale": main.map(|c| json!({
                "amount": money_number(c.median_sale),
                "currency": c.currency,
            })),
            "currencies": self.currencies,
            "sampled": self.sampled,
            "computedAt": events::format_timestamp(self.computed_at),
            "reason": self.reason,
        })
    }
}

/// The basis of a close-rate definition whose estimate was never computed.
pub(crate) fn not_computed() -> Value {
    json!({
        "method": "close_rate",
        "reason": "not computed yet: the workers compute it within minutes",
    })
}

/// sales ÷ leads, capped at 1; `None` without leads or sales.
fn close_rate(sales: i64, leads: i64) -> Option<Decimal> {
    if leads <= 0 || sales <= 0 {
        return None;
    }
    Some((Decimal::from(sales) / Decimal::from(leads)).min(Decimal::ONE))
}

/// Rounds to the currency's minor unit (2 decimals when unknown).
fn round_to_minor(amount: Decimal, currency: &str) -> Decimal {
    let places = events::Currency::parse(currency)
        .ok()
        .and_then(|c| c.iso().exponent())
        .map_or(2, u32::from);
    amount.round_dp(places)
}

const STORE: &str = "
    INSERT INTO conversion_value_estimates
        (workspace_id, computed_at, window_start, window_end, window_days, leads, capped,
         currencies, amount, currency, reason)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
    ON CONFLICT (workspace_id) DO UPDATE SET
        computed_at = EXCLUDED.computed_at, window_start = EXCLUDED.window_start,
        window_end = EXCLUDED.window_end, window_days = EXCLUDED.window_days,
        leads = EXCLUDED.leads, capped = EXCLUDED.capped, currencies = EXCLUDED.currencies,
        amount = EXCLUDED.amount, currency = EXCLUDED.currency, reason = EXCLUDED.reason";

/// Computes the workspace's estimate as of `now` and stores it.
///
/// # Errors
/// [`Error::Database`].
pub async fn refresh_estimate(
    client: &impl GenericClient,
    workspace_id: Uuid,
    now: OffsetDateTime,
) -> Result<Estimate> {
    let since = now - time::Duration::days(i64::from(WINDOW_DAYS));
    let counts = journal::window_counts(client, workspace_id, since, MAX_EVENTS).await?;
    let currencies: Vec<CurrencyBasis> = counts
        .sales
        .iter()
        .map(|c| CurrencyBasis {
            currency: c.currency.clone(),
            sales: c.sales,
            median_sale: c.median.normalize(),
            estimated_value: close_rate(c.sales, counts.leads)
                .map(|rate| round_to_minor(rate * c.median, &c.currency).normalize()),
        })
        .collect();
    let value = currencies
        .first()
        .and_then(|c| c.estimated_value.map(|v| (v, c.currency.clone())));
    let reason = match (counts.leads, currencies.is_empty()) {
        (0, true) => Some("no leads and no sales in the window".to_owned()),
        (0, false) => Some("no leads in the window: a close rate needs leads".to_owned()),
        (_, true) => Some("no sales with an amount in the window".to_owned()),
        _ => None,
    };
    let estimate = Estimate {
        computed_at: now,
        from: counts.from,
        to: now,
        leads: counts.leads,
        sampled: counts.capped,
        currencies,
        value,
        reason,
    };
    let currencies = serde_json::to_value(&estimate.currencies).map_err(|e| Error::Corrupt {
        what: "estimate",
        detail: e.to_string(),
    })?;
    let stmt = client.prepare_cached(STORE).await?;
    client
        .execute(
            &stmt,
            &[
                &workspace_id,
                &estimate.computed_at,
                &estimate.from,
                &estimate.to,
                &WINDOW_DAYS,
                &estimate.leads,
                &estimate.sampled,
                &currencies,
                &estimate.value.as_ref().map(|v| v.0),
                &estimate.value.as_ref().map(|v| v.1.clone()),
                &estimate.reason,
            ],
        )
        .await?;
    Ok(estimate)
}

const LOAD: &str = "
    SELECT computed_at, window_start, window_end, leads, capped, currencies, amount, currency,
           reason
    FROM conversion_value_estimates WHERE workspace_id = $1";

/// The workspace's stored estimate, if one was computed.
///
/// # Errors
/// [`Error::Database`]; [`Error::Corrupt`] for an unreadable row.
pub async fn stored_estimate(
    client: &impl GenericClient,
    workspace_id: Uuid,
) -> Result<Option<Estimate>> {
    let stmt = client.prepare_cached(LOAD).await?;
    let Some(row) = client.query_opt(&stmt, &[&workspace_id]).await? else {
        return Ok(None);
    };
    let currencies: Value = row.try_get("currencies")?;
    let currencies: Vec<CurrencyBasis> =
        serde_json::from_value(currencies).map_err(|e| Error::Corrupt {
            what: "estimate",
            detail: e.to_string(),
        })?;
    let amount: Option<Decimal> = row.try_get("amount")?;
    let currency: Option<String> = row.try_get("currency")?;
    Ok(Some(Estimate {
        computed_at: row.try_get("computed_at")?,
        from: row.try_get("window_start")?,
        to: row.try_get("window_end")?,
        leads: row.try_get("leads")?,
        sampled: row.try_get("capped")?,
        currencies,
        value: amount.zip(currency),
        reason: row.try_get("reason")?,
    }))
}

const DUE: &str = "
    SELECT d.workspace_id
    FROM (SELECT DISTINCT workspace_id FROM conversion_events
          WHERE value_estimate = 'close_rate') AS d
    LEFT JOIN conversion_value_estimates e ON e.workspace_id = d.workspace_id
    WHERE e.computed_at IS NULL OR e.computed_at < $1
    ORDER BY e.computed_at NULLS FIRST
    LIMIT $2";

/// Recomputes the estimates of at most `limit` workspaces that have a close-rate definition
/// and an estimate older than `max_age` (or none), oldest first; answers how many it did.
/// Several workers may run it at once: an estimate computed twice is stored twice, the same.
///
/// # Errors
/// [`Error::Database`].
pub async fn refresh_due_estimates(
    client: &impl GenericClient,
    max_age: std::time::Duration,
    limit: i64,
) -> Result<usize> {
    let now = OffsetDateTime::now_utc();
    let max_age = time::Duration::try_from(max_age).unwrap_or(time::Duration::MAX);
    let stale_before = now.checked_sub(max_age).unwrap_or(now);
    let stmt = client.prepare_cached(DUE).await?;
    let due: Vec<Uuid> = client
        .query(&stmt, &[&stale_before, &limit])
        .await?
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<_, _>>()?;
    for workspace_id in &due {
        refresh_estimate(client, *workspace_id, now).await?;
    }
    Ok(due.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_needs_leads_and_sales_and_never_passes_one() {
        assert_eq!(close_rate(0, 10), None);
        assert_eq!(close_rate(3, 0), None);
        assert_eq!(close_rate(1, 4), Some(Decimal::new(25, 2)));
        assert_eq!(close_rate(9, 3), Some(Decimal::ONE));
    }

    #[test]
    fn estimates_round_to_the_currencys_minor_unit() {
        assert_eq!(
            round_to_minor(Decimal::new(123_456, 4), "USD"),
            Decimal::new(1235, 2)
        );
        assert_eq!(
            round_to_minor(Decimal::new(123_456, 2), "JPY"),
            Decimal::new(1235, 0)
        );
    }
}
