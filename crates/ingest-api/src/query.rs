//! Query parameters of the list endpoints, checked like bodies: every bad parameter is listed.

use actix_web::web;
use events::FieldError;

use crate::ids;
use crate::problem::ApiError;
use journal::EventFilter;

/// The default page size.
pub const LIMIT_DEFAULT: i64 = 50;
/// The largest page size.
pub const LIMIT_MAX: i64 = 100;

/// `GET /v1/events` parameters.
#[derive(Debug, Clone)]
pub struct EventQuery(pub EventFilter);

fn error(field: &str, code: &'static str, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.to_owned(),
        code,
        message: message.into(),
    }
}

/// The name/value pairs of a query string, in order.
pub fn pairs(query: &str) -> Result<Vec<(String, String)>, Vec<FieldError>> {
    web::Query::<Vec<(String, String)>>::from_query(query)
        .map(web::Query::into_inner)
        .map_err(|_| vec![error("", "format", "the query string cannot be read")])
}

impl EventQuery {
    /// Reads a query string.
    pub fn parse(query: &str) -> Result<Self, Vec<FieldError>> {
        let pairs = pairs(query)?;
        let mut filter = EventFilter {
            limit: LIMIT_DEFAULT,
            ..EventFilter::default()
        };
        let mut errors: Vec<FieldError> = pairs
            .iter()
            .filter(|(_, value)| value.contains('\0'))
            .map(|(name, _)| {
                error(
                    name,
                    "invalid_characters",
                    "must not contain NUL characters",
                )
            })
            .collect();
        let pairs: Vec<(String, String)> = pairs
            .into_iter()
            .filter(|(_, v)| !v.contains('\0'))
            .collect();
        let mut invoice_id = None;
        let mut lead_id = None;
        for (name, value) in pairs {
            match name.as_str() {
                "event" => match value.as_str() {
                    "lead" => filter.kind = Some("lead"),
                    "sale" => filter.kind = Some("sale"),
                    _ => errors.push(error(&name, "enum", "must be one of: lead, sale")),
                },
                "customerExternalId" => filter.customer_external_id = Some(value),
                "invoiceId" => invoice_id = Some(value),
                "leadId" => lead_id = Some(value),
                "since" => match events::parse_timestamp(&value) {
                    Ok(at) => filter.since = Some(at),
                    Err(_) => errors.push(error(
                        &name,
                        "format",
                        "must be an RFC 3339 time with offset, e.g. 2026-04-10T12:34:56.000Z",
                    )),
                },
                "limit" => match value.parse::<i64>() {
                    Ok(n) if (1..=LIMIT_MAX).contains(&n) => filter.limit = n,
                    _ => errors.push(error(
                        &name,
                        "range",
                        format!("must be an integer from 1 to {LIMIT_MAX}"),
                    )),
                },
                "cursor" => match ids::from_wire(ids::EVENT, &value) {
                    Some(id) => filter.before = Some(id),
                    None => errors.push(error(
                        &name,
                        "format",
                        "must be a nextCursor of a previous page",
                    )),
                },
                _ => errors.push(error(
                    &name,
                    "unknown_field",
                    "is not a parameter of this endpoint",
                )),
            }
        }
        match (invoice_id, lead_id) {
            (Some(_), Some(_)) => errors.push(error(
                "leadId",
                "not_allowed",
                "give invoiceId or leadId, not both",
            )),
            (Some(invoice), None) => {
                if filter.kind == Some("lead") {
                    errors.push(error(
                        "invoiceId",
                        "not_allowed",
                        "sales have invoice ids, not leads",
                    ));
                }
                filter.kind = Some("sale");
                filter.natural_key = Some(invoice);
            }
            (None, Some(lead)) => {
                if filter.kind == Some("sale") {
                    errors.push(error(
                        "leadId",
                        "not_allowed",
                        "leads have lead ids, not sales",
                    ));
                }
                filter.kind = Some("lead");
                filter.natural_key = Some(lead);
            }
            (None, None) => {}
        }
        if errors.is_empty() {
            Ok(Self(filter))
        } else {
            Err(errors)
        }
    }
}

/// Query parameters of an endpoint that takes only the names it knows; the checks of each
/// value collect every error, like body validation.
#[derive(Debug, Clone, Default)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// Reads a query string, refusing names not in `allowed` (422, one error each).
    pub fn parse(query: &str, allowed: &[&str]) -> Result<Self, ApiError> {
        let pairs = pairs(query).map_err(ApiError::Validation)?;
        let unknown: Vec<FieldError> = pairs
            .iter()
            .filter_map(|(name, value)| {
                if !allowed.contains(&name.as_str()) {
                    Some(error(
                        name,
                        "unknown_field",
                        "is not a parameter of this endpoint",
                    ))
                } else if value.contains('\0') {
                    Some(error(
                        name,
                        "invalid_characters",
                        "must not contain NUL characters",
                    ))
                } else {
                    None
                }
            })
            .collect();
        if unknown.is_empty() {
            Ok(Self { pairs })
        } else {
            Err(ApiError::Validation(unknown))
        }
    }

    /// The last value given for `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// `limit`: 1 to [`LIMIT_MAX`], default [`LIMIT_DEFAULT`].
    pub fn limit(&self) -> Result<i64, ApiError> {
        match self.get("limit") {
            None => Ok(LIMIT_DEFAULT),
            Some(raw) => match raw.parse::<i64>() {
                Ok(n) if (1..=LIMIT_MAX).contains(&n) => Ok(n),
                _ => Err(ApiError::Validation(vec![error(
                    "limit",
                    "range",
                    format!("must be an integer from 1 to {LIMIT_MAX}"),
                )])),
            },
        }
    }

    /// An RFC 3339 time parameter, if given.
    pub fn time(&self, name: &str) -> Result<Option<time::OffsetDateTime>, FieldError> {
        self.get(name)
            .map(|raw| {
                events::parse_timestamp(raw).map_err(|_| {
                    error(
                        name,
                        "format",
                        "must be an RFC 3339 time with offset, e.g. 2026-04-10T12:34:56.000Z",
                    )
                })
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bad_parameter_is_listed() {
        let errors = EventQuery::parse("event=refund&limit=0&since=yesterday&cursor=x&colour=red")
            .err()
            .unwrap_or_default();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["event", "limit", "since", "cursor", "colour"]);
    }

    #[test]
    fn an_invoice_id_filters_sales_by_their_natural_key() {
        let q = EventQuery::parse("invoiceId=inv_987&limit=10").map(|q| q.0);
        let q = q.as_ref().ok();
        assert_eq!(q.and_then(|f| f.kind), Some("sale"));
        assert_eq!(q.and_then(|f| f.natural_key.as_deref()), Some("inv_987"));
        assert_eq!(q.map(|f| f.limit), Some(10));
        assert_eq!(q.and_then(|f| f.since), None);
    }
}
