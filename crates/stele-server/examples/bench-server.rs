//! Serves a data directory for benchmarks, without the CLI:
//! `cargo run --release -p stele-server --example bench-server -- DIR [127.0.0.1:7000]`.
//! DIR is initialized (origin `bench.example/log`) if it is not a data directory yet.
//! Stops on Ctrl-C or SIGTERM, after committing what is queued and signing a final
//! checkpoint.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().ok_or("usage: bench-server DIR [ADDR]")?);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:7000".into()).parse()?;
    if !dir.join("meta.json").exists() {
        stele_store::log::init(&dir, "bench.example/log")?;
    }
    let config = stele_server::ServerConfig::new(dir.clone(), listen);
    let log = stele_store::Log::open(&dir, config.log_options.clone())?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let server = stele_server::start(config, log, async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        })
        .await?;
        println!("listening on {}", server.local_addr());
        server.wait().await
    })?;
    Ok(())
}
