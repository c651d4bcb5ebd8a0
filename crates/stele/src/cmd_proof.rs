//! `proof inclusion` and `proof consistency`: the same JSON as the server's
//! `GET /v1/proof/inclusion` and `GET /v1/proof/consistency`; `proof inclusion
//! --format tlog-proof` prints C2SP tlog-proof text instead.

use clap::{Subcommand, ValueEnum};
use stele_server::proofs::{self, ProofRequestError};

use crate::cli::DataArg;
use crate::config::Config;

/// Output format of `proof inclusion`.
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum InclusionFormat {
    /// The JSON document of `GET /v1/proof/inclusion`.
    #[default]
    Json,
    /// C2SP tlog-proof text (`c2sp.org/tlog-proof@v1`) against the newest checkpoint.
    TlogProof,
}

/// Which proof to print.
#[derive(Subcommand, Debug)]
pub(crate) enum ProofCommand {
    /// RFC 9162 inclusion proof of one entry (default: to the newest checkpoint).
    Inclusion {
        #[command(flatten)]
        data: DataArg,
        /// Entry index (0-based).
        #[arg(long)]
        index: u64,
        /// Tree size to prove inclusion in (default: the newest checkpoint's).
        #[arg(long, value_name = "N")]
        tree_size: Option<u64>,
        /// Output format; `tlog-proof` always proves against the newest checkpoint.
        #[arg(long, value_enum, default_value_t = InclusionFormat::Json)]
        format: InclusionFormat,
    },
    /// RFC 9162 consistency proof between two tree sizes.
    Consistency {
        #[command(flatten)]
        data: DataArg,
        /// The older tree size.
        #[arg(long, value_name = "M")]
        first: u64,
        /// The newer tree size (default: the newest checkpoint's).
        #[arg(long, value_name = "N")]
        second: Option<u64>,
    },
}

pub(crate) fn run(config: &Config, command: ProofCommand) -> anyhow::Result<()> {
    let to_failure = |e| match e {
        ProofRequestError::Store(s) => anyhow::Error::from(s),
        other => crate::Failure::usage(other.to_string()),
    };
    use std::io::Write as _;
    let result = match command {
        ProofCommand::Inclusion { data, index, tree_size, format: InclusionFormat::TlogProof } => {
            let (_, reader) = crate::cmd_read::open_reader(config, &data)?;
            let newest = reader.newest_checkpoint().map(|c| c.tree_size);
            if let Some(n) = tree_size
                && Some(n) != newest
            {
                return Err(crate::Failure::usage(format!(
                    "--format tlog-proof proves inclusion in the newest checkpoint; --tree-size {n} is not its size"
                )));
            }
            let text = proofs::inclusion_tlog_proof(&reader, index).map_err(to_failure)?;
            std::io::stdout().lock().write_all(text.as_bytes())?;
            return Ok(());
        }
        ProofCommand::Inclusion { data, index, tree_size, format: InclusionFormat::Json } => {
            let (_, reader) = crate::cmd_read::open_reader(config, &data)?;
            proofs::inclusion(&reader, index, tree_size)
        }
        ProofCommand::Consistency { data, first, second } => {
            let (_, reader) = crate::cmd_read::open_reader(config, &data)?;
            proofs::consistency(&reader, first, second)
        }
    };
    let v = result.map_err(to_failure)?;
    writeln!(std::io::stdout().lock(), "{}", serde_json::to_string_pretty(&v)?)?;
    Ok(())
}
