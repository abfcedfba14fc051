//! Regenerates `frontends/onnx/src/proto/onnx.rs` from `frontends/onnx/proto/onnx-ml.proto`.

use std::path::PathBuf;

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let proto_dir = root.join("frontends/onnx/proto");
    let out = root.join("frontends/onnx/src/proto");
    let descriptors = protox::compile([proto_dir.join("onnx-ml.proto")], [&proto_dir]).expect("parse onnx-ml.proto");
    let mut config = prost_build::Config::new();
    config.out_dir(&out);
    config
        .compile_fds(descriptors)
        .expect("generate Rust from onnx-ml.proto");
    println!("wrote {}", out.join("onnx.rs").display());
}
