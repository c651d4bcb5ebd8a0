//! The size bound of a time-stamp response: one byte over [`MAX_TOKEN_BYTES`] is
//! refused for its size before any decoding; at the bound it is decoded (and these
//! bytes are not DER).

use stele_timestamp::{MAX_TOKEN_BYTES, RequestError, TimestampRequest};

#[test]
fn responses_are_bounded_before_decoding() {
    let req = TimestampRequest::with_nonce(b"example.com/log\n1\nAAAA\n", 7);
    match req.token_from_response(&vec![0x30; MAX_TOKEN_BYTES + 1]) {
        Err(RequestError::TooLarge(n)) => assert_eq!(n, MAX_TOKEN_BYTES + 1),
        other => panic!("{other:?}"),
    }
    match req.token_from_response(&vec![0x30; MAX_TOKEN_BYTES]) {
        Err(RequestError::Decode(_)) => {}
        other => panic!("{other:?}"),
    }
}
