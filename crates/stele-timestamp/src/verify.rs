//! Verifying an RFC 3161 time-stamp token over a checkpoint body.

use bcder::Mode;
use bcder::decode::Constructed;
use cryptographic_message_syntax::SignedData;
use cryptographic_message_syntax::asn1::rfc3161::{OID_CONTENT_TYPE_TST_INFO, TstInfo};
use der::Decode as _;
use x509_cert::ext::pkix::{BasicConstraints, ExtendedKeyUsage};
use x509_certificate::{CapturedX509Certificate, DigestAlgorithm};

use crate::ess;

/// id-kp-timeStamping (RFC 3161 §2.3).
const OID_KP_TIME_STAMPING: &str = "1.3.6.1.5.5.7.3.8";
/// id-sha256 (RFC 5754 §2.2).
const OID_SHA256: &[u8] = &[96, 134, 72, 1, 101, 3, 4, 2, 1];
/// Longest certificate chain followed from the signer to a configured certificate.
const MAX_CHAIN: usize = 8;

/// Why a token does not verify. Each variant names the check that failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenError {
    /// The bytes are not a CMS `SignedData` holding a TSTInfo (RFC 3161 §2.4.2).
    #[error("decoding: {0}")]
    Decode(String),
    /// The message imprint is not SHA-256.
    #[error("message imprint: hash algorithm {0} is not SHA-256")]
    ImprintAlgorithm(String),
    /// The token stamps another message.
    #[error("message imprint: the token stamps {found}, not SHA-256 of this checkpoint body ({expected})")]
    ImprintMismatch {
        /// Hex of the imprint in the token.
        found: String,
        /// Hex of SHA-256 of the checkpoint body.
        expected: String,
    },
    /// Not exactly one SignerInfo (RFC 3161 §2.4.2: the TSA signs with one key).
    #[error("signature: the token has {0} signers, not one")]
    Signers(usize),
    /// The signer's certificate is neither in the token nor among those configured.
    #[error("signature: the signer's certificate is neither in the token nor configured")]
    SignerCertificate,
    /// The signed attributes do not commit to this TSTInfo or content type.
    #[error("signature: signed attributes: {0}")]
    SignedAttributes(&'static str),
    /// The signature does not verify with the signer's key.
    #[error("signature: does not verify with the signer certificate's key ({0})")]
    Signature(String),
    /// No usable ESS signing-certificate attribute (RFC 3161 §2.4.2, RFC 5816).
    #[error("ESSCertID: {0}")]
    EssCertId(String),
    /// The signer certificate is not a timestamping certificate (RFC 3161 §2.3).
    #[error("signer certificate: {0}")]
    SignerCertificateUse(String),
    /// genTime is outside a certificate's validity.
    #[error("signer certificate: genTime {gen_time} is outside the validity of {subject}")]
    Validity {
        /// The token's genTime.
        gen_time: String,
        /// Subject of the certificate.
        subject: String,
    },
    /// The signer certificate does not chain to a configured TSA certificate.
    #[error("chain: {0}")]
    Chain(String),
}

/// Which ESS attribute bound the signature to the signer certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EssVersion {
    /// `SigningCertificate` / `ESSCertID` (RFC 2634 §5.4; SHA-1 certificate hash).
    V1,
    /// `SigningCertificateV2` / `ESSCertIDv2` (RFC 5035, RFC 5816).
    V2,
}

/// What a verified token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedToken {
    /// The TSA's genTime (RFC 3161 §2.4.2), to the precision the token carries.
    pub gen_time: jiff::Timestamp,
    /// The token's serial number, lower-case hex without leading zero bytes.
    pub serial: String,
    /// The TSA policy OID, dotted.
    pub policy: String,
    /// Subject of the certificate that signed the token (RFC 4514-like string).
    pub signer: String,
    /// Which ESS attribute identified the signer certificate.
    pub ess: EssVersion,
    /// Subject of the configured certificate the signer chains to; `None` when no
    /// certificate was configured (the signature is then checked only against the
    /// certificate the token carries, which proves nothing about who signed it).
    pub chained_to: Option<String>,
}

/// A certificate a verifier trusts to sign tokens: the TSA's own certificate or a CA
/// above it.
#[derive(Clone, Debug)]
pub struct TsaCertificate {
    cert: CapturedX509Certificate,
}

impl TsaCertificate {
    /// Every certificate of a PEM file (`-----BEGIN CERTIFICATE-----` blocks).
    ///
    /// # Errors
    /// A message when the text holds no certificate or one does not parse.
    pub fn from_pem(pem: &[u8]) -> Result<Vec<TsaCertificate>, String> {
        let certs = CapturedX509Certificate::from_pem_multiple(pem).map_err(|e| e.to_string())?;
        if certs.is_empty() {
            return Err("no CERTIFICATE block".into());
        }
        Ok(certs.into_iter().map(|cert| TsaCertificate { cert }).collect())
    }

    /// One DER certificate.
    ///
    /// # Errors
    /// A message when the bytes are not a certificate.
    pub fn from_der(der: &[u8]) -> Result<TsaCertificate, String> {
        CapturedX509Certificate::from_der(der.to_vec()).map(|cert| TsaCertificate { cert }).map_err(|e| e.to_string())
    }

    /// The certificate's subject.
    pub fn subject(&self) -> String {
        subject(&self.cert)
    }
}

fn subject(c: &CapturedX509Certificate) -> String {
    c.subject_name().user_friendly_str().unwrap_or_else(|_| "(unprintable subject)".into())
}

/// Decodes the TSTInfo of a token without verifying anything.
pub(crate) fn decode_tst_info(token: &[u8]) -> Result<TstInfo, TokenError> {
    let sd = SignedData::parse_ber(token).map_err(|e| TokenError::Decode(format!("CMS SignedData: {e}")))?;
    tst_info_of(&sd)
}

fn tst_info_of(sd: &SignedData) -> Result<TstInfo, TokenError> {
    let content = sd.signed_content().ok_or_else(|| TokenError::Decode("no encapsulated TSTInfo".into()))?;
    Constructed::decode(content, Mode::Der, TstInfo::take_from).map_err(|e| TokenError::Decode(format!("TSTInfo: {e}")))
}

/// Verifies an RFC 3161 token (DER `ContentInfo` of a `SignedData`) over `message`
/// (stele stamps the checkpoint body, see [`crate::checkpoint_body`]) against the
/// certificates a verifier trusts. Checks, in order, each failure naming its check:
/// 1. the token decodes and its content is a TSTInfo (RFC 3161 §2.4.2);
/// 2. message imprint: SHA-256, equal to SHA-256 of `message`;
/// 3. exactly one signer; its certificate (found by issuer and serial in the token's
///    certificates or in `trusted`); the signed attributes' content type is
///    id-ct-TSTInfo and their message digest is that of the TSTInfo (RFC 5652 §5.4);
///    the signature verifies with the certificate's key;
/// 4. an ESS `SigningCertificateV2` (RFC 5816) or `SigningCertificate` (v1) attribute
///    whose first certificate hash is the signer certificate's;
/// 5. the signer certificate has the timeStamping extended key usage, critical and
///    alone (RFC 3161 §2.3), and genTime falls within its validity;
/// 6. when `trusted` is not empty: the signer certificate is one of them, or is signed
///    by a CA certificate in the token (each checked in turn, at most 8 deep) that
///    ends at one of them, every certificate valid at genTime.
///
/// # Errors
/// The first [`TokenError`] found.
pub fn verify_token(token: &[u8], message: &[u8], trusted: &[TsaCertificate]) -> Result<VerifiedToken, TokenError> {
    if token.len() > crate::MAX_TOKEN_BYTES {
        return Err(TokenError::Decode(format!("{} bytes, more than {}", token.len(), crate::MAX_TOKEN_BYTES)));
    }
    let sd = SignedData::parse_ber(token).map_err(|e| TokenError::Decode(format!("CMS SignedData: {e}")))?;
    let tst = tst_info_of(&sd)?;

    // 2. The imprint.
    let alg = tst.message_imprint.hash_algorithm.algorithm.as_ref();
    if alg != OID_SHA256 {
        return Err(TokenError::ImprintAlgorithm(tst.message_imprint.hash_algorithm.algorithm.to_string()));
    }
    let found = tst.message_imprint.hashed_message.to_bytes();
    let expected = crate::sha256(message);
    if found.as_ref() != expected {
        return Err(TokenError::ImprintMismatch { found: hex(&found), expected: hex(&expected) });
    }
    let gen_time = chrono::DateTime::<chrono::Utc>::from(tst.gen_time.clone());
    let gen_ns = gen_time.timestamp_nanos_opt().ok_or_else(|| TokenError::Decode("genTime out of range".into()))?;
    let gen_time = jiff::Timestamp::from_nanosecond(i128::from(gen_ns))
        .map_err(|e| TokenError::Decode(format!("genTime: {e}")))?;

    // 3. The signature.
    let signers: Vec<_> = sd.signers().collect();
    if signers.len() != 1 {
        return Err(TokenError::Signers(signers.len()));
    }
    let signer = signers[0];
    let (issuer, serial) = signer.certificate_issuer_and_serial().ok_or(TokenError::SignerCertificate)?;
    // The certificates as the token holds them, byte for byte: ESSCertID hashes the
    // original encoding, which a decode and re-encode need not reproduce.
    let in_token = ess::token_certificates(token)
        .map_err(|e| TokenError::Decode(format!("certificates: {e}")))?
        .into_iter()
        .map(CapturedX509Certificate::from_der)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TokenError::Decode(format!("certificate: {e}")))?;
    let in_token: Vec<&CapturedX509Certificate> = in_token.iter().collect();
    let signer_cert = in_token
        .iter()
        .copied()
        .chain(trusted.iter().map(|t| &t.cert))
        .find(|c| c.issuer_name() == issuer && c.serial_number_asn1() == serial)
        .ok_or(TokenError::SignerCertificate)?;
    let attrs = signer.signed_attributes().ok_or(TokenError::SignedAttributes("absent"))?;
    if attrs.content_type() != &OID_CONTENT_TYPE_TST_INFO {
        return Err(TokenError::SignedAttributes("content type is not id-ct-TSTInfo"));
    }
    signer
        .verify_message_digest_with_signed_data(&sd)
        .map_err(|_| TokenError::SignedAttributes("message digest is not that of the TSTInfo"))?;
    let signed = signer.signed_content_with_signed_data(&sd);
    let verifier =
        signer.signature_verifier(std::iter::once(signer_cert)).map_err(|e| TokenError::Signature(e.to_string()))?;
    verifier.verify(&signed, signer.signature()).map_err(|_| TokenError::Signature("bad signature".into()))?;

    // 4. ESSCertID / ESSCertIDv2.
    let ess = ess_check(attrs.attributes(), signer_cert)?;

    // 5. A timestamping certificate, valid at genTime.
    let signer_x509 = x509_cert::Certificate::from_der(signer_cert.constructed_data())
        .map_err(|e| TokenError::SignerCertificateUse(format!("does not parse: {e}")))?;
    match signer_x509.tbs_certificate().get_extension::<ExtendedKeyUsage>() {
        Ok(Some((true, eku))) if eku.0.len() == 1 && eku.0[0].to_string() == OID_KP_TIME_STAMPING => {}
        Ok(Some((critical, eku))) => {
            let usages: Vec<String> = eku.0.iter().map(ToString::to_string).collect();
            return Err(TokenError::SignerCertificateUse(format!(
                "extended key usage must be timeStamping only and critical; found [{}]{}",
                usages.join(", "),
                if critical { "" } else { ", not critical" }
            )));
        }
        Ok(None) => {
            return Err(TokenError::SignerCertificateUse("no extended key usage (timeStamping is required)".into()));
        }
        Err(e) => return Err(TokenError::SignerCertificateUse(format!("extended key usage: {e}"))),
    }
    let valid_at = |c: &CapturedX509Certificate| {
        if c.time_constraints_valid(Some(gen_time_chrono(gen_ns))) {
            Ok(())
        } else {
            Err(TokenError::Validity { gen_time: gen_time.to_string(), subject: subject(c) })
        }
    };
    valid_at(signer_cert)?;

    // 6. The chain to a configured certificate.
    let chained_to = if trusted.is_empty() {
        None
    } else {
        let mut current = signer_cert;
        let mut found = None;
        for _ in 0..MAX_CHAIN {
            if let Some(t) = trusted.iter().find(|t| t.cert.constructed_data() == current.constructed_data()) {
                found = Some(subject(&t.cert));
                break;
            }
            if let Some(t) = trusted.iter().find(|t| {
                t.cert.subject_name() == current.issuer_name() && current.verify_signed_by_certificate(&t.cert).is_ok()
            }) {
                valid_at(&t.cert)?;
                found = Some(subject(&t.cert));
                break;
            }
            // One step up through a CA certificate the token carries.
            let Some(up) = in_token.iter().copied().find(|c| {
                c.subject_name() == current.issuer_name()
                    && c.constructed_data() != current.constructed_data()
                    && is_ca(c)
                    && current.verify_signed_by_certificate(c).is_ok()
            }) else {
                break;
            };
            valid_at(up)?;
            current = up;
        }
        match found {
            Some(s) => Some(s),
            None => {
                let names: Vec<String> = trusted.iter().map(TsaCertificate::subject).collect();
                return Err(TokenError::Chain(format!(
                    "the signer certificate ({}, issued by {}) does not chain to a configured TSA certificate ({})",
                    subject(signer_cert),
                    signer_cert.issuer_name().user_friendly_str().unwrap_or_default(),
                    names.join("; ")
                )));
            }
        }
    };

    Ok(VerifiedToken {
        gen_time,
        serial: {
            let b = tst.serial_number.as_slice();
            let skip = b.iter().take_while(|x| **x == 0).count().min(b.len().saturating_sub(1));
            hex(&b[skip..])
        },
        policy: tst.policy.to_string(),
        signer: subject(signer_cert),
        ess,
        chained_to,
    })
}

fn gen_time_chrono(ns: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_nanos(ns)
}

fn is_ca(c: &CapturedX509Certificate) -> bool {
    x509_cert::Certificate::from_der(c.constructed_data())
        .ok()
        .is_some_and(|x| matches!(x.tbs_certificate().get_extension::<BasicConstraints>(), Ok(Some((_, bc))) if bc.ca))
}

/// Finds the ESS attribute (v2 preferred) and checks its first certificate hash is the
/// signer certificate's.
fn ess_check(
    attrs: &cryptographic_message_syntax::asn1::rfc5652::SignedAttributes,
    signer_cert: &CapturedX509Certificate,
) -> Result<EssVersion, TokenError> {
    let value_of = |oid: &str| -> Option<Vec<u8>> {
        attrs.iter().find(|a| a.typ.to_string() == oid).and_then(|a| a.values.first()).map(|v| v.as_slice().to_vec())
    };
    let (version, cert_ref) = if let Some(v) = value_of(ess::OID_SIGNING_CERTIFICATE_V2) {
        (EssVersion::V2, ess::decode_v2(&v).map_err(|e| TokenError::EssCertId(format!("SigningCertificateV2: {e}")))?)
    } else if let Some(v) = value_of(ess::OID_SIGNING_CERTIFICATE) {
        (EssVersion::V1, ess::decode_v1(&v).map_err(|e| TokenError::EssCertId(format!("SigningCertificate: {e}")))?)
    } else {
        return Err(TokenError::EssCertId("neither SigningCertificate nor SigningCertificateV2 is signed".into()));
    };
    let alg = match cert_ref.hash_oid.as_str() {
        "1.3.14.3.2.26" => DigestAlgorithm::Sha1,
        "2.16.840.1.101.3.4.2.1" => DigestAlgorithm::Sha256,
        "2.16.840.1.101.3.4.2.2" => DigestAlgorithm::Sha384,
        "2.16.840.1.101.3.4.2.3" => DigestAlgorithm::Sha512,
        other => return Err(TokenError::EssCertId(format!("unsupported certificate hash algorithm {other}"))),
    };
    let mut h = alg.digester();
    h.update(signer_cert.constructed_data());
    if h.finish().as_ref() != cert_ref.hash.as_slice() {
        return Err(TokenError::EssCertId(format!(
            "the certificate hash ({:?}) is not that of the signer certificate {}",
            alg,
            subject(signer_cert)
        )));
    }
    Ok(version)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
