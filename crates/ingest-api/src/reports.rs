//! The HTTP side of reports: checks `GET /v1/reports/conversions` parameters (every bad one
//! listed) into a [`reports::ReportQuery`], and renders a conversion's credit. The reports
//! themselves are the `reports` crate's, read from its rollups.

use deadpool_postgres::Pool;
use events::FieldError;
use serde::Serialize;
use time::{Date, Time};
use uuid::Uuid;

use crate::problem::ApiError;
use crate::query::Params;
use reports::{GroupBy, Interval, Model, ReportQuery, Tier};

/// The parameters `GET /v1/reports/conversions` takes.
pub const PARAMS: [&str; 6] = ["from", "to", "groupBy", "model", "interval", "tier"];

fn error(field: &str, code: &'static str, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        code,
        message: message.into(),
    }
}

/// A day boundary: a date (`2026-04-01`) or an RFC 3339 time at midnight UTC. Reports count
/// whole UTC days (their rollups are per day).
fn day(params: &Params, name: &str, errors: &mut Vec<FieldError>) -> Option<Date> {
    let Some(raw) = params.get(name) else {
        errors.push(error(
            name,
            "required",
            "is required: a date (2026-04-01) or midnight UTC (2026-04-01T00:00:00Z)",
        ));
        return None;
    };
    let format = time::macros::format_description!("[year]-[month]-[day]");
    if let Ok(date) = Date::parse(raw, &format) {
        return Some(date);
    }
    match events::parse_timestamp(raw) {
        Ok(at) => {
            let utc = at.to_offset(time::UtcOffset::UTC);
            if utc.time() == Time::MIDNIGHT {
                Some(utc.date())
            } else {
                errors.push(error(
                    name,
                    "whole_day",
                    "reports count whole UTC days: give a date or a time at 00:00:00Z",
                ));
                None
            }
        }
        Err(_) => {
            errors.push(error(
                name,
                "format",
                "must be a date (2026-04-01) or an RFC 3339 time at midnight UTC",
            ));
            None
        }
    }
}

/// Reads `from`, `to`, `groupBy`, `model`, `interval` and `tier`; lists every bad parameter.
pub fn parse(query: &str) -> Result<ReportQuery, ApiError> {
    let params = Params::parse(query, &PARAMS)?;
    let mut errors = Vec::new();
    let from = day(&params, "from", &mut errors);
    let to = day(&params, "to", &mut errors);
    if let (Some(from), Some(to)) = (from, to) {
        if to <= from {
            errors.push(error("to", "range", "must be after from"));
        }
    }
    let group_by = GroupBy::parse(params.get("groupBy").unwrap_or("channel"));
    if group_by.is_none() {
        errors.push(error(
            "groupBy",
            "invalid_value",
            "must be one of: channel, source, medium, campaign, eventName",
        ));
    }
    let model = Model::parse(params.get("model").unwrap_or("last_click"));
    if model.is_none() {
        errors.push(error(
            "model",
            "invalid_value",
            "must be one of: last_click, first_click, linear, position_based, time_decay",
        ));
    }
    let interval = match params.get("interval") {
        None => Ok(None),
        Some(raw) => Interval::parse(raw).map(Some).ok_or(()),
    };
    if interval.is_err() {
        errors.push(error(
            "interval",
            "invalid_value",
            "must be one of: day, week, month",
        ));
    }
    let tier = match params.get("tier") {
        None => Ok(None),
        Some(raw) => Tier::parse(raw).map(Some).ok_or(()),
    };
    if tier.is_err() {
        errors.push(error(
            "tier",
            "invalid_value",
            "must be one of: macro, micro",
        ));
    }
    match (from, to, group_by, model, interval, tier) {
        (Some(from), Some(to), Some(group_by), Some(model), Ok(interval), Ok(tier))
            if errors.is_empty() =>
        {
            let query = ReportQuery {
                from,
                to,
                group_by,
                model,
                interval,
                tier,
            };
            let periods = query.periods().len();
            if periods > reports::query::MAX_PERIODS {
                return Err(ApiError::Validation(vec![error(
                    "interval",
                    "too_many_periods",
                    format!(
                        "the range holds more than {} periods of this interval: use a longer \
                         interval or a shorter range",
                        reports::query::MAX_PERIODS
                    ),
                )]));
            }
            Ok(query)
        }
        _ => Err(ApiError::Validation(errors)),
    }
}

/// `GET /v1/reports/conversions`.
pub async fn conversions(
    pool: &Pool,
    workspace_id: Uuid,
    query: ReportQuery,
) -> Result<reports::Report, ApiError> {
    let mut client = pool.get().await?;
    // One snapshot for the report's statements, and room to aggregate a time series in memory.
    let tx = client
        .build_transaction()
        .read_only(true)
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .start()
        .await?;
    tx.batch_execute("SET LOCAL work_mem = '64MB'").await?;
    let report = reports::conversions(&tx, workspace_id, &query).await?;
    tx.commit().await?;
    Ok(report)
}

/// One touch of a conversion and its share under each model.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreditTouch {
    /// When the click happened (`null` for a conversion without a touch).
    pub clicked_at: Option<String>,
    /// Its channel.
    pub channel: String,
    /// Its utm source.
    pub source: Option<String>,
    /// Its utm medium.
    pub medium: Option<String>,
    /// Its utm campaign.
    pub campaign: Option<String>,
    /// Its share per model (`last_click`, `first_click`, `linear`, `position_based`,
    /// `time_decay`); each model's shares of one conversion sum to exactly 1.
    pub shares: std::collections::BTreeMap<&'static str, reports::query::Num>,
}

/// `GET /v1/events/{id}/credit`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Credit {
    /// The event.
    pub event_id: String,
    /// Whether the conversion has been credited (false while it waits for the matcher, and for
    /// deferred leads, which are not counted).
    pub credited: bool,
    /// The tier it is counted under.
    pub tier: Option<&'static str>,
    /// Its touches, oldest first.
    pub touches: Vec<CreditTouch>,
}

/// The credit of one conversion, or 404 when the workspace has no such event.
pub async fn credit(pool: &Pool, workspace_id: Uuid, wire_id: &str) -> Result<Credit, ApiError> {
    let id = crate::ids::from_wire(crate::ids::EVENT, wire_id).ok_or(ApiError::NotFound)?;
    let client = pool.get().await?;
    if journal::get_events(&client, workspace_id, &[id])
        .await?
        .is_empty()
    {
        return Err(ApiError::NotFound);
    }
    let shares = reports::shares_of(&client, workspace_id, id).await?;
    let tier = reports::conversion_tier(&client, workspace_id, id).await?;
    Ok(Credit {
        event_id: crate::ids::to_wire(crate::ids::EVENT, id),
        credited: !shares.is_empty(),
        tier: tier.map(Tier::as_str),
        touches: shares
            .into_iter()
            .map(|c| CreditTouch {
                clicked_at: c.clicked_at.map(events::format_timestamp),
                channel: c.channel,
                source: c.source,
                medium: c.medium,
                campaign: c.campaign,
                shares: Model::ALL
                    .into_iter()
                    .zip(c.shares)
                    .map(|(m, s)| (m.as_str(), reports::query::Num(s.normalize())))
                    .collect(),
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(query: &str) -> Vec<String> {
        match parse(query) {
            Err(ApiError::Validation(errors)) => errors.into_iter().map(|e| e.field).collect(),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn bad_report_parameters_are_each_listed() {
        assert_eq!(
            fields("from=2026-05-01T00:00:00Z&to=2026-04-01T00:00:00Z&groupBy=colour"),
            ["to", "groupBy"]
        );
        assert_eq!(fields("from=yesterday"), ["from", "to"]);
        assert_eq!(
            fields(
                "from=2026-04-01&to=2026-05-01T12:00:00Z&model=u_shaped&interval=year&tier=gold"
            ),
            ["to", "model", "interval", "tier"]
        );
        assert_eq!(
            fields("from=2000-01-01&to=2026-01-01&interval=day"),
            ["interval"]
        );
    }

    #[test]
    fn days_are_dates_or_utc_midnights() {
        let q = parse(
            "from=2026-04-01&to=2026-04-30T22:00:00-02:00&groupBy=eventName&model=time_decay\
             &interval=week&tier=micro",
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(q.from, time::macros::date!(2026 - 04 - 01));
        assert_eq!(q.to, time::macros::date!(2026 - 05 - 01));
        assert_eq!(q.group_by, GroupBy::EventName);
        assert_eq!(q.model, Model::TimeDecay);
        assert_eq!(q.interval, Some(Interval::Week));
        assert_eq!(q.tier, Some(Tier::Micro));
    }
}
