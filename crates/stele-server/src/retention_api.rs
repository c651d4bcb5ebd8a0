//! Governance bypass over the API: shortening a governance-mode retention policy while
//! the server runs (`POST /v1/admin/retention/shorten`, docs/retention.md).
//!
//! The server records its configured policies when it starts (`stele serve`, through
//! `stele_retention::reconcile`, refusing any shortening) and its retention passes
//! delete by the policies in force ([`InForce`]). This route is the running server's
//! `stele retention apply --allow-shorten` for one stream pattern: the new policy is
//! checked against the log's records by the same `stele_retention::reconcile` (with
//! the permission), its record is appended to `_stele/retention` exactly as the CLI
//! appends it (`{"type":"policy",..,"shortened":true}`, `stele_retention::PolicyRecord`)
//! with who asked for it added (`shortened_by`, `reason`, and with an approval
//! `approved_by` and `approval`, as hold releases carry `released_by`), and from then
//! on the retention passes and erasures use it.
//!
//! | Route | Role | Answer |
//! |---|---|---|
//! | `POST /v1/admin/retention/shorten` | `governance-bypass` on the policy's stream pattern | Body `{"stream","min_days","max_days"?,"reason"}` (days as in `[[retention]]`; the mode stays governance). 200 `{"stream","index","policy":{..},"previous":{..}}`; 404 when no policy of that pattern is in force or recorded; 409 when the policy is in compliance mode (`"mode":"compliance"`: nobody may shorten it), or the request does not shorten it; 202 `{"approval",..}` when governance bypass needs approval ([`crate::approvals`]). |
//!
//! The configuration file still holds the longer policy: a server started with it
//! records that policy again (a lengthening needs no permission), which ends the
//! shortening, and warns so. Set the shortened policy in the configuration as well.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use stele_retention::{Mode, Policy, PolicyRecord, RetentionError};

use crate::auth::{Caller, Role};
use crate::http::{ApiError, App, error, error_with, json, read_body};

/// Longest reason (bytes): it is copied into records.
const MAX_REASON: usize = 4096;
/// Longest retention accepted, in days (about 27,000 years): bounds the seconds
/// recorded far below `u64::MAX`.
const MAX_DAYS: f64 = 1e7;

/// The retention policies in force, shared by the retention passes, erasures and this
/// route (which replaces one).
pub(crate) struct InForce(RwLock<Arc<[Policy]>>);

impl InForce {
    pub(crate) fn new(policies: Vec<Policy>) -> InForce {
        InForce(RwLock::new(policies.into()))
    }

    /// The policies as they are now.
    pub(crate) fn get(&self) -> Arc<[Policy]> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Puts `p` in place of the policy of the same pattern.
    fn replace(&self, p: Policy) {
        let mut g = self.0.write().unwrap_or_else(|e| e.into_inner());
        let next: Vec<Policy> = g.iter().map(|q| if q.stream == p.stream { p.clone() } else { q.clone() }).collect();
        *g = next.into();
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ShortenBody {
    stream: String,
    min_days: f64,
    max_days: Option<f64>,
    reason: String,
}

fn days(key: &str, v: f64) -> Result<Duration, ApiError> {
    if v.is_finite() && (0.0..=MAX_DAYS).contains(&v) {
        Ok(Duration::from_secs_f64(v * 86_400.0))
    } else {
        Err(error(StatusCode::BAD_REQUEST, format!("{key} must be a number of days between 0 and {MAX_DAYS}")))
    }
}

fn policy_json(p: &Policy) -> serde_json::Value {
    serde_json::json!({
        "stream": p.stream,
        "mode": p.mode.name(),
        "min_retention_seconds": p.min_retention.as_secs(),
        "max_retention_seconds": p.max_retention.map(|d| d.as_secs()),
    })
}

/// A checked shortening: the policy it puts in force, the record to append, and the
/// policy it replaces.
pub(crate) struct Shortening {
    policy: Policy,
    record: PolicyRecord,
    previous: Policy,
}

/// Checks that `policy` (mode aside) shortens the governance policy of its pattern that
/// is in force and recorded, as `stele retention apply --allow-shorten` checks it
/// (`stele_retention::reconcile` with the permission). Call under
/// [`crate::admin::serialize`], which orders every record of `_stele/retention`.
pub(crate) async fn check(app: &App, mut policy: Policy) -> Result<Shortening, ApiError> {
    let in_force = app.retention.get();
    let Some(current) = in_force.iter().find(|p| p.stream == policy.stream).cloned() else {
        return Err(error(
            StatusCode::NOT_FOUND,
            format!("no retention policy for the stream pattern {:?} is in force on this server", policy.stream),
        ));
    };
    policy.mode = current.mode;
    let (snapshot, reader) = (app.shared.snapshot(), app.shared.reader.clone());
    let recorded = tokio::task::spawn_blocking(move || stele_retention::recorded_policies(&snapshot, &reader))
        .await
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e))?
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, format!("reading the policy records: {e}")))?;
    let Some((recorded_policy, _)) = recorded.get(&policy.stream) else {
        return Err(error(
            StatusCode::NOT_FOUND,
            format!(
                "the retention policy for {:?} is not recorded in the log (`stele serve` records it when it starts)",
                policy.stream
            ),
        ));
    };
    let previous = recorded_policy.policy();
    let now = stele_store::log::now_ns();
    match stele_retention::reconcile(std::slice::from_ref(&policy), &recorded, true, now) {
        Err(RetentionError::ComplianceWeakening { stream, recorded, configured }) => Err(error_with(
            StatusCode::CONFLICT,
            format!(
                "the retention policy for {stream:?} is in compliance mode ({recorded}): nobody may shorten it, \
                 whatever their permission; it can only be lengthened"
            ),
            serde_json::json!({ "stream": stream, "mode": "compliance", "recorded": recorded, "requested": configured }),
        )),
        Err(RetentionError::InvalidPolicy { reason, .. }) => Err(error(StatusCode::BAD_REQUEST, reason)),
        Err(e) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
        Ok((append, _)) => match append.as_slice() {
            [record] if record.shortened => Ok(Shortening { policy, record: record.clone(), previous }),
            [] => Err(error(
                StatusCode::CONFLICT,
                format!("the retention policy for {:?} is already {previous}: nothing to shorten", policy.stream),
            )),
            _ => Err(error(
                StatusCode::CONFLICT,
                format!(
                    "{policy} does not shorten the retention policy for {:?} ({previous}): a longer policy needs no \
                     bypass; set it in the configuration",
                    policy.stream
                ),
            )),
        },
    }
}

/// Appends the shortening's record (asked for by `requested_by`, approved as
/// `approval` says), puts the policy in force, and answers 200.
pub(crate) async fn perform(
    app: &App,
    s: Shortening,
    reason: &str,
    requested_by: &str,
    approval: Option<(&str, serde_json::Value)>,
) -> Result<Response, ApiError> {
    let mut v = serde_json::to_value(&s.record).expect("a policy record serializes");
    v["shortened_by"] = requested_by.into();
    v["reason"] = reason.into();
    if let Some((by, a)) = &approval {
        v["approved_by"] = (*by).into();
        v["approval"] = a["id"].clone();
    }
    let index = crate::admin::append(app, v).await?;
    app.retention.replace(s.policy.clone());
    tracing::warn!(
        stream = %s.policy.stream, index, by = requested_by,
        "governance retention policy shortened from {} to {}", s.previous, s.policy
    );
    let mut answer = serde_json::json!({
        "stream": s.policy.stream,
        "index": index,
        "policy": policy_json(&s.policy),
        "previous": policy_json(&s.previous),
    });
    if let Some((_, a)) = approval {
        answer["approval"] = a;
    }
    Ok(json(StatusCode::OK, answer.to_string()))
}

/// The policy and reason an approval request for a shortening names.
pub(crate) fn from_params(params: &serde_json::Value) -> Result<(Policy, String), ApiError> {
    let bad = || error(StatusCode::INTERNAL_SERVER_ERROR, "the approval request's parameters are not a shortening's");
    let policy = Policy {
        stream: params["stream"].as_str().ok_or_else(bad)?.to_string(),
        min_retention: Duration::from_secs(params["min_retention_seconds"].as_u64().ok_or_else(bad)?),
        max_retention: match &params["max_retention_seconds"] {
            serde_json::Value::Null => None,
            v => Some(Duration::from_secs(v.as_u64().ok_or_else(bad)?)),
        },
        mode: Mode::Governance,
    };
    Ok((policy, params["reason"].as_str().ok_or_else(bad)?.to_string()))
}

/// `POST /v1/admin/retention/shorten`.
pub(crate) async fn post_shorten(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(body, crate::admin::MAX_BODY, app.limits.body_timeout).await?;
    let b: ShortenBody =
        serde_json::from_slice(&bytes).map_err(|e| error(StatusCode::BAD_REQUEST, format!("request body: {e}")))?;
    if b.stream.is_empty() {
        return Err(error(StatusCode::BAD_REQUEST, "stream must name the policy's stream pattern"));
    }
    caller.require_pattern(Role::GovernanceBypass, &b.stream)?;
    if b.reason.trim().is_empty() || b.reason.len() > MAX_REASON {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!("reason must hold 1 to {MAX_REASON} bytes, not only spaces"),
        ));
    }
    // Whole seconds, as the record holds them: the policy put in force is the one recorded.
    let whole = |d: Duration| Duration::from_secs(d.as_secs());
    let policy = Policy {
        stream: b.stream.clone(),
        min_retention: whole(days("min_days", b.min_days)?),
        max_retention: b.max_days.map(|d| days("max_days", d)).transpose()?.map(whole),
        mode: Mode::Governance,
    };
    let serial = crate::admin::serialize().await;
    let s = check(&app, policy).await?;
    if app.approvals.required(Role::GovernanceBypass) {
        let params = serde_json::json!({
            "stream": s.policy.stream,
            "min_retention_seconds": s.policy.min_retention.as_secs(),
            "max_retention_seconds": s.policy.max_retention.map(|d| d.as_secs()),
            "reason": b.reason,
        });
        // An approval takes the approvals' lock before this one.
        drop(serial);
        return crate::approvals::request(&app, &caller, Role::GovernanceBypass, &b.stream, params).await;
    }
    let answer = perform(&app, s, &b.reason, &caller.name, None).await;
    drop(serial);
    answer
}
