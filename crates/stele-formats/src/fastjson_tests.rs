//! The fast parser against serde_json: acceptance against
//! `serde_json::Value`, captured values and normalized fields against the
//! serde_json implementation ([`crate::json_serde`]). `json::parse` also
//! cross-checks the two on every call in test builds.

use std::path::{Path, PathBuf};

use proptest::prelude::*;

use super::*;
use crate::json::{self, field};
use crate::normalize::{self, Normalizer};
use crate::{EventFormat, FieldPointers, InvalidReason, Normalized};

fn value_ok(b: &[u8]) -> bool {
    matches!(serde_json::from_slice::<serde_json::Value>(b), Ok(serde_json::Value::Object(_)))
}

/// A trie that captures odd pointers too: escaped keys, empty keys, array
/// indexes, nested members.
fn test_trie() -> Trie {
    let mut t = Normalizer::new(&FieldPointers::default()).trie().clone();
    for (i, p) in ["/a", "/a/0", "/a/1/b", "/", "/a/", "/b/c", "/0", "/~1", "/~0x", "/é", "/a b"].iter().enumerate() {
        t.add(p, field::RESOURCE, 100 + i);
    }
    t.add("/b", field::TIME, 100);
    t.add("/c", field::OUTCOME, 100);
    t
}

/// Checks one document: same acceptance as `serde_json::Value`, and (through
/// `json::parse`'s cross-check) the same captures as the serde_json
/// implementation.
fn check(doc: &[u8]) {
    let want = value_ok(doc);
    assert_eq!(validate(doc), want, "validate disagrees with serde_json on {:?}", String::from_utf8_lossy(doc));
    let trie = test_trie();
    assert_eq!(parse(doc, &trie).is_some(), want);
    assert_eq!(json::parse(doc, &trie).is_ok(), want);
}

fn check_str(doc: &str) {
    check(doc.as_bytes());
}

#[test]
fn structure_edge_cases() {
    let cases: &[&str] = &[
        "{}",
        " {} ",
        "\t\r\n{\t\r\n}\t\r\n",
        "{} {}",
        "{}x",
        "{",
        "}",
        "",
        "   ",
        "[]",
        "[{}]",
        "\"{}\"",
        "1",
        "null",
        r#"{"a":1,}"#,
        r#"{,"a":1}"#,
        r#"{"a":1,,"b":2}"#,
        r#"{"a" 1}"#,
        r#"{"a"::1}"#,
        r#"{"a":}"#,
        r#"{a:1}"#,
        r#"{'a':1}"#,
        r#"{"a":1 "b":2}"#,
        r#"{"a":[1,]}"#,
        r#"{"a":[,1]}"#,
        r#"{"a":[1 2]}"#,
        r#"{"a":[}"#,
        r#"{"a":{]}"#,
        r#"{"a":[1}]"#,
        r#"{"a":{"b":1]}"#,
        r#"{"a":[[[]]],"b":{"c":{"d":[{}]}}}"#,
        r#"{"a" : [ 1 , { "b" : null } , [ ] , { } ] }"#,
        r#"{"a":true,"b":false,"c":null}"#,
        r#"{"a":tru}"#,
        r#"{"a":truee}"#,
        r#"{"a":True}"#,
        r#"{"a":nul}"#,
        r#"{"a":NaN}"#,
        r#"{"a":Infinity}"#,
        r#"{"a":undefined}"#,
        "{\"a\":1}\u{0}",
        "{\"a\":1}\u{c}",
        "{\u{a0}}",
        "\u{feff}{}",
        r#"{"a":1}{"b":2}"#,
        r#"{"a":"x"}""#,
        r#"{"a":1/*c*/}"#,
        r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","verb":"get"}"#,
        r#"{"user":{"username":"a","username":"b"},"user":{"name":"c"}}"#,
        r#"{"a":[{"b":1},{"b":2}],"a":7}"#,
    ];
    for c in cases {
        check_str(c);
    }
    // The same shapes under a key the trie does not hold (skipped), under
    // one whose children are captured, and nested deeper.
    let values = [
        "[1}",
        "{\"b\":1]",
        "[{]}",
        "[[]}",
        "{\"b\":[}]",
        "[1]]",
        "{}}",
        "[1,{}]]",
        "{\"b\"}",
        "{\"b\":1,}",
        "[1,]",
        "[,]",
        "[\"x\":1]",
        "{\"b\":1:2}",
        "[1:2]",
        "{1:2}",
        "[}",
        "{]",
        "[[1],[2]}]",
        "{\"b\":{\"c\":[1,2}}}",
    ];
    for v in values {
        for key in ["zz", "a", "b", "user"] {
            check_str(&format!("{{\"{key}\":{v}}}"));
            check_str(&format!("{{\"{key}\":{v}}}}}"));
            check_str(&format!("{{\"{key}\":{v},\"k\":1}}"));
            check_str(&format!("{{\"{key}\":[{v}]}}"));
            check_str(&format!("{{\"{key}\":{{\"x\":{v}}}}}"));
        }
    }
}

#[test]
fn number_edge_cases() {
    let mut nums: Vec<String> = [
        "0",
        "-0",
        "00",
        "01",
        "-01",
        "-",
        "+1",
        "1.",
        ".5",
        "1.e5",
        "1e",
        "1e+",
        "1e-",
        "1E5",
        "1e+5",
        "1e-5",
        "-1.5E-5",
        "0.0",
        "0e0",
        "1x",
        "1.5.5",
        "0x10",
        "1_0",
        "- 1",
        "18446744073709551615",
        "18446744073709551616",
        "-9223372036854775808",
        "-9223372036854775809",
        "1e308",
        "1e309",
        "-1e309",
        "1.7976931348623157e308",
        "1.7976931348623158e308",
        "1.7976931348623159e308",
        "0.17976931348623159e309",
        "179769313486231570000e288",
        "1e-400",
        "-1e-400",
        "0e99999999999999999999",
        "1e99999999999999999999",
        "1e-99999999999999999999",
        "0.000000000000000000000000000001e330",
        "123456789012345678901234567890",
        "1.000000000000000000000000000000000001",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // Integers of 290 to 320 digits: the range check starts above 300.
    for digits in 290..=320 {
        nums.push(format!("1{}", "0".repeat(digits - 1)));
        nums.push(format!("9{}", "9".repeat(digits - 1)));
        nums.push(format!("-17976931348623157{}", "0".repeat(digits - 17)));
        nums.push(format!("1{}.5", "0".repeat(digits - 1)));
    }
    for n in &nums {
        check_str(&format!("{{\"a\":{n}}}"));
        check_str(&format!("{{\"a\":[{n}]}}"));
        check_str(&format!("{{\"b\":{n},\"c\":{n}}}"));
        check_str(&format!("{{\"x\":{n} }}"));
    }
}

#[test]
fn string_edge_cases() {
    let bodies: &[&[u8]] = &[
        b"",
        b"plain",
        br#"\""#,
        br#"\\"#,
        br#"\/"#,
        br#"\b\f\n\r\t"#,
        br#"\a"#,
        br#"\x41"#,
        br#"\'"#,
        br#"\u0041"#,
        br#"\u00e9\u00E9"#,
        br#"\u0000"#,
        br#"\u001f"#,
        br#"\u004"#,
        br#"\u00g1"#,
        br#"\U0041"#,
        br#"\ud83d\ude00"#,
        br#"\uD83D\uDE00"#,
        br#"\ud800"#,
        br#"\udbff"#,
        br#"\udc00"#,
        br#"\udfff"#,
        br#"\ud800\ud800"#,
        br#"\ud800\u0041"#,
        br#"\ud800\n"#,
        br#"\ud800x"#,
        br#"\ud800\"#,
        br#"\ud800\u"#,
        br#"\ud800\udc0"#,
        br#"\ude00\ud83d"#,
        br#"x\"#,
        b"tab\there",
        b"nl\nhere",
        b"cr\rhere",
        b"nul\0here",
        b"\x1f",
        b"\x7f",
        "é😀€".as_bytes(),
        b"\xc3\xa9",
        b"\xc3",
        b"\xc3(",
        b"\xc0\xaf",
        b"\xe0\x80\xaf",
        b"\xed\xa0\x80",
        b"\xf0\x9f\x98\x80",
        b"\xf0\x9f\x98",
        b"\xf4\x90\x80\x80",
        b"\xf5\x80\x80\x80",
        b"\xff",
        b"\x80",
    ];
    for body in bodies {
        for tmpl in [
            &[&b"{\"a\":\""[..], body, b"\"}"][..],
            &[b"{\"", body, b"\":1}"],
            &[b"{\"b\":[\"", body, b"\"]}"],
            &[b"{\"x\":{\"", body, b"\":\"", body, b"\"}}"],
        ] {
            check(&tmpl.concat());
        }
    }
    // Bytes outside strings.
    check(b"{\"a\":1}\xff");
    check(b"\xc3\xa9{}");
    check(b"{\"a\":\xc3\xa9}");
}

/// Each special byte at each position around the 8-byte words of the string
/// scanner, in strings of every length up to 40.
#[test]
fn string_scanner_word_boundaries() {
    let specials: &[&[u8]] =
        &[b"\\\"", b"\\\\", b"\\u00e9", b"\\ud83d\\ude00", b"\"", b"\\", b"\x01", b"\t", b"\xc3\xa9", b"\xc3", b"\xff"];
    for len in 0..40 {
        for at in 0..=len {
            for sp in specials {
                let mut s = vec![b'x'; len];
                s.splice(at..at, sp.iter().copied());
                for prefix in [&b"{\"a\":\""[..], b"{\"", b"{\"k\":[\"", b"{\"k\":{\"z\":\""] {
                    let mut doc = prefix.to_vec();
                    doc.extend_from_slice(&s);
                    doc.extend_from_slice(b"\"");
                    // Close what the prefix opened; also try it unclosed.
                    let closers: &[u8] = match prefix.len() {
                        6 => b"}",
                        2 => b":0}",
                        7 => b"]}",
                        _ => b"}}",
                    };
                    check(&doc);
                    doc.extend_from_slice(closers);
                    check(&doc);
                }
            }
        }
    }
}

#[test]
fn depth_limit_is_serde_jsons() {
    for n in 120..=132usize {
        let arrays = format!("{{\"a\":{}{}}}", "[".repeat(n - 1), "]".repeat(n - 1));
        let objects = format!("{}1{}", "{\"a\":".repeat(n), "}".repeat(n));
        let mixed = format!("{}0{}", "{\"a\":[".repeat(n / 2), "]}".repeat(n / 2));
        let skipped = format!("{{\"zz\":{}{}}}", "[".repeat(n - 1), "]".repeat(n - 1));
        let empty_inner = format!("{}{{}}{}", "{\"a\":".repeat(n - 1), "}".repeat(n - 1));
        for doc in [&arrays, &objects, &mixed, &skipped, &empty_inner] {
            check_str(doc);
        }
        // n containers open at once: accepted exactly up to MAX_DEPTH.
        assert_eq!(validate(objects.as_bytes()), n <= MAX_DEPTH as usize, "{n}");
        assert_eq!(validate(arrays.as_bytes()), n <= MAX_DEPTH as usize, "{n}");
    }
    // Siblings do not add up.
    let wide = format!("{{{}}}", vec!["\"a\":[[[[[[[[1]]]]]]]]"; 100].join(","));
    check_str(&wide);
    assert!(validate(wide.as_bytes()));
}

#[test]
fn captures_match_serde() {
    let docs = [
        r#"{"a":"x","/":1,"~":2,"":"empty","a/":3}"#,
        r#"{"a":["zero",{"b":"one-b"}],"0":"key zero"}"#,
        r#"{"\u0061":"escaped key","b":{"c":"d\n"},"b":"2024-01-01T00:00:00Z"}"#,
        r#"{"a":1.5e3,"b":-7,"c":18446744073709551615,"\u00e9":true}"#,
        r#"{"~1":"slash","~0x":"tilde","a b":"space","é":"e-acute"}"#,
        r#"{"a":null,"a":"after null"}"#,
        r#"{"a":{"x":1},"a":[1,{"b":"deep"}]}"#,
        r#"{"kind":"Ev\u0065nt","apiVersion":"audit.k8s.io/v1","verb":"get","user":{"username":"\u00e9"},"objectRef":{"resource":"pods","namespace":"ns","name":"p","subresource":"log"},"responseStatus":{"code":404},"stageTimestamp":"2024-01-01T00:00:00.123456Z"}"#,
        r#"{"eventTime":1700000000123,"userIdentity":{"arn":"arn:x"},"errorCode":"","protoPayload":{"status":{"code":0}}}"#,
        r#"{"target":[{"alternateId":"t0"},{"alternateId":"t1"}],"outcome":{"result":"DENY"}}"#,
    ];
    let trie = test_trie();
    for d in docs {
        let fast = parse(d.as_bytes(), &trie).expect(d);
        let slow = crate::json_serde::parse(d.as_bytes(), &trie).expect(d);
        assert_eq!(fast, slow, "{d}");
    }
    let c = parse(docs[1].as_bytes(), &trie).unwrap();
    assert_eq!(c.str(field::RESOURCE), Some("zero"));
}

/// `parse_with` on the fast parser against the same on the serde_json
/// implementation, for every hint.
fn compare_normalized(bytes: &[u8], trie: &Trie) -> bool {
    let fast_ok = parse(bytes, trie).is_some();
    let slow_caps = crate::json_serde::parse(bytes, trie);
    assert_eq!(fast_ok, slow_caps.is_ok(), "acceptance differs on {:?}", String::from_utf8_lossy(bytes));
    for hint in [None, Some(EventFormat::Json), Some(EventFormat::KubernetesAudit)] {
        let fast = normalize::parse_with(bytes, hint, trie);
        let slow: Result<(EventFormat, Normalized), InvalidReason> =
            slow_caps.as_ref().map_err(Clone::clone).and_then(|caps| {
                let format = normalize::resolve_format(caps, hint)?;
                Ok((format, normalize::fields(caps, format, bytes)))
            });
        assert_eq!(fast, slow, "hint {hint:?} on {:?}", String::from_utf8_lossy(bytes));
    }
    fast_ok
}

fn data_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    if dir.is_dir() {
        return Some(dir);
    }
    assert!(
        std::env::var("STELE_REQUIRE_PEERS").as_deref() != Ok("1"),
        "../shared not found at {} and STELE_REQUIRE_PEERS=1",
        dir.display()
    );
    eprintln!("skipping: ../shared not found ({})", dir.display());
    None
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// Every file of `../shared/data`, whole and line by line, and every event
/// an `Auto` reader finds in it: the fast parser gives the same acceptance
/// and the same `Normalized` fields as the serde_json implementation.
#[test]
fn shared_data_matches_serde_implementation() {
    let Some(dir) = data_dir() else { return };
    let mut paths = Vec::new();
    files(&dir, &mut paths);
    let trie = Normalizer::new(&FieldPointers::default()).trie().clone();
    let (mut accepted, mut checked) = (0usize, 0usize);
    for path in &paths {
        let bytes = std::fs::read(path).unwrap();
        if bytes.len() > 4 << 20 {
            continue;
        }
        checked += 1;
        accepted += usize::from(compare_normalized(&bytes, &trie));
        for line in bytes.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if !line.is_empty() {
                checked += 1;
                accepted += usize::from(compare_normalized(line, &trie));
            }
        }
        let mut r = crate::EventReader::new(&bytes[..], crate::InputFormat::Auto, 1 << 20)
            .with_normalizer(Normalizer::new(&FieldPointers::default()));
        loop {
            match r.next_event() {
                Ok(Some(ev)) => {
                    let (bytes, format) = (ev.bytes.to_vec(), ev.format);
                    let got = r.last_normalized().cloned().unwrap();
                    if format == EventFormat::Auditd {
                        // Text records, not JSON: nothing for the JSON parsers to compare.
                        assert_eq!(got, crate::auditd::normalize(&bytes).unwrap());
                        accepted += 1;
                        continue;
                    }
                    let caps = crate::json_serde::parse(&bytes, &trie).unwrap();
                    assert_eq!(got, normalize::fields(&caps, format, &bytes), "{}", path.display());
                    accepted += 1;
                }
                Ok(None) => break,
                Err(e) if e.is_fatal() => break,
                Err(_) => {}
            }
        }
    }
    eprintln!("{checked} documents checked, {accepted} events accepted");
    assert!(accepted > 5000, "only {accepted} events accepted");
}

// ---- property tests ------------------------------------------------------

fn ws() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => Just(String::new()),
        1 => "[ \t\r\n]{1,3}",
    ]
}

fn string_body() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        8 => "[a-c0 ]{1,6}",
        2 => Just("a".repeat(9)),
        1 => prop::sample::select(vec![
            "\\\"", "\\\\", "\\/", "\\b", "\\f", "\\n", "\\r", "\\t", "\\u0061", "\\u00E9",
            "\\u0000", "\\ud83d\\ude00", "\\uD800", "\\uDFFF", "\\uDBFF\\uDC00", "\\ud800\\u0041",
            "é", "😀", "\u{7f}", "\t", "\\x", "\\u12",
        ])
        .prop_map(str::to_string),
    ];
    prop::collection::vec(piece, 0..4).prop_map(|v| v.concat())
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "a", "b", "c", "", "0", "1", "kind", "apiVersion", "verb", "user", "username",
            "objectRef", "resource", "namespace", "responseStatus", "code", "stageTimestamp",
            "eventTime", "userIdentity", "arn", "errorCode", "target", "alternateId", "outcome",
            "result", "\\u0061", "\\u0076erb", "~1", "a b", "é", "\\u00e9",
        ])
        .prop_map(str::to_string),
        1 => string_body(),
    ]
}

fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "-?(0|[1-9][0-9]{0,3})(\\.[0-9]{1,3})?([eE][+-]?[0-9]{1,3})?",
        1 => "-?[0-9]{1,25}(\\.[0-9]{0,2})?([eE][+-]?[0-9]{0,4})?",
        1 => prop::sample::select(vec![
            "1e308", "1e309", "1.7976931348623157e308", "1.7976931348623159e308", "404",
            "1700000000", "1.5", "18446744073709551616", "-9223372036854775809",
        ])
        .prop_map(str::to_string),
    ]
}

fn scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => string_body().prop_map(|s| format!("\"{s}\"")),
        1 => number(),
        1 => prop::sample::select(vec!["true", "false", "null", "nul", "tru"])
            .prop_map(str::to_string),
    ]
}

/// JSON-like text, mostly valid, with free whitespace.
fn json_text() -> impl Strategy<Value = String> {
    scalar().prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            (prop::collection::vec((ws(), inner.clone(), ws()), 0..6), ws()).prop_map(|(items, w)| {
                let items: Vec<String> = items.into_iter().map(|(a, v, b)| format!("{a}{v}{b}")).collect();
                format!("[{w}{}]", items.join(","))
            }),
            (prop::collection::vec((ws(), key(), ws(), ws(), inner, ws()), 0..6), ws()).prop_map(|(members, w)| {
                let members: Vec<String> =
                    members.into_iter().map(|(a, k, b, c, v, d)| format!("{a}\"{k}\"{b}:{c}{v}{d}")).collect();
                format!("{{{w}{}}}", members.join(","))
            }),
        ]
    })
}

fn document() -> impl Strategy<Value = String> {
    (ws(), prop::collection::vec((key(), json_text()), 0..8), ws()).prop_map(|(a, members, b)| {
        let members: Vec<String> = members.into_iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
        format!("{a}{{{}}}{b}", members.join(","))
    })
}

/// Bytes that matter to a JSON parser.
fn damage_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        3 => prop::sample::select(b"{}[]\",:\\ \t\n\r0123456789-+.eEtfnulx/u".to_vec()),
        1 => prop::sample::select(vec![0x00, 0x1f, 0x7f, 0x80, 0xbf, 0xc0, 0xc3, 0xed, 0xf0, 0xf5, 0xff]),
        1 => any::<u8>(),
    ]
}

fn damage(mut bytes: Vec<u8>, edits: Vec<(prop::sample::Index, u8, u8)>) -> Vec<u8> {
    for (at, byte, op) in edits {
        let i = at.index(bytes.len() + 1);
        match op {
            0 => bytes.insert(i, byte),
            1 if i < bytes.len() => {
                bytes.remove(i);
            }
            2 if i < bytes.len() => bytes[i] = byte,
            _ if i < bytes.len() => {
                // Duplicate a slice, as fuzzers do.
                let end = (i + usize::from(byte % 16)).min(bytes.len());
                let dup = bytes[i..end].to_vec();
                bytes.splice(i..i, dup);
            }
            _ => {}
        }
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Generated JSON text, whole and damaged: the fast parser accepts
    /// exactly what serde_json::Value accepts as an object, and captures
    /// the same values as the serde_json implementation.
    #[test]
    fn generated_text_matches_serde(
        doc in document(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), damage_byte(), 0u8..4), 0..4),
    ) {
        check(doc.as_bytes());
        let damaged = damage(doc.into_bytes(), edits);
        check(&damaged);
        let trie = test_trie();
        compare_normalized(&damaged, &trie);
    }

    /// Documents serde_json writes, compact and pretty, damaged.
    #[test]
    fn serde_written_documents_match(
        v in prop::collection::btree_map(key(), json_text(), 0..6),
        pretty: bool,
        edits in prop::collection::vec((any::<prop::sample::Index>(), damage_byte(), 0u8..4), 0..3),
    ) {
        // Re-serialize what parses, so that the text is canonical.
        let obj: serde_json::Map<String, serde_json::Value> = v
            .into_iter()
            .filter_map(|(k, t)| {
                let k: String = serde_json::from_str(&format!("\"{k}\"")).ok()?;
                Some((k, serde_json::from_str(&t).ok()?))
            })
            .collect();
        let text = if pretty {
            serde_json::to_vec_pretty(&obj)
        } else {
            serde_json::to_vec(&obj)
        }
        .unwrap();
        prop_assert!(validate(&text));
        check(&damage(text, edits));
    }

    /// Arbitrary bytes.
    #[test]
    fn arbitrary_bytes_match_serde(bytes in prop::collection::vec(damage_byte(), 0..64)) {
        check(&bytes);
        let mut obj = b"{\"a\":".to_vec();
        obj.extend_from_slice(&bytes);
        obj.push(b'}');
        check(&obj);
    }
}
