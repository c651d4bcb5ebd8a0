//! Retention for stele: delete exactly what policy allows, prove that nothing else
//! was deleted, and keep every proof of what remains valid.
//!
//! - [`Policy`]: per stream (exact name or `prefix*`), a minimum retention (nothing is
//!   deleted earlier), an optional maximum (deleted after it) and a [`Mode`]:
//!   governance (an administrator holding an explicit permission may shorten it, and
//!   that is recorded) or compliance (nobody can shorten it; only lengthening).
//! - [`reconcile`]: compares the configured policies with the ones recorded in the log
//!   (`_stele/retention` policy records) and returns the records to append, or refuses
//!   a weakening the mode forbids. Editing the config file cannot weaken a compliance
//!   policy: the log remembers it.
//! - [`plan`]: which segments have expired under the policies in force.
//! - [`HoldRecord`]: legal holds by stream, time range and query, placed and released
//!   by records in the log; a held entry's segment is never deleted.
//! - [`apply`]: one deletion pass on the writer: each expired segment is removed under
//!   a deletion record (see `stele_store::retention`), so `verify` can tell a deletion
//!   the policy allowed from tampering.
//!
//! stele's own `_stele/` streams are never deleted.
#![forbid(unsafe_code)]

mod audit;
mod hold;
mod pass;
mod plan;
mod policy;
mod recorded;

pub use audit::{AuditProblem, audit};
pub use hold::{ActiveHolds, HoldFilters, HoldRecord, ReleaseRecord, active_holds, held_segments};
pub use pass::{PassReport, apply};
pub use plan::{Due, StreamSchedule, plan, schedule};
pub use policy::{Mode, Policy, policy_for};
pub use recorded::{PolicyRecord, reconcile, recorded_policies};

/// Errors of the retention engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RetentionError {
    /// A policy is not acceptable as written.
    #[error("retention policy for {stream:?}: {reason}")]
    InvalidPolicy {
        /// The policy's stream pattern.
        stream: String,
        /// What is wrong.
        reason: String,
    },
    /// The configuration weakens a compliance-mode policy recorded in the log.
    #[error(
        "retention policy for {stream:?} is in compliance mode in the log ({recorded}); the configuration ({configured}) would shorten it, which compliance mode forbids; a policy can only be lengthened"
    )]
    ComplianceWeakening {
        /// The stream pattern.
        stream: String,
        /// The recorded policy, described.
        recorded: String,
        /// The configured policy, described.
        configured: String,
    },
    /// The configuration shortens a governance-mode policy without the permission.
    #[error(
        "retention policy for {stream:?} in the log ({recorded}) is longer than the configuration ({configured}); shortening a governance-mode policy needs the explicit permission (--allow-shorten), and is recorded"
    )]
    GovernanceShortening {
        /// The stream pattern.
        stream: String,
        /// The recorded policy, described.
        recorded: String,
        /// The configured policy, described.
        configured: String,
    },
    /// The log or the index could not be read or written.
    #[error(transparent)]
    Store(#[from] stele_store::StoreError),
    /// The query index could not be read.
    #[error(transparent)]
    Index(#[from] stele_index::IndexError),
}
