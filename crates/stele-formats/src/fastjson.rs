//! A hand-written, single-pass JSON validator that captures the values of a
//! pointer [`Trie`] on the way.
//!
//! It accepts exactly the JSON texts that
//! `serde_json::from_slice::<serde_json::Value>` accepts and yields as an
//! object, which is RFC 8259 with these restrictions:
//! - UTF-8 only: the grammar admits bytes outside the ASCII range only inside
//!   strings, and when the string scanner saw any, the whole event is
//!   checked once with `str::from_utf8`;
//! - the top-level value is an object (surrounding whitespace allowed);
//! - at most [`MAX_DEPTH`] (127) arrays and objects open at once, counting
//!   the top-level object: serde_json's recursion limit of 128;
//! - `\u` escapes of UTF-16 surrogates must form a pair (a high surrogate
//!   directly followed by an escaped low one); a lone surrogate is rejected,
//!   as serde_json does for strings, although the RFC grammar allows it;
//! - numbers must fit an f64: a number with an exponent, or with more than
//!   300 integer digits, is range-checked by serde_json itself, so that the
//!   limit is serde_json's to the last digit. Shorter numbers cannot
//!   overflow and are only checked against the grammar.
//!
//! Structure is scanned byte by byte (whitespace is rare in events), strings
//! eight bytes at a time (a word-at-a-time search for `"`, `\` and control
//! characters). Subtrees that hold no pointer are skipped by an iterative
//! skipper that keeps the open containers in a bit stack. Captured strings
//! borrow from the event unless they hold escapes; captured numbers and
//! escaped strings and keys are decoded by serde_json, so captured values
//! are those of the serde_json implementation ([`crate::json_serde`]).
//!
//! The parser reports only accept or reject; [`crate::json::parse`] asks
//! serde_json for the error message of a rejected event.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, Visitor};

use crate::json::{Captures, Scalar, Trie};

/// Arrays and objects that may be open at once, the top-level object
/// included (serde_json's recursion limit of 128 allows 127).
pub(crate) const MAX_DEPTH: u32 = 127;

/// Integer digits above which a number without exponent may overflow f64
/// (10^308 < f64::MAX < 10^309), so that serde_json checks its range.
const MAX_PLAIN_DIGITS: usize = 300;

/// The event is not acceptable (why is left to serde_json).
#[derive(Debug)]
struct Reject;

type R<T> = Result<T, Reject>;

/// Validates `bytes` as one JSON object and captures the pointers of `trie`;
/// `None` when it is not acceptable.
pub(crate) fn parse<'a>(bytes: &'a [u8], trie: &Trie) -> Option<Captures<'a>> {
    let mut caps = Captures::new();
    if trie.located > 0 {
        caps.located = Some(crate::json::Located {
            spans: vec![None; trie.located],
            duplicates: Vec::new(),
            fingerprint: trie.located_fingerprint,
            visits: vec![0; trie.nodes.len()],
        });
    }
    let mut p = Parser { b: bytes, high: 0, i: 0, depth: 0, trie, caps };
    p.document().ok()?;
    let mut caps = p.caps;
    if let Some(l) = &mut caps.located {
        let visits = &l.visits;
        l.duplicates = trie.located_paths.iter().map(|path| path.iter().any(|&n| visits[n as usize] > 1)).collect();
    }
    Some(caps)
}

/// Validates `bytes` as one JSON object, capturing nothing.
#[cfg(test)]
pub(crate) fn validate(bytes: &[u8]) -> bool {
    parse(bytes, &Trie::new()).is_some()
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// High bit set in each byte of `w` that is `"`, `\` or below 0x20. Only the
/// lowest set bit is exact (borrows may flag later bytes too), which is all
/// the string scanner uses.
#[inline(always)]
fn string_specials(w: u64) -> u64 {
    let quote = w ^ (LO * u64::from(b'"'));
    let backslash = w ^ (LO * u64::from(b'\\'));
    let zero = |v: u64| v.wrapping_sub(LO) & !v;
    let control = w.wrapping_sub(LO * 0x20) & !w;
    (zero(quote) | zero(backslash) | control) & HI
}

#[inline(always)]
fn is_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r')
}

#[inline(always)]
fn hex(c: u8) -> Option<u16> {
    match c {
        b'0'..=b'9' => Some(u16::from(c - b'0')),
        b'a'..=b'f' => Some(u16::from(c - b'a' + 10)),
        b'A'..=b'F' => Some(u16::from(c - b'A' + 10)),
        _ => None,
    }
}

struct Parser<'a, 't> {
    b: &'a [u8],
    /// The OR of every word (and byte) the string scanner read: when its
    /// high bits are clear, the event is ASCII and needs no UTF-8 check.
    high: u64,
    i: usize,
    /// Arrays and objects open at `i`.
    depth: u32,
    trie: &'t Trie,
    caps: Captures<'a>,
}

impl<'a> Parser<'a, '_> {
    /// The byte at `i`, or 0 at the end (a 0 byte is never valid where
    /// bytes are peeked, which is outside strings).
    #[inline(always)]
    fn peek(&self) -> u8 {
        self.b.get(self.i).copied().unwrap_or(0)
    }

    #[inline(always)]
    fn ws(&mut self) {
        while let Some(&c) = self.b.get(self.i) {
            if c > b' ' || !is_ws(c) {
                break;
            }
            self.i += 1;
        }
    }

    /// Enters an array or object (at its opening byte).
    #[inline(always)]
    fn open(&mut self) -> R<()> {
        self.depth += 1;
        self.i += 1;
        if self.depth > MAX_DEPTH {
            return Err(Reject);
        }
        Ok(())
    }

    fn document(&mut self) -> R<()> {
        self.ws();
        if self.peek() != b'{' {
            return Err(Reject);
        }
        let start = self.i;
        self.object(0)?;
        self.located(0, start);
        self.ws();
        if self.i != self.b.len() {
            return Err(Reject);
        }
        // Outside strings only ASCII bytes were accepted, and every byte of
        // every string went into `high`.
        if self.high & HI != 0 && std::str::from_utf8(self.b).is_err() {
            return Err(Reject);
        }
        Ok(())
    }

    /// Records the value of node `node` that started at `start` and ended at `i`,
    /// for the pointers located there (the first value found wins).
    #[inline]
    fn located(&mut self, node: usize, start: usize) {
        let ids = &self.trie.nodes[node].located;
        if ids.is_empty() {
            return;
        }
        if let Some(l) = &mut self.caps.located {
            for &id in ids {
                let span = &mut l.spans[usize::from(id)];
                if span.is_none() {
                    // Events are far below 4 GiB (the reader's limits).
                    *span = Some((start as u32, self.i as u32));
                }
            }
        }
    }

    /// A value at trie node `node` (`i` at its first byte).
    fn value(&mut self, node: usize) -> R<()> {
        let n = &self.trie.nodes[node];
        if n.on_located_path
            && let Some(l) = &mut self.caps.located
        {
            let v = &mut l.visits[node];
            *v = v.saturating_add(1).min(2);
        }
        let start = self.i;
        self.value_at(node)?;
        self.located(node, start);
        Ok(())
    }

    fn value_at(&mut self, node: usize) -> R<()> {
        let trie = self.trie;
        let n = &trie.nodes[node];
        match self.peek() {
            b'"' => {
                let (s, e, escaped) = self.string()?;
                if n.has_slots() {
                    let v = if escaped {
                        Cow::Owned(unescape(&self.b[s - 1..=e])?)
                    } else {
                        Cow::Borrowed(std::str::from_utf8(&self.b[s..e]).map_err(|_| Reject)?)
                    };
                    self.caps.put(&n.slots, &Scalar::Str(v));
                }
                Ok(())
            }
            b'{' if n.has_children() => self.object(node),
            b'[' if n.has_index => self.array(node),
            b'{' | b'[' => self.skip_value(),
            b't' => self.literal(b"true", n, Some(Scalar::Bool(true))),
            b'f' => self.literal(b"false", n, Some(Scalar::Bool(false))),
            b'n' => self.literal(b"null", n, None),
            b'-' | b'0'..=b'9' => {
                let s = self.i;
                self.number()?;
                if n.has_slots() {
                    let v = number_scalar(&self.b[s..self.i])?;
                    self.caps.put(&n.slots, &v);
                }
                Ok(())
            }
            _ => Err(Reject),
        }
    }

    #[inline]
    fn literal(&mut self, word: &[u8], n: &crate::json::Node, v: Option<Scalar<'a>>) -> R<()> {
        self.skip_literal(word)?;
        if let Some(v) = v
            && n.has_slots()
        {
            self.caps.put(&n.slots, &v);
        }
        Ok(())
    }

    #[inline(always)]
    fn skip_literal(&mut self, word: &[u8]) -> R<()> {
        if self.b.get(self.i..self.i + word.len()) == Some(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(Reject)
        }
    }

    /// An object whose node has children (`i` at `{`).
    fn object(&mut self, node: usize) -> R<()> {
        let trie = self.trie;
        let n = &trie.nodes[node];
        self.open()?;
        self.ws();
        if self.peek() == b'}' {
            self.i += 1;
            self.depth -= 1;
            return Ok(());
        }
        loop {
            if self.peek() != b'"' {
                return Err(Reject);
            }
            let (s, e, escaped) = self.string()?;
            let child =
                if escaped { n.child(unescape(&self.b[s - 1..=e])?.as_bytes()) } else { n.child_in(self.b, s, e) };
            self.ws();
            if self.peek() != b':' {
                return Err(Reject);
            }
            self.i += 1;
            self.ws();
            match child {
                Some(c) => self.value(c)?,
                None => self.skip_value()?,
            }
            self.ws();
            match self.peek() {
                b',' => {
                    self.i += 1;
                    self.ws();
                }
                b'}' => {
                    self.i += 1;
                    self.depth -= 1;
                    return Ok(());
                }
                _ => return Err(Reject),
            }
        }
    }

    /// An array whose node has index children (`i` at `[`).
    fn array(&mut self, node: usize) -> R<()> {
        let trie = self.trie;
        let n = &trie.nodes[node];
        self.open()?;
        self.ws();
        if self.peek() == b']' {
            self.i += 1;
            self.depth -= 1;
            return Ok(());
        }
        let mut index = 0usize;
        loop {
            match n.child_at(index) {
                Some(c) => self.value(c)?,
                None => self.skip_value()?,
            }
            self.ws();
            match self.peek() {
                b',' => {
                    self.i += 1;
                    self.ws();
                }
                b']' => {
                    self.i += 1;
                    self.depth -= 1;
                    return Ok(());
                }
                _ => return Err(Reject),
            }
            index += 1;
        }
    }

    /// After `{` or `,` in an object being skipped: a key, `:` and the
    /// whitespace before the value.
    #[inline(always)]
    fn key_colon(&mut self) -> R<()> {
        if self.peek() != b'"' {
            return Err(Reject);
        }
        self.string()?;
        self.ws();
        if self.peek() != b':' {
            return Err(Reject);
        }
        self.i += 1;
        self.ws();
        Ok(())
    }

    /// Validates and skips one value (`i` at its first byte), iteratively.
    fn skip_value(&mut self) -> R<()> {
        let base = self.depth;
        // Bit k: the k-th innermost open container is an object.
        let mut objects: u128 = 0;
        loop {
            // A value is expected at `i`.
            match self.peek() {
                b'"' => {
                    self.string()?;
                }
                b'{' => {
                    self.open()?;
                    self.ws();
                    if self.peek() == b'}' {
                        self.i += 1;
                        self.depth -= 1;
                    } else {
                        objects = (objects << 1) | 1;
                        self.key_colon()?;
                        continue;
                    }
                }
                b'[' => {
                    self.open()?;
                    self.ws();
                    if self.peek() == b']' {
                        self.i += 1;
                        self.depth -= 1;
                    } else {
                        objects <<= 1;
                        continue;
                    }
                }
                b't' => self.skip_literal(b"true")?,
                b'f' => self.skip_literal(b"false")?,
                b'n' => self.skip_literal(b"null")?,
                b'-' | b'0'..=b'9' => self.number()?,
                _ => return Err(Reject),
            }
            // A value ended: close containers until one goes on.
            loop {
                if self.depth == base {
                    return Ok(());
                }
                self.ws();
                let in_object = objects & 1 == 1;
                match self.peek() {
                    b',' => {
                        self.i += 1;
                        self.ws();
                        if in_object {
                            self.key_colon()?;
                        }
                        break;
                    }
                    b'}' if in_object => {}
                    b']' if !in_object => {}
                    _ => return Err(Reject),
                }
                self.i += 1;
                self.depth -= 1;
                objects >>= 1;
            }
        }
    }

    /// A string (`i` at its opening quote). Returns the range of its
    /// content (between the quotes) and whether it holds escapes.
    #[inline(always)]
    fn string(&mut self) -> R<(usize, usize, bool)> {
        let b = self.b;
        let start = self.i + 1;
        let mut i = start;
        let mut escaped = false;
        let mut high = 0u64;
        loop {
            let c = loop {
                if let Some(chunk) = b.get(i..i + 8) {
                    let w = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
                    let m = string_specials(w);
                    high |= w;
                    if m != 0 {
                        i += (m.trailing_zeros() / 8) as usize;
                        break b[i];
                    }
                    i += 8;
                } else {
                    let c = *b.get(i).ok_or(Reject)?;
                    high |= u64::from(c);
                    if c == b'"' || c == b'\\' || c < 0x20 {
                        break c;
                    }
                    i += 1;
                }
            };
            match c {
                b'"' => {
                    self.i = i + 1;
                    self.high |= high;
                    return Ok((start, i, escaped));
                }
                b'\\' => {
                    escaped = true;
                    i = escape(b, i)?;
                }
                _ => return Err(Reject),
            }
        }
    }

    /// A number (`i` at `-` or a digit), checked against the RFC 8259
    /// grammar and, when it could overflow, against f64's range.
    #[inline]
    fn number(&mut self) -> R<()> {
        let b = self.b;
        let s = self.i;
        let mut i = s;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        let digits = i;
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                i += 1;
                while b.get(i).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                }
            }
            _ => return Err(Reject),
        }
        let mut check_range = i - digits > MAX_PLAIN_DIGITS;
        if b.get(i) == Some(&b'.') {
            i += 1;
            let f = i;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i == f {
                return Err(Reject);
            }
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            let e = i;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i == e {
                return Err(Reject);
            }
            check_range = true;
        }
        self.i = i;
        if check_range {
            number_scalar(&b[s..i])?;
        }
        Ok(())
    }
}

/// Checks the escape at `b[i]` (a backslash); returns the index after it.
/// A `\u` escape of a high surrogate must be followed by an escaped low
/// surrogate, and a low surrogate may not stand alone (as in serde_json).
#[inline]
fn escape(b: &[u8], i: usize) -> R<usize> {
    match b.get(i + 1) {
        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(i + 2),
        Some(b'u') => {
            let n = hex4(b, i + 2)?;
            match n {
                0xDC00..=0xDFFF => Err(Reject),
                0xD800..=0xDBFF => {
                    if b.get(i + 6..i + 8) != Some(b"\\u") {
                        return Err(Reject);
                    }
                    match hex4(b, i + 8)? {
                        0xDC00..=0xDFFF => Ok(i + 12),
                        _ => Err(Reject),
                    }
                }
                _ => Ok(i + 6),
            }
        }
        _ => Err(Reject),
    }
}

#[inline]
fn hex4(b: &[u8], i: usize) -> R<u16> {
    let h = b.get(i..i + 4).ok_or(Reject)?;
    let mut n = 0u16;
    for &c in h {
        n = (n << 4) | hex(c).ok_or(Reject)?;
    }
    Ok(n)
}

/// Decodes a string with escapes (`quoted` includes the quotes), checking
/// its UTF-8.
#[cold]
fn unescape(quoted: &[u8]) -> R<String> {
    serde_json::from_slice::<String>(quoted).map_err(|_| Reject)
}

/// Decodes a number exactly as serde_json does (u64, i64 or f64), checking
/// its range.
fn number_scalar(number: &[u8]) -> R<Scalar<'static>> {
    serde_json::from_slice::<NumberScalar>(number).map(|n| n.0).map_err(|_| Reject)
}

struct NumberScalar(Scalar<'static>);

impl<'de> Deserialize<'de> for NumberScalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<NumberScalar, D::Error> {
        d.deserialize_any(NumberVisitor)
    }
}

struct NumberVisitor;

impl Visitor<'_> for NumberVisitor {
    type Value = NumberScalar;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON number")
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<NumberScalar, E> {
        Ok(NumberScalar(Scalar::I64(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<NumberScalar, E> {
        Ok(NumberScalar(Scalar::U64(v)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<NumberScalar, E> {
        Ok(NumberScalar(Scalar::F64(v)))
    }
}

#[cfg(test)]
#[path = "fastjson_tests.rs"]
mod tests;
