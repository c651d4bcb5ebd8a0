//! `stele token create|list|revoke`: API tokens of the server (see
//! `stele_server::tokens`). The token file is replaced crash-safely; the creation and
//! revocation records go to `_stele/auth` at once when no server holds the data
//! directory, else the running server appends them when it reloads the file (within
//! its reload interval) and only then accepts a new token.

use clap::Subcommand;
use stele_index::Index;
use stele_server::tokens::{Grant, TokenError, TokenFile, TokenRecord};
use stele_store::{Log, StoreError};

use crate::cli::DataArg;
use crate::config::Config;

/// What to do.
#[derive(Subcommand, Debug)]
pub(crate) enum TokenCommand {
    /// Create a token; prints it once on standard output (only its SHA-256 is kept).
    Create {
        #[command(flatten)]
        data: DataArg,
        /// Name of the token (unique among active tokens; in records and errors).
        #[arg(long)]
        name: String,
        /// A grant `ROLE[:STREAM|PREFIX*]`, ROLE one of append, read, admin,
        /// hold-release, erase, governance-bypass, key-rotate, key-revoke; no scope
        /// means every stream. Repeatable.
        #[arg(long = "role", value_name = "ROLE[:SCOPE]", required = true)]
        roles: Vec<String>,
    },
    /// The tokens, one JSON line each (name, fingerprint, grants, created, revoked).
    List {
        #[command(flatten)]
        data: DataArg,
    },
    /// Revoke the active token NAME: refused from the server's next reload on.
    Revoke {
        #[command(flatten)]
        data: DataArg,
        /// Name of the token.
        name: String,
    },
}

fn usage(e: TokenError) -> anyhow::Error {
    match e {
        TokenError::Usage(m) => crate::Failure::usage(m),
        other => other.into(),
    }
}

pub(crate) fn run(config: &Config, what: TokenCommand) -> anyhow::Result<()> {
    match what {
        TokenCommand::List { data } => {
            let dir = config.data_dir(data.data.as_ref())?;
            let file = TokenFile::load(&dir)?.unwrap_or_default();
            for t in &file.tokens {
                let v = serde_json::json!({
                    "name": t.name,
                    "fingerprint": t.fingerprint(),
                    "grants": t.grants,
                    "created": crate::output::rfc3339_ns(t.created_ns as i64),
                    "revoked": t.revoked_ns.map(|n| crate::output::rfc3339_ns(n as i64)),
                });
                println!("{v}");
            }
            Ok(())
        }
        TokenCommand::Create { data, name, roles } => {
            let dir = config.data_dir(data.data.as_ref())?;
            if !dir.join(stele_store::layout::META).exists() {
                return Err(StoreError::NotADataDir(dir.display().to_string()).into());
            }
            let grants = roles.iter().map(|r| r.parse::<Grant>()).collect::<Result<Vec<_>, _>>().map_err(usage)?;
            let mut file = TokenFile::load(&dir)?.unwrap_or_default();
            let token = file.create(&name, &grants, stele_store::log::now_ns()).map_err(usage)?;
            file.save(&dir)?;
            record(config, &dir, &file)?;
            eprintln!("created token {name:?}; it is shown once, store it now:");
            println!("{token}");
            Ok(())
        }
        TokenCommand::Revoke { data, name } => {
            let dir = config.data_dir(data.data.as_ref())?;
            let mut file = TokenFile::load(&dir)?.unwrap_or_default();
            file.revoke(&name, stele_store::log::now_ns()).map_err(usage)?;
            file.save(&dir)?;
            record(config, &dir, &file)?;
            eprintln!("revoked token {name:?}");
            Ok(())
        }
    }
}

/// Appends the `_stele/auth` records the file implies, when no server holds the log.
fn record(config: &Config, dir: &std::path::Path, file: &TokenFile) -> anyhow::Result<()> {
    let mut log = match Log::open(dir, config.log_options()) {
        Ok(log) => log,
        Err(StoreError::Locked) => {
            eprintln!("a server holds this data directory: it records the change when it reloads the token file");
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    let reader = log.reader();
    let snap = Index::open(dir, reader.clone(), &config.field_pointers(), false)?.snapshot();
    let recorded = stele_server::tokens::recorded(&snap, &reader).map_err(anyhow::Error::msg)?;
    let missing: Vec<TokenRecord> = stele_server::tokens::missing_records(file, &recorded, stele_store::log::now_ns());
    if missing.is_empty() {
        return Ok(());
    }
    let payloads: Vec<Vec<u8>> = missing.iter().map(TokenRecord::encode).collect();
    let entries: Vec<stele_store::NewEntry<'_>> = payloads
        .iter()
        .map(|p| stele_store::NewEntry {
            stream: stele_server::tokens::AUTH_STREAM,
            format: stele_store::log::FORMAT_STELE_RECORD,
            payload: p,
        })
        .collect();
    log.append(&entries)?;
    log.sign_checkpoint()?;
    Ok(())
}
