//! Evidence bundles (`stele-bundle/1`): the checks an auditor runs offline.
//!
//! A bundle is a text file of lines, each ending in `\n`: one header line, one line
//! per entry, one trailer line (docs/bundle.md has the exact format). This module holds
//! every rule of the format that is not JSON syntax, with no I/O: the caller reads
//! the lines, decodes each one's fields into [`Header`], [`EntryLine`] or [`Trailer`]
//! and feeds them, with the line's exact bytes, to a [`BundleVerifier`]:
//!
//! 1. [`BundleVerifier::new`]: the format name, the checkpoint's signature by the
//!    *trusted* key (never the key the bundle carries), its origin, and that the
//!    header's origin and tree size agree with the signed checkpoint;
//! 2. [`BundleVerifier::entry`] for each entry: indexes strictly increase, the leaf
//!    decodes, `SHA-256(salt ‖ payload)` and the length match it, and the inclusion
//!    proof of `SHA-256(0x00 ‖ leaf)` leads to the checkpoint's root;
//! 3. [`BundleVerifier::finish`]: the counts agree and the trailer is exactly
//!    [`trailer_line`] of the count and the SHA-256 of every byte before it, so any
//!    changed, added or removed byte anywhere in the file is caught.
//!
//! The writer side uses [`BundleDigest`] and [`trailer_line`] to produce the same bytes.

use sha2::{Digest, Sha256};

use crate::checkpoint::{Checkpoint, CheckpointError, open_checkpoint};
use crate::hash::{Hash, leaf_hash};
use crate::leaf::{Leaf, LeafError};
use crate::merkle::{VerifyError, verify_inclusion};
use crate::note::NoteVerifier;

/// The format name in the header's `format` field and the trailer's `end` field.
pub const FORMAT: &str = "stele-bundle/1";

/// Longest line a verifier needs to accept, newline included (64 MiB).
pub const MAX_LINE_BYTES: usize = 64 << 20;

/// Running SHA-256 over the bytes of a bundle before its trailer line.
#[derive(Clone, Debug, Default)]
pub struct BundleDigest(Sha256);

impl BundleDigest {
    /// An empty digest.
    pub fn new() -> BundleDigest {
        BundleDigest(Sha256::new())
    }

    /// Adds bytes (whole lines with their `\n`, or any split of them).
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The SHA-256 of everything added so far.
    pub fn finish(&self) -> Hash {
        Hash(self.0.clone().finalize().into())
    }
}

/// The exact trailer line (with its `\n`) of a bundle of `count` entries whose bytes
/// before the trailer hash to `digest`.
pub fn trailer_line(count: u64, digest: &Hash) -> String {
    format!("{{\"end\":\"{FORMAT}\",\"count\":{count},\"sha256\":\"{}\"}}\n", digest.to_hex())
}

/// The decoded fields of the header line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Must be [`FORMAT`].
    pub format: String,
    /// The log's origin; must equal the checkpoint's.
    pub origin: String,
    /// The log's verifier key as the exporter saw it: informational only.
    pub vkey: String,
    /// Tree size of the checkpoint; must equal the signed one.
    pub tree_size: u64,
    /// Number of entry lines that follow.
    pub count: u64,
    /// The signed checkpoint note.
    pub checkpoint: String,
}

/// The decoded fields of one entry line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryLine {
    /// Index of the entry in the log.
    pub index: u64,
    /// The leaf record (68 bytes when intact).
    pub leaf: Vec<u8>,
    /// The payload, byte for byte.
    pub payload: Vec<u8>,
    /// The RFC 9162 inclusion proof to the checkpoint.
    pub proof: Vec<Hash>,
}

/// The decoded fields of the trailer line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trailer {
    /// Must be [`FORMAT`].
    pub end: String,
    /// Number of entry lines.
    pub count: u64,
    /// Lower-case hex SHA-256 of every byte before the trailer line.
    pub sha256: String,
}

/// Why one entry failed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EntryError {
    /// The leaf record does not decode.
    #[error("leaf does not decode: {0}")]
    Leaf(#[from] LeafError),
    /// The payload has another length than the leaf records.
    #[error("payload is {got} bytes, the leaf says {want}")]
    PayloadLength {
        /// Bytes in the bundle.
        got: usize,
        /// Bytes the leaf records.
        want: u32,
    },
    /// `SHA-256(salt ‖ payload)` differs from the leaf's payload digest.
    #[error("payload digest SHA-256(salt ‖ payload) does not match the leaf")]
    PayloadDigest,
    /// The inclusion proof does not lead to the checkpoint's root.
    #[error("inclusion proof does not verify against the checkpoint: {0}")]
    Proof(#[from] VerifyError),
}

/// Why a bundle failed verification.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BundleError {
    /// The header names another format.
    #[error("format is {0:?}, expected {FORMAT:?}")]
    UnsupportedFormat(String),
    /// The checkpoint is malformed, not signed by the trusted key, or of another origin.
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    /// The header's origin differs from the signed checkpoint's.
    #[error("header origin {header:?} differs from the checkpoint's {checkpoint:?}")]
    OriginMismatch {
        /// In the header.
        header: String,
        /// In the signed checkpoint.
        checkpoint: String,
    },
    /// The header's tree size differs from the signed checkpoint's.
    #[error("header tree size {header} differs from the checkpoint's {checkpoint}")]
    TreeSizeMismatch {
        /// In the header.
        header: u64,
        /// In the signed checkpoint.
        checkpoint: u64,
    },
    /// A timestamp line after an entry line (they come between the header and the
    /// first entry).
    #[error("a timestamp line follows entry {0}: timestamp lines come before the entries")]
    TimestampAfterEntry(u64),
    /// A key statements line after an entry line (it comes right after the header).
    #[error("a key statements line follows entry {0}: it comes before the entries")]
    KeyStatementsAfterEntry(u64),
    /// Entry indexes must strictly increase.
    #[error("entry {index} follows entry {previous}: indexes must strictly increase")]
    OutOfOrder {
        /// This entry's index.
        index: u64,
        /// The previous entry's index.
        previous: u64,
    },
    /// More entry lines than the header announced.
    #[error("more entries than the {0} the header announces")]
    TooManyEntries(u64),
    /// One entry failed.
    #[error("entry {index}: {source}")]
    Entry {
        /// The entry's index.
        index: u64,
        /// What failed.
        source: EntryError,
    },
    /// The trailer names another format.
    #[error("trailer ends format {0:?}, expected {FORMAT:?}")]
    TrailerFormat(String),
    /// The entry count differs between header, entries and trailer.
    #[error("the header announces {header} entries, the bundle holds {found}, the trailer says {trailer}")]
    CountMismatch {
        /// In the header.
        header: u64,
        /// Entry lines read.
        found: u64,
        /// In the trailer.
        trailer: u64,
    },
    /// The SHA-256 of the bytes before the trailer differs from the trailer's.
    #[error("SHA-256 of the bytes before the trailer is {computed}, the trailer says {trailer}")]
    DigestMismatch {
        /// Computed.
        computed: String,
        /// In the trailer.
        trailer: String,
    },
    /// The trailer's fields are right but its bytes are not the canonical line.
    #[error("trailer line is not byte for byte {expected:?}")]
    TrailerNotCanonical {
        /// The only acceptable trailer line.
        expected: String,
    },
}

/// An entry that verified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerifiedEntry {
    /// Its index.
    pub index: u64,
    /// The decoded leaf.
    pub leaf: Leaf,
    /// `SHA-256(0x00 ‖ leaf)`.
    pub leaf_hash: Hash,
}

/// What a verified bundle proved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// The signed checkpoint every entry is proven against.
    pub checkpoint: Checkpoint,
    /// Entries verified.
    pub count: u64,
    /// SHA-256 of the bytes before the trailer.
    pub digest: Hash,
}

/// Checks one entry against a checkpoint: leaf, payload and inclusion proof.
pub fn verify_entry(
    checkpoint: &Checkpoint,
    index: u64,
    leaf: &[u8],
    payload: &[u8],
    proof: &[Hash],
) -> Result<VerifiedEntry, EntryError> {
    let decoded = Leaf::decode(leaf)?;
    if payload.len() != decoded.payload_len as usize {
        return Err(EntryError::PayloadLength { got: payload.len(), want: decoded.payload_len });
    }
    if !decoded.matches_payload(payload) {
        return Err(EntryError::PayloadDigest);
    }
    let lh = leaf_hash(leaf);
    verify_inclusion(index, checkpoint.tree_size, &lh, proof, &checkpoint.root_hash)?;
    Ok(VerifiedEntry { index, leaf: decoded, leaf_hash: lh })
}

/// Verifies a bundle line by line; see the module documentation.
#[derive(Clone, Debug)]
pub struct BundleVerifier {
    checkpoint: Checkpoint,
    announced: u64,
    found: u64,
    previous: Option<u64>,
    digest: BundleDigest,
}

impl BundleVerifier {
    /// Starts with the header: `line` is its exact bytes (with the `\n`), `header` its
    /// decoded fields, `trusted` the auditor's key for the log.
    pub fn new(line: &[u8], header: &Header, trusted: &NoteVerifier) -> Result<BundleVerifier, BundleError> {
        if header.format != FORMAT {
            return Err(BundleError::UnsupportedFormat(header.format.clone()));
        }
        let checkpoint = open_checkpoint(header.checkpoint.as_bytes(), trusted)?.checkpoint;
        if header.origin != checkpoint.origin {
            return Err(BundleError::OriginMismatch {
                header: header.origin.clone(),
                checkpoint: checkpoint.origin.clone(),
            });
        }
        if header.tree_size != checkpoint.tree_size {
            return Err(BundleError::TreeSizeMismatch { header: header.tree_size, checkpoint: checkpoint.tree_size });
        }
        let mut digest = BundleDigest::new();
        digest.update(line);
        Ok(BundleVerifier { checkpoint, announced: header.count, found: 0, previous: None, digest })
    }

    /// The signed checkpoint (after [`BundleVerifier::new`] succeeded).
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }

    /// Takes one timestamp line (docs/bundle.md: between the header and the first
    /// entry) into the running digest; `line` is its exact bytes. The token it carries
    /// is checked by the caller, which knows the trusted TSA certificates.
    ///
    /// # Errors
    /// [`BundleError::TimestampAfterEntry`] when an entry line came before it.
    pub fn timestamp_line(&mut self, line: &[u8]) -> Result<(), BundleError> {
        if let Some(previous) = self.previous {
            return Err(BundleError::TimestampAfterEntry(previous));
        }
        self.digest.update(line);
        Ok(())
    }

    /// Takes the key statements line (docs/bundle.md: after the header, before the
    /// first entry) into the running digest; `line` is its exact bytes. The statements
    /// it carries are checked by the caller, which follows them from the trusted key
    /// (`keychain::chain_from_list`) to pick the key the checkpoint was verified with.
    ///
    /// # Errors
    /// [`BundleError::KeyStatementsAfterEntry`] when an entry line came before it.
    pub fn key_statements_line(&mut self, line: &[u8]) -> Result<(), BundleError> {
        if let Some(previous) = self.previous {
            return Err(BundleError::KeyStatementsAfterEntry(previous));
        }
        self.digest.update(line);
        Ok(())
    }

    /// Checks one entry line: `line` is its exact bytes, `entry` its decoded fields.
    pub fn entry(&mut self, line: &[u8], entry: &EntryLine) -> Result<VerifiedEntry, BundleError> {
        self.digest.update(line);
        if let Some(previous) = self.previous
            && entry.index <= previous
        {
            return Err(BundleError::OutOfOrder { index: entry.index, previous });
        }
        if self.found == self.announced {
            return Err(BundleError::TooManyEntries(self.announced));
        }
        let v = verify_entry(&self.checkpoint, entry.index, &entry.leaf, &entry.payload, &entry.proof)
            .map_err(|source| BundleError::Entry { index: entry.index, source })?;
        self.previous = Some(entry.index);
        self.found += 1;
        Ok(v)
    }

    /// Ends with the trailer: `line` is its exact bytes, `trailer` its decoded fields.
    /// The caller must also check that nothing follows the trailer line.
    pub fn finish(self, line: &[u8], trailer: &Trailer) -> Result<Summary, BundleError> {
        if trailer.end != FORMAT {
            return Err(BundleError::TrailerFormat(trailer.end.clone()));
        }
        if trailer.count != self.found || self.announced != self.found {
            return Err(BundleError::CountMismatch {
                header: self.announced,
                found: self.found,
                trailer: trailer.count,
            });
        }
        let digest = self.digest.finish();
        if trailer.sha256 != digest.to_hex() {
            return Err(BundleError::DigestMismatch { computed: digest.to_hex(), trailer: trailer.sha256.clone() });
        }
        let expected = trailer_line(self.found, &digest);
        if line != expected.as_bytes() {
            return Err(BundleError::TrailerNotCanonical { expected });
        }
        Ok(Summary { checkpoint: self.checkpoint, count: self.found, digest })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{MemoryTree, inclusion_proof, root_hash};
    use crate::note::NoteSigner;

    struct Fixture {
        signer: NoteSigner,
        header: Header,
        entries: Vec<EntryLine>,
    }

    fn fixture() -> Fixture {
        let signer = NoteSigner::from_seed("bundle.example/log", &[4; 32]).unwrap();
        let payloads: Vec<Vec<u8>> = (0..7).map(|i| format!("{{\"n\":{i}}}").into_bytes()).collect();
        let leaves: Vec<[u8; 68]> = payloads
            .iter()
            .enumerate()
            .map(|(i, p)| Leaf::new(1, 1, 1000 + i as u64, [i as u8; 16], p).encode())
            .collect();
        let mut tree = MemoryTree::new();
        for l in &leaves {
            tree.push(leaf_hash(l));
        }
        let size = leaves.len() as u64;
        let cp = Checkpoint {
            origin: "bundle.example/log".into(),
            tree_size: size,
            root_hash: root_hash(&tree, size).unwrap(),
            extensions: vec![],
        };
        let entries = [1u64, 4, 6]
            .iter()
            .map(|&i| EntryLine {
                index: i,
                leaf: leaves[i as usize].to_vec(),
                payload: payloads[i as usize].clone(),
                proof: inclusion_proof(&tree, i, size).unwrap(),
            })
            .collect();
        let header = Header {
            format: FORMAT.into(),
            origin: cp.origin.clone(),
            vkey: signer.verifier().to_vkey(),
            tree_size: size,
            count: 3,
            checkpoint: cp.sign(&signer).unwrap(),
        };
        Fixture { signer, header, entries }
    }

    fn run(f: &Fixture, trusted: &NoteVerifier) -> Result<Summary, BundleError> {
        let mut digest = BundleDigest::new();
        digest.update(b"header\n");
        let mut v = BundleVerifier::new(b"header\n", &f.header, trusted)?;
        for e in &f.entries {
            digest.update(b"entry\n");
            v.entry(b"entry\n", e)?;
        }
        let d = digest.finish();
        let line = trailer_line(f.entries.len() as u64, &d);
        v.finish(line.as_bytes(), &Trailer { end: FORMAT.into(), count: f.entries.len() as u64, sha256: d.to_hex() })
    }

    #[test]
    fn good_bundle_verifies() {
        let f = fixture();
        let s = run(&f, &f.signer.verifier()).unwrap();
        assert_eq!(s.count, 3);
        assert_eq!(s.checkpoint.tree_size, 7);
    }

    #[test]
    fn changes_are_caught() {
        let good = fixture();
        let key = good.signer.verifier();
        let other = NoteSigner::from_seed("bundle.example/log", &[5; 32]).unwrap().verifier();
        assert!(matches!(run(&good, &other), Err(BundleError::Checkpoint(_))));

        let mut f = fixture();
        f.entries[1].payload[2] ^= 1;
        assert!(matches!(run(&f, &key), Err(BundleError::Entry { index: 4, source: EntryError::PayloadDigest })));
        let mut f = fixture();
        f.entries[1].payload.push(b' ');
        assert!(matches!(run(&f, &key), Err(BundleError::Entry { source: EntryError::PayloadLength { .. }, .. })));
        let mut f = fixture();
        f.entries[0].leaf[9] ^= 1;
        assert!(matches!(run(&f, &key), Err(BundleError::Entry { source: EntryError::Proof(_), .. })));
        let mut f = fixture();
        f.entries[0].leaf[0] = 2;
        assert!(matches!(run(&f, &key), Err(BundleError::Entry { source: EntryError::Leaf(_), .. })));
        let mut f = fixture();
        f.entries[2].proof[0].0[0] ^= 1;
        assert!(matches!(run(&f, &key), Err(BundleError::Entry { index: 6, source: EntryError::Proof(_) })));
        let mut f = fixture();
        f.entries[2].index = 5;
        assert!(run(&f, &key).is_err());
        let mut f = fixture();
        f.entries.swap(0, 1);
        assert!(matches!(run(&f, &key), Err(BundleError::OutOfOrder { .. })));
        let mut f = fixture();
        f.entries.pop();
        assert!(matches!(run(&f, &key), Err(BundleError::CountMismatch { .. })));
        let mut f = fixture();
        f.header.tree_size = 6;
        assert!(matches!(run(&f, &key), Err(BundleError::TreeSizeMismatch { .. })));
        let mut f = fixture();
        f.header.origin = "x".into();
        assert!(matches!(run(&f, &key), Err(BundleError::OriginMismatch { .. })));
        let mut f = fixture();
        f.header.format = "stele-bundle/2".into();
        assert!(matches!(run(&f, &key), Err(BundleError::UnsupportedFormat(_))));
    }

    #[test]
    fn trailer_must_be_exact() {
        let f = fixture();
        let key = f.signer.verifier();
        let mut v = BundleVerifier::new(b"h\n", &f.header, &key).unwrap();
        for e in &f.entries {
            v.entry(b"e\n", e).unwrap();
        }
        let mut d = BundleDigest::new();
        d.update(b"h\ne\ne\ne\n");
        let d = d.finish();
        let t = Trailer { end: FORMAT.into(), count: 3, sha256: d.to_hex() };
        let spaced = trailer_line(3, &d).replace(',', ", ");
        assert!(matches!(v.clone().finish(spaced.as_bytes(), &t), Err(BundleError::TrailerNotCanonical { .. })));
        let wrong = Trailer { sha256: Hash([0; 32]).to_hex(), ..t.clone() };
        assert!(matches!(v.clone().finish(b"", &wrong), Err(BundleError::DigestMismatch { .. })));
        v.finish(trailer_line(3, &d).as_bytes(), &t).unwrap();
    }
}
