//! What a platform says about delivery beyond the answer to a send: whether an accepted upload
//! is only processed later (and how its outcome is read back), the request quota its sends are
//! paced to, and the long waits it asks for when that quota is spent.
//!
//! - Confirmation: a platform that answers synchronously has a conversion once it says so
//!   ([`ConfirmationMode::Immediate`]). Google's Data Manager API accepts an upload and processes
//!   it later; its `requestStatus:retrieve` tells, per upload request and as counts only, whether
//!   the events were ingested ([`ConfirmationMode::Deferred`], [`UploadCheck`]).
//! - Quota: the published request rate a destination's sends share ([`Quota`]), keyed by what the
//!   platform counts against (a Google Cloud project, an ad account, an access token), so that
//!   every worker process paces to the same budget.
//! - Park: a platform that asks to come back in minutes or hours because a quota is spent
//!   (Google `RESOURCE_EXHAUSTED` with a long `retryDelay`, a 429 with a long `Retry-After`)
//!   parks the whole destination ([`Park`]); its conversions wait without spending attempts.

use std::time::Duration;

use serde::Serialize;

use crate::model::Outcome;
use crate::RequestRecord;

/// A 429 asking for at least this long parks the destination instead of retrying each
/// conversion: every send before then would be refused the same way.
pub const PARK_THRESHOLD: Duration = Duration::from_secs(5 * 60);

/// How a platform confirms what it accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfirmationMode {
    /// Accepted means processed: confirmed at once.
    Immediate,
    /// Accepted uploads are processed later; their status is read back per upload request.
    Deferred,
}

/// Where a conversion's confirmation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfirmationStatus {
    /// The platform is still processing the upload.
    Pending,
    /// The platform processed the upload with no error.
    Confirmed,
    /// Some events of the upload were rejected (the platform says how many, not which).
    PartiallyFailed,
    /// The upload was rejected in processing, or its status could not be had.
    Failed,
}

impl ConfirmationStatus {
    /// Every status.
    pub const ALL: [Self; 4] = [
        Self::Pending,
        Self::Confirmed,
        Self::PartiallyFailed,
        Self::Failed,
    ];

    /// The wire and column name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Confirmed => "confirmed",
            Self::PartiallyFailed => "partially_failed",
            Self::Failed => "failed",
        }
    }

    /// Reads a wire name.
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }
}

/// What one status check of an upload request found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadCheck {
    /// Final: confirmed, partially failed or failed, with the platform's counts in words.
    Final {
        /// The outcome.
        status: ConfirmationStatus,
        /// What the platform reported (counts per reason).
        detail: String,
    },
    /// Still processing: check again later.
    Processing {
        /// What the platform reported.
        detail: String,
    },
    /// The check itself failed for a while (transport, 429, 5xx): check again later.
    Retry {
        /// Why.
        error: String,
    },
    /// The status cannot be had, ever (unknown request id, rights missing).
    Unavailable {
        /// Why.
        error: String,
    },
}

/// A status check and the request it made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    /// What it found.
    pub check: UploadCheck,
    /// The HTTP requests made (an OAuth refresh, the status call), redacted.
    pub requests: Vec<RequestRecord>,
}

/// A published quota that a destination's sends share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quota {
    /// What the platform counts against, without secrets in it (`google-cloud-project:<hash>`).
    pub bucket: String,
    /// Requests per minute the platform allows, where it counts them.
    pub per_minute: Option<u32>,
    /// Requests per day the platform allows, where it counts a day too (Data Manager: 100,000
    /// ingestion requests; at the minute's pace, a day would see over four times that).
    pub per_day: Option<u32>,
    /// Operations (conversions, whatever the requests that carry them) per day, where the
    /// platform counts those instead (the Google Ads API, by the Cloud project's access level).
    pub operations_per_day: Option<u32>,
    /// Where the figure comes from, for operators.
    pub source: &'static str,
}

/// The platform asked for a long wait because a quota is spent: the destination waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Park {
    /// How long.
    pub wait: Duration,
    /// The platform's words (`HTTP 429 RESOURCE_EXHAUSTED quotaError.RESOURCE_EXHAUSTED: …`).
    pub reason: String,
}

/// The park an answer asks for: a 429 whose retry outcome waits at least [`PARK_THRESHOLD`].
pub fn park_for(http_status: Option<u16>, outcome: &Outcome) -> Option<Park> {
    match (http_status, outcome) {
        (
            Some(429),
            Outcome::Retry {
                error,
                after: Some(wait),
            },
        ) if *wait >= PARK_THRESHOLD => Some(Park {
            wait: *wait,
            reason: error.clone(),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_long_429_parks() {
        let long = Outcome::Retry {
            error: "HTTP 429 RESOURCE_EXHAUSTED".into(),
            after: Some(Duration::from_secs(3600)),
        };
        let short = Outcome::Retry {
            error: "HTTP 429".into(),
            after: Some(Duration::from_secs(30)),
        };
        assert_eq!(
            park_for(Some(429), &long).map(|p| p.wait),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(park_for(Some(429), &short), None);
        assert_eq!(park_for(Some(503), &long), None);
        assert_eq!(park_for(None, &long), None);
    }

    #[test]
    fn statuses_read_back_their_names() {
        for status in ConfirmationStatus::ALL {
            assert_eq!(ConfirmationStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(ConfirmationStatus::parse("done"), None);
    }
}
