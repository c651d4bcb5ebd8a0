//! `stele serve`.

use std::net::SocketAddr;
use std::time::Duration;

use stele_store::{Log, StoreError};

use crate::cli::DataArg;
use crate::config::Config;

/// Default listen address: loopback only.
const DEFAULT_LISTEN: &str = "127.0.0.1:7300";

#[allow(clippy::too_many_arguments)] // one argument per group of serve flags
pub(crate) fn run(
    config: &Config,
    data: DataArg,
    listen: Option<SocketAddr>,
    origin: Option<String>,
    checkpoint_interval: Option<f64>,
    (witness_flags, witnesses_required): (&[String], Option<usize>),
    (syslog, otlp_grpc): (&crate::serve_syslog::SyslogArgs, Option<SocketAddr>),
    signer: Option<&str>,
) -> anyhow::Result<()> {
    let dir = config.data_dir(data.data.as_ref())?;
    let (witnesses, witnesses_required) = config.witnesses(witness_flags, witnesses_required)?;
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
    let options = config.log_options();
    let signer = crate::cmd_signer::open_signer(signer.or(config.signer.as_deref()), &dir)?;
    let log = Log::open_with(&dir, options.clone(), signer).map_err(|e| match e {
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
    let seconds = |v: Option<f64>, scale: f64, key: &str| -> anyhow::Result<Option<Duration>> {
        match v {
            None => Ok(None),
            Some(v) if v >= 0.0 && (v * scale).is_finite() && v * scale < 1e12 => {
                Ok(Some(Duration::from_secs_f64(v * scale)))
            }
            Some(_) => Err(crate::Failure::usage(format!("{key} must be a non-negative number"))),
        }
    };
    if let Some(d) = seconds(config.verify_incremental_seconds, 1.0, "verify_incremental_seconds")? {
        server.verify_incremental_interval = d;
    }
    if let Some(d) = seconds(config.verify_full_hours, 3600.0, "verify_full_hours")? {
        server.verify_full_interval = d;
    }
    if let Some(mb) = config.verify_max_mb_per_s {
        if !(mb > 0.0 && mb.is_finite()) {
            return Err(crate::Failure::usage("verify_max_mb_per_s must be a positive number"));
        }
        server.verify_max_bytes_per_sec = (mb * 1e6).max(1.0) as u64;
    }
    server.verify_webhook = config.verify_webhook.clone();
    server.witnesses = witnesses;
    server.witnesses_required = witnesses_required;
    config.apply_ingest(&mut server)?;
    if let Some(l) = &config.limits {
        l.apply(&mut server)?;
    }
    let mut log = log;
    server.retention = crate::cmd_retention::record_policies(config, &dir, &mut log, false)?;
    server.erasure = config.erasure.clone();
    if let Some(m) = config.retention_interval_minutes {
        if !(m >= 0.0 && m.is_finite()) {
            return Err(crate::Failure::usage("retention_interval_minutes must be a non-negative number"));
        }
        server.retention_interval = Duration::from_secs_f64(m * 60.0);
    }
    server.syslog = crate::serve_syslog::syslog_config(config.syslog.as_ref(), syslog)?;
    server.otlp_grpc = otlp_grpc.or(config.otlp_grpc);
    server.timestamp_authorities = crate::cmd_timestamp::authorities(config, &[])?;
    if let Some(d) = seconds(config.timestamp_interval_seconds, 1.0, "timestamp_interval_seconds")? {
        server.timestamp_interval = d;
    }
    if let Some(s) = &config.otlp_stream {
        server.otlp_default_stream = s.clone();
    }
    (server.auth, server.tls) = crate::serve_auth::settings(config.auth.as_ref(), config.tls.as_ref())?;
    let scheme = if server.tls.is_some() { "https" } else { "http" };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let shutdown = crate::stop::requested();
        // Said once the listeners are bound and the configuration accepted.
        let running = stele_server::start(server, log, shutdown).await?;
        eprintln!("stele: serving {} on {scheme}://{}", dir.display(), running.local_addr());
        if let Some(addr) = running.otlp_grpc_addr() {
            eprintln!("stele: OTLP/gRPC logs on {addr}");
        }
        running.wait().await
    })?;
    Ok(())
}
