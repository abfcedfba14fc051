//! Client specs (JSON): what a client file tells the client about quantisation and outputs. A spec
//! that validates must encode, add output parts, dequantise and post-process without panicking.
#![no_main]
use fhec::ClientSpec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(spec) = ClientSpec::from_json(text) {
        let _ = spec.to_json();
        let ints: Vec<i64> = (0..24).map(|i| i * 7 - 80).collect();
        for width in [1, 2, 3, 4, 6, 8, 12, 24] {
            if let Ok((values, c)) = spec.output_values(0, &ints, width) {
                let v = spec.dequantize(0, &values);
                let _ = spec.post_process(&v, c);
                let _ = spec.class_index(&v, c);
            }
        }
        let _ = spec.encode(0, &[0.5, -1.0, 3.0]);
    }
});
