//! Policies recorded in the log, and reconciling the configuration with them.
//!
//! Each time a policy is set or changed, a policy record is appended to
//! `_stele/retention` (JSON, format 3):
//! `{"type":"policy","stream":P,"min_retention_seconds":N,"max_retention_seconds":N|null,
//! "mode":"governance"|"compliance","set_ns":T,"shortened":bool}`. The newest record of
//! a pattern is the policy in force. Because the records are entries, the history of
//! every policy is covered by signed checkpoints, and a configuration file edited to
//! weaken a compliance policy is refused against it.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use stele_index::Snapshot;
use stele_store::LogReader;

use crate::RetentionError;
use crate::policy::{Mode, Policy};

/// A policy record's payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRecord {
    /// Always `"policy"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The stream pattern.
    pub stream: String,
    /// Minimum retention, seconds.
    pub min_retention_seconds: u64,
    /// Maximum retention, seconds; `None`: none.
    pub max_retention_seconds: Option<u64>,
    /// `governance` or `compliance`.
    pub mode: Mode,
    /// When it was set, ns since the epoch.
    pub set_ns: u64,
    /// Whether this record shortened a governance policy (with the permission).
    pub shortened: bool,
}

impl PolicyRecord {
    /// The record of `p`, set at `set_ns`.
    pub fn of(p: &Policy, set_ns: u64, shortened: bool) -> PolicyRecord {
        PolicyRecord {
            kind: "policy".into(),
            stream: p.stream.clone(),
            min_retention_seconds: p.min_retention.as_secs(),
            max_retention_seconds: p.max_retention.map(|d| d.as_secs()),
            mode: p.mode,
            set_ns,
            shortened,
        }
    }

    /// The policy it records.
    pub fn policy(&self) -> Policy {
        Policy {
            stream: self.stream.clone(),
            min_retention: Duration::from_secs(self.min_retention_seconds),
            max_retention: self.max_retention_seconds.map(Duration::from_secs),
            mode: self.mode,
        }
    }

    /// The JSON payload.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a policy record serializes")
    }

    /// Parses a payload; `None` when it is not a policy record.
    pub fn parse(payload: &[u8]) -> Option<PolicyRecord> {
        serde_json::from_slice::<PolicyRecord>(payload).ok().filter(|r| r.kind == "policy")
    }
}

/// Every record of `_stele/retention` in log order, with its index, found through the
/// query index snapshot (which reads entries past its end from the log) and re-read
/// from the log.
pub(crate) fn retention_records(
    snapshot: &Snapshot,
    reader: &LogReader,
) -> Result<Vec<(u64, Vec<u8>)>, RetentionError> {
    retention_records_from(snapshot, reader, 0)
}

/// As [`retention_records`], for entries with index `from` and later.
pub(crate) fn retention_records_from(
    snapshot: &Snapshot,
    reader: &LogReader,
    from: u64,
) -> Result<Vec<(u64, Vec<u8>)>, RetentionError> {
    let hits = snapshot.stream_indexes(stele_store::streams::RETENTION_STREAM, from)?;
    let mut out = Vec::with_capacity(hits.len());
    for i in hits {
        let e = reader.entry(i)?;
        if e.stream == stele_store::streams::RETENTION_STREAM {
            out.push((i, e.payload));
        }
    }
    Ok(out)
}

/// The newest recorded policy of each pattern, with its entry index.
///
/// # Errors
/// Index or log read errors.
pub fn recorded_policies(
    snapshot: &Snapshot,
    reader: &LogReader,
) -> Result<BTreeMap<String, (PolicyRecord, u64)>, RetentionError> {
    let mut out = BTreeMap::new();
    for (i, payload) in retention_records(snapshot, reader)? {
        if let Some(r) = PolicyRecord::parse(&payload) {
            out.insert(r.stream.clone(), (r, i));
        }
    }
    Ok(out)
}

/// Compares the configured policies with the recorded ones: returns the records to
/// append (new or changed policies), or refuses.
///
/// - A compliance policy in the log can only be lengthened (or kept); a configuration
///   that drops it or makes it weaker (see [`Policy::is_weaker_than`]) is refused with
///   [`RetentionError::ComplianceWeakening`]; dropped compliance policies stay in force.
/// - A governance policy can be shortened only with `allow_shorten` (the record then
///   says `"shortened": true`); otherwise [`RetentionError::GovernanceShortening`].
///
/// Also returns the policies in force: the configured ones, plus compliance policies
/// the log holds and the configuration left out.
///
/// # Errors
/// The two refusals above, and [`RetentionError::InvalidPolicy`].
pub fn reconcile(
    configured: &[Policy],
    recorded: &BTreeMap<String, (PolicyRecord, u64)>,
    allow_shorten: bool,
    now_ns: u64,
) -> Result<(Vec<PolicyRecord>, Vec<Policy>), RetentionError> {
    let mut to_append = Vec::new();
    let mut in_force: Vec<Policy> = Vec::new();
    for p in configured {
        p.validate()?;
        match recorded.get(&p.stream) {
            None => to_append.push(PolicyRecord::of(p, now_ns, false)),
            Some((r, _)) => {
                let old = r.policy();
                if old == *p {
                    in_force.push(p.clone());
                    continue;
                }
                let weaker = p.is_weaker_than(&old);
                if weaker && old.mode == Mode::Compliance {
                    return Err(RetentionError::ComplianceWeakening {
                        stream: p.stream.clone(),
                        recorded: old.to_string(),
                        configured: p.to_string(),
                    });
                }
                if weaker && !allow_shorten {
                    return Err(RetentionError::GovernanceShortening {
                        stream: p.stream.clone(),
                        recorded: old.to_string(),
                        configured: p.to_string(),
                    });
                }
                to_append.push(PolicyRecord::of(p, now_ns, weaker));
            }
        }
        in_force.push(p.clone());
    }
    for (stream, (r, _)) in recorded {
        if r.mode == Mode::Compliance && !configured.iter().any(|p| &p.stream == stream) {
            in_force.push(r.policy());
        }
    }
    Ok((to_append, in_force))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(min_days: u64, max_days: Option<u64>, mode: Mode) -> Policy {
        let d = |n: u64| Duration::from_secs(n * 86_400);
        Policy { stream: "s".into(), min_retention: d(min_days), max_retention: max_days.map(d), mode }
    }

    fn rec(policy: &Policy) -> BTreeMap<String, (PolicyRecord, u64)> {
        BTreeMap::from([("s".to_string(), (PolicyRecord::of(policy, 1, false), 7))])
    }

    #[test]
    fn compliance_can_only_be_lengthened() {
        let c = p(365, Some(400), Mode::Compliance);
        let r = rec(&c);
        assert!(matches!(
            reconcile(&[p(30, Some(400), Mode::Compliance)], &r, true, 2),
            Err(RetentionError::ComplianceWeakening { .. })
        ));
        // Compliance -> governance is a weakening too, even with the permission.
        assert!(matches!(
            reconcile(&[p(365, Some(400), Mode::Governance)], &r, true, 2),
            Err(RetentionError::ComplianceWeakening { .. })
        ));
        let (append, in_force) = reconcile(&[p(400, Some(500), Mode::Compliance)], &r, false, 2).unwrap();
        assert_eq!(append.len(), 1);
        assert_eq!(in_force, vec![p(400, Some(500), Mode::Compliance)]);
        // Left out of the configuration: still in force.
        let (append, in_force) = reconcile(&[], &r, true, 2).unwrap();
        assert!(append.is_empty());
        assert_eq!(in_force, vec![c]);
    }

    #[test]
    fn governance_is_shortened_only_with_the_permission_and_on_the_record() {
        let g = p(365, Some(400), Mode::Governance);
        let r = rec(&g);
        assert!(matches!(
            reconcile(&[p(30, Some(60), Mode::Governance)], &r, false, 2),
            Err(RetentionError::GovernanceShortening { .. })
        ));
        let (append, _) = reconcile(&[p(30, Some(60), Mode::Governance)], &r, true, 2).unwrap();
        assert!(append[0].shortened);
        // Unchanged: nothing to append.
        assert!(reconcile(std::slice::from_ref(&g), &r, false, 2).unwrap().0.is_empty());
        // Governance -> compliance is a lengthening.
        let (append, _) = reconcile(&[p(365, Some(400), Mode::Compliance)], &r, false, 2).unwrap();
        assert!(!append[0].shortened);
    }
}
