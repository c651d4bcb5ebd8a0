//! `GET /key-statements`: the log's key rotation and revocation statements, one line
//! each (`<entry index> <base64 signed note>`, docs/keys.md), so that a verifier given
//! only the first key can follow the chain to the key signing today's checkpoints.
//! Only public keys and signatures: the private key is never served.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use crate::http::App;
use crate::http::{ApiError, error, response};

pub(crate) async fn get_key_statements(State(app): State<Arc<App>>) -> Result<Response, ApiError> {
    let reader = app.shared.reader.clone();
    let list = tokio::task::spawn_blocking(move || stele_store::keys::listed_statements(&reader))
        .await
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, format!("reading key statements: {e}")))?
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, format!("reading key statements: {e}")))?;
    let text: String =
        list.iter().map(|(index, note)| stele_tlog::keychain::statement_list_line(*index, note)).collect();
    Ok(response(StatusCode::OK, "text/plain; charset=utf-8", text))
}
