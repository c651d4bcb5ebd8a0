//! The ESS signing-certificate attributes that bind a token's signature to the TSA's
//! certificate (RFC 3161 §2.4.2 requires one): `SigningCertificate` with `ESSCertID`
//! (RFC 2634 §5.4, SHA-1 certificate hash) and `SigningCertificateV2` with
//! `ESSCertIDv2` (RFC 5035 §3, RFC 5816: any hash, SHA-256 by default); and the few
//! pieces of a token and a response that must be kept byte for byte as encoded (the
//! certificates ESSCertID hashes, the token inside a `TimeStampResp`), read with `der`.

use der::asn1::{ObjectIdentifier, OctetString};
use der::{Any, Decode as _, Encode as _, Sequence, Tagged as _};

/// id-aa-signingCertificate (RFC 2634 §5.4).
pub(crate) const OID_SIGNING_CERTIFICATE: &str = "1.2.840.113549.1.9.16.2.12";
/// id-aa-signingCertificateV2 (RFC 5035 §3).
pub(crate) const OID_SIGNING_CERTIFICATE_V2: &str = "1.2.840.113549.1.9.16.2.47";

/// `ESSCertID ::= SEQUENCE { certHash Hash, issuerSerial IssuerSerial OPTIONAL }`.
#[derive(Sequence)]
struct EssCertId {
    cert_hash: OctetString,
    #[asn1(optional = "true")]
    _issuer_serial: Option<Any>,
}

/// `SigningCertificate ::= SEQUENCE { certs SEQUENCE OF ESSCertID, policies … OPTIONAL }`.
#[derive(Sequence)]
struct SigningCertificate {
    certs: Vec<EssCertId>,
    #[asn1(optional = "true")]
    _policies: Option<Any>,
}

/// `AlgorithmIdentifier ::= SEQUENCE { algorithm OID, parameters ANY OPTIONAL }`.
#[derive(Sequence)]
struct AlgorithmIdentifier {
    algorithm: ObjectIdentifier,
    #[asn1(optional = "true")]
    _parameters: Option<Any>,
}

/// `ESSCertIDv2 ::= SEQUENCE { hashAlgorithm AlgorithmIdentifier DEFAULT sha256,
/// certHash Hash, issuerSerial IssuerSerial OPTIONAL }`.
#[derive(Sequence)]
struct EssCertIdV2 {
    #[asn1(optional = "true")]
    hash_algorithm: Option<AlgorithmIdentifier>,
    cert_hash: OctetString,
    #[asn1(optional = "true")]
    _issuer_serial: Option<Any>,
}

/// `SigningCertificateV2 ::= SEQUENCE { certs SEQUENCE OF ESSCertIDv2, policies … OPTIONAL }`.
#[derive(Sequence)]
struct SigningCertificateV2 {
    certs: Vec<EssCertIdV2>,
    #[asn1(optional = "true")]
    _policies: Option<Any>,
}

/// The first certificate reference of a signing-certificate attribute: the hash
/// algorithm (dotted OID) and the hash of the signer's DER certificate. RFC 2634 §5.4
/// and RFC 5035 §3: the first reference is the signing certificate.
pub(crate) struct CertRef {
    pub(crate) hash_oid: String,
    pub(crate) hash: Vec<u8>,
}

/// Decodes the DER value of a `SigningCertificate` (v1) attribute.
pub(crate) fn decode_v1(value: &[u8]) -> Result<CertRef, String> {
    let sc = SigningCertificate::from_der(value).map_err(|e| e.to_string())?;
    let first = sc.certs.into_iter().next().ok_or("no ESSCertID")?;
    Ok(CertRef { hash_oid: "1.3.14.3.2.26".into(), hash: first.cert_hash.into_bytes().into_vec() })
}

/// Decodes the DER value of a `SigningCertificateV2` attribute.
pub(crate) fn decode_v2(value: &[u8]) -> Result<CertRef, String> {
    let sc = SigningCertificateV2::from_der(value).map_err(|e| e.to_string())?;
    let first = sc.certs.into_iter().next().ok_or("no ESSCertIDv2")?;
    let hash_oid = first.hash_algorithm.map_or_else(|| "2.16.840.1.101.3.4.2.1".into(), |a| a.algorithm.to_string());
    Ok(CertRef { hash_oid, hash: first.cert_hash.into_bytes().into_vec() })
}

/// `ContentInfo ::= SEQUENCE { contentType OID, content [0] EXPLICIT ANY }` (RFC 5652 §3).
#[derive(Sequence)]
struct ContentInfo {
    _content_type: ObjectIdentifier,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT")]
    content: SignedDataCerts,
}

/// The fields of `SignedData` (RFC 5652 §5.1) up to its certificates, kept undecoded.
#[derive(Sequence)]
struct SignedDataCerts {
    _version: Any,
    _digest_algorithms: Any,
    _encap_content_info: Any,
    #[asn1(context_specific = "0", tag_mode = "IMPLICIT", optional = "true")]
    certificates: Option<Vec<Any>>,
    #[asn1(context_specific = "1", tag_mode = "IMPLICIT", optional = "true")]
    _crls: Option<Vec<Any>>,
    _signer_infos: Any,
}

/// The DER of each certificate a token (DER `ContentInfo` of a `SignedData`) carries,
/// in order, as encoded in the token.
pub(crate) fn token_certificates(token: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let ci = ContentInfo::from_der(token).map_err(|e| e.to_string())?;
    ci.content
        .certificates
        .unwrap_or_default()
        .iter()
        .filter(|c| c.tag() == der::Tag::Sequence)
        .map(|c| c.to_der().map_err(|e| e.to_string()))
        .collect()
}

/// `TimeStampResp ::= SEQUENCE { status PKIStatusInfo, timeStampToken TimeStampToken
/// OPTIONAL }` (RFC 3161 §2.4.2), the token kept as encoded.
#[derive(Sequence)]
struct TimeStampRespRaw {
    _status: Any,
    #[asn1(optional = "true")]
    token: Option<Any>,
}

/// The token of a DER `TimeStampResp`, byte for byte (`None` when absent).
pub(crate) fn response_token(response: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let r = TimeStampRespRaw::from_der(response).map_err(|e| e.to_string())?;
    r.token.map(|t| t.to_der().map_err(|e| e.to_string())).transpose()
}
