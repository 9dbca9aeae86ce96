//! Ids on the wire: a type prefix and the UUIDv7 in plain hex (`dsp_0192…`), so that they sort by
//! time as strings too.

use uuid::Uuid;

/// Prefix of dispatch ids.
pub const DISPATCH: &str = "dsp_";
/// Prefix of destination ids.
pub const DESTINATION: &str = "dst_";
/// Prefix of event ids.
pub const EVENT: &str = "evt_";

/// An id as shown to clients.
pub fn to_wire(prefix: &str, id: Uuid) -> String {
    format!("{prefix}{}", id.simple())
}

/// Reads a client's id; `None` for anything that is not one of ours with this prefix.
pub fn from_wire(prefix: &str, raw: &str) -> Option<Uuid> {
    let hex = raw.strip_prefix(prefix)?;
    if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Uuid::try_parse(hex).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_foreign_ids_are_refused() {
        let id = Uuid::now_v7();
        let wire = to_wire(DISPATCH, id);
        assert!(wire.starts_with("dsp_") && wire.len() == 36);
        assert_eq!(from_wire(DISPATCH, &wire), Some(id));
        assert_eq!(from_wire(DESTINATION, &wire), None);
        assert_eq!(from_wire(DISPATCH, "dsp_123"), None);
        assert_eq!(
            from_wire(DISPATCH, "dsp_0192f0c2-7c4e-7000-8000-0000000000"),
            None
        );
    }
}
