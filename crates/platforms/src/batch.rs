//! The send loop every platform shares: an adapter says how one conversion becomes one row of
//! its wire format (or why it is not sent), how the request for some rows is built, and what an
//! answer means for each row; this loop does the rest the same way for all nine.
//!
//! - Rows are grouped into requests (one by default; Google never puts one order id twice in a
//!   request).
//! - Platforms that exchange a refresh token for an access token (Google, Microsoft) name their
//!   grant: the loop takes the cached token or exchanges it (recording the exchange), and after a
//!   refusal of the token (401, or the platform's own code) refreshes it once and sends again.
//! - Transport failures are retried; 408, 429 and 5xx are retried honouring `Retry-After`
//!   unless the adapter reads more from them (Google's `retryDelay`, Meta's codes).
//! - A request refused whole for some rows it names (LinkedIn's 422, Reddit's 400, Data
//!   Manager's field violations) fails those rows and sends the others again at once, a bounded
//!   number of times; a request refused whole for a row it does not name (Meta's invalid
//!   parameter) is split in halves to find it, within a bounded number of requests.
//! - Every request is recorded with its answer redacted; a 429 asking for a long wait parks the
//!   destination.

use serde_json::Value;

use crate::model::{Conversion, Outcome};
use crate::oauth::RefreshGrant;
use crate::{classify, record, Collector, Exchange, Platforms, RequestTarget, SendReport};

/// How many times a request refused for some of its rows is sent again without them.
const MAX_ROUNDS: usize = 5;

/// How many more requests the halves of refused requests may take, per call.
const MAX_SPLIT_REQUESTS: usize = 32;

/// What an answer means for the rows of the request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Answer {
    /// One outcome per row, in request order.
    Rows(Vec<Outcome>),
    /// The same outcome for every row.
    All(Outcome),
    /// The same outcome for every row, and a note for the request's record (Meta counting fewer
    /// events received than sent).
    Noted(Outcome, String),
    /// Refused whole because of the rows named (position in the request, the platform's
    /// message): they fail, the others are sent again.
    RefusedFor(Vec<(usize, String)>),
    /// Refused whole for some row it does not name: each half is sent again on its own until the
    /// row is found; a single row (or a spent budget) gets the outcome.
    Split(Outcome),
}

/// One platform's wire format (or one method of it) over the shared loop.
pub(crate) trait JsonApi {
    /// The destination's settings.
    type Config: Sync;
    /// Its credentials.
    type Credentials: Sync;
    /// One conversion in the wire format, ready to be put into a request.
    type Row: Send + Sync;

    /// How its requests are recorded.
    const TARGET: RequestTarget;

    /// Values no record or outcome may show.
    fn secrets(credentials: &Self::Credentials) -> Vec<&str>;

    /// The refresh-token grant the access token comes from, for a platform that exchanges one;
    /// `None` for a token used as given.
    fn grant<'a>(
        _platforms: &'a Platforms,
        _credentials: &'a Self::Credentials,
    ) -> Option<RefreshGrant<'a>> {
        None
    }

    /// True when an answer (not a 2xx) says the access token is no good: refreshed once.
    fn token_refused(exchange: &Exchange) -> bool {
        exchange.status == Some(401)
    }

    /// The row for one conversion, normalised and hashed by the platform's rules, or why it is
    /// not sent (skipped, or a permanent error in the settings).
    fn row(
        config: &Self::Config,
        conversion: &Conversion,
        now: time::OffsetDateTime,
    ) -> Result<Self::Row, Outcome>;

    /// The requests `rows` go in, each at most the platform's size (`rows` are at most one
    /// batch): by default one.
    fn groups(rows: Vec<(usize, Self::Row)>) -> Vec<Vec<(usize, Self::Row)>> {
        if rows.is_empty() {
            Vec::new()
        } else {
            vec![rows]
        }
    }

    /// The request carrying `rows`, with the access token when the platform has a grant; or why
    /// none can be built (the outcome of every row).
    fn request(
        platforms: &Platforms,
        config: &Self::Config,
        credentials: &Self::Credentials,
        token: Option<&str>,
        rows: &[&Self::Row],
    ) -> Result<reqwest::RequestBuilder, Outcome>;

    /// What a 408, 429 or 5xx answer means: by default a retry after `Retry-After`.
    fn transient(exchange: &Exchange, _rows: &[&Self::Row]) -> Answer {
        Answer::All(classify::retry(
            format!("HTTP {}", exchange.status.unwrap_or(0)),
            exchange.retry_after(),
        ))
    }

    /// What any other answer (not a transport failure) means for the rows.
    fn answer(exchange: &Exchange, rows: &[&Self::Row]) -> Answer;
}

/// The message of an outcome, for the request's record.
pub(crate) fn error_of(outcome: &Outcome) -> Option<String> {
    match outcome {
        Outcome::Retry { error, .. } | Outcome::Permanent { error } => Some(error.clone()),
        _ => None,
    }
}

/// Sends `batch` (at most the platform's batch size): each conversion becomes a row, the rows go
/// in the platform's requests, and every row gets the outcome its answer gives it.
pub(crate) async fn send<A: JsonApi>(
    platforms: &Platforms,
    config: &A::Config,
    credentials: &A::Credentials,
    batch: &[Conversion],
    now: time::OffsetDateTime,
) -> SendReport {
    let mut collector = Collector::new(batch.len());
    for secret in A::secrets(credentials) {
        collector.add_secret(secret);
    }
    let mut rows: Vec<(usize, A::Row)> = Vec::new();
    for (index, conversion) in batch.iter().enumerate() {
        match A::row(config, conversion, now) {
            Ok(row) => rows.push((index, row)),
            Err(outcome) => collector.set(index, outcome),
        }
    }
    // A stack: the halves of a split request go first, in order.
    let mut groups = A::groups(rows);
    groups.reverse();
    let mut splits_left = MAX_SPLIT_REQUESTS;
    while let Some(group) = groups.pop() {
        let mut call = Call::<A> {
            platforms,
            config,
            credentials,
            collector: &mut collector,
        };
        if let Some((first, second)) = call.send_group(group, splits_left).await {
            splits_left = splits_left.saturating_sub(2);
            groups.push(second);
            groups.push(first);
        }
    }
    collector.finish()
}

/// Sends `build`'s request with an access token from `grant` (cached, or exchanged and the
/// exchange recorded against `indexes`); when the answer refuses the token, drops it, takes a
/// fresh one and sends once more. The error is the outcome of every conversion waiting (no token
/// could be had, or no request built).
pub(crate) async fn authorized(
    platforms: &Platforms,
    grant: &RefreshGrant<'_>,
    target: RequestTarget,
    indexes: &[usize],
    collector: &mut Collector,
    token_refused: impl Fn(&Exchange) -> bool,
    build: impl Fn(&str) -> Result<reqwest::RequestBuilder, Outcome>,
) -> Result<Exchange, Outcome> {
    let token = platforms
        .tokens
        .access_token(platforms, grant, indexes, collector)
        .await?;
    collector.add_secret(&token);
    let exchange = platforms.execute(build(&token)?).await;
    if exchange.transport_error.is_some() || exchange.is_success() || !token_refused(&exchange) {
        return Ok(exchange);
    }
    let secrets = collector.secret_list();
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    collector.requests.push(record(
        target,
        indexes.to_vec(),
        &exchange,
        Some(format!(
            "HTTP {}: the access token was refused; refreshing it once",
            exchange.status.unwrap_or(0)
        )),
        &secrets,
    ));
    tracing::info!(
        provider = grant.provider,
        target = target.as_str(),
        "the platform refused the access token; refreshing"
    );
    platforms.tokens.invalidate(grant, &token).await;
    let token = platforms
        .tokens
        .access_token(platforms, grant, indexes, collector)
        .await?;
    collector.add_secret(&token);
    Ok(platforms.execute(build(&token)?).await)
}

/// One call's sends of the groups of a batch.
struct Call<'a, 'c, A: JsonApi> {
    platforms: &'a Platforms,
    config: &'a A::Config,
    credentials: &'a A::Credentials,
    collector: &'c mut Collector,
}

impl<A: JsonApi> Call<'_, '_, A> {
    /// Sends one request's rows, and again without the rows a whole-request refusal named.
    /// Returns the two halves to send instead when the request was refused for a row it did not
    /// name and `splits_left` allows two more requests.
    #[allow(clippy::type_complexity)]
    async fn send_group(
        &mut self,
        group: Vec<(usize, A::Row)>,
        splits_left: usize,
    ) -> Option<(Vec<(usize, A::Row)>, Vec<(usize, A::Row)>)> {
        let mut pending = group;
        let mut rounds = 0;
        while !pending.is_empty() {
            rounds += 1;
            let indexes: Vec<usize> = pending.iter().map(|(index, _)| *index).collect();
            let rows: Vec<&A::Row> = pending.iter().map(|(_, row)| row).collect();
            let exchange = match self.exchange(&indexes, &rows).await {
                Ok(exchange) => exchange,
                Err(outcome) => {
                    self.collector.set_all(&indexes, &outcome);
                    return None;
                }
            };
            tracing::debug!(
                target_api = A::TARGET.as_str(),
                status = ?exchange.status,
                duration_ms = u64::try_from(exchange.duration.as_millis()).unwrap_or(u64::MAX),
                request_id = exchange.header("request-id").as_deref().unwrap_or(""),
                rows = rows.len(),
                "platform request"
            );
            let status = exchange.status.unwrap_or(0);
            let answer = match exchange.transport_outcome() {
                Some(outcome) => Answer::All(outcome),
                None if matches!(status, 408 | 429 | 500..=599) => A::transient(&exchange, &rows),
                None => A::answer(&exchange, &rows),
            };
            let secrets = self.collector.secret_list();
            let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
            match answer {
                Answer::All(outcome) => {
                    self.finish_all(&indexes, &exchange, outcome, None, &secrets);
                    return None;
                }
                Answer::Noted(outcome, note) => {
                    self.finish_all(&indexes, &exchange, outcome, Some(note), &secrets);
                    return None;
                }
                Answer::Rows(outcomes) => {
                    let failed = outcomes
                        .iter()
                        .filter(|o| !matches!(o, Outcome::Succeeded | Outcome::AlreadyDelivered))
                        .count();
                    let note = (failed > 0)
                        .then(|| format!("{failed} of {} rows not accepted", rows.len()));
                    self.collector.requests.push(record(
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
                        self.collector.park_if(exchange.status, &outcome);
                        self.collector.set(index, outcome);
                    }
                    return None;
                }
                Answer::Split(outcome) => {
                    if pending.len() > 1 && splits_left >= 2 {
                        let error = error_of(&outcome).unwrap_or_default();
                        self.collector.requests.push(record(
                            A::TARGET,
                            indexes,
                            &exchange,
                            Some(format!(
                                "{error}; splitting the batch to find the refused events"
                            )),
                            &secrets,
                        ));
                        let mut first = pending;
                        let second = first.split_off(first.len() / 2);
                        return Some((first, second));
                    }
                    self.finish_all(&indexes, &exchange, outcome, None, &secrets);
                    return None;
                }
                Answer::RefusedFor(named) => {
                    let named: Vec<(usize, String)> = named
                        .into_iter()
                        .filter(|(position, _)| *position < pending.len())
                        .collect();
                    self.collector.requests.push(record(
                        A::TARGET,
                        indexes.clone(),
                        &exchange,
                        Some(format!(
                            "HTTP {status}: refused for {} of {} rows; sending the others again",
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
                        self.collector.set_all(&indexes, &outcome);
                        return None;
                    }
                    for (position, message) in &named {
                        self.collector.set(
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
                    if rounds >= MAX_ROUNDS && !pending.is_empty() {
                        let rest: Vec<usize> = pending.iter().map(|(index, _)| *index).collect();
                        self.collector.set_all(
                            &rest,
                            &classify::retry(
                                "the platform kept refusing other rows of the request; sending again later",
                                None,
                            ),
                        );
                        return None;
                    }
                }
            }
        }
        None
    }

    /// One request for `rows` and its answer, with an access token when the platform has a
    /// grant.
    async fn exchange(&mut self, indexes: &[usize], rows: &[&A::Row]) -> Result<Exchange, Outcome> {
        let (platforms, config, credentials) = (self.platforms, self.config, self.credentials);
        match A::grant(platforms, credentials) {
            Some(grant) => {
                authorized(
                    platforms,
                    &grant,
                    A::TARGET,
                    indexes,
                    self.collector,
                    A::token_refused,
                    |token| A::request(platforms, config, credentials, Some(token), rows),
                )
                .await
            }
            None => {
                let request = A::request(platforms, config, credentials, None, rows)?;
                Ok(platforms.execute(request).await)
            }
        }
    }

    /// Every row of the request gets `outcome`; the record notes `note`, else the outcome's error.
    fn finish_all(
        &mut self,
        indexes: &[usize],
        exchange: &Exchange,
        outcome: Outcome,
        note: Option<String>,
        secrets: &[&str],
    ) {
        self.collector.park_if(exchange.status, &outcome);
        self.collector.requests.push(record(
            A::TARGET,
            indexes.to_vec(),
            exchange,
            note.or_else(|| error_of(&outcome)),
            secrets,
        ));
        self.collector.set_all(indexes, &outcome);
    }
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
