//! Linux audit logs: record lines, their grouping into events, and the
//! normalized fields of one event.
//!
//! The kernel and auditd write one line per record,
//! `[node=HOST ]type=TYPE msg=audit(SECONDS.MILLIS:SERIAL): key=value ...`
//! (linux/audit.h, auditd `audit.log` format). The records of one event
//! share the `audit(...)` stamp; a multi-record event ends with an `EOE`
//! record, a single-record event has none. stele stores one entry per event:
//! the exact bytes of its record lines (without their `\n` or `\r\n`) joined
//! by `\n`, in the order they arrived, non-UTF-8 bytes included.
//!
//! [`Grouper`] does the grouping over a stream of lines with bounded memory:
//! records of up to [`MAX_OPEN`] events may interleave, and a record may
//! arrive up to [`WINDOW`] lines after the previous record of its event.
//! Past that an event is closed, and a later record with the same stamp
//! starts a new event.

use std::collections::VecDeque;
use std::net::IpAddr;

use crate::Normalized;
use crate::error::InvalidReason;

/// Lines after the last record of an open event at which it is closed.
/// Auditd writes an event's records together; the window absorbs records of
/// concurrent events written in between.
pub const WINDOW: u64 = 64;

/// Events open at once; the oldest is closed when one more starts. Bounds
/// memory to `MAX_OPEN` events of the maximum event size.
pub const MAX_OPEN: usize = 64;

/// The stamp of a record: node name (empty without `node=`), and the
/// `audit(SECONDS.MILLIS:SERIAL)` text.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Key {
    node: Vec<u8>,
    stamp: Vec<u8>,
}

/// The parts of one record line.
#[derive(Debug)]
struct Record<'a> {
    node: &'a [u8],
    kind: &'a [u8],
    /// `SECONDS.MILLIS:SERIAL`.
    stamp: &'a [u8],
    /// Everything after `): `.
    body: &'a [u8],
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay, needle)
}

/// Splits one record line, or says what is wrong with it.
fn record(line: &[u8]) -> Result<Record<'_>, InvalidReason> {
    let bad = |detail: &str| InvalidReason::NotAuditRecord { detail: detail.to_owned() };
    let (node, rest) = match line.strip_prefix(b"node=") {
        Some(r) => {
            let sp = memchr::memchr(b' ', r).ok_or_else(|| bad("\"node=\" without a record after it"))?;
            (&r[..sp], &r[sp + 1..])
        }
        None => (&line[..0], line),
    };
    let rest = rest.strip_prefix(b"type=").ok_or_else(|| bad("does not start with \"type=\" or \"node=\""))?;
    let sp = memchr::memchr(b' ', rest).ok_or_else(|| bad("no \"msg=audit(\" stamp"))?;
    let kind = &rest[..sp];
    let at = find(rest, b"msg=audit(").ok_or_else(|| bad("no \"msg=audit(\" stamp"))?;
    let s = &rest[at + 10..];
    let close = memchr::memchr(b')', s).ok_or_else(|| bad("unterminated \"msg=audit(\" stamp"))?;
    let stamp = &s[..close];
    // SECONDS.MILLIS:SERIAL, all decimal.
    let ok = stamp.iter().all(|b| b.is_ascii_digit() || *b == b'.' || *b == b':')
        && stamp.iter().filter(|b| **b == b':').count() == 1
        && stamp.iter().filter(|b| **b == b'.').count() == 1
        && stamp.first().is_some_and(u8::is_ascii_digit)
        && stamp.last().is_some_and(u8::is_ascii_digit);
    if !ok || kind.is_empty() {
        return Err(bad("the stamp is not \"audit(SECONDS.MILLIS:SERIAL)\""));
    }
    let body = s[close + 1..].strip_prefix(b":").unwrap_or(&s[close + 1..]);
    Ok(Record { node, kind, stamp, body })
}

/// A closed event, or the report of one that was too large.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grouped {
    /// The event's stored bytes (its record lines joined by `\n`), with the
    /// line number and byte offset of its first record.
    Event {
        /// The entry's bytes.
        bytes: Vec<u8>,
        /// 1-based line of the first record.
        line: u64,
        /// Byte offset of the first record in the input.
        offset: u64,
    },
    /// The event's records together exceed the maximum event size; they
    /// were dropped as they came.
    TooLarge {
        /// 1-based line of the first record.
        line: u64,
        /// Byte offset of the first record in the input.
        offset: u64,
        /// Size the entry would have had, in bytes.
        size: u64,
    },
}

#[derive(Debug)]
struct Group {
    key: Key,
    data: Vec<u8>,
    size: u64,
    oversize: bool,
    complete: bool,
    last_line: u64,
    line: u64,
    offset: u64,
}

/// Groups record lines into events (see the module documentation).
#[derive(Debug)]
pub struct Grouper {
    open: VecDeque<Group>,
    max_event_bytes: usize,
    last_line: u64,
}

impl Grouper {
    /// A grouper whose events are at most `max_event_bytes` long.
    pub fn new(max_event_bytes: usize) -> Grouper {
        Grouper { open: VecDeque::new(), max_event_bytes, last_line: 0 }
    }

    /// Adds one record line (without its line ending) found at 1-based
    /// `line` and byte `offset`.
    ///
    /// # Errors
    /// [`InvalidReason::NotAuditRecord`] when `bytes` is not a record line;
    /// it is then not part of any event.
    pub fn push(&mut self, bytes: &[u8], line: u64, offset: u64) -> Result<(), InvalidReason> {
        let rec = record(bytes)?;
        self.last_line = line;
        let eoe = rec.kind == b"EOE";
        let pos = self.open.iter().rposition(|g| g.key.stamp == rec.stamp && g.key.node == rec.node);
        let g = match pos {
            Some(i) => &mut self.open[i],
            None => {
                self.open.push_back(Group {
                    key: Key { node: rec.node.to_vec(), stamp: rec.stamp.to_vec() },
                    data: Vec::new(),
                    size: 0,
                    oversize: false,
                    complete: false,
                    last_line: line,
                    line,
                    offset,
                });
                self.open.back_mut().expect("just pushed")
            }
        };
        let add = bytes.len() as u64 + u64::from(g.size > 0);
        g.size += add;
        g.last_line = line;
        g.complete |= eoe;
        if g.size > self.max_event_bytes as u64 {
            g.oversize = true;
            g.data = Vec::new();
        } else {
            if !g.data.is_empty() {
                g.data.push(b'\n');
            }
            g.data.extend_from_slice(bytes);
        }
        Ok(())
    }

    /// The next event ready to be emitted, oldest first: the oldest open
    /// event once it has its `EOE`, has seen no record for [`WINDOW`]
    /// lines, or more than [`MAX_OPEN`] events are open; with `eof`, every
    /// open event in turn.
    pub fn pop(&mut self, eof: bool) -> Option<Grouped> {
        let front = self.open.front()?;
        let stale = self.last_line.saturating_sub(front.last_line) >= WINDOW;
        if !(eof || front.complete || stale || self.open.len() > MAX_OPEN) {
            return None;
        }
        let g = self.open.pop_front().expect("front exists");
        Some(if g.oversize {
            Grouped::TooLarge { line: g.line, offset: g.offset, size: g.size }
        } else {
            Grouped::Event { bytes: g.data, line: g.line, offset: g.offset }
        })
    }
}

/// The `key=value` fields of a record body.
type Fields<'a> = Vec<(&'a [u8], String)>;

/// The `key=value` fields of a record body, values unquoted and (for fields
/// the kernel hex-encodes) decoded.
fn fields(body: &[u8]) -> Fields<'_> {
    let mut out = Vec::new();
    let mut i = 0;
    // Spaces separate fields; 0x1d separates the enriched (upper-case)
    // fields auditd appends; `'` delimits the nested msg='...' of user-space
    // records, whose fields are read as the record's own.
    let sep = |b: u8| b == b' ' || b == 0x1d || b == b'\'';
    while i < body.len() {
        while i < body.len() && sep(body[i]) {
            i += 1;
        }
        let start = i;
        while i < body.len() && !sep(body[i]) && body[i] != b'=' {
            i += 1;
        }
        let key = &body[start..i];
        if i >= body.len() || body[i] != b'=' {
            continue;
        }
        i += 1;
        let (raw, quoted) = if body.get(i) == Some(&b'"') {
            let s = i + 1;
            let e = memchr::memchr(b'"', &body[s..]).map_or(body.len(), |p| s + p);
            i = (e + 1).min(body.len());
            (&body[s..e], true)
        } else if body.get(i) == Some(&b'\'') {
            // msg='...': its inner fields follow as top-level ones.
            continue;
        } else {
            let s = i;
            while i < body.len() && !sep(body[i]) {
                i += 1;
            }
            (&body[s..i], false)
        };
        out.push((key, value(key, raw, quoted)));
    }
    out
}

/// Fields the kernel writes hex-encoded (unquoted) when they hold spaces,
/// quotes or control characters (audit_log_untrustedstring).
const HEX_FIELDS: &[&[u8]] = &[b"exe", b"comm", b"name", b"acct", b"cwd", b"proctitle", b"cmd", b"path"];

fn value(key: &[u8], raw: &[u8], quoted: bool) -> String {
    let hex = !quoted
        && HEX_FIELDS.contains(&key)
        && raw.len() >= 2
        && raw.len().is_multiple_of(2)
        && raw.iter().all(|b| b.is_ascii_hexdigit());
    if hex {
        let bytes: Vec<u8> = raw
            .chunks(2)
            .map(|c| {
                let d = |b: u8| (b as char).to_digit(16).expect("hex digit") as u8;
                (d(c[0]) << 4) | d(c[1])
            })
            .collect();
        return String::from_utf8_lossy(&bytes).into_owned();
    }
    String::from_utf8_lossy(raw).into_owned()
}

/// Values that mean "none" in audit records.
fn present(v: &str) -> bool {
    !v.is_empty() && v != "?" && v != "(null)" && v != "unset" && v != "4294967295" && v != "-1"
}

/// Validates the lines of one stored audit event and extracts its fields.
///
/// `bytes` are record lines separated by `\n` (a trailing `\r` on a line is
/// ignored); every line must be a record and all must share one stamp.
/// Fields (first present value wins, records searched with the `SYSCALL`
/// record first, then in order):
/// - time: the stamp's `SECONDS.MILLIS`;
/// - request id: the stamp `SECONDS.MILLIS:SERIAL`;
/// - actor: `acct`, `AUID`, `auid`, `UID`, `uid` (the unset id
///   4294967295 and `?` count as absent);
/// - action: the main record's type (`SYSCALL` when there is one, else the
///   first record's), for `SYSCALL` followed by `:` and the `SYSCALL`
///   (enriched name) or `syscall` (number) field: `SYSCALL:execve`,
///   `USER_LOGIN`;
/// - resource: the `name` of the first `PATH` record whose `nametype` is not
///   `PARENT`, else `exe`, else `comm`;
/// - outcome: `success=yes`/`no`, or `res=success`/`failed`/`1`/`0`;
/// - source address: `addr` when it is an IP address;
/// - producer: `auditd`.
///
/// # Errors
/// [`InvalidReason::NotAuditRecord`] for an empty input, a line that is not
/// a record, or records of different events.
pub fn normalize(bytes: &[u8]) -> Result<Normalized, InvalidReason> {
    let mut recs = Vec::new();
    for line in bytes.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if !line.is_empty() {
            recs.push(record(line)?);
        }
    }
    let Some((stamp0, node0)) = recs.first().map(|r| (r.stamp, r.node)) else {
        return Err(InvalidReason::NotAuditRecord { detail: "no record".to_owned() });
    };
    if recs.iter().any(|r| r.stamp != stamp0 || r.node != node0) {
        return Err(InvalidReason::NotAuditRecord { detail: "records of more than one event".to_owned() });
    }
    let main = recs.iter().position(|r| r.kind == b"SYSCALL").unwrap_or(0);
    recs.swap(0, main);
    let parsed: Vec<(&[u8], Fields<'_>)> = recs.iter().map(|r| (r.kind, fields(r.body))).collect();
    let get = |keys: &[&str]| -> Option<String> {
        keys.iter()
            .find_map(|k| parsed.iter().find_map(|(_, fs)| fs.iter().find(|(fk, v)| *fk == k.as_bytes() && present(v))))
            .map(|(_, v)| v.clone())
    };
    let stamp = String::from_utf8_lossy(stamp0).into_owned();
    let time = stamp.split(':').next().and_then(|t| {
        let (s, ms) = t.split_once('.')?;
        let s: i64 = s.parse().ok()?;
        let frac: String = ms.chars().chain(std::iter::repeat('0')).take(9).collect();
        s.checked_mul(1_000_000_000)?.checked_add(frac.parse::<i64>().ok()?)
    });
    let kind = String::from_utf8_lossy(parsed[0].0).into_owned();
    let action = if kind == "SYSCALL" {
        match get(&["SYSCALL", "syscall"]) {
            Some(sc) => format!("SYSCALL:{sc}"),
            None => kind,
        }
    } else {
        kind
    };
    let path = parsed.iter().filter(|(k, _)| *k == b"PATH").find_map(|(_, fs)| {
        let nametype = fs.iter().find(|(k, _)| *k == b"nametype").map(|(_, v)| v.as_str());
        if nametype == Some("PARENT") {
            return None;
        }
        fs.iter().find(|(k, v)| *k == b"name" && present(v)).map(|(_, v)| v.clone())
    });
    let outcome = match get(&["success"]).as_deref() {
        Some("yes") => Some("success".to_owned()),
        Some("no") => Some("failure".to_owned()),
        _ => match get(&["res"]).as_deref() {
            Some("1") => Some("success".to_owned()),
            Some("0") => Some("failure".to_owned()),
            Some(r) => Some(crate::normalize_outcome(r)),
            None => None,
        },
    };
    Ok(Normalized {
        event_time_ns: time,
        actor: get(&["acct", "AUID", "auid", "UID", "uid"]),
        action: Some(action),
        resource: path.or_else(|| get(&["exe", "comm"])),
        outcome,
        source_ip: get(&["addr"]).filter(|a| a.parse::<IpAddr>().is_ok()),
        request_id: Some(stamp),
        producer: Some("auditd".to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(g: &mut Grouper, eof: bool) -> Vec<Grouped> {
        std::iter::from_fn(|| g.pop(eof)).collect()
    }

    #[test]
    fn interleaved_records_group_by_stamp() {
        let lines: [&[u8]; 5] = [
            b"type=SYSCALL msg=audit(1.000:7): syscall=59 success=yes auid=1000 exe=\"/bin/ls\"",
            b"type=USER_LOGIN msg=audit(1.001:8): pid=1 uid=0 msg='op=login acct=\"bob\" addr=10.0.0.9 res=failed'",
            b"type=PATH msg=audit(1.000:7): item=0 name=2F746D702F6120622E747874 nametype=NORMAL",
            b"type=EOE msg=audit(1.000:7): ",
            b"type=CWD msg=audit(1.000:9): cwd=\"/\xff\"",
        ];
        let mut g = Grouper::new(1 << 20);
        for (i, l) in lines.iter().enumerate() {
            g.push(l, i as u64 + 1, 0).unwrap();
        }
        let got = all(&mut g, false);
        assert_eq!(got.len(), 1, "only the event with its EOE is closed");
        let Grouped::Event { bytes, line, .. } = &got[0] else { panic!("{got:?}") };
        assert_eq!(*line, 1);
        assert_eq!(bytes, &[lines[0], lines[2], lines[3]].join(&b'\n'));
        let n = normalize(bytes).unwrap();
        assert_eq!(n.action.as_deref(), Some("SYSCALL:59"));
        assert_eq!(n.resource.as_deref(), Some("/tmp/a b.txt"));
        assert_eq!(n.actor.as_deref(), Some("1000"));
        assert_eq!(n.outcome.as_deref(), Some("success"));
        assert_eq!(n.event_time_ns, Some(1_000_000_000));
        let rest = all(&mut g, true);
        assert_eq!(rest.len(), 2);
        let Grouped::Event { bytes, .. } = &rest[0] else { panic!() };
        let n = normalize(bytes).unwrap();
        assert_eq!((n.actor.as_deref(), n.outcome.as_deref()), (Some("bob"), Some("failure")));
        assert_eq!(n.source_ip.as_deref(), Some("10.0.0.9"));
        let Grouped::Event { bytes, .. } = &rest[1] else { panic!() };
        assert_eq!(bytes.as_slice(), lines[4], "non-UTF-8 bytes are kept");
    }

    #[test]
    fn bad_lines_and_limits() {
        let mut g = Grouper::new(40);
        assert!(g.push(b"hello", 1, 0).is_err());
        assert!(g.push(b"type=X msg=audit(1.0:x): a", 1, 0).is_err());
        g.push(b"type=SYSCALL msg=audit(1.5:1): a=1 b=2 c=3 d=4 e=5", 2, 0).unwrap();
        assert!(matches!(g.pop(true), Some(Grouped::TooLarge { line: 2, .. })));
        assert!(normalize(b"type=A msg=audit(1.0:1): x\ntype=B msg=audit(1.0:2): y").is_err());
        assert!(normalize(b"").is_err());
    }

    #[test]
    fn window_closes_stale_events() {
        let mut g = Grouper::new(1 << 20);
        g.push(b"type=A msg=audit(1.0:1): x=1", 1, 0).unwrap();
        for i in 0..WINDOW {
            g.push(format!("type=B msg=audit(2.0:{i}): x=1").as_bytes(), i + 2, 0).unwrap();
            let _ = all(&mut g, false);
        }
        assert!(g.open.len() <= MAX_OPEN);
        assert!(g.open.iter().all(|o| o.key.stamp != b"1.0:1"));
    }
}
