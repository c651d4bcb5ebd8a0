//! `stele export` (write an evidence bundle) and `stele verify-bundle` (check one
//! offline). The format is in docs/bundle.md; every rule that is not JSON syntax lives
//! in `stele_tlog::bundle`, so this file only selects, reads, encodes and decodes.

use std::fs::File;
use std::io::{BufRead as _, BufReader, BufWriter, Read as _, Write};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use stele_formats::Normalizer;
use stele_index::Index;
use stele_store::StoreError;
use stele_tlog::bundle::{self, BundleDigest, BundleVerifier, EntryLine, Header, Trailer};
use stele_tlog::checkpoint::open_checkpoint;
use stele_tlog::hash::Hash;
use stele_tlog::note::NoteVerifier;

use crate::Failure;
use crate::cli::{DataArg, QueryArgs, QuorumArgs, TsaCertArgs};
use crate::cmd_query::build_query;
use crate::config::Config;

/// Removes the listed files when dropped (the scratch files of an export).
struct Cleanup(Vec<PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// `path` with `suffix` appended to its file name.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(suffix);
    path.with_file_name(name)
}

/// A writer that hashes everything written through it.
struct Hashing<W> {
    inner: W,
    digest: BundleDigest,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.digest.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// One JSON string literal.
fn json_str(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

/// The header line, fields in the order docs/bundle.md fixes.
fn header_line(h: &Header) -> String {
    format!(
        "{{\"format\":{},\"origin\":{},\"vkey\":{},\"tree_size\":{},\"count\":{},\"checkpoint\":{}}}\n",
        json_str(&h.format),
        json_str(&h.origin),
        json_str(&h.vkey),
        h.tree_size,
        h.count,
        json_str(&h.checkpoint)
    )
}

/// One entry line (base64 needs no JSON escaping).
fn write_entry_line(
    out: &mut impl Write,
    index: u64,
    leaf: &[u8],
    payload: &[u8],
    proof: &[Hash],
) -> std::io::Result<()> {
    write!(
        out,
        "{{\"index\":{index},\"leaf\":\"{}\",\"payload\":\"{}\",\"proof\":[",
        BASE64.encode(leaf),
        BASE64.encode(payload)
    )?;
    for (i, h) in proof.iter().enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        write!(out, "\"{}\"", h.to_base64())?;
    }
    out.write_all(b"]}\n")
}

pub(crate) fn export(
    config: &Config,
    data: DataArg,
    args: &QueryArgs,
    out: &Path,
    timestamped: bool,
) -> anyhow::Result<()> {
    let (dir, reader) = crate::cmd_read::open_reader(config, &data)?;
    let query = build_query(args)?;
    let tokens = stele_store::timestamps::read(reader.files())?.records;
    let stored = if timestamped {
        // The newest kept checkpoint with a token.
        reader
            .checkpoints()?
            .into_iter()
            .rev()
            .find(|c| tokens.iter().any(|(_, t)| t.tree_size == c.tree_size))
            .ok_or_else(|| {
                Failure::usage("no kept checkpoint has an RFC 3161 timestamp token (run `stele timestamp` first)")
            })?
    } else {
        reader.newest_checkpoint().ok_or_else(|| {
            Failure::usage(
                "the log has no signed checkpoint yet (import events or start the server); nothing to prove against",
            )
        })?
    };
    // The bundle is only as good as its checkpoint: check it like an auditor would.
    let checkpoint = open_checkpoint(stored.note.as_bytes(), &reader.verifier())
        .map_err(|e| StoreError::Corrupt(format!("the newest checkpoint does not verify: {e}")))?
        .checkpoint;
    let size = checkpoint.tree_size;
    if reader.root_hash(size)? != checkpoint.root_hash {
        return Err(Failure::tampered(format!(
            "the log's root at tree size {size} differs from its newest checkpoint"
        )));
    }

    let scratch_path = sibling(out, ".entries.tmp");
    let final_tmp = sibling(out, ".tmp");
    let _cleanup = Cleanup(vec![scratch_path.clone(), final_tmp.clone()]);

    // Pass 1: the entry lines, to a scratch file (memory stays bounded; the header
    // needs the count first).
    let pointers = config.field_pointers();
    let normalizer = Normalizer::new(&pointers);
    let index = Index::open(&dir, reader.clone(), &pointers, false)?;
    let mut scratch =
        BufWriter::new(File::create(&scratch_path).with_context(|| format!("creating {}", scratch_path.display()))?);
    let (mut count, mut beyond) = (0u64, 0u64);
    if query.limit != Some(0) {
        // Candidates: the index's hits, plus sealed entries found through the keyed
        // blind index; each is re-read and re-matched on the event as restored, and
        // the bundle carries the stored (sealed) bytes the leaf commits to.
        let keys = crate::cmd_erase::read_keys(config, &dir, &reader)?;
        let rules = crate::cmd_erase::rules(config);
        crate::cmd_query::each_match(keys.as_ref(), rules, &index, &reader, &normalizer, &query, |m| {
            let e = m.stored;
            if e.index >= size {
                beyond += 1;
                return Ok(true);
            }
            let proof = reader.inclusion_proof(e.index, size)?;
            write_entry_line(&mut scratch, e.index, &e.leaf.encode(), &e.payload, &proof)?;
            count += 1;
            Ok(query.limit.is_none_or(|l| count < l))
        })?;
    }
    scratch.flush()?;
    drop(scratch);

    // Pass 2: header, the entry lines, and the trailer over every byte before it.
    let header = Header {
        format: bundle::FORMAT.to_string(),
        origin: reader.origin().to_string(),
        vkey: reader.verifier().to_vkey(),
        tree_size: size,
        count,
        checkpoint: stored.note.clone(),
    };
    let file = File::create(&final_tmp).with_context(|| format!("creating {}", final_tmp.display()))?;
    let mut w = Hashing { inner: BufWriter::new(file), digest: BundleDigest::new() };
    w.write_all(header_line(&header).as_bytes())?;
    // The key statements line (docs/bundle.md): the log's key rotations and
    // revocations covered by the checkpoint, so an auditor holding only the first key
    // can follow the chain to the key that signed it, offline.
    let statements: String = stele_store::keys::listed_statements(&reader)?
        .iter()
        .filter(|(index, _)| *index < size)
        .map(|(index, note)| stele_tlog::keychain::statement_list_line(*index, note))
        .collect();
    if !statements.is_empty() {
        writeln!(w, "{{\"key_statements\":{}}}", json_str(&statements))?;
    }
    // Timestamp lines (docs/bundle.md): the tokens over this checkpoint.
    for (_, t) in tokens.iter().filter(|(_, t)| t.tree_size == size) {
        writeln!(w, "{{\"timestamp\":\"{}\",\"tsa\":{}}}", BASE64.encode(&t.token), json_str(&t.tsa))?;
    }
    let mut entries = File::open(&scratch_path).with_context(|| format!("reading {}", scratch_path.display()))?;
    std::io::copy(&mut entries, &mut w)?;
    let trailer = bundle::trailer_line(count, &w.digest.finish());
    let mut inner = w.inner;
    inner.write_all(trailer.as_bytes())?;
    let file = inner.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&final_tmp, out).with_context(|| format!("writing {}", out.display()))?;

    if beyond > 0 {
        eprintln!(
            "stele: warning: {beyond} matching entries after the newest checkpoint (tree size {size}) were left out; \
             export again after the next checkpoint to include them"
        );
    }
    eprintln!("exported {count} entries to {} (checkpoint tree size {size})", out.display());
    Ok(())
}

/// The auditor's key: a vkey string, or a file holding one.
fn load_key(arg: &str) -> anyhow::Result<NoteVerifier> {
    if let Ok(v) = NoteVerifier::parse(arg) {
        return Ok(v);
    }
    match std::fs::read_to_string(arg) {
        Ok(text) => NoteVerifier::parse(&text)
            .map_err(|e| Failure::usage(format!("--key {arg}: the file does not hold a verifier key: {e}"))),
        Err(e) => Err(Failure::usage(format!("--key {arg:?}: neither a verifier key nor a readable file ({e})"))),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderJson {
    format: String,
    origin: String,
    vkey: String,
    tree_size: u64,
    count: u64,
    checkpoint: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryJson {
    index: u64,
    leaf: String,
    payload: String,
    proof: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KeyStatementsJson {
    pub(crate) key_statements: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TimestampJson {
    timestamp: String,
    tsa: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TrailerJson {
    end: String,
    count: u64,
    sha256: String,
}

/// Reads one line with its `\n` into `buf`; `Ok(false)` at the end of the file. A last
/// line without `\n` or a line longer than the format allows is tampering.
fn read_line(r: &mut impl std::io::BufRead, buf: &mut Vec<u8>, lineno: u64) -> anyhow::Result<bool> {
    buf.clear();
    let n = (&mut *r).take(bundle::MAX_LINE_BYTES as u64).read_until(b'\n', buf)?;
    if n == 0 {
        return Ok(false);
    }
    if buf.last() != Some(&b'\n') {
        if n == bundle::MAX_LINE_BYTES {
            return Err(Failure::tampered(format!("line {lineno}: longer than {} bytes", bundle::MAX_LINE_BYTES)));
        }
        return Err(Failure::tampered(format!("line {lineno}: the file ends inside it (truncated bundle)")));
    }
    Ok(true)
}

fn decode_entry(e: EntryJson) -> Result<EntryLine, String> {
    let leaf = BASE64.decode(&e.leaf).map_err(|err| format!("leaf is not base64: {err}"))?;
    let payload = BASE64.decode(&e.payload).map_err(|err| format!("payload is not base64: {err}"))?;
    let proof = e
        .proof
        .iter()
        .enumerate()
        .map(|(i, h)| Hash::from_base64(h).ok_or_else(|| format!("proof hash {i} is not base64 of 32 bytes")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(EntryLine { index: e.index, leaf, payload, proof })
}

pub(crate) fn verify_bundle(
    config: &Config,
    path: &Path,
    key: &str,
    quorum: &QuorumArgs,
    tsa: &TsaCertArgs,
) -> anyhow::Result<()> {
    let trusted = load_key(key)?;
    let tsa_certs = crate::cmd_timestamp::trusted(config, tsa)?;
    let quorum = quorum.load()?;
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut r = BufReader::with_capacity(1 << 16, file);
    let mut line = Vec::new();
    let bad = |lineno: u64, what: String| Failure::tampered(format!("line {lineno}: {what}"));

    if !read_line(&mut r, &mut line, 1)? {
        return Err(Failure::tampered("the bundle is empty"));
    }
    let h: HeaderJson = serde_json::from_slice(&line).map_err(|e| bad(1, format!("not a bundle header: {e}")))?;
    let header = Header {
        format: h.format,
        origin: h.origin,
        vkey: h.vkey,
        tree_size: h.tree_size,
        count: h.count,
        checkpoint: h.checkpoint,
    };
    let mut v = BundleVerifier::new(&line, &header, &trusted).map_err(|e| bad(1, format!("header: {e}")))?;
    // k-of-n witnessing: the (log-signed) checkpoint must also be cosigned.
    quorum.check(header.checkpoint.as_bytes(), "the bundle's checkpoint").map_err(|e| bad(1, e.to_string()))?;
    if header.vkey != trusted.to_vkey() {
        eprintln!("stele: note: the bundle names key {:?}; it was checked with the given key instead", header.vkey);
    }

    let mut lineno = 1u64;
    loop {
        lineno += 1;
        if !read_line(&mut r, &mut line, lineno)? {
            return Err(bad(lineno, "the file ends before the trailer (truncated bundle)".into()));
        }
        if line.starts_with(b"{\"key_statements\":") {
            // Followed from the trusted key before the header was checked
            // (`cmd_key::followed_key`); here only its place and the digest.
            v.key_statements_line(&line).map_err(|e| bad(lineno, e.to_string()))?;
        } else if line.starts_with(b"{\"timestamp\":") {
            let t: TimestampJson =
                serde_json::from_slice(&line).map_err(|e| bad(lineno, format!("not a timestamp line: {e}")))?;
            v.timestamp_line(&line).map_err(|e| bad(lineno, e.to_string()))?;
            let token = BASE64.decode(&t.timestamp).map_err(|e| bad(lineno, format!("token is not base64: {e}")))?;
            let body = stele_timestamp::checkpoint_body(header.checkpoint.as_bytes())
                .ok_or_else(|| bad(lineno, "the checkpoint note has no body".into()))?;
            let verified = stele_timestamp::verify_token(&token, body, &tsa_certs).map_err(|e| {
                bad(lineno, format!("timestamp token for checkpoint {} from {}: {e}", header.tree_size, t.tsa))
            })?;
            eprintln!(
                "timestamp: checkpoint {} ({}): {}",
                header.tree_size,
                t.tsa,
                crate::cmd_timestamp::describe(&verified)
            );
        } else if line.starts_with(b"{\"index\":") {
            let e: EntryJson = serde_json::from_slice(&line).map_err(|e| bad(lineno, format!("not an entry: {e}")))?;
            let index = e.index;
            let entry = decode_entry(e).map_err(|e| bad(lineno, format!("entry {index}: {e}")))?;
            v.entry(&line, &entry).map_err(|e| bad(lineno, e.to_string()))?;
        } else if line.starts_with(b"{\"end\":") {
            let t: TrailerJson =
                serde_json::from_slice(&line).map_err(|e| bad(lineno, format!("not a bundle trailer: {e}")))?;
            let trailer = Trailer { end: t.end, count: t.count, sha256: t.sha256 };
            let summary = v.finish(&line, &trailer).map_err(|e| bad(lineno, format!("trailer: {e}")))?;
            let mut rest = [0u8; 1];
            if r.read(&mut rest)? != 0 {
                return Err(bad(lineno + 1, "bytes after the trailer".into()));
            }
            println!(
                "bundle OK: {} entries of {} proven included in its checkpoint of tree size {} (root {}); sha256 {}",
                summary.count,
                summary.checkpoint.origin,
                summary.checkpoint.tree_size,
                summary.checkpoint.root_hash.to_base64(),
                summary.digest.to_hex()
            );
            return Ok(());
        } else {
            return Err(bad(lineno, "neither an entry line nor the trailer".into()));
        }
    }
}
