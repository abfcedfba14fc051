//! Program files (`.fhecp`): loading validates; the server's resource limits then bound it.
#![no_main]
use fhec::runtime::{io, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = io::program_from_bytes(data) {
        let _ = Limits::default().check_run(&p, 1);
        let _ = p.fingerprint();
        let _ = fhec::backend::text::print_program(&p);
    }
});
