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

/// The token of a normalized field value that is a sealed value (the string without
/// its quotes, as the query index holds it).
pub fn token_of_field(value: &str) -> Option<&str> {
    let rest = value.strip_prefix(&VALUE_PREFIX[1..])?;
    rest.split_once(':').map(|(t, _)| t)
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
#[derive(Clone, Debug, PartialEq, Eq)]
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
}

/// Descends from the value at `range` of `doc` through `tokens`.
fn descend(doc: &[u8], mut range: (usize, usize), tokens: &[String]) -> Option<(usize, usize)> {
    for token in tokens {
        let value = &doc[range.0..range.1];
        let (s, e) = match value.first()? {
            b'{' => find_member(value, token).ok()??,
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
/// pointer that names nothing. Same results as [`find_pointer`] for each pointer.
pub fn find_pointers(doc: &[u8], pointers: &[Pointer]) -> Vec<Option<(usize, usize)>> {
    let mut out = vec![None; pointers.len()];
    let start = skip_ws(doc, 0);
    let Some(end) = value_end(doc, start) else { return out };
    let obj = &doc[start..end];
    for (i, p) in pointers.iter().enumerate() {
        if p.0.is_empty() {
            out[i] = Some((start, end));
        }
    }
    if obj.first() != Some(&b'{') {
        return out;
    }
    let mut at = skip_ws(obj, 1);
    if obj.get(at) == Some(&b'}') {
        return out;
    }
    // With duplicate member names the first wins, as in `find_member`.
    while obj.get(at) == Some(&b'"') {
        let Some(key_end) = value_end(obj, at) else { return out };
        let key = &obj[at..key_end];
        let decoded: Option<String> =
            if key.contains(&b'\\') { serde_json::from_slice::<String>(key).ok() } else { None };
        let name: &[u8] = match &decoded {
            Some(d) => d.as_bytes(),
            None => &key[1..key.len() - 1],
        };
        at = skip_ws(obj, key_end);
        if obj.get(at) != Some(&b':') {
            return out;
        }
        at = skip_ws(obj, at + 1);
        let Some(vend) = value_end(obj, at) else { return out };
        for (i, p) in pointers.iter().enumerate() {
            if out[i].is_none() && !p.0.is_empty() && p.0[0].as_bytes() == name {
                out[i] = descend(doc, (start + at, start + vend), &p.0[1..]);
            }
        }
        at = skip_ws(obj, vend);
        match obj.get(at) {
            Some(b',') => at = skip_ws(obj, at + 1),
            _ => break,
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
