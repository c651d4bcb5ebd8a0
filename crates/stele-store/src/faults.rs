//! A fault-injecting backend for deterministic storage tests: it wraps any
//! [`Backend`] and, when armed, makes one chosen operation fail the way disks fail —
//! a short write, a full disk (`ENOSPC`), an I/O error on write, sync or read, a bit
//! flipped in the bytes a read returns — or makes every write and sync fail from a
//! chosen point on (a power cut: combined with
//! [`MemoryBackend::crash_image`](crate::backend::MemoryBackend::crash_image), the
//! bytes after that point never become durable).
//!
//! Faults are counted per operation kind: [`Faults::arm`] with `after = 0` fails the
//! next operation of that kind. What fired is kept for the test to compare with the
//! errors the log reported ([`Faults::take_fired`]).

use std::io;
use std::sync::{Arc, Mutex};

use crate::backend::{Backend, StorageFile};

/// One kind of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// A write stores only the first half of its bytes, then fails (`EIO`).
    ShortWrite,
    /// A write fails with `ENOSPC` (`ErrorKind::StorageFull`) before storing anything.
    NoSpace,
    /// A write fails with `EIO` before storing anything.
    WriteError,
    /// A sync fails with `EIO`; nothing written since the last sync becomes durable.
    SyncError,
    /// A read fails with `EIO`.
    ReadError,
    /// A read succeeds but one bit of the returned bytes is flipped.
    BitFlip,
}

impl Fault {
    fn kind(self) -> OpKind {
        match self {
            Fault::ShortWrite | Fault::NoSpace | Fault::WriteError => OpKind::Write,
            Fault::SyncError => OpKind::Sync,
            Fault::ReadError | Fault::BitFlip => OpKind::Read,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OpKind {
    Write,
    Sync,
    Read,
}

/// A fault that fired: which, on which file, at which count of its operation kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fired {
    /// The fault.
    pub fault: Fault,
    /// The file's name in the backend.
    pub file: String,
}

#[derive(Default)]
struct State {
    /// Armed faults: (operations of its kind still to let through, fault).
    armed: Vec<(u64, Fault)>,
    /// Every write (and extending `set_len`) fails with `ENOSPC` while set.
    disk_full: bool,
    /// Every write and sync fails from now on (a power cut in progress).
    dead: bool,
    /// Writes or syncs left before `dead` is set (`None`: no cut planned).
    cut_after: Option<u64>,
    fired: Vec<Fired>,
    flip_seed: u64,
    writes: u64,
    syncs: u64,
    reads: u64,
}

/// The control handle of a [`FaultyBackend`], shared with its files.
#[derive(Default)]
pub struct Faults {
    state: Mutex<State>,
}

impl Faults {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Arms `fault` to fire on the operation of its kind after `after` more succeed.
    pub fn arm(&self, fault: Fault, after: u64) {
        self.lock().armed.push((after, fault));
    }

    /// Disarms every armed fault and ends a power cut (the full-disk flag stays).
    pub fn clear(&self) {
        let mut s = self.lock();
        s.armed.clear();
        s.dead = false;
        s.cut_after = None;
    }

    /// Makes every write fail with `ENOSPC` (`true`) until called with `false`.
    pub fn set_disk_full(&self, full: bool) {
        self.lock().disk_full = full;
    }

    /// Plans a power cut: after `ops` more writes and syncs succeed, every later one
    /// fails (the test then takes a crash image of the inner memory backend).
    pub fn cut_power_after(&self, ops: u64) {
        let mut s = self.lock();
        s.cut_after = Some(ops);
        s.dead = ops == 0;
    }

    /// Whether a planned power cut has happened.
    pub fn power_cut(&self) -> bool {
        self.lock().dead
    }

    /// Writes and syncs so far (the points a power cut can fall between).
    pub fn write_and_sync_count(&self) -> u64 {
        let s = self.lock();
        s.writes + s.syncs
    }

    /// The faults that fired since the last call.
    pub fn take_fired(&self) -> Vec<Fired> {
        std::mem::take(&mut self.lock().fired)
    }

    /// Seeds the choice of flipped bits.
    pub fn set_flip_seed(&self, seed: u64) {
        self.lock().flip_seed = seed;
    }

    /// Counts one operation of `kind` on `file`; returns the fault to apply, if any.
    fn next(&self, kind: OpKind, file: &str) -> Option<Fault> {
        let mut s = self.lock();
        match kind {
            OpKind::Write => s.writes += 1,
            OpKind::Sync => s.syncs += 1,
            OpKind::Read => s.reads += 1,
        }
        if kind != OpKind::Read {
            if s.dead {
                return Some(if kind == OpKind::Sync { Fault::SyncError } else { Fault::WriteError });
            }
            if let Some(left) = s.cut_after {
                if left == 0 {
                    s.dead = true;
                    return Some(if kind == OpKind::Sync { Fault::SyncError } else { Fault::WriteError });
                }
                s.cut_after = Some(left - 1);
            }
            if kind == OpKind::Write && s.disk_full {
                s.fired.push(Fired { fault: Fault::NoSpace, file: file.to_string() });
                return Some(Fault::NoSpace);
            }
        }
        let mut hit = None;
        for (i, (left, fault)) in s.armed.iter_mut().enumerate() {
            if fault.kind() != kind {
                continue;
            }
            if *left == 0 {
                hit = Some((i, *fault));
                break;
            }
            *left -= 1;
        }
        let (i, fault) = hit?;
        s.armed.remove(i);
        s.fired.push(Fired { fault, file: file.to_string() });
        Some(fault)
    }

    fn flip_position(&self, len: usize) -> usize {
        let mut s = self.lock();
        s.flip_seed = s.flip_seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        ((s.flip_seed >> 33) as usize) % (len * 8)
    }
}

fn injected(kind: io::ErrorKind, what: &str) -> io::Error {
    io::Error::new(kind, format!("injected fault: {what}"))
}

/// A backend whose operations fail when its [`Faults`] say so.
#[derive(Clone)]
pub struct FaultyBackend {
    inner: Arc<dyn Backend>,
    faults: Arc<Faults>,
}

impl FaultyBackend {
    /// Wraps `inner`; returns the backend and its control handle.
    pub fn new(inner: Arc<dyn Backend>) -> (FaultyBackend, Arc<Faults>) {
        let faults = Arc::new(Faults::default());
        (FaultyBackend { inner, faults: faults.clone() }, faults)
    }
}

struct FaultyFile {
    inner: Arc<dyn StorageFile>,
    name: String,
    faults: Arc<Faults>,
}

impl StorageFile for FaultyFile {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        match self.faults.next(OpKind::Read, &self.name) {
            Some(Fault::ReadError) => Err(injected(io::ErrorKind::Other, "read error (EIO)")),
            Some(Fault::BitFlip) => {
                self.inner.read_at(offset, buf)?;
                if !buf.is_empty() {
                    let bit = self.faults.flip_position(buf.len());
                    buf[bit / 8] ^= 1 << (bit % 8);
                }
                Ok(())
            }
            _ => self.inner.read_at(offset, buf),
        }
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        match self.faults.next(OpKind::Write, &self.name) {
            Some(Fault::ShortWrite) => {
                self.inner.write_at(offset, &data[..data.len() / 2])?;
                Err(injected(io::ErrorKind::Other, "short write (EIO after part of the bytes)"))
            }
            Some(Fault::NoSpace) => Err(injected(io::ErrorKind::StorageFull, "no space left on device (ENOSPC)")),
            Some(_) => Err(injected(io::ErrorKind::Other, "write error (EIO)")),
            None => self.inner.write_at(offset, data),
        }
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let growing = len > self.inner.len()?;
        let mut s = self.faults.lock();
        if growing && s.disk_full {
            s.fired.push(Fired { fault: Fault::NoSpace, file: self.name.clone() });
            return Err(injected(io::ErrorKind::StorageFull, "no space left on device (ENOSPC)"));
        }
        drop(s);
        if self.faults.lock().dead {
            return Err(injected(io::ErrorKind::Other, "write error (EIO)"));
        }
        self.inner.set_len(len)
    }

    fn sync(&self) -> io::Result<()> {
        match self.faults.next(OpKind::Sync, &self.name) {
            Some(_) => Err(injected(io::ErrorKind::Other, "sync failed (EIO)")),
            None => self.inner.sync(),
        }
    }

    fn reserve(&self, offset: u64, len: u64) -> io::Result<()> {
        let mut s = self.faults.lock();
        if s.disk_full {
            s.fired.push(Fired { fault: Fault::NoSpace, file: self.name.clone() });
            return Err(injected(io::ErrorKind::StorageFull, "no space left on device (ENOSPC)"));
        }
        drop(s);
        self.inner.reserve(offset, len)
    }
}

impl Backend for FaultyBackend {
    fn open(&self, name: &str, create: bool) -> io::Result<Arc<dyn StorageFile>> {
        if create && !self.inner.exists(name) {
            let mut s = self.faults.lock();
            if s.dead {
                return Err(injected(io::ErrorKind::Other, "write error (EIO)"));
            }
            if s.disk_full {
                s.fired.push(Fired { fault: Fault::NoSpace, file: name.to_string() });
                return Err(injected(io::ErrorKind::StorageFull, "no space left on device (ENOSPC)"));
            }
        }
        let inner = self.inner.open(name, create)?;
        Ok(Arc::new(FaultyFile { inner, name: name.to_string(), faults: self.faults.clone() }))
    }

    fn exists(&self, name: &str) -> bool {
        self.inner.exists(name)
    }

    fn list(&self, dir: &str) -> io::Result<Vec<String>> {
        self.inner.list(dir)
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        if self.faults.lock().dead {
            return Err(injected(io::ErrorKind::Other, "write error (EIO)"));
        }
        self.inner.remove(name)
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        if self.faults.lock().dead {
            return Err(injected(io::ErrorKind::Other, "write error (EIO)"));
        }
        self.inner.rename(from, to)
    }
}
