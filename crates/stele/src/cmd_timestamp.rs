//! `stele timestamp`, and the checks of RFC 3161 tokens shared by `verify`,
//! `verify-bundle` and `monitor`.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use stele_server::timestamping::TimestampAuthority;
use stele_store::timestamps::TimestampRecord;
use stele_store::{Log, LogReader, StoreError};
use stele_timestamp::{EssVersion, TimestampRequest, TsaCertificate, VerifiedToken};

use crate::cli::{DataArg, TsaCertArgs};
use crate::config::Config;

/// Time allowed for one exchange with a TSA.
const TSA_TIMEOUT: Duration = Duration::from_secs(30);

/// One `[[timestamp_authority]]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TsaEntry {
    /// The TSA's `http://` or `https://` URL.
    pub(crate) url: String,
    /// PEM file of the certificate its tokens must chain to (its own or its CA's).
    pub(crate) certificate: PathBuf,
}

fn read_pem(path: &PathBuf) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| crate::Failure::usage(format!("TSA certificate {}: {e}", path.display())))
}

/// The TSAs to stamp with: `--tsa URL=PEM` flags when given, else the config file's.
pub(crate) fn authorities(config: &Config, flags: &[String]) -> anyhow::Result<Vec<TimestampAuthority>> {
    let entries: Vec<TsaEntry> = if flags.is_empty() {
        config.timestamp_authority.clone().unwrap_or_default()
    } else {
        flags
            .iter()
            .map(|f| {
                let (url, pem) = f
                    .rsplit_once('=')
                    .ok_or_else(|| crate::Failure::usage(format!("--tsa {f:?}: expected URL=CERT.pem")))?;
                Ok(TsaEntry { url: url.to_string(), certificate: PathBuf::from(pem) })
            })
            .collect::<anyhow::Result<_>>()?
    };
    entries
        .iter()
        .map(|e| {
            let a = TimestampAuthority { url: e.url.clone(), certificate_pem: read_pem(&e.certificate)? };
            TsaCertificate::from_pem(&a.certificate_pem)
                .map_err(|err| crate::Failure::usage(format!("TSA certificate {}: {err}", e.certificate.display())))?;
            Ok(a)
        })
        .collect()
}

/// The certificates tokens must chain to: `--tsa-cert` files when given, else the
/// certificates of the config file's `[[timestamp_authority]]` tables.
pub(crate) fn trusted(config: &Config, args: &TsaCertArgs) -> anyhow::Result<Vec<TsaCertificate>> {
    let paths: Vec<PathBuf> = if args.tsa_certs.is_empty() {
        config.timestamp_authority.iter().flatten().map(|e| e.certificate.clone()).collect()
    } else {
        args.tsa_certs.clone()
    };
    let mut out = Vec::new();
    for p in &paths {
        out.extend(
            TsaCertificate::from_pem(&read_pem(p)?)
                .map_err(|e| crate::Failure::usage(format!("TSA certificate {}: {e}", p.display())))?,
        );
    }
    Ok(out)
}

/// One line about a verified token.
pub(crate) fn describe(v: &VerifiedToken) -> String {
    let ess = match v.ess {
        EssVersion::V1 => "ESSCertID",
        EssVersion::V2 => "ESSCertIDv2",
    };
    let chain = match &v.chained_to {
        Some(s) => format!("chains to {s}"),
        None => "chain NOT checked (no TSA certificate configured; give --tsa-cert)".into(),
    };
    format!("genTime {} signed by {} ({ess}, serial {}, policy {}); {chain}", v.gen_time, v.signer, v.serial, v.policy)
}

/// Verifies every stored token against the checkpoint body the log's tree gives at its
/// tree size. Prints one line per good token to stderr; returns one problem per bad
/// one, naming the record, the checkpoint and the check that failed.
pub(crate) fn check_stored(
    reader: &LogReader,
    records: &[(u64, TimestampRecord)],
    certs: &[TsaCertificate],
) -> anyhow::Result<Vec<String>> {
    let mut problems = Vec::new();
    for (offset, r) in records {
        let at = format!("{} offset {offset}", stele_store::layout::TIMESTAMPS);
        if r.tree_size > reader.tree_size() {
            continue; // reported by the store's verify
        }
        let root = reader.root_hash(r.tree_size)?;
        let body = stele_timestamp::body_for(reader.origin(), r.tree_size, &root.to_base64());
        match stele_timestamp::verify_token(&r.token, &body, certs) {
            Ok(v) => eprintln!("timestamp: checkpoint {} ({}): {}", r.tree_size, r.tsa, describe(&v)),
            Err(e) => {
                problems.push(format!("{at}: timestamp token for checkpoint {} from {}: {e}", r.tree_size, r.tsa))
            }
        }
    }
    Ok(problems)
}

/// `stele timestamp`.
pub(crate) fn run(config: &Config, data: DataArg, flags: &[String]) -> anyhow::Result<()> {
    let dir = config.data_dir(data.data.as_ref())?;
    let authorities = authorities(config, flags)?;
    if authorities.is_empty() {
        return Err(crate::Failure::usage(
            "no timestamp authority: give --tsa URL=CERT.pem or [[timestamp_authority]]",
        ));
    }
    let log = Log::open(&dir, config.log_options()).map_err(|e| match e {
        StoreError::Locked => crate::Failure::usage(
            "another stele process holds this data directory (a running server timestamps on its own schedule)",
        ),
        other => other.into(),
    })?;
    let cp = log
        .newest_checkpoint()
        .cloned()
        .ok_or_else(|| crate::Failure::usage("the log has no signed checkpoint yet; nothing to timestamp"))?;
    let body = stele_timestamp::checkpoint_body(cp.note.as_bytes())
        .ok_or_else(|| StoreError::Corrupt("the newest checkpoint note has no body".into()))?
        .to_vec();
    let mut failed = 0usize;
    for a in &authorities {
        let certs = TsaCertificate::from_pem(&a.certificate_pem).map_err(crate::Failure::usage)?;
        let got = TimestampRequest::new(&body)
            .map_err(|e| e.to_string())
            .and_then(|req| stele_timestamp::client::fetch(&a.url, &req, TSA_TIMEOUT).map_err(|e| e.to_string()))
            .and_then(|token| {
                stele_timestamp::verify_token(&token, &body, &certs)
                    .map(|v| (token, v))
                    .map_err(|e| format!("the token fails {e}"))
            });
        match got {
            Ok((token, v)) => {
                let record = TimestampRecord {
                    tree_size: cp.tree_size,
                    obtained_ns: stele_store::log::now_ns(),
                    tsa: a.url.clone(),
                    token,
                };
                stele_store::timestamps::append(log.reader().files(), &record)?;
                println!("checkpoint {} timestamped by {}: {}", cp.tree_size, a.url, describe(&v));
            }
            Err(e) => {
                failed += 1;
                eprintln!("stele: {}: no token: {e}", a.url);
            }
        }
    }
    if failed == authorities.len() {
        return Err(anyhow::anyhow!("no timestamp authority returned a valid token"));
    }
    Ok(())
}
