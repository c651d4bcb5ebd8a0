//! Getting the log's checkpoints cosigned by C2SP tlog-witnesses.
//!
//! [`Witnesses::cosign`] submits a signed checkpoint to every configured witness
//! (`POST <url>/add-checkpoint`, plain HTTP/1.1 over a std `TcpStream`, see
//! [`stele_witness::client`]) with the consistency proof from the size that witness
//! last cosigned, computed from the log's stored tiles. A `409 Conflict` tells the
//! witness's real size; the request is retried once from it. Only cosignature lines
//! that verify against the configured witness key are kept; they are appended to the
//! log's note. [`spawn`] runs this on a blocking task for every new checkpoint, so a
//! slow or absent witness never delays ingestion or checkpoint signing.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use stele_store::LogReader;
use stele_tlog::checkpoint::Checkpoint;
use stele_tlog::cosignature::{AnyCosignatureVerifier, VerifyCosignature};
use stele_tlog::note::Note;
use stele_witness::AddCheckpointRequest;
use stele_witness::client::{AddResponse, ClientError, add_checkpoint};

/// Default time bound on connecting to a witness and on each read and write.
pub const DEFAULT_WITNESS_TIMEOUT: Duration = Duration::from_secs(5);

/// One witness the log submits its checkpoints to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WitnessConfig {
    /// The witness's cosigner verifier key (`<name>+<id>+<base64(0x04 or 0x06 ‖ key)>`).
    pub vkey: String,
    /// Its submission prefix, `http://host:port[/prefix]` (plain HTTP only).
    pub url: String,
}

/// Why a witness did not cosign.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WitnessClientError {
    /// A configured witness key is invalid.
    #[error("witness key {vkey:?}: {reason}")]
    BadKey {
        /// The key as configured.
        vkey: String,
        /// Why it was refused.
        reason: String,
    },
    /// The note to cosign is not a checkpoint.
    #[error("not a checkpoint note: {0}")]
    BadNote(String),
    /// Talking to the witness failed.
    #[error("witness {0}: {1}")]
    Client(String, ClientError),
    /// The witness refused the checkpoint.
    #[error("witness {name} answered {status}: {body}")]
    Refused {
        /// Witness name.
        name: String,
        /// HTTP status.
        status: u16,
        /// Response body.
        body: String,
    },
    /// The witness has cosigned a larger tree than this checkpoint (a rollback, or
    /// another log with the same origin).
    #[error("witness {name} is at size {witness_size}, beyond this checkpoint's {size}")]
    WitnessAhead {
        /// Witness name.
        name: String,
        /// Size the witness reports.
        witness_size: u64,
        /// Size of the checkpoint submitted.
        size: u64,
    },
    /// The consistency proof could not be read from the log.
    #[error("consistency proof: {0}")]
    Proof(String),
    /// The witness answered 200 without a valid cosignature by its key.
    #[error("witness {0} returned no valid cosignature")]
    NoValidCosignature(String),
}

/// A checkpoint note with the cosignatures collected for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CosignedCheckpoint {
    /// Tree size of the checkpoint.
    pub tree_size: u64,
    /// The log's signed note followed by the witnesses' cosignature lines.
    pub note: String,
    /// How many witnesses cosigned.
    pub cosigners: usize,
}

/// The witnesses of one log and the size each last cosigned.
#[derive(Debug)]
pub struct Witnesses {
    endpoints: Vec<(AnyCosignatureVerifier, String)>,
    /// Last size each witness is known to have cosigned (0: unknown, learned by 409).
    sizes: Vec<u64>,
    timeout: Duration,
}

impl Witnesses {
    /// Parses the witness keys. `timeout` bounds each network step.
    pub fn new(configs: &[WitnessConfig], timeout: Duration) -> Result<Witnesses, WitnessClientError> {
        let mut endpoints = Vec::with_capacity(configs.len());
        for c in configs {
            let v = AnyCosignatureVerifier::parse(&c.vkey)
                .map_err(|e| WitnessClientError::BadKey { vkey: c.vkey.clone(), reason: e.to_string() })?;
            if !c.url.starts_with("http://") {
                return Err(WitnessClientError::BadKey {
                    vkey: c.vkey.clone(),
                    reason: format!("URL {:?} is not plain http://", c.url),
                });
            }
            endpoints.push((v, c.url.clone()));
        }
        let sizes = vec![0; endpoints.len()];
        Ok(Witnesses { endpoints, sizes, timeout })
    }

    /// Number of witnesses.
    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    /// Whether no witness is configured.
    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// Submits the signed checkpoint `note` to every witness and returns it with the
    /// valid cosignature lines appended, plus one error per witness that did not cosign.
    pub fn cosign(
        &mut self,
        reader: &LogReader,
        note: &str,
    ) -> Result<(CosignedCheckpoint, Vec<WitnessClientError>), WitnessClientError> {
        let parsed = Note::parse(note.as_bytes()).map_err(|e| WitnessClientError::BadNote(e.to_string()))?;
        let cp = Checkpoint::parse_body(&parsed.text).map_err(|e| WitnessClientError::BadNote(e.to_string()))?;
        let mut out = note.to_string();
        let mut errors = Vec::new();
        let mut cosigners = 0;
        for i in 0..self.endpoints.len() {
            match self.submit_one(i, reader, note, &parsed.text, cp.tree_size) {
                Ok(lines) => {
                    out.push_str(&lines);
                    cosigners += 1;
                }
                Err(e) => errors.push(e),
            }
        }
        Ok((CosignedCheckpoint { tree_size: cp.tree_size, note: out, cosigners }, errors))
    }

    fn submit_one(
        &mut self,
        i: usize,
        reader: &LogReader,
        note: &str,
        body: &str,
        size: u64,
    ) -> Result<String, WitnessClientError> {
        let (verifier, url) = &self.endpoints[i];
        let name = verifier.cosigner_name().to_string();
        let mut old = self.sizes[i];
        for _ in 0..2 {
            if old > size {
                return Err(WitnessClientError::WitnessAhead { name, witness_size: old, size });
            }
            let proof = if old == 0 || old == size {
                Vec::new()
            } else {
                reader.consistency_proof(old, size).map_err(|e| WitnessClientError::Proof(e.to_string()))?
            };
            let req = AddCheckpointRequest { old_size: old, proof, checkpoint: note.as_bytes().to_vec() };
            match add_checkpoint(url, &req, self.timeout).map_err(|e| WitnessClientError::Client(name.clone(), e))? {
                AddResponse::Cosigned(lines) => {
                    let mut kept = String::new();
                    for line in lines.lines() {
                        let one = format!("{body}\n{line}\n");
                        if Note::parse(one.as_bytes()).is_ok_and(|n| verifier.verify_cosigned_note(&n).is_ok()) {
                            kept.push_str(line);
                            kept.push('\n');
                        }
                    }
                    if kept.is_empty() {
                        return Err(WitnessClientError::NoValidCosignature(name));
                    }
                    self.sizes[i] = size;
                    return Ok(kept);
                }
                AddResponse::Conflict(n) => {
                    self.sizes[i] = n;
                    old = n;
                }
                AddResponse::Refused(status, body) => {
                    return Err(WitnessClientError::Refused { name, status, body });
                }
            }
        }
        Err(WitnessClientError::Refused { name, status: 409, body: "size conflict persisted".into() })
    }
}

/// For every checkpoint size published on `checkpoints`, submits the log's newest
/// checkpoint to the witnesses on a blocking task and, once at least `required`
/// witnesses cosigned it, stores the cosigned note in `out`. Ends when the sender is
/// dropped. Must be called within a Tokio runtime.
pub fn spawn(
    mut witnesses: Witnesses,
    required: usize,
    reader: LogReader,
    mut checkpoints: tokio::sync::watch::Receiver<u64>,
    out: Arc<RwLock<Option<CosignedCheckpoint>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let Some(cp) = reader.newest_checkpoint() else {
                if checkpoints.changed().await.is_err() {
                    return;
                }
                continue;
            };
            let r = reader.clone();
            let joined = tokio::task::spawn_blocking(move || {
                let result = witnesses.cosign(&r, &cp.note);
                (witnesses, result)
            })
            .await;
            let Ok((back, result)) = joined else { return };
            witnesses = back;
            match result {
                Ok((cosigned, errors)) => {
                    for e in &errors {
                        tracing::warn!("witness: {e}");
                    }
                    if cosigned.cosigners >= required {
                        *out.write().unwrap_or_else(|p| p.into_inner()) = Some(cosigned);
                    } else {
                        tracing::warn!(
                            tree_size = cosigned.tree_size,
                            "only {} of the {required} required witnesses cosigned",
                            cosigned.cosigners
                        );
                    }
                }
                Err(e) => tracing::error!("witness: {e}"),
            }
            if checkpoints.changed().await.is_err() {
                return;
            }
        }
    })
}

/// The cosigned note stored in `slot` if it is for `tree_size`.
pub(crate) fn cosigned_note(slot: &RwLock<Option<CosignedCheckpoint>>, tree_size: u64) -> Option<String> {
    let guard = slot.read().unwrap_or_else(|p| p.into_inner());
    guard.as_ref().filter(|c| c.tree_size == tree_size).map(|c| c.note.clone())
}
