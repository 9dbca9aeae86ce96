//! What operators see and do with dispatches: lists and details with every attempt, the
//! dispatches of one event, single and bulk retry, queue statistics, and retractions.

use std::collections::BTreeMap;

use deadpool_postgres::GenericClient;
use events::{DestinationType, FieldError};
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::destinations::{page_params, parse_type, DestinationConfig};
use crate::queue::{self, DispatchKind, DispatchStatus};
use crate::{ids, Error, Page, Result};
use platforms::delivery::ConfirmationStatus;

/// The default page size of the dispatch list.
pub const LIMIT_DEFAULT: i64 = 50;

/// A dispatch as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DispatchView {
    /// `dsp_…`.
    pub id: String,
    /// `evt_…`: the event it delivers.
    pub event_id: String,
    /// `dst_…`.
    pub destination: String,
    /// The destination's type.
    #[serde(rename = "type")]
    pub destination_type: DestinationType,
    /// `conversion` or `retraction`.
    pub kind: DispatchKind,
    /// Where it stands.
    pub status: DispatchStatus,
    /// Attempts made so far.
    pub attempts: i32,
    /// When the next attempt is due (queued and retrying dispatches).
    pub next_attempt_at: Option<String>,
    /// The last attempt's error, the platform's message where there was one.
    pub last_error: Option<String>,
    /// Why it was skipped or cancelled.
    pub reason: Option<String>,
    /// When it was created (routed).
    pub created_at: String,
    /// When its status last changed.
    pub updated_at: String,
    /// For a succeeded dispatch: whether the platform confirmed it (`null` for dispatches that
    /// succeeded before confirmations were tracked).
    pub confirmation: Option<Confirmation>,
}

/// Whether the platform confirmed a conversion it accepted.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Confirmation {
    /// `pending`, `confirmed`, `partially_failed` or `failed`.
    pub status: ConfirmationStatus,
    /// When the platform's answer was last read (`null` while the first check is due).
    pub checked_at: Option<String>,
    /// What the platform reported (counts per reason; the platform does not say which event).
    pub detail: Option<String>,
    /// The platform's id of the upload request that carried it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upload_request: Option<String>,
}

/// One attempt of a dispatch.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttemptView {
    /// 1 for the first attempt.
    pub attempt: i32,
    /// When it started.
    pub at: String,
    /// How long it took.
    pub duration_ms: i32,
    /// The HTTP status of the answer that decided it.
    pub http_status: Option<u16>,
    /// `succeeded`, `already_delivered`, `retry`, `permanent`, `skipped`, `error` or `lease_expired`.
    pub outcome: String,
    /// What went wrong, the platform's message where there was one.
    pub error: Option<String>,
    /// The start of the answer, with nothing secret in it.
    pub response_excerpt: Option<String>,
}

/// A dispatch with its attempts, oldest first. On the wire `attempts` is the list and the
/// count is `attemptCount` (one key, one meaning).
#[derive(Debug, Clone, PartialEq)]
pub struct DispatchDetail {
    /// The dispatch.
    pub dispatch: DispatchView,
    /// For a retraction: the reason given.
    pub retract_reason: Option<String>,
    /// Every attempt.
    pub attempts: Vec<AttemptView>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DetailWire<'a> {
    id: &'a str,
    event_id: &'a str,
    destination: &'a str,
    #[serde(rename = "type")]
    destination_type: DestinationType,
    kind: DispatchKind,
    status: DispatchStatus,
    attempt_count: i32,
    next_attempt_at: &'a Option<String>,
    last_error: &'a Option<String>,
    reason: &'a Option<String>,
    created_at: &'a str,
    updated_at: &'a str,
    confirmation: &'a Option<Confirmation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retract_reason: &'a Option<String>,
    attempts: &'a [AttemptView],
}

impl Serialize for DispatchDetail {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        let d = &self.dispatch;
        DetailWire {
            id: &d.id,
            event_id: &d.event_id,
            destination: &d.destination,
            destination_type: d.destination_type,
            kind: d.kind,
            status: d.status,
            attempt_count: d.attempts,
            next_attempt_at: &d.next_attempt_at,
            last_error: &d.last_error,
            reason: &d.reason,
            created_at: &d.created_at,
            updated_at: &d.updated_at,
            confirmation: &d.confirmation,
            retract_reason: &self.retract_reason,
            attempts: &self.attempts,
        }
        .serialize(serializer)
    }
}

/// A dispatch as `GET /v1/events/{id}` lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DispatchSummary {
    /// `dsp_…`.
    pub id: String,
    /// `dst_…`.
    pub destination: String,
    /// The destination's type.
    #[serde(rename = "type")]
    pub destination_type: DestinationType,
    /// `conversion` or `retraction`.
    pub kind: DispatchKind,
    /// Where it stands.
    pub status: DispatchStatus,
    /// Attempts made so far.
    pub attempts: i32,
    /// The last attempt's error.
    pub last_error: Option<String>,
    /// Why it was skipped or cancelled.
    pub reason: Option<String>,
    /// For a succeeded dispatch: whether the platform confirmed it.
    pub confirmation: Option<Confirmation>,
}

impl From<&DispatchView> for DispatchSummary {
    fn from(view: &DispatchView) -> Self {
        Self {
            id: view.id.clone(),
            destination: view.destination.clone(),
            destination_type: view.destination_type,
            kind: view.kind,
            status: view.status,
            attempts: view.attempts,
            last_error: view.last_error.clone(),
            reason: view.reason.clone(),
            confirmation: view.confirmation.clone(),
        }
    }
}

const VIEW_COLUMNS: &str = "workspace_id, id, event_id, destination_id, destination_type, kind, \
    status, attempts, due_at, last_error, reason, retract_reason, created_at, updated_at, \
    confirmation, confirmation_request, confirmation_checked_at, confirmation_detail";

fn corrupt(what: &'static str, raw: &str) -> Error {
    Error::Corrupt {
        what,
        detail: raw.to_owned(),
    }
}

fn view_of(row: &Row) -> Result<DispatchView> {
    let status_raw: &str = row.try_get("status")?;
    let status =
        DispatchStatus::parse(status_raw).ok_or_else(|| corrupt("dispatch status", status_raw))?;
    let kind_raw: &str = row.try_get("kind")?;
    let kind = DispatchKind::parse(kind_raw).ok_or_else(|| corrupt("dispatch kind", kind_raw))?;
    let due_at: OffsetDateTime = row.try_get("due_at")?;
    let created_at: OffsetDateTime = row.try_get("created_at")?;
    let updated_at: OffsetDateTime = row.try_get("updated_at")?;
    Ok(DispatchView {
        id: ids::to_wire(ids::DISPATCH, row.try_get("id")?),
        event_id: ids::to_wire(ids::EVENT, row.try_get("event_id")?),
        destination: ids::to_wire(ids::DESTINATION, row.try_get("destination_id")?),
        destination_type: parse_type(row.try_get("destination_type")?)?,
        kind,
        status,
        attempts: row.try_get("attempts")?,
        next_attempt_at: matches!(status, DispatchStatus::Queued | DispatchStatus::Retrying)
            .then(|| events::format_timestamp(due_at)),
        last_error: row.try_get("last_error")?,
        reason: row.try_get("reason")?,
        created_at: events::format_timestamp(created_at),
        updated_at: events::format_timestamp(updated_at),
        confirmation: confirmation_of(row)?,
    })
}

/// The confirmation columns of a dispatch row; absent ones (a row read by a statement without
/// them) count as none.
fn confirmation_of(row: &Row) -> Result<Option<Confirmation>> {
    let Ok(raw) = row.try_get::<_, Option<&str>>("confirmation") else {
        return Ok(None);
    };
    let Some(raw) = raw else {
        return Ok(None);
    };
    let status =
        ConfirmationStatus::parse(raw).ok_or_else(|| corrupt("dispatch confirmation", raw))?;
    let checked_at: Option<OffsetDateTime> = row.try_get("confirmation_checked_at")?;
    Ok(Some(Confirmation {
        status,
        checked_at: checked_at.map(events::format_timestamp),
        detail: row.try_get("confirmation_detail")?,
        upload_request: row.try_get("confirmation_request")?,
    }))
}

/// Filters of the dispatch list; every one optional.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DispatchFilter {
    /// Only this status.
    pub status: Option<DispatchStatus>,
    /// Only this destination (`dst_…`).
    pub destination: Option<String>,
    /// Only destinations of this type (`google_ads`, `linkedin`, …).
    pub destination_type: Option<DestinationType>,
    /// Only this event's dispatches.
    pub event_id: Option<Uuid>,
    /// Created at or after.
    pub since: Option<OffsetDateTime>,
    /// Only dispatches whose confirmation stands so.
    pub confirmation: Option<ConfirmationStatus>,
    /// Page size, 1 to 100.
    pub limit: i64,
    /// `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

impl Default for DispatchFilter {
    fn default() -> Self {
        Self {
            status: None,
            destination: None,
            destination_type: None,
            event_id: None,
            since: None,
            confirmation: None,
            limit: LIMIT_DEFAULT,
            cursor: None,
        }
    }
}

fn field_error(field: &str, code: &'static str, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.to_owned(),
        code,
        message: message.into(),
    }
}

const STATUS_VALUES: &str = "queued, in_flight, succeeded, retrying, failed, skipped, cancelled";

impl DispatchFilter {
    /// Reads the query parameters of `GET /v1/dispatches` (`status`, `confirmation`,
    /// `destination`, `type`, `eventId`, `since`, `limit`, `cursor`), listing every bad one.
    ///
    /// # Errors
    /// [`Error::Invalid`].
    pub fn from_pairs<I, K, V>(pairs: I) -> Result<Self>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut filter = Self::default();
        let mut errors = Vec::new();
        for (name, value) in pairs {
            let (name, value) = (name.as_ref(), value.as_ref());
            match name {
                "status" => match DispatchStatus::parse(value) {
                    Some(status) => filter.status = Some(status),
                    None => errors.push(field_error(
                        name,
                        "invalid_value",
                        format!("must be one of: {STATUS_VALUES}"),
                    )),
                },
                "confirmation" => match ConfirmationStatus::parse(value) {
                    Some(confirmation) => filter.confirmation = Some(confirmation),
                    None => errors.push(field_error(
                        name,
                        "invalid_value",
                        "must be one of: pending, confirmed, partially_failed, failed",
                    )),
                },
                "destination" => match ids::from_wire(ids::DESTINATION, value) {
                    Some(_) => filter.destination = Some(value.to_owned()),
                    None => errors.push(field_error(
                        name,
                        "format",
                        "must be a destination id (dst_…)",
                    )),
                },
                "type" => match DestinationType::ALL
                    .into_iter()
                    .find(|t| t.as_str() == value)
                {
                    Some(destination_type) => filter.destination_type = Some(destination_type),
                    None => errors.push(field_error(
                        name,
                        "invalid_value",
                        format!(
                            "must be one of: {}",
                            DestinationType::ALL.map(DestinationType::as_str).join(", ")
                        ),
                    )),
                },
                "eventId" => match ids::from_wire(ids::EVENT, value) {
                    Some(id) => filter.event_id = Some(id),
                    None => errors.push(field_error(name, "format", "must be an event id (evt_…)")),
                },
                "since" => match events::parse_timestamp(value) {
                    Ok(at) => filter.since = Some(at),
                    Err(_) => errors.push(field_error(
                        name,
                        "format",
                        "must be an RFC 3339 time with offset, e.g. 2026-04-10T12:34:56.000Z",
                    )),
                },
                "limit" => match value.parse::<i64>() {
                    Ok(n) if (1..=crate::destinations::LIMIT_MAX).contains(&n) => filter.limit = n,
                    _ => errors.push(field_error(
                        name,
                        "range",
                        format!(
                            "must be an integer from 1 to {}",
                            crate::destinations::LIMIT_MAX
                        ),
                    )),
                },
                "cursor" => match ids::from_wire(ids::DISPATCH, value) {
                    Some(_) => filter.cursor = Some(value.to_owned()),
                    None => errors.push(field_error(
                        name,
                        "format",
                        "must be a nextCursor of a previous page",
                    )),
                },
                _ => errors.push(field_error(
                    name,
                    "unknown_field",
                    "is not a parameter of this endpoint",
                )),
            }
        }
        if errors.is_empty() {
            Ok(filter)
        } else {
            Err(Error::Invalid(errors))
        }
    }
}

/// A page of the workspace's dispatches, newest first.
///
/// # Errors
/// [`Error::Invalid`] for a bad limit, cursor or destination id; [`Error::Database`].
pub async fn list_dispatches(
    client: &impl GenericClient,
    workspace_id: Uuid,
    filter: DispatchFilter,
) -> Result<Page<DispatchView>> {
    let before = page_params(ids::DISPATCH, filter.cursor.as_deref(), filter.limit)?;
    let destination = match filter.destination.as_deref() {
        None => None,
        Some(raw) => Some(ids::from_wire(ids::DESTINATION, raw).ok_or_else(|| {
            Error::invalid("destination", "format", "must be a destination id (dst_…)")
        })?),
    };
    // Only the filters given go into the statement, so that each combination gets a plan of its
    // own that uses the index it can (a `$n IS NULL OR …` filter defeats them).
    let status = filter.status.map(DispatchStatus::as_str);
    let confirmation = filter.confirmation.map(ConfirmationStatus::as_str);
    let destination_type = filter.destination_type.map(DestinationType::as_str);
    let limit = filter.limit + 1;
    let mut sql = format!("SELECT {VIEW_COLUMNS} FROM dispatches WHERE workspace_id = $1");
    let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&workspace_id];
    fn add<'a>(
        sql: &mut String,
        params: &mut Vec<&'a (dyn tokio_postgres::types::ToSql + Sync)>,
        condition: &str,
        value: &'a (dyn tokio_postgres::types::ToSql + Sync),
    ) {
        params.push(value);
        sql.push_str(&format!(" AND {condition} ${}", params.len()));
    }
    if let Some(status) = &status {
        add(&mut sql, &mut params, "status =", status);
    }
    if let Some(destination) = &destination {
        add(&mut sql, &mut params, "destination_id =", destination);
    }
    if let Some(confirmation) = &confirmation {
        add(&mut sql, &mut params, "confirmation =", confirmation);
    }
    if let Some(destination_type) = &destination_type {
        add(
            &mut sql,
            &mut params,
            "destination_type =",
            destination_type,
        );
    }
    if let Some(event_id) = &filter.event_id {
        add(&mut sql, &mut params, "event_id =", event_id);
    }
    if let Some(since) = &filter.since {
        add(&mut sql, &mut params, "created_at >=", since);
    }
    if let Some(before) = &before {
        add(&mut sql, &mut params, "id <", before);
    }
    params.push(&limit);
    sql.push_str(&format!(" ORDER BY id DESC LIMIT ${}", params.len()));
    let stmt = client.prepare_cached(&sql).await?;
    let rows = client.query(&stmt, &params).await?;
    let mut data = rows.iter().map(view_of).collect::<Result<Vec<_>>>()?;
    let more = data.len() as i64 > filter.limit;
    data.truncate(usize::try_from(filter.limit).unwrap_or(0));
    let next_cursor = more.then(|| data.last().map(|d| d.id.clone())).flatten();
    Ok(Page { data, next_cursor })
}

/// One dispatch with every attempt.
///
/// # Errors
/// [`Error::NotFound`] for an unknown id or another workspace's; [`Error::Database`].
pub async fn get_dispatch(
    client: &impl GenericClient,
    workspace_id: Uuid,
    id: &str,
) -> Result<DispatchDetail> {
    let id = ids::from_wire(ids::DISPATCH, id).ok_or(Error::NotFound)?;
    let sql = format!("SELECT {VIEW_COLUMNS} FROM dispatches WHERE workspace_id = $1 AND id = $2");
    let stmt = client.prepare_cached(&sql).await?;
    let row = client
        .query_opt(&stmt, &[&workspace_id, &id])
        .await?
        .ok_or(Error::NotFound)?;
    let dispatch = view_of(&row)?;
    let retract_reason: Option<String> = row.try_get("retract_reason")?;
    const ATTEMPTS: &str = "
        SELECT a.attempt, a.at, a.duration_ms, a.http_status, a.outcome, a.error,
               q.response_excerpt
        FROM dispatch_attempts a
        LEFT JOIN dispatch_requests q ON q.workspace_id = a.workspace_id AND q.id = a.request_id
        WHERE a.workspace_id = $1 AND a.dispatch_id = $2
        ORDER BY a.attempt";
    let stmt = client.prepare_cached(ATTEMPTS).await?;
    let attempts = client
        .query(&stmt, &[&workspace_id, &id])
        .await?
        .iter()
        .map(|r| {
            let at: OffsetDateTime = r.try_get("at")?;
            let http_status: Option<i16> = r.try_get("http_status")?;
            Ok(AttemptView {
                attempt: r.try_get("attempt")?,
                at: events::format_timestamp(at),
                duration_ms: r.try_get("duration_ms")?,
                http_status: http_status.and_then(|s| u16::try_from(s).ok()),
                outcome: r.try_get("outcome")?,
                error: r.try_get("error")?,
                response_excerpt: r.try_get("response_excerpt")?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(DispatchDetail {
        dispatch,
        retract_reason,
        attempts,
    })
}

/// Every dispatch of one event (conversions and retractions), oldest first, as
/// `GET /v1/events/{id}` lists them.
///
/// # Errors
/// [`Error::Database`].
pub async fn dispatches_for_event(
    client: &impl GenericClient,
    workspace_id: Uuid,
    event_id: Uuid,
) -> Result<Vec<DispatchSummary>> {
    let sql = format!(
        "SELECT {VIEW_COLUMNS} FROM dispatches WHERE workspace_id = $1 AND event_id = $2 ORDER BY id"
    );
    let stmt = client.prepare_cached(&sql).await?;
    client
        .query(&stmt, &[&workspace_id, &event_id])
        .await?
        .iter()
        .map(|row| view_of(row).map(|v| DispatchSummary::from(&v)))
        .collect()
}

/// Sends a failed or skipped dispatch again: it goes back to `queued`, due now, with the full
/// retry budget; its attempts so far stay in its history.
///
/// # Errors
/// [`Error::NotFound`]; [`Error::Conflict`] when it is in another state or its destination was
/// deleted; [`Error::Database`].
pub async fn retry_dispatch(
    client: &impl GenericClient,
    workspace_id: Uuid,
    id: &str,
) -> Result<DispatchView> {
    let uuid = ids::from_wire(ids::DISPATCH, id).ok_or(Error::NotFound)?;
    if let Some(row) = queue::requeue_one(client, workspace_id, uuid).await? {
        tracing::info!(dispatch = %id, "dispatch queued again by an operator");
        return view_of(&row);
    }
    const WHY: &str = "
        SELECT d.status, EXISTS (SELECT 1 FROM destinations t
                                 WHERE t.workspace_id = d.workspace_id AND t.id = d.destination_id)
        FROM dispatches d WHERE d.workspace_id = $1 AND d.id = $2";
    let stmt = client.prepare_cached(WHY).await?;
    let row = client
        .query_opt(&stmt, &[&workspace_id, &uuid])
        .await?
        .ok_or(Error::NotFound)?;
    let status: String = row.try_get(0)?;
    let destination_exists: bool = row.try_get(1)?;
    Err(Error::Conflict(if !destination_exists {
        "its destination was deleted".to_owned()
    } else {
        format!("only a failed or skipped dispatch can be retried; this one is {status}")
    }))
}

/// Bulk replay: `{"status": "failed" | "skipped", "destination"?: "dst_…", "since"?: "…"}`
/// (`status` defaults to `failed`; `since` compares with the dispatch's creation, as in the
/// list). Every matching dispatch goes back to `queued` as in [`retry_dispatch`]; answers how
/// many. Dispatches of deleted destinations stay as they are.
///
/// # Errors
/// [`Error::Invalid`] listing every bad field; [`Error::Database`].
pub async fn retry_dispatches(
    client: &impl GenericClient,
    workspace_id: Uuid,
    body: &Value,
) -> Result<usize> {
    let Some(map) = body.as_object() else {
        return Err(Error::invalid("", "type", "must be an object"));
    };
    let mut errors = Vec::new();
    let mut status = DispatchStatus::Failed;
    let mut destination = None;
    let mut since = None;
    for (key, value) in map {
        match key.as_str() {
            "status" => match value.as_str().and_then(DispatchStatus::parse) {
                Some(s @ (DispatchStatus::Failed | DispatchStatus::Skipped)) => status = s,
                _ => errors.push(field_error(
                    key,
                    "invalid_value",
                    "must be one of: failed, skipped",
                )),
            },
            "destination" if value.is_null() => {}
            "destination" => match value
                .as_str()
                .and_then(|v| ids::from_wire(ids::DESTINATION, v))
            {
                Some(id) => destination = Some(id),
                None => errors.push(field_error(
                    key,
                    "format",
                    "must be a destination id (dst_…)",
                )),
            },
            "since" if value.is_null() => {}
            "since" => match value.as_str().map(events::parse_timestamp) {
                Some(Ok(at)) => since = Some(at),
                _ => errors.push(field_error(
                    key,
                    "format",
                    "must be an RFC 3339 time with offset, e.g. 2026-04-10T12:34:56.000Z",
                )),
            },
            _ => errors.push(FieldError::new(key.clone(), &events::Error::UnknownField)),
        }
    }
    if !errors.is_empty() {
        return Err(Error::Invalid(errors));
    }
    let count = queue::requeue_many(client, workspace_id, status, destination, since).await?;
    tracing::info!(
        count,
        status = status.as_str(),
        "dispatches queued again by an operator"
    );
    Ok(usize::try_from(count).unwrap_or(usize::MAX))
}

/// Counts of one destination's dispatches.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DestinationStats {
    /// `dst_…`.
    pub destination: String,
    /// The destination's type.
    #[serde(rename = "type")]
    pub destination_type: DestinationType,
    /// Dispatches per status, every status present (0 when none).
    pub counts: BTreeMap<&'static str, i64>,
    /// Age in seconds of its oldest dispatch waiting for a first attempt (`queued`).
    pub oldest_queued_age_seconds: Option<f64>,
}

/// `GET /v1/dispatches/stats`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    /// Per destination, by id.
    pub destinations: Vec<DestinationStats>,
    /// Dispatches per status over the workspace, every status present.
    pub totals: BTreeMap<&'static str, i64>,
    /// Age in seconds of the workspace's oldest `queued` dispatch; `None` when none waits.
    pub oldest_queued_age_seconds: Option<f64>,
    /// Destinations parked now: their platform asked to come back later (a spent quota), and
    /// their dispatches wait without spending attempts.
    pub parked: Vec<crate::pacing::ParkView>,
}

fn zero_counts() -> BTreeMap<&'static str, i64> {
    DispatchStatus::ALL
        .into_iter()
        .map(|s| (s.as_str(), 0))
        .collect()
}

const STATS: &str = "
    SELECT destination_id, destination_type, status, count(*),
           extract(epoch FROM now() - min(created_at))::float8
    FROM dispatches WHERE workspace_id = $1
    GROUP BY destination_id, destination_type, status
    ORDER BY destination_id";

/// Counts per destination and status, and the age of the oldest queued dispatch.
///
/// # Errors
/// [`Error::Database`].
pub async fn dispatch_stats(client: &impl GenericClient, workspace_id: Uuid) -> Result<Stats> {
    let stmt = client.prepare_cached(STATS).await?;
    let rows = client.query(&stmt, &[&workspace_id]).await?;
    let mut destinations: Vec<DestinationStats> = Vec::new();
    let mut totals = zero_counts();
    let mut oldest: Option<f64> = None;
    for row in rows {
        let destination_id: Uuid = row.try_get(0)?;
        let destination_type = parse_type(row.try_get(1)?)?;
        let status_raw: &str = row.try_get(2)?;
        let status = DispatchStatus::parse(status_raw)
            .ok_or_else(|| corrupt("dispatch status", status_raw))?;
        let count: i64 = row.try_get(3)?;
        let age: Option<f64> = row.try_get(4)?;
        let wire = ids::to_wire(ids::DESTINATION, destination_id);
        if destinations.last().is_none_or(|d| d.destination != wire) {
            destinations.push(DestinationStats {
                destination: wire,
                destination_type,
                counts: zero_counts(),
                oldest_queued_age_seconds: None,
            });
        }
        if let Some(stats) = destinations.last_mut() {
            *stats.counts.entry(status.as_str()).or_default() += count;
            if status == DispatchStatus::Queued {
                let age = age.map(|a| (a.max(0.0) * 1000.0).round() / 1000.0);
                stats.oldest_queued_age_seconds = age;
                oldest = match (oldest, age) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                };
            }
        }
        *totals.entry(status.as_str()).or_default() += count;
    }
    Ok(Stats {
        destinations,
        totals,
        oldest_queued_age_seconds: oldest,
        parked: crate::pacing::parked_destinations(client, workspace_id).await?,
    })
}

/// What a retraction did.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RetractReport {
    /// Every retraction dispatch of the event (this call's and earlier calls'), oldest first.
    pub retractions: Vec<DispatchSummary>,
    /// Retractions this call queued.
    pub queued: usize,
    /// Destinations this call recorded as `not_supported`.
    pub not_supported: usize,
    /// Conversion dispatches of the event that had not gone out yet and never will.
    pub cancelled: usize,
}

/// An erased person's dispatch has no payload left: `{}`, as its column was blanked before.
const DELIVERED: &str = "
    SELECT d.destination_id, d.destination_type, coalesce(p.payload, '{}') AS payload,
           t.type AS t_type, t.config
    FROM dispatches d
    LEFT JOIN dispatch_payloads p ON p.workspace_id = d.workspace_id AND p.dispatch_id = d.id
    LEFT JOIN destinations t ON t.workspace_id = d.workspace_id AND t.id = d.destination_id
    WHERE d.workspace_id = $1 AND d.event_id = $2 AND d.kind = 'conversion'
      AND d.status = 'succeeded'
    ORDER BY d.destination_id";

/// The reason a retraction is skipped where the destination cannot retract.
pub const NOT_SUPPORTED: &str = platforms::NOT_SUPPORTED;

/// Most characters of a retraction reason.
const MAX_REASON: usize = 255;

/// Undoes a conversion at its destinations. Idempotent: a second call adds nothing.
///
/// - Conversion dispatches of the event still waiting (`queued`, `retrying`) are cancelled: a
///   refunded sale must not go out now.
/// - Each destination that has it (`succeeded`) gets a retraction dispatch: queued for Google
///   Ads destinations on the Google Ads API (a `RETRACTION` adjustment by order id, sent by the
///   worker); `skipped` with reason `not_supported` for the others (Data Manager API, Meta,
///   webhooks), so operators see why nothing went out.
///
/// # Errors
/// [`Error::Invalid`] for an empty or over-long reason; [`Error::Database`].
pub async fn retract(
    client: &impl GenericClient,
    workspace_id: Uuid,
    event_id: Uuid,
    reason: &str,
) -> Result<RetractReport> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(Error::Invalid(vec![FieldError::new(
            "reason",
            &events::Error::Empty,
        )]));
    }
    if reason.chars().count() > MAX_REASON {
        return Err(Error::Invalid(vec![FieldError::new(
            "reason",
            &events::Error::TooLong { max: MAX_REASON },
        )]));
    }
    let cancelled = queue::cancel_unsent(
        client,
        workspace_id,
        event_id,
        &format!("event retracted: {reason}"),
    )
    .await?;

    let stmt = client.prepare_cached(DELIVERED).await?;
    let delivered = client.query(&stmt, &[&workspace_id, &event_id]).await?;
    let mut new_ids = Vec::new();
    let mut destination_ids = Vec::new();
    let mut types = Vec::new();
    let mut statuses: Vec<DispatchStatus> = Vec::new();
    let mut payloads = Vec::new();
    let mut reasons: Vec<Option<&'static str>> = Vec::new();
    for row in &delivered {
        let destination_id: Uuid = row.try_get("destination_id")?;
        let destination_type: String = row.try_get("destination_type")?;
        let payload: Value = row.try_get("payload")?;
        let config: Option<Value> = row.try_get("config")?;
        let supported = match (row.try_get::<_, Option<&str>>("t_type")?, config) {
            (Some(t), Some(config)) => DestinationConfig::from_json(parse_type(t)?, config)
                .is_ok_and(|config| config.adapter().supports_retraction(config.json())),
            _ => false,
        };
        new_ids.push(queue::dispatch_id(
            event_id,
            destination_id,
            queue::DispatchKind::Retraction,
            0,
        ));
        destination_ids.push(destination_id);
        types.push(destination_type);
        payloads.push(payload);
        if supported {
            statuses.push(DispatchStatus::Queued);
            reasons.push(None);
        } else {
            statuses.push(DispatchStatus::Skipped);
            reasons.push(Some(NOT_SUPPORTED));
        }
    }
    let (mut queued, mut not_supported) = (0, 0);
    if !new_ids.is_empty() {
        let retractions = queue::Retractions {
            ids: new_ids,
            destination_ids,
            types,
            statuses,
            payloads,
            reasons,
        };
        for status in
            queue::add_retractions(client, workspace_id, event_id, reason, &retractions).await?
        {
            match status {
                DispatchStatus::Queued => queued += 1,
                _ => not_supported += 1,
            }
        }
    }
    let retractions = dispatches_for_event(client, workspace_id, event_id)
        .await?
        .into_iter()
        .filter(|d| d.kind == DispatchKind::Retraction)
        .collect();
    tracing::info!(
        event = %ids::to_wire(ids::EVENT, event_id),
        queued,
        not_supported,
        cancelled,
        "event retracted at its destinations"
    );
    Ok(RetractReport {
        retractions,
        queued,
        not_supported,
        cancelled: usize::try_from(cancelled).unwrap_or(usize::MAX),
    })
}

/// Dispatches still to be sent, across workspaces, per destination type and status.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueGauge {
    /// `google_ads`, `meta` or `webhook`.
    pub destination_type: String,
    /// `queued`, `retrying` or `in_flight`.
    pub status: String,
    /// How many.
    pub count: i64,
    /// Seconds since the oldest of them was created.
    pub oldest_age_seconds: f64,
}

const QUEUE_GAUGES: &str = "
    SELECT destination_type, status, count(*),
           coalesce(extract(epoch FROM now() - min(created_at))::float8, 0)
    FROM dispatches WHERE status IN ('queued', 'retrying', 'in_flight')
    GROUP BY destination_type, status";

/// The depth and age of the queue, for the operator's metrics.
///
/// # Errors
/// [`Error::Database`].
pub async fn queue_gauges(client: &impl GenericClient) -> Result<Vec<QueueGauge>> {
    let stmt = client.prepare_cached(QUEUE_GAUGES).await?;
    Ok(client
        .query(&stmt, &[])
        .await?
        .into_iter()
        .map(|r| QueueGauge {
            destination_type: r.get(0),
            status: r.get(1),
            count: r.get(2),
            oldest_age_seconds: r.get(3),
        })
        .collect())
}

/// Dispatches whose confirmation is not `confirmed`, across workspaces, per destination type
/// and confirmation status: `(destination_type, status, count)`.
const CONFIRMATION_GAUGES: &str = "
    SELECT destination_type, confirmation, count(*)
    FROM dispatches WHERE confirmation IN ('pending', 'partially_failed', 'failed')
    GROUP BY destination_type, confirmation";

/// Platform confirmations still pending or found failed, for the operator's metrics.
///
/// # Errors
/// [`Error::Database`].
pub async fn confirmation_gauges(
    client: &impl GenericClient,
) -> Result<Vec<(String, String, i64)>> {
    let stmt = client.prepare_cached(CONFIRMATION_GAUGES).await?;
    client
        .query(&stmt, &[])
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
        .collect()
}
