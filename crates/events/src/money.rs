//! Money: an exact decimal amount in major units together with its ISO 4217 currency.
//!
//! Amounts never pass through `f64`: a JSON number's exact text (kept by serde_json's
//! `arbitrary_precision`) becomes a [`Decimal`] digit for digit, so `0.1` stays `0.1` and
//! `199.0` stays `199.0` all the way to the ad platforms and the revenue reports.

use crate::error::{Error, Result};
use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Most decimal places an amount may have.
pub const MAX_DECIMAL_PLACES: u32 = 4;

/// Largest accepted amount, 10^14 major units.
pub const MAX_AMOUNT: Decimal = Decimal::from_parts(0x107A_4000, 0x5AF3, 0, false, 0);

const MAX_AMOUNT_TEXT: &str = "100000000000000";

/// An ISO 4217 currency, read case-insensitively and written upper-case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency(iso_currency::Currency);

impl Currency {
    /// Reads a three-letter ISO 4217 code in any case, ignoring surrounding whitespace.
    ///
    /// # Errors
    /// [`Error::Empty`] or [`Error::InvalidCurrency`].
    pub fn parse(input: &str) -> Result<Self> {
        let code = input.trim();
        if code.is_empty() {
            return Err(Error::Empty);
        }
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(Error::InvalidCurrency);
        }
        iso_currency::Currency::from_code(&code.to_ascii_uppercase())
            .map(Self)
            .ok_or(Error::InvalidCurrency)
    }

    /// The upper-case code, e.g. `USD`.
    pub fn code(&self) -> &'static str {
        self.0.code()
    }

    /// The underlying ISO 4217 record (name, minor units, numeric code).
    pub fn iso(&self) -> iso_currency::Currency {
        self.0
    }
}

impl From<iso_currency::Currency> for Currency {
    fn from(currency: iso_currency::Currency) -> Self {
        Self(currency)
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(self.code())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Currency::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// A non-negative amount of at most four decimal places and at most 10^14, in a currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Money {
    amount: Decimal,
    currency: Currency,
}

impl Money {
    /// Checks `amount` against the amount rules (see [`check_amount`]).
    ///
    /// # Errors
    /// [`Error::Minimum`], [`Error::Maximum`] or [`Error::Precision`].
    pub fn new(amount: Decimal, currency: Currency) -> Result<Self> {
        Ok(Self {
            amount: check_amount(amount)?,
            currency,
        })
    }

    /// The amount in major units (`199.0` is 199 dollars).
    pub fn amount(&self) -> Decimal {
        self.amount
    }

    /// The currency of the amount.
    pub fn currency(&self) -> Currency {
        self.currency
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount, self.currency)
    }
}

/// Applies the amount rules: at least 0, at most [`MAX_AMOUNT`], at most [`MAX_DECIMAL_PLACES`]
/// decimal places once trailing zeros are ignored.
///
/// The scale is kept when it is within the limit, so `199.0` is still written `199.0`; trailing
/// zeros beyond the limit are dropped (`1.50000` becomes `1.5000`), and `-0` becomes `0`.
///
/// # Errors
/// [`Error::Minimum`], [`Error::Maximum`] or [`Error::Precision`].
pub fn check_amount(amount: Decimal) -> Result<Decimal> {
    let mut amount = amount;
    if amount.is_zero() {
        amount.set_sign_positive(true);
    }
    if amount.is_sign_negative() {
        return Err(Error::Minimum { min: "0" });
    }
    if amount > MAX_AMOUNT {
        return Err(Error::Maximum {
            max: MAX_AMOUNT_TEXT,
        });
    }
    if amount.scale() > MAX_DECIMAL_PLACES {
        let rounded = amount.round_dp(MAX_DECIMAL_PLACES);
        if rounded != amount {
            return Err(Error::Precision {
                places: MAX_DECIMAL_PLACES,
            });
        }
        amount = rounded;
    }
    Ok(amount)
}

/// Reads an amount from a JSON number, exactly, and applies [`check_amount`].
///
/// # Errors
/// [`Error::Minimum`], [`Error::Maximum`] or [`Error::Precision`].
pub fn amount_from_json(number: &serde_json::Number) -> Result<Decimal> {
    check_amount(decimal_from_json_text(&number.to_string())?)
}

/// Turns the text of a JSON number (`-?int(.frac)?([eE][+-]?exp)?`) into the exact [`Decimal`].
///
/// Written out rather than left to `Decimal::from_scientific`, which rounds a long mantissa
/// without saying so and whose errors do not tell "too large" from "too precise" — the client
/// deserves to know which of the two it got wrong. Values beyond the amount rules are rejected
/// here already, so the digits always fit.
fn decimal_from_json_text(text: &str) -> Result<Decimal> {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (&unsigned[..at], parse_exponent(&unsigned[at + 1..])?),
        None => (unsigned, 0),
    };
    let (integer, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if integer.is_empty() || !is_digits(integer) || !is_digits(fraction) {
        return Err(Error::Type {
            expected: "a number",
        });
    }

    let digits = format!("{integer}{fraction}");
    let mut digits = digits.trim_start_matches('0').to_owned();
    let fraction_len = i64::try_from(fraction.len()).unwrap_or(i64::MAX);
    let mut scale = fraction_len.saturating_sub(exponent);

    if digits.is_empty() {
        // Zero in any spelling; keep a scale within the limit so that `0.00` reads back alike.
        let scale = u32::try_from(scale.clamp(0, i64::from(MAX_DECIMAL_PLACES))).unwrap_or(0);
        return Ok(Decimal::new(0, scale));
    }
    if negative {
        return Err(Error::Minimum { min: "0" });
    }
    while scale > i64::from(MAX_DECIMAL_PLACES) && digits.ends_with('0') {
        digits.pop();
        scale -= 1;
    }
    if scale > i64::from(MAX_DECIMAL_PLACES) {
        return Err(Error::Precision {
            places: MAX_DECIMAL_PLACES,
        });
    }
    // 10^14 with four decimal places has 19 digits; anything longer is over the maximum.
    const MAX_DIGITS: i64 = 19;
    let too_large = Error::Maximum {
        max: MAX_AMOUNT_TEXT,
    };
    let len = i64::try_from(digits.len()).unwrap_or(i64::MAX);
    if len.saturating_add((-scale).max(0)) > MAX_DIGITS {
        return Err(too_large);
    }
    if scale < 0 {
        digits.extend(std::iter::repeat_n(
            '0',
            usize::try_from(-scale).unwrap_or(0),
        ));
        scale = 0;
    }
    let mantissa: u64 = digits.parse().map_err(|_| too_large.clone())?;
    let scale = u32::try_from(scale).map_err(|_| too_large.clone())?;
    Decimal::try_from_i128_with_scale(i128::from(mantissa), scale).map_err(|_| too_large)
}

/// Reads a JSON exponent; absurd exponents saturate, which the range checks then reject.
fn parse_exponent(text: &str) -> Result<i64> {
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if digits.is_empty() || !is_digits(digits) {
        return Err(Error::Type {
            expected: "a number",
        });
    }
    let magnitude = digits.parse::<i64>().unwrap_or(i64::MAX / 2);
    Ok(if negative { -magnitude } else { magnitude })
}

fn is_digits(text: &str) -> bool {
    text.bytes().all(|b| b.is_ascii_digit())
}

/// Serde helpers that write an amount as a JSON number with its exact digits, never as a float
/// or a string.
pub mod amount_serde {
    use rust_decimal::Decimal;
    use serde::{Deserializer, Serializer};

    /// Writes `amount` as a JSON number, digit for digit.
    pub fn serialize<S: Serializer>(amount: &Decimal, serializer: S) -> Result<S::Ok, S::Error> {
        rust_decimal::serde::arbitrary_precision::serialize(amount, serializer)
    }

    /// Reads a JSON number exactly.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Decimal, D::Error> {
        rust_decimal::serde::arbitrary_precision::deserialize(deserializer)
    }

    /// The same for an optional amount.
    pub mod option {
        use rust_decimal::Decimal;
        use serde::{Deserializer, Serializer};

        /// Writes the amount as a JSON number, or `null`.
        pub fn serialize<S: Serializer>(
            amount: &Option<Decimal>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            rust_decimal::serde::arbitrary_precision_option::serialize(amount, serializer)
        }

        /// Reads a JSON number exactly, or `null`.
        pub fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<Decimal>, D::Error> {
            rust_decimal::serde::arbitrary_precision_option::deserialize(deserializer)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::str::FromStr;

    fn amount(text: &str) -> Result<Decimal> {
        let number = serde_json::Number::from_str(text).unwrap();
        amount_from_json(&number)
    }

    fn dec(text: &str) -> Decimal {
        Decimal::from_str(text).unwrap()
    }

    #[test]
    fn max_amount_is_ten_to_the_fourteenth() {
        assert_eq!(MAX_AMOUNT, dec(MAX_AMOUNT_TEXT));
    }

    #[test]
    fn amount_keeps_its_exact_digits() {
        assert_eq!(amount("199.0").unwrap().to_string(), "199.0");
        assert_eq!(amount("0.1").unwrap().to_string(), "0.1");
        assert_eq!(amount("12.3456").unwrap(), dec("12.3456"));
        assert_eq!(amount("100000000000000").unwrap(), MAX_AMOUNT);
    }

    #[test]
    fn amount_in_exponent_form_is_exact() {
        assert_eq!(amount("1e2").unwrap(), dec("100"));
        assert_eq!(amount("1.5E-3").unwrap(), dec("0.0015"));
        assert_eq!(amount("2.5e+1").unwrap(), dec("25"));
        assert_eq!(amount("1e14").unwrap(), MAX_AMOUNT);
    }

    #[test]
    fn negative_amount_is_below_minimum() {
        assert_eq!(amount("-0.01"), Err(Error::Minimum { min: "0" }));
        assert_eq!(amount("-1e400"), Err(Error::Minimum { min: "0" }));
    }

    #[test]
    fn negative_zero_is_zero() {
        let zero = amount("-0.0").unwrap();
        assert!(zero.is_zero());
        assert!(!zero.is_sign_negative());
    }

    #[test]
    fn five_decimal_places_is_too_precise() {
        let precision = Error::Precision { places: 4 };
        assert_eq!(amount("1.00001"), Err(precision.clone()));
        assert_eq!(amount("1e-5"), Err(precision.clone()));
        assert_eq!(
            amount("0.1234567890123456789012345678901234"),
            Err(precision)
        );
    }

    #[test]
    fn trailing_zeros_beyond_four_places_are_dropped() {
        assert_eq!(amount("1.50000").unwrap().to_string(), "1.5000");
        assert_eq!(amount("150000e-5").unwrap().to_string(), "1.5000");
        let checked = check_amount(Decimal::from_str("1.500000").unwrap()).unwrap();
        assert_eq!(checked.to_string(), "1.5000");
    }

    #[test]
    fn amount_over_ten_to_the_fourteenth_is_over_maximum() {
        let maximum = Error::Maximum {
            max: MAX_AMOUNT_TEXT,
        };
        assert_eq!(amount("100000000000000.0001"), Err(maximum.clone()));
        assert_eq!(amount("1e15"), Err(maximum.clone()));
        assert_eq!(amount("1e999999999999999999999"), Err(maximum.clone()));
        assert_eq!(amount("123456789012345678901234567890"), Err(maximum));
    }

    #[test]
    fn tiny_exponent_is_too_precise_unless_zero() {
        assert_eq!(
            amount("1e-999999999999999999999"),
            Err(Error::Precision { places: 4 })
        );
        assert!(amount("0e-999999999999999999999").unwrap().is_zero());
    }

    #[test]
    fn currency_is_case_insensitive_and_written_upper_case() {
        assert_eq!(Currency::parse("usd").unwrap().code(), "USD");
        assert_eq!(Currency::parse(" Eur ").unwrap().to_string(), "EUR");
    }

    #[test]
    fn unknown_currency_is_invalid() {
        assert_eq!(Currency::parse("ABC"), Err(Error::InvalidCurrency));
        assert_eq!(Currency::parse("US"), Err(Error::InvalidCurrency));
        assert_eq!(Currency::parse("dollars"), Err(Error::InvalidCurrency));
        assert_eq!(Currency::parse(""), Err(Error::Empty));
    }

    #[test]
    fn money_rejects_what_the_amount_rules_reject() {
        let usd = Currency::parse("USD").unwrap();
        assert!(Money::new(dec("-1"), usd).is_err());
        assert_eq!(
            Money::new(dec("19.99"), usd).unwrap().amount(),
            dec("19.99")
        );
    }

    #[test]
    fn amount_serialises_as_an_exact_json_number() {
        #[derive(Serialize, Deserialize)]
        struct Wrapper {
            #[serde(with = "amount_serde")]
            amount: Decimal,
        }
        for text in ["199.0", "0.1", "12.3456", "0"] {
            let json = format!(r#"{{"amount":{text}}}"#);
            let wrapper: Wrapper = serde_json::from_str(&json).unwrap();
            assert_eq!(wrapper.amount.to_string(), text);
            assert_eq!(serde_json::to_string(&wrapper).unwrap(), json);
            let value: serde_json::Value = serde_json::from_str(&json).unwrap();
            let from_value: Wrapper = serde_json::from_value(value).unwrap();
            assert_eq!(from_value.amount.to_string(), text);
        }
    }

    proptest! {
        #[test]
        fn generated_decimal_strings_parse_exactly(
            (scale, mantissa) in (0u32..=4).prop_flat_map(|scale| {
                (Just(scale), 0i64..=100_000_000_000_000 * 10i64.pow(scale))
            }),
        ) {
            let expected = Decimal::new(mantissa, scale);
            let text = expected.to_string();
            let parsed = amount(&text).unwrap();
            prop_assert_eq!(parsed, expected);
            prop_assert_eq!(parsed.to_string(), text);
        }

        #[test]
        fn exponent_spellings_parse_to_the_same_value(
            mantissa in 0i64..=10_000_000_000,
            scale in 0u32..=4,
            shift in 0u32..=6,
        ) {
            let expected = Decimal::new(mantissa, scale);
            // mantissa × 10^-(scale + shift) × 10^shift is the same number.
            let text = format!("{}e{}", Decimal::new(mantissa, scale + shift), shift);
            prop_assert_eq!(amount(&text).unwrap(), expected);
        }

        #[test]
        fn amount_parser_never_panics(text in "-?[0-9]{1,30}(\\.[0-9]{1,30})?([eE][+-]?[0-9]{1,25})?") {
            if let Ok(number) = serde_json::Number::from_str(&text) {
                let _ = amount_from_json(&number);
            }
        }
    }
}
