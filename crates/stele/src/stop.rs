//! When a long-running command (`serve`, `witness`) stops: at SIGINT (Ctrl-C) or
//! SIGTERM (what systemd, Kubernetes and `kill` send), both handled the same way, so a
//! service manager's stop is a clean shutdown (everything queued committed, a last
//! checkpoint, the `server_stop` record).

/// Completes at the first SIGINT or SIGTERM. If the SIGTERM handler cannot be
/// installed, waits for SIGINT only.
pub(crate) async fn requested() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
