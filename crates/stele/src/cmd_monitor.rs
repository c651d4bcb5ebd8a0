//! `stele monitor`: watch a C2SP tlog-tiles log with nothing but its verifier key.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clap::Args;
use stele_monitor::{MonitorError, Options, State, WitnessQuorum, check_once_with_witnesses, open_source_with_ca};
use stele_tlog::cosignature::AnyCosignatureVerifier;
use stele_tlog::note::NoteVerifier;

use crate::Failure;
use crate::cli::QuorumArgs;

/// Arguments of `stele monitor`.
#[derive(Args, Debug, Clone)]
pub(crate) struct MonitorArgs {
    /// The log's URL prefix (`https://...` or `http://...`), a `file://` URL or a
    /// directory holding a published tlog-tiles log.
    #[arg(long, value_name = "URL")]
    url: String,
    /// The log's verifier key (C2SP signed-note vkey), or a file containing it.
    #[arg(long, value_name = "VKEY")]
    key: String,
    /// File holding the last trusted checkpoint (created on first use).
    #[arg(long, value_name = "FILE")]
    state: PathBuf,
    /// Check again every SECONDS, forever; detections are logged, never fatal.
    #[arg(long, value_name = "SECONDS")]
    interval: Option<f64>,
    /// Where to keep evidence of misbehaviour (default: FILE.evidence).
    #[arg(long, value_name = "DIR")]
    evidence: Option<PathBuf>,
    /// Also fetch the new entry bundles and check each entry against its leaf hash.
    #[arg(long)]
    entries: bool,
    /// With --interval, serve Prometheus metrics on this address (`GET /metrics`):
    /// checks, alarms and errors so far, and the time of the last good check.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<std::net::SocketAddr>,
    /// Trust only the CA certificates in this PEM file for https (a private CA);
    /// default: the Mozilla root store.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    #[command(flatten)]
    quorum: QuorumArgs,
    /// Also check the RFC 3161 tokens the log serves (`checkpoint/timestamps`) against
    /// these TSA certificates.
    #[command(flatten)]
    tsa: crate::cli::TsaCertArgs,
}

impl QuorumArgs {
    /// The witnesses' keys (each a vkey or a file holding one) and the number required.
    pub(crate) fn load(&self) -> anyhow::Result<WitnessQuorum> {
        if self.witnesses_required > self.witnesses.len() {
            return Err(Failure::usage(format!(
                "--witnesses-required {} is more than the {} --witness keys given",
                self.witnesses_required,
                self.witnesses.len()
            )));
        }
        let witnesses = self
            .witnesses
            .iter()
            .map(|w| {
                if let Ok(v) = AnyCosignatureVerifier::parse(w) {
                    return Ok(v);
                }
                let text = std::fs::read_to_string(w).map_err(|e| {
                    Failure::usage(format!("--witness {w:?}: neither a cosignature vkey nor a readable file ({e})"))
                })?;
                AnyCosignatureVerifier::parse(&text).map_err(|e| Failure::usage(format!("--witness file {w}: {e}")))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(WitnessQuorum { witnesses, required: self.witnesses_required })
    }
}

fn load_key(key: &str) -> anyhow::Result<NoteVerifier> {
    if let Ok(v) = NoteVerifier::parse(key) {
        return Ok(v);
    }
    let text = std::fs::read_to_string(key)
        .map_err(|e| Failure::usage(format!("--key is neither a verifier key nor a readable file ({key}: {e})")))?;
    NoteVerifier::parse(&text).map_err(|e| Failure::usage(format!("--key file {key}: {e}")))
}

fn failure(e: MonitorError) -> anyhow::Error {
    if e.is_detection() { Failure::tampered(e.to_string()) } else { Failure::usage(e.to_string()) }
}

pub(crate) fn run(args: MonitorArgs) -> anyhow::Result<()> {
    let verifier = load_key(&args.key)?;
    let quorum = args.quorum.load()?;
    let interval = match args.interval {
        None => None,
        Some(s) if s.is_finite() && s > 0.0 => Some(Duration::from_secs_f64(s)),
        Some(s) => return Err(Failure::usage(format!("--interval must be a positive number of seconds, not {s}"))),
    };
    let ca = match &args.ca {
        Some(p) => Some(std::fs::read(p).map_err(|e| Failure::usage(format!("--ca {}: {e}", p.display())))?),
        None => None,
    };
    let source = open_source_with_ca(&args.url, Duration::from_secs(60), ca.as_deref())
        .map_err(|e| Failure::usage(e.to_string()))?;
    let mut state = State::new(args.state);
    if let Some(dir) = args.evidence {
        state = state.with_evidence_dir(dir);
    }
    let options = Options { entries: args.entries };
    let tsa_certs = crate::cmd_timestamp::trusted(&crate::config::Config::default(), &args.tsa)?;
    // Tokens are checked only when the monitor is given TSA certificates.
    let check_tokens = |checkpoint: &stele_tlog::checkpoint::Checkpoint| -> Result<(), MonitorError> {
        if tsa_certs.is_empty() {
            return Ok(());
        }
        match stele_monitor::timestamps::check_timestamps(source.as_ref(), checkpoint, &tsa_certs)? {
            None => println!("timestamps: the log serves no RFC 3161 tokens"),
            Some(list) => {
                for t in list {
                    println!(
                        "timestamp: checkpoint {} ({}): {}",
                        t.tree_size,
                        t.tsa,
                        crate::cmd_timestamp::describe(&t.token)
                    );
                }
            }
        }
        Ok(())
    };
    let Some(interval) = interval else {
        let outcome =
            check_once_with_witnesses(source.as_ref(), &verifier, &quorum, &state, &options).map_err(failure)?;
        println!("{outcome}");
        check_tokens(outcome.checkpoint()).map_err(failure)?;
        return Ok(());
    };
    let counters = Arc::new(Counters::default());
    if let Some(addr) = args.metrics {
        serve_metrics(addr, counters.clone())?;
    }
    loop {
        counters.checks.fetch_add(1, Ordering::Relaxed);
        match check_once_with_witnesses(source.as_ref(), &verifier, &quorum, &state, &options)
            .and_then(|o| check_tokens(o.checkpoint()).map(|()| o))
        {
            Ok(outcome) => {
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
                counters.last_success.store(now, Ordering::Relaxed);
                println!("{outcome}");
            }
            Err(e) if e.is_detection() => {
                let n = counters.alarms.fetch_add(1, Ordering::Relaxed) + 1;
                eprintln!("stele: ALARM: {e} (stele_monitor_alarms_total {n})");
            }
            Err(e) => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
                eprintln!("stele: monitor: {e}");
            }
        }
        std::thread::sleep(interval);
    }
}

/// What the monitor exposes on `/metrics`.
#[derive(Default)]
struct Counters {
    checks: AtomicU64,
    alarms: AtomicU64,
    errors: AtomicU64,
    last_success: AtomicU64,
}

impl Counters {
    fn render(&self) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "# HELP stele_monitor_checks_total Checks started.\n# TYPE stele_monitor_checks_total counter\nstele_monitor_checks_total {}\n\
             # HELP stele_monitor_alarms_total Detections: rollback, fork, bad signature, tiles or entries that do not hash to the root, missing witnesses.\n# TYPE stele_monitor_alarms_total counter\nstele_monitor_alarms_total {}\n\
             # HELP stele_monitor_errors_total Checks that could not complete (network, usage).\n# TYPE stele_monitor_errors_total counter\nstele_monitor_errors_total {}\n\
             # HELP stele_monitor_last_success_timestamp_seconds Unix time of the last check that passed.\n# TYPE stele_monitor_last_success_timestamp_seconds gauge\nstele_monitor_last_success_timestamp_seconds {}\n",
            g(&self.checks),
            g(&self.alarms),
            g(&self.errors),
            g(&self.last_success)
        )
    }
}

/// Serves `GET /metrics` (any path, in fact) on a plain thread with a minimal HTTP/1.1
/// responder: one short response per connection, bounded request read.
fn serve_metrics(addr: std::net::SocketAddr, counters: Arc<Counters>) -> anyhow::Result<()> {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind(addr).map_err(|e| Failure::usage(format!("--metrics {addr}: {e}")))?;
    eprintln!("stele: monitor metrics on http://{}/metrics", listener.local_addr()?);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let body = counters.render();
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    Ok(())
}
