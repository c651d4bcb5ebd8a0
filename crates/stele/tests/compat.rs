//! A data directory written by the first release (format version 1, see
//! tests/fixtures/make-datadir-v1.sh) must open, verify and grow in every later
//! release, with every event byte-exact.

use std::path::{Path, PathBuf};
use std::process::Command;

fn stele(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_stele")).args(args).output().expect("run stele")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

#[test]
fn first_release_data_directory_opens_verifies_and_grows() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    copy_dir(&fixture().join("datadir-v1"), &dir);
    // Git does not keep file modes; the key must be private again before writing.
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(dir.join("keys/signing.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let d = dir.to_str().unwrap();

    let out = stele(&["verify", "--data", d]);
    assert!(out.status.success(), "verify: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("tree size 42"));

    // Every event of the fixture's source file is in the log, byte for byte, in order.
    let events: Vec<String> = std::fs::read_to_string(fixture().join("datadir-v1.events.jsonl"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let reader = stele_store::LogReader::open(&dir).unwrap();
    let user: Vec<Vec<u8>> = (0..reader.tree_size())
        .map(|i| reader.entry(i).unwrap())
        .filter(|e| !e.stream.starts_with("_stele/"))
        .map(|e| e.payload)
        .collect();
    assert_eq!(user.len(), events.len());
    for (got, want) in user.iter().zip(&events) {
        assert_eq!(got, want.as_bytes());
    }
    // The stored checkpoint verifies with the stored key.
    let vkey = stele_store::log::read_verifier(&dir).unwrap();
    let cp = reader.newest_checkpoint().unwrap();
    let opened = stele_tlog::checkpoint::open_checkpoint(cp.note.as_bytes(), &vkey).unwrap();
    assert_eq!(opened.checkpoint.tree_size, 42);
    assert_eq!(opened.checkpoint.root_hash, reader.root_hash(42).unwrap());

    // Queries over the old index agree with the events.
    let out = stele(&["query", "--data", d, "--actor", "carol", "--stream", "app"]);
    assert!(out.status.success());
    let want = events[..20].iter().filter(|e| e.contains("\"actor\":\"carol\"")).count();
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), want);

    // A newer release appends to it, and the whole log still verifies.
    let more = tmp.path().join("more.jsonl");
    std::fs::write(&more, "{\"actor\":\"zoe\",\"action\":\"upgrade\"}\n").unwrap();
    let out = stele(&["import", "--data", d, more.to_str().unwrap()]);
    assert!(out.status.success(), "import: {}", String::from_utf8_lossy(&out.stderr));
    let out = stele(&["verify", "--data", d]);
    assert!(out.status.success(), "verify after growth: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("tree size 43"));
}

#[test]
fn a_newer_format_is_refused_with_a_clear_message() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    copy_dir(&fixture().join("datadir-v1"), &dir);
    let leaves = dir.join("leaves.dat");
    let mut bytes = std::fs::read(&leaves).unwrap();
    bytes[8..10].copy_from_slice(&2u16.to_be_bytes());
    std::fs::write(&leaves, bytes).unwrap();
    let out = stele(&["verify", "--data", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("format version 2") && err.contains("upgrade stele"), "{err}");
}
