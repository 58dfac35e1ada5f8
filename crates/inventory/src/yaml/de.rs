//! Typed decoding of a [`Node`] tree, field by field as goyaml.v3 decodes
//! into Go structs: a scalar in a string field is its text (`1.10` stays
//! `1.10`, `y` stays `y`), a boolean field also takes YAML 1.1's
//! `yes`/`no`/`on`/`off`, an integer field takes a float with an integral
//! value, and null leaves the field at its zero value. Every such reading
//! of a scalar as another type is recorded as a [`Coercion`], so that it can
//! be reported; a value that fits no reading is a [`DecodeError`] at the
//! node's position.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};

use super::resolve::{Resolved, yaml11_bool};
use super::{Mark, Node, Value};

/// Decodes `node` as `T`, returning the coercions it needed.
pub fn from_node<'a, T: serde::Deserialize<'a>>(
    node: &'a Node,
) -> Result<(T, Vec<Coercion>), DecodeError> {
    let coercions = RefCell::new(Vec::new());
    let value = T::deserialize(NodeDe {
        node,
        path: &Path::Root,
        coercions: &coercions,
    })?;
    Ok((value, coercions.into_inner()))
}

/// A scalar read as another type than its own, e.g. the number `1.10` as the
/// label value `"1.10"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Coercion {
    pub mark: Mark,
    pub path: String,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    pub mark: Mark,
    pub path: String,
    pub message: String,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for DecodeError {}

impl de::Error for DecodeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DecodeError {
            mark: Mark::UNKNOWN,
            path: String::new(),
            message: msg.to_string(),
        }
    }
}

impl DecodeError {
    /// Places an error raised by a visitor at the innermost node it came
    /// from: the first node to see it sets the position.
    fn at(mut self, node: &Node, path: &Path) -> Self {
        if self.path.is_empty() && !matches!(path, Path::Root) {
            self.path = path.to_string();
        }
        if !self.mark.is_known() {
            self.mark = node.mark;
        }
        self
    }
}

/// Where a node sits in its object, for messages (`spec.ports[0].port`).
enum Path<'a> {
    Root,
    Key(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Root => Ok(()),
            Path::Key(Path::Root, k) => f.write_str(k),
            Path::Key(parent, k) => write!(f, "{parent}.{k}"),
            Path::Index(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

#[derive(Clone, Copy)]
struct NodeDe<'a, 'p> {
    node: &'a Node,
    path: &'p Path<'p>,
    coercions: &'p RefCell<Vec<Coercion>>,
}

impl<'a, 'p> NodeDe<'a, 'p> {
    fn text(&self) -> Option<&'a str> {
        match &self.node.value {
            Value::Scalar(s) => Some(&s.text),
            _ => None,
        }
    }

    fn resolved(&self) -> Option<Resolved> {
        self.node.resolved()
    }

    fn coerced(&self, message: String) {
        self.coercions.borrow_mut().push(Coercion {
            mark: self.node.mark,
            path: self.path.to_string(),
            message,
        });
    }

    fn mismatch(&self, expected: &str) -> DecodeError {
        let found = match self.text() {
            Some(t) if !self.node.is_null() => format!("{} `{}`", self.node.describe(), t),
            _ => self.node.describe().to_string(),
        };
        <DecodeError as de::Error>::custom(format!("expected {expected}, found {found}"))
            .at(self.node, self.path)
    }

    fn fix<T>(&self, r: Result<T, DecodeError>) -> Result<T, DecodeError> {
        r.map_err(|e| e.at(self.node, self.path))
    }

    fn visit_int<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        match self.resolved() {
            Some(Resolved::Int(i)) => self.fix(visitor.visit_i64(i)),
            Some(Resolved::UInt(u)) => self.fix(visitor.visit_u64(u)),
            // goyaml.v3 puts a float with an integral value into an int.
            Some(Resolved::Float(f)) if f.fract() == 0.0 && f.abs() < 9.2e18 => {
                self.fix(visitor.visit_i64(f as i64))
            }
            Some(Resolved::Null) => self.fix(visitor.visit_i64(0)),
            _ => Err(self.mismatch("an integer")),
        }
    }
}

macro_rules! ints {
    ($($name:ident)*) => {$(
        fn $name<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
            self.visit_int(visitor)
        }
    )*};
}

impl<'de, 'a: 'de, 'p> de::Deserializer<'de> for NodeDe<'a, 'p> {
    type Error = DecodeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        let r = match &self.node.value {
            Value::Seq(items) => visitor.visit_seq(Seq::new(items, self)),
            Value::Map(entries) => visitor.visit_map(Map::new(entries, self)),
            Value::Scalar(s) => match self.resolved() {
                Some(Resolved::Null) => visitor.visit_unit(),
                Some(Resolved::Bool(b)) => visitor.visit_bool(b),
                Some(Resolved::Int(i)) => visitor.visit_i64(i),
                Some(Resolved::UInt(u)) => visitor.visit_u64(u),
                Some(Resolved::Float(f)) => visitor.visit_f64(f),
                _ => visitor.visit_borrowed_str(&s.text),
            },
        };
        self.fix(r)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        match self.resolved() {
            Some(Resolved::Bool(b)) => self.fix(visitor.visit_bool(b)),
            Some(Resolved::Null) => self.fix(visitor.visit_bool(false)),
            Some(Resolved::Str) => match self.text().and_then(yaml11_bool) {
                Some(b) => {
                    self.coerced(format!(
                        "`{}` read as the boolean {b} (YAML 1.1 spelling)",
                        self.text().unwrap_or_default()
                    ));
                    self.fix(visitor.visit_bool(b))
                }
                None => Err(self.mismatch("a boolean")),
            },
            _ => Err(self.mismatch("a boolean")),
        }
    }

    ints!(deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_i128
          deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128);

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        match self.resolved() {
            Some(Resolved::Float(f)) => self.fix(visitor.visit_f64(f)),
            Some(Resolved::Int(i)) => self.fix(visitor.visit_f64(i as f64)),
            Some(Resolved::UInt(u)) => self.fix(visitor.visit_f64(u as f64)),
            Some(Resolved::Null) => self.fix(visitor.visit_f64(0.0)),
            _ => Err(self.mismatch("a number")),
        }
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        let Some(text) = self.text() else {
            return Err(self.mismatch("a string"));
        };
        match self.resolved() {
            // null leaves a string field empty, as in Go.
            Some(Resolved::Null) => return self.fix(visitor.visit_borrowed_str("")),
            Some(Resolved::Str) | None => {}
            Some(_) => self.coerced(format!(
                "{} `{text}` read as the string \"{text}\"",
                self.node.describe()
            )),
        }
        self.fix(visitor.visit_borrowed_str(text))
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        if self.node.is_null() {
            self.fix(visitor.visit_none())
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        self.fix(visitor.visit_unit())
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        let r = match &self.node.value {
            Value::Seq(items) => visitor.visit_seq(Seq::new(items, self)),
            _ if self.node.is_null() => visitor.visit_seq(Seq::new(&[], self)),
            _ => return Err(self.mismatch("a sequence")),
        };
        self.fix(r)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        let r = match &self.node.value {
            Value::Map(entries) => visitor.visit_map(Map::new(entries, self)),
            _ if self.node.is_null() => visitor.visit_map(Map::new(&[], self)),
            _ => return Err(self.mismatch("a mapping")),
        };
        self.fix(r)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        match self.text() {
            Some(text) => self.fix(visitor.visit_enum(text.into_deserializer())),
            None => Err(self.mismatch("a string")),
        }
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        visitor.visit_unit()
    }
}

struct Seq<'a, 'p> {
    items: std::iter::Enumerate<std::slice::Iter<'a, Node>>,
    parent: NodeDe<'a, 'p>,
}

impl<'a, 'p> Seq<'a, 'p> {
    fn new(items: &'a [Node], parent: NodeDe<'a, 'p>) -> Self {
        Seq {
            items: items.iter().enumerate(),
            parent,
        }
    }
}

impl<'de, 'a: 'de, 'p> SeqAccess<'de> for Seq<'a, 'p> {
    type Error = DecodeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DecodeError> {
        let Some((i, node)) = self.items.next() else {
            return Ok(None);
        };
        let path = Path::Index(self.parent.path, i);
        let de = NodeDe {
            node,
            path: &path,
            coercions: self.parent.coercions,
        };
        seed.deserialize(de)
            .map(Some)
            .map_err(|e| e.at(node, &path))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct Map<'a, 'p> {
    entries: std::slice::Iter<'a, (Node, Node)>,
    value: Option<&'a (Node, Node)>,
    parent: NodeDe<'a, 'p>,
}

impl<'a, 'p> Map<'a, 'p> {
    fn new(entries: &'a [(Node, Node)], parent: NodeDe<'a, 'p>) -> Self {
        Map {
            entries: entries.iter(),
            value: None,
            parent,
        }
    }
}

impl<'de, 'a: 'de, 'p> MapAccess<'de> for Map<'a, 'p> {
    type Error = DecodeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DecodeError> {
        let Some(entry) = self.entries.next() else {
            return Ok(None);
        };
        self.value = Some(entry);
        let key = &entry.0;
        // Keys are read as text whatever they resolve to (`80: http` in a
        // map of strings has the key "80"), as goyaml does for string keys.
        let text = match &key.value {
            Value::Scalar(s) => s.text.as_str(),
            _ => {
                return Err(
                    <DecodeError as de::Error>::custom("a mapping key is not a scalar")
                        .at(key, self.parent.path),
                );
            }
        };
        let r: Result<K::Value, DecodeError> =
            seed.deserialize(de::value::BorrowedStrDeserializer::new(text));
        r.map(Some).map_err(|e| e.at(key, self.parent.path))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, DecodeError> {
        let Some((key, node)) = self.value.take() else {
            return Err(<DecodeError as de::Error>::custom("value without a key"));
        };
        let key_text = match &key.value {
            Value::Scalar(s) => s.text.as_str(),
            _ => "?",
        };
        let path = Path::Key(self.parent.path, key_text);
        let de = NodeDe {
            node,
            path: &path,
            coercions: self.parent.coercions,
        };
        seed.deserialize(de).map_err(|e| e.at(node, &path))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}
