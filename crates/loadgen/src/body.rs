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

/// Repeat customers shared by every connection in the `repeat` and `supernode` scenarios.
pub const REPEAT_CUSTOMERS: u64 = 4000;

/// Who the customers of a realistic sale are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Customers {
    /// Each customer has an e-mail address of their own.
    Own,
    /// Every customer gives the same placeholder address (as shops do for guest checkouts).
    SharedEmail,
}

/// Writes one realistic sale: one of [`REPEAT_CUSTOMERS`] repeat buyers (their
/// `customerExternalId` and e-mail), a `gclid` of its own, the landing page's UTM, page and
/// browser, and no timestamp (it happens when it is received). About 450 bytes.
pub fn write_repeat_sale(
    out: &mut String,
    run_id: &str,
    connection: u32,
    seq: u64,
    customers: Customers,
) {
    let customer = (seq.wrapping_mul(7919) + u64::from(connection) * 131) % REPEAT_CUSTOMERS;
    let email = match customers {
        Customers::Own => format!("buyer{customer}@mail.example"),
        Customers::SharedEmail => "test@example.com".to_owned(),
    };
    // Writing into a String cannot fail.
    let _ = write!(
        out,
        concat!(
            r#"{{"event":"sale","customerExternalId":"cust_{c}","email":"{email}","#,
            r#""gclid":"Cj0KCQiA_{run}_{conn}_{seq}_BwE","currency":"EUR","amount":84.9,"#,
            r#""invoiceId":"ord_{run}_{conn}_{seq}","#,
            r#""utm":{{"source":"google","medium":"cpc","campaign":"winter_sale_2026","term":"wool socks"}},"#,
            r#""pageUrl":"https://shop.example/checkout/thank-you?order={seq}","#,
            r#""ip":"203.0.113.{ip}","#,
            r#""userAgent":"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"}}"#
        ),
        c = customer,
        email = email,
        run = run_id,
        conn = connection,
        seq = seq,
        ip = customer % 250 + 1,
    );
}

/// The body of `POST /v1/events/batch` with realistic sales `first .. first + count`.
pub fn repeat_batch(
    run_id: &str,
    connection: u32,
    first: u64,
    count: u32,
    customers: Customers,
) -> Bytes {
    let mut out = String::with_capacity(16 + 480 * count as usize);
    out.push_str(r#"{"events":["#);
    for i in 0..u64::from(count) {
        if i > 0 {
            out.push(',');
        }
        write_repeat_sale(&mut out, run_id, connection, first + i, customers);
    }
    out.push_str("]}");
    Bytes::from(out)
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
    fn realistic_sales_come_from_repeat_customers_with_a_click_each() -> anyhow::Result<()> {
        let v: serde_json::Value = serde_json::from_slice(&repeat_batch(
            "r3",
            1,
            0,
            2 * REPEAT_CUSTOMERS as u32,
            Customers::Own,
        ))?;
        let events = v["events"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        let customers: std::collections::HashSet<_> = events
            .iter()
            .map(|e| e["customerExternalId"].clone())
            .collect();
        let clicks: std::collections::HashSet<_> =
            events.iter().map(|e| e["gclid"].clone()).collect();
        assert_eq!(
            customers.len() as u64,
            REPEAT_CUSTOMERS,
            "every customer buys twice"
        );
        assert_eq!(clicks.len(), events.len(), "a click of its own per sale");
        let one = serde_json::to_string(&events[0])?;
        assert!((400..520).contains(&one.len()), "{} bytes", one.len());
        let shared: serde_json::Value =
            serde_json::from_slice(&repeat_batch("r3", 1, 0, 3, Customers::SharedEmail))?;
        assert!(shared["events"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|e| e["email"] == "test@example.com"));
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
