#![no_main]
//! cargo-fuzz target: see `weir_fuzz::rpc_body`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| weir_fuzz::rpc_body(data));
