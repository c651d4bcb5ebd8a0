//! The file signer: a C2SP signed-note private key (`PRIVATE+KEY+<name>+<id>+<base64>`,
//! the format of Go's `note.GenerateKey`) in a file only its owner can read.
//!
//! [`load_private_key`] refuses a file whose mode lets group or others read or write it,
//! naming the file and the `chmod` that fixes it. The key is never logged or printed:
//! errors name the file, never its content, and [`NoteSigner`]'s `Debug` shows only the
//! key name and ID.

use std::path::Path;

use stele_tlog::note::NoteSigner;

use crate::error::{Result, StoreError};

/// Loads the private key in `path` after checking its mode.
///
/// # Errors
/// [`StoreError::Key`] when the file is readable or writable by group or others (the
/// message names the file, its mode and the `chmod 600` to run), is not a regular file
/// or does not hold a valid private key; [`StoreError::Io`] when it cannot be read.
pub fn load_private_key(path: &Path) -> Result<NoteSigner> {
    use std::os::unix::fs::PermissionsExt as _;
    let shown = path.display().to_string();
    let md = std::fs::metadata(path).map_err(StoreError::io("reading", &shown))?;
    if !md.is_file() {
        return Err(StoreError::Key(format!("{shown} is not a regular file")));
    }
    let mode = md.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(StoreError::Key(format!(
            "{shown} is readable by group or others (mode {mode:03o}); run `chmod 600 {shown}` (and consider the key \
             exposed if others could read it)"
        )));
    }
    let text = std::fs::read_to_string(path).map_err(StoreError::io("reading", &shown))?;
    // The parse error says what is malformed, never the key itself.
    NoteSigner::parse(&text).map_err(|e| StoreError::Key(format!("{shown}: {e}")))
}

/// Writes `signer`'s private key to a new file `path` (mode 0600, synced). Fails if the
/// file exists.
///
/// # Errors
/// [`StoreError::Io`] when the file exists or cannot be written.
pub fn write_private_key(path: &Path, signer: &NoteSigner) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let shown = path.display().to_string();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(StoreError::io("creating", &shown))?;
    f.write_all(signer.to_private_key_string().as_bytes())
        .and_then(|_| f.write_all(b"\n"))
        .and_then(|_| f.sync_all())
        .map_err(StoreError::io("writing", &shown))
}

/// A fresh Ed25519 private key named `name`, from the operating system's randomness.
///
/// # Errors
/// [`StoreError::Key`] when no randomness is available or `name` is not a valid key name.
pub fn generate(name: &str) -> Result<NoteSigner> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| StoreError::Key(format!("no randomness: {e}")))?;
    NoteSigner::from_seed(name, &seed).map_err(|e| StoreError::Key(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn refuses_group_or_other_readable_key_and_names_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        let s = NoteSigner::from_seed("log.example", &[3; 32]).unwrap();
        write_private_key(&path, &s).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(load_private_key(&path).unwrap().verifier(), s.verifier());
        for mode in [0o640, 0o604, 0o660, 0o644] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let msg = load_private_key(&path).unwrap_err().to_string();
            assert!(msg.contains(&format!("mode {mode:03o}")), "{msg}");
            assert!(msg.contains(&format!("chmod 600 {}", path.display())), "{msg}");
            assert!(!msg.contains(&s.to_private_key_string()[30..]), "{msg}");
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert!(load_private_key(&path).is_ok());
        // A malformed key file: the error names the file, not its content.
        let bad = dir.path().join("bad.key");
        std::fs::write(&bad, "PRIVATE+KEY+x+00000000+c2VjcmV0\n").unwrap();
        std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o600)).unwrap();
        let msg = load_private_key(&bad).unwrap_err().to_string();
        assert!(msg.contains("bad.key") && !msg.contains("c2VjcmV0"), "{msg}");
    }
}
