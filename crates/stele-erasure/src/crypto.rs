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

    /// A sealer of one event's values under this key ([`EventSealer::seal_into`]).
    pub(crate) fn event_sealer(&self) -> EventSealer<'_> {
        EventSealer { key: self, subkey: None }
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

/// Seals the values of one event under one data key, with the same output as
/// [`DataKey::seal`]: XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha §2.3) is
/// ChaCha20-Poly1305 (RFC 8439 §2.8) under the subkey `HChaCha20(key, nonce[..16])`
/// with the nonce `0⁴ ‖ nonce[16..]`. The nonces of one thread share their first 16
/// bytes ([`next_nonce`]), so the subkey is derived once per event rather than once
/// per value, and the AEAD is ring's, which is much faster than the portable one for
/// values of a few dozen bytes. The subkey is dropped with the sealer.
pub(crate) struct EventSealer<'k> {
    key: &'k DataKey,
    /// The nonce prefix the subkey was derived for, and the subkey.
    subkey: Option<([u8; 16], ring::aead::LessSafeKey)>,
}

impl EventSealer<'_> {
    /// Appends [`DataKey::seal`] of `value` (span `position` of the entry sealed under
    /// `key_id`, with a fresh nonce from [`next_nonce`]) to `out`, without allocating
    /// beyond `out` and the reused `scratch`.
    ///
    /// # Errors
    /// [`ErasureError::Random`] when a new thread's nonce prefix cannot be drawn;
    /// [`ErasureError::Crypto`] if the AEAD refuses (never for values below 256 GiB).
    pub(crate) fn seal_into(
        &mut self,
        key_id: &[u8; 16],
        position: u16,
        value: &[u8],
        scratch: &mut Vec<u8>,
        out: &mut Vec<u8>,
    ) -> Result<(), ErasureError> {
        self.seal_with_nonce(key_id, position, value, &next_nonce()?, scratch, out)
    }

    /// [`EventSealer::seal_into`] with a given nonce.
    pub(crate) fn seal_with_nonce(
        &mut self,
        key_id: &[u8; 16],
        position: u16,
        value: &[u8],
        nonce: &[u8; NONCE_LEN],
        scratch: &mut Vec<u8>,
        out: &mut Vec<u8>,
    ) -> Result<(), ErasureError> {
        let prefix: [u8; 16] = nonce[..16].try_into().expect("16 bytes");
        if self.subkey.as_ref().is_none_or(|(p, _)| *p != prefix) {
            let sub = Zeroizing::new(<[u8; KEY_LEN]>::from(chacha20::hchacha::<chacha20::cipher::consts::U10>(
                self.key.0.as_slice().into(),
                &prefix.into(),
            )));
            let unbound = ring::aead::UnboundKey::new(&ring::aead::CHACHA20_POLY1305, sub.as_slice())
                .map_err(|_| ErasureError::Crypto("deriving a sealing subkey"))?;
            self.subkey = Some((prefix, ring::aead::LessSafeKey::new(unbound)));
        }
        let (_, key) = self.subkey.as_ref().expect("derived above");
        let mut inner = [0u8; ring::aead::NONCE_LEN];
        inner[4..].copy_from_slice(&nonce[16..]);
        scratch.clear();
        scratch.extend_from_slice(nonce);
        scratch.extend_from_slice(value);
        let tag = key
            .seal_in_place_separate_tag(
                ring::aead::Nonce::assume_unique_for_key(inner),
                ring::aead::Aad::from(aad(key_id, position)),
                &mut scratch[NONCE_LEN..],
            )
            .map_err(|_| ErasureError::Crypto("sealing a value"))?;
        scratch.extend_from_slice(tag.as_ref());
        let at = out.len();
        out.resize(at + base64::encoded_len(scratch.len(), false).expect("small value"), 0);
        let n = B64URL.encode_slice(&scratch[..], &mut out[at..]).expect("sized above");
        out.truncate(at + n);
        Ok(())
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

    /// The event sealer (HChaCha20 subkey, ring's ChaCha20-Poly1305) against the
    /// portable XChaCha20-Poly1305 of `chacha20poly1305`: the same bytes for random
    /// keys, nonces (several per prefix, and a prefix change inside one event),
    /// positions and values from empty to several blocks, and every output opens.
    #[test]
    fn the_event_sealer_matches_the_portable_xchacha20_poly1305() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..200 {
            let mut k = [0u8; KEY_LEN];
            k.iter_mut().for_each(|b| *b = next() as u8);
            let dk = DataKey::new(k);
            let key_id: [u8; 16] = std::array::from_fn(|_| next() as u8);
            let mut sealer = dk.event_sealer();
            let mut nonce: [u8; NONCE_LEN] = std::array::from_fn(|_| next() as u8);
            for i in 0..4u16 {
                if i == 2 && round % 3 == 0 {
                    nonce[3] ^= 0x5a; // another prefix within the same event
                }
                nonce[23] = nonce[23].wrapping_add(1);
                let value: Vec<u8> = (0..(next() % 200) as usize).map(|_| next() as u8).collect();
                let (mut scratch, mut out) = (Vec::new(), b"prefix:".to_vec());
                sealer.seal_with_nonce(&key_id, i, &value, &nonce, &mut scratch, &mut out).expect("seal");
                let portable = dk.seal(&key_id, i, &value, &nonce).expect("seal");
                assert_eq!(&out[7..], portable.as_bytes(), "round {round}, value {i}");
                assert_eq!(dk.open(&key_id, i, &portable).expect("opens"), value);
                assert!(dk.open(&key_id, i + 1, &portable).is_err(), "the position is authenticated");
            }
        }
    }

    /// draft-irtf-cfrg-xchacha-03 Appendix A.3.1 through the event sealer: with the
    /// draft's AAD in place of stele's, the published ciphertext and tag.
    #[test]
    fn xchacha20_poly1305_published_vector() {
        let hex = |s: &str| hex::decode(s.replace(' ', "")).expect("hex");
        let key: [u8; KEY_LEN] =
            hex("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f").try_into().unwrap();
        let nonce: [u8; NONCE_LEN] = hex("404142434445464748494a4b4c4d4e4f5051525354555657").try_into().unwrap();
        let aad = hex("50515253c0c1c2c3c4c5c6c7");
        let plaintext = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
        let want = hex(
            "bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b4522f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff921f9664c97637da9768812f615c68b13b52e\
             c0875924c1c7987947deafd8780acf49",
        );
        // The portable implementation (the reference stele's reads use).
        let portable = XChaCha20Poly1305::new(key.as_slice().into())
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: plaintext, aad: &aad })
            .expect("encrypt");
        assert_eq!(portable, want);
        // The event sealer's construction, with the draft's AAD.
        let sub = chacha20::hchacha::<chacha20::cipher::consts::U10>(
            key.as_slice().into(),
            nonce[..16].try_into().map(|a: [u8; 16]| a.into()).as_ref().unwrap(),
        );
        let key =
            ring::aead::LessSafeKey::new(ring::aead::UnboundKey::new(&ring::aead::CHACHA20_POLY1305, &sub).unwrap());
        let mut inner = [0u8; 12];
        inner[4..].copy_from_slice(&nonce[16..]);
        let mut buf = plaintext.to_vec();
        let tag = key
            .seal_in_place_separate_tag(
                ring::aead::Nonce::assume_unique_for_key(inner),
                ring::aead::Aad::from(&aad),
                &mut buf,
            )
            .expect("seal");
        buf.extend_from_slice(tag.as_ref());
        assert_eq!(buf, want);
    }

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
