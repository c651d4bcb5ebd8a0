//! API tokens: the token file, the grants, and the records of their lifecycle.
//!
//! A token is `stele_` followed by 43 characters of unpadded base64url: 256 random
//! bits from the operating system. It is shown once, when created; the server keeps
//! only its SHA-256 digest, in `DATA/tokens.json` (mode 0600):
//!
//! ```json
//! {"version":1,"tokens":[{"name":"ci","sha256":"<64 hex>","grants":["append:prod-*"],
//!  "created_ns":1717000000000000000,"revoked_ns":null}]}
//! ```
//!
//! The file is replaced crash-safely (a temporary file, fsync, rename, fsync of the
//! directory), so after a crash it holds either the old or the new set, never a mix.
//! A revoked token stays in the file with its `revoked_ns`, so that a request with it
//! is told so and its name can be traced in the records.
//!
//! Creations and revocations are also entries of the log, in `_stele/auth` (JSON,
//! format 3): `{"type":"token_created","name","fingerprint","grants","created_ns"}` and
//! `{"type":"token_revoked","name","fingerprint","revoked_ns"}`, the fingerprint being
//! the first 16 hex digits of the digest (it identifies the token in the records and
//! reveals nothing usable). Whoever holds the log (the CLI when no server runs, else
//! the server when it reloads the file, and every server at start) appends the
//! records the file implies and the log lacks ([`missing_records`]); the server
//! accepts a new token only once its creation record is durable.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The token file's name inside the data directory.
pub const TOKEN_FILE: &str = "tokens.json";
/// The stream of token lifecycle records.
pub const AUTH_STREAM: &str = "_stele/auth";
/// What every token starts with (lets secret scanners recognise leaked tokens).
pub const TOKEN_PREFIX: &str = "stele_";
/// Longest token name: names appear in records and error messages.
pub const MAX_NAME: usize = 64;
/// Most tokens in the file (active and revoked): the file is read whole at every reload.
pub const MAX_TOKENS: usize = 10_000;
/// Largest token file read (bytes): about 10,000 tokens with a few grants each.
pub const MAX_FILE_BYTES: u64 = 8 << 20;

/// Errors of the token file and of grant parsing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The file could not be read or written.
    #[error("token file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid token file.
    #[error("token file {path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A grant or name given by the user is not valid.
    #[error("{0}")]
    Usage(String),
    /// The system gave no randomness.
    #[error("no randomness: {0}")]
    Random(String),
}

/// What a grant allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Append events (`POST /v1/events`, `/v1/k8s/audit`, `/v1/logs`, OTLP/gRPC).
    Append,
    /// Read entries and query them (`GET /v1/entries/N`, `/v1/query`), and the proof
    /// routes when they are not public.
    Read,
    /// Administer: place and list legal holds (and the other administrative routes).
    Admin,
    /// Release a legal hold: a permission of its own (separation of duties), not
    /// implied by `admin`.
    HoldRelease,
    /// Erase a data subject's sealed fields (`POST /v1/admin/erasures`, docs/erasure.md):
    /// a permission of its own, not implied by `admin`.
    Erase,
    /// Shorten a governance-mode retention policy while the server runs
    /// (`POST /v1/admin/retention/shorten`, docs/retention.md): a permission of its own,
    /// not implied by `admin`.
    GovernanceBypass,
    /// Rotate the log's signing key while the server runs (`POST /v1/admin/keys/rotate`,
    /// docs/keys.md): a permission of its own, not implied by `admin`.
    KeyRotate,
    /// Revoke an earlier key of the log (`POST /v1/admin/keys/revoke`, docs/keys.md): a
    /// permission of its own, not implied by `admin`.
    KeyRevoke,
}

impl Role {
    /// The name used in grants, records and errors: `append`, `read`, `admin`,
    /// `hold-release`, `erase`, `governance-bypass`, `key-rotate`, `key-revoke`.
    pub fn name(self) -> &'static str {
        match self {
            Role::Append => "append",
            Role::Read => "read",
            Role::Admin => "admin",
            Role::HoldRelease => "hold-release",
            Role::Erase => "erase",
            Role::GovernanceBypass => "governance-bypass",
            Role::KeyRotate => "key-rotate",
            Role::KeyRevoke => "key-revoke",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A role over a set of streams: `ROLE[:SCOPE]`, the scope being a stream name, a
/// prefix ending in `*`, or `*` (every stream, the default when no scope is given).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Grant {
    /// The role.
    pub role: Role,
    /// Stream name, `prefix*` or `*`.
    pub scope: String,
}

impl Grant {
    /// Whether the grant covers `stream` (a stream name).
    pub fn covers(&self, stream: &str) -> bool {
        match self.scope.strip_suffix('*') {
            Some(prefix) => stream.starts_with(prefix),
            None => self.scope == stream,
        }
    }

    /// Whether the grant covers every stream a stream pattern (`name`, `prefix*` or
    /// `*`) can select.
    pub fn covers_pattern(&self, pattern: &str) -> bool {
        match (self.scope.strip_suffix('*'), pattern.strip_suffix('*')) {
            (Some(mine), Some(theirs)) => theirs.starts_with(mine),
            (Some(mine), None) => pattern.starts_with(mine),
            (None, Some(_)) => false,
            (None, None) => self.scope == pattern,
        }
    }
}

impl FromStr for Grant {
    type Err = TokenError;

    /// Parses `append`, `read:prod`, `read:prod-*`, `admin:*`, `hold-release`.
    fn from_str(s: &str) -> Result<Grant, TokenError> {
        let (role, scope) = s.split_once(':').unwrap_or((s, "*"));
        if scope.is_empty() {
            return Err(TokenError::Usage(format!(
                "grant {s:?}: the scope after `:` is empty (use `*` for every stream)"
            )));
        }
        let role = match role {
            "append" => Role::Append,
            "read" => Role::Read,
            "admin" => Role::Admin,
            "hold-release" => Role::HoldRelease,
            "erase" => Role::Erase,
            "governance-bypass" => Role::GovernanceBypass,
            "key-rotate" => Role::KeyRotate,
            "key-revoke" => Role::KeyRevoke,
            other => {
                return Err(TokenError::Usage(format!(
                    "grant {s:?}: unknown role {other:?}; the roles are append, read, admin, hold-release, erase, \
                     governance-bypass, key-rotate, key-revoke"
                )));
            }
        };
        let bare = scope.strip_suffix('*').unwrap_or(scope);
        if !bare.is_empty() {
            if bare.contains('*') {
                return Err(TokenError::Usage(format!("grant {s:?}: `*` may only end the scope")));
            }
            // A prefix need not be a whole stream name, but its characters must be.
            let probe = if scope.ends_with('*') { format!("{bare}x") } else { bare.to_string() };
            stele_store::streams::check_log_stream_name(&probe)
                .map_err(|e| TokenError::Usage(format!("grant {s:?}: {e}")))?;
        }
        Ok(Grant { role, scope: scope.to_string() })
    }
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.role, self.scope)
    }
}

/// One token of the file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenEntry {
    /// Unique among active tokens; 1 to [`MAX_NAME`] of `A-Z a-z 0-9 . _ -`.
    pub name: String,
    /// SHA-256 of the token text, 64 lowercase hex digits.
    pub sha256: String,
    /// Grants as text (`ROLE[:SCOPE]`).
    pub grants: Vec<String>,
    /// When it was created, ns since the epoch.
    pub created_ns: u64,
    /// When it was revoked; `None` while active.
    pub revoked_ns: Option<u64>,
}

impl TokenEntry {
    /// The first 16 hex digits of the digest: names the token in records.
    pub fn fingerprint(&self) -> &str {
        &self.sha256[..16]
    }

    /// The parsed grants.
    ///
    /// # Errors
    /// A grant that does not parse.
    pub fn parsed_grants(&self) -> Result<Vec<Grant>, TokenError> {
        self.grants.iter().map(|g| g.parse()).collect()
    }
}

/// The token file's contents.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenFile {
    /// Format version, 1.
    pub version: u32,
    /// Every token, active and revoked, oldest first.
    pub tokens: Vec<TokenEntry>,
}

/// The hex SHA-256 of a token's text.
pub fn token_digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Checks a token name.
///
/// # Errors
/// [`TokenError::Usage`] naming what is wrong.
pub fn check_name(name: &str) -> Result<(), TokenError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(TokenError::Usage(format!("token name {name:?}: use 1 to {MAX_NAME} characters among A-Z a-z 0-9 . _ -")))
    }
}

impl TokenFile {
    /// The file's path in data directory `dir`.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(TOKEN_FILE)
    }

    /// Reads `DATA/tokens.json`; `Ok(None)` when there is none.
    ///
    /// # Errors
    /// Read errors, a file over [`MAX_FILE_BYTES`], invalid JSON, an unknown
    /// version, a bad digest, name or grant.
    pub fn load(dir: &Path) -> Result<Option<TokenFile>, TokenError> {
        let path = TokenFile::path(dir);
        let io = |source| TokenError::Io { path: path.clone(), source };
        let bytes = match std::fs::metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(e)),
            Ok(m) if m.len() > MAX_FILE_BYTES => {
                return Err(TokenError::Invalid {
                    path,
                    reason: format!("{} bytes, more than the limit of {MAX_FILE_BYTES}", m.len()),
                });
            }
            Ok(_) => std::fs::read(&path).map_err(io)?,
        };
        TokenFile::parse(&bytes).map(Some).map_err(|reason| TokenError::Invalid { path, reason })
    }

    /// Parses and checks the file's bytes.
    ///
    /// # Errors
    /// What is wrong, as text.
    pub fn parse(bytes: &[u8]) -> Result<TokenFile, String> {
        let file: TokenFile = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if file.version != 1 {
            return Err(format!("version {} is not supported (this release reads version 1)", file.version));
        }
        if file.tokens.len() > MAX_TOKENS {
            return Err(format!("{} tokens, more than the limit of {MAX_TOKENS}", file.tokens.len()));
        }
        let mut active = HashSet::new();
        for t in &file.tokens {
            check_name(&t.name).map_err(|e| e.to_string())?;
            if t.sha256.len() != 64 || !t.sha256.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
                return Err(format!("token {:?}: sha256 is not 64 lowercase hex digits", t.name));
            }
            t.parsed_grants().map_err(|e| format!("token {:?}: {e}", t.name))?;
            if t.revoked_ns.is_none() && !active.insert(t.name.as_str()) {
                return Err(format!("two active tokens are named {:?}", t.name));
            }
        }
        Ok(file)
    }

    /// Replaces the file crash-safely: writes `tokens.json.tmp` (mode 0600), fsyncs
    /// it, renames it over `tokens.json` and fsyncs the directory.
    ///
    /// # Errors
    /// Any I/O error; the old file is then intact.
    pub fn save(&self, dir: &Path) -> Result<(), TokenError> {
        let path = TokenFile::path(dir);
        let tmp = dir.join(format!("{TOKEN_FILE}.tmp"));
        let io = |p: &Path| {
            let p = p.to_path_buf();
            move |source| TokenError::Io { path: p, source }
        };
        let mut text = serde_json::to_vec_pretty(self).expect("the token file serializes");
        text.push(b'\n');
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(&tmp).map_err(io(&tmp))?;
        f.write_all(&text).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        drop(f);
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))?;
        Ok(())
    }

    /// Adds a new token named `name` with `grants` and returns its text (the only
    /// time it exists outside the client). Nothing is written: call [`TokenFile::save`].
    ///
    /// # Errors
    /// A bad name or grant, an active token of that name, too many tokens, no randomness.
    pub fn create(&mut self, name: &str, grants: &[Grant], now_ns: u64) -> Result<String, TokenError> {
        check_name(name)?;
        if grants.is_empty() {
            return Err(TokenError::Usage("a token needs at least one --role".into()));
        }
        if self.active(name).is_some() {
            return Err(TokenError::Usage(format!(
                "an active token is already named {name:?}; revoke it first or choose another name"
            )));
        }
        if self.tokens.len() >= MAX_TOKENS {
            return Err(TokenError::Usage(format!("the token file already holds {MAX_TOKENS} tokens")));
        }
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| TokenError::Random(e.to_string()))?;
        let token = format!("{TOKEN_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret));
        self.version = 1;
        self.tokens.push(TokenEntry {
            name: name.to_string(),
            sha256: token_digest(&token),
            grants: grants.iter().map(Grant::to_string).collect(),
            created_ns: now_ns,
            revoked_ns: None,
        });
        Ok(token)
    }

    /// The active token named `name`.
    pub fn active(&self, name: &str) -> Option<&TokenEntry> {
        self.tokens.iter().find(|t| t.name == name && t.revoked_ns.is_none())
    }

    /// Marks the active token `name` revoked at `now_ns`.
    ///
    /// # Errors
    /// No active token has that name.
    pub fn revoke(&mut self, name: &str, now_ns: u64) -> Result<&TokenEntry, TokenError> {
        let t = self
            .tokens
            .iter_mut()
            .find(|t| t.name == name && t.revoked_ns.is_none())
            .ok_or_else(|| TokenError::Usage(format!("no active token is named {name:?}")))?;
        t.revoked_ns = Some(now_ns);
        Ok(t)
    }
}

/// A token lifecycle record of `_stele/auth`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TokenRecord {
    /// A token was created.
    TokenCreated {
        /// Its name.
        name: String,
        /// First 16 hex digits of its digest.
        fingerprint: String,
        /// Its grants.
        grants: Vec<String>,
        /// When, ns.
        created_ns: u64,
    },
    /// A token was revoked (or vanished from the token file: `reason` says so).
    TokenRevoked {
        /// Its name.
        name: String,
        /// First 16 hex digits of its digest.
        fingerprint: String,
        /// When, ns.
        revoked_ns: u64,
        /// Set when the token was not revoked but is missing from the file.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
}

impl TokenRecord {
    /// The JSON payload.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a token record serializes")
    }

    /// Parses a payload of `_stele/auth`; `None` for other records.
    pub fn parse(payload: &[u8]) -> Option<TokenRecord> {
        serde_json::from_slice(payload).ok()
    }
}

/// The records `file` implies that `recorded` (the `_stele/auth` records already in
/// the log, in log order) lacks: a creation for each token never recorded, a
/// revocation for each revoked token not yet recorded as revoked, and a revocation
/// (with a reason) for each recorded active token that the file no longer holds.
pub fn missing_records(file: &TokenFile, recorded: &[TokenRecord], now_ns: u64) -> Vec<TokenRecord> {
    let mut created: HashMap<&str, bool> = HashMap::new();
    let mut names: HashMap<&str, &str> = HashMap::new();
    for r in recorded {
        match r {
            TokenRecord::TokenCreated { fingerprint, name, .. } => {
                created.entry(fingerprint).or_insert(false);
                names.insert(fingerprint, name);
            }
            TokenRecord::TokenRevoked { fingerprint, .. } => {
                created.insert(fingerprint, true);
            }
        }
    }
    let mut out = Vec::new();
    let mut in_file = HashSet::new();
    for t in &file.tokens {
        let fp = t.fingerprint();
        in_file.insert(fp.to_string());
        let revoked_in_log = match created.get(fp) {
            Some(r) => *r,
            None => {
                out.push(TokenRecord::TokenCreated {
                    name: t.name.clone(),
                    fingerprint: fp.to_string(),
                    grants: t.grants.clone(),
                    created_ns: t.created_ns,
                });
                false
            }
        };
        if let Some(at) = t.revoked_ns
            && !revoked_in_log
        {
            out.push(TokenRecord::TokenRevoked {
                name: t.name.clone(),
                fingerprint: fp.to_string(),
                revoked_ns: at,
                reason: None,
            });
        }
    }
    let mut gone: Vec<(&str, &str)> = created
        .iter()
        .filter(|(fp, revoked)| !**revoked && !in_file.contains(**fp))
        .map(|(fp, _)| (*fp, names.get(fp).copied().unwrap_or("")))
        .collect();
    gone.sort();
    for (fp, name) in gone {
        out.push(TokenRecord::TokenRevoked {
            name: name.to_string(),
            fingerprint: fp.to_string(),
            revoked_ns: now_ns,
            reason: Some("absent from the token file".into()),
        });
    }
    out
}

/// Every token record of `_stele/auth`, in log order, found through the query index
/// `snapshot` and re-read from the log.
///
/// # Errors
/// Index or log read errors, as text.
pub fn recorded(snapshot: &stele_index::Snapshot, reader: &stele_store::LogReader) -> Result<Vec<TokenRecord>, String> {
    let indexes = snapshot.stream_indexes(AUTH_STREAM, 0).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for i in indexes {
        match reader.entry(i) {
            Ok(e) if e.stream == AUTH_STREAM => out.extend(TokenRecord::parse(&e.payload)),
            Ok(_) | Err(stele_store::StoreError::Deleted { .. }) => {}
            Err(e) => return Err(format!("reading entry {i}: {e}")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_parse_and_cover() {
        let g: Grant = "read:prod-*".parse().unwrap();
        assert_eq!(g.role, Role::Read);
        assert!(g.covers("prod-eu") && !g.covers("dev"));
        assert!(g.covers_pattern("prod-eu*") && g.covers_pattern("prod-x") && !g.covers_pattern("pro*"));
        assert!(!g.covers_pattern("*"));
        let all: Grant = "append".parse().unwrap();
        assert_eq!(all.scope, "*");
        assert!(all.covers("anything") && all.covers_pattern("*"));
        let exact: Grant = "admin:k8s".parse().unwrap();
        assert!(exact.covers("k8s") && !exact.covers("k8s2") && !exact.covers_pattern("k8s*"));
        for bad in ["write", "read:a*b", "read:bad name", "read:"] {
            assert!(bad.parse::<Grant>().is_err(), "{bad}");
        }
        assert_eq!("hold-release".parse::<Grant>().unwrap().to_string(), "hold-release:*");
    }

    #[test]
    fn create_revoke_and_records() {
        let mut f = TokenFile::default();
        let t = f.create("ci", &["append:prod".parse().unwrap()], 5).unwrap();
        assert!(t.starts_with(TOKEN_PREFIX) && t.len() == TOKEN_PREFIX.len() + 43);
        assert_eq!(f.tokens[0].sha256, token_digest(&t));
        assert!(f.create("ci", &["read".parse().unwrap()], 6).is_err());
        let recs = missing_records(&f, &[], 7);
        assert_eq!(recs.len(), 1);
        assert!(missing_records(&f, &recs, 7).is_empty());
        f.revoke("ci", 8).unwrap();
        let more = missing_records(&f, &recs, 9);
        assert!(matches!(&more[..], [TokenRecord::TokenRevoked { revoked_ns: 8, reason: None, .. }]));
        // The name is free again once revoked.
        f.create("ci", &["read".parse().unwrap()], 10).unwrap();
        // A recorded token missing from the file is recorded as revoked.
        let all: Vec<TokenRecord> = recs.iter().chain(&more).cloned().collect();
        let empty = TokenFile { version: 1, tokens: vec![] };
        let extra =
            TokenRecord::TokenCreated { name: "x".into(), fingerprint: "00".repeat(8), grants: vec![], created_ns: 1 };
        let mut with_extra = all.clone();
        with_extra.push(extra);
        let gone = missing_records(&empty, &with_extra, 11);
        assert!(matches!(&gone[..], [TokenRecord::TokenRevoked { reason: Some(_), revoked_ns: 11, .. }]));
        assert!(TokenFile::parse(&serde_json::to_vec(&f).unwrap()).is_ok());
    }
}
