//! The witness over HTTP on 127.0.0.1:0 against a log built in memory.

use std::sync::Arc;
use std::time::Duration;

use stele_tlog::checkpoint::Checkpoint;
use stele_tlog::hash::leaf_hash;
use stele_tlog::merkle::{MemoryTree, consistency_proof, root_hash};
use stele_tlog::note::{Note, NoteSigner};
use stele_witness::client::{AddResponse, add_checkpoint};
use stele_witness::{AddCheckpointRequest, Witness, load_or_create_key};

const ORIGIN: &str = "log.example/test";

struct Log {
    tree: MemoryTree,
    signer: NoteSigner,
}

impl Log {
    fn new(seed: u8) -> Log {
        Log { tree: MemoryTree::new(), signer: NoteSigner::from_seed(ORIGIN, &[seed; 32]).unwrap() }
    }
    fn grow(&mut self, n: u64) {
        for _ in 0..n {
            let i = self.tree.size();
            self.tree.push(leaf_hash(format!("entry {i}").as_bytes()));
        }
    }
    fn checkpoint(&self) -> String {
        let size = self.tree.size();
        let c = Checkpoint {
            origin: ORIGIN.into(),
            tree_size: size,
            root_hash: root_hash(&self.tree, size).unwrap(),
            extensions: vec![],
        };
        c.sign(&self.signer).unwrap()
    }
    fn request(&self, old: u64) -> AddCheckpointRequest {
        AddCheckpointRequest {
            old_size: old,
            proof: if old == 0 { vec![] } else { consistency_proof(&self.tree, old, self.tree.size()).unwrap() },
            checkpoint: self.checkpoint().into_bytes(),
        }
    }
}

fn start(witness: Witness) -> (String, tokio::runtime::Runtime, tokio::sync::oneshot::Sender<()>) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    rt.spawn(stele_witness::serve(listener, Arc::new(witness), async move {
        let _ = rx.await;
    }));
    (url, rt, tx)
}

const T: Duration = Duration::from_secs(10);

#[test]
fn add_checkpoint_protocol_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("witness.key");
    let state = dir.path().join("state");
    let cosigner = load_or_create_key(&key_path, Some("witness.example/w1")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&key_path).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let wv = cosigner.verifier();
    let mut log = Log::new(1);
    let witness = Witness::open(cosigner, vec![log.signer.verifier()], &state).unwrap();
    let (url, rt, stop) = start(witness);

    // First use: old 0, empty proof.
    log.grow(5);
    let AddResponse::Cosigned(lines) = add_checkpoint(&url, &log.request(0), T).unwrap() else { panic!() };
    let note = Note::parse(format!("{}{lines}", log.checkpoint()).as_bytes()).unwrap();
    wv.verify_note(&note).unwrap();

    // Growth with a valid proof.
    log.grow(12);
    let AddResponse::Cosigned(lines) = add_checkpoint(&url, &log.request(5), T).unwrap() else { panic!() };
    let cosigned = format!("{}{lines}", log.checkpoint());
    wv.verify_note(&Note::parse(cosigned.as_bytes()).unwrap()).unwrap();
    // The log's own signature still verifies beside the cosignature.
    Note::parse(cosigned.as_bytes()).unwrap().verify(&[log.signer.verifier()]).unwrap();

    // Bad proof: 422.
    log.grow(3);
    let mut bad = log.request(17);
    bad.proof[0].0[0] ^= 1;
    assert!(matches!(add_checkpoint(&url, &bad, T).unwrap(), AddResponse::Refused(422, _)));

    // Stale old size: 409 with the current size.
    assert_eq!(add_checkpoint(&url, &log.request(5), T).unwrap(), AddResponse::Conflict(17));
    // Rollback to a smaller tree: 409 as well.
    let mut small = Log::new(1);
    small.grow(4);
    assert_eq!(add_checkpoint(&url, &small.request(0), T).unwrap(), AddResponse::Conflict(17));
    // Same size, different root (a fork): 409.
    let mut fork = Log::new(1);
    fork.grow(16);
    fork.tree.push(leaf_hash(b"forked"));
    let fork_req = AddCheckpointRequest { old_size: 17, proof: vec![], checkpoint: fork.checkpoint().into_bytes() };
    assert_eq!(add_checkpoint(&url, &fork_req, T).unwrap(), AddResponse::Conflict(17));

    // Wrong log key: 403. Unknown origin: 404.
    let mut impostor = Log::new(2);
    impostor.grow(20);
    assert!(matches!(add_checkpoint(&url, &impostor.request(17), T).unwrap(), AddResponse::Refused(403, _)));
    let other = NoteSigner::from_seed("other.example/log", &[3; 32]).unwrap();
    let c = Checkpoint {
        origin: "other.example/log".into(),
        tree_size: 0,
        root_hash: root_hash(&MemoryTree::new(), 0).unwrap(),
        extensions: vec![],
    };
    let req = AddCheckpointRequest { old_size: 0, proof: vec![], checkpoint: c.sign(&other).unwrap().into_bytes() };
    assert!(matches!(add_checkpoint(&url, &req, T).unwrap(), AddResponse::Refused(404, _)));

    // Malformed: 400 (old larger than the checkpoint; garbage).
    let mut r = log.request(17);
    r.old_size = 1000;
    assert!(matches!(add_checkpoint(&url, &r, T).unwrap(), AddResponse::Refused(400, _)));
    let mut r = log.request(0);
    r.checkpoint = b"not a note".to_vec();
    assert!(matches!(add_checkpoint(&url, &r, T).unwrap(), AddResponse::Refused(400, _)));

    let _ = stop.send(());
    drop(rt);

    // Restart: the state (size 17) survives, and the key is reused.
    let cosigner = load_or_create_key(&key_path, None).unwrap();
    assert_eq!(cosigner.verifier(), wv);
    let witness = Witness::open(cosigner, vec![log.signer.verifier()], &state).unwrap();
    assert_eq!(witness.latest(ORIGIN).unwrap().checkpoint.tree_size, 17);
    let (url, _rt, _stop) = start(witness);
    assert_eq!(add_checkpoint(&url, &log.request(0), T).unwrap(), AddResponse::Conflict(17));
    let AddResponse::Cosigned(lines) = add_checkpoint(&url, &log.request(17), T).unwrap() else { panic!() };
    wv.verify_note(&Note::parse(format!("{}{lines}", log.checkpoint()).as_bytes()).unwrap()).unwrap();
}

#[test]
fn key_file_needs_a_name_and_private_mode() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("k");
    assert!(load_or_create_key(&p, None).is_err());
    let c = load_or_create_key(&p, Some("w.example")).unwrap();
    assert!(load_or_create_key(&p, Some("other.example")).is_err());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(load_or_create_key(&p, None).is_err());
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    assert_eq!(load_or_create_key(&p, None).unwrap().verifier(), c.verifier());
}
