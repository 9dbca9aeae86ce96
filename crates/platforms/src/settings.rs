//! Reading a destination's `config` and `credentials` objects: the helpers every adapter's
//! checks share, each recording every offending field by its path (`config.customerId`,
//! `credentials.accessToken`) rather than stopping at the first, and reporting unknown keys.

use events::FieldError;
use serde_json::{Map, Value};

/// Longest plain string setting (ids, event names, codes).
pub const MAX_STRING: usize = 255;
/// Longest secret (tokens, client secrets, signing secrets).
pub const MAX_SECRET: usize = 4096;

/// A field was bad; its error is already in the [`Errors`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded;

/// Collected field errors.
#[derive(Default)]
pub struct Errors(pub Vec<FieldError>);

impl Errors {
    pub fn push(
        &mut self,
        field: impl Into<String>,
        code: &'static str,
        message: impl Into<String>,
    ) {
        self.0.push(FieldError {
            field: field.into(),
            code,
            message: message.into(),
        });
    }

    pub fn error(&mut self, field: impl Into<String>, error: &events::Error) {
        self.0.push(FieldError::new(field, error));
    }
}

/// The keys of one JSON object being read: remembers which were read, so that the rest can be
/// reported as unknown.
pub struct Obj<'a> {
    map: &'a Map<String, Value>,
    prefix: String,
    read: Vec<&'static str>,
}

impl<'a> Obj<'a> {
    pub fn new(map: &'a Map<String, Value>, prefix: impl Into<String>) -> Self {
        Self {
            map,
            prefix: prefix.into(),
            read: Vec::new(),
        }
    }

    /// The value at `key`; `null` counts as absent.
    pub fn get(&mut self, key: &'static str) -> Option<&'a Value> {
        self.read.push(key);
        self.map.get(key).filter(|v| !v.is_null())
    }

    pub fn path(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.prefix)
        }
    }

    /// Reports every key that was not read.
    pub fn finish(self, errors: &mut Errors) {
        for key in self.map.keys() {
            if !self.read.contains(&key.as_str()) {
                errors.error(self.path(key), &events::Error::UnknownField);
            }
        }
    }
}

pub fn object<'a>(
    errors: &mut Errors,
    field: &str,
    value: &'a Value,
) -> Option<&'a Map<String, Value>> {
    match value.as_object() {
        Some(map) => Some(map),
        None => {
            errors.error(
                field,
                &events::Error::Type {
                    expected: "an object",
                },
            );
            None
        }
    }
}

pub fn string<'a>(
    errors: &mut Errors,
    field: &str,
    value: &'a Value,
    max: usize,
) -> Option<&'a str> {
    let Some(s) = value.as_str() else {
        errors.error(
            field,
            &events::Error::Type {
                expected: "a string",
            },
        );
        return None;
    };
    if s.trim().is_empty() {
        errors.error(field, &events::Error::Empty);
        return None;
    }
    if s.chars().count() > max {
        errors.error(field, &events::Error::TooLong { max });
        return None;
    }
    Some(s)
}

pub fn required<'a>(
    errors: &mut Errors,
    obj: &mut Obj<'a>,
    key: &'static str,
) -> Option<&'a Value> {
    let value = obj.get(key);
    if value.is_none() {
        errors.error(obj.path(key), &events::Error::Required);
    }
    value
}

pub fn required_string(
    errors: &mut Errors,
    obj: &mut Obj<'_>,
    key: &'static str,
    max: usize,
) -> Option<String> {
    let value = required(errors, obj, key)?;
    string(errors, &obj.path(key), value, max).map(str::to_owned)
}

pub fn optional_string(
    errors: &mut Errors,
    obj: &mut Obj<'_>,
    key: &'static str,
    max: usize,
) -> Result<Option<String>, Recorded> {
    match obj.get(key) {
        None => Ok(None),
        Some(value) => string(errors, &obj.path(key), value, max)
            .map(|s| Some(s.to_owned()))
            .ok_or(Recorded),
    }
}

pub fn optional_bool(
    errors: &mut Errors,
    obj: &mut Obj<'_>,
    key: &'static str,
) -> Result<Option<bool>, Recorded> {
    match obj.get(key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => {
            errors.error(
                obj.path(key),
                &events::Error::Type {
                    expected: "a boolean",
                },
            );
            Err(Recorded)
        }
    }
}

pub fn one_of(
    errors: &mut Errors,
    obj: &mut Obj<'_>,
    key: &'static str,
    allowed: &'static str,
) -> Result<Option<String>, Recorded> {
    let Some(value) = optional_string(errors, obj, key, MAX_STRING)? else {
        return Ok(None);
    };
    if allowed.split(", ").any(|a| a == value) {
        Ok(Some(value))
    } else {
        errors.error(obj.path(key), &events::Error::InvalidValue { allowed });
        Err(Recorded)
    }
}

/// A string of digits, or a non-negative JSON integer, as digits.
pub fn digits(errors: &mut Errors, field: &str, value: &Value, what: &str) -> Option<String> {
    let text = match value {
        Value::Number(n) if whole_number(n).is_some() => {
            whole_number(n).map(|v| v.to_string()).unwrap_or_default()
        }
        Value::String(s) => s.trim().to_owned(),
        _ => {
            errors.error(
                field,
                &events::Error::Type {
                    expected: "a string",
                },
            );
            return None;
        }
    };
    if text.is_empty() || text.len() > 32 || !text.bytes().all(|b| b.is_ascii_digit()) {
        errors.push(field, "format", format!("must be {what}, digits only"));
        return None;
    }
    Some(text)
}

/// A JSON number that is a whole non-negative number (`533`, and `533.0` or `5.33e2`, which JSON
/// Schema counts as integers too), as a `u64`.
fn whole_number(n: &serde_json::Number) -> Option<u64> {
    use rust_decimal::prelude::ToPrimitive;
    if let Some(v) = n.as_u64() {
        return Some(v);
    }
    let text = n.to_string();
    let decimal = rust_decimal::Decimal::from_str_exact(&text)
        .or_else(|_| rust_decimal::Decimal::from_scientific(&text))
        .ok()?;
    (decimal.fract().is_zero() && !decimal.is_sign_negative())
        .then(|| decimal.to_u64())
        .flatten()
}

/// Reads an optional `{lead?, sale?}` object of strings (event names per kind), filling in the
/// platform's defaults for the kinds left out.
pub fn per_kind_names(
    errors: &mut Errors,
    obj: &mut Obj<'_>,
    key: &'static str,
    defaults: (&str, &str),
) -> Option<crate::model::PerKind> {
    let names = match obj.get(key) {
        None => Some(crate::model::PerKind::default()),
        Some(value) => {
            let path = obj.path(key);
            object(errors, &path, value).and_then(|map| {
                let mut names = Obj::new(map, path);
                let lead = optional_string(errors, &mut names, "lead", MAX_STRING);
                let sale = optional_string(errors, &mut names, "sale", MAX_STRING);
                names.finish(errors);
                Some(crate::model::PerKind {
                    lead: lead.ok()?,
                    sale: sale.ok()?,
                })
            })
        }
    }?;
    Some(crate::model::PerKind {
        lead: names.lead.or_else(|| Some(defaults.0.to_owned())),
        sale: names.sale.or_else(|| Some(defaults.1.to_owned())),
    })
}

/// A required string matching `valid`, else a `format` error saying `what` it must be.
pub fn required_shaped(
    errors: &mut Errors,
    obj: &mut Obj<'_>,
    key: &'static str,
    what: &str,
    valid: impl Fn(&str) -> bool,
) -> Option<String> {
    let value = required_string(errors, obj, key, MAX_STRING)?;
    let value = value.trim().to_owned();
    if valid(&value) {
        Some(value)
    } else {
        errors.push(obj.path(key), "format", format!("must be {what}"));
        None
    }
}

/// A required secret (token, key) of at most [`MAX_SECRET`] characters.
pub fn required_secret(
    errors: &mut Errors,
    obj: &mut Obj<'_>,
    key: &'static str,
) -> Option<String> {
    required_string(errors, obj, key, MAX_SECRET)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn digits_take_strings_and_whole_numbers_however_json_writes_them() {
        let mut errors = Errors::default();
        for (value, expected) in [
            (json!("  42 "), Some("42")),
            (json!(533), Some("533")),
            (serde_json::from_str::<Value>("533.0").unwrap(), Some("533")),
            (
                serde_json::from_str::<Value>("5.33e2").unwrap(),
                Some("533"),
            ),
            (serde_json::from_str::<Value>("5.5").unwrap(), None),
            (json!(-1), None),
            (json!("12a"), None),
        ] {
            assert_eq!(
                digits(&mut errors, "id", &value, "an id").as_deref(),
                expected,
                "{value}"
            );
        }
        assert_eq!(errors.0.len(), 3);
    }
}
