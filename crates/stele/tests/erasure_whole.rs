//! Whole-event sealing end to end through the binary: a rule whose fields hold the
//! root pointer `""` and a `subject_default`, over the real Kubernetes audit sample
//! (where 45 of 202 events have no user name). Every event is stored sealed, none of
//! its text is anywhere in the data directory (index included), `get`, `query` and
//! `export` give the events back byte for byte while the keys exist, erased ones read
//! as erased, and `verify` and `verify-bundle` never need a key.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;

use base64::Engine as _;
use common::{all_files, contains, lines, shared_data, stele_os};

const DEFAULT_SUBJECT: &str = "stele:unattributed";

struct Setup {
    tmp: tempfile::TempDir,
    config: PathBuf,
    data: PathBuf,
}

impl Setup {
    /// Payloads stored uncompressed (so a clear copy would be found); the master key
    /// lives beside the data directory, not in it.
    fn new() -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let key = tmp.path().join("master.key");
        let config = tmp.path().join("stele.toml");
        std::fs::write(
            &config,
            format!(
                "compression_level = 0\n[erasure]\nmaster_key = {key:?}\n[[erasure.rule]]\nstream = \"k8s\"\n\
                 subject = \"/user/username\"\nfields = [\"\"]\nsubject_default = \"{DEFAULT_SUBJECT}\"\n"
            ),
        )
        .unwrap();
        let data = tmp.path().join("data");
        let s = Setup { tmp, config, data };
        s.run(&["check-config"]).expect_code(0, "check-config");
        s.run(&["erase", "--init-master-key"]).expect_code(0, "init master key");
        s.at("init", &["--origin", "test.stele.example/log"]).expect_code(0, "init");
        s
    }

    fn run(&self, args: &[&str]) -> common::Run {
        let mut a: Vec<&std::ffi::OsStr> = vec!["--config".as_ref(), self.config.as_os_str()];
        a.extend(args.iter().map(|s| -> &std::ffi::OsStr { s.as_ref() }));
        stele_os(&a)
    }

    fn at(&self, cmd: &str, extra: &[&str]) -> common::Run {
        let mut a: Vec<&std::ffi::OsStr> =
            vec!["--config".as_ref(), self.config.as_os_str(), cmd.as_ref(), "--data".as_ref(), self.data.as_os_str()];
        a.extend(extra.iter().map(|s| -> &std::ffi::OsStr { s.as_ref() }));
        stele_os(&a)
    }

    fn get(&self, i: u64) -> serde_json::Value {
        let r = self.at("get", &[&i.to_string()]);
        r.expect_code(0, "get");
        serde_json::from_str(&r.stdout).unwrap()
    }

    fn query(&self, args: &[&str]) -> Vec<serde_json::Value> {
        let r = self.at("query", args);
        r.expect_code(0, "query");
        r.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }
}

/// Every string value of at least 8 bytes anywhere in the events (as JSON text
/// without quotes, when it has no escapes).
fn long_strings(events: &[serde_json::Value]) -> BTreeSet<String> {
    fn walk(v: &serde_json::Value, out: &mut BTreeSet<String>) {
        match v {
            serde_json::Value::String(s) if s.len() >= 8 && serde_json::to_string(s).unwrap().len() == s.len() + 2 => {
                out.insert(s.clone());
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            serde_json::Value::Object(o) => o.values().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    events.iter().for_each(|e| walk(e, &mut out));
    out
}

fn b64(v: &serde_json::Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap()).unwrap()
}

#[test]
fn whole_events_are_sealed_restored_queried_exported_and_erased() {
    let Some(shared) = shared_data() else { return };
    let s = Setup::new();
    let file = shared.join("k8s-audit/panther-analysis_k8s-audit-native.jsonl");
    let originals = lines(&file);
    let events: Vec<serde_json::Value> = originals.iter().map(|l| serde_json::from_slice(l).unwrap()).collect();
    let user = |e: &serde_json::Value| e.pointer("/user/username").and_then(|v| v.as_str()).map(str::to_string);
    let without_user = events.iter().filter(|e| user(e).is_none()).count();
    assert!(without_user > 0, "the sample has events without a subject value");
    s.at("import", &["--stream", "k8s", file.to_str().unwrap()]).expect_code(0, "import");

    // Every entry: stored sealed whole, restored byte for byte.
    let hits = s.query(&["--stream", "k8s", "--limit", "100000"]);
    assert_eq!(hits.len(), originals.len());
    let indexes: Vec<u64> = hits.iter().map(|h| h["index"].as_u64().unwrap()).collect();
    for (i, (index, original)) in indexes.iter().zip(&originals).enumerate() {
        let got = s.get(*index);
        assert_eq!(got["sealed"], "restored", "entry {index}");
        assert_eq!(&b64(&got["restored_base64"]), original, "entry {index} is not restored byte for byte");
        let stored = b64(&got["stored_base64"]);
        assert!(stored.starts_with(b"SEAL"), "entry {index}");
        assert!(!contains(&stored, b"\"kind\""), "entry {index}: clear text in the stored form");
        // The query shows the fields of the restored event.
        assert_eq!(hits[i]["fields"]["actor"].as_str().map(str::to_string), user(&events[i]), "entry {index}");
    }

    // No string of any event is anywhere in the data directory: not in the segments,
    // not in the query index.
    let strings = long_strings(&events);
    assert!(strings.len() > 100, "{} strings", strings.len());
    let files = all_files(&s.data);
    for (path, bytes) in &files {
        for text in &strings {
            assert!(!contains(bytes, text.as_bytes()), "{} holds {text:?}", path.display());
        }
    }

    // Queries by a field reach the whole sealed events (restored and re-matched).
    let subject = "attacker@example.com";
    let want = events.iter().filter(|e| user(e).as_deref() == Some(subject)).count();
    let by_actor = s.query(&["--actor", subject]);
    assert_eq!(by_actor.len(), want, "query by actor");
    assert!(by_actor.iter().all(|h| h["sealed"] == "restored" && h["fields"]["actor"] == subject));
    let bundle = s.tmp.path().join("attacker.bundle");
    s.at("export", &["--actor", subject, "--out", bundle.to_str().unwrap()]).expect_code(0, "export");
    let verifier = s.data.join("keys/verifier.vkey");
    s.run(&["verify-bundle", bundle.to_str().unwrap(), "--key", verifier.to_str().unwrap()])
        .expect_code(0, "verify-bundle");
    let bundle_bytes = std::fs::read(&bundle).unwrap();
    assert!(!contains(&bundle_bytes, subject.as_bytes()), "the bundle holds the subject in clear");

    // Erasing a subject, then the fixed subject of events without one.
    s.at("erase", &["--subject", subject]).expect_code(0, "erase");
    s.at("erase", &["--subject", DEFAULT_SUBJECT]).expect_code(0, "erase the fixed subject");
    assert!(s.query(&["--actor", subject]).is_empty());
    for (index, e) in indexes.iter().zip(&events) {
        let got = s.get(*index);
        let erased = user(e).is_none_or(|u| u == subject);
        assert_eq!(got["sealed"], if erased { "erased" } else { "restored" }, "entry {index}");
        if erased {
            assert_eq!(got["event"], "stele:erased", "entry {index}");
        }
    }
    let left = s.query(&["--stream", "k8s", "--limit", "100000"]);
    assert_eq!(left.iter().filter(|h| h["sealed"] == "restored").count(), events.len() - want - without_user);

    // Verification needs no key: with the master key gone, and with no [erasure]
    // section at all.
    std::fs::rename(s.tmp.path().join("master.key"), s.tmp.path().join("elsewhere.key")).unwrap();
    s.at("verify", &["--index"]).expect_code(0, "verify without the master key");
    let plain = s.tmp.path().join("plain.toml");
    std::fs::write(&plain, "compression_level = 0\n").unwrap();
    let data = s.data.as_os_str();
    stele_os(&["--config".as_ref(), plain.as_os_str(), "verify".as_ref(), "--data".as_ref(), data])
        .expect_code(0, "verify without [erasure]");
    s.run(&["verify-bundle", bundle.to_str().unwrap(), "--key", verifier.to_str().unwrap()])
        .expect_code(0, "verify-bundle after erasure");

    // Control: the same events in a stream no rule covers are found in clear.
    std::fs::rename(s.tmp.path().join("elsewhere.key"), s.tmp.path().join("master.key")).unwrap();
    s.at("import", &["--stream", "plain", file.to_str().unwrap()]).expect_code(0, "import plain");
    let segments = all_files(&s.data.join("segments"));
    assert!(segments.iter().any(|(_, b)| contains(b, subject.as_bytes())), "the search finds clear text");
}
