//! `stele monitor` end to end against a copy of the Tessera test log: exit codes and
//! messages for first use, growth, rollback, tampering and usage errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const VKEY: &str = "example.com/log/testdata+33d7b496+AeHTu4Q3hEIMHNqc6fASMsq3rKNx280NI+oO5xCFkkSx";

fn tessera() -> Option<PathBuf> {
    let p = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data/vectors/tessera/testdata/log"));
    if p.join("checkpoint").is_file() {
        return Some(p);
    }
    if std::env::var("STELE_REQUIRE_PEERS").is_ok_and(|v| v == "1") {
        panic!("STELE_REQUIRE_PEERS=1 but {} is missing", p.display());
    }
    eprintln!("skipping: ../shared not found");
    None
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::write(&dst, std::fs::read(e.path()).unwrap()).unwrap();
        }
    }
}

fn monitor(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stele")).arg("monitor").args(args).output().unwrap()
}

#[track_caller]
fn expect(out: &Output, code: i32, needle: &str) {
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(code), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains(needle) || stderr.contains(needle), "no {needle:?} in\nstdout: {stdout}\nstderr: {stderr}");
}

#[test]
fn monitor_cli_exit_codes() {
    let Some(src) = tessera() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("log");
    copy_dir(&src, &log);
    let serve = |n: u32| std::fs::copy(log.join(format!("checkpoint.{n}")), log.join("checkpoint")).unwrap();
    let state = tmp.path().join("state");
    let key_file = tmp.path().join("log.vkey");
    std::fs::write(&key_file, format!("{VKEY}\n")).unwrap();
    let url = format!("file://{}", log.display());
    let (log_s, state_s, key_s) = (log.to_str().unwrap(), state.to_str().unwrap(), key_file.to_str().unwrap());

    serve(5);
    expect(&monitor(&["--url", log_s, "--key", VKEY, "--state", state_s]), 0, "first use");
    serve(15);
    expect(&monitor(&["--url", &url, "--key", key_s, "--state", state_s, "--entries"]), 0, "grew 5 -> 15");
    expect(&monitor(&["--url", log_s, "--key", VKEY, "--state", state_s]), 0, "unchanged");
    serve(5);
    expect(&monitor(&["--url", log_s, "--key", VKEY, "--state", state_s]), 1, "ROLLBACK");
    assert!(tmp.path().join("state.evidence").is_dir());

    // Tampering found with a fresh state: a changed tile byte.
    serve(15);
    let tile = log.join("tile/0/000.p/15");
    let mut b = std::fs::read(&tile).unwrap();
    b[0] ^= 1;
    std::fs::write(&tile, b).unwrap();
    let fresh = tmp.path().join("fresh");
    expect(&monitor(&["--url", log_s, "--key", VKEY, "--state", fresh.to_str().unwrap()]), 1, "TILE MISMATCH");
    assert!(!fresh.exists());
}

#[test]
fn monitor_cli_usage_errors_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let s = state.to_str().unwrap();
    let dir = tmp.path().to_str().unwrap();
    expect(&monitor(&["--url", "ftp://log.example", "--key", VKEY, "--state", s]), 2, "unsupported log location");
    // An https log that cannot be reached is a network error, never a pass.
    expect(&monitor(&["--url", "https://log.invalid", "--key", VKEY, "--state", s]), 2, "https://log.invalid");
    expect(&monitor(&["--url", dir, "--key", "not-a-key", "--state", s]), 2, "--key");
    expect(&monitor(&["--url", dir, "--key", VKEY, "--state", s]), 2, "missing");
    expect(&monitor(&["--url", dir, "--key", VKEY, "--state", s, "--interval", "0"]), 2, "--interval");
    // Nothing listens on port 9 of localhost: a network error.
    expect(&monitor(&["--url", "http://127.0.0.1:9/log", "--key", VKEY, "--state", s]), 2, "127.0.0.1:9");
}

#[test]
fn monitor_cli_interval_keeps_running_after_a_detection() {
    let Some(src) = tessera() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("log");
    copy_dir(&src, &log);
    let state = tmp.path().join("state");
    std::fs::copy(log.join("checkpoint.15"), &state).unwrap();
    std::fs::copy(log.join("checkpoint.5"), log.join("checkpoint")).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let metrics = format!("127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_stele"))
        .args(["monitor", "--url", log.to_str().unwrap(), "--key", VKEY, "--state", state.to_str().unwrap()])
        .args(["--interval", "0.1", "--metrics", &metrics])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(800));
    assert!(child.try_wait().unwrap().is_none(), "monitor --interval exited on a detection");
    // The alarms are exposed as a Prometheus counter.
    let scraped = {
        use std::io::{Read as _, Write as _};
        let mut s = std::net::TcpStream::connect(&metrics).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        body
    };
    let alarms: u64 = scraped
        .lines()
        .find_map(|l| l.strip_prefix("stele_monitor_alarms_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no alarm counter in {scraped}"));
    assert!(alarms >= 2, "{scraped}");
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.matches("ALARM: ROLLBACK").count() >= 2, "{stderr}");
    assert!(stderr.contains("stele_monitor_alarms_total 2"), "{stderr}");
}

fn stele(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_stele")).args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

#[test]
fn monitor_cli_requires_k_of_n_witness_cosignatures() {
    use stele_tlog::cosignature::Cosigner;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (data_s, out) = (data.to_str().unwrap(), tmp.path().join("pub"));
    stele(&["init", "--data", data_s, "--origin", "witnessed.example/log"]);
    let events = tmp.path().join("events.jsonl");
    std::fs::write(&events, (0..20).map(|i| format!("{{\"actor\":\"a{i}\"}}\n")).collect::<String>()).unwrap();
    stele(&["import", "--data", data_s, events.to_str().unwrap()]);
    stele(&["publish", "--data", data_s, "--out", out.to_str().unwrap()]);

    // Two of three given witnesses cosign the published checkpoint.
    let ws: Vec<Cosigner> =
        (1..=3u8).map(|i| Cosigner::from_seed(&format!("w{i}.example"), &[i; 32]).unwrap()).collect();
    let note = std::fs::read_to_string(out.join("checkpoint")).unwrap();
    let body = stele_tlog::note::Note::parse(note.as_bytes()).unwrap().text;
    let mut cosigned = note.clone();
    for w in &ws[..2] {
        cosigned.push_str(&w.cosign(&body, 1_700_000_000).unwrap());
    }
    std::fs::write(out.join("checkpoint"), cosigned).unwrap();

    let key = data.join("keys/verifier.vkey");
    let vkeys: Vec<String> = ws.iter().map(|w| w.verifier().to_vkey()).collect();
    let run = |k: usize, state: &str| {
        let state = tmp.path().join(state);
        let k = k.to_string();
        let mut args = vec!["--url", out.to_str().unwrap(), "--key", key.to_str().unwrap()];
        args.extend(["--state", state.to_str().unwrap(), "--witnesses-required", &k]);
        for v in &vkeys {
            args.extend(["--witness", v.as_str()]);
        }
        monitor(&args)
    };
    expect(&run(1, "s1"), 0, "first use");
    expect(&run(2, "s2"), 0, "first use");
    expect(&run(2, "s2"), 0, "unchanged");
    expect(&run(3, "s3"), 1, "valid cosignatures from 2 of the given witnesses, 3 required");
    expect(&run(4, "s4"), 2, "--witnesses-required 4 is more than the 3 --witness keys given");
}
