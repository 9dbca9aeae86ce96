//! The one retry policy of the forwarder: exponential backoff with jitter, bounded by a number of
//! attempts, and never sooner than a platform asked for.
//!
//! The schedule comes from the `backoff` crate's [`backoff::ExponentialBackoff`]. That crate is
//! unmaintained (RUSTSEC-2025-0012); it is used for nothing but this arithmetic and only in this
//! module, so replacing it means touching this file alone.
//!
//! Attempt `n` (counting from 1) that failed waits around `initial × 2^(n-1)`, capped at `max`,
//! randomised by ±50 % so that a burst of failures does not come back as a burst, and never more
//! than `max` — unless the platform named a later time (`Retry-After`, Google's `retryDelay`, the
//! six hours of `TOO_RECENT_EVENT`), which always wins, up to [`MAX_HINT`].

use std::time::Duration;

use backoff::backoff::Backoff;
use backoff::ExponentialBackoffBuilder;

/// `CONVRELAY_RETRY_INITIAL_MS` default.
pub const DEFAULT_INITIAL_MS: u64 = 5_000;
/// `CONVRELAY_RETRY_MAX_MS` default.
pub const DEFAULT_MAX_MS: u64 = 3_600_000;
/// `CONVRELAY_RETRY_MAX_ATTEMPTS` default.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 12;
/// Growth of the interval from one attempt to the next.
pub const MULTIPLIER: f64 = 2.0;
/// Jitter: the wait is drawn from `interval × (1 ± RANDOMIZATION)`.
pub const RANDOMIZATION: f64 = 0.5;
/// The longest wait a platform's hint can impose; a longer one is cut to this, so that a bogus
/// `Retry-After` cannot park a dispatch for months.
pub const MAX_HINT: Duration = Duration::from_secs(24 * 3600);

/// When to try again after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    initial: Duration,
    max: Duration,
    max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::from_settings(DEFAULT_INITIAL_MS, DEFAULT_MAX_MS, DEFAULT_MAX_ATTEMPTS)
    }
}

impl RetryPolicy {
    /// From the `CONVRELAY_RETRY_*` settings: the first interval and the cap in milliseconds, and
    /// how many attempts a dispatch gets in all. An initial interval of 0 counts as 1 ms, and a
    /// cap below the initial interval is raised to it.
    pub fn from_settings(initial_ms: u64, max_ms: u64, max_attempts: u32) -> Self {
        let initial = Duration::from_millis(initial_ms.max(1));
        let max = Duration::from_millis(max_ms).max(initial);
        Self {
            initial,
            max,
            max_attempts,
        }
    }

    /// The first interval.
    pub fn initial(&self) -> Duration {
        self.initial
    }

    /// The longest wait the backoff itself produces.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// How many attempts a dispatch gets in all.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The interval before jitter after `attempts_made` failed attempts:
    /// `initial × 2^(attempts_made-1)`, capped at `max` (0 counts as 1).
    pub fn interval(&self, attempts_made: u32) -> Duration {
        let exponent = attempts_made.max(1) - 1;
        let factor = MULTIPLIER.powi(i32::try_from(exponent).unwrap_or(i32::MAX));
        let nanos = self.initial.as_nanos() as f64 * factor;
        if !nanos.is_finite() || nanos >= self.max.as_nanos() as f64 {
            self.max
        } else {
            Duration::from_nanos(nanos as u64)
        }
    }

    /// How long to wait before the next attempt, once `attempts_made` attempts (this one
    /// included) have failed; `hint` is the earliest time the platform asked for. `None` when
    /// the attempts are exhausted: the dispatch has failed.
    pub fn next_attempt(&self, attempts_made: u32, hint: Option<Duration>) -> Option<Duration> {
        if attempts_made >= self.max_attempts {
            return None;
        }
        let interval = self.interval(attempts_made);
        let mut backoff = ExponentialBackoffBuilder::new()
            .with_initial_interval(self.initial)
            .with_max_interval(self.max)
            .with_multiplier(MULTIPLIER)
            .with_randomization_factor(RANDOMIZATION)
            .with_max_elapsed_time(None)
            .build();
        backoff.current_interval = interval;
        // With no elapsed-time limit `next_backoff` always answers; the jittered value may pass
        // the cap by up to half of it, and the cap is a promise.
        let jittered = backoff.next_backoff().unwrap_or(interval).min(self.max);
        Some(match hint {
            Some(hint) => jittered.max(hint.min(MAX_HINT)),
            None => jittered,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn defaults_are_the_documented_settings() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.initial(), Duration::from_secs(5));
        assert_eq!(policy.max(), Duration::from_secs(3600));
        assert_eq!(policy.max_attempts(), 12);
    }

    #[test]
    fn intervals_double_until_the_cap() {
        let policy = RetryPolicy::from_settings(5_000, 3_600_000, 12);
        assert_eq!(policy.interval(1), Duration::from_secs(5));
        assert_eq!(policy.interval(2), Duration::from_secs(10));
        assert_eq!(policy.interval(3), Duration::from_secs(20));
        assert_eq!(policy.interval(10), Duration::from_secs(2560));
        assert_eq!(policy.interval(11), Duration::from_secs(3600));
        assert_eq!(policy.interval(u32::MAX), Duration::from_secs(3600));
    }

    #[test]
    fn attempts_run_out_at_the_maximum() {
        let policy = RetryPolicy::from_settings(10, 100, 3);
        assert!(policy.next_attempt(1, None).is_some());
        assert!(policy.next_attempt(2, None).is_some());
        assert_eq!(policy.next_attempt(3, None), None);
        assert_eq!(policy.next_attempt(4, Some(Duration::from_secs(1))), None);
        assert_eq!(
            RetryPolicy::from_settings(10, 100, 0).next_attempt(0, None),
            None
        );
    }

    #[test]
    fn a_platform_hint_wins_over_a_shorter_backoff() {
        let policy = RetryPolicy::from_settings(10, 100, 12);
        let six_hours = Duration::from_secs(6 * 3600);
        assert_eq!(policy.next_attempt(1, Some(six_hours)), Some(six_hours));
        assert_eq!(
            policy.next_attempt(1, Some(Duration::from_secs(365 * 24 * 3600))),
            Some(MAX_HINT)
        );
    }

    #[test]
    fn jitter_spreads_the_waits() {
        let policy = RetryPolicy::from_settings(1_000, 3_600_000, 12);
        let waits: std::collections::HashSet<_> = (0..50)
            .filter_map(|_| policy.next_attempt(3, None))
            .collect();
        assert!(waits.len() > 1, "{waits:?}");
    }

    proptest! {
        #[test]
        fn waits_stay_within_the_schedule_bounds(
            initial_ms in 1u64..100_000,
            max_ms in 1u64..10_000_000,
            max_attempts in 0u32..30,
            attempts_made in 0u32..40,
            hint_ms in proptest::option::of(0u64..200_000_000),
        ) {
            let policy = RetryPolicy::from_settings(initial_ms, max_ms, max_attempts);
            let hint = hint_ms.map(Duration::from_millis);
            match policy.next_attempt(attempts_made, hint) {
                None => prop_assert!(attempts_made >= max_attempts),
                Some(wait) => {
                    prop_assert!(attempts_made < max_attempts);
                    let interval = policy.interval(attempts_made);
                    let floor = interval
                        .mul_f64(1.0 - RANDOMIZATION)
                        .saturating_sub(Duration::from_micros(1));
                    prop_assert!(wait >= floor, "{wait:?} < {floor:?}");
                    let hint = hint.map(|h| h.min(MAX_HINT));
                    match hint {
                        Some(hint) if hint >= policy.max() => prop_assert_eq!(wait, hint),
                        Some(hint) => {
                            prop_assert!(wait >= hint);
                            prop_assert!(wait <= policy.max());
                        }
                        None => prop_assert!(wait <= policy.max()),
                    }
                }
            }
        }

        #[test]
        fn intervals_never_shrink(initial_ms in 1u64..100_000, max_ms in 1u64..10_000_000, n in 1u32..40) {
            let policy = RetryPolicy::from_settings(initial_ms, max_ms, 50);
            prop_assert!(policy.interval(n + 1) >= policy.interval(n));
            prop_assert!(policy.interval(n) <= policy.max());
            prop_assert!(policy.interval(n) >= policy.initial().min(policy.max()));
        }
    }
}
