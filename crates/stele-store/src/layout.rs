//! Names of the files in a data directory.

/// Data directory metadata (JSON): format version, origin.
pub const META: &str = "meta.json";
/// The writer lock file.
pub const LOCK: &str = "LOCK";
/// The log's private signing key (mode 0600).
pub const SIGNING_KEY: &str = "keys/signing.key";
/// The log's verifier key, `name+id+base64`.
pub const VERIFIER_KEY: &str = "keys/verifier.vkey";
/// Leaf records.
pub const LEAVES: &str = "leaves.dat";
/// Payload locators.
pub const LOCATORS: &str = "locators.dat";
/// Signed checkpoints.
pub const CHECKPOINTS: &str = "checkpoints.dat";
/// Stream names.
pub const STREAMS: &str = "streams.dat";
/// Recovery anchor.
pub const STATE: &str = "state.dat";
/// Segments removed by retention (CRC-framed records: `u32` segment number, `u64`
/// index of the deletion record).
pub const DELETIONS: &str = "deletions.dat";
/// RFC 3161 time-stamp tokens over checkpoints (see [`crate::timestamps`]).
pub const TIMESTAMPS: &str = "timestamps.dat";
/// Folder of payload segments.
pub const SEGMENTS_DIR: &str = "segments";

/// Hash file of tile level `level` (tree level `8·level`).
pub fn hash_level(level: u32) -> String {
    format!("hashes/level-{level:02}.dat")
}

/// Segment file number `segno`.
pub fn segment(segno: u32) -> String {
    format!("{SEGMENTS_DIR}/{segno:010}.seg")
}

/// Parses a segment file name back to its number.
pub fn parse_segment(name: &str) -> Option<u32> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}
