//! # stele-witness
//!
//! A [C2SP tlog-witness](https://c2sp.org/tlog-witness): it knows a set of logs by
//! their verifier keys and cosigns (C2SP tlog-cosignature, Ed25519 `cosignature/v1`)
//! a checkpoint of one of them — and, if configured with [`Witness::with_ml_dsa`],
//! also with an ML-DSA-44 `subtree/v1` key (type 0x06) — only if the log's signature verifies and the
//! checkpoint is consistent with the last one it cosigned for that origin.
//!
//! - [`Witness::add_checkpoint`] is the protocol logic, HTTP-free: parse the request
//!   body, check, persist, cosign.
//! - [`router`] / [`serve`] expose it as `POST /add-checkpoint` with the status codes
//!   of the spec (200, 400, 403, 404, 409 with `text/x.tlog.size`, 422).
//! - [`load_or_create_key`] / [`load_or_create_ml_dsa_key`] keep the witness keys in
//!   0600 files.
//!
//! State is one file per log in the state directory, named by the hex SHA-256 of the
//! origin, holding the latest cosigned checkpoint note (the log's note plus this
//! witness's cosignature). It is replaced crash-safely (temporary file, fsync,
//! rename, fsync of the directory) before a cosignature is returned, and checks and
//! updates are serialized so that two concurrent requests can never roll it back.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use sha2::{Digest as _, Sha256};
use stele_tlog::Hash;
use stele_tlog::checkpoint::Checkpoint;
use stele_tlog::cosignature::{CosignatureError, Cosigner, MlDsaCosigner};
use stele_tlog::merkle::verify_consistency;
use stele_tlog::note::{Note, NoteVerifier};

/// Most consistency proof lines accepted (the spec lets clients send at most 63).
pub const MAX_PROOF_LINES: usize = 63;
/// Largest request body accepted, in bytes.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Content type of a 409 response body (the witness's current size).
pub const TLOG_SIZE_CONTENT_TYPE: &str = "text/x.tlog.size";

/// Why an add-checkpoint request was refused; each maps to one HTTP status.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AddError {
    /// The request is malformed (400).
    #[error("bad request: {0}")]
    Malformed(&'static str),
    /// The checkpoint's origin is not a log this witness knows (404).
    #[error("unknown log origin {0:?}")]
    UnknownLog(String),
    /// No signature by a trusted key of the log verifies (403).
    #[error("checkpoint signature does not verify: {0}")]
    BadSignature(String),
    /// The old size is not the size of the latest cosigned checkpoint, or the same
    /// size with a different root (409). Carries the witness's current size.
    #[error("conflict: witness is at size {0}")]
    Conflict(u64),
    /// The consistency proof does not verify (422).
    #[error("consistency proof does not verify: {0}")]
    BadProof(String),
    /// The state could not be read or written, or the key could not sign (500).
    #[error("witness state: {0}")]
    Internal(String),
}

impl AddError {
    /// The HTTP status code of this error, per C2SP tlog-witness.
    pub fn status(&self) -> u16 {
        match self {
            AddError::Malformed(_) => 400,
            AddError::UnknownLog(_) => 404,
            AddError::BadSignature(_) => 403,
            AddError::Conflict(_) => 409,
            AddError::BadProof(_) => 422,
            AddError::Internal(_) => 500,
        }
    }
}

/// Errors of setting a witness up (key file, state directory, log keys).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WitnessError {
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The key file or a log key is invalid; the string says how.
    #[error("{0}")]
    Config(String),
    /// A cosigner key is invalid.
    #[error(transparent)]
    Key(#[from] CosignatureError),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> WitnessError + '_ {
    move |source| WitnessError::Io { path: path.to_path_buf(), source }
}

/// A parsed add-checkpoint request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddCheckpointRequest {
    /// The `old` size: the client's belief of the witness's latest cosigned size.
    pub old_size: u64,
    /// Consistency proof from `old_size` to the checkpoint's size.
    pub proof: Vec<Hash>,
    /// The signed checkpoint note.
    pub checkpoint: Vec<u8>,
}

impl AddCheckpointRequest {
    /// Parses `old <size>\n`, zero or more base64 hash lines, an empty line, then the
    /// signed checkpoint.
    pub fn parse(body: &[u8]) -> Result<AddCheckpointRequest, AddError> {
        if body.len() > MAX_REQUEST_BYTES {
            return Err(AddError::Malformed("request too large"));
        }
        let s = std::str::from_utf8(body).map_err(|_| AddError::Malformed("body is not UTF-8"))?;
        let split = s.find("\n\n").ok_or(AddError::Malformed("no empty line before the checkpoint"))?;
        let (head, checkpoint) = (&s[..split], &s[split + 2..]);
        let mut lines = head.split('\n');
        let old = lines.next().and_then(|l| l.strip_prefix("old ")).ok_or(AddError::Malformed("missing old line"))?;
        if old.is_empty() || !old.bytes().all(|b| b.is_ascii_digit()) || (old.len() > 1 && old.starts_with('0')) {
            return Err(AddError::Malformed("old size is not a canonical decimal"));
        }
        let old_size = old.parse().map_err(|_| AddError::Malformed("old size does not fit in 64 bits"))?;
        let mut proof = Vec::new();
        for l in lines {
            if proof.len() == MAX_PROOF_LINES {
                return Err(AddError::Malformed("more than 63 proof lines"));
            }
            proof.push(Hash::from_base64(l).ok_or(AddError::Malformed("proof line is not base64 of 32 bytes"))?);
        }
        Ok(AddCheckpointRequest { old_size, proof, checkpoint: checkpoint.as_bytes().to_vec() })
    }

    /// Encodes the request body (the inverse of [`AddCheckpointRequest::parse`]).
    pub fn to_body(&self) -> Vec<u8> {
        let mut out = format!("old {}\n", self.old_size).into_bytes();
        for h in &self.proof {
            out.extend_from_slice(h.to_base64().as_bytes());
            out.push(b'\n');
        }
        out.push(b'\n');
        out.extend_from_slice(&self.checkpoint);
        out
    }
}

/// The latest checkpoint this witness cosigned for one log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WitnessedCheckpoint {
    /// The checkpoint body.
    pub checkpoint: Checkpoint,
    /// The stored note: the log's signed note plus this witness's cosignature line.
    pub note: String,
}

/// A witness: its cosigning key, the logs it knows and its state directory.
#[derive(Debug)]
pub struct Witness {
    cosigner: Cosigner,
    ml_dsa: Option<MlDsaCosigner>,
    logs: HashMap<String, Vec<NoteVerifier>>,
    state_dir: PathBuf,
    // Serializes check-then-persist (the rollback race in the spec) and caches state.
    state: Mutex<HashMap<String, WitnessedCheckpoint>>,
    clock: fn() -> u64,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// File name of a log's state: hex SHA-256 of its origin.
pub fn state_file_name(origin: &str) -> String {
    hex::encode(Sha256::digest(origin.as_bytes()))
}

impl Witness {
    /// Opens a witness over `state_dir` (created if missing) for the logs whose note
    /// verifier keys are `logs`; a log's origin is its key name. Several keys may
    /// share an origin (key rotation). Stored state of known logs is loaded now.
    pub fn open(cosigner: Cosigner, logs: Vec<NoteVerifier>, state_dir: &Path) -> Result<Witness, WitnessError> {
        std::fs::create_dir_all(state_dir).map_err(io_err(state_dir))?;
        let mut by_origin: HashMap<String, Vec<NoteVerifier>> = HashMap::new();
        for v in logs {
            by_origin.entry(v.name().to_string()).or_default().push(v);
        }
        let mut state = HashMap::new();
        for origin in by_origin.keys() {
            let path = state_dir.join(state_file_name(origin));
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(WitnessError::Io { path, source: e }),
            };
            let bad = |why: &str| WitnessError::Config(format!("{}: corrupt witness state: {why}", path.display()));
            let note = Note::parse(&bytes).map_err(|e| bad(&e.to_string()))?;
            let checkpoint = Checkpoint::parse_body(&note.text).map_err(|e| bad(&e.to_string()))?;
            if &checkpoint.origin != origin {
                return Err(bad("origin does not match file name"));
            }
            cosigner.verifier().verify_note(&note).map_err(|e| bad(&e.to_string()))?;
            let note = String::from_utf8(bytes).map_err(|_| bad("not UTF-8"))?;
            state.insert(origin.clone(), WitnessedCheckpoint { checkpoint, note });
        }
        Ok(Witness {
            cosigner,
            ml_dsa: None,
            logs: by_origin,
            state_dir: state_dir.to_path_buf(),
            state: Mutex::new(state),
            clock: unix_now,
        })
    }

    /// Replaces the clock (POSIX seconds) used for cosignature timestamps (tests).
    pub fn with_clock(mut self, clock: fn() -> u64) -> Witness {
        self.clock = clock;
        self
    }

    /// Also cosigns with the ML-DSA-44 key `key` (C2SP tlog-cosignature type 0x06):
    /// every cosignature response then carries the Ed25519 line followed by the
    /// ML-DSA-44 line. The key should have the same name as the Ed25519 one.
    pub fn with_ml_dsa(mut self, key: MlDsaCosigner) -> Witness {
        self.ml_dsa = Some(key);
        self
    }

    /// The witness's cosigner key.
    pub fn cosigner(&self) -> &Cosigner {
        &self.cosigner
    }

    /// The witness's ML-DSA-44 cosigner key, if it has one.
    pub fn ml_dsa_cosigner(&self) -> Option<&MlDsaCosigner> {
        self.ml_dsa.as_ref()
    }

    /// The latest cosigned checkpoint for `origin`, if any.
    pub fn latest(&self, origin: &str) -> Option<WitnessedCheckpoint> {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).get(origin).cloned()
    }

    /// Handles an add-checkpoint request body; returns the cosignature line(s).
    pub fn add_checkpoint(&self, body: &[u8]) -> Result<String, AddError> {
        let req = AddCheckpointRequest::parse(body)?;
        let note = Note::parse(&req.checkpoint).map_err(|_| AddError::Malformed("checkpoint is not a signed note"))?;
        let cp = Checkpoint::parse_body(&note.text).map_err(|_| AddError::Malformed("malformed checkpoint body"))?;
        let verifiers = self.logs.get(&cp.origin).ok_or_else(|| AddError::UnknownLog(cp.origin.clone()))?;
        note.verify(verifiers).map_err(|e| AddError::BadSignature(e.to_string()))?;
        if req.old_size > cp.tree_size {
            return Err(AddError::Malformed("old size is larger than the checkpoint size"));
        }
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let current = state.get(&cp.origin);
        let current_size = current.map_or(0, |c| c.checkpoint.tree_size);
        if req.old_size != current_size {
            return Err(AddError::Conflict(current_size));
        }
        match current {
            None => {
                if !req.proof.is_empty() {
                    return Err(AddError::BadProof("the proof from size 0 must be empty".into()));
                }
                if cp.tree_size == 0 && cp.root_hash != stele_tlog::hash::sha256(b"") {
                    return Err(AddError::BadProof("an empty tree must have the empty root".into()));
                }
            }
            Some(c) if c.checkpoint.tree_size == cp.tree_size => {
                if c.checkpoint.root_hash != cp.root_hash {
                    return Err(AddError::Conflict(current_size));
                }
                if !req.proof.is_empty() {
                    return Err(AddError::BadProof("the proof between equal sizes must be empty".into()));
                }
            }
            Some(c) => {
                verify_consistency(
                    c.checkpoint.tree_size,
                    cp.tree_size,
                    &c.checkpoint.root_hash,
                    &cp.root_hash,
                    &req.proof,
                )
                .map_err(|e| AddError::BadProof(e.to_string()))?;
            }
        }
        let now = (self.clock)();
        let mut line = self.cosigner.cosign(&note.text, now).map_err(|e| AddError::Internal(e.to_string()))?;
        if let Some(k) = &self.ml_dsa {
            line.push_str(&k.cosign(&note.text, now).map_err(|e| AddError::Internal(e.to_string()))?);
        }
        // Stored: the checkpoint text, the log's verified signatures and our cosignature.
        let mut stored = note.text.clone();
        stored.push('\n');
        let b64 = base64::engine::general_purpose::STANDARD;
        for s in &note.signatures {
            if verifiers.iter().any(|v| v.name() == s.name && v.key_id() == s.key_id) {
                let mut raw = s.key_id.to_vec();
                raw.extend_from_slice(&s.signature);
                stored.push_str(&format!("\u{2014} {} {}\n", s.name, b64.encode(raw)));
            }
        }
        stored.push_str(&line);
        let path = self.state_dir.join(state_file_name(&cp.origin));
        write_atomic(&path, stored.as_bytes()).map_err(|e| AddError::Internal(e.to_string()))?;
        state.insert(cp.origin.clone(), WitnessedCheckpoint { checkpoint: cp, note: stored });
        Ok(line)
    }
}

/// Replaces `path` crash-safely: write a temporary file beside it, fsync, rename over
/// `path`, fsync the directory.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), WitnessError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
    f.write_all(bytes).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io_err(path))?;
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))?;
    Ok(())
}

/// Loads the witness key from `path`, or, if it does not exist and `name` is given,
/// creates a new random key named `name` there (mode 0600, written crash-safely).
/// An existing key whose name differs from `name` is an error.
pub fn load_or_create_key(path: &Path, name: Option<&str>) -> Result<Cosigner, WitnessError> {
    load_or_create(
        path,
        name,
        Cosigner::parse,
        Cosigner::from_seed,
        |c| c.name().to_string(),
        |c| c.to_private_key_string(),
    )
}

/// Like [`load_or_create_key`] for the witness's ML-DSA-44 key (`PRIVATE+KEY+<name>+
/// <id>+base64(0x06 ‖ 32-byte seed)`), kept in its own 0600 file.
pub fn load_or_create_ml_dsa_key(path: &Path, name: Option<&str>) -> Result<MlDsaCosigner, WitnessError> {
    load_or_create(
        path,
        name,
        MlDsaCosigner::parse,
        MlDsaCosigner::from_seed,
        |c| c.name().to_string(),
        |c| c.to_private_key_string(),
    )
}

fn load_or_create<K>(
    path: &Path,
    name: Option<&str>,
    parse: fn(&str) -> Result<K, CosignatureError>,
    from_seed: fn(&str, &[u8; 32]) -> Result<K, CosignatureError>,
    key_name: fn(&K) -> String,
    private: fn(&K) -> String,
) -> Result<K, WitnessError> {
    match std::fs::read_to_string(path) {
        Ok(s) => {
            check_private_mode(path)?;
            let c = parse(&s)?;
            if let Some(n) = name
                && n != key_name(&c)
            {
                return Err(WitnessError::Config(format!(
                    "{}: key is named {:?}, not {n:?}",
                    path.display(),
                    key_name(&c)
                )));
            }
            Ok(c)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let name = name.ok_or_else(|| {
                WitnessError::Config(format!("{} does not exist; give --name to create it", path.display()))
            })?;
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed).map_err(|e| WitnessError::Config(format!("no randomness: {e}")))?;
            let c = from_seed(name, &seed)?;
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt as _;
                opts.mode(0o600);
            }
            let mut f = opts.open(path).map_err(io_err(path))?;
            f.write_all(format!("{}\n", private(&c)).as_bytes()).map_err(io_err(path))?;
            f.sync_all().map_err(io_err(path))?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))?;
            }
            Ok(c)
        }
        Err(e) => Err(WitnessError::Io { path: path.to_path_buf(), source: e }),
    }
}

fn check_private_mode(path: &Path) -> Result<(), WitnessError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(path).map_err(io_err(path))?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(WitnessError::Config(format!(
                "{}: key file is readable by others (mode {:o}); chmod 600 it",
                path.display(),
                mode & 0o777
            )));
        }
    }
    let _ = path;
    Ok(())
}

/// The HTTP routes: `POST /add-checkpoint`.
pub fn router(witness: Arc<Witness>) -> axum::Router {
    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::{StatusCode, header};
    use axum::response::{IntoResponse, Response};

    async fn add(State(w): State<Arc<Witness>>, body: Bytes) -> Response {
        // The state update does file I/O and fsync: keep it off the async workers.
        let result = tokio::task::spawn_blocking(move || w.add_checkpoint(&body)).await;
        let result = result.unwrap_or_else(|e| Err(AddError::Internal(e.to_string())));
        match result {
            Ok(lines) => (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], lines).into_response(),
            Err(AddError::Conflict(size)) => {
                (StatusCode::CONFLICT, [(header::CONTENT_TYPE, TLOG_SIZE_CONTENT_TYPE)], format!("{size}\n"))
                    .into_response()
            }
            Err(e) => {
                let code = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                (code, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{e}\n")).into_response()
            }
        }
    }

    axum::Router::new()
        .route("/add-checkpoint", axum::routing::post(add))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_REQUEST_BYTES))
        .with_state(witness)
}

/// Serves [`router`] on `listener` until the future `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    witness: Arc<Witness>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(witness)).with_graceful_shutdown(shutdown).await
}

pub mod client;
