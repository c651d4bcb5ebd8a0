//! `proof inclusion` and `proof consistency`: the same JSON as the server's
//! `GET /v1/proof/inclusion` and `GET /v1/proof/consistency`.

use clap::Subcommand;
use stele_server::proofs::{self, ProofRequestError};

use crate::cli::DataArg;
use crate::config::Config;

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
    let result = match command {
        ProofCommand::Inclusion { data, index, tree_size } => {
            let (_, reader) = crate::cmd_read::open_reader(config, &data)?;
            proofs::inclusion(&reader, index, tree_size)
        }
        ProofCommand::Consistency { data, first, second } => {
            let (_, reader) = crate::cmd_read::open_reader(config, &data)?;
            proofs::consistency(&reader, first, second)
        }
    };
    let v = result.map_err(|e| match e {
        ProofRequestError::Store(s) => anyhow::Error::from(s),
        other => crate::Failure::usage(other.to_string()),
    })?;
    use std::io::Write as _;
    writeln!(std::io::stdout().lock(), "{}", serde_json::to_string_pretty(&v)?)?;
    Ok(())
}
