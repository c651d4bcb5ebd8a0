//! `stele verify`.

use std::io::IsTerminal as _;
use std::path::PathBuf;

use stele_store::verify::{VerifyOptions, verify};

use crate::cli::DataArg;
use crate::config::Config;

pub(crate) fn run(
    config: &Config,
    data: DataArg,
    against: Option<PathBuf>,
    check_index: bool,
    tsa: &crate::cli::TsaCertArgs,
    key: Option<&str>,
) -> anyhow::Result<()> {
    let tsa_certs = crate::cmd_timestamp::trusted(config, tsa)?;
    let trusted_key = key.map(crate::cmd_key::parse_vkey).transpose()?;
    let (dir, reader) = crate::cmd_read::open_reader(config, &data)?;
    let against = match &against {
        Some(p) => {
            Some(std::fs::read(p).map_err(|e| crate::Failure::usage(format!("--against {}: {e}", p.display())))?)
        }
        None => None,
    };
    let bar = if std::io::stderr().is_terminal() {
        let b = indicatif::ProgressBar::new(reader.tree_size());
        b.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} entries {per_sec} eta {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Some(b)
    } else {
        None
    };
    let progress = |done: u64| {
        if let Some(b) = &bar {
            b.set_position(done);
        }
    };
    let report = verify(&reader, &VerifyOptions { against, progress: Some(&progress), trusted_key })?;
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let secs = report.elapsed.as_secs_f64().max(1e-9);
    eprintln!(
        "checked {} entries, {:.1} MB of payload, {} checkpoints in {secs:.2} s ({:.0} entries/s, {:.1} MB/s)",
        report.entries,
        report.payload_bytes as f64 / 1e6,
        report.checkpoints,
        report.entries as f64 / secs,
        report.payload_bytes as f64 / 1e6 / secs
    );
    for n in &report.notes {
        eprintln!("note: {n}");
    }
    for d in &report.deletions {
        eprintln!("deleted: {d}");
    }
    let mut problems: Vec<String> = report.problems.iter().map(ToString::to_string).collect();
    // Deletions against the policy and hold records before them (from the log alone).
    let (audited, audit_problems) = stele_retention::audit(&reader)?;
    if audited > 0 {
        eprintln!("retention: {audited} deletion record(s) checked against the recorded policies and holds");
    }
    problems.extend(audit_problems.iter().map(|p| format!("entry {}: {}", p.record_index, p.what)));
    // RFC 3161 tokens over checkpoints, against the roots the tree gives.
    problems.extend(crate::cmd_timestamp::check_stored(&reader, &report.timestamps, &tsa_certs)?);
    if check_index {
        problems.extend(crate::cmd_query::check_index(config, &dir, &reader)?);
    }
    if problems.is_empty() {
        println!("ok: tree size {} root {}", report.tree_size, report.root_hash.to_base64());
        Ok(())
    } else {
        for p in &problems {
            eprintln!("FAIL {p}");
        }
        Err(crate::Failure::tampered(format!(
            "verification failed: {} problem(s); first: {}",
            problems.len(),
            problems[0]
        )))
    }
}
