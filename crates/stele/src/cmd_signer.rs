//! `stele signer serve`: hold the log's private key in a process of its own and sign
//! checkpoints over a Unix socket (protocol in docs/keys.md); and the `--signer` /
//! `signer` setting of `stele serve` that chooses where checkpoints are signed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Args, Subcommand};
use stele_store::signer_unix::{SignerService, UnixSigner, bind};
use stele_tlog::signer::CheckpointSigner;

/// `stele signer ...`.
#[derive(Subcommand, Debug)]
pub(crate) enum SignerCommand {
    /// Serve signatures of checkpoint bodies over a Unix socket.
    Serve(ServeArgs),
}

/// `stele signer serve`.
#[derive(Args, Debug)]
pub(crate) struct ServeArgs {
    /// The private key file (`PRIVATE+KEY+...`, mode 0600 or stricter).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// The Unix socket to listen on (created with mode 0600; a stale one is replaced).
    #[arg(long, value_name = "PATH")]
    socket: PathBuf,
    /// Where the largest signed tree size is kept (default: the key file's path with
    /// `.state` appended). Keep it with the key: losing it lets a compromised server
    /// obtain a signature for a smaller tree.
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
}

pub(crate) fn run(what: SignerCommand) -> anyhow::Result<()> {
    match what {
        SignerCommand::Serve(args) => serve(&args),
    }
}

fn serve(args: &ServeArgs) -> anyhow::Result<()> {
    let key = stele_store::signer_file::load_private_key(&args.key)?;
    let state = args.state.clone().unwrap_or_else(|| {
        let mut s = args.key.clone().into_os_string();
        s.push(".state");
        PathBuf::from(s)
    });
    let service = Arc::new(SignerService::new(key, &state)?);
    let listener = bind(&args.socket)?;
    eprintln!(
        "stele signer: key {} on {} (state {}; signed up to tree size {})",
        service.verifier().to_vkey(),
        args.socket.display(),
        state.display(),
        service.high_water().map_or(0, |h| h.tree_size)
    );
    service.serve(listener)?;
    Ok(())
}

/// The checkpoint signer named by `spec` (`--signer` or the `signer` config key):
/// `unix:PATH` (a `stele signer serve` process, which must hold the log's current key
/// `keys/verifier.vkey`) or `file:PATH` (a key file kept outside the data directory).
/// `None` when `spec` is `None`: the data directory's own key file.
pub(crate) fn open_signer(spec: Option<&str>, dir: &Path) -> anyhow::Result<Option<Box<dyn CheckpointSigner>>> {
    let Some(spec) = spec else { return Ok(None) };
    if let Some(path) = spec.strip_prefix("unix:") {
        let current = stele_store::log::read_verifier(dir)?;
        let mut signer = UnixSigner::new(Path::new(path), current);
        // Unreachable now is not fatal: checkpoints wait, ingestion goes on.
        if let Err(e) = signer.check() {
            eprintln!("stele: warning: checkpoint signer {spec}: {e}; checkpoints are not signed until it answers");
        }
        return Ok(Some(Box::new(signer)));
    }
    if let Some(path) = spec.strip_prefix("file:") {
        return Ok(Some(Box::new(stele_store::signer_file::load_private_key(Path::new(path))?)));
    }
    Err(crate::Failure::usage(format!("--signer {spec:?}: expected unix:PATH or file:PATH")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signer_spec_from_the_config_file_and_its_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("d");
        let vkey = stele_store::log::init(&dir, "spec.example").unwrap();
        let c: crate::config::Config = toml::from_str("signer = \"unix:/nonexistent/signer.sock\"\n").unwrap();
        // Unreachable at start is not fatal: the signer is used once it answers.
        let s = open_signer(c.signer.as_deref(), &dir).unwrap().expect("a signer");
        assert_eq!(s.verifier(), vkey);
        assert!(open_signer(None, &dir).unwrap().is_none());
        let e = open_signer(Some("tcp:127.0.0.1:1"), &dir).err().expect("refused").to_string();
        assert!(e.contains("expected unix:PATH or file:PATH"), "{e}");
        // file:PATH goes through the same mode check as the data directory's key.
        use std::os::unix::fs::PermissionsExt as _;
        let key = dir.join(stele_store::layout::SIGNING_KEY);
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = open_signer(Some(&format!("file:{}", key.display())), &dir).err().expect("refused").to_string();
        assert!(e.contains("chmod 600"), "{e}");
    }
}
