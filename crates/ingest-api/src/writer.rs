//! Group commit: requests hand their validated events to this writer, which commits the events of
//! many concurrent requests in one transaction (array inserts, dedup claims, Idempotency-Key
//! answers), then answers each request. One fsync serves hundreds of events.
//!
//! A few transactions run at once ([`WriterConfig::concurrency`]): while one waits for its
//! commit, the next group gathers, so the group size follows the load by itself, with no timer.
//! A request is answered only after its transaction committed (a 2xx means durable) or failed
//! as a whole (nothing of it is stored).

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use dedup::idempotency::{self, Admission, NewResponse};
use dedup::{Claim, IdempotencyKey, NaturalKey, RequestFingerprint};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::problem::{is_unavailable, ApiError};
use crate::responses::{self, Rendered, Shape};
use journal::{self, NewEvent};

/// How the writer runs.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Transactions in flight at once.
    pub concurrency: usize,
    /// Events gathered into one transaction at most.
    pub max_events: usize,
    /// Requests waiting for the writer at most; past it, senders wait (back-pressure).
    pub queue: usize,
    /// How long a group may take before its requests are answered 503.
    pub timeout: Duration,
    /// How long an Idempotency-Key answer is kept.
    pub idempotency_ttl: Duration,
    /// Woken after a commit stored new events, so the attribution worker starts at once.
    pub stored: Arc<tokio::sync::Notify>,
}

/// The Idempotency-Key part of a job.
#[derive(Debug, Clone)]
pub struct IdempotencyClaim {
    /// The key.
    pub key: IdempotencyKey,
    /// The request it belongs to.
    pub fingerprint: RequestFingerprint,
}

/// One request's events, to be stored together.
#[derive(Debug)]
pub struct Job {
    /// The request's workspace.
    pub workspace_id: Uuid,
    /// Its valid events, in request order.
    pub events: Vec<NewEvent>,
    /// What its answer looks like.
    pub shape: Shape,
    /// Its Idempotency-Key, if any.
    pub idempotency: Option<IdempotencyClaim>,
}

/// What becomes of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Stored now, under this id.
    Accepted(Uuid),
    /// Already stored under this id.
    Duplicate(Uuid),
}

/// A job's answer.
#[derive(Debug)]
pub enum Answer {
    /// Answer this (committed, or replayed from an Idempotency-Key).
    Respond {
        /// Status and body.
        rendered: Rendered,
        /// Whether it is a replay of a kept answer.
        replayed: bool,
    },
    /// The Idempotency-Key belongs to another request.
    KeyReused,
    /// The Idempotency-Key's first request is still in flight.
    KeyInFlight,
}

type Reply = oneshot::Sender<Result<Answer, ApiError>>;

/// The handle requests submit jobs through.
#[derive(Debug, Clone)]
pub struct Writer {
    jobs: mpsc::Sender<(Job, Reply)>,
    timeout: Duration,
}

impl Writer {
    /// Starts the writer; it stops once every handle is dropped and its last groups are done.
    pub fn spawn(pool: Pool, config: WriterConfig) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(config.queue);
        let timeout = config.timeout;
        let handle = tokio::spawn(run(pool, config, rx));
        (Self { jobs: tx, timeout }, handle)
    }

    /// Stores a job's events and answers once they are committed.
    pub async fn submit(&self, job: Job) -> Result<Answer, ApiError> {
        let (reply, answer) = oneshot::channel();
        let wait = self.timeout * 2;
        let result = tokio::time::timeout(wait, async {
            self.jobs
                .send((job, reply))
                .await
                .map_err(|_| ApiError::Unavailable("the writer has stopped".into()))?;
            answer
                .await
                .map_err(|_| ApiError::Internal("the writer dropped a request".into()))?
        })
        .await;
        result.unwrap_or_else(|_| {
            Err(ApiError::Unavailable(
                "the database did not answer in time".into(),
            ))
        })
    }
}

async fn run(pool: Pool, config: WriterConfig, mut rx: mpsc::Receiver<(Job, Reply)>) {
    let config = Arc::new(config);
    let slots = Arc::new(Semaphore::new(config.concurrency.max(1)));
    let mut running = JoinSet::new();
    loop {
        // Wait for a free slot first: meanwhile requests queue up and join the next group.
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            break;
        };
        let Some(first) = rx.recv().await else {
            break;
        };
        let mut size = first.0.events.len();
        let mut group = vec![first];
        while size < config.max_events {
            match rx.try_recv() {
                Ok(job) => {
                    size += job.0.events.len();
                    group.push(job);
                }
                Err(_) => break,
            }
        }
        let pool = pool.clone();
        let config = Arc::clone(&config);
        running.spawn(async move {
            commit_and_answer(&pool, &config, group).await;
            drop(slot);
        });
        while running.try_join_next().is_some() {}
    }
    while running.join_next().await.is_some() {}
}

/// Commits a group and answers its requests. When the group fails for a reason other than the
/// database being unreachable, each job is tried alone so that one bad job fails by itself.
async fn commit_and_answer(pool: &Pool, config: &WriterConfig, group: Vec<(Job, Reply)>) {
    let (jobs, replies): (Vec<Job>, Vec<Reply>) = group.into_iter().unzip();
    match commit_group(pool, config, &jobs).await {
        Ok(answers) => {
            for (reply, answer) in replies.into_iter().zip(answers) {
                let _ = reply.send(Ok(answer));
            }
        }
        Err(err) if jobs.len() > 1 && matches!(err, ApiError::Internal(_)) => {
            tracing::warn!("a group commit failed; committing its requests one by one");
            for (job, reply) in jobs.into_iter().zip(replies) {
                let one = std::slice::from_ref(&job);
                let answer = commit_group(pool, config, one)
                    .await
                    .map(|mut a| a.remove(0));
                let _ = reply.send(answer);
            }
        }
        Err(err) => {
            for reply in replies {
                let _ = reply.send(Err(err.replicate()));
            }
        }
    }
}

async fn commit_group(
    pool: &Pool,
    config: &WriterConfig,
    jobs: &[Job],
) -> Result<Vec<Answer>, ApiError> {
    match tokio::time::timeout(config.timeout, try_commit_group(pool, config, jobs)).await {
        Ok(result) => result,
        Err(_) => Err(ApiError::Unavailable(
            "the database did not commit in time".into(),
        )),
    }
}

async fn try_commit_group(
    pool: &Pool,
    config: &WriterConfig,
    jobs: &[Job],
) -> Result<Vec<Answer>, ApiError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await.map_err(db_error)?;
    let mut answers: Vec<Option<Answer>> = jobs.iter().map(|_| None).collect();

    // 1. Idempotency-Keys: held by another transaction (in flight), or answered before.
    let keyed: Vec<usize> = (0..jobs.len())
        .filter(|&i| jobs[i].idempotency.is_some())
        .collect();
    let requests: Vec<(Uuid, &IdempotencyKey, RequestFingerprint)> = keyed
        .iter()
        .filter_map(|&i| {
            let claim = jobs[i].idempotency.as_ref()?;
            Some((jobs[i].workspace_id, &claim.key, claim.fingerprint))
        })
        .collect();
    if !requests.is_empty() {
        let admitted = idempotency::admit(&tx, &requests).await?;
        for (&i, admission) in keyed.iter().zip(admitted) {
            answers[i] = match admission {
                Admission::Proceed => None,
                Admission::InFlight => Some(Answer::KeyInFlight),
                Admission::Reused => Some(Answer::KeyReused),
                Admission::Replay(s) => Some(Answer::Respond {
                    rendered: Rendered {
                        status: s.status,
                        body: s.body,
                    },
                    replayed: true,
                }),
            };
        }
    }

    // 2. Natural keys, claimed for every event of the jobs still going.
    let going: Vec<usize> = (0..jobs.len()).filter(|&i| answers[i].is_none()).collect();
    let mut claim_of: Vec<(usize, usize)> = Vec::new();
    let mut natural: Vec<NaturalKey> = Vec::new();
    for &j in &going {
        for (e, event) in jobs[j].events.iter().enumerate() {
            if let Some(key) = &event.natural_key {
                claim_of.push((j, e));
                natural.push(NaturalKey {
                    workspace_id: event.workspace_id,
                    kind: event.kind,
                    key: key.clone(),
                    event_id: event.id,
                });
            }
        }
    }
    let claims = dedup::natural::claim_natural_keys(&tx, &natural).await?;
    let mut outcomes: Vec<Vec<Outcome>> = jobs
        .iter()
        .map(|job| job.events.iter().map(|e| Outcome::Accepted(e.id)).collect())
        .collect();
    for (&(j, e), claim) in claim_of.iter().zip(claims) {
        if let Claim::Duplicate(original) = claim {
            outcomes[j][e] = Outcome::Duplicate(original);
        }
    }

    // 3. The new events.
    let new_events: Vec<&NewEvent> = going
        .iter()
        .flat_map(|&j| {
            jobs[j]
                .events
                .iter()
                .zip(&outcomes[j])
                .filter(|(_, o)| matches!(o, Outcome::Accepted(_)))
                .map(|(e, _)| e)
        })
        .collect();
    journal::insert_events(&tx, &new_events)
        .await
        .map_err(db_error)?;
    let arrivals: Vec<(Uuid, Uuid)> = new_events.iter().map(|e| (e.workspace_id, e.id)).collect();
    attribution_matcher::enqueue(&tx, &arrivals).await?;

    // 4. The answers, kept for their Idempotency-Keys in this same transaction.
    let mut kept: Vec<(usize, Rendered)> = Vec::with_capacity(going.len());
    for &j in &going {
        kept.push((j, responses::render(&jobs[j].shape, &outcomes[j])));
    }
    let expires_at = time::OffsetDateTime::now_utc() + config.idempotency_ttl;
    let to_keep: Vec<NewResponse<'_>> = kept
        .iter()
        .filter_map(|(j, rendered)| {
            let claim = jobs[*j].idempotency.as_ref()?;
            Some(NewResponse {
                workspace_id: jobs[*j].workspace_id,
                key: &claim.key,
                fingerprint: claim.fingerprint,
                status: rendered.status,
                body: &rendered.body,
            })
        })
        .collect();
    idempotency::store_responses(&tx, &to_keep, expires_at).await?;

    tx.commit().await.map_err(db_error)?;
    metrics::histogram!("convrelay_ingest_group_events").record(new_events.len() as f64);
    if !new_events.is_empty() {
        config.stored.notify_one();
    }
    for &j in &going {
        for (event, outcome) in jobs[j].events.iter().zip(&outcomes[j]) {
            let outcome = match outcome {
                Outcome::Accepted(_) => "accepted",
                Outcome::Duplicate(_) => "duplicate",
            };
            metrics::counter!("convrelay_events_total", "kind" => event.kind, "outcome" => outcome)
                .increment(1);
        }
    }
    for (j, rendered) in kept {
        answers[j] = Some(Answer::Respond {
            rendered,
            replayed: false,
        });
    }
    Ok(answers
        .into_iter()
        .map(|a| a.unwrap_or(Answer::KeyInFlight))
        .collect())
}

fn db_error(e: tokio_postgres::Error) -> ApiError {
    if is_unavailable(&e) {
        ApiError::Unavailable(Box::new(e))
    } else {
        ApiError::Internal(Box::new(e))
    }
}
