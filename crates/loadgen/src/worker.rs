//! One connection: a keep-alive HTTP/1.1 connection and the task that sends on it, one request
//! at a time (closed loop). A broken connection is counted and replaced.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::report::Tally;
use crate::target::Target;
use crate::{body, Scenario};

/// How long to wait before reconnecting after a connection could not be made.
const RECONNECT_PAUSE: Duration = Duration::from_millis(50);

/// What every connection shares.
#[derive(Debug)]
pub struct Plan {
    /// The server.
    pub target: Target,
    /// The `Authorization` header.
    pub auth: HeaderValue,
    /// What to send.
    pub scenario: Scenario,
    /// Events per batch request.
    pub batch_size: u32,
    /// Connections in all.
    pub connections: u32,
    /// Mixed into every invoiceId.
    pub run_id: String,
    /// Whether every request carries an `Idempotency-Key` of its own.
    pub idempotency_keys: bool,
    /// When the run started.
    pub start: Instant,
    /// With `--rate`: how often each connection sends a request.
    pub interval: Option<Duration>,
    /// Answers that arrive from here on are measured…
    pub measure_from: Instant,
    /// …until here; no request starts after it.
    pub measure_until: Instant,
    /// Requests still in flight are dropped here.
    pub hard_stop: Instant,
}

/// The counts in a batch answer.
#[derive(Debug, serde::Deserialize)]
struct BatchAnswer {
    accepted: u64,
    duplicates: u64,
    rejected: u64,
}

/// What one request was.
struct Sent {
    body: Bytes,
    /// Sales in it.
    events: u64,
    /// The sequence number of the new sale of a single request (`None` for a repeat or a batch).
    new_seq: Option<u64>,
    /// Whether it repeats an accepted sale.
    repeat: bool,
}

/// Per-connection state of the sales: the next sequence number, and (for dup30) the ones the
/// server accepted, to repeat.
struct Sales {
    next_seq: u64,
    accepted: Vec<u64>,
    rng: u64,
}

impl Sales {
    fn new(connection: u32) -> Self {
        Self {
            next_seq: 0,
            accepted: Vec::new(),
            rng: 0x9E37_79B9_7F4A_7C15
                ^ (u64::from(connection) + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9),
        }
    }

    /// SplitMix64: plenty for choosing which sale to repeat.
    fn random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn next(&mut self, plan: &Plan, connection: u32) -> Sent {
        let run_id = plan.run_id.as_str();
        match plan.scenario {
            Scenario::Batch => {
                let first = self.next_seq;
                self.next_seq += u64::from(plan.batch_size);
                Sent {
                    body: body::batch(run_id, connection, first, plan.batch_size),
                    events: u64::from(plan.batch_size),
                    new_seq: None,
                    repeat: false,
                }
            }
            Scenario::Repeat | Scenario::Supernode => {
                let first = self.next_seq;
                self.next_seq += u64::from(plan.batch_size);
                let customers = if plan.scenario == Scenario::Supernode {
                    body::Customers::SharedEmail
                } else {
                    body::Customers::Own
                };
                Sent {
                    body: body::repeat_batch(run_id, connection, first, plan.batch_size, customers),
                    events: u64::from(plan.batch_size),
                    new_seq: None,
                    repeat: false,
                }
            }
            Scenario::Dup30 if !self.accepted.is_empty() && self.random() % 100 < 30 => {
                let pick = (self.random() % self.accepted.len() as u64) as usize;
                let seq = self.accepted[pick];
                Sent {
                    body: body::single(run_id, connection, seq),
                    events: 1,
                    new_seq: None,
                    repeat: true,
                }
            }
            Scenario::Single | Scenario::Dup30 => {
                let seq = self.next_seq;
                self.next_seq += 1;
                Sent {
                    body: body::single(run_id, connection, seq),
                    events: 1,
                    new_seq: Some(seq),
                    repeat: false,
                }
            }
        }
    }
}

async fn connect(target: &Target) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(target.addr)
        .await
        .with_context(|| format!("cannot connect to {}", target.addr))?;
    stream.set_nodelay(true).context("cannot set TCP_NODELAY")?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .context("HTTP handshake failed")?;
    tokio::spawn(async move {
        // Ends when the sender is dropped or the server closes the connection; a failure shows
        // up on the sender as the next request's error.
        let _ = connection.await;
    });
    Ok(sender)
}

/// Sends on one connection until the end of the measured window; returns what it saw.
pub async fn run(plan: Arc<Plan>, connection: u32) -> anyhow::Result<Tally> {
    let mut tally = Tally::new()?;
    let mut sales = Sales::new(connection);
    let mut sender: Option<SendRequest<Full<Bytes>>> = None;
    // Requests sent, for their Idempotency-Keys.
    let mut requests: u64 = 0;
    let path = match plan.scenario {
        Scenario::Batch | Scenario::Repeat | Scenario::Supernode => plan.target.batch_path.as_str(),
        Scenario::Single | Scenario::Dup30 => plan.target.single_path.as_str(),
    };

    // With a pace, connection i sends at start + (i / connections + k) * interval, k = 0, 1, …
    let mut due = plan.interval.map(|interval| {
        plan.start + interval.mul_f64(f64::from(connection) / f64::from(plan.connections))
    });

    while Instant::now() < plan.measure_until {
        if let (Some(at), Some(interval)) = (due, plan.interval) {
            if at >= plan.measure_until {
                break;
            }
            tokio::time::sleep_until(at).await;
            due = Some(at + interval);
        }
        let mut conn = match sender.take() {
            Some(s) => s,
            None => match tokio::time::timeout_at(plan.hard_stop, connect(&plan.target)).await {
                Err(_) => break,
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tally.transport_error(&plan, Instant::now(), &e);
                    tokio::time::sleep(RECONNECT_PAUSE).await;
                    continue;
                }
            },
        };
        if conn.ready().await.is_err() {
            // The server closed the idle connection: open another one, no request was lost.
            continue;
        }

        let sent = sales.next(&plan, connection);
        let mut request = Request::post(path)
            .header(HOST, plan.target.host.clone())
            .header(AUTHORIZATION, plan.auth.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if plan.idempotency_keys {
            requests += 1;
            let key = format!("{}-{connection}-{requests}", plan.run_id);
            request = request.header("idempotency-key", key);
        }
        let request = request
            .body(Full::new(sent.body))
            .context("cannot build a request")?;

        let started = Instant::now();
        let answer = tokio::time::timeout_at(plan.hard_stop, async {
            let response = conn.send_request(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            Ok::<(StatusCode, Bytes), hyper::Error>((status, body))
        })
        .await;
        let done = Instant::now();
        let (status, answer_body) = match answer {
            Err(_) => break, // past the hard stop: not counted
            Ok(Err(e)) => {
                tally.transport_error(&plan, done, &anyhow::Error::new(e));
                continue; // the connection is dropped with `conn`
            }
            Ok(Ok(answer)) => answer,
        };
        sender = Some(conn);

        let measured = done >= plan.measure_from && done <= plan.measure_until;
        if status.is_success() {
            if let Some(seq) = sent.new_seq {
                if plan.scenario == Scenario::Dup30 {
                    sales.accepted.push(seq);
                }
            }
        }
        if !measured {
            if !status.is_success() {
                tally.warmup_errors += 1;
            }
            continue;
        }
        tally.count_status(status);
        if sent.repeat {
            tally.repeats_sent += 1;
        }
        if !status.is_success() {
            tally.errors += 1;
            continue;
        }
        match plan.scenario {
            Scenario::Batch | Scenario::Repeat | Scenario::Supernode => {
                match serde_json::from_slice::<BatchAnswer>(&answer_body) {
                    Ok(counts) => {
                        tally.events += counts.accepted + counts.duplicates;
                        tally.duplicates += counts.duplicates;
                        tally.rejected += counts.rejected;
                    }
                    Err(_) => {
                        tally.errors += 1;
                        tally.unreadable += 1;
                        continue;
                    }
                }
            }
            Scenario::Single | Scenario::Dup30 => {
                tally.events += sent.events;
                if status == StatusCode::OK {
                    tally.duplicates += 1;
                }
            }
        }
        tally.requests += 1;
        tally.record_latency(done - started)?;
    }
    Ok(tally)
}
