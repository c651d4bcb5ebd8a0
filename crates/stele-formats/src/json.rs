//! One-pass validation and field capture over serde_json.
//!
//! An event is parsed once with serde_json. Members named by a compiled set of
//! JSON pointers ([`Trie`]) are captured as borrowed scalars; everything else
//! is skipped with [`Skip`], which drives serde_json's `deserialize_any`
//! without building values. Because `Skip` takes the same code paths as
//! `serde_json::Value` (string unescaping and UTF-8 checks, number range
//! checks, the 128-level recursion limit), an event is accepted here exactly
//! when `serde_json::from_slice::<Value>` accepts it and yields an object.
//! The property tests and the fuzz targets check that equivalence.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::error::InvalidReason;

/// A JSON scalar captured at a pointer. Strings borrow from the event unless
/// they contain escapes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Scalar<'a> {
    Str(Cow<'a, str>),
    U64(u64),
    I64(i64),
    F64(f64),
    Bool(bool),
}

impl Scalar<'_> {
    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Scalar::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The scalar as text: strings as they are, numbers in their shortest
    /// decimal form, booleans as `true`/`false`.
    pub(crate) fn to_text(&self) -> String {
        match self {
            Scalar::Str(s) => s.to_string(),
            Scalar::U64(n) => n.to_string(),
            Scalar::I64(n) => n.to_string(),
            Scalar::F64(f) => f.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
}

/// Capture slots. The first block is fixed (Kubernetes and classification);
/// the generic fields follow.
pub(crate) mod field {
    pub(crate) const KIND: usize = 0;
    pub(crate) const API_VERSION: usize = 1;
    pub(crate) const VERB: usize = 2;
    pub(crate) const USERNAME: usize = 3;
    pub(crate) const OBJ_NAMESPACE: usize = 4;
    pub(crate) const OBJ_RESOURCE: usize = 5;
    pub(crate) const OBJ_NAME: usize = 6;
    pub(crate) const OBJ_SUBRESOURCE: usize = 7;
    pub(crate) const RESPONSE_CODE: usize = 8;
    pub(crate) const STAGE_TS: usize = 9;
    pub(crate) const RECEIVED_TS: usize = 10;
    pub(crate) const TIME: usize = 11;
    pub(crate) const ACTOR: usize = 12;
    pub(crate) const ACTION: usize = 13;
    pub(crate) const RESOURCE: usize = 14;
    pub(crate) const OUTCOME: usize = 15;
    pub(crate) const FAILURE_IF_PRESENT: usize = 16;
    pub(crate) const COUNT: usize = 17;
    /// The fixed Kubernetes pointers, in slot order.
    pub(crate) const K8S: [(&str, usize); 11] = [
        ("/kind", KIND),
        ("/apiVersion", API_VERSION),
        ("/verb", VERB),
        ("/user/username", USERNAME),
        ("/objectRef/namespace", OBJ_NAMESPACE),
        ("/objectRef/resource", OBJ_RESOURCE),
        ("/objectRef/name", OBJ_NAME),
        ("/objectRef/subresource", OBJ_SUBRESOURCE),
        ("/responseStatus/code", RESPONSE_CODE),
        ("/stageTimestamp", STAGE_TS),
        ("/requestReceivedTimestamp", RECEIVED_TS),
    ];
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    field: u8,
    /// Position in the field's pointer list: lower wins.
    prio: u16,
}

#[derive(Debug, Default, Clone)]
struct Node {
    /// (reference token, child node, the token as an array index if it is one).
    children: Vec<(Box<str>, u32, Option<usize>)>,
    slots: Vec<Slot>,
}

/// A compiled set of JSON pointers (RFC 6901) as a tree of reference tokens.
#[derive(Debug, Clone)]
pub(crate) struct Trie {
    nodes: Vec<Node>,
}

/// Invalid pointers (not starting with '/') are ignored: they can never match.
fn tokens(pointer: &str) -> Option<Vec<String>> {
    // RFC 6901 §3: a pointer is a sequence of '/'-prefixed reference tokens;
    // "~1" stands for '/' and "~0" for '~' (decoded in that order, §4).
    let rest = pointer.strip_prefix('/')?;
    Some(
        rest.split('/')
            .map(|t| t.replace("~1", "/").replace("~0", "~"))
            .collect(),
    )
}

/// RFC 6901 §4: an array index is "0" or digits without a leading zero.
fn array_index(t: &str) -> Option<usize> {
    let digits = !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if digits && (t == "0" || !t.starts_with('0')) {
        t.parse().ok()
    } else {
        None
    }
}

impl Trie {
    pub(crate) fn new() -> Trie {
        Trie {
            nodes: vec![Node::default()],
        }
    }

    /// Adds `pointer` as a capture into `field` with priority `prio`.
    pub(crate) fn add(&mut self, pointer: &str, field: usize, prio: usize) {
        let Some(toks) = tokens(pointer) else { return };
        let mut node = 0usize;
        for t in toks {
            let found = self.nodes[node]
                .children
                .iter()
                .find(|(k, _, _)| **k == *t)
                .map(|(_, i, _)| *i as usize);
            node = match found {
                Some(i) => i,
                None => {
                    let i = self.nodes.len();
                    self.nodes.push(Node::default());
                    let index = array_index(&t);
                    let i32 = u32::try_from(i).expect("pointer trie fits u32");
                    self.nodes[node]
                        .children
                        .push((t.into_boxed_str(), i32, index));
                    i
                }
            };
        }
        self.nodes[node].slots.push(Slot {
            field: u8::try_from(field).expect("field index fits u8"),
            prio: u16::try_from(prio).unwrap_or(u16::MAX),
        });
    }

    /// The trie with only the Kubernetes/classification pointers.
    pub(crate) fn k8s_only() -> Trie {
        let mut t = Trie::new();
        for (p, f) in field::K8S {
            t.add(p, f, 0);
        }
        t
    }

    /// Only what classification needs: kind, apiVersion, verb.
    pub(crate) fn classify_only() -> Trie {
        let mut t = Trie::new();
        for (p, f) in &field::K8S[..3] {
            t.add(p, *f, 0);
        }
        t
    }
}

/// The captured values of one event.
#[derive(Debug)]
pub(crate) struct Captures<'a> {
    best: [Option<(u16, Scalar<'a>)>; field::COUNT],
}

impl<'a> Captures<'a> {
    fn new() -> Self {
        Captures {
            best: std::array::from_fn(|_| None),
        }
    }

    pub(crate) fn get(&self, field: usize) -> Option<&Scalar<'a>> {
        self.best[field].as_ref().map(|(_, s)| s)
    }

    pub(crate) fn str(&self, field: usize) -> Option<&str> {
        self.get(field).and_then(Scalar::as_str)
    }

    fn put(&mut self, slots: &[Slot], v: &Scalar<'a>) {
        for s in slots {
            let cell = &mut self.best[s.field as usize];
            // `<=`: with duplicate keys the last one wins, as in serde_json::Value.
            if cell.as_ref().is_none_or(|(p, _)| s.prio <= *p) {
                *cell = Some((s.prio, v.clone()));
            }
        }
    }

    /// How the object classifies as Kubernetes audit data.
    pub(crate) fn k8s_class(&self) -> K8sClass {
        let api = match self.get(field::API_VERSION) {
            None => ApiVersion::Absent,
            Some(Scalar::Str(s)) if is_audit_api_version(s) => ApiVersion::Audit,
            Some(_) => ApiVersion::Other,
        };
        match self.get(field::KIND) {
            Some(Scalar::Str(k)) if k == "Event" => match api {
                ApiVersion::Audit => K8sClass::Event,
                // Real exports (e.g. Panther's EKS fixtures) drop apiVersion;
                // a string verb is then required so that an arbitrary
                // {"kind":"Event"} object is not taken for an audit event.
                ApiVersion::Absent if self.str(field::VERB).is_some() => K8sClass::Event,
                ApiVersion::Absent => K8sClass::Compatible,
                ApiVersion::Other => K8sClass::Other,
            },
            Some(Scalar::Str(k)) if k == "EventList" && api != ApiVersion::Other => {
                K8sClass::EventList
            }
            None if api != ApiVersion::Other => K8sClass::Compatible,
            _ => K8sClass::Other,
        }
    }

    /// A short description of kind/apiVersion for error messages.
    pub(crate) fn describe_kind(&self) -> String {
        let show = |s: Option<&Scalar<'_>>| match s {
            None => "absent".to_string(),
            Some(Scalar::Str(s)) => format!("{s:?}"),
            Some(other) => other.to_text(),
        };
        format!(
            "kind is {}, apiVersion is {}",
            show(self.get(field::KIND)),
            show(self.get(field::API_VERSION))
        )
    }
}

/// The apiVersions of the Kubernetes audit API that stele accepts.
pub(crate) fn is_audit_api_version(s: &str) -> bool {
    s == "audit.k8s.io/v1" || s == "audit.k8s.io/v1beta1"
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ApiVersion {
    Absent,
    Audit,
    Other,
}

/// Kubernetes classification of an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum K8sClass {
    /// Standalone audit Event: kind "Event" and an audit apiVersion (or no
    /// apiVersion but a string verb).
    Event,
    /// Not recognisable on its own, but not contradicting one either (kind
    /// absent or "Event", apiVersion absent or audit): EventList items.
    Compatible,
    /// kind "EventList" with an audit (or no) apiVersion.
    EventList,
    /// Anything else.
    Other,
}

/// Parses `bytes` as one JSON object, capturing the pointers of `trie`.
pub(crate) fn parse<'a>(bytes: &'a [u8], trie: &Trie) -> Result<Captures<'a>, InvalidReason> {
    let first = bytes
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    match first.map(|i| bytes[i]) {
        Some(b'{') => {}
        // An empty or whitespace-only event is not well-formed JSON at all.
        None => {
            return Err(InvalidReason::Json {
                message: "EOF while parsing a value at line 1 column 0".into(),
            });
        }
        Some(_) => {
            // Say "not a JSON object" only for valid JSON of another type.
            return Err(match serde_json::from_slice::<Skip>(bytes) {
                Ok(Skip) => InvalidReason::NotObject,
                Err(e) => InvalidReason::Json {
                    message: e.to_string(),
                },
            });
        }
    }
    let mut caps = Captures::new();
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let seed = NodeSeed {
        trie,
        node: 0,
        caps: &mut caps,
    };
    let res = seed.deserialize(&mut de).and_then(|()| de.end());
    match res {
        Ok(()) => Ok(caps),
        Err(e) => Err(InvalidReason::Json {
            message: e.to_string(),
        }),
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
                Some(i) => map.next_value_seed(NodeSeed {
                    trie: self.trie,
                    node: i,
                    caps: &mut *self.caps,
                })?,
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
                node.children
                    .iter()
                    .find(|(_, _, ix)| *ix == Some(index))
                    .map(|(_, i, _)| *i as usize)
            };
            let more = match child {
                Some(i) => seq
                    .next_element_seed(NodeSeed {
                        trie: self.trie,
                        node: i,
                        caps: &mut *self.caps,
                    })?
                    .is_some(),
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
        Ok(self
            .node
            .children
            .iter()
            .find(|(k, _, _)| **k == *v)
            .map(|(_, i, _)| *i as usize))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value_ok(b: &[u8]) -> bool {
        matches!(
            serde_json::from_slice::<serde_json::Value>(b),
            Ok(serde_json::Value::Object(_))
        )
    }

    #[test]
    fn captures_nested_and_arrays() {
        let mut t = Trie::new();
        t.add("/a/b", field::ACTOR, 0);
        t.add("/a", field::ACTOR, 1);
        t.add("/list/1/x", field::ACTION, 0);
        t.add("/e~1f", field::RESOURCE, 0);
        let doc = br#"{"a":{"b":"x\"y"},"list":[{"x":1},{"x":2.5}],"e/f":true}"#;
        let c = parse(doc, &t).unwrap();
        assert_eq!(c.get(field::ACTOR), Some(&Scalar::Str("x\"y".into())));
        assert_eq!(c.get(field::ACTION), Some(&Scalar::F64(2.5)));
        assert_eq!(c.get(field::RESOURCE), Some(&Scalar::Bool(true)));
        // The lower-priority pointer is used when the first is not a scalar.
        let c = parse(br#"{"a":"plain"}"#, &t).unwrap();
        assert_eq!(c.str(field::ACTOR), Some("plain"));
        let c = parse(br#"{"a":{"b":null}}"#, &t).unwrap();
        assert_eq!(c.get(field::ACTOR), None);
    }

    #[test]
    fn acceptance_matches_serde_json_value() {
        let t = Trie::k8s_only();
        let cases: &[&[u8]] = &[
            br#"{"a":"\ud800"}"#,
            br#"{"a":"\ud83d\ude00"}"#,
            br#"{"a":1e400}"#,
            b"{\"a\":\"\xff\"}",
            br#"{"a":1} x"#,
            br#"{"a":1}"#,
            br#" {"a":[1,2,{"b":null}]} "#,
            br#"{"a":01}"#,
            br#"{"a":"tab	here"}"#,
            br#"{"kind":0}"#,
            br#"{"a":1,}"#,
        ];
        for c in cases {
            assert_eq!(
                parse(c, &t).is_ok(),
                value_ok(c),
                "{}",
                String::from_utf8_lossy(c)
            );
        }
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(200), "]".repeat(200));
        assert!(!value_ok(deep.as_bytes()));
        assert!(parse(deep.as_bytes(), &t).is_err());
        let ok = format!("{{\"a\":{}{}}}", "[".repeat(100), "]".repeat(100));
        assert!(parse(ok.as_bytes(), &t).is_ok());
    }

    #[test]
    fn classification() {
        let t = Trie::k8s_only();
        let class = |b: &[u8]| parse(b, &t).unwrap().k8s_class();
        assert_eq!(
            class(br#"{"kind":"Event","apiVersion":"audit.k8s.io/v1"}"#),
            K8sClass::Event
        );
        assert_eq!(
            class(br#"{"apiVersion":"audit.k8s.io/v1beta1","kind":"Event"}"#),
            K8sClass::Event
        );
        assert_eq!(class(br#"{"kind":"Event","verb":"get"}"#), K8sClass::Event);
        assert_eq!(class(br#"{"kind":"Event"}"#), K8sClass::Compatible);
        assert_eq!(
            class(br#"{"kind":"Event","apiVersion":"v1"}"#),
            K8sClass::Other
        );
        assert_eq!(class(br#"{"kind":0}"#), K8sClass::Other);
        assert_eq!(class(br#"{"verb":"get"}"#), K8sClass::Compatible);
        assert_eq!(
            class(br#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1"}"#),
            K8sClass::EventList
        );
        assert_eq!(
            class(br#"{"kind":"Ev\u0065nt","apiVersion":"audit.k8s.io/v1"}"#),
            K8sClass::Event
        );
        assert_eq!(parse(b"[1]", &t).unwrap_err(), InvalidReason::NotObject);
        assert_eq!(parse(b" \"{\" ", &t).unwrap_err(), InvalidReason::NotObject);
        assert!(matches!(
            parse(b"nope", &t).unwrap_err(),
            InvalidReason::Json { .. }
        ));
        assert!(matches!(
            parse(b"  ", &t).unwrap_err(),
            InvalidReason::Json { .. }
        ));
    }
}
