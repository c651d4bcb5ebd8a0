//! Which fields are sealed: per stream (name or `prefix*`) and format, the JSON
//! pointers of personal data and the pointer of the data subject.

use serde::{Deserialize, Serialize};
use stele_formats::EventFormat;

use crate::ErasureError;

/// One sealing rule, as written in the config file's `[[erasure.rule]]` tables.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealingRule {
    /// Stream name, or `prefix*`.
    pub stream: String,
    /// Format name (`json`, `k8s-audit`, `cloudtrail`, `gcp-audit`, `ocsf`); `None`:
    /// every JSON format.
    #[serde(default)]
    pub format: Option<String>,
    /// RFC 6901 pointer of the value naming the data subject (e.g. `/user/username`).
    /// An event without it is stored unsealed.
    pub subject: String,
    /// Pointers of the values to seal (the subject's pointer is always sealed too).
    #[serde(default)]
    pub fields: Vec<String>,
    /// Let an erasure win over legal holds and compliance-mode retention of this
    /// stream (default: holds and compliance retention win, GDPR Art. 17(3)(b),(e)).
    #[serde(default)]
    pub erasure_wins: bool,
}

impl SealingRule {
    /// Checks the rule: pointers start with `/`, the format is a JSON one, at most
    /// 64 fields.
    ///
    /// # Errors
    /// [`ErasureError::Config`].
    pub fn validate(&self) -> Result<(), ErasureError> {
        let bad = |reason: String| ErasureError::Config(format!("erasure rule for stream {:?}: {reason}", self.stream));
        if self.stream.is_empty() {
            return Err(bad("empty stream".into()));
        }
        if let Some(f) = &self.format {
            match format_by_name(f) {
                Some(ef) if ef.is_json() => {}
                _ => {
                    return Err(bad(format!(
                        "format {f:?} is not one of json, k8s-audit, cloudtrail, gcp-audit, ocsf"
                    )));
                }
            }
        }
        for p in std::iter::once(&self.subject).chain(&self.fields) {
            if !p.starts_with('/') {
                return Err(bad(format!("{p:?} is not a JSON pointer (RFC 6901, starts with /)")));
            }
        }
        if self.fields.len() > 64 {
            return Err(bad("more than 64 fields".into()));
        }
        Ok(())
    }

    /// Whether the rule applies to entries of `stream` in `format`.
    pub fn applies(&self, stream: &str, format: EventFormat) -> bool {
        let stream_ok = match self.stream.strip_suffix('*') {
            Some(prefix) => stream.starts_with(prefix),
            None => self.stream == stream,
        };
        stream_ok
            && format.is_json()
            && !stream.starts_with(stele_store::streams::RESERVED_PREFIX)
            && self.format.as_deref().is_none_or(|f| format_by_name(f) == Some(format))
    }

    /// Whether this rule lets erasure win for `stream`.
    pub fn lets_erasure_win(rules: &[SealingRule], stream: &str) -> bool {
        rules.iter().any(|r| {
            r.erasure_wins
                && match r.stream.strip_suffix('*') {
                    Some(prefix) => stream.starts_with(prefix),
                    None => r.stream == stream,
                }
        })
    }
}

/// The first rule that applies to `stream` and `format`.
pub fn rule_for<'a>(rules: &'a [SealingRule], stream: &str, format: EventFormat) -> Option<&'a SealingRule> {
    rules.iter().find(|r| r.applies(stream, format))
}

fn format_by_name(name: &str) -> Option<EventFormat> {
    [EventFormat::Json, EventFormat::KubernetesAudit, EventFormat::CloudTrail, EventFormat::GcpAudit, EventFormat::Ocsf]
        .into_iter()
        .find(|f| f.name() == name)
}
