//! TLS termination for HTTPS (ALB) and TLS (NLB) listeners: certificates loaded from PEM files named by ARN-like ids,
//! chosen per connection by SNI (exact name, then wildcard, then the listener's default), and
//! named security policies mapped to rustls protocol versions and cipher suites.
//!
//! A certificate ARN `arn:aws:acm:REGION:ACCOUNT:certificate/NAME` names, in the certificate
//! directory, either `NAME.pem` holding the chain and the private key, or `NAME.crt` (chain) with
//! `NAME.key`. rustls implements TLS 1.2 and 1.3 with AEAD suites only, so a policy's TLS 1.0/1.1
//! versions and CBC/RSA-key-exchange suites are not offered (documented in docs/alb.md).

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::ring::cipher_suite as cs;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, SupportedCipherSuite, SupportedProtocolVersion};
use weir_model::tls_policies::SslPolicy;

/// Why a certificate or TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The ARN does not name a certificate file.
    #[error("certificate '{0}' not found: it must look like arn:aws:acm:REGION:ACCOUNT:certificate/NAME")]
    BadArn(String),
    /// No file for the certificate.
    #[error("certificate '{arn}' not found: no {name}.pem or {name}.crt + {name}.key in {dir}")]
    NotFound {
        /// The ARN.
        arn: String,
        /// The file stem.
        name: String,
        /// The certificate directory.
        dir: String,
    },
    /// The files exist but do not hold a usable chain and key.
    #[error("certificate '{arn}': {reason}")]
    Invalid {
        /// The ARN.
        arn: String,
        /// What is wrong.
        reason: String,
    },
    /// The policy leaves nothing rustls can offer.
    #[error("security policy '{0}' has no protocol version or cipher suite Weir supports")]
    Policy(String),
}

/// A certificate ready to serve: its ARN, key, and the DNS names it covers (lower case).
#[derive(Debug)]
pub struct LoadedCertificate {
    /// The ARN it was loaded by.
    pub arn: String,
    /// Chain and signing key.
    pub key: Arc<CertifiedKey>,
    /// Subject alternative DNS names, `*.example.com` for wildcards.
    pub names: Vec<String>,
    /// The leaf's serial number, lower-case hex (NLB logs name the certificate by it).
    pub serial: String,
}

/// Finds certificate files by ARN in one directory.
#[derive(Debug, Clone)]
pub struct CertificateStore {
    dir: PathBuf,
}

impl CertificateStore {
    /// A store reading `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory certificates are read from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file stem an ARN names.
    pub fn name_of(arn: &str) -> Result<&str, TlsError> {
        let name = arn
            .strip_prefix("arn:")
            .and_then(|r| r.split_once(":certificate/"))
            .map(|(_, n)| n)
            .filter(|n| {
                !n.is_empty()
                    && n.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                    && !n.starts_with('.')
            })
            .ok_or_else(|| TlsError::BadArn(arn.to_string()))?;
        Ok(name)
    }

    /// The path a new certificate named `name` is written to (`NAME.pem`).
    pub fn path_for(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.pem"))
    }

    /// Loads the chain and key `arn` names.
    pub fn load(&self, arn: &str) -> Result<Arc<LoadedCertificate>, TlsError> {
        let name = Self::name_of(arn)?;
        let pem = self.dir.join(format!("{name}.pem"));
        let (chain_pem, key_pem) = if pem.is_file() {
            let all = read(arn, &pem)?;
            (all.clone(), all)
        } else {
            let crt = self.dir.join(format!("{name}.crt"));
            let key = self.dir.join(format!("{name}.key"));
            if !crt.is_file() || !key.is_file() {
                return Err(TlsError::NotFound {
                    arn: arn.into(),
                    name: name.into(),
                    dir: self.dir.display().to_string(),
                });
            }
            (read(arn, &crt)?, read(arn, &key)?)
        };
        parse(arn, &chain_pem, &key_pem)
    }
}

fn read(arn: &str, p: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(p).map_err(|e| TlsError::Invalid {
        arn: arn.into(),
        reason: format!("reading {}: {e}", p.display()),
    })
}

/// Builds a certificate from PEM text: the chain (leaf first) and a private key.
pub fn parse(
    arn: &str,
    chain_pem: &[u8],
    key_pem: &[u8],
) -> Result<Arc<LoadedCertificate>, TlsError> {
    let invalid = |reason: String| TlsError::Invalid { arn: arn.into(), reason };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| invalid(format!("bad certificate PEM: {e}")))?;
    if chain.is_empty() {
        return Err(invalid("no CERTIFICATE block".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| invalid(format!("no usable PRIVATE KEY block: {e}")))?;
    let provider = provider();
    let key = CertifiedKey::from_der(chain, key, &provider)
        .map_err(|e| invalid(format!("chain and key do not fit: {e}")))?;
    let leaf = key.end_entity_cert().map_err(|e| invalid(e.to_string()))?;
    let ee = webpki::EndEntityCert::try_from(leaf)
        .map_err(|e| invalid(format!("unreadable leaf certificate: {e}")))?;
    let names = ee.valid_dns_names().map(|n| n.to_ascii_lowercase()).collect();
    let serial = serial_number(leaf.as_ref()).map_or_else(String::new, |b| {
        b.iter().skip_while(|x| **x == 0).map(|x| format!("{x:02x}")).collect()
    });
    Ok(Arc::new(LoadedCertificate { arn: arn.into(), key: Arc::new(key), names, serial }))
}

/// One DER element at the start of `der`: (tag, contents, rest).
fn der_element(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |a, b| (a << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The serialNumber of an X.509 certificate (DER): Certificate → tbsCertificate → [0] version
/// (optional) → INTEGER.
fn serial_number(cert: &[u8]) -> Option<&[u8]> {
    let (0x30, certificate, _) = der_element(cert)? else { return None };
    let (0x30, tbs, _) = der_element(certificate)? else { return None };
    let (tag, body, rest) = der_element(tbs)?;
    let (tag, body) = if tag == 0xa0 {
        let (t, b, _) = der_element(rest)?;
        (t, b)
    } else {
        (tag, body)
    };
    (tag == 0x02).then_some(body)
}

/// Picks the certificate for a client's SNI name: one naming it exactly, then one whose
/// wildcard covers it (one label), then the default (first).
pub fn select<'a>(
    certs: &'a [Arc<LoadedCertificate>],
    sni: Option<&str>,
) -> Option<&'a Arc<LoadedCertificate>> {
    if let Some(name) = sni.map(|s| s.trim_end_matches('.').to_ascii_lowercase()) {
        if let Some(c) = certs.iter().find(|c| c.names.contains(&name)) {
            return Some(c);
        }
        if let Some((_, parent)) = name.split_once('.') {
            let wild = format!("*.{parent}");
            if let Some(c) = certs.iter().find(|c| c.names.contains(&wild)) {
                return Some(c);
            }
        }
    }
    certs.first()
}

#[derive(Debug)]
struct SniResolver {
    certs: Vec<Arc<LoadedCertificate>>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        select(&self.certs, hello.server_name()).map(|c| c.key.clone())
    }
}

fn provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// AWS (OpenSSL) cipher names and the rustls suites they are.
const SUITES: &[(&str, SupportedCipherSuite)] = &[
    ("TLS_AES_128_GCM_SHA256", cs::TLS13_AES_128_GCM_SHA256),
    ("TLS_AES_256_GCM_SHA384", cs::TLS13_AES_256_GCM_SHA384),
    ("TLS_CHACHA20_POLY1305_SHA256", cs::TLS13_CHACHA20_POLY1305_SHA256),
    ("ECDHE-ECDSA-AES128-GCM-SHA256", cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256),
    ("ECDHE-RSA-AES128-GCM-SHA256", cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256),
    ("ECDHE-ECDSA-AES256-GCM-SHA384", cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384),
    ("ECDHE-RSA-AES256-GCM-SHA384", cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384),
    ("ECDHE-ECDSA-CHACHA20-POLY1305", cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256),
    ("ECDHE-RSA-CHACHA20-POLY1305", cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256),
];

/// The AWS (OpenSSL) name of a negotiated suite, as ALB logs and forwards it.
pub fn cipher_name(s: SupportedCipherSuite) -> &'static str {
    SUITES.iter().find(|(_, x)| x.suite() == s.suite()).map_or("-", |(n, _)| n)
}

/// AWS's spelling of a protocol version (`TLSv1.2`).
pub fn version_name(v: rustls::ProtocolVersion) -> &'static str {
    match v {
        rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3",
        rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2",
        _ => "-",
    }
}

/// The versions and suites of `policy` that rustls implements, in the policy's order.
pub fn policy_parts(
    policy: &SslPolicy,
) -> (Vec<&'static SupportedProtocolVersion>, Vec<SupportedCipherSuite>) {
    let mut versions = Vec::new();
    if policy.protocols.contains(&"TLSv1.3") {
        versions.push(&rustls::version::TLS13);
    }
    if policy.protocols.contains(&"TLSv1.2") {
        versions.push(&rustls::version::TLS12);
    }
    let suites = weir_model::tls_policies::ciphers(policy)
        .into_iter()
        .filter_map(|name| SUITES.iter().find(|(n, _)| *n == name).map(|(_, s)| *s))
        .collect();
    (versions, suites)
}

/// The rustls configuration of an HTTPS listener: its certificates (default first), its
/// policy's versions and suites in server preference order, and ALPN `h2` (when HTTP/2 is
/// enabled) then `http/1.1`.
pub fn server_config(
    policy: &SslPolicy,
    certs: Vec<Arc<LoadedCertificate>>,
    http2: bool,
) -> Result<Arc<ServerConfig>, TlsError> {
    let (versions, suites) = policy_parts(policy);
    let has13 = suites.iter().any(|s| s.version() == &rustls::version::TLS13);
    let has12 = suites.iter().any(|s| s.version() == &rustls::version::TLS12);
    let versions: Vec<_> = versions
        .into_iter()
        .filter(|v| if **v == rustls::version::TLS13 { has13 } else { has12 })
        .collect();
    if versions.is_empty() {
        return Err(TlsError::Policy(policy.name.into()));
    }
    let provider = CryptoProvider { cipher_suites: suites, ..provider() };
    let mut cfg = ServerConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&versions)
        .map_err(|_| TlsError::Policy(policy.name.into()))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SniResolver { certs }));
    cfg.ignore_client_order = true;
    cfg.alpn_protocols =
        if http2 { vec![b"h2".to_vec(), b"http/1.1".to_vec()] } else { vec![b"http/1.1".to_vec()] };
    Ok(Arc::new(cfg))
}

/// OpenSSL's name of a key-exchange group, as NLB logs write it (`x25519`, `secp256r1`).
pub fn group_name(g: rustls::NamedGroup) -> String {
    match g {
        rustls::NamedGroup::X25519 => "x25519".into(),
        rustls::NamedGroup::secp256r1 => "secp256r1".into(),
        rustls::NamedGroup::secp384r1 => "secp384r1".into(),
        rustls::NamedGroup::secp521r1 => "secp521r1".into(),
        other => format!("{other:?}").to_ascii_lowercase(),
    }
}

/// What a TLS connection negotiated, for headers and logs.
#[derive(Debug, Clone)]
pub struct TlsInfo {
    /// `TLSv1.2` / `TLSv1.3`.
    pub version: &'static str,
    /// AWS (OpenSSL) cipher name.
    pub cipher: &'static str,
    /// The client's SNI name.
    pub sni: Option<String>,
    /// The certificate served.
    pub certificate_arn: Option<String>,
}

#[cfg(test)]
mod tests;
