//! Normalized fields of AWS CloudTrail records, Google Cloud audit log
//! entries and OCSF events.
//!
//! These formats are validated by the fast parser like every JSON event (see
//! [`crate::json::parse`]); their fields are then read from a
//! `serde_json::Value`, since they sit in arrays and alternatives that a fixed
//! pointer list does not express. The exact mapping of each format is in
//! `docs/ingest-formats.md`.

use std::net::IpAddr;

use serde_json::Value;

use crate::Normalized;
use crate::normalize::{normalize_outcome, parse_time};

/// The first of `pointers` (RFC 6901) holding a non-empty string.
fn first_str<'a>(v: &'a Value, pointers: &[&str]) -> Option<&'a str> {
    pointers.iter().find_map(|p| v.pointer(p).and_then(Value::as_str).filter(|s| !s.is_empty()))
}

/// The first of `pointers` holding a non-empty string or a number, as text.
fn first_text(v: &Value, pointers: &[&str]) -> Option<String> {
    pointers.iter().find_map(|p| match v.pointer(p)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

/// A time value: an RFC 3339 (or space-separated) string, or a Unix time
/// whose unit follows from its magnitude (see [`crate::FieldPointers::time`]).
fn time_at(v: &Value, pointers: &[&str]) -> Option<i64> {
    pointers.iter().find_map(|p| match v.pointer(p)? {
        Value::String(s) => parse_time(s),
        Value::Number(n) => parse_time(&n.as_u64()?.to_string()),
        _ => None,
    })
}

/// `s` when it is an IPv4 or IPv6 address (OCSF `src_endpoint.ip` holds
/// addresses only; CloudTrail also writes service names such as
/// `cloudtrail.amazonaws.com` there).
fn ip(s: Option<&str>) -> Option<String> {
    s.filter(|s| s.parse::<IpAddr>().is_ok()).map(str::to_owned)
}

/// `requestParameters` members that name the resource of common CloudTrail
/// calls, tried in order when a record has no `resources` array.
const CLOUDTRAIL_PARAMS: &[&str] = &[
    "/requestParameters/bucketName",
    "/requestParameters/functionName",
    "/requestParameters/roleName",
    "/requestParameters/userName",
    "/requestParameters/groupName",
    "/requestParameters/policyArn",
    "/requestParameters/instanceId",
    "/requestParameters/keyId",
    "/requestParameters/secretId",
    "/requestParameters/name",
    "/requestParameters/trailName",
    "/requestParameters/logGroupName",
    "/requestParameters/dBInstanceIdentifier",
    "/requestParameters/clusterName",
    "/requestParameters/repositoryName",
    "/requestParameters/tableName",
    "/requestParameters/topicArn",
    "/requestParameters/queueUrl",
    "/requestParameters/detectorId",
];

/// AWS CloudTrail record (CloudTrail record contents, User Guide).
pub(crate) fn cloudtrail(v: &Value) -> Normalized {
    let resource = first_str(v, &["/resources/0/ARN", "/resources/0/arn"])
        .or_else(|| first_str(v, CLOUDTRAIL_PARAMS))
        .map(str::to_owned);
    // No errorCode means the call succeeded; console sign-in failures carry
    // their result in responseElements instead.
    let failed = first_str(v, &["/errorCode"]).is_some()
        || first_str(v, &["/responseElements/ConsoleLogin"]).is_some_and(|r| r == "Failure");
    Normalized {
        event_time_ns: time_at(v, &["/eventTime"]),
        actor: first_str(
            v,
            &["/userIdentity/arn", "/userIdentity/userName", "/userIdentity/principalId", "/userIdentity/invokedBy"],
        )
        .map(str::to_owned),
        action: first_str(v, &["/eventName"]).map(str::to_owned),
        resource,
        outcome: Some(if failed { "failure" } else { "success" }.to_owned()),
        source_ip: ip(first_str(v, &["/sourceIPAddress"])),
        request_id: first_str(v, &["/requestID", "/eventID"]).map(str::to_owned),
        producer: first_str(v, &["/eventSource"]).map(|s| format!("cloudtrail:{s}")),
    }
}

/// Google Cloud audit log `LogEntry` with an `AuditLog` protoPayload
/// (Cloud Audit Logs, "AuditLog" message).
pub(crate) fn gcp_audit(v: &Value) -> Normalized {
    // google.rpc.Status: absent or code 0 is OK.
    let outcome = match v.pointer("/protoPayload/status/code").and_then(Value::as_i64) {
        Some(code) if code != 0 => "failure",
        _ => "success",
    };
    Normalized {
        event_time_ns: time_at(v, &["/timestamp", "/receiveTimestamp"]),
        actor: first_str(
            v,
            &["/protoPayload/authenticationInfo/principalEmail", "/protoPayload/authenticationInfo/principalSubject"],
        )
        .map(str::to_owned),
        action: first_str(v, &["/protoPayload/methodName"]).map(str::to_owned),
        resource: first_str(v, &["/protoPayload/resourceName"]).map(str::to_owned),
        outcome: Some(outcome.to_owned()),
        // callerIp is the field's name; some exports spell it callerIP.
        source_ip: ip(first_str(
            v,
            &["/protoPayload/requestMetadata/callerIp", "/protoPayload/requestMetadata/callerIP"],
        )),
        request_id: first_str(v, &["/insertId", "/operation/id"]).map(str::to_owned),
        producer: first_str(v, &["/protoPayload/serviceName"]).map(str::to_owned),
    }
}

/// OCSF event of any class (OCSF schema 1.x: base event, API Activity).
pub(crate) fn ocsf(v: &Value) -> Normalized {
    let outcome = first_str(v, &["/status"]).map(normalize_outcome).or_else(|| {
        // status_id: 1 Success, 2 Failure (OCSF base event).
        match v.pointer("/status_id").and_then(Value::as_u64) {
            Some(1) => Some("success".to_owned()),
            Some(2) => Some("failure".to_owned()),
            _ => None,
        }
    });
    Normalized {
        event_time_ns: time_at(v, &["/time"]),
        actor: first_str(
            v,
            &[
                "/actor/user/name",
                "/actor/user/email_addr",
                "/actor/user/uid",
                "/actor/process/name",
                "/user/name",
                "/user/uid",
            ],
        )
        .map(str::to_owned),
        action: first_str(v, &["/api/operation", "/activity_name", "/type_name"]).map(str::to_owned),
        resource: first_text(
            v,
            &[
                "/resources/0/uid",
                "/resources/0/name",
                "/resource/uid",
                "/resource/name",
                "/finding_info/uid",
                "/dst_endpoint/ip",
            ],
        ),
        outcome,
        source_ip: ip(first_str(v, &["/src_endpoint/ip"])),
        request_id: first_str(v, &["/api/request/uid", "/metadata/uid"]).map(str::to_owned),
        producer: first_str(v, &["/metadata/product/name"]).map(str::to_owned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloudtrail_record() {
        let v: Value = serde_json::from_str(
            r#"{"eventVersion":"1.08","userIdentity":{"type":"AssumedRole","principalId":"AROA:x"},
            "eventTime":"2021-01-01T00:00:01Z","eventSource":"s3.amazonaws.com","eventName":"GetObject",
            "sourceIPAddress":"cloudtrail.amazonaws.com","requestParameters":{"bucketName":"b"},
            "errorCode":"AccessDenied","eventID":"e-1"}"#,
        )
        .unwrap();
        let n = cloudtrail(&v);
        assert_eq!(n.actor.as_deref(), Some("AROA:x"));
        assert_eq!(n.resource.as_deref(), Some("b"));
        assert_eq!(n.outcome.as_deref(), Some("failure"));
        assert_eq!(n.source_ip, None);
        assert_eq!(n.request_id.as_deref(), Some("e-1"));
        assert_eq!(n.producer.as_deref(), Some("cloudtrail:s3.amazonaws.com"));
        assert_eq!(n.event_time_ns, Some(1_609_459_201_000_000_000));
    }

    #[test]
    fn ocsf_status_id() {
        let v: Value = serde_json::from_str(r#"{"class_uid":6003,"status_id":2,"time":1700000000000}"#).unwrap();
        let n = ocsf(&v);
        assert_eq!(n.outcome.as_deref(), Some("failure"));
        assert_eq!(n.event_time_ns, Some(1_700_000_000_000_000_000));
    }
}
