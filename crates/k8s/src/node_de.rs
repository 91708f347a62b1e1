//! Typed deserialisation straight from the span tree, noting the fields the typed structs
//! ignore. The fast path of [`crate::typed::deserialize`]: it builds no JSON value and needs no
//! serialise-and-compare round trip to find unknown fields, which were a fifth of loading.
//!
//! A field is unknown exactly when the typed struct skips its value (`IgnoredAny`: serde's
//! derive and k8s-openapi's generated code both do so for a key they do not know). Any error
//! sends the caller to the slow path, which reports every problem where it is; so this module
//! only has to agree with it on input without type errors.

use crate::document::FieldPath;
use crate::yaml_tree::{Entry, Node, Value};
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use std::cell::RefCell;
use std::fmt;

/// Deserialises `T` from `node`; the paths of fields `T` has no place for are added to
/// `unknown` (null values are not: the slow path never reported them either).
pub fn from_node<T: de::DeserializeOwned>(
    node: &Node,
    unknown: &mut Vec<FieldPath>,
) -> Result<T, Error> {
    let sink = RefCell::new(std::mem::take(unknown));
    let result = T::deserialize(NodeDeserializer {
        node,
        path: &Path::Root,
        unknown: &sink,
    });
    *unknown = sink.into_inner();
    result
}

/// Why the fast path gave up; its text is not shown (the slow path says what is wrong).
#[derive(Debug)]
pub struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<M: fmt::Display>(message: M) -> Self {
        Self(message.to_string())
    }
}

/// Where a node is, as a chain to its parent: built for free on the way down, turned into a
/// [`FieldPath`] only for an unknown field.
enum Path<'p> {
    Root,
    Key(&'p Path<'p>, &'p str),
    Index(&'p Path<'p>, usize),
}

impl Path<'_> {
    fn to_field_path(&self) -> FieldPath {
        let mut path = match self {
            Path::Root => return FieldPath::root(),
            Path::Key(parent, _) | Path::Index(parent, _) => parent.to_field_path(),
        };
        match self {
            Path::Key(_, key) => path = path.key_of(key),
            Path::Index(_, index) => path = path.index(*index),
            Path::Root => {}
        }
        path
    }
}

struct NodeDeserializer<'a, 'p> {
    node: &'a Node,
    path: &'p Path<'p>,
    unknown: &'p RefCell<Vec<FieldPath>>,
}

impl<'de> de::Deserializer<'de> for NodeDeserializer<'de, '_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match &self.node.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            // As serde_json's value: a non-negative integer is unsigned.
            Value::Int(i) => match u64::try_from(*i) {
                Ok(u) => visitor.visit_u64(u),
                Err(_) => visitor.visit_i64(*i),
            },
            // serde_json has no NaN or infinity: the slow path reads them as null.
            Value::Float(f) if f.is_finite() => visitor.visit_f64(*f),
            Value::Float(_) => visitor.visit_unit(),
            Value::String(s) => visitor.visit_borrowed_str(s),
            Value::Sequence(items) => {
                let mut access = Items {
                    items: items.iter().enumerate(),
                    path: self.path,
                    unknown: self.unknown,
                };
                let value = visitor.visit_seq(&mut access)?;
                match access.items.len() {
                    0 => Ok(value),
                    _ => Err(de::Error::invalid_length(items.len(), &"fewer elements")),
                }
            }
            Value::Mapping(entries) => {
                let mut access = Entries {
                    entries: entries.iter(),
                    value: None,
                    path: self.path,
                    unknown: self.unknown,
                };
                let value = visitor.visit_map(&mut access)?;
                match access.entries.len() {
                    0 => Ok(value),
                    _ => Err(de::Error::invalid_length(entries.len(), &"fewer entries")),
                }
            }
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match &self.node.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match &self.node.value {
            Value::String(s) => {
                let variant = de::value::BorrowedStrDeserializer::<'de, Error>::new(s);
                variant.deserialize_enum(name, variants, visitor)
            }
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if !matches!(self.node.value, Value::Null) {
            self.unknown.borrow_mut().push(self.path.to_field_path());
        }
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct identifier
    }
}

struct Items<'a, 'p, I: Iterator<Item = (usize, &'a Node)>> {
    items: I,
    path: &'p Path<'p>,
    unknown: &'p RefCell<Vec<FieldPath>>,
}

impl<'de, 'p, I> SeqAccess<'de> for Items<'de, 'p, I>
where
    I: Iterator<Item = (usize, &'de Node)> + ExactSizeIterator,
{
    type Error = Error;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, Error> {
        let Some((index, node)) = self.items.next() else {
            return Ok(None);
        };
        let path = Path::Index(self.path, index);
        seed.deserialize(NodeDeserializer {
            node,
            path: &path,
            unknown: self.unknown,
        })
        .map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct Entries<'a, 'p> {
    entries: std::slice::Iter<'a, Entry>,
    value: Option<&'a Entry>,
    path: &'p Path<'p>,
    unknown: &'p RefCell<Vec<FieldPath>>,
}

impl<'de> MapAccess<'de> for Entries<'de, '_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some(entry) = self.entries.next() else {
            return Ok(None);
        };
        self.value = Some(entry);
        let key = de::value::BorrowedStrDeserializer::<'de, Error>::new(&entry.key);
        seed.deserialize(key).map(Some)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, Error> {
        let entry = self
            .value
            .take()
            .ok_or_else(|| <Error as de::Error>::custom("a value asked for before its key"))?;
        let path = Path::Key(self.path, &entry.key);
        seed.deserialize(NodeDeserializer {
            node: &entry.value,
            path: &path,
            unknown: self.unknown,
        })
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}
