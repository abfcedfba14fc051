//! Integer networks described by their trainer (`fhec.sklearn`'s NeuralNet model files): reading,
//! checking and building the program.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(m) = fhec::onnx::IntegerNetwork::from_json(text) else { return };
    let _ = m.build();
});
