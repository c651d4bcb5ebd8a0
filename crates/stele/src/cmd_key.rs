//! `stele key rotate` and `stele key revoke`: key statements committed to `_stele/keys`
//! (docs/keys.md). Both run offline: they take the data directory's writer lock.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use stele_store::StoreError;
use stele_tlog::note::NoteVerifier;

use crate::cli::DataArg;
use crate::config::Config;

/// `stele key ...`.
#[derive(Subcommand, Debug)]
pub(crate) enum KeyCommand {
    /// Replace the log's signing key: announce a new key in `_stele/keys`, signed by the
    /// old key, under a checkpoint signed by both; prints the new verifier key.
    Rotate(RotateArgs),
    /// Trust a key's signatures only for checkpoints up to a tree size (a compromised
    /// key); signed by the current key.
    Revoke(RevokeArgs),
}

/// `stele key rotate`.
#[derive(Args, Debug)]
pub(crate) struct RotateArgs {
    #[command(flatten)]
    data: DataArg,
    /// The current private key, when a signer process holds it rather than the data
    /// directory (stop the signer first). The new key is then left in
    /// `keys/next.key` for the signer.
    #[arg(long, value_name = "FILE")]
    old_key: Option<PathBuf>,
    /// The new private key (default: a fresh one).
    #[arg(long, value_name = "FILE")]
    new_key: Option<PathBuf>,
}

/// `stele key revoke`.
#[derive(Args, Debug)]
pub(crate) struct RevokeArgs {
    #[command(flatten)]
    data: DataArg,
    /// The revoked key (a vkey string, or a file holding one).
    #[arg(long, value_name = "VKEY")]
    key: String,
    /// Largest tree size whose checkpoints the key may have signed honestly: the last
    /// checkpoint known good (from a witness cosignature or a timestamp token).
    #[arg(long, value_name = "TREE_SIZE")]
    as_of: u64,
    /// Why (one line; recorded in the log).
    #[arg(long)]
    reason: String,
    /// The current private key, when a signer process holds it.
    #[arg(long, value_name = "FILE")]
    current_key: Option<PathBuf>,
}

pub(crate) fn run(config: &Config, what: KeyCommand) -> anyhow::Result<()> {
    let locked = |e: StoreError| match e {
        StoreError::Locked => crate::Failure::usage("another stele process holds this data directory; stop it first"),
        other => other.into(),
    };
    let key_file = |p: &Option<PathBuf>| -> anyhow::Result<_> {
        Ok(match p {
            Some(p) => Some(stele_store::signer_file::load_private_key(p)?),
            None => None,
        })
    };
    match what {
        KeyCommand::Rotate(args) => {
            let dir = config.data_dir(args.data.data.as_ref())?;
            let (old, new) = (key_file(&args.old_key)?, key_file(&args.new_key)?);
            let r = stele_store::keys::rotate(&dir, config.log_options(), old, new).map_err(locked)?;
            eprintln!(
                "rotated: entry {} of {} announces the new key from tree size {}; checkpoint {} carries both \
                 signatures; new verifier key:",
                r.index,
                stele_store::keys::KEYS_STREAM,
                r.index + 1,
                r.checkpoint.tree_size
            );
            println!("{}", r.new_key.to_vkey());
            Ok(())
        }
        KeyCommand::Revoke(args) => {
            let dir = config.data_dir(args.data.data.as_ref())?;
            let key = parse_vkey(&args.key)?;
            let current = key_file(&args.current_key)?;
            let index = stele_store::keys::revoke(&dir, config.log_options(), current, &key, args.as_of, &args.reason)
                .map_err(locked)?;
            eprintln!(
                "revoked {} as of tree size {}: recorded at entry {index} of {}",
                key.to_vkey(),
                args.as_of,
                stele_store::keys::KEYS_STREAM
            );
            Ok(())
        }
    }
}

/// A verifier key given as a vkey string or a file holding one.
pub(crate) fn parse_vkey(arg: &str) -> anyhow::Result<NoteVerifier> {
    if let Ok(v) = NoteVerifier::parse(arg) {
        return Ok(v);
    }
    let text = std::fs::read_to_string(arg)
        .map_err(|e| crate::Failure::usage(format!("{arg:?} is neither a verifier key nor a readable file ({e})")))?;
    NoteVerifier::parse(&text).map_err(|e| crate::Failure::usage(format!("{arg}: not a verifier key: {e}")))
}

/// The key `verify-bundle` checks a bundle with: `--key` itself, or, with
/// `--key-statements`, the key of the chain from `--key` that may sign the bundle's
/// checkpoint (its tree size within that key's range, its signature valid). Returned
/// as a vkey string.
pub(crate) fn followed_key(
    key: &str,
    statements: Option<&std::path::Path>,
    bundle: &std::path::Path,
) -> anyhow::Result<String> {
    // The bundle's first line is its JSON header; only its checkpoint is read here,
    // and the key statements line right after it when the bundle carries one.
    let file = std::fs::File::open(bundle).map_err(|e| crate::Failure::usage(format!("{}: {e}", bundle.display())))?;
    // Bytes, not text: a damaged bundle is for the verifier to report, line by line.
    let mut r = std::io::BufReader::new(std::io::Read::take(file, 4 << 20));
    let line = |r: &mut std::io::BufReader<_>| -> anyhow::Result<String> {
        let mut buf = Vec::new();
        std::io::BufRead::read_until(r, b'\n', &mut buf)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    };
    let header = line(&mut r)?;
    let second = line(&mut r)?;
    let (source, text) = match statements {
        Some(path) => (
            format!("--key-statements {}", path.display()),
            std::fs::read_to_string(path)
                .map_err(|e| crate::Failure::usage(format!("--key-statements {}: {e}", path.display())))?,
        ),
        None if second.starts_with("{\"key_statements\":") => {
            let line: crate::cmd_export::KeyStatementsJson = serde_json::from_str(&second)
                .map_err(|e| crate::Failure::tampered(format!("line 2: not a key statements line: {e}")))?;
            ("line 2".to_string(), line.key_statements)
        }
        None => return Ok(key.to_string()),
    };
    let explicit = statements.is_some();
    match follow(key, &source, &text, &header) {
        Ok(found) => Ok(found),
        // The bundle's own statements start from the log's first key; an auditor who
        // trusts a later key checks the checkpoint with that key directly.
        Err(e) if !explicit => {
            eprintln!("stele: note: not following the bundle's key statements from the given key ({e:#})");
            Ok(key.to_string())
        }
        Err(e) => Err(e),
    }
}

/// Follows the statement list `text` (from `source`) from the trusted `key` to the key
/// that signs the checkpoint of the bundle header line `header`; returns its vkey.
fn follow(key: &str, source: &str, text: &str, header: &str) -> anyhow::Result<String> {
    let first = parse_vkey(key)?;
    let given = first.to_vkey();
    let list = stele_tlog::keychain::parse_statement_list(text)
        .map_err(|e| crate::Failure::tampered(format!("{source}: {e}")))?;
    let chain = stele_tlog::keychain::chain_from_list(first, &list)
        .map_err(|(index, e)| crate::Failure::tampered(format!("{source}: key statement at entry {index}: {e}")))?;
    let h: serde_json::Value = serde_json::from_str(header)
        .map_err(|e| crate::Failure::tampered(format!("line 1: not a bundle header: {e}")))?;
    let note = h["checkpoint"].as_str().ok_or_else(|| crate::Failure::tampered("line 1: no checkpoint"))?;
    let verified =
        chain.open_checkpoint(note.as_bytes()).map_err(|e| crate::Failure::tampered(format!("line 1: {e}")))?;
    let size = verified.checkpoint.tree_size;
    let found = chain
        .keys()
        .iter()
        .filter(|k| k.covers(size))
        .find(|k| stele_tlog::checkpoint::open_checkpoint(note.as_bytes(), &k.verifier).is_ok())
        .map(|k| k.verifier.to_vkey())
        .ok_or_else(|| crate::Failure::tampered("line 1: no key of the chain signs the checkpoint"))?;
    if found != given {
        eprintln!("stele: followed {} key statement(s) ({source}) from the given key to {found}", list.len());
    }
    Ok(found)
}
