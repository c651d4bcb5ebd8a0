//! C2SP tlog-cosignature: Ed25519 `cosignature/v1` (signature type 0x04) and, with
//! the `ml-dsa` feature, ML-DSA-44 `subtree/v1` (signature type 0x06; see
//! [`subtree_message`]).
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

/// A verifier of one cosigner's cosignatures on a checkpoint note, whatever its
/// signature type: Ed25519 [`CosignatureVerifier`], ML-DSA-44 `MlDsaVerifier` (with
/// the `ml-dsa` feature) or either of them as [`AnyCosignatureVerifier`].
pub trait VerifyCosignature {
    /// Cosigner name (the signature line's key name).
    fn cosigner_name(&self) -> &str;
    /// Finds this cosigner's lines on `note` and verifies them; returns the newest
    /// verified timestamp, [`CosignatureError::Missing`] if there is none and
    /// [`CosignatureError::Invalid`] if one by this key does not verify.
    fn verify_cosigned_note(&self, note: &Note) -> Result<u64, CosignatureError>;
}

impl VerifyCosignature for CosignatureVerifier {
    fn cosigner_name(&self) -> &str {
        &self.name
    }

    fn verify_cosigned_note(&self, note: &Note) -> Result<u64, CosignatureError> {
        self.verify_note(note)
    }
}

/// A configured cosigner key of either supported type, so that one policy can mix
/// Ed25519 (`cosignature/v1`, 0x04) and ML-DSA-44 (`subtree/v1`, 0x06) witnesses.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AnyCosignatureVerifier {
    /// Ed25519 `cosignature/v1` (type 0x04).
    Ed25519(CosignatureVerifier),
    /// ML-DSA-44 `subtree/v1` (type 0x06).
    #[cfg(feature = "ml-dsa")]
    MlDsa44(MlDsaVerifier),
}

impl AnyCosignatureVerifier {
    /// Parses a vkey of type 0x04 (Ed25519) or, with the `ml-dsa` feature, 0x06
    /// (ML-DSA-44).
    pub fn parse(vkey: &str) -> Result<AnyCosignatureVerifier, CosignatureError> {
        #[cfg(feature = "ml-dsa")]
        if vkey_type(vkey) == Some(ALG_ML_DSA_44) {
            return MlDsaVerifier::parse(vkey).map(AnyCosignatureVerifier::MlDsa44);
        }
        CosignatureVerifier::parse(vkey).map(AnyCosignatureVerifier::Ed25519)
    }
}

impl VerifyCosignature for AnyCosignatureVerifier {
    fn cosigner_name(&self) -> &str {
        match self {
            AnyCosignatureVerifier::Ed25519(v) => v.cosigner_name(),
            #[cfg(feature = "ml-dsa")]
            AnyCosignatureVerifier::MlDsa44(v) => v.cosigner_name(),
        }
    }

    fn verify_cosigned_note(&self, note: &Note) -> Result<u64, CosignatureError> {
        match self {
            AnyCosignatureVerifier::Ed25519(v) => v.verify_cosigned_note(note),
            #[cfg(feature = "ml-dsa")]
            AnyCosignatureVerifier::MlDsa44(v) => v.verify_cosigned_note(note),
        }
    }
}

/// The signature type byte of a vkey `<name>+<hex id>+<base64(type ‖ key)>`, if it
/// has that shape.
#[cfg(feature = "ml-dsa")]
fn vkey_type(vkey: &str) -> Option<u8> {
    let b64 = vkey.trim().splitn(3, '+').nth(2)?;
    BASE64.decode(b64).ok()?.first().copied()
}

/// Checks that at least `k` distinct cosigners of `verifiers` cosigned `note`. Lines by
/// unknown keys are ignored; a line by a known key that fails is an error. Cosigners
/// are counted by name: one witness configured with both an Ed25519 and an ML-DSA-44
/// key (or listed twice) counts once. Returns the names of the cosigners whose
/// cosignature verified.
pub fn verify_quorum<V: VerifyCosignature>(
    note: &Note,
    verifiers: &[V],
    k: usize,
) -> Result<Vec<String>, CosignatureError> {
    let mut ok: Vec<String> = Vec::new();
    for v in verifiers {
        match v.verify_cosigned_note(note) {
            Ok(_) if !ok.iter().any(|o| o == v.cosigner_name()) => ok.push(v.cosigner_name().to_string()),
            Ok(_) | Err(CosignatureError::Missing(_)) => {}
            Err(e) => return Err(e),
        }
    }
    if ok.len() < k {
        return Err(CosignatureError::NotEnough { got: ok.len(), want: k });
    }
    Ok(ok)
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

/// Signature type byte of ML-DSA-44 `subtree/v1` keys (key ID derivation and vkeys).
pub const ALG_ML_DSA_44: u8 = 0x06;
/// The 12-byte label that starts the ML-DSA-44 signed message.
pub const SUBTREE_V1_LABEL: &[u8; 12] = b"subtree/v1\n\0";
/// Length of an ML-DSA-44 public key.
pub const ML_DSA_44_PUBLIC_KEY_LEN: usize = 1312;
/// Length of an ML-DSA-44 signature.
pub const ML_DSA_44_SIGNATURE_LEN: usize = 2420;
/// Length of the decoded ML-DSA-44 signature field: key ID, timestamp, signature.
pub const ML_DSA_44_COSIGNATURE_LEN: usize = 4 + 8 + ML_DSA_44_SIGNATURE_LEN;

/// The `cosigned_message` an ML-DSA-44 cosignature signs (C2SP tlog-cosignature):
///
/// ```text
/// "subtree/v1\n\0" ‖ u8 len ‖ cosigner name ‖ u64 timestamp ‖ u8 len ‖ log origin
///                  ‖ u64 start ‖ u64 end ‖ 32-byte root hash
/// ```
///
/// integers big-endian. For a checkpoint `start` is 0 and `end` its size; a non-zero
/// `start` requires a zero `timestamp`. Unlike `cosignature/v1` it commits to the
/// cosigner name and not to checkpoint extension lines.
pub fn subtree_message(
    cosigner_name: &str,
    timestamp: u64,
    log_origin: &str,
    start: u64,
    end: u64,
    hash: &crate::Hash,
) -> Result<Vec<u8>, CosignatureError> {
    let short = |s: &str| !s.is_empty() && s.len() < 256;
    if !short(cosigner_name) {
        return Err(CosignatureError::InvalidKeyName(cosigner_name.to_string()));
    }
    if !short(log_origin) {
        return Err(CosignatureError::MalformedBody("log origin must be 1 to 255 bytes"));
    }
    if timestamp > i64::MAX as u64 {
        return Err(CosignatureError::TimestampOutOfRange(timestamp));
    }
    if start != 0 && timestamp != 0 {
        return Err(CosignatureError::MalformedBody("a subtree with a non-zero start must have timestamp 0"));
    }
    if start > end {
        return Err(CosignatureError::MalformedBody("subtree start is beyond its end"));
    }
    let mut m = Vec::with_capacity(12 + 2 + cosigner_name.len() + log_origin.len() + 24 + 32);
    m.extend_from_slice(SUBTREE_V1_LABEL);
    m.push(cosigner_name.len() as u8);
    m.extend_from_slice(cosigner_name.as_bytes());
    m.extend_from_slice(&timestamp.to_be_bytes());
    m.push(log_origin.len() as u8);
    m.extend_from_slice(log_origin.as_bytes());
    m.extend_from_slice(&start.to_be_bytes());
    m.extend_from_slice(&end.to_be_bytes());
    m.extend_from_slice(&hash.0);
    Ok(m)
}

/// The [`subtree_message`] for a whole checkpoint `body` (start 0, end its tree size,
/// hash its root); extension lines are not part of it.
pub fn checkpoint_subtree_message(name: &str, timestamp: u64, body: &str) -> Result<Vec<u8>, CosignatureError> {
    let cp = crate::checkpoint::Checkpoint::parse_body(body)
        .map_err(|_| CosignatureError::MalformedBody("not a checkpoint"))?;
    subtree_message(name, timestamp, &cp.origin, 0, cp.tree_size, &cp.root_hash)
}

#[cfg(feature = "ml-dsa")]
pub use ml_dsa_impl::{MlDsaCosigner, MlDsaVerifier};

#[cfg(feature = "ml-dsa")]
mod ml_dsa_impl {
    use ml_dsa::signature::{Keypair as _, Signer as _, Verifier as _};
    use ml_dsa::{EncodedVerifyingKey, MlDsa44, Signature, SigningKey, VerifyingKey};

    use super::*;

    /// Verifier of ML-DSA-44 `subtree/v1` cosignatures (type 0x06) by one cosigner.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct MlDsaVerifier {
        name: String,
        key_id: [u8; 4],
        key: Vec<u8>,
    }

    impl MlDsaVerifier {
        /// Builds a verifier for the 1312-byte ML-DSA-44 public key of cosigner `name`.
        pub fn new(name: &str, public_key: &[u8]) -> Result<MlDsaVerifier, CosignatureError> {
            check_key_name(name).map_err(|_| CosignatureError::InvalidKeyName(name.to_string()))?;
            if name.len() > 255 {
                return Err(CosignatureError::InvalidKeyName(name.to_string()));
            }
            if public_key.len() != ML_DSA_44_PUBLIC_KEY_LEN {
                return Err(CosignatureError::MalformedKey("an ML-DSA-44 public key is 1312 bytes"));
            }
            Ok(MlDsaVerifier {
                name: name.to_string(),
                key_id: key_id(name, ALG_ML_DSA_44, public_key),
                key: public_key.to_vec(),
            })
        }

        /// Parses a vkey `<name>+<hex key id>+<base64(0x06 ‖ 1312-byte key)>`; the key
        /// ID must match the one derived from name and key.
        pub fn parse(vkey: &str) -> Result<MlDsaVerifier, CosignatureError> {
            let vkey = vkey.trim();
            let (name, rest) = vkey.split_once('+').ok_or(CosignatureError::MalformedKey("missing '+'"))?;
            let (hex_id, b64) = rest.split_once('+').ok_or(CosignatureError::MalformedKey("missing second '+'"))?;
            let id = parse_hex_id(hex_id)?;
            let raw = BASE64.decode(b64).map_err(|_| CosignatureError::MalformedKey("key is not base64"))?;
            if raw.first() != Some(&ALG_ML_DSA_44) {
                return Err(CosignatureError::MalformedKey("not an ML-DSA-44 cosigner key (type 0x06)"));
            }
            let v = MlDsaVerifier::new(name, &raw[1..])?;
            if v.key_id != id {
                return Err(CosignatureError::MalformedKey("key id does not match name and key"));
            }
            Ok(v)
        }

        /// The vkey string `<name>+<hex key id>+<base64(0x06 ‖ key)>`.
        pub fn to_vkey(&self) -> String {
            let mut raw = Vec::with_capacity(1 + self.key.len());
            raw.push(ALG_ML_DSA_44);
            raw.extend_from_slice(&self.key);
            format!("{}+{}+{}", self.name, hex_id(&self.key_id), BASE64.encode(raw))
        }

        /// Cosigner name.
        pub fn name(&self) -> &str {
            &self.name
        }

        /// Key ID: `SHA-256(name ‖ "\n" ‖ 0x06 ‖ public key)[:4]`.
        pub fn key_id(&self) -> [u8; 4] {
            self.key_id
        }

        /// The 1312-byte public key.
        pub fn public_key(&self) -> &[u8] {
            &self.key
        }

        /// Whether `sig` is a signature line by this cosigner (same name and key ID).
        pub fn matches(&self, sig: &NoteSignature) -> bool {
            sig.name == self.name && sig.key_id == self.key_id
        }

        /// Checks one signature field (without the key ID: timestamp ‖ signature)
        /// over the checkpoint `body`. Returns the timestamp if it verifies.
        pub fn verify_signature(&self, body: &str, signature: &[u8]) -> Option<u64> {
            if signature.len() != ML_DSA_44_COSIGNATURE_LEN - 4 {
                return None;
            }
            let timestamp = u64::from_be_bytes(signature[..8].try_into().ok()?);
            let msg = checkpoint_subtree_message(&self.name, timestamp, body).ok()?;
            let enc = EncodedVerifyingKey::<MlDsa44>::try_from(self.key.as_slice()).ok()?;
            let key = VerifyingKey::<MlDsa44>::decode(&enc);
            let sig = Signature::<MlDsa44>::try_from(&signature[8..]).ok()?;
            key.verify(&msg, &sig).ok()?;
            Some(timestamp)
        }

        /// Finds this cosigner's lines on `note` and verifies them; see
        /// [`CosignatureVerifier::verify_note`].
        pub fn verify_note(&self, note: &Note) -> Result<u64, CosignatureError> {
            let mut newest = None;
            for sig in note.signatures.iter().filter(|s| self.matches(s)) {
                let t = self
                    .verify_signature(&note.text, &sig.signature)
                    .ok_or_else(|| CosignatureError::Invalid(format!("{}+{}", self.name, hex_id(&self.key_id))))?;
                newest = newest.max(Some(t));
            }
            newest.ok_or_else(|| CosignatureError::Missing(self.name.clone()))
        }
    }

    impl VerifyCosignature for MlDsaVerifier {
        fn cosigner_name(&self) -> &str {
            &self.name
        }

        fn verify_cosigned_note(&self, note: &Note) -> Result<u64, CosignatureError> {
            self.verify_note(note)
        }
    }

    /// An ML-DSA-44 `subtree/v1` cosigner: name plus 32-byte FIPS 204 seed. Signs
    /// with the deterministic variant and an empty context string.
    #[derive(Clone)]
    pub struct MlDsaCosigner {
        name: String,
        seed: [u8; 32],
        key: SigningKey<MlDsa44>,
        verifier: MlDsaVerifier,
    }

    impl std::fmt::Debug for MlDsaCosigner {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            // The private key is never printed.
            f.debug_struct("MlDsaCosigner")
                .field("name", &self.name)
                .field("key_id", &hex_id(&self.verifier.key_id))
                .finish_non_exhaustive()
        }
    }

    impl MlDsaCosigner {
        /// Builds a cosigner from a 32-byte ML-DSA key generation seed (ξ).
        pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<MlDsaCosigner, CosignatureError> {
            let key = SigningKey::<MlDsa44>::from_seed(&(*seed).into());
            let public = key.verifying_key().encode();
            let verifier = MlDsaVerifier::new(name, public.as_slice())?;
            Ok(MlDsaCosigner { name: name.to_string(), seed: *seed, key, verifier })
        }

        /// Parses `PRIVATE+KEY+<name>+<hex id>+<base64(0x06 ‖ 32-byte seed)>` (signed-note
        /// private key syntax with the ML-DSA-44 type byte; stele's own convention).
        pub fn parse(skey: &str) -> Result<MlDsaCosigner, CosignatureError> {
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
            if raw.len() != 33 || raw[0] != ALG_ML_DSA_44 {
                return Err(CosignatureError::MalformedKey("not an ML-DSA-44 private key (type 0x06, 32-byte seed)"));
            }
            let seed: [u8; 32] = raw[1..].try_into().map_err(|_| CosignatureError::MalformedKey("length"))?;
            let c = MlDsaCosigner::from_seed(name, &seed)?;
            if c.verifier.key_id != id {
                return Err(CosignatureError::MalformedKey("key id does not match name and key"));
            }
            Ok(c)
        }

        /// The private key string (keep it secret).
        pub fn to_private_key_string(&self) -> String {
            let mut raw = Vec::with_capacity(33);
            raw.push(ALG_ML_DSA_44);
            raw.extend_from_slice(&self.seed);
            format!("PRIVATE+KEY+{}+{}+{}", self.name, hex_id(&self.verifier.key_id), BASE64.encode(raw))
        }

        /// The matching verifier.
        pub fn verifier(&self) -> MlDsaVerifier {
            self.verifier.clone()
        }

        /// Cosigner name.
        pub fn name(&self) -> &str {
            &self.name
        }

        /// Cosigns the checkpoint `body` at `timestamp` (POSIX seconds; 0 means no
        /// statement about being the largest tree seen) and returns the signature line
        /// `— <name> base64(key id ‖ timestamp ‖ 2420-byte signature)\n`.
        pub fn cosign(&self, body: &str, timestamp: u64) -> Result<String, CosignatureError> {
            check_text(body).map_err(|_| CosignatureError::MalformedBody("not valid note text"))?;
            let msg = checkpoint_subtree_message(&self.name, timestamp, body)?;
            let sig = self.key.try_sign(&msg).map_err(|_| CosignatureError::MalformedBody("ML-DSA signing failed"))?;
            let mut raw = Vec::with_capacity(ML_DSA_44_COSIGNATURE_LEN);
            raw.extend_from_slice(&self.verifier.key_id);
            raw.extend_from_slice(&timestamp.to_be_bytes());
            raw.extend_from_slice(sig.encode().as_slice());
            Ok(format!("\u{2014} {} {}\n", self.name, BASE64.encode(raw)))
        }
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
