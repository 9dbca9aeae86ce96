//! Phone numbers in E.164, the one form every ad platform can match on.
//!
//! Events arrive from servers all over the world with no reliable notion of "the user's country",
//! so a number must carry its own country code (`+` or the `00` international prefix); guessing a
//! region would silently attribute conversions to the wrong person. [`PhoneE164::parse`] is the
//! only way to build a [`PhoneE164`].

use crate::error::{Error, Result};
use crate::sha256_hex;
use phonenumber::Mode;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Inputs longer than this are rejected before they reach the phone number parser; no
/// legitimately formatted number with an extension comes close.
const MAX_INPUT_LENGTH: usize = 64;

const NO_COUNTRY_CODE: &str =
    "must start with + and the country code (or 00 and the country code), e.g. +14155550123";
const UNPARSEABLE: &str =
    "must be a phone number in international format, e.g. +14155550123 or +44 20 7946 0958";
const NOT_VALID: &str =
    "is not a valid phone number for its country code; check the country code and the number of digits";

/// A valid phone number in E.164 form, e.g. `+14155550123`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PhoneE164(String);

impl PhoneE164 {
    /// Parses a number written with its country code, in any common formatting
    /// (`+1 (415) 555-0123`, `0044 20 7946 0958`, `tel:+1-415-555-0123`).
    ///
    /// # Errors
    /// [`Error::Empty`], or [`Error::InvalidPhone`] when the number has no country code, cannot
    /// be parsed, or is not a valid number for its country.
    pub fn parse(input: &str) -> Result<Self> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(Error::Empty);
        }
        if trimmed.chars().count() > MAX_INPUT_LENGTH {
            return Err(invalid(UNPARSEABLE));
        }
        let international = if let Some(rest) = trimmed.strip_prefix("00") {
            format!("+{rest}")
        } else if trimmed.starts_with('+') || trimmed.starts_with("tel:+") {
            trimmed.to_owned()
        } else {
            return Err(invalid(NO_COUNTRY_CODE));
        };
        let number = phonenumber::parse(None, &international).map_err(|_| invalid(UNPARSEABLE))?;
        if !phonenumber::is_valid(&number) {
            return Err(invalid(NOT_VALID));
        }
        Ok(Self(number.format().mode(Mode::E164).to_string()))
    }

    /// The number in E.164, with its leading `+`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The digits only, without the leading `+` (the form some platforms hash).
    pub fn digits(&self) -> &str {
        self.0.strip_prefix('+').unwrap_or(&self.0)
    }
}

fn invalid(reason: &'static str) -> Error {
    Error::InvalidPhone { reason }
}

impl AsRef<str> for PhoneE164 {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PhoneE164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Shows a hash prefix only, so that `{:?}` in a log line never carries the number.
impl fmt::Debug for PhoneE164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PhoneE164(sha256:{})", &sha256_hex(&self.0)[..12])
    }
}

impl Serialize for PhoneE164 {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// True for the form [`PhoneE164::parse`] produces: `+`, a non-zero digit, and at most 15
/// digits in all.
fn is_e164_form(raw: &str) -> bool {
    raw.strip_prefix('+').is_some_and(|digits| {
        (2..=15).contains(&digits.len())
            && !digits.starts_with('0')
            && digits.bytes().all(|b| b.is_ascii_digit())
    })
}

/// The serialized form is the E.164 text a parse produced (events are validated when they
/// arrive, then stored and read back many times): text already in that form is taken as it is,
/// without checking the number against the numbering plan again (the plan's patterns make that
/// the costliest part of reading a stored event). Anything else is parsed as input would be.
impl<'de> Deserialize<'de> for PhoneE164 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        if is_e164_form(&raw) {
            return Ok(Self(raw));
        }
        PhoneE164::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn e164(input: &str) -> String {
        PhoneE164::parse(input).unwrap().as_str().to_owned()
    }

    #[test]
    fn the_stored_form_reads_back_as_it_was_and_other_text_is_parsed() {
        let stored = PhoneE164::parse("+44 20 7946 0958").unwrap();
        let json = serde_json::to_string(&stored).unwrap();
        assert_eq!(json, r#""+442079460958""#);
        assert_eq!(serde_json::from_str::<PhoneE164>(&json).unwrap(), stored);
        let formatted: PhoneE164 = serde_json::from_str(r#""+1 (415) 555-0123""#).unwrap();
        assert_eq!(formatted.as_str(), "+14155550123");
        for refused in [
            r#""""#,
            r#""4155550123""#,
            r#""+1 415 555""#,
            r#""+0123456789""#,
        ] {
            assert!(
                serde_json::from_str::<PhoneE164>(refused).is_err(),
                "{refused}"
            );
        }
        assert!(!is_e164_form("+1234567890123456"));
        assert!(!is_e164_form("+1415555012x"));
    }

    #[test]
    fn formatted_us_number_becomes_e164() {
        assert_eq!(e164("+1 (415) 555-0123"), "+14155550123");
        assert_eq!(e164("+14155550123"), "+14155550123");
    }

    #[test]
    fn double_zero_prefix_counts_as_plus() {
        assert_eq!(e164("0044 20 7946 0958"), "+442079460958");
    }

    #[test]
    fn tel_uri_is_accepted() {
        assert_eq!(e164("tel:+1-415-555-0123"), "+14155550123");
    }

    #[test]
    fn national_number_without_country_code_is_rejected_with_a_hint() {
        let err = PhoneE164::parse("(415) 555-0123").unwrap_err();
        assert_eq!(err.code(), "invalid_phone");
        assert!(err.to_string().contains("country code"), "{err}");
    }

    #[test]
    fn letters_are_not_a_phone_number() {
        let err = PhoneE164::parse("+call me maybe").unwrap_err();
        assert_eq!(err.code(), "invalid_phone");
    }

    #[test]
    fn number_too_short_for_its_country_is_invalid() {
        let err = PhoneE164::parse("+1 415 555").unwrap_err();
        assert_eq!(err.code(), "invalid_phone");
    }

    #[test]
    fn blank_phone_is_empty() {
        assert_eq!(PhoneE164::parse("  "), Err(Error::Empty));
    }

    #[test]
    fn digits_drop_the_plus() {
        assert_eq!(
            PhoneE164::parse("+14155550123").unwrap().digits(),
            "14155550123"
        );
    }

    #[test]
    fn phone_debug_does_not_show_the_number() {
        let debug = format!("{:?}", PhoneE164::parse("+14155550123").unwrap());
        assert!(!debug.contains("4155550123"), "{debug}");
    }

    proptest! {
        #[test]
        fn phone_normalisation_is_idempotent(
            prefix in prop::sample::select(vec!["+1", "+44", "+49", "+33", "+81", "+61", "0044", "001"]),
            digits in "[0-9]{6,12}",
            separator in prop::sample::select(vec!["", " ", "-", "."]),
        ) {
            let (head, tail) = digits.split_at(3);
            let input = format!("{prefix}{separator}{head}{separator}{tail}");
            if let Ok(once) = PhoneE164::parse(&input) {
                prop_assert!(once.as_str().starts_with('+'));
                prop_assert!(once.digits().chars().all(|c| c.is_ascii_digit()));
                prop_assert_eq!(PhoneE164::parse(once.as_str()), Ok(once.clone()));
            }
        }

        #[test]
        fn formatting_of_a_valid_number_does_not_change_its_e164(
            (country_code, national) in prop::sample::select(vec![
                ("1", "4155550123"), ("44", "2079460958"), ("49", "30901820"),
                ("33", "142685300"), ("81", "312345678"), ("61", "291234567"),
                ("55", "11987654321"), ("91", "9876543210"),
            ]),
            separators in prop::collection::vec(prop::sample::select(vec!["", "", " ", "-", "."]), 12),
            double_zero in any::<bool>(),
        ) {
            let mut input = format!("{}{country_code} ", if double_zero { "00" } else { "+" });
            for (digit, separator) in national.chars().zip(separators.iter()) {
                input.push(digit);
                input.push_str(separator);
            }
            let once = PhoneE164::parse(&input).unwrap();
            prop_assert_eq!(once.as_str(), format!("+{country_code}{national}"));
            prop_assert_eq!(PhoneE164::parse(once.as_str()), Ok(once.clone()));
        }

        #[test]
        fn phone_parser_never_panics(input in "\\PC{0,40}") {
            let _ = PhoneE164::parse(&input);
        }
    }
}
