//! The `[limits]` table of the config file: the HTTP and OTLP/gRPC listeners' limits
//! (docs/limits.md lists every limit, its default and why).

use std::time::Duration;

use serde::Deserialize;
use stele_server::ServerConfig;

/// `[limits]`. Every key is optional; absent keys keep the server's defaults.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LimitsSection {
    /// Connections open at once on the HTTP listener, and again on the OTLP/gRPC one
    /// (default 1024).
    max_connections: Option<usize>,
    /// Connections one client (IPv4 address or IPv6 /64) may hold on each listener
    /// (default 256).
    max_connections_per_client: Option<usize>,
    /// Largest request head in bytes, request line and headers (default 65536, at
    /// least 8192).
    max_header_bytes: Option<usize>,
    /// Most events in one request (default 10000).
    max_batch_events: Option<usize>,
    /// Events accepted but not committed before new requests get 503 (default 100000).
    queue_depth: Option<usize>,
    /// Bytes of queued requests before new requests get 503 (default 512 MiB).
    queue_bytes: Option<usize>,
    /// Seconds without a byte written to a connection before it is closed (default 60).
    idle_timeout_seconds: Option<f64>,
    /// Seconds to receive a body or run a query (default 30).
    request_timeout_seconds: Option<f64>,
    /// Seconds `?wait=checkpoint` waits for a checkpoint (default 10).
    receipt_timeout_seconds: Option<f64>,
    /// Read requests per second per authenticated principal (default 0: no limit).
    read_requests_per_second: Option<u32>,
}

impl LimitsSection {
    /// Sets the limits given on `server`; the server checks their consistency at start.
    ///
    /// # Errors
    /// A duration that is negative, not finite or absurdly large.
    pub(crate) fn apply(&self, server: &mut ServerConfig) -> anyhow::Result<()> {
        let set = |v: Option<usize>, slot: &mut usize| {
            if let Some(v) = v {
                *slot = v;
            }
        };
        set(self.max_connections, &mut server.max_connections);
        set(self.max_connections_per_client, &mut server.max_connections_per_client);
        set(self.max_header_bytes, &mut server.max_header_bytes);
        set(self.max_batch_events, &mut server.max_batch_events);
        set(self.queue_depth, &mut server.queue_depth);
        set(self.queue_bytes, &mut server.queue_bytes);
        if let Some(n) = self.read_requests_per_second {
            server.read_requests_per_second = n;
        }
        let seconds = |v: Option<f64>, key: &str, slot: &mut Duration| -> anyhow::Result<()> {
            match v {
                None => Ok(()),
                Some(s) if s > 0.0 && s.is_finite() && s < 1e9 => {
                    *slot = Duration::from_secs_f64(s);
                    Ok(())
                }
                Some(_) => Err(crate::Failure::usage(format!("[limits] {key} must be a positive number of seconds"))),
            }
        };
        seconds(self.idle_timeout_seconds, "idle_timeout_seconds", &mut server.idle_timeout)?;
        seconds(self.request_timeout_seconds, "request_timeout_seconds", &mut server.request_timeout)?;
        seconds(self.receipt_timeout_seconds, "receipt_timeout_seconds", &mut server.receipt_timeout)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_reaches_the_server_config() {
        let text = "[limits]\nmax_connections = 10\nmax_connections_per_client = 3\nmax_header_bytes = 16384\n\
                    max_batch_events = 7\nqueue_depth = 70\nqueue_bytes = 1000000\nidle_timeout_seconds = 90\n\
                    request_timeout_seconds = 20\nreceipt_timeout_seconds = 5\nread_requests_per_second = 40\n";
        let c: crate::config::Config = toml::from_str(text).unwrap();
        let mut s = ServerConfig::new("/tmp/x".into(), "127.0.0.1:0".parse().unwrap());
        c.limits.as_ref().unwrap().apply(&mut s).unwrap();
        assert_eq!((s.max_connections, s.max_connections_per_client, s.max_header_bytes), (10, 3, 16384));
        assert_eq!((s.max_batch_events, s.queue_depth, s.queue_bytes), (7, 70, 1_000_000));
        assert_eq!(
            (s.idle_timeout, s.request_timeout, s.receipt_timeout),
            (Duration::from_secs(90), Duration::from_secs(20), Duration::from_secs(5))
        );
        assert_eq!(s.read_requests_per_second, 40);
        let bad: crate::config::Config = toml::from_str("[limits]\nidle_timeout_seconds = -1\n").unwrap();
        assert!(bad.limits.unwrap().apply(&mut s).is_err());
        assert!(
            toml::from_str::<crate::config::Config>("[limits]\nmax_conections = 1\n").is_err(),
            "typos are refused"
        );
    }
}
