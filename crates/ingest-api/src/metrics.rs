//! Prometheus metrics: libraries record with the `metrics` macros; this module installs the
//! recorder once per process and renders `/metrics`. Every name starts with `convrelay_`.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Latency buckets in seconds, from a fast commit to a slow platform call.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The process's recorder; installed on first use (tests start several apps in one process).
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        match builder.install_recorder() {
            Ok(handle) => handle,
            // Another recorder is installed already: render an empty set from our own.
            Err(_) => PrometheusBuilder::new().build_recorder().handle(),
        }
    })
}

/// Describes the metrics this binary records, so `/metrics` carries their help text.
pub fn describe() {
    metrics::describe_counter!(
        "convrelay_events_total",
        "Events by kind and outcome (accepted, duplicate, rejected)."
    );
    metrics::describe_histogram!(
        "convrelay_http_request_duration_seconds",
        metrics::Unit::Seconds,
        "HTTP request latency by method, route and status."
    );
    metrics::describe_gauge!(
        "convrelay_db_pool_connections",
        "Database pool connections by state (in_use, idle, max)."
    );
    metrics::describe_histogram!(
        "convrelay_ingest_group_events",
        "Events committed per group-commit transaction."
    );
    metrics::describe_histogram!(
        "convrelay_matcher_lag_seconds",
        metrics::Unit::Seconds,
        "Time from accepting an event to its first attribution decision."
    );
    metrics::describe_counter!(
        "convrelay_matcher_decisions_total",
        "Attribution decisions (first decisions, late matches, expiries)."
    );
    metrics::describe_gauge!(
        "convrelay_matcher_queue_depth",
        "Events waiting for the attribution worker."
    );
    metrics::describe_gauge!(
        "convrelay_matcher_pending",
        "Sales waiting for a late link."
    );
    metrics::describe_counter!(
        "convrelay_dispatches_total",
        "Dispatch attempts by destination type and outcome."
    );
    metrics::describe_histogram!(
        "convrelay_dispatch_seconds",
        metrics::Unit::Seconds,
        "Platform call latency by destination type and outcome."
    );
    metrics::describe_gauge!(
        "convrelay_dispatch_queue_depth",
        "Dispatches not yet sent, by destination type and status."
    );
    metrics::describe_gauge!(
        "convrelay_dispatch_confirmations",
        "Succeeded dispatches whose platform confirmation is pending, partially_failed or failed, by destination type."
    );
    metrics::describe_counter!(
        "convrelay_confirmations_total",
        "Platform confirmations reached by this process, by destination type and status."
    );
    metrics::describe_counter!(
        "convrelay_pacing_total",
        "Sends paced to a platform quota: granted at once or deferred."
    );
    metrics::describe_gauge!(
        "convrelay_dispatch_oldest_age_seconds",
        "Age of the oldest dispatch not yet sent, by destination type and status."
    );
    metrics::describe_counter!(
        "convrelay_retention_events_dropped_total",
        "Events dropped by retention with their partitions (the planner's estimate)."
    );
    metrics::describe_counter!(
        "convrelay_retention_failures_total",
        "Retention rounds that failed, by cause; the next round resumes."
    );
}
