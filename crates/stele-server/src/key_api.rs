//! Key rotation and revocation while the server runs: `POST /v1/admin/keys/rotate` and
//! `POST /v1/admin/keys/revoke` (docs/keys.md).
//!
//! The sequencer thread owns the log's writer, so both run there, through the functions
//! `stele key rotate|revoke` use on a stopped server (`stele_store::keys::rotate_log`,
//! `stele_store::keys::revoke_log`): the same statements in `_stele/keys`, the same
//! lines in `keys/statements`, the same checkpoints (a rotation's signed by the old and
//! the new key). After a rotation the server signs every checkpoint with the new key,
//! whose private key is in `keys/signing.key` (mode 0600) where the next start finds
//! it; `keys/verifier.vkey` names it. Ingestion waits for one small commit and one or
//! two checkpoints.
//!
//! Who asked (and who approved) is recorded after the statement, in the same stream:
//! `{"type":"key-operation","operation":"rotate"|"revoke","statement_index":N,
//! "requested_by":P[,"approved_by":Q,"approval":ID]}` (the statement itself is a signed
//! note of fixed form, docs/keys.md).
//!
//! | Route | Role | Answer |
//! |---|---|---|
//! | `POST /v1/admin/keys/rotate` | `key-rotate` on `*` | Body `{}` or empty. 200 `{"old_key","new_key","index","from_tree_size","checkpoint":{"tree_size","note"},"record_index"}`; 409 when the configured `signer` holds the key (an out-of-process signer signs only checkpoints, and a `file:` key elsewhere would be loaded again at the next start: rotate offline with `stele key rotate --old-key`) or an earlier rotation did not finish; 202 `{"approval",..}` when rotation needs approval. |
//! | `POST /v1/admin/keys/revoke` | `key-revoke` on `*` | Body `{"key":VKEY,"as_of":TREE_SIZE,"reason"}`. 200 `{"key","as_of","index","record_index"}`; 400 for a malformed key or an `as_of` beyond the log; 409 when the key is not an earlier key of the chain (the current key cannot be revoked: rotate first) or the configured `signer` holds the key; 202 `{"approval",..}` when revocation needs approval. |
//!
//! Witnesses and monitors configured with the old key accept the transition checkpoint
//! (it carries the old key's signature) and refuse later ones until they are given the
//! new key or follow `GET /key-statements` from the first key.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use stele_formats::Normalized;
use stele_store::keys::{KEYS_STREAM, Rotated};
use stele_store::{Log, StoreError};
use stele_tlog::note::NoteVerifier;
use tokio::sync::oneshot;

use crate::auth::{Caller, Role};
use crate::http::{ApiError, App, error, json, read_body, submit_error};
use crate::sequencer::{Msg, PreparedEvent};

/// Longest reason (bytes): it is copied into the signed statement, one note line.
const MAX_REASON: usize = 1024;

/// What the sequencer is asked to do.
pub(crate) enum KeyOp {
    /// Whether the log's key can be rotated or used for statements here.
    Check,
    /// Rotate to a fresh key.
    Rotate { dir: PathBuf },
    /// Revoke an earlier key.
    Revoke { dir: PathBuf, key: Box<NoteVerifier>, as_of: u64, reason: String },
}

/// What the sequencer answers.
pub(crate) enum KeyReply {
    Checked,
    Rotated(Box<Rotated>),
    Revoked(u64),
}

pub(crate) type KeyResult = Result<KeyReply, ApiError>;

const EXTERNAL: &str = "the log's key is not the data directory's key file: the configured `signer` holds it (an \
                        out-of-process signer, which signs only checkpoints, or a key file elsewhere, which the next \
                        start would load again); stop the server (and the signer) and run `stele key rotate \
                        --old-key` or `stele key revoke --current-key` (docs/keys.md)";

fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::Key(m) => error(StatusCode::CONFLICT, m),
        StoreError::Signer(e) => error(StatusCode::CONFLICT, format!("the log's signer refused the statement: {e}")),
        e @ (StoreError::Poisoned(_) | StoreError::NoSpace { .. }) => {
            error(StatusCode::SERVICE_UNAVAILABLE, e).with_retry_after_secs(crate::sequencer::RECOVERY_RETRY.as_secs())
        }
        other => error(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
    }
}

/// Runs `op` on the sequencer thread, which owns `log`.
pub(crate) fn on_sequencer(log: &mut Log, op: KeyOp) -> KeyResult {
    if !log.signs_with_key_file() {
        return Err(error(StatusCode::CONFLICT, EXTERNAL));
    }
    if let Some(p) = log.poisoned() {
        return Err(store_error(StoreError::Poisoned(p.to_string())));
    }
    match op {
        KeyOp::Check => Ok(KeyReply::Checked),
        KeyOp::Rotate { dir } => {
            let r = stele_store::keys::rotate_log(log, &dir, None).map_err(store_error)?;
            tracing::warn!(
                index = r.index,
                old = %r.old_key.to_vkey(),
                new = %r.new_key.to_vkey(),
                "rotated the log's key; checkpoints are signed with the new key from tree size {}",
                r.index + 1
            );
            Ok(KeyReply::Rotated(Box::new(r)))
        }
        KeyOp::Revoke { dir, key, as_of, reason } => {
            let index = stele_store::keys::revoke_log(log, &dir, &key, as_of, &reason).map_err(store_error)?;
            tracing::warn!(index, key = %key.to_vkey(), as_of, "revoked a key of the log");
            Ok(KeyReply::Revoked(index))
        }
    }
}

async fn ask(app: &App, op: KeyOp) -> KeyResult {
    let (reply, answer) = oneshot::channel();
    if app.tx.send(Msg::Keys { op, reply }).is_err() {
        return Err(error(StatusCode::SERVICE_UNAVAILABLE, "the sequencer has stopped"));
    }
    answer.await.unwrap_or_else(|_| Err(error(StatusCode::SERVICE_UNAVAILABLE, "the sequencer has stopped")))
}

/// 409 when this server cannot sign key statements (an out-of-process signer).
pub(crate) async fn check_signer(app: &App) -> Result<(), ApiError> {
    ask(app, KeyOp::Check).await.map(|_| ())
}

/// Appends the `key-operation` record naming who asked and who approved.
async fn attribute(
    app: &App,
    operation: &str,
    statement_index: u64,
    requested_by: &str,
    approval: Option<&(&str, serde_json::Value)>,
) -> Result<u64, ApiError> {
    let mut v = serde_json::json!({
        "type": "key-operation",
        "operation": operation,
        "statement_index": statement_index,
        "requested_by": requested_by,
    });
    if let Some((by, a)) = approval {
        v["approved_by"] = (*by).into();
        v["approval"] = a["id"].clone();
    }
    let payload = v.to_string().into_bytes();
    let event = PreparedEvent {
        range: 0..payload.len(),
        format: stele_store::log::FORMAT_STELE_RECORD,
        // Records re-normalize to no fields (format 3), so the index holds none either.
        fields: Normalized::default(),
    };
    app.submit_patiently(KEYS_STREAM.to_string(), Bytes::from(payload), vec![event], Duration::from_secs(5))
        .await
        .map(|c| c.indexes[0])
        .map_err(submit_error)
}

/// Rotates the key (asked for by `requested_by`, approved as `approval` says) and
/// answers as `POST /v1/admin/keys/rotate` does.
pub(crate) async fn rotate(
    app: &App,
    requested_by: &str,
    approval: Option<(&str, serde_json::Value)>,
) -> Result<Response, ApiError> {
    let r = match ask(app, KeyOp::Rotate { dir: app.data_dir.clone() }).await? {
        KeyReply::Rotated(r) => r,
        _ => return Err(error(StatusCode::INTERNAL_SERVER_ERROR, "the sequencer answered out of turn")),
    };
    let record_index = attribute(app, "rotate", r.index, requested_by, approval.as_ref()).await?;
    let mut v = serde_json::json!({
        "old_key": r.old_key.to_vkey(),
        "new_key": r.new_key.to_vkey(),
        "index": r.index,
        "from_tree_size": r.index + 1,
        "checkpoint": { "tree_size": r.checkpoint.tree_size, "note": r.checkpoint.note },
        "record_index": record_index,
    });
    if let Some((_, a)) = approval {
        v["approval"] = a;
    }
    Ok(json(StatusCode::OK, v.to_string()))
}

/// A revocation as asked for.
pub(crate) struct Revocation {
    key: NoteVerifier,
    as_of: u64,
    reason: String,
}

impl Revocation {
    /// What an approval request records.
    fn params(&self) -> serde_json::Value {
        serde_json::json!({ "key": self.key.to_vkey(), "as_of": self.as_of, "reason": self.reason })
    }

    /// The revocation an approval request's `params` name.
    pub(crate) fn from_params(params: &serde_json::Value) -> Result<Revocation, ApiError> {
        let bad =
            || error(StatusCode::INTERNAL_SERVER_ERROR, "the approval request's parameters are not a revocation's");
        Ok(Revocation {
            key: NoteVerifier::parse(params["key"].as_str().ok_or_else(bad)?).map_err(|_| bad())?,
            as_of: params["as_of"].as_u64().ok_or_else(bad)?,
            reason: params["reason"].as_str().ok_or_else(bad)?.to_string(),
        })
    }
}

/// Revokes (asked for by `requested_by`, approved as `approval` says) and answers as
/// `POST /v1/admin/keys/revoke` does.
pub(crate) async fn revoke(
    app: &App,
    r: Revocation,
    requested_by: &str,
    approval: Option<(&str, serde_json::Value)>,
) -> Result<Response, ApiError> {
    let (key, as_of) = (r.key.to_vkey(), r.as_of);
    let op = KeyOp::Revoke { dir: app.data_dir.clone(), key: Box::new(r.key), as_of: r.as_of, reason: r.reason };
    let index = match ask(app, op).await? {
        KeyReply::Revoked(i) => i,
        _ => return Err(error(StatusCode::INTERNAL_SERVER_ERROR, "the sequencer answered out of turn")),
    };
    let record_index = attribute(app, "revoke", index, requested_by, approval.as_ref()).await?;
    let mut v = serde_json::json!({ "key": key, "as_of": as_of, "index": index, "record_index": record_index });
    if let Some((_, a)) = approval {
        v["approval"] = a;
    }
    Ok(json(StatusCode::OK, v.to_string()))
}

/// `POST /v1/admin/keys/rotate`.
pub(crate) async fn post_rotate(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    body: Body,
) -> Result<Response, ApiError> {
    caller.require_pattern(Role::KeyRotate, "*")?;
    let bytes = read_body(body, crate::admin::MAX_BODY, app.limits.body_timeout).await?;
    if !bytes.iter().all(u8::is_ascii_whitespace) {
        let v: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| error(StatusCode::BAD_REQUEST, format!("request body: {e}")))?;
        if v.as_object().is_none_or(|o| !o.is_empty()) {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "request body: a rotation takes no parameters (send {} or nothing); the new key is generated here",
            ));
        }
    }
    check_signer(&app).await?;
    if app.approvals.required(Role::KeyRotate) {
        return crate::approvals::request(&app, &caller, Role::KeyRotate, "*", serde_json::json!({})).await;
    }
    rotate(&app, &caller.name, None).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeBody {
    key: String,
    as_of: u64,
    reason: String,
}

/// `POST /v1/admin/keys/revoke`.
pub(crate) async fn post_revoke(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    body: Body,
) -> Result<Response, ApiError> {
    caller.require_pattern(Role::KeyRevoke, "*")?;
    let bytes = read_body(body, crate::admin::MAX_BODY, app.limits.body_timeout).await?;
    let b: RevokeBody =
        serde_json::from_slice(&bytes).map_err(|e| error(StatusCode::BAD_REQUEST, format!("request body: {e}")))?;
    let key = NoteVerifier::parse(b.key.trim())
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("key: not a verifier key: {e}")))?;
    // The statement is one note line: no line breaks (as `stele key revoke --reason`).
    if b.reason.trim().is_empty() || b.reason.len() > MAX_REASON || b.reason.contains(['\n', '\r']) {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!("reason must be one line of 1 to {MAX_REASON} bytes, not only spaces"),
        ));
    }
    let size = app.shared.reader.tree_size();
    if b.as_of > size {
        return Err(error(StatusCode::BAD_REQUEST, format!("as_of {} is beyond the log's {size} entries", b.as_of)));
    }
    check_signer(&app).await?;
    let r = Revocation { key, as_of: b.as_of, reason: b.reason };
    if app.approvals.required(Role::KeyRevoke) {
        return crate::approvals::request(&app, &caller, Role::KeyRevoke, "*", r.params()).await;
    }
    revoke(&app, r, &caller.name, None).await
}
