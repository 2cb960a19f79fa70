//! Named TLS security policies (`DescribeSSLPolicies`): protocol versions and cipher suites in
//! AWS's (OpenSSL) names, in preference order.

/// One security policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SslPolicy {
    /// Policy name.
    pub name: &'static str,
    /// `TLSv1` … `TLSv1.3`.
    pub protocols: &'static [&'static str],
    /// Cipher-suite groups, concatenated in order by [`ciphers`].
    pub cipher_groups: &'static [&'static [&'static str]],
}

const TLS13: &[&str] =
    &["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"];
const ECDHE_AES128_SHA2: &[&str] = &[
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES128-SHA256",
    "ECDHE-RSA-AES128-SHA256",
];
const ECDHE_AES128_SHA1: &[&str] = &["ECDHE-ECDSA-AES128-SHA", "ECDHE-RSA-AES128-SHA"];
const ECDHE_AES256_SHA2: &[&str] = &[
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-AES256-SHA384",
    "ECDHE-RSA-AES256-SHA384",
];
const ECDHE_AES256_SHA1: &[&str] = &["ECDHE-RSA-AES256-SHA", "ECDHE-ECDSA-AES256-SHA"];
const RSA_AES128: &[&str] = &["AES128-GCM-SHA256", "AES128-SHA256"];
const RSA_AES128_SHA1: &[&str] = &["AES128-SHA"];
const RSA_AES256: &[&str] = &["AES256-GCM-SHA384", "AES256-SHA256"];
const RSA_AES256_SHA1: &[&str] = &["AES256-SHA"];

/// The policy listeners get when they name none.
pub const DEFAULT_POLICY: &str = "ELBSecurityPolicy-2016-08";

/// The policies Weir knows.
pub const POLICIES: &[SslPolicy] = &[
    SslPolicy {
        name: "ELBSecurityPolicy-2016-08",
        protocols: &["TLSv1", "TLSv1.1", "TLSv1.2"],
        cipher_groups: &[
            ECDHE_AES128_SHA2,
            ECDHE_AES128_SHA1,
            ECDHE_AES256_SHA2,
            ECDHE_AES256_SHA1,
            RSA_AES128,
            RSA_AES128_SHA1,
            RSA_AES256,
            RSA_AES256_SHA1,
        ],
    },
    SslPolicy {
        name: "ELBSecurityPolicy-TLS-1-2-2017-01",
        protocols: &["TLSv1.2"],
        cipher_groups: &[ECDHE_AES128_SHA2, ECDHE_AES256_SHA2, RSA_AES128, RSA_AES256],
    },
    SslPolicy {
        name: "ELBSecurityPolicy-TLS13-1-2-2021-06",
        protocols: &["TLSv1.2", "TLSv1.3"],
        cipher_groups: &[TLS13, ECDHE_AES128_SHA2, ECDHE_AES256_SHA2],
    },
    SslPolicy {
        name: "ELBSecurityPolicy-TLS13-1-3-2021-06",
        protocols: &["TLSv1.3"],
        cipher_groups: &[TLS13],
    },
];

/// Cipher suites of a policy, most preferred first.
pub fn ciphers(p: &SslPolicy) -> Vec<&'static str> {
    p.cipher_groups.iter().flat_map(|g| g.iter().copied()).collect()
}

/// A policy by name.
pub fn policy(name: &str) -> Option<&'static SslPolicy> {
    POLICIES.iter().find(|p| p.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies() {
        let p = policy("ELBSecurityPolicy-2016-08").unwrap();
        assert_eq!(ciphers(p).len(), 18);
        assert_eq!(ciphers(p)[4], "ECDHE-ECDSA-AES128-SHA");
        let t = ciphers(policy("ELBSecurityPolicy-TLS13-1-2-2021-06").unwrap());
        assert_eq!((t[0], t.len()), ("TLS_AES_128_GCM_SHA256", 11));
        assert!(policy(DEFAULT_POLICY).is_some() && policy("nope").is_none());
    }
}
