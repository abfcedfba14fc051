//! End to end with real keys: FHE == simulation == the clear interpreter.

use fhec_backend_tfhe::{compile, CompileOptions};
use fhec_ir::Tensor;
use fhec_runtime::{exec, ClearTensor, ClientKeys, Progress};
use ndarray::{ArrayD, IxDyn};

fn to_clear(t: &Tensor) -> ClearTensor {
    ClearTensor::new(t.shape().to_vec(), t.iter().copied().collect()).unwrap()
}

fn from_clear(c: &ClearTensor) -> Tensor {
    ArrayD::from_shape_vec(IxDyn(&c.shape), c.values.clone()).unwrap()
}

#[test]
fn mlp_example() {
    let src = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/mlp.fhe")).unwrap();
    let m = fhec_ir::parse_module(&src).unwrap();
    let v = fhec_ir::verify(&m).unwrap();
    let t0 = std::time::Instant::now();
    let c = compile(&v, &CompileOptions::default(), Some(&src)).unwrap();
    eprintln!(
        "compile {:?}: {} / {:?}",
        t0.elapsed(),
        c.program.params,
        c.program.noise
    );
    eprintln!("instrs {} tables {}", c.program.instrs.len(), c.program.tables.len());
    let t0 = std::time::Instant::now();
    let ck = ClientKeys::generate(&c.program.params).unwrap();
    let sk = ck
        .evaluation_keys(&Progress::silent())
        .expand(&Progress::silent())
        .unwrap();
    eprintln!("keygen {:?}", t0.elapsed());
    let xs: Vec<Tensor> = (0..8)
        .map(|s| ArrayD::from_shape_vec(IxDyn(&[1, 4]), vec![(s * 5) % 16, 3, (s * 7) % 16, 15 - s]).unwrap())
        .collect();
    let samples: Vec<Vec<ClearTensor>> = xs.iter().map(|x| vec![to_clear(x)]).collect();
    let enc = ck.encrypt(&c.program, &samples).unwrap();
    let t0 = std::time::Instant::now();
    let out = exec::run(&c.program, &sk, enc, &Progress::silent(), None).unwrap();
    eprintln!("run {:?}", t0.elapsed());
    let dec = ck.decrypt(&c.program, &out).unwrap();
    let sim = c.program.simulate(&samples).unwrap();
    for (i, x) in xs.iter().enumerate() {
        let want = fhec_ir::interp::eval(&v, std::slice::from_ref(x)).unwrap();
        assert_eq!(from_clear(&sim[i][0]), want[0], "simulation, sample {i}");
        assert_eq!(from_clear(&dec[i][0]), want[0], "fhe, sample {i}");
    }
}
