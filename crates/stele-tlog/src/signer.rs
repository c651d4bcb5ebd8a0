//! The checkpoint-signer boundary: what a log needs from whatever holds its private key.
//!
//! A [`CheckpointSigner`] has a key name (the log's origin, C2SP tlog-checkpoint), a
//! 4-byte key ID (C2SP signed-note) and signs messages with Ed25519. The key itself may
//! be in this process ([`NoteSigner`], loaded from the data directory) or elsewhere
//! (stele-store's Unix-socket signer, a KMS, a PKCS#11 module): callers only see
//! signatures and errors, never key material.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::note::{NoteSigner, NoteVerifier, check_text};

/// Length of an Ed25519 signature, bytes (RFC 8032 §5.1.6).
pub const SIGNATURE_LEN: usize = 64;

/// Why a signer produced no signature.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignerError {
    /// The signer could not be reached (socket missing, connection refused or cut,
    /// timeout); the string names the endpoint and the cause.
    #[error("signer unavailable: {0}")]
    Unavailable(String),
    /// The signer was reached and refused to sign; the string is its reason (for
    /// example a tree size smaller than one it already signed).
    #[error("signer refused: {0}")]
    Refused(String),
    /// The signer answered something that is not a valid answer (bad framing, a
    /// signature that does not verify under the expected key, another key).
    #[error("signer protocol error: {0}")]
    Protocol(String),
    /// The message is not something a signer may sign (not valid note text).
    #[error("not signable: {0}")]
    NotSignable(String),
}

/// Something that signs a log's notes with one Ed25519 key.
///
/// Implementations never expose the private key: not through `Debug`, not in errors.
pub trait CheckpointSigner: Send {
    /// The key name (for a log's key, its origin).
    fn name(&self) -> &str;

    /// The C2SP signed-note key ID: first 4 bytes of
    /// `SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)` (see [`crate::note::key_id`]).
    fn key_id(&self) -> [u8; 4];

    /// The verifier (public) key matching the private key.
    fn verifier(&self) -> NoteVerifier;

    /// Signs `message` (the exact note text, ending in a newline) and returns the
    /// 64-byte Ed25519 signature.
    ///
    /// # Errors
    /// [`SignerError`]: unreachable, refused, or a malformed answer.
    fn sign(&mut self, message: &[u8]) -> Result<[u8; SIGNATURE_LEN], SignerError>;
}

impl CheckpointSigner for NoteSigner {
    fn name(&self) -> &str {
        NoteSigner::name(self)
    }

    fn key_id(&self) -> [u8; 4] {
        NoteSigner::verifier(self).key_id()
    }

    fn verifier(&self) -> NoteVerifier {
        NoteSigner::verifier(self)
    }

    fn sign(&mut self, message: &[u8]) -> Result<[u8; SIGNATURE_LEN], SignerError> {
        Ok(self.sign_bytes(message))
    }
}

/// The signature line `— <name> <base64(key id ‖ signature)>\n` of C2SP signed-note.
pub fn signature_line(name: &str, key_id: [u8; 4], signature: &[u8; SIGNATURE_LEN]) -> String {
    let mut raw = Vec::with_capacity(4 + SIGNATURE_LEN);
    raw.extend_from_slice(&key_id);
    raw.extend_from_slice(signature);
    format!("\u{2014} {name} {}\n", BASE64.encode(raw))
}

/// Signs note `text` with every signer in order and returns the signed note (text, blank
/// line, one signature line per signer). Each signature is checked against the signer's
/// own verifier before it is used, so a remote signer that answers with another key or
/// garbage is caught here and never stored.
///
/// # Errors
/// [`SignerError::NotSignable`] for invalid note text or no signer; any signer's error.
pub fn sign_note(text: &str, signers: &mut [&mut dyn CheckpointSigner]) -> Result<String, SignerError> {
    check_text(text).map_err(|e| SignerError::NotSignable(e.to_string()))?;
    if signers.is_empty() {
        return Err(SignerError::NotSignable("no signer".into()));
    }
    let mut out = format!("{text}\n");
    for s in signers.iter_mut() {
        let sig = s.sign(text.as_bytes())?;
        let v = s.verifier();
        if v.key_id() != s.key_id() || !v.verify(text.as_bytes(), &sig) {
            return Err(SignerError::Protocol(format!(
                "the signature from signer {} does not verify under its key",
                s.name()
            )));
        }
        out.push_str(&signature_line(s.name(), s.key_id(), &sig));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::note::Note;

    struct Liar(NoteSigner);

    impl CheckpointSigner for Liar {
        fn name(&self) -> &str {
            self.0.name()
        }
        fn key_id(&self) -> [u8; 4] {
            CheckpointSigner::key_id(&self.0)
        }
        fn verifier(&self) -> NoteVerifier {
            self.0.verifier()
        }
        fn sign(&mut self, _message: &[u8]) -> Result<[u8; SIGNATURE_LEN], SignerError> {
            Ok([7; SIGNATURE_LEN])
        }
    }

    #[test]
    fn signs_like_note_signer_and_checks_answers() {
        let mut a = NoteSigner::from_seed("log.example", &[1; 32]).unwrap();
        let mut b = NoteSigner::from_seed("log.example", &[2; 32]).unwrap();
        let text = "log.example\n1\nAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\n";
        // Ed25519 is deterministic: the boundary produces exactly NoteSigner::sign's note.
        assert_eq!(sign_note(text, &mut [&mut a]).unwrap(), a.sign(text).unwrap());
        let both = sign_note(text, &mut [&mut a, &mut b]).unwrap();
        let note = Note::parse(both.as_bytes()).unwrap();
        assert_eq!(note.signatures.len(), 2);
        assert_eq!(note.verify(&[b.verifier()]).unwrap().len(), 1);
        assert_eq!(note.verify(&[a.verifier()]).unwrap().len(), 1);
        let mut liar = Liar(a.clone());
        assert!(matches!(sign_note(text, &mut [&mut liar]), Err(SignerError::Protocol(_))));
        assert!(matches!(sign_note("no newline", &mut [&mut a]), Err(SignerError::NotSignable(_))));
    }
}
