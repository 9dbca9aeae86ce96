//! Reading a request body as JSON in one pass, refusing any object that repeats a key.
//!
//! `serde_json` keeps the last of two equal keys without a word, so `{"amount": 1, "amount": 2}`
//! would be stored as a sale of 2 although which value the sender meant is unknowable. Every body
//! of the API is read here instead: the same single pass that builds the [`Value`] notices a key
//! already present in its object (through the map's entry, so the check costs no extra lookup)
//! and records its path, and the body is refused once it has been read to the end, with every
//! repeated key listed.

use std::cell::{Cell, RefCell};
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::map::Entry;
use serde_json::{Map, Number, Value};

use crate::error::{Error, FieldError};

/// Why a body could not be read as JSON.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    /// Not JSON at all (syntax, encoding, trailing characters, nesting too deep).
    #[error("the body is not valid JSON: {0}")]
    Syntax(#[from] serde_json::Error),
    /// JSON, but at least one object repeats a key: every repetition, by path, in body order.
    #[error("the body repeats a key in one object: {}", .0.iter().map(|e| e.field.as_str()).collect::<Vec<_>>().join(", "))]
    DuplicateKeys(Vec<FieldError>),
}

/// Parses `bytes` as one JSON document, refusing objects that repeat a key.
///
/// Numbers keep their exact text (the workspace's `arbitrary_precision`), as with
/// [`serde_json::from_slice`].
///
/// # Errors
/// [`JsonError::Syntax`] for anything that is not JSON; [`JsonError::DuplicateKeys`] naming
/// every repeated key by its path (`amount`, `events[1].amount`, `utm.source`).
pub fn from_slice_strict(bytes: &[u8]) -> Result<Value, JsonError> {
    let log = Repeats::default();
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = Strict(&log).deserialize(&mut de)?;
    de.end()?;
    let repeats = log.paths.into_inner();
    if repeats.is_empty() {
        return Ok(value);
    }
    Err(JsonError::DuplicateKeys(
        repeats
            .iter()
            .map(|path| FieldError::new(render(path), &Error::DuplicateKey))
            .collect(),
    ))
}

/// One step of a path: a key of an object or an index into an array.
#[derive(Debug)]
enum Step {
    Key(String),
    Index(usize),
}

/// The repeated keys found so far, each path leaf first: a parent adds its own step to the
/// paths its child recorded once the child is read, so that nothing is allocated for a path
/// unless a key repeats. The count is kept apart so that the check after every value is one
/// load (measured: the whole parse costs what `serde_json::from_slice` does).
#[derive(Debug, Default)]
struct Repeats {
    paths: RefCell<Vec<Vec<Step>>>,
    count: Cell<usize>,
}

impl Repeats {
    #[inline]
    fn len(&self) -> usize {
        self.count.get()
    }

    fn record(&self, key: &str) {
        self.paths
            .borrow_mut()
            .push(vec![Step::Key(key.to_owned())]);
        self.count.set(self.count.get() + 1);
    }

    /// Adds `step` to every path recorded since `since`.
    #[inline]
    fn under(&self, since: usize, step: impl Fn() -> Step) {
        if self.count.get() > since {
            for path in &mut self.paths.borrow_mut()[since..] {
                path.push(step());
            }
        }
    }
}

/// `events[1].amount`, as the validation errors name fields.
fn render(path: &[Step]) -> String {
    let mut out = String::new();
    for step in path.iter().rev() {
        match step {
            Step::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Step::Index(i) => {
                out.push('[');
                out.push_str(&i.to_string());
                out.push(']');
            }
        }
    }
    out
}

/// The key under which `serde_json` (with `arbitrary_precision`) hands a number to a visitor:
/// a one-entry map holding the number's text. Its own `Value` reads numbers the same way.
const NUMBER_TOKEN: &str = "$serde_json::private::Number";

/// Deserialises any JSON value into a [`Value`], recording repeated keys in its log.
#[derive(Clone, Copy)]
struct Strict<'a>(&'a Repeats);

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        loop {
            let since = self.0.len();
            let Some(item) = seq.next_element_seed(self)? else {
                break;
            };
            let index = items.len();
            self.0.under(since, || Step::Index(index));
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let Some(first) = access.next_key::<String>()? else {
            return Ok(Value::Object(Map::new()));
        };
        if first == NUMBER_TOKEN {
            let text: String = access.next_value()?;
            return text.parse().map(Value::Number).map_err(de::Error::custom);
        }
        let mut map = Map::new();
        let mut key = Some(first);
        while let Some(k) = key {
            match map.entry(k) {
                Entry::Vacant(slot) => {
                    let since = self.0.len();
                    let value = access.next_value_seed(self)?;
                    self.0.under(since, || Step::Key(slot.key().clone()));
                    slot.insert(value);
                }
                Entry::Occupied(slot) => {
                    self.0.record(slot.key());
                    let since = self.0.len();
                    access.next_value_seed(self)?;
                    self.0.under(since, || Step::Key(slot.key().clone()));
                }
            }
            key = access.next_key::<String>()?;
        }
        Ok(Value::Object(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn repeated(body: &str) -> Vec<String> {
        match from_slice_strict(body.as_bytes()) {
            Err(JsonError::DuplicateKeys(errors)) => {
                assert!(errors.iter().all(|e| e.code == "duplicate_key"));
                errors.into_iter().map(|e| e.field).collect()
            }
            other => panic!("expected repeated keys, got {other:?}"),
        }
    }

    #[test]
    fn a_repeated_top_level_key_is_named() {
        assert_eq!(repeated(r#"{"amount": 1, "amount": 2}"#), ["amount"]);
    }

    #[test]
    fn repeated_keys_inside_arrays_and_objects_are_named_by_path() {
        let body = r#"{"events": [{"event": "sale"},
                       {"event": "sale", "utm": {"source": "a", "source": "b"}, "amount": 1, "amount": 1}],
                       "x": {"y": [[{"z": 1, "z": null}]]}}"#;
        assert_eq!(
            repeated(body),
            ["events[1].utm.source", "events[1].amount", "x.y[0][0].z"]
        );
    }

    #[test]
    fn a_key_repeated_three_times_is_named_twice_and_nested_repeats_in_the_repeat_too() {
        assert_eq!(
            repeated(r#"{"a": 1, "a": {"b": 1, "b": 2}, "a": 3}"#),
            ["a", "a.b", "a"]
        );
    }

    #[test]
    fn escaped_spellings_of_one_key_are_the_same_key() {
        assert_eq!(repeated(r#"{"amount": 1, "\u0061mount": 2}"#), ["amount"]);
    }

    #[test]
    fn equal_keys_in_different_objects_are_fine() {
        let value =
            from_slice_strict(br#"{"a": {"id": 1}, "b": {"id": 2}, "c": [{"id": 3}, {"id": 4}]}"#)
                .unwrap();
        assert_eq!(value["c"][1]["id"], 4);
    }

    #[test]
    fn numbers_keep_their_exact_text() {
        let body = br#"{"amount": 199.0, "big": 123456789012345678901234567890, "neg": -0.00010, "e": 1e3}"#;
        let value = from_slice_strict(body).unwrap();
        assert_eq!(value["amount"].to_string(), "199.0");
        assert_eq!(value["big"].to_string(), "123456789012345678901234567890");
        assert_eq!(value["neg"].to_string(), "-0.00010");
        assert_eq!(value, serde_json::from_slice::<Value>(body).unwrap());
    }

    #[test]
    fn syntax_errors_and_trailing_characters_are_syntax_errors() {
        for body in [
            "",
            "{",
            r#"{"a": 1,}"#,
            r#"{"a": 1} x"#,
            "nul",
            r#"{"a": "\ud800"}"#,
        ] {
            assert!(
                matches!(
                    from_slice_strict(body.as_bytes()),
                    Err(JsonError::Syntax(_))
                ),
                "{body:?}"
            );
        }
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| Value::Number(n.into())),
            any::<f64>().prop_map(|f| Number::from_f64(f).map_or(Value::Null, Value::Number)),
            "[ -~]{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map("[a-c]{1,2}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn reads_what_serde_json_reads_when_no_key_repeats(value in json_value()) {
            let text = serde_json::to_vec(&value).unwrap();
            let strict = from_slice_strict(&text).unwrap();
            prop_assert_eq!(&strict, &serde_json::from_slice::<Value>(&text).unwrap());
            prop_assert_eq!(serde_json::to_vec(&strict).unwrap(), text);
        }
    }
}
