//! The subject key store, `DATA/keys/subjects.dat` (docs/format.md, "Subject keys"):
//! wrapped data keys and where each subject has entries. Appends are synced before
//! the entries sealed with them are appended to the log; an erasure overwrites the
//! subject's key record in place with a `destroyed` record of the same length and
//! fdatasyncs: O(1) whatever the number of subjects.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use crate::ErasureError;
use crate::crypto::{KEY_LEN, NONCE_LEN, TAG_LEN, WrappedKey};

/// File name inside the data directory.
pub const STORE_FILE: &str = "keys/subjects.dat";
const HEADER: &[u8; 16] = b"STELE\0SK\x00\x01\0\0\0\0\0\0";
const KIND_KEY: u8 = 1;
const KIND_USE: u8 = 2;
const KIND_DESTROYED: u8 = 3;
const KEY_RECORD_LEN: usize = 1 + 16 + 32 + 8 + NONCE_LEN + KEY_LEN + TAG_LEN;
/// Largest record accepted when reading (a use record with a 255-byte stream name).
const MAX_RECORD: usize = 1 + 16 + 4 + 1 + 255;

/// A subject's key record and the days it has entries on, per stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredKey {
    /// Random key id (named by envelopes and erasure records).
    pub key_id: [u8; 16],
    /// `HMAC(lookup key, subject)`.
    pub lookup: [u8; 32],
    /// When the key was made, ns since the epoch.
    pub created_ns: u64,
    /// The wrapped data key.
    pub wrapped: WrappedKey,
    /// Per stream, the first and last day (days since the epoch) with entries.
    pub uses: BTreeMap<String, (u32, u32)>,
}

/// The key store, read into memory; writable when opened so.
pub struct KeyStore {
    path: PathBuf,
    file: Option<File>,
    len: u64,
    keys: HashMap<[u8; 16], StoredKey>,
    by_lookup: HashMap<[u8; 32], [u8; 16]>,
    /// File offset of each key's record (its frame).
    offsets: HashMap<[u8; 16], u64>,
    buffer: Vec<u8>,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> ErasureError + '_ {
    move |e| ErasureError::KeyStore { path: path.to_path_buf(), reason: e.to_string() }
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

fn sync_dir(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(p) => File::open(p)?.sync_all(),
        None => Ok(()),
    }
}

impl KeyStore {
    /// Opens the store of the data directory `data_dir`. Writable: creates it when
    /// missing and cuts a torn last record. Read-only: a missing store is empty.
    ///
    /// # Errors
    /// [`ErasureError::KeyStore`] on I/O errors or a bad header.
    pub fn open(data_dir: &Path, writable: bool) -> Result<KeyStore, ErasureError> {
        let path = data_dir.join(STORE_FILE);
        let mut store = KeyStore {
            path: path.clone(),
            file: None,
            len: HEADER.len() as u64,
            keys: HashMap::new(),
            by_lookup: HashMap::new(),
            offsets: HashMap::new(),
            buffer: Vec::new(),
        };
        if !path.exists() {
            if !writable {
                return Ok(store);
            }
            let tmp = path.with_extension("dat.new");
            let mut f =
                OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp).map_err(io(&path))?;
            f.write_all(HEADER).and_then(|_| f.sync_all()).map_err(io(&path))?;
            std::fs::rename(&tmp, &path).and_then(|_| sync_dir(&path)).map_err(io(&path))?;
        }
        let mut bytes = Vec::new();
        File::open(&path).and_then(|mut f| f.read_to_end(&mut bytes)).map_err(io(&path))?;
        if bytes.len() < HEADER.len() || &bytes[..HEADER.len()] != HEADER {
            return Err(ErasureError::KeyStore { path, reason: "not a stele subject key store (bad header)".into() });
        }
        let mut at = HEADER.len();
        while at + 8 <= bytes.len() {
            let n = u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4")) as usize;
            let crc = u32::from_be_bytes(bytes[at + 4..at + 8].try_into().expect("4"));
            if n == 0 || n > MAX_RECORD || at + 8 + n > bytes.len() {
                break;
            }
            if crc32c::crc32c(&bytes[at + 8..at + 8 + n]) != crc {
                // Records are only ever overwritten in place by a `destroyed` record of
                // the same length: a bad record followed by more bytes is one a crash
                // tore while destroying a key (the key is gone either way); a bad last
                // record is a torn append, cut below.
                if at + 8 + n < bytes.len() {
                    at += 8 + n;
                    continue;
                }
                break;
            }
            if !store.apply(&bytes[at + 8..at + 8 + n]) {
                break;
            }
            if bytes[at + 8] == KIND_KEY {
                let id: [u8; 16] = bytes[at + 9..at + 25].try_into().expect("16");
                store.offsets.insert(id, at as u64);
            }
            at += 8 + n;
        }
        store.len = at as u64;
        if writable {
            let f = OpenOptions::new().read(true).write(true).open(&path).map_err(io(&path))?;
            if (at as u64) < bytes.len() as u64 {
                // A torn record from an append a crash interrupted: nothing sealed with
                // it was appended to the log (the log append waits for this sync).
                f.set_len(at as u64).and_then(|_| f.sync_all()).map_err(io(&path))?;
            }
            store.file = Some(f);
        }
        Ok(store)
    }

    fn apply(&mut self, rec: &[u8]) -> bool {
        match rec[0] {
            KIND_KEY if rec.len() == KEY_RECORD_LEN => {
                let key_id: [u8; 16] = rec[1..17].try_into().expect("16");
                let lookup: [u8; 32] = rec[17..49].try_into().expect("32");
                let created_ns = u64::from_be_bytes(rec[49..57].try_into().expect("8"));
                let nonce = rec[57..57 + NONCE_LEN].try_into().expect("24");
                let sealed = rec[57 + NONCE_LEN..].try_into().expect("48");
                self.by_lookup.insert(lookup, key_id);
                self.keys.insert(
                    key_id,
                    StoredKey {
                        key_id,
                        lookup,
                        created_ns,
                        wrapped: WrappedKey { nonce, sealed },
                        uses: BTreeMap::new(),
                    },
                );
                true
            }
            KIND_DESTROYED if rec.len() == KEY_RECORD_LEN => {
                let key_id: [u8; 16] = rec[1..17].try_into().expect("16");
                if let Some(k) = self.keys.remove(&key_id) {
                    self.by_lookup.remove(&k.lookup);
                }
                true
            }
            KIND_USE if rec.len() >= 22 && rec.len() == 22 + usize::from(rec[21]) => {
                let key_id: [u8; 16] = rec[1..17].try_into().expect("16");
                let day = u32::from_be_bytes(rec[17..21].try_into().expect("4"));
                let Ok(stream) = std::str::from_utf8(&rec[22..]) else { return false };
                if let Some(k) = self.keys.get_mut(&key_id) {
                    let e = k.uses.entry(stream.to_string()).or_insert((day, day));
                    e.0 = e.0.min(day);
                    e.1 = e.1.max(day);
                }
                true
            }
            _ => false,
        }
    }

    /// The key of a subject's lookup.
    pub fn by_lookup(&self, lookup: &[u8; 32]) -> Option<&StoredKey> {
        self.by_lookup.get(lookup).and_then(|id| self.keys.get(id))
    }

    /// The key with this id.
    pub fn get(&self, key_id: &[u8; 16]) -> Option<&StoredKey> {
        self.keys.get(key_id)
    }

    /// Every key, in no particular order.
    pub fn keys(&self) -> impl Iterator<Item = &StoredKey> {
        self.keys.values()
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the store holds no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Adds a key record (buffered until [`KeyStore::sync`]).
    pub fn add_key(&mut self, key_id: [u8; 16], lookup: [u8; 32], created_ns: u64, wrapped: WrappedKey) {
        let mut rec = Vec::with_capacity(KEY_RECORD_LEN);
        rec.push(KIND_KEY);
        rec.extend_from_slice(&key_id);
        rec.extend_from_slice(&lookup);
        rec.extend_from_slice(&created_ns.to_be_bytes());
        rec.extend_from_slice(&wrapped.nonce);
        rec.extend_from_slice(&wrapped.sealed);
        self.apply(&rec);
        self.offsets.insert(key_id, self.len + self.buffer.len() as u64);
        self.buffer.extend_from_slice(&frame(&rec));
    }

    /// Records that the key has entries in `stream` on `day`, unless already known
    /// (buffered until [`KeyStore::sync`]). Stream names are at most 128 bytes.
    pub fn add_use(&mut self, key_id: &[u8; 16], stream: &str, day: u32) {
        let known = self
            .keys
            .get(key_id)
            .and_then(|k| k.uses.get(stream))
            .is_some_and(|(first, last)| (*first..=*last).contains(&day));
        if known || stream.len() > 255 {
            return;
        }
        let mut rec = Vec::with_capacity(22 + stream.len());
        rec.push(KIND_USE);
        rec.extend_from_slice(key_id);
        rec.extend_from_slice(&day.to_be_bytes());
        rec.push(stream.len() as u8);
        rec.extend_from_slice(stream.as_bytes());
        self.apply(&rec);
        self.buffer.extend_from_slice(&frame(&rec));
    }

    /// Writes the buffered records and fdatasyncs the file: after `Ok`, every key
    /// added is durable.
    ///
    /// # Errors
    /// [`ErasureError::KeyStore`] on I/O errors, or when opened read-only.
    pub fn sync(&mut self) -> Result<(), ErasureError> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let Some(f) = &self.file else {
            return Err(ErasureError::KeyStore { path: self.path.clone(), reason: "opened read-only".into() });
        };
        f.write_all_at(&self.buffer, self.len).and_then(|_| f.sync_data()).map_err(io(&self.path))?;
        self.len += self.buffer.len() as u64;
        self.buffer.clear();
        Ok(())
    }

    /// Destroys keys for good: overwrites each key's record in place with a
    /// `destroyed` record of the same length (the wrapped key's bytes become zeros),
    /// then fdatasyncs. A crash leaves each record whole (key present), destroyed, or
    /// torn (unreadable, so destroyed too).
    ///
    /// # Errors
    /// [`ErasureError::KeyStore`] on I/O errors, or when opened read-only.
    pub fn remove(&mut self, key_ids: &[[u8; 16]]) -> Result<(), ErasureError> {
        self.sync()?;
        let Some(f) = &self.file else {
            return Err(ErasureError::KeyStore { path: self.path.clone(), reason: "opened read-only".into() });
        };
        let mut wrote = false;
        for id in key_ids {
            let Some(offset) = self.offsets.remove(id) else { continue };
            let mut rec = vec![0u8; KEY_RECORD_LEN];
            rec[0] = KIND_DESTROYED;
            rec[1..17].copy_from_slice(id);
            f.write_all_at(&frame(&rec), offset).map_err(io(&self.path))?;
            if let Some(k) = self.keys.remove(id) {
                self.by_lookup.remove(&k.lookup);
            }
            wrote = true;
        }
        if wrote {
            f.sync_data().map_err(io(&self.path))?;
        }
        Ok(())
    }
}
