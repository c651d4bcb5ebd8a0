#![no_main]
//! RFC 3161 tokens and time-stamp responses from arbitrary bytes: `verify_token` and
//! `token_from_response` never panic, and a token that verifies over a message has that
//! message's SHA-256 as its imprint (checked by verifying over another message too).

use libfuzzer_sys::fuzz_target;
use stele_timestamp::{TimestampRequest, verify_token};

fuzz_target!(|data: &[u8]| {
    let message = b"fuzz.example/log\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";
    if verify_token(data, message, &[]).is_ok() {
        assert!(verify_token(data, b"another message\n", &[]).is_err());
    }
    let req = TimestampRequest::with_nonce(message, 1);
    let _ = req.token_from_response(data);
});
