//! The `stele` command-line tool: thin glue over stele-store, stele-formats,
//! stele-index and stele-server. The binary's `main` calls [`main`]; the library
//! exists so that the tool's own parsers (the config file) can be fuzzed and tested
//! like the other crates'.
#![forbid(unsafe_code)]

mod cli;
mod cmd_erase;
mod cmd_export;
mod cmd_hold;
mod cmd_import;
mod cmd_key;
mod cmd_monitor;
mod cmd_proof;
mod cmd_publish;
mod cmd_query;
mod cmd_read;
mod cmd_retention;
mod cmd_serve;
mod cmd_signer;
mod cmd_timestamp;
mod cmd_token;
mod cmd_verify;
mod cmd_witness;
mod config;
mod config_check;
mod follow;
mod output;
mod serve_auth;
mod serve_limits;
mod serve_syslog;
mod stop;

use std::process::ExitCode;

use clap::Parser as _;
use stele_store::StoreError;

/// A failure with the exit code it maps to.
#[derive(Debug)]
pub(crate) struct Failure {
    code: u8,
    message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

impl Failure {
    /// Exit 1: tampering or inconsistency found.
    pub(crate) fn tampered(message: impl Into<String>) -> anyhow::Error {
        Failure { code: 1, message: message.into() }.into()
    }
    /// Exit 2: bad usage or input.
    pub(crate) fn usage(message: impl Into<String>) -> anyhow::Error {
        Failure { code: 2, message: message.into() }.into()
    }
}

/// Exit code for an error: 1 for damage or tampering found in stored data, 2 otherwise.
fn exit_code(e: &anyhow::Error) -> u8 {
    for cause in e.chain() {
        if let Some(f) = cause.downcast_ref::<Failure>() {
            return f.code;
        }
        if let Some(s) = cause.downcast_ref::<StoreError>() {
            return match s {
                StoreError::Corrupt(_) | StoreError::CheckpointBeyondData { .. } => 1,
                _ => 2,
            };
        }
    }
    2
}

/// Output piped into a program that stopped reading (`| head`) is not an error.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe))
}

/// Runs the command line of this process; the exit code is 0 on success, 1 when
/// damage or tampering was found, 2 for bad usage or input and other errors.
pub fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            let code = exit_code(&e);
            eprintln!("stele: {e:#}");
            ExitCode::from(code)
        }
    }
}

fn run(cli: cli::Cli) -> anyhow::Result<()> {
    let config = config::Config::load(cli.config.as_deref())?;
    use cli::Command::*;
    match cli.command {
        Init { data, origin } => cmd_read::init(&config, data, origin),
        Import { data, format, stream, follow: true, idle_exit, files, .. } => {
            cmd_import::follow(&config, data, format, &stream, idle_exit, &files)
        }
        Import { data, format, stream, skip_invalid, follow: false, files, .. } => {
            cmd_import::run(&config, data, format, &stream, skip_invalid, &files)
        }
        Verify { data, against, index, tsa, key } => {
            cmd_verify::run(&config, data, against, index, &tsa, key.as_deref())
        }
        Timestamp { data, tsas } => cmd_timestamp::run(&config, data, &tsas),
        Query { data, filter } => cmd_query::run(&config, data, &filter),
        Checkpoint { data } => cmd_read::checkpoint(&config, data),
        Get { data, index } => cmd_read::get(&config, data, index),
        Reindex { data } => cmd_query::reindex(&config, data),
        Export { data, filter, out, timestamped } => cmd_export::export(&config, data, &filter, &out, timestamped),
        VerifyBundle { file, key, key_statements, quorum, tsa } => {
            let trusted = cmd_key::followed_key(&key, key_statements.as_deref(), &file)?;
            cmd_export::verify_bundle(&config, &file, &trusted, &quorum, &tsa)
        }
        Serve {
            data,
            listen,
            origin,
            checkpoint_interval,
            witnesses,
            witnesses_required,
            syslog,
            otlp_grpc,
            signer,
        } => {
            let witnesses = (&witnesses[..], witnesses_required);
            let protocols = (&syslog, otlp_grpc);
            cmd_serve::run(&config, data, listen, origin, checkpoint_interval, witnesses, protocols, signer.as_deref())
        }
        Signer { what } => cmd_signer::run(what),
        Key { what } => cmd_key::run(&config, what),
        Monitor { args } => cmd_monitor::run(args),
        Proof { what } => cmd_proof::run(&config, what),
        Retention { what } => cmd_retention::run(&config, what),
        Hold { what } => cmd_hold::run(&config, what),
        Token { what } => cmd_token::run(&config, what),
        Erase(args) => cmd_erase::run(&config, args),
        Publish { data, out, follow, interval } => cmd_publish::run(&config, data, &out, follow, interval),
        Witness { args } => cmd_witness::run(args),
        CheckConfig => {
            for line in config_check::check(&config)? {
                println!("{line}");
            }
            println!("config OK");
            Ok(())
        }
    }
}

/// Parses `text` as a config file (TOML) and runs every check `stele check-config`
/// runs (those that need no file, network or data directory). Returns the summary
/// lines, or the error message `stele` would print. Never panics, whatever the text
/// (the fuzz target `config` checks this).
pub fn check_config_text(text: &str) -> Result<Vec<String>, String> {
    let config: config::Config = toml::from_str(text).map_err(|e| format!("{e}"))?;
    config_check::check(&config).map_err(|e| format!("{e:#}"))
}
