//! `stele erase`: crypto-shredding a data subject's sealed fields; the `[erasure]`
//! config section; restoring sealed entries for reads.

use std::path::Path;

use stele_erasure::{EraseOutcome, Keys, SealState, Sealer, SealingRule, View};
use stele_index::{Index, Snapshot};
use stele_store::{Entry, Log, LogReader, StoreError};

use crate::cli::DataArg;
use crate::config::Config;

/// The `[erasure]` config section.
pub(crate) type ErasureSection = stele_erasure::ErasureConfig;

/// Arguments of `stele erase`.
#[derive(clap::Args, Debug)]
pub(crate) struct EraseArgs {
    #[command(flatten)]
    pub(crate) data: DataArg,
    /// The data subject (the value of their subject field, e.g. a user name).
    #[arg(long, required_unless_present_any = ["list", "init_master_key"])]
    pub(crate) subject: Option<String>,
    /// Why (recorded in the log).
    #[arg(long, default_value = "data subject request (GDPR Art. 17)")]
    pub(crate) reason: String,
    /// List pending and done erasures, one JSON line each.
    #[arg(long, conflicts_with = "subject")]
    pub(crate) list: bool,
    /// Create the configured master key file (mode 0600; never overwrites).
    #[arg(long, conflicts_with_all = ["subject", "list"])]
    pub(crate) init_master_key: bool,
}

fn section(config: &Config) -> anyhow::Result<&ErasureSection> {
    config.erasure.as_ref().ok_or_else(|| {
        crate::Failure::usage(
            "no [erasure] section in the config file (master_key = \"PATH\" and [[erasure.rule]] tables)",
        )
    })
}

/// The keys for reading `dir`, agreeing with the log's erasure records; `None` without
/// an `[erasure]` section.
pub(crate) fn read_keys(config: &Config, dir: &Path, reader: &LogReader) -> anyhow::Result<Option<Keys>> {
    let Some(s) = &config.erasure else { return Ok(None) };
    let snap = Index::open(dir, reader.clone(), &config.field_pointers(), false)?.snapshot();
    Ok(Some(s.open_keys(dir, &snap, reader)?))
}

/// The sealer for a writer of `dir` (after completing any interrupted erasure); `None`
/// without an `[erasure]` section.
pub(crate) fn sealer(
    config: &Config,
    dir: &Path,
    snapshot: &Snapshot,
    reader: &LogReader,
) -> anyhow::Result<Option<Sealer>> {
    let Some(s) = &config.erasure else { return Ok(None) };
    Ok(Some(s.open_sealer(dir, snapshot, reader)?))
}

/// Seals a batch of `(format code, payload)` for `stream` and syncs the new keys:
/// one element per event, `Some` for a sealed one. Without a sealer, all `None`.
pub(crate) fn seal_batch<'a>(
    sealer: Option<&mut Sealer>,
    stream: &str,
    events: impl Iterator<Item = (u8, &'a [u8])>,
) -> anyhow::Result<Vec<Option<stele_erasure::Sealed>>> {
    let Some(sealer) = sealer else { return Ok(events.map(|_| None).collect()) };
    let now = stele_store::log::now_ns();
    let out = events.map(|(code, bytes)| sealer.seal(stream, code, bytes, now)).collect::<Result<Vec<_>, _>>()?;
    sealer.sync()?;
    Ok(out)
}

/// The index fields of a sealed payload: normalized from the envelope's body, so a
/// field read from a sealed value holds its blind token, never the value.
pub(crate) fn sealed_fields(
    normalizer: &stele_formats::Normalizer,
    s: &stele_erasure::Sealed,
) -> stele_formats::Normalized {
    crate::cmd_query::fields_of(normalizer, s.format, &s.payload)
}

/// An entry as readers see it (restored, or with erased values marked).
pub(crate) fn view(keys: Option<&Keys>, e: &Entry) -> anyhow::Result<View> {
    stele_erasure::restore(keys, e.leaf.payload_format, &e.payload)
        .map_err(|err| anyhow::anyhow!("entry {}: {err}", e.index))
}

/// The entry with its payload and format as readers see them (the leaf's other
/// fields unchanged).
pub(crate) fn viewed(e: &Entry, v: &View) -> Entry {
    let mut out = e.clone();
    out.payload = v.bytes.clone();
    out.leaf.payload_format = v.format;
    out
}

/// Every entry `query` may select, in index order: the index's hits for the query as
/// given, plus, with `keys`, the hits of the keyed blind index for sealed entries
/// ([`blind_candidates`]). The index is derived data: the caller re-reads each one
/// (checked against its leaf) and re-matches it on the restored event.
pub(crate) fn query_candidates(
    keys: Option<&Keys>,
    rules: &[SealingRule],
    index: &Index,
    query: &stele_index::Query,
) -> anyhow::Result<Vec<u64>> {
    let mut candidates = Vec::new();
    index.query(&stele_index::Query { limit: None, ..query.clone() }, |hit| {
        candidates.push(hit.index);
        true
    })?;
    if let Some(k) = keys {
        candidates.extend(blind_candidates(k, index, query)?);
        candidates.extend(whole_event_candidates(rules, index, query)?);
        candidates.sort_unstable();
        candidates.dedup();
    }
    Ok(candidates)
}

/// Entries of whole sealed events `query` may select. Such an entry is indexed with
/// no field at all (its stored form is one sealed value) and with its received time
/// as its time, so a query with a field filter or an event-time bound reads every
/// entry without fields of the streams whose rules seal whole events, in the
/// received-time window when the query is by received time; the caller restores
/// and re-matches each one. Nothing is added for a query without such filters (the
/// index's own hits hold them) or without such rules.
fn whole_event_candidates(
    rules: &[SealingRule],
    index: &Index,
    query: &stele_index::Query,
) -> anyhow::Result<Vec<u64>> {
    let whole: Vec<&SealingRule> = rules.iter().filter(|r| r.seals_whole_events()).collect();
    let filters = [
        &query.actor,
        &query.action,
        &query.resource,
        &query.outcome,
        &query.source_ip,
        &query.request_id,
        &query.producer,
    ];
    let event_time = !query.by_received && (query.since_ns.is_some() || query.until_ns.is_some());
    if whole.is_empty() || !(event_time || filters.iter().any(|f| f.is_some())) {
        return Ok(Vec::new());
    }
    let (since_ns, until_ns) = if query.by_received { (query.since_ns, query.until_ns) } else { (None, None) };
    let q = stele_index::Query {
        since_ns,
        until_ns,
        by_received: query.by_received,
        stream: query.stream.clone(),
        ..stele_index::Query::default()
    };
    let none = stele_formats::Normalized::default();
    let mut out = Vec::new();
    index.query(&q, |hit| {
        if hit.fields == none && whole.iter().any(|r| r.covers_stream(&hit.stream)) {
            out.push(hit.index);
        }
        true
    })?;
    Ok(out)
}

/// The sealing rules of `config` (none without an `[erasure]` section).
pub(crate) fn rules(config: &Config) -> &[SealingRule] {
    config.erasure.as_ref().map_or(&[][..], |e| &e.rule)
}

/// Entries whose sealed fields may match `query`'s exact filters: the keyed blind
/// index. For the first exact string filter (actor first), the index is asked for
/// every sealed value of that field, and a hit is kept when its blind token is the
/// token of the filter's value under a live key: the actor's own key when the actor
/// is a subject with a key, else every live key. The caller re-reads, restores and
/// re-matches each candidate.
pub(crate) fn blind_candidates(keys: &Keys, index: &Index, query: &stele_index::Query) -> anyhow::Result<Vec<u64>> {
    use std::collections::HashSet;
    let fields: [(&str, &Option<String>); 7] = [
        ("actor", &query.actor),
        ("action", &query.action),
        ("resource", &query.resource),
        ("outcome", &query.outcome),
        ("source_ip", &query.source_ip),
        ("request_id", &query.request_id),
        ("producer", &query.producer),
    ];
    let Some((name, value)) =
        fields.iter().find_map(|(n, v)| v.as_deref().filter(|v| !v.ends_with('*')).map(|v| (*n, v)))
    else {
        return Ok(Vec::new());
    };
    let key_list = match query.actor.as_deref().and_then(|a| keys.subject_key(a).transpose()) {
        Some(k) => vec![k?],
        None => keys.live_keys()?,
    };
    if key_list.is_empty() {
        return Ok(Vec::new());
    }
    let tokens: HashSet<String> = key_list.iter().map(|(_, dk)| dk.token(value.as_bytes())).collect();
    let pattern = Some(format!("{}*", &stele_formats::sealed::VALUE_PREFIX[1..]));
    let mut q = stele_index::Query {
        actor: None,
        action: None,
        resource: None,
        outcome: None,
        source_ip: None,
        request_id: None,
        producer: None,
        limit: None,
        ..query.clone()
    };
    match name {
        "actor" => q.actor = pattern,
        "action" => q.action = pattern,
        "resource" => q.resource = pattern,
        "outcome" => q.outcome = pattern,
        "source_ip" => q.source_ip = pattern,
        "request_id" => q.request_id = pattern,
        _ => q.producer = pattern,
    }
    let mut out = Vec::new();
    index.query(&q, |hit| {
        let f = &hit.fields;
        let v = match name {
            "actor" => &f.actor,
            "action" => &f.action,
            "resource" => &f.resource,
            "outcome" => &f.outcome,
            "source_ip" => &f.source_ip,
            "request_id" => &f.request_id,
            _ => &f.producer,
        };
        if v.as_deref().and_then(stele_formats::sealed::token_of_field).is_some_and(|t| tokens.contains(t)) {
            out.push(hit.index);
        }
        true
    })?;
    Ok(out)
}

/// Adds `"sealed": "restored"|"erased"` to an entry's JSON for sealed entries.
pub(crate) fn annotate(m: &mut serde_json::Map<String, serde_json::Value>, v: &View) {
    if v.state != SealState::Clear {
        m.insert("sealed".into(), v.state.name().into());
        if v.state == SealState::Erased {
            m.insert(
                "note".into(),
                "the personal-data fields of this event cannot be read: their subject's key was erased (or this configuration has no [erasure] master key)".into(),
            );
        }
    }
}

/// Carries out the pending erasures nothing blocks any more (a retention pass);
/// returns how many.
pub(crate) fn carry_out(
    config: &Config,
    dir: &Path,
    log: &mut Log,
    policies: &[stele_retention::Policy],
    now: u64,
) -> anyhow::Result<usize> {
    let Some(s) = &config.erasure else { return Ok(0) };
    let snap = Index::open(dir, log.reader(), &config.field_pointers(), false)?.snapshot();
    let mut keys = Keys::open(dir, &s.master_key, true)?;
    let done = stele_erasure::carry_out_pending(log, &snap, &mut keys, &s.rule, policies, now)?;
    for (id, index) in &done {
        eprintln!("carried out the pending erasure of key {} (record at entry {index})", hex_id(id));
    }
    Ok(done.len())
}

fn hex_id(id: &[u8; 16]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn run(config: &Config, args: EraseArgs) -> anyhow::Result<()> {
    let s = section(config)?;
    if args.init_master_key {
        stele_erasure::MasterKey::create(&s.master_key)?;
        eprintln!(
            "created master key {} (mode 0600); keep a copy apart from the data directory",
            s.master_key.display()
        );
        return Ok(());
    }
    let dir = config.data_dir(args.data.data.as_ref())?;
    if args.list {
        let reader = LogReader::open(&dir)?;
        let snap = Index::open(&dir, reader.clone(), &config.field_pointers(), false)?.snapshot();
        let elog = stele_erasure::erasure_log(&snap, &reader)?;
        let mut out = std::io::stdout().lock();
        use std::io::Write as _;
        for (state, map) in [("pending", &elog.pending), ("done", &elog.done)] {
            for (r, index) in map.values() {
                let mut v = serde_json::to_value(r)?;
                v["state"] = state.into();
                v["record_index"] = (*index).into();
                if let Some(o) = v.as_object_mut() {
                    o.remove("subject_token");
                }
                writeln!(out, "{v}")?;
            }
        }
        return Ok(());
    }
    let subject = args.subject.expect("clap requires --subject");
    if args.reason.trim().is_empty() {
        return Err(crate::Failure::usage("--reason must not be empty"));
    }
    let mut log = Log::open(&dir, config.log_options()).map_err(|e| match e {
        StoreError::Locked => {
            crate::Failure::usage("another stele process holds this data directory; stop the server to erase")
        }
        other => other.into(),
    })?;
    let mut index = Index::open(&dir, log.reader(), &config.field_pointers(), true)?;
    index.catch_up()?;
    let snap = index.snapshot();
    let policies = crate::cmd_retention::policies_in_force(config, &dir, log.reader())?;
    let mut keys = Keys::open(&dir, &s.master_key, true)?;
    let now = stele_store::log::now_ns();
    let outcome = stele_erasure::erase(&mut log, &snap, &mut keys, &s.rule, &policies, &subject, &args.reason, now)
        .map_err(|e| match e {
            stele_erasure::ErasureError::NoSuchSubject => crate::Failure::usage(e.to_string()),
            other => other.into(),
        })?;
    log.sign_checkpoint()?;
    index.catch_up()?;
    index.flush()?;
    match outcome {
        EraseOutcome::Erased { index } => eprintln!("erased: the subject's key is destroyed (record at entry {index})"),
        EraseOutcome::Pending { index, blocked_by } => eprintln!(
            "pending: recorded at entry {index}; carried out by the retention pass once nothing blocks it: {}",
            blocked_by.join(", ")
        ),
        EraseOutcome::AlreadyPending { index } => eprintln!("already pending since entry {index}"),
    }
    Ok(())
}
