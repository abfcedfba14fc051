//! Saved quantised linear models (JSON).
#![no_main]
use fhec::quant::QuantizedLinear;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(m) = QuantizedLinear::from_json(text) {
        let _ = m.to_json();
    }
});
