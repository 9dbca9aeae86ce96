//! Conversion reports: leads, sales, revenue per currency, conversion rate and median time from
//! touch to conversion, grouped by channel, source, medium or campaign, under the last-click or
//! first-click model. Retracted and deferred events do not count.

use std::collections::{BTreeMap, HashMap};

use deadpool_postgres::Pool;
use events::{Attribution, Touchpoint};
use rust_decimal::Decimal;
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::problem::ApiError;
use crate::query::Params;
use journal::{self, Countable};

/// What rows are grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    /// `google_ads`, `meta`, `tiktok`, `microsoft`, else the utm source, else `direct`.
    Channel,
    /// The touchpoint's `utm.source`.
    Source,
    /// The touchpoint's `utm.medium`.
    Medium,
    /// The touchpoint's `utm.campaign`.
    Campaign,
}

/// Which touchpoint gets the credit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    /// The most recent click in the window.
    LastClick,
    /// The first click in the window.
    FirstClick,
}

/// A checked report request.
#[derive(Debug, Clone)]
pub struct ReportQuery {
    /// Start, inclusive.
    pub from: OffsetDateTime,
    /// End, exclusive.
    pub to: OffsetDateTime,
    /// Grouping.
    pub group_by: GroupBy,
    /// Attribution model.
    pub model: Model,
}

/// The key of rows for conversions with no utm value to group by.
pub const NONE_KEY: &str = "(none)";

impl ReportQuery {
    /// Reads `from`, `to`, `groupBy` and `model`; lists every bad parameter.
    pub fn parse(query: &str) -> Result<Self, ApiError> {
        let params = Params::parse(query, &["from", "to", "groupBy", "model"])?;
        let mut errors = Vec::new();
        let mut field = |name: &str, code: &'static str, message: &str| {
            errors.push(events::FieldError {
                field: name.into(),
                code,
                message: message.into(),
            });
        };
        let from = match params.time("from") {
            Ok(Some(at)) => Some(at),
            Ok(None) => {
                field("from", "required", "is required (RFC 3339, inclusive)");
                None
            }
            Err(e) => {
                field(&e.field, e.code, &e.message);
                None
            }
        };
        let to = match params.time("to") {
            Ok(Some(at)) => Some(at),
            Ok(None) => {
                field("to", "required", "is required (RFC 3339, exclusive)");
                None
            }
            Err(e) => {
                field(&e.field, e.code, &e.message);
                None
            }
        };
        if let (Some(from), Some(to)) = (from, to) {
            if to <= from {
                field("to", "range", "must be after from");
            }
        }
        let group_by = match params.get("groupBy").unwrap_or("channel") {
            "channel" => Some(GroupBy::Channel),
            "source" => Some(GroupBy::Source),
            "medium" => Some(GroupBy::Medium),
            "campaign" => Some(GroupBy::Campaign),
            _ => {
                field(
                    "groupBy",
                    "invalid_value",
                    "must be one of: channel, source, medium, campaign",
                );
                None
            }
        };
        let model = match params.get("model").unwrap_or("last_click") {
            "last_click" => Some(Model::LastClick),
            "first_click" => Some(Model::FirstClick),
            _ => {
                field(
                    "model",
                    "invalid_value",
                    "must be one of: last_click, first_click",
                );
                None
            }
        };
        match (from, to, group_by, model) {
            (Some(from), Some(to), Some(group_by), Some(model)) if errors.is_empty() => Ok(Self {
                from,
                to,
                group_by,
                model,
            }),
            _ => Err(ApiError::Validation(errors)),
        }
    }
}

/// One row of a report.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportRow {
    /// The group.
    pub key: String,
    /// Leads counted.
    pub leads: u64,
    /// Sales counted.
    pub sales: u64,
    /// Sales revenue per currency, as exact decimal numbers.
    pub revenue: BTreeMap<String, Money>,
    /// Sales divided by leads of the group (`null` without leads).
    pub conversion_rate: Option<f64>,
    /// Median seconds from the touchpoint's click to the conversion (`null` without touchpoints).
    pub median_time_to_conversion_seconds: Option<i64>,
}

/// A decimal amount serialised as a JSON number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Money(#[serde(with = "events::amount_serde")] pub Decimal);

/// The report.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Start, inclusive.
    pub from: String,
    /// End, exclusive.
    pub to: String,
    /// `channel`, `source`, `medium` or `campaign`.
    pub group_by: &'static str,
    /// `last_click` or `first_click`.
    pub model: &'static str,
    /// One row per group, most sales first.
    pub data: Vec<ReportRow>,
}

/// The channel of a touchpoint.
pub fn channel(touch: Option<&Touchpoint>) -> String {
    let Some(t) = touch else {
        return "direct".into();
    };
    let ids = &t.click_ids;
    if ids.has_google() {
        "google_ads".into()
    } else if ids.has_meta() {
        "meta".into()
    } else if ids.ttclid.is_some() {
        "tiktok".into()
    } else if ids.msclkid.is_some() {
        "microsoft".into()
    } else if ids.li_fat_id.is_some() {
        "linkedin".into()
    } else if ids.rdt_cid.is_some() {
        "reddit".into()
    } else if ids.sc_cid.is_some() {
        "snapchat".into()
    } else if ids.epik.is_some() {
        "pinterest".into()
    } else {
        t.utm
            .as_ref()
            .and_then(|u| u.source.clone())
            .unwrap_or_else(|| "direct".into())
    }
}

fn key(group_by: GroupBy, touch: Option<&Touchpoint>) -> String {
    let utm = touch.and_then(|t| t.utm.as_ref());
    let value = match group_by {
        GroupBy::Channel => return channel(touch),
        GroupBy::Source => utm.and_then(|u| u.source.clone()),
        GroupBy::Medium => utm.and_then(|u| u.medium.clone()),
        GroupBy::Campaign => utm.and_then(|u| u.campaign.clone()),
    };
    value.unwrap_or_else(|| NONE_KEY.into())
}

#[derive(Default)]
struct Acc {
    leads: u64,
    sales: u64,
    revenue: BTreeMap<String, Decimal>,
    waits: Vec<i64>,
}

/// Aggregates counted events with their attributions (pure; the tested core of reports).
pub fn aggregate(
    query: &ReportQuery,
    events: &[Countable],
    attributions: &HashMap<Uuid, Attribution>,
) -> Vec<ReportRow> {
    let mut groups: BTreeMap<String, Acc> = BTreeMap::new();
    for e in events {
        let attribution = attributions.get(&e.id);
        let touch = attribution.and_then(|a| match query.model {
            Model::LastClick => a.click.as_ref(),
            Model::FirstClick => a.first_touch.as_ref().or(a.click.as_ref()),
        });
        let acc = groups.entry(key(query.group_by, touch)).or_default();
        match e.kind.as_str() {
            "lead" => acc.leads += 1,
            "sale" => {
                acc.sales += 1;
                if let (Some(amount), Some(currency)) = (e.amount, &e.currency) {
                    *acc.revenue.entry(currency.clone()).or_default() += amount;
                }
            }
            _ => continue,
        }
        if let Some(t) = touch {
            acc.waits
                .push((e.occurred_at - t.clicked_at).whole_seconds().max(0));
        }
    }
    let mut rows: Vec<ReportRow> = groups
        .into_iter()
        .map(|(key, mut acc)| ReportRow {
            key,
            leads: acc.leads,
            sales: acc.sales,
            revenue: acc
                .revenue
                .into_iter()
                .map(|(c, a)| (c, Money(a.normalize())))
                .collect(),
            conversion_rate: (acc.leads > 0).then(|| acc.sales as f64 / acc.leads as f64),
            median_time_to_conversion_seconds: median(&mut acc.waits),
        })
        .collect();
    rows.sort_by(|a, b| b.sales.cmp(&a.sales).then_with(|| a.key.cmp(&b.key)));
    rows
}

fn median(values: &mut [i64]) -> Option<i64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let mid = values.len() / 2;
    Some(if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2
    } else {
        values[mid]
    })
}

/// `GET /v1/reports/conversions`.
pub async fn conversions(
    pool: &Pool,
    workspace_id: Uuid,
    query: ReportQuery,
) -> Result<Report, ApiError> {
    let client = pool.get().await?;
    let mut events = journal::countable_events(&client, workspace_id, query.from, query.to).await?;
    let ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
    // Restated events count at their latest value.
    let restated = forwarder::current_values(&client, workspace_id, &ids).await?;
    for event in &mut events {
        if let Some((amount, currency)) = restated.get(&event.id) {
            event.amount = Some(*amount);
            event.currency = Some(currency.clone());
        }
    }
    let attributions = attribution_matcher::get_attributions(&client, workspace_id, &ids).await?;
    Ok(Report {
        from: events::format_timestamp(query.from),
        to: events::format_timestamp(query.to),
        group_by: match query.group_by {
            GroupBy::Channel => "channel",
            GroupBy::Source => "source",
            GroupBy::Medium => "medium",
            GroupBy::Campaign => "campaign",
        },
        model: match query.model {
            Model::LastClick => "last_click",
            Model::FirstClick => "first_click",
        },
        data: aggregate(&query, &events, &attributions),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use events::{AttributionStatus, ClickIds, MatchedBy, Utm};
    use time::macros::datetime;

    fn touch(clicked_at: OffsetDateTime, ids: ClickIds, source: Option<&str>) -> Touchpoint {
        Touchpoint {
            click_id: None,
            clicked_at,
            click_ids: ids,
            utm: source.map(|s| Utm {
                source: Some(s.into()),
                medium: Some("cpc".into()),
                campaign: Some("spring".into()),
                ..Utm::default()
            }),
            url: None,
            referrer: None,
            ip: None,
            user_agent: None,
        }
    }

    fn matched(last: Touchpoint, first: Option<Touchpoint>) -> Attribution {
        Attribution {
            status: AttributionStatus::Matched,
            matched_by: Some(MatchedBy::ClickId),
            click: Some(last),
            model: "last_click".into(),
            first_touch: first,
            pending_until: None,
            decided_at: datetime!(2026-04-20 0:00 UTC),
            ignored_identifiers: Vec::new(),
        }
    }

    fn event(kind: &str, at: OffsetDateTime, amount: Option<(&str, &str)>) -> Countable {
        Countable {
            id: Uuid::now_v7(),
            kind: kind.into(),
            occurred_at: at,
            amount: amount.and_then(|(a, _)| a.parse().ok()),
            currency: amount.map(|(_, c)| c.into()),
        }
    }

    fn query(group_by: GroupBy, model: Model) -> ReportQuery {
        ReportQuery {
            from: datetime!(2026-04-01 0:00 UTC),
            to: datetime!(2026-05-01 0:00 UTC),
            group_by,
            model,
        }
    }

    #[test]
    fn a_known_data_set_gives_known_rows() {
        let day = datetime!(2026-04-10 12:00 UTC);
        let google = ClickIds {
            gclid: Some("g".into()),
            ..ClickIds::default()
        };
        let meta = ClickIds {
            fbclid: Some("f".into()),
            ..ClickIds::default()
        };
        let g_touch = touch(
            day - time::Duration::hours(2),
            google.clone(),
            Some("google"),
        );
        let m_touch = touch(day - time::Duration::hours(30), meta, Some("facebook"));
        let events = vec![
            event("lead", day, None),
            event("lead", day, None),
            event("lead", day, None),
            event("lead", day, None),
            event("sale", day, Some(("199.0", "USD"))),
            event("sale", day, Some(("0.10", "EUR"))),
            event("sale", day, Some(("0.20", "EUR"))),
            event("sale", day, Some(("10", "USD"))),
        ];
        let mut attributions = HashMap::new();
        for e in &events[..4] {
            attributions.insert(e.id, matched(g_touch.clone(), None));
        }
        attributions.insert(
            events[4].id,
            matched(g_touch.clone(), Some(m_touch.clone())),
        );
        attributions.insert(events[5].id, matched(g_touch.clone(), None));
        attributions.insert(events[6].id, matched(m_touch.clone(), None));
        // events[7] has no attribution: direct.

        let rows = aggregate(
            &query(GroupBy::Channel, Model::LastClick),
            &events,
            &attributions,
        );
        let keys: Vec<&str> = rows.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys, ["google_ads", "direct", "meta"]);
        let google_row = &rows[0];
        assert_eq!((google_row.leads, google_row.sales), (4, 2));
        assert_eq!(google_row.conversion_rate, Some(0.5));
        assert_eq!(google_row.revenue["USD"].0.to_string(), "199");
        assert_eq!(google_row.revenue["EUR"].0.to_string(), "0.1");
        assert_eq!(google_row.median_time_to_conversion_seconds, Some(7200));
        assert_eq!(rows[1].conversion_rate, None);
        assert_eq!(rows[1].median_time_to_conversion_seconds, None);
        assert_eq!(rows[2].revenue["EUR"].0.to_string(), "0.2");
        assert_eq!(rows[2].median_time_to_conversion_seconds, Some(30 * 3600));

        // First click moves the 199 USD sale to meta.
        let rows = aggregate(
            &query(GroupBy::Channel, Model::FirstClick),
            &events,
            &attributions,
        );
        let meta_row = rows.iter().find(|r| r.key == "meta").map(|r| r.sales);
        assert_eq!(meta_row, Some(2));

        let rows = aggregate(
            &query(GroupBy::Source, Model::LastClick),
            &events,
            &attributions,
        );
        let keys: Vec<&str> = rows.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys, ["google", "(none)", "facebook"]);
        let json = serde_json::to_string(&rows[0]).unwrap_or_default();
        assert!(
            json.contains(r#""revenue":{"EUR":0.1,"USD":199}"#),
            "{json}"
        );
    }

    #[test]
    fn bad_report_parameters_are_each_listed() {
        let err =
            ReportQuery::parse("from=2026-05-01T00:00:00Z&to=2026-04-01T00:00:00Z&groupBy=colour")
                .err();
        let Some(ApiError::Validation(errors)) = err else {
            panic!("expected a validation error");
        };
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["to", "groupBy"]);
        let Some(ApiError::Validation(errors)) = ReportQuery::parse("from=yesterday").err() else {
            panic!("expected a validation error");
        };
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["from", "to"]);
    }

    #[test]
    fn channels_follow_the_click_ids_then_the_source() {
        let at = datetime!(2026-04-10 12:00 UTC);
        let tiktok = ClickIds {
            ttclid: Some("t".into()),
            ..ClickIds::default()
        };
        assert_eq!(channel(Some(&touch(at, tiktok, Some("x")))), "tiktok");
        for (ids, expected) in [
            (
                ClickIds {
                    li_fat_id: Some("l".into()),
                    ..ClickIds::default()
                },
                "linkedin",
            ),
            (
                ClickIds {
                    rdt_cid: Some("r".into()),
                    ..ClickIds::default()
                },
                "reddit",
            ),
            (
                ClickIds {
                    sc_cid: Some("s".into()),
                    ..ClickIds::default()
                },
                "snapchat",
            ),
            (
                ClickIds {
                    epik: Some("e".into()),
                    ..ClickIds::default()
                },
                "pinterest",
            ),
        ] {
            assert_eq!(channel(Some(&touch(at, ids, Some("x")))), expected);
        }
        assert_eq!(
            channel(Some(&touch(at, ClickIds::default(), Some("newsletter")))),
            "newsletter"
        );
        assert_eq!(
            channel(Some(&touch(at, ClickIds::default(), None))),
            "direct"
        );
        assert_eq!(channel(None), "direct");
    }
}
