//! `init`, `checkpoint` and `get`.

use std::path::PathBuf;

use base64::Engine as _;
use serde_json::json;
use stele_store::LogReader;

use crate::cli::DataArg;
use crate::config::Config;
use crate::output;

pub(crate) fn init(config: &Config, data: DataArg, origin: Option<String>) -> anyhow::Result<()> {
    let dir = config.data_dir(data.data.as_ref())?;
    let origin = origin.or_else(|| config.origin.clone()).ok_or_else(|| {
        crate::Failure::usage("no origin: give --origin NAME (the log's unique name, e.g. audit.example.com/prod)")
    })?;
    let vkey = stele_store::log::init(&dir, &origin)?;
    eprintln!("initialized {} for origin {origin}", dir.display());
    eprintln!("verifier key (give it to auditors and monitors; also in {}/keys/verifier.vkey):", dir.display());
    println!("{}", vkey.to_vkey());
    Ok(())
}

pub(crate) fn open_reader(config: &Config, data: &DataArg) -> anyhow::Result<(PathBuf, LogReader)> {
    let dir = config.data_dir(data.data.as_ref())?;
    let reader = LogReader::open(&dir)?;
    Ok((dir, reader))
}

pub(crate) fn checkpoint(config: &Config, data: DataArg) -> anyhow::Result<()> {
    let (_, reader) = open_reader(config, &data)?;
    match reader.newest_checkpoint() {
        Some(cp) => {
            use std::io::Write as _;
            std::io::stdout().lock().write_all(cp.note.as_bytes())?;
            Ok(())
        }
        None => Err(crate::Failure::usage("the log has no signed checkpoint yet (import events or start the server)")),
    }
}

pub(crate) fn get(config: &Config, data: DataArg, index: u64) -> anyhow::Result<()> {
    let (dir, reader) = open_reader(config, &data)?;
    let keys = crate::cmd_erase::read_keys(config, &dir, &reader)?;
    let e = reader.entry(index).map_err(|e| match e {
        stele_store::StoreError::NoSuchEntry { .. } => crate::Failure::usage(e.to_string()),
        other => other.into(),
    })?;
    let mut m = output::entry_json(&e);
    m.insert("leaf_hash".into(), e.leaf_hash.to_base64().into());
    m.insert("leaf".into(), base64::engine::general_purpose::STANDARD.encode(e.leaf.encode()).into());
    // The event as received (sealed fields restored while their key exists); the
    // stored form the leaf commits to is `stored_base64` for sealed entries.
    let v = crate::cmd_erase::view(keys.as_ref(), &e)?;
    let shown = crate::cmd_erase::viewed(&e, &v);
    m.insert("format".into(), output::format_name(v.format).into());
    output::insert_event(&mut m, &shown);
    crate::cmd_erase::annotate(&mut m, &v);
    if v.state != stele_erasure::SealState::Clear {
        m.insert("stored_base64".into(), base64::engine::general_purpose::STANDARD.encode(&e.payload).into());
    }
    if v.state == stele_erasure::SealState::Restored {
        // `event` is re-rendered JSON; these are the event's bytes exactly as received.
        m.insert("restored_base64".into(), base64::engine::general_purpose::STANDARD.encode(&v.bytes).into());
    }
    // Prove inclusion in the newest checkpoint when it covers the entry, else in the
    // current tree (which no checkpoint has signed yet).
    let (size, note) = match reader.newest_checkpoint() {
        Some(cp) if cp.tree_size > index => (cp.tree_size, Some(cp.note)),
        _ => (reader.tree_size(), None),
    };
    let proof = reader.inclusion_proof(index, size)?;
    m.insert(
        "inclusion_proof".into(),
        json!({"leaf_index": index, "tree_size": size, "root_hash": reader.root_hash(size)?.to_base64(), "hashes": output::hashes_b64(&proof)}),
    );
    m.insert("checkpoint".into(), note.map(serde_json::Value::from).unwrap_or(serde_json::Value::Null));
    use std::io::Write as _;
    writeln!(std::io::stdout().lock(), "{}", serde_json::to_string_pretty(&m)?)?;
    Ok(())
}
