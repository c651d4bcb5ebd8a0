//! Keys and primitives: the master key file, key derivation (HMAC-SHA256, RFC 2104),
//! wrapping data keys and sealing values (XChaCha20-Poly1305, draft-irtf-cfrg-xchacha
//! over RFC 8439), blind tokens.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use chacha20poly1305::aead::{Aead as _, KeyInit as _, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::Mac as _;
use zeroize::{Zeroize as _, Zeroizing};

use crate::ErasureError;

/// Length of keys (master and data keys), bytes.
pub(crate) const KEY_LEN: usize = 32;
/// XChaCha20-Poly1305 nonce length, bytes.
pub(crate) const NONCE_LEN: usize = 24;
/// Poly1305 tag length, bytes.
pub(crate) const TAG_LEN: usize = 16;
/// Bytes of the HMAC kept as a blind token.
pub(crate) const TOKEN_LEN: usize = 16;
/// Characters of a blind token in base64url without padding.
pub(crate) const B64_TOKEN_LEN: usize = 22;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// HMAC-SHA256 keyed once (its state is zeroed on drop: the `zeroize` features of
/// `hmac` and `sha2`): the key's inner and outer pad blocks are hashed when it is
/// made, so each message costs only its own compression blocks and the final two.
#[derive(Clone)]
pub(crate) struct KeyedMac(HmacSha256);

impl KeyedMac {
    pub(crate) fn new(key: &[u8]) -> KeyedMac {
        KeyedMac(<HmacSha256 as hmac::KeyInit>::new_from_slice(key).expect("HMAC takes any key length"))
    }

    pub(crate) fn mac(&self, text: &[u8]) -> [u8; 32] {
        let mut m = self.0.clone();
        m.update(text);
        m.finalize().into_bytes().into()
    }
}

/// `HMAC-SHA256(key, parts[0] ‖ parts[1] ‖ …)`.
pub(crate) fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut m = <HmacSha256 as hmac::KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// Fills `buf` from the operating system's random source.
pub(crate) fn random(buf: &mut [u8]) -> Result<(), ErasureError> {
    getrandom::fill(buf).map_err(|e| ErasureError::Random(e.to_string()))
}

/// A fresh nonce for sealing one value: a random 16-byte prefix, drawn from the
/// operating system once per thread, then a 64-bit big-endian counter.
///
/// XChaCha20-Poly1305 needs a nonce that never repeats under one key. A random
/// 128-bit prefix with a counter keeps that: two threads or processes draw the same
/// prefix with probability about n²/2¹²⁹ for n prefixes, the same bound 192-bit
/// random nonces give per 2⁶⁴ values, and within a thread the counter never repeats.
/// It reads the random source once per thread rather than once per value, which was
/// most of the cost of sealing a small value.
pub(crate) fn next_nonce() -> Result<[u8; NONCE_LEN], ErasureError> {
    thread_local! {
        static STATE: std::cell::Cell<Option<([u8; 16], u64)>> = const { std::cell::Cell::new(None) };
    }
    STATE.with(|state| {
        let (prefix, counter) = match state.get() {
            Some((prefix, counter)) if counter != u64::MAX => (prefix, counter),
            _ => {
                let mut prefix = [0u8; 16];
                random(&mut prefix)?;
                (prefix, 0)
            }
        };
        state.set(Some((prefix, counter + 1)));
        let mut nonce = [0u8; NONCE_LEN];
        nonce[..16].copy_from_slice(&prefix);
        nonce[16..].copy_from_slice(&counter.to_be_bytes());
        Ok(nonce)
    })
}

/// The 32-byte master key that wraps every subject's data key. Stored as 64 hex
/// digits (and an optional newline) in a file only its owner may read.
pub struct MasterKey {
    wrap: Zeroizing<[u8; KEY_LEN]>,
    lookup: KeyedMac,
}

impl MasterKey {
    /// Derives the wrapping and lookup keys from the 32 master key bytes.
    pub fn from_bytes(bytes: &[u8; KEY_LEN]) -> MasterKey {
        MasterKey {
            wrap: Zeroizing::new(hmac(bytes, &[b"stele erasure wrap v1"])),
            lookup: KeyedMac::new(Zeroizing::new(hmac(bytes, &[b"stele erasure lookup v1"])).as_slice()),
        }
    }

    /// Loads the key file at `path`, refusing one that group or others may read or
    /// write (mode must be 0600 or stricter) and one that is not 64 hex digits.
    ///
    /// # Errors
    /// [`ErasureError::MasterKey`] naming the file and the problem.
    pub fn load(path: &Path) -> Result<MasterKey, ErasureError> {
        let bad = |reason: String| ErasureError::MasterKey { path: path.to_path_buf(), reason };
        let meta = std::fs::metadata(path).map_err(|e| bad(e.to_string()))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(bad(format!("mode {mode:04o} lets group or others access it; run chmod 600")));
        }
        let mut text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?);
        let hex = text.trim_end_matches('\n');
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        if hex.len() != 2 * KEY_LEN || hex::decode_to_slice(hex, bytes.as_mut_slice()).is_err() {
            text.zeroize();
            return Err(bad("not 64 hexadecimal digits".into()));
        }
        Ok(MasterKey::from_bytes(&bytes))
    }

    /// Creates a new random master key file at `path` (mode 0600, never overwriting)
    /// and syncs it.
    ///
    /// # Errors
    /// [`ErasureError::MasterKey`] when the file exists or cannot be written.
    pub fn create(path: &Path) -> Result<(), ErasureError> {
        let bad = |reason: String| ErasureError::MasterKey { path: path.to_path_buf(), reason };
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        random(bytes.as_mut_slice())?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| bad(e.to_string()))?;
        let text = Zeroizing::new(format!("{}\n", hex::encode(bytes.as_slice())));
        f.write_all(text.as_bytes()).and_then(|_| f.sync_all()).map_err(|e| bad(e.to_string()))?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::File::open(parent).and_then(|d| d.sync_all()).map_err(|e| bad(e.to_string()))?;
        }
        Ok(())
    }

    /// The lookup of a subject: `HMAC-SHA256(lookup key, subject)`.
    pub fn lookup(&self, subject: &str) -> [u8; 32] {
        self.lookup.mac(subject.as_bytes())
    }

    /// Wraps a data key: returns nonce and `ciphertext ‖ tag` (48 bytes).
    pub fn wrap(&self, key_id: &[u8; 16], lookup: &[u8; 32], dk: &DataKey) -> Result<WrappedKey, ErasureError> {
        let mut nonce = [0u8; NONCE_LEN];
        random(&mut nonce)?;
        let aad = [key_id.as_slice(), lookup.as_slice()].concat();
        let ct = XChaCha20Poly1305::new(self.wrap.as_slice().into())
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: dk.0.as_slice(), aad: &aad })
            .map_err(|_| ErasureError::Crypto("wrapping a data key"))?;
        Ok(WrappedKey { nonce, sealed: ct.try_into().map_err(|_| ErasureError::Crypto("wrapped key length"))? })
    }

    /// Unwraps a data key.
    ///
    /// # Errors
    /// [`ErasureError::Crypto`] when the tag does not verify (another master key, or
    /// damage).
    pub fn unwrap(&self, key_id: &[u8; 16], lookup: &[u8; 32], w: &WrappedKey) -> Result<DataKey, ErasureError> {
        let aad = [key_id.as_slice(), lookup.as_slice()].concat();
        let pt = Zeroizing::new(
            XChaCha20Poly1305::new(self.wrap.as_slice().into())
                .decrypt(XNonce::from_slice(&w.nonce), Payload { msg: &w.sealed, aad: &aad })
                .map_err(|_| ErasureError::Crypto("a data key does not unwrap under this master key"))?,
        );
        let mut k = [0u8; KEY_LEN];
        k.copy_from_slice(&pt);
        Ok(DataKey::new(k))
    }
}

/// A wrapped data key: nonce and `ciphertext ‖ tag`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrappedKey {
    /// XChaCha20 nonce.
    pub nonce: [u8; NONCE_LEN],
    /// The 32-byte key encrypted, then the 16-byte tag.
    pub sealed: [u8; KEY_LEN + TAG_LEN],
}

/// A subject's 32-byte data key, with its derived blind-index key. Zeroed on drop.
pub struct DataKey(Zeroizing<[u8; KEY_LEN]>, KeyedMac);

impl DataKey {
    /// Wraps raw key bytes.
    pub fn new(bytes: [u8; KEY_LEN]) -> DataKey {
        let blind = Zeroizing::new(hmac(&bytes, &[b"stele erasure blind v1"]));
        DataKey(Zeroizing::new(bytes), KeyedMac::new(blind.as_slice()))
    }

    /// A fresh random key.
    ///
    /// # Errors
    /// [`ErasureError::Random`].
    pub fn generate() -> Result<DataKey, ErasureError> {
        let mut k = [0u8; KEY_LEN];
        random(&mut k)?;
        let dk = DataKey::new(k);
        k.zeroize();
        Ok(dk)
    }

    /// The blind token of a value's text: base64url of the first 16 bytes of
    /// `HMAC-SHA256(HMAC-SHA256(DK, "stele erasure blind v1"), text)`.
    pub fn token(&self, text: &[u8]) -> String {
        B64URL.encode(&self.1.mac(text)[..TOKEN_LEN])
    }

    /// Appends [`DataKey::token`] of `text` to `out`.
    pub(crate) fn token_into(&self, text: &[u8], out: &mut Vec<u8>) {
        let at = out.len();
        out.resize(at + B64_TOKEN_LEN, 0);
        let n = B64URL.encode_slice(&self.1.mac(text)[..TOKEN_LEN], &mut out[at..]).expect("22 characters");
        debug_assert_eq!(n, B64_TOKEN_LEN);
    }

    /// Appends [`DataKey::seal`] of `value` to `out`, without allocating beyond `out`
    /// and the reused `scratch`.
    pub(crate) fn seal_into(
        &self,
        key_id: &[u8; 16],
        position: u16,
        value: &[u8],
        nonce: &[u8; NONCE_LEN],
        scratch: &mut Vec<u8>,
        out: &mut Vec<u8>,
    ) -> Result<(), ErasureError> {
        use chacha20poly1305::aead::AeadInPlace as _;
        scratch.clear();
        scratch.extend_from_slice(nonce);
        scratch.extend_from_slice(value);
        let tag = XChaCha20Poly1305::new(self.0.as_slice().into())
            .encrypt_in_place_detached(XNonce::from_slice(nonce), &aad(key_id, position), &mut scratch[NONCE_LEN..])
            .map_err(|_| ErasureError::Crypto("sealing a value"))?;
        scratch.extend_from_slice(&tag);
        let at = out.len();
        out.resize(at + base64::encoded_len(scratch.len(), false).expect("small value"), 0);
        let n = B64URL.encode_slice(&scratch[..], &mut out[at..]).expect("sized above");
        out.truncate(at + n);
        Ok(())
    }

    /// Seals `value` (the original bytes of one JSON value) as span `position` of the
    /// entry sealed under `key_id` with a fresh random `nonce`: base64url of
    /// `nonce ‖ ciphertext ‖ tag`.
    pub fn seal(
        &self,
        key_id: &[u8; 16],
        position: u16,
        value: &[u8],
        nonce: &[u8; NONCE_LEN],
    ) -> Result<String, ErasureError> {
        let aad = aad(key_id, position);
        let ct = XChaCha20Poly1305::new(self.0.as_slice().into())
            .encrypt(XNonce::from_slice(nonce), Payload { msg: value, aad: &aad[..] })
            .map_err(|_| ErasureError::Crypto("sealing a value"))?;
        let mut boxed = Vec::with_capacity(NONCE_LEN + ct.len());
        boxed.extend_from_slice(nonce);
        boxed.extend_from_slice(&ct);
        Ok(B64URL.encode(boxed))
    }

    /// Opens a sealed box (base64url text) of span `position`.
    ///
    /// # Errors
    /// [`ErasureError::Crypto`] when it is not base64url or the tag does not verify.
    pub fn open(&self, key_id: &[u8; 16], position: u16, boxed: &str) -> Result<Vec<u8>, ErasureError> {
        let raw = B64URL.decode(boxed).map_err(|_| ErasureError::Crypto("a sealed value is not base64url"))?;
        if raw.len() < NONCE_LEN + TAG_LEN {
            return Err(ErasureError::Crypto("a sealed value is too short"));
        }
        let aad = aad(key_id, position);
        XChaCha20Poly1305::new(self.0.as_slice().into())
            .decrypt(XNonce::from_slice(&raw[..NONCE_LEN]), Payload { msg: &raw[NONCE_LEN..], aad: &aad[..] })
            .map_err(|_| ErasureError::Crypto("a sealed value does not open under its subject's key"))
    }
}

/// `"stele sealed v1" ‖ key id ‖ u16 position`.
fn aad(key_id: &[u8; 16], position: u16) -> [u8; 33] {
    let mut a = [0u8; 33];
    a[..15].copy_from_slice(b"stele sealed v1");
    a[15..31].copy_from_slice(key_id);
    a[31..].copy_from_slice(&position.to_be_bytes());
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_never_repeat_within_or_across_threads() {
        let draw = || (0..10_000).map(|_| next_nonce().expect("nonce")).collect::<Vec<_>>();
        let mine = draw();
        let other = std::thread::spawn(draw).join().expect("thread");
        let mut all: Vec<_> = mine.iter().chain(&other).copied().collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 20_000);
        // One prefix per thread, a counter after it.
        assert!(mine.iter().all(|n| n[..16] == mine[0][..16]));
        assert_ne!(mine[0][..16], other[0][..16]);
        let counter = |n: &[u8; NONCE_LEN]| u64::from_be_bytes(n[16..].try_into().expect("8 bytes"));
        assert!(mine.windows(2).all(|w| counter(&w[1]) == counter(&w[0]) + 1));
    }
}
