//! C2SP tlog-checkpoint bodies: `<origin>\n<tree size>\n<base64 root hash>\n`
//! followed by optional extension lines.

use crate::hash::Hash;
use crate::note::{Note, NoteError, NoteSigner, NoteVerifier};

/// Errors of checkpoint parsing and verification.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The checkpoint body is malformed; the string says how.
    #[error("malformed checkpoint: {0}")]
    Malformed(&'static str),
    /// The enclosing signed note is malformed or its signature does not verify.
    #[error(transparent)]
    Note(#[from] NoteError),
    /// The checkpoint's origin is not the expected one.
    #[error("checkpoint origin is {got:?}, expected {want:?}")]
    WrongOrigin {
        /// Origin line found.
        got: String,
        /// Origin expected.
        want: String,
    },
}

/// A checkpoint body (C2SP tlog-checkpoint).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin line (unique name of the log).
    pub origin: String,
    /// Number of leaves in the tree.
    pub tree_size: u64,
    /// Root hash of the tree of `tree_size` leaves.
    pub root_hash: Hash,
    /// Extension lines, in order, without newlines (stele writes none).
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// The body text: origin, decimal tree size and base64 root hash, one per line,
    /// then any extension lines; ends in a newline.
    pub fn to_body(&self) -> String {
        let mut s = format!("{}\n{}\n{}\n", self.origin, self.tree_size, self.root_hash.to_base64());
        for e in &self.extensions {
            s.push_str(e);
            s.push('\n');
        }
        s
    }

    /// Parses a checkpoint body. The size must be a decimal without sign or leading
    /// zeros that fits in 64 bits; the root must be base64 of 32 bytes; the origin and
    /// extension lines must be non-empty.
    pub fn parse_body(text: &str) -> Result<Checkpoint, CheckpointError> {
        let body = text.strip_suffix('\n').ok_or(CheckpointError::Malformed("body must end in a newline"))?;
        let mut lines = body.split('\n');
        let origin = lines.next().filter(|l| !l.is_empty()).ok_or(CheckpointError::Malformed("empty origin line"))?;
        let size_line = lines.next().ok_or(CheckpointError::Malformed("missing tree size line"))?;
        if size_line.is_empty()
            || !size_line.bytes().all(|b| b.is_ascii_digit())
            || (size_line.len() > 1 && size_line.starts_with('0'))
        {
            return Err(CheckpointError::Malformed("tree size is not a canonical decimal number"));
        }
        let tree_size: u64 =
            size_line.parse().map_err(|_| CheckpointError::Malformed("tree size does not fit in 64 bits"))?;
        let root_line = lines.next().ok_or(CheckpointError::Malformed("missing root hash line"))?;
        let root_hash =
            Hash::from_base64(root_line).ok_or(CheckpointError::Malformed("root hash is not base64 of 32 bytes"))?;
        let mut extensions = Vec::new();
        for l in lines {
            if l.is_empty() {
                return Err(CheckpointError::Malformed("empty extension line"));
            }
            extensions.push(l.to_string());
        }
        Ok(Checkpoint { origin: origin.to_string(), tree_size, root_hash, extensions })
    }

    /// Signs the body with `signer` and returns the signed note text.
    pub fn sign(&self, signer: &NoteSigner) -> Result<String, CheckpointError> {
        Ok(signer.sign(&self.to_body())?)
    }
}

/// A checkpoint whose signed note verified against a trusted key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedCheckpoint {
    /// The checkpoint body.
    pub checkpoint: Checkpoint,
    /// The whole signed note as received.
    pub note: Note,
}

/// Parses a signed checkpoint note, verifies it against `verifier` (the log's key, whose
/// name must equal the origin, as C2SP tlog-checkpoint recommends) and parses its body.
pub fn open_checkpoint(signed_note: &[u8], verifier: &NoteVerifier) -> Result<VerifiedCheckpoint, CheckpointError> {
    let note = Note::parse(signed_note)?;
    note.verify(std::slice::from_ref(verifier))?;
    let checkpoint = Checkpoint::parse_body(&note.text)?;
    if checkpoint.origin != verifier.name() {
        return Err(CheckpointError::WrongOrigin { got: checkpoint.origin, want: verifier.name().to_string() });
    }
    Ok(VerifiedCheckpoint { checkpoint, note })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_round_trip_and_strictness() {
        let c = Checkpoint {
            origin: "example.com/log".into(),
            tree_size: 15,
            root_hash: Hash([3; 32]),
            extensions: vec![],
        };
        assert_eq!(Checkpoint::parse_body(&c.to_body()).unwrap(), c);
        for bad in [
            "",
            "\n15\nAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM=\n",
            "o\n015\nAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM=\n",
            "o\n-1\nAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM=\n",
            "o\n18446744073709551616\nAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM=\n",
            "o\n1\nnot-base64\n",
            "o\n1\nAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM=",
            "o\n1\nAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM=\n\n",
            "o\n1\n",
        ] {
            assert!(Checkpoint::parse_body(bad).is_err(), "accepted {bad:?}");
        }
        let max = "o\n18446744073709551615\nAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM=\n";
        assert_eq!(Checkpoint::parse_body(max).unwrap().tree_size, u64::MAX);
    }

    #[test]
    fn open_checks_signature_and_origin() {
        let s = NoteSigner::from_seed("example.com/log", &[5; 32]).unwrap();
        let c =
            Checkpoint { origin: "example.com/log".into(), tree_size: 1, root_hash: Hash([1; 32]), extensions: vec![] };
        let note = c.sign(&s).unwrap();
        assert_eq!(open_checkpoint(note.as_bytes(), &s.verifier()).unwrap().checkpoint, c);
        let other = NoteSigner::from_seed("other.example", &[5; 32]).unwrap();
        let wrong_origin = c.sign(&other).unwrap();
        assert!(open_checkpoint(wrong_origin.as_bytes(), &other.verifier()).is_err());
    }
}
