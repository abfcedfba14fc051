//! ONNX networks (protobuf): reading, the float reference and post-training quantisation.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(m) = fhec::onnx::OnnxModel::from_bytes(data) else { return };
    let Some(input) = m.inputs().first() else { return };
    // a batch of 3 samples of the declared shape (symbolic dimensions as 1), when it is small
    let mut dims = vec![3usize];
    dims.extend(input.dims.iter().skip(1).map(|d| d.unwrap_or(1)));
    if input.dims.is_empty() || dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).is_none_or(|n| n > 4096) {
        return;
    }
    let n: usize = dims.iter().product();
    let x = ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&dims), (0..n).map(|i| (i % 7) as f64 - 3.0).collect())
        .expect("shape");
    let _ = m.eval(std::slice::from_ref(&x));
    let _ = m.quantize(&x, &fhec::onnx::PtqOptions::default());
});
