//! `.npy` tensors (integer inputs and float calibration data).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = fhec::io::parse_npy(data);
    let _ = fhec::io::parse_npy_f64(data);
});
