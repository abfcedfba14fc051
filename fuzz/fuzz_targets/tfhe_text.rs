//! The `tfhe` dialect's parser (lowered programs as text): a valid program or a located error.
#![no_main]
use fhec::backend::text::{parse_program, print_program};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(p) = parse_program(text) {
        p.validate().expect("the parser returns valid programs");
        let _ = print_program(&p);
    }
});
