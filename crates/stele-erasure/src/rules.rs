//! Which fields are sealed: per stream (name or `prefix*`) and format, the JSON
//! pointers of personal data and the pointer of the data subject.

use serde::{Deserialize, Serialize};
use stele_formats::EventFormat;

use crate::ErasureError;

/// Longest `subject_default`, bytes.
pub const MAX_SUBJECT_DEFAULT_BYTES: usize = 128;

/// One sealing rule, as written in the config file's `[[erasure.rule]]` tables.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealingRule {
    /// Stream name, or `prefix*`.
    pub stream: String,
    /// Format name (`json`, `k8s-audit`, `cloudtrail`, `gcp-audit`, `ocsf`); `None`:
    /// every JSON format.
    #[serde(default)]
    pub format: Option<String>,
    /// RFC 6901 pointer of the value naming the data subject (e.g. `/user/username`).
    /// An event without it is stored unsealed, unless `subject_default` is set.
    pub subject: String,
    /// Pointers of the values to seal (the subject's pointer is always sealed too).
    /// The root pointer `""` seals the whole event as one value.
    #[serde(default)]
    pub fields: Vec<String>,
    /// The subject whose key seals an event that has no value at `subject` (its
    /// `fields` are sealed under this fixed subject's key instead of being stored in
    /// clear). `stele erase --subject NAME` erases every such event at once. At most
    /// [`MAX_SUBJECT_DEFAULT_BYTES`] bytes, no control characters, no leading or
    /// trailing white space.
    #[serde(default)]
    pub subject_default: Option<String>,
    /// Let an erasure win over legal holds and compliance-mode retention of this
    /// stream (default: holds and compliance retention win, GDPR Art. 17(3)(b),(e)).
    #[serde(default)]
    pub erasure_wins: bool,
}

impl SealingRule {
    /// Checks the rule: pointers start with `/` (a field may also be the root
    /// pointer `""`), the format is a JSON one, at most 64 fields, and
    /// `subject_default`, when set, is a usable subject name.
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
        if !self.subject.starts_with('/') {
            return Err(bad(format!(
                "subject {:?} is not a JSON pointer to a value inside the event (RFC 6901, starts with /)",
                self.subject
            )));
        }
        for p in &self.fields {
            if !p.is_empty() && !p.starts_with('/') {
                return Err(bad(format!(
                    "{p:?} is not a JSON pointer (RFC 6901: starts with /, or \"\" for the whole event)"
                )));
            }
        }
        if let Some(name) = &self.subject_default {
            if name.is_empty() || name.len() > MAX_SUBJECT_DEFAULT_BYTES {
                return Err(bad(format!("subject_default must be 1 to {MAX_SUBJECT_DEFAULT_BYTES} bytes")));
            }
            if name.chars().any(char::is_control) || name.trim() != name {
                return Err(bad(format!(
                    "subject_default {name:?} has control characters or leading or trailing white space"
                )));
            }
        }
        if self.fields.len() > 64 {
            return Err(bad("more than 64 fields".into()));
        }
        Ok(())
    }

    /// Whether the rule seals whole events (its fields hold the root pointer `""`).
    pub fn seals_whole_events(&self) -> bool {
        self.fields.iter().any(String::is_empty)
    }

    /// Whether the rule applies to entries of `stream` in `format`.
    pub fn applies(&self, stream: &str, format: EventFormat) -> bool {
        self.covers_stream(stream)
            && format.is_json()
            && !stream.starts_with(stele_store::streams::RESERVED_PREFIX)
            && self.format.as_deref().is_none_or(|f| format_by_name(f) == Some(format))
    }

    /// Whether this rule lets erasure win for `stream`.
    pub fn lets_erasure_win(rules: &[SealingRule], stream: &str) -> bool {
        rules.iter().any(|r| r.erasure_wins && r.covers_stream(stream))
    }

    /// Whether the rule's `stream` (a name or `prefix*`) names `stream`, whatever the
    /// format.
    pub fn covers_stream(&self, stream: &str) -> bool {
        match self.stream.strip_suffix('*') {
            Some(prefix) => stream.starts_with(prefix),
            None => self.stream == stream,
        }
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
