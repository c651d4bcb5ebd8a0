//! `stele serve`'s syslog settings: the `--syslog-*` flags and the config file's
//! `[syslog]` table, merged into a [`stele_server::syslog::SyslogConfig`]. A flag
//! replaces the key of the same name.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use stele_server::syslog::{Cidr, SyslogConfig, SyslogTlsConfig};

/// The `--syslog-*` flags of `stele serve`.
#[derive(Debug, Default, Clone, clap::Args)]
pub(crate) struct SyslogArgs {
    /// Receive syslog (RFC 5424 or RFC 3164) over UDP on this address.
    #[arg(long, value_name = "ADDR")]
    syslog_udp: Option<SocketAddr>,
    /// Receive syslog over TCP (RFC 6587 octet counting or LF framing) on this address.
    #[arg(long, value_name = "ADDR")]
    syslog_tcp: Option<SocketAddr>,
    /// Receive syslog over TLS (RFC 5425) on this address; needs --syslog-tls-cert and
    /// --syslog-tls-key.
    #[arg(long, value_name = "ADDR")]
    syslog_tls: Option<SocketAddr>,
    /// PEM file with the TLS listener's certificate chain.
    #[arg(long, value_name = "PEM")]
    syslog_tls_cert: Option<PathBuf>,
    /// PEM file with the TLS listener's private key.
    #[arg(long, value_name = "PEM")]
    syslog_tls_key: Option<PathBuf>,
    /// PEM file of CAs whose client certificates the TLS listener requires (mutual TLS).
    #[arg(long, value_name = "PEM")]
    syslog_tls_client_ca: Option<PathBuf>,
    /// An address block (CIDR) allowed to send over plain UDP and TCP. Repeatable;
    /// replaces the config file's list. Default: loopback only.
    #[arg(long = "syslog-allow", value_name = "CIDR")]
    syslog_allow: Vec<Cidr>,
    /// Stream the syslog messages are appended to (default `syslog`).
    #[arg(long, value_name = "NAME")]
    syslog_stream: Option<String>,
}

/// The `[syslog]` table of the config file. Every key is optional.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SyslogSection {
    /// UDP listen address.
    udp: Option<SocketAddr>,
    /// TCP listen address.
    tcp: Option<SocketAddr>,
    /// TLS listen address.
    tls: Option<SocketAddr>,
    /// TLS certificate chain (PEM).
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    tls_key: Option<PathBuf>,
    /// CAs of required client certificates (PEM).
    tls_client_ca: Option<PathBuf>,
    /// CIDR blocks allowed on plain UDP and TCP (default loopback only).
    allow: Option<Vec<String>>,
    /// Stream name (default `syslog`).
    stream: Option<String>,
    /// Largest message in bytes (default 65536).
    max_message_bytes: Option<usize>,
    /// Seconds of silence before a TCP/TLS connection is closed (default 300).
    idle_timeout_seconds: Option<u64>,
    /// Seconds a started message has to complete (default 30).
    message_timeout_seconds: Option<u64>,
    /// TCP and TLS connections at once (default 1024).
    max_connections: Option<usize>,
    /// Connections per client (IPv4 address or IPv6 /64) on each of TCP and TLS
    /// (default 256).
    max_connections_per_client: Option<usize>,
}

/// The syslog configuration from the flags over the `[syslog]` table.
pub(crate) fn syslog_config(section: Option<&SyslogSection>, args: &SyslogArgs) -> anyhow::Result<SyslogConfig> {
    let s = section.cloned().unwrap_or_default();
    let mut c = SyslogConfig { udp: args.syslog_udp.or(s.udp), tcp: args.syslog_tcp.or(s.tcp), ..Default::default() };
    let tls_cert = args.syslog_tls_cert.clone().or(s.tls_cert);
    let tls_key = args.syslog_tls_key.clone().or(s.tls_key);
    if let Some(listen) = args.syslog_tls.or(s.tls) {
        let (Some(cert_pem), Some(key_pem)) = (tls_cert, tls_key) else {
            return Err(crate::Failure::usage(
                "syslog over TLS needs a certificate and a key (--syslog-tls-cert, --syslog-tls-key)",
            ));
        };
        let client_ca_pem = args.syslog_tls_client_ca.clone().or(s.tls_client_ca);
        c.tls = Some(SyslogTlsConfig { listen, cert_pem, key_pem, client_ca_pem });
    }
    if !args.syslog_allow.is_empty() {
        c.allow = args.syslog_allow.clone();
    } else if let Some(list) = s.allow {
        c.allow = list
            .iter()
            .map(|t| t.parse::<Cidr>())
            .collect::<Result<_, _>>()
            .map_err(|e| crate::Failure::usage(format!("[syslog] allow: {e}")))?;
    }
    if let Some(name) = args.syslog_stream.clone().or(s.stream) {
        c.stream = name;
    }
    if let Some(n) = s.max_message_bytes {
        c.max_message_bytes = n;
    }
    if let Some(t) = s.idle_timeout_seconds {
        c.idle_timeout = Duration::from_secs(t);
    }
    if let Some(t) = s.message_timeout_seconds {
        c.message_timeout = Duration::from_secs(t);
    }
    if let Some(n) = s.max_connections {
        c.max_connections = n;
    }
    if let Some(n) = s.max_connections_per_client {
        c.max_connections_per_client = n;
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_replace_the_table() {
        let s: SyslogSection = toml::from_str(
            "tcp = \"127.0.0.1:6514\"\nallow = [\"10.0.0.0/8\"]\nstream = \"sys\"\nidle_timeout_seconds = 5\n",
        )
        .unwrap();
        let c = syslog_config(Some(&s), &SyslogArgs::default()).unwrap();
        assert_eq!(c.tcp, Some("127.0.0.1:6514".parse().unwrap()));
        assert_eq!((c.stream.as_str(), c.idle_timeout), ("sys", Duration::from_secs(5)));
        assert!(c.allow[0].contains("10.1.2.3".parse().unwrap()));
        assert!(!c.allow[0].contains("127.0.0.1".parse().unwrap()));
        let args = SyslogArgs { syslog_allow: vec!["192.0.2.0/24".parse().unwrap()], ..Default::default() };
        let c = syslog_config(Some(&s), &args).unwrap();
        assert_eq!(c.allow, vec!["192.0.2.0/24".parse().unwrap()]);
        assert!(toml::from_str::<SyslogSection>("tpc = \"127.0.0.1:1\"\n").is_err());
        assert!(
            syslog_config(None, &SyslogArgs { syslog_tls: Some("127.0.0.1:1".parse().unwrap()), ..Default::default() })
                .is_err()
        );
        let bad: SyslogSection = toml::from_str("allow = [\"10.0.0.0/33\"]\n").unwrap();
        assert!(syslog_config(Some(&bad), &SyslogArgs::default()).is_err());
    }
}
