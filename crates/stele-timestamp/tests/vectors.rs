//! Tokens captured from `openssl ts` (../shared/data/captured/rfc3161, see its README):
//! whole-second and millisecond genTime, ESSCertIDv2, a P-256 TSA under a test CA.

use std::path::PathBuf;
use std::process::Command;

use stele_timestamp::{EssVersion, TimestampRequest, TokenError, TsaCertificate, verify_token};

/// The captured RFC 3161 folder; with `STELE_REQUIRE_PEERS=1` a missing one fails.
fn captured() -> Option<PathBuf> {
    let p = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data/captured/rfc3161"));
    if p.join("token-whole-seconds.der").is_file() {
        return Some(p);
    }
    if std::env::var("STELE_REQUIRE_PEERS").is_ok_and(|v| v == "1") {
        panic!("STELE_REQUIRE_PEERS=1 but {} is missing", p.display());
    }
    eprintln!("skipping: {} not found", p.display());
    None
}

fn read(dir: &std::path::Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// genTime as `openssl ts -reply -text` prints it ("Nov 29 10:42:20.474 2026 GMT"),
/// when openssl is installed: an independent decoding of the same token.
fn openssl_time(resp: &std::path::Path) -> Option<String> {
    let out = Command::new("openssl").args(["ts", "-reply", "-text", "-in"]).arg(resp).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines().find_map(|l| l.strip_prefix("Time stamp: ")).map(str::to_string)
}

/// Renders a verified genTime the way openssl does.
fn openssl_style(t: jiff::Timestamp) -> String {
    let ns = t.subsec_nanosecond();
    let frac = if ns == 0 { String::new() } else { format!(".{:03}", ns / 1_000_000) };
    format!("{}{frac} {} GMT", t.strftime("%b %e %H:%M:%S"), t.strftime("%Y")).replace("  ", " ")
}

#[test]
fn captured_tokens_verify_and_report_gen_time() {
    let Some(dir) = captured() else { return };
    let data = read(&dir, "data.txt");
    let ca = TsaCertificate::from_pem(&read(&dir, "ca.crt")).expect("ca.crt");
    let tsa = TsaCertificate::from_pem(&read(&dir, "tsa.crt")).expect("tsa.crt");
    for (token, resp, fractional) in [
        ("token-whole-seconds.der", "resp-whole-seconds.tsr", false),
        ("token-fractional-seconds.der", "resp-fractional-seconds.tsr", true),
    ] {
        let der = read(&dir, token);
        // Chained to the CA, and to the TSA certificate itself.
        let v = verify_token(&der, &data, &ca).unwrap_or_else(|e| panic!("{token}: {e}"));
        assert_eq!(v.ess, EssVersion::V2, "{token}");
        assert_eq!(v.policy, "1.3.6.1.4.1.55555.1.1");
        assert!(v.chained_to.as_deref().is_some_and(|s| s.contains("Audit Test Root CA")), "{token}: {v:?}");
        assert!(v.signer.contains("Audit Test TSA"), "{token}: {v:?}");
        let v2 = verify_token(&der, &data, &tsa).unwrap_or_else(|e| panic!("{token}: {e}"));
        assert!(v2.chained_to.as_deref().is_some_and(|s| s.contains("Audit Test TSA")));
        assert_eq!(v.gen_time.subsec_nanosecond() != 0, fractional, "{token}: {}", v.gen_time);
        if let Some(t) = openssl_time(&dir.join(resp)) {
            assert_eq!(openssl_style(v.gen_time), t, "{token}");
        }
        // The response's token is the token openssl extracted, byte for byte.
        let nonce = openssl_nonce(&dir.join(resp));
        if let Some(nonce) = nonce {
            let req = TimestampRequest::with_nonce(&data, nonce);
            assert_eq!(req.token_from_response(&read(&dir, resp)).expect(resp), der, "{resp}");
            let other = TimestampRequest::with_nonce(&data, nonce + 1);
            assert!(other.token_from_response(&read(&dir, resp)).is_err(), "a wrong nonce is refused");
        }
    }
}

fn openssl_nonce(resp: &std::path::Path) -> Option<u64> {
    let out = Command::new("openssl").args(["ts", "-reply", "-text", "-in"]).arg(resp).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let hex = text.lines().find_map(|l| l.strip_prefix("Nonce: 0x"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

#[test]
fn request_matches_openssl_query() {
    let Some(dir) = captured() else { return };
    let data = read(&dir, "data.txt");
    let tsq = read(&dir, "req.tsq");
    // openssl ts -query -sha256 -cert: version 1, SHA-256 imprint, 8-byte nonce, certReq.
    let nonce = u64::from_be_bytes(tsq[58..66].try_into().unwrap());
    let ours = TimestampRequest::with_nonce(&data, nonce);
    assert_eq!(ours.der(), tsq.as_slice());
}

#[test]
fn wrong_message_wrong_certificate_and_tampering_are_named() {
    let Some(dir) = captured() else { return };
    let data = read(&dir, "data.txt");
    let ca = TsaCertificate::from_pem(&read(&dir, "ca.crt")).expect("ca.crt");
    let der = read(&dir, "token-fractional-seconds.der");

    let e = verify_token(&der, b"another checkpoint\n", &ca).unwrap_err();
    assert!(matches!(e, TokenError::ImprintMismatch { .. }), "{e}");
    assert!(e.to_string().starts_with("message imprint"), "{e}");

    // The TSA certificate is not a CA: a token signed by... itself only chains to it.
    // A configured certificate that is neither the signer nor its issuer is refused.
    let tsa = TsaCertificate::from_pem(&read(&dir, "tsa.crt")).expect("tsa.crt");
    let unrelated = leaf_of_other_ca(&dir);
    if let Some(other) = unrelated {
        let e = verify_token(&der, &data, &other).unwrap_err();
        assert!(matches!(e, TokenError::Chain(_)), "{e}");
    }
    assert!(verify_token(&der, &data, &tsa).is_ok());

    // The signature is the token's last bytes (the SignerInfo ends the SignedData):
    // flipping one fails the signature check.
    let mut bad = der.clone();
    let n = bad.len();
    bad[n - 5] ^= 0x01;
    let e = verify_token(&bad, &data, &ca).unwrap_err();
    assert!(matches!(e, TokenError::Signature(_) | TokenError::Decode(_)), "{e}");

    // A byte of the TSTInfo's serial number: the signed message digest no longer matches.
    let tst_at = find(&der, &[0x02, 0x01, 0x02]).expect("serial number 2 in the TSTInfo");
    let mut bad = der.clone();
    bad[tst_at + 2] = 0x03;
    let e = verify_token(&bad, &data, &ca).unwrap_err();
    assert_eq!(e, TokenError::SignedAttributes("message digest is not that of the TSTInfo"), "{e}");
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A self-signed certificate made by openssl in a temp dir (None without openssl).
fn leaf_of_other_ca(_dir: &std::path::Path) -> Option<Vec<TsaCertificate>> {
    let tmp = tempfile::tempdir().ok()?;
    let key = tmp.path().join("k.pem");
    let crt = tmp.path().join("c.pem");
    let ok = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj"])
        .arg("/CN=Other CA")
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .args(["-days", "2"])
        .output()
        .ok()?
        .status
        .success();
    if !ok {
        return None;
    }
    Some(TsaCertificate::from_pem(&std::fs::read(crt).ok()?).expect("openssl certificate"))
}
