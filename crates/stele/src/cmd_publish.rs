//! `publish`: writes the newest signed checkpoint and its C2SP tlog-tiles (every full
//! hash tile and entry bundle, and the current partial ones) as plain files, so that
//! any static file server (or object store) serves what `GET /tile/...` serves.
//!
//! Every file is written to a temporary name in its directory, synced and renamed, so
//! a reader never sees half a file. Full tiles never change and are written once (an
//! existing one is left alone); partial tiles of the current width are written each
//! time the checkpoint changes (older partial tiles are left: they stay valid for the
//! older tree sizes); `checkpoint` is written last, so that every tile it needs is
//! already there when it appears.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use stele_store::LogReader;
use stele_store::checkpoints::StoredCheckpoint;
use stele_tlog::tile::{TILE_WIDTH, TileId, tiles_at_level};

use crate::cli::DataArg;
use crate::config::Config;

/// What one publication wrote.
#[derive(Default)]
struct Written {
    full: u64,
    partial: u64,
}

pub(crate) fn run(config: &Config, data: DataArg, out: &Path, follow: bool, interval: f64) -> anyhow::Result<()> {
    if !(interval.is_finite() && interval > 0.0 && interval <= 86_400.0) {
        return Err(crate::Failure::usage("--interval must be a number of seconds above 0 and at most 86400"));
    }
    let dir = config.data_dir(data.data.as_ref())?;
    let mut published: Option<u64> = None;
    loop {
        // A fresh read-only view each round: it sees what a running writer made durable.
        let reader = LogReader::open(&dir)?;
        match reader.newest_checkpoint() {
            None if !follow => {
                return Err(crate::Failure::usage(
                    "the log has no signed checkpoint yet (import events or start the server)",
                ));
            }
            Some(cp) if published != Some(cp.tree_size) => {
                let w = publish(&reader, &cp, out)?;
                eprintln!(
                    "published checkpoint of tree size {} to {}: {} new full tile(s), {} partial tile(s)",
                    cp.tree_size,
                    out.display(),
                    w.full,
                    w.partial
                );
                published = Some(cp.tree_size);
            }
            _ => {}
        }
        if !follow {
            return Ok(());
        }
        std::thread::sleep(Duration::from_secs_f64(interval));
    }
}

/// Writes the tiles of `cp`'s tree and then `cp` itself under `out`.
fn publish(reader: &LogReader, cp: &StoredCheckpoint, out: &Path) -> anyhow::Result<Written> {
    let size = cp.tree_size;
    let mut w = Written::default();
    let missing = |what: &str| anyhow::anyhow!("{what} is missing from the log at tree size {size}");
    for level in 0u32.. {
        let (full, partial) = tiles_at_level(size, level);
        if full == 0 && partial == 0 {
            break;
        }
        let widths = (0..full).map(|n| (n, TILE_WIDTH as u32)).chain((partial > 0).then_some((full, partial)));
        for (index, width) in widths {
            let id = TileId { level, index, width };
            let is_full = id.is_full();
            let path = out.join(id.hash_path());
            if !(is_full && path.exists()) {
                let bytes = reader.tile(level, index, width, size)?.ok_or_else(|| missing(&id.hash_path()))?;
                write_atomic(&path, &bytes)?;
                if is_full { w.full += 1 } else { w.partial += 1 }
            }
            if level == 0 {
                let path = out.join(id.entries_path());
                if !(is_full && path.exists()) {
                    let bytes = reader.entry_bundle(index, width, size)?.ok_or_else(|| missing(&id.entries_path()))?;
                    write_atomic(&path, &bytes)?;
                }
            }
        }
    }
    // Key statements before the checkpoint they may be needed to verify.
    let statements: String = stele_store::keys::listed_statements(reader)?
        .iter()
        .map(|(index, note)| stele_tlog::keychain::statement_list_line(*index, note))
        .collect();
    if !statements.is_empty() {
        write_atomic(&out.join("key-statements"), statements.as_bytes())?;
    }
    write_atomic(&out.join("checkpoint"), cp.note.as_bytes())?;
    Ok(w)
}

/// Writes `bytes` to `path` through a synced temporary file renamed over it.
fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let parent = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| anyhow::anyhow!("creating {}: {e}", parent.display()))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp: PathBuf = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_data()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        anyhow::anyhow!("writing {}: {e}", path.display())
    })
}
