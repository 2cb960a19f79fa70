#![no_main]
//! cargo-fuzz target: see `weir_fuzz::dns_query`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| weir_fuzz::dns_query(data));
