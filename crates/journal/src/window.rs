//! What the stored events of a trailing window add up to: the leads and the sales per currency
//! with their median amount, for the conversion-events catalog's close-rate estimate of a
//! lead's value. Bounded: it reads at most a given number of the newest events of the window
//! (an index range scan on the primary key), and says when it stopped short of the window.

use deadpool_postgres::GenericClient;
use rust_decimal::Decimal;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::retention::time_bound;

/// One currency's sales in the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrencySales {
    /// ISO 4217 code.
    pub currency: String,
    /// Sales counted.
    pub sales: i64,
    /// Their median amount (the mean of the two middle amounts for an even count).
    pub median: Decimal,
}

/// The leads and sales of a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowCounts {
    /// Leads counted (deferred and retracted ones left out).
    pub leads: i64,
    /// Sales with an amount, per currency, most sales first.
    pub sales: Vec<CurrencySales>,
    /// The oldest event read: the window's start unless the cap was reached first.
    pub from: OffsetDateTime,
    /// True when the cap was reached before the window's start.
    pub capped: bool,
}

const WINDOW: &str = "
    WITH recent AS (
        SELECT id, kind, amount, currency, occurred_at FROM events
        WHERE workspace_id = $1 AND id >= $2 AND occurred_at >= $4
          AND retracted_at IS NULL AND mode <> 'deferred'
        ORDER BY id DESC
        LIMIT $3
    ),
    span AS (SELECT count(*) AS n, min(occurred_at) AS oldest FROM recent)
    SELECT g.kind, g.currency, g.n, g.lower_median, g.upper_median, span.n, span.oldest
    FROM span LEFT JOIN (
        SELECT kind, currency, count(*) AS n,
               percentile_disc(0.5) WITHIN GROUP (ORDER BY amount) AS lower_median,
               percentile_disc(0.5) WITHIN GROUP (ORDER BY amount DESC) AS upper_median
        FROM recent
        WHERE kind = 'lead' OR (kind = 'sale' AND amount IS NOT NULL AND currency IS NOT NULL)
        GROUP BY kind, currency
    ) AS g ON true";

/// The leads and sales of `workspace_id` that happened since `since`, reading at most `cap` of
/// the newest events. An event happens at most a few minutes before it is received, so the
/// primary key's time order bounds the scan.
///
/// # Errors
/// The database's.
pub async fn window_counts(
    client: &impl GenericClient,
    workspace_id: Uuid,
    since: OffsetDateTime,
    cap: i64,
) -> Result<WindowCounts, tokio_postgres::Error> {
    let stmt = client.prepare_cached(WINDOW).await?;
    let lower = time_bound(since - events::MAX_FUTURE_SKEW);
    let rows = client
        .query(&stmt, &[&workspace_id, &lower, &cap, &since])
        .await?;
    let mut out = WindowCounts {
        leads: 0,
        sales: Vec::new(),
        from: since,
        capped: false,
    };
    for row in rows {
        let read: i64 = row.try_get(5)?;
        let oldest: Option<OffsetDateTime> = row.try_get(6)?;
        out.capped = read >= cap;
        if out.capped {
            out.from = oldest.unwrap_or(since).max(since);
        }
        let kind: Option<String> = row.try_get(0)?;
        let n: Option<i64> = row.try_get(2)?;
        match (kind.as_deref(), n) {
            (Some("lead"), Some(n)) => out.leads += n,
            (Some("sale"), Some(n)) => {
                let currency: Option<String> = row.try_get(1)?;
                let lower: Option<Decimal> = row.try_get(3)?;
                let upper: Option<Decimal> = row.try_get(4)?;
                if let (Some(currency), Some(lower), Some(upper)) = (currency, lower, upper) {
                    out.sales.push(CurrencySales {
                        currency,
                        sales: n,
                        median: (lower + upper) / Decimal::TWO,
                    });
                }
            }
            _ => {}
        }
    }
    out.sales.sort_by(|a, b| {
        b.sales
            .cmp(&a.sales)
            .then_with(|| a.currency.cmp(&b.currency))
    });
    Ok(out)
}
