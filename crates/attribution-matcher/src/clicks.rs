//! The clicks registry: `POST /v1/clicks`, `POST /v1/clicks/batch`, `GET /v1/clicks/{clickId}`.
//!
//! A click is kept once per `(workspace, clickId)`: the primary key decides, so the same clickId
//! registered twice (even by two processes at once) keeps the first one, and the second
//! registration answers it. Registering a click also queues it for the matcher, in the same
//! statement, so that a pending sale waiting for this click is looked at again
//! ([`crate::claim`] turns the queued click into re-checks of the pending events of the person
//! who named it).

use crate::HashMap;
use std::net::IpAddr;

use deadpool_postgres::GenericClient;
use events::{rfc3339_millis, to_utc_millis, Click, ClickIds, IdentifierHash, Touchpoint, Utm};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::identity::{identifier_hash, IdentifierKind};
use crate::{from_json, to_json, Error, Result};

/// The prefix of generated click ids: `clk_` and a UUIDv7 in 32 hex digits.
pub const CLICK_ID_PREFIX: &str = "clk_";

/// A registered click, as `GET /v1/clicks/{clickId}` shows it (its serde form is that wire form:
/// camelCase, click ids at the top level).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredClick {
    /// The click's id, given or generated.
    pub click_id: String,
    /// When the click happened.
    #[serde(with = "rfc3339_millis")]
    pub timestamp: OffsetDateTime,
    /// The ad platforms' click ids.
    #[serde(flatten)]
    pub click_ids: ClickIds,
    /// UTM parameters of the landing page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utm: Option<Utm>,
    /// The landing page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Referrer of the landing page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referrer: Option<String>,
    /// IP address of the person who clicked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpAddr>,
    /// User agent of that person's browser.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// When it was registered.
    #[serde(with = "rfc3339_millis")]
    pub created_at: OffsetDateTime,
}

impl StoredClick {
    /// The click as the touchpoint of an attribution.
    pub fn touchpoint(&self) -> Touchpoint {
        Touchpoint {
            click_id: Some(self.click_id.clone()),
            clicked_at: self.timestamp,
            click_ids: self.click_ids.clone(),
            utm: self.utm.clone(),
            url: self.url.clone(),
            referrer: self.referrer.clone(),
            ip: self.ip,
            user_agent: self.user_agent.clone(),
        }
    }
}

/// The outcome of registering one click.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredClick {
    /// True when this registration stored the click (201); false when the clickId was already
    /// registered, and `click` is that first registration (200).
    pub created: bool,
    /// The click as stored.
    pub click: StoredClick,
}

const INSERT_CLICKS: &str = "
    WITH input AS (
        SELECT * FROM unnest($2::text[], $3::bytea[], $4::timestamptz[], $5::jsonb[],
                             $6::jsonb[], $7::text[], $8::text[], $9::inet[], $10::text[])
            AS t(click_id, identifier, clicked_at, click_ids, utm, url, referrer, ip, user_agent)
    ), inserted AS (
        INSERT INTO clicks (workspace_id, click_id, identifier, clicked_at, click_ids, utm, url,
                            referrer, ip, user_agent)
        SELECT $1, click_id, identifier, clicked_at, click_ids, utm, url, referrer, ip, user_agent
        FROM input
        ON CONFLICT DO NOTHING
        RETURNING click_id, identifier, created_at
    ), queued AS (
        INSERT INTO match_queue (workspace_id, click_identifier)
        SELECT $1, identifier FROM inserted
    )
    SELECT click_id, created_at FROM inserted";

const SELECT_CLICKS: &str = "
    SELECT c.click_id, c.clicked_at, c.click_ids, c.utm, c.url, c.referrer, c.ip, c.user_agent,
           c.created_at
    FROM unnest($2::text[]) AS q(click_id)
    JOIN clicks c ON c.workspace_id = $1 AND c.click_id = q.click_id";

/// Registers `clicks` in `workspace_id` and answers, in input order, each click as stored and
/// whether this call stored it.
///
/// A click without a `clickId` gets a generated one ([`CLICK_ID_PREFIX`]). A clickId already
/// registered keeps its first registration, which is answered with `created: false`; so does a
/// clickId given twice in one call. One statement stores the clicks and queues them for the
/// matcher, so the call is atomic without a transaction; inside the caller's transaction it
/// commits with it.
pub async fn register_clicks(
    client: &impl GenericClient,
    workspace_id: Uuid,
    clicks: &[Click],
) -> Result<Vec<RegisteredClick>> {
    let ids: Vec<String> = clicks
        .iter()
        .map(|click| {
            click
                .click_id
                .clone()
                .unwrap_or_else(|| format!("{CLICK_ID_PREFIX}{}", Uuid::now_v7().simple()))
        })
        .collect();
    // The first occurrence of each id in the call; later ones answer it.
    let mut first: HashMap<&str, usize> =
        HashMap::with_capacity_and_hasher(ids.len(), Default::default());
    let mut unique: Vec<usize> = Vec::with_capacity(ids.len());
    for (index, id) in ids.iter().enumerate() {
        if !first.contains_key(id.as_str()) {
            first.insert(id, index);
            unique.push(index);
        }
    }
    if unique.is_empty() {
        return Ok(Vec::new());
    }
    // One insertion order for every transaction, so that two batches cannot deadlock.
    unique.sort_by(|&a, &b| ids[a].cmp(&ids[b]));

    let mut click_ids = Vec::with_capacity(unique.len());
    let mut utms = Vec::with_capacity(unique.len());
    for &index in &unique {
        click_ids.push(to_json("click ids", &clicks[index].click_ids)?);
        utms.push(
            clicks[index]
                .utm
                .as_ref()
                .map(|utm| to_json("utm", utm))
                .transpose()?,
        );
    }
    let names: Vec<&str> = unique.iter().map(|&i| ids[i].as_str()).collect();
    let hashes: Vec<IdentifierHash> = names
        .iter()
        .map(|name| identifier_hash(IdentifierKind::ClickId, name))
        .collect();
    let identifiers: Vec<&[u8]> = hashes.iter().map(|hash| &hash[..]).collect();
    let clicked_at: Vec<OffsetDateTime> = unique.iter().map(|&i| clicks[i].timestamp).collect();
    let urls: Vec<Option<&str>> = unique.iter().map(|&i| clicks[i].url.as_deref()).collect();
    let referrers: Vec<Option<&str>> = unique
        .iter()
        .map(|&i| clicks[i].referrer.as_deref())
        .collect();
    let ips: Vec<Option<IpAddr>> = unique.iter().map(|&i| clicks[i].ip).collect();
    let agents: Vec<Option<&str>> = unique
        .iter()
        .map(|&i| clicks[i].user_agent.as_deref())
        .collect();

    let insert = client.prepare_cached(INSERT_CLICKS).await?;
    let inserted: HashMap<String, OffsetDateTime> = client
        .query(
            &insert,
            &[
                &workspace_id,
                &names,
                &identifiers,
                &clicked_at,
                &click_ids,
                &utms,
                &urls,
                &referrers,
                &ips,
                &agents,
            ],
        )
        .await?
        .into_iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();

    let lost: Vec<&str> = names
        .iter()
        .copied()
        .filter(|name| !inserted.contains_key(*name))
        .collect();
    let mut existing: HashMap<String, StoredClick> =
        HashMap::with_capacity_and_hasher(lost.len(), Default::default());
    if !lost.is_empty() {
        let select = client.prepare_cached(SELECT_CLICKS).await?;
        for row in client.query(&select, &[&workspace_id, &lost]).await? {
            let click = stored_click(&row, 0)?;
            existing.insert(click.click_id.clone(), click);
        }
    }

    let mut out = Vec::with_capacity(clicks.len());
    for (index, id) in ids.iter().enumerate() {
        let first_index = first.get(id.as_str()).copied().unwrap_or(index);
        let registered = if let Some(created_at) = inserted.get(id) {
            RegisteredClick {
                created: first_index == index,
                click: stored_from_input(id, &clicks[first_index], *created_at),
            }
        } else {
            let click = existing
                .get(id)
                .cloned()
                .ok_or_else(|| Error::ClickVanished {
                    click_id: id.clone(),
                })?;
            RegisteredClick {
                created: false,
                click,
            }
        };
        out.push(registered);
    }
    Ok(out)
}

fn stored_from_input(click_id: &str, click: &Click, created_at: OffsetDateTime) -> StoredClick {
    StoredClick {
        click_id: click_id.to_owned(),
        timestamp: to_utc_millis(click.timestamp),
        click_ids: click.click_ids.clone(),
        utm: click.utm.clone(),
        url: click.url.clone(),
        referrer: click.referrer.clone(),
        ip: click.ip,
        user_agent: click.user_agent.clone(),
        created_at: to_utc_millis(created_at),
    }
}

const SELECT_CLICK: &str = "
    SELECT click_id, clicked_at, click_ids, utm, url, referrer, ip, user_agent, created_at
    FROM clicks WHERE workspace_id = $1 AND click_id = $2";

/// The click `click_id` of `workspace_id`, if registered.
pub async fn get_click(
    client: &impl GenericClient,
    workspace_id: Uuid,
    click_id: &str,
) -> Result<Option<StoredClick>> {
    let statement = client.prepare_cached(SELECT_CLICK).await?;
    client
        .query_opt(&statement, &[&workspace_id, &click_id])
        .await?
        .map(|row| stored_click(&row, 0))
        .transpose()
}

/// Reads a click from `row`, whose columns from `at` on are `click_id, clicked_at, click_ids,
/// utm, url, referrer, ip, user_agent, created_at`.
pub(crate) fn stored_click(row: &Row, at: usize) -> Result<StoredClick> {
    let click_ids: Value = row.try_get(at + 2)?;
    let utm: Option<Value> = row.try_get(at + 3)?;
    Ok(StoredClick {
        click_id: row.try_get(at)?,
        timestamp: to_utc_millis(row.try_get(at + 1)?),
        click_ids: from_json("click ids", click_ids)?,
        utm: utm.map(|utm| from_json("utm", utm)).transpose()?,
        url: row.try_get(at + 4)?,
        referrer: row.try_get(at + 5)?,
        ip: row.try_get(at + 6)?,
        user_agent: row.try_get(at + 7)?,
        created_at: to_utc_millis(row.try_get(at + 8)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    #[test]
    fn the_wire_form_is_camel_case_with_click_ids_at_the_top_level() {
        let click = StoredClick {
            click_id: "clickid_123".into(),
            timestamp: datetime!(2026-04-10 12:00 UTC),
            click_ids: ClickIds {
                gclid: Some("EAIaIQobChMI".into()),
                ..ClickIds::default()
            },
            utm: Some(Utm {
                source: Some("google".into()),
                ..Utm::default()
            }),
            url: None,
            referrer: None,
            ip: Some(IpAddr::from([203, 0, 113, 7])),
            user_agent: Some("Mozilla/5.0".into()),
            created_at: datetime!(2026-04-10 12:00:01.5 UTC),
        };
        let wire = serde_json::to_value(&click).unwrap();
        assert_eq!(
            wire,
            json!({
                "clickId": "clickid_123",
                "timestamp": "2026-04-10T12:00:00.000Z",
                "gclid": "EAIaIQobChMI",
                "utm": {"source": "google"},
                "ip": "203.0.113.7",
                "userAgent": "Mozilla/5.0",
                "createdAt": "2026-04-10T12:00:01.500Z",
            })
        );
        let touchpoint = click.touchpoint();
        assert_eq!(touchpoint.click_id.as_deref(), Some("clickid_123"));
        assert_eq!(touchpoint.clicked_at, click.timestamp);
        assert!(touchpoint.click_ids.has_google());
    }
}
