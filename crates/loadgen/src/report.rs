//! Counting answers and printing the result lines.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use anyhow::Context;
use hdrhistogram::Histogram;
use hyper::StatusCode;
use tokio::time::Instant;

use crate::procfs::CpuSplit;
use crate::worker::Plan;
use crate::Scenario;

/// Highest latency the histogram holds, in microseconds (longer ones are clamped to it).
const MAX_LATENCY_US: u64 = 120_000_000;

/// What one or all connections saw during the measured window.
#[derive(Debug)]
pub struct Tally {
    /// Successful (2xx) requests.
    pub requests: u64,
    /// Events accepted or recognised as duplicates.
    pub events: u64,
    /// Events answered as duplicates.
    pub duplicates: u64,
    /// Repeated sales sent (dup30).
    pub repeats_sent: u64,
    /// Batch items the server rejected.
    pub rejected: u64,
    /// Non-2xx answers, transport errors and unreadable batch answers.
    pub errors: u64,
    /// 2xx batch answers whose counts could not be read.
    pub unreadable: u64,
    /// Transport errors (connect, reset, malformed answer).
    pub transport_errors: u64,
    /// Errors during the warm-up (not part of `errors`).
    pub warmup_errors: u64,
    /// Answers by HTTP status.
    pub statuses: BTreeMap<u16, u64>,
    /// The first transport error's message.
    pub first_transport_error: Option<String>,
    /// Latency of successful requests, in microseconds.
    pub latency_us: Histogram<u64>,
}

impl Tally {
    /// An empty tally.
    pub fn new() -> anyhow::Result<Self> {
        Ok(Self {
            requests: 0,
            events: 0,
            duplicates: 0,
            repeats_sent: 0,
            rejected: 0,
            errors: 0,
            unreadable: 0,
            transport_errors: 0,
            warmup_errors: 0,
            statuses: BTreeMap::new(),
            first_transport_error: None,
            latency_us: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
                .context("cannot make a latency histogram")?,
        })
    }

    /// Counts an answer's status.
    pub fn count_status(&mut self, status: StatusCode) {
        *self.statuses.entry(status.as_u16()).or_default() += 1;
    }

    /// Counts a failed connection or request that ended at `at`.
    pub fn transport_error(&mut self, plan: &Plan, at: Instant, error: &anyhow::Error) {
        if at < plan.measure_from || at > plan.measure_until {
            self.warmup_errors += u64::from(at < plan.measure_from);
            return;
        }
        self.errors += 1;
        self.transport_errors += 1;
        if self.first_transport_error.is_none() {
            self.first_transport_error = Some(format!("{error:#}"));
        }
    }

    /// Records a successful request's latency.
    pub fn record_latency(&mut self, latency: Duration) -> anyhow::Result<()> {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latency_us
            .record(us.clamp(1, MAX_LATENCY_US))
            .context("cannot record a latency")
    }

    /// Adds another connection's tally to this one.
    pub fn merge(&mut self, other: Self) -> anyhow::Result<()> {
        self.requests += other.requests;
        self.events += other.events;
        self.duplicates += other.duplicates;
        self.repeats_sent += other.repeats_sent;
        self.rejected += other.rejected;
        self.errors += other.errors;
        self.unreadable += other.unreadable;
        self.transport_errors += other.transport_errors;
        self.warmup_errors += other.warmup_errors;
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
        if self.first_transport_error.is_none() {
            self.first_transport_error = other.first_transport_error;
        }
        self.latency_us
            .add(&other.latency_us)
            .context("cannot merge latency histograms")
    }

    fn percentile_ms(&self, q: f64) -> f64 {
        if self.latency_us.is_empty() {
            return 0.0;
        }
        self.latency_us.value_at_quantile(q) as f64 / 1000.0
    }
}

/// Everything about a run besides the tally.
#[derive(Debug)]
pub struct Summary<'a> {
    /// What was sent.
    pub scenario: Scenario,
    /// The name in the output lines (the scenario's unless `--label` says otherwise).
    pub label: &'a str,
    /// The pace asked for, in events/s (`None`: as fast as answers come).
    pub rate: Option<f64>,
    /// The run's id.
    pub run_id: &'a str,
    /// Connections used.
    pub connections: u32,
    /// Warm-up before the window.
    pub warmup: Duration,
    /// The measured window.
    pub window: Duration,
    /// The server's VmHWM in MiB (0 when unknown).
    pub peak_rss_mb: f64,
    /// Where the CPU time went during the window, when /proc could tell.
    pub cpu: Option<CpuSplit>,
}

impl Summary<'_> {
    fn per_second(&self, n: u64) -> f64 {
        n as f64 / self.window.as_secs_f64()
    }

    /// The line for people.
    pub fn human(&self, t: &Tally) -> String {
        let mut line = format!(
            "{:<6} {:>9.0} events/s {:>8.0} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms  errors {}  duplicates {}",
            self.label,
            self.per_second(t.events),
            self.per_second(t.requests),
            t.percentile_ms(0.50),
            t.percentile_ms(0.99),
            t.errors,
            t.duplicates,
        );
        if self.scenario == Scenario::Dup30 {
            let _ = write!(line, " (of {} repeats sent)", t.repeats_sent);
        }
        if let Some(rate) = self.rate {
            let _ = write!(line, " (paced at {rate:.0} events/s)");
        }
        let _ = write!(line, "  server peak RSS {:.1} MB", self.peak_rss_mb);
        let statuses: Vec<String> = t.statuses.iter().map(|(s, n)| format!("{s}={n}")).collect();
        let _ = write!(
            line,
            "  [{} conns, {:.0}s after {:.0}s warm-up, run {}; statuses {}",
            self.connections,
            self.window.as_secs_f64(),
            self.warmup.as_secs_f64(),
            self.run_id,
            if statuses.is_empty() {
                "none".into()
            } else {
                statuses.join(" ")
            },
        );
        if t.transport_errors > 0 {
            let _ = write!(line, "; transport errors {}", t.transport_errors);
            if let Some(e) = &t.first_transport_error {
                let _ = write!(line, " (first: {e})");
            }
        }
        if t.rejected > 0 {
            let _ = write!(line, "; batch items rejected {}", t.rejected);
        }
        if t.unreadable > 0 {
            let _ = write!(line, "; unreadable batch answers {}", t.unreadable);
        }
        if t.warmup_errors > 0 {
            let _ = write!(line, "; errors during warm-up {}", t.warmup_errors);
        }
        if let Some(cpu) = &self.cpu {
            let _ = write!(
                line,
                "; CPU cores busy: server {:.2}, PostgreSQL {:.2}, loadgen {:.2}, other {:.2}, of {}",
                cpu.server, cpu.postgres, cpu.loadgen, cpu.other, cpu.cores
            );
        }
        line.push(']');
        line
    }

    /// The `CPU …` line for scripts (None when /proc could not tell).
    pub fn cpu_line(&self) -> Option<String> {
        self.cpu.map(|cpu| {
            format!(
                "CPU scenario={} server_cores={:.2} postgres_cores={:.2} loadgen_cores={:.2} other_cores={:.2} cores={}",
                self.label,
                cpu.server,
                cpu.postgres,
                cpu.loadgen,
                cpu.other,
                cpu.cores
            )
        })
    }

    /// The `RESULT …` line for scripts.
    pub fn machine(&self, t: &Tally) -> String {
        format!(
            "RESULT scenario={} events_per_s={:.1} requests_per_s={:.1} p50_ms={:.3} p99_ms={:.3} errors={} duplicates={} peak_rss_mb={:.1}",
            self.label,
            self.per_second(t.events),
            self.per_second(t.requests),
            t.percentile_ms(0.50),
            t.percentile_ms(0.99),
            t.errors,
            t.duplicates,
            self.peak_rss_mb,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_machine_line_has_every_field() -> anyhow::Result<()> {
        let mut t = Tally::new()?;
        t.requests = 20;
        t.events = 20;
        t.duplicates = 6;
        t.errors = 1;
        for ms in 1..=20 {
            t.record_latency(Duration::from_millis(ms))?;
        }
        let s = Summary {
            scenario: Scenario::Dup30,
            label: "dup30",
            rate: None,
            run_id: "x",
            connections: 4,
            warmup: Duration::from_secs(1),
            window: Duration::from_secs(2),
            peak_rss_mb: 12.5,
            cpu: None,
        };
        let line = s.machine(&t);
        assert!(
            line.starts_with(
                "RESULT scenario=dup30 events_per_s=10.0 requests_per_s=10.0 p50_ms=10.0"
            ),
            "{line}"
        );
        assert!(
            line.ends_with("errors=1 duplicates=6 peak_rss_mb=12.5"),
            "{line}"
        );
        assert!(s.human(&t).contains("(of 0 repeats sent)"));
        let paced = Summary {
            label: "paced",
            rate: Some(20_000.0),
            ..s
        };
        assert!(paced.machine(&t).starts_with("RESULT scenario=paced "));
        assert!(paced.human(&t).contains("(paced at 20000 events/s)"));
        Ok(())
    }
}
