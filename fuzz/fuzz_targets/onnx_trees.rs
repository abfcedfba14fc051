//! ONNX tree ensembles (protobuf).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = fhec::onnx::trees::import(data, None);
});
