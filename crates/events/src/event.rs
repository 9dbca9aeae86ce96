//! The normalised conversion event and its parts, and the wire form it is stored and served in.
//!
//! An [`Event`] is what [`crate::parse_event`] makes of a request body: every identifier
//! normalised, every default filled in. Its serde form is the camelCase JSON of
//! `GET /v1/events/{id}`; click ids sit at the top level there, although they are grouped in
//! [`ClickIds`] here. That grouping is written out by hand in [`EventWire`] rather than with
//! `#[serde(flatten)]`, which buffers values and mangles `arbitrary_precision` numbers.

use crate::email::Email;
use crate::money::{amount_serde, Currency, Money};
use crate::phone::PhoneE164;
use crate::timestamp::rfc3339_millis;
use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;
use time::OffsetDateTime;

/// Lead or sale, the two kinds of conversion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// A person raised their hand: form submit, sign-up, demo booked.
    Lead,
    /// Money was collected: order paid, subscription created, payment captured.
    Sale,
}

impl EventKind {
    /// The wire name, `"lead"` or `"sale"`; also the default `eventName`.
    pub fn as_str(&self) -> &'static str {
        match self {
            EventKind::Lead => "lead",
            EventKind::Sale => "sale",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How far ingestion goes before it answers.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Answer once the event is stored.
    #[default]
    Async,
    /// Answer once attribution has decided and routing is recorded.
    Wait,
    /// Leads only: link the identifiers and nothing else; a later lead of the same person is the
    /// one counted and dispatched.
    Deferred,
}

impl Mode {
    /// The wire name: `"async"`, `"wait"` or `"deferred"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Mode::Async => "async",
            Mode::Wait => "wait",
            Mode::Deferred => "deferred",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A consent signal as the ad platforms define it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsentStatus {
    /// The user agreed.
    Granted,
    /// The user refused.
    Denied,
}

impl ConsentStatus {
    /// The wire name, `"granted"` or `"denied"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            ConsentStatus::Granted => "granted",
            ConsentStatus::Denied => "denied",
        }
    }
}

/// The user's consent for ad platforms; a missing signal means the sender did not say.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Consent {
    /// Whether user data (email, phone, …) may be sent to ad platforms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ad_user_data: Option<ConsentStatus>,
    /// Whether the data may be used for ad personalisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ad_personalization: Option<ConsentStatus>,
}

impl Consent {
    /// True when the sender said user data must not leave for ad platforms.
    pub fn ad_user_data_denied(&self) -> bool {
        self.ad_user_data == Some(ConsentStatus::Denied)
    }
}

/// UTM parameters of the action's landing page.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Utm {
    /// `utm_source`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// `utm_medium`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub medium: Option<String>,
    /// `utm_campaign`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<String>,
    /// `utm_term`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term: Option<String>,
    /// `utm_content`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

impl Utm {
    /// The sub-keys of `utm` on the wire.
    pub const FIELDS: [&'static str; 5] = ["source", "medium", "campaign", "term", "content"];
}

/// Click ids the sender captured itself, straight from the ad platforms' landing-page
/// parameters and cookies. On the wire they are top-level fields of the event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ClickIds {
    /// Google Ads click id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gclid: Option<String>,
    /// Google Ads click id for app campaigns on iOS (web to app).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gbraid: Option<String>,
    /// Google Ads click id for iOS web campaigns (app to web).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wbraid: Option<String>,
    /// Meta click id from the landing-page URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fbclid: Option<String>,
    /// Meta `_fbc` cookie.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fbc: Option<String>,
    /// Meta `_fbp` browser cookie.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fbp: Option<String>,
    /// TikTok click id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttclid: Option<String>,
    /// Microsoft Advertising click id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msclkid: Option<String>,
    /// TikTok `_ttp` browser cookie.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttp: Option<String>,
    /// LinkedIn first-party ad tracking id (`li_fat_id`).
    #[serde(default, rename = "liFatId", skip_serializing_if = "Option::is_none")]
    pub li_fat_id: Option<String>,
    /// Reddit click id (`rdt_cid`).
    #[serde(default, rename = "rdtCid", skip_serializing_if = "Option::is_none")]
    pub rdt_cid: Option<String>,
    /// Snapchat click id (`ScCid`).
    #[serde(default, rename = "scCid", skip_serializing_if = "Option::is_none")]
    pub sc_cid: Option<String>,
    /// Snapchat `_scid` browser cookie.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scid: Option<String>,
    /// Pinterest click id (`epik` / `_epik`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epik: Option<String>,
}

impl ClickIds {
    /// The wire names of the click ids, in wire order.
    pub const FIELDS: [&'static str; 14] = [
        "gclid", "gbraid", "wbraid", "fbclid", "fbc", "fbp", "ttclid", "msclkid", "ttp", "liFatId",
        "rdtCid", "scCid", "scid", "epik",
    ];

    /// True when no click id is set.
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    /// The click ids that are set, with their wire names, in wire order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &str)> + '_ {
        Self::FIELDS
            .into_iter()
            .zip(self.slots())
            .filter_map(|(name, slot)| slot.as_deref().map(|value| (name, value)))
    }

    /// The click id called `name` on the wire, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(field, _)| *field == name)
            .map(|(_, value)| value)
    }

    /// True when a Google Ads click id (gclid, gbraid or wbraid) is set.
    pub fn has_google(&self) -> bool {
        self.gclid.is_some() || self.gbraid.is_some() || self.wbraid.is_some()
    }

    /// True when a Meta click id (fbclid or fbc) is set.
    pub fn has_meta(&self) -> bool {
        self.fbclid.is_some() || self.fbc.is_some()
    }

    fn slots(&self) -> [&Option<String>; 14] {
        [
            &self.gclid,
            &self.gbraid,
            &self.wbraid,
            &self.fbclid,
            &self.fbc,
            &self.fbp,
            &self.ttclid,
            &self.msclkid,
            &self.ttp,
            &self.li_fat_id,
            &self.rdt_cid,
            &self.sc_cid,
            &self.scid,
            &self.epik,
        ]
    }
}

/// One line of a sale; its price is in the event's currency.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Product {
    /// The sender's product id (SKU).
    pub id: String,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Units sold, at least 1.
    #[serde(default = "one")]
    pub quantity: u32,
    /// Unit price in major units, under the same rules as `amount`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "amount_serde::option"
    )]
    pub price: Option<Decimal>,
}

fn one() -> u32 {
    1
}

/// A validated, normalised lead or sale, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Lead or sale (`event` on the wire).
    pub kind: EventKind,
    /// When the action happened, in UTC to the millisecond; the time of receipt when not given.
    pub timestamp: OffsetDateTime,
    /// The sender's id of a lead, its natural dedup key. Leads only.
    pub lead_id: Option<String>,
    /// The invoice or order id of a sale, its natural dedup key. Sales only.
    pub invoice_id: Option<String>,
    /// The sender's name for the action; `"lead"` or `"sale"` when not given.
    pub event_name: String,
    /// The sender's stable user id.
    pub customer_external_id: Option<String>,
    /// Normalised email address.
    pub email: Option<Email>,
    /// Phone number in E.164.
    pub phone: Option<PhoneE164>,
    /// Display name of the person.
    pub name: Option<String>,
    /// Id of a click registered with `POST /v1/clicks`.
    pub click_id: Option<String>,
    /// Click ids the sender captured itself (top-level fields on the wire).
    pub click_ids: ClickIds,
    /// UTM parameters.
    pub utm: Option<Utm>,
    /// Page on which the action happened.
    pub page_url: Option<String>,
    /// Referrer of that page.
    pub referrer: Option<String>,
    /// IP address of the person.
    pub ip: Option<IpAddr>,
    /// User agent of the person's browser.
    pub user_agent: Option<String>,
    /// Consent signals.
    pub consent: Option<Consent>,
    /// Value of the conversion (`amount` and `currency` on the wire); always set on a sale.
    pub value: Option<Money>,
    /// Lines of a sale; empty on a lead.
    pub products: Vec<Product>,
    /// How far ingestion goes before it answers.
    pub mode: Mode,
    /// Free JSON object of the sender, numbers kept digit for digit.
    pub metadata: Option<Map<String, Value>>,
}

impl Event {
    /// The natural dedup key: `invoiceId` of a sale, `leadId` of a lead.
    pub fn natural_key(&self) -> Option<&str> {
        match self.kind {
            EventKind::Lead => self.lead_id.as_deref(),
            EventKind::Sale => self.invoice_id.as_deref(),
        }
    }

    /// Lead or sale.
    pub fn kind(&self) -> EventKind {
        self.kind
    }
}

/// The wire form of [`Event`]: every field at its JSON place. `Cow` lets serialisation borrow
/// from the event while deserialisation owns.
///
/// Unknown fields are ignored on reading, unlike request bodies: a stored event written by a
/// newer version must not break an older reader during a rolling deploy.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventWire<'a> {
    event: EventKind,
    #[serde(with = "rfc3339_millis")]
    timestamp: OffsetDateTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lead_id: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    invoice_id: Option<Cow<'a, str>>,
    event_name: Cow<'a, str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    customer_external_id: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    email: Option<Cow<'a, Email>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    phone: Option<Cow<'a, PhoneE164>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    click_id: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gclid: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gbraid: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    wbraid: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fbclid: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fbc: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fbp: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ttclid: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    msclkid: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ttp: Option<Cow<'a, str>>,
    #[serde(default, rename = "liFatId", skip_serializing_if = "Option::is_none")]
    li_fat_id: Option<Cow<'a, str>>,
    #[serde(default, rename = "rdtCid", skip_serializing_if = "Option::is_none")]
    rdt_cid: Option<Cow<'a, str>>,
    #[serde(default, rename = "scCid", skip_serializing_if = "Option::is_none")]
    sc_cid: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scid: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    epik: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    utm: Option<Cow<'a, Utm>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    page_url: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    referrer: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ip: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user_agent: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    consent: Option<Consent>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "amount_serde::option"
    )]
    amount: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    currency: Option<Currency>,
    #[serde(default, skip_serializing_if = "<[Product]>::is_empty")]
    products: Cow<'a, [Product]>,
    #[serde(default)]
    mode: Mode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    metadata: Option<Cow<'a, Map<String, Value>>>,
}

impl<'a> From<&'a Event> for EventWire<'a> {
    fn from(event: &'a Event) -> Self {
        let borrowed = |field: &'a Option<String>| field.as_deref().map(Cow::Borrowed);
        let ids = &event.click_ids;
        EventWire {
            event: event.kind,
            timestamp: event.timestamp,
            lead_id: borrowed(&event.lead_id),
            invoice_id: borrowed(&event.invoice_id),
            event_name: Cow::Borrowed(&event.event_name),
            customer_external_id: borrowed(&event.customer_external_id),
            email: event.email.as_ref().map(Cow::Borrowed),
            phone: event.phone.as_ref().map(Cow::Borrowed),
            name: borrowed(&event.name),
            click_id: borrowed(&event.click_id),
            gclid: borrowed(&ids.gclid),
            gbraid: borrowed(&ids.gbraid),
            wbraid: borrowed(&ids.wbraid),
            fbclid: borrowed(&ids.fbclid),
            fbc: borrowed(&ids.fbc),
            fbp: borrowed(&ids.fbp),
            ttclid: borrowed(&ids.ttclid),
            msclkid: borrowed(&ids.msclkid),
            ttp: borrowed(&ids.ttp),
            li_fat_id: borrowed(&ids.li_fat_id),
            rdt_cid: borrowed(&ids.rdt_cid),
            sc_cid: borrowed(&ids.sc_cid),
            scid: borrowed(&ids.scid),
            epik: borrowed(&ids.epik),
            utm: event.utm.as_ref().map(Cow::Borrowed),
            page_url: borrowed(&event.page_url),
            referrer: borrowed(&event.referrer),
            ip: event.ip,
            user_agent: borrowed(&event.user_agent),
            consent: event.consent,
            amount: event.value.map(|money| money.amount()),
            currency: event.value.map(|money| money.currency()),
            products: Cow::Borrowed(&event.products),
            mode: event.mode,
            metadata: event.metadata.as_ref().map(Cow::Borrowed),
        }
    }
}

impl TryFrom<EventWire<'_>> for Event {
    type Error = String;

    fn try_from(wire: EventWire<'_>) -> Result<Self, Self::Error> {
        let owned = |field: Option<Cow<'_, str>>| field.map(Cow::into_owned);
        let value = match (wire.amount, wire.currency) {
            (Some(amount), Some(currency)) => {
                Some(Money::new(amount, currency).map_err(|error| format!("amount {error}"))?)
            }
            (None, None) => None,
            (Some(_), None) => return Err("currency is required when amount is given".into()),
            (None, Some(_)) => return Err("amount is required when currency is given".into()),
        };
        Ok(Event {
            kind: wire.event,
            timestamp: wire.timestamp,
            lead_id: owned(wire.lead_id),
            invoice_id: owned(wire.invoice_id),
            event_name: wire.event_name.into_owned(),
            customer_external_id: owned(wire.customer_external_id),
            email: wire.email.map(Cow::into_owned),
            phone: wire.phone.map(Cow::into_owned),
            name: owned(wire.name),
            click_id: owned(wire.click_id),
            click_ids: ClickIds {
                gclid: owned(wire.gclid),
                gbraid: owned(wire.gbraid),
                wbraid: owned(wire.wbraid),
                fbclid: owned(wire.fbclid),
                fbc: owned(wire.fbc),
                fbp: owned(wire.fbp),
                ttclid: owned(wire.ttclid),
                msclkid: owned(wire.msclkid),
                ttp: owned(wire.ttp),
                li_fat_id: owned(wire.li_fat_id),
                rdt_cid: owned(wire.rdt_cid),
                sc_cid: owned(wire.sc_cid),
                scid: owned(wire.scid),
                epik: owned(wire.epik),
            },
            utm: wire.utm.map(Cow::into_owned),
            page_url: owned(wire.page_url),
            referrer: owned(wire.referrer),
            ip: wire.ip,
            user_agent: owned(wire.user_agent),
            consent: wire.consent,
            value,
            products: wire.products.into_owned(),
            mode: wire.mode,
            metadata: wire.metadata.map(Cow::into_owned),
        })
    }
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        EventWire::from(self).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = EventWire::deserialize(deserializer)?;
        Event::try_from(wire).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::str::FromStr;
    use time::macros::datetime;

    fn full_sale() -> Event {
        let usd = Currency::parse("USD").unwrap();
        Event {
            kind: EventKind::Sale,
            timestamp: datetime!(2026-04-10 12:45:10.250 UTC),
            lead_id: None,
            invoice_id: Some("inv_987".into()),
            event_name: "Purchase".into(),
            customer_external_id: Some("user_123".into()),
            email: Some(Email::parse("alex@example.com").unwrap()),
            phone: Some(PhoneE164::parse("+14155550123").unwrap()),
            name: Some("Alex".into()),
            click_id: Some("clk_abc123".into()),
            click_ids: ClickIds {
                gclid: Some("EAIaIQobChMI".into()),
                fbc: Some("fb.1.1554763741205.AbCdEf".into()),
                ..ClickIds::default()
            },
            utm: Some(Utm {
                source: Some("google".into()),
                campaign: Some("spring".into()),
                ..Utm::default()
            }),
            page_url: Some("https://example.com/checkout".into()),
            referrer: Some("https://www.google.com/".into()),
            ip: Some("2001:db8::1".parse().unwrap()),
            user_agent: Some("Mozilla/5.0".into()),
            consent: Some(Consent {
                ad_user_data: Some(ConsentStatus::Granted),
                ad_personalization: Some(ConsentStatus::Denied),
            }),
            value: Some(Money::new(Decimal::from_str("199.0").unwrap(), usd).unwrap()),
            products: vec![Product {
                id: "sku_1".into(),
                name: Some("Plan".into()),
                quantity: 2,
                price: Some(Decimal::from_str("0.1").unwrap()),
            }],
            mode: Mode::Wait,
            metadata: Some(
                json!({"plan": "pro", "ratio": 0.1})
                    .as_object()
                    .unwrap()
                    .clone(),
            ),
        }
    }

    #[test]
    fn event_round_trips_through_its_wire_form() {
        let event = full_sale();
        let json = serde_json::to_string(&event).unwrap();
        let back: Event = serde_json::from_str(&json).unwrap();
        assert_eq!(back, event);
        let via_value: Event =
            serde_json::from_value(serde_json::to_value(&event).unwrap()).unwrap();
        assert_eq!(via_value, event);
    }

    #[test]
    fn wire_form_is_camel_case_with_click_ids_at_the_top_level() {
        let json = serde_json::to_value(full_sale()).unwrap();
        assert_eq!(json["event"], "sale");
        assert_eq!(json["timestamp"], "2026-04-10T12:45:10.250Z");
        assert_eq!(json["invoiceId"], "inv_987");
        assert_eq!(json["customerExternalId"], "user_123");
        assert_eq!(json["gclid"], "EAIaIQobChMI");
        assert_eq!(json["fbc"], "fb.1.1554763741205.AbCdEf");
        assert_eq!(
            json["consent"],
            json!({"adUserData": "granted", "adPersonalization": "denied"})
        );
        assert_eq!(json["currency"], "USD");
        assert_eq!(json["mode"], "wait");
        assert!(json.get("clickIds").is_none());
        assert!(json.get("leadId").is_none());
        assert!(json.get("value").is_none());
    }

    #[test]
    fn amounts_are_written_as_exact_json_numbers() {
        let json = serde_json::to_string(&full_sale()).unwrap();
        assert!(json.contains(r#""amount":199.0"#), "{json}");
        assert!(json.contains(r#""price":0.1"#), "{json}");
        assert!(json.contains(r#""ratio":0.1"#), "{json}");
    }

    #[test]
    fn event_can_be_flattened_into_a_response_with_exact_amounts() {
        #[derive(Serialize)]
        struct Response<'a> {
            id: &'a str,
            #[serde(flatten)]
            event: &'a Event,
        }
        let event = full_sale();
        let json = serde_json::to_string(&Response {
            id: "evt_1",
            event: &event,
        })
        .unwrap();
        assert!(
            json.starts_with(r#"{"id":"evt_1","event":"sale","#),
            "{json}"
        );
        assert!(json.contains(r#""amount":199.0"#), "{json}");
    }

    #[test]
    fn stored_event_with_a_newer_field_still_reads() {
        let mut json = serde_json::to_value(full_sale()).unwrap();
        json["addedLater"] = json!(true);
        assert_eq!(serde_json::from_value::<Event>(json).unwrap(), full_sale());
    }

    #[test]
    fn wire_form_with_amount_but_no_currency_is_refused() {
        let mut json = serde_json::to_value(full_sale()).unwrap();
        json.as_object_mut().unwrap().remove("currency");
        let err = serde_json::from_value::<Event>(json).unwrap_err();
        assert!(err.to_string().contains("currency"), "{err}");
    }

    #[test]
    fn natural_key_is_invoice_id_for_sales_and_lead_id_for_leads() {
        let mut event = full_sale();
        assert_eq!(event.natural_key(), Some("inv_987"));
        event.kind = EventKind::Lead;
        event.invoice_id = None;
        event.lead_id = Some("lead_1".into());
        assert_eq!(event.natural_key(), Some("lead_1"));
        assert_eq!(event.kind(), EventKind::Lead);
    }

    #[test]
    fn click_ids_iterate_in_wire_order() {
        let ids = full_sale().click_ids;
        let names: Vec<_> = ids.iter().map(|(name, _)| name).collect();
        assert_eq!(names, ["gclid", "fbc"]);
        assert_eq!(ids.get("fbc"), Some("fb.1.1554763741205.AbCdEf"));
        assert!(ids.has_google() && ids.has_meta());
        assert!(ClickIds::default().is_empty());
    }
}
