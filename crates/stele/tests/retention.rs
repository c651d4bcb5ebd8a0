//! `stele retention show|apply`: expired segments are deleted under deletion records,
//! `verify` reports them and still passes, proofs survive; compliance policies can
//! only be lengthened, governance policies shortened only with the permission.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Run, import, init, stele_os};

fn with_config(config: &Path, args: &[&str], dir: &Path) -> Run {
    let mut a: Vec<&std::ffi::OsStr> = vec!["--config".as_ref(), config.as_os_str()];
    let (cmd, rest) = args.split_first().unwrap();
    a.push(cmd.as_ref());
    let mut rest = rest.iter();
    if matches!(*cmd, "retention" | "proof" | "hold") {
        a.push(rest.next().unwrap().as_ref());
    }
    a.push("--data".as_ref());
    a.push(dir.as_os_str());
    a.extend(rest.map(|s| -> &std::ffi::OsStr { s.as_ref() }));
    stele_os(&a)
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

fn events(dir: &Path, name: &str, stream: &str, n: usize) -> std::path::PathBuf {
    let p = dir.join(name);
    let lines: Vec<String> = (0..n).map(|i| format!("{{\"stream\":\"{stream}\",\"i\":{i}}}")).collect();
    std::fs::write(&p, lines.join("\n")).unwrap();
    p
}

#[test]
fn expired_segments_are_deleted_on_the_record() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    init(&data);
    let config = tmp.path().join("stele.toml");
    // 1.8 s segment windows; "app" kept for at most ~1.7 s, "keep" has no policy.
    write(
        &config,
        "segment_window_hours = 0.0005\n[[retention]]\nstream = \"app\"\nmin_days = 0\nmax_days = 0.00002\n",
    );
    let old = events(tmp.path(), "old.jsonl", "app", 5);
    let run = |args: &[&str]| with_config(&config, args, &data);
    run(&["import", "--stream", "app", old.to_str().unwrap()]).expect_code(0, "import old");
    run(&["import", "--stream", "keep", old.to_str().unwrap()]).expect_code(0, "import keep");
    std::thread::sleep(Duration::from_millis(3_800));
    // New entries go to new segments (new window).
    let new = events(tmp.path(), "new.jsonl", "app", 3);
    run(&["import", "--stream", "app", new.to_str().unwrap()]).expect_code(0, "import new");

    let show = run(&["retention", "show"]);
    show.expect_code(0, "show");
    let rows: Vec<serde_json::Value> = show.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let app = rows.iter().find(|r| r["stream"] == "app").unwrap();
    assert_eq!(app["expired_segments"], 1, "{show}");
    assert_eq!(app["entries"], 8);
    let keep = rows.iter().find(|r| r["stream"] == "keep").unwrap();
    assert!(keep["policy"].is_null());

    // A dry run lists exactly the old segment and changes nothing.
    let dry = run(&["retention", "apply", "--dry-run"]);
    dry.expect_code(0, "dry run");
    let planned: Vec<serde_json::Value> = dry.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(planned.len(), 1, "{dry}");
    assert_eq!(planned[0]["action"], "would delete");
    assert_eq!(planned[0]["entries"], 5);
    let first = planned[0]["ranges"][0][0].as_u64().unwrap();
    run(&["get", &first.to_string()]).expect_code(0, "still there after a dry run");

    let done = run(&["retention", "apply"]);
    done.expect_code(0, "apply");
    let deleted: Vec<serde_json::Value> = done.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(deleted.len(), 1, "{done}");
    assert_eq!(deleted[0]["ranges"], planned[0]["ranges"]);
    let record = deleted[0]["deletion_record"].as_u64().unwrap();

    let got = run(&["get", &first.to_string()]);
    assert_ne!(got.code, 0);
    assert!(got.stderr.contains("deleted by retention"), "{got}");
    run(&["proof", "inclusion", "--index", &first.to_string()]).expect_code(0, "inclusion proof of a deleted entry");
    let verify = run(&["verify"]);
    verify.expect_code(0, "verify after deletion");
    assert!(verify.stderr.contains(&format!("recorded at entry {record}")), "{verify}");
    assert!(verify.stderr.contains("1 deletion record(s) checked against the recorded policies"), "{verify}");
    // The other stream and the new entries are untouched; a second pass deletes nothing.
    let again = run(&["retention", "apply"]);
    again.expect_code(0, "second pass");
    assert!(again.stdout.trim().is_empty(), "{again}");
    let q = run(&["query", "--stream", "keep"]);
    assert_eq!(q.stdout.lines().count(), 5, "{q}");
}

#[test]
fn compliance_policies_cannot_be_weakened_by_editing_the_config() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    init(&data);
    let f = events(tmp.path(), "e.jsonl", "pay", 2);
    import(&data, &["--stream", "pay"], &[f]);
    let config = tmp.path().join("stele.toml");
    let run = |text: &str, args: &[&str]| {
        write(&config, text);
        with_config(&config, args, &data)
    };
    let compliance = "[[retention]]\nstream = \"pay\"\nmin_days = 365\nmax_days = 400\nmode = \"compliance\"\n";
    run(compliance, &["retention", "apply"]).expect_code(0, "record the compliance policy");
    // Shorter minimum, shorter maximum, or a switch to governance: all refused.
    for weaker in [
        "[[retention]]\nstream = \"pay\"\nmin_days = 30\nmax_days = 400\nmode = \"compliance\"\n",
        "[[retention]]\nstream = \"pay\"\nmin_days = 365\nmax_days = 366\nmode = \"compliance\"\n",
        "[[retention]]\nstream = \"pay\"\nmin_days = 365\nmax_days = 400\nmode = \"governance\"\n",
    ] {
        let r = run(weaker, &["retention", "apply", "--allow-shorten"]);
        assert_eq!(r.code, 2, "{r}");
        assert!(r.stderr.contains("compliance mode"), "{r}");
    }
    // Dropping it from the config leaves it in force.
    let show = run("", &["retention", "show"]);
    show.expect_code(0, "show");
    assert!(show.stdout.contains("\"mode\":\"compliance\""), "{show}");
    // Lengthening is allowed.
    run(
        "[[retention]]\nstream = \"pay\"\nmin_days = 500\nmax_days = 600\nmode = \"compliance\"\n",
        &["retention", "apply"],
    )
    .expect_code(0, "lengthen");

    // Governance: shortening needs the permission, and is recorded.
    let gov = "[[retention]]\nstream = \"ops\"\nmin_days = 90\nmax_days = 100\n";
    run(gov, &["retention", "apply"]).expect_code(0, "governance policy");
    let shorter = "[[retention]]\nstream = \"ops\"\nmin_days = 1\nmax_days = 2\n";
    let r = run(shorter, &["retention", "apply"]);
    assert_eq!(r.code, 2, "{r}");
    assert!(r.stderr.contains("--allow-shorten"), "{r}");
    run(shorter, &["retention", "apply", "--allow-shorten"]).expect_code(0, "shorten with permission");
    let q = stele_os(&[
        "query".as_ref(),
        "--data".as_ref(),
        data.as_os_str(),
        "--stream".as_ref(),
        "_stele/retention".as_ref(),
    ]);
    let shortened = q.stdout.lines().filter(|l| l.contains("\"shortened\":true")).count();
    assert_eq!(shortened, 1, "{q}");
    // The longer policy configured again lengthens it back, no permission needed, and
    // says that it ends a shortening.
    let r = run(gov, &["retention", "apply"]);
    r.expect_code(0, "lengthen the shortened policy");
    assert!(r.stderr.contains("lengthens the retention policy for \"ops\" that entry"), "{r}");
    let r = run(gov, &["retention", "apply"]);
    assert!(!r.stderr.contains("lengthens"), "recorded once: {r}");
    stele_os(&["verify".as_ref(), "--data".as_ref(), data.as_os_str()]).expect_code(0, "verify");
}

#[test]
fn held_entries_are_kept_until_the_hold_is_released() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    init(&data);
    let config = tmp.path().join("stele.toml");
    write(
        &config,
        "segment_window_hours = 0.0005\n[[retention]]\nstream = \"app\"\nmin_days = 0\nmax_days = 0.00002\n",
    );
    let run = |args: &[&str]| with_config(&config, args, &data);
    let old = tmp.path().join("old.jsonl");
    std::fs::write(&old, "{\"actor\":\"alice\",\"n\":1}\n{\"actor\":\"bob\",\"n\":2}\n").unwrap();
    run(&["import", "--stream", "app", old.to_str().unwrap()]).expect_code(0, "import");
    std::thread::sleep(Duration::from_millis(3_800));
    let new = events(tmp.path(), "new.jsonl", "app", 1);
    run(&["import", "--stream", "app", new.to_str().unwrap()]).expect_code(0, "import new");

    // A hold that ended before these entries pins nothing; one selecting bob does.
    run(&["hold", "place", "--case", "OLD-1", "--reason", "closed case", "--until", "2001-01-01T00:00:00Z"])
        .expect_code(0, "place an old hold");
    run(&["hold", "place", "--case", "LIT-7", "--reason", "litigation", "--stream", "app", "--actor", "bob"])
        .expect_code(0, "place");
    let again = run(&["hold", "place", "--case", "LIT-7", "--reason", "twice"]);
    assert_eq!(again.code, 2, "{again}");
    let list = run(&["hold", "list"]);
    assert_eq!(list.stdout.lines().count(), 2, "{list}");

    let show = run(&["retention", "show"]);
    let app: serde_json::Value = show
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|r| r["stream"] == "app")
        .unwrap();
    assert_eq!(app["held_segments"], 1, "{show}");
    assert_eq!(app["expired_segments"], 0, "{show}");
    let held = run(&["retention", "apply"]);
    held.expect_code(0, "apply under a hold");
    assert!(held.stdout.trim().is_empty(), "a held segment was deleted: {held}");
    run(&["get", "0"]).expect_code(0, "held entry");

    let r = run(&["hold", "release", "--case", "NOPE", "--reason", "x"]);
    assert_eq!(r.code, 2, "{r}");
    run(&["hold", "release", "--case", "LIT-7", "--reason", "settled"]).expect_code(0, "release");
    let done = run(&["retention", "apply"]);
    done.expect_code(0, "apply after release");
    assert_eq!(done.stdout.lines().count(), 1, "{done}");
    run(&["verify"]).expect_code(0, "verify");
}
