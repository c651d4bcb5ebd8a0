//! `stele retention show` and `stele retention apply [--dry-run] [--allow-shorten]`.

use clap::Subcommand;
use stele_index::{Index, Snapshot};
use stele_retention::{Policy, PolicyRecord, StreamSchedule};
use stele_store::{Log, StoreError};

use crate::cli::DataArg;
use crate::config::Config;

/// What to do.
#[derive(Subcommand, Debug)]
pub(crate) enum RetentionCommand {
    /// Per stream: the policy in force, what is held, and when the next deletion comes.
    Show {
        #[command(flatten)]
        data: DataArg,
    },
    /// Record the configured policies in the log (refusing a weakening the mode
    /// forbids) and run a deletion pass now.
    Apply {
        #[command(flatten)]
        data: DataArg,
        /// Print exactly what would be deleted, and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Permission to shorten governance-mode policies (recorded in the log).
        /// Compliance-mode policies can never be shortened.
        #[arg(long)]
        allow_shorten: bool,
    },
}

pub(crate) fn run(config: &Config, what: RetentionCommand) -> anyhow::Result<()> {
    match what {
        RetentionCommand::Show { data } => show(config, &data),
        RetentionCommand::Apply { data, dry_run, allow_shorten } => apply(config, &data, dry_run, allow_shorten),
    }
}

fn rfc3339(ns: u64) -> String {
    jiff::Timestamp::from_nanosecond(i128::from(ns)).map(|t| t.to_string()).unwrap_or_default()
}

/// The policies in force (configured, reconciled with the log) and the records that
/// would be appended.
fn policies(
    config: &Config,
    dir: &std::path::Path,
    reader: stele_store::LogReader,
    allow_shorten: bool,
) -> anyhow::Result<(Vec<PolicyRecord>, Vec<Policy>)> {
    let configured = config.retention_policies()?;
    let snapshot = snapshot(config, dir, &reader)?;
    let recorded = stele_retention::recorded_policies(&snapshot, &reader)?;
    let now = stele_store::log::now_ns();
    stele_retention::reconcile(&configured, &recorded, allow_shorten, now)
        .map_err(|e| crate::Failure::usage(e.to_string()))
}

/// The retention policies in force (configured, reconciled with the log's records).
pub(crate) fn policies_in_force(
    config: &Config,
    dir: &std::path::Path,
    reader: stele_store::LogReader,
) -> anyhow::Result<Vec<Policy>> {
    Ok(policies(config, dir, reader, true)?.1)
}

/// A query index view (read only; entries past the index are read from the log).
fn snapshot(config: &Config, dir: &std::path::Path, reader: &stele_store::LogReader) -> anyhow::Result<Snapshot> {
    Ok(Index::open(dir, reader.clone(), &config.field_pointers(), false)?.snapshot())
}

fn show(config: &Config, data: &DataArg) -> anyhow::Result<()> {
    let (dir, reader) = crate::cmd_read::open_reader(config, data)?;
    let (pending, in_force) = policies(config, &dir, reader.clone(), true)?;
    for r in &pending {
        eprintln!(
            "note: the policy for {:?} is configured but not yet recorded in the log (`stele retention apply` or `serve` records it)",
            r.stream
        );
    }
    let summaries = stele_store::retention::segment_summaries(&reader)?;
    let snap = snapshot(config, &dir, &reader)?;
    let holds = stele_retention::active_holds(&snap, &reader)?;
    let held = stele_retention::held_segments(&holds, &summaries, &snap, &reader)?;
    let now = stele_store::log::now_ns();
    let rows: Vec<serde_json::Value> =
        stele_retention::schedule(&summaries, &in_force, &held, now).iter().map(schedule_json).collect();
    for r in rows {
        println!("{r}");
    }
    Ok(())
}

fn schedule_json(s: &StreamSchedule) -> serde_json::Value {
    serde_json::json!({
        "stream": s.stream,
        "policy": s.policy.as_ref().map(|p| serde_json::json!({
            "pattern": p.stream,
            "mode": p.mode.name(),
            "min_retention_days": p.min_retention.as_secs_f64() / 86_400.0,
            "max_retention_days": p.max_retention.map(|d| d.as_secs_f64() / 86_400.0),
        })),
        "segments": s.segments,
        "entries": s.entries,
        "oldest_received": s.oldest_received_ns.map(rfc3339),
        "next_deletion": s.next_deletion_ns.map(rfc3339),
        "expired_segments": s.expired,
        "held_segments": s.held,
    })
}

/// Reconciles the configured policies with the log's, appends the records of new or
/// changed ones (and signs a checkpoint), and returns the policies in force. Refuses
/// (exit 2) a weakening the mode forbids.
pub(crate) fn record_policies(
    config: &Config,
    dir: &std::path::Path,
    log: &mut Log,
    allow_shorten: bool,
) -> anyhow::Result<Vec<Policy>> {
    let (pending, in_force) = policies(config, dir, log.reader(), allow_shorten)?;
    if !pending.is_empty() {
        // A shortening (offline or `POST /v1/admin/retention/shorten`) that the
        // configuration file does not hold is ended by a longer configured policy.
        let reader = log.reader();
        let recorded = stele_retention::recorded_policies(&snapshot(config, dir, &reader)?, &reader)?;
        for r in pending.iter().filter(|r| !r.shortened) {
            if let Some((old, i)) = recorded.get(&r.stream).filter(|(old, _)| old.shortened) {
                eprintln!(
                    "stele: warning: the configuration lengthens the retention policy for {:?} that entry {i} \
                     shortened ({}) to {}; put the shortened policy in the configuration to keep it",
                    r.stream,
                    old.policy(),
                    r.policy()
                );
            }
        }
        let payloads: Vec<Vec<u8>> = pending.iter().map(PolicyRecord::encode).collect();
        let entries: Vec<stele_store::NewEntry<'_>> = payloads
            .iter()
            .map(|p| stele_store::NewEntry {
                stream: stele_store::streams::RETENTION_STREAM,
                format: stele_store::log::FORMAT_STELE_RECORD,
                payload: p,
            })
            .collect();
        let done = log.append(&entries)?;
        for (r, i) in pending.iter().zip(&done.indexes) {
            eprintln!("recorded the retention policy for {:?} at entry {i}", r.stream);
        }
        log.sign_checkpoint()?;
    }
    Ok(in_force)
}

fn apply(config: &Config, data: &DataArg, dry_run: bool, allow_shorten: bool) -> anyhow::Result<()> {
    let dir = config.data_dir(data.data.as_ref())?;
    let mut log = Log::open(&dir, config.log_options()).map_err(|e| match e {
        StoreError::Locked => crate::Failure::usage(
            "another stele process holds this data directory (a running server applies retention itself)",
        ),
        other => other.into(),
    })?;
    let in_force = if dry_run {
        policies(config, &dir, log.reader(), allow_shorten)?.1
    } else {
        record_policies(config, &dir, &mut log, allow_shorten)?
    };
    let now = stele_store::log::now_ns();
    let snap = snapshot(config, &dir, &log.reader())?;
    let report = stele_retention::apply(&mut log, &in_force, &snap, now, dry_run)?;
    for (due, record) in &report.deleted {
        let s = &due.segment;
        println!(
            "{}",
            serde_json::json!({
                "action": if dry_run { "would delete" } else { "deleted" },
                "segment": s.segno,
                "stream": s.stream,
                "entries": s.entries,
                "ranges": s.ranges,
                "newest_received": rfc3339(s.newest_received_ns),
                "policy": due.policy.stream,
                "expired_at": rfc3339(due.due_ns),
                "deletion_record": record,
            })
        );
    }
    for (due, why) in &report.skipped {
        eprintln!("segment {} of {:?} expired but was kept for now: {why}", due.segment.segno, due.segment.stream);
    }
    let erased = if dry_run { 0 } else { crate::cmd_erase::carry_out(config, &dir, &mut log, &in_force, now)? };
    if !dry_run && (!report.deleted.is_empty() || erased > 0) {
        log.sign_checkpoint()?;
    }
    eprintln!(
        "{} {} segment(s), {} entries; {} segment(s) kept by legal holds",
        if dry_run { "would delete" } else { "deleted" },
        report.deleted.len(),
        report.entries(),
        report.held
    );
    Ok(())
}
