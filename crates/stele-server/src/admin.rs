//! Administrative routes: legal holds over HTTP.
//!
//! Holds are the records of `stele_retention` (`hold` and `hold_release` in
//! `_stele/retention`, see `stele_retention::hold`), appended through the sequencer
//! like any entry, with the principal that placed or released the hold added as
//! `placed_by` / `released_by`. Once appended they are covered by the next signed
//! checkpoint: no administrator can take back the record of a hold or its release.
//!
//! | Route | Role | Answer |
//! |---|---|---|
//! | `POST /v1/admin/holds` | `admin` on the hold's stream pattern (`*` without one) | Body `{"case","reason","stream"?,"since"?,"until"? (RFC 3339),"actor"?,"action"?,"resource"?,"outcome"?}`. 201 `{"case","index","hold":{..}}`; 409 when the case already has an active hold. |
//! | `POST /v1/admin/holds/{case}/release` | `hold-release` on the hold's stream pattern | Body `{"reason"}`. 200 `{"case","index"}`; 404 when the case has no active hold. |
//! | `GET /v1/admin/holds` | `admin` | `{"holds":[{..hold, "record_index"}]}`, the active holds whose stream pattern the caller administers. |
//!
//! When `hold-release` needs approval (`crate::approvals`), the release route records
//! the request and answers 202; the release happens when a second principal approves,
//! and its record names both (`released_by`, `approved_by`, `approval`).
//!
//! Bodies are JSON of at most [`MAX_BODY`] bytes; unknown keys are refused (400).

use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use stele_formats::Normalized;
use stele_retention::{HoldFilters, HoldRecord, ReleaseRecord};

use crate::auth::{Caller, Role};
use crate::http::{ApiError, App, error, json, read_body, submit_error};
use crate::sequencer::PreparedEvent;

/// Largest body of an administrative request (bytes): a hold is a few short strings.
pub(crate) const MAX_BODY: usize = 64 * 1024;

/// Serializes placing and releasing, so that "already active" is decided on the
/// records as they are.
static HOLDS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlaceBody {
    case: String,
    reason: String,
    stream: Option<String>,
    since: Option<String>,
    until: Option<String>,
    actor: Option<String>,
    action: Option<String>,
    resource: Option<String>,
    outcome: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReleaseBody {
    reason: String,
}

async fn body_json<T: serde::de::DeserializeOwned>(app: &App, body: Body) -> Result<T, ApiError> {
    let bytes = read_body(body, MAX_BODY, app.limits.body_timeout).await?;
    serde_json::from_slice(&bytes).map_err(|e| error(StatusCode::BAD_REQUEST, format!("request body: {e}")))
}

fn time_ns(key: &str, v: Option<String>) -> Result<Option<u64>, ApiError> {
    v.map(|s| {
        s.parse::<jiff::Timestamp>()
            .ok()
            .and_then(|t| u64::try_from(t.as_nanosecond()).ok())
            .ok_or_else(|| error(StatusCode::BAD_REQUEST, format!("{key}: {s:?} is not an RFC 3339 time after 1970")))
    })
    .transpose()
}

type Active = std::collections::BTreeMap<String, (HoldRecord, u64)>;

async fn active(app: &App) -> Result<Active, ApiError> {
    let (snapshot, reader) = (app.shared.snapshot(), app.shared.reader.clone());
    tokio::task::spawn_blocking(move || stele_retention::active_holds(&snapshot, &reader))
        .await
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e))?
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, format!("reading the hold records: {e}")))
}

/// Appends `record` to `_stele/retention` through the sequencer; returns its index.
pub(crate) async fn append(app: &App, record: serde_json::Value) -> Result<u64, ApiError> {
    let payload = record.to_string().into_bytes();
    let event = PreparedEvent {
        range: 0..payload.len(),
        format: stele_store::log::FORMAT_STELE_RECORD,
        // Records re-normalize to no fields (format 3), so the index holds none either.
        fields: Normalized::default(),
    };
    let stream = stele_store::streams::RETENTION_STREAM.to_string();
    app.submit_patiently(stream, Bytes::from(payload), vec![event], Duration::from_secs(5))
        .await
        .map(|c| c.indexes[0])
        .map_err(submit_error)
}

/// `POST /v1/admin/holds`.
pub(crate) async fn place_hold(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    body: Body,
) -> Result<Response, ApiError> {
    let b: PlaceBody = body_json(&app, body).await?;
    if b.case.trim().is_empty() || b.reason.trim().is_empty() {
        return Err(error(StatusCode::BAD_REQUEST, "case and reason must not be empty"));
    }
    if let Some(s) = &b.stream {
        let bare = s.strip_suffix('*').unwrap_or(s);
        if !bare.is_empty() {
            stele_store::streams::check_stream_name(bare)
                .map_err(|e| error(StatusCode::BAD_REQUEST, format!("stream: {e}")))?;
        }
    }
    caller.require_pattern(Role::Admin, b.stream.as_deref().unwrap_or("*"))?;
    let record = HoldRecord {
        kind: "hold".into(),
        case: b.case.clone(),
        reason: b.reason,
        stream: b.stream,
        since_ns: time_ns("since", b.since)?,
        until_ns: time_ns("until", b.until)?,
        filters: HoldFilters { actor: b.actor, action: b.action, resource: b.resource, outcome: b.outcome },
        placed_ns: stele_store::log::now_ns(),
    };
    let _serial = HOLDS.lock().await;
    if active(&app).await?.contains_key(&b.case) {
        return Err(error(StatusCode::CONFLICT, format!("a hold for case {:?} is already active", b.case)));
    }
    let mut v = serde_json::to_value(&record).expect("a hold serializes");
    v["placed_by"] = caller.name.to_string().into();
    let index = append(&app, v.clone()).await?;
    Ok(json(StatusCode::CREATED, serde_json::json!({ "case": b.case, "index": index, "hold": v }).to_string()))
}

/// `POST /v1/admin/holds/{case}/release`. When hold releases need approval
/// (`crate::approvals`), this records the request and answers 202 instead.
pub(crate) async fn release_hold(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(case): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let b: ReleaseBody = body_json(&app, body).await?;
    if b.reason.trim().is_empty() {
        return Err(error(StatusCode::BAD_REQUEST, "reason must not be empty"));
    }
    let serial = HOLDS.lock().await;
    let holds = active(&app).await?;
    let Some((hold, hold_index)) = holds.get(&case) else {
        return Err(error(StatusCode::NOT_FOUND, format!("no active hold for case {case:?}")));
    };
    let scope = hold.stream.as_deref().unwrap_or("*");
    caller.require_pattern(Role::HoldRelease, scope)?;
    if app.approvals.required(Role::HoldRelease) {
        // An approval takes the approvals' lock before this one: never hold both
        // the other way round. The request names the hold record, so a hold
        // released or placed again meanwhile is caught when it is approved.
        drop(serial);
        let params = serde_json::json!({ "case": case, "reason": b.reason, "hold_index": hold_index });
        return crate::approvals::request(&app, &caller, Role::HoldRelease, scope, params).await;
    }
    append_release(&app, case, b.reason, &caller.name, None).await
}

/// Serializes placing and releasing holds (held across an approved release).
pub(crate) async fn serialize() -> tokio::sync::MutexGuard<'static, ()> {
    HOLDS.lock().await
}

/// Checks that the hold an approval request named (`params`: `case`, `reason`,
/// `hold_index`) is still the active hold of its case; returns the case and reason.
/// 409 when it was released or replaced since the request (call under [`serialize`]).
pub(crate) async fn check_approved_release(
    app: &App,
    params: &serde_json::Value,
) -> Result<(String, String), ApiError> {
    let case = params["case"].as_str().unwrap_or_default().to_string();
    let reason = params["reason"].as_str().unwrap_or_default().to_string();
    let holds = active(app).await?;
    match holds.get(&case) {
        Some((_, index)) if Some(*index) == params["hold_index"].as_u64() => Ok((case, reason)),
        _ => Err(error(
            StatusCode::CONFLICT,
            format!(
                "the hold of case {case:?} this request named is no longer active (released or placed again since); nothing was approved"
            ),
        )),
    }
}

/// Appends the `hold_release` record of `case` (released by `released_by`, approved
/// as `approval` says) and answers 200 `{"case","index"[,"approval"]}`.
pub(crate) async fn append_release(
    app: &App,
    case: String,
    reason: String,
    released_by: &str,
    approval: Option<(&str, serde_json::Value)>,
) -> Result<Response, ApiError> {
    let record = ReleaseRecord {
        kind: "hold_release".into(),
        case: case.clone(),
        reason,
        released_ns: stele_store::log::now_ns(),
    };
    let mut v = serde_json::to_value(&record).expect("a release serializes");
    v["released_by"] = released_by.into();
    if let Some((by, a)) = &approval {
        v["approved_by"] = (*by).into();
        v["approval"] = a["id"].clone();
    }
    let index = append(app, v).await?;
    let mut answer = serde_json::json!({ "case": case, "index": index });
    if let Some((_, a)) = approval {
        answer["approval"] = a;
    }
    Ok(json(StatusCode::OK, answer.to_string()))
}

/// `GET /v1/admin/holds`.
pub(crate) async fn list_holds(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    if !caller.has_role(Role::Admin) {
        return Err(caller.forbidden(Role::Admin, "*"));
    }
    let holds: Vec<serde_json::Value> = active(&app)
        .await?
        .into_values()
        .filter(|(h, _)| caller.allows_pattern(Role::Admin, h.stream.as_deref().unwrap_or("*")))
        .map(|(h, index)| {
            let mut v = serde_json::to_value(&h).expect("a hold serializes");
            v["record_index"] = index.into();
            v
        })
        .collect();
    Ok(json(StatusCode::OK, serde_json::json!({ "holds": holds }).to_string()))
}
