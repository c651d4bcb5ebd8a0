use std::io::{BufReader, Read};

use super::*;
use crate::{FieldPointers, InvalidReason};

/// A reader that hands out at most `n` bytes per call, to exercise refills
/// at every possible split.
struct Trickle<'a> {
    data: &'a [u8],
    n: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let k = self.n.min(out.len()).min(self.data.len());
        out[..k].copy_from_slice(&self.data[..k]);
        self.data = &self.data[k..];
        Ok(k)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Out {
    Ev(String, EventFormat, u64, u64),
    Err(String, bool),
}

fn ev(s: &str, f: EventFormat, line: u64, off: u64) -> Out {
    Out::Ev(s.to_string(), f, line, off)
}

fn run_chunked(input: &[u8], format: InputFormat, limit: usize, chunk: usize) -> Vec<Out> {
    let src = BufReader::with_capacity(1, Trickle { data: input, n: chunk });
    let mut r = EventReader::new(src, format, limit);
    let mut out = Vec::new();
    for _ in 0..10_000 {
        match r.next_event() {
            Ok(None) => {
                // Stays at the end.
                assert!(matches!(r.next_event(), Ok(None)));
                return out;
            }
            Ok(Some(e)) => out.push(Out::Ev(
                String::from_utf8(e.bytes.to_vec()).unwrap(),
                e.format,
                e.location.line,
                e.location.byte_offset,
            )),
            Err(e) => out.push(Out::Err(e.to_string(), e.is_fatal())),
        }
    }
    panic!("reader did not finish");
}

/// Runs with several chunk sizes and checks they all agree.
fn run(input: &str, format: InputFormat, limit: usize) -> Vec<Out> {
    let whole = run_chunked(input.as_bytes(), format, limit, usize::MAX);
    for chunk in [1, 2, 3, 7, 64] {
        assert_eq!(run_chunked(input.as_bytes(), format, limit, chunk), whole, "chunk {chunk}");
    }
    whole
}

fn errors(out: &[Out]) -> Vec<&str> {
    out.iter()
        .filter_map(|o| match o {
            Out::Err(s, _) => Some(s.as_str()),
            Out::Ev(..) => None,
        })
        .collect()
}

fn events(out: &[Out]) -> Vec<&str> {
    out.iter()
        .filter_map(|o| match o {
            Out::Ev(s, ..) => Some(s.as_str()),
            Out::Err(..) => None,
        })
        .collect()
}

const J: EventFormat = EventFormat::Json;
const K: EventFormat = EventFormat::KubernetesAudit;
const K8S_EV: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","verb":"get"}"#;

#[test]
fn jsonl_crlf_blank_lines_and_whitespace() {
    let input = "{\"a\":1}\r\n\r\n  {\"b\":2}  \n\n\t\n{\"c\":\"x\\\"}\"}\r\n{\"d\":4}";
    let out = run(input, InputFormat::Jsonl, 100);
    assert_eq!(
        out,
        vec![
            ev(r#"{"a":1}"#, J, 1, 0),
            ev(r#"{"b":2}"#, J, 3, 13),
            ev(r#"{"c":"x\"}"}"#, J, 6, 26),
            ev(r#"{"d":4}"#, J, 7, 40),
        ]
    );
    assert_eq!(run(input, InputFormat::Auto, 100), out);
}

#[test]
fn jsonl_bad_lines_are_reported_and_skipped() {
    let input = format!("{K8S_EV}\nnot json\n[1,2]\n{{\"a\":1}} trailing\n{{\"a\":\n\"\u{e9}\"\n{{\"ok\":true}}\n");
    let out = run(&input, InputFormat::Jsonl, 1000);
    assert_eq!(events(&out), vec![K8S_EV, r#"{"ok":true}"#]);
    let errs = errors(&out);
    assert_eq!(errs.len(), 5, "{out:?}");
    let want = format!("line 2 (byte {}): invalid JSON", K8S_EV.len() + 1);
    assert!(errs[0].starts_with(&want), "{}", errs[0]);
    assert!(errs[1].starts_with("line 3") && errs[1].contains("not a JSON object"));
    assert!(errs[2].starts_with("line 4") && errs[2].contains("trailing characters"), "{}", errs[2]);
    assert!(errs[3].starts_with("line 5") && errs[3].contains("EOF"));
    assert!(errs[4].starts_with("line 6") && errs[4].contains("not a JSON object"));
    assert!(out.iter().all(|o| !matches!(o, Out::Err(_, true))), "nothing fatal");
    assert_eq!(out[0], ev(K8S_EV, K, 1, 0));
}

#[test]
fn jsonl_invalid_utf8_is_an_error() {
    let input = b"{\"a\":\"\xff\"}\n{\"b\":1}\n";
    let out = run_chunked(input, InputFormat::Jsonl, 100, 3);
    assert!(matches!(&out[0], Out::Err(s, false) if s.contains("invalid JSON")), "{out:?}");
    assert_eq!(out[1], ev(r#"{"b":1}"#, J, 2, 10));
}

#[test]
fn jsonl_oversize_lines_are_skipped_without_buffering() {
    let long = format!("{{\"a\":\"{}\"}}", "x".repeat(5000));
    let input = format!("{{\"a\":1}}\n{long}\r\n{{\"b\":2}}\n{long}");
    let out = run(&input, InputFormat::Jsonl, 64);
    assert_eq!(
        out,
        vec![
            ev(r#"{"a":1}"#, J, 1, 0),
            Out::Err("line 2 (byte 8): event of 5008 bytes exceeds the limit of 64 bytes".into(), false),
            ev(r#"{"b":2}"#, J, 3, 5018),
            Out::Err("line 4 (byte 5026): event of 5008 bytes exceeds the limit of 64 bytes".into(), false),
        ]
    );
    // Exactly at the limit is fine, also with CRLF; one byte more is not.
    let exact = format!("{{\"a\":\"{}\"}}", "x".repeat(56));
    assert_eq!(exact.len(), 64);
    let out = run(&format!("{exact}\r\n{exact}x\n"), InputFormat::Jsonl, 64);
    assert_eq!(out[0], ev(&exact, J, 1, 0));
    assert!(matches!(&out[1], Out::Err(s, false) if s.contains("65 bytes")), "{out:?}");

    // The buffer stays bounded by the limit, not by the line.
    let huge = format!("{{\"a\":\"{}\"}}\n{{}}\n", "x".repeat(8 << 20));
    let mut r = EventReader::new(huge.as_bytes(), InputFormat::Jsonl, 1024);
    assert!(matches!(r.next_event(), Err(FormatError::TooLarge { size, .. }) if size == (8 << 20) + 8));
    assert!(r.buf.len() <= 4 * CHUNK, "buffer grew to {}", r.buf.len());
    assert_eq!(r.next_event().unwrap().unwrap().bytes, b"{}");
}

#[test]
fn byte_order_mark() {
    let input = "\u{feff}{\"a\":1}\n{\"b\":2}\n";
    for f in [InputFormat::Auto, InputFormat::Jsonl, InputFormat::Json, InputFormat::K8sAudit] {
        let out = run(input, f, 100);
        if f == InputFormat::K8sAudit {
            assert_eq!(errors(&out).len(), 2);
        } else {
            assert_eq!(out[0], ev(r#"{"a":1}"#, J, 1, 3), "{f}");
        }
    }
    let out = run("{\"a\":1}\n\u{feff}{\"b\":2}\n", InputFormat::Jsonl, 100);
    assert!(matches!(&out[1], Out::Err(s, false) if s.contains("invalid JSON")), "{out:?}");
}

#[test]
fn json_array_elements_exact_bytes() {
    let input = "[\n  {\"s\":\"]},[{\\\"\"},\n  {\"n\":[[1,[2]],{\"x\":[]}]}\t,{}\n,{\"k\":\"\\\\\"}]\n";
    let out = run(input, InputFormat::Json, 100);
    assert_eq!(
        out,
        vec![
            ev(r#"{"s":"]},[{\""}"#, J, 2, 4),
            ev(r#"{"n":[[1,[2]],{"x":[]}]}"#, J, 3, 23),
            ev("{}", J, 3, 49),
            ev(r#"{"k":"\\"}"#, J, 4, 53),
        ]
    );
    assert_eq!(run(input, InputFormat::Auto, 100), out);
    assert_eq!(run("[]", InputFormat::Json, 100), vec![]);
    assert_eq!(run("  [ ]  \n", InputFormat::Auto, 100), vec![]);
}

#[test]
fn json_array_errors() {
    // Truncated: events before are delivered, then a fatal error, then the end.
    let out = run(r#"[{"a":1},{"b":"#, InputFormat::Json, 100);
    assert_eq!(out[0], ev(r#"{"a":1}"#, J, 1, 1));
    assert!(matches!(&out[1], Out::Err(s, true) if s.contains("unexpected end")), "{out:?}");
    assert_eq!(out.len(), 2);
    let out = run(r#"[{"a":1},"#, InputFormat::Json, 100);
    assert!(matches!(&out[1], Out::Err(s, true) if s.contains("unexpected end")), "{out:?}");
    // Trailing garbage.
    let out = run(r#"[{"a":1}] {"b":2}"#, InputFormat::Json, 100);
    assert!(matches!(&out[1], Out::Err(s, true) if s.contains("trailing data")), "{out:?}");
    // Missing comma, trailing comma.
    let out = run(r#"[{"a":1} {"b":2}]"#, InputFormat::Json, 100);
    assert!(matches!(&out[1], Out::Err(s, true) if s.contains("expected ','")), "{out:?}");
    let out = run(r#"[{"a":1},]"#, InputFormat::Json, 100);
    assert!(matches!(&out[1], Out::Err(s, true) if s.contains("trailing comma")), "{out:?}");
    // Bad elements are skipped and reading goes on.
    let input = format!("[1, \"{{\", {{\"a\":tru}}, [{{}}], {{\"x\":\"{}\"}}, {{\"ok\":1}}]", "y".repeat(200));
    let out = run(&input, InputFormat::Json, 100);
    let errs = errors(&out);
    assert_eq!(errs.len(), 5, "{out:?}");
    assert!(errs[0].contains("not a JSON object") && errs[1].contains("not a JSON object"));
    assert!(errs[2].contains("invalid JSON") && errs[3].contains("not a JSON object"));
    assert!(errs[4].contains("exceeds the limit"));
    assert_eq!(events(&out), vec![r#"{"ok":1}"#]);
    assert!(out.iter().all(|o| !matches!(o, Out::Err(_, true))));
}

#[test]
fn json_objects_stream_and_pretty_documents() {
    let pretty = "{\n  \"a\": [1, 2],\n  \"b\": {\"c\": \"}\"}\n}\n";
    let out = run(pretty, InputFormat::Json, 1000);
    assert_eq!(out, vec![ev(pretty.trim_end(), J, 1, 0)]);
    // Auto falls back to whole documents when the first line is incomplete.
    assert_eq!(run(pretty, InputFormat::Auto, 1000), out);
    let two = format!("{pretty}{pretty}");
    let out = run(&two, InputFormat::Auto, 1000);
    assert_eq!(out.len(), 2);
    assert_eq!(out[1], ev(pretty.trim_end(), J, 5, pretty.len() as u64));
    // A first line with two objects is not JSON lines either.
    assert_eq!(events(&run("{\"a\":1} {\"b\":2}\n{\"c\":3}", InputFormat::Auto, 100)).len(), 3);
    // Garbage between objects is fatal in the objects stream.
    let out = run("{\n\"a\":1}\nxyz\n{\"b\":2}", InputFormat::Auto, 100);
    assert!(matches!(&out[1], Out::Err(s, true) if s.contains("line 3")), "{out:?}");
    // Json mode does not take a bare scalar.
    let out = run("42", InputFormat::Json, 100);
    assert!(matches!(&out[0], Out::Err(s, true) if s.contains("expected a JSON array or object")));
    // Oversize object in a stream: skipped exactly, then the next one.
    let input = format!("{{\n\"a\":\"{}\"}}\n{{\"b\":1}}", "z".repeat(300));
    let out = run(&input, InputFormat::Auto, 100);
    assert!(matches!(&out[0], Out::Err(s, false) if s.contains("exceeds")), "{out:?}");
    assert_eq!(events(&out), vec![r#"{"b":1}"#]);
}

#[test]
fn auto_non_json_input_reports_each_line() {
    let out = run("hello\nworld\n{\"a\":1}\n", InputFormat::Auto, 100);
    assert_eq!(errors(&out).len(), 2);
    assert_eq!(events(&out), vec![r#"{"a":1}"#]);
    assert_eq!(run("", InputFormat::Auto, 100), vec![]);
    assert_eq!(run(" \n\r\n", InputFormat::Auto, 100), vec![]);
}

/// Pretty-printed with `kind` first, or on one line with `kind` last.
fn event_list(items: &[String], kind_first: bool) -> String {
    let items = items.join(if kind_first { ",\n    " } else { "," });
    if kind_first {
        format!(
            "{{\n  \"kind\": \"EventList\",\n  \"apiVersion\": \"audit.k8s.io/v1\",\n  \"metadata\": {{}},\n  \"items\": [\n    {items}\n  ]\n}}\n"
        )
    } else {
        format!("{{\"metadata\":{{}},\"items\":[{items}],\"kind\":\"EventList\",\"apiVersion\":\"audit.k8s.io/v1\"}}\n")
    }
}

fn item(i: usize) -> String {
    format!(
        r#"{{"level":"Metadata","auditID":"id-{i}","verb":"get","user":{{"username":"u{i}"}},"stage":"ResponseComplete"}}"#
    )
}

#[test]
fn event_list_is_streamed_item_by_item() {
    let items: Vec<String> = (0..50).map(item).collect();
    let list = event_list(&items, true);
    // The list is far larger than the limit; each item fits.
    assert!(list.len() > 4000);
    for f in [InputFormat::Auto, InputFormat::K8sAudit] {
        let out = run(&format!("{list}{list}"), f, 200);
        assert_eq!(out.len(), 100, "{out:?}");
        for (i, o) in out.iter().enumerate() {
            let Out::Ev(s, fmt, line, _) = o else { panic!("{o:?}") };
            assert_eq!(s, &items[i % 50]);
            assert_eq!(*fmt, K);
            assert_eq!(*line, (i % 50) as u64 + 6 + if i >= 50 { 57 } else { 0 });
        }
    }
    // In Json mode an EventList is just one (here too large) object.
    let out = run(&list, InputFormat::Json, 200);
    assert!(matches!(&out[..], [Out::Err(s, false)] if s.contains("exceeds")), "{out:?}");
    let out = run(&list, InputFormat::Json, 100_000);
    assert_eq!(out, vec![ev(list.trim_end(), J, 1, 0)]);
}

#[test]
fn event_list_items_errors_and_tail() {
    let items = vec![
        item(0),
        "{\"kind\":\"Pod\"}".to_string(),
        "7".into(),
        format!("{{\"x\":\"{}\"}}", "q".repeat(300)),
        item(4),
    ];
    let list = event_list(&items, true);
    let out = run(&list, InputFormat::K8sAudit, 200);
    assert_eq!(events(&out), vec![items[0].as_str(), items[4].as_str()]);
    let errs = errors(&out);
    assert!(errs[0].contains("not a Kubernetes audit Event (kind is \"Pod\""), "{}", errs[0]);
    assert!(errs[1].contains("not a JSON object"));
    assert!(errs[2].contains("exceeds"));
    // In Auto a non-Event item is generic JSON.
    let out = run(&list, InputFormat::Auto, 200);
    let pod = list.find("{\"kind\":\"Pod\"}").unwrap() as u64;
    assert_eq!(out[1], ev("{\"kind\":\"Pod\"}", J, 7, pod));
    // Members after "items" are skipped; a broken tail is fatal.
    let tail = format!(
        "{{\"kind\":\"EventList\",\"items\":[{}],\"extra\":{{\"a\":[1]}}}}{{\"kind\":\"EventList\",\"items\":[]}}",
        item(1)
    );
    assert_eq!(run(&tail, InputFormat::Auto, 200), vec![ev(&item(1), K, 1, 29)]);
    let out = run(&format!("{{\"kind\":\"EventList\",\"items\":[{}] x", item(1)), InputFormat::Auto, 200);
    assert!(matches!(&out[1], Out::Err(s, true) if s.contains("after the EventList items")), "{out:?}");
    let out = run(&format!("{{\"kind\":\"EventList\",\"items\":[{}", item(1)), InputFormat::Auto, 200);
    assert!(matches!(&out[1], Out::Err(s, true) if s.contains("unexpected end")), "{out:?}");
}

#[test]
fn event_list_read_whole_when_kind_comes_late() {
    let items: Vec<String> = (0..3).map(item).collect();
    let list = event_list(&items, false);
    let out = run(&list, InputFormat::K8sAudit, 10_000);
    assert_eq!(events(&out), items.iter().map(String::as_str).collect::<Vec<_>>());
    let Out::Ev(_, f, line, off) = &out[1] else { panic!() };
    assert_eq!((*f, *line, *off), (K, 1, list.find(&items[1]).unwrap() as u64));
    // Too large to read whole and not streamable: one error.
    let out = run(&list, InputFormat::K8sAudit, 200);
    assert!(matches!(&out[..], [Out::Err(s, false)] if s.contains("exceeds")), "{out:?}");
    // An EventList line inside JSON lines is expanded too (after an Event line).
    let input = format!("{K8S_EV}\n{}{K8S_EV}\n", event_list(&items, false));
    let out = run(&input, InputFormat::Auto, 10_000);
    assert_eq!(out.len(), 5);
    assert_eq!(out[2], ev(&items[1], K, 2, input.find(&items[1]).unwrap() as u64));
    assert_eq!(out[4], ev(K8S_EV, K, 3, input.rfind(K8S_EV).unwrap() as u64));
}

#[test]
fn k8s_mode_requires_events() {
    let input = format!("{K8S_EV}\n{{\"kind\": 0}}\n{{\"verb\":\"get\"}}\n{K8S_EV}\n");
    let out = run(&input, InputFormat::K8sAudit, 1000);
    assert_eq!(out[0], ev(K8S_EV, K, 1, 0));
    assert!(
        matches!(&out[1], Out::Err(s, false) if s.contains("line 2") && s.contains("not a Kubernetes audit Event (kind is 0")),
        "{out:?}"
    );
    assert!(matches!(&out[2], Out::Err(s, false) if s.contains("line 3")), "{out:?}");
    assert_eq!(out[3], ev(K8S_EV, K, 4, (K8S_EV.len() + 1 + 12 + 15) as u64));
    let out = run(&input, InputFormat::Auto, 1000);
    assert_eq!(out.iter().map(|o| matches!(o, Out::Ev(_, K, ..))).collect::<Vec<_>>(), vec![true, false, false, true]);
    assert!(errors(&out).is_empty());
}

#[test]
fn batches() {
    let input = "{\"a\":1}\n{\"b\":2}\nbad\n{\"c\":3}\n{\"d\":4}\n";
    let mut r = EventReader::new(input.as_bytes(), InputFormat::Jsonl, 100);
    let mut b = Batch::new();
    assert_eq!(r.read_batch(10, 1 << 20, &mut b).unwrap_err().location().unwrap().line, 3);
    assert_eq!(b.iter().map(|e| e.bytes).collect::<Vec<_>>(), vec![&b"{\"a\":1}"[..], b"{\"b\":2}"]);
    assert_eq!(r.read_batch(1, 1 << 20, &mut b).unwrap(), 1);
    assert_eq!(b.get(0).unwrap().location, Location { line: 4, byte_offset: 20 });
    // max_bytes stops the batch after the event that reaches it.
    assert_eq!(r.read_batch(10, 1, &mut b).unwrap(), 1);
    assert_eq!(b.data_len(), 7);
    assert_eq!(r.read_batch(10, 100, &mut b).unwrap(), 0);
    assert!(b.is_empty());
}

#[test]
fn reader_normalizes_in_the_same_parse() {
    let input = format!("{K8S_EV}\n{{\"actor\":\"bob\",\"time\":1}}\n");
    let n = Normalizer::new(&FieldPointers::default());
    let mut r = EventReader::new(input.as_bytes(), InputFormat::Auto, 1000).with_normalizer(n.clone());
    let mut b = Batch::new();
    assert_eq!(r.read_batch(10, 1 << 20, &mut b).unwrap(), 2);
    for (i, e) in b.iter().enumerate() {
        assert_eq!(Some(&n.parse(e.bytes, Some(e.format)).unwrap().1), b.normalized(i));
    }
    assert_eq!(b.normalized(1).unwrap().event_time_ns, Some(1_000_000_000));
    assert_eq!(b.normalized(0).unwrap().action.as_deref(), Some("get"));
}

#[test]
fn io_errors_are_fatal() {
    struct Failing;
    impl Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::other("disk on fire"))
        }
    }
    let mut r = EventReader::new(BufReader::new(Failing), InputFormat::Auto, 100);
    let e = r.next_event().unwrap_err();
    assert!(e.is_fatal() && e.to_string().contains("disk on fire"));
    assert!(r.next_event().unwrap().is_none());
}

#[test]
fn invalid_reason_is_exposed() {
    let mut r = EventReader::new(&b"[5]"[..], InputFormat::Json, 100);
    match r.next_event() {
        Err(FormatError::InvalidEvent { location: Some(l), reason: InvalidReason::NotObject }) => {
            assert_eq!(l, Location { line: 1, byte_offset: 1 })
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn auditd_lines_are_grouped_in_auto_mode() {
    let a1 = "type=SYSCALL msg=audit(1.000:7): syscall=2 success=no";
    let b1 = "type=USER_LOGIN msg=audit(1.001:8): msg='acct=\"x\" res=success'";
    let a2 = "type=PATH msg=audit(1.000:7): item=0 name=\"/etc/shadow\"";
    let a3 = "type=EOE msg=audit(1.000:7): ";
    let input = format!("{a1}\n{b1}\r\n{a2}\nnot a record\n\n{a3}\n");
    let out = run(&input, InputFormat::Auto, 1000);
    let a = format!("{a1}\n{a2}\n{a3}");
    assert_eq!(out.len(), 3, "{out:?}");
    assert!(matches!(&out[0], Out::Err(e, false) if e.contains("line 4") && e.contains("not a Linux audit record")));
    assert_eq!(out[1], ev(&a, EventFormat::Auditd, 1, 0));
    assert_eq!(out[2], ev(b1, EventFormat::Auditd, 2, a1.len() as u64 + 1));
    // Forced, and too large.
    let out = run(&input, InputFormat::Auditd, 70);
    assert_eq!(errors(&out).len(), 2, "{out:?}");
    assert!(errors(&out)[1].contains("exceeds the limit"), "{out:?}");
    assert_eq!(events(&out), vec![b1]);
}

#[test]
fn cloudtrail_records_are_streamed_when_first() {
    let r1 = r#"{"eventSource":"s3.amazonaws.com","eventName":"GetObject"}"#;
    let r2 = r#"{"eventName":"ConsoleLogin"}"#;
    let file = format!("{{\"Records\":[{r1},\n {r2}]}}\n");
    let out = run(&file, InputFormat::Auto, 80);
    let second = 12 + r1.len() as u64 + 3;
    assert_eq!(out, vec![ev(r1, EventFormat::CloudTrail, 1, 12), ev(r2, EventFormat::CloudTrail, 2, second)]);
    assert_eq!(run(&file, InputFormat::CloudTrail, 80), out);
    // Records not first (a digest-like object): one JSON entry.
    let other = format!("{{\"a\":1,\"Records\":[{r1}]}}");
    assert_eq!(run(&other, InputFormat::Auto, 1000), vec![ev(&other, J, 1, 0)]);
    // A line of another shape under --format cloudtrail is rejected.
    let out = run(&format!("{r1}\n{{\"x\":1}}\n"), InputFormat::CloudTrail, 1000);
    assert_eq!(events(&out), vec![r1]);
    assert!(errors(&out)[0].contains("not a cloudtrail event"), "{out:?}");
}

/// A rewriter for tests: wraps events whose actor is `seal` in `[...]` under code
/// 0x81, sets their actor to `sealed`, keeps the others, and stops at actor `stop`;
/// it checks the record and fields it is given against a parse of its own.
struct Wrap {
    normalizer: Normalizer,
    seen: usize,
}

impl Rewrite for Wrap {
    fn rewrite(
        &mut self,
        event: RawEvent<'_>,
        record: Option<CaptureRecordRef<'_>>,
        fields: &mut Normalized,
        out: &mut Vec<u8>,
    ) -> Result<Option<u8>, RewriteStop> {
        self.seen += 1;
        let mut want = CaptureRecord::default();
        let (_, plain) = self.normalizer.parse_recording(event.bytes, Some(event.format), &mut want).unwrap();
        assert_eq!(record, Some(want.view()), "the record of {:?}", String::from_utf8_lossy(event.bytes));
        assert_eq!(*fields, plain);
        match fields.actor.as_deref() {
            Some("stop") => Err(RewriteStop),
            Some("seal") => {
                out.push(b'[');
                out.extend_from_slice(event.bytes);
                out.push(b']');
                fields.actor = Some("sealed".into());
                Ok(Some(0x81))
            }
            _ => Ok(None),
        }
    }
}

#[test]
fn a_rewriting_read_stores_what_the_rewriter_writes() {
    let events = [
        r#"{"actor":"seal","action":"a","ip":"10.0.0.1"}"#,
        r#"{"actor":"keep","action":"b"}"#,
        r#"{"actor":"s\u0065al","action":"c"}"#,
        r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a1","stage":"ResponseComplete","verb":"get","user":{"username":"seal"}}"#,
        r#"{"actor":"stop","action":"d"}"#,
        r#"{"actor":"keep","action":"e"}"#,
    ];
    let input = events.join("\n");
    let located = [crate::sealed::Pointer::parse("/actor").unwrap(), crate::sealed::Pointer::parse("/ip").unwrap()];
    let normalizer = Normalizer::with_located(&FieldPointers::default(), &located);
    let mut wrap = Wrap { normalizer: normalizer.clone(), seen: 0 };
    let mut reader = EventReader::new(input.as_bytes(), InputFormat::Auto, 1 << 20).with_normalizer(normalizer);
    let mut batch = Batch::new();
    // Stops before the fifth event.
    assert_eq!(reader.read_batch_rewriting(100, 1 << 20, &mut batch, &mut wrap).unwrap(), 4);
    assert_eq!(wrap.seen, 5);
    for (i, event) in events.iter().enumerate().take(4) {
        let e = batch.get(i).unwrap();
        let sealed = i != 1;
        let want = if sealed { format!("[{event}]") } else { event.to_string() };
        assert_eq!(std::str::from_utf8(e.bytes).unwrap(), want, "event {i}");
        assert_eq!(batch.stored_code(i), sealed.then_some(0x81), "event {i}");
        let actor = batch.normalized(i).unwrap().actor.as_deref();
        assert_eq!(actor, Some(if sealed { "sealed" } else { "keep" }), "event {i}");
    }
    assert_eq!(batch.get(4), None);
    // The next read goes on after the dropped event, and a plain read stores none.
    assert_eq!(reader.read_batch(100, 1 << 20, &mut batch).unwrap(), 1);
    assert_eq!(batch.get(0).unwrap().bytes, events[5].as_bytes());
    assert_eq!(batch.stored_code(0), None);
}
