//! Time-stamp requests (RFC 3161 §2.4.1) and the checks on their responses (§2.4.2).

use bcder::encode::Values as _;
use bcder::{Integer, Mode, OctetString};
use cryptographic_message_syntax::asn1::rfc3161::{MessageImprint, PkiStatus, TimeStampReq, TimeStampResp};
use x509_certificate::DigestAlgorithm;

use crate::MAX_TOKEN_BYTES;

/// Why a time-stamp response was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// No randomness for the nonce.
    #[error("no randomness for the nonce: {0}")]
    Random(String),
    /// The response is larger than [`MAX_TOKEN_BYTES`].
    #[error("the response is {0} bytes, more than {MAX_TOKEN_BYTES}")]
    TooLarge(usize),
    /// The response is not a DER `TimeStampResp`.
    #[error("not a time-stamp response: {0}")]
    Decode(String),
    /// The TSA refused the request (status rejection, waiting, revocation…).
    #[error("the TSA refused the request: status {status}{}", text.as_deref().map(|t| format!(" ({t})")).unwrap_or_default())]
    Refused {
        /// PKIStatus as an integer (RFC 3161 §2.4.2: 2 rejection, 3 waiting, …).
        status: u8,
        /// The TSA's PKIFreeText, if any.
        text: Option<String>,
    },
    /// A granted response without a token.
    #[error("the response grants the request but holds no token")]
    NoToken,
    /// The token does not answer this request.
    #[error("the token does not answer the request: {0}")]
    Mismatch(&'static str),
}

/// One time-stamp request: DER bytes ready to POST, with what the answer must match.
#[derive(Clone, Debug)]
pub struct TimestampRequest {
    der: Vec<u8>,
    imprint: [u8; 32],
    nonce: u64,
}

impl TimestampRequest {
    /// A version-1 `TimeStampReq` over `message`: message imprint SHA-256 of it, a
    /// random 63-bit nonce, `certReq` true (the token carries the TSA's certificate),
    /// no policy, no extensions (RFC 3161 §2.4.1).
    ///
    /// # Errors
    /// [`RequestError::Random`] when the system has no randomness.
    pub fn new(message: &[u8]) -> Result<TimestampRequest, RequestError> {
        let mut b = [0u8; 8];
        getrandom::fill(&mut b).map_err(|e| RequestError::Random(e.to_string()))?;
        // Positive and nonzero, so the INTEGER is at most 8 content bytes.
        let nonce = (u64::from_be_bytes(b) >> 1).max(1);
        Ok(TimestampRequest::with_nonce(message, nonce))
    }

    /// As [`TimestampRequest::new`] with a given nonce (tests, replays of a request).
    pub fn with_nonce(message: &[u8], nonce: u64) -> TimestampRequest {
        let imprint = crate::sha256(message);
        let req = TimeStampReq {
            version: Integer::from(1u8),
            message_imprint: MessageImprint {
                hash_algorithm: DigestAlgorithm::Sha256.into(),
                hashed_message: OctetString::new(bytes::Bytes::copy_from_slice(&imprint)),
            },
            req_policy: None,
            nonce: Some(Integer::from(nonce)),
            cert_req: Some(true),
            extensions: None,
        };
        let mut der = Vec::new();
        req.encode_ref().write_encoded(Mode::Der, &mut der).expect("writing to a Vec cannot fail");
        TimestampRequest { der, imprint, nonce }
    }

    /// The DER-encoded `TimeStampReq`.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The SHA-256 message imprint requested.
    pub fn imprint(&self) -> [u8; 32] {
        self.imprint
    }

    /// The nonce requested.
    pub fn nonce(&self) -> u64 {
        self.nonce
    }

    /// Checks a DER `TimeStampResp` answers this request (status granted, a token whose
    /// TSTInfo has this request's imprint and nonce; RFC 3161 §2.4.2) and returns the
    /// token: the DER `ContentInfo` holding the signed TSTInfo, which is what stele
    /// stores and serves. The token's signature is not checked here; use
    /// [`crate::verify_token`].
    ///
    /// # Errors
    /// [`RequestError`] naming what does not match.
    pub fn token_from_response(&self, response: &[u8]) -> Result<Vec<u8>, RequestError> {
        if response.len() > MAX_TOKEN_BYTES {
            return Err(RequestError::TooLarge(response.len()));
        }
        let resp = bcder::decode::Constructed::decode(response, Mode::Der, TimeStampResp::take_from)
            .map_err(|e| RequestError::Decode(e.to_string()))?;
        let status = match resp.status.status {
            PkiStatus::Granted | PkiStatus::GrantedWithMods => None,
            PkiStatus::Rejection => Some(2),
            PkiStatus::Waiting => Some(3),
            PkiStatus::RevocationWarning => Some(4),
            PkiStatus::RevocationNotification => Some(5),
        };
        if let Some(status) = status {
            let text = resp.status.status_string.as_ref().map(|t| format!("{t:?}"));
            return Err(RequestError::Refused { status, text });
        }
        let der = crate::ess::response_token(response).map_err(RequestError::Decode)?.ok_or(RequestError::NoToken)?;
        let tst = crate::verify::decode_tst_info(&der).map_err(|e| RequestError::Decode(e.to_string()))?;
        if tst.message_imprint.hashed_message.to_bytes().as_ref() != self.imprint {
            return Err(RequestError::Mismatch("message imprint"));
        }
        if tst.nonce.as_ref() != Some(&Integer::from(self.nonce)) {
            return Err(RequestError::Mismatch("nonce"));
        }
        Ok(der)
    }
}
