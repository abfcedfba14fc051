//! Ciphertext files, checked against a program as a server does (inputs) and a client does
//! (outputs).
#![no_main]
use std::sync::OnceLock;

use fhec::runtime::{io, Direction, ProgramInterface};
use libfuzzer_sys::fuzz_target;

fn program() -> &'static ProgramInterface {
    static P: OnceLock<ProgramInterface> = OnceLock::new();
    P.get_or_init(|| {
        fhec::backend::text::parse_program(include_str!("../fixtures/linear.tfhe"))
            .expect("fixture parses")
            .interface()
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = io::ciphertexts_from_bytes(data) {
        let _ = c.size_bytes();
        let _ = c.check(program(), Direction::Inputs);
        let _ = c.check(program(), Direction::Outputs);
    }
});
