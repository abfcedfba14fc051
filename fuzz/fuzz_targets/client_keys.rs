//! Secret-key files (the client's own, but a file on disk all the same).
#![no_main]
use fhec::runtime::io;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = io::client_keys_from_bytes(data);
});
