//! The tracing DSL: compiled circuits compute what the traced numpy-like program computes —
//! simulated, and encrypted with real keys.

use fhec::trace::Tracer;
use fhec::{compile_traced, CompileOptions};
use ndarray::{arr2, ArrayD, IxDyn};

fn rng(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

fn sample(seed: &mut u64, shape: &[usize], lo: i64, hi: i64) -> ArrayD<i64> {
    let n: usize = shape.iter().product();
    let v = (0..n).map(|_| lo + (rng(seed) % (hi - lo + 1) as u64) as i64).collect();
    ArrayD::from_shape_vec(IxDyn(shape), v).unwrap()
}

#[test]
fn mlp_layer_traced_compiled_and_run_encrypted() {
    let t = Tracer::new();
    let x = t.input("x", &[1, 4]);
    let w = arr2(&[[3i64, -1, 2], [0, 2, -3], [5, 5, 1], [-7, 1, 0]]).into_dyn();
    let b = ArrayD::from_shape_vec(IxDyn(&[3]), vec![4i64, -2, 0]).unwrap();
    // accumulator → round 4 bits → ReLU → · 2 → comparison
    let acc = &x.matmul(&w) + &b;
    let h = acc.round_bits(4).relu();
    let y = (&h * 2).gt(3);
    let mut seed = 7u64;
    let inputset: Vec<Vec<ArrayD<i64>>> = (0..40).map(|_| vec![sample(&mut seed, &[1, 4], 0, 15)]).collect();
    let outs = [h.clone(), y];
    let mut c = compile_traced(&outs, &inputset, &CompileOptions::default()).unwrap();
    assert!(c.ir().contains("fhe.round") && c.ir().contains("fhe.lut"), "{}", c.ir());
    // simulation == the module's interpreter == the traced computation, on every input set sample
    for s in &inputset {
        assert_eq!(c.simulate(s).unwrap(), c.eval_clear(s).unwrap(), "{:?}", s);
        assert_eq!(c.eval_clear(s).unwrap(), t.eval(&outs, s).unwrap(), "{:?}", s);
    }
    // encrypted, as one batch
    let batch: Vec<Vec<ArrayD<i64>>> = inputset[..6].to_vec();
    let got = c.encrypt_run_decrypt_batch(&batch).unwrap();
    for (s, g) in batch.iter().zip(&got) {
        assert_eq!(g, &c.eval_clear(s).unwrap(), "{:?}", s);
    }
}

#[test]
fn two_inputs_products_and_shapes() {
    let t = Tracer::new();
    let x = t.input("x", &[2, 3]);
    let y = t.input("y", &[2, 3]);
    let p = &x * &y; // encrypted × encrypted: fhe.mul_eint
    let s = p.sum(&[1], false); // [2]
    let z = (&s - 5).clip(-4, 4);
    let u = x.transpose(&[]).reshape(&[6]).unwrap();
    let mut seed = 99u64;
    let inputset: Vec<Vec<ArrayD<i64>>> = (0..30)
        .map(|_| vec![sample(&mut seed, &[2, 3], 0, 3), sample(&mut seed, &[2, 3], 0, 2)])
        .collect();
    let mut c = compile_traced(&[z, u], &inputset, &CompileOptions::default()).unwrap();
    assert!(c.ir().contains("fhe.mul_eint"), "{}", c.ir());
    for s in &inputset {
        assert_eq!(c.simulate(s).unwrap(), c.eval_clear(s).unwrap());
    }
    let got = c.encrypt_run_decrypt(&inputset[0]).unwrap();
    assert_eq!(got, c.eval_clear(&inputset[0]).unwrap());
    // the tfhe dialect prints
    assert!(c.tfhe_ir().contains("tfhe.pbs"));
}

#[test]
fn errors_are_clear() {
    // a lookup on an accumulator wider than 16 bits: round first
    let t = Tracer::new();
    let x = t.input("x", &[2]);
    let y = (&x * 3000).relu();
    let inputset = vec![vec![ArrayD::from_shape_vec(IxDyn(&[2]), vec![0i64, 100]).unwrap()]];
    let e = compile_traced(&[y], &inputset, &CompileOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("round_bits") && e.contains("bits"), "{e}");
    // an empty input set, a wrong input shape
    let t = Tracer::new();
    let x = t.input("x", &[2]);
    let y = x.relu();
    assert!(
        compile_traced(std::slice::from_ref(&y), &[], &CompileOptions::default())
            .err()
            .unwrap()
            .to_string()
            .contains("empty")
    );
    let bad = vec![vec![ArrayD::from_shape_vec(IxDyn(&[3]), vec![0i64, 1, 2]).unwrap()]];
    assert!(
        compile_traced(std::slice::from_ref(&y), &bad, &CompileOptions::default())
            .err()
            .unwrap()
            .to_string()
            .contains("shape")
    );
    // an input outside the input set's range is refused at encryption
    let ok = vec![vec![ArrayD::from_shape_vec(IxDyn(&[2]), vec![0i64, 5]).unwrap()]];
    let c = compile_traced(&[y], &ok, &CompileOptions::default()).unwrap();
    let e = c
        .simulate(&[ArrayD::from_shape_vec(IxDyn(&[2]), vec![0i64, 9]).unwrap()])
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("outside the range"), "{e}");
}

/// Clear inputs (`Tracer::clear_input`): weights and a bias given with each call, unencrypted. The
/// weights are transposed and used on both sides of a matmul; compiled circuits equal the traced
/// computation, simulated and encrypted, for weights that change from call to call.
#[test]
fn clear_inputs_change_per_call() {
    let t = Tracer::new();
    let x = t.input("x", &[1, 4]);
    let w = t.clear_input("w", &[3, 4]);
    let b = t.clear_input("b", &[3]);
    assert!(x.is_encrypted() && !w.is_encrypted());
    let wt = w.try_transpose(&[1, 0]).unwrap();
    let acc = x.try_matmul_value(&wt).unwrap().try_add(&b).unwrap(); // [1, 3]
    let h = acc.round_bits(3).relu();
    let back = w.try_matmul_value(&x.reshape(&[4]).unwrap()).unwrap(); // w @ x: [3]
    let mut seed = 5u64;
    let inputset: Vec<Vec<ArrayD<i64>>> = (0..40)
        .map(|_| {
            vec![
                sample(&mut seed, &[1, 4], 0, 7),
                sample(&mut seed, &[3, 4], -8, 7),
                sample(&mut seed, &[3], -20, 20),
            ]
        })
        .collect();
    let outs = [h, back];
    let mut c = compile_traced(&outs, &inputset, &CompileOptions::default()).unwrap();
    let ports: Vec<bool> = c.program().inputs.iter().map(|p| p.clear).collect();
    assert_eq!(ports, [false, true, true]);
    assert!(c.tfhe_ir().contains("tfhe.clear_linear"), "{}", c.tfhe_ir());
    for s in &inputset {
        assert_eq!(c.simulate(s).unwrap(), c.eval_clear(s).unwrap(), "{s:?}");
        assert_eq!(c.eval_clear(s).unwrap(), t.eval(&outs, s).unwrap(), "{s:?}");
    }
    let batch: Vec<Vec<ArrayD<i64>>> = inputset[..4].to_vec();
    let got = c.encrypt_run_decrypt_batch(&batch).unwrap();
    for (s, g) in batch.iter().zip(&got) {
        assert_eq!(g, &c.eval_clear(s).unwrap(), "{s:?}");
    }

    // a clear output, and clear-only arithmetic feeding an encrypted value, are refused
    let t = Tracer::new();
    let x = t.input("x", &[2]);
    let w = t.clear_input("w", &[2]);
    let one = [vec![
        ArrayD::from_elem(IxDyn(&[2]), 1i64),
        ArrayD::from_elem(IxDyn(&[2]), 1i64),
    ]];
    let e = compile_traced(std::slice::from_ref(&w), &one, &CompileOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("clear"), "{e}");
    let y = x.try_add(&(&w * 2)).unwrap();
    let e = compile_traced(&[y], &one, &CompileOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("a product of clear values only"), "{e}");
}

/// Slices (numpy basic slicing) of encrypted values and of clear inputs.
#[test]
fn slices_select_elements() {
    let t = Tracer::new();
    let x = t.input("x", &[3, 4]);
    let w = t.clear_input("w", &[4]);
    let a = x.try_slice(&[0, 1], &[3, 4], &[2, 2]).unwrap(); // x[::2, 1::2]: [2, 2]
    assert_eq!(a.shape(), [2, 2]);
    let b = x.try_mul(&w.try_slice(&[1], &[4], &[1]).unwrap().reshape(&[1, 3]).unwrap());
    assert!(b.is_err(), "[3, 4] · [1, 3] do not broadcast");
    let c = x
        .try_slice(&[0, 1], &[3, 4], &[1, 1])
        .unwrap()
        .try_mul(&w.try_slice(&[1], &[4], &[1]).unwrap());
    let c = c.unwrap();
    assert!(x.try_slice(&[0, 0], &[3, 5], &[1, 1]).is_err(), "out of bounds");
    assert!(x.try_slice(&[1, 0], &[1, 4], &[1, 1]).is_err(), "empty");
    assert!(x.try_slice(&[0, 0], &[3, 4], &[0, 1]).is_err(), "step 0");
    let mut seed = 11u64;
    let inputset: Vec<Vec<ArrayD<i64>>> = (0..20)
        .map(|_| vec![sample(&mut seed, &[3, 4], 0, 7), sample(&mut seed, &[4], -4, 3)])
        .collect();
    let mut circ = compile_traced(&[a, c], &inputset, &CompileOptions::default()).unwrap();
    for s in &inputset {
        assert_eq!(circ.simulate(s).unwrap(), circ.eval_clear(s).unwrap(), "{s:?}");
    }
    let x0 = &inputset[0][0];
    let got = circ.encrypt_run_decrypt(&inputset[0]).unwrap();
    assert_eq!(got[0][[1, 0]], x0[[2, 1]]);
    assert_eq!(got, circ.eval_clear(&inputset[0]).unwrap());
}

/// Concatenation of values of different widths and signedness (an unsigned part is reinterpreted as
/// signed), then a lookup on the whole: encrypted == simulated == traced.
#[test]
fn concatenation_of_mixed_values() {
    use fhec::trace::Traced;
    let t = Tracer::new();
    let x = t.input("x", &[2, 2]);
    let y = &x - 9; // signed, wider
    let z = x.try_mul(&x).unwrap(); // unsigned, wider
    let k = t.constant(ArrayD::from_shape_vec(IxDyn(&[2, 1]), vec![3, 12]).unwrap()); // an unsigned constant
    let c = Traced::concat(&[x.clone(), y, z, k], 1).unwrap(); // [2, 7]
    assert_eq!(c.shape(), [2, 7]);
    let out = c.relu();
    let w = t.clear_input("w", &[2, 2]);
    assert!(
        Traced::concat(&[x.clone(), w], 0).is_err(),
        "encrypted with a clear input"
    );
    assert!(Traced::concat(&[x.clone(), x.reshape(&[4]).unwrap()], 0).is_err());
    let mut seed = 3u64;
    let inputset: Vec<Vec<ArrayD<i64>>> = (0..20)
        .map(|_| vec![sample(&mut seed, &[2, 2], 0, 7), sample(&mut seed, &[2, 2], 0, 1)])
        .collect();
    let mut circ = compile_traced(&[c, out], &inputset, &CompileOptions::default()).unwrap();
    assert!(circ.ir().contains("fhe.concat"), "{}", circ.ir());
    for s in &inputset {
        assert_eq!(circ.simulate(s).unwrap(), circ.eval_clear(s).unwrap(), "{s:?}");
    }
    let got = circ.encrypt_run_decrypt(&inputset[1]).unwrap();
    assert_eq!(got, circ.eval_clear(&inputset[1]).unwrap());
}
