//! Sealing at ingest and restoring at read (docs/format.md, "Sealed entries").

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use stele_formats::EventFormat;
use stele_formats::sealed::{
    ENVELOPE_VERSION, Envelope, FIXED_LEN, KEY_ID_LEN, MAGIC, MAX_SPANS, Pointer, SEALED_FLAG, VALUE_PREFIX,
    find_pointer, find_pointers_checked, sealed_parts,
};

use crate::ErasureError;
use crate::crypto::{DataKey, MasterKey, WrappedKey, random};
use crate::keystore::KeyStore;
use crate::rules::SealingRule;

/// What a sealed value's bytes read after its key was destroyed.
pub const ERASED_VALUE: &[u8] = b"\"stele:erased\"";

/// Room reserved per sealed value beyond its own bytes: prefix, token, nonce, tag and
/// base64 growth of a short value.
const SEALED_VALUE_BYTES: usize = 128;

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).expect("an event below 4 GiB")
}

/// Nanoseconds in a day.
pub(crate) const DAY_NS: u64 = 86_400 * 1_000_000_000;

/// A key id with its data key.
pub type IdKey = ([u8; KEY_ID_LEN], Arc<DataKey>);

/// The master key, the subject key store and the keys erased according to the log.
pub struct Keys {
    master: MasterKey,
    store: KeyStore,
    erased: HashSet<[u8; KEY_ID_LEN]>,
    cache: Mutex<HashMap<[u8; KEY_ID_LEN], Arc<DataKey>>>,
    /// The erasure records read so far, and the tree size they were read up to.
    erasure_log: (crate::ErasureLog, u64),
    /// The legal holds, read incrementally like the erasure records.
    pub(crate) holds: stele_retention::ActiveHolds,
}

impl Keys {
    /// Opens the key store of `data_dir` with the master key file at `master_key`.
    ///
    /// # Errors
    /// Master key and key store errors.
    pub fn open(data_dir: &Path, master_key: &Path, writable: bool) -> Result<Keys, ErasureError> {
        Ok(Keys::with(MasterKey::load(master_key)?, KeyStore::open(data_dir, writable)?))
    }

    /// Keys from a loaded master key and store.
    pub fn with(master: MasterKey, store: KeyStore) -> Keys {
        Keys {
            master,
            store,
            erased: HashSet::new(),
            cache: Mutex::new(HashMap::new()),
            erasure_log: (crate::ErasureLog::default(), 0),
            holds: stele_retention::ActiveHolds::default(),
        }
    }

    /// The erasure records [`crate::erase`] and [`crate::carry_out_pending`] have read
    /// from the log so far.
    pub fn erasure_log(&self) -> &crate::ErasureLog {
        &self.erasure_log.0
    }

    pub(crate) fn take_erasure_log(&mut self) -> (crate::ErasureLog, u64) {
        std::mem::take(&mut self.erasure_log)
    }

    pub(crate) fn put_erasure_log(&mut self, log: crate::ErasureLog, read_to: u64) {
        self.erasure_log = (log, read_to);
    }

    /// The key store.
    pub fn store(&self) -> &KeyStore {
        &self.store
    }

    /// The key store, mutably.
    pub fn store_mut(&mut self) -> &mut KeyStore {
        &mut self.store
    }

    /// Marks keys as erased (named by `erasure` records in the log): they are never
    /// used again, even while their record is still in the store.
    pub fn mark_erased(&mut self, ids: impl IntoIterator<Item = [u8; KEY_ID_LEN]>) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        for id in ids {
            cache.remove(&id);
            self.erased.insert(id);
        }
    }

    /// Whether a key id was erased (by a record, or gone from the store).
    pub fn is_erased(&self, key_id: &[u8; KEY_ID_LEN]) -> bool {
        self.erased.contains(key_id) || self.store.get(key_id).is_none()
    }

    /// The data key of `key_id`, unless erased.
    ///
    /// # Errors
    /// [`ErasureError::Crypto`] when the key does not unwrap (another master key).
    pub fn data_key(&self, key_id: &[u8; KEY_ID_LEN]) -> Result<Option<Arc<DataKey>>, ErasureError> {
        if self.erased.contains(key_id) {
            return Ok(None);
        }
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(k) = cache.get(key_id) {
            return Ok(Some(k.clone()));
        }
        let Some(stored) = self.store.get(key_id) else { return Ok(None) };
        let dk = Arc::new(self.master.unwrap(key_id, &stored.lookup, &stored.wrapped)?);
        cache.insert(*key_id, dk.clone());
        Ok(Some(dk))
    }

    /// The key id and data key of a subject, unless it has none or it was erased.
    ///
    /// # Errors
    /// As [`Keys::data_key`].
    pub fn subject_key(&self, subject: &str) -> Result<Option<IdKey>, ErasureError> {
        let Some(stored) = self.store.by_lookup(&self.master.lookup(subject)) else { return Ok(None) };
        let id = stored.key_id;
        Ok(self.data_key(&id)?.map(|k| (id, k)))
    }

    /// The key id of a subject's key record, erased or not.
    pub fn subject_key_id(&self, subject: &str) -> Option<[u8; KEY_ID_LEN]> {
        self.store.by_lookup(&self.master.lookup(subject)).map(|k| k.key_id)
    }

    /// Every key not erased: id and data key.
    ///
    /// # Errors
    /// As [`Keys::data_key`].
    pub fn live_keys(&self) -> Result<Vec<IdKey>, ErasureError> {
        let ids: Vec<[u8; KEY_ID_LEN]> = self.store.keys().map(|k| k.key_id).collect();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(k) = self.data_key(&id)? {
                out.push((id, k));
            }
        }
        Ok(out)
    }
}

/// A payload as stored after sealing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sealed {
    /// The leaf's format code: `0x80 | format`.
    pub format: u8,
    /// The envelope.
    pub payload: Vec<u8>,
    /// The index of the rule that sealed it.
    pub rule: usize,
    /// The sealed values, in span order ([`Sealer::replaced`]).
    pub values: Vec<SealedValue>,
}

/// One value a [`Sealed`] payload holds sealed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedValue {
    /// The index of its pointer among the rule's subject (0) and fields; `None` for
    /// a whole event sealed because a member was named twice on a sealed field's way.
    pub pointer: Option<usize>,
    /// It was a non-empty array, stored as a one-element array.
    pub array: bool,
    /// The byte range of its sealed string's text (`stele:sealed:v1:TOKEN:BOX`) in
    /// the payload.
    pub text: (usize, usize),
}

/// A byte range of an event, and the index of the pointer that found it.
type Found = ((usize, usize), Option<usize>);

/// The text a blind token is computed over: a JSON string's decoded value, else the
/// value's raw JSON text.
pub fn token_text(value: &[u8]) -> Cow<'_, [u8]> {
    if let [b'"', inner @ .., b'"'] = value
        && !inner.contains(&b'\\')
    {
        return Cow::Borrowed(inner);
    }
    if value.first() == Some(&b'"')
        && let Ok(s) = serde_json::from_slice::<String>(value)
    {
        return Cow::Owned(s.into_bytes());
    }
    Cow::Borrowed(value)
}

/// Seals an event's configured fields; `None` when no rule applies or the event has no
/// subject value. New keys and use records are buffered in the key store: call
/// [`Sealer::sync`] before appending the sealed payloads to the log.
///
/// Sealing takes `&self`, so parser threads can seal in parallel (share the sealer
/// behind an `RwLock`: readers seal, the writer syncs). Keys made for new subjects and
/// new use records wait in the sealer until [`Sealer::sync`] moves them into the key
/// store and makes them durable.
pub struct Sealer {
    rules: Vec<SealingRule>,
    /// Per rule: the subject's pointer, then the fields', parsed once.
    pointers: Vec<Vec<Pointer>>,
    /// Every rule's pointers one after the other ([`Sealer::located_pointers`]),
    /// where each rule's start, and their fingerprint.
    located: (Vec<Pointer>, Vec<usize>, u64),
    keys: Keys,
    fresh: Mutex<Fresh>,
}

/// Keys made and uses seen since the last sync.
#[derive(Default)]
struct Fresh {
    /// New keys by subject lookup: id, data key, creation time, wrapped form.
    keys: HashMap<[u8; 32], (IdKey, u64, WrappedKey)>,
    /// `(key id, stream, day)` uses not yet in the store.
    uses: HashSet<([u8; KEY_ID_LEN], String, u32)>,
}

impl Sealer {
    /// A sealer over writable `keys`.
    ///
    /// # Errors
    /// [`ErasureError::Config`] for an invalid rule.
    pub fn new(rules: Vec<SealingRule>, keys: Keys) -> Result<Sealer, ErasureError> {
        let mut pointers = Vec::with_capacity(rules.len());
        for r in &rules {
            r.validate()?;
            let parsed = std::iter::once(&r.subject)
                .chain(&r.fields)
                .map(|p| Pointer::parse(p).ok_or_else(|| ErasureError::Config(format!("{p:?} is not a JSON pointer"))))
                .collect::<Result<Vec<_>, _>>()?;
            pointers.push(parsed);
        }
        let mut flat = Vec::new();
        let mut starts = Vec::with_capacity(pointers.len());
        for p in &pointers {
            starts.push(flat.len());
            flat.extend(p.iter().cloned());
        }
        let fingerprint = stele_formats::sealed::fingerprint(&flat);
        Ok(Sealer { rules, pointers, located: (flat, starts, fingerprint), keys, fresh: Mutex::new(Fresh::default()) })
    }

    /// The pointers a reader's normalizer should locate
    /// ([`stele_formats::Normalizer::with_located`]) so that [`Sealer::seal_append`]
    /// takes their byte ranges from the event's parse instead of scanning it again.
    pub fn located_pointers(&self) -> &[Pointer] {
        &self.located.0
    }

    /// The keys.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The keys, mutably (erasure).
    pub fn keys_mut(&mut self) -> &mut Keys {
        &mut self.keys
    }

    /// The rules.
    pub fn rules(&self) -> &[SealingRule] {
        &self.rules
    }

    /// Whether any rule applies to `stream` and the format `code`.
    pub fn applies(&self, stream: &str, code: u8) -> bool {
        EventFormat::from_code(code).is_some_and(|f| crate::rules::rule_for(&self.rules, stream, f).is_some())
    }

    /// Seals `payload` (an event of format `code` for `stream`) received around
    /// `now_ns`: `None` when no rule applies, or when the event has no subject value
    /// (and the rule no `subject_default`, or the event none of the rule's fields).
    /// With the root pointer `""` among the fields, the whole event (from its first
    /// to its last non-white-space byte) is one sealed value.
    ///
    /// # Errors
    /// Key or randomness errors.
    pub fn seal(&self, stream: &str, code: u8, payload: &[u8], now_ns: u64) -> Result<Option<Sealed>, ErasureError> {
        self.batch().seal(stream, code, payload, now_ns)
    }

    /// [`Sealer::seal`], appending the sealed payload to `out` (nothing is appended
    /// when it returns `Ok(None)` or an error) and writing its sealed values to
    /// `values` (their text ranges relative to the payload's start), so that a batch
    /// of payloads can share one buffer. `record`, the capture record of the parse
    /// of `payload` by a normalizer that located [`Sealer::located_pointers`], gives
    /// the sealed values' byte ranges; without it (or for another normalizer's
    /// record) the payload is scanned for them. Returns the leaf's format code and
    /// the index of the rule that sealed it.
    ///
    /// # Errors
    /// As [`Sealer::seal`].
    #[allow(clippy::too_many_arguments)]
    pub fn seal_append(
        &self,
        stream: &str,
        code: u8,
        payload: &[u8],
        record: Option<stele_formats::CaptureRecordRef<'_>>,
        now_ns: u64,
        out: &mut Vec<u8>,
        values: &mut Vec<SealedValue>,
    ) -> Result<Option<(u8, usize)>, ErasureError> {
        self.batch().seal_append(stream, code, payload, record, now_ns, out, values)
    }

    /// A sealer for one batch of events ([`BatchSealer`]): it remembers each
    /// subject's key and each value it sealed, so that the batch's later events
    /// reuse them. It borrows the sealer, which therefore cannot change (no key is
    /// erased or synced) while the batch is sealed.
    pub fn batch(&self) -> BatchSealer<'_> {
        BatchSealer {
            sealer: self,
            subjects: HashMap::default(),
            values: HashMap::default(),
            arena: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// The values `sealed` (made by this sealer) replaced, for
    /// [`stele_formats::Normalizer::sealed_fields_update`]; `None` when the whole event was
    /// sealed.
    pub fn replaced(&self, sealed: &Sealed) -> Option<Vec<stele_formats::Replaced<'_>>> {
        let mut out = Vec::new();
        self.replaced_in(sealed.rule, &sealed.values, &mut out).then_some(out)
    }

    /// [`Sealer::replaced`] for a payload of [`Sealer::seal_append`], from the rule
    /// index and values it returned, written over `out`; false when the whole
    /// event was sealed.
    pub fn replaced_in<'a>(
        &'a self,
        rule: usize,
        values: &[SealedValue],
        out: &mut Vec<stele_formats::Replaced<'a>>,
    ) -> bool {
        out.clear();
        let Some(pointers) = self.pointers.get(rule) else { return false };
        for v in values {
            let Some(pointer) = v.pointer.and_then(|p| pointers.get(p)) else { return false };
            out.push(stele_formats::Replaced { pointer, array: v.array, text: v.text });
        }
        true
    }

    /// Whether keys or use records made by sealing wait for [`Sealer::sync`]. When
    /// false, every payload sealed so far uses only durable keys, and a writer need
    /// not take the sealer away from the threads sealing to sync it.
    pub fn needs_sync(&self) -> bool {
        let fresh = self.fresh.lock().unwrap_or_else(|p| p.into_inner());
        !fresh.keys.is_empty() || !fresh.uses.is_empty()
    }

    /// Makes the keys and use records of every sealed payload durable; must return
    /// `Ok` before those payloads are appended.
    ///
    /// # Errors
    /// Key store I/O errors.
    pub fn sync(&mut self) -> Result<(), ErasureError> {
        let fresh = std::mem::take(self.fresh.get_mut().unwrap_or_else(|p| p.into_inner()));
        let mut made: Vec<_> = fresh.keys.into_iter().collect();
        made.sort_by_key(|(_, (_, created, _))| *created);
        for (lookup, ((id, _), created, wrapped)) in made {
            self.keys.store.add_key(id, lookup, created, wrapped);
        }
        for (id, stream, day) in fresh.uses {
            self.keys.store.add_use(&id, &stream, day);
        }
        self.keys.store.sync()
    }

    /// The key of `subject` (made, and kept until the next sync, when it has none or
    /// its key was erased), with its use in `stream` today noted.
    fn key_for(&self, subject: &str, stream: &str, now_ns: u64) -> Result<IdKey, ErasureError> {
        let lookup = self.keys.master.lookup(subject);
        let day = (now_ns / DAY_NS) as u32;
        let stored = match self.keys.store.by_lookup(&lookup) {
            Some(stored) => {
                let id = stored.key_id;
                let known = stored.uses.get(stream).is_some_and(|(first, last)| (*first..=*last).contains(&day));
                // Erased: the subject's later events get a new key (a new key id), so
                // an erasure never covers entries appended after it.
                self.keys.data_key(&id)?.map(|k| ((id, k), known))
            }
            None => None,
        };
        let mut fresh = self.fresh.lock().unwrap_or_else(|p| p.into_inner());
        let id_key = match stored {
            Some((id_key, true)) => return Ok(id_key),
            Some((id_key, false)) => id_key,
            None => match fresh.keys.get(&lookup) {
                Some((id_key, _, _)) => id_key.clone(),
                None => {
                    let mut id = [0u8; KEY_ID_LEN];
                    random(&mut id)?;
                    let dk = DataKey::generate()?;
                    let wrapped = self.keys.master.wrap(&id, &lookup, &dk)?;
                    let id_key = (id, Arc::new(dk));
                    self.keys.cache.lock().unwrap_or_else(|p| p.into_inner()).insert(id, id_key.1.clone());
                    fresh.keys.insert(lookup, (id_key.clone(), now_ns, wrapped));
                    id_key
                }
            },
        };
        fresh.uses.insert((id_key.0, stream.to_string(), day));
        Ok(id_key)
    }
}

/// Seals the events of one batch ([`Sealer::batch`]). It remembers the key of each
/// subject it met (with that day's use noted) and the sealed string of each value it
/// sealed, by key, span position and value bytes: when the same subject's value comes
/// again at the same position, its sealed string is copied instead of computed again
/// (key lookup, blind token, encryption).
///
/// The copy is an exact earlier result of the same computation, under the same key
/// and associated data, so it opens like any other; no nonce is ever used for a
/// second message. Two entries then hold the same sealed string where the value
/// repeats, which shows no more than their equal blind tokens already show.
pub struct BatchSealer<'s> {
    sealer: &'s Sealer,
    /// By stream, day and subject: the subject's key.
    subjects: HashMap<Vec<u8>, IdKey, Seeded>,
    /// By key id, span position and value bytes: the sealed span's range in `arena`,
    /// where its text starts in it, its text's length, and whether it was an array.
    values: HashMap<Box<[u8]>, MemoValue, Seeded>,
    arena: Vec<u8>,
    /// Reused for map keys.
    scratch: Vec<u8>,
}

/// The memo's hash: foldhash, seeded per map (its keys are event values, which a
/// sender chooses).
type Seeded = foldhash::fast::RandomState;

/// A sealed span kept by a [`BatchSealer`].
#[derive(Clone, Copy)]
struct MemoValue {
    at: usize,
    len: usize,
    text_at: usize,
    text_len: usize,
    array: bool,
}

/// Values a [`BatchSealer`] remembers at most; past that it seals without
/// remembering, so that its memory stays bounded for values that never repeat.
const MEMO_VALUES: usize = 16_384;
/// Bytes of sealed spans it keeps at most.
const MEMO_BYTES: usize = 4 << 20;

impl BatchSealer<'_> {
    /// [`Sealer::seal`], reusing what earlier events of the batch sealed.
    ///
    /// # Errors
    /// As [`Sealer::seal`].
    pub fn seal(
        &mut self,
        stream: &str,
        code: u8,
        payload: &[u8],
        now_ns: u64,
    ) -> Result<Option<Sealed>, ErasureError> {
        let (mut out, mut values) = (Vec::new(), Vec::new());
        Ok(self.seal_append(stream, code, payload, None, now_ns, &mut out, &mut values)?.map(|(format, rule)| Sealed {
            format,
            payload: out,
            rule,
            values,
        }))
    }

    /// [`Sealer::seal_append`], reusing what earlier events of the batch sealed.
    ///
    /// # Errors
    /// As [`Sealer::seal`].
    #[allow(clippy::too_many_arguments)]
    pub fn seal_append(
        &mut self,
        stream: &str,
        code: u8,
        payload: &[u8],
        record: Option<stele_formats::CaptureRecordRef<'_>>,
        now_ns: u64,
        out: &mut Vec<u8>,
        values: &mut Vec<SealedValue>,
    ) -> Result<Option<(u8, usize)>, ErasureError> {
        let base = out.len();
        values.clear();
        let r = self.seal_at(stream, code, payload, record, now_ns, out, values);
        if !matches!(r, Ok(Some(_))) {
            out.truncate(base);
            values.clear();
        }
        r
    }

    /// The key of `subject` for `stream` on the day of `now_ns`, remembered.
    fn key_for(&mut self, subject: &str, stream: &str, now_ns: u64) -> Result<IdKey, ErasureError> {
        self.scratch.clear();
        self.scratch.extend_from_slice(&((now_ns / DAY_NS) as u32).to_be_bytes());
        self.scratch.extend_from_slice(stream.as_bytes());
        // Neither a stream name nor a subject (UTF-8) holds the byte 0xFF.
        self.scratch.push(0xFF);
        self.scratch.extend_from_slice(subject.as_bytes());
        if let Some(k) = self.subjects.get(self.scratch.as_slice()) {
            return Ok(k.clone());
        }
        let k = self.sealer.key_for(subject, stream, now_ns)?;
        if self.subjects.len() < MEMO_VALUES {
            self.subjects.insert(self.scratch.clone(), k.clone());
        }
        Ok(k)
    }

    /// The remembered sealed span of `value` at span `position` under `key_id`.
    fn memo_key(&mut self, key_id: &[u8; KEY_ID_LEN], position: u16, value: &[u8]) -> Option<MemoValue> {
        self.scratch.clear();
        self.scratch.extend_from_slice(key_id);
        self.scratch.extend_from_slice(&position.to_be_bytes());
        self.scratch.extend_from_slice(value);
        self.values.get(self.scratch.as_slice()).copied()
    }

    /// Remembers the sealed span `span` of the value whose key is in `scratch`
    /// ([`BatchSealer::memo_key`] was the last call that filled it).
    fn remember(&mut self, span: &[u8], text: (usize, usize), array: bool) {
        if self.values.len() >= MEMO_VALUES || self.arena.len() + span.len() > MEMO_BYTES {
            return;
        }
        let at = self.arena.len();
        self.arena.extend_from_slice(span);
        let m = MemoValue { at, len: span.len(), text_at: text.0, text_len: text.1, array };
        self.values.insert(self.scratch.as_slice().into(), m);
    }

    #[allow(clippy::too_many_arguments)]
    fn seal_at(
        &mut self,
        stream: &str,
        code: u8,
        payload: &[u8],
        record: Option<stele_formats::CaptureRecordRef<'_>>,
        now_ns: u64,
        out: &mut Vec<u8>,
        values: &mut Vec<SealedValue>,
    ) -> Result<Option<(u8, usize)>, ErasureError> {
        let sealer = self.sealer;
        let Some(format) = EventFormat::from_code(code) else { return Ok(None) };
        let Some(ri) = sealer.rules.iter().position(|r| r.applies(stream, format)) else { return Ok(None) };
        let pointers = &sealer.pointers[ri];
        let start = sealer.located.1[ri];
        // The parse's ranges; with a member named twice (rare) the scan's, whose
        // first-found values the whole-event case below reads.
        let (found, duplicate) = match record.and_then(|r| r.located(sealer.located.2, start..start + pointers.len())) {
            Some((found, false)) => (found, false),
            _ => find_pointers_checked(payload, pointers),
        };
        let rule = &sealer.rules[ri];
        let first_subject = found[0].map(|(ss, se)| token_text(&payload[ss..se]));
        // No subject value: the fields are sealed under the rule's fixed subject, if it
        // has one and the event has any of them.
        let default = rule.subject_default.as_ref().map(|d| Cow::Borrowed(d.as_bytes()));
        let (subject, mut spans): (Cow<'_, [u8]>, Vec<Found>) = match duplicate {
            // A member named twice on a sealed field's way: readers of the JSON take
            // the last, the pointer walk the first. The whole event is sealed, under
            // the subject a reader sees (else the first one found, else the fixed one).
            true => {
                let Some(whole) = find_pointer(payload, "") else { return Ok(None) };
                let read = serde_json::from_slice::<serde_json::Value>(payload).ok().and_then(|v| {
                    v.pointer(&rule.subject).map(|x| match x {
                        serde_json::Value::String(s) => s.clone().into_bytes(),
                        other => other.to_string().into_bytes(),
                    })
                });
                match read.map(Cow::Owned).or(first_subject).or(default) {
                    Some(subject) => (subject, vec![(whole, None)]),
                    None => return Ok(None),
                }
            }
            false => {
                let subject = match (first_subject, default) {
                    (Some(subject), _) => subject,
                    (None, Some(default)) if found[1..].iter().any(Option::is_some) => default,
                    (None, _) => return Ok(None),
                };
                (subject, found.into_iter().enumerate().filter_map(|(i, f)| f.map(|f| (f, Some(i)))).collect())
            }
        };
        let subject = String::from_utf8_lossy(&subject);
        // JSON values are nested or disjoint: keep the outermost of nested ones.
        spans.sort_by_key(|&((s, e), _)| (s, std::cmp::Reverse(e)));
        let mut outer: Vec<Found> = Vec::with_capacity(spans.len());
        for (span, pointer) in spans {
            if outer.last().is_none_or(|&((_, le), _)| span.0 >= le) {
                outer.push((span, pointer));
            }
        }
        outer.truncate(MAX_SPANS);
        let (key_id, dk) = self.key_for(&subject, stream, now_ns)?;
        // The envelope is written in place (docs/format.md, "Sealed entries"): header,
        // a span table filled in at the end, then the body.
        let base = out.len();
        let table_at = base + FIXED_LEN;
        let body_at = table_at + 8 * outer.len();
        out.reserve(body_at - base + payload.len() + SEALED_VALUE_BYTES * outer.len());
        out.extend_from_slice(MAGIC);
        out.push(ENVELOPE_VERSION);
        out.push(0);
        out.extend_from_slice(&(outer.len() as u16).to_be_bytes());
        out.extend_from_slice(&key_id);
        out.resize(body_at, 0);
        let mut scratch = Vec::new();
        let mut boxes = dk.event_sealer();
        let mut at = 0;
        for (i, ((s, e), pointer)) in outer.iter().enumerate() {
            out.extend_from_slice(&payload[at..*s]);
            let value = &payload[*s..*e];
            let start = out.len();
            let (array, text) = match self.memo_key(&key_id, i as u16, value) {
                Some(m) => {
                    out.extend_from_slice(&self.arena[m.at..m.at + m.len]);
                    (m.array, (start + m.text_at, start + m.text_at + m.text_len))
                }
                None => {
                    // A non-empty array is stored as a one-element array whose token
                    // is that of the first element, so a pointer to `/0` (e.g. a
                    // source address) stays queryable through the blind index.
                    let first = if value.first() == Some(&b'[') { find_pointer(value, "/0") } else { None };
                    if first.is_some() {
                        out.push(b'[');
                    }
                    out.extend_from_slice(VALUE_PREFIX.as_bytes());
                    let text_start = out.len() - (VALUE_PREFIX.len() - 1);
                    match first {
                        Some((fs, fe)) => dk.token_into(&token_text(&value[fs..fe]), out),
                        None => dk.token_into(&token_text(value), out),
                    }
                    out.push(b':');
                    boxes.seal_into(&key_id, i as u16, value, &mut scratch, out)?;
                    let text_end = out.len();
                    out.push(b'"');
                    if first.is_some() {
                        out.push(b']');
                    }
                    self.remember(&out[start..], (text_start - start, text_end - text_start), first.is_some());
                    (first.is_some(), (text_start, text_end))
                }
            };
            values.push(SealedValue { pointer: *pointer, array, text: (text.0 - base, text.1 - base) });
            let (entry, len) = (table_at + 8 * i, to_u32(out.len() - start));
            out[entry..entry + 4].copy_from_slice(&to_u32(start - body_at).to_be_bytes());
            out[entry + 4..entry + 8].copy_from_slice(&len.to_be_bytes());
            at = *e;
        }
        out.extend_from_slice(&payload[at..]);
        Ok(Some((code | SEALED_FLAG, ri)))
    }
}

/// Whether the sealed fields of a stored entry could be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SealState {
    /// The entry has no sealed fields.
    Clear,
    /// Sealed fields were restored with the subject's key: the bytes are the event
    /// as received.
    Restored,
    /// The subject's key was erased: sealed values read `"stele:erased"`.
    Erased,
}

impl SealState {
    /// `clear`, `restored` or `erased`.
    pub fn name(self) -> &'static str {
        match self {
            SealState::Clear => "clear",
            SealState::Restored => "restored",
            SealState::Erased => "erased",
        }
    }
}

/// A stored entry as a reader sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct View {
    /// Format code of the event (without the sealed flag).
    pub format: u8,
    /// The event's bytes: as received (clear or restored), or with sealed values
    /// replaced by [`ERASED_VALUE`].
    pub bytes: Vec<u8>,
    /// What happened to the sealed fields.
    pub state: SealState,
    /// The envelope's key id, for sealed entries.
    pub key_id: Option<[u8; KEY_ID_LEN]>,
}

/// Restores a stored payload of format `code`. Without `keys` (no erasure
/// configured), sealed values read as erased.
///
/// # Errors
/// [`ErasureError::Envelope`] for a damaged envelope, [`ErasureError::Crypto`] when a
/// value does not open under a key that exists (damage or another master key).
pub fn restore(keys: Option<&Keys>, code: u8, payload: &[u8]) -> Result<View, ErasureError> {
    if code & SEALED_FLAG == 0 {
        return Ok(View { format: code, bytes: payload.to_vec(), state: SealState::Clear, key_id: None });
    }
    let env = Envelope::parse(payload)?;
    let dk = match keys {
        Some(k) => k.data_key(&env.key_id)?,
        None => None,
    };
    let mut out = Vec::with_capacity(env.body.len());
    let mut at = 0;
    for (i, &(off, len)) in env.spans.iter().enumerate() {
        out.extend_from_slice(&env.body[at..off]);
        match &dk {
            Some(dk) => {
                let (_, boxed) =
                    sealed_parts(&env.body[off..off + len]).ok_or(ErasureError::Crypto("bad sealed value"))?;
                out.extend_from_slice(&dk.open(&env.key_id, i as u16, boxed)?);
            }
            None => out.extend_from_slice(ERASED_VALUE),
        }
        at = off + len;
    }
    out.extend_from_slice(&env.body[at..]);
    let state = if dk.is_some() { SealState::Restored } else { SealState::Erased };
    Ok(View { format: code & !SEALED_FLAG, bytes: out, state, key_id: Some(env.key_id) })
}
