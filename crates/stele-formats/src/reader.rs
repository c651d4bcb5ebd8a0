//! Streaming event reader for `stele import`.

use std::io::{self, BufRead};

use memchr::memchr;

use crate::derive::{CaptureRecord, CaptureRecordRef};
use crate::error::{FormatError, InvalidReason, Location};
use crate::json::{self, K8sClass, Trie};
use crate::normalize::{Normalized, Normalizer};
use crate::scan::{self, Scan, ValueScanner, is_ws};
use crate::{EventFormat, InputFormat};

/// Bytes asked of the inner reader at a time. Large enough that a
/// `BufReader` hands its reads straight through and refills are rare.
const CHUNK: usize = 256 * 1024;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// One event read from the input: its exact bytes, its format and where it
/// starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawEvent<'a> {
    /// The event's exact bytes (see [`EventReader`] for what is trimmed).
    pub bytes: &'a [u8],
    /// Its format: [`EventFormat::KubernetesAudit`] for Kubernetes audit
    /// events, else [`EventFormat::Json`].
    pub format: EventFormat,
    /// Where it starts in the input.
    pub location: Location,
}

/// A batch of events with their bytes in one buffer, filled by
/// [`EventReader::read_batch`] and reusable to avoid per-event allocation.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    data: Vec<u8>,
    events: Vec<Entry>,
    /// The first `normalized_len` are the batch's; those after are kept from
    /// earlier batches so that their strings' allocations are reused.
    normalized: Vec<Normalized>,
    normalized_len: usize,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    start: usize,
    end: usize,
    format: EventFormat,
    location: Location,
    /// The leaf format code of a rewritten event ([`EventReader::read_batch_rewriting`]).
    stored: Option<u8>,
}

/// Rewrites events as a batch takes them ([`EventReader::read_batch_rewriting`]):
/// sealing personal-data fields (docs/format.md, "Sealed entries") writes each
/// event's stored form straight into the batch, right after its parse.
pub trait Rewrite {
    /// Appends to `out` the form of `event` to store and returns its leaf format
    /// code, or returns `Ok(None)` (with nothing appended) to keep the event as it
    /// is. `record` is the event's capture record (`None` for events not parsed as
    /// JSON) and `fields` its normalized fields, which it updates to those of the
    /// stored form.
    ///
    /// # Errors
    /// [`RewriteStop`]: the batch ends before this event, which is dropped; the
    /// rewriter keeps the reason for its caller.
    fn rewrite(
        &mut self,
        event: RawEvent<'_>,
        record: Option<CaptureRecordRef<'_>>,
        fields: &mut Normalized,
        out: &mut Vec<u8>,
    ) -> Result<Option<u8>, RewriteStop>;
}

/// A [`Rewrite`] failed: the batch ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RewriteStop;

impl Batch {
    /// An empty batch.
    pub fn new() -> Batch {
        Batch::default()
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// True when the batch holds no event.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Total bytes of the events.
    pub fn data_len(&self) -> usize {
        self.data.len()
    }

    /// Removes all events, keeping the allocations.
    pub fn clear(&mut self) {
        self.data.clear();
        self.events.clear();
        self.normalized_len = 0;
    }

    /// Appends a copy of `event`.
    pub fn push(&mut self, event: RawEvent<'_>) {
        let start = self.data.len();
        self.data.extend_from_slice(event.bytes);
        self.events.push(Entry {
            start,
            end: self.data.len(),
            format: event.format,
            location: event.location,
            stored: None,
        });
    }

    /// The leaf format code of the `i`-th event when it was rewritten
    /// ([`EventReader::read_batch_rewriting`]): its bytes ([`Batch::get`]) are then
    /// the rewritten form.
    pub fn stored_code(&self, i: usize) -> Option<u8> {
        self.events.get(i).and_then(|e| e.stored)
    }

    /// The `i`-th event, or `None` past the end.
    pub fn get(&self, i: usize) -> Option<RawEvent<'_>> {
        self.events.get(i).map(|e| RawEvent {
            bytes: &self.data[e.start..e.end],
            format: e.format,
            location: e.location,
        })
    }

    /// The normalized fields of the `i`-th event, when the reader that
    /// filled the batch normalizes ([`EventReader::with_normalizer`]).
    pub fn normalized(&self, i: usize) -> Option<&Normalized> {
        self.normalized[..self.normalized_len].get(i)
    }

    /// Takes the normalized fields of the `i`-th event out of the batch (leaving
    /// empty fields), for a caller that keeps them.
    pub fn take_normalized(&mut self, i: usize) -> Option<Normalized> {
        self.normalized[..self.normalized_len].get_mut(i).map(std::mem::take)
    }

    /// Appends normalized fields, swapping them with a kept entry so that the
    /// caller gets that entry's allocations to reuse.
    fn push_normalized(&mut self, n: &mut Normalized) {
        match self.normalized.get_mut(self.normalized_len) {
            Some(slot) => std::mem::swap(slot, n),
            None => self.normalized.push(std::mem::take(n)),
        }
        self.normalized_len += 1;
    }

    /// The events in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = RawEvent<'_>> + '_ {
        (0..self.events.len()).map(|i| self.get(i).expect("index in range"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing read yet: byte-order mark and format detection.
    Start,
    /// JSON lines.
    Lines,
    /// Whitespace-separated top-level objects.
    Stream,
    /// Inside a top-level array.
    Array { first: bool },
    /// After a top-level array: only whitespace may follow.
    AfterArray,
    /// Inside the `items` array of a streamed EventList.
    Items { first: bool },
    /// After the `items` array: the rest of the EventList object.
    ItemsTail,
    /// Linux audit record lines, grouped into events.
    Audit,
    /// End of input or after a fatal error.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Src {
    Buf,
    Pending,
    Audit,
}

/// An event found by `advance`, as positions (so no borrow is held).
#[derive(Debug, Clone, Copy)]
struct Found {
    src: Src,
    start: usize,
    end: usize,
    format: EventFormat,
    location: Location,
}

enum Step {
    Event(Found),
    Continue,
    Eof,
}

/// Whether a document stands alone or is an item of an EventList.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ctx {
    Standalone,
    Item,
    /// An item of a CloudTrail log file's `Records` array.
    Record,
}

/// Items of an EventList that was read whole (it fitted in the limit),
/// copied out of the read buffer.
#[derive(Debug, Default)]
struct Pending {
    data: Vec<u8>,
    items: Vec<(usize, usize)>,
    next: usize,
    /// Stream offset and line of `data[0]`.
    offset: u64,
    line: u64,
    /// Newlines in `data[..counted]` are included in `line`.
    counted: usize,
}

/// Result of scanning one value in the stream.
struct Scanned {
    start: u64,
    end: u64,
    /// False when the value was larger than the limit and was skipped
    /// without being kept in the buffer.
    kept: bool,
}

/// Result of looking at the first members of a top-level object.
enum Head {
    /// `kind: "EventList"` (with an audit or no apiVersion) came before
    /// `items`, whose `[` is at this offset from the object's start.
    List(usize),
    /// A `Records` array (a CloudTrail log file) is the first member; its
    /// `[` is at this offset.
    Records(usize),
    /// Not a streamable EventList.
    NotList,
    /// More bytes needed; resume at this offset with this state.
    NeedMore,
}

#[derive(Debug, Clone, Copy)]
struct HeadState {
    /// Offset (from the object start) of the next member to look at.
    at: usize,
    first: bool,
    list_kind: bool,
    api_ok: bool,
}

/// Streams events out of a [`BufRead`] with memory bounded by the maximum
/// event size.
///
/// # Framing
/// - [`InputFormat::Jsonl`]: each line (ended by `\n`, or by the end of
///   input) is one event. A trailing `\r` and surrounding JSON whitespace are
///   not part of the event; blank lines are skipped. The size limit applies
///   to the line without its `\n`/`\r\n`. A line longer than the limit is
///   skipped without being buffered ([`FormatError::TooLarge`]).
/// - [`InputFormat::Json`]: a top-level array of objects, streamed element
///   by element (each element's exact bytes), or one or more objects
///   separated by whitespace (a single, possibly pretty-printed object being
///   the usual case). Nothing else may follow.
/// - [`InputFormat::K8sAudit`]: like `Auto`, but every event must be a
///   Kubernetes audit Event (else [`InvalidReason::NotK8sEvent`]).
/// - [`InputFormat::Auto`]: from the first non-whitespace byte: `[` → array;
///   `{` → the first object decides: a Kubernetes `EventList` → objects
///   stream; an object that ends on its first line with only whitespace
///   after it → JSON lines; otherwise (a pretty-printed object) → objects
///   stream. Anything else → JSON lines (which then reports each bad line).
///
/// - [`InputFormat::CloudTrail`], [`InputFormat::GcpAudit`],
///   [`InputFormat::Ocsf`]: like `Auto`, but every event must have that
///   format's shape (see [`crate::parse_event`]), except the items of a
///   CloudTrail `Records` array, which are records by context.
/// - [`InputFormat::Auditd`], and `Auto` when the input starts with `type=`
///   or `node=`: Linux audit record lines, grouped by their
///   `audit(TIME:SERIAL)` stamp into one event of format
///   [`EventFormat::Auditd`] each (see [`crate::auditd`]); a line that is
///   not a record is an invalid event.
///
/// In `Auto`, `K8sAudit` and `CloudTrail`, an object whose first member is a
/// `Records` array (an AWS CloudTrail log file) yields each element as an
/// event of format [`EventFormat::CloudTrail`], streamed one by one, so the
/// file may be of any size.
///
/// In `Auto` and `K8sAudit`, a Kubernetes `EventList` (`"kind":
/// "EventList"`, apiVersion `audit.k8s.io/v1`/`v1beta1` or absent) yields
/// each of its `items` as an event of format
/// [`EventFormat::KubernetesAudit`] (items need not carry `kind`). When
/// `kind` comes before `items` (as Kubernetes writes it) within the first
/// `max_event_bytes` of the list, the items are streamed one by one and the
/// list may be of any size; otherwise the list must fit in `max_event_bytes`.
/// In `Jsonl` and `Json` an EventList is an ordinary event.
///
/// Each event's format is what [`crate::parse_event`] classifies it as
/// without a hint (Kubernetes audit, CloudTrail, GCP audit, OCSF, or
/// [`EventFormat::Json`]), or given by its context as above.
///
/// A UTF-8 byte-order mark at the very start of the input is skipped
/// (byte offsets still count it); anywhere else it is invalid JSON.
///
/// # Errors and recovery
/// After a non-fatal error ([`FormatError::is_fatal`] false) the reader has
/// skipped the bad event and the next call continues; after a fatal one
/// (broken framing, truncated input, I/O error) every later call returns
/// `Ok(None)`.
#[derive(Debug)]
pub struct EventReader<R> {
    inner: R,
    limit: usize,
    json_mode: bool,
    jsonl_mode: bool,
    cls: Classifier,
    /// The normalized fields of the last event, valid when `has_normalized`
    /// (kept otherwise, so that their allocations are reused).
    normalized: Normalized,
    has_normalized: bool,
    /// The capture record of the last event, when `keep_records`.
    record: CaptureRecord,
    keep_records: bool,

    buf: Vec<u8>,
    /// Stream offset of `buf[0]`.
    base: u64,
    pos: usize,
    end: usize,
    eof: bool,
    /// Stream offset before which nothing may be dropped from `buf`.
    anchor: Option<u64>,
    /// Newlines in `buf[..counted]` are included in `line`.
    counted: usize,
    line: u64,

    state: State,
    list_location: Location,
    /// What the items of the streamed list are: EventList items or
    /// CloudTrail records.
    list_ctx: Ctx,
    pending: Pending,
    /// Linux audit grouping (input format `auditd`, or detected).
    audit: Option<crate::auditd::Grouper>,
    audit_mode: bool,
    /// The bytes of the last audit event returned.
    audit_out: Vec<u8>,
}

impl<R: BufRead> EventReader<R> {
    /// A reader of `input` framed as `format`, rejecting events larger than
    /// `max_event_bytes` (at least 1).
    pub fn new(input: R, format: InputFormat, max_event_bytes: usize) -> EventReader<R> {
        EventReader {
            inner: input,
            limit: max_event_bytes.max(1),
            json_mode: format == InputFormat::Json,
            jsonl_mode: format == InputFormat::Jsonl,
            cls: Classifier {
                expand_lists: matches!(format, InputFormat::Auto | InputFormat::K8sAudit | InputFormat::CloudTrail),
                strict_k8s: format == InputFormat::K8sAudit,
                require: match format {
                    InputFormat::CloudTrail => Some(EventFormat::CloudTrail),
                    InputFormat::GcpAudit => Some(EventFormat::GcpAudit),
                    InputFormat::Ocsf => Some(EventFormat::Ocsf),
                    _ => None,
                },
                trie: Trie::classify_only(),
                normalizer: None,
            },
            normalized: Normalized::default(),
            has_normalized: false,
            record: CaptureRecord::default(),
            keep_records: false,
            buf: Vec::new(),
            base: 0,
            pos: 0,
            end: 0,
            eof: false,
            anchor: None,
            counted: 0,
            line: 1,
            state: State::Start,
            list_location: Location::default(),
            list_ctx: Ctx::Item,
            pending: Pending::default(),
            audit: None,
            audit_mode: format == InputFormat::Auditd,
            audit_out: Vec::new(),
        }
    }

    /// Makes the reader extract normalized fields in the same parse that
    /// validates each event (no second parse with [`crate::parse_event`]);
    /// read them with [`EventReader::last_normalized`] or
    /// [`Batch::normalized`].
    pub fn with_normalizer(mut self, normalizer: Normalizer) -> EventReader<R> {
        self.cls.normalizer = Some(normalizer);
        self
    }

    /// The normalized fields of the event last returned by
    /// [`EventReader::next_event`], when a normalizer is set.
    pub fn last_normalized(&self) -> Option<&Normalized> {
        self.has_normalized.then_some(&self.normalized)
    }

    /// Bytes consumed from the input so far.
    pub fn bytes_read(&self) -> u64 {
        self.base + self.end as u64
    }

    /// The next event, `Ok(None)` at the end of input (and after a fatal
    /// error).
    ///
    /// # Errors
    /// [`FormatError`] for a bad event (the next call continues after it) or
    /// broken input (fatal). See [`EventReader`].
    pub fn next_event(&mut self) -> Result<Option<RawEvent<'_>>, FormatError> {
        match self.advance()? {
            None => Ok(None),
            Some(f) => {
                let data = match f.src {
                    Src::Buf => &self.buf[f.start..f.end],
                    Src::Pending => &self.pending.data[f.start..f.end],
                    Src::Audit => &self.audit_out[f.start..f.end],
                };
                Ok(Some(RawEvent { bytes: data, format: f.format, location: f.location }))
            }
        }
    }

    /// Clears `out` and fills it with up to `max_events` events, stopping
    /// early once their bytes reach `max_bytes` or at the end of input.
    /// Returns the number of events; 0 only at the end of input.
    ///
    /// # Errors
    /// As [`EventReader::next_event`]; `out` then holds the events read
    /// before the error, and (for a non-fatal error) the next call continues
    /// after the bad event.
    pub fn read_batch(&mut self, max_events: usize, max_bytes: usize, out: &mut Batch) -> Result<usize, FormatError> {
        out.clear();
        while out.len() < max_events.max(1) && out.data_len() < max_bytes {
            let Some(f) = self.advance()? else { break };
            let data = match f.src {
                Src::Buf => &self.buf[f.start..f.end],
                Src::Pending => &self.pending.data[f.start..f.end],
                Src::Audit => &self.audit_out[f.start..f.end],
            };
            out.push(RawEvent { bytes: data, format: f.format, location: f.location });
            if self.has_normalized {
                self.has_normalized = false;
                out.push_normalized(&mut self.normalized);
            }
        }
        Ok(out.len())
    }

    /// [`EventReader::read_batch`], passing each event (with its capture record and
    /// normalized fields) through `rewrite` as the batch takes it: the batch holds
    /// the rewritten form where there is one ([`Batch::stored_code`]). The reader
    /// must have a normalizer; it records each event's captures from then on.
    ///
    /// When `rewrite` stops, the batch ends before that event (which is dropped)
    /// and the call returns the events before it.
    ///
    /// # Errors
    /// As [`EventReader::read_batch`].
    pub fn read_batch_rewriting(
        &mut self,
        max_events: usize,
        max_bytes: usize,
        out: &mut Batch,
        rewrite: &mut dyn Rewrite,
    ) -> Result<usize, FormatError> {
        self.keep_records = true;
        out.clear();
        while out.len() < max_events.max(1) && out.data_len() < max_bytes {
            let Some(f) = self.advance()? else { break };
            let data = match f.src {
                Src::Buf => &self.buf[f.start..f.end],
                Src::Pending => &self.pending.data[f.start..f.end],
                Src::Audit => &self.audit_out[f.start..f.end],
            };
            let event = RawEvent { bytes: data, format: f.format, location: f.location };
            if !self.has_normalized {
                // Without fields (no normalizer) there is nothing to rewrite with.
                out.push(event);
                continue;
            }
            self.has_normalized = false;
            let record = (f.src != Src::Audit).then(|| self.record.view());
            let start = out.data.len();
            match rewrite.rewrite(event, record, &mut self.normalized, &mut out.data) {
                Ok(stored) => {
                    if stored.is_none() {
                        out.data.truncate(start);
                        out.data.extend_from_slice(data);
                    }
                    let end = out.data.len();
                    out.events.push(Entry { start, end, format: f.format, location: f.location, stored });
                    out.push_normalized(&mut self.normalized);
                }
                Err(RewriteStop) => {
                    out.data.truncate(start);
                    break;
                }
            }
        }
        Ok(out.len())
    }

    fn advance(&mut self) -> Result<Option<Found>, FormatError> {
        loop {
            let step = match self.step() {
                Ok(s) => s,
                Err(e) => {
                    if e.is_fatal() {
                        self.state = State::Done;
                        self.pending = Pending::default();
                    }
                    return Err(e);
                }
            };
            match step {
                Step::Event(f) => return Ok(Some(f)),
                Step::Continue => {}
                Step::Eof => {
                    self.state = State::Done;
                    return Ok(None);
                }
            }
        }
    }

    fn step(&mut self) -> Result<Step, FormatError> {
        if self.pending.next < self.pending.items.len() {
            return self.next_pending();
        }
        match self.state {
            State::Done => Ok(Step::Eof),
            State::Start => self.start(),
            State::Lines => self.next_line(),
            State::Audit => self.next_audit(),
            State::Stream => {
                let Some(b) = self.peek_non_ws()? else {
                    return Ok(Step::Eof);
                };
                if b != b'{' {
                    return Err(self.malformed(self.pos, "expected '{' to start the next JSON object"));
                }
                self.top_object()
            }
            State::Array { first } | State::Items { first } => {
                let items = matches!(self.state, State::Items { .. });
                let Some(mut b) = self.peek_non_ws()? else {
                    let loc = if items { self.list_location } else { self.location_at(self.pos) };
                    return Err(truncated(loc, if items { "inside an EventList" } else { "inside the JSON array" }));
                };
                if b == b']' {
                    self.pos += 1;
                    self.state = if items { State::ItemsTail } else { State::AfterArray };
                    return Ok(Step::Continue);
                }
                if !first {
                    if b != b',' {
                        return Err(self.malformed(self.pos, "expected ',' or ']' after an array element"));
                    }
                    self.pos += 1;
                    match self.peek_non_ws()? {
                        None => {
                            return Err(truncated(self.location_at(self.pos), "inside the JSON array"));
                        }
                        Some(b']') => {
                            return Err(self.malformed(self.pos, "trailing comma before ']'"));
                        }
                        Some(x) => b = x,
                    }
                }
                if b == b',' {
                    return Err(self.malformed(self.pos, "expected a value, found ','"));
                }
                self.state = if items { State::Items { first: false } } else { State::Array { first: false } };
                let loc = self.location_at(self.pos);
                let s = self.scan_value(true, loc)?;
                let ctx = if items { self.list_ctx } else { Ctx::Standalone };
                self.finish_scanned(s, loc, ctx)
            }
            State::AfterArray => match self.peek_non_ws()? {
                None => Ok(Step::Eof),
                Some(_) => Err(self.malformed(self.pos, "trailing data after the JSON array")),
            },
            State::ItemsTail => self.items_tail(),
        }
    }

    // ---- buffer management -------------------------------------------

    fn abs(&self, idx: usize) -> u64 {
        self.base + idx as u64
    }

    fn idx(&self, abs: u64) -> usize {
        usize::try_from(abs - self.base).expect("position within the buffer")
    }

    /// Reads more input. Drops buffered bytes before both `pos` and the
    /// anchor. Returns false at end of input.
    fn fill(&mut self) -> Result<bool, FormatError> {
        if self.eof {
            return Ok(false);
        }
        let mut drop = self.pos;
        if let Some(a) = self.anchor {
            drop = drop.min(self.idx(a));
        }
        if drop > 0 {
            if self.counted < drop {
                self.line += count_newlines(&self.buf[self.counted..drop]);
                self.counted = drop;
            }
            self.buf.copy_within(drop..self.end, 0);
            self.base += drop as u64;
            self.pos -= drop;
            self.end -= drop;
            self.counted -= drop;
        }
        if self.buf.len() - self.end < CHUNK / 2 {
            self.buf.resize(self.end + CHUNK, 0);
        }
        loop {
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(n) => {
                    self.end += n;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(FormatError::Io {
                        location: Location { line: self.line, byte_offset: self.abs(self.end) },
                        source: e,
                    });
                }
            }
        }
    }

    /// The location of `buf[idx]`, counting lines lazily.
    fn location_at(&mut self, idx: usize) -> Location {
        if idx >= self.counted {
            self.line += count_newlines(&self.buf[self.counted..idx]);
        } else {
            self.line -= count_newlines(&self.buf[idx..self.counted]);
        }
        self.counted = idx;
        Location { line: self.line, byte_offset: self.abs(idx) }
    }

    fn malformed(&mut self, idx: usize, reason: &str) -> FormatError {
        FormatError::Malformed { location: self.location_at(idx), reason: reason.to_string() }
    }

    /// Skips whitespace and returns the next byte without consuming it.
    fn peek_non_ws(&mut self) -> Result<Option<u8>, FormatError> {
        loop {
            while self.pos < self.end {
                let b = self.buf[self.pos];
                if !is_ws(b) {
                    return Ok(Some(b));
                }
                self.pos += 1;
            }
            if !self.fill()? {
                return Ok(None);
            }
        }
    }

    /// Scans the value starting at `pos`, which becomes the index after it.
    /// With `keep`, the value stays in the buffer unless it outgrows the
    /// limit; `loc` is its location, for the truncation error.
    fn scan_value(&mut self, keep: bool, loc: Location) -> Result<Scanned, FormatError> {
        let mut sc = ValueScanner::default();
        let start = self.abs(self.pos);
        let limit = self.limit as u64;
        let mut kept = keep;
        self.anchor = kept.then_some(start);
        loop {
            match sc.feed(&self.buf[self.pos..self.end]) {
                Scan::Done(n) => {
                    self.pos += n;
                    break;
                }
                Scan::More => {
                    self.pos = self.end;
                    if kept && self.abs(self.end) - start > limit {
                        kept = false;
                        self.anchor = None;
                    }
                    if !self.fill()? {
                        if sc.is_scalar() {
                            break;
                        }
                        self.anchor = None;
                        return Err(truncated(loc, "inside a JSON value"));
                    }
                }
            }
        }
        self.anchor = None;
        let end = self.abs(self.pos);
        Ok(Scanned { start, end, kept: kept && end - start <= limit })
    }

    // ---- states ---------------------------------------------------------

    fn start(&mut self) -> Result<Step, FormatError> {
        while self.end - self.pos < BOM.len() && self.fill()? {}
        if self.buf[self.pos..self.end].starts_with(BOM) {
            self.pos += BOM.len();
        }
        let Some(b) = self.peek_non_ws()? else {
            return Ok(Step::Eof);
        };
        if self.jsonl_mode {
            self.state = State::Lines;
            return Ok(Step::Continue);
        }
        if self.audit_mode || (matches!(b, b't' | b'n') && !self.json_mode && self.looks_like_audit()?) {
            self.state = State::Audit;
            self.audit = Some(crate::auditd::Grouper::new(self.limit));
            return Ok(Step::Continue);
        }
        match b {
            b'[' => {
                self.pos += 1;
                self.state = State::Array { first: true };
                Ok(Step::Continue)
            }
            b'{' if self.json_mode => {
                self.state = State::Stream;
                Ok(Step::Continue)
            }
            b'{' => self.detect_first_object(),
            _ if self.json_mode => Err(self.malformed(self.pos, "expected a JSON array or object")),
            _ => {
                self.state = State::Lines;
                Ok(Step::Continue)
            }
        }
    }

    /// Auto/K8sAudit: the first object decides between JSON lines and an
    /// objects stream.
    fn detect_first_object(&mut self) -> Result<Step, FormatError> {
        let loc = self.location_at(self.pos);
        let Some(s) = self.object_head(loc)? else {
            // A streamed EventList: the state is set.
            return Ok(Step::Continue);
        };
        self.state = State::Stream;
        if s.kept {
            let (a, b) = (self.idx(s.start), self.idx(s.end));
            let one_line = memchr(b'\n', &self.buf[a..b]).is_none();
            if one_line && self.rest_of_line_blank(s.start)? {
                self.state = State::Lines;
            }
        }
        self.finish_scanned(s, loc, Ctx::Standalone)
    }

    /// True when only spaces, tabs and `\r` follow `pos` up to the next
    /// newline or the end of input. Keeps `keep` buffered.
    fn rest_of_line_blank(&mut self, keep: u64) -> Result<bool, FormatError> {
        self.anchor = Some(keep);
        let mut p = self.pos;
        let r = loop {
            if p == self.end {
                let rel = p - self.pos;
                if !self.fill()? {
                    break true;
                }
                p = self.pos + rel;
                continue;
            }
            match self.buf[p] {
                b'\n' => break true,
                b' ' | b'\t' | b'\r' => p += 1,
                _ => break false,
            }
        };
        self.anchor = None;
        Ok(r)
    }

    /// A top-level object in the objects stream.
    fn top_object(&mut self) -> Result<Step, FormatError> {
        let loc = self.location_at(self.pos);
        match self.object_head(loc)? {
            None => Ok(Step::Continue),
            Some(s) => self.finish_scanned(s, loc, Ctx::Standalone),
        }
    }

    /// At a top-level `{`: starts streaming it as an EventList (returns
    /// `None`, state set to `Items`) or scans it whole.
    fn object_head(&mut self, loc: Location) -> Result<Option<Scanned>, FormatError> {
        if !self.cls.expand_lists {
            return self.scan_value(true, loc).map(Some);
        }
        let start = self.abs(self.pos);
        let mut hs = HeadState { at: 1, first: true, list_kind: false, api_ok: true };
        self.anchor = Some(start);
        // Look again only once the buffered prefix has doubled, so that a
        // large member before `items` is not rescanned once per refill.
        let mut want = 0usize;
        loop {
            let s = self.idx(start);
            let avail = self.end - s;
            let head = if avail >= want {
                let h = head_scan(&self.buf[s..self.end], &mut hs);
                want = avail.saturating_mul(2).min(self.limit + 1);
                h
            } else {
                Head::NeedMore
            };
            match head {
                Head::List(open) | Head::Records(open) => {
                    self.anchor = None;
                    self.pos = s + open + 1;
                    self.list_location = loc;
                    self.list_ctx = if matches!(head, Head::Records(_)) { Ctx::Record } else { Ctx::Item };
                    self.state = State::Items { first: true };
                    return Ok(None);
                }
                Head::NotList => break,
                Head::NeedMore => {
                    if avail > self.limit {
                        break;
                    }
                    self.pos = self.end;
                    if !self.fill()? {
                        break;
                    }
                }
            }
        }
        // Scan the whole object from its start.
        self.pos = self.idx(start);
        self.scan_value(true, loc).map(Some)
    }

    fn items_tail(&mut self) -> Result<Step, FormatError> {
        loop {
            match self.peek_non_ws()? {
                None => return Err(truncated(self.list_location, "inside an EventList")),
                Some(b'}') => {
                    self.pos += 1;
                    self.state = State::Stream;
                    return Ok(Step::Continue);
                }
                Some(b',') => {
                    self.pos += 1;
                    if self.peek_non_ws()? != Some(b'"') {
                        return Err(self.malformed(self.pos, "expected a key in the EventList"));
                    }
                    let loc = self.location_at(self.pos);
                    self.scan_value(false, loc)?;
                    if self.peek_non_ws()? != Some(b':') {
                        return Err(self.malformed(self.pos, "expected ':' in the EventList"));
                    }
                    self.pos += 1;
                    if self.peek_non_ws()?.is_none() {
                        return Err(truncated(self.list_location, "inside an EventList"));
                    }
                    let loc = self.location_at(self.pos);
                    self.scan_value(false, loc)?;
                }
                Some(_) => {
                    return Err(self.malformed(self.pos, "expected ',' or '}' after the EventList items"));
                }
            }
        }
    }

    /// Takes the line that starts at `self.pos` (reading more input as needed) and
    /// moves past it: its location and its bytes' range in the buffer without the
    /// `\n` or `\r\n` that ends it. A line longer than the limit is skipped and
    /// reported as too large.
    fn take_line(&mut self) -> Result<(Location, usize, usize), FormatError> {
        let line_loc = self.location_at(self.pos);
        let start = self.abs(self.pos);
        self.anchor = Some(start);
        let mut search = self.pos;
        let mut newline = None;
        let mut oversize = false;
        loop {
            if let Some(p) = memchr(b'\n', &self.buf[search..self.end]) {
                newline = Some(search + p);
                break;
            }
            // +1: the line may still end in "\r\n".
            if self.abs(self.end) - start > self.limit as u64 + 1 {
                oversize = true;
                break;
            }
            let rel = self.end - self.idx(start);
            if !self.fill()? {
                break;
            }
            search = self.idx(start) + rel;
        }
        self.anchor = None;
        if oversize {
            return Err(self.skip_long_line(start, line_loc));
        }
        let s = self.idx(start);
        let (mut e, next) = match newline {
            Some(i) => (i, i + 1),
            None => (self.end, self.end),
        };
        self.pos = next;
        if newline.is_some() && self.counted == s {
            // The line's only newline: count it without rescanning.
            self.counted = next;
            self.line += 1;
        }
        if e > s && self.buf[e - 1] == b'\r' {
            e -= 1;
        }
        if e - s > self.limit {
            return Err(FormatError::TooLarge { location: line_loc, size: (e - s) as u64, limit: self.limit });
        }
        Ok((line_loc, s, e))
    }

    fn next_line(&mut self) -> Result<Step, FormatError> {
        loop {
            if self.pos == self.end && !self.fill()? {
                return Ok(Step::Eof);
            }
            let (line_loc, s, mut e) = self.take_line()?;
            let mut a = s;
            while a < e && is_ws(self.buf[a]) {
                a += 1;
            }
            while e > a && is_ws(self.buf[e - 1]) {
                e -= 1;
            }
            if a == e {
                continue;
            }
            let location = Location { line: line_loc.line, byte_offset: self.abs(a) };
            return self.finish_doc(a, e, location, Ctx::Standalone);
        }
    }

    /// Skips the rest of an over-long line; returns its TooLarge error.
    fn skip_long_line(&mut self, start: u64, loc: Location) -> FormatError {
        let mut last = self.buf[self.end - 1];
        self.pos = self.end;
        let mut size = self.abs(self.end) - start;
        loop {
            match self.fill() {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => return e,
            }
            match memchr(b'\n', &self.buf[self.pos..self.end]) {
                Some(p) => {
                    size += p as u64;
                    if p > 0 {
                        last = self.buf[self.pos + p - 1];
                    }
                    self.pos += p + 1;
                    break;
                }
                None => {
                    size += (self.end - self.pos) as u64;
                    last = self.buf[self.end - 1];
                    self.pos = self.end;
                }
            }
        }
        if last == b'\r' {
            size -= 1;
        }
        FormatError::TooLarge { location: loc, size, limit: self.limit }
    }

    // ---- Linux audit records ------------------------------------------

    /// True when the input (at `pos`, a non-whitespace byte) starts with
    /// `type=` or `node=`, as audit record lines do.
    fn looks_like_audit(&mut self) -> Result<bool, FormatError> {
        while self.end - self.pos < 5 && self.fill()? {}
        let head = &self.buf[self.pos..self.end];
        Ok(head.starts_with(b"type=") || head.starts_with(b"node="))
    }

    /// The next grouped audit event (see [`crate::auditd`]).
    fn next_audit(&mut self) -> Result<Step, FormatError> {
        use crate::auditd::Grouped;
        loop {
            let eof = self.pos == self.end && !self.fill()?;
            let grouper = self.audit.as_mut().expect("audit state has a grouper");
            if let Some(g) = grouper.pop(eof) {
                return match g {
                    Grouped::TooLarge { line, offset, size } => Err(FormatError::TooLarge {
                        location: Location { line, byte_offset: offset },
                        size,
                        limit: self.limit,
                    }),
                    Grouped::Event { bytes, line, offset } => {
                        let location = Location { line, byte_offset: offset };
                        self.has_normalized = false;
                        self.record.clear();
                        if self.cls.normalizer.is_some() {
                            self.normalized = crate::auditd::normalize(&bytes)
                                .map_err(|reason| FormatError::InvalidEvent { location: Some(location), reason })?;
                            self.has_normalized = true;
                        }
                        let end = bytes.len();
                        self.audit_out = bytes;
                        Ok(Step::Event(Found { src: Src::Audit, start: 0, end, format: EventFormat::Auditd, location }))
                    }
                };
            }
            if eof {
                return Ok(Step::Eof);
            }
            let (line_loc, s, e) = self.take_line()?;
            if self.buf[s..e].iter().all(|b| is_ws(*b)) {
                continue;
            }
            let grouper = self.audit.as_mut().expect("audit state has a grouper");
            grouper
                .push(&self.buf[s..e], line_loc.line, line_loc.byte_offset)
                .map_err(|reason| FormatError::InvalidEvent { location: Some(line_loc), reason })?;
        }
    }

    // ---- events -----------------------------------------------------------

    fn finish_scanned(&mut self, s: Scanned, loc: Location, ctx: Ctx) -> Result<Step, FormatError> {
        if !s.kept {
            return Err(FormatError::TooLarge { location: loc, size: s.end - s.start, limit: self.limit });
        }
        let (a, b) = (self.idx(s.start), self.idx(s.end));
        self.finish_doc(a, b, loc, ctx)
    }

    /// Validates and classifies the event in `buf[a..b]`.
    fn finish_doc(&mut self, a: usize, b: usize, loc: Location, ctx: Ctx) -> Result<Step, FormatError> {
        self.has_normalized = false;
        let record = if self.keep_records { Some(&mut self.record) } else { None };
        match self.cls.classify(&self.buf[a..b], ctx, &mut self.normalized, record) {
            Ok(Some((format, fields))) => {
                self.has_normalized = fields;
                Ok(Step::Event(Found { src: Src::Buf, start: a, end: b, format, location: loc }))
            }
            Ok(None) => {
                self.pending.data.clear();
                self.pending.data.extend_from_slice(&self.buf[a..b]);
                self.expand_pending(loc)
            }
            Err(reason) => Err(FormatError::InvalidEvent { location: Some(loc), reason }),
        }
    }

    /// Sets up the items of the EventList in `pending.data`.
    fn expand_pending(&mut self, loc: Location) -> Result<Step, FormatError> {
        let p = &mut self.pending;
        p.items.clear();
        p.next = 0;
        p.offset = loc.byte_offset;
        p.line = loc.line;
        p.counted = 0;
        let bad = |reason| FormatError::InvalidEvent { location: Some(loc), reason };
        let Some((s, e)) = scan::find_member(&p.data, "items").map_err(|_| bad(InvalidReason::BadEventList))? else {
            return Ok(Step::Continue);
        };
        if p.data[s] != b'[' {
            return Err(bad(InvalidReason::BadEventList));
        }
        let (items, _) = scan::array_elements(&p.data[s..e]).map_err(|_| bad(InvalidReason::BadEventList))?;
        p.items.extend(items.into_iter().map(|(a, b)| (s + a, s + b)));
        Ok(Step::Continue)
    }

    fn next_pending(&mut self) -> Result<Step, FormatError> {
        let (a, b) = self.pending.items[self.pending.next];
        self.pending.next += 1;
        let p = &mut self.pending;
        p.line += count_newlines(&p.data[p.counted..a]);
        p.counted = a;
        let location = Location { line: p.line, byte_offset: p.offset + a as u64 };
        if b - a > self.limit {
            return Err(FormatError::TooLarge { location, size: (b - a) as u64, limit: self.limit });
        }
        self.has_normalized = false;
        let record = if self.keep_records { Some(&mut self.record) } else { None };
        match self.cls.classify(&self.pending.data[a..b], Ctx::Item, &mut self.normalized, record) {
            Ok(r) => {
                let (format, fields) = r.expect("items are never expanded");
                self.has_normalized = fields;
                Ok(Step::Event(Found { src: Src::Pending, start: a, end: b, format, location }))
            }
            Err(reason) => Err(FormatError::InvalidEvent { location: Some(location), reason }),
        }
    }
}

/// Validation and classification settings of a reader.
#[derive(Debug)]
struct Classifier {
    expand_lists: bool,
    strict_k8s: bool,
    /// Every event must be of this format (input formats `cloudtrail`,
    /// `gcp-audit`, `ocsf`).
    require: Option<EventFormat>,
    trie: Trie,
    normalizer: Option<Normalizer>,
}

impl Classifier {
    /// The event's format and whether (with a normalizer) its fields were
    /// written to `fields`; `None` for an EventList to expand.
    fn classify(
        &self,
        bytes: &[u8],
        ctx: Ctx,
        fields: &mut Normalized,
        record: Option<&mut CaptureRecord>,
    ) -> Result<Option<(EventFormat, bool)>, InvalidReason> {
        let trie = match &self.normalizer {
            Some(n) => n.trie(),
            None => &self.trie,
        };
        let caps = json::parse(bytes, trie)?;
        let format = match (caps.k8s_class(), ctx) {
            (K8sClass::EventList, Ctx::Standalone) if self.expand_lists => return Ok(None),
            // Every item of a CloudTrail log file's Records array is a record.
            (_, Ctx::Record) => EventFormat::CloudTrail,
            (K8sClass::Event, _) | (K8sClass::Compatible, Ctx::Item) => EventFormat::KubernetesAudit,
            (K8sClass::Compatible, _) if crate::normalize::is_aks_wrapped(&caps) => EventFormat::KubernetesAudit,
            _ if self.strict_k8s => {
                return Err(InvalidReason::NotK8sEvent { detail: caps.describe_kind() });
            }
            _ => crate::normalize::detect_shape(&caps).unwrap_or(EventFormat::Json),
        };
        if let Some(want) = self.require.filter(|w| *w != format && ctx != Ctx::Record) {
            crate::normalize::require_shape(&caps, want)?;
        }
        if self.normalizer.is_some() {
            crate::normalize::fields_into(&caps, format, bytes, fields);
            if let Some(r) = record {
                r.fill(&caps);
            }
        }
        Ok(Some((format, self.normalizer.is_some())))
    }
}

fn truncated(loc: Location, what: &str) -> FormatError {
    FormatError::Malformed { location: loc, reason: format!("unexpected end of input {what} (truncated?)") }
}

fn count_newlines(b: &[u8]) -> u64 {
    memchr::memchr_iter(b'\n', b).count() as u64
}

/// Looks at the members of the object prefix `obj` (starting with `{`) from
/// `hs.at`, to find out whether it is an EventList whose items can be
/// streamed.
fn head_scan(obj: &[u8], hs: &mut HeadState) -> Head {
    loop {
        let mut i = scan::skip_ws(obj, hs.at);
        let Some(&b) = obj.get(i) else {
            return Head::NeedMore;
        };
        if !hs.first {
            match b {
                b',' => {
                    i = scan::skip_ws(obj, i + 1);
                    if i >= obj.len() {
                        return Head::NeedMore;
                    }
                }
                _ => return Head::NotList,
            }
        } else if b == b'}' {
            return Head::NotList;
        }
        if obj[i] != b'"' {
            return Head::NotList;
        }
        let Some(key_end) = complete_value_end(obj, i) else {
            return Head::NeedMore;
        };
        let key = &obj[i + 1..key_end - 1];
        let mut j = scan::skip_ws(obj, key_end);
        match obj.get(j) {
            None => return Head::NeedMore,
            Some(b':') => {}
            Some(_) => return Head::NotList,
        }
        j = scan::skip_ws(obj, j + 1);
        let Some(&v) = obj.get(j) else {
            return Head::NeedMore;
        };
        if key == b"items" {
            return if hs.list_kind && hs.api_ok && v == b'[' { Head::List(j) } else { Head::NotList };
        }
        // A CloudTrail log file is {"Records":[...]} (CloudTrail User Guide,
        // "CloudTrail log file examples").
        if key == b"Records" && hs.first {
            return if v == b'[' { Head::Records(j) } else { Head::NotList };
        }
        let Some(value_end) = complete_value_end(obj, j) else {
            return Head::NeedMore;
        };
        let value = &obj[j..value_end];
        // Keys and values with escapes never match here; such objects are
        // read whole, validated and classified instead.
        match key {
            b"kind" if value == b"\"EventList\"" => hs.list_kind = true,
            b"kind" => return Head::NotList,
            b"apiVersion" => {
                hs.api_ok = value == b"\"audit.k8s.io/v1\"" || value == b"\"audit.k8s.io/v1beta1\"";
            }
            _ => {}
        }
        hs.first = false;
        hs.at = value_end;
    }
}

/// Like [`scan::value_end`], but a bare scalar running to the end of the
/// prefix is incomplete.
fn complete_value_end(b: &[u8], start: usize) -> Option<usize> {
    let mut sc = ValueScanner::default();
    match sc.feed(&b[start..]) {
        Scan::Done(n) => Some(start + n),
        Scan::More => None,
    }
}

#[cfg(test)]
#[path = "reader_tests.rs"]
mod tests;
