//! A small Convrelay client: registers an ad click, sends a lead from that click, then a sale of
//! the same customer with `mode: "wait"` and prints how the sale was attributed and routed.
//! Both events carry an `Idempotency-Key`, and the sale is sent twice to show the replay.
//!
//! ```sh
//! CONVRELAY_KEY=cr_... cargo run -p ingest-api --example client
//! ```
//!
//! `CONVRELAY_URL` defaults to `http://127.0.0.1:8080`; the key needs the `ingest` and `read`
//! scopes. Each run uses new ids, so it can be run again and again.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use reqwest::{Client, Response, StatusCode};
use serde_json::{json, Value};

/// Where the server is and how to talk to it.
struct Convrelay {
    http: Client,
    base: String,
    key: String,
}

impl Convrelay {
    fn from_env() -> Result<Self> {
        let key = std::env::var("CONVRELAY_KEY")
            .context("set CONVRELAY_KEY to an API key with the ingest and read scopes")?;
        let base = std::env::var("CONVRELAY_URL")
            .unwrap_or_else(|_| "http://127.0.0.1:8080".to_owned())
            .trim_end_matches('/')
            .to_owned();
        Ok(Self {
            http: Client::new(),
            base,
            key,
        })
    }

    /// POSTs `body` with an `Idempotency-Key`, so that a retry after a timeout can never store
    /// the event twice.
    async fn post(&self, path: &str, idempotency_key: &str, body: &Value) -> Result<Response> {
        self.http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .header("Idempotency-Key", idempotency_key)
            .json(body)
            .send()
            .await
            .with_context(|| format!("POST {path}"))
    }
}

/// The answer's JSON body, or an error carrying the problem+json `detail` of a 4xx/5xx.
async fn json_of(response: Response, what: &str) -> Result<(StatusCode, Value)> {
    let status = response.status();
    let body: Value = response
        .json()
        .await
        .with_context(|| format!("{what}: the answer is not JSON"))?;
    if !status.is_success() {
        bail!(
            "{what}: HTTP {status}: {}\n{body:#}",
            body["detail"].as_str().unwrap_or("no detail")
        );
    }
    Ok((status, body))
}

#[tokio::main]
async fn main() -> Result<()> {
    let api = Convrelay::from_env()?;
    let run = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the clock is before 1970")?
        .as_millis();
    let click_id = format!("clk_example_{run}");
    let customer = format!("user_example_{run}");
    let invoice = format!("inv_example_{run}");

    // The ad click, as a landing page would register it.
    let click = json!({
        "clickId": click_id,
        "gclid": format!("Cj0KCQ-example-{run}"),
        "fbclid": format!("IwAR-example-{run}"),
        "utm": {"source": "google", "medium": "cpc", "campaign": "spring_sale"},
    });
    let (status, _) = json_of(
        api.post("/v1/clicks", &format!("click-{click_id}"), &click)
            .await?,
        "click",
    )
    .await?;
    println!("click {click_id}: HTTP {}", status.as_u16());

    // The lead links the customer to the click.
    let lead = json!({
        "event": "lead",
        "eventName": "Sign up",
        "leadId": format!("lead_example_{run}"),
        "clickId": click_id,
        "customerExternalId": customer,
        "email": "new.customer@example.com",
    });
    let (status, answer) = json_of(
        api.post("/v1/events", &format!("lead-{run}"), &lead)
            .await?,
        "lead",
    )
    .await?;
    println!(
        "lead {}: HTTP {}",
        answer["id"].as_str().unwrap_or("?"),
        status.as_u16()
    );

    // The sale names only the customer; "wait" answers once attribution has decided.
    let sale = json!({
        "event": "sale",
        "invoiceId": invoice,
        "customerExternalId": customer,
        "currency": "USD",
        "amount": 199.0,
        "mode": "wait",
    });
    let sale_key = format!("sale-{invoice}");
    let (status, answer) = json_of(api.post("/v1/events", &sale_key, &sale).await?, "sale").await?;
    println!(
        "sale {}: HTTP {}",
        answer["id"].as_str().unwrap_or("?"),
        status.as_u16()
    );
    let attribution = &answer["attribution"];
    println!(
        "attribution: status={} matchedBy={} click={} model={}",
        attribution["status"].as_str().unwrap_or("-"),
        attribution["matchedBy"].as_str().unwrap_or("-"),
        attribution["click"]["clickId"].as_str().unwrap_or("-"),
        attribution["model"].as_str().unwrap_or("-"),
    );
    println!("attribution (full): {attribution:#}");
    for dispatch in answer["dispatches"].as_array().into_iter().flatten() {
        println!(
            "dispatch {} to {} ({}): {}",
            dispatch["id"].as_str().unwrap_or("?"),
            dispatch["destination"].as_str().unwrap_or("?"),
            dispatch["type"].as_str().unwrap_or("?"),
            dispatch["status"].as_str().unwrap_or("?"),
        );
    }

    // The same request again: the stored answer, nothing stored or dispatched twice.
    let again = api.post("/v1/events", &sale_key, &sale).await?;
    let replayed = again
        .headers()
        .get("Idempotent-Replayed")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("false")
        .to_owned();
    let (status, replay) = json_of(again, "sale again").await?;
    println!(
        "sale again with the same Idempotency-Key: HTTP {}, Idempotent-Replayed: {replayed}, same id: {}",
        status.as_u16(),
        replay["id"] == answer["id"]
    );
    Ok(())
}
