//! Syslog framing and normalization over bytes captured from real senders
//! (`logger`, rsyslog) and over rsyslog's and pgbadger's syslog test data, all in
//! `../shared/data`; plus a property test: any chunking of a stream yields the same
//! frames.
//!
//! Skips with a message when `../shared` is absent, unless
//! `STELE_REQUIRE_PEERS=1`, which turns the skip into a failure.

use std::io::Read;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use stele_formats::syslog::{Deframer, FrameError, Framing, normalize};
use stele_formats::{EventFormat, FieldPointers, Normalizer};

fn shared_data() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var("STELE_REQUIRE_PEERS").as_deref() == Ok("1") {
        panic!("../shared not found at {} and STELE_REQUIRE_PEERS=1", dir.display());
    }
    eprintln!("skipping: ../shared not found ({})", dir.display());
    None
}

/// Every frame of `stream` fed in chunks of the given sizes (cycled), then `finish`.
fn deframe(stream: &[u8], chunks: &[usize], max: usize) -> Result<(Option<Framing>, Vec<Vec<u8>>), FrameError> {
    let mut d = Deframer::new(max);
    let mut out = Vec::new();
    let mut rest = stream;
    let mut sizes = chunks.iter().copied().cycle();
    while !rest.is_empty() {
        let n = sizes.next().unwrap_or(rest.len()).clamp(1, rest.len());
        d.push(&rest[..n]);
        rest = &rest[n..];
        while let Some(f) = d.next_frame()? {
            out.push(f.to_vec());
        }
    }
    if let Some(f) = d.finish()? {
        out.push(f.to_vec());
    }
    Ok((d.framing(), out))
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn gunzip(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(&read(path)[..]).read_to_end(&mut out).unwrap();
    out
}

fn ns(rfc3339: &str) -> Option<i64> {
    Some(rfc3339.parse::<jiff::Timestamp>().unwrap().as_nanosecond() as i64)
}

/// The captured `logger` and rsyslog bytes (see data/captured/README.md for the commands
/// that produced them, which is where the expected values come from).
#[test]
fn captured_logger_and_rsyslog() {
    let Some(data) = shared_data() else { return };
    let cap = data.join("captured");
    let normalizer = Normalizer::new(&FieldPointers::default());

    // LF framing: one message, the bytes before the LF.
    let lf = read(&cap.join("syslog-logger-rfc5424-tcp-lf.bin"));
    let (framing, frames) = deframe(&lf, &[7], 1024).unwrap();
    assert_eq!(framing, Some(Framing::NonTransparent));
    assert_eq!(frames, vec![lf[..lf.len() - 1].to_vec()]);
    let n = normalize(&frames[0]);
    assert_eq!(n.actor.as_deref(), Some("alice"));
    assert_eq!(n.action.as_deref(), Some("login"));
    assert_eq!(n.producer.as_deref(), Some("auditd-test"));
    assert_eq!(n.resource.as_deref(), Some("vm"));
    assert_eq!(n.event_time_ns, ns("2026-11-29T10:41:47.898711Z"));
    // A stored payload re-normalizes to the same fields through the Normalizer.
    assert_eq!(normalizer.parse(&frames[0], Some(EventFormat::Syslog)).unwrap(), (EventFormat::Syslog, n));

    // RFC 3164 over LF framing: no year, so no event time; the TAG is the producer.
    let bsd = read(&cap.join("syslog-logger-rfc3164-tcp-lf.bin"));
    let (_, frames) = deframe(&bsd, &[1], 1024).unwrap();
    assert_eq!(frames, vec![b"<37>Nov 29 10:41:50 vm auditd-test: legacy bsd message".to_vec()]);
    let n = normalize(&frames[0]);
    assert_eq!(
        (n.producer.as_deref(), n.resource.as_deref(), n.event_time_ns),
        (Some("auditd-test"), Some("vm"), None)
    );

    // logger's octet counting: the counted bytes, no LF.
    let oc = read(&cap.join("syslog-logger-rfc5424-tcp-octet.bin"));
    let (framing, frames) = deframe(&oc, &[3, 50], 1024).unwrap();
    assert_eq!(framing, Some(Framing::OctetCounting));
    assert_eq!(frames, vec![oc[4..].to_vec()]);
    assert_eq!(frames[0].len(), 118);
    assert_eq!(normalize(&frames[0]).event_time_ns, ns("2026-11-29T10:41:48.910726Z"));

    // A UDP datagram is stored whole.
    let udp = read(&cap.join("syslog-logger-rfc5424-udp.bin"));
    let n = normalize(&udp);
    assert_eq!((n.producer.as_deref(), n.event_time_ns), (Some("auditd-test"), ns("2026-11-29T10:41:49.920404Z")));

    // rsyslog relayed the same two messages over TCP (octet counted, the count includes
    // its LF) and over UDP (one datagram per line, each ending in LF): the frames must
    // equal the datagrams byte for byte.
    let tcp = read(&cap.join("syslog-rsyslog-rfc5424-tcp-octet.bin"));
    let (framing, frames) = deframe(&tcp, &[1], 1024).unwrap();
    assert_eq!(framing, Some(Framing::OctetCounting));
    assert_eq!(frames.iter().map(Vec::len).collect::<Vec<_>>(), vec![144, 114]);
    let datagrams: Vec<Vec<u8>> = read(&cap.join("syslog-rsyslog-rfc5424-udp.bin"))
        .split_inclusive(|&b| b == b'\n')
        .map(<[u8]>::to_vec)
        .collect();
    assert_eq!(frames, datagrams);
    let n = normalize(&frames[0]);
    assert_eq!(
        (n.actor.as_deref(), n.action.as_deref(), n.producer.as_deref()),
        (Some("alice"), Some("LOGIN"), Some("auditd-test"))
    );
    assert_eq!(n.event_time_ns, ns("2026-11-29T10:42:07.182042Z"));
}

/// rsyslog's parser test suites: `#` comments, then pairs of a raw message line and
/// rsyslog's own parse of it, `PRI,facility,severity,timestamp,hostname,programname,
/// syslogtag,msg`. rsyslog is the independent reference for the HOSTNAME.
#[test]
fn rsyslog_parser_testsuites() {
    let Some(data) = shared_data() else { return };
    let dir = data.join("syslog/rsyslog/testsuites");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(files.len() >= 30, "{} files", files.len());
    let (mut pairs, mut host_agree, mut host_checked) = (0, 0, 0);
    for path in &files {
        let bytes = read(path);
        // The whole file deframes (LF framing) into its non-empty lines, exactly.
        let (_, frames) = deframe(&bytes, &[13, 1, 64], 1 << 16).unwrap();
        let lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
        assert_eq!(frames, lines, "{}", path.display());
        let lines: Vec<&[u8]> = lines.into_iter().filter(|l| !l.starts_with(b"#")).collect();
        for pair in lines.chunks(2) {
            let [raw, expected] = pair else { continue };
            let n = normalize(raw);
            pairs += 1;
            let expected = String::from_utf8_lossy(expected);
            let cols: Vec<&str> = expected.splitn(8, ',').collect();
            let name = path.file_name().unwrap().to_string_lossy();
            // The RFC-conformant suites must agree with rsyslog on the host.
            if cols.len() == 8 && cols[0].parse::<u8>().is_ok() && !cols[4].is_empty() {
                host_checked += 1;
                let agree = n.resource.as_deref() == Some(cols[4]);
                host_agree += usize::from(agree);
                let strict = name.starts_with("rfc") || name.starts_with("date") || name.starts_with("1.");
                assert!(!strict || agree, "{name}: {:?} vs rsyslog {:?}", n.resource, cols[4]);
            }
        }
    }
    eprintln!("{pairs} messages; host agrees with rsyslog on {host_agree} of {host_checked}");
    assert!(pairs >= 40, "{pairs}");
    assert!(host_agree * 10 >= host_checked * 7, "{host_agree} of {host_checked}");
}

/// rsyslog's fuzz seed corpus: each file is one message.
#[test]
fn rsyslog_fuzz_corpus() {
    let Some(data) = shared_data() else { return };
    let dir = data.join("syslog/rsyslog/fuzz-corpus");
    let get = |name: &str| normalize(&read(&dir.join(name)));
    let n = get("rfc5424-basic");
    assert_eq!(n.producer.as_deref(), Some("evntslog"));
    assert_eq!(n.action.as_deref(), Some("ID47"));
    assert_eq!(n.resource.as_deref(), Some("mymachine.example.com"));
    assert_eq!(n.event_time_ns, ns("2003-10-11T22:14:15.003Z"));
    let n = get("rfc5424-escaped-sd");
    assert_eq!(n.event_time_ns, ns("2026-07-23T07:30:45Z"));
    assert_eq!(n.action.as_deref(), Some("msg"));
    let n = get("rfc5424-nil");
    assert_eq!((n.producer, n.resource, n.action, n.event_time_ns), (None, None, None, None));
    let n = get("rfc3164-rfc3339");
    assert_eq!(n.event_time_ns, ns("2026-07-23T07:30:45.123Z"));
    assert_eq!(n.producer.as_deref(), Some("daemon"));
    let n = get("rfc3164-basic");
    assert_eq!((n.producer.as_deref(), n.resource.as_deref()), (Some("su"), Some("mymachine")));
    get("rfc3164-short");
    get("rfc3164-no-pri");
}

/// pgbadger's PostgreSQL syslog file (RFC 3164 lines without PRI), split in odd chunks.
#[test]
fn pgbadger_postgres_syslog() {
    let Some(data) = shared_data() else { return };
    let bytes = gunzip(&data.join("syslog/pgbadger_pg-syslog.2.gz"));
    let (framing, frames) = deframe(&bytes, &[4093, 17, 65536], 1 << 16).unwrap();
    assert_eq!(framing, Some(Framing::NonTransparent));
    let lines = bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count();
    assert_eq!(frames.len(), lines);
    assert!(frames.len() > 59_000, "{}", frames.len());
    let postgres = frames.iter().filter(|f| normalize(f).producer.as_deref() == Some("postgres")).count();
    assert!(postgres * 100 >= frames.len() * 99, "{postgres} of {}", frames.len());
    let logplex = gunzip(&data.join("syslog/pgbadger_logplex.gz"));
    // Its lines start with a digit (no PRI), which on a stream means octet counting:
    // as a stream it is refused at the first frame, with the offending byte named.
    assert_eq!(deframe(&logplex, &[100], 1 << 16).unwrap_err(), FrameError::BadLength { offset: 4, byte: b'-' });
    let first = logplex.split(|&b| b == b'\n').next().unwrap();
    let n = normalize(first);
    assert_eq!(n.event_time_ns, ns("2019-03-14T00:22:56Z"));
    assert_eq!(n.producer.as_deref(), Some("app"));
}

fn stream_strategy() -> impl Strategy<Value = (bool, Vec<Vec<u8>>)> {
    (any::<bool>(), prop::collection::vec(prop::collection::vec(any::<u8>(), 1..200), 0..20))
}

proptest! {
    /// Any chunking of a stream gives the frames of the whole stream fed at once, and
    /// those are the messages that were framed.
    #[test]
    fn chunking_does_not_change_frames((octet, msgs) in stream_strategy(), chunks in prop::collection::vec(1usize..64, 1..10)) {
        let mut stream = Vec::new();
        let mut expected = Vec::new();
        for m in &msgs {
            if octet {
                stream.extend_from_slice(format!("{} ", m.len()).as_bytes());
                stream.extend_from_slice(m);
                expected.push(m.clone());
            } else {
                // LF framing carries no LF inside a message; make the first byte '<'.
                let mut m: Vec<u8> = m.iter().map(|&b| if b == b'\n' { b' ' } else { b }).collect();
                m[0] = b'<';
                stream.extend_from_slice(&m);
                stream.push(b'\n');
                expected.push(m);
            }
        }
        let whole = deframe(&stream, &[stream.len().max(1)], 256).unwrap();
        let split = deframe(&stream, &chunks, 256).unwrap();
        prop_assert_eq!(&whole.1, &expected);
        prop_assert_eq!(whole, split);
    }

    /// Arbitrary bytes: chunking never changes the frames or the error.
    #[test]
    fn chunking_does_not_change_errors(stream in prop::collection::vec(any::<u8>(), 0..400), chunks in prop::collection::vec(1usize..64, 1..10)) {
        let whole = deframe(&stream, &[stream.len().max(1)], 32);
        let split = deframe(&stream, &chunks, 32);
        prop_assert_eq!(&whole, &split);
        for f in whole.map(|w| w.1).unwrap_or_default() {
            normalize(&f);
        }
    }
}
