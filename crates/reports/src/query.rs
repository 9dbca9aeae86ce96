//! `GET /v1/reports/conversions`, answered from the rollups: leads, sales, revenue and value per
//! group under an attribution model, optionally per day, week or month (empty periods
//! included), with registered clicks, rates and the median and 90th percentile of the time from
//! touch to conversion. A report reads a few rows per group and day, never a conversion.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use deadpool_postgres::GenericClient;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde::Serialize;
use time::{Date, Duration, Month, OffsetDateTime};
use uuid::Uuid;

use crate::shares::Model;
use crate::tier::Tier;
use crate::Result;

/// What rows are grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupBy {
    /// The touch's ad platform, else its utm source, else `direct`.
    Channel,
    /// The touch's `utm.source`.
    Source,
    /// The touch's `utm.medium`.
    Medium,
    /// The touch's `utm.campaign`.
    Campaign,
    /// The conversion's `eventName`.
    EventName,
}

impl GroupBy {
    /// Every grouping.
    pub const ALL: [GroupBy; 5] = [
        GroupBy::Channel,
        GroupBy::Source,
        GroupBy::Medium,
        GroupBy::Campaign,
        GroupBy::EventName,
    ];

    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupBy::Channel => "channel",
            GroupBy::Source => "source",
            GroupBy::Medium => "medium",
            GroupBy::Campaign => "campaign",
            GroupBy::EventName => "eventName",
        }
    }

    /// The grouping of a wire name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|g| g.as_str() == name)
    }

    /// Its number in the rollups.
    pub fn number(self) -> i16 {
        match self {
            GroupBy::Channel => 0,
            GroupBy::Source => 1,
            GroupBy::Medium => 2,
            GroupBy::Campaign => 3,
            GroupBy::EventName => 4,
        }
    }

    /// Whether registered clicks can be grouped this way (a click has no event name).
    pub fn counts_clicks(self) -> bool {
        self != GroupBy::EventName
    }
}

/// The length of a period of a time series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interval {
    /// UTC days.
    Day,
    /// ISO weeks (Monday to Sunday, UTC).
    Week,
    /// Calendar months (UTC).
    Month,
}

impl Interval {
    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Interval::Day => "day",
            Interval::Week => "week",
            Interval::Month => "month",
        }
    }

    /// The interval of a wire name.
    pub fn parse(name: &str) -> Option<Self> {
        [Interval::Day, Interval::Week, Interval::Month]
            .into_iter()
            .find(|i| i.as_str() == name)
    }

    /// The start of the period that holds `day`.
    pub fn start(self, day: Date) -> Date {
        match self {
            Interval::Day => day,
            Interval::Week => day
                .checked_sub(Duration::days(i64::from(
                    day.weekday().number_days_from_monday(),
                )))
                .unwrap_or(day),
            Interval::Month => day.replace_day(1).unwrap_or(day),
        }
    }

    /// The start of the period after the one starting at `start`.
    pub fn next(self, start: Date) -> Date {
        match self {
            Interval::Day => start.next_day().unwrap_or(start),
            Interval::Week => start.checked_add(Duration::days(7)).unwrap_or(start),
            Interval::Month => {
                let (year, month) = match start.month() {
                    Month::December => (start.year() + 1, Month::January),
                    m => (start.year(), m.next()),
                };
                Date::from_calendar_date(year, month, 1).unwrap_or(start)
            }
        }
    }
}

/// The most periods one time series may have (keys times periods is the number of rows).
pub const MAX_PERIODS: usize = 1000;

/// A checked report request: whole UTC days `[from, to)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportQuery {
    /// First day counted.
    pub from: Date,
    /// First day not counted.
    pub to: Date,
    /// Grouping.
    pub group_by: GroupBy,
    /// Attribution model.
    pub model: Model,
    /// A time series of these periods, or one row per group.
    pub interval: Option<Interval>,
    /// Only conversions of this tier.
    pub tier: Option<Tier>,
}

impl ReportQuery {
    /// The starts of the periods of the time series (empty without an interval). The first
    /// period starts at or before `from`, the last ends at or after `to`; only days in
    /// `[from, to)` are counted in them.
    pub fn periods(&self) -> Vec<Date> {
        let Some(interval) = self.interval else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut start = interval.start(self.from);
        while start < self.to && out.len() <= MAX_PERIODS {
            out.push(start);
            let next = interval.next(start);
            if next <= start {
                break;
            }
            start = next;
        }
        out
    }
}

/// A decimal amount serialised as a JSON number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Num(#[serde(with = "events::amount_serde")] pub Decimal);

/// One row of a report.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportRow {
    /// The group.
    pub key: String,
    /// The start of the row's period (time series only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period: Option<String>,
    /// Registered clicks of the group in the period (`null` when grouped by event name).
    pub clicks: Option<i64>,
    /// Leads credited to the group (fractional under the multi-touch models).
    pub leads: Num,
    /// Sales credited to the group.
    pub sales: Num,
    /// Sales revenue per currency, rounded to the currency's minor unit.
    pub revenue: BTreeMap<String, Num>,
    /// Revenue plus the values of leads, per currency.
    pub value: BTreeMap<String, Num>,
    /// `sales / leads` (`null` without leads); the same as `leadToSaleRate`.
    pub conversion_rate: Option<f64>,
    /// `leads / clicks` (`null` without clicks).
    pub click_to_lead_rate: Option<f64>,
    /// `sales / leads` (`null` without leads).
    pub lead_to_sale_rate: Option<f64>,
    /// Median seconds from touch to conversion, weighted by the touches' shares.
    pub median_time_to_conversion_seconds: Option<i64>,
    /// 90th percentile of the same.
    pub p90_time_to_conversion_seconds: Option<i64>,
}

/// A report.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Start, inclusive.
    pub from: String,
    /// End, exclusive.
    pub to: String,
    /// The grouping's wire name.
    pub group_by: &'static str,
    /// The model's wire name.
    pub model: &'static str,
    /// The interval's wire name, for a time series.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<&'static str>,
    /// The tier filter, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<&'static str>,
    /// Rows: groups with the most sales first; in a time series, each group's periods in order.
    pub data: Vec<ReportRow>,
}

/// Midnight UTC of a day, as the API writes times.
pub fn day_start(day: Date) -> String {
    events::format_timestamp(day.midnight().assume_utc())
}

/// The start of a row's period, from its `day`. Each interval has a statement of its own, so
/// that a daily series reads the rollups in index order (no sort); every variant names `$4` (the
/// interval) so that they all take the same parameters.
fn period_sql(interval: Option<Interval>) -> &'static str {
    match interval {
        Some(Interval::Day) => "day",
        Some(Interval::Week) => "date_trunc('week', day::timestamp)::date",
        Some(Interval::Month) => "date_trunc('month', day::timestamp)::date",
        None => "$2::date",
    }
}

const SAME_PARAMETERS: &str = "($4::text IS NULL OR $4::text IS NOT NULL)";

fn sums_sql(interval: Option<Interval>) -> String {
    format!(
        "SELECT key, {} AS period, currency, sum(leads), sum(sales), sum(revenue), sum(value)
         FROM report_rollups
         WHERE workspace_id = $1 AND day >= $2 AND day < $3 AND model = $5 AND dim = $6
           AND ($7::text IS NULL OR tier = $7) AND {SAME_PARAMETERS}
         GROUP BY 1, 2, 3",
        period_sql(interval)
    )
}

/// The time histograms of the range, one row per day, group and tier: the reader adds them up
/// per period and group (a few thousand short arrays, where one row per bucket made hundreds of
/// thousands of rows to aggregate).
fn times_sql(interval: Option<Interval>) -> String {
    format!(
        "SELECT key, {} AS period, weights, seconds
         FROM report_histograms
         WHERE workspace_id = $1 AND day >= $2 AND day < $3 AND model = $5 AND dim = $6
           AND ($7::text IS NULL OR tier = $7) AND {SAME_PARAMETERS}",
        period_sql(interval)
    )
}

/// A time histogram: per bucket, the touches' shares and the sums of share times wait.
#[derive(Default)]
struct Histogram {
    weights: Vec<f64>,
    seconds: Vec<f64>,
}

impl Histogram {
    fn add(&mut self, weights: &[f64], seconds: &[f64]) {
        for (into, from) in [(&mut self.weights, weights), (&mut self.seconds, seconds)] {
            if into.len() < from.len() {
                into.resize(from.len(), 0.0);
            }
            for (a, b) in into.iter_mut().zip(from) {
                *a += b;
            }
        }
    }

    /// The median and 90th percentile: the mean wait of the bucket where the cumulated weight
    /// reaches the quantile, in whole seconds (ties to even). Buckets left with no weight (a
    /// retraction takes back what a credit added, up to rounding) are not counted.
    fn percentiles(&self) -> (Option<i64>, Option<i64>) {
        let kept: Vec<(f64, f64)> = self
            .weights
            .iter()
            .zip(&self.seconds)
            .filter(|(w, _)| **w > 1e-9)
            .map(|(w, s)| (*w, *s))
            .collect();
        let total: f64 = kept.iter().map(|(w, _)| w).sum();
        let at = |q: f64| {
            let mut cum = 0.0;
            let mut pick = None;
            for (w, s) in &kept {
                cum += w;
                pick = Some((s / w).round_ties_even());
                if cum >= total * q {
                    break;
                }
            }
            // A mean wait is at most some 2^63 seconds apart from nonsense; `as` saturates.
            pick.map(|p| p as i64)
        };
        (at(0.5), at(0.9))
    }
}
fn clicks_sql(interval: Option<Interval>) -> String {
    format!(
        "SELECT key, {} AS period, sum(clicks)::bigint
         FROM report_clicks
         WHERE workspace_id = $1 AND day >= $2 AND day < $3 AND dim = $5 AND {SAME_PARAMETERS}
         GROUP BY 1, 2",
        period_sql(interval)
    )
}

#[derive(Default)]
struct Sums {
    leads: Decimal,
    sales: Decimal,
    revenue: BTreeMap<String, Decimal>,
    value: BTreeMap<String, Decimal>,
}

/// Runs a report over a workspace's rollups.
pub async fn conversions(
    client: &impl GenericClient,
    workspace_id: Uuid,
    query: &ReportQuery,
) -> Result<Report> {
    let interval = query.interval.map(Interval::as_str);
    let model = query.model.number();
    let dim = query.group_by.number();
    let tier = query.tier.map(Tier::as_str);
    let sums_statement = client.prepare_cached(&sums_sql(query.interval)).await?;
    let times_statement = client.prepare_cached(&times_sql(query.interval)).await?;
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 7] = [
        &workspace_id,
        &query.from,
        &query.to,
        &interval,
        &model,
        &dim,
        &tier,
    ];
    let (sum_rows, time_rows) = futures_util::try_join!(
        client.query(&sums_statement, &params),
        client.query(&times_statement, &params),
    )?;
    let click_rows = if query.group_by.counts_clicks() {
        let statement = client.prepare_cached(&clicks_sql(query.interval)).await?;
        client
            .query(
                &statement,
                &[&workspace_id, &query.from, &query.to, &interval, &dim],
            )
            .await?
    } else {
        Vec::new()
    };

    let mut sums: HashMap<(String, Date), Sums> = HashMap::new();
    let mut totals: HashMap<String, (Decimal, Decimal, bool)> = HashMap::new();
    for row in sum_rows {
        let key: String = row.try_get(0)?;
        let period: Date = row.try_get(1)?;
        let currency: String = row.try_get(2)?;
        let (leads, sales, revenue, value): (Decimal, Decimal, Decimal, Decimal) = (
            row.try_get(3)?,
            row.try_get(4)?,
            row.try_get(5)?,
            row.try_get(6)?,
        );
        let total = totals.entry(key.clone()).or_default();
        total.0 += leads;
        total.1 += sales;
        total.2 |= !(leads.is_zero() && sales.is_zero() && value.is_zero());
        let s = sums.entry((key, period)).or_default();
        s.leads += leads;
        s.sales += sales;
        if !currency.is_empty() {
            if !revenue.is_zero() {
                *s.revenue.entry(currency.clone()).or_default() += revenue;
            }
            if !value.is_zero() {
                *s.value.entry(currency).or_default() += value;
            }
        }
    }
    let mut clicks: HashMap<(String, Date), i64> = HashMap::new();
    for row in click_rows {
        let key: String = row.try_get(0)?;
        let n: i64 = row.try_get(2)?;
        if n != 0 {
            totals.entry(key.clone()).or_default().2 = true;
        }
        *clicks.entry((key, row.try_get(1)?)).or_default() += n;
    }
    let mut histograms: HashMap<(String, Date), Histogram> = HashMap::new();
    for row in time_rows {
        let key: String = row.try_get(0)?;
        let weights: Vec<f64> = row.try_get(2)?;
        let seconds: Vec<f64> = row.try_get(3)?;
        histograms
            .entry((key, row.try_get(1)?))
            .or_default()
            .add(&weights, &seconds);
    }
    let times: HashMap<(String, Date), (Option<i64>, Option<i64>)> = histograms
        .into_iter()
        .map(|(at, h)| (at, h.percentiles()))
        .collect();

    // Groups with anything to show, most sales first.
    let mut keys: Vec<(String, Decimal, Decimal)> = totals
        .into_iter()
        .filter(|(_, t)| t.2)
        .map(|(k, t)| (k, t.0, t.1))
        .collect();
    keys.sort_by(|a, b| b.2.cmp(&a.2).then(b.1.cmp(&a.1)).then(a.0.cmp(&b.0)));

    let periods: Vec<Option<Date>> = match query.interval {
        None => vec![None],
        Some(_) => query.periods().into_iter().map(Some).collect(),
    };
    let mut data = Vec::with_capacity(keys.len() * periods.len());
    for (key, _, _) in keys {
        for period in &periods {
            let at = period.unwrap_or(query.from);
            let lookup = (key.clone(), at);
            let s = sums.remove(&lookup).unwrap_or_default();
            let n_clicks = query
                .group_by
                .counts_clicks()
                .then(|| clicks.get(&lookup).copied().unwrap_or(0));
            let (median, p90) = times.get(&lookup).copied().unwrap_or((None, None));
            data.push(row(
                key.clone(),
                period.map(day_start),
                n_clicks,
                s,
                median,
                p90,
            ));
        }
    }
    Ok(Report {
        from: day_start(query.from),
        to: day_start(query.to),
        group_by: query.group_by.as_str(),
        model: query.model.as_str(),
        interval: query.interval.map(Interval::as_str),
        tier: query.tier.map(Tier::as_str),
        data,
    })
}

fn ratio(a: Decimal, b: Decimal) -> Option<f64> {
    if b.is_zero() {
        None
    } else {
        (a / b).round_dp(6).to_f64()
    }
}

fn money(amounts: BTreeMap<String, Decimal>) -> BTreeMap<String, Num> {
    amounts
        .into_iter()
        .map(|(currency, amount)| {
            let dp = iso_currency::Currency::from_code(&currency)
                .and_then(|c| c.exponent())
                .map_or(2, u32::from);
            (currency, Num(amount.round_dp(dp).normalize()))
        })
        .collect()
}

fn row(
    key: String,
    period: Option<String>,
    clicks: Option<i64>,
    s: Sums,
    median: Option<i64>,
    p90: Option<i64>,
) -> ReportRow {
    let lead_to_sale = ratio(s.sales, s.leads);
    ReportRow {
        key,
        period,
        clicks,
        leads: Num(s.leads.round_dp(6).normalize()),
        sales: Num(s.sales.round_dp(6).normalize()),
        revenue: money(s.revenue),
        value: money(s.value),
        conversion_rate: lead_to_sale,
        click_to_lead_rate: clicks.and_then(|c| ratio(s.leads, Decimal::from(c))),
        lead_to_sale_rate: lead_to_sale,
        median_time_to_conversion_seconds: median,
        p90_time_to_conversion_seconds: p90,
    }
}

/// The report as CSV (RFC 4180): one line per row; revenue and value get a column per currency
/// of the report (`revenue_USD`, `value_EUR`). A cell that a spreadsheet would run as a formula
/// starts with `'`.
pub fn to_csv(report: &Report) -> String {
    let currencies: BTreeSet<&str> = report
        .data
        .iter()
        .flat_map(|r| r.revenue.keys().chain(r.value.keys()))
        .map(String::as_str)
        .collect();
    let series = report.interval.is_some();
    let mut header: Vec<String> = vec!["key".into()];
    if series {
        header.push("period".into());
    }
    header.extend(["clicks", "leads", "sales"].map(String::from));
    header.extend(currencies.iter().map(|c| format!("revenue_{c}")));
    header.extend(currencies.iter().map(|c| format!("value_{c}")));
    header.extend(
        [
            "conversionRate",
            "clickToLeadRate",
            "leadToSaleRate",
            "medianTimeToConversionSeconds",
            "p90TimeToConversionSeconds",
        ]
        .map(String::from),
    );
    let mut out = header.join(",");
    out.push_str("\r\n");
    let opt = |v: Option<String>| v.unwrap_or_default();
    for r in &report.data {
        let mut cells = vec![cell(&r.key)];
        if series {
            cells.push(opt(r.period.clone()));
        }
        cells.push(opt(r.clicks.map(|c| c.to_string())));
        cells.push(r.leads.0.to_string());
        cells.push(r.sales.0.to_string());
        for c in &currencies {
            cells.push(r.revenue.get(*c).map_or("0".into(), |m| m.0.to_string()));
        }
        for c in &currencies {
            cells.push(r.value.get(*c).map_or("0".into(), |m| m.0.to_string()));
        }
        cells.push(opt(r.conversion_rate.map(|v| v.to_string())));
        cells.push(opt(r.click_to_lead_rate.map(|v| v.to_string())));
        cells.push(opt(r.lead_to_sale_rate.map(|v| v.to_string())));
        cells.push(opt(r
            .median_time_to_conversion_seconds
            .map(|v| v.to_string())));
        cells.push(opt(r.p90_time_to_conversion_seconds.map(|v| v.to_string())));
        out.push_str(&cells.join(","));
        out.push_str("\r\n");
    }
    out
}

fn cell(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

/// Today's UTC date (for defaults).
pub fn today() -> Date {
    OffsetDateTime::now_utc().date()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    fn query(from: Date, to: Date, interval: Interval) -> ReportQuery {
        ReportQuery {
            from,
            to,
            group_by: GroupBy::Channel,
            model: Model::LastClick,
            interval: Some(interval),
            tier: None,
        }
    }

    #[test]
    fn periods_cover_the_range_with_calendar_starts() {
        let q = query(date!(2026 - 04 - 29), date!(2026 - 05 - 02), Interval::Day);
        assert_eq!(
            q.periods(),
            [
                date!(2026 - 04 - 29),
                date!(2026 - 04 - 30),
                date!(2026 - 05 - 01)
            ]
        );
        // 2026-04-01 is a Wednesday: its ISO week starts on Monday 2026-03-30.
        let q = query(date!(2026 - 04 - 01), date!(2026 - 04 - 15), Interval::Week);
        assert_eq!(
            q.periods(),
            [
                date!(2026 - 03 - 30),
                date!(2026 - 04 - 06),
                date!(2026 - 04 - 13)
            ]
        );
        let q = query(
            date!(2026 - 11 - 15),
            date!(2027 - 02 - 01),
            Interval::Month,
        );
        assert_eq!(
            q.periods(),
            [
                date!(2026 - 11 - 01),
                date!(2026 - 12 - 01),
                date!(2027 - 01 - 01)
            ]
        );
    }

    #[test]
    fn percentiles_are_the_mean_waits_of_the_buckets_reaching_them() {
        let mut h = Histogram::default();
        // Two histograms of one period: half the weight waits 10 s, a quarter 100 s, a quarter
        // 1000 s.
        h.add(&[0.0, 0.5, 0.125], &[0.0, 5.0, 12.5]);
        h.add(&[0.0, 0.0, 0.125, 0.25], &[0.0, 0.0, 12.5, 250.0]);
        assert_eq!(h.percentiles(), (Some(10), Some(1000)));
        // What a retraction takes back leaves no bucket behind.
        h.add(&[0.0, -0.5, -0.25, -0.25], &[0.0, -5.0, -25.0, -250.0]);
        assert_eq!(h.percentiles(), (None, None));
        assert_eq!(Histogram::default().percentiles(), (None, None));
    }

    #[test]
    fn csv_quotes_and_defuses_cells() {
        assert_eq!(cell("google"), "google");
        assert_eq!(cell("a,b"), "\"a,b\"");
        assert_eq!(cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(cell("=HYPERLINK(1)"), "'=HYPERLINK(1)");
    }
}
