//! The index fields of a sealed event, derived from the one parse of the event it
//! was sealed from instead of a second parse of the sealed body.
//!
//! Sealing (docs/format.md, "Sealed entries") replaces the value at each sealed
//! pointer by a JSON string (a non-empty array by a one-element array holding that
//! string) and changes nothing else. So the captures a parse of the sealed body would
//! make differ from the event's only at trie pointers at or under a sealed pointer:
//! those lose their value, except the one the replacement string now stands at. From
//! each field's winning pointer in the event's parse ([`CaptureRecord`]) the winner
//! in the sealed body follows. Where only fields that the normalized fields copy one
//! to one change, those are rewritten ([`Normalizer::sealed_fields_update`]).
//! Otherwise, or when a winner under a sealed pointer is lost and a lower-priority
//! pointer that sealing did not touch could take its place (its value was never
//! recorded), the update declines, so that the caller parses the sealed body
//! ([`Normalizer::stored_fields`]) instead.

use crate::EventFormat;
use crate::json::{Captures, field};
use crate::normalize::{Normalized, Normalizer, resolve_format};
use crate::sealed::Pointer;

/// What one parse of an event captured: per field, the priority of the pointer that
/// won, and where the located pointers' values are. Filled by
/// [`Normalizer::parse_recording`] or by an [`crate::EventReader`] that rewrites
/// ([`crate::EventReader::read_batch_rewriting`]), and read by
/// [`Normalizer::sealed_fields_update`] with the same normalizer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CaptureRecord {
    winners: Vec<Winner>,
    /// Where the normalizer's located pointers were found
    /// ([`Normalizer::with_located`]).
    located: LocatedRecord,
}

/// A recorded winner: capture field and the priority of its pointer.
type Winner = (u8, u16);

/// A capture record, borrowed ([`CaptureRecord::view`]): what a [`crate::Rewrite`]
/// is given with each event.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CaptureRecordRef<'a> {
    winners: &'a [Winner],
    spans: &'a [Option<(u32, u32)>],
    duplicates: &'a [bool],
    fingerprint: u64,
}

/// The located pointers of one parse, kept.
#[derive(Debug, Clone, Default, PartialEq)]
struct LocatedRecord {
    spans: Vec<Option<(u32, u32)>>,
    /// Per pointer: a member on its way was named twice.
    duplicates: Vec<bool>,
    /// The pointers' fingerprint; 0 when none were located.
    fingerprint: u64,
}

impl CaptureRecord {
    /// Empties the record, keeping its allocations.
    pub(crate) fn clear(&mut self) {
        self.winners.clear();
        self.located.spans.clear();
        self.located.duplicates.clear();
        self.located.fingerprint = 0;
    }

    /// The record, borrowed.
    pub fn view(&self) -> CaptureRecordRef<'_> {
        CaptureRecordRef {
            winners: &self.winners,
            spans: &self.located.spans,
            duplicates: &self.located.duplicates,
            fingerprint: self.located.fingerprint,
        }
    }

    /// [`CaptureRecordRef::located`] of this record.
    pub fn located(&self, fingerprint: u64, ids: std::ops::Range<usize>) -> Option<(crate::sealed::Spans, bool)> {
        self.view().located(fingerprint, ids)
    }

    /// Records `caps`.
    pub(crate) fn fill(&mut self, caps: &Captures<'_>) {
        self.clear();
        if let Some(l) = &caps.located {
            self.located.spans.extend_from_slice(&l.spans);
            self.located.duplicates.extend_from_slice(&l.duplicates);
            self.located.fingerprint = l.fingerprint;
        }
        for (f, prio, _) in caps.winners() {
            self.winners.push((u8::try_from(f).expect("field index fits u8"), prio));
        }
    }
}

impl CaptureRecordRef<'_> {
    /// Where the parse found the located pointers of its normalizer
    /// ([`Normalizer::with_located`]), if they are the pointers whose
    /// [`crate::sealed::fingerprint`] is `fingerprint`: for the pointers with ids
    /// in `ids`, each one's value as a byte range of the event (the first found),
    /// and whether a member on the way to any of them was named twice; what
    /// [`crate::sealed::find_pointers_checked`] gives for those pointers.
    pub fn located(self, fingerprint: u64, ids: std::ops::Range<usize>) -> Option<(crate::sealed::Spans, bool)> {
        if self.fingerprint != fingerprint || fingerprint == 0 {
            return None;
        }
        let spans = self.spans.get(ids.clone())?;
        let duplicate = self.duplicates.get(ids)?.iter().any(|d| *d);
        Some((spans.iter().map(|s| s.map(|(a, e)| (a as usize, e as usize))).collect(), duplicate))
    }

    /// Whether `field` holds a value.
    fn has(self, field: usize) -> bool {
        self.winners.iter().any(|(f, _)| usize::from(*f) == field)
    }

    /// The priority of `field`'s winning pointer.
    fn winner_prio(self, field: usize) -> Option<u16> {
        self.winners.iter().find(|(f, _)| usize::from(*f) == field).map(|(_, p)| *p)
    }
}

/// The normalized field a capture field is copied to unchanged.
type FieldSlot = fn(&mut Normalized) -> &mut Option<String>;

/// A capture field and its winner after sealing (priority, and the index of the
/// replaced value whose sealed string it holds), `None` when it loses its value.
type Change = (usize, Option<(u16, usize)>);

/// One value sealing replaced in an event.
#[derive(Debug, Clone, Copy)]
pub struct Replaced<'a> {
    /// The pointer the value was found at.
    pub pointer: &'a Pointer,
    /// The value was a non-empty array, stored as a one-element array holding the
    /// sealed string.
    pub array: bool,
    /// Where the sealed string's text (without quotes: `stele:sealed:v1:TOKEN:BOX`)
    /// is in the sealed payload: start and end byte offsets.
    pub text: (usize, usize),
}

impl Normalizer {
    /// [`Normalizer::parse`], also recording the captures into `record` for
    /// [`Normalizer::sealed_fields_update`] (left empty for formats not parsed as
    /// JSON).
    ///
    /// # Errors
    /// As [`Normalizer::parse`].
    pub fn parse_recording(
        &self,
        bytes: &[u8],
        format_hint: Option<EventFormat>,
        record: &mut CaptureRecord,
    ) -> Result<(EventFormat, Normalized), crate::FormatError> {
        record.clear();
        if matches!(format_hint, Some(EventFormat::Syslog | EventFormat::OtlpLog | EventFormat::Auditd)) {
            return self.parse(bytes, format_hint);
        }
        let caps = crate::json::parse(bytes, self.trie())
            .map_err(|reason| crate::FormatError::InvalidEvent { location: None, reason })?;
        let format = resolve_format(&caps, format_hint)
            .map_err(|reason| crate::FormatError::InvalidEvent { location: None, reason })?;
        record.fill(&caps);
        Ok((format, crate::normalize::fields(&caps, format, bytes)))
    }

    /// Turns `fields`, this normalizer's fields of an event of `format` (from the
    /// parse `record` was made in), into the index fields of its sealed form
    /// `payload` (a stored entry whose values `replaced` were sealed): the same as
    /// [`Normalizer::stored_fields`] of the sealed payload, without parsing it.
    /// Only the fields sealing changes are rewritten.
    ///
    /// True when done; false, with `fields` unchanged, when they cannot be derived
    /// this way: a format read through a second parser (CloudTrail, GCP audit,
    /// OCSF) or not JSON, the whole event sealed, a change to a field that is not
    /// copied one to one from a captured string (a Kubernetes resource path, an
    /// outcome, a time), or a field whose winning pointer was sealed away while a
    /// pointer of lower priority that sealing left alone could take its place. The
    /// caller then uses [`Normalizer::stored_fields`].
    pub fn sealed_fields_update(
        &self,
        format: EventFormat,
        record: CaptureRecordRef<'_>,
        replaced: &[Replaced<'_>],
        payload: &[u8],
        fields: &mut Normalized,
    ) -> bool {
        with_scratch(|scratch| {
            self.changes(format, record, replaced, scratch)
                && update(format, record, &scratch.changes, replaced, payload, fields)
        })
    }

    /// The winners sealing changes among the capture fields `format` reads, written
    /// to `out`: each such field with its new winner (priority, and the index in
    /// `replaced` of the value whose sealed string it now holds), `None` for a field
    /// that loses its value. False when they cannot be known (see
    /// [`Normalizer::sealed_fields_update`]).
    fn changes(
        &self,
        format: EventFormat,
        record: CaptureRecordRef<'_>,
        replaced: &[Replaced<'_>],
        scratch: &mut Scratch,
    ) -> bool {
        let Scratch { touched, stack, changes: out } = scratch;
        out.clear();
        let Some(read) = crate::normalize::capture_fields_read(format) else { return false };
        if replaced.iter().any(|r| r.pointer.tokens().is_empty()) {
            return false;
        }
        // (field, priority, which replaced value it holds in the sealed body, if any)
        // for every trie pointer at or under a sealed pointer.
        touched.clear();
        let trie = self.trie();
        for (ri, r) in replaced.iter().enumerate() {
            let mut node = 0usize;
            let mut found = true;
            for t in r.pointer.tokens() {
                match trie.nodes[node].child(t.as_bytes()) {
                    Some(n) => node = n,
                    None => {
                        found = false;
                        break;
                    }
                }
            }
            if !found {
                continue;
            }
            let first = if r.array { trie.nodes[node].child(b"0") } else { None };
            stack.clear();
            stack.push(node);
            while let Some(n) = stack.pop() {
                let holds = if r.array { Some(n) == first } else { n == node };
                for sl in &trie.nodes[n].slots {
                    touched.push((sl.field(), sl.prio(), holds.then_some(ri)));
                }
                stack.extend(trie.nodes[n].children.iter().map(|(_, c, _)| *c as usize));
            }
        }
        // Fields the format does not read are left as they are; each field once, in
        // ascending order.
        touched.sort_unstable_by_key(|t| (t.0, t.1));
        let mut i = 0;
        while i < touched.len() {
            let f = touched[i].0;
            let group_end = i + touched[i..].iter().take_while(|t| t.0 == f).count();
            let group = &touched[i..group_end];
            i = group_end;
            if !read.contains(&f) {
                continue;
            }
            let is_touched = |p: u16| group.iter().any(|t| t.1 == p);
            // Sorted by priority: the first holding a value is the best.
            let best_new = group.iter().find_map(|t| t.2.map(|v| (t.1, v)));
            let new = match record.winner_prio(f) {
                Some(p) if !is_touched(p) => match best_new {
                    Some((bp, v)) if bp < p => Some((bp, v)),
                    _ => continue,
                },
                // The winner's pointer was sealed: the replacement string wins if it
                // stands at it or before it. Else a pointer of lower priority that
                // sealing left alone may hold a value this record does not have.
                Some(p) => match best_new {
                    Some((bp, v)) if bp <= p => Some((bp, v)),
                    _ => {
                        let limit = best_new.map_or(u16::MAX, |(bp, _)| bp);
                        if self.field_prios(f).iter().any(|&q| q > p && q < limit && !is_touched(q)) {
                            out.clear();
                            return false;
                        }
                        best_new
                    }
                },
                None => best_new,
            };
            out.push((f, new));
        }
        true
    }
}

/// [`Normalizer::sealed_fields_update`] once the changes are known.
fn update(
    format: EventFormat,
    record: CaptureRecordRef<'_>,
    changes: &[Change],
    replaced: &[Replaced<'_>],
    payload: &[u8],
    fields: &mut Normalized,
) -> bool {
    let direct: &[(usize, FieldSlot)] = match format {
        // The Kubernetes fields read straight from one string capture. Not for a
        // wrapped (AKS) event, whose fields come from the inner event.
        EventFormat::KubernetesAudit if !record.has(field::AKS_LOG) => &[
            (field::USERNAME, |n| &mut n.actor),
            (field::AUDIT_ID, |n| &mut n.request_id),
            (field::SOURCE_IP, |n| &mut n.source_ip),
        ],
        EventFormat::Json => &[
            (field::ACTOR, |n| &mut n.actor),
            (field::ACTION, |n| &mut n.action),
            (field::RESOURCE, |n| &mut n.resource),
            (field::GEN_SOURCE_IP, |n| &mut n.source_ip),
            (field::GEN_REQUEST_ID, |n| &mut n.request_id),
            (field::GEN_PRODUCER, |n| &mut n.producer),
        ],
        _ => &[],
    };
    // What `keep_tokens` leaves of a sealed string: its index form (ASCII, so only
    // that part is checked as UTF-8), else the whole text.
    let text = |v: usize| {
        let (a, e) = replaced.get(v)?.text;
        let bytes = payload.get(a..e)?;
        std::str::from_utf8(crate::sealed::index_form_bytes(bytes).unwrap_or(bytes)).ok()
    };
    if changes.iter().all(|(f, new)| direct.iter().any(|(d, _)| d == f) && new.is_none_or(|(_, v)| text(v).is_some())) {
        for (f, new) in changes {
            let slot = direct.iter().find(|(d, _)| d == f).map(|(_, s)| s(fields)).expect("checked above");
            match new {
                Some((_, v)) => {
                    let kept = text(*v).expect("checked above");
                    let s = slot.get_or_insert_with(String::new);
                    s.clear();
                    s.push_str(kept);
                }
                None => *slot = None,
            }
        }
        crate::sealed::keep_tokens(fields);
        return true;
    }
    false
}

/// Scratch space of [`Normalizer::changes`], kept per thread so that deriving an
/// event's fields allocates nothing once it has grown.
#[derive(Default)]
struct Scratch {
    /// (field, priority, index of the replaced value it holds) of touched pointers.
    touched: Vec<(usize, u16, Option<usize>)>,
    /// Trie nodes still to visit.
    stack: Vec<usize>,
    /// The result: each changed field and its new winner.
    changes: Vec<Change>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// Runs `f` with this thread's scratch space (a fresh one if it is in use).
fn with_scratch<T>(f: impl FnOnce(&mut Scratch) -> T) -> T {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut s) => f(&mut s),
        Err(_) => f(&mut Scratch::default()),
    })
}

/// Every field of the trie exists in [`field`]'s numbering.
const _: () = assert!(field::COUNT <= u8::MAX as usize);
