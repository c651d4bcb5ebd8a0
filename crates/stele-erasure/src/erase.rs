//! Erasure: destroying a subject's key under a record in `_stele/erasure`, deferred
//! while a legal hold or compliance-mode retention covers the subject's entries.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use stele_index::Snapshot;
use stele_retention::{Mode, Policy, policy_for};
use stele_store::log::FORMAT_STELE_RECORD;
use stele_store::{Log, LogReader, NewEntry};

use crate::ErasureError;
use crate::crypto::DataKey;
use crate::keystore::StoredKey;
use crate::rules::SealingRule;
use crate::seal::{DAY_NS, Keys};

/// Stream of erasure records.
pub const ERASURE_STREAM: &str = "_stele/erasure";

/// An erasure record's payload: `erasure_request` (deferred) or `erasure` (done).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErasureRecord {
    /// `"erasure_request"` or `"erasure"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The subject's key id, hex (never the subject).
    pub key_id: String,
    /// Why.
    pub reason: String,
    /// When it was asked for, ns.
    pub requested_ns: u64,
    /// What defers it (hold cases, policies), for a request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocked_by: Vec<String>,
    /// The subject's blind token (under the subject's own key, unreadable once it is
    /// destroyed): lets a later pass tell whether a hold's actor filter names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_token: Option<String>,
    /// When the key was destroyed, ns, for an erasure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub erased_ns: Option<u64>,
    /// The request this erasure carries out, if it was deferred.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_index: Option<u64>,
    /// The principal that asked for it over the server's API (absent for `stele erase`
    /// on the host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
    /// The second principal that approved it, when the server requires approval for
    /// erasures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
}

impl ErasureRecord {
    /// The JSON payload.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an erasure record serializes")
    }

    /// The key id as bytes.
    pub fn key_id_bytes(&self) -> Option<[u8; 16]> {
        let mut out = [0u8; 16];
        hex::decode_to_slice(&self.key_id, &mut out).ok().map(|_| out)
    }
}

/// The erasures the log records: done ones and pending requests, by key id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErasureLog {
    /// Carried-out erasures with their record index.
    pub done: BTreeMap<[u8; 16], (ErasureRecord, u64)>,
    /// Requests not carried out yet, with their record index.
    pub pending: BTreeMap<[u8; 16], (ErasureRecord, u64)>,
}

/// Reads `_stele/erasure` through `snapshot` (entries past the index are read from the
/// log) and re-reads each record from the log.
///
/// # Errors
/// Index or log read errors.
pub fn erasure_log(snapshot: &Snapshot, reader: &LogReader) -> Result<ErasureLog, ErasureError> {
    let mut out = ErasureLog::default();
    out.read_from(snapshot, reader, 0)?;
    Ok(out)
}

impl ErasureLog {
    /// Adds the records of `_stele/erasure` with index `from` or later (read through
    /// `snapshot`, each re-read from the log); returns the key ids newly erased.
    ///
    /// # Errors
    /// Index or log read errors.
    pub fn read_from(
        &mut self,
        snapshot: &Snapshot,
        reader: &LogReader,
        from: u64,
    ) -> Result<Vec<[u8; 16]>, ErasureError> {
        let hits = snapshot.stream_indexes(ERASURE_STREAM, from)?;
        let mut erased = Vec::new();
        for i in hits {
            let e = reader.entry(i)?;
            if e.stream != ERASURE_STREAM {
                continue;
            }
            let Ok(r) = serde_json::from_slice::<ErasureRecord>(&e.payload) else { continue };
            let Some(id) = r.key_id_bytes() else { continue };
            match r.kind.as_str() {
                "erasure" => {
                    self.pending.remove(&id);
                    self.done.insert(id, (r, i));
                    erased.push(id);
                }
                "erasure_request" if !self.done.contains_key(&id) => {
                    self.pending.entry(id).or_insert((r, i));
                }
                _ => {}
            }
        }
        Ok(erased)
    }
}

/// Brings the erasure records `keys` remembers up to the log's tree size (reading only
/// what was appended since the last call) and makes `keys` agree with them.
fn refresh(keys: &mut Keys, snapshot: &Snapshot, reader: &LogReader) -> Result<(), ErasureError> {
    let tree_size = reader.tree_size();
    let (mut elog, from) = keys.take_erasure_log();
    if from > tree_size {
        elog = ErasureLog::default();
    }
    let from = from.min(tree_size);
    let result = elog.read_from(snapshot, reader, from);
    let erased = match result {
        Ok(erased) => erased,
        Err(e) => {
            keys.put_erasure_log(elog, from);
            return Err(e);
        }
    };
    keys.mark_erased(erased.iter().copied());
    let present: Vec<[u8; 16]> = erased.into_iter().filter(|id| keys.store().get(id).is_some()).collect();
    keys.put_erasure_log(elog, tree_size);
    if !present.is_empty() {
        keys.store_mut().remove(&present)?;
    }
    Ok(())
}

/// Makes `keys` agree with the log: keys the log says were erased are never used, and,
/// when the store is writable, removed (completing an erasure a crash interrupted
/// between its record and the key store rewrite). Returns how many were removed.
///
/// # Errors
/// Key store I/O errors.
pub fn reconcile_keys(keys: &mut Keys, log: &ErasureLog, writable: bool) -> Result<usize, ErasureError> {
    let ids: Vec<[u8; 16]> = log.done.keys().copied().collect();
    keys.mark_erased(ids.iter().copied());
    let present: Vec<[u8; 16]> = ids.into_iter().filter(|id| keys.store().get(id).is_some()).collect();
    if writable && !present.is_empty() {
        keys.store_mut().remove(&present)?;
    }
    Ok(present.len())
}

/// What [`erase`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EraseOutcome {
    /// The key is destroyed; the `erasure` record's index.
    Erased {
        /// Record index.
        index: u64,
    },
    /// A hold or compliance retention defers it; the `erasure_request` record's index
    /// and what blocks it.
    Pending {
        /// Record index.
        index: u64,
        /// Hold cases and policies.
        blocked_by: Vec<String>,
    },
    /// Already requested and still pending.
    AlreadyPending {
        /// The request's index.
        index: u64,
    },
}

/// What a hold or a retention policy means for one key, now.
fn blockers(
    key: &StoredKey,
    dk: &DataKey,
    subject_token: Option<&str>,
    holds: &BTreeMap<String, (stele_retention::HoldRecord, u64)>,
    policies: &[Policy],
    rules: &[SealingRule],
    now_ns: u64,
) -> Vec<String> {
    let mut out = Vec::new();
    for (stream, &(first, last)) in &key.uses {
        if SealingRule::lets_erasure_win(rules, stream) {
            continue;
        }
        // The use record's day comes from the sealing time, which may differ from
        // the received time by moments across midnight: widen by a day each side.
        let oldest = u64::from(first.saturating_sub(1)) * DAY_NS;
        let newest = (u64::from(last) + 2) * DAY_NS;
        for (case, (h, _)) in holds {
            if !h.covers_stream(stream) || !h.overlaps(oldest, newest) {
                continue;
            }
            let names_subject = match h.filters.actor.as_deref() {
                None => true,
                Some(f) if f.ends_with('*') => true,
                Some(f) => subject_token.is_none_or(|t| dk.token(f.as_bytes()) == t),
            };
            // Filters on other fields cannot be checked without reading the entries:
            // such a hold is taken to cover the subject.
            if names_subject {
                let b = format!("hold:{case}");
                if !out.contains(&b) {
                    out.push(b);
                }
            }
        }
        if let Some(p) = policy_for(policies, stream).filter(|p| p.mode == Mode::Compliance) {
            let until = newest.saturating_add(p.min_retention.as_nanos() as u64);
            if now_ns < until {
                let b = format!("retention:{}:until_ns={until}", p.stream);
                if !out.contains(&b) {
                    out.push(b);
                }
            }
        }
    }
    out
}

fn append(log: &mut Log, record: &ErasureRecord) -> Result<u64, ErasureError> {
    let payload = record.encode();
    let done = log.append(&[NewEntry { stream: ERASURE_STREAM, format: FORMAT_STELE_RECORD, payload: &payload }])?;
    Ok(done.indexes[0])
}

/// A data subject as an erasure names them: their key id and their blind token under
/// their own key, never their name (the token is unreadable once the key is gone).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErasureTarget {
    /// The subject's key id.
    pub key_id: [u8; 16],
    /// `DataKey::token` of the subject's name under that key (hex).
    pub subject_token: String,
}

/// Who asked for an erasure and who approved it, recorded in its records.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attribution {
    /// The principal that asked (`None` for `stele erase` on the host).
    pub requested_by: Option<String>,
    /// The second principal that approved it, if approval was required.
    pub approved_by: Option<String>,
}

/// The key `subject` has now, as an [`ErasureTarget`].
///
/// # Errors
/// [`ErasureError::NoSuchSubject`] when the subject has no live key (never sealed, or
/// already erased); key store errors.
pub fn target(keys: &Keys, subject: &str) -> Result<ErasureTarget, ErasureError> {
    let Some((key_id, dk)) = keys.subject_key(subject)? else {
        return Err(ErasureError::NoSuchSubject);
    };
    Ok(ErasureTarget { key_id, subject_token: dk.token(subject.as_bytes()) })
}

/// Erases `subject` now, or records the request when a legal hold or
/// compliance-mode retention covers their entries (unless a rule lets erasure win
/// for that stream). The `erasure` record is appended (durably) before the key store
/// is rewritten without the key. `policies` are the retention policies in force.
/// This is [`target`] followed by [`erase_target`].
///
/// # Errors
/// [`ErasureError::NoSuchSubject`] when the subject has no key (never sealed, or
/// already erased); log, index and key store errors.
#[allow(clippy::too_many_arguments)]
pub fn erase(
    log: &mut Log,
    snapshot: &Snapshot,
    keys: &mut Keys,
    rules: &[SealingRule],
    policies: &[Policy],
    subject: &str,
    reason: &str,
    now_ns: u64,
) -> Result<EraseOutcome, ErasureError> {
    let reader = log.reader();
    refresh(keys, snapshot, &reader)?;
    let t = target(keys, subject)?;
    erase_target(log, snapshot, keys, rules, policies, &t, reason, &Attribution::default(), now_ns)
}

/// Erases the key `target` names, with the same rules as [`erase`]: a pending request
/// of that key is answered [`EraseOutcome::AlreadyPending`]; a hold or compliance
/// retention covering the key's streams and days defers it (an `erasure_request`
/// record); otherwise the `erasure` record is appended durably, then the key is
/// destroyed in the key store. `by` is recorded in the record.
///
/// # Errors
/// [`ErasureError::NoSuchSubject`] when the key is gone (erased meanwhile); log,
/// index and key store errors.
#[allow(clippy::too_many_arguments)]
pub fn erase_target(
    log: &mut Log,
    snapshot: &Snapshot,
    keys: &mut Keys,
    rules: &[SealingRule],
    policies: &[Policy],
    target: &ErasureTarget,
    reason: &str,
    by: &Attribution,
    now_ns: u64,
) -> Result<EraseOutcome, ErasureError> {
    let reader = log.reader();
    refresh(keys, snapshot, &reader)?;
    let key_id = target.key_id;
    let Some(dk) = keys.data_key(&key_id)? else {
        return Err(ErasureError::NoSuchSubject);
    };
    if let Some((_, index)) = keys.erasure_log().pending.get(&key_id) {
        return Ok(EraseOutcome::AlreadyPending { index: *index });
    }
    let stored = keys.store().get(&key_id).expect("a live key is stored").clone();
    let token = target.subject_token.clone();
    let holds = keys.holds.refresh(snapshot, &reader)?.clone();
    let blocked_by = blockers(&stored, &dk, Some(&token), &holds, policies, rules, now_ns);
    let mut record = ErasureRecord {
        kind: "erasure".into(),
        key_id: hex::encode(key_id),
        reason: reason.to_string(),
        requested_ns: now_ns,
        blocked_by: Vec::new(),
        subject_token: None,
        erased_ns: Some(now_ns),
        request_index: None,
        requested_by: by.requested_by.clone(),
        approved_by: by.approved_by.clone(),
    };
    drop(dk);
    if !blocked_by.is_empty() {
        record.kind = "erasure_request".into();
        record.erased_ns = None;
        record.subject_token = Some(token);
        record.blocked_by = blocked_by.clone();
        let index = append(log, &record)?;
        return Ok(EraseOutcome::Pending { index, blocked_by });
    }
    let index = append(log, &record)?;
    keys.mark_erased([key_id]);
    keys.store_mut().remove(&[key_id])?;
    Ok(EraseOutcome::Erased { index })
}

/// Carries out every pending request nothing blocks any more (the retention pass
/// calls this): appends its `erasure` record, then removes the key. Returns the key
/// ids erased with their record index.
///
/// # Errors
/// Log, index and key store errors.
pub fn carry_out_pending(
    log: &mut Log,
    snapshot: &Snapshot,
    keys: &mut Keys,
    rules: &[SealingRule],
    policies: &[Policy],
    now_ns: u64,
) -> Result<Vec<([u8; 16], u64)>, ErasureError> {
    let reader = log.reader();
    refresh(keys, snapshot, &reader)?;
    let pending = keys.erasure_log().pending.clone();
    if pending.is_empty() {
        return Ok(Vec::new());
    }
    let holds = keys.holds.refresh(snapshot, &reader)?.clone();
    let mut out = Vec::new();
    for (id, (req, req_index)) in &pending {
        let Some(dk) = keys.data_key(id)? else { continue };
        let Some(stored) = keys.store().get(id).cloned() else { continue };
        if !blockers(&stored, &dk, req.subject_token.as_deref(), &holds, policies, rules, now_ns).is_empty() {
            continue;
        }
        drop(dk);
        let record = ErasureRecord {
            kind: "erasure".into(),
            key_id: req.key_id.clone(),
            reason: req.reason.clone(),
            requested_ns: req.requested_ns,
            blocked_by: Vec::new(),
            subject_token: None,
            erased_ns: Some(now_ns),
            request_index: Some(*req_index),
            requested_by: req.requested_by.clone(),
            approved_by: req.approved_by.clone(),
        };
        let index = append(log, &record)?;
        keys.mark_erased([*id]);
        keys.store_mut().remove(&[*id])?;
        out.push((*id, index));
    }
    Ok(out)
}
