//! The log's witness client against a real `stele-witness` on 127.0.0.1:0.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use stele_server::witness_client::{CosignedCheckpoint, WitnessConfig, Witnesses, spawn};
use stele_store::backend::MemoryBackend;
use stele_store::log::{Log, LogOptions, NewEntry, init_backend};
use stele_tlog::cosignature::{Cosigner, verify_quorum};
use stele_tlog::note::{Note, NoteSigner};
use stele_witness::Witness;

const ORIGIN: &str = "log.example/witnessed";

fn start_witness(
    seed: u8,
    log_key: &NoteSigner,
    state: &std::path::Path,
) -> (String, Cosigner, tokio::runtime::Runtime) {
    let cosigner = Cosigner::from_seed(&format!("w{seed}.example"), &[seed; 32]).unwrap();
    let witness = Witness::open(cosigner.clone(), vec![log_key.verifier()], state).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    rt.spawn(stele_witness::serve(listener, Arc::new(witness), std::future::pending()));
    (url, cosigner, rt)
}

fn append(log: &mut Log, n: usize) {
    for i in 0..n {
        let p = format!("{{\"n\":{i}}}");
        log.append(&[NewEntry { stream: "default", format: 1, payload: p.as_bytes() }]).unwrap();
    }
    log.sign_checkpoint().unwrap();
}

#[test]
fn checkpoints_are_cosigned_and_follow_growth() {
    let dir = tempfile::tempdir().unwrap();
    let signer = NoteSigner::from_seed(ORIGIN, &[3; 32]).unwrap();
    let (url1, w1, _rt1) = start_witness(1, &signer, &dir.path().join("w1"));
    let (url2, w2, _rt2) = start_witness(2, &signer, &dir.path().join("w2"));
    let b = MemoryBackend::new();
    init_backend(&(Arc::new(b.clone()) as Arc<dyn stele_store::backend::Backend>), ORIGIN).unwrap();
    let mut log = Log::open_backend(Arc::new(b), ORIGIN, signer.clone(), LogOptions::default()).unwrap();
    let reader = log.reader();
    let configs = vec![
        WitnessConfig { vkey: w1.verifier().to_vkey(), url: url1 },
        WitnessConfig { vkey: w2.verifier().to_vkey(), url: url2 },
    ];
    let mut witnesses = Witnesses::new(&configs, Duration::from_secs(10)).unwrap();
    let verifiers = [w1.verifier(), w2.verifier()];

    append(&mut log, 5);
    let (c, errors) = witnesses.cosign(&reader, &reader.newest_checkpoint().unwrap().note).unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!((c.tree_size, c.cosigners), (log.tree_size(), 2));
    let note = Note::parse(c.note.as_bytes()).unwrap();
    note.verify(&[signer.verifier()]).unwrap();
    assert_eq!(verify_quorum(&note, &verifiers, 2).unwrap().len(), 2);

    // Growth: the proof comes from the log's tiles, from the size each witness holds.
    append(&mut log, 40);
    let (c, errors) = witnesses.cosign(&reader, &reader.newest_checkpoint().unwrap().note).unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!((c.tree_size, c.cosigners), (log.tree_size(), 2));

    // A client that forgot the witness sizes learns them from 409 and still succeeds.
    append(&mut log, 3);
    let mut fresh = Witnesses::new(&configs, Duration::from_secs(10)).unwrap();
    let (c, errors) = fresh.cosign(&reader, &reader.newest_checkpoint().unwrap().note).unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!((c.tree_size, c.cosigners), (log.tree_size(), 2));

    // An unreachable witness is reported, the other still cosigns.
    let dead =
        vec![WitnessConfig { vkey: w1.verifier().to_vkey(), url: "http://127.0.0.1:1".into() }, configs[1].clone()];
    append(&mut log, 1);
    let mut partial = Witnesses::new(&dead, Duration::from_secs(2)).unwrap();
    let (c, errors) = partial.cosign(&reader, &reader.newest_checkpoint().unwrap().note).unwrap();
    assert_eq!((c.cosigners, errors.len()), (1, 1));

    // The background task stores the cosigned note for each new checkpoint.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let (tx, rx) = tokio::sync::watch::channel(log.tree_size());
    let out: Arc<RwLock<Option<CosignedCheckpoint>>> = Arc::default();
    let task = {
        let _guard = rt.enter();
        spawn(witnesses, 2, reader.clone(), rx, out.clone())
    };
    append(&mut log, 2);
    tx.send_replace(log.tree_size());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if out.read().unwrap().as_ref().is_some_and(|c| c.tree_size == log.tree_size()) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no cosigned checkpoint for the newest size");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(tx);
    rt.block_on(task).unwrap();
    assert!(
        Witnesses::new(
            &[WitnessConfig { vkey: signer.verifier().to_vkey(), url: "http://x".into() }],
            Duration::from_secs(1)
        )
        .is_err()
    );
}

fn http(addr: std::net::SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let status = raw[9..12].parse().unwrap();
    let body = raw.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

#[test]
fn server_serves_the_cosigned_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let log_vkey = stele_store::log::init(&dir.path().join("data"), ORIGIN).unwrap();
    let state = dir.path().join("witness");
    let cosigner = Cosigner::from_seed("w.example", &[9; 32]).unwrap();
    let witness = Witness::open(cosigner.clone(), vec![log_vkey.clone()], &state).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    rt.spawn(stele_witness::serve(listener, Arc::new(witness), std::future::pending()));

    let data = dir.path().join("data");
    let mut config = stele_server::ServerConfig::new(data.clone(), "127.0.0.1:0".parse().unwrap());
    config.checkpoint_interval = Duration::from_millis(50);
    config.witnesses = vec![WitnessConfig { vkey: cosigner.verifier().to_vkey(), url }];
    config.witnesses_required = 1;
    let log = Log::open(&data, config.log_options.clone()).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = rt
        .block_on(stele_server::start(config, log, async {
            let _ = stopped.await;
        }))
        .unwrap();
    let addr = server.local_addr();
    for round in 0..2 {
        let (status, _) = http(addr, "POST", "/v1/events", &format!("{{\"actor\":\"a\",\"n\":{round}}}"));
        assert_eq!(status, 200);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let (status, note) = http(addr, "GET", "/checkpoint", "");
            if status == 200 {
                let n = Note::parse(note.as_bytes()).unwrap();
                n.verify(std::slice::from_ref(&log_vkey)).unwrap();
                let size = stele_tlog::checkpoint::Checkpoint::parse_body(&n.text).unwrap().tree_size;
                let (_, health) = http(addr, "GET", "/healthz", "");
                let grown = health.contains(&format!("\"tree_size\":{size}"));
                if grown && cosigner.verifier().verify_note(&n).is_ok() {
                    break;
                }
            }
            assert!(std::time::Instant::now() < deadline, "no cosigned checkpoint in round {round}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let _ = stop.send(());
    rt.block_on(server.wait()).unwrap();
}
