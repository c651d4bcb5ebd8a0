//! C2SP tlog-cosignature, Ed25519 `cosignature/v1` (signature type 0x04).
//!
//! A cosignature is a signed-note signature line on a checkpoint,
//! `— <cosigner name> base64(key id ‖ timestamped_signature)`, where
//! `timestamped_signature` is an 8-byte big-endian POSIX timestamp followed by the
//! 64-byte Ed25519 signature of
//!
//! ```text
//! cosignature/v1\n
//! time <timestamp>\n
//! <the whole checkpoint body, with its final newline>
//! ```
//!
//! The key ID is the first 4 bytes of `SHA-256(name ‖ 0x0A ‖ 0x04 ‖ public key)`, and
//! the verifier key (vkey) is `<name>+<hex key id>+<base64(0x04 ‖ public key)>`.
//! Cosignature lines by keys a verifier does not know are ignored, never an error.
//!
//! ```
//! use stele_tlog::cosignature::Cosigner;
//! let w = Cosigner::from_seed("witness.example", &[1; 32]).unwrap();
//! let body = "log.example\n1\nAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\n";
//! let line = w.cosign(body, 1_700_000_000).unwrap();
//! let note = stele_tlog::note::Note::parse(format!("{body}\n{line}").as_bytes()).unwrap();
//! assert_eq!(w.verifier().verify_note(&note).unwrap(), 1_700_000_000);
//! ```

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};

use crate::note::{Note, NoteSignature, check_key_name, check_text, key_id};

/// Signature type byte of Ed25519 `cosignature/v1` keys (key ID derivation and vkeys).
pub const ALG_COSIGNATURE_V1: u8 = 0x04;
/// First line of the `cosignature/v1` signed message (domain separation).
pub const COSIGNATURE_V1_HEADER: &str = "cosignature/v1\n";
/// Length of the decoded signature field: key ID, timestamp and Ed25519 signature.
pub const COSIGNATURE_V1_LEN: usize = 4 + 8 + 64;

/// Errors of cosignature keys, signing and verification.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CosignatureError {
    /// A cosigner key name is empty or contains whitespace or `+`.
    #[error("invalid cosigner name {0:?}")]
    InvalidKeyName(String),
    /// A verifier or private key string is malformed; the string says how.
    #[error("malformed cosigner key: {0}")]
    MalformedKey(&'static str),
    /// The checkpoint body is not valid note text.
    #[error("malformed checkpoint body: {0}")]
    MalformedBody(&'static str),
    /// The timestamp exceeds 2^63 - 1.
    #[error("cosignature timestamp {0} exceeds 2^63-1")]
    TimestampOutOfRange(u64),
    /// The note carries no cosignature by this cosigner.
    #[error("no cosignature by {0}")]
    Missing(String),
    /// A cosignature by this cosigner does not verify.
    #[error("invalid cosignature by {0}")]
    Invalid(String),
    /// Fewer than the required number of trusted cosigners cosigned.
    #[error("{got} of the required {want} witness cosignatures verified")]
    NotEnough {
        /// Distinct trusted cosigners whose cosignature verified.
        got: usize,
        /// Cosignatures required.
        want: usize,
    },
}

/// The message a `cosignature/v1` signs: header line, `time <timestamp>` line and the
/// whole checkpoint body (which ends in a newline).
pub fn signed_message(timestamp: u64, body: &str) -> String {
    format!("{COSIGNATURE_V1_HEADER}time {timestamp}\n{body}")
}

/// Verifier of Ed25519 `cosignature/v1` cosignatures by one cosigner (witness).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CosignatureVerifier {
    name: String,
    key_id: [u8; 4],
    key: VerifyingKey,
}

impl CosignatureVerifier {
    /// Builds a verifier for the Ed25519 public key `key` of the cosigner `name`.
    pub fn new(name: &str, key: VerifyingKey) -> Result<CosignatureVerifier, CosignatureError> {
        check_key_name(name).map_err(|_| CosignatureError::InvalidKeyName(name.to_string()))?;
        let key_id = key_id(name, ALG_COSIGNATURE_V1, key.as_bytes());
        Ok(CosignatureVerifier { name: name.to_string(), key_id, key })
    }

    /// Parses a vkey `<name>+<8 hex digits key id>+<base64(0x04 ‖ 32-byte key)>`; the
    /// key ID must match the one derived from name and key.
    pub fn parse(vkey: &str) -> Result<CosignatureVerifier, CosignatureError> {
        let vkey = vkey.trim();
        let (name, rest) = vkey.split_once('+').ok_or(CosignatureError::MalformedKey("missing '+'"))?;
        let (hex_id, b64) = rest.split_once('+').ok_or(CosignatureError::MalformedKey("missing second '+'"))?;
        let id = parse_hex_id(hex_id)?;
        let raw = BASE64.decode(b64).map_err(|_| CosignatureError::MalformedKey("key is not base64"))?;
        if raw.len() != 33 || raw[0] != ALG_COSIGNATURE_V1 {
            return Err(CosignatureError::MalformedKey("not a cosignature/v1 Ed25519 key (type 0x04, 32 bytes)"));
        }
        let bytes: [u8; 32] = raw[1..].try_into().map_err(|_| CosignatureError::MalformedKey("length"))?;
        let key = VerifyingKey::from_bytes(&bytes)
            .map_err(|_| CosignatureError::MalformedKey("not a valid Ed25519 point"))?;
        let v = CosignatureVerifier::new(name, key)?;
        if v.key_id != id {
            return Err(CosignatureError::MalformedKey("key id does not match name and key"));
        }
        Ok(v)
    }

    /// The vkey string `<name>+<hex key id>+<base64(0x04 ‖ key)>`.
    pub fn to_vkey(&self) -> String {
        let mut raw = Vec::with_capacity(33);
        raw.push(ALG_COSIGNATURE_V1);
        raw.extend_from_slice(self.key.as_bytes());
        format!("{}+{}+{}", self.name, hex_id(&self.key_id), BASE64.encode(raw))
    }

    /// Cosigner name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Key ID (4 bytes).
    pub fn key_id(&self) -> [u8; 4] {
        self.key_id
    }

    /// Whether `sig` is a signature line by this cosigner (same name and key ID).
    pub fn matches(&self, sig: &NoteSignature) -> bool {
        sig.name == self.name && sig.key_id == self.key_id
    }

    /// Checks one signature field (without the key ID: timestamp ‖ signature) over the
    /// checkpoint `body`. Returns the cosignature's timestamp if it verifies.
    pub fn verify_signature(&self, body: &str, signature: &[u8]) -> Option<u64> {
        if signature.len() != COSIGNATURE_V1_LEN - 4 {
            return None;
        }
        let timestamp = u64::from_be_bytes(signature[..8].try_into().ok()?);
        if timestamp > i64::MAX as u64 {
            return None;
        }
        let sig = ed25519_dalek::Signature::from_slice(&signature[8..]).ok()?;
        let msg = signed_message(timestamp, body);
        self.key.verify_strict(msg.as_bytes(), &sig).ok()?;
        Some(timestamp)
    }

    /// Finds this cosigner's signature lines on `note` and verifies them. Returns the
    /// newest verified timestamp; [`CosignatureError::Missing`] if there is none and
    /// [`CosignatureError::Invalid`] if one by this key does not verify.
    pub fn verify_note(&self, note: &Note) -> Result<u64, CosignatureError> {
        let mut newest = None;
        for sig in note.signatures.iter().filter(|s| self.matches(s)) {
            let t = self
                .verify_signature(&note.text, &sig.signature)
                .ok_or_else(|| CosignatureError::Invalid(self.to_vkey()))?;
            newest = newest.max(Some(t));
        }
        newest.ok_or_else(|| CosignatureError::Missing(self.name.clone()))
    }
}

/// Checks that at least `k` distinct cosigners of `verifiers` cosigned `note`. Lines by
/// unknown keys are ignored; a line by a known key that fails is an error. Returns the
/// names of the cosigners whose cosignature verified.
pub fn verify_quorum(
    note: &Note,
    verifiers: &[CosignatureVerifier],
    k: usize,
) -> Result<Vec<String>, CosignatureError> {
    let mut ok: Vec<&CosignatureVerifier> = Vec::new();
    for v in verifiers {
        match v.verify_note(note) {
            // The same cosigner listed twice counts once.
            Ok(_) if !ok.iter().any(|o| o.name == v.name && o.key == v.key) => ok.push(v),
            Ok(_) | Err(CosignatureError::Missing(_)) => {}
            Err(e) => return Err(e),
        }
    }
    if ok.len() < k {
        return Err(CosignatureError::NotEnough { got: ok.len(), want: k });
    }
    Ok(ok.iter().map(|v| v.name.clone()).collect())
}

/// An Ed25519 `cosignature/v1` cosigner (witness key): name plus private key.
#[derive(Clone)]
pub struct Cosigner {
    name: String,
    key_id: [u8; 4],
    key: SigningKey,
}

impl std::fmt::Debug for Cosigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The private key is never printed.
        f.debug_struct("Cosigner")
            .field("name", &self.name)
            .field("key_id", &hex_id(&self.key_id))
            .finish_non_exhaustive()
    }
}

impl Cosigner {
    /// Builds a cosigner from a 32-byte Ed25519 seed.
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<Cosigner, CosignatureError> {
        check_key_name(name).map_err(|_| CosignatureError::InvalidKeyName(name.to_string()))?;
        let key = SigningKey::from_bytes(seed);
        let key_id = key_id(name, ALG_COSIGNATURE_V1, key.verifying_key().as_bytes());
        Ok(Cosigner { name: name.to_string(), key_id, key })
    }

    /// Parses a private key string `PRIVATE+KEY+<name>+<hex id>+<base64(0x04 ‖ seed)>`
    /// (signed-note private key syntax with the cosignature/v1 type byte).
    pub fn parse(skey: &str) -> Result<Cosigner, CosignatureError> {
        let rest = skey
            .trim()
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(CosignatureError::MalformedKey("missing PRIVATE+KEY+ prefix"))?;
        let mut parts = rest.splitn(3, '+');
        let (Some(name), Some(hex), Some(b64)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(CosignatureError::MalformedKey("expected name+id+key"));
        };
        let id = parse_hex_id(hex)?;
        let raw = BASE64.decode(b64).map_err(|_| CosignatureError::MalformedKey("key is not base64"))?;
        if raw.len() != 33 || raw[0] != ALG_COSIGNATURE_V1 {
            return Err(CosignatureError::MalformedKey("not a cosignature/v1 private key (type 0x04)"));
        }
        let seed: [u8; 32] = raw[1..].try_into().map_err(|_| CosignatureError::MalformedKey("length"))?;
        let c = Cosigner::from_seed(name, &seed)?;
        if c.key_id != id {
            return Err(CosignatureError::MalformedKey("key id does not match name and key"));
        }
        Ok(c)
    }

    /// The private key string (keep it secret).
    pub fn to_private_key_string(&self) -> String {
        let mut raw = Vec::with_capacity(33);
        raw.push(ALG_COSIGNATURE_V1);
        raw.extend_from_slice(self.key.as_bytes());
        format!("PRIVATE+KEY+{}+{}+{}", self.name, hex_id(&self.key_id), BASE64.encode(raw))
    }

    /// The matching verifier.
    pub fn verifier(&self) -> CosignatureVerifier {
        CosignatureVerifier { name: self.name.clone(), key_id: self.key_id, key: self.key.verifying_key() }
    }

    /// Cosigner name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Cosigns the checkpoint `body` (note text, ending in a newline) at `timestamp`
    /// (POSIX seconds) and returns the signature line `— <name> <base64>\n`.
    pub fn cosign(&self, body: &str, timestamp: u64) -> Result<String, CosignatureError> {
        check_text(body).map_err(|_| CosignatureError::MalformedBody("not valid note text"))?;
        if timestamp > i64::MAX as u64 {
            return Err(CosignatureError::TimestampOutOfRange(timestamp));
        }
        let sig = self.key.sign(signed_message(timestamp, body).as_bytes());
        let mut raw = Vec::with_capacity(COSIGNATURE_V1_LEN);
        raw.extend_from_slice(&self.key_id);
        raw.extend_from_slice(&timestamp.to_be_bytes());
        raw.extend_from_slice(&sig.to_bytes());
        Ok(format!("\u{2014} {} {}\n", self.name, BASE64.encode(raw)))
    }
}

fn parse_hex_id(s: &str) -> Result<[u8; 4], CosignatureError> {
    if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(CosignatureError::MalformedKey("key id must be 8 hex digits"));
    }
    let mut out = [0u8; 4];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16)
            .map_err(|_| CosignatureError::MalformedKey("key id is not hex"))?;
    }
    Ok(out)
}

fn hex_id(id: &[u8; 4]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = "log.example\n7\nAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\n";

    #[test]
    fn cosign_verify_round_trip_and_tamper() {
        let w = Cosigner::from_seed("witness.example", &[3; 32]).unwrap();
        let v = CosignatureVerifier::parse(&w.verifier().to_vkey()).unwrap();
        assert_eq!(v, w.verifier());
        let line = w.cosign(BODY, 1234).unwrap();
        let note = Note::parse(format!("{BODY}\n{line}").as_bytes()).unwrap();
        assert_eq!(v.verify_note(&note).unwrap(), 1234);
        let changed = Note::parse(format!("{}\n{line}", BODY.replace('7', "8")).as_bytes()).unwrap();
        assert!(matches!(v.verify_note(&changed), Err(CosignatureError::Invalid(_))));
        assert_eq!(verify_quorum(&note, std::slice::from_ref(&v), 1).unwrap(), vec!["witness.example".to_string()]);
        let other = Cosigner::from_seed("other.example", &[4; 32]).unwrap().verifier();
        assert!(matches!(verify_quorum(&note, &[v, other], 2), Err(CosignatureError::NotEnough { got: 1, want: 2 })));
    }

    #[test]
    fn key_id_uses_type_0x04_and_not_0x01() {
        let w = Cosigner::from_seed("w", &[5; 32]).unwrap();
        let pk = w.verifier().key;
        assert_eq!(w.verifier().key_id(), key_id("w", 0x04, pk.as_bytes()));
        assert_ne!(w.verifier().key_id(), key_id("w", 0x01, pk.as_bytes()));
        // A plain note-signature vkey (type 0x01) is not a cosigner vkey.
        let plain = crate::note::NoteSigner::from_seed("w", &[5; 32]).unwrap().verifier().to_vkey();
        assert!(CosignatureVerifier::parse(&plain).is_err());
        assert!(signed_message(0, BODY).starts_with("cosignature/v1\ntime 0\nlog.example\n"));
    }

    #[test]
    fn private_key_round_trip_and_rejects_huge_timestamp() {
        let w = Cosigner::from_seed("w.example", &[6; 32]).unwrap();
        let again = Cosigner::parse(&w.to_private_key_string()).unwrap();
        assert_eq!(again.verifier(), w.verifier());
        assert!(!format!("{w:?}").contains(&w.to_private_key_string()[20..]));
        assert!(matches!(w.cosign(BODY, 1 << 63), Err(CosignatureError::TimestampOutOfRange(_))));
    }
}
