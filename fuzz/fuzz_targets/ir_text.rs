//! The `fhe` dialect's text parser, verifier and printer: any text is a module or a located error.
#![no_main]
use fhec::ir::{parse_module, print_module, verify};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(m) = parse_module(text) {
        let printed = print_module(&m);
        if verify(&m).is_ok() {
            // a verified module prints to text that parses again
            parse_module(&printed).expect("a printed module parses");
        }
    }
});
