//! AWS Signature Version 4 verification of Query API requests (the `Authorization` header form).
//!
//! The canonical request, string to sign and signing key follow AWS's specification; region and
//! service are taken from the request's credential scope. Errors use AWS's codes:
//! `MissingAuthenticationToken` (no signature), `InvalidClientTokenId` (unknown access key),
//! `SignatureDoesNotMatch` (wrong signature, or `X-Amz-Date` more than 15 minutes off).

use std::collections::BTreeMap;
use std::path::Path;

use http::HeaderMap;
use ring::{digest, hmac};

/// Access key id → secret access key.
#[derive(Clone, Default)]
pub struct Credentials(BTreeMap<String, String>);

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

impl Credentials {
    /// One key pair.
    pub fn single(access_key: &str, secret: &str) -> Self {
        Self(BTreeMap::from([(access_key.to_string(), secret.to_string())]))
    }

    /// Every `aws_access_key_id` / `aws_secret_access_key` pair of an AWS credentials file.
    pub fn from_file(path: &Path) -> std::io::Result<Self> {
        let text = std::fs::read_to_string(path)?;
        let mut out = BTreeMap::new();
        let mut key: Option<String> = None;
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                key = None;
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            match k.trim() {
                "aws_access_key_id" => key = Some(v.trim().to_string()),
                "aws_secret_access_key" => {
                    if let Some(id) = key.take() {
                        out.insert(id, v.trim().to_string());
                    }
                }
                _ => {}
            }
        }
        Ok(Self(out))
    }

    /// Adds the pair in `WEIR_ACCESS_KEY_ID` / `WEIR_SECRET_ACCESS_KEY`, if both are set.
    pub fn with_env(mut self) -> Self {
        if let (Ok(id), Ok(secret)) =
            (std::env::var("WEIR_ACCESS_KEY_ID"), std::env::var("WEIR_SECRET_ACCESS_KEY"))
        {
            self.0.insert(id, secret);
        }
        self
    }

    /// Whether no key is configured.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A failed verification: AWS error code and message (HTTP 403).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthError {
    /// Error code.
    pub code: &'static str,
    /// Message.
    pub message: String,
}

fn fail(code: &'static str, message: impl Into<String>) -> AuthError {
    AuthError { code, message: message.into() }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256_hex(data: &[u8]) -> String {
    hex(digest::digest(&digest::SHA256, data).as_ref())
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data).as_ref().to_vec()
}

/// RFC 3986 encoding as SigV4 wants it: unreserved characters kept, everything else `%XX`.
fn aws_encode(s: &[u8], keep_slash: bool) -> String {
    let mut out = String::new();
    for &b in s {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes; anything else (including a `%` not followed by two hex digits) is
/// kept as it is. Works on bytes, so multi-byte characters next to a `%` are fine.
fn percent_decode(s: &str) -> Vec<u8> {
    fn hex_digit(b: u8) -> Option<u8> {
        (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if let (Some(h), Some(l)) =
                (b.get(i + 1).and_then(|&c| hex_digit(c)), b.get(i + 2).and_then(|&c| hex_digit(c)))
            {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (aws_encode(&percent_decode(k), false), aws_encode(&percent_decode(v), false))
        })
        .collect();
    pairs.sort();
    pairs.into_iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
}

/// Seconds since the epoch of an `X-Amz-Date` (`YYYYMMDDTHHMMSSZ`).
fn parse_amz_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d, hh, mm, ss) = (n(0..4)?, n(4..6)?, n(6..8)?, n(9..11)?, n(11..13)?, n(13..15)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days from civil (Howard Hinnant).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86400 + hh * 3600 + mm * 60 + ss)
}

/// SigV4's derived key: the secret HMAC-chained with date, region, service and `aws4_request`.
fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> Vec<u8> {
    let k_date = hmac_sha256(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac_sha256(&k_date, region.as_bytes());
    let k_service = hmac_sha256(&k_region, service.as_bytes());
    hmac_sha256(&k_service, b"aws4_request")
}

/// Signs a `POST /` Query request with form `body` to `host` (SigV4, the headers `host` and
/// `x-amz-date` signed); returns the `x-amz-date` and `authorization` header values. `now` is
/// seconds since the epoch.
pub fn sign(
    access_key: &str,
    secret: &str,
    region: &str,
    service: &str,
    host: &str,
    body: &[u8],
    now: u64,
) -> (String, String) {
    let (y, mo, d, h, mi, s) = weir_model::time::parts(now);
    let date = format!("{y:04}{mo:02}{d:02}");
    let amz_date = format!("{date}T{h:02}{mi:02}{s:02}Z");
    let canonical_request = format!(
        "POST\n/\n\nhost:{host}\nx-amz-date:{amz_date}\n\nhost;x-amz-date\n{}",
        sha256_hex(body)
    );
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical_request.as_bytes())
    );
    let k_signing = signing_key(secret, &date, region, service);
    let signature = hex(&hmac_sha256(&k_signing, to_sign.as_bytes()));
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders=host;x-amz-date, Signature={signature}"
    );
    (amz_date, auth)
}

/// Verifies a request signed in the `Authorization` header. `now` is seconds since the epoch.
pub fn verify(
    creds: &Credentials,
    method: &str,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
) -> Result<(), AuthError> {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| fail("MissingAuthenticationToken", "Missing Authentication Token"))?;
    let rest = auth.strip_prefix("AWS4-HMAC-SHA256 ").ok_or_else(|| {
        fail("IncompleteSignature", "Only the AWS4-HMAC-SHA256 authorization scheme is supported")
    })?;
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in rest.split(',') {
        match part.trim().split_once('=') {
            Some(("Credential", v)) => credential = Some(v),
            Some(("SignedHeaders", v)) => signed_headers = Some(v),
            Some(("Signature", v)) => signature = Some(v),
            _ => {}
        }
    }
    let (Some(credential), Some(signed_headers), Some(signature)) =
        (credential, signed_headers, signature)
    else {
        return Err(fail(
            "IncompleteSignature",
            "Authorization header requires Credential, SignedHeaders and Signature",
        ));
    };
    let mut scope = credential.splitn(5, '/');
    let (Some(key_id), Some(date), Some(region), Some(service), Some("aws4_request")) =
        (scope.next(), scope.next(), scope.next(), scope.next(), scope.next())
    else {
        return Err(fail(
            "IncompleteSignature",
            "Credential must be KEY/DATE/REGION/SERVICE/aws4_request",
        ));
    };
    let secret = creds.0.get(key_id).ok_or_else(|| {
        fail("InvalidClientTokenId", "The security token included in the request is invalid.")
    })?;
    let amz_date = headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| fail("IncompleteSignature", "X-Amz-Date header is required"))?;
    let at = parse_amz_date(amz_date).ok_or_else(|| {
        fail("IncompleteSignature", format!("X-Amz-Date '{amz_date}' is not valid"))
    })?;
    if (now - at).abs() > 15 * 60 || !amz_date.starts_with(date) {
        return Err(fail(
            "SignatureDoesNotMatch",
            format!("Signature expired: {amz_date} is more than 15 minutes from the server's time"),
        ));
    }
    let mut canonical_headers = String::new();
    for name in signed_headers.split(';') {
        let values: Vec<String> = headers
            .get_all(name)
            .iter()
            .map(|v| {
                String::from_utf8_lossy(v.as_bytes())
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        if values.is_empty() {
            return Err(fail(
                "SignatureDoesNotMatch",
                format!("Signed header '{name}' is missing"),
            ));
        }
        canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    let canonical_path =
        aws_encode(&percent_decode(if path.is_empty() { "/" } else { path }), true);
    let canonical_request = format!(
        "{method}\n{canonical_path}\n{}\n{canonical_headers}\n{signed_headers}\n{}",
        canonical_query(query),
        sha256_hex(body)
    );
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical_request.as_bytes())
    );
    let k_signing = signing_key(secret, date, region, service);
    let given: Option<Vec<u8>> = (signature.len() == 64)
        .then(|| {
            let b = signature.as_bytes();
            (0..32)
                .map(|i| {
                    let d = |c: u8| (c as char).to_digit(16);
                    u8::try_from(d(b[2 * i])? << 4 | d(b[2 * i + 1])?).ok()
                })
                .collect()
        })
        .flatten();
    // hmac::verify compares in constant time.
    let same = given.is_some_and(|g| {
        hmac::verify(&hmac::Key::new(hmac::HMAC_SHA256, &k_signing), to_sign.as_bytes(), &g).is_ok()
    });
    if same {
        Ok(())
    } else {
        Err(fail(
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AWS's published SigV4 test-suite case `get-vanilla`.
    #[test]
    fn aws_test_suite_get_vanilla() {
        let creds = Credentials::single("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
        let mut h = HeaderMap::new();
        h.insert("host", "example.amazonaws.com".parse().unwrap());
        h.insert("x-amz-date", "20150830T123600Z".parse().unwrap());
        h.insert("authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31".parse().unwrap());
        let now = parse_amz_date("20150830T123600Z").unwrap();
        assert_eq!(verify(&creds, "GET", "/", "", &h, b"", now), Ok(()));
        assert_eq!(
            verify(&creds, "GET", "/", "", &h, b"", now + 3600).unwrap_err().code,
            "SignatureDoesNotMatch"
        );
        assert_eq!(
            verify(&creds, "GET", "/", "a=b", &h, b"", now).unwrap_err().code,
            "SignatureDoesNotMatch"
        );
        let other = Credentials::single("AKIDOTHER", "x");
        assert_eq!(
            verify(&other, "GET", "/", "", &h, b"", now).unwrap_err().code,
            "InvalidClientTokenId"
        );
        h.remove("authorization");
        assert_eq!(
            verify(&creds, "GET", "/", "", &h, b"", now).unwrap_err().code,
            "MissingAuthenticationToken"
        );
    }

    /// What `sign` produces, `verify` accepts; a changed body or key does not pass.
    #[test]
    fn signed_requests_verify() {
        let creds = Credentials::single("AKIDEXAMPLE", "secret");
        let now = parse_amz_date("20261123T101500Z").unwrap() as u64;
        let body = b"Action=DescribeStacks&Version=2010-05-15";
        let (date, auth) = sign(
            "AKIDEXAMPLE",
            "secret",
            "us-east-1",
            "cloudformation",
            "127.0.0.1:9400",
            body,
            now,
        );
        assert_eq!(date, "20261123T101500Z");
        let mut h = HeaderMap::new();
        h.insert("host", "127.0.0.1:9400".parse().unwrap());
        h.insert("x-amz-date", date.parse().unwrap());
        h.insert("authorization", auth.parse().unwrap());
        assert_eq!(verify(&creds, "POST", "/", "", &h, body, now as i64), Ok(()));
        assert!(verify(&creds, "POST", "/", "", &h, b"Action=DeleteStack", now as i64).is_err());
        let (_, forged) = sign(
            "AKIDEXAMPLE",
            "guess",
            "us-east-1",
            "cloudformation",
            "127.0.0.1:9400",
            body,
            now,
        );
        h.insert("authorization", forged.parse().unwrap());
        assert!(verify(&creds, "POST", "/", "", &h, body, now as i64).is_err());
    }

    #[test]
    fn dates_and_queries() {
        assert_eq!(parse_amz_date("19700101T000000Z"), Some(0));
        assert_eq!(parse_amz_date("20150830T123600Z"), Some(1_440_938_160));
        assert_eq!(parse_amz_date("2015-08-30"), None);
        assert_eq!(canonical_query("b=2&a=%7e&a=1&c"), "a=1&a=~&b=2&c=");
    }

    #[test]
    fn credentials_file() {
        let p = std::env::temp_dir().join(format!("weir-creds-{}", std::process::id()));
        std::fs::write(&p, "[default]\naws_access_key_id = AK1\naws_secret_access_key = s1\n[other]\naws_access_key_id=AK2\naws_secret_access_key=s2\n").unwrap();
        let c = Credentials::from_file(&p).unwrap();
        assert_eq!(c.0.len(), 2);
        assert_eq!(c.0["AK2"], "s2");
        let _ = std::fs::remove_file(p);
    }
}
