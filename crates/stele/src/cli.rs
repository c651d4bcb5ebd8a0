//! Command-line arguments.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// stele: an immutable, tamper-evident audit log.
///
/// Exit codes: 0 success; 1 verification found tampering or inconsistency;
/// 2 bad usage, bad input or an I/O error. Messages go to stderr.
#[derive(Parser, Debug)]
#[command(name = "stele", version, about, long_about = None)]
pub(crate) struct Cli {
    /// Read settings from this TOML file (flags override it).
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Args, Debug, Clone)]
pub(crate) struct DataArg {
    /// The data directory (or `data` in the config file).
    #[arg(long, value_name = "DIR")]
    pub(crate) data: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Create a data directory and signing key; prints the verifier key.
    Init {
        #[command(flatten)]
        data: DataArg,
        /// The log's origin: its unique name, e.g. `audit.example.com/prod`.
        #[arg(long)]
        origin: Option<String>,
    },
    /// Append events from files (or `-` for stdin) and sign a checkpoint.
    Import {
        #[command(flatten)]
        data: DataArg,
        /// Input framing.
        #[arg(long, value_enum, default_value_t = FormatArg::Auto)]
        format: FormatArg,
        /// Stream the events belong to.
        #[arg(long, default_value = "default")]
        stream: String,
        /// Append the valid events and list the invalid ones instead of stopping.
        #[arg(long)]
        skip_invalid: bool,
        /// Tail one growing file (JSON lines) across rotation and restarts, each line
        /// exactly once; the position is kept in the data directory.
        #[arg(long)]
        follow: bool,
        /// With --follow: exit after this many seconds without new lines.
        #[arg(long, value_name = "SECONDS", requires = "follow")]
        idle_exit: Option<f64>,
        /// Files to read; `-` is standard input.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Audit the whole data directory; exit 1 on any tampering or damage.
    Verify {
        #[command(flatten)]
        data: DataArg,
        /// A signed checkpoint kept outside the data directory: the log must contain
        /// and be consistent with it. The only way to catch a rollback that removed
        /// entries and checkpoints together.
        #[arg(long, value_name = "FILE")]
        against: Option<PathBuf>,
        /// Also check that the query index agrees with the events.
        #[arg(long)]
        index: bool,
        /// The first verifier key you trust (a vkey or a file); key statements in
        /// `_stele/keys` lead from it to the current key. Default: the data directory's.
        #[arg(long, value_name = "VKEY")]
        key: Option<String>,
        #[command(flatten)]
        tsa: TsaCertArgs,
    },
    /// Obtain an RFC 3161 timestamp token for the newest checkpoint from each
    /// configured timestamp authority (or --tsa), verify it and store it beside the
    /// checkpoint. Needs the writer lock: a running server stamps on its own schedule.
    Timestamp {
        #[command(flatten)]
        data: DataArg,
        /// A TSA as `URL=CERT.pem` (its URL and the certificate its tokens must chain
        /// to). Repeatable; replaces the config file's `[[timestamp_authority]]` tables.
        #[arg(long = "tsa", value_name = "URL=PEM")]
        tsas: Vec<String>,
    },
    /// Find events; prints JSON lines, oldest first.
    Query {
        #[command(flatten)]
        data: DataArg,
        #[command(flatten)]
        filter: QueryArgs,
    },
    /// Print the newest signed checkpoint.
    Checkpoint {
        #[command(flatten)]
        data: DataArg,
    },
    /// Print one entry with its leaf and inclusion proof.
    Get {
        #[command(flatten)]
        data: DataArg,
        /// Entry index.
        index: u64,
    },
    /// Write an evidence bundle of the selected events (as `query` selects them) with
    /// the newest signed checkpoint and an inclusion proof per event.
    Export {
        #[command(flatten)]
        data: DataArg,
        #[command(flatten)]
        filter: QueryArgs,
        /// The bundle file to write.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Prove against the newest checkpoint that has RFC 3161 timestamp tokens
        /// (carried in the bundle) instead of the newest checkpoint.
        #[arg(long)]
        timestamped: bool,
    },
    /// Check an evidence bundle offline; exit 1 on any changed byte.
    VerifyBundle {
        /// The bundle file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// The log's verifier key (a vkey string, or a file holding one). Only this key
        /// is trusted, never the one the bundle carries.
        #[arg(long, value_name = "VKEY")]
        key: String,
        /// The log's key statements (`GET /key-statements`, or `key-statements` of a
        /// published log): followed from --key when the bundle is signed by a later key.
        #[arg(long, value_name = "FILE")]
        key_statements: Option<PathBuf>,
        #[command(flatten)]
        quorum: QuorumArgs,
        #[command(flatten)]
        tsa: TsaCertArgs,
    },
    /// Rebuild the query index from the log.
    Reindex {
        #[command(flatten)]
        data: DataArg,
    },
    /// Run the HTTP server (initializes the directory on first start with --origin).
    Serve {
        #[command(flatten)]
        data: DataArg,
        /// Address to listen on.
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
        /// Create the data directory with this origin if it does not exist yet.
        #[arg(long)]
        origin: Option<String>,
        /// Seconds between checkpoints (a checkpoint is signed only if the log grew).
        #[arg(long, value_name = "SECONDS")]
        checkpoint_interval: Option<f64>,
        /// A C2SP tlog-witness to submit each checkpoint to, as `URL=VKEY` (its
        /// submission prefix and cosignature verifier key). Repeatable; replaces the
        /// config file's `[[witness]]` tables.
        #[arg(long = "witness", value_name = "URL=VKEY")]
        witnesses: Vec<String>,
        /// Cosignatures a checkpoint needs before `GET /checkpoint` serves the cosigned
        /// note (default 0, or `witnesses_required` in the config file).
        #[arg(long, value_name = "K")]
        witnesses_required: Option<usize>,
        #[command(flatten)]
        syslog: crate::serve_syslog::SyslogArgs,
        /// Also serve OTLP/gRPC logs (`LogsService/Export`) on this address (or
        /// `otlp_grpc` in the config file). OTLP/HTTP is always at `POST /v1/logs`.
        #[arg(long, value_name = "ADDR")]
        otlp_grpc: Option<SocketAddr>,
        /// Where checkpoints are signed: `unix:PATH` (a `stele signer serve` process) or
        /// `file:PATH` (a key file outside the data directory); default the data
        /// directory's key (or `signer` in the config file).
        #[arg(long, value_name = "SPEC")]
        signer: Option<String>,
    },
    /// Watch a C2SP tlog-tiles log: verify its checkpoints, tiles and consistency.
    Monitor {
        #[command(flatten)]
        args: crate::cmd_monitor::MonitorArgs,
    },
    /// Run a C2SP tlog-witness: cosign checkpoints of known logs that are consistent.
    Witness {
        #[command(flatten)]
        args: crate::cmd_witness::WitnessArgs,
    },
    /// Check the config file (--config) without starting anything: every section is
    /// parsed and validated as `serve` would; prints one line per section and
    /// "config OK", or the first problem (exit code 2).
    CheckConfig,
    /// API tokens of the server: create (shown once), list, revoke.
    Token {
        #[command(subcommand)]
        what: crate::cmd_token::TokenCommand,
    },
    /// Legal holds: held entries are never deleted, whatever their policy.
    Hold {
        #[command(subcommand)]
        what: crate::cmd_hold::HoldCommand,
    },
    /// Erase a data subject's sealed personal-data fields by destroying their key
    /// (deferred while a legal hold or compliance retention covers them); --list shows
    /// pending and done erasures.
    Erase(crate::cmd_erase::EraseArgs),
    /// Retention: show what the policies will delete when, or run a deletion pass.
    Retention {
        #[command(subcommand)]
        what: crate::cmd_retention::RetentionCommand,
    },
    /// Print an RFC 9162 inclusion or consistency proof as JSON.
    Proof {
        #[command(subcommand)]
        what: crate::cmd_proof::ProofCommand,
    },
    /// Rotate or revoke the log's signing key.
    Key {
        #[command(subcommand)]
        what: crate::cmd_key::KeyCommand,
    },
    /// Run an out-of-process checkpoint signer.
    Signer {
        #[command(subcommand)]
        what: crate::cmd_signer::SignerCommand,
    },
    /// Write the checkpoint, hash tiles and entry bundles as static C2SP tlog-tiles files.
    Publish {
        #[command(flatten)]
        data: DataArg,
        /// Directory to write (`checkpoint`, `tile/...`).
        #[arg(long, value_name = "OUTDIR")]
        out: PathBuf,
        /// Keep publishing every --interval seconds until interrupted.
        #[arg(long)]
        follow: bool,
        /// Seconds between publications with --follow.
        #[arg(long, value_name = "SECONDS", default_value_t = 1.0)]
        interval: f64,
    },
}

/// k-of-n witnessing for verifiers (`monitor`, `verify-bundle`).
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct QuorumArgs {
    /// A trusted witness's cosignature verifier key (C2SP `cosignature/v1` vkey), or a
    /// file holding one. Repeat for each witness.
    #[arg(long = "witness", value_name = "VKEY")]
    pub(crate) witnesses: Vec<String>,
    /// The checkpoint must carry valid cosignatures from at least K distinct --witness
    /// keys, else exit 1 (at most the number of --witness).
    #[arg(long, value_name = "K", default_value_t = 0)]
    pub(crate) witnesses_required: usize,
}

/// Trusted timestamp authorities for verifiers (`verify`, `verify-bundle`, `monitor`).
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct TsaCertArgs {
    /// A PEM certificate RFC 3161 tokens must chain to (a TSA's certificate or its CA).
    /// Repeatable. Without any (and without `[[timestamp_authority]]` in the config
    /// file), tokens are checked against the message and the certificate they carry,
    /// and their chain is reported as not checked.
    #[arg(long = "tsa-cert", value_name = "PEM")]
    pub(crate) tsa_certs: Vec<PathBuf>,
}

/// Input framing of `import`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FormatArg {
    /// Detect from the input.
    Auto,
    /// One JSON object per line.
    Jsonl,
    /// One JSON array of objects (or one object).
    Json,
    /// Kubernetes audit events, one per line, or EventList documents.
    K8sAudit,
    /// AWS CloudTrail log files ({"Records":[...]}) or records one per line.
    Cloudtrail,
    /// Google Cloud audit log entries (JSON lines or arrays).
    GcpAudit,
    /// OCSF events (JSON lines, arrays or pretty-printed objects).
    Ocsf,
    /// Linux audit logs; the records of one event become one entry.
    Auditd,
}

/// Which time `--since`/`--until` compare.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TimeBasis {
    /// The event's own time when it has one, else the received time.
    Event,
    /// The time stele received the event.
    Received,
}

#[derive(Args, Debug, Clone)]
pub(crate) struct QueryArgs {
    /// Earliest time (RFC 3339), inclusive.
    #[arg(long)]
    pub(crate) since: Option<String>,
    /// Latest time (RFC 3339), exclusive.
    #[arg(long)]
    pub(crate) until: Option<String>,
    /// Which time --since/--until compare.
    #[arg(long, value_enum, default_value_t = TimeBasis::Event)]
    pub(crate) by: TimeBasis,
    /// Actor (who); a trailing `*` matches a prefix.
    #[arg(long)]
    pub(crate) actor: Option<String>,
    /// Action (what was done).
    #[arg(long)]
    pub(crate) action: Option<String>,
    /// Resource (to what).
    #[arg(long)]
    pub(crate) resource: Option<String>,
    /// Outcome (success, failure, ...).
    #[arg(long)]
    pub(crate) outcome: Option<String>,
    /// Source IP address the action came from.
    #[arg(long)]
    pub(crate) source_ip: Option<String>,
    /// The producer's request or event id (Kubernetes auditID, CloudTrail requestID...).
    #[arg(long)]
    pub(crate) request_id: Option<String>,
    /// The producing system (kube-apiserver, a syslog APP-NAME, an OpenTelemetry service.name...).
    #[arg(long)]
    pub(crate) producer: Option<String>,
    /// Stream; without it, stele's internal `_stele/` streams are left out.
    #[arg(long)]
    pub(crate) stream: Option<String>,
    /// Most events to print.
    #[arg(long)]
    pub(crate) limit: Option<u64>,
}
