//! Sealing personal-data fields on the sequencer, before each group commit
//! (docs/erasure.md): keys made for new subjects are synced before the commit.

use stele_erasure::{ErasureError, Sealed, Sealer};
use stele_formats::{Normalized, Normalizer};

use crate::sequencer::AppendRequest;

/// The sealer and the normalizer that computes a sealed event's index fields.
pub(crate) struct Sealing {
    sealer: Sealer,
    normalizer: Normalizer,
}

impl Sealing {
    pub(crate) fn new(sealer: Sealer, normalizer: Normalizer) -> Sealing {
        Sealing { sealer, normalizer }
    }

    /// Seals the events `is_new(request, event)` says are appended; per request, one
    /// `Option` per event. Syncs the key store before returning.
    pub(crate) fn seal(
        &mut self,
        batch: &[AppendRequest],
        is_new: impl Fn(usize, usize) -> bool,
        now_ns: u64,
    ) -> Result<Vec<Vec<Option<Sealed>>>, ErasureError> {
        let mut out = Vec::with_capacity(batch.len());
        // One batch sealer per group commit: a subject's repeated values are sealed
        // once.
        let mut sealer = self.sealer.batch();
        for (ri, r) in batch.iter().enumerate() {
            let mut v = Vec::with_capacity(r.events.len());
            for (ei, e) in r.events.iter().enumerate() {
                v.push(if is_new(ri, ei) {
                    sealer.seal(&r.stream, e.format, &r.body[e.range.clone()], now_ns)?
                } else {
                    None
                });
            }
            out.push(v);
        }
        drop(sealer);
        self.sealer.sync()?;
        Ok(out)
    }

    /// Carries out the pending erasures nothing blocks any more; returns how many.
    pub(crate) fn carry_out(
        &mut self,
        log: &mut stele_store::Log,
        snapshot: &stele_index::Snapshot,
        policies: &[stele_retention::Policy],
        now_ns: u64,
    ) -> Result<usize, ErasureError> {
        let rules = self.sealer.rules().to_vec();
        let done = stele_erasure::carry_out_pending(log, snapshot, self.sealer.keys_mut(), &rules, policies, now_ns)?;
        for (id, index) in &done {
            tracing::info!(key_id = %hex::encode(id), record = index, "carried out a pending erasure");
        }
        Ok(done.len())
    }

    /// The key `subject` has now (resolved without recording anything).
    pub(crate) fn target(&self, subject: &str) -> Result<stele_erasure::ErasureTarget, ErasureError> {
        stele_erasure::target(self.sealer.keys(), subject)
    }

    /// Erases the key `target` names exactly as `stele erase` does
    /// (`stele_erasure::erase_target`): the record is durable before the key is
    /// destroyed, and this sealer's keys are the ones destroyed, so the subject's next
    /// event is sealed under a new key.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn erase(
        &mut self,
        log: &mut stele_store::Log,
        snapshot: &stele_index::Snapshot,
        policies: &[stele_retention::Policy],
        target: &stele_erasure::ErasureTarget,
        reason: &str,
        by: &stele_erasure::Attribution,
        now_ns: u64,
    ) -> Result<stele_erasure::EraseOutcome, ErasureError> {
        let rules = self.sealer.rules().to_vec();
        stele_erasure::erase_target(log, snapshot, self.sealer.keys_mut(), &rules, policies, target, reason, by, now_ns)
    }

    /// The index fields of a sealed event: those of its stored body, where a field
    /// read from a sealed value holds its blind token.
    pub(crate) fn fields(&self, s: &Sealed) -> Normalized {
        self.normalizer.stored_fields(s.format, &s.payload)
    }
}
