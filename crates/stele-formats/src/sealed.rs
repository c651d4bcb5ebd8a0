//! The sealed-entry envelope (docs/format.md, "Sealed entries"): the stored form of an
//! event whose personal-data fields were encrypted at ingest. This module owns the
//! byte layout only (no cryptography): splitting an envelope into its key id, span
//! table and body, building one, and finding a JSON pointer's value in an event.
//!
//! Layout (big-endian): `SEAL` ‖ version `0x01` ‖ `0x00` ‖ `u16` n ‖ key id (16) ‖
//! n × (`u32` offset, `u32` length) ‖ body. Each span of the body is a JSON string
//! `"stele:sealed:v1:<token>:<box>"` of ASCII characters without escapes, or, for a
//! sealed non-empty array, that string alone in an array.

use crate::EventFormat;
use crate::scan::{array_elements, find_member, skip_ws, value_end};

/// Bit set in a leaf's payload format code when the payload is an envelope.
pub const SEALED_FLAG: u8 = 0x80;
/// Envelope magic.
pub const MAGIC: &[u8; 4] = b"SEAL";
/// Envelope version written and read.
pub const ENVELOPE_VERSION: u8 = 1;
/// Length of a key id, bytes.
pub const KEY_ID_LEN: usize = 16;
/// Bytes before the span table.
pub const FIXED_LEN: usize = 24;
/// Most sealed values in one event (each configured pointer seals at most one value).
pub const MAX_SPANS: usize = 256;
/// Prefix of every sealed value's JSON string, quote included.
pub const VALUE_PREFIX: &str = "\"stele:sealed:v1:";

/// Why bytes are not a valid envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// Too short, wrong magic or version, or a reserved byte set.
    #[error("sealed envelope: bad header")]
    Header,
    /// The span table is empty, too long, unsorted, overlapping or outside the body.
    #[error("sealed envelope: bad span table")]
    Spans,
    /// A listed span is not a sealed-value string.
    #[error("sealed envelope: span {0} is not a sealed value")]
    Value(usize),
}

/// A parsed envelope, borrowing the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// The subject's key id.
    pub key_id: [u8; KEY_ID_LEN],
    /// Sealed spans as `(offset, length)` in `body`, sorted and disjoint.
    pub spans: Vec<(usize, usize)>,
    /// The event with its sealed values replaced.
    pub body: &'a [u8],
}

/// The format of the event a stored format code holds, and whether it is sealed:
/// `0x82` is `(KubernetesAudit, true)`. `None` for unknown codes.
pub fn split_format(code: u8) -> Option<(EventFormat, bool)> {
    let sealed = code & SEALED_FLAG != 0;
    let f = EventFormat::from_code(code & !SEALED_FLAG)?;
    if sealed && !f.is_json() {
        return None;
    }
    Some((f, sealed))
}

/// Whether `s` (a span's bytes) has the shape of a sealed value: a JSON string that
/// starts with [`VALUE_PREFIX`], made of base64url characters and `:`, no escapes;
/// or such a string alone in an array (`["stele:sealed:v1:…"]`), the form of a sealed
/// non-empty array, so that a pointer to its first element still finds a sealed value.
pub fn is_sealed_value(s: &[u8]) -> bool {
    let s = unbracket(s);
    s.len() > VALUE_PREFIX.len() + 1
        && s.starts_with(VALUE_PREFIX.as_bytes())
        && s.ends_with(b"\"")
        && s[VALUE_PREFIX.len()..s.len() - 1].iter().all(|&b| b.is_ascii_alphanumeric() || b"-_:".contains(&b))
}

fn unbracket(s: &[u8]) -> &[u8] {
    match s {
        [b'[', inner @ .., b']'] => inner,
        _ => s,
    }
}

/// The token and the box (both base64url text) of a sealed value's bytes.
pub fn sealed_parts(s: &[u8]) -> Option<(&str, &str)> {
    let s = unbracket(s);
    if !is_sealed_value(s) {
        return None;
    }
    let inner = std::str::from_utf8(&s[VALUE_PREFIX.len()..s.len() - 1]).ok()?;
    let (token, boxed) = inner.split_once(':')?;
    (!token.is_empty() && !boxed.is_empty() && !boxed.contains(':')).then_some((token, boxed))
}

/// The token of a normalized field value that is a sealed value: the string without
/// its quotes (`stele:sealed:v1:TOKEN:BOX`), or its index form (`stele:sealed:v1:TOKEN`,
/// [`index_form`]).
pub fn token_of_field(value: &str) -> Option<&str> {
    let rest = value.strip_prefix(&VALUE_PREFIX[1..])?;
    let token = rest.split_once(':').map_or(rest, |(t, _)| t);
    (!token.is_empty() && token.bytes().all(is_base64url)).then_some(token)
}

/// The form the query index keeps of a normalized field that holds a sealed value
/// (`stele:sealed:v1:TOKEN:BOX`, the string without its quotes): `stele:sealed:v1:TOKEN`,
/// the blind token without the ciphertext, which the index has no use for. `None` for
/// any other value.
pub fn index_form(value: &str) -> Option<&str> {
    // The index form is ASCII, so it ends on a character boundary.
    index_form_bytes(value.as_bytes()).map(|k| &value[..k.len()])
}

/// [`index_form`] of bytes that need not be UTF-8 (a sealed string's text is ASCII).
pub fn index_form_bytes(value: &[u8]) -> Option<&[u8]> {
    let rest = value.strip_prefix(&VALUE_PREFIX.as_bytes()[1..])?;
    let colon = rest.iter().position(|&b| b == b':')?;
    let (token, boxed) = (&rest[..colon], &rest[colon + 1..]);
    let ok = |s: &[u8]| !s.is_empty() && all_base64url(s);
    (ok(token) && ok(boxed)).then(|| &value[..VALUE_PREFIX.len() - 1 + token.len()])
}

/// Replaces every field of `fields` that holds a sealed value by its [`index_form`].
pub fn keep_tokens(fields: &mut crate::Normalized) {
    for f in [
        &mut fields.actor,
        &mut fields.action,
        &mut fields.resource,
        &mut fields.outcome,
        &mut fields.source_ip,
        &mut fields.request_id,
        &mut fields.producer,
    ] {
        if let Some(v) = f
            && let Some(short) = index_form(v)
        {
            let keep = short.len();
            v.truncate(keep);
        }
    }
}

fn is_base64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// Whether every byte of `s` is a base64url character. Without an early exit, so
/// that the check runs on whole vectors of bytes (a sealed value's box is about a
/// hundred characters, checked for every sealed field of every sealed event).
fn all_base64url(s: &[u8]) -> bool {
    s.iter().fold(true, |ok, &b| ok & (b.is_ascii_alphanumeric() | (b == b'-') | (b == b'_')))
}

impl<'a> Envelope<'a> {
    /// Parses an envelope, checking the header, the span table and that every span is
    /// a sealed value.
    ///
    /// # Errors
    /// [`EnvelopeError`] naming what is wrong.
    pub fn parse(payload: &'a [u8]) -> Result<Envelope<'a>, EnvelopeError> {
        if payload.len() < FIXED_LEN || &payload[..4] != MAGIC || payload[4] != ENVELOPE_VERSION || payload[5] != 0 {
            return Err(EnvelopeError::Header);
        }
        let n = usize::from(u16::from_be_bytes([payload[6], payload[7]]));
        if n == 0 || n > MAX_SPANS || payload.len() < FIXED_LEN + 8 * n {
            return Err(EnvelopeError::Spans);
        }
        let key_id: [u8; KEY_ID_LEN] = payload[8..24].try_into().expect("16 bytes");
        let body = &payload[FIXED_LEN + 8 * n..];
        let mut spans = Vec::with_capacity(n);
        let mut end = 0usize;
        for i in 0..n {
            let at = FIXED_LEN + 8 * i;
            let off = u32::from_be_bytes(payload[at..at + 4].try_into().expect("4")) as usize;
            let len = u32::from_be_bytes(payload[at + 4..at + 8].try_into().expect("4")) as usize;
            if off < end || len == 0 || off.checked_add(len).is_none_or(|e| e > body.len()) {
                return Err(EnvelopeError::Spans);
            }
            if !is_sealed_value(&body[off..off + len]) {
                return Err(EnvelopeError::Value(i));
            }
            end = off + len;
            spans.push((off, len));
        }
        Ok(Envelope { key_id, spans, body })
    }

    /// Encodes an envelope.
    ///
    /// # Panics
    /// When the spans are empty, more than [`MAX_SPANS`], unsorted or outside the body
    /// (a caller bug: the sealer builds them from the body it writes).
    pub fn encode(key_id: &[u8; KEY_ID_LEN], spans: &[(usize, usize)], body: &[u8]) -> Vec<u8> {
        assert!(!spans.is_empty() && spans.len() <= MAX_SPANS, "span count out of range");
        assert!(spans.windows(2).all(|w| w[0].0 + w[0].1 <= w[1].0), "spans overlap or are unsorted");
        assert!(spans.last().is_some_and(|(o, l)| o + l <= body.len()), "span outside the body");
        let mut out = Vec::with_capacity(FIXED_LEN + 8 * spans.len() + body.len());
        out.extend_from_slice(MAGIC);
        out.push(ENVELOPE_VERSION);
        out.push(0);
        out.extend_from_slice(&(spans.len() as u16).to_be_bytes());
        out.extend_from_slice(key_id);
        for (o, l) in spans {
            out.extend_from_slice(&u32::try_from(*o).expect("body below 4 GiB").to_be_bytes());
            out.extend_from_slice(&u32::try_from(*l).expect("body below 4 GiB").to_be_bytes());
        }
        out.extend_from_slice(body);
        out
    }
}

/// The body a stored payload's fields are normalized from: the envelope's body for a
/// sealed format code, else the payload itself. `None` when a sealed payload is not a
/// valid envelope.
pub fn stored_body(code: u8, payload: &[u8]) -> Option<&[u8]> {
    if code & SEALED_FLAG == 0 {
        return Some(payload);
    }
    Envelope::parse(payload).ok().map(|e| e.body)
}

/// An RFC 6901 JSON pointer split into its unescaped reference tokens (`~1` is `/`,
/// `~0` is `~`), parsed once for many documents.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Pointer(Vec<String>);

impl Pointer {
    /// Parses a pointer; `None` unless it is empty or starts with `/`.
    pub fn parse(pointer: &str) -> Option<Pointer> {
        if pointer.is_empty() {
            return Some(Pointer(Vec::new()));
        }
        let rest = pointer.strip_prefix('/')?;
        Some(Pointer(rest.split('/').map(|t| t.replace("~1", "/").replace("~0", "~")).collect()))
    }

    /// The unescaped reference tokens; empty for the root pointer `""`.
    pub fn tokens(&self) -> &[String] {
        &self.0
    }
}

/// Per pointer of a list, the byte range of the value it names in a document, if
/// any.
pub type Spans = Vec<Option<(usize, usize)>>;

/// A fingerprint of a list of pointers, to tell whether a [`crate::CaptureRecord`]
/// located the same pointers a caller means ([`crate::CaptureRecord::located`]).
pub fn fingerprint(pointers: &[Pointer]) -> u64 {
    use std::hash::{Hash as _, Hasher as _};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    pointers.hash(&mut h);
    h.finish() | 1
}

/// Descends from the value at `range` of `doc` through `tokens`.
fn descend(doc: &[u8], range: (usize, usize), tokens: &[String]) -> Option<(usize, usize)> {
    descend_checked(doc, range, tokens, &mut false)
}

/// [`descend`], setting `duplicate` when an object on the way has the member it
/// descends into more than once (the first is taken).
fn descend_checked(
    doc: &[u8],
    mut range: (usize, usize),
    tokens: &[String],
    duplicate: &mut bool,
) -> Option<(usize, usize)> {
    for token in tokens {
        let value = &doc[range.0..range.1];
        let (s, e) = match value.first()? {
            b'{' => {
                let found = find_member(value, token).ok()??;
                // The members after it, from their `,` (which `find_member` skips as
                // it skips an object's `{`).
                let comma = skip_ws(value, found.1);
                if value.get(comma) == Some(&b',') {
                    *duplicate |= find_member(&value[comma..], token).is_ok_and(|again| again.is_some());
                }
                found
            }
            b'[' => {
                if token.is_empty() || (token.len() > 1 && token.starts_with('0')) {
                    return None;
                }
                let i: usize = token.parse().ok()?;
                let (elements, _) = array_elements(value).ok()?;
                *elements.get(i)?
            }
            _ => return None,
        };
        range = (range.0 + s, range.0 + e);
    }
    Some(range)
}

/// The byte ranges of the values `pointers` name in the JSON object `doc`, walking
/// the top-level members once (then only the subtrees a pointer enters); `None` for a
/// pointer that names nothing. Same results as [`find_pointer`] for each pointer of a
/// well-formed document; in a damaged one a pointer finds either what
/// [`find_pointer`] finds or nothing.
pub fn find_pointers(doc: &[u8], pointers: &[Pointer]) -> Vec<Option<(usize, usize)>> {
    find_pointers_checked(doc, pointers).0
}

/// [`find_pointers`], and whether a pointer's way is ambiguous: an object on it has
/// the member the pointer descends into more than once. A JSON reader then takes the
/// last (serde_json, RFC 8259 §4 leaves it open) where [`find_pointers`] takes the
/// first, so a caller that must cover every value a reader could see (sealing) has
/// to treat such a document as a whole.
pub fn find_pointers_checked(doc: &[u8], pointers: &[Pointer]) -> (Vec<Option<(usize, usize)>>, bool) {
    let mut duplicate = false;
    let out = walk_pointers(doc, pointers, &mut duplicate);
    (out, duplicate)
}

fn walk_pointers(doc: &[u8], pointers: &[Pointer], duplicate: &mut bool) -> Vec<Option<(usize, usize)>> {
    let start = skip_ws(doc, 0);
    // The root pointer names the whole document, as in `find_pointer`.
    let root = match pointers.iter().any(|p| p.0.is_empty()) {
        true => value_end(doc, start).map(|end| (start, end)),
        false => None,
    };
    let none: Vec<Option<(usize, usize)>> = pointers.iter().map(|p| if p.0.is_empty() { root } else { None }).collect();
    let mut out = none.clone();
    if doc.get(start) != Some(&b'{') {
        return out;
    }
    // The members are walked once; the object's end is where the walk stops, so the
    // document is scanned once, not once for its end and again for its members.
    let obj = &doc[start..];
    let mut seen = vec![false; pointers.len()];
    let mut at = skip_ws(obj, 1);
    if obj.get(at) != Some(&b'}') {
        // With duplicate member names the first wins, as in `find_member`.
        loop {
            if obj.get(at) != Some(&b'"') {
                return none;
            }
            let Some(key_end) = value_end(obj, at) else { return none };
            let key = &obj[at..key_end];
            let decoded: Option<String> =
                if key.contains(&b'\\') { serde_json::from_slice::<String>(key).ok() } else { None };
            let name: &[u8] = match &decoded {
                Some(d) => d.as_bytes(),
                None => &key[1..key.len() - 1],
            };
            at = skip_ws(obj, key_end);
            if obj.get(at) != Some(&b':') {
                return none;
            }
            at = skip_ws(obj, at + 1);
            let Some(vend) = value_end(obj, at).filter(|&e| e > at) else { return none };
            for (i, p) in pointers.iter().enumerate() {
                if !p.0.is_empty() && p.0[0].as_bytes() == name {
                    match seen[i] {
                        true => *duplicate = true,
                        false => {
                            seen[i] = true;
                            out[i] = descend_checked(doc, (start + at, start + vend), &p.0[1..], duplicate);
                        }
                    }
                }
            }
            at = skip_ws(obj, vend);
            match obj.get(at) {
                Some(b',') => at = skip_ws(obj, at + 1),
                Some(b'}') => break,
                _ => return none,
            }
        }
    }
    out
}

/// Byte range of the value an RFC 6901 JSON pointer names in the JSON object `doc`
/// (leading whitespace allowed), or `None` when it names nothing. `""` names the
/// whole document. Array tokens are decimal indexes without leading zeros.
pub fn find_pointer(doc: &[u8], pointer: &str) -> Option<(usize, usize)> {
    let start = skip_ws(doc, 0);
    let range = (start, value_end(doc, start)?);
    descend(doc, range, &Pointer::parse(pointer)?.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_base64url_check_of_a_string_is_that_of_each_byte() {
        for b in 0..=255u8 {
            assert_eq!(all_base64url(&[b]), is_base64url(b), "byte {b}");
            for c in [b'A', b'%', b'_', 0xFF] {
                for at in 0..40 {
                    let mut s = vec![b'a'; 40];
                    s[at] = b;
                    s[39 - at] = c;
                    assert_eq!(all_base64url(&s), is_base64url(b) && is_base64url(c), "{s:?}");
                }
            }
        }
        assert!(all_base64url(b""));
    }

    #[test]
    fn pointers_find_exact_value_bytes() {
        let doc = br#" {"user":{"username":"al\"ice","groups":["a","b"]},"sourceIPs":["10.0.0.1"],"a/b":{"~":7}}"#;
        let at = |p: &str| find_pointer(doc, p).map(|(s, e)| std::str::from_utf8(&doc[s..e]).unwrap());
        assert_eq!(at("/user/username"), Some(r#""al\"ice""#));
        assert_eq!(at("/user/groups/1"), Some(r#""b""#));
        assert_eq!(at("/sourceIPs"), Some(r#"["10.0.0.1"]"#));
        assert_eq!(at("/a~1b/~0"), Some("7"));
        assert_eq!(at("/user/groups/01"), None);
        assert_eq!(at("/missing"), None);
        assert_eq!(at("/user/username/x"), None);
        let all = ["/user/username", "/user/groups/1", "/sourceIPs", "/a~1b/~0", "/user/groups/01", "/missing", ""];
        let parsed: Vec<Pointer> = all.iter().map(|p| Pointer::parse(p).unwrap()).collect();
        let one_pass = find_pointers(doc, &parsed);
        for (p, got) in all.iter().zip(one_pass) {
            assert_eq!(got, find_pointer(doc, p), "{p}");
        }
        // Damaged documents: every truncation, and every byte replaced by one that
        // breaks or changes the structure: a pointer finds what it finds alone, or
        // nothing; never another range.
        let mut damaged: Vec<Vec<u8>> = (0..doc.len()).map(|n| doc[..n].to_vec()).collect();
        for i in 0..doc.len() {
            for b in [b'}', b'"', b',', b':', b' ', b']', b'x'] {
                let mut d = doc.to_vec();
                d[i] = b;
                damaged.push(d);
            }
        }
        damaged.push(b"[1]".to_vec());
        damaged.push(b" \"s\" ".to_vec());
        damaged.push(b"{}".to_vec());
        for d in &damaged {
            let valid = serde_json::from_slice::<serde_json::Value>(d).is_ok();
            for (p, got) in all.iter().zip(find_pointers(d, &parsed)) {
                let alone = find_pointer(d, p);
                assert!(got == alone || (!valid && got.is_none()), "{p} in {:?}", String::from_utf8_lossy(d));
            }
        }
    }

    #[test]
    fn a_duplicate_member_on_a_pointers_way_is_reported() {
        let parsed: Vec<Pointer> =
            ["/user/username", "/sourceIPs"].iter().map(|p| Pointer::parse(p).unwrap()).collect();
        let check = |doc: &str| find_pointers_checked(doc.as_bytes(), &parsed).1;
        assert!(!check(r#"{"user":{"username":"a","uid":"1"},"sourceIPs":["x"],"verb":"get","verb":"list"}"#));
        assert!(check(r#"{"user":{"username":"a"},"user":{"username":"b"}}"#));
        assert!(check(r#"{"user":{"username":"a"},"user":7}"#));
        assert!(check(r#"{"user":{"username":"a" , "username":"b"}}"#));
        assert!(check(r#"{"user":{"username":"a","x":1,"username":"b"}}"#));
        assert!(check(r#"{"sourceIPs":[],"user":{},"sourceIPs":["x"]}"#));
        assert!(!check(r#"{"user":{"uid":"a","uid":"b","username":"c"}}"#));
        // The first occurrence is the one found.
        let doc = br#"{"user":{"username":"a"},"user":{"username":"b"}}"#;
        let (found, _) = find_pointers_checked(doc, &parsed);
        let (s, e) = found[0].unwrap();
        assert_eq!(&doc[s..e], br#""a""#);
    }

    #[test]
    fn the_index_keeps_only_the_token_of_a_sealed_field() {
        assert_eq!(index_form("stele:sealed:v1:dG9r:Ym94LWJveA"), Some("stele:sealed:v1:dG9r"));
        for not_sealed in ["stele:sealed:v1:dG9r", "stele:sealed:v1::Ym94", "stele:sealed:v1:dG9r:", "alice", "x:y:z"] {
            assert_eq!(index_form(not_sealed), None, "{not_sealed}");
        }
        assert_eq!(index_form("stele:sealed:v1:a b:Ym94"), None);
        assert_eq!(token_of_field("stele:sealed:v1:dG9r:Ym94"), Some("dG9r"));
        assert_eq!(token_of_field("stele:sealed:v1:dG9r"), Some("dG9r"));
        assert_eq!(token_of_field("stele:sealed:v1:"), None);
        assert_eq!(token_of_field("stele:sealed:v1:a+b"), None);
        let mut f = crate::Normalized {
            actor: Some("stele:sealed:v1:dG9r:Ym94".into()),
            resource: Some("pods/stele:sealed:v1:dG9r:Ym94".into()),
            source_ip: Some("10.0.0.1".into()),
            ..crate::Normalized::default()
        };
        keep_tokens(&mut f);
        assert_eq!(f.actor.as_deref(), Some("stele:sealed:v1:dG9r"));
        assert_eq!(f.resource.as_deref(), Some("pods/stele:sealed:v1:dG9r:Ym94"));
        assert_eq!(f.source_ip.as_deref(), Some("10.0.0.1"));
    }

    #[test]
    fn envelope_round_trip_and_damage() {
        let body = br#"{"a":"stele:sealed:v1:tok:Ym94"}"#;
        let span = (5, body.len() - 6);
        let env = Envelope::encode(&[7; 16], &[span], body);
        let e = Envelope::parse(&env).unwrap();
        assert_eq!((e.key_id, e.spans.clone(), e.body), ([7; 16], vec![span], &body[..]));
        assert_eq!(sealed_parts(&e.body[span.0..span.0 + span.1]), Some(("tok", "Ym94")));
        // Any cut that loses part of the header, the table or a span is refused.
        for cut in 0..FIXED_LEN + 8 + span.0 + span.1 {
            assert!(Envelope::parse(&env[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad = env.clone();
        bad[FIXED_LEN + 3] += 1; // the span no longer starts at the quote
        assert!(Envelope::parse(&bad).is_err());
    }
}
