//! What each platform takes from a conversion-events catalog definition: a conversion action
//! (the platform's own object that counts the conversion: Google Ads conversion action id,
//! Microsoft Advertising conversion goal name, LinkedIn conversion rule id) or an event name
//! (Meta, TikTok, Reddit, Snapchat, Pinterest), and which values it accepts. Webhooks take
//! either and pass them through in their body.
//!
//! The catalog checks a definition's `destinations` against this table when it is written, so
//! that a mapping a platform would refuse is a 422 at the door rather than a failed dispatch.

use events::DestinationType;

use crate::model::EventMapping;

/// How long a free-form mapping value may be.
pub const MAX_MAPPING_LENGTH: usize = 255;

/// Microsoft Advertising's limit on a conversion goal name.
const MAX_MICROSOFT_GOAL_NAME: usize = 100;

/// A value a platform would not take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// A stable code: `not_allowed`, `format`, `invalid_value`, `min_length`, `max_length`.
    pub code: &'static str,
    /// Why, for people.
    pub message: String,
}

fn refused(code: &'static str, message: impl Into<String>) -> Refused {
    Refused {
        code,
        message: message.into(),
    }
}

/// What a destination type takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Takes {
    /// Whether it takes `conversionAction`.
    pub conversion_action: bool,
    /// Whether it takes `eventName`.
    pub event_name: bool,
}

/// What `destination_type` takes from a definition.
pub fn takes(destination_type: DestinationType) -> Takes {
    use DestinationType as T;
    match destination_type {
        T::GoogleAds | T::MicrosoftAds | T::LinkedIn => Takes {
            conversion_action: true,
            event_name: false,
        },
        T::Meta | T::TikTok | T::Reddit | T::Snapchat | T::Pinterest => Takes {
            conversion_action: false,
            event_name: true,
        },
        T::Webhook => Takes {
            conversion_action: true,
            event_name: true,
        },
    }
}

fn text(value: &str, max: usize) -> Result<String, Refused> {
    let value = value.trim();
    if value.is_empty() {
        return Err(refused("min_length", "must not be empty"));
    }
    if value.chars().count() > max {
        return Err(refused(
            "max_length",
            format!("must be at most {max} characters"),
        ));
    }
    Ok(value.to_owned())
}

fn is_digits(value: &str) -> bool {
    !value.is_empty() && value.len() <= 20 && value.bytes().all(|b| b.is_ascii_digit())
}

/// Checks a definition's `conversionAction` for `destination_type`; answers the value to store.
///
/// # Errors
/// [`Refused`] when the platform takes no conversion action, or not this one.
pub fn check_conversion_action(
    destination_type: DestinationType,
    value: &str,
) -> Result<String, Refused> {
    use DestinationType as T;
    let name = destination_type.as_str();
    match destination_type {
        T::GoogleAds => {
            let value = text(value, MAX_MAPPING_LENGTH)?;
            // The id, or its resource name `customers/<id>/conversionActions/<id>`.
            let id = value
                .strip_prefix("customers/")
                .and_then(|rest| rest.split_once("/conversionActions/"))
                .filter(|(customer, _)| is_digits(customer))
                .map_or(value.as_str(), |(_, id)| id);
            if is_digits(id) {
                Ok(value)
            } else {
                Err(refused(
                    "format",
                    "must be a Google Ads conversion action id (digits), or its resource name customers/<id>/conversionActions/<id>",
                ))
            }
        }
        T::LinkedIn => {
            let value = text(value, MAX_MAPPING_LENGTH)?;
            // The rule id; its URN is accepted and stored as the id the adapter expects.
            let id = value
                .strip_prefix("urn:lla:llaPartnerConversion:")
                .unwrap_or(&value);
            if is_digits(id) {
                Ok(id.to_owned())
            } else {
                Err(refused(
                    "format",
                    "must be a LinkedIn conversion rule id (digits), or its URN urn:lla:llaPartnerConversion:<id>",
                ))
            }
        }
        T::MicrosoftAds => text(value, MAX_MICROSOFT_GOAL_NAME),
        T::Webhook => text(value, MAX_MAPPING_LENGTH),
        T::Meta | T::TikTok | T::Reddit | T::Snapchat | T::Pinterest => Err(refused(
            "not_allowed",
            format!("{name} destinations take an eventName, not a conversionAction"),
        )),
    }
}

/// Checks a definition's `eventName` for `destination_type`; answers the value to store.
///
/// # Errors
/// [`Refused`] when the platform names no events, or does not know this name.
pub fn check_event_name(destination_type: DestinationType, value: &str) -> Result<String, Refused> {
    use DestinationType as T;
    let name = destination_type.as_str();
    let one_of = |value: &str, allowed: &'static str| {
        let value = text(value, MAX_MAPPING_LENGTH)?;
        if allowed.split(", ").any(|a| a == value) {
            Ok(value)
        } else {
            Err(refused(
                "invalid_value",
                format!("must be one of: {allowed}"),
            ))
        }
    };
    match destination_type {
        T::Reddit => one_of(value, crate::reddit::TRACKING_TYPES),
        T::Pinterest => one_of(value, crate::pinterest::EVENT_NAMES),
        T::Meta | T::TikTok | T::Snapchat | T::Webhook => text(value, MAX_MAPPING_LENGTH),
        T::GoogleAds | T::MicrosoftAds | T::LinkedIn => Err(refused(
            "not_allowed",
            format!("{name} destinations take a conversionAction, not an eventName"),
        )),
    }
}

/// Checks both values of a mapping; answers the mapping to store or every refusal, named by
/// its key (`conversionAction`, `eventName`).
///
/// # Errors
/// Each refused value with its key.
pub fn check_mapping(
    destination_type: DestinationType,
    conversion_action: Option<&str>,
    event_name: Option<&str>,
) -> Result<EventMapping, Vec<(&'static str, Refused)>> {
    let mut refusals = Vec::new();
    let mut mapping = EventMapping::default();
    if let Some(value) = conversion_action {
        match check_conversion_action(destination_type, value) {
            Ok(value) => mapping.conversion_action = Some(value),
            Err(r) => refusals.push(("conversionAction", r)),
        }
    }
    if let Some(value) = event_name {
        match check_event_name(destination_type, value) {
            Ok(value) => mapping.event_name = Some(value),
            Err(r) => refusals.push(("eventName", r)),
        }
    }
    if refusals.is_empty() {
        Ok(mapping)
    } else {
        Err(refusals)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn google_takes_conversion_action_ids_and_resource_names_only() {
        let t = DestinationType::GoogleAds;
        assert_eq!(check_conversion_action(t, " 123 ").unwrap(), "123");
        assert_eq!(
            check_conversion_action(t, "customers/42/conversionActions/123").unwrap(),
            "customers/42/conversionActions/123"
        );
        assert_eq!(
            check_conversion_action(t, "abc").unwrap_err().code,
            "format"
        );
        assert_eq!(check_event_name(t, "Lead").unwrap_err().code, "not_allowed");
    }

    #[test]
    fn linkedin_urns_are_stored_as_rule_ids() {
        let t = DestinationType::LinkedIn;
        assert_eq!(
            check_conversion_action(t, "urn:lla:llaPartnerConversion:987").unwrap(),
            "987"
        );
        assert_eq!(
            check_conversion_action(t, "rule").unwrap_err().code,
            "format"
        );
    }

    #[test]
    fn event_names_follow_each_platforms_list() {
        assert_eq!(
            check_event_name(DestinationType::Meta, "Schedule").unwrap(),
            "Schedule"
        );
        assert_eq!(
            check_event_name(DestinationType::Reddit, "SIGN_UP").unwrap(),
            "SIGN_UP"
        );
        assert_eq!(
            check_event_name(DestinationType::Reddit, "Schedule")
                .unwrap_err()
                .code,
            "invalid_value"
        );
        assert_eq!(
            check_event_name(DestinationType::Pinterest, "signup").unwrap(),
            "signup"
        );
        assert_eq!(
            check_conversion_action(DestinationType::Meta, "123")
                .unwrap_err()
                .code,
            "not_allowed"
        );
        assert_eq!(
            check_event_name(DestinationType::Snapchat, " ")
                .unwrap_err()
                .code,
            "min_length"
        );
    }

    #[test]
    fn webhooks_take_both_and_microsoft_goal_names_are_bounded() {
        let both = check_mapping(DestinationType::Webhook, Some("a"), Some("b")).unwrap();
        assert_eq!(both.conversion_action.as_deref(), Some("a"));
        assert_eq!(both.event_name.as_deref(), Some("b"));
        let long = "x".repeat(101);
        assert_eq!(
            check_conversion_action(DestinationType::MicrosoftAds, &long)
                .unwrap_err()
                .code,
            "max_length"
        );
        let refused = check_mapping(DestinationType::Meta, Some("1"), Some("")).unwrap_err();
        assert_eq!(
            refused.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
            ["conversionAction", "eventName"]
        );
    }
}
