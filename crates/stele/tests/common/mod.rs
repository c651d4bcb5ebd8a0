//! Shared harness of the end-to-end tests: runs the real `stele` binary over fresh
//! temporary directories, finds the public samples in `../shared/data`, and holds small
//! second implementations (an RFC 3339 parser, a checkpoint-note reader, a seeded PRNG)
//! that the tests compare stele against.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Bytes of the header every stele file starts with.
pub(crate) const HEADER_LEN: usize = 32;
/// Bytes of a leaf record in `leaves.dat`.
pub(crate) const LEAF_LEN: usize = 68;
/// Bytes of a locator record in `locators.dat`.
pub(crate) const LOCATOR_LEN: usize = 12;
/// Bytes of a stored hash in `hashes/level-KK.dat`.
pub(crate) const HASH_LEN: usize = 32;
/// Bytes of a chunk header in a segment.
pub(crate) const CHUNK_HEADER_LEN: usize = 32;
/// Bytes of one `state.dat` slot.
pub(crate) const STATE_SLOT_LEN: usize = 64 * 1024;

/// What one run of the binary did.
#[derive(Debug)]
pub(crate) struct Run {
    /// Exit code (-1 when killed by a signal).
    pub(crate) code: i32,
    /// Standard output.
    pub(crate) stdout: String,
    /// Standard error.
    pub(crate) stderr: String,
}

impl Run {
    /// Panics with the whole output unless the exit code is `code`.
    #[track_caller]
    pub(crate) fn expect_code(&self, code: i32, what: &str) -> &Run {
        assert_eq!(self.code, code, "{what}: expected exit {code}\n{self}");
        self
    }

    /// Standard output and standard error together.
    pub(crate) fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}\n--- stdout\n{}\n--- stderr\n{}", self.code, self.stdout, self.stderr)
    }
}

/// Runs `stele ARGS` and collects its output.
pub(crate) fn stele(args: &[&str]) -> Run {
    stele_os(&args.iter().map(|a| a.as_ref()).collect::<Vec<&std::ffi::OsStr>>())
}

/// Runs `stele ARGS` with arguments that may be paths.
pub(crate) fn stele_os(args: &[&std::ffi::OsStr]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_stele"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running the stele binary");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `stele <cmd> --data DIR [extra...]`.
pub(crate) fn stele_at(cmd: &str, dir: &Path, extra: &[&str]) -> Run {
    let mut args: Vec<&std::ffi::OsStr> = vec![cmd.as_ref(), "--data".as_ref(), dir.as_os_str()];
    args.extend(extra.iter().map(|a| -> &std::ffi::OsStr { a.as_ref() }));
    stele_os(&args)
}

/// `stele import --data DIR [flags...] FILES...`, which must exit 0.
#[track_caller]
pub(crate) fn import(dir: &Path, flags: &[&str], files: &[PathBuf]) -> Run {
    let mut args: Vec<&std::ffi::OsStr> = vec!["import".as_ref(), "--data".as_ref(), dir.as_os_str()];
    args.extend(flags.iter().map(|a| -> &std::ffi::OsStr { a.as_ref() }));
    args.extend(files.iter().map(|f| f.as_os_str()));
    let r = stele_os(&args);
    r.expect_code(0, &format!("import {flags:?} of {} files", files.len()));
    r
}

/// Creates a data directory with origin `test.stele.example/log`.
#[track_caller]
pub(crate) fn init(dir: &Path) {
    stele_at("init", dir, &["--origin", "test.stele.example/log"]).expect_code(0, "init");
}

/// `../shared/data`, or `None` (after saying so) when the peers folder is absent.
/// With `STELE_REQUIRE_PEERS=1` a missing folder is a failure.
pub(crate) fn shared_data() -> Option<PathBuf> {
    let p = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data"));
    if p.join("k8s-audit").is_dir() {
        return Some(p);
    }
    if std::env::var("STELE_REQUIRE_PEERS").is_ok_and(|v| v == "1") {
        panic!("STELE_REQUIRE_PEERS=1 but {} is missing", p.display());
    }
    eprintln!("skipping: ../shared not found");
    None
}

/// Sorted `*.json` files of a folder.
pub(crate) fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    v.sort();
    v
}

/// The native Kubernetes audit samples: the panther JSON-lines file, then every falco
/// `k8s_audit/*.json` and `psp/*.json`.
pub(crate) fn k8s_files(data: &Path) -> Vec<PathBuf> {
    let k = data.join("k8s-audit");
    let mut v = vec![k.join("panther-analysis_k8s-audit-native.jsonl")];
    v.extend(json_files(&k.join("falcosecurity-falco/k8s_audit")));
    v.extend(json_files(&k.join("falcosecurity-falco/psp")));
    v
}

/// One event of a sample file as it is on disk.
#[derive(Clone, Debug)]
pub(crate) struct SourceEvent {
    /// The file.
    pub(crate) file: PathBuf,
    /// 1-based line number.
    pub(crate) line: usize,
    /// The exact bytes of the event (the line without its line end).
    pub(crate) bytes: Vec<u8>,
    /// The event parsed by serde_json.
    pub(crate) value: serde_json::Value,
}

/// Every non-blank line of `path` as one JSON event (the samples hold one object per
/// line; a file of a single object without a final newline is one line).
pub(crate) fn source_events(path: &Path) -> Vec<SourceEvent> {
    let text = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = Vec::new();
    for (i, line) in text.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let value = serde_json::from_slice(line).unwrap_or_else(|e| panic!("{}:{}: {e}", path.display(), i + 1));
        out.push(SourceEvent { file: path.to_path_buf(), line: i + 1, bytes: line.to_vec(), value });
    }
    out
}

/// Copies a directory tree.
pub(crate) fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap_or_else(|e| panic!("{}: {e}", dst.display()));
    for e in std::fs::read_dir(src).unwrap_or_else(|e| panic!("{}: {e}", src.display())) {
        let e = e.expect("dir entry");
        let to = dst.join(e.file_name());
        if e.file_type().expect("file type").is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), &to).unwrap_or_else(|err| panic!("{}: {err}", e.path().display()));
        }
    }
}

/// Whether `text` mentions `entry N` for exactly this `N` (not a longer number).
pub(crate) fn mentions_entry(text: &str, n: u64) -> bool {
    let pat = format!("entry {n}");
    text.match_indices(&pat).any(|(at, _)| !text[at + pat.len()..].starts_with(|c: char| c.is_ascii_digit()))
}

/// Whether one line of `text` names `file` and, when given, `offset N` for exactly
/// this `N`.
pub(crate) fn mentions_unit(text: &str, file: &str, offset: Option<u64>) -> bool {
    text.lines().any(|l| {
        l.contains(file)
            && offset.is_none_or(|o| {
                let pat = format!("offset {o}");
                l.match_indices(&pat).any(|(at, _)| !l[at + pat.len()..].starts_with(|c: char| c.is_ascii_digit()))
            })
    })
}

/// Number of non-empty lines (one JSON object each in `stele query` output).
pub(crate) fn count_lines(s: &str) -> usize {
    s.lines().filter(|l| !l.trim().is_empty()).count()
}

/// The body of a C2SP checkpoint note: origin, tree size, root hash (base64).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NoteBody {
    pub(crate) origin: String,
    pub(crate) tree_size: u64,
    pub(crate) root_b64: String,
}

/// Reads the body of a signed checkpoint note and checks it carries at least one
/// signature line (`— name base64`).
pub(crate) fn parse_note(note: &str) -> NoteBody {
    let (body, sigs) = note.split_once("\n\n").unwrap_or_else(|| panic!("no blank line in note:\n{note}"));
    let mut lines = body.lines();
    let origin = lines.next().expect("origin line").to_string();
    let tree_size =
        lines.next().and_then(|l| l.parse().ok()).unwrap_or_else(|| panic!("no tree size in note:\n{note}"));
    let root_b64 = lines.next().expect("root line").to_string();
    assert!(
        sigs.lines().any(|l| l.starts_with("\u{2014} ") && l.split(' ').count() == 3),
        "note has no signature line:\n{note}"
    );
    NoteBody { origin, tree_size, root_b64 }
}

/// Nanoseconds since the Unix epoch of an RFC 3339 time, or of a date-time without
/// offset (`2022-11-29 00:09:04.38`, `T` or space), taken as UTC. Written apart from
/// stele's parser on purpose.
pub(crate) fn parse_time_ns(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = b.get(r)?;
        if t.is_empty() || !t.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(t).ok()?.parse().ok()
    };
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (y, mo, d, h, mi, sec) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut frac_ns = 0i64;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let digits = &s[start..i];
        if digits.is_empty() {
            return None;
        }
        let mut padded: String = digits.chars().take(9).collect();
        while padded.len() < 9 {
            padded.push('0');
        }
        frac_ns = padded.parse().ok()?;
    }
    let offset_s = match &s[i..] {
        "" | "Z" | "z" => 0,
        rest if rest.len() == 6 && (rest.starts_with('+') || rest.starts_with('-')) && &rest[3..4] == ":" => {
            let oh: i64 = rest[1..3].parse().ok()?;
            let om: i64 = rest[4..6].parse().ok()?;
            let o = oh * 3600 + om * 60;
            if rest.starts_with('-') { -o } else { o }
        }
        _ => return None,
    };
    // Days from the civil date (H. Hinnant's algorithm).
    let (yy, m) = if mo <= 2 { (y - 1, mo + 9) } else { (y, mo - 3) };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset_s;
    secs.checked_mul(1_000_000_000)?.checked_add(frac_ns)
}

/// A small seeded PRNG (SplitMix64): replayable rounds without a dependency.
#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "empty range");
        self.next_u64() % n
    }

    /// Uniform in `range`.
    pub(crate) fn range(&mut self, range: std::ops::Range<usize>) -> usize {
        range.start + self.below((range.end - range.start) as u64) as usize
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

#[test]
fn parse_time_ns_agrees_with_known_values() {
    assert_eq!(parse_time_ns("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(parse_time_ns("2018-10-25T13:58:49.730588Z"), Some(1_540_475_929_730_588_000));
    assert_eq!(parse_time_ns("2022-11-29 00:09:04.38"), Some(1_669_680_544_380_000_000));
    assert_eq!(parse_time_ns("2022-11-29T01:09:04.38+01:00"), Some(1_669_680_544_380_000_000));
    assert_eq!(parse_time_ns("2025-08-26 17:40:49.330617000"), Some(1_756_230_049_330_617_000));
    assert_eq!(parse_time_ns("yesterday"), None);
    assert!(mentions_entry("FAIL entry 12 (x)", 12));
    assert!(!mentions_entry("FAIL entry 123 (x)", 12));
    assert!(mentions_unit("a segments/0000000001.seg offset 32: x", "segments/0000000001.seg", Some(32)));
    assert!(!mentions_unit("a segments/0000000001.seg offset 320: x", "segments/0000000001.seg", Some(32)));
}

/// The non-blank lines of a file, as bytes.
pub(crate) fn lines(path: &Path) -> Vec<Vec<u8>> {
    std::fs::read(path)
        .unwrap()
        .split(|&b| b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .map(<[u8]>::to_vec)
        .collect()
}

/// Whether `needle` occurs in `hay`.
pub(crate) fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Every file under `dir`, with its bytes.
pub(crate) fn all_files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(all_files(&p));
        } else {
            out.push((p.clone(), std::fs::read(&p).unwrap()));
        }
    }
    out
}
