//! The stele leaf record, version 1: a fixed 68-byte record that commits to one
//! entry without revealing it.
//!
//! Byte layout (all integers big-endian):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 1 | leaf version, `0x01` |
//! | 1 | 1 | payload format code (1 JSON, 2 Kubernetes audit event, 3 stele record) |
//! | 2 | 2 | flags, zero in version 1 |
//! | 4 | 4 | stream id |
//! | 8 | 8 | received time, nanoseconds since the Unix epoch, UTC |
//! | 16 | 4 | payload length in bytes |
//! | 20 | 16 | salt: 16 random bytes chosen when the entry was appended |
//! | 36 | 32 | payload digest: `SHA-256(salt ‖ payload)` |
//!
//! The leaf hash is `SHA-256(0x00 ‖ leaf bytes)` (RFC 9162 §2.1.1). Because the salt
//! is random and secret to readers of the entry, a leaf hash reveals nothing about
//! the payload, even one an attacker can guess; whoever holds the payload and its leaf
//! can show the payload is committed to. Deleting a payload leaves its leaf and every
//! proof intact.

use sha2::{Digest, Sha256};

use crate::hash::Hash;

/// Size of a version-1 leaf record in bytes.
pub const LEAF_LEN: usize = 68;
/// Leaf record version written by this release.
pub const LEAF_VERSION: u8 = 1;
/// Salt length in bytes.
pub const SALT_LEN: usize = 16;

/// Errors of leaf decoding.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeafError {
    /// The record is not exactly [`LEAF_LEN`] bytes.
    #[error("leaf record is {0} bytes, expected 68")]
    WrongLength(usize),
    /// The leaf version is not one this release reads.
    #[error("leaf version {0} is not supported (this release reads version 1); upgrade stele")]
    UnsupportedVersion(u8),
    /// Reserved flag bits are set.
    #[error("leaf flags {0:#06x} are reserved and must be zero")]
    ReservedFlags(u16),
}

/// A decoded version-1 leaf record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leaf {
    /// Payload format code.
    pub payload_format: u8,
    /// Stream the entry belongs to.
    pub stream_id: u32,
    /// Time stele received the entry: nanoseconds since the Unix epoch, UTC.
    pub received_ns: u64,
    /// Payload length in bytes.
    pub payload_len: u32,
    /// Random salt.
    pub salt: [u8; SALT_LEN],
    /// `SHA-256(salt ‖ payload)`.
    pub payload_digest: Hash,
}

impl Leaf {
    /// Builds the leaf for `payload`, computing its salted digest.
    pub fn new(payload_format: u8, stream_id: u32, received_ns: u64, salt: [u8; SALT_LEN], payload: &[u8]) -> Leaf {
        Leaf {
            payload_format,
            stream_id,
            received_ns,
            payload_len: u32::try_from(payload.len()).expect("payload larger than 4 GiB"),
            salt,
            payload_digest: payload_digest(&salt, payload),
        }
    }

    /// Encodes the 68-byte record.
    pub fn encode(&self) -> [u8; LEAF_LEN] {
        let mut b = [0u8; LEAF_LEN];
        b[0] = LEAF_VERSION;
        b[1] = self.payload_format;
        b[4..8].copy_from_slice(&self.stream_id.to_be_bytes());
        b[8..16].copy_from_slice(&self.received_ns.to_be_bytes());
        b[16..20].copy_from_slice(&self.payload_len.to_be_bytes());
        b[20..36].copy_from_slice(&self.salt);
        b[36..68].copy_from_slice(&self.payload_digest.0);
        b
    }

    /// Decodes a record, rejecting other lengths, unknown versions and set flags.
    pub fn decode(bytes: &[u8]) -> Result<Leaf, LeafError> {
        if bytes.len() != LEAF_LEN {
            return Err(LeafError::WrongLength(bytes.len()));
        }
        if bytes[0] != LEAF_VERSION {
            return Err(LeafError::UnsupportedVersion(bytes[0]));
        }
        let flags = u16::from_be_bytes([bytes[2], bytes[3]]);
        if flags != 0 {
            return Err(LeafError::ReservedFlags(flags));
        }
        let mut salt = [0u8; SALT_LEN];
        salt.copy_from_slice(&bytes[20..36]);
        Ok(Leaf {
            payload_format: bytes[1],
            stream_id: u32::from_be_bytes(bytes[4..8].try_into().expect("4 bytes")),
            received_ns: u64::from_be_bytes(bytes[8..16].try_into().expect("8 bytes")),
            payload_len: u32::from_be_bytes(bytes[16..20].try_into().expect("4 bytes")),
            salt,
            payload_digest: Hash(bytes[36..68].try_into().expect("32 bytes")),
        })
    }

    /// Whether `payload` is the payload this leaf commits to (length and salted digest).
    pub fn matches_payload(&self, payload: &[u8]) -> bool {
        payload.len() == self.payload_len as usize && payload_digest(&self.salt, payload) == self.payload_digest
    }
}

/// `SHA-256(salt ‖ payload)`.
pub fn payload_digest(salt: &[u8; SALT_LEN], payload: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(payload);
    Hash(h.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_round_trip_and_layout() {
        let l = Leaf::new(2, 0x01020304, 0x1122334455667788, [0xaa; 16], b"{\"a\":1}");
        let b = l.encode();
        assert_eq!(b[0], 1);
        assert_eq!(b[1], 2);
        assert_eq!(&b[4..8], &[1, 2, 3, 4]);
        assert_eq!(&b[8..16], &[0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88]);
        assert_eq!(&b[16..20], &[0, 0, 0, 7]);
        assert_eq!(Leaf::decode(&b).unwrap(), l);
        assert!(l.matches_payload(b"{\"a\":1}"));
        assert!(!l.matches_payload(b"{\"a\":2}"));
        let mut bad = b;
        bad[0] = 2;
        assert_eq!(Leaf::decode(&bad), Err(LeafError::UnsupportedVersion(2)));
        let mut bad = b;
        bad[3] = 1;
        assert_eq!(Leaf::decode(&bad), Err(LeafError::ReservedFlags(1)));
        assert_eq!(Leaf::decode(&b[..67]), Err(LeafError::WrongLength(67)));
    }

    #[test]
    fn digest_is_salted() {
        let a = payload_digest(&[0; 16], b"x");
        let b = payload_digest(&[1; 16], b"x");
        assert_ne!(a, b);
        assert_eq!(a, crate::hash::sha256(&[&[0u8; 16][..], b"x"].concat()));
    }
}
