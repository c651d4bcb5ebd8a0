//! `stele witness`: a C2SP tlog-witness that cosigns checkpoints of the logs it knows.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use stele_tlog::note::NoteVerifier;
use stele_witness::{Witness, load_or_create_key, load_or_create_ml_dsa_key};

use crate::Failure;

/// Arguments of `stele witness`.
#[derive(Args, Debug, Clone)]
pub(crate) struct WitnessArgs {
    /// Address to serve `POST /add-checkpoint` on (plain HTTP; put TLS in front).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7380")]
    listen: SocketAddr,
    /// The witness's private key file (`PRIVATE+KEY+...`, mode 0600).
    #[arg(long, value_name = "FILE")]
    key_file: PathBuf,
    /// Create the key file with this witness name if it does not exist yet.
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Verifier key of a log to witness (its name is the log's origin), or a file
    /// containing it. Repeat for several logs.
    #[arg(long = "log", value_name = "VKEY", required = true)]
    logs: Vec<String>,
    /// Directory keeping the latest cosigned checkpoint of each log.
    #[arg(long, value_name = "DIR")]
    state: PathBuf,
    /// Also cosign with ML-DSA-44 (C2SP tlog-cosignature type 0x06), with the key in this
    /// file (created, mode 0600, with --name if it does not exist yet).
    #[arg(long = "ml-dsa", value_name = "FILE")]
    ml_dsa: Option<PathBuf>,
}

fn load_log_key(key: &str) -> anyhow::Result<NoteVerifier> {
    if let Ok(v) = NoteVerifier::parse(key) {
        return Ok(v);
    }
    let text = std::fs::read_to_string(key)
        .map_err(|_| Failure::usage(format!("--log {key:?} is neither a verifier key nor a readable file")))?;
    NoteVerifier::parse(&text).map_err(|e| Failure::usage(format!("--log {key}: {e}")))
}

pub(crate) fn run(args: WitnessArgs) -> anyhow::Result<()> {
    let logs = args.logs.iter().map(|k| load_log_key(k)).collect::<anyhow::Result<Vec<_>>>()?;
    let existed = args.key_file.exists();
    let cosigner = load_or_create_key(&args.key_file, args.name.as_deref())?;
    if !existed {
        eprintln!("stele: created witness key {}; verifier key:", args.key_file.display());
    }
    println!("{}", cosigner.verifier().to_vkey());
    if !args.listen.ip().is_loopback() {
        eprintln!(
            "stele: warning: listening on {}, which is not a loopback address; put TLS in front of it",
            args.listen
        );
    }
    let mut witness = Witness::open(cosigner, logs, &args.state)?;
    if let Some(path) = &args.ml_dsa {
        let key = load_or_create_ml_dsa_key(path, args.name.as_deref())?;
        println!("{}", key.verifier().to_vkey());
        witness = witness.with_ml_dsa(key);
    }
    let witness = Arc::new(witness);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen).await?;
        eprintln!("stele: witness serving http://{}/add-checkpoint", listener.local_addr()?);
        let shutdown = crate::stop::requested();
        stele_witness::serve(listener, witness, shutdown).await
    })?;
    Ok(())
}
