//! The serde_json implementation of event parsing: the reference the fast
//! parser ([`crate::fastjson`]) is tested against, and the source of the
//! error messages of rejected events.
//!
//! An event is parsed once with serde_json. Members named by a compiled set
//! of JSON pointers ([`Trie`]) are captured as borrowed scalars; everything
//! else is skipped with [`Skip`], which drives serde_json's `deserialize_any`
//! without building values. Because `Skip` takes the same code paths as
//! `serde_json::Value` (string unescaping and UTF-8 checks, number range
//! checks, the 128-level recursion limit), an event is accepted here exactly
//! when `serde_json::from_slice::<Value>` accepts it and yields an object.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::error::InvalidReason;
use crate::json::{Captures, Node, Scalar, Trie};

/// Parses `bytes` as one JSON object, capturing the pointers of `trie`.
pub(crate) fn parse<'a>(bytes: &'a [u8], trie: &Trie) -> Result<Captures<'a>, InvalidReason> {
    let first = bytes.iter().position(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    match first.map(|i| bytes[i]) {
        Some(b'{') => {}
        // An empty or whitespace-only event is not well-formed JSON at all.
        None => {
            return Err(InvalidReason::Json { message: "EOF while parsing a value at line 1 column 0".into() });
        }
        Some(_) => {
            // Say "not a JSON object" only for valid JSON of another type.
            return Err(match serde_json::from_slice::<Skip>(bytes) {
                Ok(Skip) => InvalidReason::NotObject,
                Err(e) => InvalidReason::Json { message: e.to_string() },
            });
        }
    }
    let mut caps = Captures::new();
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let seed = NodeSeed { trie, node: 0, caps: &mut caps };
    let res = seed.deserialize(&mut de).and_then(|()| de.end());
    match res {
        Ok(()) => Ok(caps),
        Err(e) => Err(InvalidReason::Json { message: e.to_string() }),
    }
}

/// Skips one JSON value with serde_json's full checks, building nothing.
pub(crate) struct Skip;

impl<'de> de::Deserialize<'de> for Skip {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Skip, D::Error> {
        d.deserialize_any(SkipVisitor)
    }
}

struct SkipVisitor;

impl<'de> Visitor<'de> for SkipVisitor {
    type Value = Skip;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_str<E>(self, _: &str) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_unit<E>(self) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Skip, A::Error> {
        while map.next_entry::<Skip, Skip>()?.is_some() {}
        Ok(Skip)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Skip, A::Error> {
        while seq.next_element::<Skip>()?.is_some() {}
        Ok(Skip)
    }
}

struct NodeSeed<'t, 'c, 'a> {
    trie: &'t Trie,
    node: usize,
    caps: &'c mut Captures<'a>,
}

impl<'a> DeserializeSeed<'a> for NodeSeed<'_, '_, 'a> {
    type Value = ();
    fn deserialize<D: Deserializer<'a>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'a> NodeSeed<'_, '_, 'a> {
    fn capture(self, v: Scalar<'a>) {
        let slots = &self.trie.nodes[self.node].slots;
        if !slots.is_empty() {
            self.caps.put(slots, &v);
        }
    }
}

impl<'a> Visitor<'a> for NodeSeed<'_, '_, 'a> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        self.capture(Scalar::Bool(v));
        Ok(())
    }
    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        self.capture(Scalar::I64(v));
        Ok(())
    }
    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        self.capture(Scalar::U64(v));
        Ok(())
    }
    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        self.capture(Scalar::F64(v));
        Ok(())
    }
    fn visit_borrowed_str<E>(self, v: &'a str) -> Result<(), E> {
        self.capture(Scalar::Str(Cow::Borrowed(v)));
        Ok(())
    }
    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        if !self.trie.nodes[self.node].slots.is_empty() {
            self.capture(Scalar::Str(Cow::Owned(v.to_owned())));
        }
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        // null counts as absent.
        Ok(())
    }
    fn visit_map<A: MapAccess<'a>>(self, mut map: A) -> Result<(), A::Error> {
        let node = &self.trie.nodes[self.node];
        if node.children.is_empty() {
            while map.next_entry::<Skip, Skip>()?.is_some() {}
            return Ok(());
        }
        while let Some(child) = map.next_key_seed(KeySeed { node })? {
            match child {
                Some(i) => map.next_value_seed(NodeSeed { trie: self.trie, node: i, caps: &mut *self.caps })?,
                None => {
                    map.next_value::<Skip>()?;
                }
            }
        }
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'a>>(self, mut seq: A) -> Result<(), A::Error> {
        let node = &self.trie.nodes[self.node];
        let mut index = 0usize;
        loop {
            // RFC 6901 §4: in an array, a reference token is a decimal index.
            let child = if node.children.is_empty() {
                None
            } else {
                node.children.iter().find(|(_, _, ix)| *ix == Some(index)).map(|(_, i, _)| *i as usize)
            };
            let more = match child {
                Some(i) => {
                    seq.next_element_seed(NodeSeed { trie: self.trie, node: i, caps: &mut *self.caps })?.is_some()
                }
                None => seq.next_element::<Skip>()?.is_some(),
            };
            if !more {
                return Ok(());
            }
            index += 1;
        }
    }
}

/// Deserializes a map key into the index of the matching child node.
struct KeySeed<'n> {
    node: &'n Node,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Option<usize>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Option<usize>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_str<E>(self, v: &str) -> Result<Option<usize>, E> {
        Ok(self.node.children.iter().find(|(k, _, _)| **k == *v).map(|(_, i, _)| *i as usize))
    }
}
