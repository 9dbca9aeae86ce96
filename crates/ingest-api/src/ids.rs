//! Ids on the wire: a type prefix and the UUIDv7 in plain hex (`evt_0192…`), so that they sort
//! by time as strings too.

use time::OffsetDateTime;
use uuid::Uuid;

/// The prefix of event ids.
pub const EVENT: &str = "evt_";

/// An id as shown to clients.
pub fn to_wire(prefix: &str, id: Uuid) -> String {
    format!("{prefix}{}", id.simple())
}

/// Reads a client's id; `None` for anything that is not one of ours.
pub fn from_wire(prefix: &str, raw: &str) -> Option<Uuid> {
    let hex = raw.strip_prefix(prefix)?;
    if hex.len() != 32 {
        return None;
    }
    Uuid::try_parse(hex).ok()
}

/// A new id and the time it was made, which is also the time it shows as `receivedAt`.
pub fn new_event_id() -> (Uuid, OffsetDateTime) {
    let id = Uuid::now_v7();
    (id, created_at(id))
}

/// The time a UUIDv7 was made, to the millisecond.
pub fn created_at(id: Uuid) -> OffsetDateTime {
    journal::retention::time_of(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_foreign_ids_are_refused() {
        let (id, at) = new_event_id();
        let wire = to_wire(EVENT, id);
        assert!(wire.starts_with("evt_") && wire.len() == 36);
        assert_eq!(from_wire(EVENT, &wire), Some(id));
        assert_eq!(from_wire("dsp_", &wire), None);
        assert_eq!(from_wire(EVENT, "evt_123"), None);
        assert_eq!(
            from_wire(EVENT, "evt_0192f0c2-7c4e-7000-8000-000000000000"),
            None
        );
        assert!((OffsetDateTime::now_utc() - at).whole_seconds().abs() < 5);
        assert_eq!(at.nanosecond() % 1_000_000, 0);
    }
}
