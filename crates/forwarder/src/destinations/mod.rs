//! Destinations: where a workspace's conversions go (a Google Ads account, a Meta pixel, a
//! webhook URL), which kinds of event each subscribes to, and its credentials.
//!
//! Credentials are write-only: they are sealed with the [`Cipher`] before they reach the database
//! and no view ever carries them; only the worker opens them, right before a send. A destination
//! document is checked whole when it is created or changed (every bad field listed), so that a
//! destination that cannot work is refused then, not discovered when a conversion fails.

use deadpool_postgres::GenericClient;
use events::{DestinationType, EventKind};
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::crypto::{credentials_aad, Cipher};
use validate::Draft;

mod validate;
use crate::{ids, Error, Page, Result};

/// The settings of a destination: its type and the JSON its platform's adapter checked (defaults
/// filled in), as stored and shown.
#[derive(Debug, Clone, PartialEq)]
pub struct DestinationConfig {
    destination_type: DestinationType,
    json: Value,
}

impl DestinationConfig {
    /// Settings its adapter checked.
    pub(crate) fn new(destination_type: DestinationType, json: Value) -> Self {
        Self {
            destination_type,
            json,
        }
    }

    /// The destination type these settings belong to.
    pub fn destination_type(&self) -> DestinationType {
        self.destination_type
    }

    /// The platform's adapter.
    pub fn adapter(&self) -> &'static dyn platforms::Adapter {
        platforms::adapter(self.destination_type)
    }

    /// The stored and shown JSON form (camelCase, defaults filled in).
    pub fn to_json(&self) -> Value {
        self.json.clone()
    }

    /// The stored JSON form, borrowed.
    pub fn json(&self) -> &Value {
        &self.json
    }

    /// The settings as the platform's own type.
    ///
    /// # Errors
    /// [`Error::Corrupt`] when they are not of that type.
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        T::deserialize(&self.json).map_err(|e| Error::Corrupt {
            what: "destination config",
            detail: e.to_string(),
        })
    }

    /// What its platform accepts under these settings.
    pub fn limits(&self) -> platforms::Limits {
        self.adapter().limits(&self.json)
    }

    /// Reads the stored JSON form of a destination of type `destination_type`.
    ///
    /// # Errors
    /// [`Error::Corrupt`].
    pub fn from_json(destination_type: DestinationType, json: Value) -> Result<Self> {
        let json = platforms::adapter(destination_type)
            .read_config(json)
            .map_err(|detail| Error::Corrupt {
                what: "destination config",
                detail,
            })?;
        Ok(Self::new(destination_type, json))
    }
}

/// The credentials of a destination, opened. Their `Debug` form never shows a secret.
#[derive(Clone, PartialEq)]
pub struct Credentials {
    destination_type: DestinationType,
    json: Value,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Credentials({} {{ .. }})",
            self.destination_type.as_str()
        )
    }
}

impl Credentials {
    /// Credentials its adapter checked.
    pub(crate) fn new(destination_type: DestinationType, json: Value) -> Self {
        Self {
            destination_type,
            json,
        }
    }

    /// The JSON form the adapter reads.
    pub fn json(&self) -> &Value {
        &self.json
    }

    /// The credentials as the platform's own type.
    ///
    /// # Errors
    /// [`Error::Corrupt`] when they are not of that type.
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        T::deserialize(&self.json).map_err(|e| Error::Corrupt {
            what: "destination credentials",
            detail: e.to_string(),
        })
    }

    fn to_vec(&self) -> Vec<u8> {
        serde_json::to_vec(&self.json).unwrap_or_default()
    }

    fn from_slice(destination_type: DestinationType, bytes: &[u8]) -> Result<Self> {
        let json = platforms::adapter(destination_type)
            .read_credentials(bytes)
            .map_err(|detail| Error::Corrupt {
                what: "destination credentials",
                detail,
            })?;
        Ok(Self::new(destination_type, json))
    }

    /// Seals these credentials for the destination `destination_id` of `workspace_id`.
    fn seal(&self, cipher: &Cipher, workspace_id: Uuid, destination_id: Uuid) -> Result<Vec<u8>> {
        cipher.seal(
            &self.to_vec(),
            &credentials_aad(workspace_id, destination_id),
        )
    }
}

/// A destination as stored, credentials still sealed.
#[derive(Clone)]
pub struct Destination {
    /// Its workspace.
    pub workspace_id: Uuid,
    /// Its id.
    pub id: Uuid,
    /// Display name.
    pub name: String,
    /// Whether its dispatches go out; a disabled destination's dispatches wait.
    pub enabled: bool,
    /// The kinds of event it gets.
    pub events: Vec<EventKind>,
    /// Its settings.
    pub config: DestinationConfig,
    sealed_credentials: Vec<u8>,
    revision: i32,
    /// When it was created.
    pub created_at: OffsetDateTime,
    /// When it last changed.
    pub updated_at: OffsetDateTime,
}

impl std::fmt::Debug for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Destination")
            .field("workspace_id", &self.workspace_id)
            .field("id", &self.id)
            .field("name", &self.name)
            .field("enabled", &self.enabled)
            .field("events", &self.events)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Destination {
    /// Its type.
    pub fn destination_type(&self) -> DestinationType {
        self.config.destination_type()
    }

    /// True when it gets events of `kind`.
    pub fn subscribes_to(&self, kind: EventKind) -> bool {
        self.events.contains(&kind)
    }

    /// Opens its credentials.
    ///
    /// # Errors
    /// [`Error::Crypto`] when the key is not the one they were sealed with; [`Error::Corrupt`].
    pub fn credentials(&self, cipher: &Cipher) -> Result<Credentials> {
        let plain = cipher.open(
            &self.sealed_credentials,
            &credentials_aad(self.workspace_id, self.id),
        )?;
        Credentials::from_slice(self.destination_type(), &plain)
    }

    /// How it is shown: everything but the credentials.
    pub fn view(&self) -> DestinationView {
        DestinationView {
            id: ids::to_wire(ids::DESTINATION, self.id),
            destination_type: self.destination_type(),
            name: self.name.clone(),
            enabled: self.enabled,
            events: self.events.clone(),
            config: self.config.to_json(),
            has_credentials: !self.sealed_credentials.is_empty(),
            created_at: events::format_timestamp(self.created_at),
            updated_at: events::format_timestamp(self.updated_at),
        }
    }

    /// Reads a row of the destination columns under their own names.
    pub(crate) fn from_row(row: &Row) -> Result<Self> {
        let destination_type = parse_type(row.try_get("type")?)?;
        let events: Vec<String> = row.try_get("events")?;
        Ok(Self {
            workspace_id: row.try_get("workspace_id")?,
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            enabled: row.try_get("enabled")?,
            events: events
                .iter()
                .filter_map(|e| match e.as_str() {
                    "lead" => Some(EventKind::Lead),
                    "sale" => Some(EventKind::Sale),
                    _ => None,
                })
                .collect(),
            config: DestinationConfig::from_json(destination_type, row.try_get("config")?)?,
            sealed_credentials: row.try_get("credentials")?,
            revision: row.try_get("revision")?,
            created_at: events::to_utc_millis(row.try_get("created_at")?),
            updated_at: events::to_utc_millis(row.try_get("updated_at")?),
        })
    }
}

/// Reads a stored destination type.
pub(crate) fn parse_type(raw: &str) -> Result<DestinationType> {
    DestinationType::ALL
        .into_iter()
        .find(|t| t.as_str() == raw)
        .ok_or_else(|| Error::Corrupt {
            what: "destination type",
            detail: raw.to_owned(),
        })
}

/// A destination as the API shows it: never its credentials.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DestinationView {
    /// `dst_…`.
    pub id: String,
    /// `google_ads`, `meta` or `webhook`.
    #[serde(rename = "type")]
    pub destination_type: DestinationType,
    /// Display name.
    pub name: String,
    /// Whether dispatches go out.
    pub enabled: bool,
    /// Subscribed kinds: `lead`, `sale`.
    pub events: Vec<EventKind>,
    /// The settings, defaults filled in.
    pub config: Value,
    /// Whether credentials are stored (always, for a destination created through the API).
    pub has_credentials: bool,
    /// RFC 3339 with milliseconds.
    pub created_at: String,
    /// RFC 3339 with milliseconds.
    pub updated_at: String,
}

fn kinds_to_text(kinds: &[EventKind]) -> Vec<&'static str> {
    kinds.iter().map(EventKind::as_str).collect()
}

/// The largest page of a list.
pub const LIMIT_MAX: i64 = 100;

/// Checks a page size and a cursor of prefix `prefix`.
pub(crate) fn page_params(prefix: &str, cursor: Option<&str>, limit: i64) -> Result<Option<Uuid>> {
    let mut errors = Vec::new();
    if !(1..=LIMIT_MAX).contains(&limit) {
        errors.push(events::FieldError {
            field: "limit".into(),
            code: "range",
            message: format!("must be an integer from 1 to {LIMIT_MAX}"),
        });
    }
    let cursor = match cursor {
        None => None,
        Some(raw) => {
            let id = ids::from_wire(prefix, raw);
            if id.is_none() {
                errors.push(events::FieldError {
                    field: "cursor".into(),
                    code: "format",
                    message: "must be a nextCursor of a previous page".into(),
                });
            }
            id
        }
    };
    if errors.is_empty() {
        Ok(cursor)
    } else {
        Err(Error::Invalid(errors))
    }
}

const INSERT: &str = "
    INSERT INTO destinations (workspace_id, id, type, name, enabled, events, config, credentials)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
    RETURNING workspace_id, id, type, name, enabled, events, config, credentials, revision,
              created_at, updated_at";

/// Creates a destination from a request body (`{type, name, enabled?, events, config,
/// credentials}`), sealing its credentials.
///
/// # Errors
/// [`Error::Invalid`] listing every bad field; [`Error::Database`].
pub async fn create_destination(
    client: &impl GenericClient,
    cipher: &Cipher,
    workspace_id: Uuid,
    body: &Value,
) -> Result<DestinationView> {
    let draft = validate::check_document(body, true).map_err(Error::Invalid)?;
    let Draft {
        destination_type,
        name,
        enabled,
        events,
        config,
        credentials,
    } = draft;
    let Some(credentials) = credentials else {
        return Err(Error::invalid("credentials", "required", "is required"));
    };
    let id = Uuid::now_v7();
    let sealed = credentials.seal(cipher, workspace_id, id)?;
    let stmt = client.prepare_cached(INSERT).await?;
    let row = client
        .query_one(
            &stmt,
            &[
                &workspace_id,
                &id,
                &destination_type.as_str(),
                &name,
                &enabled,
                &kinds_to_text(&events),
                &config.to_json(),
                &sealed,
            ],
        )
        .await?;
    let destination = Destination::from_row(&row)?;
    tracing::info!(
        destination = %ids::to_wire(ids::DESTINATION, id),
        destination_type = destination_type.as_str(),
        "destination created"
    );
    Ok(destination.view())
}

const LIST: &str = "
    SELECT workspace_id, id, type, name, enabled, events, config, credentials, revision,
           created_at, updated_at
    FROM destinations
    WHERE workspace_id = $1 AND ($2::uuid IS NULL OR id < $2)
    ORDER BY id DESC
    LIMIT $3";

/// A page of the workspace's destinations, newest first.
///
/// # Errors
/// [`Error::Invalid`] for a `limit` outside 1..=100 or a cursor that is not a `dst_` id;
/// [`Error::Database`].
pub async fn list_destinations(
    client: &impl GenericClient,
    workspace_id: Uuid,
    cursor: Option<&str>,
    limit: i64,
) -> Result<Page<DestinationView>> {
    let before = page_params(ids::DESTINATION, cursor, limit)?;
    let stmt = client.prepare_cached(LIST).await?;
    let rows = client
        .query(&stmt, &[&workspace_id, &before, &(limit + 1)])
        .await?;
    let mut data = rows
        .iter()
        .map(Destination::from_row)
        .collect::<Result<Vec<_>>>()?;
    let more = data.len() as i64 > limit;
    data.truncate(usize::try_from(limit).unwrap_or(0));
    let next_cursor = more
        .then(|| data.last().map(|d| ids::to_wire(ids::DESTINATION, d.id)))
        .flatten();
    Ok(Page {
        data: data.iter().map(Destination::view).collect(),
        next_cursor,
    })
}

const GET: &str = "
    SELECT workspace_id, id, type, name, enabled, events, config, credentials, revision,
           created_at, updated_at
    FROM destinations WHERE workspace_id = $1 AND id = $2";

/// One destination of the workspace, credentials sealed.
///
/// # Errors
/// [`Error::Database`].
pub async fn load_destination(
    client: &impl GenericClient,
    workspace_id: Uuid,
    id: Uuid,
) -> Result<Option<Destination>> {
    let stmt = client.prepare_cached(GET).await?;
    client
        .query_opt(&stmt, &[&workspace_id, &id])
        .await?
        .as_ref()
        .map(Destination::from_row)
        .transpose()
}

/// One destination of the workspace, by its wire id.
///
/// # Errors
/// [`Error::NotFound`] for an unknown id or another workspace's; [`Error::Database`].
pub async fn get_destination(
    client: &impl GenericClient,
    workspace_id: Uuid,
    id: &str,
) -> Result<DestinationView> {
    let id = ids::from_wire(ids::DESTINATION, id).ok_or(Error::NotFound)?;
    load_destination(client, workspace_id, id)
        .await?
        .map(|d| d.view())
        .ok_or(Error::NotFound)
}

const UPDATE: &str = "
    UPDATE destinations
    SET name = $3, enabled = $4, events = $5, config = $6, credentials = coalesce($7, credentials),
        revision = revision + 1, updated_at = now()
    WHERE workspace_id = $1 AND id = $2 AND revision = $8
    RETURNING workspace_id, id, type, name, enabled, events, config, credentials, revision,
              created_at, updated_at";

/// How often an update re-reads a destination that changed under it before giving up.
const UPDATE_TRIES: usize = 5;

/// Changes a destination: `name`, `enabled`, `events`, `config` (a JSON merge patch onto the
/// stored settings: keys replace, `null` removes a key and so restores its default) and
/// `credentials` (replaced whole, sealed again). `type` cannot change. The result is checked whole
/// as on creation, so that, say, subscribing to leads without a lead conversion action is refused.
///
/// Enabling a disabled destination lets its waiting dispatches go.
///
/// # Errors
/// [`Error::NotFound`]; [`Error::Invalid`] listing every bad field; [`Error::Conflict`] when the
/// destination keeps changing under concurrent updates; [`Error::Database`].
pub async fn update_destination(
    client: &impl GenericClient,
    cipher: &Cipher,
    workspace_id: Uuid,
    id: &str,
    patch: &Value,
) -> Result<DestinationView> {
    let id = ids::from_wire(ids::DESTINATION, id).ok_or(Error::NotFound)?;
    let Some(patch) = patch.as_object() else {
        return Err(Error::invalid("", "type", "must be an object"));
    };
    for _ in 0..UPDATE_TRIES {
        let stored = load_destination(client, workspace_id, id)
            .await?
            .ok_or(Error::NotFound)?;
        let key_errors = validate::check_patch_keys(patch, stored.destination_type());
        if !key_errors.is_empty() {
            return Err(Error::Invalid(key_errors));
        }
        let mut document = serde_json::json!({
            "type": stored.destination_type().as_str(),
            "name": stored.name,
            "enabled": stored.enabled,
            "events": kinds_to_text(&stored.events),
            "config": stored.config.to_json(),
        });
        for key in ["name", "enabled", "events", "credentials"] {
            if let Some(value) = patch.get(key) {
                document[key] = value.clone();
            }
        }
        if let Some(config) = patch.get("config") {
            if config.is_object() {
                validate::merge_patch(&mut document["config"], config);
            } else {
                document["config"] = config.clone();
            }
        }
        let draft = validate::check_document(&document, false).map_err(Error::Invalid)?;
        let sealed = draft
            .credentials
            .as_ref()
            .map(|c| c.seal(cipher, workspace_id, id))
            .transpose()?;
        let stmt = client.prepare_cached(UPDATE).await?;
        let row = client
            .query_opt(
                &stmt,
                &[
                    &workspace_id,
                    &id,
                    &draft.name,
                    &draft.enabled,
                    &kinds_to_text(&draft.events),
                    &draft.config.to_json(),
                    &sealed,
                    &stored.revision,
                ],
            )
            .await?;
        if let Some(row) = row {
            let destination = Destination::from_row(&row)?;
            tracing::info!(
                destination = %ids::to_wire(ids::DESTINATION, id),
                enabled = destination.enabled,
                credentials_replaced = sealed.is_some(),
                "destination updated"
            );
            return Ok(destination.view());
        }
    }
    Err(Error::Conflict(
        "the destination kept changing under concurrent updates; try again".into(),
    ))
}

const KEEP_ROTATED: &str = "
    UPDATE destinations SET credentials = $3
    WHERE workspace_id = $1 AND id = $2 AND credentials = $4";

/// Stores `credentials` (the JSON its adapter wrote: the destination's credentials with the
/// refresh token the platform rotated) in place of the ones `destination` was loaded with, unless
/// they changed meanwhile (someone replaced them: theirs win). True when stored. The revision and
/// `updated_at` stay: nothing the customer set changed.
///
/// # Errors
/// [`Error::Corrupt`] when the adapter cannot read `credentials`; [`Error::Database`].
pub(crate) async fn keep_rotated_credentials(
    client: &impl GenericClient,
    cipher: &Cipher,
    destination: &Destination,
    credentials: &Value,
) -> Result<bool> {
    let bytes = serde_json::to_vec(credentials).map_err(|e| Error::Corrupt {
        what: "rotated credentials",
        detail: e.to_string(),
    })?;
    let rotated = Credentials::from_slice(destination.destination_type(), &bytes)?;
    let sealed = rotated.seal(cipher, destination.workspace_id, destination.id)?;
    let stmt = client.prepare_cached(KEEP_ROTATED).await?;
    let stored = client
        .execute(
            &stmt,
            &[
                &destination.workspace_id,
                &destination.id,
                &sealed,
                &destination.sealed_credentials,
            ],
        )
        .await?;
    Ok(stored == 1)
}

const DELETE: &str = "DELETE FROM destinations WHERE workspace_id = $1 AND id = $2";

/// Deletes a destination, its sealed credentials with it; its dispatches still waiting become
/// `cancelled` (reason `destination deleted`), one in flight keeps the outcome its worker
/// records; its history stays readable.
///
/// # Errors
/// [`Error::NotFound`]; [`Error::Database`].
pub async fn delete_destination(
    client: &impl GenericClient,
    workspace_id: Uuid,
    id: &str,
) -> Result<()> {
    let uuid = ids::from_wire(ids::DESTINATION, id).ok_or(Error::NotFound)?;
    let stmt = client.prepare_cached(DELETE).await?;
    let deleted = client.execute(&stmt, &[&workspace_id, &uuid]).await?;
    if deleted == 0 {
        return Err(Error::NotFound);
    }
    // After the delete: a dispatch enqueued meanwhile for it is cancelled here, or by the claim
    // that finds its destination gone.
    let cancelled =
        crate::queue::cancel_for_deleted_destination(client, workspace_id, uuid).await?;
    tracing::info!(destination = %id, cancelled, "destination deleted");
    Ok(())
}

/// Whether the workspace has any destination, enabled or not: without one, routing has nothing
/// to queue and a step need not build what it would hand over.
pub async fn has_destinations(client: &impl GenericClient, workspace_id: Uuid) -> Result<bool> {
    const SQL: &str = "SELECT EXISTS (SELECT 1 FROM destinations WHERE workspace_id = $1)";
    let stmt = client.prepare_cached(SQL).await?;
    Ok(client
        .query_one(&stmt, &[&workspace_id])
        .await?
        .try_get(0)?)
}

/// Every destination of these workspaces (for routing), credentials sealed.
pub(crate) async fn destinations_of(
    client: &impl GenericClient,
    workspaces: &[Uuid],
) -> Result<Vec<Destination>> {
    const SQL: &str = "
        SELECT workspace_id, id, type, name, enabled, events, config, credentials, revision,
               created_at, updated_at
        FROM destinations WHERE workspace_id = ANY($1)";
    let stmt = client.prepare_cached(SQL).await?;
    client
        .query(&stmt, &[&workspaces])
        .await?
        .iter()
        .map(Destination::from_row)
        .collect()
}
