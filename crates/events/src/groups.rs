//! What a click counts under in reports: its channel (the ad platform of its click id, else its
//! utm source, else `direct`) and its utm source, medium and campaign. The matcher files each
//! click an event carried with the [`ClickGroups::id`] of its groups, so that the report stage
//! reads a touch's groups without reading the event again.

use sha2::{Digest, Sha256};

use crate::{ClickIds, Utm};

/// The channel of conversions without a touch.
pub const DIRECT: &str = "direct";

/// The groups a click counts under in reports.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClickGroups {
    /// The ad platform of its click id, else its utm source, else `direct`.
    pub channel: String,
    /// Its `utm.source`.
    pub source: Option<String>,
    /// Its `utm.medium`.
    pub medium: Option<String>,
    /// Its `utm.campaign`.
    pub campaign: Option<String>,
}

impl ClickGroups {
    /// The groups of a click with these click ids and utm parameters.
    pub fn of(click_ids: &ClickIds, utm: Option<&Utm>) -> Self {
        Self {
            channel: channel_of(click_ids, utm),
            source: utm.and_then(|u| u.source.clone()),
            medium: utm.and_then(|u| u.medium.clone()),
            campaign: utm.and_then(|u| u.campaign.clone()),
        }
    }

    /// A stable id of these groups ([`group_id`]).
    pub fn id(&self) -> i64 {
        group_id(
            &self.channel,
            self.source.as_deref(),
            self.medium.as_deref(),
            self.campaign.as_deref(),
        )
    }
}

/// A stable id of a channel, source, medium and campaign: the first eight bytes of the SHA-256
/// of the four values, each written with its length (a missing one as none), so that no two
/// groups share one short of a hash collision.
pub fn group_id(
    channel: &str,
    source: Option<&str>,
    medium: Option<&str>,
    campaign: Option<&str>,
) -> i64 {
    let mut hasher = Sha256::new();
    for value in [Some(channel), source, medium, campaign] {
        match value {
            Some(v) => {
                hasher.update((v.len() as u64).to_be_bytes());
                hasher.update(v.as_bytes());
            }
            None => hasher.update(u64::MAX.to_be_bytes()),
        }
    }
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

/// The channel of a click with these click ids and utm parameters.
pub fn channel_of(ids: &ClickIds, utm: Option<&Utm>) -> String {
    let platform = if ids.has_google() {
        Some("google_ads")
    } else if ids.has_meta() {
        Some("meta")
    } else if ids.ttclid.is_some() {
        Some("tiktok")
    } else if ids.msclkid.is_some() {
        Some("microsoft")
    } else if ids.li_fat_id.is_some() {
        Some("linkedin")
    } else if ids.rdt_cid.is_some() {
        Some("reddit")
    } else if ids.sc_cid.is_some() {
        Some("snapchat")
    } else if ids.epik.is_some() {
        Some("pinterest")
    } else {
        None
    };
    match platform {
        Some(p) => p.into(),
        None => utm
            .and_then(|u| u.source.clone())
            .unwrap_or_else(|| DIRECT.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_that_differ_have_different_ids() {
        let g = |source: Option<&str>, medium: Option<&str>| ClickGroups {
            channel: "google_ads".into(),
            source: source.map(Into::into),
            medium: medium.map(Into::into),
            campaign: None,
        };
        let ids = [
            g(None, None).id(),
            g(Some(""), None).id(),
            g(None, Some("")).id(),
            g(Some("ab"), Some("c")).id(),
            g(Some("a"), Some("bc")).id(),
        ];
        for (i, a) in ids.iter().enumerate() {
            for b in &ids[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(g(Some("a"), None).id(), g(Some("a"), None).id());
    }
}
