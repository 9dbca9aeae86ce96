//! The one trait every platform implements, the registry that names each platform once, and
//! the checks every send goes through whatever the platform (age limits).
//!
//! A platform module implements [`Platform`] with its own typed settings. The registry
//! ([`adapter`]) turns it into a [`dyn Adapter`](Adapter) that works on the settings' stored JSON,
//! so that the forwarder stores, checks and drives every destination type the same way, and
//! never names a platform.

use std::time::Duration;

use events::{DestinationType, EventKind, FieldError};
use futures_util::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::delivery::{CheckReport, ConfirmationMode, ConfirmationStatus, Quota, UploadCheck};
use crate::model::{Conversion, Outcome};
use crate::settings::{Errors, Obj};
use crate::{Platforms, SendReport};

/// The skip reason of a conversion (or its click) older than its platform accepts.
pub const TOO_OLD_FOR_PLATFORM: &str = "too_old_for_platform";

/// The skip reason of a retraction the destination cannot carry.
pub const NOT_SUPPORTED: &str = "not_supported";

/// Conversions this close to an age limit count as past it: one that crosses the limit on the
/// way would be refused (Meta refuses the whole request for it).
pub const AGE_MARGIN: Duration = Duration::from_secs(5 * 60);

/// What a platform accepts, as it declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Most conversions one call takes; the forwarder hands a call at most this many.
    pub batch_size: usize,
    /// The oldest event the platform takes, if it has a limit.
    pub max_event_age: Option<Duration>,
    /// The oldest click the platform takes a conversion for, if it has a limit.
    pub max_click_age: Option<Duration>,
    /// The field that carries our stable id, the same on every attempt, by which the platform
    /// counts a re-send once (for people: `event_id`, `orderId`, …).
    pub dedup_key: &'static str,
    /// How the platform's test mode is reached, when the destination configures one.
    pub test_mode: Option<&'static str>,
}

/// One ad platform (or the webhook), with its own typed settings: the module that implements it
/// is the only code that knows its wire format.
pub trait Platform: Send + Sync + 'static {
    /// Its settings (public: shown by the API).
    type Config: Serialize + DeserializeOwned + Send + Sync;
    /// Its credentials (write-only: sealed at rest, never shown).
    type Credentials: Serialize + DeserializeOwned + Send + Sync;

    /// The destination type it serves.
    fn destination_type(&self) -> DestinationType;

    /// The click ids and cookies (wire names of [`events::ClickIds`]) it uses, for people and for
    /// user-data-only matching: an event that carries one of them is routed, not matched on user
    /// data alone.
    fn click_ids(&self) -> &'static [&'static str] {
        &[]
    }

    /// Reads `config`, recording every bad field; `kinds` are the event kinds the destination
    /// subscribes to (a platform may need a setting per kind).
    fn check_config(
        &self,
        errors: &mut Errors,
        config: &mut Obj<'_>,
        kinds: &[EventKind],
    ) -> Option<Self::Config>;

    /// Reads `credentials`, recording every bad field.
    fn check_credentials(
        &self,
        errors: &mut Errors,
        credentials: &mut Obj<'_>,
    ) -> Option<Self::Credentials>;

    /// What it accepts under `config`.
    fn limits(&self, config: &Self::Config) -> Limits;

    /// True when the destination opted in to user-data-only matching (`matchWithoutClickId`).
    fn matches_without_click_id(&self, _config: &Self::Config) -> bool {
        false
    }

    /// True when the destination can carry a retraction.
    fn supports_retraction(&self, _config: &Self::Config) -> bool {
        false
    }

    /// Sends a batch of at most `limits().batch_size` conversions, every one within the age
    /// limits: one outcome per conversion, in order.
    fn send<'a>(
        &'a self,
        http: &'a Platforms,
        config: &'a Self::Config,
        credentials: &'a Self::Credentials,
        batch: &'a [Conversion],
        now: OffsetDateTime,
    ) -> BoxFuture<'a, SendReport>;

    /// True when the destination can carry a restatement (a conversion's value changed).
    fn supports_restatement(&self, _config: &Self::Config) -> bool {
        false
    }

    /// Restates conversions sent before: each carries its new value as `event.value`; by
    /// default none can be.
    fn restate<'a>(
        &'a self,
        _http: &'a Platforms,
        _config: &'a Self::Config,
        _credentials: &'a Self::Credentials,
        batch: &'a [Conversion],
        _now: OffsetDateTime,
    ) -> BoxFuture<'a, SendReport> {
        let outcome = Outcome::Skipped {
            reason: NOT_SUPPORTED.into(),
        };
        Box::pin(async move { SendReport::uniform(batch.len(), &outcome) })
    }

    /// The credentials with `refresh_token` in place of theirs, for a platform whose token
    /// endpoint rotates refresh tokens; `None` when it has none.
    fn with_refresh_token(
        &self,
        _credentials: &Self::Credentials,
        _refresh_token: &str,
    ) -> Option<Self::Credentials> {
        None
    }

    /// How the platform confirms what it accepted: at once, unless it processes uploads later.
    fn confirmation_mode(&self, _config: &Self::Config) -> ConfirmationMode {
        ConfirmationMode::Immediate
    }

    /// Reads back the processing status of one accepted upload request (its platform request
    /// id), for a platform whose confirmation is [`ConfirmationMode::Deferred`].
    fn check_upload<'a>(
        &'a self,
        _http: &'a Platforms,
        _config: &'a Self::Config,
        _credentials: &'a Self::Credentials,
        _request_id: &'a str,
    ) -> BoxFuture<'a, CheckReport> {
        Box::pin(async {
            CheckReport {
                check: UploadCheck::Final {
                    status: ConfirmationStatus::Confirmed,
                    detail: "the platform answers synchronously".into(),
                },
                requests: Vec::new(),
            }
        })
    }

    /// The published request quota the destination's sends share, if the platform publishes
    /// one; `None` leaves sends unpaced (429s are still honoured).
    fn quota(&self, _config: &Self::Config, _credentials: &Self::Credentials) -> Option<Quota> {
        None
    }

    /// Retracts conversions sent before; by default none can be.
    fn retract<'a>(
        &'a self,
        _http: &'a Platforms,
        _config: &'a Self::Config,
        _credentials: &'a Self::Credentials,
        batch: &'a [Conversion],
        _now: OffsetDateTime,
    ) -> BoxFuture<'a, SendReport> {
        let outcome = Outcome::Skipped {
            reason: NOT_SUPPORTED.into(),
        };
        Box::pin(async move { SendReport::uniform(batch.len(), &outcome) })
    }
}

/// A platform over its stored settings: what the forwarder holds. Implemented for every
/// [`Platform`].
pub trait Adapter: Send + Sync {
    /// The destination type it serves.
    fn destination_type(&self) -> DestinationType;

    /// The click ids and cookies it uses.
    fn click_ids(&self) -> &'static [&'static str];

    /// Checks a destination's `config` (and `credentials`, when given) into their stored JSON,
    /// defaults filled in; errors name fields as `config.…` and `credentials.…`.
    ///
    /// # Errors
    /// Every bad field.
    fn check(
        &self,
        config: &Map<String, Value>,
        credentials: Option<&Map<String, Value>>,
        kinds: &[EventKind],
    ) -> Result<(Value, Option<Value>), Vec<FieldError>>;

    /// Reads stored settings back, so that a row edited by hand is found when it is read.
    ///
    /// # Errors
    /// Why it cannot be read.
    fn read_config(&self, config: Value) -> Result<Value, String>;

    /// Reads stored (opened) credentials back.
    ///
    /// # Errors
    /// Why they cannot be read.
    fn read_credentials(&self, bytes: &[u8]) -> Result<Value, String>;

    /// What it accepts under `config`; a platform's defaults when `config` cannot be read.
    fn limits(&self, config: &Value) -> Limits;

    /// True when the destination opted in to user-data-only matching.
    fn matches_without_click_id(&self, config: &Value) -> bool;

    /// True when the destination can carry a retraction.
    fn supports_retraction(&self, config: &Value) -> bool;

    /// Sends a batch, skipping what is too old for the platform: one outcome per conversion.
    fn send<'a>(
        &'a self,
        http: &'a Platforms,
        config: &'a Value,
        credentials: &'a Value,
        batch: &'a [Conversion],
        now: OffsetDateTime,
    ) -> BoxFuture<'a, SendReport>;

    /// Retracts conversions sent before.
    fn retract<'a>(
        &'a self,
        http: &'a Platforms,
        config: &'a Value,
        credentials: &'a Value,
        batch: &'a [Conversion],
        now: OffsetDateTime,
    ) -> BoxFuture<'a, SendReport>;

    /// True when the destination can carry a restatement.
    fn supports_restatement(&self, config: &Value) -> bool;

    /// Restates conversions sent before (each with its new value).
    fn restate<'a>(
        &'a self,
        http: &'a Platforms,
        config: &'a Value,
        credentials: &'a Value,
        batch: &'a [Conversion],
        now: OffsetDateTime,
    ) -> BoxFuture<'a, SendReport>;

    /// How the platform confirms what it accepted under `config`.
    fn confirmation_mode(&self, config: &Value) -> ConfirmationMode;

    /// Reads back the processing status of one accepted upload request.
    fn check_upload<'a>(
        &'a self,
        http: &'a Platforms,
        config: &'a Value,
        credentials: &'a Value,
        request_id: &'a str,
    ) -> BoxFuture<'a, CheckReport>;

    /// The request quota the destination's sends share, if the platform publishes one.
    fn quota(&self, config: &Value, credentials: &Value) -> Option<Quota>;
}

/// Every conversion fails: the stored settings cannot be read. They are checked before they are
/// stored, so only a row edited by hand gets here.
fn unreadable(what: &str, error: &serde_json::Error, count: usize) -> SendReport {
    tracing::error!(%error, "destination {what} cannot be read");
    SendReport::uniform(
        count,
        &Outcome::Permanent {
            error: format!("the destination's stored {what} cannot be read"),
        },
    )
}

/// A destination's stored config and credentials read as the platform's own types, or the
/// report that settles a batch of `count` when either cannot be read.
fn settings<P: Platform>(
    config: &Value,
    credentials: &Value,
    count: usize,
) -> Result<(P::Config, P::Credentials), Box<SendReport>> {
    let unreadable = |what, error| Box::new(unreadable(what, &error, count));
    let config = P::Config::deserialize(config).map_err(|error| unreadable("config", error))?;
    let credentials = P::Credentials::deserialize(credentials)
        .map_err(|error| unreadable("credentials", error))?;
    Ok((config, credentials))
}

impl<P: Platform> Adapter for P {
    fn destination_type(&self) -> DestinationType {
        Platform::destination_type(self)
    }

    fn click_ids(&self) -> &'static [&'static str] {
        Platform::click_ids(self)
    }

    fn check(
        &self,
        config: &Map<String, Value>,
        credentials: Option<&Map<String, Value>>,
        kinds: &[EventKind],
    ) -> Result<(Value, Option<Value>), Vec<FieldError>> {
        let mut errors = Errors::default();
        let mut obj = Obj::new(config, "config");
        let config = self.check_config(&mut errors, &mut obj, kinds);
        obj.finish(&mut errors);
        let credentials = credentials.map(|map| {
            let mut obj = Obj::new(map, "credentials");
            let credentials = self.check_credentials(&mut errors, &mut obj);
            obj.finish(&mut errors);
            credentials
        });
        if !errors.0.is_empty() {
            return Err(errors.0);
        }
        let config = config.and_then(|c| serde_json::to_value(c).ok());
        let credentials = match credentials {
            None => Some(None),
            Some(c) => c.and_then(|c| serde_json::to_value(c).ok()).map(Some),
        };
        match (config, credentials) {
            (Some(config), Some(credentials)) => Ok((config, credentials)),
            // A check that failed without naming a field: name the object.
            _ => Err(vec![FieldError {
                field: "config".into(),
                code: "invalid",
                message: "is not valid for this destination type".into(),
            }]),
        }
    }

    fn read_config(&self, config: Value) -> Result<Value, String> {
        let typed: P::Config = serde_json::from_value(config).map_err(|e| e.to_string())?;
        serde_json::to_value(typed).map_err(|e| e.to_string())
    }

    fn read_credentials(&self, bytes: &[u8]) -> Result<Value, String> {
        let typed: P::Credentials = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        serde_json::to_value(typed).map_err(|e| e.to_string())
    }

    fn limits(&self, config: &Value) -> Limits {
        match P::Config::deserialize(config) {
            Ok(config) => Platform::limits(self, &config),
            Err(_) => Limits {
                batch_size: 1,
                max_event_age: None,
                max_click_age: None,
                dedup_key: "",
                test_mode: None,
            },
        }
    }

    fn matches_without_click_id(&self, config: &Value) -> bool {
        P::Config::deserialize(config).is_ok_and(|c| Platform::matches_without_click_id(self, &c))
    }

    fn supports_retraction(&self, config: &Value) -> bool {
        P::Config::deserialize(config).is_ok_and(|c| Platform::supports_retraction(self, &c))
    }

    fn send<'a>(
        &'a self,
        http: &'a Platforms,
        config: &'a Value,
        credentials: &'a Value,
        batch: &'a [Conversion],
        now: OffsetDateTime,
    ) -> BoxFuture<'a, SendReport> {
        Box::pin(async move {
            let (config, credentials) = match settings::<P>(config, credentials, batch.len()) {
                Ok(settings) => settings,
                Err(report) => return *report,
            };
            deliver(self, http, &config, &credentials, batch, now).await
        })
    }

    fn retract<'a>(
        &'a self,
        http: &'a Platforms,
        config: &'a Value,
        credentials: &'a Value,
        batch: &'a [Conversion],
        now: OffsetDateTime,
    ) -> BoxFuture<'a, SendReport> {
        Box::pin(async move {
            let (config, credentials) = match settings::<P>(config, credentials, batch.len()) {
                Ok(settings) => settings,
                Err(report) => return *report,
            };
            let report = Platform::retract(self, http, &config, &credentials, batch, now).await;
            with_rotated(self, &credentials, report)
        })
    }

    fn supports_restatement(&self, config: &Value) -> bool {
        P::Config::deserialize(config).is_ok_and(|c| Platform::supports_restatement(self, &c))
    }

    fn restate<'a>(
        &'a self,
        http: &'a Platforms,
        config: &'a Value,
        credentials: &'a Value,
        batch: &'a [Conversion],
        now: OffsetDateTime,
    ) -> BoxFuture<'a, SendReport> {
        Box::pin(async move {
            let (config, credentials) = match settings::<P>(config, credentials, batch.len()) {
                Ok(settings) => settings,
                Err(report) => return *report,
            };
            let report = Platform::restate(self, http, &config, &credentials, batch, now).await;
            with_rotated(self, &credentials, report)
        })
    }

    fn confirmation_mode(&self, config: &Value) -> ConfirmationMode {
        P::Config::deserialize(config).map_or(ConfirmationMode::Immediate, |c| {
            Platform::confirmation_mode(self, &c)
        })
    }

    fn check_upload<'a>(
        &'a self,
        http: &'a Platforms,
        config: &'a Value,
        credentials: &'a Value,
        request_id: &'a str,
    ) -> BoxFuture<'a, CheckReport> {
        Box::pin(async move {
            let unreadable = |what: &str| CheckReport {
                check: UploadCheck::Unavailable {
                    error: format!("the destination's stored {what} cannot be read"),
                },
                requests: Vec::new(),
            };
            let Ok(config) = P::Config::deserialize(config) else {
                return unreadable("config");
            };
            let Ok(credentials) = P::Credentials::deserialize(credentials) else {
                return unreadable("credentials");
            };
            Platform::check_upload(self, http, &config, &credentials, request_id).await
        })
    }

    fn quota(&self, config: &Value, credentials: &Value) -> Option<Quota> {
        let config = P::Config::deserialize(config).ok()?;
        let credentials = P::Credentials::deserialize(credentials).ok()?;
        Platform::quota(self, &config, &credentials)
    }
}

/// Why a conversion is too old for a platform with `limits` at `now`, if it is.
pub fn too_old(limits: &Limits, conversion: &Conversion, now: OffsetDateTime) -> Option<String> {
    let past = |at: OffsetDateTime, limit: Duration| {
        let age = now - at;
        age.is_positive() && age.unsigned_abs() >= limit.saturating_sub(AGE_MARGIN)
    };
    if let Some(limit) = limits.max_event_age {
        if past(conversion.event.timestamp, limit) {
            return Some(format!(
                "the event is older than the {} days the platform accepts",
                limit.as_secs() / 86_400
            ));
        }
    }
    if let (Some(limit), Some(click)) =
        (limits.max_click_age, conversion.attribution.click.as_ref())
    {
        if past(click.clicked_at, limit) {
            return Some(format!(
                "the click is older than the {} days the platform accepts",
                limit.as_secs() / 86_400
            ));
        }
    }
    None
}

/// Sends a batch to a platform the way the forwarder does: conversions (or clicks) past the
/// platform's age limits are `skipped` with reason [`TOO_OLD_FOR_PLATFORM`] and never sent; the
/// rest go in calls of at most the platform's batch size.
pub async fn deliver<P: Platform>(
    platform: &P,
    http: &Platforms,
    config: &P::Config,
    credentials: &P::Credentials,
    batch: &[Conversion],
    now: OffsetDateTime,
) -> SendReport {
    let limits = platform.limits(config);
    let mut outcomes: Vec<Option<Outcome>> = vec![None; batch.len()];
    let mut send: Vec<usize> = Vec::new();
    for (index, conversion) in batch.iter().enumerate() {
        if let Some(why) = too_old(&limits, conversion, now) {
            tracing::debug!(
                destination_type = Platform::destination_type(platform).as_str(),
                why,
                "conversion too old for the platform: skipped"
            );
            outcomes[index] = Some(Outcome::Skipped {
                reason: TOO_OLD_FOR_PLATFORM.into(),
            });
        } else {
            send.push(index);
        }
    }
    let mut requests = Vec::new();
    let mut park: Option<crate::delivery::Park> = None;
    let mut rotated = None;
    for chunk in send.chunks(limits.batch_size.max(1)) {
        let items: Vec<Conversion> = chunk.iter().map(|&i| batch[i].clone()).collect();
        let report = with_rotated(
            platform,
            credentials,
            platform.send(http, config, credentials, &items, now).await,
        );
        if report.rotated.is_some() {
            rotated = report.rotated.clone();
        }
        if let Some(asked) = report.park {
            if park.as_ref().is_none_or(|known| known.wait < asked.wait) {
                park = Some(asked);
            }
        }
        for (position, &index) in chunk.iter().enumerate() {
            outcomes[index] = report.outcomes.get(position).cloned();
        }
        requests.extend(report.requests.into_iter().map(|mut record| {
            record.conversions = record
                .conversions
                .iter()
                .filter_map(|&position| chunk.get(position).copied())
                .collect();
            record
        }));
    }
    SendReport {
        outcomes: outcomes
            .into_iter()
            .map(|outcome| {
                outcome.unwrap_or_else(|| Outcome::Retry {
                    error: "internal: the platform client gave no outcome for this conversion"
                        .into(),
                    after: None,
                })
            })
            .collect(),
        requests,
        park,
        rotated,
    }
}

/// `report` with the destination's credentials holding the refresh token the token endpoint
/// rotated, if it did.
pub(crate) fn with_rotated<P: Platform>(
    platform: &P,
    credentials: &P::Credentials,
    mut report: SendReport,
) -> SendReport {
    if let Some(rotated) = report.rotated.as_mut() {
        rotated.credentials = platform
            .with_refresh_token(credentials, &rotated.refresh_token)
            .and_then(|credentials| serde_json::to_value(credentials).ok());
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use events::{Attribution, AttributionStatus, ClickIds, Event, Touchpoint};
    use time::macros::datetime;
    use uuid::Uuid;

    fn conversion(event_at: OffsetDateTime, clicked_at: Option<OffsetDateTime>) -> Conversion {
        let mut event: Event = events::parse_event(
            &serde_json::json!({"event": "lead", "email": "a@example.com"}),
            event_at,
        )
        .unwrap();
        event.timestamp = event_at;
        Conversion {
            dispatch_id: Uuid::now_v7(),
            event_id: Uuid::now_v7(),
            received_at: event_at,
            event,
            attribution: Attribution {
                status: AttributionStatus::Matched,
                matched_by: None,
                click: clicked_at.map(|clicked_at| Touchpoint {
                    click_id: None,
                    clicked_at,
                    click_ids: ClickIds::default(),
                    utm: None,
                    url: None,
                    referrer: None,
                    ip: None,
                    user_agent: None,
                }),
                model: "last_click".into(),
                first_touch: None,
                pending_until: None,
                decided_at: event_at,
                ignored_identifiers: Vec::new(),
            },
            routing: Value::Null,
            mapping: None,
        }
    }

    fn limits(event_days: Option<u64>, click_days: Option<u64>) -> Limits {
        let days = |d: u64| Duration::from_secs(d * 86_400);
        Limits {
            batch_size: 10,
            max_event_age: event_days.map(days),
            max_click_age: click_days.map(days),
            dedup_key: "event_id",
            test_mode: None,
        }
    }

    #[test]
    fn events_and_clicks_past_the_limit_or_within_five_minutes_of_it_are_too_old() {
        let now = datetime!(2026-04-10 12:00 UTC);
        let week = limits(Some(7), None);
        let fresh = conversion(now - time::Duration::days(6), None);
        assert_eq!(too_old(&week, &fresh, now), None);
        let edge = conversion(
            now - time::Duration::days(7) + time::Duration::minutes(4),
            None,
        );
        assert!(too_old(&week, &edge, now).is_some());
        let old = conversion(now - time::Duration::days(8), None);
        assert!(too_old(&week, &old, now).is_some());

        let clicks = limits(None, Some(90));
        let old_click = conversion(now, Some(now - time::Duration::days(91)));
        assert!(too_old(&clicks, &old_click, now).is_some_and(|why| why.contains("click")));
        let recent_click = conversion(now, Some(now - time::Duration::days(30)));
        assert_eq!(too_old(&clicks, &recent_click, now), None);
        assert_eq!(too_old(&limits(None, None), &old_click, now), None);
    }

    #[test]
    fn a_future_event_is_never_too_old() {
        let now = datetime!(2026-04-10 12:00 UTC);
        let ahead = conversion(now + time::Duration::minutes(3), None);
        assert_eq!(too_old(&limits(Some(7), Some(7)), &ahead, now), None);
    }
}
