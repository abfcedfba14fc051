//! Inputs outside the range a program was compiled for. The passes size every intermediate value
//! from the inputs' declared (or calibrated) `fhe.range`, so a value inside the input's type but
//! outside that range would be computed wrong. The range travels with the program (each input
//! port), and every API refuses such a value the same way: the clear interpreter, simulation,
//! encryption, and the server for clear arguments. Decrypted and simulated outputs outside their
//! type are reported, never returned.

use std::sync::Arc;

use fhec::ir::{parse_module, Tensor};
use fhec::runtime::{ClearTensor, Progress};
use fhec::trace::Tracer;
use fhec::{compile, compile_traced, integer_spec, to_clear, Client, CompileOptions, ErrorKind};
use ndarray::{arr2, ArrayD, IxDyn};

/// One program per op family; input `%x` is 6 bits wide, declared in `[0, 20]` (or `[-9, 9]`).
fn families() -> Vec<(&'static str, String)> {
    let sig = |shape: &str, ty: &str, range: &str, out: &str| {
        format!("func.func @main(%x: tensor<{shape}x!fhe.{ty}<6>> {{fhe.range = {range}}}) -> tensor<{out}> {{")
    };
    vec![
        (
            "add and mul by constants",
            format!(
                r#"{}
  %c = "fhe.constant"() {{value = dense<3> : tensor<4xi3>}} : () -> tensor<4xi3>
  %0 = "fhe.mul"(%x, %c) : (tensor<4x!fhe.eint<6>>, tensor<4xi3>) -> tensor<4x!fhe.esint<9>>
  %1 = "fhe.add"(%0, %x) : (tensor<4x!fhe.esint<9>>, tensor<4x!fhe.eint<6>>) -> tensor<4x!fhe.esint<10>>
  "func.return"(%1) : (tensor<4x!fhe.esint<10>>) -> ()
}}"#,
                sig("4", "eint", "[0, 20]", "4x!fhe.esint<10>")
            ),
        ),
        (
            "matmul",
            format!(
                r#"{}
  %w = "fhe.constant"() {{value = dense<[[1, -2], [3, 1], [-1, 2]]> : tensor<3x2xi3>}} : () -> tensor<3x2xi3>
  %0 = "fhe.matmul"(%x, %w) : (tensor<1x3x!fhe.eint<6>>, tensor<3x2xi3>) -> tensor<1x2x!fhe.esint<10>>
  "func.return"(%0) : (tensor<1x2x!fhe.esint<10>>) -> ()
}}"#,
                sig("1x3", "eint", "[0, 20]", "1x2x!fhe.esint<10>")
            ),
        ),
        (
            "sum",
            format!(
                r#"{}
  %0 = "fhe.sum"(%x) : (tensor<4x!fhe.esint<6>>) -> tensor<!fhe.esint<8>>
  "func.return"(%0) : (tensor<!fhe.esint<8>>) -> ()
}}"#,
                sig("4", "esint", "[-9, 9]", "!fhe.esint<8>")
            ),
        ),
        (
            "lookup",
            format!(
                r#"{}
  %0 = "fhe.lut"(%x) {{table = dense<[{}]> : tensor<64xi64>}} : (tensor<4x!fhe.eint<6>>) -> tensor<4x!fhe.eint<7>>
  "func.return"(%0) : (tensor<4x!fhe.eint<7>>) -> ()
}}"#,
                sig("4", "eint", "[0, 20]", "4x!fhe.eint<7>"),
                (0..64)
                    .map(|i| ((i * 7) % 100).to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
        (
            "conv2d and rounding",
            format!(
                r#"{}
  %w = "fhe.constant"() {{value = dense<[[[[1, 2], [-1, 3]]]]> : tensor<1x1x2x2xi3>}} : () -> tensor<1x1x2x2xi3>
  %0 = "fhe.conv2d"(%x, %w) : (tensor<1x1x3x3x!fhe.eint<6>>, tensor<1x1x2x2xi3>) -> tensor<1x1x2x2x!fhe.esint<10>>
  %1 = "fhe.round"(%0) {{lsbs = 3}} : (tensor<1x1x2x2x!fhe.esint<10>>) -> tensor<1x1x2x2x!fhe.esint<7>>
  "func.return"(%1) : (tensor<1x1x2x2x!fhe.esint<7>>) -> ()
}}"#,
                sig("1x1x3x3", "eint", "[0, 20]", "1x1x2x2x!fhe.esint<7>")
            ),
        ),
    ]
}

fn filled(shape: &[usize], v: i64) -> Tensor {
    ArrayD::from_elem(IxDyn(shape), v)
}

#[test]
fn inputs_outside_the_compiled_range_are_refused_by_every_api() {
    for (family, src) in families() {
        let m = parse_module(&src).unwrap_or_else(|d| panic!("{family}: {}", d.render("case", &src)));
        let opts = CompileOptions {
            source: Some(src.clone()),
            ..Default::default()
        };
        let c = compile(m.clone(), integer_spec(&m).unwrap(), &opts).unwrap_or_else(|e| panic!("{family}: {e}"));
        let port = &c.program().inputs[0];
        let (lo, hi) = port.range();
        assert!(port.range.is_some(), "{family}: the program carries the declared range");
        let (_, type_max) = port.type_range();
        assert!(hi < type_max, "{family}: [{lo}, {hi}] is narrower than the port's type");
        let shape = port.shape.clone();
        let client = Client::keygen(c.interface()).unwrap();

        // inside the range: simulation equals the interpreter at both ends
        for v in [lo, hi] {
            let x = filled(&shape, v);
            assert_eq!(
                c.simulate(std::slice::from_ref(&x)).unwrap(),
                c.eval_clear(&[x]).unwrap(),
                "{family} at {v}"
            );
        }
        // inside the type, outside the range: every API refuses, with the same kind
        for v in [hi + 1, type_max] {
            let mut x = filled(&shape, lo);
            x.as_slice_mut().unwrap()[0] = v;
            let e = c.eval_clear(std::slice::from_ref(&x)).expect_err("interpreter refuses");
            assert!(e.to_string().contains("range"), "{family}: {e}");
            let e = c.simulate(std::slice::from_ref(&x)).expect_err("simulation refuses");
            assert_eq!(e.kind(), ErrorKind::Range, "{family}: {e}");
            assert!(e.to_string().contains("compiled for"), "{family}: {e}");
            let e = client.encrypt(&[vec![to_clear(&x)]]).err().expect("encryption refuses");
            assert_eq!(e.kind(), ErrorKind::Range, "{family}: {e}");
        }
    }
}

/// The tracing DSL calibrates its inputs' ranges on the input set: a value beyond them is refused
/// at encryption, and an encrypted run inside them is exact.
#[test]
fn calibrated_ranges_are_enforced_and_runs_inside_them_are_exact() {
    let t = Tracer::new();
    let x = t.input("x", &[1, 3]);
    let w = arr2(&[[2i64, -1], [1, 3], [0, 2]]).into_dyn();
    let y = (x.matmul(&w) + 4).relu().round_bits(1);
    // calibrated on [0, 5]: the input port is 3 bits wide, its range [0, 5]
    let inputset: Vec<Vec<ArrayD<i64>>> = (0..6).map(|i| vec![arr2(&[[i, 5 - i, i % 3]]).into_dyn()]).collect();
    let mut c = compile_traced(&[y], &inputset, &CompileOptions::default()).unwrap();
    let port = c.program().inputs[0].clone();
    assert_eq!((port.range, port.type_range()), (Some((0, 5)), (0, 7)));
    c.keygen(&Progress::silent()).unwrap();
    let inside = arr2(&[[5i64, 0, 5]]).into_dyn();
    assert_eq!(
        c.encrypt_run_decrypt(std::slice::from_ref(&inside)).unwrap(),
        c.eval_clear(&[inside]).unwrap()
    );
    let outside = ClearTensor::new(vec![1, 3], vec![6, 0, 0]).unwrap();
    let client: &Arc<Client> = c.client().unwrap();
    let e = client.encrypt(&[vec![outside]]).err().expect("refused");
    assert_eq!(e.kind(), ErrorKind::Range, "{e}");
}

/// Calibrated intermediate ranges are what the input set produced: an input inside the calibrated
/// input ranges can drive an intermediate value beyond them, outside the reference's domain (its
/// interpreter refuses it as an overflow; the program cannot see it on ciphertexts). Here the sum of
/// two inputs was always 7 on the input set and a user function is applied to it; compiling with a
/// safety margin puts [7, 7] inside the domain, and every API then agrees.
#[test]
fn a_calibration_margin_covers_intermediates_the_input_set_missed() {
    let trace = |margin: f64, pipeline: Option<&str>| {
        let t = Tracer::new();
        let x = t.input("x", &[2]);
        let y = x.sum(&[0], false).univariate(|v| v * v + 1);
        let inputset: Vec<Vec<ArrayD<i64>>> = [[0i64, 7], [7, 0], [3, 4]]
            .iter()
            .map(|s| vec![ndarray::arr1(s).into_dyn()])
            .collect();
        let opts = CompileOptions {
            calibration_margin: margin,
            pipeline: pipeline.map(str::to_string),
            ..Default::default()
        };
        compile_traced(&[y], &inputset, &opts).unwrap()
    };
    let x = ndarray::arr1(&[7i64, 7]).into_dyn();
    let want = ndarray::arr0(197i64).into_dyn();
    for pipeline in [None, Some("none")] {
        let plain = trace(0.0, pipeline);
        assert_eq!(plain.program().inputs[0].range(), (0, 7));
        let e = plain
            .eval_clear(std::slice::from_ref(&x))
            .expect_err("outside the reference's domain");
        assert!(e.to_string().contains("does not fit"), "{e}");
        let wide = trace(1.0, pipeline);
        assert_eq!(wide.program().inputs[0].range(), (0, 14));
        assert_eq!(wide.eval_clear(std::slice::from_ref(&x)).unwrap()[0], want);
        assert_eq!(
            wide.simulate(std::slice::from_ref(&x)).unwrap()[0],
            want,
            "{pipeline:?}"
        );
    }
    let bad = CompileOptions {
        calibration_margin: -1.0,
        ..Default::default()
    };
    let t = Tracer::new();
    let y = t.input("x", &[1]) + 1;
    let e = compile_traced(&[y], &[vec![ndarray::arr1(&[1i64]).into_dyn()]], &bad)
        .err()
        .unwrap();
    assert!(e.to_string().contains("margin"), "{e}");
}
