//! Approval by a second principal (separation of duties, docs/access.md "Approvals").
//!
//! When an action is listed in `[auth] require_approval` (`hold-release`, `erase`,
//! `governance-bypass`, `key-rotate`, `key-revoke`), the
//! request that asks for it performs nothing: it is answered 202
//! `{"approval":ID,"expires":RFC3339,"needs":"a second principal with role R on S"}`
//! and recorded in `_stele/approvals`. A different principal holding the same role on
//! the same scope approves it with `POST /v1/admin/approvals/{id}/approve`: the
//! `approval` record is appended, then the action is performed and recorded with both
//! principals (`released_by`/`requested_by` and `approved_by`).
//!
//! Records (JSON, format 3, stream [`APPROVALS_STREAM`]):
//!
//! ```json
//! {"type":"approval_request","id":"<32 hex>","action":"hold-release","scope":"k8s*",
//!  "requested_by":"alice","params":{"case":"C-1","reason":"closed"},
//!  "requested_ns":1717000000000000000,"expires_ns":1717086400000000000}
//! {"type":"approval","id":"<32 hex>","action":"hold-release","requested_by":"alice",
//!  "approved_by":"bob","approved_ns":1717000100000000000}
//! ```
//!
//! `params` holds what the action needs to be performed later, and nothing more: for
//! `hold-release` the case, the reason and the hold record's index; for `erase` the
//! subject's key id, their blind token and the reason (never the subject's name); for
//! `governance-bypass` the pattern, the shortened retention in seconds and the reason;
//! for `key-rotate` nothing (the new key is generated when approved); for `key-revoke`
//! the key, `as_of` and the reason. The
//! pending set is rebuilt from these records when the server starts, so a restart
//! keeps pending requests and their expiry.
//!
//! | Route | Who | Answer |
//! |---|---|---|
//! | `POST /v1/admin/approvals/{id}/approve` | a principal other than the requester, with the request's role on its scope | the action's own answer plus `"approval":{"id","requested_by","approved_by","index"}`; 403 for the requester (`{"error","principal","requested_by"}`) or a principal without the role; 404 unknown id; 409 already approved; 410 expired |
//! | `GET /v1/admin/approvals` | `admin` or a role whose actions can need approval | `{"approvals":[{..request,"expires"}]}`: pending requests whose role the caller holds on their scope, or that the caller made |
//!
//! A crash between the `approval` record and the action's record leaves the request
//! approved and the action not performed: it is asked for (and approved) again.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use stele_formats::Normalized;

use crate::auth::{AuthConfig, Caller, Role};
use crate::http::{ApiError, App, error, error_with, json, submit_error};
use crate::sequencer::PreparedEvent;

/// The stream of approval records.
pub const APPROVALS_STREAM: &str = "_stele/approvals";
/// Default `approval_expiry`: a working day and night for the second principal to
/// answer; after it the request must be made again.
pub const DEFAULT_APPROVAL_EXPIRY: Duration = Duration::from_secs(24 * 3600);
/// Longest `approval_expiry` accepted (30 days): an approval long forgotten should not
/// be able to release a hold.
pub const MAX_APPROVAL_EXPIRY: Duration = Duration::from_secs(30 * 24 * 3600);
/// Most requests pending at once (429 past it): each is held in memory and listed.
pub const MAX_PENDING: usize = 1000;
/// The roles whose actions can require approval.
pub const APPROVABLE: [Role; 5] =
    [Role::HoldRelease, Role::Erase, Role::GovernanceBypass, Role::KeyRotate, Role::KeyRevoke];

/// A record of [`APPROVALS_STREAM`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ApprovalRecord {
    /// An action was asked for and waits for a second principal.
    ApprovalRequest {
        /// 32 lowercase hex digits (128 random bits).
        id: String,
        /// The role that allows the action (`hold-release`, `erase`).
        action: Role,
        /// The stream pattern the role is needed on.
        scope: String,
        /// The principal that asked.
        requested_by: String,
        /// What the action needs to be performed (see the module documentation).
        params: serde_json::Value,
        /// When it was asked for, ns since the epoch.
        requested_ns: u64,
        /// When it expires, ns since the epoch.
        expires_ns: u64,
    },
    /// A second principal approved the request `id`; the action follows.
    Approval {
        /// The request's id.
        id: String,
        /// The request's action.
        action: Role,
        /// The principal that asked.
        requested_by: String,
        /// The principal that approved.
        approved_by: String,
        /// When, ns since the epoch.
        approved_ns: u64,
    },
}

impl ApprovalRecord {
    /// The JSON payload.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an approval record serializes")
    }

    /// Parses a payload of [`APPROVALS_STREAM`]; `None` for anything else.
    pub fn parse(payload: &[u8]) -> Option<ApprovalRecord> {
        serde_json::from_slice(payload).ok()
    }
}

/// One request as the server holds it.
#[derive(Clone, Debug)]
struct Pending {
    action: Role,
    scope: String,
    requested_by: String,
    params: serde_json::Value,
    requested_ns: u64,
    expires_ns: u64,
    /// The approver once approved.
    approved_by: Option<String>,
    /// The request record's index in the log.
    index: u64,
}

impl Pending {
    fn open(&self, now_ns: u64) -> bool {
        self.approved_by.is_none() && now_ns < self.expires_ns
    }

    /// The request as listed; an erasure's blind token is left out, as `stele erase
    /// --list` leaves it out.
    fn json(&self, id: &str) -> serde_json::Value {
        let mut params = self.params.clone();
        if let Some(o) = params.as_object_mut() {
            o.remove("subject_token");
        }
        serde_json::json!({
            "id": id,
            "action": self.action.name(),
            "scope": self.scope,
            "requested_by": self.requested_by,
            "params": params,
            "requested": rfc3339(self.requested_ns),
            "expires": rfc3339(self.expires_ns),
            "record_index": self.index,
        })
    }
}

/// The server's approval settings and the requests it knows.
pub(crate) struct Approvals {
    required: Vec<Role>,
    expiry: Duration,
    /// Every request recorded, by id. Held across an approval so that an id is
    /// approved once.
    state: tokio::sync::Mutex<BTreeMap<String, Pending>>,
}

impl Approvals {
    pub(crate) fn new(config: &AuthConfig) -> Approvals {
        Approvals {
            required: config.require_approval.clone(),
            expiry: config.approval_expiry,
            state: tokio::sync::Mutex::default(),
        }
    }

    /// Whether the action `role` allows needs a second principal.
    pub(crate) fn required(&self, role: Role) -> bool {
        self.required.contains(&role)
    }
}

/// Checks `require_approval` and `approval_expiry`.
pub(crate) fn check_config(a: &AuthConfig) -> Result<(), String> {
    for r in &a.require_approval {
        if !APPROVABLE.contains(r) {
            return Err(format!(
                "require_approval: {r:?} cannot require approval; the actions that can are hold-release, erase, \
                 governance-bypass, key-rotate and key-revoke",
                r = r.name()
            ));
        }
    }
    if a.approval_expiry < Duration::from_secs(1) || a.approval_expiry > MAX_APPROVAL_EXPIRY {
        return Err(format!("approval_expiry must be between 1 s and {} days", MAX_APPROVAL_EXPIRY.as_secs() / 86_400));
    }
    Ok(())
}

fn rfc3339(ns: u64) -> String {
    jiff::Timestamp::from_nanosecond(i128::from(ns)).map(|t| t.to_string()).unwrap_or_default()
}

async fn append(app: &App, record: &ApprovalRecord) -> Result<u64, ApiError> {
    let payload = record.encode();
    let event = PreparedEvent {
        range: 0..payload.len(),
        format: stele_store::log::FORMAT_STELE_RECORD,
        // Records re-normalize to no fields (format 3), so the index holds none either.
        fields: Normalized::default(),
    };
    app.submit_patiently(APPROVALS_STREAM.to_string(), Bytes::from(payload), vec![event], Duration::from_secs(5))
        .await
        .map(|c| c.indexes[0])
        .map_err(submit_error)
}

/// Records a request for `role`'s action on `scope` by `caller`, with what performing
/// it needs (`params`), and answers 202.
pub(crate) async fn request(
    app: &App,
    caller: &Caller,
    role: Role,
    scope: &str,
    params: serde_json::Value,
) -> Result<Response, ApiError> {
    let mut state = app.approvals.state.lock().await;
    let now = stele_store::log::now_ns();
    let open = state.values().filter(|p| p.open(now)).count();
    if open >= MAX_PENDING {
        return Err(error(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "{open} requests already wait for approval (the limit is {MAX_PENDING}); approve or let them expire"
            ),
        ));
    }
    let mut raw = [0u8; 16];
    getrandom::fill(&mut raw).map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, format!("no randomness: {e}")))?;
    let id = hex::encode(raw);
    let expires_ns = now.saturating_add(u64::try_from(app.approvals.expiry.as_nanos()).unwrap_or(u64::MAX));
    let record = ApprovalRecord::ApprovalRequest {
        id: id.clone(),
        action: role,
        scope: scope.to_string(),
        requested_by: caller.name.to_string(),
        params: params.clone(),
        requested_ns: now,
        expires_ns,
    };
    let index = append(app, &record).await?;
    let needs = format!("a second principal with role {role} on {scope:?}, other than {:?}", &*caller.name);
    state.insert(
        id.clone(),
        Pending {
            action: role,
            scope: scope.to_string(),
            requested_by: caller.name.to_string(),
            params,
            requested_ns: now,
            expires_ns,
            approved_by: None,
            index,
        },
    );
    let body = serde_json::json!({
        "approval": id,
        "expires": rfc3339(expires_ns),
        "needs": needs,
        "action": role.name(),
        "record_index": index,
    });
    Ok(json(StatusCode::ACCEPTED, body.to_string()))
}

/// `POST /v1/admin/approvals/{id}/approve`.
pub(crate) async fn approve(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let mut state = app.approvals.state.lock().await;
    let Some(p) = state.get(&id).cloned() else {
        return Err(error(StatusCode::NOT_FOUND, format!("no approval request has id {id:?}")));
    };
    if let Some(by) = &p.approved_by {
        return Err(error(StatusCode::CONFLICT, format!("approval request {id} was already approved by {by:?}")));
    }
    let now = stele_store::log::now_ns();
    if now >= p.expires_ns {
        return Err(error(
            StatusCode::GONE,
            format!("approval request {id} expired at {}; ask for the action again", rfc3339(p.expires_ns)),
        ));
    }
    caller.require_pattern(p.action, &p.scope)?;
    if *caller.name == *p.requested_by {
        return Err(error_with(
            StatusCode::FORBIDDEN,
            format!(
                "principal {:?} asked for this {} and cannot approve it too: a different principal with role {} on {:?} must approve it",
                &*caller.name, p.action, p.action, p.scope
            ),
            serde_json::json!({ "principal": &*caller.name, "requested_by": p.requested_by }),
        ));
    }
    let record = ApprovalRecord::Approval {
        id: id.clone(),
        action: p.action,
        requested_by: p.requested_by.clone(),
        approved_by: caller.name.to_string(),
        approved_ns: now,
    };
    let approval = |index: u64| {
        serde_json::json!({
            "id": id,
            "requested_by": p.requested_by,
            "approved_by": &*caller.name,
            "index": index,
        })
    };
    match p.action {
        Role::HoldRelease => {
            let _serial = crate::admin::serialize().await;
            // Refused before anything is recorded when the hold was released or
            // replaced meanwhile: the request then stays as it was.
            let (case, reason) = crate::admin::check_approved_release(&app, &p.params).await?;
            let index = append(&app, &record).await?;
            if let Some(entry) = state.get_mut(&id) {
                entry.approved_by = Some(caller.name.to_string());
            }
            crate::admin::append_release(&app, case, reason, &p.requested_by, Some((&caller.name, approval(index))))
                .await
        }
        Role::Erase => {
            let index = append(&app, &record).await?;
            if let Some(entry) = state.get_mut(&id) {
                entry.approved_by = Some(caller.name.to_string());
            }
            let by = stele_erasure::Attribution {
                requested_by: Some(p.requested_by.clone()),
                approved_by: Some(caller.name.to_string()),
            };
            crate::erasure_api::perform_approved(&app, &p.params, by, approval(index)).await
        }
        Role::GovernanceBypass => {
            let _serial = crate::admin::serialize().await;
            // Checked again before anything is recorded: the policy may have changed.
            let (policy, reason) = crate::retention_api::from_params(&p.params)?;
            let shortening = crate::retention_api::check(&app, policy).await?;
            let index = append(&app, &record).await?;
            if let Some(entry) = state.get_mut(&id) {
                entry.approved_by = Some(caller.name.to_string());
            }
            let approval = Some((&*caller.name, approval(index)));
            crate::retention_api::perform(&app, shortening, &reason, &p.requested_by, approval).await
        }
        Role::KeyRotate | Role::KeyRevoke => {
            let revocation = match p.action {
                Role::KeyRevoke => Some(crate::key_api::Revocation::from_params(&p.params)?),
                _ => None,
            };
            crate::key_api::check_signer(&app).await?;
            let index = append(&app, &record).await?;
            if let Some(entry) = state.get_mut(&id) {
                entry.approved_by = Some(caller.name.to_string());
            }
            let approval = Some((&*caller.name, approval(index)));
            match revocation {
                Some(r) => crate::key_api::revoke(&app, r, &p.requested_by, approval).await,
                None => crate::key_api::rotate(&app, &p.requested_by, approval).await,
            }
        }
        other => Err(error(StatusCode::INTERNAL_SERVER_ERROR, format!("{other} actions are not approved here"))),
    }
}

/// `GET /v1/admin/approvals`.
pub(crate) async fn list(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    if !std::iter::once(Role::Admin).chain(APPROVABLE).any(|r| caller.has_role(r)) {
        return Err(caller.forbidden(Role::Admin, "*"));
    }
    let state = app.approvals.state.lock().await;
    let now = stele_store::log::now_ns();
    let out: Vec<serde_json::Value> = state
        .iter()
        .filter(|(_, p)| p.open(now))
        .filter(|(_, p)| *p.requested_by == *caller.name || caller.allows_pattern(p.action, &p.scope))
        .map(|(id, p)| p.json(id))
        .collect();
    Ok(json(StatusCode::OK, serde_json::json!({ "approvals": out }).to_string()))
}

/// Every approval record of the log, in log order with its index, found through the
/// query index `snapshot` and re-read from the log.
///
/// # Errors
/// Index or log read errors, as text.
pub fn recorded(
    snapshot: &stele_index::Snapshot,
    reader: &stele_store::LogReader,
) -> Result<Vec<(u64, ApprovalRecord)>, String> {
    let indexes = snapshot.stream_indexes(APPROVALS_STREAM, 0).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for i in indexes {
        match reader.entry(i) {
            Ok(e) if e.stream == APPROVALS_STREAM => out.extend(ApprovalRecord::parse(&e.payload).map(|r| (i, r))),
            Ok(_) | Err(stele_store::StoreError::Deleted { .. }) => {}
            Err(e) => return Err(format!("reading entry {i}: {e}")),
        }
    }
    Ok(out)
}

/// Rebuilds the requests from the log's records (at start).
pub(crate) async fn load(app: &App) -> Result<(), String> {
    let (snapshot, reader) = (app.shared.snapshot(), app.shared.reader.clone());
    let records =
        tokio::task::spawn_blocking(move || recorded(&snapshot, &reader)).await.map_err(|e| e.to_string())??;
    let mut state = app.approvals.state.lock().await;
    for (index, r) in records {
        match r {
            ApprovalRecord::ApprovalRequest { id, action, scope, requested_by, params, requested_ns, expires_ns } => {
                state.entry(id).or_insert(Pending {
                    action,
                    scope,
                    requested_by,
                    params,
                    requested_ns,
                    expires_ns,
                    approved_by: None,
                    index,
                });
            }
            ApprovalRecord::Approval { id, approved_by, .. } => {
                if let Some(p) = state.get_mut(&id) {
                    p.approved_by = Some(approved_by);
                }
            }
        }
    }
    let now = stele_store::log::now_ns();
    let open = state.values().filter(|p| p.open(now)).count();
    if open > 0 {
        tracing::info!(pending = open, "requests waiting for approval");
    }
    Ok(())
}
