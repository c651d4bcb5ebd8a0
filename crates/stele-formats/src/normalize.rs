//! Normalized query fields and one-pass event parsing.

use std::cell::RefCell;

use serde::{Deserialize, Serialize};

use crate::EventFormat;
use crate::error::{FormatError, InvalidReason};
use crate::json::{self, Captures, K8sClass, Scalar, Trie, field};

/// The fields stele indexes for queries, taken from one event.
///
/// Every field is optional: an event that lacks one is still stored.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Normalized {
    /// When the event happened, in nanoseconds since the Unix epoch (UTC).
    pub event_time_ns: Option<i64>,
    /// Who acted (user name, principal, ARN, e-mail...).
    pub actor: Option<String>,
    /// What was done (verb, API method, event name...).
    pub action: Option<String>,
    /// What it was done to.
    pub resource: Option<String>,
    /// `"success"`, `"failure"`, or another lowercased outcome word.
    pub outcome: Option<String>,
    /// The network address the action came from (an IP address, as text).
    pub source_ip: Option<String>,
    /// The producer's identifier of the request or event (audit ID, request ID,
    /// event ID), for correlating with the producer's own records.
    pub request_id: Option<String>,
    /// The system that produced the event (`kube-apiserver`, a syslog app name, an
    /// OpenTelemetry `service.name`, `cloudtrail:s3.amazonaws.com`...).
    pub producer: Option<String>,
}

/// Where to find the normalized fields in a generic JSON event.
///
/// Each list holds RFC 6901 JSON pointers tried in order: the first pointer
/// whose value is present, not null and a scalar (string, number or boolean)
/// wins; objects and arrays are passed over. Numbers and booleans become
/// their JSON text (`42`, `1.5`, `true`). A pointer that does not start with
/// `/` never matches.
///
/// Kubernetes audit events do not use these pointers; see [`parse_event`].
///
/// The default lists cover the samples in stele's test data: AWS CloudTrail,
/// GCP audit logs, Okta System Log, GitHub and GitLab audit logs, Google
/// Workspace activity, and common generic names.
///
/// Serializes and deserializes (for configuration files) with these field
/// names; a missing list takes its default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FieldPointers {
    /// Event time. A string is parsed as RFC 3339 (`2024-05-01T12:00:00.5Z`,
    /// any offset), or as a date-time without offset in the same shape with
    /// `T` or a space (`2022-11-29 00:09:04.38`), taken as UTC; a string of
    /// only digits, or a number, is a Unix time whose unit follows from its
    /// magnitude: |n| < 10^11 seconds, < 10^14 milliseconds, < 10^17
    /// microseconds, else nanoseconds (fractions allowed). Values that do
    /// not parse, or fall outside the years 1677–2262 that i64 nanoseconds
    /// can hold, leave the time absent.
    pub time: Vec<String>,
    /// Actor.
    pub actor: Vec<String>,
    /// Action.
    pub action: Vec<String>,
    /// Resource.
    pub resource: Vec<String>,
    /// Outcome; the value is normalized by [`normalize_outcome`].
    pub outcome: Vec<String>,
    /// Pointers whose presence means failure, checked before `outcome`: if
    /// any of them holds a value other than null, `false`, `0`, `""` or
    /// `"0"`, the outcome is `"failure"` (CloudTrail's `errorCode`, the gRPC
    /// status code of GCP audit logs).
    pub failure_if_present: Vec<String>,
    /// Source address (OCSF `src_endpoint.ip`).
    pub source_ip: Vec<String>,
    /// The producer's request or event identifier (OCSF `api.request.uid`).
    pub request_id: Vec<String>,
    /// The producing system or application (OCSF `metadata.product.name`).
    pub producer: Vec<String>,
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

impl Default for FieldPointers {
    fn default() -> Self {
        FieldPointers {
            time: strings(&[
                "/eventTime",  // CloudTrail
                "/timestamp",  // GCP audit
                "/published",  // Okta
                "/@timestamp", // GitHub (streaming)
                "/created_at", // GitHub / GitLab
                "/id/time",    // Google Workspace
                "/time",       // generic
                "/ts",         // generic
                "/date",       // generic
            ]),
            actor: strings(&[
                "/userIdentity/arn",                               // CloudTrail
                "/userIdentity/principalId",                       // CloudTrail (no ARN)
                "/protoPayload/authenticationInfo/principalEmail", // GCP audit
                "/actor/alternateId",                              // Okta
                "/actor/email",                                    // Google Workspace
                "/actor",                                          // GitHub, generic
                "/author_name",                                    // GitLab
                "/user/username",                                  // Kubernetes-like
                "/user/name",                                      // generic
                "/user",                                           // generic
                "/username",                                       // generic
                "/principal",                                      // generic
            ]),
            action: strings(&[
                "/eventName",               // CloudTrail
                "/protoPayload/methodName", // GCP audit
                "/eventType",               // Okta
                "/eventtype",               // Okta (lowercased export)
                "/action",                  // GitHub, generic
                "/verb",                    // Kubernetes-like
                "/operationName",           // Azure activity
                "/event",                   // generic
                "/name",                    // Google Workspace (flattened)
            ]),
            resource: strings(&[
                "/protoPayload/resourceName", // GCP audit
                "/repo",                      // GitHub
                "/resource",                  // generic
                "/resourceName",              // generic
                "/target/0/alternateId",      // Okta
                "/entity_path",               // GitLab
                "/path",                      // GitLab (request audit)
                "/object",                    // generic
            ]),
            outcome: strings(&[
                "/outcome/result",      // Okta
                "/outcome",             // generic
                "/result",              // generic
                "/status",              // generic
                "/responseStatus/code", // Kubernetes-like
                "/statusCode",          // generic
                "/status_code",         // generic
            ]),
            failure_if_present: strings(&[
                "/errorCode",                // CloudTrail
                "/protoPayload/status/code", // GCP audit (gRPC code; 0 = OK)
            ]),
            source_ip: strings(&[
                "/client/ipAddress",                      // Okta
                "/ipAddress",                             // Google Workspace
                "/actor_ip",                              // GitHub
                "/sourceIPAddress",                       // CloudTrail-like
                "/protoPayload/requestMetadata/callerIp", // GCP-like
                "/ip_address",                            // GitLab
                "/remote_ip",                             // generic
                "/source_ip",                             // generic
                "/src_ip",                                // generic
                "/ip",                                    // generic
            ]),
            request_id: strings(&[
                "/uuid",               // Okta
                "/_document_id",       // GitHub
                "/id/uniqueQualifier", // Google Workspace
                "/correlation_id",     // GitLab
                "/requestID",          // CloudTrail-like
                "/insertId",           // GCP-like
                "/request_id",         // generic
                "/requestId",          // generic
                "/event_id",           // generic
            ]),
            producer: strings(&[
                "/id/applicationName",       // Google Workspace
                "/protoPayload/serviceName", // GCP-like
                "/eventSource",              // CloudTrail-like
                "/service",                  // generic
                "/producer",                 // generic
            ]),
        }
    }
}

/// [`FieldPointers`] compiled for repeated use.
///
/// [`parse_event`] compiles its pointers once per thread and reuses them
/// while they stay equal; a `Normalizer` avoids even that comparison.
#[derive(Debug, Clone)]
pub struct Normalizer {
    pointers: FieldPointers,
    trie: Trie,
    /// Per capture field, the priorities of its pointers in the trie.
    prios: Vec<Vec<u16>>,
}

impl Normalizer {
    /// Compiles `pointers`.
    pub fn new(pointers: &FieldPointers) -> Normalizer {
        let mut trie = Trie::k8s_only();
        let lists: [(&Vec<String>, usize); 9] = [
            (&pointers.time, field::TIME),
            (&pointers.actor, field::ACTOR),
            (&pointers.action, field::ACTION),
            (&pointers.resource, field::RESOURCE),
            (&pointers.outcome, field::OUTCOME),
            (&pointers.failure_if_present, field::FAILURE_IF_PRESENT),
            (&pointers.source_ip, field::GEN_SOURCE_IP),
            (&pointers.request_id, field::GEN_REQUEST_ID),
            (&pointers.producer, field::GEN_PRODUCER),
        ];
        for (list, f) in lists {
            for (prio, p) in list.iter().enumerate() {
                trie.add(p, f, prio);
            }
        }
        let mut prios = vec![Vec::new(); field::COUNT];
        for node in &trie.nodes {
            for s in &node.slots {
                prios[s.field()].push(s.prio());
            }
        }
        Normalizer { pointers: pointers.clone(), trie, prios }
    }

    /// Compiles `pointers`, and `located`: pointers whose values' byte ranges each
    /// parse records (in a [`crate::CaptureRecord`], [`crate::CaptureRecord::located`]),
    /// with whether a member on the way to one is named twice, so that a caller
    /// sealing them needs no second scan of the event
    /// ([`crate::sealed::find_pointers_checked`] gives the same ranges).
    pub fn with_located(pointers: &FieldPointers, located: &[crate::sealed::Pointer]) -> Normalizer {
        let mut n = Normalizer::new(pointers);
        for (id, p) in located.iter().enumerate() {
            n.trie.locate(p.tokens(), u16::try_from(id).expect("at most 65,536 located pointers"));
        }
        n.trie.located_fingerprint = crate::sealed::fingerprint(located);
        n
    }

    pub(crate) fn trie(&self) -> &Trie {
        &self.trie
    }

    /// The priorities of `field`'s pointers.
    pub(crate) fn field_prios(&self, field: usize) -> &[u16] {
        &self.prios[field]
    }

    /// The index fields of a stored payload whose leaf records format `code`: the
    /// payload normalized with `code`'s format as the hint. For a sealed entry
    /// (docs/format.md, "Sealed entries") the envelope's body is normalized, so a field
    /// read from a sealed value never holds the value; it keeps only the value's blind
    /// token ([`crate::sealed::keep_tokens`]). Unknown codes, damaged envelopes and
    /// payloads that do not parse give empty fields.
    pub fn stored_fields(&self, code: u8, payload: &[u8]) -> Normalized {
        let Some((format, sealed)) = crate::sealed::split_format(code) else { return Normalized::default() };
        let body = if sealed {
            match crate::sealed::Envelope::parse(payload) {
                Ok(e) => e.body,
                Err(_) => return Normalized::default(),
            }
        } else {
            payload
        };
        let mut fields = self.parse(body, Some(format)).map(|(_, n)| n).unwrap_or_default();
        if sealed {
            crate::sealed::keep_tokens(&mut fields);
        }
        fields
    }

    /// The pointers this normalizer was compiled from.
    pub fn pointers(&self) -> &FieldPointers {
        &self.pointers
    }

    /// Same as [`parse_event`] with this normalizer's pointers.
    ///
    /// # Errors
    /// As [`parse_event`].
    pub fn parse(
        &self,
        bytes: &[u8],
        format_hint: Option<EventFormat>,
    ) -> Result<(EventFormat, Normalized), FormatError> {
        if format_hint == Some(EventFormat::Syslog) {
            return Ok((EventFormat::Syslog, crate::syslog::normalize(bytes)));
        }
        // A stored OTLP record is protobuf (see `crate::otlp`), not JSON.
        if format_hint == Some(EventFormat::OtlpLog) {
            return crate::otlp::parse_canonical(bytes)
                .map(|fields| (EventFormat::OtlpLog, fields))
                .map_err(|e| FormatError::InvalidEvent { location: None, reason: InvalidReason::Otlp(e) });
        }
        parse_with(bytes, format_hint, &self.trie)
            .map_err(|reason| FormatError::InvalidEvent { location: None, reason })
    }
}

thread_local! {
    static CACHE: RefCell<Option<Normalizer>> = const { RefCell::new(None) };
}

/// Validates one event and extracts its normalized fields, in one parse.
///
/// `bytes` must be exactly one JSON object (surrounding JSON whitespace
/// allowed), well-formed and UTF-8; it is accepted exactly when
/// `serde_json::from_slice::<serde_json::Value>` would accept it and yield
/// an object (including serde_json's nesting limit of 128: at most 127
/// arrays and objects open at once, the event's own object included).
///
/// `format_hint` chooses the interpretation:
/// - `None`: classify. A Kubernetes audit Event is an object with `"kind":
///   "Event"` and `"apiVersion"` `"audit.k8s.io/v1"` or
///   `"audit.k8s.io/v1beta1"`; an object with `"kind": "Event"`, no
///   `apiVersion` and a string `verb` also counts (exports that drop
///   `apiVersion`). An Azure diagnostic record wrapping one (`category`
///   `kube-audit...` and a string `properties.log`, as AKS exports it) is
///   also [`EventFormat::KubernetesAudit`], normalized from the inner event.
///   Otherwise a CloudTrail record (string `eventSource` and `eventName`),
///   a GCP audit `LogEntry` (string `protoPayload.methodName`) or an OCSF
///   event (integer `class_uid`, string `metadata.version`) takes that
///   format; anything else is [`EventFormat::Json`].
/// - `Some(KubernetesAudit)`: the object must not contradict being an audit
///   Event (`kind` absent or `"Event"`, `apiVersion` absent or an audit
///   version), as items of an `EventList` usually carry neither.
/// - `Some(Json)`: generic JSON, no classification.
/// - `Some(Syslog)`: a syslog message, not JSON: never fails; the fields are
///   those of [`crate::syslog::normalize`] (`pointers` are not used).
/// - `Some(CloudTrail | GcpAudit | Ocsf)`: any JSON object, read with that
///   format's mapping (fields it lacks stay absent).
/// - `Some(Auditd)`: `bytes` are the text lines of one Linux audit event
///   (see [`crate::auditd`]), not JSON.
///
/// Kubernetes audit fields: actor = `user.username`; action = `verb`;
/// resource = `objectRef` as a path (see [`k8s_resource_path`]); outcome =
/// `"success"` when `responseStatus.code` < 400, `"failure"` when ≥ 400,
/// absent without a numeric code; time = `stageTimestamp`, else
/// `requestReceivedTimestamp` (parsed as for [`FieldPointers::time`]);
/// source address = `sourceIPs[0]`; request id = `auditID`; producer =
/// `kube-apiserver`. Generic JSON uses `pointers` (see [`FieldPointers`]).
/// The other formats' mappings are listed in `docs/ingest-formats.md`.
///
/// Returns the event's format and its fields.
///
/// # Errors
/// [`FormatError::InvalidEvent`] (with `location: None`) when the bytes are
/// not a well-formed JSON object, or not of the format `format_hint` asks
/// for (for `Auditd`: not audit records).
pub fn parse_event(
    bytes: &[u8],
    format_hint: Option<EventFormat>,
    pointers: &FieldPointers,
) -> Result<(EventFormat, Normalized), FormatError> {
    CACHE.with(|cell| {
        let mut cache = cell.borrow_mut();
        if cache.as_ref().is_none_or(|n| n.pointers != *pointers) {
            *cache = Some(Normalizer::new(pointers));
        }
        let n = cache.as_ref().expect("cache was just filled");
        n.parse(bytes, format_hint)
    })
}

/// Validates, classifies and (with a full trie) extracts.
pub(crate) fn parse_with(
    bytes: &[u8],
    hint: Option<EventFormat>,
    trie: &Trie,
) -> Result<(EventFormat, Normalized), InvalidReason> {
    if hint == Some(EventFormat::Auditd) {
        return crate::auditd::normalize(bytes).map(|n| (EventFormat::Auditd, n));
    }
    let caps = json::parse(bytes, trie)?;
    let format = resolve_format(&caps, hint)?;
    Ok((format, fields(&caps, format, bytes)))
}

/// The normalized fields of a parsed event of `format`; `bytes` are the
/// event's (the formats read through `serde_json` parse them again).
pub(crate) fn fields(caps: &Captures<'_>, format: EventFormat, bytes: &[u8]) -> Normalized {
    let mut out = Normalized::default();
    fields_into(caps, format, bytes, &mut out);
    out
}

/// [`fields`] written over `out`, reusing the allocations of its strings.
pub(crate) fn fields_into(caps: &Captures<'_>, format: EventFormat, bytes: &[u8], out: &mut Normalized) {
    out.source_ip = None;
    out.request_id = None;
    out.producer = None;
    let via_value = |f: fn(&serde_json::Value) -> Normalized| {
        // The bytes were validated as a JSON object by the same grammar.
        serde_json::from_slice::<serde_json::Value>(bytes).map(|v| f(&v)).unwrap_or_default()
    };
    match format {
        EventFormat::KubernetesAudit => match caps.str(field::AKS_LOG) {
            Some(inner) if caps.k8s_class() != K8sClass::Event => aks_fields(inner, out),
            _ => k8s_fields(caps, out),
        },
        EventFormat::Json => generic_fields(caps, out),
        // A syslog message is never JSON; `Normalizer::parse` sends it to `syslog::normalize`.
        EventFormat::Syslog => *out = Normalized::default(),
        EventFormat::CloudTrail => *out = via_value(crate::cloud::cloudtrail),
        EventFormat::GcpAudit => *out = via_value(crate::cloud::gcp_audit),
        EventFormat::Ocsf => *out = via_value(crate::cloud::ocsf),
        // Audit records are not JSON and never reach here; see `parse_with`.
        EventFormat::Auditd => *out = Normalized::default(),
        // Never reached: `resolve_format` refuses an OTLP hint for a JSON object.
        EventFormat::OtlpLog => {}
    }
}

/// The capture fields [`resolve_format`] (with `format` as the hint) and
/// [`fields_into`] read for `format`, when they read nothing but captures; `None` for
/// the formats read through `serde_json` or not JSON. Keep in step with
/// `k8s_fields`, `aks_fields`, `generic_fields` and [`Captures::k8s_class`].
pub(crate) fn capture_fields_read(format: EventFormat) -> Option<&'static [usize]> {
    const K8S: [usize; 14] = [
        field::KIND,
        field::API_VERSION,
        field::VERB,
        field::USERNAME,
        field::OBJ_NAMESPACE,
        field::OBJ_RESOURCE,
        field::OBJ_NAME,
        field::OBJ_SUBRESOURCE,
        field::RESPONSE_CODE,
        field::STAGE_TS,
        field::RECEIVED_TS,
        field::AUDIT_ID,
        field::SOURCE_IP,
        field::AKS_LOG,
    ];
    const GENERIC: [usize; 9] = [
        field::TIME,
        field::ACTOR,
        field::ACTION,
        field::RESOURCE,
        field::OUTCOME,
        field::FAILURE_IF_PRESENT,
        field::GEN_SOURCE_IP,
        field::GEN_REQUEST_ID,
        field::GEN_PRODUCER,
    ];
    match format {
        EventFormat::KubernetesAudit => Some(&K8S),
        EventFormat::Json => Some(&GENERIC),
        _ => None,
    }
}

/// A Kubernetes audit event wrapped in an Azure diagnostic record (AKS
/// `kube-audit` category): `properties.log` holds the event as a JSON
/// string. The fields are the inner event's; an inner string that is not a
/// JSON object leaves them empty, with producer `kube-apiserver`.
fn aks_fields(inner: &str, out: &mut Normalized) {
    static TRIE: std::sync::OnceLock<Trie> = std::sync::OnceLock::new();
    let trie = TRIE.get_or_init(Trie::k8s_only);
    match json::parse(inner.as_bytes(), trie) {
        Ok(caps) => k8s_fields(&caps, out),
        Err(_) => {
            *out = Normalized::default();
            out.producer = Some(KUBE_APISERVER.to_owned());
        }
    }
}

/// The non-Kubernetes format an object's shape shows, if any:
/// CloudTrail (string `eventSource` and `eventName`), GCP audit (string
/// `protoPayload.methodName`), OCSF (integer `class_uid` and string
/// `metadata.version`).
pub(crate) fn detect_shape(caps: &Captures<'_>) -> Option<EventFormat> {
    if caps.str(field::CT_SOURCE).is_some() && caps.str(field::CT_NAME).is_some() {
        Some(EventFormat::CloudTrail)
    } else if caps.str(field::GCP_METHOD).is_some() {
        Some(EventFormat::GcpAudit)
    } else if matches!(caps.get(field::OCSF_CLASS), Some(Scalar::U64(_))) && caps.str(field::OCSF_VERSION).is_some() {
        Some(EventFormat::Ocsf)
    } else {
        None
    }
}

/// True for an Azure diagnostic record wrapping a Kubernetes audit event:
/// `category` starting with `kube-audit` and a string `properties.log`.
pub(crate) fn is_aks_wrapped(caps: &Captures<'_>) -> bool {
    caps.str(field::AKS_CATEGORY).is_some_and(|c| c.starts_with("kube-audit")) && caps.str(field::AKS_LOG).is_some()
}

/// Checks that an object has the shape of `format` (CloudTrail, GCP audit
/// or OCSF), as [`detect_shape`] decides.
pub(crate) fn require_shape(caps: &Captures<'_>, format: EventFormat) -> Result<(), InvalidReason> {
    if detect_shape(caps) == Some(format) {
        return Ok(());
    }
    let detail = match format {
        EventFormat::CloudTrail => "needs string \"eventSource\" and \"eventName\"",
        EventFormat::GcpAudit => "needs string \"protoPayload.methodName\"",
        _ => "needs integer \"class_uid\" and string \"metadata.version\"",
    };
    Err(InvalidReason::NotFormat { format: format.name(), detail: detail.to_owned() })
}

/// Sets `dst` to what `write` writes into a cleared string (reusing `dst`'s
/// allocation), or to `None` when `write` returns false.
fn set_with(dst: &mut Option<String>, write: impl FnOnce(&mut String) -> bool) {
    let mut s = dst.take().unwrap_or_default();
    s.clear();
    if write(&mut s) {
        *dst = Some(s);
    }
}

fn set_str(dst: &mut Option<String>, v: Option<&str>) {
    match v {
        Some(v) => set_with(dst, |s| {
            s.push_str(v);
            true
        }),
        None => *dst = None,
    }
}

/// The format of a parsed object under `hint` (see [`parse_event`]).
pub(crate) fn resolve_format(caps: &Captures<'_>, hint: Option<EventFormat>) -> Result<EventFormat, InvalidReason> {
    match hint {
        Some(EventFormat::Json | EventFormat::Syslog) => Ok(EventFormat::Json),
        Some(EventFormat::OtlpLog) => Err(InvalidReason::Otlp(crate::otlp::OtlpError::NotCanonical(
            "a JSON object, but OpenTelemetry log entries are stored as protobuf".into(),
        ))),
        Some(EventFormat::KubernetesAudit) => match caps.k8s_class() {
            K8sClass::Event | K8sClass::Compatible => Ok(EventFormat::KubernetesAudit),
            K8sClass::EventList | K8sClass::Other => Err(InvalidReason::NotK8sEvent { detail: caps.describe_kind() }),
        },
        Some(EventFormat::Auditd) => Err(InvalidReason::NotAuditRecord { detail: "a JSON object".to_owned() }),
        // A stored entry of these formats re-normalizes under its format whatever
        // its shape (CloudTrail records of a `Records` array need no particular
        // member); the shape check is the readers' (input formats `cloudtrail`...).
        Some(other) => Ok(other),
        None => Ok(match caps.k8s_class() {
            K8sClass::Event => EventFormat::KubernetesAudit,
            K8sClass::Compatible if is_aks_wrapped(caps) => EventFormat::KubernetesAudit,
            _ => detect_shape(caps).unwrap_or(EventFormat::Json),
        }),
    }
}

/// The producer of every Kubernetes audit event.
const KUBE_APISERVER: &str = "kube-apiserver";

fn k8s_fields(c: &Captures<'_>, out: &mut Normalized) {
    let time = c.get(field::STAGE_TS).and_then(time_ns).or_else(|| c.get(field::RECEIVED_TS).and_then(time_ns));
    let outcome = match c.get(field::RESPONSE_CODE) {
        Some(Scalar::U64(code)) => Some(if *code < 400 { "success" } else { "failure" }),
        Some(Scalar::I64(code)) => Some(if *code < 400 { "success" } else { "failure" }),
        _ => None,
    };
    out.event_time_ns = time;
    set_str(&mut out.actor, c.str(field::USERNAME));
    set_str(&mut out.action, c.str(field::VERB));
    set_with(&mut out.resource, |s| {
        write_k8s_resource_path(
            c.str(field::OBJ_NAMESPACE),
            c.str(field::OBJ_RESOURCE),
            c.str(field::OBJ_NAME),
            c.str(field::OBJ_SUBRESOURCE),
            s,
        )
    });
    set_str(&mut out.outcome, outcome);
    set_str(&mut out.source_ip, c.str(field::SOURCE_IP));
    set_str(&mut out.request_id, c.str(field::AUDIT_ID));
    set_str(&mut out.producer, Some(KUBE_APISERVER));
}

/// Formats a Kubernetes audit `objectRef` as stele's resource path.
///
/// The rule, modelled on the Kubernetes API path without `/api[s]/{group}/{version}`
/// (the API group and version are left out); empty strings count as absent:
/// - no `resource` → `None`;
/// - `resource` is `namespaces` → `namespaces/{name}` (or `namespaces`
///   without a name), whatever `namespace` says, as in the API;
/// - otherwise `namespaces/{namespace}/` when a namespace is given, then
///   `{resource}`, then `/{name}` when a name is given, then
///   `/{subresource}` when a subresource is given.
///
/// Examples: `namespaces/default/pods/web-1/exec`, `clusterroles/admin`,
/// `namespaces/kube-system/secrets`, `nodes`.
pub fn k8s_resource_path(
    namespace: Option<&str>,
    resource: Option<&str>,
    name: Option<&str>,
    subresource: Option<&str>,
) -> Option<String> {
    let mut out = String::new();
    write_k8s_resource_path(namespace, resource, name, subresource, &mut out).then_some(out)
}

/// Appends [`k8s_resource_path`] to `out`; false (and nothing appended) for `None`.
fn write_k8s_resource_path(
    namespace: Option<&str>,
    resource: Option<&str>,
    name: Option<&str>,
    subresource: Option<&str>,
    out: &mut String,
) -> bool {
    fn nonempty(s: Option<&str>) -> Option<&str> {
        s.filter(|s| !s.is_empty())
    }
    let Some(resource) = nonempty(resource) else { return false };
    let (namespace, name, subresource) = (nonempty(namespace), nonempty(name), nonempty(subresource));
    let len = |s: Option<&str>| s.map_or(0, |s| s.len() + 1);
    out.reserve(len(namespace) + 11 + resource.len() + len(name) + len(subresource));
    if let Some(ns) = namespace.filter(|_| resource != "namespaces") {
        out.push_str("namespaces/");
        out.push_str(ns);
        out.push('/');
    }
    out.push_str(resource);
    for part in [name, subresource].into_iter().flatten() {
        out.push('/');
        out.push_str(part);
    }
    true
}

fn generic_fields(c: &Captures<'_>, out: &mut Normalized) {
    let failed = c.get(field::FAILURE_IF_PRESENT).is_some_and(|v| match v {
        Scalar::Str(s) => !s.is_empty() && s != "0",
        Scalar::U64(n) => *n != 0,
        Scalar::I64(n) => *n != 0,
        Scalar::F64(f) => *f != 0.0,
        Scalar::Bool(b) => *b,
    });
    if failed {
        set_str(&mut out.outcome, Some("failure"));
    } else {
        out.outcome = c.get(field::OUTCOME).map(normalize_scalar_outcome);
    }
    out.event_time_ns = c.get(field::TIME).and_then(time_ns);
    for (dst, f) in [
        (&mut out.actor, field::ACTOR),
        (&mut out.action, field::ACTION),
        (&mut out.resource, field::RESOURCE),
        (&mut out.source_ip, field::GEN_SOURCE_IP),
        (&mut out.request_id, field::GEN_REQUEST_ID),
        (&mut out.producer, field::GEN_PRODUCER),
    ] {
        match c.get(f) {
            Some(v) => set_with(dst, |s| {
                v.write_text(s);
                true
            }),
            None => *dst = None,
        }
    }
}

fn normalize_scalar_outcome(v: &Scalar<'_>) -> String {
    match v {
        Scalar::U64(n) => http_outcome(i128::from(*n)),
        Scalar::I64(n) => http_outcome(i128::from(*n)),
        other => normalize_outcome(&other.to_text()),
    }
}

fn http_outcome(code: i128) -> String {
    if (100..=599).contains(&code) {
        if code < 400 { "success" } else { "failure" }.to_owned()
    } else {
        code.to_string()
    }
}

/// Normalizes an outcome value.
///
/// Case-insensitively, after trimming: `success`, `succeeded`, `successful`,
/// `ok`, `allow`, `allowed`, `pass`, `passed` → `"success"`; `failure`,
/// `failed`, `fail`, `deny`, `denied`, `error`, `rejected`, `blocked` →
/// `"failure"`; an integer from 100 to 599 (an HTTP status) → `"success"`
/// below 400, `"failure"` from 400; anything else is returned lowercased.
pub fn normalize_outcome(value: &str) -> String {
    let v = value.trim().to_lowercase();
    match v.as_str() {
        "success" | "succeeded" | "successful" | "ok" | "allow" | "allowed" | "pass" | "passed" => "success".to_owned(),
        "failure" | "failed" | "fail" | "deny" | "denied" | "error" | "rejected" | "blocked" => "failure".to_owned(),
        _ => match v.parse::<i128>() {
            Ok(code) if v.bytes().all(|b| b.is_ascii_digit()) => http_outcome(code),
            _ => v,
        },
    }
}

fn time_ns(v: &Scalar<'_>) -> Option<i64> {
    match v {
        Scalar::Str(s) => parse_time(s),
        Scalar::U64(n) => epoch_ns(*n as f64, Some(i128::from(*n))),
        Scalar::I64(n) => epoch_ns(*n as f64, Some(i128::from(*n))),
        Scalar::F64(f) => epoch_ns(*f, None),
        Scalar::Bool(_) => None,
    }
}

/// Parses a time value as described at [`FieldPointers::time`] and returns
/// nanoseconds since the Unix epoch, or `None` when it does not parse or does
/// not fit.
pub fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        let n: i128 = s.parse().ok()?;
        return epoch_ns(n as f64, Some(n));
    }
    // RFC 3339 (jiff also takes a space or lowercase 't' as separator).
    if let Ok(ts) = s.parse::<jiff::Timestamp>() {
        return i64::try_from(ts.as_nanosecond()).ok();
    }
    // No offset: civil date-time taken as UTC (Panther's "2022-11-29 00:09:04.38").
    let dt = s.parse::<jiff::civil::DateTime>().ok()?;
    let ts = jiff::tz::Offset::UTC.to_timestamp(dt).ok()?;
    i64::try_from(ts.as_nanosecond()).ok()
}

/// A Unix time whose unit follows from its magnitude; `exact` is the integer
/// value when there is one, so that large integers keep full precision.
fn epoch_ns(f: f64, exact: Option<i128>) -> Option<i64> {
    if !f.is_finite() {
        return None;
    }
    let a = f.abs();
    let mult: i128 = if a < 1e11 {
        1_000_000_000
    } else if a < 1e14 {
        1_000_000
    } else if a < 1e17 {
        1_000
    } else {
        1
    };
    let ns = match exact {
        Some(n) => n.checked_mul(mult)?,
        None => {
            let v = f * mult as f64;
            if !(-9.3e18..9.3e18).contains(&v) {
                return None;
            }
            v.round() as i128
        }
    };
    i64::try_from(ns).ok()
}

/// True when a query filter matches a field value.
///
/// A filter ending in `*` matches every value that starts with the part
/// before the `*` (so `"*"` matches any present value); any other filter must
/// equal the value exactly (case-sensitive). An absent value matches no
/// filter. There is no escape for a literal trailing `*`.
pub fn matches(filter: &str, value: Option<&str>) -> bool {
    let Some(value) = value else { return false };
    match filter.strip_suffix('*') {
        Some(prefix) => value.starts_with(prefix),
        None => filter == value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> (EventFormat, Normalized) {
        parse_event(s.as_bytes(), None, &FieldPointers::default()).unwrap()
    }

    #[test]
    fn k8s_event_fields() {
        let (f, n) = p(r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","verb":"create",
            "user":{"username":"alice","groups":["a"]},
            "objectRef":{"resource":"pods","namespace":"default","name":"web","subresource":"exec","apiGroup":""},
            "responseStatus":{"code":403},"requestReceivedTimestamp":"2024-01-02T03:04:05.000001Z",
            "stageTimestamp":"2024-01-02T03:04:06Z"}"#);
        assert_eq!(f, EventFormat::KubernetesAudit);
        assert_eq!(n.actor.as_deref(), Some("alice"));
        assert_eq!(n.action.as_deref(), Some("create"));
        assert_eq!(n.resource.as_deref(), Some("namespaces/default/pods/web/exec"));
        assert_eq!(n.outcome.as_deref(), Some("failure"));
        assert_eq!(n.event_time_ns, Some(1_704_164_646_000_000_000));
    }

    #[test]
    fn k8s_space_separated_time_and_fallback() {
        let (_, n) = p(
            r#"{"kind":"Event","verb":"get","requestReceivedTimestamp":"2022-11-29 00:09:04.38","responseStatus":{"code":200}}"#,
        );
        assert_eq!(n.event_time_ns, Some(1_669_680_544_380_000_000));
        assert_eq!(n.outcome.as_deref(), Some("success"));
        assert_eq!(n.resource, None);
    }

    #[test]
    fn resource_paths() {
        assert_eq!(k8s_resource_path(None, Some("nodes"), None, None).as_deref(), Some("nodes"));
        assert_eq!(
            k8s_resource_path(Some(""), Some("clusterroles"), Some("admin"), None).as_deref(),
            Some("clusterroles/admin")
        );
        assert_eq!(
            k8s_resource_path(Some("foo"), Some("namespaces"), Some("foo"), None).as_deref(),
            Some("namespaces/foo")
        );
        assert_eq!(
            k8s_resource_path(Some("kube-system"), Some("secrets"), None, None).as_deref(),
            Some("namespaces/kube-system/secrets")
        );
        assert_eq!(k8s_resource_path(Some("x"), None, Some("y"), None), None);
    }

    #[test]
    fn generic_defaults() {
        let (f, n) = p(
            r#"{"eventTime":"2019-01-01T00:00:00Z","userIdentity":{"arn":"arn:aws:iam::1:user/bob"},"eventName":"GetObject","errorCode":"AccessDenied"}"#,
        );
        assert_eq!(f, EventFormat::Json);
        assert_eq!(n.actor.as_deref(), Some("arn:aws:iam::1:user/bob"));
        assert_eq!(n.action.as_deref(), Some("GetObject"));
        assert_eq!(n.outcome.as_deref(), Some("failure"));
        assert_eq!(n.event_time_ns, Some(1_546_300_800_000_000_000));
        let (_, n) = p(r#"{"actor":"cat","action":"repo.create","created_at":1621305118553,"repo":"o/r"}"#);
        assert_eq!(n.event_time_ns, Some(1_621_305_118_553_000_000));
        assert_eq!(n.actor.as_deref(), Some("cat"));
        assert_eq!(n.resource.as_deref(), Some("o/r"));
        assert_eq!(n.outcome, None);
        let (_, n) = p(
            r#"{"actor":{"alternateId":"a@b.c"},"outcome":{"result":"DENY"},"published":"2023-01-01T00:00:00.000Z","eventType":"user.session.start"}"#,
        );
        assert_eq!(n.actor.as_deref(), Some("a@b.c"));
        assert_eq!(n.outcome.as_deref(), Some("failure"));
        assert_eq!(n.action.as_deref(), Some("user.session.start"));
        let (_, n) = p(r#"{"status":404,"user":7,"protoPayload":{"status":{"code":0}}}"#);
        assert_eq!(n.outcome.as_deref(), Some("failure"));
        assert_eq!(n.actor.as_deref(), Some("7"));
        let (_, n) = p(r#"{"status":"CHALLENGE","time":1.5}"#);
        assert_eq!(n.outcome.as_deref(), Some("challenge"));
        assert_eq!(n.event_time_ns, Some(1_500_000_000));
    }

    #[test]
    fn hints() {
        let fp = FieldPointers::default();
        let item = br#"{"verb":"list","user":{"username":"u"}}"#;
        let (f, n) = parse_event(item, Some(EventFormat::KubernetesAudit), &fp).unwrap();
        assert_eq!((f, n.action.as_deref()), (EventFormat::KubernetesAudit, Some("list")));
        let (f, _) = parse_event(item, None, &fp).unwrap();
        assert_eq!(f, EventFormat::Json);
        let err = parse_event(br#"{"kind": 0}"#, Some(EventFormat::KubernetesAudit), &fp).unwrap_err();
        assert!(err.to_string().contains("not a Kubernetes audit Event"), "{err}");
        let k8s = br#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","verb":"get"}"#;
        let (f, n) = parse_event(k8s, Some(EventFormat::Json), &fp).unwrap();
        assert_eq!(f, EventFormat::Json);
        // Generic pointers: found through "/verb" of the default action list.
        assert_eq!(n.action.as_deref(), Some("get"));
        let err = parse_event(b"[]", None, &fp).unwrap_err();
        assert!(err.to_string().contains("not a JSON object"));
    }

    #[test]
    fn pointers_from_config() {
        let p: FieldPointers = serde_json::from_str(r#"{"actor":["/who"]}"#).unwrap();
        assert_eq!(p.actor, vec!["/who".to_string()]);
        assert_eq!(p.time, FieldPointers::default().time);
        let (_, n) = parse_event(br#"{"who":"me","actor":"not me"}"#, None, &p).unwrap();
        assert_eq!(n.actor.as_deref(), Some("me"));
    }

    #[test]
    fn times() {
        assert_eq!(parse_time("1970-01-01T00:00:01+01:00"), Some(-3_599_000_000_000));
        assert_eq!(parse_time("2022-12-11 02:57:48.693000000"), Some(1_670_727_468_693_000_000));
        assert_eq!(parse_time("1700000000"), Some(1_700_000_000_000_000_000));
        assert_eq!(parse_time("1700000000000000"), Some(1_700_000_000_000_000_000));
        assert_eq!(parse_time("1700000000000000000"), Some(1_700_000_000_000_000_000));
        assert_eq!(parse_time("9999-01-01T00:00:00Z"), None);
        assert_eq!(parse_time("yesterday"), None);
    }

    #[test]
    fn outcomes_and_matching() {
        assert_eq!(normalize_outcome(" SUCCESS "), "success");
        assert_eq!(normalize_outcome("Denied"), "failure");
        assert_eq!(normalize_outcome("201"), "success");
        assert_eq!(normalize_outcome("503"), "failure");
        assert_eq!(normalize_outcome("7"), "7");
        assert_eq!(normalize_outcome("Unknown"), "unknown");
        assert!(matches("alice", Some("alice")));
        assert!(!matches("alice", Some("alice2")));
        assert!(matches("system:*", Some("system:anonymous")));
        assert!(!matches("system:*", Some("sys")));
        assert!(matches("*", Some("")));
        assert!(!matches("*", None));
    }
}
