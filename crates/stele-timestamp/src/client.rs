//! Getting a token from a timestamp authority over HTTP (RFC 3161 §3.4): `POST` of the
//! DER request with `Content-Type: application/timestamp-query`, answered by a
//! `application/timestamp-reply` body. Blocking (ureq, rustls for `https://`); callers
//! in async code run it on a blocking thread.

use std::time::Duration;

use crate::{CONTENT_TYPE_QUERY, MAX_TOKEN_BYTES, RequestError, TimestampRequest};

/// Why no token came back.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The URL is not `http://` or `https://`.
    #[error("{0}: only http:// and https:// timestamp authorities are supported")]
    BadUrl(String),
    /// Connecting, sending or reading failed.
    #[error("{url}: {message}")]
    Http {
        /// The TSA's URL.
        url: String,
        /// What failed.
        message: String,
    },
    /// The TSA answered with an HTTP error status.
    #[error("{url}: HTTP status {status}")]
    Status {
        /// The TSA's URL.
        url: String,
        /// The status.
        status: u16,
    },
    /// The answer is not a token for this request.
    #[error("{url}: {source}")]
    Response {
        /// The TSA's URL.
        url: String,
        /// What is wrong with it.
        source: RequestError,
    },
}

/// Posts `request` to the TSA at `url` and returns the token of its answer (DER
/// `ContentInfo`), checked against the request with
/// [`TimestampRequest::token_from_response`]. `timeout` bounds the whole exchange.
///
/// # Errors
/// [`FetchError`] naming the URL and what failed.
pub fn fetch(url: &str, request: &TimestampRequest, timeout: Duration) -> Result<Vec<u8>, FetchError> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(FetchError::BadUrl(url.to_string()));
    }
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .user_agent("stele")
        .build();
    let agent = ureq::Agent::new_with_config(config);
    let http = |e: ureq::Error| FetchError::Http { url: url.to_string(), message: e.to_string() };
    let mut resp = agent.post(url).header("Content-Type", CONTENT_TYPE_QUERY).send(request.der()).map_err(http)?;
    let status = resp.status().as_u16();
    if status != 200 {
        return Err(FetchError::Status { url: url.to_string(), status });
    }
    // One more byte than allowed, so that an oversized answer is told apart.
    let body = resp.body_mut().with_config().limit(MAX_TOKEN_BYTES as u64 + 1).read_to_vec().map_err(http)?;
    request.token_from_response(&body).map_err(|source| FetchError::Response { url: url.to_string(), source })
}
