//! `convrelay-loadgen`: a load generator for the Convrelay ingest API.
//!
//! It opens `--connections` keep-alive HTTP/1.1 connections to a server on the loopback
//! interface and runs one task per connection, each sending its next request as soon as the
//! previous answer is in (closed loop) or, with `--rate`, on a fixed schedule that adds up to
//! that many events per second (a connection that falls behind sends at once). Three scenarios:
//!
//! - `single`: `POST /v1/events`, one new sale per request;
//! - `batch`: `POST /v1/events/batch`, `--batch-size` new sales per request;
//! - `dup30`: `POST /v1/events`, where 30% of the sales repeat an `invoiceId` this run already
//!   had accepted (true duplicates, answered 200) and 70% are new;
//! - `repeat`: `POST /v1/events/batch` of realistic sales: 4,000 repeat customers, each sale with
//!   its own `gclid` (so persons gather clicks with every run);
//! - `supernode`: as `repeat`, with one placeholder e-mail shared by every customer.
//!
//! Nothing is measured during the first `--warmup`; then for `--duration` it counts requests,
//! events and answers by status, and records the latency of every successful request in an HDR
//! histogram. It stops by itself at the end of that window (requests still in flight get a short
//! grace, and are not counted). It prints one human-readable line and one machine-readable line:
//!
//! ```text
//! RESULT scenario=single events_per_s=… requests_per_s=… p50_ms=… p99_ms=… errors=… duplicates=… peak_rss_mb=…
//! ```
//!
//! (`scenario=` holds `--label` when given, e.g. `paced` for paced batches.)
//!
//! `peak_rss_mb` is the server's `VmHWM` (peak resident set) from `/proc/<--server-pid>/status`,
//! 0 without `--server-pid`. On Linux a third line tells how busy the cores were during the
//! window, and with what: `CPU scenario=… server_cores=… postgres_cores=… loadgen_cores=…
//! other_cores=… cores=…` (`other` is work unrelated to the benchmark, which skews it).

mod body;
mod procfs;
mod report;
mod target;
mod worker;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};
use hyper::header::HeaderValue;
use tokio::time::Instant;

use crate::report::Tally;
use crate::target::Target;
use crate::worker::Plan;

/// How long requests still in flight at the end of the window may take before they are dropped.
const GRACE: Duration = Duration::from_secs(5);

/// Drive a Convrelay server on the loopback interface and report events/s, latency and memory.
#[derive(Debug, Parser)]
#[command(name = "convrelay-loadgen", version, about, long_about = None)]
struct Args {
    /// The server's base URL, e.g. http://127.0.0.1:8080 (loopback addresses only).
    #[arg(long)]
    url: String,
    /// An API key with the ingest scope.
    #[arg(long, env = "CONVRELAY_LOADGEN_KEY", hide_env_values = true)]
    key: String,
    /// What to send.
    #[arg(long, value_enum, default_value_t = Scenario::Single)]
    scenario: Scenario,
    /// Keep-alive connections, one sending task each.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096))]
    connections: u32,
    /// How long to measure, after the warm-up (e.g. 10s, 500ms, 1m).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// How long to send before measuring.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    warmup: Duration,
    /// Events per request in the batch scenario.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
    batch_size: u32,
    /// The server's process id, to read its peak resident memory and CPU time.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Mixed into every invoiceId so that runs against one database do not collide
    /// (letters, digits, `-` and `_`; default: derived from the clock and the process id).
    #[arg(long)]
    run_id: Option<String>,
    /// Events per second in all, spread evenly over the connections (each sends on a fixed
    /// schedule, or at once when it is behind); without it every connection sends as fast as
    /// answers come. Latency is measured from when a request is sent.
    #[arg(long, value_parser = parse_rate)]
    rate: Option<f64>,
    /// The name in the output lines (default: the scenario's).
    #[arg(long)]
    label: Option<String>,
    /// Send an `Idempotency-Key` header of its own with every request, as a careful sender does.
    #[arg(long)]
    idempotency_keys: bool,
    /// Runtime threads; one is plenty for tens of thousands of requests per second.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    threads: u32,
}

/// What the connections send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// One new sale per request.
    Single,
    /// `--batch-size` new sales per request.
    Batch,
    /// Single sales, 30% of them repeating an accepted invoiceId.
    Dup30,
    /// `--batch-size` realistic sales per request from 4,000 repeat customers (own
    /// `customerExternalId` and e-mail each), every sale with a `gclid` of its own.
    Repeat,
    /// As `repeat`, but every customer gives the same placeholder e-mail address.
    Supernode,
}

impl Scenario {
    /// The name used on the command line and in the output.
    pub fn name(self) -> &'static str {
        match self {
            Self::Single => "single",
            Self::Batch => "batch",
            Self::Dup30 => "dup30",
            Self::Repeat => "repeat",
            Self::Supernode => "supernode",
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match start(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("convrelay-loadgen: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn start(args: Args) -> anyhow::Result<()> {
    let runtime = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads as usize)
            .enable_all()
            .build()
    }
    .context("cannot start the async runtime")?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    if args.duration.is_zero() {
        bail!("--duration must be more than zero");
    }
    let target = Target::parse(&args.url)?;
    let run_id = match args.run_id {
        Some(id) => check_run_id(id)?,
        None => default_run_id(),
    };
    let auth = HeaderValue::try_from(format!("Bearer {}", args.key.trim()))
        .context("--key holds characters that cannot go into a header")?;
    if let Some(pid) = args.server_pid {
        procfs::peak_rss_mb(pid).with_context(|| format!("--server-pid {pid}"))?;
    }

    let label = match args.label {
        Some(label) => check_run_id(label).context("--label")?,
        None => args.scenario.name().to_owned(),
    };
    // Each connection sends one request per interval.
    let per_request = match args.scenario {
        Scenario::Batch | Scenario::Repeat | Scenario::Supernode => f64::from(args.batch_size),
        Scenario::Single | Scenario::Dup30 => 1.0,
    };
    let interval = args
        .rate
        .map(|rate| Duration::from_secs_f64(per_request * f64::from(args.connections) / rate));

    let start = Instant::now();
    let measure_from = start + args.warmup;
    let measure_until = measure_from + args.duration;
    let plan = Arc::new(Plan {
        target,
        auth,
        scenario: args.scenario,
        batch_size: args.batch_size,
        connections: args.connections,
        run_id: run_id.clone(),
        idempotency_keys: args.idempotency_keys,
        start,
        interval,
        measure_from,
        measure_until,
        hard_stop: measure_until + GRACE,
    });

    let cpu = tokio::spawn(procfs::sample_cpu(
        args.server_pid,
        measure_from,
        measure_until,
    ));
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..args.connections {
        tasks.spawn(worker::run(Arc::clone(&plan), index));
    }
    let mut tally = Tally::new()?;
    while let Some(joined) = tasks.join_next().await {
        let one = joined.context("a connection task failed")??;
        tally.merge(one)?;
    }
    let cpu = cpu.await.ok().flatten();

    let peak_rss_mb = match args.server_pid {
        Some(pid) => procfs::peak_rss_mb(pid).unwrap_or_else(|e| {
            eprintln!("convrelay-loadgen: cannot read the server's memory: {e:#}");
            0.0
        }),
        None => 0.0,
    };
    let summary = report::Summary {
        scenario: args.scenario,
        label: &label,
        rate: args.rate,
        run_id: &run_id,
        connections: args.connections,
        warmup: args.warmup,
        window: args.duration,
        peak_rss_mb,
        cpu,
    };
    println!("{}", summary.human(&tally));
    println!("{}", summary.machine(&tally));
    if let Some(line) = summary.cpu_line() {
        println!("{line}");
    }
    Ok(())
}

/// Parses `10s`, `500ms`, `1m`, `1.5s` or a bare number of seconds.
fn parse_duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let split = raw
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{raw:?} is not a duration such as 10s, 500ms or 1m"))?;
    let seconds = match unit {
        "" | "s" => number,
        "ms" => number / 1000.0,
        "m" => number * 60.0,
        _ => return Err(format!("{raw:?}: unknown unit {unit:?} (ms, s or m)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{raw:?}: {e}"))
}

fn parse_rate(raw: &str) -> Result<f64, String> {
    match raw.trim().parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate >= 1.0 => Ok(rate),
        _ => Err(format!("{raw:?} is not a rate of at least 1 event/s")),
    }
}

fn check_run_id(id: String) -> anyhow::Result<String> {
    let fits = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if id.is_empty() || id.len() > 64 || !id.chars().all(fits) {
        bail!("--run-id must be 1 to 64 letters, digits, '-' or '_'");
    }
    Ok(id)
}

fn default_run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{:x}{:x}", nanos, std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_the_flags_say() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("3h").is_err());
    }

    #[test]
    fn rates_are_positive_numbers() {
        assert_eq!(parse_rate("20000"), Ok(20_000.0));
        assert_eq!(parse_rate("2.5e4"), Ok(25_000.0));
        for bad in ["0", "-5", "nan", "inf", "fast", ""] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn run_ids_stay_plain() {
        assert!(check_run_id("single-1_abc".into()).is_ok());
        assert!(check_run_id("a\"b".into()).is_err());
        assert!(check_run_id(String::new()).is_err());
        assert!(check_run_id(default_run_id()).is_ok());
    }
}
