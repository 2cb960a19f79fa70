//! Named TLS security policies (`DescribeSSLPolicies`): protocol versions and cipher suites in
//! AWS's (OpenSSL) names, in preference order.

/// One security policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SslPolicy {
    /// Policy name.
    pub name: &'static str,
    /// `TLSv1` … `TLSv1.3`.
    pub protocols: &'static [&'static str],
    /// Cipher suites, most preferred first.
    pub ciphers: &'static [&'static str],
}

const TLS13: &[&str] =
    &["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"];
const ECDHE_GCM_SHA2: &[&str] = &[
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES128-SHA256",
    "ECDHE-RSA-AES128-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-AES256-SHA384",
    "ECDHE-RSA-AES256-SHA384",
];

/// The policy listeners get when they name none.
pub const DEFAULT_POLICY: &str = "ELBSecurityPolicy-2016-08";

/// The policies Weir knows.
pub const POLICIES: &[SslPolicy] = &[
    SslPolicy {
        name: "ELBSecurityPolicy-2016-08",
        protocols: &["TLSv1", "TLSv1.1", "TLSv1.2"],
        ciphers: &[
            "ECDHE-ECDSA-AES128-GCM-SHA256",
            "ECDHE-RSA-AES128-GCM-SHA256",
            "ECDHE-ECDSA-AES128-SHA256",
            "ECDHE-RSA-AES128-SHA256",
            "ECDHE-ECDSA-AES128-SHA",
            "ECDHE-RSA-AES128-SHA",
            "ECDHE-ECDSA-AES256-GCM-SHA384",
            "ECDHE-RSA-AES256-GCM-SHA384",
            "ECDHE-ECDSA-AES256-SHA384",
            "ECDHE-RSA-AES256-SHA384",
            "ECDHE-RSA-AES256-SHA",
            "ECDHE-ECDSA-AES256-SHA",
            "AES128-GCM-SHA256",
            "AES128-SHA256",
            "AES128-SHA",
            "AES256-GCM-SHA384",
            "AES256-SHA256",
            "AES256-SHA",
        ],
    },
    SslPolicy {
        name: "ELBSecurityPolicy-TLS-1-2-2017-01",
        protocols: &["TLSv1.2"],
        ciphers: &[
            "ECDHE-ECDSA-AES128-GCM-SHA256",
            "ECDHE-RSA-AES128-GCM-SHA256",
            "ECDHE-ECDSA-AES128-SHA256",
            "ECDHE-RSA-AES128-SHA256",
            "ECDHE-ECDSA-AES256-GCM-SHA384",
            "ECDHE-RSA-AES256-GCM-SHA384",
            "ECDHE-ECDSA-AES256-SHA384",
            "ECDHE-RSA-AES256-SHA384",
            "AES128-GCM-SHA256",
            "AES128-SHA256",
            "AES256-GCM-SHA384",
            "AES256-SHA256",
        ],
    },
    SslPolicy {
        name: "ELBSecurityPolicy-TLS13-1-2-2021-06",
        protocols: &["TLSv1.2", "TLSv1.3"],
        ciphers: &[],
    },
    SslPolicy {
        name: "ELBSecurityPolicy-TLS13-1-3-2021-06",
        protocols: &["TLSv1.3"],
        ciphers: TLS13,
    },
];

/// Cipher suites of a policy, TLS 1.3 suites first where the policy allows TLS 1.3.
pub fn ciphers(p: &SslPolicy) -> Vec<&'static str> {
    if p.name == "ELBSecurityPolicy-TLS13-1-2-2021-06" {
        return TLS13.iter().chain(ECDHE_GCM_SHA2).copied().collect();
    }
    p.ciphers.to_vec()
}

/// A policy by name.
pub fn policy(name: &str) -> Option<&'static SslPolicy> {
    POLICIES.iter().find(|p| p.name == name)
}
