//! Evidence bundles end to end: `stele export` selects what `stele query` selects and
//! `stele verify-bundle` accepts it offline, and refuses every changed byte, a wrong
//! key and a truncated file.

mod common;

use std::path::{Path, PathBuf};

use common::{Rng, count_lines, import, init, stele, stele_at, stele_os};
use stele_tlog::bundle::{BundleDigest, trailer_line};
use stele_tlog::cosignature::Cosigner;
use stele_tlog::note::Note;

/// A JSON-lines file of `n` generic events with varied fields and times.
fn write_events(dir: &Path, n: usize) -> PathBuf {
    let actors = ["alice", "bob", "carol", "system:serviceaccount:kube-system:dep"];
    let actions = ["read", "delete", "update", "create"];
    let mut s = String::new();
    for i in 0..n {
        s.push_str(&format!(
            "{{\"actor\":\"{}\",\"action\":\"{}\",\"resource\":\"db/t{}\",\"outcome\":\"{}\",\"time\":\"2024-05-01T{:02}:{:02}:{:02}Z\",\"note\":\"é \\u00e9 {i}\"}}\n",
            actors[i % actors.len()],
            actions[(i / 3) % actions.len()],
            i % 7,
            if i % 5 == 0 { "failure" } else { "success" },
            i / 3600,
            (i / 60) % 60,
            i % 60
        ));
    }
    let p = dir.join("events.jsonl");
    std::fs::write(&p, s).expect("writing events");
    p
}

/// A data directory with `n` events; returns (tempdir, data dir, vkey file).
fn log_with_events(n: usize) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    init(&data);
    let events = write_events(tmp.path(), n);
    import(&data, &[], &[events]);
    let vkey = data.join("keys/verifier.vkey");
    (tmp, data, vkey)
}

fn export(data: &Path, filter: &[&str], out: &Path) {
    let mut extra: Vec<&str> = filter.to_vec();
    let out_s = out.to_str().expect("utf-8 path");
    extra.extend(["--out", out_s]);
    stele_at("export", data, &extra).expect_code(0, &format!("export {filter:?}"));
}

fn verify(bundle: &Path, key: &Path) -> common::Run {
    stele_os(&["verify-bundle".as_ref(), bundle.as_os_str(), "--key".as_ref(), key.as_os_str()])
}

/// The entry count a verified bundle reports.
fn verified_count(bundle: &Path, key: &Path) -> usize {
    let r = verify(bundle, key);
    r.expect_code(0, "verify-bundle of an intact bundle");
    let rest = r.stdout.strip_prefix("bundle OK: ").unwrap_or_else(|| panic!("no summary\n{r}"));
    rest.split(' ').next().and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("no count\n{r}"))
}

#[test]
fn export_selects_what_query_selects_and_verifies() {
    let (tmp, data, vkey) = log_with_events(400);
    let filters: &[&[&str]] = &[
        &[],
        &["--actor", "alice"],
        &["--action", "delete", "--outcome", "failure"],
        &["--since", "2024-05-01T00:01:00Z", "--until", "2024-05-01T00:04:30Z"],
        &["--by", "received", "--since", "2000-01-01T00:00:00Z", "--actor", "system:*"],
        &["--resource", "db/t3", "--limit", "7"],
        &["--stream", "*"],
        &["--actor", "nobody"],
    ];
    for (i, f) in filters.iter().enumerate() {
        let out = tmp.path().join(format!("b{i}.bundle"));
        export(&data, f, &out);
        let q = stele_at("query", &data, f);
        q.expect_code(0, "query");
        let want = count_lines(&q.stdout);
        assert_eq!(verified_count(&out, &vkey), want, "filter {f:?}");
        // The key may also be given as a string.
        let key = std::fs::read_to_string(&vkey).expect("vkey");
        stele(&["verify-bundle", out.to_str().expect("utf-8"), "--key", key.trim()]).expect_code(0, "key as string");
        // No scratch files are left beside the bundle.
        assert!(!tmp.path().join(format!("b{i}.bundle.tmp")).exists());
        assert!(!tmp.path().join(format!("b{i}.bundle.entries.tmp")).exists());
    }
    assert_eq!(verified_count(&tmp.path().join("b5.bundle"), &vkey), 7);
    assert!(verified_count(&tmp.path().join("b1.bundle"), &vkey) >= 90);
}

#[test]
fn every_changed_byte_is_caught() {
    let (tmp, data, vkey) = log_with_events(300);
    let good_path = tmp.path().join("good.bundle");
    export(&data, &["--actor", "bob"], &good_path);
    let good = std::fs::read(&good_path).expect("bundle");
    verified_count(&good_path, &vkey);

    // Line boundaries: header, entries, trailer.
    let ends: Vec<usize> = good.iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(i, _)| i + 1).collect();
    let header = 0..ends[0];
    let entries = ends[0]..ends[ends.len() - 2];
    let trailer = ends[ends.len() - 2]..good.len();
    assert!(entries.len() > 1000 && ends.len() > 10, "too few entries to test");

    let mut rng = Rng::new(0x5EED_B0D1);
    let bad_path = tmp.path().join("bad.bundle");
    let mut positions = Vec::new();
    for (range, n) in [(&header, 20), (&entries, 45), (&trailer, 15)] {
        for _ in 0..n {
            positions.push(rng.range(range.clone()));
        }
    }
    // The newline ending each region, and the first and last byte of the file.
    positions.extend([ends[0] - 1, ends[ends.len() - 2] - 1, good.len() - 1, 0]);
    for &pos in &positions {
        let mut bad = good.clone();
        bad[pos] ^= 1 + rng.below(255) as u8;
        std::fs::write(&bad_path, &bad).expect("writing");
        let r = verify(&bad_path, &vkey);
        r.expect_code(1, &format!("byte {pos} changed from {:#04x} to {:#04x}", good[pos], bad[pos]));
        let line = 1 + ends.iter().filter(|&&e| e <= pos).count();
        assert!(r.stderr.contains("line "), "no line named for byte {pos}\n{r}");
        // A change confined to one entry line names that line (or an earlier one
        // when a newline was damaged and lines merged).
        if entries.contains(&pos) && bad[pos] != b'\n' && good[pos] != b'\n' {
            assert!(r.stderr.contains(&format!("line {line}:")), "byte {pos} is on line {line}\n{r}");
        }
    }

    // Inserted and removed whitespace is a change too.
    for (pos, insert) in [(header.start + 1, true), (entries.start + 1, true), (trailer.start + 1, true)] {
        let mut bad = good.clone();
        if insert {
            bad.insert(pos, b' ');
        }
        std::fs::write(&bad_path, &bad).expect("writing");
        verify(&bad_path, &vkey).expect_code(1, &format!("space inserted at {pos}"));
    }
    let mut extra = good.clone();
    extra.extend_from_slice(b"\n");
    std::fs::write(&bad_path, &extra).expect("writing");
    verify(&bad_path, &vkey).expect_code(1, "newline after the trailer");

    // A removed entry line (header count and trailer recomputed would still need
    // the digest, so here only the line goes).
    let mut cut = good[..ends[1]].to_vec();
    cut.extend_from_slice(&good[ends[2]..]);
    std::fs::write(&bad_path, &cut).expect("writing");
    verify(&bad_path, &vkey).expect_code(1, "entry line removed");
}

#[test]
fn wrong_key_truncation_and_usage() {
    let (tmp, data, vkey) = log_with_events(200);
    let path = tmp.path().join("b.bundle");
    export(&data, &["--action", "read"], &path);
    let good = std::fs::read(&path).expect("bundle");
    verified_count(&path, &vkey);

    // Another log's key, same origin and another origin.
    let other = tmp.path().join("other");
    init(&other);
    let r = verify(&path, &other.join("keys/verifier.vkey"));
    r.expect_code(1, "another key with the same origin");
    let third = tmp.path().join("third");
    stele_at("init", &third, &["--origin", "other.example/log"]).expect_code(0, "init");
    verify(&path, &third.join("keys/verifier.vkey")).expect_code(1, "another origin's key");

    // Truncated anywhere: inside the header, at a line end, inside an entry, before
    // and inside the trailer.
    let ends: Vec<usize> = good.iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(i, _)| i + 1).collect();
    let cuts = [10, ends[0], ends[0] + 50, ends[2], ends[ends.len() - 2], ends[ends.len() - 2] + 20, good.len() - 1, 0];
    let cut_path = tmp.path().join("cut.bundle");
    for cut in cuts {
        std::fs::write(&cut_path, &good[..cut]).expect("writing");
        verify(&cut_path, &vkey).expect_code(1, &format!("truncated to {cut} bytes"));
    }

    // Unreadable file, bad key: usage errors.
    verify(&tmp.path().join("missing.bundle"), &vkey).expect_code(2, "missing bundle");
    stele(&["verify-bundle", path.to_str().expect("utf-8"), "--key", "not-a-key"]).expect_code(2, "bad key");
    stele(&["verify-bundle", path.to_str().expect("utf-8")]).expect_code(2, "no key");
    // Exporting from a directory that does not exist is a usage error too.
    let none = tmp.path().join("none");
    stele_at("export", &none, &["--out", tmp.path().join("x").to_str().expect("utf-8")]).expect_code(2, "no data");
}

#[test]
fn kubernetes_audit_sample() {
    let Some(shared) = common::shared_data() else { return };
    let file = shared.join("k8s-audit/panther-analysis_k8s-audit-native.jsonl");
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    init(&data);
    import(&data, &["--skip-invalid"], &[file]);
    let vkey = data.join("keys/verifier.vkey");
    for (i, f) in [&[][..], &["--action", "create"][..], &["--outcome", "failure"][..]].iter().enumerate() {
        let out = tmp.path().join(format!("k{i}.bundle"));
        export(&data, f, &out);
        let q = stele_at("query", &data, f);
        q.expect_code(0, "query");
        assert_eq!(verified_count(&out, &vkey), count_lines(&q.stdout), "filter {f:?}");
    }
}

/// Rewrites `plain` into `out` with cosignature lines by `witnesses` added to the
/// header's checkpoint (the `tamper`-th one with a changed signature) and the trailer
/// recomputed, as an exporter whose log is witnessed would write it.
fn cosigned_bundle(plain: &Path, out: &Path, witnesses: &[&Cosigner], tamper: Option<usize>) {
    let text = std::fs::read_to_string(plain).expect("bundle");
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let header: serde_json::Value = serde_json::from_str(lines[0]).expect("header");
    let note = header["checkpoint"].as_str().expect("checkpoint").to_string();
    let body = Note::parse(note.as_bytes()).expect("note").text;
    let mut cosigned = note.clone();
    for (i, w) in witnesses.iter().enumerate() {
        let mut line = w.cosign(&body, 1_700_000_000).expect("cosign");
        if tamper == Some(i) {
            let at = line.len() - 10;
            let c = if &line[at..=at] == "A" { "B" } else { "A" };
            line.replace_range(at..=at, c);
        }
        cosigned.push_str(&line);
    }
    let json = |s: &str| serde_json::to_string(s).expect("string");
    let mut new = lines[0].replace(&json(&note), &json(&cosigned));
    for l in &lines[1..lines.len() - 1] {
        new.push_str(l);
    }
    let mut digest = BundleDigest::new();
    digest.update(new.as_bytes());
    new.push_str(&trailer_line(lines.len() as u64 - 2, &digest.finish()));
    std::fs::write(out, new).expect("writing");
}

#[test]
fn witness_quorum() {
    let (tmp, data, vkey) = log_with_events(30);
    let plain = tmp.path().join("plain.bundle");
    export(&data, &[], &plain);
    let ws: Vec<Cosigner> =
        (1..=3u8).map(|i| Cosigner::from_seed(&format!("w{i}.example"), &[i; 32]).expect("cosigner")).collect();
    let stranger = Cosigner::from_seed("stranger.example", &[9; 32]).expect("cosigner");
    // The third witness's key comes from a file.
    let w3_file = tmp.path().join("w3.vkey");
    std::fs::write(&w3_file, format!("{}\n", ws[2].verifier().to_vkey())).expect("writing");
    let run = |bundle: &Path, k: usize| {
        let v1 = ws[0].verifier().to_vkey();
        let v2 = ws[1].verifier().to_vkey();
        let k = k.to_string();
        stele_os(&[
            "verify-bundle".as_ref(),
            bundle.as_os_str(),
            "--key".as_ref(),
            vkey.as_os_str(),
            "--witness".as_ref(),
            v1.as_ref(),
            "--witness".as_ref(),
            v2.as_ref(),
            "--witness".as_ref(),
            w3_file.as_os_str(),
            "--witnesses-required".as_ref(),
            k.as_ref(),
        ])
    };

    let good = tmp.path().join("cosigned.bundle");
    cosigned_bundle(&plain, &good, &[&ws[0], &stranger, &ws[1]], None);
    verified_count(&good, &vkey);
    for k in [0, 1, 2] {
        run(&good, k).expect_code(0, &format!("2 cosignatures, {k} required"));
    }
    let r = run(&good, 3);
    r.expect_code(1, "2 cosignatures, 3 required");
    assert!(r.stderr.contains("from 2 of"), "{r}");
    run(&good, 4).expect_code(2, "more required than witnesses given");
    let r = run(&plain, 1);
    r.expect_code(1, "no cosignatures");
    assert!(r.stderr.contains("from 0 of"), "{r}");

    // A tampered cosignature does not count.
    let tampered = tmp.path().join("tampered.bundle");
    cosigned_bundle(&plain, &tampered, &[&ws[0], &ws[1]], Some(1));
    run(&tampered, 1).expect_code(0, "one valid cosignature");
    let r = run(&tampered, 2);
    r.expect_code(1, "one valid, one tampered cosignature");
    assert!(r.stderr.contains("from 1 of"), "{r}");
}

/// Lines are bounded (64 MiB): a line of exactly the bound is read (and then judged
/// for what it says), one byte more is refused for its length, never buffered whole.
#[test]
fn bundle_lines_are_bounded() {
    let (tmp, _data, vkey) = log_with_events(3);
    const MAX: usize = 64 << 20;
    let path = tmp.path().join("long.bundle");
    let mut at = vec![b'x'; MAX - 1];
    at.push(b'\n');
    std::fs::write(&path, &at).unwrap();
    let r = verify(&path, &vkey);
    r.expect_code(1, "a 64 MiB line");
    assert!(r.stderr.contains("line 1: not a bundle header"), "{r}");
    let mut over = vec![b'x'; MAX];
    over.push(b'\n');
    std::fs::write(&path, &over).unwrap();
    let r = verify(&path, &vkey);
    r.expect_code(1, "a line one byte over 64 MiB");
    assert!(r.stderr.contains(&format!("line 1: longer than {MAX} bytes")), "{r}");
}
