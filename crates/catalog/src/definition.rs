//! A definition's wire form and its checks: `PUT /v1/conversion-events/{eventName}` bodies are
//! read here into a [`Draft`], listing every bad field; the destinations named in it are
//! checked against their platforms by the store, which can read them.

use std::collections::BTreeMap;

use events::{EventKind, FieldError, Money};
use forwarder::platforms::mapping;
use forwarder::platforms::model::EventMapping;
use forwarder::platforms::settings::{
    object, optional_string, required, string, Errors, Obj, MAX_STRING,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// The longest event name, as `eventName` on events.
pub const MAX_EVENT_NAME_LENGTH: usize = events::MAX_ID_LENGTH;

/// The longest description.
const MAX_DESCRIPTION: usize = 2000;

/// The tier of a conversion event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// What the business is for.
    Macro,
    /// A step on the way.
    Micro,
}

impl Tier {
    /// The wire and column name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Macro => "macro",
            Self::Micro => "micro",
        }
    }

    /// Reads a wire or column name.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "macro" => Some(Self::Macro),
            "micro" => Some(Self::Micro),
            _ => None,
        }
    }
}

/// The value a lead without an amount takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeadValue {
    /// A fixed amount.
    Fixed(Money),
    /// The workspace's close-rate estimate.
    CloseRate,
}

/// What a definition says about one destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DestinationRule {
    /// False: the destination gets no conversion of this event name.
    pub enabled: bool,
    /// The conversion action to use instead of the destination's per-kind setting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversion_action: Option<String>,
    /// The platform event name to use instead of the destination's per-kind setting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_name: Option<String>,
}

impl DestinationRule {
    /// The mapping it carries to the platform.
    pub fn mapping(&self) -> EventMapping {
        EventMapping {
            conversion_action: self.conversion_action.clone(),
            event_name: self.event_name.clone(),
        }
    }
}

/// A checked body, before its destinations are looked up.
#[derive(Debug, Clone)]
pub(crate) struct Draft {
    pub kind: EventKind,
    pub tier: Tier,
    pub description: Option<String>,
    pub owner: Option<String>,
    pub value: Option<LeadValue>,
    /// By destination id: the wire key (for error paths) and the rule as given.
    pub destinations: BTreeMap<Uuid, (String, RawRule)>,
}

/// A destination's rule as given, its mapping not yet checked against the platform.
#[derive(Debug, Clone)]
pub(crate) struct RawRule {
    pub enabled: bool,
    pub conversion_action: Option<String>,
    pub event_name: Option<String>,
}

/// Checks an event name given in a path: 1 to [`MAX_EVENT_NAME_LENGTH`] characters, not blank,
/// no NUL; and, being one segment of a URL path, no `/` and not made of dots alone (`.` and
/// `..` are resolved away by clients). Errors on field `eventName`.
///
/// # Errors
/// The field errors.
pub fn check_event_name(name: &str) -> Result<(), Vec<FieldError>> {
    let error = if name.trim().is_empty() {
        Some(FieldError::new("eventName", &events::Error::Empty))
    } else if name.chars().count() > MAX_EVENT_NAME_LENGTH {
        Some(FieldError::new(
            "eventName",
            &events::Error::TooLong {
                max: MAX_EVENT_NAME_LENGTH,
            },
        ))
    } else if name.contains('\0') {
        Some(FieldError::new("eventName", &events::Error::NulCharacter))
    } else if name.contains('/') || name.chars().all(|c| c == '.' || c.is_whitespace()) {
        Some(FieldError {
            field: "eventName".into(),
            code: "format",
            message: "must be one URL path segment: no /, and not dots alone".into(),
        })
    } else {
        None
    };
    match error {
        Some(e) => Err(vec![e]),
        None => Ok(()),
    }
}

/// Reads a body; `Err` holds every bad field found without the database.
pub(crate) fn check_body(body: &Value) -> (Option<Draft>, Vec<FieldError>) {
    let mut errors = Errors::default();
    let Some(map) = object(&mut errors, "", body) else {
        return (None, errors.0);
    };
    let mut obj = Obj::new(map, "");
    let kind = required(&mut errors, &mut obj, "kind").and_then(|v| {
        let kind = string(&mut errors, "kind", v, MAX_STRING)?;
        match kind {
            "lead" => Some(EventKind::Lead),
            "sale" => Some(EventKind::Sale),
            _ => {
                errors.error(
                    "kind",
                    &events::Error::InvalidValue {
                        allowed: "lead, sale",
                    },
                );
                None
            }
        }
    });
    let tier = required(&mut errors, &mut obj, "tier").and_then(|v| {
        let tier = string(&mut errors, "tier", v, MAX_STRING)?;
        let parsed = Tier::parse(tier);
        if parsed.is_none() {
            errors.error(
                "tier",
                &events::Error::InvalidValue {
                    allowed: "macro, micro",
                },
            );
        }
        parsed
    });
    let description = optional_string(&mut errors, &mut obj, "description", MAX_DESCRIPTION);
    let owner = optional_string(&mut errors, &mut obj, "owner", MAX_STRING);
    let value = match obj.get("value") {
        None => Ok(None),
        Some(v) => lead_value(&mut errors, v).map(Some).ok_or(()),
    };
    let destinations = match obj.get("destinations") {
        None => Some(BTreeMap::new()),
        Some(v) => destinations(&mut errors, v),
    };
    obj.finish(&mut errors);
    if kind == Some(EventKind::Sale) && matches!(value, Ok(Some(_))) {
        errors.push(
            "value",
            "not_allowed",
            "applies to lead definitions only: a sale carries its own amount",
        );
    }
    match (kind, tier, description, owner, value, destinations) {
        (Some(kind), Some(tier), Ok(description), Ok(owner), Ok(value), Some(destinations))
            if errors.0.is_empty() =>
        {
            (
                Some(Draft {
                    kind,
                    tier,
                    description,
                    owner,
                    value,
                    destinations,
                }),
                errors.0,
            )
        }
        (.., Some(destinations)) => {
            // The destinations are still worth looking up, so that their errors are listed too.
            let draft = Draft {
                kind: kind.unwrap_or(EventKind::Lead),
                tier: tier.unwrap_or(Tier::Macro),
                description: None,
                owner: None,
                value: None,
                destinations,
            };
            (Some(draft), errors.0)
        }
        _ => (None, errors.0),
    }
}

fn lead_value(errors: &mut Errors, v: &Value) -> Option<LeadValue> {
    let map = object(errors, "value", v)?;
    let mut obj = Obj::new(map, "value");
    let estimate = obj.get("estimate");
    let amount = obj.get("amount");
    let currency = obj.get("currency");
    obj.finish(errors);
    if let Some(estimate) = estimate {
        if amount.is_some() || currency.is_some() {
            errors.push(
                "value",
                "not_allowed",
                "give either {amount, currency} or {estimate}, not both",
            );
            return None;
        }
        let estimate = string(errors, "value.estimate", estimate, MAX_STRING)?;
        if estimate != "close_rate" {
            errors.error(
                "value.estimate",
                &events::Error::InvalidValue {
                    allowed: "close_rate",
                },
            );
            return None;
        }
        return Some(LeadValue::CloseRate);
    }
    let amount = match amount {
        None => {
            errors.error("value.amount", &events::Error::Required);
            None
        }
        Some(Value::Number(n)) => match events::amount_from_json(n) {
            Ok(amount) => Some(amount),
            Err(e) => {
                errors.error("value.amount", &e);
                None
            }
        },
        Some(_) => {
            errors.error(
                "value.amount",
                &events::Error::Type {
                    expected: "a number",
                },
            );
            None
        }
    };
    let currency = match currency {
        None => {
            errors.error("value.currency", &events::Error::Required);
            None
        }
        Some(v) => string(errors, "value.currency", v, MAX_STRING).and_then(|c| {
            events::Currency::parse(c)
                .map_err(|e| errors.error("value.currency", &e))
                .ok()
        }),
    };
    let money = Money::new(amount?, currency?)
        .map_err(|e| errors.error("value.amount", &e))
        .ok()?;
    Some(LeadValue::Fixed(money))
}

fn destinations(errors: &mut Errors, v: &Value) -> Option<BTreeMap<Uuid, (String, RawRule)>> {
    let map = object(errors, "destinations", v)?;
    let mut out = BTreeMap::new();
    for (key, rule) in map {
        let path = format!("destinations.{key}");
        let id = forwarder::ids::from_wire(forwarder::ids::DESTINATION, key);
        if id.is_none() {
            errors.push(
                path.clone(),
                "not_found",
                "is not a destination of this workspace (destination ids read dst_…)",
            );
        }
        let Some(rule_map) = object(errors, &path, rule) else {
            continue;
        };
        let mut obj = Obj::new(rule_map, path.clone());
        let enabled = match required(errors, &mut obj, "enabled") {
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => {
                errors.error(
                    obj.path("enabled"),
                    &events::Error::Type {
                        expected: "a boolean",
                    },
                );
                None
            }
            None => None,
        };
        let conversion_action = raw_string(errors, &mut obj, "conversionAction");
        let event_name = raw_string(errors, &mut obj, "eventName");
        obj.finish(errors);
        if let (Some(id), Some(enabled), Ok(conversion_action), Ok(event_name)) =
            (id, enabled, conversion_action, event_name)
        {
            out.insert(
                id,
                (
                    key.clone(),
                    RawRule {
                        enabled,
                        conversion_action,
                        event_name,
                    },
                ),
            );
        }
    }
    Some(out)
}

/// An optional string, its length and form left to the platform's check.
fn raw_string(
    errors: &mut Errors,
    obj: &mut Obj<'_>,
    key: &'static str,
) -> Result<Option<String>, ()> {
    match obj.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => {
            errors.error(
                obj.path(key),
                &events::Error::Type {
                    expected: "a string",
                },
            );
            Err(())
        }
    }
}

/// Checks a rule's mapping against its destination's platform.
pub(crate) fn check_rule(
    errors: &mut Vec<FieldError>,
    key: &str,
    destination_type: events::DestinationType,
    raw: &RawRule,
) -> Option<DestinationRule> {
    match mapping::check_mapping(
        destination_type,
        raw.conversion_action.as_deref(),
        raw.event_name.as_deref(),
    ) {
        Ok(mapped) => Some(DestinationRule {
            enabled: raw.enabled,
            conversion_action: mapped.conversion_action,
            event_name: mapped.event_name,
        }),
        Err(refusals) => {
            for (field, refused) in refusals {
                errors.push(FieldError {
                    field: format!("destinations.{key}.{field}"),
                    code: refused.code,
                    message: refused.message,
                });
            }
            None
        }
    }
}

/// A money amount on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MoneyView {
    /// In major units, exact.
    #[serde(with = "events::amount_serde")]
    pub amount: rust_decimal::Decimal,
    /// ISO 4217.
    pub currency: String,
}

/// A definition as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DefinitionView {
    /// The event name it defines.
    pub event_name: String,
    /// `lead` or `sale`.
    pub kind: &'static str,
    /// `macro` or `micro`.
    pub tier: &'static str,
    /// What it is.
    pub description: Option<String>,
    /// Who answers for it.
    pub owner: Option<String>,
    /// `{amount, currency}`, `{estimate: "close_rate"}`, or null.
    pub value: Option<Value>,
    /// With a close-rate value: the estimate a lead takes now (null while the data is too thin).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimated_value: Option<Option<MoneyView>>,
    /// With a close-rate value: what the estimate was computed from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub basis: Option<Value>,
    /// Per destination id.
    pub destinations: BTreeMap<String, DestinationRule>,
    /// When it was first defined.
    #[serde(with = "events::rfc3339_millis")]
    pub created_at: time::OffsetDateTime,
    /// When it was last replaced.
    #[serde(with = "events::rfc3339_millis")]
    pub updated_at: time::OffsetDateTime,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(errors: &[FieldError]) -> Vec<(&str, &str)> {
        errors.iter().map(|e| (e.field.as_str(), e.code)).collect()
    }

    #[test]
    fn every_bad_field_is_listed() {
        let (_, errors) = check_body(&json!({
            "kind": "purchase",
            "tier": 3,
            "owner": "",
            "value": {"amount": -1, "currency": "XYZ"},
            "destinations": {"dst_nope": {"enabled": "yes", "colour": "red"}},
            "extra": true
        }));
        assert_eq!(
            fields(&errors),
            [
                ("kind", "invalid_value"),
                ("tier", "type"),
                ("owner", "min_length"),
                ("value.amount", "minimum"),
                ("value.currency", "invalid_currency"),
                ("destinations.dst_nope", "not_found"),
                ("destinations.dst_nope.enabled", "type"),
                ("destinations.dst_nope.colour", "unknown_field"),
                ("extra", "unknown_field"),
            ]
        );
    }

    #[test]
    fn a_value_is_fixed_or_estimated_and_for_leads_only() {
        let (draft, errors) = check_body(&json!({
            "kind": "lead", "tier": "micro", "value": {"estimate": "close_rate"}
        }));
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(draft.unwrap().value, Some(LeadValue::CloseRate));
        let (draft, errors) = check_body(&json!({
            "kind": "lead", "tier": "macro", "value": {"amount": 50.0, "currency": "usd"}
        }));
        assert!(errors.is_empty(), "{errors:?}");
        let Some(LeadValue::Fixed(money)) = draft.unwrap().value else {
            panic!("a fixed value")
        };
        assert_eq!(money.currency().code(), "USD");
        let (_, errors) = check_body(&json!({
            "kind": "sale", "tier": "macro", "value": {"amount": 5, "currency": "USD"}
        }));
        assert_eq!(fields(&errors), [("value", "not_allowed")]);
        let (_, errors) = check_body(&json!({
            "kind": "lead", "tier": "macro",
            "value": {"estimate": "close_rate", "amount": 5}
        }));
        assert_eq!(fields(&errors), [("value", "not_allowed")]);
        let (_, errors) = check_body(&json!({
            "kind": "lead", "tier": "macro", "value": {"estimate": "average"}
        }));
        assert_eq!(fields(&errors), [("value.estimate", "invalid_value")]);
        let (_, errors) = check_body(&json!({"tier": "macro", "value": {}}));
        assert_eq!(
            fields(&errors),
            [
                ("kind", "required"),
                ("value.amount", "required"),
                ("value.currency", "required")
            ]
        );
    }

    #[test]
    fn event_names_in_paths_are_bounded() {
        assert!(check_event_name("Demo booked").is_ok());
        assert_eq!(check_event_name(" ").unwrap_err()[0].code, "min_length");
        assert_eq!(
            check_event_name(&"x".repeat(256)).unwrap_err()[0].code,
            "max_length"
        );
        for bad in ["a/b", "..", ". ."] {
            assert_eq!(
                check_event_name(bad).unwrap_err()[0].code,
                "format",
                "{bad}"
            );
        }
        assert!(check_event_name("v1.2").is_ok());
    }
}
