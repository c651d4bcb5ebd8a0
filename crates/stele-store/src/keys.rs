//! Key records: rotation and revocation statements ([`stele_tlog::keychain`]) committed
//! to the reserved stream `_stele/keys`, and the files of the data directory that let a
//! verifier rebuild the key chain without scanning the log.
//!
//! Each statement is one entry of `_stele/keys` (format 3, a stele record): the JSON
//! object `{"type": "key-statement", "note": "<the signed statement note>"}`. Beside
//! the log, `keys/statements` lists them (one line each: `<entry index> <base64 note>`,
//! [`stele_tlog::keychain::parse_statement_list`]) and `keys/first.vkey` keeps the key
//! the log started with; `keys/verifier.vkey` always holds the current key. The list is
//! derived data: `verify` checks every line against the entry it names.

use std::io::Write as _;
use std::path::Path;

use stele_tlog::keychain::{KeyChain, KeyStatement, chain_from_list, parse_statement_list, statement_list_line};
use stele_tlog::note::{NoteSigner, NoteVerifier};
use stele_tlog::signer::CheckpointSigner;

use crate::checkpoints::StoredCheckpoint;
use crate::error::{Result, StoreError};
use crate::layout;
use crate::log::{FORMAT_STELE_RECORD, Log, LogOptions, NewEntry, read_verifier};
use crate::reader::LogReader;
use crate::signer_file;

/// The reserved stream of key statements.
pub const KEYS_STREAM: &str = "_stele/keys";
/// The list of committed key statements (`<entry index> <base64 note>` lines).
pub const STATEMENTS: &str = "keys/statements";
/// The key the log started with (written at the first rotation).
pub const FIRST_KEY: &str = "keys/first.vkey";
/// A new private key whose rotation has not finished yet.
pub const NEXT_KEY: &str = "keys/next.key";

/// The stele record holding one signed statement.
pub fn record_payload(signed_note: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"type": "key-statement", "note": signed_note})).expect("json")
}

/// The signed statement note in a `_stele/keys` record payload.
pub fn parse_record(payload: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
    if v["type"] != "key-statement" {
        return None;
    }
    v["note"].as_str().map(str::to_string)
}

fn read_file(reader: &LogReader, name: &str) -> Result<Option<Vec<u8>>> {
    let backend = &reader.files().backend;
    if !backend.exists(name) {
        return Ok(None);
    }
    let f = backend.open(name, false).map_err(StoreError::io("opening", name))?;
    let len = f.len().map_err(StoreError::io("reading", name))?;
    let mut buf = vec![0u8; usize::try_from(len).map_err(|_| StoreError::Corrupt(format!("{name}: too large")))?];
    f.read_at(0, &mut buf).map_err(StoreError::io("reading", name))?;
    Ok(Some(buf))
}

/// The statements listed in `keys/statements`, in log order (empty when none).
///
/// # Errors
/// [`StoreError::Corrupt`] when the list is malformed.
pub fn listed_statements(reader: &LogReader) -> Result<Vec<(u64, Vec<u8>)>> {
    let Some(bytes) = read_file(reader, STATEMENTS)? else { return Ok(vec![]) };
    let text = String::from_utf8(bytes).map_err(|_| StoreError::Corrupt(format!("{STATEMENTS}: not UTF-8")))?;
    parse_statement_list(&text).map_err(|e| StoreError::Corrupt(format!("{STATEMENTS}: {e}")))
}

/// The key the log started with: `keys/first.vkey`, or the current key when the log
/// never rotated.
///
/// # Errors
/// [`StoreError::Corrupt`] when the file is malformed.
pub fn first_key(reader: &LogReader) -> Result<NoteVerifier> {
    match read_file(reader, FIRST_KEY)? {
        Some(b) => NoteVerifier::parse(&String::from_utf8_lossy(&b))
            .map_err(|e| StoreError::Corrupt(format!("{FIRST_KEY}: {e}"))),
        None => Ok(reader.verifier()),
    }
}

/// A problem with the key statements: the entry index concerned (when known) and what.
pub type KeyProblem = (Option<u64>, String);

/// Checks the listed statements against the log (each line names an entry of
/// `_stele/keys` holding exactly that note) and builds the chain from `trusted` (or
/// the log's first key). Returns the chain and the problems found (entry index, what).
///
/// # Errors
/// Read errors of the log.
pub fn chain(reader: &LogReader, trusted: Option<&NoteVerifier>) -> Result<(KeyChain, Vec<KeyProblem>)> {
    let mut problems = Vec::new();
    let list = match listed_statements(reader) {
        Ok(l) => l,
        Err(e) => {
            problems.push((None, e.to_string()));
            vec![]
        }
    };
    let first = match trusted {
        Some(k) => k.clone(),
        None => first_key(reader)?,
    };
    let keys_stream = reader.streams().id(KEYS_STREAM);
    let mut good = Vec::with_capacity(list.len());
    for (index, note) in &list {
        if *index >= reader.tree_size() {
            problems.push((Some(*index), format!("{STATEMENTS} names entry {index}, beyond the log")));
            continue;
        }
        let leaf = reader.leaf(*index)?;
        let in_log = if Some(leaf.stream_id) == keys_stream {
            match reader.entry(*index) {
                Ok(e) => parse_record(&e.payload).is_some_and(|n| n.as_bytes() == note.as_slice()),
                Err(_) => false,
            }
        } else {
            false
        };
        if !in_log {
            problems.push((
                Some(*index),
                format!("{STATEMENTS}: entry {index} is not this key statement of {KEYS_STREAM}"),
            ));
            continue;
        }
        good.push((*index, note.clone()));
    }
    let chain = match chain_from_list(first.clone(), &good) {
        Ok(c) => c,
        Err((index, e)) => {
            problems.push((Some(index), format!("key statement: {e}")));
            KeyChain::new(first)
        }
    };
    Ok((chain, problems))
}

/// What [`rotate`] did.
#[derive(Clone, Debug)]
pub struct Rotated {
    /// The key that signed the announcement.
    pub old_key: NoteVerifier,
    /// The new key.
    pub new_key: NoteVerifier,
    /// Entry index of the announcement.
    pub index: u64,
    /// The checkpoint of size `index + 1`, signed by both keys.
    pub checkpoint: StoredCheckpoint,
}

fn append_list_line(dir: &Path, index: u64, note: &str) -> Result<()> {
    let path = dir.join(STATEMENTS);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(StoreError::io("opening", STATEMENTS))?;
    f.write_all(statement_list_line(index, note.as_bytes()).as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(StoreError::io("writing", STATEMENTS))
}

fn replace_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    std::fs::write(&tmp, bytes).map_err(StoreError::io("writing", name))?;
    std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(StoreError::io("syncing", name))?;
    std::fs::rename(&tmp, dir.join(name)).map_err(StoreError::io("renaming", name))?;
    std::fs::File::open(dir.join("keys")).and_then(|f| f.sync_all()).map_err(StoreError::io("syncing", "keys"))
}

/// Rotates the log's key, offline (the caller holds no other writer; this takes the
/// lock). `old` signs the announcement (default: the data directory's key file);
/// `new` is the new key (default: a fresh one).
///
/// Steps, each durable before the next: the new private key to `keys/next.key`; the
/// announcement (a rotation statement from tree size `index + 1`, signed by the old
/// key) to `_stele/keys`; its line to `keys/statements`; a checkpoint of size
/// `index + 1` signed by the old and the new key; then `keys/next.key` replaces
/// `keys/signing.key` and `keys/verifier.vkey` becomes the new key. When `old` is
/// given (a key held by a signer process), the data directory's key file is left alone
/// and the new key stays in `keys/next.key` for the operator to move to the signer.
///
/// # Errors
/// [`StoreError::Key`] when a rotation was interrupted (`keys/next.key` exists), when
/// `old` is not the log's current key, or when `new` is not named after the origin;
/// any error of opening, appending or signing.
pub fn rotate(dir: &Path, options: LogOptions, old: Option<NoteSigner>, new: Option<NoteSigner>) -> Result<Rotated> {
    check_no_next_key(dir)?;
    let current = read_verifier(dir)?;
    if let Some(old) = &old
        && old.verifier() != current
    {
        return Err(StoreError::Key(format!(
            "the old key {} is not the log's current key {}",
            old.verifier().to_vkey(),
            current.to_vkey()
        )));
    }
    let mut log = Log::open_with(dir, options, old.map(|k| Box::new(k) as Box<dyn CheckpointSigner>))?;
    let external = !log.signs_with_key_file();
    let mut new = new_key(&current, new)?;
    let (index, checkpoint) = announce_rotation(&mut log, dir, &current, &mut new)?;
    let checkpoint = checkpoint?;
    drop(log);
    finish_rotation(dir, external, &new)?;
    Ok(Rotated { old_key: current, new_key: new.verifier(), index, checkpoint })
}

/// Rotates the key of a log whose writer is running (`log`, over the data directory
/// `dir`), with the same steps and records as [`rotate`]; afterwards `log` signs every
/// checkpoint with the new key (`new`, default a fresh one), which is in
/// `keys/signing.key` (mode 0600) where the next [`Log::open`] finds it, and every
/// reader sharing the log's files verifies with it.
///
/// # Errors
/// [`StoreError::Key`] when the log's key is not the data directory's key file (an
/// out-of-process signer holds it: only [`rotate`], with the writer stopped, can
/// rotate it), when a rotation was interrupted (`keys/next.key` exists), or when `new`
/// is not named after the origin; any error of appending or signing (the log is then
/// as [`Log::append`] and [`Log::sign_checkpoint_with`] leave it, and still signs with
/// the old key).
pub fn rotate_log(log: &mut Log, dir: &Path, new: Option<NoteSigner>) -> Result<Rotated> {
    if !log.signs_with_key_file() {
        return Err(StoreError::Key(
            "the log's key is not the data directory's key file (a signer the writer was given holds it): stop the \
             writer and run `stele key rotate --old-key`"
                .into(),
        ));
    }
    check_no_next_key(dir)?;
    let current = log.reader().verifier();
    let mut new = new_key(&current, new)?;
    let (index, checkpoint) = announce_rotation(log, dir, &current, &mut new)?;
    // Once the announcement is committed the old key may sign no larger tree: the
    // writer goes on with the new key even if the transition checkpoint or a file
    // step failed (the error is still returned; `stele verify` tells what is missing).
    log.replace_signer(Box::new(new.clone()));
    let finished = finish_rotation(dir, false, &new);
    let checkpoint = checkpoint?;
    finished?;
    Ok(Rotated { old_key: current, new_key: new.verifier(), index, checkpoint })
}

fn check_no_next_key(dir: &Path) -> Result<()> {
    if dir.join(NEXT_KEY).exists() {
        return Err(StoreError::Key(format!(
            "{} exists: an earlier rotation did not finish; check `stele verify`, then move it away",
            dir.join(NEXT_KEY).display()
        )));
    }
    Ok(())
}

fn new_key(current: &NoteVerifier, new: Option<NoteSigner>) -> Result<NoteSigner> {
    let new = match new {
        Some(k) => k,
        None => signer_file::generate(current.name())?,
    };
    if new.name() != current.name() {
        return Err(StoreError::Key(format!("the new key must be named {:?}", current.name())));
    }
    Ok(new)
}

/// The steps [`rotate`] and [`rotate_log`] share, up to the checkpoint signed by both
/// keys: `keys/next.key`, the announcement signed by the log's signer (the key
/// `current`), its list line. Returns the announcement's index and the checkpoint; the
/// outer error means nothing was committed, the inner one that the announcement was
/// and the list line or the checkpoint failed.
fn announce_rotation(
    log: &mut Log,
    dir: &Path,
    current: &NoteVerifier,
    new: &mut NoteSigner,
) -> Result<(u64, Result<StoredCheckpoint>)> {
    let reader = log.reader();
    let (chain, problems) = chain(&reader, None)?;
    if let Some((_, p)) = problems.first() {
        return Err(StoreError::Corrupt(format!("key chain: {p}")));
    }
    if chain.current() != current {
        return Err(StoreError::Corrupt(format!(
            "{} is not the last key announced in {KEYS_STREAM}",
            layout::VERIFIER_KEY
        )));
    }
    signer_file::write_private_key(&dir.join(NEXT_KEY), new)?;
    if !dir.join(FIRST_KEY).exists() {
        replace_file(dir, FIRST_KEY, format!("{}\n", current.to_vkey()).as_bytes())?;
    }
    // A new stream is registered by a record in the same commit, just before.
    let registration = u64::from(reader.streams().id(KEYS_STREAM).is_none());
    let index = log.tree_size() + registration;
    let statement = KeyStatement::Rotation {
        origin: current.name().to_string(),
        new_key: new.verifier(),
        from_tree_size: index + 1,
    };
    let note = statement.sign(log.signer_mut()).map_err(StoreError::Signer)?;
    let appended =
        log.append(&[NewEntry { stream: KEYS_STREAM, format: FORMAT_STELE_RECORD, payload: &record_payload(&note) }])?;
    assert_eq!(appended.indexes[0], index, "the announcement lands where its tree size was computed");
    let checkpoint =
        append_list_line(dir, index, &note).and_then(|()| log.sign_checkpoint_with(new as &mut dyn CheckpointSigner));
    Ok((index, checkpoint))
}

/// After the checkpoint signed by both keys: `keys/next.key` replaces
/// `keys/signing.key` (unless an `external` signer holds the key), and
/// `keys/verifier.vkey` becomes the new key.
fn finish_rotation(dir: &Path, external: bool, new: &NoteSigner) -> Result<()> {
    if !external {
        std::fs::rename(dir.join(NEXT_KEY), dir.join(layout::SIGNING_KEY))
            .map_err(StoreError::io("renaming", NEXT_KEY))?;
    }
    replace_file(dir, layout::VERIFIER_KEY, format!("{}\n", new.verifier().to_vkey()).as_bytes())
}

/// Records the revocation of `key` as of `as_of_tree_size`, signed by the log's current
/// key `signer` (default: the data directory's key file), and signs a checkpoint over
/// it. Offline: this takes the writer lock. Returns the statement's entry index.
///
/// # Errors
/// As [`revoke_log`]; errors of opening the log.
pub fn revoke(
    dir: &Path,
    options: LogOptions,
    signer: Option<NoteSigner>,
    key: &NoteVerifier,
    as_of_tree_size: u64,
    reason: &str,
) -> Result<u64> {
    let mut log = Log::open_with(dir, options, signer.map(|k| Box::new(k) as Box<dyn CheckpointSigner>))?;
    revoke_log(&mut log, dir, key, as_of_tree_size, reason)
}

/// Records the revocation of `key` as of `as_of_tree_size` in `log` (its writer, over
/// the data directory `dir`, running or opened by [`revoke`]): the statement is signed
/// by the log's own signer, appended to `_stele/keys`, listed in `keys/statements`,
/// and a checkpoint is signed over it. Returns the statement's entry index.
///
/// # Errors
/// [`StoreError::Key`] when `key` is not an earlier key of the chain (the current key
/// cannot be revoked: rotate first), or `as_of_tree_size` is beyond the log;
/// [`StoreError::Signer`] when the log's signer does not sign key statements (an
/// out-of-process signer signs only checkpoints); errors of appending or signing.
pub fn revoke_log(log: &mut Log, dir: &Path, key: &NoteVerifier, as_of_tree_size: u64, reason: &str) -> Result<u64> {
    let reader = log.reader();
    let (mut chain, problems) = chain(&reader, None)?;
    if let Some((_, p)) = problems.first() {
        return Err(StoreError::Corrupt(format!("key chain: {p}")));
    }
    if as_of_tree_size > log.tree_size() {
        return Err(StoreError::Key(format!(
            "--as-of {as_of_tree_size} is beyond the log's {} entries",
            log.tree_size()
        )));
    }
    let statement = KeyStatement::Revocation {
        origin: chain.origin().to_string(),
        key: key.clone(),
        as_of_tree_size,
        reason: reason.to_string(),
    };
    let note = statement.sign(log.signer_mut()).map_err(StoreError::Signer)?;
    // Check the statement against the chain before committing it: a refused one never
    // enters the log.
    let registration = u64::from(reader.streams().id(KEYS_STREAM).is_none());
    let index = log.tree_size() + registration;
    chain.apply(note.as_bytes(), Some(index)).map_err(|e| StoreError::Key(e.to_string()))?;
    let appended =
        log.append(&[NewEntry { stream: KEYS_STREAM, format: FORMAT_STELE_RECORD, payload: &record_payload(&note) }])?;
    assert_eq!(appended.indexes[0], index, "the statement lands where it was checked");
    append_list_line(dir, index, &note)?;
    log.sign_checkpoint()?;
    Ok(index)
}
