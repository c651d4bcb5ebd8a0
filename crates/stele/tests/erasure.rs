//! Erasure of personal data by crypto-shredding, end to end through the binary:
//! sealed fields restored byte-exact from real audit logs, queries through the blind
//! index, `stele erase` (then verify passes and the subject's name is nowhere in the
//! data directory), a legal hold deferring an erasure until released, and a kill
//! during `stele erase` never leaving half an erasure.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use common::{Rng, all_files, contains, lines, shared_data, stele_os};

/// Pointers sealed in the Kubernetes audit samples: the subject, their source
/// addresses and Panther's copies of names and addresses.
const K8S_FIELDS: &[&str] = &["/sourceIPs", "/impersonatedUser", "/p_any_usernames", "/p_any_ip_addresses"];
/// Pointers sealed in the CloudTrail samples.
const CT_FIELDS: &[&str] =
    &["/userIdentity/arn", "/userIdentity/userName", "/sourceIPAddress", "/p_any_usernames", "/p_any_aws_arns"];

struct Setup {
    _tmp: tempfile::TempDir,
    config: PathBuf,
    data: PathBuf,
}

fn toml_list(v: &[&str]) -> String {
    v.iter().map(|p| format!("{p:?}")).collect::<Vec<_>>().join(", ")
}

/// A data directory with uncompressed payloads (so that the bytes can be searched)
/// and sealing rules for `k8s` and `cloudtrail`; the master key is outside it.
fn setup(extra: &str) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("master.key");
    let config = tmp.path().join("stele.toml");
    std::fs::write(
        &config,
        format!(
            "compression_level = 0\n{extra}\n[erasure]\nmaster_key = {key:?}\n\
             [[erasure.rule]]\nstream = \"k8s\"\nformat = \"k8s-audit\"\nsubject = \"/user/username\"\nfields = [{}]\n\
             [[erasure.rule]]\nstream = \"cloudtrail\"\nsubject = \"/userIdentity/arn\"\nfields = [{}]\n",
            toml_list(K8S_FIELDS),
            toml_list(CT_FIELDS)
        ),
    )
    .unwrap();
    let data = tmp.path().join("data");
    let s = Setup { _tmp: tmp, config, data };
    s.run(&["erase", "--init-master-key"]).expect_code(0, "init master key");
    s.run_at("init", &["--origin", "test.stele.example/log"]).expect_code(0, "init");
    s
}

impl Setup {
    fn run(&self, args: &[&str]) -> common::Run {
        let mut a: Vec<&std::ffi::OsStr> = vec!["--config".as_ref(), self.config.as_os_str()];
        a.extend(args.iter().map(|s| -> &std::ffi::OsStr { s.as_ref() }));
        stele_os(&a)
    }

    fn run_at(&self, cmd: &str, extra: &[&str]) -> common::Run {
        let mut a: Vec<&std::ffi::OsStr> =
            vec!["--config".as_ref(), self.config.as_os_str(), cmd.as_ref(), "--data".as_ref(), self.data.as_os_str()];
        a.extend(extra.iter().map(|s| -> &std::ffi::OsStr { s.as_ref() }));
        stele_os(&a)
    }

    fn import(&self, stream: &str, file: &Path) {
        let f = file.to_str().unwrap();
        self.run_at("import", &["--stream", stream, f]).expect_code(0, "import");
    }

    fn get(&self, i: u64) -> serde_json::Value {
        let r = self.run_at("get", &[&i.to_string()]);
        r.expect_code(0, "get");
        serde_json::from_str(&r.stdout).unwrap()
    }

    fn query(&self, args: &[&str]) -> Vec<serde_json::Value> {
        let r = self.run_at("query", args);
        r.expect_code(0, "query");
        r.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }
}

/// Removes the values at `pointers` (those present) from an event.
fn without(v: &serde_json::Value, pointers: &[&str]) -> serde_json::Value {
    let mut v = v.clone();
    for p in pointers {
        if let Some(x) = v.pointer_mut(p) {
            *x = serde_json::Value::Null;
        }
    }
    v
}

/// A Kubernetes subject with events whose name appears nowhere but in sealed values
/// (in any event of the file), and the number of their events.
fn k8s_subject(events: &[serde_json::Value]) -> (String, usize) {
    let mut sealed: Vec<&str> = K8S_FIELDS.to_vec();
    sealed.push("/user/username");
    for name in ["admin@example.com", "developer@example.com", "attacker@example.com", "kubernetes-admin"] {
        let n = events.iter().filter(|e| e.pointer("/user/username").and_then(|v| v.as_str()) == Some(name)).count();
        let leaks = events.iter().any(|e| without(e, &sealed).to_string().contains(name));
        if n > 0 && !leaks {
            return (name.to_string(), n);
        }
    }
    panic!("no subject of the Kubernetes sample is confined to sealed fields");
}

#[test]
fn real_events_round_trip_byte_exact_and_verify() {
    let Some(data) = shared_data() else { return };
    let s = setup("");
    let k8s = data.join("k8s-audit/panther-analysis_k8s-audit-native.jsonl");
    let ct = data.join("cloudtrail/panther-analysis_AWS.CloudTrail.jsonl");
    s.import("k8s", &k8s);
    s.import("cloudtrail", &ct);
    let mut originals: Vec<(String, Vec<u8>)> = lines(&k8s).into_iter().map(|l| ("k8s".to_string(), l)).collect();
    originals.extend(lines(&ct).into_iter().map(|l| ("cloudtrail".to_string(), l)));
    // Index 0 registers `k8s`; the CloudTrail events follow their stream's registration.
    let n_k8s = lines(&k8s).len() as u64;
    let mut sealed = 0;
    let mut rng = Rng::new(7);
    for _ in 0..40 {
        let j = rng.below(originals.len() as u64);
        let index = if j < n_k8s { 1 + j } else { 2 + j };
        let got = s.get(index);
        let (stream, bytes) = &originals[j as usize];
        assert_eq!(got["stream"], stream.as_str(), "entry {index}");
        let restored = match got["sealed"].as_str() {
            Some("restored") => {
                sealed += 1;
                base64::engine::general_purpose::STANDARD.decode(got["restored_base64"].as_str().unwrap()).unwrap()
            }
            None => serde_json::to_vec(&got["event"]).unwrap(),
            other => panic!("entry {index}: {other:?}"),
        };
        if got["sealed"].is_string() {
            assert_eq!(&restored, bytes, "entry {index} is not restored byte for byte");
            let stored =
                base64::engine::general_purpose::STANDARD.decode(got["stored_base64"].as_str().unwrap()).unwrap();
            assert!(stored.starts_with(b"SEAL"), "entry {index}: the stored form is an envelope");
            // The subject is in the stored form only where the event repeats it
            // outside the sealed fields (free text, request parameters).
            let v: serde_json::Value = serde_json::from_slice(bytes).unwrap();
            let (subject, sealed_pointers) = match v.pointer("/user/username") {
                Some(u) => (u, [K8S_FIELDS, &["/user/username"]].concat()),
                None => (v.pointer("/userIdentity/arn").unwrap(), CT_FIELDS.to_vec()),
            };
            let subject = subject.as_str().unwrap();
            let elsewhere = without(&v, &sealed_pointers).to_string().contains(subject);
            assert_eq!(contains(&stored, subject.as_bytes()), elsewhere, "entry {index}: {subject} in the stored form");
        }
    }
    assert!(sealed > 10, "only {sealed} of 40 sampled entries were sealed");
    s.run_at("verify", &[]).expect_code(0, "verify");
}

#[test]
fn erase_leaves_a_verifiable_log_and_no_trace_of_the_subject() {
    let Some(data) = shared_data() else { return };
    let s = setup("");
    let k8s = data.join("k8s-audit/panther-analysis_k8s-audit-native.jsonl");
    let events: Vec<serde_json::Value> = lines(&k8s).iter().map(|l| serde_json::from_slice(l).unwrap()).collect();
    let (subject, n) = k8s_subject(&events);
    s.import("k8s", &k8s);

    // The blind index finds every event of the subject while their key exists.
    let hits = s.query(&["--actor", &subject]);
    assert_eq!(hits.len(), n, "query by subject");
    assert!(hits.iter().all(|h| h["sealed"] == "restored" && h["fields"]["actor"] == subject.as_str()));
    let indexes: Vec<u64> = hits.iter().map(|h| h["index"].as_u64().unwrap()).collect();
    // Another sealed field is found through the blind index too.
    let ip = events
        .iter()
        .find(|e| e.pointer("/user/username").and_then(|v| v.as_str()) == Some(&subject))
        .and_then(|e| e.pointer("/sourceIPs/0"))
        .and_then(|v| v.as_str())
        .map(str::to_string);
    if let Some(ip) = &ip {
        let want = events.iter().filter(|e| e.pointer("/sourceIPs/0").and_then(|v| v.as_str()) == Some(ip)).count();
        assert_eq!(s.query(&["--source-ip", ip]).len(), want, "query by a sealed source address");
    }
    let bundle_before = s._tmp.path().join("before.bundle");
    s.run_at("export", &["--actor", &subject, "--out", bundle_before.to_str().unwrap()]).expect_code(0, "export");

    let r = s.run_at("erase", &["--subject", &subject, "--reason", "GDPR request 42"]);
    r.expect_code(0, "erase");
    assert!(r.stderr.contains("erased"), "{}", r.stderr);
    // A second request finds no key.
    s.run_at("erase", &["--subject", &subject]).expect_code(2, "erase again");

    s.run_at("verify", &["--index"]).expect_code(0, "verify after erasure");
    // A bundle exported before the erasure still verifies, and holds no plaintext.
    s.run(&["verify-bundle", bundle_before.to_str().unwrap(), "--key", &verifier(&s)]).expect_code(0, "bundle");
    let bundle = std::fs::read(&bundle_before).unwrap();
    assert!(bundle.len() > 1000, "the bundle holds the subject's entries");
    assert!(!contains(&bundle, subject.as_bytes()), "the bundle holds the subject in clear");
    assert!(s.query(&["--actor", &subject]).is_empty(), "the subject is still found after erasure");
    for i in &indexes {
        let got = s.get(*i);
        assert_eq!(got["sealed"], "erased", "entry {i}");
        assert_eq!(got["event"]["user"]["username"], "stele:erased", "entry {i}");
        assert!(!got.to_string().contains(&subject), "entry {i} still shows the subject");
    }
    let listed = s.run_at("erase", &["--list"]);
    assert!(listed.stdout.contains("\"state\":\"done\"") && !listed.stdout.contains(&subject), "{}", listed.stdout);

    // No byte of the data directory names the subject: payloads are stored
    // uncompressed here, so a plaintext copy anywhere would be found.
    for (path, bytes) in all_files(&s.data) {
        assert!(!contains(&bytes, subject.as_bytes()), "{} holds the subject", path.display());
    }
    // Control: the same events in a stream without sealing do show the name.
    s.import("plain", &k8s);
    assert!(all_files(&s.data.join("segments")).iter().any(|(_, b)| contains(b, subject.as_bytes())));
}

fn verifier(s: &Setup) -> String {
    s.data.join("keys/verifier.vkey").to_str().unwrap().to_string()
}

#[test]
fn a_legal_hold_defers_erasure_until_released() {
    let Some(data) = shared_data() else { return };
    let s = setup("");
    let k8s = data.join("k8s-audit/panther-analysis_k8s-audit-native.jsonl");
    let events: Vec<serde_json::Value> = lines(&k8s).iter().map(|l| serde_json::from_slice(l).unwrap()).collect();
    let (subject, n) = k8s_subject(&events);
    s.import("k8s", &k8s);
    s.run_at_sub("hold", "place", &["--case", "C-1", "--reason", "litigation", "--stream", "k8s"])
        .expect_code(0, "hold");
    let r = s.run_at("erase", &["--subject", &subject, "--reason", "request"]);
    r.expect_code(0, "erase under hold");
    assert!(r.stderr.contains("pending") && r.stderr.contains("hold:C-1"), "{}", r.stderr);
    let listed = s.run_at("erase", &["--list"]).stdout;
    assert!(listed.contains("\"state\":\"pending\""), "{listed}");
    // Held: the events still read in full.
    let hits = s.query(&["--actor", &subject]);
    assert_eq!(hits.len(), n);
    // A retention pass while the hold stands does nothing.
    s.run_at_sub("retention", "apply", &[]).expect_code(0, "retention apply");
    assert_eq!(s.query(&["--actor", &subject]).len(), n);
    s.run_at_sub("hold", "release", &["--case", "C-1", "--reason", "case closed"]).expect_code(0, "release");
    let r = s.run_at_sub("retention", "apply", &[]);
    r.expect_code(0, "retention apply");
    assert!(r.stderr.contains("carried out the pending erasure"), "{}", r.stderr);
    assert!(s.query(&["--actor", &subject]).is_empty());
    let i = hits[0]["index"].as_u64().unwrap();
    assert_eq!(s.get(i)["sealed"], "erased");
    let listed = s.run_at("erase", &["--list"]).stdout;
    assert!(listed.contains("\"state\":\"done\"") && listed.contains("\"request_index\""), "{listed}");
    s.run_at("verify", &[]).expect_code(0, "verify");
}

#[test]
fn a_stream_can_let_erasure_win_over_a_hold() {
    let Some(data) = shared_data() else { return };
    let s = setup("");
    // Same rules, but the k8s rule lets erasure win.
    let text = std::fs::read_to_string(&s.config).unwrap().replacen(
        "subject = \"/user/username\"",
        "subject = \"/user/username\"\nerasure_wins = true",
        1,
    );
    std::fs::write(&s.config, text).unwrap();
    let k8s = data.join("k8s-audit/panther-analysis_k8s-audit-native.jsonl");
    let events: Vec<serde_json::Value> = lines(&k8s).iter().map(|l| serde_json::from_slice(l).unwrap()).collect();
    let (subject, _) = k8s_subject(&events);
    s.import("k8s", &k8s);
    s.run_at_sub("hold", "place", &["--case", "C-2", "--reason", "audit"]).expect_code(0, "hold");
    let r = s.run_at("erase", &["--subject", &subject]);
    assert!(r.stderr.contains("erased"), "{}", r.stderr);
    assert!(s.query(&["--actor", &subject]).is_empty());
}

#[test]
fn a_kill_during_erase_leaves_the_key_or_a_completed_erasure() {
    let Some(data) = shared_data() else { return };
    let s = setup("");
    let k8s = data.join("k8s-audit/panther-analysis_k8s-audit-native.jsonl");
    let events: Vec<serde_json::Value> = lines(&k8s).iter().map(|l| serde_json::from_slice(l).unwrap()).collect();
    let (subject, n) = k8s_subject(&events);
    s.import("k8s", &k8s);
    let index = s.query(&["--actor", &subject])[0]["index"].as_u64().unwrap();
    let pristine = s._tmp.path().join("pristine");
    common::copy_dir(&s.data, &pristine);
    let mut rng = Rng::new(11);
    let (mut killed_before, mut killed_after) = (0, 0);
    for round in 0..12 {
        let _ = std::fs::remove_dir_all(&s.data);
        common::copy_dir(&pristine, &s.data);
        let mut child = Command::new(env!("CARGO_BIN_EXE_stele"))
            .args(["--config".as_ref(), s.config.as_os_str(), "erase".as_ref(), "--data".as_ref(), s.data.as_os_str()])
            .args(["--subject", &subject])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_micros(rng.below(40_000)));
        let _ = child.kill();
        let _ = child.wait();
        // Whatever the moment, readers see all of the subject's fields, or none.
        let listed = s.run_at("erase", &["--list"]).stdout;
        let done = listed.contains("\"state\":\"done\"");
        let got = s.get(index);
        let hits = s.query(&["--actor", &subject]).len();
        if done {
            killed_after += 1;
            assert_eq!((got["sealed"].as_str(), hits), (Some("erased"), 0), "round {round}");
            // The next writer completes the key store's part.
            s.run_at("erase", &["--subject", &subject]).expect_code(2, "the key is gone");
        } else {
            killed_before += 1;
            assert_eq!((got["sealed"].as_str(), hits), (Some("restored"), n), "round {round}");
            s.run_at("erase", &["--subject", &subject]).expect_code(0, "erase after the kill");
            assert_eq!(s.get(index)["sealed"], "erased", "round {round}");
        }
        s.run_at("verify", &[]).expect_code(0, "verify after the kill");
    }
    eprintln!("killed before the record {killed_before} times, after it {killed_after} times");
}

#[test]
fn a_master_key_others_can_read_is_refused() {
    let Some(data) = shared_data() else { return };
    let s = setup("");
    let key = s._tmp.path().join("master.key");
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let k8s = data.join("k8s-audit/panther-analysis_k8s-audit-native.jsonl");
    let r = s.run_at("import", &["--stream", "k8s", k8s.to_str().unwrap()]);
    r.expect_code(2, "import with an open master key");
    assert!(r.stderr.contains("chmod 600"), "{}", r.stderr);
}

impl Setup {
    fn run_at_sub(&self, cmd: &str, sub: &str, extra: &[&str]) -> common::Run {
        let mut a: Vec<&std::ffi::OsStr> = vec![
            "--config".as_ref(),
            self.config.as_os_str(),
            cmd.as_ref(),
            sub.as_ref(),
            "--data".as_ref(),
            self.data.as_os_str(),
        ];
        a.extend(extra.iter().map(|s| -> &std::ffi::OsStr { s.as_ref() }));
        stele_os(&a)
    }
}

#[test]
fn compliance_retention_defers_erasure_until_it_ends() {
    let Some(data) = shared_data() else { return };
    let s = setup("[[retention]]\nstream = \"k8s\"\nmin_days = 365\nmode = \"compliance\"\n");
    let k8s = data.join("k8s-audit/panther-analysis_k8s-audit-native.jsonl");
    let events: Vec<serde_json::Value> = lines(&k8s).iter().map(|l| serde_json::from_slice(l).unwrap()).collect();
    let (subject, n) = k8s_subject(&events);
    s.import("k8s", &k8s);
    s.run_at_sub("retention", "apply", &[]).expect_code(0, "record the compliance policy");
    let r = s.run_at("erase", &["--subject", &subject]);
    r.expect_code(0, "erase under compliance retention");
    assert!(r.stderr.contains("pending") && r.stderr.contains("retention:k8s"), "{}", r.stderr);
    // A second request is recognised as the same pending one.
    let again = s.run_at("erase", &["--subject", &subject]);
    assert!(again.stderr.contains("already pending"), "{}", again.stderr);
    // The retention pass leaves it pending: the minimum runs for a year.
    let pass = s.run_at_sub("retention", "apply", &[]);
    assert!(!pass.stderr.contains("carried out"), "{}", pass.stderr);
    assert_eq!(s.query(&["--actor", &subject]).len(), n);
    let listed = s.run_at("erase", &["--list"]).stdout;
    assert!(listed.contains("\"state\":\"pending\"") && listed.contains("retention:k8s"), "{listed}");
}
