//! Per-platform normalisation and SHA-256 hashing of user identifiers.
//!
//! Our own normalisation (an [`events::Email`] is trimmed and lower-cased, an
//! [`events::PhoneE164`] is E.164) is the common base; each platform adds its own rules on top,
//! and they differ: Google drops the dots and the `+tag` of Gmail addresses and hashes phones as
//! E.164 *with* the `+`, Meta hashes emails as they are and phones as digits *without* the `+`.
//! A hash built with the other platform's rules is accepted but never matches, so every rule
//! lives here, next to the known vectors from the platforms' documentation.
//!
//! Every hash is the SHA-256 of the UTF-8 text as 64 lower-case hex digits, unless a function
//! says otherwise.

use base64::Engine;
use sha2::{Digest, Sha256};

/// SHA-256 of `normalised`, as 64 lower-case hex digits.
pub fn sha256_hex(normalised: &str) -> String {
    events::sha256_hex(normalised)
}

/// SHA-256 of `normalised`, the 32 bytes as padded standard Base64 (44 characters): the Data
/// Manager API's `BASE64` encoding, never the Base64 of the hex text.
pub fn sha256_base64(normalised: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(normalised.as_bytes()))
}

/// The first 12 hex digits of a hash: the most of a user identifier a log line may carry.
pub fn hash_prefix(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// Google's form of an email address: trimmed and lower-cased; for `gmail.com` and
/// `googlemail.com` the local part also loses every `.` and a `+` with what follows it.
///
/// `None` for text that is not one address (inner whitespace, not exactly one `@`, an empty
/// part), which Google would reject.
pub fn google_email(raw: &str) -> Option<String> {
    let email = raw.trim().to_lowercase();
    if email.chars().any(char::is_whitespace) {
        return None;
    }
    let (local, domain) = email.split_once('@')?;
    if local.is_empty() || domain.is_empty() || domain.contains('@') {
        return None;
    }
    if domain == "gmail.com" || domain == "googlemail.com" {
        let untagged = local.split('+').next().unwrap_or(local);
        let local: String = untagged.chars().filter(|c| *c != '.').collect();
        if local.is_empty() {
            return None;
        }
        return Some(format!("{local}@{domain}"));
    }
    Some(email)
}

/// Google's form of a phone number: E.164, a `+` and the digits. The input must already carry
/// its country code (an [`events::PhoneE164`] always does): no country is guessed.
///
/// `None` when there are no digits or more than 15.
pub fn google_phone(raw: &str) -> Option<String> {
    let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
    if digits.is_empty() || digits.len() > 15 {
        return None;
    }
    Some(format!("+{digits}"))
}

/// SHA-256 (hex) of [`google_email`].
pub fn google_email_sha256(raw: &str) -> Option<String> {
    google_email(raw).map(|email| sha256_hex(&email))
}

/// SHA-256 (hex) of [`google_phone`].
pub fn google_phone_sha256(raw: &str) -> Option<String> {
    google_phone(raw).map(|phone| sha256_hex(&phone))
}

/// Meta's form of an email address: trimmed and lower-cased, nothing else (no Gmail rule).
///
/// `None` when it is not `something@something.something`.
pub fn meta_email(raw: &str) -> Option<String> {
    let email = raw.trim().to_lowercase();
    let (local, domain) = email.split_once('@')?;
    let (host, tld) = domain.rsplit_once('.')?;
    if local.is_empty() || host.is_empty() || tld.is_empty() {
        return None;
    }
    Some(email)
}

/// Meta's form of a phone number: the digits only, no `+`, no leading zeros; the country code
/// must already be there (it is never added).
///
/// `None` when no digit remains.
pub fn meta_phone(raw: &str) -> Option<String> {
    let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
    let digits = digits.trim_start_matches('0');
    if digits.is_empty() || digits.len() > 15 {
        return None;
    }
    Some(digits.to_owned())
}

/// Meta's form of a first or last name: lower-cased, letters only (punctuation, digits and
/// spaces removed), non-Latin letters kept as UTF-8.
///
/// `None` when no letter remains.
pub fn meta_name(raw: &str) -> Option<String> {
    let name: String = raw
        .chars()
        .filter(|c| c.is_alphabetic())
        .flat_map(char::to_lowercase)
        .collect();
    (!name.is_empty()).then_some(name)
}

/// Meta's form of `external_id`: the sender's id, trimmed; `None` when empty.
pub fn meta_external_id(raw: &str) -> Option<String> {
    let id = raw.trim();
    (!id.is_empty()).then(|| id.to_owned())
}

/// SHA-256 (hex) of [`meta_email`].
pub fn meta_email_sha256(raw: &str) -> Option<String> {
    meta_email(raw).map(|email| sha256_hex(&email))
}

/// SHA-256 (hex) of [`meta_phone`].
pub fn meta_phone_sha256(raw: &str) -> Option<String> {
    meta_phone(raw).map(|phone| sha256_hex(&phone))
}

/// SHA-256 (hex) of [`meta_name`].
pub fn meta_name_sha256(raw: &str) -> Option<String> {
    meta_name(raw).map(|name| sha256_hex(&name))
}

/// SHA-256 (hex) of [`meta_external_id`].
pub fn meta_external_id_sha256(raw: &str) -> Option<String> {
    meta_external_id(raw).map(|id| sha256_hex(&id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const JOHNSMITH_GMAIL: &str =
        "3586de92bb3636d0885a12eff961429a32e4ebd764b96f50d85d016f9338d586";
    const JOHN_SMITH_UNDERSCORE: &str =
        "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f";
    const GOOGLE_PHONE: &str = "1e231c66011e7a2d867a9cfae267a6aff103cf4913640b6e71a99850fc0ffbc8";
    const META_PHONE: &str = "e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176";
    const MARY: &str = "6915771be1c5aa0c886870b6951b03d7eafc121fea0e80a5ea83beb7c449f4ec";

    #[test]
    fn google_gmail_addresses_lose_dots_and_plus_tags() {
        assert_eq!(
            google_email("John.Smith@Gmail.com").as_deref(),
            Some("johnsmith@gmail.com")
        );
        assert_eq!(
            google_email("John.Smith+promo@GMail.com").as_deref(),
            Some("johnsmith@gmail.com")
        );
        assert_eq!(
            google_email_sha256("John.Smith@Gmail.com").as_deref(),
            Some(JOHNSMITH_GMAIL)
        );
        assert_eq!(
            google_email_sha256("  John.Smith+promo@GMail.com ").as_deref(),
            Some(JOHNSMITH_GMAIL)
        );
        assert_eq!(
            google_email("a.b+x@googlemail.com").as_deref(),
            Some("ab@googlemail.com")
        );
    }

    #[test]
    fn google_keeps_underscores_and_other_domains_as_they_are() {
        assert_eq!(
            google_email_sha256("john_smith@gmail.com").as_deref(),
            Some(JOHN_SMITH_UNDERSCORE)
        );
        assert_eq!(
            google_email("a.b+x@example.com").as_deref(),
            Some("a.b+x@example.com")
        );
    }

    #[test]
    fn google_refuses_text_that_is_not_one_address() {
        assert_eq!(google_email("john smith@gmail.com"), None);
        assert_eq!(google_email("a@b@c.com"), None);
        assert_eq!(google_email("nobody"), None);
        assert_eq!(google_email("+tag@gmail.com"), None);
    }

    #[test]
    fn google_hashes_phones_as_e164_with_the_plus() {
        assert_eq!(
            google_phone("+1 (650) 555-1212").as_deref(),
            Some("+16505551212")
        );
        assert_eq!(
            google_phone_sha256("+16505551212").as_deref(),
            Some(GOOGLE_PHONE)
        );
        assert_eq!(
            google_phone_sha256("+1 (650) 555-1212").as_deref(),
            Some(GOOGLE_PHONE)
        );
        assert_eq!(google_phone("no digits"), None);
    }

    #[test]
    fn google_base64_encodes_the_digest_not_the_hex() {
        assert_eq!(
            sha256_base64("johnsmith@gmail.com"),
            "NYbekrs2NtCIWhLv+WFCmjLk69dkuW9Q2F0Bb5M41YY="
        );
    }

    #[test]
    fn meta_emails_are_only_trimmed_and_lower_cased() {
        assert_eq!(
            meta_email_sha256("  John_Smith@gmail.com ").as_deref(),
            Some(JOHN_SMITH_UNDERSCORE)
        );
        assert_eq!(
            meta_email("John.Smith+promo@Gmail.com").as_deref(),
            Some("john.smith+promo@gmail.com")
        );
        assert_eq!(meta_email("not-an-address"), None);
    }

    #[test]
    fn meta_hashes_phones_as_digits_without_the_plus() {
        assert_eq!(
            meta_phone("+1 (650) 555-1212").as_deref(),
            Some("16505551212")
        );
        assert_eq!(meta_phone("(1)650555-1212").as_deref(), Some("16505551212"));
        assert_eq!(
            meta_phone_sha256("+16505551212").as_deref(),
            Some(META_PHONE)
        );
        assert_eq!(
            meta_phone("0044 20 7946 0958").as_deref(),
            Some("442079460958")
        );
        assert_ne!(META_PHONE, GOOGLE_PHONE);
    }

    #[test]
    fn meta_names_are_lower_case_letters() {
        assert_eq!(meta_name_sha256("Mary").as_deref(), Some(MARY));
        assert_eq!(meta_name("O'Brien").as_deref(), Some("obrien"));
        assert_eq!(meta_name("Valéry").as_deref(), Some("valéry"));
        assert_eq!(meta_name("--"), None);
    }

    #[test]
    fn hash_prefix_is_short() {
        assert_eq!(hash_prefix(GOOGLE_PHONE), "1e231c66011e");
        assert_eq!(hash_prefix("abc"), "abc");
    }

    proptest! {
        #[test]
        fn google_email_normalisation_is_idempotent(local in "[A-Za-z0-9._+]{1,20}", domain in "(gmail\\.com|googlemail\\.com|example\\.org)") {
            let raw = format!("{local}@{domain}");
            if let Some(once) = google_email(&raw) {
                prop_assert_eq!(google_email(&once), Some(once.clone()));
                prop_assert_eq!(once.to_lowercase(), once.clone());
                if domain != "example.org" {
                    let (local_part, _) = once.split_once('@').unwrap_or_default();
                    prop_assert!(!local_part.contains('.') && !local_part.contains('+'));
                }
            }
        }

        #[test]
        fn hashes_are_64_lower_case_hex_digits(text in ".{0,64}") {
            let hash = sha256_hex(&text);
            prop_assert_eq!(hash.len(), 64);
            prop_assert!(hash.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)));
        }

        #[test]
        fn platforms_phone_forms_differ_only_by_the_plus(digits in "[1-9][0-9]{6,13}") {
            let e164 = format!("+{digits}");
            prop_assert_eq!(google_phone(&e164), Some(e164.clone()));
            prop_assert_eq!(meta_phone(&e164), Some(digits.clone()));
            prop_assert_ne!(google_phone_sha256(&e164), meta_phone_sha256(&e164));
        }
    }
}
