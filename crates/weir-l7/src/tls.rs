//! TLS termination for HTTPS listeners: the shared `weir-tls` crate (certificates by ARN and
//! SNI, security policies, AWS's names of suites and versions), re-exported here.

pub use weir_tls::*;
