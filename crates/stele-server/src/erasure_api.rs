//! Erasure over the API: `POST /v1/admin/erasures` and `GET /v1/admin/erasures`
//! (docs/erasure.md).
//!
//! The sequencer thread owns the log's writer and the sealer's subject keys, so an
//! erasure runs there ([`on_sequencer`]), through the same functions `stele erase`
//! uses on a stopped server (`stele_erasure::target`, `stele_erasure::erase_target`):
//! the `erasure` record is appended durably before the key is destroyed, holds and
//! compliance retention defer it in the same way (an `erasure_request` record carried
//! out by a later retention pass), and the key destroyed is the one the sealer uses, so
//! the subject's next event is sealed under a new key. Ingestion waits for one small
//! commit and one key store rewrite.
//!
//! | Route | Role | Answer |
//! |---|---|---|
//! | `POST /v1/admin/erasures` | `erase` on `*` | Body `{"subject","reason"?}`. 200 `{"state":"erased","index"}`; 202 `{"state":"pending","index","blocked_by"}` when a hold or compliance retention defers it; 200 `{"state":"already_pending","index"}`; 404 when the subject has no key (nothing sealed, or already erased); 409 when the server seals nothing (no `[erasure]`); 202 `{"approval",..}` when erasures need approval ([`crate::approvals`]). |
//! | `GET /v1/admin/erasures` | `erase` | `{"erasures":[{..record,"state":"pending"\|"done","record_index"}]}`, as `stele erase --list`. |
//!
//! The role is checked on `*`: a subject's key seals their events in every stream a
//! rule names. The subject's name is never recorded: records and approval requests
//! name the key id and the subject's blind token under their own key.

use std::sync::Arc;

use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use stele_erasure::{Attribution, EraseOutcome, ErasureError, ErasureTarget};
use stele_index::Snapshot;
use stele_store::Log;
use tokio::sync::oneshot;

use crate::auth::{Caller, Role};
use crate::http::{ApiError, App, error, json, read_body};
use crate::sequencer::Msg;

/// The reason recorded when a request gives none (as `stele erase`).
pub(crate) const DEFAULT_REASON: &str = "data subject request (GDPR Art. 17)";
/// Longest subject name accepted (bytes): subject values are user names, ARNs, e-mail
/// addresses.
pub(crate) const MAX_SUBJECT: usize = 1024;
/// Longest reason (bytes): it is copied into records.
pub(crate) const MAX_REASON: usize = 4096;

/// What the sequencer is asked to do.
pub(crate) enum ErasureOp {
    /// Resolve a subject to their live key (records nothing).
    Target { subject: String },
    /// Erase a key under these retention policies.
    Erase { target: ErasureTarget, reason: String, by: Attribution, policies: Arc<[stele_retention::Policy]> },
}

/// What the sequencer answers.
pub(crate) enum ErasureReply {
    Target(ErasureTarget),
    Done(EraseOutcome),
}

/// Why an erasure operation failed.
pub(crate) enum ErasureFailure {
    /// The server seals nothing.
    NotConfigured,
    /// The subject has no live key.
    NoSuchSubject,
    /// The log does not take writes (503).
    Unavailable(String),
    /// Anything else (500).
    Failed(String),
}

pub(crate) type ErasureResult = Result<ErasureReply, ErasureFailure>;

/// Runs `op` on the sequencer thread.
pub(crate) fn on_sequencer(
    sealing: Option<&mut crate::sealing::Sealing>,
    log: &mut Log,
    snapshot: &Snapshot,
    op: ErasureOp,
) -> ErasureResult {
    let Some(sealing) = sealing else { return Err(ErasureFailure::NotConfigured) };
    let failed = |e: ErasureError| match e {
        ErasureError::NoSuchSubject => ErasureFailure::NoSuchSubject,
        other => ErasureFailure::Failed(other.to_string()),
    };
    match op {
        ErasureOp::Target { subject } => sealing.target(&subject).map(ErasureReply::Target).map_err(failed),
        ErasureOp::Erase { target, reason, by, policies } => {
            if let Some(p) = log.poisoned() {
                return Err(ErasureFailure::Unavailable(stele_store::StoreError::Poisoned(p.to_string()).to_string()));
            }
            let now = stele_store::log::now_ns();
            sealing.erase(log, snapshot, &policies, &target, &reason, &by, now).map(ErasureReply::Done).map_err(failed)
        }
    }
}

impl From<ErasureFailure> for ApiError {
    fn from(f: ErasureFailure) -> ApiError {
        match f {
            ErasureFailure::NotConfigured => error(
                StatusCode::CONFLICT,
                "this server seals no personal data (no [erasure] section), so there is no key to erase",
            ),
            ErasureFailure::NoSuchSubject => error(
                StatusCode::NOT_FOUND,
                "no key for this subject: none of their events were sealed, or their key was already erased",
            ),
            ErasureFailure::Unavailable(m) => error(StatusCode::SERVICE_UNAVAILABLE, m)
                .with_retry_after_secs(crate::sequencer::RECOVERY_RETRY.as_secs()),
            ErasureFailure::Failed(m) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("erasure: {m}")),
        }
    }
}

async fn ask(app: &App, op: ErasureOp) -> Result<ErasureReply, ApiError> {
    let (reply, answer) = oneshot::channel();
    if app.tx.send(Msg::Erasure { op, reply }).is_err() {
        return Err(error(StatusCode::SERVICE_UNAVAILABLE, "the sequencer has stopped"));
    }
    match answer.await {
        Ok(r) => r.map_err(ApiError::from),
        Err(_) => Err(error(StatusCode::SERVICE_UNAVAILABLE, "the sequencer has stopped")),
    }
}

/// The subject's live key, resolved on the sequencer.
pub(crate) async fn resolve(app: &App, subject: String) -> Result<ErasureTarget, ApiError> {
    match ask(app, ErasureOp::Target { subject }).await? {
        ErasureReply::Target(t) => Ok(t),
        ErasureReply::Done(_) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, "the sequencer answered out of turn")),
    }
}

/// Erases `target` (the key of one subject) and answers as `POST /v1/admin/erasures`
/// does; `approval` is added to the answer when the erasure was approved.
pub(crate) async fn perform(
    app: &App,
    target: ErasureTarget,
    reason: String,
    by: Attribution,
    approval: Option<serde_json::Value>,
) -> Result<Response, ApiError> {
    let op = ErasureOp::Erase { target, reason, by, policies: app.retention.get() };
    let outcome = match ask(app, op).await? {
        ErasureReply::Done(o) => o,
        ErasureReply::Target(_) => {
            return Err(error(StatusCode::INTERNAL_SERVER_ERROR, "the sequencer answered out of turn"));
        }
    };
    let (status, mut v) = match outcome {
        EraseOutcome::Erased { index } => (StatusCode::OK, serde_json::json!({ "state": "erased", "index": index })),
        EraseOutcome::Pending { index, blocked_by } => {
            (StatusCode::ACCEPTED, serde_json::json!({ "state": "pending", "index": index, "blocked_by": blocked_by }))
        }
        EraseOutcome::AlreadyPending { index } => {
            (StatusCode::OK, serde_json::json!({ "state": "already_pending", "index": index }))
        }
    };
    if let Some(a) = approval {
        v["approval"] = a;
    }
    Ok(json(status, v.to_string()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EraseBody {
    subject: String,
    reason: Option<String>,
}

/// `POST /v1/admin/erasures`.
pub(crate) async fn post_erasure(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    body: Body,
) -> Result<Response, ApiError> {
    caller.require_pattern(Role::Erase, "*")?;
    let bytes = read_body(body, crate::admin::MAX_BODY, app.limits.body_timeout).await?;
    let b: EraseBody =
        serde_json::from_slice(&bytes).map_err(|e| error(StatusCode::BAD_REQUEST, format!("request body: {e}")))?;
    let reason = b.reason.unwrap_or_else(|| DEFAULT_REASON.to_string());
    if b.subject.is_empty() || b.subject.len() > MAX_SUBJECT {
        return Err(error(StatusCode::BAD_REQUEST, format!("subject must hold 1 to {MAX_SUBJECT} bytes")));
    }
    if reason.trim().is_empty() || reason.len() > MAX_REASON {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!("reason must hold 1 to {MAX_REASON} bytes, not only spaces"),
        ));
    }
    let target = resolve(&app, b.subject).await?;
    if app.approvals.required(Role::Erase) {
        let params = serde_json::json!({
            "key_id": hex::encode(target.key_id),
            "subject_token": target.subject_token,
            "reason": reason,
        });
        return crate::approvals::request(&app, &caller, Role::Erase, "*", params).await;
    }
    let by = Attribution { requested_by: Some(caller.name.to_string()), approved_by: None };
    perform(&app, target, reason, by, None).await
}

/// `GET /v1/admin/erasures`.
pub(crate) async fn list_erasures(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    if !caller.has_role(Role::Erase) {
        return Err(caller.forbidden(Role::Erase, "*"));
    }
    let (snapshot, reader) = (app.shared.snapshot(), app.shared.reader.clone());
    let elog = tokio::task::spawn_blocking(move || stele_erasure::erasure_log(&snapshot, &reader))
        .await
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e))?
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, format!("reading the erasure records: {e}")))?;
    let mut out = Vec::new();
    for (state, map) in [("pending", &elog.pending), ("done", &elog.done)] {
        for (r, index) in map.values() {
            let mut v = serde_json::to_value(r).expect("an erasure record serializes");
            v["state"] = state.into();
            v["record_index"] = (*index).into();
            if let Some(o) = v.as_object_mut() {
                o.remove("subject_token");
            }
            out.push(v);
        }
    }
    Ok(json(StatusCode::OK, serde_json::json!({ "erasures": out }).to_string()))
}

/// Carries out an approved erasure from its approval request's `params`.
pub(crate) async fn perform_approved(
    app: &App,
    params: &serde_json::Value,
    by: Attribution,
    approval: serde_json::Value,
) -> Result<Response, ApiError> {
    let bad = || error(StatusCode::INTERNAL_SERVER_ERROR, "the approval request's parameters are not an erasure's");
    let mut key_id = [0u8; 16];
    hex::decode_to_slice(params["key_id"].as_str().ok_or_else(bad)?, &mut key_id).map_err(|_| bad())?;
    let subject_token = params["subject_token"].as_str().ok_or_else(bad)?.to_string();
    let reason = params["reason"].as_str().ok_or_else(bad)?.to_string();
    perform(app, ErasureTarget { key_id, subject_token }, reason, by, Some(approval)).await
}
