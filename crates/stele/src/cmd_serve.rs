//! `stele serve`.

use std::net::SocketAddr;
use std::time::Duration;

use stele_store::{Log, StoreError};

use crate::cli::DataArg;
use crate::config::Config;

/// Default listen address: loopback only.
const DEFAULT_LISTEN: &str = "127.0.0.1:7300";

pub(crate) fn run(
    config: &Config,
    data: DataArg,
    listen: Option<SocketAddr>,
    origin: Option<String>,
    checkpoint_interval: Option<f64>,
) -> anyhow::Result<()> {
    let dir = config.data_dir(data.data.as_ref())?;
    if !dir.join(stele_store::layout::META).exists() {
        match origin.or_else(|| config.origin.clone()) {
            Some(o) => {
                let vkey = stele_store::log::init(&dir, &o)?;
                eprintln!("initialized {} for origin {o}; verifier key:", dir.display());
                println!("{}", vkey.to_vkey());
            }
            None => return Err(StoreError::NotADataDir(dir.display().to_string()).into()),
        }
    }
    let listen = listen.or(config.listen).unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("valid default"));
    if !listen.ip().is_loopback() {
        eprintln!(
            "stele: warning: listening on {listen}, which is not a loopback address; put TLS and authentication in front of it"
        );
    }
    let options = config.log_options();
    let log = Log::open(&dir, options.clone()).map_err(|e| match e {
        StoreError::Locked => crate::Failure::usage("another stele process holds this data directory"),
        other => other.into(),
    })?;
    let interval = checkpoint_interval.or(config.checkpoint_interval_seconds).unwrap_or(1.0);
    if !(interval > 0.0 && interval.is_finite()) {
        return Err(crate::Failure::usage("--checkpoint-interval must be a positive number of seconds"));
    }
    let mut server = stele_server::ServerConfig::new(dir.clone(), listen);
    server.log_options = options;
    server.field_pointers = config.field_pointers();
    server.checkpoint_interval = Duration::from_secs_f64(interval);
    if let Some(b) = config.max_body_bytes {
        server.max_body_bytes = b;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        eprintln!("stele: serving {} on http://{listen}", dir.display());
        stele_server::run(server, log, shutdown).await
    })?;
    Ok(())
}
