//! The dispatch worker: claim due dispatches, send them, record what happened.
//!
//! One [`Forwarder::dispatch_due`] step is three short phases, and no platform call ever happens
//! inside a database transaction:
//! 1. claim (one statement, `FOR UPDATE SKIP LOCKED`, a lease under a fresh token);
//! 2. send, outside any transaction: per destination in calls of at most its platform's batch
//!    size (webhooks one conversion per call), through the platform's adapter, several calls at
//!    once, the lease extended while the sends take long;
//! 3. record (one statement), only under the claim's token: succeeded, retrying with the next
//!    attempt from the [`RetryPolicy`] (never sooner than the platform asked), failed (permanent
//!    error or attempts exhausted, the platform's message kept), or skipped (with the reason).
//!
//! Any number of forwarders, in one process or many, share one queue: a row is held by one claim
//! at a time, and a claim whose worker vanished comes back when its lease runs out.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use futures_util::stream::{self, StreamExt};
use time::OffsetDateTime;
use tokio::sync::watch;
use uuid::Uuid;

use platforms::delivery::{ConfirmationMode, ConfirmationStatus, Park, UploadCheck};
use platforms::model::{Conversion, Outcome};
use platforms::{Endpoints, Platforms, RequestRecord, RetryPolicy, SendReport};

use crate::destinations::{self, Destination};
use crate::pacing::{self, Permit};
use crate::queue::{
    self, AttemptResult, ClaimedDispatch, DispatchKind, DispatchStatus, RequestResult,
};
use crate::{ids, Cipher, Result};

/// The forwarder's settings.
#[derive(Debug, Clone)]
pub struct ForwarderConfig {
    /// Where the platforms are (`CONVRELAY_GOOGLE_ADS_URL`, …).
    pub endpoints: Endpoints,
    /// The retry schedule (`CONVRELAY_RETRY_*`).
    pub retry: RetryPolicy,
    /// How long a claim holds its dispatches before another worker may take them over
    /// (`CONVRELAY_LEASE_SECS`). Extended while sends run, so it bounds the time to notice a
    /// vanished worker, not the time a send may take.
    pub lease: Duration,
    /// Most dispatches one step claims.
    pub batch_size: usize,
    /// Every HTTP request must finish within this.
    pub http_timeout: Duration,
    /// How long an idle worker waits before it looks for due work again.
    pub poll_interval: Duration,
    /// Most platform calls one step makes at once.
    pub concurrency: usize,
    /// The first status check of an upload a platform processes later, and the base of the
    /// backoff between checks (`CONVRELAY_CONFIRMATION_POLL_MS`; Google advises 30 minutes).
    pub confirmation_poll: Duration,
    /// The part of each platform's published request quota this service may use
    /// (`CONVRELAY_QUOTA_SHARE`, 0 to 1; 1 = all of it).
    pub quota_share: f64,
    /// Steps [`Forwarder::run`] keeps going at once, so that one step's claim or record overlaps
    /// another's sends. Each holds a database connection while it claims or records: the pool
    /// needs at least this many (plus one for lease extensions).
    pub parallel_steps: usize,
}

impl Default for ForwarderConfig {
    fn default() -> Self {
        Self {
            endpoints: Endpoints::default(),
            retry: RetryPolicy::default(),
            lease: Duration::from_secs(30),
            batch_size: 1000,
            http_timeout: Duration::from_secs(10),
            poll_interval: Duration::from_millis(250),
            concurrency: 32,
            parallel_steps: 2,
            confirmation_poll: Duration::from_secs(30 * 60),
            quota_share: 1.0,
        }
    }
}

/// What one step did (tests and benchmarks read it; the loop uses it to tell idle from busy).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DispatchReport {
    /// Dispatches claimed and sent.
    pub claimed: usize,
    /// Now `succeeded`.
    pub succeeded: usize,
    /// Now `retrying`.
    pub retrying: usize,
    /// Now `failed`: permanent errors, attempts exhausted, unreadable rows.
    pub failed: usize,
    /// Now `skipped`.
    pub skipped: usize,
    /// Found due while their destination was deleted: now `cancelled`.
    pub cancelled: usize,
    /// Results not recorded because the lease was lost (another worker took the rows over).
    pub lost: usize,
    /// Not sent after all, back to waiting with their attempt given back: paced to the
    /// platform's quota, or their destination parked.
    pub deferred: usize,
    /// Destinations parked by this step (their platform asked to come back much later).
    pub parked: usize,
}

impl DispatchReport {
    /// True when the step found nothing to do.
    pub fn is_idle(&self) -> bool {
        *self == Self::default()
    }
}

/// What one confirmation step did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConfirmationReport {
    /// Upload requests checked.
    pub checked: usize,
    /// Of them, now final.
    pub settled: usize,
    /// Of them, still processing (checked again later).
    pub pending: usize,
    /// Dispatches that took a final confirmation.
    pub dispatches: usize,
}

/// The wait before the next status check of an upload after `checks` checks: the poll
/// interval doubled each time, at most six hours (Google: check with backoff up to 24 h).
pub fn confirmation_backoff(poll: Duration, checks: i32) -> Duration {
    let doublings = u32::try_from(checks.clamp(0, 16)).unwrap_or(0);
    poll.saturating_mul(2u32.saturating_pow(doublings))
        .min(Duration::from_secs(6 * 3600))
        .max(Duration::from_millis(1))
}

/// One platform call's results: per claimed dispatch (by index), its outcome and the request
/// that decided it (by position in `requests`).
struct CallResult {
    started_at: OffsetDateTime,
    elapsed: Duration,
    items: Vec<(usize, Outcome, Option<usize>)>,
    /// The HTTP requests the call made, in the order made.
    requests: Vec<RequestRecord>,
    /// Not sent: the quota's next token comes after this long.
    paced: Option<Duration>,
    /// The platform asked to come back much later: the destination parks.
    park: Option<Park>,
}

type Call<'a> = Pin<Box<dyn Future<Output = CallResult> + Send + 'a>>;

/// The dispatch worker. Cheap to share by reference; [`Forwarder::run`] owns it for the loop.
pub struct Forwarder {
    pool: Pool,
    cipher: Cipher,
    platforms: Platforms,
    config: ForwarderConfig,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Forwarder {
    /// A worker over `pool`, opening credentials with `cipher`.
    pub fn new(pool: Pool, cipher: Cipher, config: ForwarderConfig) -> Self {
        let platforms = Platforms::new(config.endpoints.clone(), config.http_timeout);
        Self {
            pool,
            cipher,
            platforms,
            config,
        }
    }

    /// Its settings.
    pub fn config(&self) -> &ForwarderConfig {
        &self.config
    }

    /// One step: claims up to `limit` due dispatches, sends them, records the results.
    ///
    /// # Errors
    /// [`crate::Error::Database`] / [`crate::Error::Pool`] when the claim or the record fails; a
    /// claim whose record failed comes back when its lease runs out (and is sent again: the
    /// platforms deduplicate by the conversion's stable ids).
    pub async fn dispatch_due(&self, limit: usize) -> Result<DispatchReport> {
        let claim = {
            let mut client = self.pool.get().await?;
            queue::claim_due(
                &mut client,
                limit,
                self.config.lease,
                self.config.retry.max_attempts(),
            )
            .await?
        };
        let mut report = DispatchReport {
            claimed: claim.dispatches.len() + claim.unreadable.len(),
            cancelled: claim.cancelled,
            failed: claim.exhausted,
            ..DispatchReport::default()
        };
        if report.claimed == 0 {
            return Ok(report);
        }
        let mut results: Vec<AttemptResult> = claim
            .unreadable
            .iter()
            .map(|(workspace_id, id, _, error)| {
                tracing::error!(dispatch = %ids::to_wire(ids::DISPATCH, *id), %error, "dispatch cannot be read");
                AttemptResult {
                    workspace_id: *workspace_id,
                    id: *id,
                    status: DispatchStatus::Failed,
                    retry_in: None,
                    last_error: Some(error.clone()),
                    reason: Some("unreadable".into()),
                    at: OffsetDateTime::now_utc(),
                    duration: Duration::ZERO,
                    http_status: None,
                    outcome: "error",
                    error: Some(error.clone()),
                    request: None,
                    confirmation: None,
                    confirmation_request: None,
                    check_in: None,
                    released: false,
                }
            })
            .collect();

        let calls = self.calls(&claim.dispatches);
        let done = self.send_holding_lease(&claim, calls).await;
        // The requests that decided the results, each recorded once with its answer's excerpt.
        let mut requests: Vec<RequestResult> = Vec::new();
        for call in done {
            // Per request of the call, its place in `requests` once an outcome it decided is
            // recorded.
            let mut kept: Vec<Option<usize>> = vec![None; call.requests.len()];
            if let (Some(park), Some(&(first, _, _))) = (&call.park, call.items.first()) {
                if let Some(dispatch) = claim.dispatches.get(first) {
                    // Not parked means the next claim sends again and is refused again; the
                    // dispatches still wait without spending attempts.
                    match self.park(dispatch, park).await {
                        Ok(()) => report.parked += 1,
                        Err(error) => tracing::warn!(
                            error = %error_chain(&error),
                            "cannot park the destination; its dispatches wait anyway"
                        ),
                    }
                }
            }
            for (index, outcome, request) in call.items {
                let Some(dispatch) = claim.dispatches.get(index) else {
                    continue;
                };
                // Not sent (paced), or not delivered because the destination parks: back to
                // waiting, no attempt spent.
                let wait = match (&call.park, &outcome) {
                    (_, _) if call.paced.is_some() => call.paced,
                    (Some(park), Outcome::Retry { .. }) => Some(park.wait),
                    _ => None,
                };
                if let Some(wait) = wait {
                    results.push(released(dispatch, wait));
                    continue;
                }
                let decided_by = request.and_then(|r| Some((r, call.requests.get(r)?)));
                let request_id = decided_by.and_then(|(position, record)| {
                    let slot = match kept.get(position).copied().flatten() {
                        Some(slot) => slot,
                        None => {
                            requests.push(RequestResult {
                                workspace_id: dispatch.workspace_id,
                                id: Uuid::now_v7(),
                                destination_id: dispatch.destination.id,
                                at: call.started_at,
                                duration: record.duration,
                                http_status: record.http_status,
                                response_excerpt: Some(record.response_excerpt.clone())
                                    .filter(|e| !e.is_empty()),
                            });
                            let slot = requests.len() - 1;
                            if let Some(place) = kept.get_mut(position) {
                                *place = Some(slot);
                            }
                            slot
                        }
                    };
                    requests.get(slot).map(|kept| kept.id)
                });
                results.push(self.attempt_result(
                    dispatch,
                    outcome,
                    decided_by.map(|(_, record)| record),
                    request_id,
                    call.started_at,
                    call.elapsed,
                ));
            }
        }

        let recorded = self.record(claim.token, &results, &requests).await?;
        for result in &results {
            if !recorded.contains(&result.id) {
                report.lost += 1;
                continue;
            }
            if result.released {
                report.deferred += 1;
                continue;
            }
            match result.status {
                DispatchStatus::Succeeded => report.succeeded += 1,
                DispatchStatus::Retrying => report.retrying += 1,
                DispatchStatus::Failed => report.failed += 1,
                DispatchStatus::Skipped => report.skipped += 1,
                _ => {}
            }
        }
        if report.lost > 0 {
            tracing::warn!(
                lost = report.lost,
                "results not recorded: the lease ran out and another worker took the dispatches over"
            );
        }
        tracing::debug!(?report, "dispatch step");
        Ok(report)
    }

    /// Runs steps until `shutdown` turns true: `parallel_steps` loops, each busy while work is
    /// due, else waiting `poll_interval` (or until shutdown). A step under way when shutdown comes
    /// is finished, its sends answered and recorded, before this returns.
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        tracing::info!(
            batch_size = self.config.batch_size,
            parallel_steps = self.config.parallel_steps,
            lease_ms = self.config.lease.as_millis() as u64,
            "forwarder started"
        );
        let loops =
            (0..self.config.parallel_steps.max(1)).map(|_| self.step_loop(shutdown.clone()));
        futures_util::future::join(
            futures_util::future::join_all(loops),
            self.confirmation_loop(shutdown.clone()),
        )
        .await;
        tracing::info!("forwarder stopped");
    }

    /// Checks due uploads until shutdown: busy while checks are due, else waiting the poll
    /// interval.
    async fn confirmation_loop(&self, mut shutdown: watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                break;
            }
            let wait = match self.check_confirmations(100).await {
                Ok(report) if report.checked > 0 => continue,
                Ok(_) => self.config.poll_interval,
                Err(error) => {
                    tracing::warn!(error = %error_chain(&error), "confirmation step failed; trying again shortly");
                    self.config.poll_interval.max(Duration::from_secs(1))
                }
            };
            tokio::select! {
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn step_loop(&self, mut shutdown: watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                break;
            }
            let wait = match self.dispatch_due(self.config.batch_size).await {
                Ok(report) if !report.is_idle() => continue,
                Ok(_) => self.config.poll_interval,
                Err(error) => {
                    tracing::warn!(error = %error_chain(&error), "dispatch step failed; trying again shortly");
                    self.config.poll_interval.max(Duration::from_secs(1))
                }
            };
            tokio::select! {
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        // The sender is gone: nobody can ask us to stop any more, so stop now.
                        break;
                    }
                }
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// The platform calls for a claim: per destination and kind, calls of at most the
    /// platform's batch size (its adapter's limits), each through the registry's adapter, the
    /// same way for every platform.
    fn calls<'a>(&'a self, dispatches: &'a [ClaimedDispatch]) -> Vec<Call<'a>> {
        let mut groups: BTreeMap<(Uuid, Uuid, DispatchKind), Vec<usize>> = BTreeMap::new();
        for (index, dispatch) in dispatches.iter().enumerate() {
            groups
                .entry((
                    dispatch.workspace_id,
                    dispatch.destination.id,
                    dispatch.kind,
                ))
                .or_default()
                .push(index);
        }
        let mut calls: Vec<Call<'a>> = Vec::new();
        for ((_, _, kind), indexes) in groups {
            let destination = &dispatches[indexes[0]].destination;
            let credentials = match destination.credentials(&self.cipher) {
                Ok(credentials) => credentials,
                Err(error) => {
                    tracing::error!(
                        destination = %ids::to_wire(ids::DESTINATION, destination.id),
                        error = %error,
                        "destination credentials cannot be opened"
                    );
                    let outcome = Outcome::Retry {
                        error: error.to_string(),
                        after: None,
                    };
                    calls.push(Box::pin(async move { uniform(&indexes, outcome) }));
                    continue;
                }
            };
            let adapter = destination.config.adapter();
            let config = destination.config.json();
            let quota = adapter.quota(config, credentials.json());
            // A quota counted in operations takes a token per conversion: no request carries
            // more than its bucket holds.
            let batch_size = quota
                .as_ref()
                .and_then(|quota| pacing::max_operations(quota, self.config.quota_share))
                .map_or(destination.config.limits().batch_size, |most| {
                    most.min(destination.config.limits().batch_size)
                })
                .max(1);
            for chunk in indexes.chunks(batch_size) {
                let chunk = chunk.to_vec();
                let credentials = credentials.clone();
                let quota = quota.clone();
                let batch: Vec<Conversion> = chunk
                    .iter()
                    .map(|&i| dispatches[i].conversion.clone())
                    .collect();
                calls.push(Box::pin(async move {
                    if let Some(quota) = &quota {
                        match self.take_token(quota, chunk.len()).await {
                            Permit::Granted => {}
                            Permit::Wait(wait) => return paced(&chunk, wait),
                        }
                    }
                    timed(chunk, |now| async move {
                        let platforms = &self.platforms;
                        let report = match kind {
                            DispatchKind::Conversion => {
                                adapter
                                    .send(platforms, config, credentials.json(), &batch, now)
                                    .await
                            }
                            DispatchKind::Retraction => {
                                adapter
                                    .retract(platforms, config, credentials.json(), &batch, now)
                                    .await
                            }
                            DispatchKind::Restatement => {
                                adapter
                                    .restate(platforms, config, credentials.json(), &batch, now)
                                    .await
                            }
                        };
                        if let Some(rotated) = report.rotated.as_ref().and_then(|r| r.credentials())
                        {
                            self.keep_rotated(destination, rotated).await;
                        }
                        report
                    })
                    .await
                }));
            }
        }
        calls
    }

    /// Stores the credentials with the refresh token the platform rotated (Microsoft's token
    /// endpoint hands out a new one with every exchange), so that the destination keeps working
    /// after the old one expires. A failure costs nothing now (the old token still works): it is
    /// logged, and the next exchange rotates again.
    async fn keep_rotated(&self, destination: &Destination, credentials: &serde_json::Value) {
        let wire = ids::to_wire(ids::DESTINATION, destination.id);
        let kept = match self.pool.get().await {
            Ok(client) => {
                destinations::keep_rotated_credentials(
                    &client,
                    &self.cipher,
                    destination,
                    credentials,
                )
                .await
            }
            Err(error) => Err(crate::Error::from(error)),
        };
        match kept {
            Ok(true) => tracing::info!(destination = %wire, "rotated refresh token stored"),
            Ok(false) => tracing::info!(
                destination = %wire,
                "credentials replaced meanwhile: the rotated refresh token is not stored"
            ),
            Err(error) => tracing::warn!(
                destination = %wire,
                error = %error_chain(&error),
                "storing the rotated refresh token failed"
            ),
        }
    }

    /// Runs the calls, a few at a time, extending the claim's lease while they take long.
    async fn send_holding_lease(
        &self,
        claim: &queue::Claim,
        calls: Vec<Call<'_>>,
    ) -> Vec<CallResult> {
        let held: Vec<(Uuid, Uuid)> = claim
            .dispatches
            .iter()
            .map(|d| (d.workspace_id, d.id))
            .collect();
        let sends = stream::iter(calls)
            .buffer_unordered(self.config.concurrency.max(1))
            .collect::<Vec<_>>();
        tokio::pin!(sends);
        let every = (self.config.lease / 3).max(Duration::from_millis(100));
        let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            tokio::select! {
                done = &mut sends => return done,
                _ = heartbeat.tick() => {
                    match self.pool.get().await {
                        Ok(client) => {
                            if let Err(error) = queue::extend_lease(&client, &held, claim.token, self.config.lease).await {
                                tracing::warn!(error = %error_chain(&error), "cannot extend the lease of dispatches in flight");
                            }
                        }
                        Err(error) => tracing::warn!(error = %error, "cannot extend the lease of dispatches in flight"),
                    }
                }
            }
        }
    }

    /// What an outcome means for a dispatch, decided by `request` (recorded as `request_id`).
    fn attempt_result(
        &self,
        dispatch: &ClaimedDispatch,
        outcome: Outcome,
        request: Option<&RequestRecord>,
        request_id: Option<Uuid>,
        started_at: OffsetDateTime,
        elapsed: Duration,
    ) -> AttemptResult {
        let mut result = AttemptResult {
            workspace_id: dispatch.workspace_id,
            id: dispatch.id,
            status: DispatchStatus::Succeeded,
            retry_in: None,
            last_error: None,
            reason: None,
            at: started_at,
            duration: request.map_or(elapsed, |r| r.duration),
            http_status: request.and_then(|r| r.http_status),
            outcome: "succeeded",
            error: None,
            request: request_id,
            confirmation: None,
            confirmation_request: None,
            check_in: None,
            released: false,
        };
        match outcome {
            Outcome::Succeeded => self.confirm(dispatch, request, &mut result),
            Outcome::AlreadyDelivered => {
                result.outcome = "already_delivered";
                self.confirm(dispatch, request, &mut result);
            }
            Outcome::Retry { error, after } => {
                let made = u32::try_from(dispatch.attempts - dispatch.retry_from).unwrap_or(0);
                result.outcome = "retry";
                result.error = Some(error.clone());
                result.last_error = Some(error);
                match self.config.retry.next_attempt(made, after) {
                    Some(wait) => {
                        result.status = DispatchStatus::Retrying;
                        result.retry_in = Some(wait);
                    }
                    None => {
                        result.status = DispatchStatus::Failed;
                        result.reason = Some("attempts_exhausted".into());
                    }
                }
            }
            Outcome::Permanent { error } => {
                result.status = DispatchStatus::Failed;
                result.outcome = "permanent";
                result.reason = Some("permanent_error".into());
                result.error = Some(error.clone());
                result.last_error = Some(error);
            }
            Outcome::Skipped { reason } => {
                result.status = DispatchStatus::Skipped;
                result.outcome = "skipped";
                result.reason = Some(reason);
            }
        }
        if result.error.is_none() && result.status != DispatchStatus::Succeeded {
            result.error = request.and_then(|r| r.error.clone());
        }
        let destination_type = dispatch.destination.destination_type().as_str();
        metrics::counter!(
            "convrelay_dispatches_total",
            "destination_type" => destination_type,
            "outcome" => result.outcome,
        )
        .increment(1);
        metrics::histogram!(
            "convrelay_dispatch_seconds",
            "destination_type" => destination_type,
            "outcome" => result.outcome,
        )
        .record(result.duration.as_secs_f64());
        if matches!(result.status, DispatchStatus::Failed) {
            tracing::debug!(
                dispatch = %ids::to_wire(ids::DISPATCH, dispatch.id),
                destination_type = dispatch.destination.destination_type().as_str(),
                attempts = dispatch.attempts,
                error = result.last_error.as_deref().unwrap_or_default(),
                "dispatch failed"
            );
        }
        result
    }

    /// Sets a succeeded dispatch's confirmation: `pending` under its upload request where the
    /// platform processes uploads later, else `confirmed` at once.
    fn confirm(
        &self,
        dispatch: &ClaimedDispatch,
        request: Option<&RequestRecord>,
        result: &mut AttemptResult,
    ) {
        let config = &dispatch.destination.config;
        let deferred = dispatch.kind == DispatchKind::Conversion
            && config.adapter().confirmation_mode(config.json()) == ConfirmationMode::Deferred;
        let request_id = request
            .and_then(|r| r.platform_request_id.clone())
            .filter(|id| !id.trim().is_empty());
        match (deferred, request_id) {
            (true, Some(id)) => {
                result.confirmation = Some(ConfirmationStatus::Pending);
                result.confirmation_request = Some(id);
                result.check_in = Some(self.config.confirmation_poll);
            }
            _ => {
                result.confirmation = Some(ConfirmationStatus::Confirmed);
                metrics::counter!(
                    "convrelay_confirmations_total",
                    "destination_type" => dispatch.destination.destination_type().as_str(),
                    "status" => ConfirmationStatus::Confirmed.as_str(),
                )
                .increment(1);
            }
        }
    }

    /// Takes the tokens of `quota` for one request of `operations` conversions; when the
    /// database cannot be reached, the call waits a second rather than risk the quota.
    async fn take_token(&self, quota: &platforms::delivery::Quota, operations: usize) -> Permit {
        let taken = async {
            let client = self.pool.get().await?;
            pacing::take(&client, quota, self.config.quota_share, operations).await
        };
        match taken.await {
            Ok(permit) => permit,
            Err(error) => {
                tracing::warn!(error = %error_chain(&error), "cannot take a pacing token; sending later");
                Permit::Wait(Duration::from_secs(1))
            }
        }
    }

    /// Parks a dispatch's destination.
    async fn park(&self, dispatch: &ClaimedDispatch, park: &Park) -> Result<()> {
        let client = self.pool.get().await?;
        pacing::park(
            &client,
            dispatch.workspace_id,
            dispatch.destination.id,
            park,
        )
        .await
    }

    /// One confirmation step: claims up to `limit` upload requests whose status check is due,
    /// asks each platform once per request, and settles or reschedules every dispatch the
    /// request carried. Never inside a transaction while a platform is called.
    ///
    /// # Errors
    /// [`crate::Error::Database`] / [`crate::Error::Pool`].
    pub async fn check_confirmations(&self, limit: usize) -> Result<ConfirmationReport> {
        let claim = {
            let client = self.pool.get().await?;
            queue::claim_upload_checks(&client, limit, self.config.lease).await?
        };
        let mut report = ConfirmationReport {
            checked: claim.uploads.len(),
            ..ConfirmationReport::default()
        };
        let checks: Vec<Pin<Box<dyn Future<Output = UploadCheck> + Send + '_>>> = claim
            .uploads
            .iter()
            .map(|upload| self.check_one(upload))
            .collect();
        let found: Vec<UploadCheck> = stream::iter(checks)
            .buffered(self.config.concurrency.max(1))
            .collect()
            .await;
        let client = self.pool.get().await?;
        let now = OffsetDateTime::now_utc();
        for (upload, check) in claim.uploads.iter().zip(found) {
            let settled = match check {
                UploadCheck::Final { status, detail } => Some((status, detail)),
                UploadCheck::Unavailable { error } => Some((
                    ConfirmationStatus::Failed,
                    format!("the upload's processing status cannot be read: {error}"),
                )),
                UploadCheck::Processing { detail } | UploadCheck::Retry { error: detail }
                    if now >= upload.deadline_at =>
                {
                    Some((
                        ConfirmationStatus::Failed,
                        format!("no final processing status within 24 hours; last check: {detail}"),
                    ))
                }
                UploadCheck::Processing { detail } | UploadCheck::Retry { error: detail } => {
                    let next = confirmation_backoff(self.config.confirmation_poll, upload.checks);
                    queue::reschedule_upload(&client, upload, claim.token, next, &detail).await?;
                    report.pending += 1;
                    None
                }
            };
            if let Some((status, detail)) = settled {
                let types =
                    queue::settle_upload(&client, upload, claim.token, status, &detail).await?;
                for destination_type in &types {
                    metrics::counter!(
                        "convrelay_confirmations_total",
                        "destination_type" => destination_type.clone(),
                        "status" => status.as_str(),
                    )
                    .increment(1);
                }
                if status != ConfirmationStatus::Confirmed {
                    tracing::warn!(
                        destination = %ids::to_wire(ids::DESTINATION, upload.destination_id),
                        status = status.as_str(),
                        dispatches = types.len(),
                        %detail,
                        "the platform did not confirm an accepted upload"
                    );
                }
                report.settled += 1;
                report.dispatches += types.len();
            }
        }
        Ok(report)
    }

    /// One status check of an upload request, through its destination's adapter.
    fn check_one<'a>(
        &'a self,
        upload: &'a queue::UploadToCheck,
    ) -> Pin<Box<dyn Future<Output = UploadCheck> + Send + 'a>> {
        Box::pin(async move {
            let destination = match &upload.destination {
                Err(why) => {
                    return UploadCheck::Unavailable {
                        error: format!("{why} before the upload's status could be read"),
                    }
                }
                Ok(destination) => destination,
            };
            let credentials = match destination.credentials(&self.cipher) {
                Err(error) => {
                    return UploadCheck::Retry {
                        error: error.to_string(),
                    }
                }
                Ok(credentials) => credentials,
            };
            destination
                .config
                .adapter()
                .check_upload(
                    &self.platforms,
                    destination.config.json(),
                    credentials.json(),
                    &upload.request_id,
                )
                .await
                .check
        })
    }

    /// Records results, trying again a few times if the database hiccups: losing the record
    /// means sending again after the lease.
    async fn record(
        &self,
        token: Uuid,
        results: &[AttemptResult],
        requests: &[RequestResult],
    ) -> Result<Vec<Uuid>> {
        let mut delay = Duration::from_millis(100);
        let mut tries = 0;
        loop {
            let attempt = async {
                let mut client = self.pool.get().await?;
                queue::record_results(&mut client, token, results, requests).await
            };
            match attempt.await {
                Ok(ids) => return Ok(ids),
                Err(error) if tries < 3 && error.is_unavailable() => {
                    tries += 1;
                    tracing::warn!(error = %error_chain(&error), "recording dispatch results failed; trying again");
                    tokio::time::sleep(delay).await;
                    delay *= 3;
                }
                Err(error) => return Err(error),
            }
        }
    }
}

/// Every dispatch of a call gets the same outcome, with no request made.
fn uniform(indexes: &[usize], outcome: Outcome) -> CallResult {
    CallResult {
        started_at: OffsetDateTime::now_utc(),
        elapsed: Duration::ZERO,
        items: indexes
            .iter()
            .map(|&i| (i, outcome.clone(), None))
            .collect(),
        requests: Vec::new(),
        paced: None,
        park: None,
    }
}

/// A call not made: the quota's next token comes after `wait`.
fn paced(indexes: &[usize], wait: Duration) -> CallResult {
    let mut call = uniform(
        indexes,
        Outcome::Retry {
            error: "paced to the platform's quota".into(),
            after: Some(wait),
        },
    );
    call.paced = Some(wait);
    call
}

/// A dispatch going back to waiting for `wait`, its attempt given back.
fn released(dispatch: &ClaimedDispatch, wait: Duration) -> AttemptResult {
    AttemptResult {
        workspace_id: dispatch.workspace_id,
        id: dispatch.id,
        status: DispatchStatus::Queued,
        retry_in: Some(wait),
        last_error: None,
        reason: None,
        at: OffsetDateTime::now_utc(),
        duration: Duration::ZERO,
        http_status: None,
        outcome: "deferred",
        error: None,
        request: None,
        confirmation: None,
        confirmation_request: None,
        check_in: None,
        released: true,
    }
}

/// Runs one platform call and pairs each conversion's outcome with the request that decided it.
async fn timed<F, Fut>(indexes: Vec<usize>, send: F) -> CallResult
where
    F: FnOnce(OffsetDateTime) -> Fut,
    Fut: Future<Output = SendReport>,
{
    let started_at = OffsetDateTime::now_utc();
    let clock = Instant::now();
    let report = send(started_at).await;
    let elapsed = clock.elapsed();
    // Per input position, the last request that carried it (the one whose answer decided it),
    // in one pass over the requests.
    let mut decided_by: Vec<Option<usize>> = vec![None; indexes.len()];
    for (request, record) in report.requests.iter().enumerate() {
        for &position in &record.conversions {
            if let Some(slot) = decided_by.get_mut(position) {
                *slot = Some(request);
            }
        }
    }
    let mut outcomes = report.outcomes.into_iter();
    let items = indexes
        .iter()
        .zip(decided_by)
        .map(|(&index, request)| {
            let outcome = outcomes.next().unwrap_or_else(|| Outcome::Retry {
                error: "internal: the platform client gave no outcome for this conversion".into(),
                after: None,
            });
            (index, outcome, request)
        })
        .collect();
    CallResult {
        started_at,
        elapsed,
        items,
        requests: report.requests,
        paced: None,
        park: report.park,
    }
}

/// An error and its sources, for one log line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
