//! Helpers shared by the sealing tests.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use stele_erasure::{KeyStore, Keys, MasterKey, Sealer, SealingRule};

/// ../shared/data, or `None` (with a message) when it is absent; a failure under
/// `STELE_REQUIRE_PEERS=1`.
pub(crate) fn shared_data() -> Option<PathBuf> {
    let p = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data"));
    if p.join("k8s-audit").is_dir() {
        return Some(p);
    }
    if std::env::var("STELE_REQUIRE_PEERS").is_ok_and(|v| v == "1") {
        panic!("STELE_REQUIRE_PEERS=1 but {} is missing", p.display());
    }
    eprintln!("skipping: ../shared not found");
    None
}

/// A sealer with `rules` over a key store in `dir` and a fixed master key.
pub(crate) fn sealer(dir: &Path, rules: Vec<SealingRule>) -> Sealer {
    std::fs::create_dir_all(dir.join("keys")).unwrap();
    let keys = Keys::with(MasterKey::from_bytes(&[5; 32]), KeyStore::open(dir, true).unwrap());
    Sealer::new(rules, keys).unwrap()
}

/// A rule for `stream` and every JSON format.
pub(crate) fn rule(stream: &str, subject: &str, fields: &[&str]) -> SealingRule {
    SealingRule {
        stream: stream.into(),
        subject: subject.into(),
        fields: fields.iter().map(|s| s.to_string()).collect(),
        ..SealingRule::default()
    }
}
