//! The one wire form of a point in time: RFC 3339 in UTC with milliseconds,
//! `2026-04-10T12:34:56.000Z`.
//!
//! Stored times are cut to the millisecond when they are read, so that what is written back
//! out is exactly what is kept, and so that two spellings of one instant compare equal.

use crate::error::{Error, Result};
use time::format_description::well_known::Rfc3339;
use time::macros::datetime;
use time::{Duration, OffsetDateTime, UtcOffset};

/// How far past the time of receipt an event's own timestamp may be, for clock skew.
pub const MAX_FUTURE_SKEW: Duration = Duration::minutes(5);

/// The earliest accepted event time.
pub const EARLIEST: OffsetDateTime = datetime!(2000-01-01 0:00 UTC);

/// Writes `at` in UTC with exactly three fractional digits and a `Z`.
pub fn format_timestamp(at: OffsetDateTime) -> String {
    let at = at.to_offset(UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.millisecond()
    )
}

/// Reads an RFC 3339 date-time with an offset, converted to UTC and cut to the millisecond.
///
/// # Errors
/// [`Error::InvalidTimestamp`].
pub fn parse_timestamp(input: &str) -> Result<OffsetDateTime> {
    let at = OffsetDateTime::parse(input, &Rfc3339).map_err(|_| Error::InvalidTimestamp)?;
    // In UTC the instant must still fall in the years 0000 to 9999 that RFC 3339 can write:
    // `9999-12-31T23:59:59-23:59` is past them (and converting it unchecked would panic).
    match at.checked_to_offset(UtcOffset::UTC) {
        Some(utc) if (0..=9999).contains(&utc.year()) => Ok(to_utc_millis(utc)),
        _ => Err(Error::InvalidTimestamp),
    }
}

/// Converts `at` to UTC and drops everything below the millisecond.
pub fn to_utc_millis(at: OffsetDateTime) -> OffsetDateTime {
    let at = at.to_offset(UtcOffset::UTC);
    // Setting the millisecond the value already has cannot fail; it zeroes the finer digits.
    at.replace_millisecond(at.millisecond()).unwrap_or(at)
}

/// Checks an event time against the time it was received.
///
/// # Errors
/// [`Error::Future`] or [`Error::TooOld`].
pub fn check_event_time(at: OffsetDateTime, now: OffsetDateTime) -> Result<OffsetDateTime> {
    if at > now + MAX_FUTURE_SKEW {
        return Err(Error::Future);
    }
    if at < EARLIEST {
        return Err(Error::TooOld);
    }
    Ok(at)
}

/// Serde helpers for the wire form (`#[serde(with = "events::rfc3339_millis")]`).
///
/// Reading accepts any RFC 3339 date-time with an offset and keeps it in UTC to the millisecond.
pub mod rfc3339_millis {
    use super::{format_timestamp, parse_timestamp};
    use serde::{Deserialize, Deserializer, Serializer};
    use time::OffsetDateTime;

    /// Writes `at` as `2026-04-10T12:34:56.000Z`.
    pub fn serialize<S: Serializer>(at: &OffsetDateTime, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format_timestamp(*at))
    }

    /// Reads an RFC 3339 date-time with an offset.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<OffsetDateTime, D::Error> {
        let raw = String::deserialize(deserializer)?;
        parse_timestamp(&raw).map_err(serde::de::Error::custom)
    }

    /// The same for an optional time, written as `null` when absent.
    pub mod option {
        use super::super::{format_timestamp, parse_timestamp};
        use serde::{Deserialize, Deserializer, Serializer};
        use time::OffsetDateTime;

        /// Writes the time, or `null`.
        pub fn serialize<S: Serializer>(
            at: &Option<OffsetDateTime>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            match at {
                Some(at) => serializer.serialize_some(&format_timestamp(*at)),
                None => serializer.serialize_none(),
            }
        }

        /// Reads the time, or `null`.
        pub fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<OffsetDateTime>, D::Error> {
            Option::<String>::deserialize(deserializer)?
                .map(|raw| parse_timestamp(&raw).map_err(serde::de::Error::custom))
                .transpose()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde::{Deserialize, Serialize};

    #[test]
    fn timestamp_is_written_in_utc_with_three_fractional_digits() {
        let at = datetime!(2026-04-10 14:34:56.5 +02:00);
        assert_eq!(format_timestamp(at), "2026-04-10T12:34:56.500Z");
        assert_eq!(
            format_timestamp(datetime!(2026-04-10 12:34:56 UTC)),
            "2026-04-10T12:34:56.000Z"
        );
    }

    #[test]
    fn offset_timestamp_is_converted_to_utc() {
        let at = parse_timestamp("2026-04-10T08:34:56-04:00").unwrap();
        assert_eq!(at, datetime!(2026-04-10 12:34:56 UTC));
        assert_eq!(at.offset(), UtcOffset::UTC);
    }

    #[test]
    fn a_time_whose_utc_year_rfc_3339_cannot_write_is_invalid() {
        for input in ["9999-12-31T23:59:59-23:59", "0000-01-01T00:00:00+00:01"] {
            assert_eq!(
                parse_timestamp(input),
                Err(Error::InvalidTimestamp),
                "{input}"
            );
        }
        let at = parse_timestamp("9999-12-31T23:59:59.999Z").unwrap();
        assert_eq!(format_timestamp(at), "9999-12-31T23:59:59.999Z");
        let at = parse_timestamp("0000-01-01T00:00:00Z").unwrap();
        assert_eq!(format_timestamp(at), "0000-01-01T00:00:00.000Z");
    }

    #[test]
    fn sub_millisecond_digits_are_dropped() {
        let at = parse_timestamp("2026-04-10T12:34:56.123987654Z").unwrap();
        assert_eq!(format_timestamp(at), "2026-04-10T12:34:56.123Z");
        assert_eq!(at.nanosecond(), 123_000_000);
    }

    #[test]
    fn timestamp_without_offset_is_invalid() {
        assert_eq!(
            parse_timestamp("2026-04-10T12:34:56"),
            Err(Error::InvalidTimestamp)
        );
        assert_eq!(parse_timestamp("yesterday"), Err(Error::InvalidTimestamp));
    }

    #[test]
    fn six_minutes_ahead_is_future_but_four_is_skew() {
        let now = datetime!(2026-04-10 12:00 UTC);
        assert_eq!(
            check_event_time(now + Duration::minutes(6), now),
            Err(Error::Future)
        );
        assert!(check_event_time(now + Duration::minutes(4), now).is_ok());
    }

    #[test]
    fn last_century_is_too_old() {
        let now = datetime!(2026-04-10 12:00 UTC);
        assert_eq!(
            check_event_time(datetime!(1999-12-31 23:59:59 UTC), now),
            Err(Error::TooOld)
        );
        assert!(check_event_time(EARLIEST, now).is_ok());
    }

    #[test]
    fn serde_helpers_round_trip() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct Wrapper {
            #[serde(with = "rfc3339_millis")]
            at: OffsetDateTime,
            #[serde(with = "rfc3339_millis::option")]
            maybe: Option<OffsetDateTime>,
        }
        let wrapper = Wrapper {
            at: datetime!(2026-04-10 12:34:56.789 UTC),
            maybe: None,
        };
        let json = serde_json::to_string(&wrapper).unwrap();
        assert_eq!(json, r#"{"at":"2026-04-10T12:34:56.789Z","maybe":null}"#);
        assert_eq!(serde_json::from_str::<Wrapper>(&json).unwrap(), wrapper);
    }

    proptest! {
        #[test]
        fn formatted_timestamps_parse_back_to_the_same_instant(
            seconds in 946_684_800i64..4_102_444_800,
            millis in 0i64..1000,
        ) {
            let at = OffsetDateTime::from_unix_timestamp(seconds).unwrap()
                + Duration::milliseconds(millis);
            let text = format_timestamp(at);
            prop_assert_eq!(text.len(), 24);
            prop_assert_eq!(parse_timestamp(&text).unwrap(), at);
        }
    }
}
