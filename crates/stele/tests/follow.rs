//! `stele import --follow`: lines written to a growing file, rotated by rename and by
//! copy-and-truncate, while the follower runs and while it is stopped, with the
//! follower SIGKILLed mid-stream: every line is in the log exactly once, in order.

mod common;

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::init;

fn line(n: usize) -> String {
    format!("{{\"n\":{n},\"actor\":\"u{}\",\"pad\":\"{}\"}}\n", n % 7, "x".repeat(n % 50))
}

fn append(path: &Path, range: std::ops::Range<usize>) {
    let mut f = OpenOptions::new().create(true).append(true).open(path).unwrap();
    for n in range {
        f.write_all(line(n).as_bytes()).unwrap();
        f.flush().unwrap();
    }
}

fn spawn(dir: &Path, file: &Path, idle_exit: Option<&str>) -> Child {
    let mut c = Command::new(env!("CARGO_BIN_EXE_stele"));
    c.args(["import", "--follow", "--data"]).arg(dir);
    if let Some(s) = idle_exit {
        c.args(["--idle-exit", s]);
    }
    c.arg(file).stdout(Stdio::null()).stderr(Stdio::inherit()).spawn().unwrap()
}

/// Runs a follower until it is idle for 1.5 s; it must exit 0.
fn catch_up(dir: &Path, file: &Path) {
    let status = spawn(dir, file, Some("1.5")).wait().unwrap();
    assert!(status.success(), "follower exited with {status}");
}

/// n of every event in the default stream, in log order.
fn logged(dir: &Path) -> Vec<usize> {
    let r = stele_store::LogReader::open(dir).unwrap();
    (0..r.tree_size())
        .map(|i| r.entry(i).unwrap())
        .filter(|e| e.stream == "default")
        .map(|e| {
            let v: serde_json::Value = serde_json::from_slice(&e.payload).unwrap();
            v["n"].as_u64().unwrap() as usize
        })
        .collect()
}

#[test]
fn rotation_and_restarts_lose_and_duplicate_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    init(&dir);
    let logs = tmp.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let file = logs.join("app.log");
    append(&file, 0..50);

    // Running follower: growth, then rename rotation with a late write to the old file.
    let mut child = spawn(&dir, &file, None);
    std::thread::sleep(Duration::from_millis(700));
    append(&file, 50..100);
    std::thread::sleep(Duration::from_millis(300));
    std::fs::rename(&file, logs.join("app.log.1")).unwrap();
    append(&logs.join("app.log.1"), 100..110);
    append(&file, 110..150);
    std::thread::sleep(Duration::from_millis(800));
    // SIGKILL while lines keep coming.
    let writer = {
        let file = file.clone();
        std::thread::spawn(move || {
            for n in 150..250 {
                append(&file, n..n + 1);
                std::thread::sleep(Duration::from_millis(3));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(150));
    child.kill().unwrap();
    child.wait().unwrap();
    writer.join().unwrap();

    // Stopped: copytruncate, then more lines.
    std::fs::copy(&file, logs.join("app.log.2")).unwrap();
    OpenOptions::new().write(true).open(&file).unwrap().set_len(0).unwrap();
    append(&file, 250..300);
    catch_up(&dir, &file);

    // Stopped: rename rotation, then a new file.
    append(&file, 300..320);
    std::fs::rename(&file, logs.join("app.log.3")).unwrap();
    append(&file, 320..360);
    catch_up(&dir, &file);

    // Running: copytruncate.
    let mut child = spawn(&dir, &file, None);
    std::thread::sleep(Duration::from_millis(700));
    append(&file, 360..400);
    std::thread::sleep(Duration::from_millis(400));
    std::fs::copy(&file, logs.join("app.log.4")).unwrap();
    OpenOptions::new().write(true).open(&file).unwrap().set_len(0).unwrap();
    append(&file, 400..420);
    std::thread::sleep(Duration::from_millis(800));
    child.kill().unwrap();
    child.wait().unwrap();
    catch_up(&dir, &file);

    let got = logged(&dir);
    let mut counts: BTreeMap<usize, usize> = BTreeMap::new();
    for n in &got {
        *counts.entry(*n).or_default() += 1;
    }
    let missing: Vec<usize> = (0..420).filter(|n| !counts.contains_key(n)).collect();
    let twice: Vec<(&usize, &usize)> = counts.iter().filter(|(_, c)| **c > 1).collect();
    assert!(missing.is_empty(), "lines missing from the log: {missing:?}");
    assert!(twice.is_empty(), "lines logged more than once: {twice:?}");
    assert_eq!(got.len(), 420);
    // Each file's lines are in order.
    assert!(got.windows(2).filter(|w| w[0] > w[1]).count() == 0, "out of order: {got:?}");
    common::stele_at("verify", &dir, &[]).expect_code(0, "verify");
}
