//! The monitor's memory: the last trusted checkpoint (a signed note kept byte for
//! byte), written crash-safely, and the evidence folder.

use std::fs::{self, File};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use stele_tlog::checkpoint::VerifiedCheckpoint;
use stele_tlog::note::NoteVerifier;

use crate::MonitorError;

/// Where the monitor keeps what it trusts and what it found.
#[derive(Clone, Debug)]
pub struct State {
    /// The file holding the last trusted signed checkpoint.
    pub file: PathBuf,
    /// The folder where evidence of misbehaviour (pairs of signed checkpoints) goes.
    pub evidence_dir: PathBuf,
}

/// A trusted checkpoint with the exact bytes of its signed note.
#[derive(Clone, Debug)]
pub struct Trusted {
    /// The verified checkpoint.
    pub checkpoint: VerifiedCheckpoint,
    /// The signed note as received.
    pub note: Vec<u8>,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> MonitorError + '_ {
    move |source| MonitorError::Io { path: path.to_path_buf(), source }
}

impl State {
    /// State in `file`, evidence in `FILE.evidence/` beside it.
    pub fn new(file: impl Into<PathBuf>) -> State {
        let file = file.into();
        let mut ev = file.clone().into_os_string();
        ev.push(".evidence");
        State { file, evidence_dir: PathBuf::from(ev) }
    }

    /// Uses `dir` for evidence instead of the default.
    pub fn with_evidence_dir(mut self, dir: impl Into<PathBuf>) -> State {
        self.evidence_dir = dir.into();
        self
    }

    /// The trusted checkpoint, or `None` before the first run. The stored note is
    /// verified again with `verifier`: a state file for another log, or one changed
    /// on disk, is refused.
    pub fn load(&self, verifier: &NoteVerifier) -> Result<Option<Trusted>, MonitorError> {
        self.load_with_chain(&stele_tlog::keychain::KeyChain::new(verifier.clone()))
    }

    /// [`State::load`], verifying the stored note against a key chain (it may have
    /// been signed by an earlier key than the current one).
    pub fn load_with_chain(&self, chain: &stele_tlog::keychain::KeyChain) -> Result<Option<Trusted>, MonitorError> {
        let note = match fs::read(&self.file) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&self.file)(e)),
        };
        let checkpoint = chain.open_checkpoint(&note).map_err(|e| MonitorError::BadState {
            path: self.file.clone(),
            source: match e {
                stele_tlog::keychain::KeyChainError::Checkpoint(c) => c,
                other => stele_tlog::checkpoint::CheckpointError::Note(stele_tlog::note::NoteError::UnknownKey(
                    other.to_string(),
                )),
            },
        })?;
        Ok(Some(Trusted { checkpoint, note }))
    }

    /// Replaces the trusted checkpoint with `note`, crash-safely: write `FILE.tmp`,
    /// fsync it, rename it over `FILE`, fsync the folder.
    pub fn store(&self, note: &[u8]) -> Result<(), MonitorError> {
        write_atomic(&self.file, note)
    }

    /// Saves the two signed checkpoints that prove a detection under
    /// `evidence_dir/<name>/` as `trusted.checkpoint` and `served.checkpoint`; returns
    /// that folder.
    pub fn save_evidence(&self, name: &str, trusted: &[u8], served: &[u8]) -> Result<PathBuf, MonitorError> {
        let dir = self.evidence_dir.join(name);
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        write_atomic(&dir.join("trusted.checkpoint"), trusted)?;
        write_atomic(&dir.join("served.checkpoint"), served)?;
        Ok(dir)
    }
}

/// Writes `bytes` to `path` so that a crash leaves either the old or the new file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), MonitorError> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).map_err(io_err(&parent))?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(bytes).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
    }
    fs::rename(&tmp, path).map_err(io_err(path))?;
    File::open(&parent).and_then(|d| d.sync_all()).map_err(io_err(&parent))?;
    Ok(())
}
