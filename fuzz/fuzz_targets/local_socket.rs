//! Untrusted bytes on the local attestation socket never crash the
//! server: HTTP/2 frames through the `:authority` shim and gRPC messages
//! of the SPIFFE Workload API.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    mayfly_attest::fuzz_local_socket(data);
});
