//! `Idempotency-Key` records: the first answer to a POST is kept and replayed byte for byte.
//!
//! The answer is stored by the caller in the same transaction as the events it reports, so a
//! request that fails before commit leaves no key behind and the sender's retry goes through.
//! While a first request is in flight its key is held by a transaction-scoped advisory lock;
//! a second request that cannot take the lock is told 409.
//!
//! Kept answers are partitioned by the day (UTC) they expire, `idempotency_keys_pYYYYMMDD`: the
//! API's upkeep ([`keep_days`]) creates the days ahead and drops those past, so that a day of
//! answers goes whole whatever it holds. An expired answer is ignored until its day goes.

use deadpool_postgres::GenericClient;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{Error, Result};

/// A valid `Idempotency-Key`: 1 to 255 printable ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// The longest key accepted.
    pub const MAX_LEN: usize = 255;

    /// Checks a header value.
    pub fn parse(raw: &[u8]) -> Result<Self> {
        let printable = raw.iter().all(|b| (0x20..=0x7e).contains(b));
        if raw.is_empty() || raw.len() > Self::MAX_LEN || !printable {
            return Err(Error::InvalidIdempotencyKey);
        }
        // All bytes are ASCII, hence valid UTF-8.
        Ok(Self(raw.iter().map(|&b| char::from(b)).collect()))
    }

    /// The key as sent.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What identifies "the same request": method, path and body, hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestFingerprint([u8; 32]);

impl RequestFingerprint {
    /// Hashes the parts of a request that must match for a replay.
    pub fn new(method: &str, path: &str, body: &[u8]) -> Self {
        let mut h = Sha256::new();
        for part in [method.as_bytes(), path.as_bytes(), body] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        Self(h.finalize().into())
    }

    /// The hash bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// A kept answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    /// The fingerprint of the request that produced it.
    pub fingerprint: RequestFingerprint,
    /// Its HTTP status.
    pub status: u16,
    /// Its body, byte for byte.
    pub body: Vec<u8>,
}

/// What a later request with a known key gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replay {
    /// Same request: answer the kept status and body again.
    Same(StoredResponse),
    /// Same key, different request: 422 `idempotency-key-reused`.
    Reused,
}

impl StoredResponse {
    /// Compares a new request with the one this answer belongs to.
    pub fn replay_for(self, fingerprint: &RequestFingerprint) -> Replay {
        if self.fingerprint == *fingerprint {
            Replay::Same(self)
        } else {
            Replay::Reused
        }
    }
}

const LOCK_KEYS: &str = "
    SELECT pg_try_advisory_xact_lock(hashtextextended(q.ws::text || ':' || q.key, 7477))
    FROM unnest($1::uuid[], $2::text[]) WITH ORDINALITY AS q(ws, key, n)
    ORDER BY q.n";

const FIND: &str = "
    SELECT q.n, i.request_hash, i.response_status, i.response_body
    FROM unnest($1::uuid[], $2::text[]) WITH ORDINALITY AS q(ws, key, n)
    JOIN idempotency_keys i ON i.workspace_id = q.ws AND i.key = q.key
    WHERE i.expires_at > now()";

/// A plain insert: the caller holds each key's lock and found no live answer for it. An expired
/// answer of the same key may still be kept (until its day's partition goes), with another
/// expiry: the primary key holds the expiry, as a partitioned table's must.
const STORE: &str = "
    INSERT INTO idempotency_keys
        (workspace_id, key, request_hash, response_status, response_body, expires_at)
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::bytea[], $4::int2[], $5::bytea[], $6::timestamptz[])
    ON CONFLICT DO NOTHING";

/// The day partitions of `idempotency_keys`: name and upper bound.
const DAYS: &str = "
    SELECT c.relname::text,
           (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'TO \\(''([^'']+)''\\)'))[1]::timestamptz
    FROM pg_inherits i
    JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = 'idempotency_keys'::regclass
      AND pg_get_expr(c.relpartbound, c.oid) <> 'DEFAULT'";

/// Answers that waited in the default partition because their day was not there yet: few, and
/// only after the upkeep could not run.
const PURGE_DEFAULT: &str = "DELETE FROM idempotency_keys_default WHERE expires_at <= $1";

/// How long partition DDL waits for its locks before it gives up until the next round, so that
/// it never holds up a request behind a long query.
const LOCK_TIMEOUT: &str = "2s";

/// The advisory lock under which a day partition is made.
const DAYS_LOCK: i64 = 7_477_002;

/// Takes each key's advisory lock for the rest of the caller's transaction, in input order;
/// answers per key whether it was taken (`false`: another transaction holds it, i.e. in flight).
///
/// Callers pass keys in a stable order (sorted) so that two transactions cannot deadlock.
pub async fn lock_keys(
    client: &impl GenericClient,
    keys: &[(Uuid, &IdempotencyKey)],
) -> Result<Vec<bool>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let ws: Vec<Uuid> = keys.iter().map(|(w, _)| *w).collect();
    let names: Vec<&str> = keys.iter().map(|(_, k)| k.as_str()).collect();
    let stmt = client.prepare_cached(LOCK_KEYS).await?;
    let rows = client.query(&stmt, &[&ws, &names]).await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// The kept answers for keys, in input order (`None`: no live record).
pub async fn find_responses(
    client: &impl GenericClient,
    keys: &[(Uuid, &IdempotencyKey)],
) -> Result<Vec<Option<StoredResponse>>> {
    let mut found = vec![None; keys.len()];
    if keys.is_empty() {
        return Ok(found);
    }
    let ws: Vec<Uuid> = keys.iter().map(|(w, _)| *w).collect();
    let names: Vec<&str> = keys.iter().map(|(_, k)| k.as_str()).collect();
    let stmt = client.prepare_cached(FIND).await?;
    for r in client.query(&stmt, &[&ws, &names]).await? {
        let n: i64 = r.get(0);
        let hash: Vec<u8> = r.get(1);
        let status: i16 = r.get(2);
        let (Ok(fingerprint), Ok(status), Some(slot)) = (
            <[u8; 32]>::try_from(hash),
            u16::try_from(status),
            usize::try_from(n - 1).ok().and_then(|i| found.get_mut(i)),
        ) else {
            continue;
        };
        *slot = Some(StoredResponse {
            fingerprint: RequestFingerprint(fingerprint),
            status,
            body: r.get(3),
        });
    }
    Ok(found)
}

/// Where a request with an `Idempotency-Key` stands, once its key is held in the transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// No live answer: go on, and keep the answer with [`store_responses`] in this transaction.
    Proceed,
    /// Another transaction holds the key: the first request is still in flight (409).
    InFlight,
    /// The same request was answered before: answer that again.
    Replay(StoredResponse),
    /// The key was used for another request (422 `idempotency-key-reused`).
    Reused,
}

/// The Idempotency-Key protocol, once for every caller: takes each key's lock for the rest of the
/// caller's transaction and tells each request where it stands. `requests` are `(workspace, key,
/// fingerprint)`; answers come in input order. Keys are locked in sorted order, so that two
/// transactions holding overlapping keys cannot deadlock.
pub async fn admit(
    client: &impl GenericClient,
    requests: &[(Uuid, &IdempotencyKey, RequestFingerprint)],
) -> Result<Vec<Admission>> {
    let mut order: Vec<usize> = (0..requests.len()).collect();
    order.sort_by(|&a, &b| {
        let key = |i: usize| (requests[i].0, requests[i].1.as_str());
        key(a).cmp(&key(b))
    });
    let keys: Vec<(Uuid, &IdempotencyKey)> = order
        .iter()
        .map(|&i| (requests[i].0, requests[i].1))
        .collect();
    let mut out = vec![Admission::Proceed; requests.len()];
    if keys.is_empty() {
        return Ok(out);
    }
    let locked = lock_keys(client, &keys).await?;
    let stored = find_responses(client, &keys).await?;
    for ((&i, locked), stored) in order.iter().zip(locked).zip(stored) {
        out[i] = match (locked, stored) {
            (false, _) => Admission::InFlight,
            (true, Some(stored)) => match stored.replay_for(&requests[i].2) {
                Replay::Same(stored) => Admission::Replay(stored),
                Replay::Reused => Admission::Reused,
            },
            (true, None) => Admission::Proceed,
        };
    }
    Ok(out)
}

/// An answer to keep.
#[derive(Debug, Clone)]
pub struct NewResponse<'a> {
    /// The workspace.
    pub workspace_id: Uuid,
    /// The key.
    pub key: &'a IdempotencyKey,
    /// The request's fingerprint.
    pub fingerprint: RequestFingerprint,
    /// The status answered.
    pub status: u16,
    /// The body answered.
    pub body: &'a [u8],
}

/// Keeps answers until `expires_at`, in the caller's transaction (which holds each key's lock,
/// and found no live answer for it).
pub async fn store_responses(
    client: &impl GenericClient,
    responses: &[NewResponse<'_>],
    expires_at: OffsetDateTime,
) -> Result<()> {
    if responses.is_empty() {
        return Ok(());
    }
    let ws: Vec<Uuid> = responses.iter().map(|r| r.workspace_id).collect();
    let keys: Vec<&str> = responses.iter().map(|r| r.key.as_str()).collect();
    let hashes: Vec<&[u8]> = responses.iter().map(|r| &r.fingerprint.0[..]).collect();
    let statuses: Vec<i16> = responses
        .iter()
        .map(|r| i16::try_from(r.status).unwrap_or(i16::MAX))
        .collect();
    let bodies: Vec<&[u8]> = responses.iter().map(|r| r.body).collect();
    let expiry = vec![expires_at; responses.len()];
    let stmt = client.prepare_cached(STORE).await?;
    client
        .execute(&stmt, &[&ws, &keys, &hashes, &statuses, &bodies, &expiry])
        .await?;
    Ok(())
}

/// What one round of [`keep_days`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DaysKept {
    /// Day partitions created.
    pub created: Vec<String>,
    /// Day partitions dropped, every answer in them expired.
    pub dropped: Vec<String>,
    /// Expired answers deleted from the default partition.
    pub purged: u64,
}

/// The partition of the day (UTC) `at` falls in: its name and its day.
fn day_of(at: OffsetDateTime) -> (String, time::Date) {
    let date = at.to_offset(time::UtcOffset::UTC).date();
    let name = format!(
        "idempotency_keys_p{:04}{:02}{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    );
    (name, date)
}

/// The upkeep of kept answers, as of `now`: creates the day partitions from today to the day an
/// answer kept now for `ttl` expires, and one more (each in a transaction of its own; answers of
/// its day that waited in the default partition move into it); drops the partitions whose day is
/// past, every answer in them expired; deletes the expired answers of the default partition.
pub async fn keep_days(
    client: &mut tokio_postgres::Client,
    now: OffsetDateTime,
    ttl: std::time::Duration,
) -> Result<DaysKept> {
    let mut kept = DaysKept::default();
    let mut days = Vec::new();
    for row in client.query(DAYS, &[]).await? {
        let name: String = row.try_get(0)?;
        let to: Option<OffsetDateTime> = row.try_get(1)?;
        days.push((name, to));
    }
    let last = now + ttl + time::Duration::DAY;
    let mut at = now;
    while at <= last {
        let (name, day) = day_of(at);
        let next = day.next_day().unwrap_or(day);
        at = next.midnight().assume_utc();
        if days.iter().any(|(n, _)| *n == name) {
            continue;
        }
        // API processes keep the days side by side: one at a time makes a day.
        let tx = client.transaction().await?;
        tx.batch_execute(&format!(
            "SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'; SELECT pg_advisory_xact_lock({DAYS_LOCK})"
        ))
        .await?;
        let made: bool = tx
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&name])
            .await?
            .try_get(0)?;
        if made {
            tx.commit().await?;
            continue;
        }
        tx.batch_execute(&format!(
            "CREATE TABLE {name} (LIKE idempotency_keys INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
             WITH moved AS (
                 DELETE FROM idempotency_keys_default
                 WHERE expires_at >= '{day} 00:00:00+00' AND expires_at < '{next} 00:00:00+00'
                 RETURNING *
             )
             INSERT INTO {name} SELECT * FROM moved;
             ALTER TABLE idempotency_keys ATTACH PARTITION {name}
                 FOR VALUES FROM ('{day} 00:00:00+00') TO ('{next} 00:00:00+00');"
        ))
        .await?;
        tx.commit().await?;
        kept.created.push(name);
    }
    for (name, to) in days {
        if to.is_some_and(|to| to <= now) {
            let tx = client.transaction().await?;
            tx.batch_execute(&format!(
                "SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'; DROP TABLE IF EXISTS \"{}\"",
                name.replace('"', "\"\"")
            ))
            .await?;
            tx.commit().await?;
            kept.dropped.push(name);
        }
    }
    kept.purged = client.execute(PURGE_DEFAULT, &[&now]).await?;
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_must_be_printable_ascii_of_1_to_255_characters() {
        assert!(IdempotencyKey::parse(b"order-123").is_ok());
        assert!(IdempotencyKey::parse(b"a b ~").is_ok());
        assert!(IdempotencyKey::parse(&[b'k'; 255]).is_ok());
        assert!(IdempotencyKey::parse(&[b'k'; 256]).is_err());
        assert!(IdempotencyKey::parse(b"").is_err());
        assert!(IdempotencyKey::parse(b"tab\there").is_err());
        assert!(IdempotencyKey::parse("caf\u{e9}".as_bytes()).is_err());
    }

    #[test]
    fn fingerprints_differ_when_any_part_differs() {
        let a = RequestFingerprint::new("POST", "/v1/events", b"{}");
        assert_eq!(a, RequestFingerprint::new("POST", "/v1/events", b"{}"));
        assert_ne!(
            a,
            RequestFingerprint::new("POST", "/v1/events/batch", b"{}")
        );
        assert_ne!(a, RequestFingerprint::new("POST", "/v1/events", b"{ }"));
        // Length prefixes keep part boundaries apart.
        assert_ne!(
            RequestFingerprint::new("POST", "/a", b"b"),
            RequestFingerprint::new("POST", "/ab", b"")
        );
    }
}
