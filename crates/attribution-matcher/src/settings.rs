//! The matcher's settings: the operator's pending window, and the attribution window of each
//! workspace (a small table; a workspace without a row gets the operator's default).

use std::time::Duration;

use deadpool_postgres::GenericClient;
use uuid::Uuid;

use crate::{Error, Result};

/// How long a sale without a touchpoint waits for a late link, unless the operator says otherwise
/// (`CONVRELAY_PENDING_WINDOW_SECS`): 24 hours.
pub const DEFAULT_PENDING_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);

/// How far back a person's clicks count, unless the workspace says otherwise: 90 days.
pub const DEFAULT_ATTRIBUTION_WINDOW: Duration = Duration::from_secs(90 * 24 * 60 * 60);

/// How many identifiers of one kind (customer ids, emails, phones) a person may hold unless the
/// operator says otherwise (`CONVRELAY_IDENTITY_MAX_LINKS`): an identifier whose link would pass
/// it is shared by too many people and stops linking.
pub const DEFAULT_IDENTITY_MAX_LINKS: usize = 50;

/// How many customer ids a person may hold unless the operator says otherwise
/// (`CONVRELAY_IDENTITY_MAX_CUSTOMER_IDS`): one, as a customer id names one customer in the
/// customer's own system; an e-mail or phone that would join two customers is shared (a
/// placeholder, a family address, a shop's phone) and stops linking.
pub const DEFAULT_IDENTITY_MAX_CUSTOMER_IDS: usize = 1;

/// The operator's settings of the matcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatchSettings {
    /// How long a sale without a touchpoint stays `pending` after it was received
    /// (`CONVRELAY_PENDING_WINDOW_SECS`). Zero makes such sales `unmatched` at once.
    pub pending_window: Duration,
    /// The attribution window of a workspace that has not set its own.
    pub default_attribution_window: Duration,
    /// The most identifiers of one kind a person may hold (`CONVRELAY_IDENTITY_MAX_LINKS`).
    pub identity_max_links: usize,
    /// The most customer ids a person may hold (`CONVRELAY_IDENTITY_MAX_CUSTOMER_IDS`).
    pub identity_max_customer_ids: usize,
}

impl Default for MatchSettings {
    fn default() -> Self {
        Self {
            pending_window: DEFAULT_PENDING_WINDOW,
            default_attribution_window: DEFAULT_ATTRIBUTION_WINDOW,
            identity_max_links: DEFAULT_IDENTITY_MAX_LINKS,
            identity_max_customer_ids: DEFAULT_IDENTITY_MAX_CUSTOMER_IDS,
        }
    }
}

const SELECT_WINDOW: &str = "
    SELECT attribution_window_secs FROM matcher_settings WHERE workspace_id = $1";

/// The attribution window of `workspace_id`: its own setting, else the settings' default.
pub async fn attribution_window(
    client: &impl GenericClient,
    workspace_id: Uuid,
    settings: &MatchSettings,
) -> Result<Duration> {
    let statement = client.prepare_cached(SELECT_WINDOW).await?;
    let row = client.query_opt(&statement, &[&workspace_id]).await?;
    Ok(row
        .map(|row| row.get::<_, i64>(0))
        .and_then(|secs| u64::try_from(secs).ok())
        .map_or(settings.default_attribution_window, Duration::from_secs))
}

const UPSERT_WINDOW: &str = "
    INSERT INTO matcher_settings (workspace_id, attribution_window_secs) VALUES ($1, $2)
    ON CONFLICT (workspace_id)
    DO UPDATE SET attribution_window_secs = excluded.attribution_window_secs, updated_at = now()";

/// Sets the attribution window of `workspace_id`, to the second (sub-second parts are dropped).
///
/// # Errors
/// [`Error::InvalidWindow`] for less than a second or more than `i64::MAX` seconds.
pub async fn set_attribution_window(
    client: &impl GenericClient,
    workspace_id: Uuid,
    window: Duration,
) -> Result<()> {
    let secs = i64::try_from(window.as_secs())
        .ok()
        .filter(|secs| *secs > 0)
        .ok_or(Error::InvalidWindow { max_secs: i64::MAX })?;
    let statement = client.prepare_cached(UPSERT_WINDOW).await?;
    client.execute(&statement, &[&workspace_id, &secs]).await?;
    Ok(())
}

/// `duration` as a [`time::Duration`], saturating at its largest value.
pub(crate) fn to_time(duration: Duration) -> time::Duration {
    time::Duration::try_from(duration).unwrap_or(time::Duration::MAX)
}
