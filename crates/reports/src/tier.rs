//! Macro and micro conversions. A conversion's tier comes from its `eventName`'s definition in
//! the conversion-events catalog when the workspace has one; without a catalog (or without a
//! definition for the name) every conversion is `macro`.

use std::collections::HashMap;

use deadpool_postgres::GenericClient;
use uuid::Uuid;

use crate::Result;

/// The tier of a conversion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Tier {
    /// What the business is for (a sale, a signed deal).
    #[default]
    Macro,
    /// A step on the way (a newsletter sign-up, a demo booked).
    Micro,
}

impl Tier {
    /// The name on the wire and in the rollups.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Macro => "macro",
            Tier::Micro => "micro",
        }
    }

    /// The tier of a name.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "macro" => Some(Tier::Macro),
            "micro" => Some(Tier::Micro),
            _ => None,
        }
    }
}

/// Whether the catalog's table is there with the columns read below (it is created by another
/// crate's migrations; until they run, everything is macro).
const CATALOG_PRESENT: &str = "
    SELECT count(*) = 3 FROM pg_attribute
    WHERE attrelid = to_regclass('conversion_events') AND NOT attisdropped
      AND attname IN ('workspace_id', 'event_name', 'tier')";

const CATALOG_TIERS: &str = "
    SELECT event_name, tier FROM conversion_events
    WHERE workspace_id = $1 AND event_name = ANY($2::text[])";

/// The tier of each of `event_names` that has a definition; the others are [`Tier::Macro`].
pub async fn conversion_tiers(
    client: &impl GenericClient,
    workspace_id: Uuid,
    event_names: &[&str],
) -> Result<HashMap<String, Tier>> {
    let mut out = HashMap::new();
    if event_names.is_empty() {
        return Ok(out);
    }
    let present = client.prepare_cached(CATALOG_PRESENT).await?;
    if !client
        .query_one(&present, &[])
        .await?
        .try_get::<_, bool>(0)?
    {
        return Ok(out);
    }
    // Not cached: the statement would outlive a change of the table's shape.
    for row in client
        .query(CATALOG_TIERS, &[&workspace_id, &event_names])
        .await?
    {
        let name: String = row.try_get(0)?;
        let tier: Option<String> = row.try_get(1)?;
        if let Some(tier) = tier.as_deref().and_then(Tier::parse) {
            out.insert(name, tier);
        }
    }
    Ok(out)
}
