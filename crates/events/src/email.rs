//! Email addresses, normalised once so that matching and hashing always see the same text.
//!
//! [`Email::parse`] is the only way to build an [`Email`], so every value of the type is trimmed,
//! lower-cased, at most 254 characters long and syntactically valid. Platform-specific rules
//! (Google drops dots in Gmail addresses, for instance) belong to the forwarder, on top of these.

use crate::error::{Error, Result};
use crate::sha256_hex;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use validator::ValidateEmail;

/// Longest accepted address, in characters (RFC 5321's limit on a forward path).
pub const MAX_EMAIL_LENGTH: usize = 254;

/// A normalised, syntactically valid email address.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Email(String);

impl Email {
    /// Trims and lower-cases `input`, then checks its length and syntax.
    ///
    /// # Errors
    /// [`Error::Empty`], [`Error::TooLong`] or [`Error::InvalidEmail`].
    pub fn parse(input: &str) -> Result<Self> {
        let normalised = input.trim().to_lowercase();
        if normalised.is_empty() {
            return Err(Error::Empty);
        }
        if normalised.chars().count() > MAX_EMAIL_LENGTH {
            return Err(Error::TooLong {
                max: MAX_EMAIL_LENGTH,
            });
        }
        if !normalised.validate_email() {
            return Err(Error::InvalidEmail);
        }
        Ok(Self(normalised))
    }

    /// The normalised address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Email {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Shows a hash prefix only, so that `{:?}` in a log line never carries the address.
impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Email(sha256:{})", &sha256_hex(&self.0)[..12])
    }
}

impl Serialize for Email {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Email {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Email::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn email_is_trimmed_and_lower_cased() {
        let email = Email::parse("  Alex.Smith+Promo@Example.COM\n").unwrap();
        assert_eq!(email.as_str(), "alex.smith+promo@example.com");
    }

    #[test]
    fn blank_email_is_empty() {
        assert_eq!(Email::parse("   "), Err(Error::Empty));
    }

    #[test]
    fn email_without_at_sign_is_invalid() {
        assert_eq!(Email::parse("alex.example.com"), Err(Error::InvalidEmail));
    }

    #[test]
    fn email_with_space_inside_is_invalid() {
        assert_eq!(
            Email::parse("alex smith@example.com"),
            Err(Error::InvalidEmail)
        );
    }

    #[test]
    fn email_of_255_characters_is_too_long() {
        let input = format!("{}@{}.com", "a".repeat(60), "b".repeat(190));
        assert_eq!(input.len(), 255);
        assert_eq!(Email::parse(&input), Err(Error::TooLong { max: 254 }));
    }

    #[test]
    fn email_debug_does_not_show_the_address() {
        let email = Email::parse("alex@example.com").unwrap();
        let debug = format!("{email:?}");
        assert!(!debug.contains("alex"), "{debug}");
        assert!(debug.starts_with("Email(sha256:"), "{debug}");
    }

    #[test]
    fn email_deserialisation_normalises() {
        let email: Email = serde_json::from_str(r#"" Alex@Example.com ""#).unwrap();
        assert_eq!(email.as_str(), "alex@example.com");
        assert!(serde_json::from_str::<Email>(r#""nope""#).is_err());
    }

    proptest! {
        #[test]
        fn email_normalisation_is_idempotent(
            local in "[A-Za-z0-9._%+-]{1,20}",
            domain in "[A-Za-z0-9]{1,20}\\.[A-Za-z]{2,6}",
            before in "[ \t]{0,3}",
            after in "[ \t\n]{0,3}",
        ) {
            let input = format!("{before}{local}@{domain}{after}");
            let once = Email::parse(&input).unwrap();
            prop_assert_eq!(once.as_str(), input.trim().to_lowercase());
            let twice = Email::parse(once.as_str()).unwrap();
            prop_assert_eq!(once, twice);
        }

        #[test]
        fn any_accepted_email_is_a_fixed_point(input in "\\PC{0,40}") {
            if let Ok(once) = Email::parse(&input) {
                prop_assert_eq!(Email::parse(once.as_str()), Ok(once.clone()));
                prop_assert_eq!(once.as_str(), once.as_str().trim());
            }
        }
    }
}
