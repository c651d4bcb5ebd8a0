//! A small JSON structure scanner: finds where a value ends without
//! validating it (each event is validated afterwards).
//!
//! It tracks strings (with backslash escapes) and bracket depth only, so it is
//! fast and resumable across buffer refills. For well-formed input its
//! boundaries are exact; for malformed input they may be wrong, but every
//! event is then rejected by validation, so nothing invalid gets through.

use memchr::memchr2;

/// JSON insignificant whitespace (RFC 8259 §2).
#[inline]
pub(crate) fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// Bytes that end a bare scalar (number or literal).
#[inline]
fn ends_scalar(b: u8) -> bool {
    matches!(b, b',' | b']' | b'}' | b'{' | b'[' | b'"' | b':') || is_ws(b)
}

/// Outcome of [`ValueScanner::feed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scan {
    /// The value ends just before this index of the chunk.
    Done(usize),
    /// The chunk ended inside the value.
    More,
}

/// Resumable scanner for the extent of one JSON value.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ValueScanner {
    depth: u64,
    in_string: bool,
    escape: bool,
    started: bool,
    scalar: bool,
}

impl ValueScanner {
    /// True when the value is a bare number or literal, which ends at EOF.
    pub(crate) fn is_scalar(&self) -> bool {
        self.scalar
    }

    /// Feeds the next chunk of input (the first chunk starts at the value's
    /// first byte, which must not be whitespace).
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Scan {
        let mut i = 0;
        if !self.started {
            let Some(&b) = bytes.first() else {
                return Scan::More;
            };
            self.started = true;
            i = 1;
            match b {
                b'{' | b'[' => self.depth = 1,
                b'"' => self.in_string = true,
                _ => self.scalar = true,
            }
        }
        if self.scalar {
            return match bytes[i..].iter().position(|&b| ends_scalar(b)) {
                Some(p) => Scan::Done(i + p),
                None => Scan::More,
            };
        }
        let n = bytes.len();
        loop {
            if self.in_string {
                if self.escape {
                    if i >= n {
                        return Scan::More;
                    }
                    self.escape = false;
                    i += 1;
                }
                match memchr2(b'"', b'\\', &bytes[i..]) {
                    None => return Scan::More,
                    Some(p) => {
                        i += p;
                        if bytes[i] == b'\\' {
                            self.escape = true;
                            i += 1;
                        } else {
                            self.in_string = false;
                            i += 1;
                            if self.depth == 0 {
                                return Scan::Done(i);
                            }
                        }
                    }
                }
            } else {
                loop {
                    if i >= n {
                        return Scan::More;
                    }
                    match bytes[i] {
                        b'"' => {
                            self.in_string = true;
                            i += 1;
                            break;
                        }
                        b'{' | b'[' => self.depth += 1,
                        b'}' | b']' => {
                            self.depth -= 1;
                            if self.depth == 0 {
                                return Scan::Done(i + 1);
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
            }
        }
    }
}

/// Index of the first non-whitespace byte at or after `i`.
pub(crate) fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && is_ws(b[i]) {
        i += 1;
    }
    i
}

/// End (exclusive) of the value starting at `start` in a complete buffer, or
/// `None` when the buffer ends inside it.
pub(crate) fn value_end(b: &[u8], start: usize) -> Option<usize> {
    let mut sc = ValueScanner::default();
    match sc.feed(&b[start..]) {
        Scan::Done(n) => Some(start + n),
        Scan::More if sc.is_scalar() => Some(b.len()),
        Scan::More => None,
    }
}

/// A framing problem found by the in-memory helpers: byte offset and reason.
pub(crate) type FrameError = (usize, &'static str);

/// Finds the value of the top-level member `"items"` of the complete object
/// `obj` (which starts at index 0 with `{`). Returns its range, or `None`
/// when the object has no such member.
pub(crate) fn find_member(obj: &[u8], name: &str) -> Result<Option<(usize, usize)>, FrameError> {
    let mut i = skip_ws(obj, 1);
    if obj.get(i) == Some(&b'}') {
        return Ok(None);
    }
    loop {
        if obj.get(i) != Some(&b'"') {
            return Err((i, "expected an object key"));
        }
        let key_end = value_end(obj, i).ok_or((i, "unterminated key"))?;
        let key = &obj[i..key_end];
        let is_name = if key.contains(&b'\\') {
            serde_json::from_slice::<String>(key).is_ok_and(|k| k == name)
        } else {
            &key[1..key.len() - 1] == name.as_bytes()
        };
        i = skip_ws(obj, key_end);
        if obj.get(i) != Some(&b':') {
            return Err((i, "expected ':' after an object key"));
        }
        i = skip_ws(obj, i + 1);
        if i >= obj.len() {
            return Err((i, "unexpected end inside an object"));
        }
        let end = value_end(obj, i).ok_or((i, "unterminated value"))?;
        if is_name {
            return Ok(Some((i, end)));
        }
        i = skip_ws(obj, end);
        match obj.get(i) {
            Some(b',') => i = skip_ws(obj, i + 1),
            Some(b'}') => return Ok(None),
            _ => return Err((i, "expected ',' or '}' in an object")),
        }
    }
}

/// Element ranges of an array and the index just past its `]`.
pub(crate) type Elements = (Vec<(usize, usize)>, usize);

/// A framing problem inside an array: byte offset, number of complete
/// elements before it, reason.
pub(crate) type ArrayError = (usize, usize, &'static str);

/// Splits the array at the start of `arr` (index 0 is `[`) into the ranges
/// of its elements.
pub(crate) fn array_elements(arr: &[u8]) -> Result<Elements, ArrayError> {
    let mut out = Vec::new();
    let mut i = skip_ws(arr, 1);
    if arr.get(i) == Some(&b']') {
        return Ok((out, i + 1));
    }
    loop {
        let n = out.len();
        match arr.get(i) {
            None => return Err((i, n, "unterminated array")),
            Some(b',' | b']') => return Err((i, n, "expected a value")),
            Some(_) => {}
        }
        let end = value_end(arr, i).ok_or((i, n, "unterminated value in array"))?;
        out.push((i, end));
        i = skip_ws(arr, end);
        match arr.get(i) {
            Some(b',') => i = skip_ws(arr, i + 1),
            Some(b']') => return Ok((out, i + 1)),
            None => return Err((i, n + 1, "unterminated array")),
            Some(_) => return Err((i, n + 1, "expected ',' or ']' after an array element")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_ends() {
        let cases: &[(&str, Option<usize>)] = &[
            (r#"{"a":"}"}x"#, Some(9)),
            (r#"{"a":"\"}"}"#, Some(11)),
            (r#"{"a":"\\"}"#, Some(10)),
            (r#"[[1],[2,{"]":"["}]]"#, Some(19)),
            (r#""ab\"c" tail"#, Some(7)),
            ("123,", Some(3)),
            ("true", Some(4)),
            (r#"{"a":["#, None),
            (r#"{"a":"abc"#, None),
        ];
        for (s, want) in cases {
            assert_eq!(value_end(s.as_bytes(), 0), *want, "{s}");
        }
    }

    #[test]
    fn resumable_at_every_split() {
        let doc = br#"{"a":"x\\\"y","b":[1,{"c":"]}"}],"d":"\u00e9"} rest"#;
        let whole = value_end(doc, 0).unwrap();
        for split in 1..doc.len() {
            let mut sc = ValueScanner::default();
            let got = match sc.feed(&doc[..split]) {
                Scan::Done(n) => n,
                Scan::More => match sc.feed(&doc[split..]) {
                    Scan::Done(n) => split + n,
                    Scan::More => panic!("not found"),
                },
            };
            assert_eq!(got, whole, "split at {split}");
        }
    }

    #[test]
    fn members_and_elements() {
        let obj = br#"{"kind":"EventList","it\u0065ms":[{"a":1}, {"b":"]"} ,{}],"x":1}"#;
        let (s, e) = find_member(obj, "items").unwrap().unwrap();
        let arr = &obj[s..e];
        let els: Vec<&[u8]> = array_elements(arr).unwrap().0.into_iter().map(|(a, b)| &arr[a..b]).collect();
        assert_eq!(els, vec![&br#"{"a":1}"#[..], br#"{"b":"]"}"#, b"{}"]);
        assert_eq!(find_member(br#"{"a":1}"#, "items").unwrap(), None);
        assert!(array_elements(b"[1 2]").is_err());
        assert!(array_elements(b"[1,]").is_err());
        assert!(array_elements(b"[1,").is_err());
        assert_eq!(array_elements(b"[ ] x").unwrap(), (vec![], 3));
    }
}
