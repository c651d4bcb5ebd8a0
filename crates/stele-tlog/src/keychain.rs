//! Key rotation and revocation: signed key statements and the chain of keys a verifier
//! follows from the first key it trusts (docs/keys.md).
//!
//! A key statement is a C2SP signed note whose text is one of
//!
//! ```text
//! stele key rotation v1        stele key revocation v1
//! <origin>                     <origin>
//! <new verifier key>           <revoked verifier key>
//! <from tree size>             <as-of tree size>
//!                              <reason, one line>
//! ```
//!
//! signed by the log's current key. A rotation says: the new key signs checkpoints of
//! tree sizes ≥ `from`; the old key signs sizes ≤ `from` (the checkpoint of size `from`
//! itself, which commits the statement, carries both signatures). A revocation says: the
//! revoked key's signatures are trusted only for checkpoints of size ≤ `as-of`.
//!
//! The first line of a statement contains spaces, so it can never be the origin line of
//! a checkpoint signed by the same key (key names have no whitespace): a signature over
//! a statement is never a signature over a checkpoint, and the reverse.

use crate::checkpoint::{Checkpoint, CheckpointError, VerifiedCheckpoint};
use crate::note::{Note, NoteError, NoteVerifier};
use crate::signer::{CheckpointSigner, SignerError, sign_note};

/// First line of a rotation statement.
pub const ROTATION_V1: &str = "stele key rotation v1";
/// First line of a revocation statement.
pub const REVOCATION_V1: &str = "stele key revocation v1";
/// Longest revocation reason, bytes.
pub const MAX_REASON_BYTES: usize = 1000;
/// Most keys a chain holds: bounds the work a hostile list of statements can cause.
pub const MAX_CHAIN_KEYS: usize = 1000;

/// Errors of key statements and of checking checkpoints against a key chain.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyChainError {
    /// The statement is malformed; the string says how.
    #[error("malformed key statement: {0}")]
    Malformed(String),
    /// The statement is for another log.
    #[error("key statement for origin {got:?}, but the log is {want:?}")]
    WrongOrigin {
        /// Origin in the statement.
        got: String,
        /// The chain's origin.
        want: String,
    },
    /// The statement carries no valid signature by the chain's current key: it is
    /// forged, or it skips a rotation the verifier has not seen.
    #[error("key statement is not signed by the current key {current}: {detail}")]
    NotSignedByCurrentKey {
        /// The current key of the chain (vkey).
        current: String,
        /// What was found instead.
        detail: String,
    },
    /// The statement breaks a rule of the chain; the string says which.
    #[error("key statement refused: {0}")]
    Refused(String),
    /// No signature on the checkpoint is by a key of the chain.
    #[error(
        "checkpoint of tree size {tree_size} is signed only by {key}, which no key statement announced (trusted keys: {trusted})"
    )]
    UnannouncedKey {
        /// The first signature's key (`name+hex id`).
        key: String,
        /// The checkpoint's tree size.
        tree_size: u64,
        /// The chain's keys (`name+hex id`, comma separated).
        trusted: String,
    },
    /// The checkpoint is signed by a key of the chain, but outside the tree sizes it
    /// may sign.
    #[error("checkpoint of tree size {tree_size} is signed by {key}, which is trusted only for tree sizes {range}")]
    OutsideValidity {
        /// The key (`name+hex id`).
        key: String,
        /// The checkpoint's tree size.
        tree_size: u64,
        /// The sizes it may sign and why it ends, e.g. `0..=41 (rotated at 41)`.
        range: String,
    },
    /// The checkpoint itself is malformed or a signature by a chain key does not verify.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
}

impl From<NoteError> for KeyChainError {
    fn from(e: NoteError) -> KeyChainError {
        KeyChainError::Checkpoint(CheckpointError::Note(e))
    }
}

/// One key statement (the text of the signed note).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyStatement {
    /// `new_key` signs checkpoints of tree sizes ≥ `from_tree_size`.
    Rotation {
        /// The log's origin.
        origin: String,
        /// The new key.
        new_key: NoteVerifier,
        /// First tree size the new key signs (the old key signs up to it, inclusive).
        from_tree_size: u64,
    },
    /// `key`'s signatures are trusted only for tree sizes ≤ `as_of_tree_size`.
    Revocation {
        /// The log's origin.
        origin: String,
        /// The revoked key.
        key: NoteVerifier,
        /// Largest tree size whose checkpoints `key` may have signed.
        as_of_tree_size: u64,
        /// Why (one line, at most [`MAX_REASON_BYTES`]).
        reason: String,
    },
}

impl KeyStatement {
    /// The note text (lines as in the module docs, ending in a newline).
    pub fn to_text(&self) -> String {
        match self {
            KeyStatement::Rotation { origin, new_key, from_tree_size } => {
                format!("{ROTATION_V1}\n{origin}\n{}\n{from_tree_size}\n", new_key.to_vkey())
            }
            KeyStatement::Revocation { origin, key, as_of_tree_size, reason } => {
                format!("{REVOCATION_V1}\n{origin}\n{}\n{as_of_tree_size}\n{reason}\n", key.to_vkey())
            }
        }
    }

    /// Parses statement text.
    ///
    /// # Errors
    /// [`KeyChainError::Malformed`]: unknown first line, wrong number of lines, bad key,
    /// non-canonical size, empty or overlong reason.
    pub fn parse_text(text: &str) -> Result<KeyStatement, KeyChainError> {
        let bad = |s: &str| KeyChainError::Malformed(s.to_string());
        let body = text.strip_suffix('\n').ok_or_else(|| bad("text must end in a newline"))?;
        let lines: Vec<&str> = body.split('\n').collect();
        let size = |s: &str| -> Result<u64, KeyChainError> {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0')) {
                return Err(bad("tree size is not a canonical decimal number"));
            }
            s.parse().map_err(|_| bad("tree size does not fit in 64 bits"))
        };
        let key = |s: &str| NoteVerifier::parse(s).map_err(|e| KeyChainError::Malformed(format!("key: {e}")));
        match lines.first().copied() {
            Some(ROTATION_V1) if lines.len() == 4 => Ok(KeyStatement::Rotation {
                origin: lines[1].to_string(),
                new_key: key(lines[2])?,
                from_tree_size: size(lines[3])?,
            }),
            Some(REVOCATION_V1) if lines.len() == 5 => {
                let reason = lines[4];
                if reason.trim().is_empty() || reason.len() > MAX_REASON_BYTES {
                    return Err(bad("the reason must be one non-empty line of at most 1000 bytes"));
                }
                Ok(KeyStatement::Revocation {
                    origin: lines[1].to_string(),
                    key: key(lines[2])?,
                    as_of_tree_size: size(lines[3])?,
                    reason: reason.to_string(),
                })
            }
            Some(ROTATION_V1 | REVOCATION_V1) => Err(bad("wrong number of lines")),
            _ => Err(bad("not a stele key statement")),
        }
    }

    /// The statement's origin.
    pub fn origin(&self) -> &str {
        match self {
            KeyStatement::Rotation { origin, .. } | KeyStatement::Revocation { origin, .. } => origin,
        }
    }

    /// Signs the statement with `signer` (the log's current key) and returns the signed note.
    ///
    /// # Errors
    /// The signer's error; [`SignerError::NotSignable`] for a reason with control characters.
    pub fn sign(&self, signer: &mut dyn CheckpointSigner) -> Result<String, SignerError> {
        sign_note(&self.to_text(), &mut [signer])
    }
}

/// One key of a chain and the tree sizes it may sign.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainKey {
    /// The key.
    pub verifier: NoteVerifier,
    /// First tree size it signs (0 for the first key).
    pub from_tree_size: u64,
    /// Last tree size it signs, once a rotation replaced it.
    pub rotated_at: Option<u64>,
    /// Revocation: last tree size trusted, and the reason.
    pub revoked: Option<(u64, String)>,
}

impl ChainKey {
    /// Largest tree size this key may sign (`None`: no limit).
    pub fn last_tree_size(&self) -> Option<u64> {
        match (self.rotated_at, &self.revoked) {
            (Some(a), Some((b, _))) => Some(a.min(*b)),
            (Some(a), None) => Some(a),
            (None, Some((b, _))) => Some(*b),
            (None, None) => None,
        }
    }

    /// Whether the key may sign a checkpoint of `tree_size`.
    pub fn covers(&self, tree_size: u64) -> bool {
        tree_size >= self.from_tree_size && self.last_tree_size().is_none_or(|l| tree_size <= l)
    }

    fn describe_range(&self) -> String {
        let mut s = match self.last_tree_size() {
            Some(l) => format!("{}..={l}", self.from_tree_size),
            None => format!("{}..", self.from_tree_size),
        };
        if let Some(a) = self.rotated_at {
            s.push_str(&format!(" (rotated at {a})"));
        }
        if let Some((b, why)) = &self.revoked {
            s.push_str(&format!(" (revoked as of {b}: {why})"));
        }
        s
    }
}

fn key_label(v: &NoteVerifier) -> String {
    let id: String = v.key_id().iter().map(|b| format!("{b:02x}")).collect();
    format!("{}+{id}", v.name())
}

/// The keys of one log in order, starting from the first key a verifier trusts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyChain {
    origin: String,
    keys: Vec<ChainKey>,
}

impl KeyChain {
    /// A chain of one key, trusted from tree size 0: the key a verifier was given.
    pub fn new(first: NoteVerifier) -> KeyChain {
        KeyChain {
            origin: first.name().to_string(),
            keys: vec![ChainKey { verifier: first, from_tree_size: 0, rotated_at: None, revoked: None }],
        }
    }

    /// The log's origin (the first key's name).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The keys in order of announcement.
    pub fn keys(&self) -> &[ChainKey] {
        &self.keys
    }

    /// The newest key: the one that signs new checkpoints and the next statement.
    pub fn current(&self) -> &NoteVerifier {
        &self.keys.last().expect("a chain has a key").verifier
    }

    /// Checks the signed statement `signed_note` and applies it. `index` is the entry
    /// index the statement was committed at, when known: a rotation must then take
    /// effect after it (`index < from tree size`), so that the checkpoint committing it
    /// is signed by the old key.
    ///
    /// Rules: the statement carries a valid signature by the current key; a rotation
    /// names a new key with the log's origin as its name, not already in the chain, from
    /// a tree size not below the current key's first; a revocation names an earlier key
    /// (never the current one: rotate first), and a second revocation only lowers the
    /// limit.
    ///
    /// # Errors
    /// [`KeyChainError`]: malformed, another origin, not signed by the current key
    /// (a forged statement), or a broken rule.
    pub fn apply(&mut self, signed_note: &[u8], index: Option<u64>) -> Result<KeyStatement, KeyChainError> {
        let note = Note::parse(signed_note).map_err(|e| KeyChainError::Malformed(e.to_string()))?;
        let statement = KeyStatement::parse_text(&note.text)?;
        if statement.origin() != self.origin {
            return Err(KeyChainError::WrongOrigin { got: statement.origin().to_string(), want: self.origin.clone() });
        }
        let current = self.current().clone();
        let by_current: Vec<_> =
            note.signatures.iter().filter(|s| s.name == current.name() && s.key_id == current.key_id()).collect();
        let detail = if by_current.is_empty() {
            let found: Vec<String> = note.signatures.iter().map(|s| s.name.clone()).collect();
            Some(format!("no signature by that key (signature lines by: {})", found.join(", ")))
        } else if !by_current.iter().all(|s| current.verify(note.text.as_bytes(), &s.signature)) {
            Some("the signature does not verify".to_string())
        } else {
            None
        };
        if let Some(detail) = detail {
            return Err(KeyChainError::NotSignedByCurrentKey { current: current.to_vkey(), detail });
        }
        match &statement {
            KeyStatement::Rotation { new_key, from_tree_size, .. } => {
                if new_key.name() != self.origin {
                    return Err(KeyChainError::Refused(format!(
                        "the new key is named {:?}; a log's key is named after its origin {:?}",
                        new_key.name(),
                        self.origin
                    )));
                }
                if self.keys.iter().any(|k| k.verifier == *new_key) {
                    return Err(KeyChainError::Refused(format!("key {} is already in the chain", key_label(new_key))));
                }
                if self.keys.len() >= MAX_CHAIN_KEYS {
                    return Err(KeyChainError::Refused(format!("more than {MAX_CHAIN_KEYS} keys")));
                }
                let last = self.keys.last_mut().expect("a chain has a key");
                if *from_tree_size < last.from_tree_size {
                    return Err(KeyChainError::Refused(format!(
                        "rotation from tree size {from_tree_size}, before the current key's first size {}",
                        last.from_tree_size
                    )));
                }
                if let Some(i) = index
                    && i >= *from_tree_size
                {
                    return Err(KeyChainError::Refused(format!(
                        "rotation committed at entry {i} takes effect at tree size {from_tree_size}, which does not \
                         contain it"
                    )));
                }
                last.rotated_at = Some(*from_tree_size);
                self.keys.push(ChainKey {
                    verifier: new_key.clone(),
                    from_tree_size: *from_tree_size,
                    rotated_at: None,
                    revoked: None,
                });
            }
            KeyStatement::Revocation { key, as_of_tree_size, reason, .. } => {
                if *key == current {
                    return Err(KeyChainError::Refused(
                        "the current key cannot revoke itself; rotate to a new key first".into(),
                    ));
                }
                let k = self
                    .keys
                    .iter_mut()
                    .find(|k| k.verifier == *key)
                    .ok_or_else(|| KeyChainError::Refused(format!("key {} is not in the chain", key_label(key))))?;
                let as_of = match &k.revoked {
                    Some((earlier, _)) => (*earlier).min(*as_of_tree_size),
                    None => *as_of_tree_size,
                };
                k.revoked = Some((as_of, reason.clone()));
            }
        }
        Ok(statement)
    }

    /// Checks a parsed checkpoint note: at least one signature by a chain key that may
    /// sign its tree size verifies, and every signature by a chain key verifies.
    ///
    /// # Errors
    /// [`KeyChainError::UnannouncedKey`], [`KeyChainError::OutsideValidity`], or an
    /// invalid signature / wrong origin as [`KeyChainError::Checkpoint`].
    pub fn check_note(&self, note: &Note, checkpoint: &Checkpoint) -> Result<(), KeyChainError> {
        if checkpoint.origin != self.origin {
            return Err(
                CheckpointError::WrongOrigin { got: checkpoint.origin.clone(), want: self.origin.clone() }.into()
            );
        }
        let mut outside = None;
        let mut accepted = false;
        for sig in &note.signatures {
            let Some(k) = self.keys.iter().find(|k| k.verifier.name() == sig.name && k.verifier.key_id() == sig.key_id)
            else {
                continue;
            };
            if !k.verifier.verify(note.text.as_bytes(), &sig.signature) {
                return Err(NoteError::InvalidSignature(key_label(&k.verifier)).into());
            }
            if k.covers(checkpoint.tree_size) {
                accepted = true;
            } else if outside.is_none() {
                outside = Some(k);
            }
        }
        if accepted {
            return Ok(());
        }
        if let Some(k) = outside {
            return Err(KeyChainError::OutsideValidity {
                key: key_label(&k.verifier),
                tree_size: checkpoint.tree_size,
                range: k.describe_range(),
            });
        }
        let first = note.signatures.first().map(|s| {
            let id: String = s.key_id.iter().map(|b| format!("{b:02x}")).collect();
            format!("{}+{id}", s.name)
        });
        Err(KeyChainError::UnannouncedKey {
            key: first.unwrap_or_else(|| "no key".into()),
            tree_size: checkpoint.tree_size,
            trusted: self.keys.iter().map(|k| key_label(&k.verifier)).collect::<Vec<_>>().join(", "),
        })
    }

    /// Parses a signed checkpoint note and checks it against the chain
    /// ([`KeyChain::check_note`]).
    ///
    /// # Errors
    /// As [`KeyChain::check_note`], plus malformed notes and bodies.
    pub fn open_checkpoint(&self, signed_note: &[u8]) -> Result<VerifiedCheckpoint, KeyChainError> {
        let note = Note::parse(signed_note)?;
        let checkpoint = Checkpoint::parse_body(&note.text)?;
        self.check_note(&note, &checkpoint)?;
        Ok(VerifiedCheckpoint { checkpoint, note })
    }
}

/// Parses a key-statement list: one statement per line as `<entry index> <base64 of the
/// signed note>` (the `key-statements` file `stele publish` writes and `GET
/// /key-statements` serves), in log order. Blank lines are ignored.
///
/// # Errors
/// [`KeyChainError::Malformed`] naming the line.
pub fn parse_statement_list(text: &str) -> Result<Vec<(u64, Vec<u8>)>, KeyChainError> {
    use base64::Engine as _;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = || KeyChainError::Malformed(format!("key statement list line {}", n + 1));
        let (index, b64) = line.split_once(' ').ok_or_else(bad)?;
        let index = index.parse().map_err(|_| bad())?;
        let note = base64::engine::general_purpose::STANDARD.decode(b64.trim()).map_err(|_| bad())?;
        out.push((index, note));
    }
    Ok(out)
}

/// Formats one line of a key-statement list (see [`parse_statement_list`]).
pub fn statement_list_line(index: u64, signed_note: &[u8]) -> String {
    use base64::Engine as _;
    format!("{index} {}\n", base64::engine::general_purpose::STANDARD.encode(signed_note))
}

/// A chain from `first` and a key-statement list in log order.
///
/// # Errors
/// The first statement that does not apply, with its entry index.
pub fn chain_from_list(first: NoteVerifier, list: &[(u64, Vec<u8>)]) -> Result<KeyChain, (u64, KeyChainError)> {
    let mut chain = KeyChain::new(first);
    for (index, note) in list {
        chain.apply(note, Some(*index)).map_err(|e| (*index, e))?;
    }
    Ok(chain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::Hash;
    use crate::note::NoteSigner;

    const O: &str = "log.example";

    fn key(seed: u8) -> NoteSigner {
        NoteSigner::from_seed(O, &[seed; 32]).unwrap()
    }

    fn checkpoint(size: u64, signers: &mut [&mut dyn CheckpointSigner]) -> Vec<u8> {
        let body = Checkpoint { origin: O.into(), tree_size: size, root_hash: Hash([9; 32]), extensions: vec![] };
        sign_note(&body.to_body(), signers).unwrap().into_bytes()
    }

    #[test]
    fn rotation_then_revocation() {
        let (mut k0, mut k1, k2) = (key(1), key(2), key(3));
        let mut chain = KeyChain::new(k0.verifier());
        assert!(chain.open_checkpoint(&checkpoint(5, &mut [&mut k0])).is_ok());
        // k1 unannounced: precise error naming the key and the trusted ones.
        let e = chain.open_checkpoint(&checkpoint(5, &mut [&mut k1])).unwrap_err();
        assert!(matches!(e, KeyChainError::UnannouncedKey { tree_size: 5, .. }), "{e}");
        let rot = KeyStatement::Rotation { origin: O.into(), new_key: k1.verifier(), from_tree_size: 10 };
        let signed = rot.sign(&mut k0).unwrap();
        assert_eq!(chain.apply(signed.as_bytes(), Some(9)).unwrap(), rot);
        assert_eq!(chain.current(), &k1.verifier());
        // The transition checkpoint carries both signatures; both keys cover size 10.
        assert!(chain.open_checkpoint(&checkpoint(10, &mut [&mut k0, &mut k1])).is_ok());
        assert!(chain.open_checkpoint(&checkpoint(11, &mut [&mut k1])).is_ok());
        let e = chain.open_checkpoint(&checkpoint(11, &mut [&mut k0])).unwrap_err();
        assert!(e.to_string().contains("0..=10 (rotated at 10)"), "{e}");
        assert!(matches!(
            chain.open_checkpoint(&checkpoint(9, &mut [&mut k1])),
            Err(KeyChainError::OutsideValidity { .. })
        ));
        // A forged rotation (signed by the new key itself, or by an old key) is refused.
        let forged = KeyStatement::Rotation { origin: O.into(), new_key: k2.verifier(), from_tree_size: 20 };
        for mut by in [key(3), key(1)] {
            let e = chain.clone().apply(forged.sign(&mut by).unwrap().as_bytes(), Some(15)).unwrap_err();
            assert!(matches!(e, KeyChainError::NotSignedByCurrentKey { .. }), "{e}");
        }
        // Revoke k0 as of size 7 (signed by k1): its size-8 checkpoint is no longer trusted.
        let rev = KeyStatement::Revocation {
            origin: O.into(),
            key: k0.verifier(),
            as_of_tree_size: 7,
            reason: "key file copied off the host".into(),
        };
        chain.apply(rev.sign(&mut k1).unwrap().as_bytes(), Some(30)).unwrap();
        assert!(chain.open_checkpoint(&checkpoint(7, &mut [&mut k0])).is_ok());
        let e = chain.open_checkpoint(&checkpoint(8, &mut [&mut k0])).unwrap_err();
        assert!(e.to_string().contains("revoked as of 7: key file copied off the host"), "{e}");
        // The current key cannot revoke itself; a rotation must commit before it applies.
        let self_rev =
            KeyStatement::Revocation { origin: O.into(), key: k1.verifier(), as_of_tree_size: 1, reason: "x".into() };
        assert!(matches!(
            chain.clone().apply(self_rev.sign(&mut k1).unwrap().as_bytes(), None),
            Err(KeyChainError::Refused(_))
        ));
        let late = KeyStatement::Rotation { origin: O.into(), new_key: k2.verifier(), from_tree_size: 40 };
        assert!(matches!(
            chain.apply(late.sign(&mut k1).unwrap().as_bytes(), Some(40)),
            Err(KeyChainError::Refused(_))
        ));
    }

    #[test]
    fn statements_round_trip_and_reject_malformed() {
        let k = key(1);
        let rev =
            KeyStatement::Revocation { origin: O.into(), key: k.verifier(), as_of_tree_size: 3, reason: "r".into() };
        assert_eq!(KeyStatement::parse_text(&rev.to_text()).unwrap(), rev);
        for bad in [
            "stele key rotation v1\nlog.example\n".to_string(),
            format!("stele key rotation v1\n{O}\n{}\n010\n", k.verifier().to_vkey()),
            format!("stele key revocation v1\n{O}\n{}\n1\n \n", k.verifier().to_vkey()),
            format!("stele key rotation v2\n{O}\n{}\n1\n", k.verifier().to_vkey()),
            format!("{O}\n1\nAAAA\n"),
        ] {
            assert!(KeyStatement::parse_text(&bad).is_err(), "accepted {bad:?}");
        }
        let list = statement_list_line(4, b"note\n\n") + &statement_list_line(9, b"x");
        assert_eq!(parse_statement_list(&list).unwrap(), vec![(4, b"note\n\n".to_vec()), (9, b"x".to_vec())]);
        assert!(parse_statement_list("4\n").is_err());
    }
}
