//! # stele-monitor
//!
//! A C2SP tlog-tiles monitor that trusts nothing but the log's verifier key.
//!
//! Each [`check_once`]:
//! 1. fetches `checkpoint`, verifies its signed note with the key (the origin must be
//!    the key's name) and parses it;
//!    With a [`WitnessQuorum`] ([`check_once_with_witnesses`]) it must also carry
//!    valid cosignatures from at least `required` of the given witnesses;
//! 2. loads the last trusted checkpoint from the [`State`] file (first run: trust on
//!    first use);
//! 3. detects a **rollback** (smaller tree) or a **fork** (same size, other root) and
//!    keeps both signed notes as evidence; for a larger tree it recomputes the new
//!    root from the hash tiles, builds an RFC 9162 consistency proof from the same
//!    tiles and verifies it against the old root (**consistency**);
//! 4. optionally checks every entry of the entry bundles covering the new range
//!    against the level-0 tile hashes;
//! 5. stores the new checkpoint as trusted, crash-safely.
//!
//! Only tiles that changed since the old size are downloaded, plus the full tiles
//! needed to authenticate them; nothing is cached between runs (full tiles could be).
//! Logs are read through a [`TileSource`]: `https://` (rustls), `http://`, `file://`
//! or a directory.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod keys;
pub mod source;
pub mod state;
pub mod tiles;
pub mod timestamps;

use std::fmt;
use std::path::PathBuf;

use stele_tlog::Hash;
use stele_tlog::checkpoint::{Checkpoint, CheckpointError};
use stele_tlog::cosignature::{AnyCosignatureVerifier, VerifyCosignature, verify_quorum};
use stele_tlog::hash::leaf_hash;
use stele_tlog::merkle::{consistency_proof, verify_consistency};
use stele_tlog::note::{Note, NoteVerifier};
use stele_tlog::tile::{TILE_HEIGHT, TILE_WIDTH};

pub use source::{DirSource, HttpSource, SourceError, TileSource, open_source, open_source_with_ca};
pub use state::State;
pub use tiles::{TileTree, parse_entry_bundle};

/// What a check found wrong, or why it could not run.
///
/// [`MonitorError::is_detection`] tells evidence against the log (exit 1) from
/// availability, usage and local errors (exit 2).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MonitorError {
    /// A key statement, or the served checkpoint's signing key, breaks the key chain
    /// that starts at the trusted key (forged announcement, unannounced or revoked key).
    #[error("key chain at {location}: {source}")]
    KeyChain {
        /// Where the statement or checkpoint came from.
        location: String,
        /// What is wrong.
        source: stele_tlog::keychain::KeyChainError,
    },
    /// The served checkpoint is malformed, not signed by the key, or for another origin.
    #[error("checkpoint at {location} does not verify: {source}")]
    BadCheckpoint {
        /// Where it came from.
        location: String,
        /// Why it was refused.
        source: CheckpointError,
    },
    /// The checkpoint lacks valid cosignatures from enough of the trusted witnesses.
    #[error(
        "NOT WITNESSED: checkpoint at {location} carries valid cosignatures from {found} of the given witnesses, {required} required"
    )]
    NotEnoughCosignatures {
        /// Where it came from.
        location: String,
        /// Distinct given witnesses whose cosignature verified.
        found: usize,
        /// Cosignatures required.
        required: usize,
    },
    /// The log shrank.
    #[error("ROLLBACK: log at {location} serves tree size {served}, below the trusted size {trusted}; evidence in {}", evidence.display())]
    Rollback {
        /// Where the checkpoint came from.
        location: String,
        /// Size of the trusted checkpoint.
        trusted: u64,
        /// Size of the served checkpoint.
        served: u64,
        /// Folder holding both signed checkpoints.
        evidence: PathBuf,
    },
    /// Two signed checkpoints of the same size with different roots.
    #[error("FORK: log at {location} signed two different roots for tree size {size} (trusted {trusted_root}, served {served_root}); evidence in {}", evidence.display())]
    Fork {
        /// Where the checkpoint came from.
        location: String,
        /// The common tree size.
        size: u64,
        /// Root of the trusted checkpoint.
        trusted_root: Hash,
        /// Root of the served checkpoint.
        served_root: Hash,
        /// Folder holding both signed checkpoints.
        evidence: PathBuf,
    },
    /// The new tree, as published in tiles, does not extend the trusted one.
    #[error("INCONSISTENT: tree size {served} at {location} does not extend the trusted tree size {trusted}: {reason}; evidence in {}", evidence.display())]
    Inconsistent {
        /// Where the checkpoint came from.
        location: String,
        /// Trusted size.
        trusted: u64,
        /// Served size.
        served: u64,
        /// What failed.
        reason: String,
        /// Folder holding both signed checkpoints.
        evidence: PathBuf,
    },
    /// The tiles do not hash to the signed root, or a full tile to its parent node.
    #[error("TILE MISMATCH: {location}: {reason}")]
    TileMismatch {
        /// The tile (or checkpoint) concerned.
        location: String,
        /// What did not match.
        reason: String,
    },
    /// A tile has the wrong length.
    #[error("malformed tile {location}: {reason}")]
    MalformedTile {
        /// The tile.
        location: String,
        /// How it is malformed.
        reason: String,
    },
    /// An entry does not hash to its level-0 tile hash.
    #[error("ENTRY MISMATCH: entry {index} in {location} does not hash to its leaf hash in {tile}")]
    EntryMismatch {
        /// Leaf index of the entry.
        index: u64,
        /// The entry bundle.
        location: String,
        /// The level-0 tile.
        tile: String,
    },
    /// An entry bundle cannot be split into the expected number of entries.
    #[error("malformed entry bundle {location}: {reason}")]
    MalformedBundle {
        /// The bundle.
        location: String,
        /// How it is malformed.
        reason: String,
    },
    /// A file the log must serve is missing (HTTP 404).
    #[error("{what} is missing")]
    Missing {
        /// The file.
        what: String,
    },
    /// Reading from the log failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The state file does not hold a checkpoint signed by this key.
    #[error("state file {} does not hold a checkpoint of this log: {source}", path.display())]
    BadState {
        /// The state file.
        path: PathBuf,
        /// Why it was refused.
        source: CheckpointError,
    },
    /// A local file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An RFC 3161 token the log serves does not verify (see [`timestamps`]).
    #[error("BAD TIMESTAMP: {location}: token for checkpoint {tree_size} from {tsa:?}: {reason}")]
    BadTimestamp {
        /// Where the tokens were read.
        location: String,
        /// Tree size of the checkpoint stamped.
        tree_size: u64,
        /// The TSA's URL as the log names it (empty when the document is at fault).
        tsa: String,
        /// The check that failed.
        reason: String,
    },
    /// A bug: a read outside the tree. Never expected.
    #[error("internal error: {0}")]
    Internal(String),
}

impl MonitorError {
    /// Whether this is evidence against the log (bad signature, tiles or entries that
    /// do not hash, rollback, fork, inconsistency) rather than an availability, usage
    /// or local error.
    pub fn is_detection(&self) -> bool {
        matches!(
            self,
            MonitorError::BadCheckpoint { .. }
                | MonitorError::KeyChain { .. }
                | MonitorError::NotEnoughCosignatures { .. }
                | MonitorError::Rollback { .. }
                | MonitorError::Fork { .. }
                | MonitorError::Inconsistent { .. }
                | MonitorError::TileMismatch { .. }
                | MonitorError::MalformedTile { .. }
                | MonitorError::EntryMismatch { .. }
                | MonitorError::MalformedBundle { .. }
                | MonitorError::BadTimestamp { .. }
        )
    }
}

/// What a successful check found.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// First run: the checkpoint was trusted on first use (after checking that its
    /// tiles hash to its root).
    FirstUse {
        /// The checkpoint now trusted.
        checkpoint: Checkpoint,
        /// Tiles downloaded.
        tiles_fetched: usize,
        /// Entries checked against their leaf hashes.
        entries_checked: u64,
    },
    /// Same size and root as the trusted checkpoint.
    Unchanged {
        /// The trusted checkpoint.
        checkpoint: Checkpoint,
    },
    /// The log grew and the new tree extends the trusted one.
    Grew {
        /// Previously trusted size.
        old_size: u64,
        /// The checkpoint now trusted.
        checkpoint: Checkpoint,
        /// Tiles downloaded.
        tiles_fetched: usize,
        /// Entries checked against their leaf hashes.
        entries_checked: u64,
    },
}

impl Outcome {
    /// The checkpoint trusted after this check.
    pub fn checkpoint(&self) -> &Checkpoint {
        match self {
            Outcome::FirstUse { checkpoint, .. }
            | Outcome::Unchanged { checkpoint }
            | Outcome::Grew { checkpoint, .. } => checkpoint,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let entries = |n: u64| if n > 0 { format!(", {n} entries checked") } else { String::new() };
        match self {
            Outcome::FirstUse { checkpoint: c, tiles_fetched, entries_checked } => write!(
                f,
                "{}: trusting size {} root {} on first use ({tiles_fetched} tiles hash to the root{})",
                c.origin,
                c.tree_size,
                c.root_hash,
                entries(*entries_checked)
            ),
            Outcome::Unchanged { checkpoint: c } => {
                write!(f, "{}: unchanged at size {} root {}", c.origin, c.tree_size, c.root_hash)
            }
            Outcome::Grew { old_size, checkpoint: c, tiles_fetched, entries_checked } => write!(
                f,
                "{}: grew {old_size} -> {} root {}, consistent ({tiles_fetched} tiles{})",
                c.origin,
                c.tree_size,
                c.root_hash,
                entries(*entries_checked)
            ),
        }
    }
}

/// Options of a check.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Also fetch the entry bundles of the new range and check each entry's leaf hash
    /// against the level-0 tiles.
    pub entries: bool,
}

/// k-of-n witnessing: a checkpoint is accepted only with valid `cosignature/v1`
/// cosignatures from at least `required` distinct `witnesses`. The default (no
/// witnesses, 0 required) accepts every checkpoint the log signed.
#[derive(Clone, Debug, Default)]
pub struct WitnessQuorum {
    /// The trusted witnesses' verifier keys (Ed25519 `cosignature/v1` or ML-DSA-44).
    pub witnesses: Vec<AnyCosignatureVerifier>,
    /// Distinct witnesses that must have cosigned.
    pub required: usize,
}

impl WitnessQuorum {
    /// Number of distinct `witnesses` with a valid cosignature on `note`. Signature
    /// lines by other keys are ignored; a cosignature that does not verify does not
    /// count (nor does it count against the others).
    pub fn count(&self, note: &Note) -> usize {
        // Distinct witnesses by name: one witness with an Ed25519 and an ML-DSA key
        // counts once.
        let mut valid: Vec<&str> = Vec::new();
        for w in &self.witnesses {
            if !valid.contains(&w.cosigner_name()) && verify_quorum(note, std::slice::from_ref(w), 1).is_ok() {
                valid.push(w.cosigner_name());
            }
        }
        valid.len()
    }

    /// Checks the signed note `note` (bytes as served): `Ok(found)` when at least
    /// `required` witnesses cosigned it, else [`MonitorError::NotEnoughCosignatures`]
    /// naming `location`.
    pub fn check(&self, note: &[u8], location: &str) -> Result<usize, MonitorError> {
        if self.required == 0 {
            return Ok(0);
        }
        let found = match Note::parse(note) {
            Ok(n) => self.count(&n),
            Err(_) => 0,
        };
        if found < self.required {
            return Err(MonitorError::NotEnoughCosignatures {
                location: location.to_string(),
                found,
                required: self.required,
            });
        }
        Ok(found)
    }
}

fn short(h: &Hash) -> String {
    h.to_hex()[..16].to_string()
}

/// One monitoring round: fetch, verify and compare the log's checkpoint with the
/// trusted one in `state`, check the tiles (and with [`Options::entries`] the entries)
/// and, if all is well, trust the new checkpoint.
pub fn check_once(
    source: &dyn TileSource,
    verifier: &NoteVerifier,
    state: &State,
    options: &Options,
) -> Result<Outcome, MonitorError> {
    check_once_with_witnesses(source, verifier, &WitnessQuorum::default(), state, options)
}

/// [`check_once`], and the served checkpoint must also satisfy `quorum` (checked
/// before anything else is compared or trusted).
pub fn check_once_with_witnesses(
    source: &dyn TileSource,
    verifier: &NoteVerifier,
    quorum: &WitnessQuorum,
    state: &State,
    options: &Options,
) -> Result<Outcome, MonitorError> {
    let location = source.describe("checkpoint");
    let note = source.get("checkpoint")?.ok_or_else(|| MonitorError::Missing { what: location.clone() })?;
    // The served checkpoint may be signed by a later key, announced through statements
    // that start at `verifier` (docs/keys.md).
    let chain = keys::load_chain(source, verifier)?;
    let served = chain
        .open_checkpoint(&note)
        .map_err(|e| match e {
            stele_tlog::keychain::KeyChainError::Checkpoint(source) => {
                MonitorError::BadCheckpoint { location: location.clone(), source }
            }
            source => MonitorError::KeyChain { location: location.clone(), source },
        })?
        .checkpoint;
    quorum.check(&note, &location)?;
    let trusted = state.load_with_chain(&chain)?;
    let (old_size, old_root) = match &trusted {
        Some(t) => (t.checkpoint.checkpoint.tree_size, t.checkpoint.checkpoint.root_hash),
        None => (0, Hash::EMPTY_ROOT),
    };
    if let Some(t) = &trusted {
        if served.tree_size < old_size {
            let evidence = state.save_evidence(
                &format!("rollback-{old_size}-to-{}-{}", served.tree_size, short(&served.root_hash)),
                &t.note,
                &note,
            )?;
            return Err(MonitorError::Rollback { location, trusted: old_size, served: served.tree_size, evidence });
        }
        if served.tree_size == old_size {
            if served.root_hash == old_root {
                return Ok(Outcome::Unchanged { checkpoint: served });
            }
            let evidence = state.save_evidence(
                &format!("fork-{old_size}-{}-{}", short(&old_root), short(&served.root_hash)),
                &t.note,
                &note,
            )?;
            return Err(MonitorError::Fork {
                location,
                size: old_size,
                trusted_root: old_root,
                served_root: served.root_hash,
                evidence,
            });
        }
    }

    let tree = TileTree::new(source, served.tree_size);
    let root = tree.root()?;
    if root != served.root_hash {
        return Err(MonitorError::TileMismatch {
            location: tree.describe("tile/"),
            reason: format!(
                "tiles of tree size {} hash to {root}, but the checkpoint signs {}",
                served.tree_size, served.root_hash
            ),
        });
    }
    if let Some(t) = &trusted
        && old_size > 0
    {
        let proof = consistency_proof(&tree, old_size, served.tree_size).map_err(|e| match e {
            stele_tlog::merkle::ProofError::Read(e) => e,
            other => MonitorError::Internal(other.to_string()),
        })?;
        if let Err(e) = verify_consistency(old_size, served.tree_size, &old_root, &served.root_hash, &proof) {
            let evidence = state.save_evidence(
                &format!("inconsistent-{old_size}-to-{}-{}", served.tree_size, short(&served.root_hash)),
                &t.note,
                &note,
            )?;
            return Err(MonitorError::Inconsistent {
                location,
                trusted: old_size,
                served: served.tree_size,
                reason: format!("the consistency proof built from its tiles fails ({e})"),
                evidence,
            });
        }
    }
    let entries_checked = if options.entries { check_entries(&tree, old_size)? } else { 0 };
    state.store(&note)?;
    let tiles_fetched = tree.tiles_fetched();
    Ok(match trusted {
        None => Outcome::FirstUse { checkpoint: served, tiles_fetched, entries_checked },
        Some(_) => Outcome::Grew { old_size, checkpoint: served, tiles_fetched, entries_checked },
    })
}

/// Checks every entry of the entry bundles covering leaves `[from, tree size)` against
/// the (authenticated) level-0 tiles; returns how many entries were checked. The root
/// must already have been checked against the signed one.
pub fn check_entries(tree: &TileTree<'_>, from: u64) -> Result<u64, MonitorError> {
    let size = tree.size();
    if from >= size {
        return Ok(0);
    }
    let mut checked = 0u64;
    for index in (from >> TILE_HEIGHT)..=((size - 1) >> TILE_HEIGHT) {
        let (id, hashes) = tree.tile(0, index)?;
        let (location, bytes, from_full) = tree.bundle(&id)?;
        let mut entries = parse_entry_bundle(&bytes).ok_or_else(|| MonitorError::MalformedBundle {
            location: location.clone(),
            reason: "an entry's length runs past the end".into(),
        })?;
        if from_full && entries.len() > id.width as usize {
            entries.truncate(id.width as usize);
        }
        if entries.len() != id.width as usize {
            return Err(MonitorError::MalformedBundle {
                location,
                reason: format!("{} entries, expected {}", entries.len(), id.width),
            });
        }
        for (i, (entry, want)) in entries.iter().zip(hashes.iter()).enumerate() {
            if leaf_hash(entry) != *want {
                return Err(MonitorError::EntryMismatch {
                    index: index * TILE_WIDTH + i as u64,
                    location,
                    tile: tree.describe(&id.hash_path()),
                });
            }
            checked += 1;
        }
    }
    Ok(checked)
}
