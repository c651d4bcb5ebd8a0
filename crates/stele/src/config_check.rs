//! `stele check-config`: every check of the config file that needs no file, network
//! or data directory, so an operator learns about a mistake before `serve` (and the
//! fuzz target `config` runs it on arbitrary text).

use crate::config::Config;

/// Checks every section the way `serve`, `import` and the other commands will use it
/// (retention policies, witnesses, ingest windows, access control, syslog, erasure
/// rules, timestamp authorities); returns one line per section that is set.
///
/// # Errors
/// The first problem found, as `serve` would report it (exit code 2).
pub(crate) fn check(config: &Config) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    let options = config.log_options();
    out.push(format!(
        "log: entries up to {} bytes, segment window {} s",
        options.max_entry_bytes,
        options.segment_window_ns / 1_000_000_000
    ));
    let policies = config.retention_policies()?;
    if !policies.is_empty() {
        out.push(format!("retention: {} policies", policies.len()));
    }
    let (witnesses, required) = config.witnesses(&[], None)?;
    if !witnesses.is_empty() {
        out.push(format!("witnesses: {} configured, {required} required", witnesses.len()));
    }
    let mut server = stele_server::ServerConfig::new("unused".into(), ([127, 0, 0, 1], 0).into());
    config.apply_ingest(&mut server)?;
    if let Some(l) = &config.limits {
        l.apply(&mut server)?;
        out.push("limits: set".to_string());
    }
    if !server.expected_sources.is_empty() {
        out.push(format!("sources: {} expected", server.expected_sources.len()));
    }
    let (auth, tls) = crate::serve_auth::settings(config.auth.as_ref(), config.tls.as_ref())?;
    out.push(format!(
        "access: {} certificate principals, TLS {}",
        auth.cert_principals.len(),
        if tls.is_some() { "on" } else { "off" }
    ));
    let syslog = crate::serve_syslog::syslog_config(config.syslog.as_ref(), &Default::default())?;
    if syslog.enabled() {
        out.push("syslog: listeners configured".to_string());
    }
    if let Some(e) = &config.erasure {
        for r in &e.rule {
            r.validate().map_err(|err| crate::Failure::usage(format!("[[erasure.rule]] {:?}: {err}", r.stream)))?;
        }
        out.push(format!("erasure: {} rules", e.rule.len()));
        // Rules seal JSON events only: name the non-JSON ingest streams a rule covers,
        // whose entries are stored in clear.
        for r in &e.rule {
            let mut clear = vec![("OTLP", &server.otlp_default_stream)];
            if syslog.enabled() {
                clear.push(("syslog", &syslog.stream));
            }
            for (what, stream) in clear {
                if r.covers_stream(stream) {
                    out.push(format!(
                        "erasure: {what} entries of stream {stream:?} are stored in clear (rules seal JSON events only)"
                    ));
                }
            }
        }
    }
    for tsa in config.timestamp_authority.iter().flatten() {
        if !(tsa.url.starts_with("http://") || tsa.url.starts_with("https://")) {
            return Err(crate::Failure::usage(format!("[[timestamp_authority]] url {:?} is not http(s)", tsa.url)));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_text(text: &str) -> Result<Vec<String>, String> {
        let c: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        check(&c).map_err(|e| e.to_string())
    }

    #[test]
    fn a_sound_config_passes_and_each_mistake_is_named() {
        let ok = check_text(
            "[[retention]]\nstream = \"k8s\"\nmin_days = 365\n[[source]]\nstream = \"k8s\"\nmax_silence_seconds = 60\n",
        )
        .unwrap();
        assert!(ok.iter().any(|l| l == "retention: 1 policies"), "{ok:?}");
        for (text, says) in [
            ("[[retention]]\nstream = \"a\"\nmin_days = -1\n", "min_days"),
            ("[[retention]]\nstream = \"a\"\nmin_days = 1\n[[retention]]\nstream = \"a\"\nmin_days = 2\n", "twice"),
            ("witnesses_required = 2\n", "witnesses_required"),
            ("[[source]]\nstream = \"a\"\n", "max_silence_seconds"),
            ("[auth]\naccess_interval_seconds = 0\n", "access_interval_seconds"),
            ("[[auth.client_principal]]\nname = \"x\"\nsubject = \"y\"\nroles = [\"write\"]\n", "unknown role"),
            ("[syslog]\ntls = \"127.0.0.1:6514\"\n", "certificate"),
            ("[[timestamp_authority]]\nurl = \"ftp://tsa\"\ncertificate = \"c.pem\"\n", "not http"),
            ("[erasure]\nmaster_key = \"k\"\n[[erasure.rule]]\nstream = \"a\"\nsubject = \"\"\n", "subject"),
            (
                "[erasure]\nmaster_key = \"k\"\n[[erasure.rule]]\nstream = \"a\"\nsubject = \"/u\"\nsubject_default = \" x\"\n",
                "subject_default",
            ),
        ] {
            let e = check_text(text).expect_err(text);
            assert!(e.contains(says), "{text:?}: {e}");
        }
    }

    #[test]
    fn whole_event_rules_pass_and_non_json_streams_they_cover_are_named() {
        let ok = check_text(
            "[erasure]\nmaster_key = \"k\"\n[[erasure.rule]]\nstream = \"*\"\nsubject = \"/user\"\n\
             fields = [\"\"]\nsubject_default = \"stele:unattributed\"\n",
        )
        .unwrap();
        assert!(ok.iter().any(|l| l == "erasure: 1 rules"), "{ok:?}");
        assert!(ok.iter().any(|l| l.contains("OTLP entries") && l.contains("stored in clear")), "{ok:?}");
    }
}
