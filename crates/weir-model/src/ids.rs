//! Account, region, ARNs and resource ids in AWS form.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// The default account id, as in AWS documentation examples.
pub const DEFAULT_ACCOUNT: &str = "123456789012";
/// The default region.
pub const DEFAULT_REGION: &str = "us-east-1";

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A random 64-bit value: std's per-process random hasher keys plus a counter, no extra crates.
pub fn random_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.finish()
}

/// A random UUID (version 4 layout), as Auto Scaling names groups and activities.
pub fn uuid() -> String {
    let (a, b) = (random_u64(), random_u64());
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0x0fff,
        0x8000 | (b >> 48) & 0x3fff,
        b & 0xffff_ffff_ffff
    )
}

/// A new 16-hex-digit id, as used in ELBv2 ARNs.
pub fn new_hex_id() -> String {
    format!("{:016x}", random_u64())
}

/// ARN prefix for ELBv2 resources in `region` / `account`.
pub fn elb_arn_prefix(region: &str, account: &str) -> String {
    format!("arn:aws:elasticloadbalancing:{region}:{account}")
}

/// The resource part after the prefix, e.g. `loadbalancer/app/NAME/ID`.
pub fn arn_resource(arn: &str) -> Option<&str> {
    let mut parts = arn.splitn(6, ':');
    let fields: Vec<&str> = parts.by_ref().take(5).collect();
    if fields.len() != 5 || fields[0] != "arn" {
        return None;
    }
    parts.next()
}

/// Checks that `s` looks like an ELBv2 ARN of `kind` (`loadbalancer`, `targetgroup`, `listener`,
/// `listener-rule`), returning AWS's validation message otherwise.
pub fn check_arn(s: &str, kind: &str) -> crate::error::Result<()> {
    match arn_resource(s) {
        Some(r) if r.starts_with(&format!("{kind}/")) && s.contains(":elasticloadbalancing:") => {
            Ok(())
        }
        _ => Err(crate::ModelError::validation(format!("'{s}' is not a valid {kind} ARN"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_hex_and_distinct() {
        let a = new_hex_id();
        let b = new_hex_id();
        assert_eq!(a.len(), 16);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn arn_parts() {
        let arn =
            "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123456789abcdef";
        assert_eq!(arn_resource(arn), Some("targetgroup/web/0123456789abcdef"));
        assert!(check_arn(arn, "targetgroup").is_ok());
        assert!(check_arn(arn, "loadbalancer").is_err());
        assert!(check_arn("nonsense", "targetgroup").is_err());
    }
}
