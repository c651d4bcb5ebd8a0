//! `stele serve`'s access-control and TLS settings: the config file's `[auth]`,
//! `[[auth.client_principal]]` and `[tls]` tables, merged into
//! [`stele_server::auth::AuthConfig`] and [`stele_server::tls::TlsConfig`].

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use stele_server::auth::{AuthConfig, CertPrincipal, Grant};
use stele_server::tls::TlsConfig;

/// The `[auth]` table. Every key is optional.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuthSection {
    /// Plain HTTP on a non-loopback address (default false).
    allow_plain_http: Option<bool>,
    /// No principal on a non-loopback address (default false).
    allow_anonymous: Option<bool>,
    /// Checkpoint, tiles and proofs without credentials (default true).
    public_proofs: Option<bool>,
    /// `/metrics` without credentials (default false).
    public_metrics: Option<bool>,
    /// Events per second per principal (default 0: no limit).
    append_events_per_second: Option<u32>,
    /// Seconds per access record interval (default 60).
    access_interval_seconds: Option<f64>,
    /// Failed authentications per source per minute before 429 (default 20).
    max_auth_failures_per_minute: Option<u32>,
    /// Seconds between checks of the token and TLS files (default 10).
    reload_interval_seconds: Option<f64>,
    /// Principals authenticated by client certificate.
    client_principal: Option<Vec<PrincipalEntry>>,
    /// Actions that need a second principal's approval: `hold-release`, `erase`,
    /// `governance-bypass`, `key-rotate`, `key-revoke`.
    require_approval: Option<Vec<stele_server::auth::Role>>,
    /// Seconds a request waits for its approval before it expires (default 86400).
    approval_expiry_seconds: Option<f64>,
}

/// One `[[auth.client_principal]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PrincipalEntry {
    /// Name in records and errors.
    name: String,
    /// Certificate subject CN or SAN (DNS, e-mail, URI) to match exactly.
    subject: String,
    /// Grants, `ROLE[:SCOPE]`.
    roles: Vec<String>,
}

/// The `[tls]` table: TLS of the HTTP and OTLP/gRPC listeners.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TlsSection {
    /// Certificate chain (PEM), leaf first.
    cert: PathBuf,
    /// Private key (PEM).
    key: PathBuf,
    /// CAs of client certificates (PEM): mutual TLS.
    client_ca: Option<PathBuf>,
    /// With a client CA, refuse clients without a certificate (default true).
    client_cert_required: Option<bool>,
}

fn seconds(v: f64, key: &str) -> anyhow::Result<Duration> {
    if v > 0.0 && v.is_finite() && v < 1e9 {
        Ok(Duration::from_secs_f64(v))
    } else {
        Err(crate::Failure::usage(format!("[auth] {key} must be a positive number of seconds")))
    }
}

/// The server's access-control and TLS settings from the config file.
pub(crate) fn settings(
    auth: Option<&AuthSection>,
    tls: Option<&TlsSection>,
) -> anyhow::Result<(AuthConfig, Option<TlsConfig>)> {
    let mut a = AuthConfig::default();
    if let Some(s) = auth {
        a.allow_plain_http = s.allow_plain_http.unwrap_or(a.allow_plain_http);
        a.allow_anonymous = s.allow_anonymous.unwrap_or(a.allow_anonymous);
        a.public_proofs = s.public_proofs.unwrap_or(a.public_proofs);
        a.public_metrics = s.public_metrics.unwrap_or(a.public_metrics);
        a.append_events_per_second = s.append_events_per_second.unwrap_or(0);
        if let Some(v) = s.access_interval_seconds {
            a.access_interval = seconds(v, "access_interval_seconds")?;
        }
        if let Some(n) = s.max_auth_failures_per_minute {
            a.max_auth_failures_per_minute = n;
        }
        if let Some(v) = s.reload_interval_seconds {
            a.reload_interval = seconds(v, "reload_interval_seconds")?;
        }
        a.require_approval = s.require_approval.clone().unwrap_or_default();
        if let Some(v) = s.approval_expiry_seconds {
            a.approval_expiry = seconds(v, "approval_expiry_seconds")?;
        }
        for p in s.client_principal.iter().flatten() {
            let grants = p
                .roles
                .iter()
                .map(|r| r.parse::<Grant>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| crate::Failure::usage(format!("[[auth.client_principal]] {:?}: {e}", p.name)))?;
            a.cert_principals.push(CertPrincipal { name: p.name.clone(), subject: p.subject.clone(), grants });
        }
    }
    let tls = tls.map(|t| TlsConfig {
        cert_pem: t.cert.clone(),
        key_pem: t.key.clone(),
        client_ca_pem: t.client_ca.clone(),
        client_cert_required: t.client_cert_required.unwrap_or(true),
    });
    Ok((a, tls))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_and_tls_tables() {
        let text = "[auth]\nallow_plain_http = true\nappend_events_per_second = 50\n[[auth.client_principal]]\nname = \"fluent\"\nsubject = \"fluent.example\"\nroles = [\"append:k8s*\"]\n[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\nclient_ca = \"ca.pem\"\n";
        let c: crate::config::Config = toml::from_str(text).unwrap();
        let (a, t) = settings(c.auth.as_ref(), c.tls.as_ref()).unwrap();
        assert!(a.allow_plain_http && !a.allow_anonymous && a.public_proofs);
        assert_eq!(a.append_events_per_second, 50);
        assert_eq!(a.cert_principals[0].grants[0].scope, "k8s*");
        let t = t.unwrap();
        assert!(t.client_cert_required && t.client_ca_pem.is_some());
        let bad: crate::config::Config =
            toml::from_str("[[auth.client_principal]]\nname = \"x\"\nsubject = \"y\"\nroles = [\"write\"]\n").unwrap();
        assert!(settings(bad.auth.as_ref(), None).is_err());
        assert!(toml::from_str::<crate::config::Config>("[tls]\ncert = \"c\"\n").is_err(), "key is required");
    }

    #[test]
    fn approval_settings() {
        use stele_server::auth::Role;
        let text = "[auth]\nrequire_approval = [\"hold-release\", \"erase\"]\napproval_expiry_seconds = 3600\n";
        let c: crate::config::Config = toml::from_str(text).unwrap();
        let (a, _) = settings(c.auth.as_ref(), None).unwrap();
        assert_eq!(a.require_approval, vec![Role::HoldRelease, Role::Erase]);
        assert_eq!(a.approval_expiry, Duration::from_secs(3600));
        assert_eq!(AuthConfig::default().approval_expiry, Duration::from_secs(86_400));
        assert!(toml::from_str::<crate::config::Config>("[auth]\nrequire_approval = [\"release\"]\n").is_err());
        let text = "[auth]\nrequire_approval = [\"governance-bypass\", \"key-rotate\", \"key-revoke\"]\n";
        let c: crate::config::Config = toml::from_str(text).unwrap();
        let (a, _) = settings(c.auth.as_ref(), None).unwrap();
        assert_eq!(a.require_approval, vec![Role::GovernanceBypass, Role::KeyRotate, Role::KeyRevoke]);
    }
}
