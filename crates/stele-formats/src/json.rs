//! One-pass validation and field capture: the data model (compiled pointer
//! [`Trie`], captured [`Scalar`]s, Kubernetes classification) and [`parse`].
//!
//! [`parse`] runs the hand-written single-pass parser of [`crate::fastjson`];
//! only when it rejects an event does the serde_json implementation of
//! [`crate::json_serde`] run, to produce serde_json's error message (and, were
//! the fast parser ever to reject an event serde_json accepts, its result).
//! Both accept exactly what `serde_json::from_slice::<Value>` accepts as an
//! object; unit tests, property tests and a fuzz target check that the two
//! agree on acceptance and on every captured value.

use std::borrow::Cow;

use crate::error::InvalidReason;
use crate::{fastjson, json_serde};

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
        let mut s = String::new();
        self.write_text(&mut s);
        s
    }

    /// Appends [`Scalar::to_text`] to `out`.
    pub(crate) fn write_text(&self, out: &mut String) {
        use std::fmt::Write;
        let _ = match self {
            Scalar::Str(s) => {
                out.push_str(s);
                Ok(())
            }
            Scalar::U64(n) => write!(out, "{n}"),
            Scalar::I64(n) => write!(out, "{n}"),
            Scalar::F64(f) => write!(out, "{f}"),
            Scalar::Bool(b) => write!(out, "{b}"),
        };
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
    pub(crate) const AUDIT_ID: usize = 17;
    pub(crate) const SOURCE_IP: usize = 18;
    /// The JSON string of a Kubernetes event wrapped in an Azure diagnostic record.
    pub(crate) const AKS_LOG: usize = 19;
    /// Azure diagnostic category (`kube-audit`, `kube-audit-admin`).
    pub(crate) const AKS_CATEGORY: usize = 20;
    /// CloudTrail `eventSource` and `eventName`.
    pub(crate) const CT_SOURCE: usize = 21;
    pub(crate) const CT_NAME: usize = 22;
    /// GCP `protoPayload.methodName`.
    pub(crate) const GCP_METHOD: usize = 23;
    /// OCSF `class_uid` and `metadata.version`.
    pub(crate) const OCSF_CLASS: usize = 24;
    pub(crate) const OCSF_VERSION: usize = 25;
    /// Generic source address, request id and producer pointers.
    pub(crate) const GEN_SOURCE_IP: usize = 26;
    pub(crate) const GEN_REQUEST_ID: usize = 27;
    pub(crate) const GEN_PRODUCER: usize = 28;
    pub(crate) const COUNT: usize = 29;
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
    /// Pointers that recognise the other formats (and wrapped Kubernetes events).
    pub(crate) const CLASSIFY: [(&str, usize); 7] = [
        ("/properties/log", AKS_LOG),
        ("/category", AKS_CATEGORY),
        ("/eventSource", CT_SOURCE),
        ("/eventName", CT_NAME),
        ("/protoPayload/methodName", GCP_METHOD),
        ("/class_uid", OCSF_CLASS),
        ("/metadata/version", OCSF_VERSION),
    ];
    /// Kubernetes pointers needed only for normalization.
    pub(crate) const K8S_EXTRA: [(&str, usize); 2] = [("/auditID", AUDIT_ID), ("/sourceIPs/0", SOURCE_IP)];
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Slot {
    field: u8,
    /// Position in the field's pointer list: lower wins.
    prio: u16,
}

impl Slot {
    pub(crate) fn field(&self) -> usize {
        usize::from(self.field)
    }

    pub(crate) fn prio(&self) -> u16 {
        self.prio
    }
}

#[derive(Debug, Default, Clone)]
pub(crate) struct Node {
    /// (reference token, child node, the token as an array index if it is one).
    pub(crate) children: Vec<(Box<str>, u32, Option<usize>)>,
    pub(crate) slots: Vec<Slot>,
    /// Open-addressing hash index of `children` by key (empty without
    /// children, else a power of two at least twice their number).
    table: Vec<Cell>,
    /// True when some child token is an array index.
    pub(crate) has_index: bool,
    /// Ids of the located pointers ([`Trie::locate`]) that end here.
    pub(crate) located: Vec<u16>,
    /// On the way to a located pointer (the root excepted): a second visit means a
    /// member on that way is named twice.
    pub(crate) on_located_path: bool,
}

/// A cell of [`Node::table`].
#[derive(Debug, Default, Clone, Copy)]
struct Cell {
    /// 1 + position in `children`; 0 for an empty cell.
    pos: u32,
    len: u32,
    words: (u64, u64),
}

/// Two words of an object key that, with its length, identify a key of at
/// most 16 bytes (and tell most longer ones apart): its first 8 bytes
/// (zero-padded) and, when longer than 8, its last 8.
#[inline(always)]
fn key_words(k: &[u8]) -> (u64, u64) {
    let n = k.len();
    let mut first = [0u8; 8];
    first[..n.min(8)].copy_from_slice(&k[..n.min(8)]);
    let last = if n > 8 { u64::from_le_bytes(k[n - 8..].try_into().expect("8 bytes")) } else { 0 };
    (u64::from_le_bytes(first), last)
}

/// [`key_words`] of the key `b[s..e]`, without branching on its length
/// when 8 bytes can be read from `s` and up to `e`.
#[inline(always)]
fn key_words_in(b: &[u8], s: usize, e: usize) -> (u64, u64) {
    match (b.get(s..s + 8), e.checked_sub(8).and_then(|l| b.get(l..e))) {
        (Some(first), Some(last)) => {
            let n = e - s;
            let keep = ((1u128 << (8 * n.min(8))) - 1) as u64;
            let first = u64::from_le_bytes(first.try_into().expect("8 bytes")) & keep;
            let last = u64::from_le_bytes(last.try_into().expect("8 bytes"));
            (first, if n > 8 { last } else { 0 })
        }
        _ => key_words(&b[s..e]),
    }
}

#[inline(always)]
fn key_hash(len: usize, (a, b): (u64, u64)) -> usize {
    let h = (a ^ b.rotate_left(29) ^ ((len as u64) << 56)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (h >> 40) as usize
}

impl Node {
    fn rebuild_table(&mut self) {
        let size = (self.children.len() * 2).next_power_of_two().max(4);
        self.table = vec![Cell::default(); size];
        for (pos, (k, _, _)) in self.children.iter().enumerate() {
            let k = k.as_bytes();
            let words = key_words(k);
            let mut at = key_hash(k.len(), words) & (size - 1);
            while self.table[at].pos != 0 {
                at = (at + 1) & (size - 1);
            }
            self.table[at] = Cell {
                pos: u32::try_from(pos + 1).expect("children fit u32"),
                len: u32::try_from(k.len()).expect("pointer tokens fit u32"),
                words,
            };
        }
        self.has_index = self.children.iter().any(|(_, _, ix)| ix.is_some());
    }

    /// The child node for object key `key` (its bytes, unescaped).
    #[inline]
    pub(crate) fn child(&self, key: &[u8]) -> Option<usize> {
        self.child_in(key, 0, key.len())
    }

    /// The child node for the object key `b[s..e]` (bytes, unescaped).
    #[inline]
    pub(crate) fn child_in(&self, b: &[u8], s: usize, e: usize) -> Option<usize> {
        if self.table.is_empty() {
            return None;
        }
        let key = &b[s..e];
        let mask = self.table.len() - 1;
        let words = key_words_in(b, s, e);
        let mut at = key_hash(key.len(), words) & mask;
        loop {
            let cell = &self.table[at];
            if cell.pos == 0 {
                return None;
            }
            if cell.len as usize == key.len() && cell.words == words {
                let (k, i, _) = &self.children[cell.pos as usize - 1];
                if key.len() <= 16 || k.as_bytes() == key {
                    return Some(*i as usize);
                }
            }
            at = (at + 1) & mask;
        }
    }

    /// The child node for array index `index`.
    #[inline]
    pub(crate) fn child_at(&self, index: usize) -> Option<usize> {
        self.children.iter().find(|(_, _, ix)| *ix == Some(index)).map(|(_, i, _)| *i as usize)
    }

    pub(crate) fn has_children(&self) -> bool {
        !self.children.is_empty()
    }

    pub(crate) fn has_slots(&self) -> bool {
        !self.slots.is_empty()
    }
}

/// A compiled set of JSON pointers (RFC 6901) as a tree of reference tokens.
#[derive(Debug, Clone)]
pub(crate) struct Trie {
    pub(crate) nodes: Vec<Node>,
    /// Number of located pointers ([`Trie::locate`]).
    pub(crate) located: usize,
    /// [`crate::sealed::fingerprint`] of the located pointers, in id order.
    pub(crate) located_fingerprint: u64,
    /// Per located pointer, the nodes on its way (the root excepted).
    pub(crate) located_paths: Vec<Vec<u32>>,
}

/// Invalid pointers (not starting with '/') are ignored: they can never match.
fn tokens(pointer: &str) -> Option<Vec<String>> {
    // RFC 6901 §3: a pointer is a sequence of '/'-prefixed reference tokens;
    // "~1" stands for '/' and "~0" for '~' (decoded in that order, §4).
    let rest = pointer.strip_prefix('/')?;
    Some(rest.split('/').map(|t| t.replace("~1", "/").replace("~0", "~")).collect())
}

/// RFC 6901 §4: an array index is "0" or digits without a leading zero.
fn array_index(t: &str) -> Option<usize> {
    let digits = !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if digits && (t == "0" || !t.starts_with('0')) { t.parse().ok() } else { None }
}

impl Trie {
    pub(crate) fn new() -> Trie {
        Trie { nodes: vec![Node::default()], located: 0, located_fingerprint: 0, located_paths: Vec::new() }
    }

    /// Adds `pointer` as a capture into `field` with priority `prio`.
    pub(crate) fn add(&mut self, pointer: &str, field: usize, prio: usize) {
        let Some(toks) = tokens(pointer) else { return };
        let mut node = 0usize;
        for t in toks {
            let found = self.nodes[node].children.iter().find(|(k, _, _)| **k == *t).map(|(_, i, _)| *i as usize);
            node = match found {
                Some(i) => i,
                None => {
                    let i = self.nodes.len();
                    self.nodes.push(Node::default());
                    let index = array_index(&t);
                    let i32 = u32::try_from(i).expect("pointer trie fits u32");
                    self.nodes[node].children.push((t.into_boxed_str(), i32, index));
                    self.nodes[node].rebuild_table();
                    i
                }
            };
        }
        self.nodes[node].slots.push(Slot {
            field: u8::try_from(field).expect("field index fits u8"),
            prio: u16::try_from(prio).unwrap_or(u16::MAX),
        });
    }

    /// Adds a pointer (its unescaped reference tokens) whose value's byte range the
    /// parse reports as located pointer `id` ([`Located`]).
    pub(crate) fn locate(&mut self, tokens: &[String], id: u16) {
        let mut node = 0usize;
        let mut path = Vec::with_capacity(tokens.len());
        for t in tokens {
            let found = self.nodes[node].children.iter().find(|(k, _, _)| **k == **t).map(|(_, i, _)| *i as usize);
            node = match found {
                Some(i) => i,
                None => {
                    let i = self.nodes.len();
                    self.nodes.push(Node::default());
                    let index = array_index(t);
                    let i32 = u32::try_from(i).expect("pointer trie fits u32");
                    self.nodes[node].children.push((t.clone().into_boxed_str(), i32, index));
                    self.nodes[node].rebuild_table();
                    i
                }
            };
            self.nodes[node].on_located_path = true;
            path.push(u32::try_from(node).expect("pointer trie fits u32"));
        }
        self.nodes[node].located.push(id);
        let id = usize::from(id);
        if self.located_paths.len() <= id {
            self.located_paths.resize(id + 1, Vec::new());
        }
        self.located_paths[id] = path;
        self.located = self.located.max(id + 1);
    }

    /// The trie with only the Kubernetes/classification pointers.
    pub(crate) fn k8s_only() -> Trie {
        let mut t = Trie::new();
        for (p, f) in field::K8S.into_iter().chain(field::K8S_EXTRA).chain(field::CLASSIFY) {
            t.add(p, f, 0);
        }
        t
    }

    /// Only what classification needs: kind, apiVersion, verb.
    pub(crate) fn classify_only() -> Trie {
        let mut t = Trie::new();
        for (p, f) in field::K8S[..3].iter().chain(&field::CLASSIFY) {
            t.add(p, *f, 0);
        }
        t
    }
}

/// Where the located pointers of a trie ([`Trie::locate`]) were found in one
/// event: the byte range of each one's value (the first found; the whole document
/// for the root pointer), and whether a member on the way to one was named twice.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Located {
    pub(crate) spans: Vec<Option<(u32, u32)>>,
    /// Per located pointer: a member on its way was named twice.
    pub(crate) duplicates: Vec<bool>,
    /// The trie's `located_fingerprint`.
    pub(crate) fingerprint: u64,
    /// Visits of each node on a located pointer's way (at most 2 counted).
    pub(crate) visits: Vec<u8>,
}

/// The captured values of one event.
#[derive(Debug)]
pub(crate) struct Captures<'a> {
    best: [Option<(u16, Scalar<'a>)>; field::COUNT],
    /// Filled by the fast parser when the trie has located pointers.
    pub(crate) located: Option<Located>,
}

/// Two parses agree when they captured the same values (where they located
/// pointers is compared separately).
impl PartialEq for Captures<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.best == other.best
    }
}

impl<'a> Captures<'a> {
    pub(crate) fn new() -> Self {
        Captures { best: std::array::from_fn(|_| None), located: None }
    }

    pub(crate) fn get(&self, field: usize) -> Option<&Scalar<'a>> {
        self.best[field].as_ref().map(|(_, s)| s)
    }

    pub(crate) fn str(&self, field: usize) -> Option<&str> {
        self.get(field).and_then(Scalar::as_str)
    }

    /// Every field that holds a value: field, priority, value.
    pub(crate) fn winners(&self) -> impl Iterator<Item = (usize, u16, &Scalar<'a>)> + '_ {
        self.best.iter().enumerate().filter_map(|(f, b)| b.as_ref().map(|(p, s)| (f, *p, s)))
    }

    pub(crate) fn put(&mut self, slots: &[Slot], v: &Scalar<'a>) {
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
            Some(Scalar::Str(k)) if k == "EventList" && api != ApiVersion::Other => K8sClass::EventList,
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
        format!("kind is {}, apiVersion is {}", show(self.get(field::KIND)), show(self.get(field::API_VERSION)))
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
///
/// Accepts exactly what `serde_json::from_slice::<serde_json::Value>`
/// accepts and yields as an object; errors carry serde_json's message.
pub(crate) fn parse<'a>(bytes: &'a [u8], trie: &Trie) -> Result<Captures<'a>, InvalidReason> {
    let fast = fastjson::parse(bytes, trie);
    #[cfg(any(test, feature = "cross-check"))]
    cross_check(bytes, trie, fast.as_ref());
    if let Some(caps) = fast {
        return Ok(caps);
    }
    let slow = json_serde::parse(bytes, trie);
    debug_assert!(
        slow.is_err(),
        "the fast parser rejected an event serde_json accepts: {:?}",
        String::from_utf8_lossy(bytes)
    );
    slow
}

/// Panics unless the serde_json implementation agrees with the fast parser
/// on `bytes`: same acceptance, same captured values.
#[cfg(any(test, feature = "cross-check"))]
fn cross_check(bytes: &[u8], trie: &Trie, fast: Option<&Captures<'_>>) {
    let slow = json_serde::parse(bytes, trie);
    match (fast, &slow) {
        (Some(f), Ok(s)) => {
            assert!(f == s, "captures differ on {:?}:\nfast  {f:?}\nserde {s:?}", String::from_utf8_lossy(bytes))
        }
        (None, Err(_)) => {}
        _ => panic!(
            "fast parser accepts: {}, serde_json accepts: {} on {:?}",
            fast.is_some(),
            slow.is_ok(),
            String::from_utf8_lossy(bytes)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value_ok(b: &[u8]) -> bool {
        matches!(serde_json::from_slice::<serde_json::Value>(b), Ok(serde_json::Value::Object(_)))
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
            assert_eq!(parse(c, &t).is_ok(), value_ok(c), "{}", String::from_utf8_lossy(c));
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
        assert_eq!(class(br#"{"kind":"Event","apiVersion":"audit.k8s.io/v1"}"#), K8sClass::Event);
        assert_eq!(class(br#"{"apiVersion":"audit.k8s.io/v1beta1","kind":"Event"}"#), K8sClass::Event);
        assert_eq!(class(br#"{"kind":"Event","verb":"get"}"#), K8sClass::Event);
        assert_eq!(class(br#"{"kind":"Event"}"#), K8sClass::Compatible);
        assert_eq!(class(br#"{"kind":"Event","apiVersion":"v1"}"#), K8sClass::Other);
        assert_eq!(class(br#"{"kind":0}"#), K8sClass::Other);
        assert_eq!(class(br#"{"verb":"get"}"#), K8sClass::Compatible);
        assert_eq!(class(br#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1"}"#), K8sClass::EventList);
        assert_eq!(class(br#"{"kind":"Ev\u0065nt","apiVersion":"audit.k8s.io/v1"}"#), K8sClass::Event);
        assert_eq!(parse(b"[1]", &t).unwrap_err(), InvalidReason::NotObject);
        assert_eq!(parse(b" \"{\" ", &t).unwrap_err(), InvalidReason::NotObject);
        assert!(matches!(parse(b"nope", &t).unwrap_err(), InvalidReason::Json { .. }));
        assert!(matches!(parse(b"  ", &t).unwrap_err(), InvalidReason::Json { .. }));
    }
}
