//! Retention policies.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::RetentionError;

/// How a policy may change, after S3 Object Lock's retention modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// An administrator holding an explicit permission may shorten the policy; the
    /// change is recorded in the log.
    Governance,
    /// Nobody can shorten the policy or delete early; it can only be lengthened.
    Compliance,
}

impl Mode {
    /// `governance` or `compliance`.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Governance => "governance",
            Mode::Compliance => "compliance",
        }
    }
}

/// The retention of the streams one pattern names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// A stream name, or a prefix ending in `*` (`k8s-*`). Never matches stele's
    /// internal `_stele/` streams.
    pub stream: String,
    /// Nothing is deleted before this long after it was received.
    pub min_retention: Duration,
    /// Entries are deleted once this long has passed since they were received (in
    /// whole segments: a segment goes when its newest entry is this old). `None`:
    /// kept until the policy changes.
    pub max_retention: Option<Duration>,
    /// Whether the policy may be shortened.
    pub mode: Mode,
}

impl Policy {
    /// Checks the policy: a non-empty pattern that does not name `_stele/` streams,
    /// and a maximum no shorter than the minimum.
    ///
    /// # Errors
    /// [`RetentionError::InvalidPolicy`].
    pub fn validate(&self) -> Result<(), RetentionError> {
        let bad =
            |reason: &str| Err(RetentionError::InvalidPolicy { stream: self.stream.clone(), reason: reason.into() });
        if self.stream.is_empty() {
            return bad("empty stream pattern");
        }
        if self.stream.starts_with("_stele/") || self.stream.starts_with('_') && self.stream.ends_with('*') {
            return bad("stele's internal _stele/ streams have no retention policy (they are kept)");
        }
        if let Some(max) = self.max_retention
            && max < self.min_retention
        {
            return bad("max retention is shorter than min retention");
        }
        Ok(())
    }

    /// Whether the policy names `stream`.
    pub fn matches(&self, stream: &str) -> bool {
        if stream.starts_with(stele_store::streams::RESERVED_PREFIX) {
            return false;
        }
        match self.stream.strip_suffix('*') {
            Some(prefix) => stream.starts_with(prefix),
            None => self.stream == stream,
        }
    }

    /// Whether this policy allows some deletion earlier than `than` does: a shorter
    /// minimum, a shorter (or newly set) maximum, or compliance relaxed to governance.
    pub fn is_weaker_than(&self, than: &Policy) -> bool {
        let shorter_max = match (self.max_retention, than.max_retention) {
            (Some(a), Some(b)) => a < b,
            (Some(_), None) => true,
            (None, _) => false,
        };
        self.min_retention < than.min_retention
            || shorter_max
            || self.mode == Mode::Governance && than.mode == Mode::Compliance
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = |d: Duration| d.as_secs_f64() / 86_400.0;
        write!(f, "{} min {} days, max ", self.mode.name(), days(self.min_retention))?;
        match self.max_retention {
            Some(m) => write!(f, "{} days", days(m)),
            None => f.write_str("none"),
        }
    }
}

/// The policy that governs `stream`: an exact name wins over a prefix, a longer
/// prefix over a shorter one. `None` for `_stele/` streams and unmatched ones (kept).
pub fn policy_for<'a>(policies: &'a [Policy], stream: &str) -> Option<&'a Policy> {
    policies.iter().filter(|p| p.matches(stream)).max_by_key(|p| {
        let exact = !p.stream.ends_with('*');
        (exact, p.stream.len())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(stream: &str, min_days: u64, max_days: Option<u64>, mode: Mode) -> Policy {
        let d = |n: u64| Duration::from_secs(n * 86_400);
        Policy { stream: stream.into(), min_retention: d(min_days), max_retention: max_days.map(d), mode }
    }

    #[test]
    fn the_most_specific_policy_wins_and_internal_streams_have_none() {
        let ps = vec![
            p("*", 30, Some(365), Mode::Governance),
            p("k8s-*", 90, Some(400), Mode::Governance),
            p("k8s-prod", 365, None, Mode::Compliance),
        ];
        assert_eq!(policy_for(&ps, "k8s-prod").unwrap().stream, "k8s-prod");
        assert_eq!(policy_for(&ps, "k8s-dev").unwrap().stream, "k8s-*");
        assert_eq!(policy_for(&ps, "app").unwrap().stream, "*");
        assert!(policy_for(&ps, "_stele/system").is_none());
        assert!(policy_for(&ps, "_stele/retention").is_none());
    }

    #[test]
    fn weaker_means_some_deletion_could_come_earlier() {
        let base = p("s", 30, Some(365), Mode::Compliance);
        assert!(p("s", 29, Some(365), Mode::Compliance).is_weaker_than(&base));
        assert!(p("s", 30, Some(364), Mode::Compliance).is_weaker_than(&base));
        assert!(p("s", 30, Some(365), Mode::Governance).is_weaker_than(&base));
        assert!(!p("s", 31, Some(365), Mode::Compliance).is_weaker_than(&base));
        assert!(!p("s", 30, None, Mode::Compliance).is_weaker_than(&base));
        assert!(p("s", 30, Some(365), Mode::Compliance).is_weaker_than(&p("s", 30, None, Mode::Compliance)));
    }

    #[test]
    fn invalid_policies_are_refused() {
        assert!(p("s", 30, Some(10), Mode::Governance).validate().is_err());
        assert!(p("_stele/system", 0, Some(1), Mode::Governance).validate().is_err());
        assert!(p("_*", 0, Some(1), Mode::Governance).validate().is_err());
        assert!(p("s", 30, Some(30), Mode::Governance).validate().is_ok());
    }
}
