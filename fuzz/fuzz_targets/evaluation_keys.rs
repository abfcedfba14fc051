//! Evaluation-key files, as a server receives them from a client.
#![no_main]
use fhec::runtime::io;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(k) = io::evaluation_keys_from_bytes(data) {
        let _ = k.size_bytes();
    }
});
