//! The storage boundary: a small byte-level trait over named files, with a file
//! backend and an in-memory backend that separates written from durable bytes so
//! tests can simulate a crash at any sync point.
//!
//! Everything above this module speaks in named files and byte ranges; nothing
//! above it knows whether bytes live on a local disk or elsewhere.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// One file of a backend. Reads and writes are positional and may run from several
/// threads at once; `sync` makes every completed write durable.
pub trait StorageFile: Send + Sync {
    /// Current length in bytes (including writes not yet synced).
    fn len(&self) -> io::Result<u64>;
    /// Whether the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Fills `buf` from `offset`; fails with `UnexpectedEof` past the end.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Writes all of `data` at `offset`, extending the file if needed.
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Truncates or extends the file to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Makes all completed writes and length changes durable (fdatasync).
    fn sync(&self) -> io::Result<()>;
    /// Reserves the storage for bytes `[offset, offset + len)` without changing the
    /// file's length, so that writing them later cannot run out of space: a full disk
    /// surfaces here (`ErrorKind::StorageFull`), before anything is written. Backends
    /// without such a notion accept every reservation (the default).
    fn reserve(&self, offset: u64, len: u64) -> io::Result<()> {
        let _ = (offset, len);
        Ok(())
    }
}

/// A set of named files (names are `/`-separated relative paths).
pub trait Backend: Send + Sync {
    /// Opens a file; creates it (and its parent folders) when `create` is true.
    /// A newly created file's name is durable once this returns.
    fn open(&self, name: &str, create: bool) -> io::Result<Arc<dyn StorageFile>>;
    /// Whether the file exists.
    fn exists(&self, name: &str) -> bool;
    /// Names of the files directly inside folder `dir` (names relative to `dir`).
    fn list(&self, dir: &str) -> io::Result<Vec<String>>;
    /// Removes a file; durable once this returns.
    fn remove(&self, name: &str) -> io::Result<()>;
    /// Removes a file without waiting for the removal to be durable (for removals a
    /// crash may undo harmlessly). Defaults to [`Backend::remove`].
    fn remove_unsynced(&self, name: &str) -> io::Result<()> {
        self.remove(name)
    }
    /// Atomically replaces `to` with `from`; durable once this returns.
    fn rename(&self, from: &str, to: &str) -> io::Result<()>;
}

/// Files in a local folder, with `pread`/`pwrite` and `fdatasync`.
#[derive(Debug, Clone)]
pub struct FileBackend {
    root: PathBuf,
    read_only: bool,
}

impl FileBackend {
    /// A backend rooted at `root` (which must exist).
    pub fn new(root: &Path) -> FileBackend {
        FileBackend { root: root.to_path_buf(), read_only: false }
    }

    /// A backend that opens every file read-only (for readers beside a running writer).
    pub fn read_only(root: &Path) -> FileBackend {
        FileBackend { root: root.to_path_buf(), read_only: true }
    }

    /// The root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

struct LocalFile(File);

impl StorageFile for LocalFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.0.read_exact_at(buf, offset)
    }
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.0.write_all_at(data, offset)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn sync(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    /// `fallocate(FALLOC_FL_KEEP_SIZE)`; file systems without it accept every
    /// reservation (their full disk surfaces at the write, as before).
    fn reserve(&self, offset: u64, len: u64) -> io::Result<()> {
        use rustix::fs::{FallocateFlags, fallocate};
        use rustix::io::Errno;
        match fallocate(&self.0, FallocateFlags::KEEP_SIZE, offset, len) {
            Ok(()) => Ok(()),
            Err(e) if e == Errno::NOTSUP || e == Errno::NOSYS => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Backend for FileBackend {
    fn open(&self, name: &str, create: bool) -> io::Result<Arc<dyn StorageFile>> {
        let path = self.root.join(name);
        if create && !self.read_only {
            let parent = path.parent().unwrap_or(&self.root).to_path_buf();
            let existed = path.exists();
            if !parent.exists() {
                std::fs::create_dir_all(&parent)?;
                if let Some(grand) = parent.parent() {
                    sync_dir(grand)?;
                }
            }
            let f = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path)?;
            if !existed {
                sync_dir(&parent)?;
            }
            return Ok(Arc::new(LocalFile(f)));
        }
        let f = OpenOptions::new().read(true).write(!self.read_only).open(&path)?;
        Ok(Arc::new(LocalFile(f)))
    }

    fn exists(&self, name: &str) -> bool {
        self.root.join(name).exists()
    }

    fn list(&self, dir: &str) -> io::Result<Vec<String>> {
        let path = self.root.join(dir);
        if !path.exists() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for e in std::fs::read_dir(path)? {
            let e = e?;
            if e.file_type()?.is_file() {
                out.push(e.file_name().to_string_lossy().into_owned());
            }
        }
        out.sort();
        Ok(out)
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        let path = self.root.join(name);
        std::fs::remove_file(&path)?;
        sync_dir(path.parent().unwrap_or(&self.root))
    }

    fn remove_unsynced(&self, name: &str) -> io::Result<()> {
        std::fs::remove_file(self.root.join(name))
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let to_path = self.root.join(to);
        std::fs::rename(self.root.join(from), &to_path)?;
        sync_dir(to_path.parent().unwrap_or(&self.root))
    }
}

#[derive(Default, Clone)]
struct MemFileState {
    /// What a reader sees now.
    written: Vec<u8>,
    /// What survives a crash: the image as of the last sync.
    durable: Vec<u8>,
}

#[derive(Default)]
struct MemInner {
    files: BTreeMap<String, Arc<Mutex<MemFileState>>>,
    /// Counts syncs; once `fail_sync_at` is reached, every sync fails.
    syncs: u64,
    fail_sync_at: Option<u64>,
}

/// In-memory files that keep, per file, the written bytes and the durable image as
/// of its last `sync`. [`MemoryBackend::crash_image`] returns what a machine would
/// find after losing power now (optionally with torn, partially persisted writes).
#[derive(Clone, Default)]
pub struct MemoryBackend {
    inner: Arc<Mutex<MemInner>>,
}

impl std::fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemoryBackend")
    }
}

struct MemFile {
    state: Arc<Mutex<MemFileState>>,
    backend: Arc<Mutex<MemInner>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl StorageFile for MemFile {
    fn len(&self) -> io::Result<u64> {
        Ok(lock(&self.state).written.len() as u64)
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let s = lock(&self.state);
        let start = usize::try_from(offset).map_err(|_| io::ErrorKind::UnexpectedEof)?;
        let end = start.checked_add(buf.len()).ok_or(io::ErrorKind::UnexpectedEof)?;
        if end > s.written.len() {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.copy_from_slice(&s.written[start..end]);
        Ok(())
    }
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut s = lock(&self.state);
        let start = offset as usize;
        if s.written.len() < start + data.len() {
            s.written.resize(start + data.len(), 0);
        }
        s.written[start..start + data.len()].copy_from_slice(data);
        Ok(())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        lock(&self.state).written.resize(len as usize, 0);
        Ok(())
    }
    fn sync(&self) -> io::Result<()> {
        {
            let mut b = lock(&self.backend);
            b.syncs += 1;
            if b.fail_sync_at.is_some_and(|n| b.syncs >= n) {
                return Err(io::Error::other("injected fsync failure"));
            }
        }
        let mut s = lock(&self.state);
        s.durable = s.written.clone();
        Ok(())
    }
}

impl MemoryBackend {
    /// An empty backend.
    pub fn new() -> MemoryBackend {
        MemoryBackend::default()
    }

    /// Makes the `n`-th and every later `sync` (counting from 1 across all files) fail
    /// (`u64::MAX`: none).
    pub fn fail_syncs_from(&self, n: u64) {
        let mut b = lock(&self.inner);
        b.fail_sync_at = Some(b.syncs.saturating_add(n));
    }

    /// Number of syncs so far.
    pub fn sync_count(&self) -> u64 {
        lock(&self.inner).syncs
    }

    /// The files as they would be after a power cut now: each file's durable image,
    /// plus, when `torn` is given, a random part of the unsynced bytes (a prefix of
    /// the written tail, possibly with garbage) chosen by the seeded generator.
    pub fn crash_image(&self, torn: Option<u64>) -> MemoryBackend {
        let b = lock(&self.inner);
        let mut rng = torn.unwrap_or(0) | 1;
        let mut next = move || {
            // xorshift64*: deterministic per seed so a failure replays.
            rng ^= rng >> 12;
            rng ^= rng << 25;
            rng ^= rng >> 27;
            rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
        };
        let mut files = BTreeMap::new();
        for (name, f) in &b.files {
            let s = lock(f);
            let mut image = s.durable.clone();
            if torn.is_some() && s.written.len() > image.len() && s.written.starts_with(&image) {
                let extra = s.written.len() - image.len();
                let keep = (next() % (extra as u64 + 1)) as usize;
                image.extend_from_slice(&s.written[s.durable.len()..s.durable.len() + keep]);
                if keep > 0 && next() % 4 == 0 {
                    // A torn sector: the last persisted bytes are garbage.
                    let at = image.len() - 1 - (next() % keep as u64) as usize;
                    image[at] ^= 0x5a;
                }
            }
            files.insert(name.clone(), Arc::new(Mutex::new(MemFileState { written: image.clone(), durable: image })));
        }
        MemoryBackend { inner: Arc::new(Mutex::new(MemInner { files, syncs: 0, fail_sync_at: None })) }
    }

    /// The current (written) bytes of a file, for tests that inspect or mutate storage.
    pub fn file_bytes(&self, name: &str) -> Option<Vec<u8>> {
        lock(&self.inner).files.get(name).map(|f| lock(f).written.clone())
    }

    /// Replaces a file's bytes (written and durable), for tampering tests.
    pub fn set_file_bytes(&self, name: &str, bytes: Vec<u8>) {
        let mut b = lock(&self.inner);
        let f = b.files.entry(name.to_string()).or_default();
        *lock(f) = MemFileState { written: bytes.clone(), durable: bytes };
    }

    /// Names of all files.
    pub fn file_names(&self) -> Vec<String> {
        lock(&self.inner).files.keys().cloned().collect()
    }
}

impl Backend for MemoryBackend {
    fn open(&self, name: &str, create: bool) -> io::Result<Arc<dyn StorageFile>> {
        let mut b = lock(&self.inner);
        let state = match b.files.get(name) {
            Some(s) => s.clone(),
            None if create => {
                let s = Arc::new(Mutex::new(MemFileState::default()));
                b.files.insert(name.to_string(), s.clone());
                s
            }
            None => return Err(io::Error::new(io::ErrorKind::NotFound, format!("{name} not found"))),
        };
        Ok(Arc::new(MemFile { state, backend: self.inner.clone() }))
    }

    fn exists(&self, name: &str) -> bool {
        lock(&self.inner).files.contains_key(name)
    }

    fn list(&self, dir: &str) -> io::Result<Vec<String>> {
        let prefix = format!("{}/", dir.trim_end_matches('/'));
        Ok(lock(&self.inner)
            .files
            .keys()
            .filter_map(|k| k.strip_prefix(&prefix))
            .filter(|rest| !rest.contains('/'))
            .map(str::to_string)
            .collect())
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        lock(&self.inner).files.remove(name);
        Ok(())
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let mut b = lock(&self.inner);
        let f = b.files.remove(from).ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, from.to_string()))?;
        b.files.insert(to.to_string(), f);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_backend_separates_written_from_durable() {
        let b = MemoryBackend::new();
        let f = b.open("a", true).unwrap();
        f.write_at(0, b"hello").unwrap();
        f.sync().unwrap();
        f.write_at(5, b" world").unwrap();
        let crashed = b.crash_image(None);
        assert_eq!(crashed.file_bytes("a").unwrap(), b"hello");
        assert_eq!(b.file_bytes("a").unwrap(), b"hello world");
        b.fail_syncs_from(1);
        assert!(f.sync().is_err());
    }

    #[test]
    fn file_backend_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let b = FileBackend::new(dir.path());
        let f = b.open("x/y.dat", true).unwrap();
        f.write_at(3, b"abc").unwrap();
        f.sync().unwrap();
        let mut buf = [0u8; 6];
        f.read_at(0, &mut buf).unwrap();
        assert_eq!(&buf, b"\0\0\0abc");
        assert_eq!(b.list("x").unwrap(), vec!["y.dat".to_string()]);
        assert!(f.read_at(4, &mut buf).is_err());
    }
}
