//! Client specs (JSON): what a client file tells the client about quantisation and outputs.
#![no_main]
use fhec::ClientSpec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(spec) = ClientSpec::from_json(text) {
        let _ = spec.to_json();
    }
});
