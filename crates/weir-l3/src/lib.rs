//! The Gateway Load Balancer (GWLB) data plane.
//!
//! IP packets arrive on a gateway endpoint — a TUN device — and each flow is hashed (5-tuple,
//! or the 3-/2-tuple under `stickiness`) onto a healthy appliance, remembered in a flow table
//! so that both directions of the flow reach the same appliance, and sent to it encapsulated in
//! GENEVE (UDP 6081) with AWS's options (class `0x0108`: endpoint id, attachment id, flow
//! cookie). What the appliance returns is decapsulated and written back to the endpoint's TUN
//! device for the kernel to forward; what it drops stays dropped.
//!
//! The codec ([`geneve`]), packet parsing ([`packet`]), flow table ([`flow`]) and decisions
//! ([`gateway`]) are sans-I/O and fuzzed; [`runtime`] and [`tun`] are the thin I/O around
//! them. [`appliance`] is the `weir appliance` bounce appliance. See `docs/gwlb.md`.

pub mod appliance;
pub mod flow;
pub mod gateway;
pub mod geneve;
pub mod packet;
pub mod runtime;
pub mod tun;

pub use gateway::{Endpoint, Gateway, GatewayLb, GatewaySnapshot, GatewayStats};
pub use runtime::{EndpointError, GatewayHandle};
