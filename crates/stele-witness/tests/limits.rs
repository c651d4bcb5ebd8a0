//! The bounds of an add-checkpoint request (C2SP tlog-witness): a body one byte over
//! [`MAX_REQUEST_BYTES`] and a proof one line over [`MAX_PROOF_LINES`] are refused as
//! malformed (HTTP 400), requests at the bounds parse.

use stele_tlog::hash::Hash;
use stele_witness::{AddCheckpointRequest, AddError, MAX_PROOF_LINES, MAX_REQUEST_BYTES};

const CHECKPOINT: &str =
    "example.com/log\n5\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n\u{2014} example.com/log AAAA\n";

fn request(proof_lines: usize, pad_to: Option<usize>) -> Vec<u8> {
    let mut s = String::from("old 1\n");
    for _ in 0..proof_lines {
        s.push_str(&Hash([7; 32]).to_base64());
        s.push('\n');
    }
    s.push('\n');
    s.push_str(CHECKPOINT);
    let mut b = s.into_bytes();
    if let Some(n) = pad_to {
        // Padding inside the checkpoint note's text keeps the request well formed.
        b.resize(n, b'x');
    }
    b
}

#[test]
fn proof_lines_are_bounded() {
    let at = AddCheckpointRequest::parse(&request(MAX_PROOF_LINES, None)).unwrap();
    assert_eq!(at.proof.len(), MAX_PROOF_LINES);
    match AddCheckpointRequest::parse(&request(MAX_PROOF_LINES + 1, None)) {
        Err(AddError::Malformed(m)) => assert!(m.contains("more than 63 proof lines"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn request_size_is_bounded() {
    assert!(AddCheckpointRequest::parse(&request(0, Some(MAX_REQUEST_BYTES))).is_ok());
    match AddCheckpointRequest::parse(&request(0, Some(MAX_REQUEST_BYTES + 1))) {
        Err(AddError::Malformed(m)) => assert!(m.contains("request too large"), "{m}"),
        other => panic!("{other:?}"),
    }
}
