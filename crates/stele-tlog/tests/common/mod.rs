//! Locating ../shared for tests.
use std::path::PathBuf;

/// The shared data directory, or `None` (with a message) when it is absent.
/// With `STELE_REQUIRE_PEERS=1`, absence is a failure.
pub(crate) fn shared_data() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var("STELE_REQUIRE_PEERS").as_deref() == Ok("1") {
        panic!("STELE_REQUIRE_PEERS=1 but {} is missing", dir.display());
    }
    eprintln!("skipping: ../shared/data not found at {}", dir.display());
    None
}
