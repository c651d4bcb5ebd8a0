//! RFC 3161 tokens and time-stamp responses from arbitrary bytes: `verify_token` and
//! `token_from_response` never panic, and a token that verifies over a message has that
//! message's SHA-256 as its imprint (checked by verifying over another message too).

use stele_timestamp::{TimestampRequest, verify_token};

/// Runs this check on one input: returns normally or panics on a violated property.
pub fn check(data: &[u8]) {
    let message = b"fuzz.example/log\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";
    if verify_token(data, message, &[]).is_ok() {
        assert!(verify_token(data, b"another message\n", &[]).is_err());
    }
    let req = TimestampRequest::with_nonce(message, 1);
    let _ = req.token_from_response(data);
}
