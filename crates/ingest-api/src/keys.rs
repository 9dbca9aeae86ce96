//! Workspaces and API keys: creation, listing, revocation, and the lookup behind every request.
//!
//! A key reads `cr_<prefix>_<secret>`. The prefix is public and names the key; the secret is
//! shown once. Keys are 190 bits of randomness, so a plain SHA-256 of the whole key is a safe
//! stored form (no slow hash is needed against guessing) and is cheap enough for every request.

use deadpool_postgres::GenericClient;
use rand::distr::{Alphanumeric, SampleString};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Send events and clicks.
    Ingest,
    /// Read events, dispatches, reports.
    Read,
    /// Manage destinations and keys.
    Admin,
}

impl Scope {
    /// The scope's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ingest => "ingest",
            Self::Read => "read",
            Self::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ingest" => Ok(Self::Ingest),
            "read" => Ok(Self::Read),
            "admin" => Ok(Self::Admin),
            other => Err(format!("unknown scope {other:?} (ingest, read, admin)")),
        }
    }
}

/// A key as looked up for a request.
#[derive(Debug, Clone)]
pub struct KeyRecord {
    /// The workspace it belongs to.
    pub workspace_id: Uuid,
    /// Its public prefix.
    pub prefix: String,
    /// SHA-256 of the whole key.
    pub key_hash: Vec<u8>,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// Whether it was revoked.
    pub revoked: bool,
}

/// A key as listed (never with its secret).
#[derive(Debug, Clone)]
pub struct KeyListing {
    /// Its public prefix.
    pub prefix: String,
    /// Its workspace's name.
    pub workspace: String,
    /// Scopes, by name.
    pub scopes: Vec<String>,
    /// When it was made.
    pub created_at: OffsetDateTime,
    /// When it was last used (to the minute).
    pub last_used_at: Option<OffsetDateTime>,
    /// When it was revoked.
    pub revoked_at: Option<OffsetDateTime>,
}

/// Splits a presented key into its prefix, answering `None` for anything not shaped like a key.
pub fn key_prefix(key: &str) -> Option<&str> {
    let rest = key.strip_prefix("cr_")?;
    let (prefix, secret) = rest.split_once('_')?;
    let plain = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric());
    (prefix.len() >= 8 && plain(prefix) && plain(secret)).then_some(prefix)
}

/// What an operator may name a key by on the command line: its public part as lists show it
/// (`cr_<prefix>`), the bare prefix, or the whole key (a leaked key pasted as it is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRef {
    /// The key's prefix.
    pub prefix: String,
    /// The whole key, when that is what was given: its secret must then match the stored hash.
    pub whole: Option<String>,
}

impl std::str::FromStr for KeyRef {
    type Err = String;

    fn from_str(given: &str) -> Result<Self, String> {
        let given = given.trim();
        let plain = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric());
        let rest = given.strip_prefix("cr_").unwrap_or(given);
        let (prefix, whole) = match rest.split_once('_') {
            Some((prefix, secret)) if given.starts_with("cr_") && plain(secret) => {
                (prefix, Some(given.to_owned()))
            }
            Some(_) => (rest, None),
            None => (rest, None),
        };
        if prefix.len() >= 8 && plain(prefix) {
            Ok(Self {
                prefix: prefix.to_owned(),
                whole,
            })
        } else {
            Err("expected a key (cr_<prefix>_<secret>), its public part (cr_<prefix>) or its prefix".into())
        }
    }
}

/// A key's public part as it begins the key, `cr_<prefix>`: how lists and messages name it.
pub fn public_part(prefix: &str) -> String {
    format!("cr_{prefix}")
}

/// The stored form of a key.
pub fn hash_key(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

const UPSERT_WORKSPACE: &str = "
    WITH new AS (
        INSERT INTO workspaces (id, name) VALUES ($1, $2)
        ON CONFLICT (name) DO NOTHING RETURNING id)
    SELECT id FROM new UNION ALL SELECT id FROM workspaces WHERE name = $2";

const INSERT_KEY: &str = "
    INSERT INTO api_keys (workspace_id, prefix, key_hash, scopes) VALUES ($1, $2, $3, $4)";

/// Creates a key in the named workspace (creating the workspace too) and answers the whole key;
/// this is the only time its secret exists outside the caller.
pub async fn create_key(
    client: &impl GenericClient,
    workspace: &str,
    scopes: &[Scope],
) -> Result<String, tokio_postgres::Error> {
    let stmt = client.prepare_cached(UPSERT_WORKSPACE).await?;
    let workspace_id: Uuid = client
        .query_one(&stmt, &[&Uuid::now_v7(), &workspace])
        .await?
        .get(0);
    let mut rng = rand::rng();
    let prefix = Alphanumeric
        .sample_string(&mut rng, 12)
        .to_ascii_lowercase();
    let secret = Alphanumeric.sample_string(&mut rng, 32);
    let key = format!("cr_{prefix}_{secret}");
    let mut names: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let stmt = client.prepare_cached(INSERT_KEY).await?;
    client
        .execute(&stmt, &[&workspace_id, &prefix, &hash_key(&key), &names])
        .await?;
    Ok(key)
}

const FIND_KEY: &str = "
    SELECT workspace_id, prefix, key_hash, scopes, revoked_at IS NOT NULL
    FROM api_keys WHERE prefix = $1";

/// Looks a key up by its prefix.
pub async fn find_key(
    client: &impl GenericClient,
    prefix: &str,
) -> Result<Option<KeyRecord>, tokio_postgres::Error> {
    let stmt = client.prepare_cached(FIND_KEY).await?;
    Ok(client.query_opt(&stmt, &[&prefix]).await?.map(|r| {
        let scopes: Vec<String> = r.get(3);
        KeyRecord {
            workspace_id: r.get(0),
            prefix: r.get(1),
            key_hash: r.get(2),
            scopes: scopes.iter().filter_map(|s| s.parse().ok()).collect(),
            revoked: r.get(4),
        }
    }))
}

const LIST_KEYS: &str = "
    SELECT k.prefix, w.name, k.scopes, k.created_at, k.last_used_at, k.revoked_at
    FROM api_keys k JOIN workspaces w ON w.id = k.workspace_id
    WHERE $1::text IS NULL OR w.name = $1
    ORDER BY w.name, k.created_at";

/// Lists keys, of one workspace or of all.
pub async fn list_keys(
    client: &impl GenericClient,
    workspace: Option<&str>,
) -> Result<Vec<KeyListing>, tokio_postgres::Error> {
    let stmt = client.prepare_cached(LIST_KEYS).await?;
    Ok(client
        .query(&stmt, &[&workspace])
        .await?
        .into_iter()
        .map(|r| KeyListing {
            prefix: r.get(0),
            workspace: r.get(1),
            scopes: r.get(2),
            created_at: r.get(3),
            last_used_at: r.get(4),
            revoked_at: r.get(5),
        })
        .collect())
}

/// Revoking, unless a whole key was given whose secret is not the stored one (`$2`, its hash).
/// The row is read as it was before the update, so a key revoked earlier keeps its first time
/// and is reported as such.
const REVOKE_KEY: &str = "
    WITH found AS (
        SELECT prefix, key_hash, revoked_at FROM api_keys WHERE prefix = $1
    ), revoked AS (
        UPDATE api_keys k SET revoked_at = now()
        FROM found
        WHERE k.prefix = found.prefix AND found.revoked_at IS NULL
          AND ($2::bytea IS NULL OR found.key_hash = $2)
    )
    SELECT (found.key_hash = $2) IS NOT FALSE, found.revoked_at FROM found";

/// What revoking a key did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocation {
    /// It is revoked from now on.
    Revoked,
    /// It was revoked before, at this time.
    AlreadyRevoked(OffsetDateTime),
    /// No key has this prefix.
    NotFound,
    /// A whole key was given, and its secret is not the one of the key with its prefix: nothing
    /// was revoked.
    SecretMismatch,
}

/// Revokes the key `key` names.
pub async fn revoke_key(
    client: &impl GenericClient,
    key: &KeyRef,
) -> Result<Revocation, tokio_postgres::Error> {
    let stmt = client.prepare_cached(REVOKE_KEY).await?;
    let hash = key.whole.as_deref().map(hash_key);
    let Some(row) = client.query_opt(&stmt, &[&key.prefix, &hash]).await? else {
        return Ok(Revocation::NotFound);
    };
    let matches: bool = row.try_get(0)?;
    let before: Option<OffsetDateTime> = row.try_get(1)?;
    Ok(match (matches, before) {
        (false, _) => Revocation::SecretMismatch,
        (true, Some(at)) => Revocation::AlreadyRevoked(at),
        (true, None) => Revocation::Revoked,
    })
}

const WORKSPACE_EXISTS: &str = "SELECT EXISTS (SELECT 1 FROM workspaces WHERE name = $1)";

/// Whether a workspace of this name exists.
pub async fn workspace_exists(
    client: &impl GenericClient,
    name: &str,
) -> Result<bool, tokio_postgres::Error> {
    let stmt = client.prepare_cached(WORKSPACE_EXISTS).await?;
    client.query_one(&stmt, &[&name]).await?.try_get(0)
}

const TOUCH_KEYS: &str = "
    UPDATE api_keys SET last_used_at = now()
    WHERE prefix = ANY($1) AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')";

/// Records that keys were used (to the minute, so that a busy key costs one write a minute).
pub async fn touch_keys(
    client: &impl GenericClient,
    prefixes: &[String],
) -> Result<(), tokio_postgres::Error> {
    let stmt = client.prepare_cached(TOUCH_KEYS).await?;
    client.execute(&stmt, &[&prefixes]).await?;
    Ok(())
}

const WORKSPACE_ID: &str = "SELECT id FROM workspaces WHERE name = $1";

/// The id of the workspace of this name, if there is one.
pub async fn workspace_id(
    client: &impl GenericClient,
    name: &str,
) -> Result<Option<uuid::Uuid>, tokio_postgres::Error> {
    let stmt = client.prepare_cached(WORKSPACE_ID).await?;
    client
        .query_opt(&stmt, &[&name])
        .await?
        .map(|row| row.try_get(0))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_named_by_its_public_part_its_prefix_or_the_whole_key() {
        let prefix = |given: &str| given.parse::<KeyRef>().map(|k| (k.prefix, k.whole));
        let found = Ok(("abcdefgh1234".to_owned(), None));
        assert_eq!(prefix("cr_abcdefgh1234"), found);
        assert_eq!(prefix("abcdefgh1234"), found);
        assert_eq!(prefix("  cr_abcdefgh1234\n"), found);
        assert_eq!(
            prefix("cr_abcdefgh1234_Secret99"),
            Ok((
                "abcdefgh1234".to_owned(),
                Some("cr_abcdefgh1234_Secret99".to_owned())
            ))
        );
        for bad in [
            "",
            "cr_",
            "cr_short",
            "short",
            "cr_abcdefgh1234_",
            "abcdefgh1234_Secret99",
            "cr_abc-defgh1234",
            "cr_abcdefgh1234_sec-ret",
        ] {
            assert!(prefix(bad).is_err(), "{bad:?}");
        }
        assert_eq!(public_part("abcdefgh1234"), "cr_abcdefgh1234");
    }

    #[test]
    fn only_well_formed_keys_have_a_prefix() {
        assert_eq!(key_prefix("cr_abcdefgh1234_Secret99"), Some("abcdefgh1234"));
        assert_eq!(key_prefix("cr_short_Secret99"), None);
        assert_eq!(key_prefix("sk_abcdefgh1234_Secret99"), None);
        assert_eq!(key_prefix("cr_abcdefgh1234_"), None);
        assert_eq!(key_prefix("cr_abcdefgh1234_sec-ret"), None);
        assert_eq!(key_prefix(""), None);
    }
}
