//! A model's deployment files (server file, client file): reading checks everything; a client file
//! that reads then encodes rows and decodes results without panicking.
#![no_main]
use fhec::runtime::ClearTensor;
use fhec::{ClientModel, ServerModel};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = ServerModel::from_bytes(data) {
        let _ = s.program.fingerprint();
    }
    if let Ok(c) = ClientModel::from_bytes(data) {
        let _ = c.encode_rows(&[0.5, -1.0, 2.0, 0.0, 1.0, 3.0], 2);
        let zeros: Vec<Vec<ClearTensor>> = c
            .interface
            .outputs
            .iter()
            .take(1)
            .filter(|p| p.len() <= 1 << 16)
            .map(|p| vec![ClearTensor::new(p.shape.clone(), vec![0; p.len()]).unwrap()])
            .collect();
        let _ = c.decode_rows(&zeros);
        let _ = c.class_indices(&zeros);
    }
});
