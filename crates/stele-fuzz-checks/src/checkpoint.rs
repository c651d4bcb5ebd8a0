//! `Checkpoint::parse_body` on arbitrary text: never panics, and whatever parses
//! re-encodes to exactly the same bytes (one encoding per checkpoint).

use stele_tlog::checkpoint::Checkpoint;

/// Runs this check on one input: returns normally or panics on a violated property.
pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(c) = Checkpoint::parse_body(text) {
        assert_eq!(c.to_body(), text, "parse/encode round trip");
        assert_eq!(Checkpoint::parse_body(&c.to_body()).as_ref(), Ok(&c));
    }
}
