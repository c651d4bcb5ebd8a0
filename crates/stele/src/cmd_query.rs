//! `stele query`, `stele reindex` and the index check of `verify --index`.

use std::io::Write as _;
use std::path::Path;

use serde_json::json;
use stele_formats::{Normalized, Normalizer};
use stele_index::{Index, Query};
use stele_store::{Log, LogReader, StoreError};

use crate::cli::{DataArg, QueryArgs, TimeBasis};
use crate::config::Config;
use crate::output;

pub(crate) fn build_query(q: &QueryArgs) -> anyhow::Result<Query> {
    Ok(Query {
        since_ns: q.since.as_deref().map(|s| output::parse_time("--since", s)).transpose()?,
        until_ns: q.until.as_deref().map(|s| output::parse_time("--until", s)).transpose()?,
        by_received: q.by == TimeBasis::Received,
        actor: q.actor.clone(),
        action: q.action.clone(),
        resource: q.resource.clone(),
        outcome: q.outcome.clone(),
        source_ip: q.source_ip.clone(),
        request_id: q.request_id.clone(),
        producer: q.producer.clone(),
        stream: q.stream.clone(),
        limit: q.limit,
    })
}

/// Normalized fields of a stored payload, recomputed from the payload itself.
pub(crate) fn fields_of(normalizer: &Normalizer, format: u8, payload: &[u8]) -> Normalized {
    normalizer.stored_fields(format, payload)
}

/// An entry that matched a query, as readers see it.
pub(crate) struct Match {
    /// The entry as stored (the bytes its leaf commits to).
    pub(crate) stored: stele_store::Entry,
    /// Its sealed fields restored or marked erased.
    pub(crate) view: stele_erasure::View,
    /// The entry with the viewed payload and format.
    pub(crate) shown: stele_store::Entry,
    /// The normalized fields of the viewed event.
    pub(crate) fields: Normalized,
}

/// Calls `each` with every entry that matches `query`, in index order, until it
/// returns `false`. The index is derived data: each candidate (its hits, and with
/// `keys` and `rules` the hits of the keyed blind index and the entries sealed whole,
/// `cmd_erase::query_candidates`) is re-read from the log (checked against its leaf)
/// and re-matched on the event as restored.
/// Entries whose payload retention removed are passed over.
///
/// # Errors
/// The index's, reading an entry, restoring it, and `each`'s.
pub(crate) fn each_match(
    keys: Option<&stele_erasure::Keys>,
    rules: &[stele_erasure::SealingRule],
    index: &Index,
    reader: &LogReader,
    normalizer: &Normalizer,
    query: &Query,
    mut each: impl FnMut(Match) -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    for i in crate::cmd_erase::query_candidates(keys, rules, index, query)? {
        let stored = match reader.entry(i) {
            Ok(e) => e,
            Err(StoreError::Deleted { .. }) => continue,
            Err(err) => return Err(err.into()),
        };
        let view = crate::cmd_erase::view(keys, &stored)?;
        let shown = crate::cmd_erase::viewed(&stored, &view);
        let fields = fields_of(normalizer, shown.leaf.payload_format, &shown.payload);
        if !query.matches_entry(stored.leaf.received_ns, &stored.stream, &fields) {
            continue;
        }
        if !each(Match { stored, view, shown, fields })? {
            break;
        }
    }
    Ok(())
}

pub(crate) fn fields_json(f: &Normalized) -> serde_json::Value {
    json!({
        "time": f.event_time_ns.map(output::rfc3339_ns),
        "actor": f.actor,
        "action": f.action,
        "resource": f.resource,
        "outcome": f.outcome,
        "source_ip": f.source_ip,
        "request_id": f.request_id,
        "producer": f.producer,
    })
}

pub(crate) fn run(config: &Config, data: DataArg, args: &QueryArgs) -> anyhow::Result<()> {
    let (dir, reader) = crate::cmd_read::open_reader(config, &data)?;
    let query = build_query(args)?;
    let pointers = config.field_pointers();
    let normalizer = Normalizer::new(&pointers);
    let index = Index::open(&dir, reader.clone(), &pointers, false)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut given = 0u64;
    if query.limit == Some(0) {
        return Ok(());
    }
    let keys = crate::cmd_erase::read_keys(config, &dir, &reader)?;
    each_match(keys.as_ref(), crate::cmd_erase::rules(config), &index, &reader, &normalizer, &query, |m| {
        let mut j = output::entry_json(&m.shown);
        j.insert("fields".into(), fields_json(&m.fields));
        output::insert_event(&mut j, &m.shown);
        crate::cmd_erase::annotate(&mut j, &m.view);
        serde_json::to_writer(&mut out, &j).map_err(std::io::Error::from).and_then(|_| out.write_all(b"\n"))?;
        given += 1;
        Ok(query.limit.is_none_or(|l| given < l))
    })?;
    out.flush()?;
    Ok(())
}

pub(crate) fn reindex(config: &Config, data: DataArg) -> anyhow::Result<()> {
    let dir = config.data_dir(data.data.as_ref())?;
    let log = Log::open(&dir, config.log_options()).map_err(|e| match e {
        StoreError::Locked => {
            crate::Failure::usage("the data directory is held by a running `stele serve`; stop it to rebuild the index")
        }
        other => other.into(),
    })?;
    Index::remove(&dir)?;
    let mut index = Index::open(&dir, log.reader(), &config.field_pointers(), true)?;
    let n = index.catch_up()?;
    index.flush()?;
    println!("reindexed {n} entries");
    Ok(())
}

/// Compares the index with fields recomputed from every entry.
pub(crate) fn check_index(config: &Config, dir: &Path, reader: &LogReader) -> anyhow::Result<Vec<String>> {
    let pointers = config.field_pointers();
    let normalizer = Normalizer::new(&pointers);
    let index = Index::open(dir, reader.clone(), &pointers, false)?;
    let mut problems = Vec::new();
    let mut next = 0u64;
    let mut err: Option<anyhow::Error> = None;
    index.query(&Query { stream: Some("*".into()), ..Query::default() }, |hit| {
        if hit.index != next {
            problems.push(format!("query index: entries {next}..{} are missing (run `stele reindex`)", hit.index));
        }
        next = hit.index + 1;
        match reader.entry(hit.index) {
            Ok(e) => {
                let f = fields_of(&normalizer, e.leaf.payload_format, &e.payload);
                if f != hit.fields || e.leaf.received_ns != hit.received_ns || e.stream != hit.stream {
                    problems.push(format!(
                        "query index: entry {} is indexed with other fields than the event has (run `stele reindex`)",
                        hit.index
                    ));
                }
            }
            // Removed by retention: indexed with the fields it had, or none.
            Err(StoreError::Deleted { .. }) => {}
            Err(e) => {
                err = Some(e.into());
                return false;
            }
        }
        problems.len() < 100
    })?;
    if let Some(e) = err {
        return Err(e);
    }
    if next < reader.tree_size() && problems.len() < 100 {
        problems.push(format!("query index: entries {next}..{} are missing", reader.tree_size()));
    }
    Ok(problems)
}
