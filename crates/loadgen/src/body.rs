//! Request bodies: sales whose `invoiceId` is unique to (run, connection, sequence number), so
//! that a sequence number is all it takes to send the same sale again.

use std::fmt::Write as _;

use bytes::Bytes;

/// Distinct customers per connection; customer ids and e-mails cycle through them.
const CUSTOMERS: u64 = 500;

/// Writes one sale as JSON. Same arguments, same bytes.
pub fn write_sale(out: &mut String, run_id: &str, connection: u32, seq: u64) {
    let customer = (seq * 7 + u64::from(connection) * 131) % CUSTOMERS;
    // Writing into a String cannot fail.
    let _ = write!(
        out,
        concat!(
            r#"{{"event":"sale","timestamp":"2026-04-10T12:45:10.000Z","clickId":"clk_abc123","#,
            r#""customerExternalId":"user_{c}","email":"user{c}@example.com","currency":"USD","#,
            r#""amount":199.0,"invoiceId":"inv_{run}_{conn}_{seq}"}}"#
        ),
        c = customer,
        run = run_id,
        conn = connection,
        seq = seq,
    );
}

/// The body of `POST /v1/events`.
pub fn single(run_id: &str, connection: u32, seq: u64) -> Bytes {
    let mut out = String::with_capacity(256);
    write_sale(&mut out, run_id, connection, seq);
    Bytes::from(out)
}

/// The body of `POST /v1/events/batch`: the sales `first .. first + count`.
pub fn batch(run_id: &str, connection: u32, first: u64, count: u32) -> Bytes {
    let mut out = String::with_capacity(16 + 256 * count as usize);
    out.push_str(r#"{"events":["#);
    for i in 0..u64::from(count) {
        if i > 0 {
            out.push(',');
        }
        write_sale(&mut out, run_id, connection, first + i);
    }
    out.push_str("]}");
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sale_is_valid_json_with_its_own_invoice() -> anyhow::Result<()> {
        let v: serde_json::Value = serde_json::from_slice(&single("r1", 3, 42))?;
        assert_eq!(v["event"], "sale");
        assert_eq!(v["invoiceId"], "inv_r1_3_42");
        assert_eq!(v["currency"], "USD");
        assert!(v["email"]
            .as_str()
            .is_some_and(|e| e.ends_with("@example.com")));
        assert_eq!(single("r1", 3, 42), single("r1", 3, 42));
        Ok(())
    }

    #[test]
    fn a_batch_holds_consecutive_sales() -> anyhow::Result<()> {
        let v: serde_json::Value = serde_json::from_slice(&batch("r2", 0, 10, 3))?;
        let events = v["events"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        let invoices: Vec<_> = events.iter().map(|e| e["invoiceId"].clone()).collect();
        assert_eq!(invoices, ["inv_r2_0_10", "inv_r2_0_11", "inv_r2_0_12"]);
        Ok(())
    }
}
