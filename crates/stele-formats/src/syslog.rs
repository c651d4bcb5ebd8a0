//! Syslog: RFC 6587 framing over streams and RFC 5424 / RFC 3164 messages.
//!
//! Pure functions and state machines over bytes; the listeners that feed them
//! live in `stele-server`.
//!
//! # What is stored
//! One stored event is one syslog message, byte for byte as received, invalid
//! UTF-8 included:
//! - **octet counting** (RFC 6587 §3.4.1, `MSG-LEN SP SYSLOG-MSG`): exactly the
//!   `MSG-LEN` counted bytes, without the length and its space. rsyslog counts
//!   the LF its templates append, so its frames are stored with that LF.
//! - **non-transparent framing** (RFC 6587 §3.4.2): the bytes before each LF
//!   (a CR before the LF stays part of the message). Empty frames (two LFs in a
//!   row) carry no message and are skipped. At the end of the stream, bytes
//!   after the last LF are a final message: closing the connection ends it.
//! - **UDP** (RFC 5426): the whole datagram.
//!
//! # Framing detection
//! Per connection, from its first byte (as rsyslog and syslog-ng do): an ASCII
//! digit means octet counting for the whole connection; anything else (normally
//! `<`, the start of a PRI) means LF framing. The same holds over TLS (RFC
//! 5425 §4.3 specifies octet counting, but rsyslog sends LF framing by
//! default). A stream whose first message has no PRI and starts with a digit
//! (a bare RFC 3339 timestamp, say) is therefore read as octet counted and
//! refused with [`FrameError::BadLength`] at its first frame.
//!
//! # Normalized fields
//! [`normalize`] maps a message, parsed leniently with `syslog_loose` (RFC 5424
//! first, then RFC 3164), to [`Normalized`]:
//!
//! | field | taken from |
//! |---|---|
//! | `event_time_ns` | the header's TIMESTAMP (RFC 5424 §6.2.3) when it has a year; without an offset it is taken as UTC. An RFC 3164 `Mmm dd hh:mm:ss` timestamp has no year and no zone: it gives **no** event time, because the year would have to be guessed from the clock, and a stored message must re-normalize to the same fields at any later date. Query those by received time. |
//! | `producer` | APP-NAME (RFC 5424 §6.2.5), or the RFC 3164 TAG |
//! | `actor` | SD-PARAM `actor`, `user`, `username`, `uid`, `acct`, `usr` |
//! | `action` | SD-PARAM `action`, `op`, `operation`, `verb`; else the MSGID (RFC 5424 §6.2.7) |
//! | `resource` | SD-PARAM `resource`, `object`, `target`, `path`; else the HOSTNAME (the machine the event happened on) |
//! | `outcome` | SD-PARAM `outcome`, `result`, `status`, `res`, through [`normalize_outcome`] |
//! | `source_ip` | SD-PARAM `src`, `src_ip`, `source_ip`, `ip`, `addr`, `client_ip`, `remote_addr` |
//! | `request_id` | SD-PARAM `request_id`, `requestid`, `req_id`, `event_id`, `eventid` |
//!
//! SD-PARAM names match case-insensitively in every SD-ELEMENT (RFC 5424 §6.3);
//! for each field the first name of its list that is present wins, and within
//! one name the first element carrying it. Values are unescaped (§6.3.3). Bytes
//! that are not UTF-8 are parsed as U+FFFD, so fields never hold invalid text;
//! the stored bytes are unchanged. A message no grammar accepts still yields
//! the fields that could be read (often none): syslog has no way to refuse a
//! message, so every frame received is stored.

use std::borrow::Cow;
use std::cell::Cell;

use crate::normalize::{Normalized, normalize_outcome};

/// Default largest syslog message (64 KiB). RFC 5425 §4.3.1 asks receivers to
/// take 2,048 octets and SHOULD take 8,192; rsyslog's `maxMessageSize`
/// defaults to 8 KiB. 64 KiB also covers a whole UDP datagram.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 << 10;

/// At most this many digits in an RFC 6587 MSG-LEN: ten digits reach 9.9 GB,
/// far past any message limit, and cannot overflow a `u64`.
const MAX_LENGTH_DIGITS: usize = 10;

/// How a stream is framed (RFC 6587 §3.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// §3.4.1: `MSG-LEN SP SYSLOG-MSG`.
    OctetCounting,
    /// §3.4.2: messages separated by LF.
    NonTransparent,
}

/// Why a stream cannot be deframed further. After an error the stream is
/// unusable: the connection is to be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// An octet-counting MSG-LEN larger than the limit (RFC 6587 §3.4.1).
    #[error("octet-counted frame at stream offset {offset} declares {declared} bytes, more than the limit of {max}")]
    LengthTooLarge {
        /// Offset in the stream of the frame's first byte.
        offset: u64,
        /// The declared length (a lower bound when it has too many digits).
        declared: u64,
        /// The limit.
        max: usize,
    },
    /// A byte that is neither a digit nor the SP ending MSG-LEN.
    #[error("octet-counted frame at stream offset {offset}: byte 0x{byte:02x} where a digit or space was expected")]
    BadLength {
        /// Offset in the stream of the offending byte.
        offset: u64,
        /// The offending byte.
        byte: u8,
    },
    /// A MSG-LEN of zero, or with a leading zero (RFC 6587: `NONZERO-DIGIT *DIGIT`).
    #[error("octet-counted frame at stream offset {offset}: length must start with a nonzero digit")]
    ZeroLength {
        /// Offset in the stream of the frame's first byte.
        offset: u64,
    },
    /// An LF-framed message longer than the limit with no LF yet.
    #[error("LF-framed message at stream offset {offset} is longer than the limit of {max} bytes")]
    FrameTooLong {
        /// Offset in the stream of the message's first byte.
        offset: u64,
        /// The limit.
        max: usize,
    },
    /// The stream ended inside an octet-counted frame.
    #[error("stream ended inside an octet-counted frame at offset {offset}: {received} of {expected} bytes")]
    Truncated {
        /// Offset in the stream of the frame's first byte.
        offset: u64,
        /// Bytes declared (0 when the stream ended inside MSG-LEN).
        expected: u64,
        /// Bytes of the message received.
        received: u64,
    },
}

/// Splits one connection's byte stream into syslog messages, whatever the
/// chunks it arrives in.
///
/// Feed chunks with [`Deframer::push`], take messages with
/// [`Deframer::next_frame`] until it returns `Ok(None)`, and call
/// [`Deframer::finish`] at the end of the stream. The same stream split into
/// any chunks yields the same messages (see the module docs for which bytes).
/// Memory is bounded by the largest message plus the largest chunk.
///
/// ```
/// use stele_formats::syslog::Deframer;
/// let mut d = Deframer::new(1024);
/// d.push(b"15 <13>1 - - - ");
/// assert_eq!(d.next_frame().unwrap(), None);
/// d.push(b"- -8 <13>1 x\n");
/// assert_eq!(d.next_frame().unwrap(), Some(&b"<13>1 - - - - -"[..]));
/// assert_eq!(d.next_frame().unwrap(), Some(&b"<13>1 x\n"[..]));
/// assert_eq!(d.finish().unwrap(), None);
/// ```
#[derive(Debug)]
pub struct Deframer {
    max: usize,
    framing: Option<Framing>,
    buf: Vec<u8>,
    /// Bytes of `buf` already handed out.
    pos: usize,
    /// Stream offset of `buf[0]`.
    base: u64,
    /// For LF framing: bytes from `pos` already searched for an LF.
    scanned: usize,
    failed: Option<FrameError>,
}

impl Deframer {
    /// A deframer that refuses messages longer than `max_message_bytes`.
    pub fn new(max_message_bytes: usize) -> Deframer {
        Deframer { max: max_message_bytes, framing: None, buf: Vec::new(), pos: 0, base: 0, scanned: 0, failed: None }
    }

    /// The framing detected from the stream's first byte, once there is one.
    pub fn framing(&self) -> Option<Framing> {
        self.framing
    }

    /// Bytes received and not yet handed out as messages.
    pub fn pending_bytes(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Appends the next chunk of the stream.
    pub fn push(&mut self, chunk: &[u8]) {
        if self.pos > 0 && (self.pos == self.buf.len() || self.pos >= self.buf.len() / 2) {
            self.buf.drain(..self.pos);
            self.base += self.pos as u64;
            self.pos = 0;
        }
        self.buf.extend_from_slice(chunk);
    }

    /// The next complete message, `Ok(None)` when more bytes are needed.
    ///
    /// # Errors
    /// A [`FrameError`] (other than `Truncated`) when the stream breaks the
    /// framing or the limit; the same error is returned again by every later
    /// call.
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, FrameError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        match self.next_range() {
            Ok(Some((a, b))) => Ok(Some(&self.buf[a..b])),
            Ok(None) => Ok(None),
            Err(e) => {
                self.failed = Some(e.clone());
                Err(e)
            }
        }
    }

    /// Ends the stream: the final LF-framed message if bytes follow the last
    /// LF, else `None`. Call after [`Deframer::next_frame`] returned `Ok(None)`.
    ///
    /// # Errors
    /// [`FrameError::Truncated`] when the stream ends inside an octet-counted
    /// frame, or the error an earlier call returned.
    pub fn finish(&mut self) -> Result<Option<&[u8]>, FrameError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.pos == self.buf.len() {
            return Ok(None);
        }
        let offset = self.base + self.pos as u64;
        match self.framing {
            Some(Framing::NonTransparent) | None => {
                let (a, b) = (self.pos, self.buf.len());
                self.pos = b;
                Ok(Some(&self.buf[a..b]))
            }
            Some(Framing::OctetCounting) => {
                let rest = &self.buf[self.pos..];
                let err = match rest.iter().position(|&c| c == b' ') {
                    Some(sp) => {
                        let expected = std::str::from_utf8(&rest[..sp]).ok().and_then(|s| s.parse().ok()).unwrap_or(0);
                        FrameError::Truncated { offset, expected, received: (rest.len() - sp - 1) as u64 }
                    }
                    None => FrameError::Truncated { offset, expected: 0, received: 0 },
                };
                self.failed = Some(err.clone());
                Err(err)
            }
        }
    }

    fn next_range(&mut self) -> Result<Option<(usize, usize)>, FrameError> {
        loop {
            let rest = &self.buf[self.pos..];
            let Some(&first) = rest.first() else { return Ok(None) };
            let framing = *self.framing.get_or_insert(if first.is_ascii_digit() {
                Framing::OctetCounting
            } else {
                Framing::NonTransparent
            });
            let offset = self.base + self.pos as u64;
            match framing {
                Framing::OctetCounting => return self.octet_counted(offset),
                Framing::NonTransparent => {
                    let from = self.pos + self.scanned;
                    match memchr::memchr(b'\n', &self.buf[from..]) {
                        Some(i) => {
                            let (a, b) = (self.pos, from + i);
                            self.pos = b + 1;
                            self.scanned = 0;
                            if b > a {
                                if b - a > self.max {
                                    return Err(FrameError::FrameTooLong { offset, max: self.max });
                                }
                                return Ok(Some((a, b)));
                            }
                        }
                        None => {
                            self.scanned = self.buf.len() - self.pos;
                            if self.scanned > self.max {
                                return Err(FrameError::FrameTooLong { offset, max: self.max });
                            }
                            return Ok(None);
                        }
                    }
                }
            }
        }
    }

    fn octet_counted(&mut self, offset: u64) -> Result<Option<(usize, usize)>, FrameError> {
        let rest = &self.buf[self.pos..];
        let mut len: u64 = 0;
        for (i, &c) in rest.iter().enumerate() {
            if c == b' ' && i > 0 {
                if len > self.max as u64 {
                    return Err(FrameError::LengthTooLarge { offset, declared: len, max: self.max });
                }
                let start = self.pos + i + 1;
                let end = start + len as usize;
                if end > self.buf.len() {
                    return Ok(None);
                }
                self.pos = end;
                return Ok(Some((start, end)));
            }
            if !c.is_ascii_digit() {
                return Err(FrameError::BadLength { offset: offset + i as u64, byte: c });
            }
            if i == 0 && c == b'0' {
                return Err(FrameError::ZeroLength { offset });
            }
            if i >= MAX_LENGTH_DIGITS {
                return Err(FrameError::LengthTooLarge { offset, declared: len, max: self.max });
            }
            len = len * 10 + u64::from(c - b'0');
            if len > self.max as u64 {
                return Err(FrameError::LengthTooLarge { offset, declared: len, max: self.max });
            }
        }
        Ok(None)
    }
}

/// SD-PARAM names per field, in priority order (see the module docs).
const ACTOR: &[&str] = &["actor", "user", "username", "uid", "acct", "usr"];
const ACTION: &[&str] = &["action", "op", "operation", "verb"];
const RESOURCE: &[&str] = &["resource", "object", "target", "path"];
const OUTCOME: &[&str] = &["outcome", "result", "status", "res"];
const SOURCE_IP: &[&str] = &["src", "src_ip", "source_ip", "ip", "addr", "client_ip", "remote_addr"];
const REQUEST_ID: &[&str] = &["request_id", "requestid", "req_id", "event_id", "eventid"];

/// The normalized fields of one syslog message (RFC 5424 or RFC 3164), as
/// described in the module docs. `message` is the stored frame; it may hold
/// invalid UTF-8 and a trailing LF. Never fails: what cannot be read is absent.
pub fn normalize(message: &[u8]) -> Normalized {
    let text: Cow<'_, str> = String::from_utf8_lossy(message);
    let guessed_year = Cell::new(false);
    let flag = &guessed_year;
    let utc = chrono::FixedOffset::east_opt(0).expect("zero is a valid offset");
    let m = syslog_loose::parse_message_with_year_tz(
        &text,
        |_| {
            flag.set(true);
            1970
        },
        Some(utc),
        syslog_loose::Variant::Either,
    );
    let event_time_ns = if guessed_year.get() { None } else { m.timestamp.and_then(|t| t.timestamp_nanos_opt()) };
    // Names are compared on the raw params; only the value taken is unescaped (syslog_loose's
    // `params()` allocates one string per param it passes, which dominated the cost).
    let sd = |names: &[&str]| -> Option<String> {
        names.iter().find_map(|name| {
            m.structured_data.iter().find_map(|el| {
                let i = el.params.iter().position(|(k, _)| k.eq_ignore_ascii_case(name))?;
                let raw = el.params[i].1;
                let v = if raw.contains('\\') { el.params().nth(i)?.1 } else { raw.to_owned() };
                Some(v).filter(|v| !v.is_empty())
            })
        })
    };
    let nonempty = |s: Option<&str>| s.filter(|s| !s.is_empty() && *s != "-").map(str::to_owned);
    // The update keeps this compiling when `Normalized` gains fields.
    #[allow(clippy::needless_update)]
    Normalized {
        event_time_ns,
        actor: sd(ACTOR),
        action: sd(ACTION).or_else(|| nonempty(m.msgid)),
        resource: sd(RESOURCE).or_else(|| nonempty(m.hostname)),
        outcome: sd(OUTCOME).map(|v| normalize_outcome(&v)),
        source_ip: sd(SOURCE_IP),
        request_id: sd(REQUEST_ID),
        producer: nonempty(m.appname),
        ..Normalized::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(stream: &[u8], max: usize) -> Result<Vec<Vec<u8>>, FrameError> {
        let mut d = Deframer::new(max);
        d.push(stream);
        let mut out = Vec::new();
        while let Some(f) = d.next_frame()? {
            out.push(f.to_vec());
        }
        if let Some(f) = d.finish()? {
            out.push(f.to_vec());
        }
        Ok(out)
    }

    #[test]
    fn octet_counting_and_errors() {
        assert_eq!(frames(b"3 abc2 de", 10).unwrap(), vec![b"abc".to_vec(), b"de".to_vec()]);
        assert_eq!(frames(b"11 abc", 10).unwrap_err(), FrameError::LengthTooLarge { offset: 0, declared: 11, max: 10 });
        assert_eq!(
            frames(b"99999999999999999999 x", 1 << 20).unwrap_err(),
            FrameError::LengthTooLarge { offset: 0, declared: 9_999_999, max: 1 << 20 }
        );
        assert_eq!(frames(b"3 abcx", 10).unwrap_err(), FrameError::BadLength { offset: 5, byte: b'x' });
        assert_eq!(frames(b"3 abc0 ", 10).unwrap_err(), FrameError::ZeroLength { offset: 5 });
        assert_eq!(frames(b"5 abc", 10).unwrap_err(), FrameError::Truncated { offset: 0, expected: 5, received: 3 });
        assert_eq!(frames(b"3 abc1", 10).unwrap_err(), FrameError::Truncated { offset: 5, expected: 0, received: 0 });
    }

    #[test]
    fn lf_framing_and_errors() {
        assert_eq!(
            frames(b"<1>a\n\n<2>b\r\n<3>c", 10).unwrap(),
            vec![b"<1>a".to_vec(), b"<2>b\r".to_vec(), b"<3>c".to_vec()]
        );
        assert_eq!(frames(b"<1>abcdefghijk\n", 10).unwrap_err(), FrameError::FrameTooLong { offset: 0, max: 10 });
        assert_eq!(frames(b"<1>abcdefghijk", 10).unwrap_err(), FrameError::FrameTooLong { offset: 0, max: 10 });
        // A frame of exactly the limit is fine.
        assert_eq!(frames(b"<1>abcdefg\n", 10).unwrap(), vec![b"<1>abcdefg".to_vec()]);
    }

    #[test]
    fn errors_are_sticky() {
        let mut d = Deframer::new(10);
        d.push(b"x1 a");
        d.push(b"\n");
        assert!(d.next_frame().unwrap().is_some());
        let mut d = Deframer::new(4);
        d.push(b"5 abcde");
        let e = d.next_frame().unwrap_err();
        d.push(b"1 a");
        assert_eq!(d.next_frame().unwrap_err(), e);
        assert_eq!(d.finish().unwrap_err(), e);
    }

    #[test]
    fn rfc5424_fields() {
        let m = br#"<37>1 2026-11-29T10:41:47.898711+00:00 vm auditd-test - LOGIN [timeQuality tzKnown="1"][audit@32473 User="alice" res="FAILED" addr="10.0.0.7" path="/etc/sh\]adow"] msg"#;
        let n = normalize(m);
        assert_eq!(n.event_time_ns, Some(1_795_948_907_898_711_000));
        assert_eq!(n.actor.as_deref(), Some("alice"));
        assert_eq!(n.action.as_deref(), Some("LOGIN"));
        assert_eq!(n.resource.as_deref(), Some("/etc/sh]adow"));
        assert_eq!(n.outcome.as_deref(), Some("failure"));
        assert_eq!(n.source_ip.as_deref(), Some("10.0.0.7"));
        assert_eq!(n.producer.as_deref(), Some("auditd-test"));
    }

    #[test]
    fn rfc3164_has_no_guessed_year() {
        let n = normalize(b"<37>Nov 29 10:41:50 vm auditd-test: legacy bsd message\n");
        assert_eq!(n.event_time_ns, None);
        assert_eq!(n.producer.as_deref(), Some("auditd-test"));
        assert_eq!(n.resource.as_deref(), Some("vm"));
        let n = normalize(b"<37>2019-03-14T00:22:56+01:00 host app[12]: x");
        assert_eq!(n.event_time_ns, Some(1_552_519_376_000_000_000));
    }

    #[test]
    fn invalid_utf8_and_garbage() {
        let n = normalize(b"<13>1 2026-01-01T00:00:00Z h app - - [x actor=\"\xff\"] \xfe\xfd");
        assert_eq!(n.actor.as_deref(), Some("\u{fffd}"));
        let n = normalize(b"\x00\x01 not syslog at all");
        assert_eq!((n.actor, n.action, n.event_time_ns), (None, None, None));
    }
}
