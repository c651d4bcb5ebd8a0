//! The out-of-process signer: a separate process (`stele signer serve`) holds the log's
//! private key and answers over a Unix socket; the log holds only a [`UnixSigner`].
//!
//! Protocol (docs/keys.md): every message is a frame `u32 big-endian length ‖ body`,
//! 1 ≤ length ≤ [`MAX_FRAME`]. A request body is `op (1 byte) ‖ payload`:
//!
//! | op | payload | OK answer payload |
//! |---|---|---|
//! | `0x01` key | empty | the signer's verifier key (UTF-8 vkey) |
//! | `0x02` sign checkpoint | a C2SP tlog-checkpoint body (UTF-8) | the 64-byte Ed25519 signature |
//!
//! An answer body is `status (1 byte) ‖ payload`: `0x00` OK, `0x01` refused (payload: the
//! reason, UTF-8), `0x02` bad request (payload: the reason). A connection carries any
//! number of request/answer pairs in turn.
//!
//! The signer signs only checkpoint bodies for its own origin (the key name), with no
//! extension lines, and never a tree size smaller than the largest it signed, nor a
//! different root at that size. That largest size and its root are persisted (synced)
//! in a state file before the signature leaves the process, so a compromised server
//! cannot obtain a signed rollback or a fork of an old size, even across restarts.

use std::io::Write as _;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use stele_tlog::checkpoint::Checkpoint;
use stele_tlog::hash::Hash;
use stele_tlog::note::{NoteSigner, NoteVerifier};
use stele_tlog::signer::{CheckpointSigner, SIGNATURE_LEN, SignerError};

use crate::error::{Result, StoreError};

/// Largest frame body, bytes. A checkpoint body is under 400 bytes (origin ≤ 255); the
/// limit bounds what a peer can make the other side buffer.
pub const MAX_FRAME: usize = 64 * 1024;
/// Request: the signer's verifier key.
pub const OP_KEY: u8 = 0x01;
/// Request: sign a checkpoint body.
pub const OP_SIGN_CHECKPOINT: u8 = 0x02;
/// Answer status: done.
pub const STATUS_OK: u8 = 0x00;
/// Answer status: the signer refuses (policy: origin, rollback, fork).
pub const STATUS_REFUSED: u8 = 0x01;
/// Answer status: the request is malformed.
pub const STATUS_BAD_REQUEST: u8 = 0x02;
/// How long the client waits for a connection, a write or an answer: the sequencer
/// thread signs, so a hung signer must not hold ingestion for long.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);

/// Writes one frame.
fn write_frame(w: &mut impl std::io::Write, body: &[u8]) -> std::io::Result<()> {
    debug_assert!(!body.is_empty() && body.len() <= MAX_FRAME);
    let mut buf = Vec::with_capacity(4 + body.len());
    buf.extend_from_slice(&(body.len() as u32).to_be_bytes());
    buf.extend_from_slice(body);
    w.write_all(&buf)?;
    w.flush()
}

/// Reads one frame; `Ok(None)` on a clean end of stream before a frame starts.
fn read_frame(r: &mut impl std::io::Read) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len == 0 || len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("frame of {len} bytes (allowed 1..={MAX_FRAME})"),
        ));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    Ok(Some(body))
}

/// The client side: a [`CheckpointSigner`] whose key lives in a `stele signer serve`
/// process at a Unix socket. It connects lazily, reconnects after any failure, and
/// checks that the signer holds the `expected` key before using it.
#[derive(Debug)]
pub struct UnixSigner {
    path: PathBuf,
    expected: NoteVerifier,
    conn: Option<UnixStream>,
}

impl UnixSigner {
    /// A signer at socket `path` that must hold the key `expected` (the log's current
    /// verifier key). Does not connect yet.
    pub fn new(path: &Path, expected: NoteVerifier) -> UnixSigner {
        UnixSigner { path: path.to_path_buf(), expected, conn: None }
    }

    /// Connects (if not connected) and checks the signer's key.
    ///
    /// # Errors
    /// [`SignerError::Unavailable`] when the socket cannot be reached;
    /// [`SignerError::Protocol`] when the signer holds another key.
    pub fn check(&mut self) -> std::result::Result<(), SignerError> {
        if self.conn.is_some() {
            return Ok(());
        }
        let shown = self.path.display().to_string();
        let unavailable = |e: std::io::Error| SignerError::Unavailable(format!("{shown}: {e}"));
        let mut conn = UnixStream::connect(&self.path).map_err(unavailable)?;
        conn.set_read_timeout(Some(CLIENT_TIMEOUT)).map_err(unavailable)?;
        conn.set_write_timeout(Some(CLIENT_TIMEOUT)).map_err(unavailable)?;
        let vkey = exchange(&mut conn, &[OP_KEY], &shown)?;
        let vkey = String::from_utf8(vkey).map_err(|_| SignerError::Protocol(format!("{shown}: key is not UTF-8")))?;
        if vkey.trim() != self.expected.to_vkey() {
            return Err(SignerError::Protocol(format!(
                "the signer at {shown} holds key {}, but the log's current key is {}",
                vkey.trim(),
                self.expected.to_vkey()
            )));
        }
        self.conn = Some(conn);
        Ok(())
    }
}

/// Sends one request and reads its answer; maps statuses to errors.
fn exchange(conn: &mut UnixStream, request: &[u8], shown: &str) -> std::result::Result<Vec<u8>, SignerError> {
    let unavailable = |e: std::io::Error| SignerError::Unavailable(format!("{shown}: {e}"));
    write_frame(conn, request).map_err(unavailable)?;
    let answer = read_frame(conn)
        .map_err(unavailable)?
        .ok_or_else(|| SignerError::Unavailable(format!("{shown}: the signer closed the connection")))?;
    let (status, payload) = answer.split_first().expect("frames are non-empty");
    let text = || String::from_utf8_lossy(payload).into_owned();
    match *status {
        STATUS_OK => Ok(payload.to_vec()),
        STATUS_REFUSED => Err(SignerError::Refused(text())),
        STATUS_BAD_REQUEST => Err(SignerError::Protocol(format!("{shown}: bad request: {}", text()))),
        s => Err(SignerError::Protocol(format!("{shown}: unknown answer status {s:#04x}"))),
    }
}

impl CheckpointSigner for UnixSigner {
    fn name(&self) -> &str {
        self.expected.name()
    }

    fn key_id(&self) -> [u8; 4] {
        self.expected.key_id()
    }

    fn verifier(&self) -> NoteVerifier {
        self.expected.clone()
    }

    fn sign(&mut self, message: &[u8]) -> std::result::Result<[u8; SIGNATURE_LEN], SignerError> {
        let mut request = Vec::with_capacity(1 + message.len());
        request.push(OP_SIGN_CHECKPOINT);
        request.extend_from_slice(message);
        if request.len() > MAX_FRAME {
            return Err(SignerError::NotSignable(format!("message of {} bytes is too large", message.len())));
        }
        let shown = self.path.display().to_string();
        // One retry on a fresh connection: a signer restarted since the last checkpoint
        // leaves a dead connection behind.
        for attempt in 0..2 {
            self.check()?;
            let conn = self.conn.as_mut().expect("connected by check");
            match exchange(conn, &request, &shown) {
                Ok(sig) => {
                    return sig.try_into().map_err(|s: Vec<u8>| {
                        self.conn = None;
                        SignerError::Protocol(format!("{shown}: signature of {} bytes", s.len()))
                    });
                }
                Err(SignerError::Unavailable(e)) => {
                    self.conn = None;
                    if attempt == 1 {
                        return Err(SignerError::Unavailable(e));
                    }
                }
                Err(e) => return Err(e),
            }
        }
        unreachable!("the loop returns on its second attempt")
    }
}

/// What the signer process has signed so far: the largest tree size and its root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedHighWater {
    /// Largest tree size signed.
    pub tree_size: u64,
    /// Root hash signed at that size.
    pub root_hash: Hash,
}

/// The signer process's logic: key, persisted high-water mark, request handling.
pub struct SignerService {
    signer: NoteSigner,
    state_path: PathBuf,
    state: Mutex<Option<SignedHighWater>>,
}

impl std::fmt::Debug for SignerService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignerService").field("key", &self.signer).field("state", &self.state_path).finish()
    }
}

const STATE_MAGIC: &str = "stele-signer-state/1";

impl SignerService {
    /// A service for `signer` whose high-water mark is kept in `state_path`
    /// (text: `stele-signer-state/1`, origin, tree size, base64 root, one per line).
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when the state file is malformed or belongs to another
    /// origin; [`StoreError::Io`] when it cannot be read.
    pub fn new(signer: NoteSigner, state_path: &Path) -> Result<SignerService> {
        let shown = state_path.display().to_string();
        let state = match std::fs::read_to_string(state_path) {
            Ok(text) => {
                let lines: Vec<&str> = text.lines().collect();
                let bad = |why: &str| StoreError::Corrupt(format!("{shown}: {why}"));
                if lines.len() != 4 || lines[0] != STATE_MAGIC {
                    return Err(bad("not a stele signer state file"));
                }
                if lines[1] != signer.name() {
                    return Err(bad(&format!("state of origin {:?}, but the key is {:?}", lines[1], signer.name())));
                }
                let tree_size = lines[2].parse().map_err(|_| bad("tree size"))?;
                let root_hash = Hash::from_base64(lines[3]).ok_or_else(|| bad("root hash"))?;
                Some(SignedHighWater { tree_size, root_hash })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(StoreError::Io { op: "reading", file: shown, source: e }),
        };
        Ok(SignerService { signer, state_path: state_path.to_path_buf(), state: Mutex::new(state) })
    }

    /// The verifier key of the held key.
    pub fn verifier(&self) -> NoteVerifier {
        self.signer.verifier()
    }

    /// The persisted high-water mark.
    pub fn high_water(&self) -> Option<SignedHighWater> {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Answers one request body with one answer body (see the module docs).
    pub fn handle(&self, request: &[u8]) -> Vec<u8> {
        let answer = |status: u8, payload: &[u8]| {
            let mut v = Vec::with_capacity(1 + payload.len());
            v.push(status);
            v.extend_from_slice(payload);
            v
        };
        match request.split_first() {
            Some((&OP_KEY, [])) => answer(STATUS_OK, self.signer.verifier().to_vkey().as_bytes()),
            Some((&OP_SIGN_CHECKPOINT, body)) => match self.sign_checkpoint(body) {
                Ok(sig) => answer(STATUS_OK, &sig),
                Err((status, why)) => answer(status, why.as_bytes()),
            },
            Some((op, _)) => answer(STATUS_BAD_REQUEST, format!("unknown request {op:#04x}").as_bytes()),
            None => answer(STATUS_BAD_REQUEST, b"empty request"),
        }
    }

    fn sign_checkpoint(&self, body: &[u8]) -> std::result::Result<[u8; SIGNATURE_LEN], (u8, String)> {
        let text = std::str::from_utf8(body).map_err(|_| (STATUS_BAD_REQUEST, "body is not UTF-8".to_string()))?;
        let cp = Checkpoint::parse_body(text).map_err(|e| (STATUS_BAD_REQUEST, e.to_string()))?;
        if cp.origin != self.signer.name() {
            return Err((
                STATUS_REFUSED,
                format!("checkpoint of origin {:?}: this signer signs only {:?}", cp.origin, self.signer.name()),
            ));
        }
        if !cp.extensions.is_empty() {
            return Err((STATUS_REFUSED, "checkpoint with extension lines: this signer signs none".into()));
        }
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(hw) = state.as_ref() {
            if cp.tree_size < hw.tree_size {
                return Err((
                    STATUS_REFUSED,
                    format!(
                        "tree size {} is smaller than {}, which this signer already signed",
                        cp.tree_size, hw.tree_size
                    ),
                ));
            }
            if cp.tree_size == hw.tree_size && cp.root_hash != hw.root_hash {
                return Err((
                    STATUS_REFUSED,
                    format!("tree size {} was already signed with another root hash (a fork)", cp.tree_size),
                ));
            }
        }
        let next = SignedHighWater { tree_size: cp.tree_size, root_hash: cp.root_hash };
        if state.as_ref() != Some(&next) {
            self.persist(&next).map_err(|e| (STATUS_REFUSED, format!("cannot persist the signer state: {e}")))?;
            *state = Some(next);
        }
        Ok(self.signer.sign_bytes(text.as_bytes()))
    }

    /// Writes the state file atomically: temporary file, fsync, rename, directory fsync.
    fn persist(&self, hw: &SignedHighWater) -> std::io::Result<()> {
        let tmp = self.state_path.with_extension("tmp");
        let text = format!("{STATE_MAGIC}\n{}\n{}\n{}\n", self.signer.name(), hw.tree_size, hw.root_hash.to_base64());
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &self.state_path)?;
        let dir = self.state_path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::File::open(dir)?.sync_all()
    }

    /// Serves one connection until the peer closes it or sends a malformed frame.
    pub fn serve_connection(&self, mut conn: UnixStream) {
        loop {
            let request = match read_frame(&mut conn) {
                Ok(Some(r)) => r,
                Ok(None) => return,
                Err(e) => {
                    let _ = write_frame(&mut conn, &[&[STATUS_BAD_REQUEST][..], e.to_string().as_bytes()].concat());
                    return;
                }
            };
            if write_frame(&mut conn, &self.handle(&request)).is_err() {
                return;
            }
        }
    }

    /// Accepts connections on `listener` forever, one thread each.
    ///
    /// # Errors
    /// The accept error that stopped it.
    pub fn serve(self: Arc<Self>, listener: UnixListener) -> std::io::Result<()> {
        loop {
            let (conn, _) = listener.accept()?;
            let me = self.clone();
            std::thread::spawn(move || me.serve_connection(conn));
        }
    }
}

/// Binds the signer's socket at `path` with mode 0600: a stale socket file (left by a
/// killed signer) is removed first; any other existing file is an error.
///
/// # Errors
/// [`StoreError::InvalidArgument`] when `path` exists and is not a socket;
/// [`StoreError::Io`] when binding fails.
pub fn bind(path: &Path) -> Result<UnixListener> {
    use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
    let shown = path.display().to_string();
    if let Ok(md) = std::fs::symlink_metadata(path) {
        if !md.file_type().is_socket() {
            return Err(StoreError::InvalidArgument(format!("{shown} exists and is not a socket")));
        }
        if UnixStream::connect(path).is_ok() {
            return Err(StoreError::InvalidArgument(format!("another signer already listens on {shown}")));
        }
        std::fs::remove_file(path).map_err(StoreError::io("removing", &shown))?;
    }
    let listener = UnixListener::bind(path).map_err(StoreError::io("binding", &shown))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(StoreError::io("chmod", &shown))?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;
    use stele_tlog::checkpoint::open_checkpoint;

    fn body(origin: &str, size: u64, root: u8) -> String {
        Checkpoint { origin: origin.into(), tree_size: size, root_hash: Hash([root; 32]), extensions: vec![] }.to_body()
    }

    #[test]
    fn signs_over_a_socket_and_refuses_rollback_fork_and_other_origins() {
        let dir = tempfile::tempdir().unwrap();
        let key = NoteSigner::from_seed("log.example", &[4; 32]).unwrap();
        let state = dir.path().join("signer.state");
        let sock = dir.path().join("signer.sock");
        let service = Arc::new(SignerService::new(key.clone(), &state).unwrap());
        let listener = bind(&sock).unwrap();
        std::thread::spawn(move || service.serve(listener));
        let mut client = UnixSigner::new(&sock, key.verifier());
        let text = body("log.example", 10, 1);
        let note = stele_tlog::signer::sign_note(&text, &mut [&mut client]).unwrap();
        assert_eq!(open_checkpoint(note.as_bytes(), &key.verifier()).unwrap().checkpoint.tree_size, 10);
        // Rollback, fork at the same size and another origin are refused.
        for (bad, want) in [
            (body("log.example", 9, 1), "smaller than 10"),
            (body("log.example", 10, 2), "fork"),
            (body("other.example", 11, 1), "signs only"),
            (format!("{}ext\n", body("log.example", 12, 1)), "extension"),
        ] {
            match client.sign(bad.as_bytes()) {
                Err(SignerError::Refused(why)) => assert!(why.contains(want), "{why}"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        assert!(matches!(client.sign(b"not a checkpoint\n"), Err(SignerError::Protocol(_))));
        // The same checkpoint again and a larger one are fine.
        client.sign(text.as_bytes()).unwrap();
        client.sign(body("log.example", 11, 3).as_bytes()).unwrap();
        // The high-water mark survives a restart of the service.
        let again = SignerService::new(key.clone(), &state).unwrap();
        assert_eq!(again.high_water().unwrap().tree_size, 11);
        let refused = again.handle(&[&[OP_SIGN_CHECKPOINT][..], body("log.example", 10, 1).as_bytes()].concat());
        assert_eq!(refused[0], STATUS_REFUSED);
        // A client expecting another key refuses to use this signer.
        let other = NoteSigner::from_seed("log.example", &[5; 32]).unwrap();
        let mut wrong = UnixSigner::new(&sock, other.verifier());
        assert!(matches!(wrong.check(), Err(SignerError::Protocol(m)) if m.contains("current key")));
        // Oversized and empty frames are refused without a crash.
        let mut raw = UnixStream::connect(&sock).unwrap();
        raw.write_all(&((MAX_FRAME as u32) + 1).to_be_bytes()).unwrap();
        let answer = read_frame(&mut raw).unwrap().unwrap();
        assert_eq!(answer[0], STATUS_BAD_REQUEST);
    }

    #[test]
    fn unreachable_signer_is_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let key = NoteSigner::from_seed("log.example", &[4; 32]).unwrap();
        let mut client = UnixSigner::new(&dir.path().join("none.sock"), key.verifier());
        assert!(matches!(client.sign(body("log.example", 1, 1).as_bytes()), Err(SignerError::Unavailable(_))));
    }
}
