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
    let body = stele_formats::sealed::stored_body(format, payload);
    match (stele_formats::sealed::split_format(format), body) {
        (Some((f, _)), Some(payload)) => normalizer.parse(payload, Some(f)).map(|(_, n)| n).unwrap_or_default(),
        _ => Normalized::default(),
    }
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
    let mut failure: Option<anyhow::Error> = None;
    let mut given = 0u64;
    if query.limit == Some(0) {
        return Ok(());
    }
    let keys = crate::cmd_erase::read_keys(config, &dir, &reader)?;
    // Candidates: the index's hits for the query as given, plus, for sealed entries,
    // the hits of the keyed blind index (see cmd_erase::query_candidates).
    let candidates =
        crate::cmd_erase::query_candidates(keys.as_ref(), crate::cmd_erase::rules(config), &index, &query)?;
    for i in candidates {
        // The index is derived data: every hit is re-read (checked against its leaf) and
        // re-matched against the query, on the restored event.
        let e = match reader.entry(i) {
            Ok(e) => e,
            // Removed by retention after it was indexed.
            Err(StoreError::Deleted { .. }) => continue,
            Err(err) => {
                failure = Some(err.into());
                break;
            }
        };
        let v = crate::cmd_erase::view(keys.as_ref(), &e)?;
        let shown = crate::cmd_erase::viewed(&e, &v);
        let fields = fields_of(&normalizer, shown.leaf.payload_format, &shown.payload);
        if !query.matches_entry(e.leaf.received_ns, &e.stream, &fields) {
            continue;
        }
        let mut m = output::entry_json(&shown);
        m.insert("fields".into(), fields_json(&fields));
        output::insert_event(&mut m, &shown);
        crate::cmd_erase::annotate(&mut m, &v);
        if let Err(e) =
            serde_json::to_writer(&mut out, &m).map_err(std::io::Error::from).and_then(|_| out.write_all(b"\n"))
        {
            failure = Some(e.into());
            break;
        }
        given += 1;
        if query.limit.is_some_and(|l| given >= l) {
            break;
        }
    }
    if let Some(f) = failure {
        return Err(f);
    }
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
