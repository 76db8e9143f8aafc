//! The small JSON path syntax of the `rows`, `path`, `next_path` and `cursor_path` options, and
//! reading values out of a response body without losing their text.
//!
//! Syntax: `$` (or the empty string) is the value itself; then keys and indexes, as in
//! `data.items`, `a.b[0].c`, `$.meta["next-page"]`. A key is a run of characters other than `.`
//! and `[`; `["..."]` quotes a key that holds them (a JSON string, so `\"` escapes a quote).
//! A full JSONPath engine (filters, wildcards, recursion) is not needed to name one array and
//! one value per column, so none is pulled in.
//!
//! Values stay [`RawValue`]s (slices of the body) until a column converts them, so numbers keep
//! their exact text: a `numeric` column never sees a binary float.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    Key(String),
    Index(usize),
}

/// A parsed path; empty means the value itself.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct JsonPath {
    pub steps: Vec<Step>,
}

impl JsonPath {
    /// A path of one key (a column's default path: its name).
    pub fn key(name: &str) -> Self {
        JsonPath { steps: vec![Step::Key(name.to_string())] }
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let mut rest = text.strip_prefix('$').unwrap_or(text);
        let mut steps = Vec::new();
        let mut first = true;
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix('[') {
                if r.starts_with('"') {
                    // A quoted key may hold `]` and `.`: find its closing quote, skipping escapes.
                    let bytes = r.as_bytes();
                    let mut i = 1;
                    while i < bytes.len() && bytes[i] != b'"' {
                        i += if bytes[i] == b'\\' { 2 } else { 1 };
                    }
                    let quoted = r.get(..=i).ok_or("a bad quoted key")?;
                    let key: String = serde_json::from_str(quoted).map_err(|_| "a bad quoted key")?;
                    rest = r[i + 1..].strip_prefix(']').ok_or("expected ] after a quoted key")?;
                    steps.push(Step::Key(key));
                } else {
                    let end = r.find(']').ok_or("an unclosed [")?;
                    let index = r[..end].parse::<usize>().map_err(|_| "an index must be a whole number")?;
                    steps.push(Step::Index(index));
                    rest = &r[end + 1..];
                }
            } else {
                let r = match rest.strip_prefix('.') {
                    Some(r) => r,
                    None if first => rest,
                    None => return Err("expected . or [ between steps".into()),
                };
                let end = r.find(['.', '[']).unwrap_or(r.len());
                if end == 0 {
                    return Err("an empty key".into());
                }
                steps.push(Step::Key(r[..end].to_string()));
                rest = &r[end..];
            }
            first = false;
        }
        Ok(JsonPath { steps })
    }

    /// The value at this path, `None` if a step is missing (or steps into a scalar).
    pub fn get<'a>(&self, value: &'a RawValue) -> Result<Option<&'a RawValue>, serde_json::Error> {
        self.get_from(value, 0)
    }

    /// The value at the steps from `start` on.
    pub fn get_from<'a>(&self, value: &'a RawValue, start: usize) -> Result<Option<&'a RawValue>, serde_json::Error> {
        let mut current = value;
        for step in &self.steps[start.min(self.steps.len())..] {
            let next = match step {
                Step::Key(k) => match kind(current) {
                    Kind::Object => Object::parse(current)?.get(k),
                    _ => None,
                },
                Step::Index(i) => match kind(current) {
                    Kind::Array => <Vec<&RawValue>>::deserialize(current)?.get(*i).copied(),
                    _ => None,
                },
            };
            match next {
                Some(n) => current = n,
                None => return Ok(None),
            }
        }
        Ok(Some(current))
    }

    /// The first key, if the path starts with one (what a `fields` parameter names).
    pub fn first_key(&self) -> Option<&str> {
        match self.steps.first() {
            Some(Step::Key(k)) => Some(k),
            _ => None,
        }
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "$")?;
        for step in &self.steps {
            match step {
                Step::Key(k) if !k.is_empty() && !k.contains(['.', '[', ']', '"']) => write!(f, ".{k}")?,
                Step::Key(k) => write!(f, "[{}]", serde_json::to_string(k).map_err(|_| fmt::Error)?)?,
                Step::Index(i) => write!(f, "[{i}]")?,
            }
        }
        Ok(())
    }
}

/// What a raw value is, from its first byte (serde_json trims whitespace around raw values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Null,
    Bool,
    Number,
    String,
    Array,
    Object,
}

pub(crate) fn kind(value: &RawValue) -> Kind {
    match value.get().as_bytes().first() {
        Some(b'n') => Kind::Null,
        Some(b't' | b'f') => Kind::Bool,
        Some(b'"') => Kind::String,
        Some(b'[') => Kind::Array,
        Some(b'{') => Kind::Object,
        _ => Kind::Number,
    }
}

/// A JSON object's members in order, values unparsed. A key given twice keeps its last value,
/// as jsonb does.
#[derive(Debug, Default)]
pub(crate) struct Object<'a> {
    members: Vec<(Cow<'a, str>, &'a RawValue)>,
}

impl<'a> Object<'a> {
    pub fn parse(value: &'a RawValue) -> Result<Self, serde_json::Error> {
        Object::deserialize(value)
    }

    pub fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.members.iter().rev().find(|(k, _)| k == key).map(|(_, v)| *v)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Object<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Object<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Object<'a>, M::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    let value: &'de RawValue = map.next_value()?;
                    members.push((key, value));
                }
                Ok(Object { members })
            }
        }
        deserializer.deserialize_map(V(std::marker::PhantomData))
    }
}

/// The rows of a response: the array at `path`, or the object there as one row; none for a
/// missing value or `null`.
pub(crate) fn rows<'a>(body: &'a RawValue, path: &JsonPath) -> Result<Vec<&'a RawValue>, String> {
    let at = path.get(body).map_err(|e| format!("the response is not JSON: {e}"))?;
    match at.map(|v| (v, kind(v))) {
        None | Some((_, Kind::Null)) => Ok(Vec::new()),
        Some((v, Kind::Array)) => <Vec<&RawValue>>::deserialize(v).map_err(|e| format!("bad rows array: {e}")),
        Some((v, Kind::Object)) => Ok(vec![v]),
        Some(_) => Err(format!("the value at {path} is neither an array nor an object")),
    }
}

/// [`rows`] straight from a body in one pass: the keys on the way are matched, everything else
/// skipped, and the array's elements kept as raw slices. Falls back to [`rows`] when the value at
/// the path is an object (one row).
pub(crate) fn rows_in<'a>(body: &'a [u8], path: &JsonPath) -> Result<Vec<&'a RawValue>, String> {
    use serde::de::DeserializeSeed;
    let mut de = serde_json::Deserializer::from_slice(body);
    let found = Navigate { steps: &path.steps }
        .deserialize(&mut de)
        .and_then(|found| de.end().map(|()| found))
        .map_err(|e| format!("the response is not JSON: {e}"))?;
    match found {
        Found::Rows(rows) => Ok(rows),
        Found::Nothing => Ok(Vec::new()),
        Found::Other => {
            let value: &RawValue =
                serde_json::from_slice(body).map_err(|e| format!("the response is not JSON: {e}"))?;
            rows(value, path)
        }
    }
}

enum Found<'a> {
    Rows(Vec<&'a RawValue>),
    /// Missing, or `null`.
    Nothing,
    /// Something else at the path (an object, or a scalar): [`rows`] decides.
    Other,
}

struct Navigate<'p> {
    steps: &'p [Step],
}

impl<'de, 'p> serde::de::DeserializeSeed<'de> for Navigate<'p> {
    type Value = Found<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Found<'de>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, 'p> Visitor<'de> for Navigate<'p> {
    type Value = Found<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Found<'de>, A::Error> {
        match self.steps.split_first() {
            None => {
                let mut rows = Vec::with_capacity(seq.size_hint().unwrap_or(64));
                while let Some(row) = seq.next_element::<&'de RawValue>()? {
                    rows.push(row);
                }
                Ok(Found::Rows(rows))
            }
            Some((Step::Index(wanted), rest)) => {
                let mut found = Found::Nothing;
                let mut i = 0;
                loop {
                    if i == *wanted {
                        match seq.next_element_seed(Navigate { steps: rest })? {
                            Some(f) => found = f,
                            None => break,
                        }
                    } else if seq.next_element::<serde::de::IgnoredAny>()?.is_none() {
                        break;
                    }
                    i += 1;
                }
                Ok(found)
            }
            Some((Step::Key(_), _)) => {
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(Found::Nothing)
            }
        }
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Found<'de>, M::Error> {
        let Some((Step::Key(wanted), rest)) = self.steps.split_first() else {
            while map.next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?.is_some() {}
            return Ok(if self.steps.is_empty() { Found::Other } else { Found::Nothing });
        };
        // The last occurrence of a key wins, as in [`Object::get`].
        let mut found = Found::Nothing;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if key == wanted.as_str() {
                found = map.next_value_seed(Navigate { steps: rest })?;
            } else {
                map.next_value::<serde::de::IgnoredAny>()?;
            }
        }
        Ok(found)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Found<'de>, E> {
        Ok(Found::Nothing)
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Found<'de>, E> {
        Ok(self.scalar())
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Found<'de>, E> {
        Ok(self.scalar())
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Found<'de>, E> {
        Ok(self.scalar())
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Found<'de>, E> {
        Ok(self.scalar())
    }

    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Found<'de>, E> {
        Ok(self.scalar())
    }
}

impl Navigate<'_> {
    /// A scalar where the path ends is an error [`rows`] reports; one on the way means missing.
    fn scalar<'a>(&self) -> Found<'a> {
        if self.steps.is_empty() { Found::Other } else { Found::Nothing }
    }
}

/// A string value's text (unescaped), or a number's text; `None` for anything else.
pub(crate) fn scalar_text(value: &RawValue) -> Option<Cow<'_, str>> {
    match kind(value) {
        Kind::String => serde_json::from_str::<Cow<'_, str>>(value.get()).ok(),
        Kind::Number => Some(Cow::Borrowed(value.get())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_string()).expect("json")
    }

    #[test]
    fn paths_parse_keys_indexes_and_quoted_keys() {
        let p = JsonPath::parse("data.items").expect("ok");
        assert_eq!(p.steps, vec![Step::Key("data".into()), Step::Key("items".into())]);
        let p = JsonPath::parse("$.a.b[0].c").expect("ok");
        assert_eq!(p.steps.len(), 4);
        assert_eq!(p.to_string(), "$.a.b[0].c");
        let p = JsonPath::parse("meta[\"next.page\"]").expect("ok");
        assert_eq!(p.steps, vec![Step::Key("meta".into()), Step::Key("next.page".into())]);
        assert_eq!(JsonPath::parse("$").expect("root").steps, vec![]);
        assert_eq!(JsonPath::parse("").expect("root").steps, vec![]);
        assert!(JsonPath::parse("a..b").is_err());
        assert!(JsonPath::parse("a[x]").is_err());
        assert!(JsonPath::parse("a[1").is_err());
    }

    #[test]
    fn values_are_found_with_their_exact_text() {
        let body = raw(r#"{"data": {"items": [{"n": 12345678901234567890.123456789}], "k": "v\"q"}}"#);
        let item = JsonPath::parse("data.items[0].n").expect("ok").get(&body).expect("json").expect("found");
        assert_eq!(item.get(), "12345678901234567890.123456789");
        let k = JsonPath::parse("data.k").expect("ok").get(&body).expect("json").expect("found");
        assert_eq!(scalar_text(k).as_deref(), Some("v\"q"));
        assert!(JsonPath::parse("data.missing").expect("ok").get(&body).expect("json").is_none());
        assert!(JsonPath::parse("data.k.deeper").expect("ok").get(&body).expect("json").is_none());
        assert_eq!(rows(&body, &JsonPath::parse("data.items").expect("ok")).expect("rows").len(), 1);
        assert_eq!(rows(&body, &JsonPath::parse("data").expect("ok")).expect("one row").len(), 1);
        assert!(rows(&body, &JsonPath::parse("nothing").expect("ok")).expect("none").is_empty());
        assert!(rows(&body, &JsonPath::parse("data.k").expect("ok")).is_err());
        // The one-pass reader agrees with the other.
        for path in ["data.items", "data", "nothing", "data.items[0]", "data.items[3]", "$"] {
            let p = JsonPath::parse(path).expect("ok");
            let a: Vec<&str> = rows(&body, &p).unwrap_or_default().iter().map(|r| r.get()).collect();
            let b: Vec<&str> = rows_in(body.get().as_bytes(), &p).unwrap_or_default().iter().map(|r| r.get()).collect();
            assert_eq!(a, b, "{path}");
        }
        assert!(rows_in(b"{\"data\": {\"k\": 1}} x", &JsonPath::parse("data").expect("ok")).is_err());
        assert!(rows_in(b"[1, 2", &JsonPath::default()).is_err());
        assert_eq!(rows_in(b" [ {\"a\": 1} , 2 ] ", &JsonPath::default()).expect("rows").len(), 2);
    }
}
