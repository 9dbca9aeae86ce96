//! The send loop shared by the platforms whose API takes one JSON request per batch with a
//! token that needs no exchange (TikTok, LinkedIn, Reddit, Snapchat, Pinterest).
//!
//! An adapter says how one conversion becomes one row of its wire format (or why it is not
//! sent), how the request for some rows is built, and what an answer means for each row; this
//! loop does the rest the same way for all of them: transport failures, 408, 429 (with
//! `Retry-After`) and 5xx are retried; a request refused whole for some rows (LinkedIn's 422,
//! Reddit's 400) fails those rows and sends the others again at once, a bounded number of times;
//! every request is recorded with its answer redacted.

use serde_json::Value;

use crate::model::{Conversion, Outcome};
use crate::{classify, record, Collector, Exchange, Platforms, RequestTarget, SendReport};

/// How many times a request refused for some of its rows is sent again without them.
const MAX_ROUNDS: usize = 5;

/// What an answer means for the rows of the request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Answer {
    /// One outcome per row, in request order.
    Rows(Vec<Outcome>),
    /// The same outcome for every row.
    All(Outcome),
    /// Refused whole because of the rows named (position in the request, the platform's
    /// message): they fail, the others are sent again.
    RefusedFor(Vec<(usize, String)>),
}

/// One platform's wire format over the shared loop.
pub(crate) trait JsonApi {
    /// The destination's settings.
    type Config;
    /// Its credentials.
    type Credentials;

    /// How its requests are recorded.
    const TARGET: RequestTarget;

    /// Values no record or outcome may show.
    fn secrets(credentials: &Self::Credentials) -> Vec<&str>;

    /// The row for one conversion, normalised and hashed by the platform's rules, or why it is
    /// not sent (skipped, or a permanent error in the settings).
    fn row(
        config: &Self::Config,
        conversion: &Conversion,
        now: time::OffsetDateTime,
    ) -> Result<Value, Outcome>;

    /// The request carrying `rows`.
    fn request(
        platforms: &Platforms,
        config: &Self::Config,
        credentials: &Self::Credentials,
        rows: &[&Value],
    ) -> reqwest::RequestBuilder;

    /// What an answer that is not a transport failure, 408, 429 or 5xx means for `count` rows.
    fn answer(exchange: &Exchange, rows: &[&Value]) -> Answer;
}

/// The message of an outcome, for the request's record.
fn error_of(outcome: &Outcome) -> Option<String> {
    match outcome {
        Outcome::Retry { error, .. } | Outcome::Permanent { error } => Some(error.clone()),
        _ => None,
    }
}

/// Sends `batch` (at most the platform's batch size) as one request, and again without the rows
/// a whole-request refusal named.
pub(crate) async fn send<A: JsonApi>(
    platforms: &Platforms,
    config: &A::Config,
    credentials: &A::Credentials,
    batch: &[Conversion],
    now: time::OffsetDateTime,
) -> SendReport {
    let mut collector = Collector::new(batch.len());
    let secrets = A::secrets(credentials);
    for secret in &secrets {
        collector.add_secret(secret);
    }
    let mut pending: Vec<(usize, Value)> = Vec::new();
    for (index, conversion) in batch.iter().enumerate() {
        match A::row(config, conversion, now) {
            Ok(row) => pending.push((index, row)),
            Err(outcome) => collector.set(index, outcome),
        }
    }
    let mut rounds = 0;
    while !pending.is_empty() {
        rounds += 1;
        let indexes: Vec<usize> = pending.iter().map(|(index, _)| *index).collect();
        let rows: Vec<&Value> = pending.iter().map(|(_, row)| row).collect();
        let exchange = platforms
            .execute(A::request(platforms, config, credentials, &rows))
            .await;
        tracing::debug!(
            target_api = A::TARGET.as_str(),
            status = ?exchange.status,
            duration_ms = u64::try_from(exchange.duration.as_millis()).unwrap_or(u64::MAX),
            rows = rows.len(),
            "platform request"
        );
        let status = exchange.status.unwrap_or(0);
        let answer = match exchange.transport_outcome() {
            Some(outcome) => Answer::All(outcome),
            None if matches!(status, 408 | 429 | 500..=599) => Answer::All(classify::retry(
                format!("HTTP {status}"),
                exchange.retry_after(),
            )),
            None => A::answer(&exchange, &rows),
        };
        match answer {
            Answer::All(outcome) => {
                collector.park_if(exchange.status, &outcome);
                collector.requests.push(record(
                    A::TARGET,
                    indexes.clone(),
                    &exchange,
                    error_of(&outcome),
                    &secrets,
                ));
                collector.set_all(&indexes, &outcome);
                break;
            }
            Answer::Rows(outcomes) => {
                let failed = outcomes
                    .iter()
                    .filter(|o| !matches!(o, Outcome::Succeeded | Outcome::AlreadyDelivered))
                    .count();
                let note =
                    (failed > 0).then(|| format!("{failed} of {} rows not accepted", rows.len()));
                collector.requests.push(record(
                    A::TARGET,
                    indexes.clone(),
                    &exchange,
                    note,
                    &secrets,
                ));
                let mut outcomes = outcomes.into_iter();
                for &index in &indexes {
                    let outcome = outcomes.next().unwrap_or_else(|| {
                        classify::unexpected_body(status, "no result for this row")
                    });
                    collector.set(index, outcome);
                }
                break;
            }
            Answer::RefusedFor(named) => {
                let named: Vec<(usize, String)> = named
                    .into_iter()
                    .filter(|(position, _)| *position < pending.len())
                    .collect();
                collector.requests.push(record(
                    A::TARGET,
                    indexes.clone(),
                    &exchange,
                    Some(format!(
                        "HTTP {status}: refused for {} of {} rows",
                        named.len(),
                        pending.len()
                    )),
                    &secrets,
                ));
                if named.is_empty() {
                    // Refused, naming no row we can find: the request as a whole is at fault.
                    let outcome = classify::permanent(format!(
                        "HTTP {status}: {}",
                        crate::excerpt(&exchange.body, &secrets)
                    ));
                    collector.set_all(&indexes, &outcome);
                    break;
                }
                for (position, message) in &named {
                    collector.set(
                        pending[*position].0,
                        classify::permanent(format!("HTTP {status}: {message}")),
                    );
                }
                let refused: Vec<usize> = named.iter().map(|(position, _)| *position).collect();
                pending = pending
                    .into_iter()
                    .enumerate()
                    .filter(|(position, _)| !refused.contains(position))
                    .map(|(_, row)| row)
                    .collect();
                if rounds >= MAX_ROUNDS {
                    let rest: Vec<usize> = pending.iter().map(|(index, _)| *index).collect();
                    collector.set_all(
                        &rest,
                        &classify::retry(
                            "the platform kept refusing other rows of the request; sending again later",
                            None,
                        ),
                    );
                    break;
                }
            }
        }
    }
    collector.finish()
}

/// The error message of a JSON answer at `pointer`, else the start of the body.
pub(crate) fn message(exchange: &Exchange, pointers: &[&str]) -> String {
    let body = exchange.json();
    pointers
        .iter()
        .find_map(|pointer| {
            body.as_ref()
                .and_then(|b| b.pointer(pointer))
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
        })
        .unwrap_or_else(|| crate::excerpt(&exchange.body, &[]))
}

/// The common answer of an error status the platform does not document further: 401 and 403
/// mean the token or its rights must be fixed, any other 4xx a request the platform will never
/// take; both are permanent.
pub(crate) fn refused(exchange: &Exchange, what: &str) -> Answer {
    let status = exchange.status.unwrap_or(0);
    let hint = match status {
        401 => "; the access token was refused: replace the destination's credentials",
        403 => "; the token lacks the rights: check the account's permissions",
        _ => "",
    };
    Answer::All(classify::permanent(format!("HTTP {status}: {what}{hint}")))
}
