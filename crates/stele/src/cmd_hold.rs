//! `stele hold place|release|list`: legal holds, recorded in the log.

use clap::Subcommand;
use stele_index::Index;
use stele_retention::{HoldFilters, HoldRecord, ReleaseRecord};
use stele_store::{Log, StoreError};

use crate::cli::DataArg;
use crate::config::Config;

/// What to do.
#[derive(Subcommand, Debug)]
pub(crate) enum HoldCommand {
    /// Place a hold: the entries it selects are never deleted until it is released.
    Place {
        #[command(flatten)]
        data: DataArg,
        /// Case id (a release names it).
        #[arg(long)]
        case: String,
        /// Why the entries are held.
        #[arg(long)]
        reason: String,
        /// Stream name or `prefix*` (default: every stream).
        #[arg(long)]
        stream: Option<String>,
        /// Earliest received time held (RFC 3339).
        #[arg(long)]
        since: Option<String>,
        /// Latest received time held, exclusive (RFC 3339); default: no end.
        #[arg(long)]
        until: Option<String>,
        /// Only entries with this actor (`*` suffix for a prefix).
        #[arg(long)]
        actor: Option<String>,
        /// Only entries with this action.
        #[arg(long)]
        action: Option<String>,
        /// Only entries with this resource.
        #[arg(long)]
        resource: Option<String>,
        /// Only entries with this outcome.
        #[arg(long)]
        outcome: Option<String>,
    },
    /// Release a hold; its entries follow their retention policy again.
    Release {
        #[command(flatten)]
        data: DataArg,
        /// Case id of the hold.
        #[arg(long)]
        case: String,
        /// Why it is released.
        #[arg(long)]
        reason: String,
    },
    /// The active holds, one JSON line each.
    List {
        #[command(flatten)]
        data: DataArg,
    },
}

pub(crate) fn run(config: &Config, what: HoldCommand) -> anyhow::Result<()> {
    match what {
        HoldCommand::List { data } => {
            let (dir, reader) = crate::cmd_read::open_reader(config, &data)?;
            let snap = Index::open(&dir, reader.clone(), &config.field_pointers(), false)?.snapshot();
            for (h, index) in stele_retention::active_holds(&snap, &reader)?.into_values() {
                let mut v = serde_json::to_value(&h)?;
                v["record_index"] = index.into();
                println!("{v}");
            }
            Ok(())
        }
        HoldCommand::Place { data, case, reason, stream, since, until, actor, action, resource, outcome } => {
            let time = |flag: &str, v: Option<String>| -> anyhow::Result<Option<u64>> {
                v.map(|s| crate::output::parse_time(flag, &s).map(|t| t.max(0) as u64)).transpose()
            };
            let record = HoldRecord {
                kind: "hold".into(),
                case: case.clone(),
                reason,
                stream,
                since_ns: time("--since", since)?,
                until_ns: time("--until", until)?,
                filters: HoldFilters { actor, action, resource, outcome },
                placed_ns: stele_store::log::now_ns(),
            };
            if case.trim().is_empty() || record.reason.trim().is_empty() {
                return Err(crate::Failure::usage("--case and --reason must not be empty"));
            }
            let (mut log, active) = open(config, &data)?;
            if active.contains_key(&case) {
                return Err(crate::Failure::usage(format!("a hold for case {case:?} is already active")));
            }
            let index = append(&mut log, &record.encode())?;
            eprintln!("placed hold {case:?} at entry {index}");
            Ok(())
        }
        HoldCommand::Release { data, case, reason } => {
            if reason.trim().is_empty() {
                return Err(crate::Failure::usage("--reason must not be empty"));
            }
            let (mut log, active) = open(config, &data)?;
            if !active.contains_key(&case) {
                return Err(crate::Failure::usage(format!("no active hold for case {case:?}")));
            }
            let record = ReleaseRecord {
                kind: "hold_release".into(),
                case: case.clone(),
                reason,
                released_ns: stele_store::log::now_ns(),
            };
            let index = append(&mut log, &record.encode())?;
            eprintln!("released hold {case:?} at entry {index}");
            Ok(())
        }
    }
}

type Active = std::collections::BTreeMap<String, (HoldRecord, u64)>;

fn open(config: &Config, data: &DataArg) -> anyhow::Result<(Log, Active)> {
    let dir = config.data_dir(data.data.as_ref())?;
    let log = Log::open(&dir, config.log_options()).map_err(|e| match e {
        StoreError::Locked => crate::Failure::usage(
            "another stele process holds this data directory; stop the server to place or release holds",
        ),
        other => other.into(),
    })?;
    let reader = log.reader();
    let snap = Index::open(&dir, reader.clone(), &config.field_pointers(), false)?.snapshot();
    let active = stele_retention::active_holds(&snap, &reader)?;
    Ok((log, active))
}

/// Appends one record to `_stele/retention` and signs a checkpoint over it.
fn append(log: &mut Log, payload: &[u8]) -> anyhow::Result<u64> {
    let done = log.append(&[stele_store::NewEntry {
        stream: stele_store::streams::RETENTION_STREAM,
        format: stele_store::log::FORMAT_STELE_RECORD,
        payload,
    }])?;
    log.sign_checkpoint()?;
    Ok(done.indexes[0])
}
