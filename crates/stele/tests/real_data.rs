//! Real input end to end: the public audit-log samples of `../shared/data` imported
//! with the `stele` binary, then checked against second implementations written here
//! (serde_json over the raw files, an independent RFC 3339 parser, RFC 9162 inclusion
//! proof verification from stele-tlog) — plus malformed input, size limits, the writer
//! lock and format versions.

mod common;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use common::*;
use serde_json::Value;
use stele_tlog::hash::{Hash, leaf_hash, sha256};
use stele_tlog::merkle::verify_inclusion;

/// JSON-lines samples imported each into its own stream.
const JSONL_STREAMS: &[(&str, &str)] = &[
    ("cloudtrail", "cloudtrail/panther-analysis_AWS.CloudTrail.jsonl"),
    ("gcp-audit", "gcp-audit/panther-analysis_GCP.AuditLog.jsonl"),
    ("okta", "okta/panther-analysis_Okta.SystemLog.jsonl"),
    ("github-audit", "github-audit/panther-analysis_GitHub.Audit.jsonl"),
    ("gitlab-audit", "gitlab-audit/panther-analysis_GitLab.Audit.jsonl"),
    ("google-workspace", "google-workspace/panther-analysis_GSuite.ActivityEvent.jsonl"),
    ("k8s-aks", "k8s-audit/panther-analysis_k8s-audit-aks-wrapped.jsonl"),
    ("k8s-gke", "k8s-audit/panther-analysis_k8s-audit-gke-cloudaudit.jsonl"),
];

/// Generic JSON time pointers stele uses by default (its documented list), for the few
/// non-Kubernetes objects in the Kubernetes samples.
const GENERIC_TIME_POINTERS: &[&str] =
    &["/eventTime", "/timestamp", "/published", "/@timestamp", "/created_at", "/id/time", "/time", "/ts", "/date"];

fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_nanos() as i64
}

/// What entry `index` of the log must be.
enum Expected {
    /// stele's own record registering a stream.
    Registration { stream: String },
    /// An event from a sample file.
    Event { stream: String, source: SourceEvent },
}

/// Whether stele classifies an object as a Kubernetes audit Event (its documented rule:
/// `kind` "Event" with an audit `apiVersion`, or without `apiVersion` and with a
/// string `verb`).
fn is_k8s_event(v: &Value) -> bool {
    v["kind"] == "Event"
        && match v.get("apiVersion") {
            Some(a) => a == "audit.k8s.io/v1" || a == "audit.k8s.io/v1beta1",
            None => v["verb"].is_string(),
        }
}

/// The event time of a sample, computed here: for Kubernetes events `stageTimestamp`,
/// else `requestReceivedTimestamp`; for other objects the first generic time pointer
/// that holds a string. `None` means stele falls back to the received time.
fn event_time_ns(v: &Value) -> Option<i64> {
    let candidates: Vec<&Value> = if is_k8s_event(v) {
        vec![&v["stageTimestamp"], &v["requestReceivedTimestamp"]]
    } else {
        GENERIC_TIME_POINTERS.iter().filter_map(|p| v.pointer(p)).collect()
    };
    candidates.into_iter().filter_map(Value::as_str).find_map(parse_time_ns)
}

fn rfc3339(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let nanos = ns.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

fn query_count(dir: &Path, args: &[&str]) -> usize {
    let r = stele_at("query", dir, args);
    r.expect_code(0, &format!("query {args:?}"));
    for line in r.stdout.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("query output is not JSON lines ({e}): {line}"));
        assert!(v["index"].is_u64() && v["event"].is_object(), "query line lacks index/event: {line}");
    }
    count_lines(&r.stdout)
}

#[test]
fn real_samples_import_verify_prove_and_query() {
    let Some(data) = shared_data() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    init(&dir);

    // The native Kubernetes samples into the default stream, in one import.
    let mut expected: Vec<Expected> = vec![Expected::Registration { stream: "default".into() }];
    let k8s: Vec<SourceEvent> = k8s_files(&data).iter().flat_map(|f| source_events(f)).collect();
    assert!(k8s.len() > 250, "only {} Kubernetes events found", k8s.len());
    assert!(
        k8s.iter().any(|e| e.value == serde_json::json!({"kind": 0})),
        "fal_01_003.json ({{\"kind\": 0}}) should be among the samples"
    );
    let before_import = now_ns();
    let r = import(&dir, &[], &k8s_files(&data));
    let after_import = now_ns();
    assert!(r.stdout.contains(&format!("tree size {}", k8s.len() + 1)), "{r}");
    expected.extend(k8s.iter().map(|e| Expected::Event { stream: "default".into(), source: e.clone() }));

    // Each JSON-lines sample into its own stream.
    for (stream, rel) in JSONL_STREAMS {
        let path = data.join(rel);
        let events = source_events(&path);
        let first = expected.len() + 1;
        let r = import(&dir, &["--stream", stream], std::slice::from_ref(&path));
        assert!(
            r.stdout.contains(&format!(
                "appended {} entries (indexes {first}..={})",
                events.len(),
                first + events.len() - 1
            )),
            "{stream}: {r}"
        );
        expected.push(Expected::Registration { stream: stream.to_string() });
        expected.extend(events.into_iter().map(|e| Expected::Event { stream: stream.to_string(), source: e }));
    }
    let n = expected.len() as u64;

    // The whole directory verifies, and the newest checkpoint covers every entry.
    let r = stele_at("verify", &dir, &[]);
    r.expect_code(0, "verify");
    assert!(r.stdout.contains(&format!("ok: tree size {n} ")), "{r}");
    let r = stele_at("checkpoint", &dir, &[]);
    r.expect_code(0, "checkpoint");
    let cp = parse_note(&r.stdout);
    assert_eq!(cp.origin, "test.stele.example/log");
    assert_eq!(cp.tree_size, n, "checkpoint tree size");
    let root = Hash::from_base64(&cp.root_b64).expect("root is base64");

    // `get`: every registration and Kubernetes entry, and every third of the others.
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut checked = 0;
    for (index, want) in expected.iter().enumerate() {
        let index = index as u64;
        if let Expected::Event { stream, .. } = want
            && stream != "default"
            && !index.is_multiple_of(3)
        {
            continue;
        }
        let r = stele_at("get", &dir, &[&index.to_string()]);
        r.expect_code(0, &format!("get {index}"));
        let got: Value =
            serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("get {index}: not JSON ({e}): {}", r.stdout));
        assert_eq!(got["index"], index);
        let leaf = b64.decode(got["leaf"].as_str().expect("leaf")).expect("leaf base64");
        assert_eq!(leaf.len(), 68, "get {index}: leaf length");
        let lh = leaf_hash(&leaf);
        assert_eq!(
            got["leaf_hash"].as_str(),
            Some(lh.to_base64().as_str()),
            "get {index}: leaf_hash is SHA-256(0x00 ‖ leaf), base64"
        );
        match want {
            Expected::Registration { stream } => {
                assert_eq!(got["stream"], "_stele/system", "get {index}");
                assert_eq!(got["format"], "stele-record", "get {index}");
                assert_eq!(got["event"]["type"], "stream", "get {index}");
                assert_eq!(got["event"]["name"], stream.as_str(), "get {index}");
            }
            Expected::Event { stream, source } => {
                let at = format!("get {index} ({}:{})", source.file.display(), source.line);
                assert_eq!(got["stream"], stream.as_str(), "{at}");
                assert_eq!(got["event"], source.value, "{at}: event differs from the source line");
                let want_format = if is_k8s_event(&source.value) { "k8s-audit" } else { "json" };
                if stream == "default" {
                    assert_eq!(got["format"], want_format, "{at}");
                }
                // The leaf commits to exactly the bytes of the source line:
                // length, and SHA-256(salt ‖ payload).
                let len = u32::from_be_bytes(leaf[16..20].try_into().expect("4"));
                assert_eq!(len as usize, source.bytes.len(), "{at}: payload length");
                let mut salted = leaf[20..36].to_vec();
                salted.extend_from_slice(&source.bytes);
                assert_eq!(
                    &leaf[36..68],
                    &sha256(&salted).0[..],
                    "{at}: payload digest is not over the exact source bytes"
                );
            }
        }
        let proof = &got["inclusion_proof"];
        assert_eq!(proof["leaf_index"], index);
        assert_eq!(proof["tree_size"], n, "get {index}: proof against the newest checkpoint");
        assert_eq!(proof["root_hash"].as_str(), Some(cp.root_b64.as_str()), "get {index}: proof root");
        let hashes: Vec<Hash> = proof["hashes"]
            .as_array()
            .expect("hashes")
            .iter()
            .map(|h| Hash::from_base64(h.as_str().expect("string")).expect("base64 hash"))
            .collect();
        verify_inclusion(index, n, &lh, &hashes, &root)
            .unwrap_or_else(|e| panic!("get {index}: inclusion proof: {e:?}"));
        checked += 1;
    }
    assert!(checked > 500, "only {checked} entries checked with get");
    stele_at("get", &dir, &[&n.to_string()]).expect_code(2, "get past the end");

    // Queries against counts computed here from the raw files.
    let mut by_user: BTreeMap<String, usize> = BTreeMap::new();
    let mut by_verb: BTreeMap<String, usize> = BTreeMap::new();
    for e in &k8s {
        if let Some(u) = e.value.pointer("/user/username").and_then(Value::as_str) {
            *by_user.entry(u.to_string()).or_default() += 1;
        }
        if let Some(v) = e.value["verb"].as_str() {
            *by_verb.entry(v.to_string()).or_default() += 1;
        }
    }
    assert!(by_user.len() > 20 && by_verb.len() > 5, "{by_user:?} {by_verb:?}");
    for (user, want) in &by_user {
        assert_eq!(query_count(&dir, &["--stream", "default", "--actor", user]), *want, "query --actor {user}");
    }
    for (verb, want) in &by_verb {
        assert_eq!(query_count(&dir, &["--stream", "default", "--action", verb]), *want, "query --action {verb}");
    }
    // A prefix filter: every service account.
    let sa = k8s
        .iter()
        .filter(|e| {
            e.value
                .pointer("/user/username")
                .and_then(Value::as_str)
                .is_some_and(|u| u.starts_with("system:serviceaccount:"))
        })
        .count();
    assert_eq!(query_count(&dir, &["--stream", "default", "--actor", "system:serviceaccount:*"]), sa);
    // Without --stream, every user stream (not stele's own records).
    assert_eq!(query_count(&dir, &[]), expected.iter().filter(|e| matches!(e, Expected::Event { .. })).count());

    // Time ranges by the event's own time; events without one count by received time.
    let times: Vec<Option<i64>> = k8s.iter().map(|e| event_time_ns(&e.value)).collect();
    assert!(times.iter().filter(|t| t.is_some()).count() > 90, "too few timed events");
    assert!(times.iter().filter(|t| t.is_none()).count() > 10, "too few untimed events");
    let count_in = |since: i64, until: i64| times.iter().filter(|t| t.is_some_and(|t| since <= t && t < until)).count();
    let mut sorted: Vec<i64> = times.iter().flatten().copied().collect();
    sorted.sort_unstable();
    let ranges: Vec<(i64, i64)> = vec![
        (parse_time_ns("2018-10-26T00:00:00Z").unwrap(), parse_time_ns("2019-06-22T00:00:00Z").unwrap()),
        // Bounds on event times themselves: --since is inclusive, --until exclusive.
        (sorted[sorted.len() / 4], sorted[sorted.len() * 3 / 4]),
        (parse_time_ns("2022-11-29T00:09:04.38Z").unwrap(), parse_time_ns("2025-08-26T17:40:49.330617Z").unwrap()),
    ];
    for (since, until) in ranges {
        let want = count_in(since, until);
        assert!(want > 0, "empty test range {} .. {}", rfc3339(since), rfc3339(until));
        let got = query_count(&dir, &["--stream", "default", "--since", &rfc3339(since), "--until", &rfc3339(until)]);
        assert_eq!(got, want, "query --since {} --until {}", rfc3339(since), rfc3339(until));
    }
    // Untimed events fall back to the time they were received (during the import).
    let untimed = times.iter().filter(|t| t.is_none()).count();
    let got = query_count(
        &dir,
        &["--stream", "default", "--since", &rfc3339(before_import), "--until", &rfc3339(after_import + 1)],
    );
    assert_eq!(got, untimed, "events without a time of their own, by received time");
    let got = query_count(&dir, &["--stream", "default", "--by", "received", "--since", &rfc3339(before_import)]);
    assert_eq!(got, k8s.len(), "every event by received time");
}

#[test]
fn non_event_object_is_json_in_auto_format_and_refused_as_k8s_audit() {
    let Some(data) = shared_data() else { return };
    let file = data.join("k8s-audit/falcosecurity-falco/k8s_audit/fal_01_003.json");
    let tmp = tempfile::tempdir().expect("tempdir");

    let strict = tmp.path().join("strict");
    init(&strict);
    let r = stele_at("import", &strict, &["--format", "k8s-audit", file.to_str().expect("utf-8 path")]);
    r.expect_code(2, "k8s-audit import of {\"kind\": 0}");
    assert!(r.stderr.contains("fal_01_003.json") && r.stderr.contains("not a Kubernetes audit Event"), "{r}");
    assert!(r.stdout.contains("appended 0 entries"), "{r}");
    stele_at("verify", &strict, &[]).expect_code(0, "verify after the refused import");
    stele_at("get", &strict, &["0"]).expect_code(2, "nothing was appended");

    let auto = tmp.path().join("auto");
    init(&auto);
    import(&auto, &[], std::slice::from_ref(&file));
    let r = stele_at("get", &auto, &["1"]);
    r.expect_code(0, "get 1");
    let got: Value = serde_json::from_str(&r.stdout).expect("get output is JSON");
    assert_eq!(got["event"], serde_json::json!({"kind": 0}));
    assert_eq!(got["format"], "json");
}

/// Five real Kubernetes events as JSON lines, with line 3 cut short (invalid JSON).
fn five_lines_bad_third(data: &Path, at: &Path) -> (PathBuf, Vec<SourceEvent>) {
    let events: Vec<SourceEvent> =
        source_events(&data.join("k8s-audit/panther-analysis_k8s-audit-native.jsonl")).into_iter().take(5).collect();
    let path = at.join("bad-line-3.jsonl");
    let mut f = std::fs::File::create(&path).expect("create");
    for (i, e) in events.iter().enumerate() {
        let bytes = if i == 2 { &e.bytes[..e.bytes.len() / 2] } else { &e.bytes[..] };
        f.write_all(bytes).and_then(|_| f.write_all(b"\n")).expect("write");
    }
    (path, events)
}

fn assert_events(dir: &Path, want: &[&SourceEvent]) {
    let n = want.len() as u64 + 1;
    let r = stele_at("verify", dir, &[]);
    r.expect_code(0, "verify");
    assert!(r.stdout.contains(&format!("ok: tree size {n} ")), "{r}");
    let r = stele_at("checkpoint", dir, &[]);
    r.expect_code(0, "checkpoint");
    assert_eq!(parse_note(&r.stdout).tree_size, n, "the committed entries are signed");
    for (i, e) in want.iter().enumerate() {
        let r = stele_at("get", dir, &[&(i + 1).to_string()]);
        r.expect_code(0, "get");
        let got: Value = serde_json::from_str(&r.stdout).expect("JSON");
        assert_eq!(got["event"], e.value, "entry {} is source line {}", i + 1, e.line);
    }
    stele_at("get", dir, &[&n.to_string()]).expect_code(2, "nothing after the committed entries");
}

#[test]
fn bad_line_stops_the_import_after_committing_what_came_before() {
    let Some(data) = shared_data() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let (file, events) = five_lines_bad_third(&data, tmp.path());
    let dir = tmp.path().join("data");
    init(&dir);
    let r = stele_at("import", &dir, &[file.to_str().expect("utf-8 path")]);
    r.expect_code(2, "import with a bad line 3");
    assert!(r.stderr.contains(&format!("{}:3:", file.display())) && r.stderr.contains("line 3"), "{r}");
    assert!(r.stdout.contains("appended 2 entries (indexes 1..=2)"), "{r}");
    assert_events(&dir, &[&events[0], &events[1]]);

    let dir = tmp.path().join("skip");
    init(&dir);
    let r = stele_at("import", &dir, &["--skip-invalid", file.to_str().expect("utf-8 path")]);
    r.expect_code(0, "import --skip-invalid");
    assert!(r.stderr.contains(&format!("skipped {}:3:", file.display())), "{r}");
    assert!(!r.stderr.contains(":1:") && !r.stderr.contains(":4:"), "only line 3 is skipped: {r}");
    assert_events(&dir, &[&events[0], &events[1], &events[3], &events[4]]);
}

#[test]
fn event_over_max_entry_bytes_is_refused() {
    let Some(data) = shared_data() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = tmp.path().join("stele.toml");
    std::fs::write(&config, "max_entry_bytes = 1000\n").expect("write config");
    let events = source_events(&data.join("k8s-audit/panther-analysis_k8s-audit-native.jsonl"));
    let small: Vec<&SourceEvent> = events.iter().filter(|e| e.bytes.len() <= 1000).take(2).collect();
    let big = events.iter().find(|e| e.bytes.len() > 1000).expect("a real event over 1000 bytes");
    let file = tmp.path().join("events.jsonl");
    let mut text = Vec::new();
    for e in [small[0], small[1], big] {
        text.extend_from_slice(&e.bytes);
        text.push(b'\n');
    }
    std::fs::write(&file, text).expect("write events");
    let dir = tmp.path().join("data");
    init(&dir);
    let r = stele_os(&[
        "--config".as_ref(),
        config.as_os_str(),
        "import".as_ref(),
        "--data".as_ref(),
        dir.as_os_str(),
        file.as_os_str(),
    ]);
    r.expect_code(2, "import of an event over max_entry_bytes");
    assert!(r.stderr.contains(&format!("{}:3:", file.display())) && r.stderr.contains("1000"), "{r}");
    assert_events(&dir, &[small[0], small[1]]);
    // The same file imports under the default limit.
    import(&dir, &[], std::slice::from_ref(&file));
}

#[test]
fn lines_longer_than_a_read_block_import_whole() {
    // `stele import` hands 4 MiB blocks to its parsers: a 4.5 MiB event spans two
    // blocks, and a line of 8 MiB and more is over the default event limit.
    let tmp = tempfile::tempdir().expect("tempdir");
    let big = |who: &str, n: usize| format!(r#"{{"actor":"{who}","action":"upload","note":"{}"}}"#, "x".repeat(n));
    let lines = [
        r#"{"actor":"alice","action":"login"}"#.to_string(),
        big("bob", 9 << 19),
        big("carol", (8 << 20) + 10),
        r#"{"actor":"dave","action":"logout"}"#.to_string(),
        big("erin", 9 << 19),
    ];
    let file = tmp.path().join("events.jsonl");
    // The last line has no line end.
    std::fs::write(&file, lines.join("\n")).expect("write events");
    let check = |dir: &Path, want: &[&String]| {
        let r = stele_at("verify", dir, &[]);
        r.expect_code(0, "verify");
        assert!(r.stdout.contains(&format!("ok: tree size {} ", want.len() + 1)), "{r}");
        for (i, line) in want.iter().enumerate() {
            let r = stele_at("get", dir, &[&(i + 1).to_string()]);
            r.expect_code(0, "get");
            let got: Value = serde_json::from_str(&r.stdout).expect("JSON");
            let line: Value = serde_json::from_str(line).expect("JSON");
            assert_eq!(got["event"], line, "entry {}", i + 1);
        }
    };
    // The line over the limit stops the import, naming its line.
    let dir = tmp.path().join("stop");
    init(&dir);
    let r = stele_os(&["import".as_ref(), "--data".as_ref(), dir.as_os_str(), file.as_os_str()]);
    r.expect_code(2, "import of a line over max_entry_bytes");
    assert!(r.stderr.contains(&format!("{}:3:", file.display())) && r.stderr.contains("8388608"), "{r}");
    check(&dir, &[&lines[0], &lines[1]]);
    // Skipped, the lines after it are imported whole.
    let dir = tmp.path().join("skip");
    init(&dir);
    let r = import(&dir, &["--skip-invalid"], std::slice::from_ref(&file));
    assert!(r.stderr.contains(&format!("skipped {}:3:", file.display())), "{r}");
    check(&dir, &[&lines[0], &lines[1], &lines[3], &lines[4]]);
}

#[test]
fn import_into_a_locked_directory_points_to_the_server() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    init(&dir);
    let events = tmp.path().join("one.jsonl");
    std::fs::write(&events, "{\"actor\":\"alice\",\"action\":\"login\"}\n").expect("write");
    let lock = std::fs::File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join("LOCK"))
        .expect("LOCK");
    lock.try_lock().expect("take the writer lock as a running server would");
    let r = stele_at("import", &dir, &[events.to_str().expect("utf-8 path")]);
    r.expect_code(2, "import while another process holds the lock");
    assert!(r.stderr.contains("send the events to the server"), "{r}");
    // Readers do not need the lock.
    stele_at("verify", &dir, &[]).expect_code(0, "verify beside the lock holder");
    drop(lock);
    import(&dir, &[], &[events]);
}

#[test]
fn newer_format_versions_are_refused_with_a_message_to_upgrade() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = tmp.path().join("base");
    init(&base);
    let events = tmp.path().join("one.jsonl");
    std::fs::write(&events, "{\"actor\":\"alice\",\"action\":\"login\"}\n").expect("write");
    import(&base, &[], std::slice::from_ref(&events));
    let events = events.to_str().expect("utf-8 path");
    let commands: [(&str, Vec<&str>); 6] = [
        ("import", vec![events]),
        ("verify", vec![]),
        ("query", vec![]),
        ("get", vec!["0"]),
        ("checkpoint", vec![]),
        ("reindex", vec![]),
    ];
    let check = |dir: &Path, what: &str| {
        for (cmd, extra) in &commands {
            let r = stele_at(cmd, dir, extra);
            r.expect_code(2, &format!("{cmd} with {what}"));
            assert!(r.stderr.contains("upgrade"), "{cmd} with {what}: {r}");
        }
    };

    let dir = tmp.path().join("meta");
    copy_dir(&base, &dir);
    let mut meta: Value =
        serde_json::from_slice(&std::fs::read(dir.join("meta.json")).expect("meta.json")).expect("JSON");
    assert_eq!(meta["format_version"], 1);
    meta["format_version"] = 99.into();
    std::fs::write(dir.join("meta.json"), serde_json::to_vec_pretty(&meta).expect("JSON")).expect("write");
    check(&dir, "meta.json format_version 99");

    for file in ["leaves.dat", "hashes/level-00.dat"] {
        let dir = tmp.path().join(file.replace('/', "_"));
        copy_dir(&base, &dir);
        let mut bytes = std::fs::read(dir.join(file)).expect(file);
        assert_eq!(&bytes[..6], b"STELE\0");
        assert_eq!(&bytes[8..10], &[0, 1], "{file}: version 1");
        bytes[8..10].copy_from_slice(&99u16.to_be_bytes());
        std::fs::write(dir.join(file), bytes).expect("write");
        check(&dir, &format!("{file} header version 99"));
    }
    // Untouched, the same directory works with every command.
    for (cmd, extra) in &commands {
        stele_at(cmd, &base, extra).expect_code(0, cmd);
    }
}
