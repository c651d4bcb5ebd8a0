//! Property tests: the splitters against serde_json as the reference.

use std::io::{BufReader, Read};

use proptest::prelude::*;
use serde_json::{Map, Value};
use stele_formats::{EventFormat, EventReader, FieldPointers, InputFormat, parse_event, split_body};

/// Hands out at most `n` bytes per read.
struct Trickle<'a> {
    data: &'a [u8],
    n: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let k = self.n.min(out.len()).min(self.data.len());
        out[..k].copy_from_slice(&self.data[..k]);
        self.data = &self.data[k..];
        Ok(k)
    }
}

/// Events and error count; panics if the reader does not end.
fn read(input: &[u8], format: InputFormat, limit: usize, chunk: usize) -> (Vec<Vec<u8>>, usize) {
    let src = BufReader::with_capacity(1, Trickle { data: input, n: chunk });
    let mut r = EventReader::new(src, format, limit);
    let (mut events, mut errors) = (Vec::new(), 0);
    for _ in 0..input.len() + 3 {
        match r.next_event() {
            Ok(None) => return (events, errors),
            Ok(Some(e)) => {
                assert!(e.bytes.len() <= limit);
                events.push(e.bytes.to_vec());
            }
            Err(_) => errors += 1,
        }
    }
    panic!("reader did not end");
}

/// Strings rich in JSON structure characters and escapes.
fn text() -> impl Strategy<Value = String> {
    "[a-c\\[\\]{}\",:\\\\/ \t\n\u{e9}\u{1F600}\u{0}]{0,8}"
}

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        // Binary fractions: serde_json's default float parsing round-trips them exactly.
        any::<i32>().prop_map(|i| Value::from(f64::from(i) / 8.0)),
        Just(Value::from(1.5e300)),
        text().prop_map(Value::from),
    ];
    leaf.prop_recursive(5, 48, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(text(), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn object() -> impl Strategy<Value = Value> {
    prop::collection::btree_map(text(), json(), 0..5).prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>()))
}

fn parses_as_object(b: &[u8]) -> bool {
    matches!(serde_json::from_slice::<Value>(b), Ok(Value::Object(_)))
}

/// Optional JSON whitespace.
fn ws() -> impl Strategy<Value = String> {
    prop_oneof![6 => Just(String::new()), 1 => "[ \t\r\n]{1,3}"]
}

/// String contents with every kind of escape, valid or not, and surrogates.
fn string_body() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        6 => "[a-z0-9 ]{1,12}",
        1 => prop::sample::select(vec![
            "\\\"", "\\\\", "\\/", "\\b", "\\n", "\\t", "\\u0041", "\\u00e9",
            "\\ud83d\\ude00", "\\uD800", "\\uDC00", "\\ud800\\u0041", "\\q", "\\u00",
            "\u{e9}", "\u{1F600}", "\t", "\u{1}",
        ])
        .prop_map(str::to_string),
    ];
    prop::collection::vec(piece, 0..4).prop_map(|v| v.concat())
}

/// JSON text written by hand rather than by serde_json: free whitespace,
/// escapes, numbers of every shape, deep nesting; mostly valid.
fn raw_json() -> impl Strategy<Value = String> {
    let scalar = prop_oneof![
        3 => string_body().prop_map(|s| format!("\"{s}\"")),
        2 => "-?(0|[1-9][0-9]{0,3})(\\.[0-9]{1,3})?([eE][+-]?[0-9]{1,3})?",
        1 => "-?[0-9]{1,24}(\\.[0-9]{0,2})?([eE][+-]?[0-9]{0,4})?",
        1 => prop::sample::select(vec!["true", "false", "null", "1e309", "-0", "18446744073709551616"])
            .prop_map(str::to_string),
    ];
    scalar.prop_recursive(8, 64, 5, |inner| {
        prop_oneof![
            (prop::collection::vec((ws(), inner.clone(), ws()), 0..5), ws()).prop_map(|(v, w)| {
                let v: Vec<String> = v.into_iter().map(|(a, x, b)| format!("{a}{x}{b}")).collect();
                format!("[{w}{}]", v.join(","))
            }),
            (prop::collection::vec((ws(), string_body(), ws(), inner), 0..5), ws()).prop_map(|(v, w)| {
                let v: Vec<String> = v.into_iter().map(|(a, k, b, x)| format!("{a}\"{k}\"{b}:{x}")).collect();
                format!("{{{w}{}}}", v.join(","))
            }),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// The array scanner yields exactly the elements serde_json sees.
    #[test]
    fn array_elements_match_serde(objs in prop::collection::vec(object(), 0..8), pretty: bool, chunk in 1usize..64) {
        let array = Value::Array(objs.clone());
        let text = if pretty { serde_json::to_string_pretty(&array) } else { serde_json::to_string(&array) }.unwrap();
        for format in [InputFormat::Json, InputFormat::Auto] {
            let (events, errors) = read(text.as_bytes(), format, 1 << 20, chunk);
            prop_assert_eq!(errors, 0);
            let got: Vec<Value> = events.iter().map(|e| serde_json::from_slice(e).unwrap()).collect();
            prop_assert_eq!(&got, &objs);
            if !pretty {
                let want: Vec<Vec<u8>> = objs.iter().map(|o| serde_json::to_vec(o).unwrap()).collect();
                prop_assert_eq!(&events, &want);
            }
        }
        let body = split_body(text.as_bytes(), 1 << 20);
        if objs.is_empty() {
            prop_assert!(body.is_err());
        } else {
            let got: Vec<Value> = body.unwrap().iter().map(|(b, _)| serde_json::from_slice(b).unwrap()).collect();
            prop_assert_eq!(got, objs);
        }
    }

    /// JSON lines with CRLF and blank lines give back each serialized object.
    #[test]
    fn json_lines_round_trip(objs in prop::collection::vec(object(), 0..8), crlf: bool, blanks in prop::collection::vec(0usize..3, 8), chunk in 1usize..64) {
        let nl = if crlf { "\r\n" } else { "\n" };
        let mut text = String::new();
        let mut want = Vec::new();
        for (o, b) in objs.iter().zip(&blanks) {
            let s = serde_json::to_string(o).unwrap();
            text.push_str(&s);
            text.push_str(&nl.repeat(1 + b));
            want.push(s.into_bytes());
        }
        let (events, errors) = read(text.as_bytes(), InputFormat::Jsonl, 1 << 20, chunk);
        prop_assert_eq!(errors, 0);
        prop_assert_eq!(&events, &want);
        let (auto, _) = read(text.as_bytes(), InputFormat::Auto, 1 << 20, chunk);
        prop_assert_eq!(&auto, &want);
    }

    /// parse_event accepts exactly the objects serde_json::Value accepts,
    /// also after random damage to a valid document.
    #[test]
    fn parse_event_matches_serde_json(obj in object(), edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 0..3)) {
        let mut bytes = serde_json::to_vec(&obj).unwrap();
        for (at, byte, op) in edits {
            let i = at.index(bytes.len() + 1);
            match op {
                0 => bytes.insert(i, byte),
                1 if i < bytes.len() => { bytes.remove(i); }
                _ if i < bytes.len() => bytes[i] = byte,
                _ => {}
            }
        }
        let ours = parse_event(&bytes, None, &FieldPointers::default());
        prop_assert_eq!(ours.is_ok(), parses_as_object(&bytes), "{:?}", String::from_utf8_lossy(&bytes));
        if let Ok((format, _)) = ours {
            let v: Value = serde_json::from_slice(&bytes).unwrap();
            let k8s = v.get("kind") == Some(&Value::from("Event"));
            prop_assert!(format == EventFormat::Json || k8s);
        }
    }

    /// Hand-written JSON text as an event and as a member of one, whole and
    /// damaged: parse_event accepts exactly what serde_json::Value accepts as
    /// an object. (In debug builds the crate also asserts that its fast
    /// parser never rejects what serde_json accepts.)
    #[test]
    fn raw_json_text_matches_serde_json(
        v in raw_json(),
        key in prop::sample::select(vec!["a", "user", "objectRef", "verb", "kind", "target", "zz"]),
        edits in prop::collection::vec((any::<prop::sample::Index>(), prop::sample::select(b"{}[]\",:\\ \t0-.eu\x00\x1f\x80\xc3\xed\xff".to_vec()), 0u8..3), 0..3),
    ) {
        let fp = FieldPointers::default();
        for doc in [v.clone(), format!("{{\"{key}\":{v}}}"), format!(" {{\"{key}\" : [{v}] , \"verb\":\"get\"}} ")] {
            let mut bytes = doc.into_bytes();
            prop_assert_eq!(parse_event(&bytes, None, &fp).is_ok(), parses_as_object(&bytes), "{:?}", String::from_utf8_lossy(&bytes));
            for &(at, byte, op) in &edits {
                let i = at.index(bytes.len() + 1);
                match op {
                    0 => bytes.insert(i, byte),
                    1 if i < bytes.len() => { bytes.remove(i); }
                    _ if i < bytes.len() => bytes[i] = byte,
                    _ => {}
                }
            }
            prop_assert_eq!(parse_event(&bytes, None, &fp).is_ok(), parses_as_object(&bytes), "{:?}", String::from_utf8_lossy(&bytes));
        }
    }

    /// Arbitrary bytes: no panic, the reader ends, and whatever it yields is a
    /// valid JSON object within the limit.
    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(prop_oneof![
        4 => prop::sample::select(b"{}[]\",:\\ \n\r\tnul0123e-+.\xEF\xBB\xBF\xFFab".to_vec()),
        1 => any::<u8>(),
    ], 0..200), limit in 1usize..64, chunk in 1usize..16) {
        for format in [InputFormat::Auto, InputFormat::Jsonl, InputFormat::Json, InputFormat::K8sAudit] {
            let (events, _) = read(&bytes, format, limit, chunk);
            for e in events {
                prop_assert!(parses_as_object(&e));
            }
        }
        if let Ok(items) = split_body(&bytes, limit) {
            for (b, _) in items {
                prop_assert!(parses_as_object(b) && b.len() <= limit);
            }
        }
        let ok = parse_event(&bytes, None, &FieldPointers::default()).is_ok();
        prop_assert_eq!(ok, parses_as_object(&bytes));
    }

    /// The same input read whole and in small chunks gives the same result.
    #[test]
    fn chunking_does_not_matter(objs in prop::collection::vec(object(), 1..5), pretty: bool, chunk in 1usize..32, limit in 16usize..400) {
        let mut text = String::new();
        for o in &objs {
            let s = if pretty { serde_json::to_string_pretty(o) } else { serde_json::to_string(o) }.unwrap();
            text.push_str(&s);
            text.push('\n');
        }
        for format in [InputFormat::Auto, InputFormat::Jsonl, InputFormat::Json] {
            prop_assert_eq!(read(text.as_bytes(), format, limit, chunk), read(text.as_bytes(), format, limit, usize::MAX));
        }
    }
}
