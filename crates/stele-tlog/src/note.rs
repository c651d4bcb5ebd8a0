//! C2SP signed-note: notes, Ed25519 signatures, verifier keys (`vkey`) and private
//! key strings compatible with Go's `golang.org/x/mod/sumdb/note`.
//!
//! A signed note is its text (UTF-8, no control characters but newline, ending in a
//! newline), a blank line, then one or more signature lines
//! `— <key name> <base64(key id ‖ signature)>\n`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

/// Signature type byte of Ed25519 keys in the signed-note key-ID derivation.
pub const ALG_ED25519: u8 = 0x01;
/// Largest note accepted by [`Note::parse`], in bytes. Checkpoints are a few hundred
/// bytes; the limit only bounds the work done on hostile input.
pub const MAX_NOTE_BYTES: usize = 1 << 20;
/// Most signature lines accepted on one note (Go's `note` package uses the same limit).
pub const MAX_SIGNATURES: usize = 100;

/// Errors of note parsing, signing and verification.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NoteError {
    /// The note text or a signature line is malformed; the string says how.
    #[error("malformed note: {0}")]
    Malformed(&'static str),
    /// A key name is empty or contains whitespace or `+`.
    #[error("invalid key name {0:?}")]
    InvalidKeyName(String),
    /// A verifier or private key string is malformed; the string says how.
    #[error("malformed key: {0}")]
    MalformedKey(&'static str),
    /// No signature on the note is by a known key.
    #[error("no signature by a known key (key {0})")]
    UnknownKey(String),
    /// A signature by a known key does not verify.
    #[error("invalid signature by key {0}")]
    InvalidSignature(String),
}

/// Checks a signed-note key name: non-empty, valid UTF-8, no Unicode whitespace, no `+`.
pub fn check_key_name(name: &str) -> Result<(), NoteError> {
    if name.is_empty() || name.contains('+') || name.chars().any(char::is_whitespace) {
        return Err(NoteError::InvalidKeyName(name.to_string()));
    }
    Ok(())
}

/// Key ID of C2SP signed-note: the first 4 bytes of
/// `SHA-256(key name ‖ 0x0A ‖ signature type ‖ public key)`.
pub fn key_id(name: &str, alg: u8, public_key: &[u8]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', alg]);
    h.update(public_key);
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// An Ed25519 verifier key with its name and key ID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    key_id: [u8; 4],
    key: VerifyingKey,
}

impl NoteVerifier {
    /// Builds a verifier for the Ed25519 public key `key` under `name`.
    pub fn new(name: &str, key: VerifyingKey) -> Result<NoteVerifier, NoteError> {
        check_key_name(name)?;
        let key_id = key_id(name, ALG_ED25519, key.as_bytes());
        Ok(NoteVerifier { name: name.to_string(), key_id, key })
    }

    /// Parses a verifier key `<name>+<8 hex digits key id>+<base64(0x01 ‖ 32-byte key)>`.
    /// The key ID must match the one derived from name and key.
    pub fn parse(vkey: &str) -> Result<NoteVerifier, NoteError> {
        let vkey = vkey.trim();
        let (name, rest) = vkey.split_once('+').ok_or(NoteError::MalformedKey("missing '+'"))?;
        let (hex_id, b64) = rest.split_once('+').ok_or(NoteError::MalformedKey("missing second '+'"))?;
        check_key_name(name)?;
        let id = parse_key_id_hex(hex_id)?;
        let raw = BASE64.decode(b64).map_err(|_| NoteError::MalformedKey("key is not base64"))?;
        if raw.len() != 33 || raw[0] != ALG_ED25519 {
            return Err(NoteError::MalformedKey("not an Ed25519 key (type 0x01, 32 bytes)"));
        }
        let key_bytes: [u8; 32] = raw[1..].try_into().map_err(|_| NoteError::MalformedKey("length"))?;
        let key =
            VerifyingKey::from_bytes(&key_bytes).map_err(|_| NoteError::MalformedKey("not a valid Ed25519 point"))?;
        let v = NoteVerifier::new(name, key)?;
        if v.key_id != id {
            return Err(NoteError::MalformedKey("key id does not match name and key"));
        }
        Ok(v)
    }

    /// The verifier key string `<name>+<hex key id>+<base64(0x01 ‖ key)>`.
    pub fn to_vkey(&self) -> String {
        let mut raw = Vec::with_capacity(33);
        raw.push(ALG_ED25519);
        raw.extend_from_slice(self.key.as_bytes());
        format!("{}+{}+{}", self.name, hex8(&self.key_id), BASE64.encode(raw))
    }

    /// Key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Key ID (4 bytes).
    pub fn key_id(&self) -> [u8; 4] {
        self.key_id
    }

    /// The Ed25519 public key.
    pub fn key(&self) -> &VerifyingKey {
        &self.key
    }

    /// Whether `signature` is a valid Ed25519 signature of `text` by this key
    /// (strict verification: rejects non-canonical and small-order encodings).
    pub fn verify(&self, text: &[u8], signature: &[u8]) -> bool {
        let Ok(sig) = ed25519_dalek::Signature::from_slice(signature) else {
            return false;
        };
        self.key.verify_strict(text, &sig).is_ok()
    }
}

impl NoteVerifier {
    /// Checks many `(text, signature)` pairs by this key at once with Ed25519 batch
    /// verification (about twice as fast as one by one). `true` only if all verify;
    /// on `false`, check them one by one with [`NoteVerifier::verify`] to find which.
    pub fn verify_batch(&self, items: &[(&[u8], &[u8])]) -> bool {
        let mut sigs = Vec::with_capacity(items.len());
        for (_, s) in items {
            match ed25519_dalek::Signature::from_slice(s) {
                Ok(sig) => sigs.push(sig),
                Err(_) => return false,
            }
        }
        let msgs: Vec<&[u8]> = items.iter().map(|(m, _)| *m).collect();
        let keys = vec![self.key; items.len()];
        ed25519_dalek::verify_batch(&msgs, &sigs, &keys).is_ok()
    }
}

/// An Ed25519 note signer: key name plus private key.
#[derive(Clone)]
pub struct NoteSigner {
    name: String,
    key_id: [u8; 4],
    key: SigningKey,
}

impl std::fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The private key is never printed.
        f.debug_struct("NoteSigner")
            .field("name", &self.name)
            .field("key_id", &hex8(&self.key_id))
            .finish_non_exhaustive()
    }
}

impl NoteSigner {
    /// Builds a signer from a 32-byte Ed25519 seed.
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<NoteSigner, NoteError> {
        check_key_name(name)?;
        let key = SigningKey::from_bytes(seed);
        let key_id = key_id(name, ALG_ED25519, key.verifying_key().as_bytes());
        Ok(NoteSigner { name: name.to_string(), key_id, key })
    }

    /// Parses a private key string `PRIVATE+KEY+<name>+<hex id>+<base64(0x01 ‖ seed)>`
    /// (the format of Go's `note.GenerateKey`).
    pub fn parse(skey: &str) -> Result<NoteSigner, NoteError> {
        let rest =
            skey.trim().strip_prefix("PRIVATE+KEY+").ok_or(NoteError::MalformedKey("missing PRIVATE+KEY+ prefix"))?;
        let mut parts = rest.splitn(3, '+');
        let (Some(name), Some(hex_id), Some(b64)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(NoteError::MalformedKey("expected name+id+key"));
        };
        let id = parse_key_id_hex(hex_id)?;
        let raw = BASE64.decode(b64).map_err(|_| NoteError::MalformedKey("key is not base64"))?;
        if raw.len() != 33 || raw[0] != ALG_ED25519 {
            return Err(NoteError::MalformedKey("not an Ed25519 private key"));
        }
        let seed: [u8; 32] = raw[1..].try_into().map_err(|_| NoteError::MalformedKey("length"))?;
        let s = NoteSigner::from_seed(name, &seed)?;
        if s.key_id != id {
            return Err(NoteError::MalformedKey("key id does not match name and key"));
        }
        Ok(s)
    }

    /// The private key string (keep it secret): `PRIVATE+KEY+<name>+<hex id>+<base64(0x01 ‖ seed)>`.
    pub fn to_private_key_string(&self) -> String {
        let mut raw = Vec::with_capacity(33);
        raw.push(ALG_ED25519);
        raw.extend_from_slice(self.key.as_bytes());
        format!("PRIVATE+KEY+{}+{}+{}", self.name, hex8(&self.key_id), BASE64.encode(raw))
    }

    /// The matching verifier.
    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier { name: self.name.clone(), key_id: self.key_id, key: self.key.verifying_key() }
    }

    /// Key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Signs `bytes` with Ed25519 (RFC 8032) and returns the 64-byte signature.
    pub fn sign_bytes(&self, bytes: &[u8]) -> [u8; 64] {
        self.key.sign(bytes).to_bytes()
    }

    /// Signs `text` and returns the signature line `— <name> <base64>\n`.
    pub fn signature_line(&self, text: &str) -> String {
        let sig = self.key.sign(text.as_bytes());
        let mut raw = Vec::with_capacity(68);
        raw.extend_from_slice(&self.key_id);
        raw.extend_from_slice(&sig.to_bytes());
        format!("\u{2014} {} {}\n", self.name, BASE64.encode(raw))
    }

    /// Signs `text` (which must be valid note text) and returns the whole signed note.
    pub fn sign(&self, text: &str) -> Result<String, NoteError> {
        check_text(text)?;
        Ok(format!("{text}\n{}", self.signature_line(text)))
    }
}

/// One signature line of a note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteSignature {
    /// Key name.
    pub name: String,
    /// Key ID (first 4 bytes of the decoded signature field).
    pub key_id: [u8; 4],
    /// Signature bytes (the rest of the decoded field).
    pub signature: Vec<u8>,
}

/// A parsed (not yet verified) signed note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// The note text, ending in a newline.
    pub text: String,
    /// Signature lines in order.
    pub signatures: Vec<NoteSignature>,
}

/// Checks note text: non-empty, ends in a newline, no control characters but newline.
pub fn check_text(text: &str) -> Result<(), NoteError> {
    if text.is_empty() || !text.ends_with('\n') {
        return Err(NoteError::Malformed("text must end in a newline"));
    }
    if text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(NoteError::Malformed("text contains a control character"));
    }
    Ok(())
}

impl Note {
    /// Parses a signed note. Bounds: [`MAX_NOTE_BYTES`] and [`MAX_SIGNATURES`].
    pub fn parse(bytes: &[u8]) -> Result<Note, NoteError> {
        if bytes.len() > MAX_NOTE_BYTES {
            return Err(NoteError::Malformed("note too large"));
        }
        let s = std::str::from_utf8(bytes).map_err(|_| NoteError::Malformed("not UTF-8"))?;
        let split = s.rfind("\n\n").ok_or(NoteError::Malformed("no signature block"))?;
        let (text, sigs) = (&s[..split + 1], &s[split + 2..]);
        check_text(text)?;
        if sigs.is_empty() || !sigs.ends_with('\n') {
            return Err(NoteError::Malformed("signature block must end in a newline"));
        }
        let mut signatures = Vec::new();
        for line in sigs[..sigs.len() - 1].split('\n') {
            if signatures.len() == MAX_SIGNATURES {
                return Err(NoteError::Malformed("too many signatures"));
            }
            let rest = line
                .strip_prefix("\u{2014} ")
                .ok_or(NoteError::Malformed("signature line must start with an em dash and a space"))?;
            let (name, b64) = rest.split_once(' ').ok_or(NoteError::Malformed("signature line has no key name"))?;
            check_key_name(name).map_err(|_| NoteError::Malformed("invalid key name in signature line"))?;
            let raw = BASE64.decode(b64).map_err(|_| NoteError::Malformed("signature is not base64"))?;
            if raw.len() < 5 {
                return Err(NoteError::Malformed("signature too short"));
            }
            signatures.push(NoteSignature {
                name: name.to_string(),
                key_id: [raw[0], raw[1], raw[2], raw[3]],
                signature: raw[4..].to_vec(),
            });
        }
        Ok(Note { text: text.to_string(), signatures })
    }

    /// Verifies the note against `verifiers`: every signature by a known key (same name
    /// and key ID) must verify, and at least one must be present. Signatures by unknown
    /// keys are ignored. Returns the names of the keys that verified.
    pub fn verify(&self, verifiers: &[NoteVerifier]) -> Result<Vec<String>, NoteError> {
        let mut ok = Vec::new();
        for sig in &self.signatures {
            let Some(v) = verifiers.iter().find(|v| v.name == sig.name && v.key_id == sig.key_id) else {
                continue;
            };
            if !v.verify(self.text.as_bytes(), &sig.signature) {
                return Err(NoteError::InvalidSignature(format!("{}+{}", v.name, hex8(&v.key_id))));
            }
            ok.push(v.name.clone());
        }
        if ok.is_empty() {
            let first = self.signatures.first().map(|s| format!("{}+{}", s.name, hex8(&s.key_id))).unwrap_or_default();
            return Err(NoteError::UnknownKey(first));
        }
        Ok(ok)
    }
}

fn parse_key_id_hex(s: &str) -> Result<[u8; 4], NoteError> {
    if s.len() != 8 {
        return Err(NoteError::MalformedKey("key id must be 8 hex digits"));
    }
    let mut out = [0u8; 4];
    for (i, pair) in s.as_bytes().chunks(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16).ok_or(NoteError::MalformedKey("key id is not hex"))?;
        let lo = (pair[1] as char).to_digit(16).ok_or(NoteError::MalformedKey("key id is not hex"))?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Ok(out)
}

fn hex8(id: &[u8; 4]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // From C2SP signed-note.md (BSD-1-Clause): the example verifier key and a note it signs.
    const C2SP_VKEY: &str = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";

    #[test]
    fn parses_c2sp_example_vkey() {
        let v = NoteVerifier::parse(C2SP_VKEY).unwrap();
        assert_eq!(v.name(), "example.com/foo");
        assert_eq!(v.to_vkey(), C2SP_VKEY);
    }

    #[test]
    fn sign_then_verify_and_reject_changes() {
        let s = NoteSigner::from_seed("log.example", &[7u8; 32]).unwrap();
        let note = s.sign("hello\nworld\n").unwrap();
        let parsed = Note::parse(note.as_bytes()).unwrap();
        assert_eq!(parsed.verify(&[s.verifier()]).unwrap(), vec!["log.example".to_string()]);
        let changed = note.replace("world", "w0rld");
        assert!(matches!(
            Note::parse(changed.as_bytes()).unwrap().verify(&[s.verifier()]),
            Err(NoteError::InvalidSignature(_))
        ));
        let other = NoteSigner::from_seed("other", &[8u8; 32]).unwrap();
        assert!(matches!(parsed.verify(&[other.verifier()]), Err(NoteError::UnknownKey(_))));
    }

    #[test]
    fn private_key_round_trip() {
        let s = NoteSigner::from_seed("log.example", &[9u8; 32]).unwrap();
        let again = NoteSigner::parse(&s.to_private_key_string()).unwrap();
        assert_eq!(again.verifier(), s.verifier());
        assert!(!format!("{s:?}").contains(&s.to_private_key_string()[20..]));
    }

    #[test]
    fn rejects_malformed_notes() {
        let s = NoteSigner::from_seed("k", &[1u8; 32]).unwrap();
        let good = s.sign("a\n").unwrap();
        for bad in [
            "a\n".to_string(),                          // no signature block
            good.trim_end().to_string(),                // signature line without newline
            format!("\x01{good}"),                      // control byte
            good.replace("\u{2014} k", "\u{2014} k k"), // name with space → bad base64 field
            format!("{good}stray\n"),                   // stray line after signatures
            good.replacen("\u{2014}", "-", 1),          // hyphen instead of em dash
        ] {
            assert!(Note::parse(bad.as_bytes()).is_err(), "accepted {bad:?}");
        }
        assert!(Note::parse(&[0xff, b'\n', b'\n']).is_err());
    }

    #[test]
    fn rejects_bad_key_names() {
        for name in ["", "a b", "a+b", "a\tb"] {
            assert!(check_key_name(name).is_err());
        }
    }
}
