//! Reading (hostile files too), the float reference, and post-training quantisation: the module's
//! declared types hold every value the program can compute, and its dequantised results follow
//! the float network.

use fhec_ir::interp;
use ndarray::{ArrayD, IxDyn};
use prost::Message;

use crate::proto;
use crate::{BuildFailure, NBits, OnnxError, OnnxModel, PtqOptions, Tail};

const IRIS: &[u8] = include_bytes!("../tests/fixtures/iris_mlp.onnx");
const OPS: &[u8] = include_bytes!("../tests/fixtures/ops_mlp.onnx");

fn attr_int(name: &str, v: i64) -> proto::AttributeProto {
    proto::AttributeProto {
        name: Some(name.into()),
        r#type: Some(proto::attribute_proto::AttributeType::Int as i32),
        i: Some(v),
        ..Default::default()
    }
}

fn node(
    op: &str,
    name: &str,
    inputs: &[&str],
    outputs: &[&str],
    attrs: Vec<proto::AttributeProto>,
) -> proto::NodeProto {
    proto::NodeProto {
        op_type: Some(op.into()),
        name: Some(name.into()),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        attribute: attrs,
        ..Default::default()
    }
}

fn float_tensor(name: &str, dims: &[i64], v: &[f32]) -> proto::TensorProto {
    proto::TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(proto::tensor_proto::DataType::Float as i32),
        float_data: v.to_vec(),
        ..Default::default()
    }
}

fn input(name: &str, dims: &[i64]) -> proto::ValueInfoProto {
    use proto::tensor_shape_proto::{dimension, Dimension};
    let dim = dims
        .iter()
        .map(|&d| Dimension {
            value: Some(if d < 0 {
                dimension::Value::DimParam("batch".into())
            } else {
                dimension::Value::DimValue(d)
            }),
            ..Default::default()
        })
        .collect();
    proto::ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(proto::TypeProto {
            value: Some(proto::type_proto::Value::TensorType(proto::type_proto::Tensor {
                elem_type: Some(1),
                shape: Some(proto::TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn output(name: &str) -> proto::ValueInfoProto {
    proto::ValueInfoProto {
        name: Some(name.into()),
        ..Default::default()
    }
}

fn model_bytes(
    nodes: Vec<proto::NodeProto>,
    inits: Vec<proto::TensorProto>,
    input_dims: &[i64],
    out: &str,
    opset: i64,
) -> Vec<u8> {
    proto::ModelProto {
        ir_version: Some(8),
        opset_import: vec![proto::OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(opset),
        }],
        graph: Some(proto::GraphProto {
            node: nodes,
            initializer: inits,
            input: vec![input("x", input_dims)],
            output: vec![output(out)],
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

/// `y = relu(x·Wᵀ + b)` then `z = y·V`, nodes listed out of order, one unused node.
fn small() -> Vec<u8> {
    model_bytes(
        vec![
            node("MatMul", "second", &["h", "V"], &["z"], vec![]),
            node("Relu", "act", &["g"], &["h"], vec![]),
            node("Sigmoid", "unused", &["x"], &["u"], vec![]),
            node("Gemm", "first", &["x", "W", "b"], &["g"], vec![attr_int("transB", 1)]),
        ],
        vec![
            float_tensor("W", &[3, 2], &[1.0, -1.0, 0.5, 2.0, -2.0, 0.25]),
            float_tensor("b", &[3], &[0.5, -1.0, 0.0]),
            float_tensor("V", &[3, 2], &[1.0, 0.0, -1.0, 2.0, 0.5, 0.5]),
        ],
        &[-1, 2],
        "z",
        17,
    )
}

#[test]
fn graphs_are_ordered_and_pruned() {
    let m = OnnxModel::from_bytes(&small()).unwrap();
    assert_eq!(m.ops(), vec!["Gemm", "Relu", "MatMul"]);
    assert_eq!(m.inputs()[0].dims, vec![None, Some(2)]);
    let dot = m.to_dot();
    assert!(dot.contains("Gemm first") && dot.contains("->"), "{dot}");
}

#[test]
fn the_float_reference_computes_the_network() {
    let m = OnnxModel::from_bytes(&small()).unwrap();
    let x = ArrayD::from_shape_vec(IxDyn(&[2, 2]), vec![1.0, 2.0, -1.0, 0.5]).unwrap();
    let z = &m.eval(std::slice::from_ref(&x)).unwrap()[0];
    let w = [[1.0, -1.0], [0.5, 2.0], [-2.0, 0.25]];
    let b = [0.5, -1.0, 0.0];
    let v = [[1.0, 0.0], [-1.0, 2.0], [0.5, 0.5]];
    for r in 0..2 {
        let h: Vec<f64> = (0..3)
            .map(|o| (w[o][0] * x[[r, 0]] + w[o][1] * x[[r, 1]] + b[o]).max(0.0))
            .collect();
        for c in 0..2 {
            let want: f64 = (0..3).map(|o| h[o] * v[o][c]).sum();
            assert!((z[[r, c]] - want).abs() < 1e-12, "{z:?}");
        }
    }
}

#[test]
fn hostile_and_unsupported_files_are_errors() {
    let err = |b: &[u8]| OnnxModel::from_bytes(b).expect_err("refused").to_string();
    assert!(err(b"not a protobuf at all \xff\xff\xff").contains("not an ONNX model"));
    // a cycle
    let cyc = model_bytes(
        vec![
            node("Relu", "a", &["x", "c"], &["b"], vec![]),
            node("Relu", "b", &["b"], &["c"], vec![]),
        ],
        vec![],
        &[-1, 2],
        "c",
        17,
    );
    assert!(err(&cyc).contains("cycle"), "{}", err(&cyc));
    // a tensor whose data does not fill its dimensions, and one with overflowing dimensions
    let short = model_bytes(
        vec![node("MatMul", "m", &["x", "W"], &["y"], vec![])],
        vec![float_tensor("W", &[2, 3], &[1.0; 5])],
        &[-1, 2],
        "y",
        17,
    );
    assert!(err(&short).contains("5 values"), "{}", err(&short));
    let huge = model_bytes(
        vec![node("MatMul", "m", &["x", "W"], &["y"], vec![])],
        vec![float_tensor("W", &[1 << 40, 1 << 40], &[])],
        &[-1, 2],
        "y",
        17,
    );
    assert!(err(&huge).contains("more than"), "{}", err(&huge));
    // external data
    let mut ext = float_tensor("W", &[2, 2], &[]);
    ext.data_location = Some(proto::tensor_proto::DataLocation::External as i32);
    let ext = model_bytes(
        vec![node("MatMul", "m", &["x", "W"], &["y"], vec![])],
        vec![ext],
        &[-1, 2],
        "y",
        17,
    );
    assert!(err(&ext).contains("external"), "{}", err(&ext));
    // an operand nobody produces, an old opset
    let dangling = model_bytes(
        vec![node("Relu", "r", &["nope"], &["y"], vec![])],
        vec![],
        &[-1, 2],
        "y",
        17,
    );
    assert!(err(&dangling).contains("\"nope\""), "{}", err(&dangling));
    assert!(err(&model_bytes(vec![], vec![], &[-1, 2], "x", 6)).contains("opset 6"));
    // an op fhec does not read: named with its opset and the supported list
    let lstm = model_bytes(
        vec![node("LSTM", "rnn", &["x"], &["y"], vec![])],
        vec![],
        &[-1, 2],
        "y",
        17,
    );
    let m = OnnxModel::from_bytes(&lstm).unwrap();
    let x = ArrayD::zeros(IxDyn(&[1, 2]));
    let e = m.eval(std::slice::from_ref(&x)).unwrap_err().to_string();
    assert!(
        e.contains("LSTM node \"rnn\" (opset 17) is not supported") && e.contains("Gemm"),
        "{e}"
    );
    let e = m.quantize(&x, &PtqOptions::default()).unwrap_err();
    assert!(matches!(e, OnnxError::Unsupported(_)), "{e}");
}

/// Random calibration rows in `[lo, hi]` per feature.
/// Every role at `n_bits`, accumulators rounded to `rounding_bits`, no windows, the output whole.
fn ptq_options(n_bits: u32, rounding_bits: u32) -> PtqOptions {
    PtqOptions {
        n_bits: NBits::all(n_bits),
        rounding_bits,
        windows: false,
        output_parts: 1,
    }
}

fn rows(n: usize, lo: &[f64], hi: &[f64], seed: u64) -> ArrayD<f64> {
    let mut s = seed;
    let mut next = || {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (s >> 11) as f64 / (1u64 << 53) as f64
    };
    let f = lo.len();
    let v: Vec<f64> = (0..n * f)
        .map(|i| lo[i % f] + (hi[i % f] - lo[i % f]) * next())
        .collect();
    ArrayD::from_shape_vec(IxDyn(&[n, f]), v).unwrap()
}

/// `count` integer inputs of `q`'s module over its whole input range (not only calibration's): the
/// range's two ends, both alternating, then pseudo-random ones.
fn whole_range_inputs(q: &crate::QuantizedNetwork, count: usize) -> Vec<ArrayD<i64>> {
    let f = q.module.entry().unwrap();
    let (lo, hi) = f.arg_range(0).unwrap();
    let n: usize = f.ty(f.args[0].value).shape.iter().product();
    let mut s = 7u64;
    (0..count)
        .map(|case| {
            let x: Vec<i64> = (0..n)
                .map(|i| {
                    s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    match case {
                        0 => lo,
                        1 => hi,
                        2 => {
                            if i % 2 == 0 {
                                lo
                            } else {
                                hi
                            }
                        }
                        _ => lo + ((s >> 33) as i64).rem_euclid(hi - lo + 1),
                    }
                })
                .collect();
            ArrayD::from_shape_vec(IxDyn(&[1, n]), x).unwrap()
        })
        .collect()
}

/// Runs the module's clear interpreter on `count` integer inputs over the whole input range
/// ([`whole_range_inputs`]): every intermediate value must fit its declared type (the interpreter
/// checks), so the quantised program is exact on every input it accepts.
fn exact_on_the_whole_input_range(q: &crate::QuantizedNetwork, count: usize) {
    let v = fhec_ir::verify(&q.module).unwrap();
    for (case, x) in whole_range_inputs(q, count).into_iter().enumerate() {
        interp::eval(&v, &[x]).unwrap_or_else(|e| panic!("case {case}: {e}"));
    }
}

/// Dequantised outputs of the integer program on the calibration rows against the float network.
fn dequantised(q: &crate::QuantizedNetwork, x: &ArrayD<f64>) -> Vec<Vec<f64>> {
    let v = fhec_ir::verify(&q.module).unwrap();
    let fhec_quant::InputSpec::Features { quantizer, .. } = &q.spec.inputs[0] else {
        panic!("a network takes features")
    };
    let f: usize = x.shape()[1..].iter().product();
    let flat: Vec<f64> = x.iter().copied().collect();
    let qx = quantizer.quantize(&flat).unwrap().values;
    let dq = q.spec.outputs[0].as_ref().unwrap();
    qx.chunks(f)
        .map(|r| {
            let a = ArrayD::from_shape_vec(IxDyn(&[1, f]), r.to_vec()).unwrap();
            let out = interp::eval(&v, &[a]).unwrap();
            let ints: Vec<i64> = out[0].iter().copied().collect();
            // an output in parts: their sums
            let (values, _) = q.spec.output_values(0, &ints, ints.len()).unwrap();
            values
                .iter()
                .enumerate()
                .map(|(c, &v)| dq.scale[c] * v as f64 + dq.offset[c])
                .collect()
        })
        .collect()
}

/// Windows: where a layer's tables saturate (sigmoids requantised to 3 bits), the accumulator is
/// rounded by fewer bits than `rounding_bits` asks for, as long as every table changes within
/// `2^rounding_bits` entries and the rounded value stays `WINDOW_TOP_BITS` wider at most; the
/// network stays exact on every input and the finer rounding brings it closer to the float one.
#[test]
fn windows_round_finer_where_tables_saturate() {
    let m = OnnxModel::from_bytes(IRIS).unwrap();
    let calib = rows(300, &[4.3, 2.0, 1.0, 0.1], &[7.9, 4.4, 6.9, 2.5], 1);
    let bits = NBits {
        model_inputs: 7,
        op_inputs: 3,
        op_weights: 4,
        model_outputs: 8,
    };
    let with = |windows| {
        m.quantize(
            &calib,
            &PtqOptions {
                n_bits: bits,
                rounding_bits: 3,
                windows,
                output_parts: 1,
            },
        )
        .unwrap()
    };
    let (plain, win) = (with(false), with(true));
    let lookups = |q: &crate::QuantizedNetwork| -> Vec<(u32, u32)> {
        q.layers
            .iter()
            .filter(|l| l.kind == "lookup")
            .map(|l| (l.bits, l.rounded_lsbs))
            .collect()
    };
    let (lp, lw) = (lookups(&plain), lookups(&win));
    assert!(lp.iter().all(|&(b, _)| b <= 4), "{lp:?}");
    assert!(lw.iter().all(|&(b, _)| b <= 3 + 1 + crate::WINDOW_TOP_BITS), "{lw:?}");
    assert!(
        lw.iter().zip(&lp).all(|(w, p)| w.1 <= p.1) && lw.iter().zip(&lp).any(|(w, p)| w.1 < p.1),
        "windows round finer: {lw:?} against {lp:?}"
    );
    exact_on_the_whole_input_range(&win, 300);
    // closer to the float network on the calibration rows
    let float = &m.eval(std::slice::from_ref(&calib)).unwrap()[0];
    let err = |q: &crate::QuantizedNetwork| -> f64 {
        let d = dequantised(q, &calib);
        let n = float.len() as f64;
        d.iter()
            .flatten()
            .zip(float.iter())
            .map(|(a, b)| (a - b).abs())
            .sum::<f64>()
            / n
    };
    assert!(err(&win) < err(&plain), "{} vs {}", err(&win), err(&plain));
}

#[test]
fn iris_network_quantises_exactly_and_accurately() {
    let m = OnnxModel::from_bytes(IRIS).unwrap();
    assert_eq!(m.ops(), vec!["Gemm", "Sigmoid", "Gemm", "Sigmoid", "Gemm"]);
    let calib = rows(300, &[4.3, 2.0, 1.0, 0.1], &[7.9, 4.4, 6.9, 2.5], 1);
    for (bits, rounding) in [
        (NBits::all(8), 7),
        (
            NBits {
                model_inputs: 7,
                op_inputs: 3,
                op_weights: 4,
                model_outputs: 8,
            },
            6,
        ),
    ] {
        let q = m
            .quantize(
                &calib,
                &PtqOptions {
                    n_bits: bits,
                    rounding_bits: rounding,
                    windows: false,
                    output_parts: 1,
                },
            )
            .unwrap();
        assert_eq!(q.tail, None);
        assert_eq!(q.output_shape, vec![3]);
        let kinds: Vec<&str> = q.layers.iter().map(|l| l.kind.as_str()).collect();
        assert_eq!(kinds, ["accumulator", "lookup", "accumulator", "lookup", "accumulator"]);
        assert!(q
            .layers
            .iter()
            .filter(|l| l.kind == "lookup")
            .all(|l| l.bits <= rounding + 1));
        exact_on_the_whole_input_range(&q, 300);
        if bits.op_inputs == 8 {
            let float = &m.eval(std::slice::from_ref(&calib)).unwrap()[0];
            let deq = dequantised(&q, &calib);
            let mut agree = 0;
            for (r, d) in deq.iter().enumerate() {
                let am = |v: &mut dyn Iterator<Item = f64>| {
                    v.enumerate()
                        .fold((0, f64::NEG_INFINITY), |b, (i, x)| if x > b.1 { (i, x) } else { b })
                        .0
                };
                agree += (am(&mut d.iter().copied()) == am(&mut float.row_iter(r))) as usize;
            }
            assert!(
                agree * 100 >= 95 * deq.len(),
                "argmax agrees on {agree} of {}",
                deq.len()
            );
        }
    }
}

trait RowIter {
    fn row_iter(&self, r: usize) -> Box<dyn Iterator<Item = f64> + '_>;
}

impl RowIter for ArrayD<f64> {
    fn row_iter(&self, r: usize) -> Box<dyn Iterator<Item = f64> + '_> {
        Box::new(self.index_axis(ndarray::Axis(0), r).into_iter().copied())
    }
}

#[test]
fn a_network_of_many_ops_quantises_exactly() {
    let m = OnnxModel::from_bytes(OPS).unwrap();
    let calib = rows(200, &[-2.5; 12], &[2.5; 12], 3)
        .into_shape_with_order(IxDyn(&[200, 3, 4]))
        .unwrap();
    let q = m.quantize(&calib, &PtqOptions::default()).unwrap();
    assert_eq!(q.tail, Some(Tail::Softmax));
    assert_eq!(q.input_shape, vec![3, 4]);
    exact_on_the_whole_input_range(&q, 200);
    // the logits before the softmax, dequantised, follow the float network's
    let float = &m.eval(std::slice::from_ref(&calib)).unwrap()[0];
    let deq = dequantised(&q, &calib);
    let mut worst = 0f64;
    for (r, d) in deq.iter().enumerate() {
        let m = d.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
        let s: f64 = d.iter().map(|v| (v - m).exp()).sum();
        for (c, v) in d.iter().enumerate() {
            worst = worst.max(((v - m).exp() / s - float[[r, c]]).abs());
        }
    }
    assert!(worst < 0.05, "softmax differs by {worst}");
}

/// Output parts ([`PtqOptions::output_parts`]): the output accumulator returned as partial sums
/// (concatenated) adds up to the whole one on every input tried (the input box's ends included), the
/// parts no wider than the whole; the spec says how many; more parts than the layer has inputs are
/// capped; 0 or 65 parts, and a network whose output is not a linear layer's accumulator, are refused.
#[test]
fn output_parts_add_up_to_the_whole_output() {
    let opts = |output_parts| PtqOptions {
        n_bits: NBits::all(4),
        rounding_bits: 4,
        windows: false,
        output_parts,
    };
    let iris = rows(300, &[4.3, 2.0, 1.0, 0.1], &[7.9, 4.4, 6.9, 2.5], 1);
    let ops = rows(200, &[-2.5; 12], &[2.5; 12], 3)
        .into_shape_with_order(IxDyn(&[200, 3, 4]))
        .unwrap();
    // iris ends in a Gemm of 3 inputs; ops_mlp in a MatMul of 6, an Add and a Softmax
    for (bytes, calib, parts, want) in [(IRIS, &iris, 2, 2), (IRIS, &iris, 9, 3), (OPS, &ops, 4, 4)] {
        let m = OnnxModel::from_bytes(bytes).unwrap();
        let whole = m.quantize(calib, &opts(1)).unwrap();
        let split = m.quantize(calib, &opts(parts)).unwrap();
        assert_eq!(split.spec.outputs[0].as_ref().unwrap().parts, want);
        assert_eq!(split.output_shape, whole.output_shape);
        assert_eq!(split.tail, whole.tail);
        let part_bits = split.layers.iter().find(|l| l.kind == "output parts").unwrap().bits;
        let whole_bits = whole.layers.iter().rfind(|l| l.kind == "accumulator").unwrap().bits;
        assert!(part_bits <= whole_bits, "{part_bits} > {whole_bits}");
        let (vw, vs) = (
            fhec_ir::verify(&whole.module).unwrap(),
            fhec_ir::verify(&split.module).unwrap(),
        );
        for (case, x) in whole_range_inputs(&whole, 300).into_iter().enumerate() {
            let a: Vec<i64> = interp::eval(&vw, std::slice::from_ref(&x)).unwrap()[0]
                .iter()
                .copied()
                .collect();
            let b: Vec<i64> = interp::eval(&vs, &[x]).unwrap()[0].iter().copied().collect();
            assert_eq!(b.len(), want as usize * a.len());
            let (sums, c) = split.spec.output_values(0, &b, b.len()).unwrap();
            assert_eq!((sums, c), (a.clone(), a.len()), "case {case}");
        }
        assert_eq!(dequantised(&split, calib), dequantised(&whole, calib));
    }
    // one output of mixed-sign weights, a part per input: the parts of non-negative weights stay
    // signed, as the whole is
    let reg = model_bytes(
        vec![node("Gemm", "g", &["x", "W", "b"], &["y"], vec![attr_int("transB", 1)])],
        vec![
            float_tensor("W", &[1, 4], &[1.0, 2.0, -1.5, 0.5]),
            float_tensor("b", &[1], &[0.25]),
        ],
        &[-1, 4],
        "y",
        17,
    );
    let m = OnnxModel::from_bytes(&reg).unwrap();
    let x = rows(60, &[0.0; 4], &[3.0; 4], 5);
    let (whole, split) = (m.quantize(&x, &opts(1)).unwrap(), m.quantize(&x, &opts(4)).unwrap());
    assert_eq!(split.spec.outputs[0].as_ref().unwrap().parts, 4);
    let kinds: Vec<&str> = split.layers.iter().map(|l| l.kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["output parts"],
        "the whole accumulator's row gives way to the parts'"
    );
    let (vw, vs) = (
        fhec_ir::verify(&whole.module).unwrap(),
        fhec_ir::verify(&split.module).unwrap(),
    );
    for x in whole_range_inputs(&whole, 50) {
        let a: Vec<i64> = interp::eval(&vw, std::slice::from_ref(&x)).unwrap()[0]
            .iter()
            .copied()
            .collect();
        let b: Vec<i64> = interp::eval(&vs, &[x]).unwrap()[0].iter().copied().collect();
        assert_eq!(split.spec.output_values(0, &b, 4).unwrap().0, a);
    }
    let m = OnnxModel::from_bytes(IRIS).unwrap();
    for bad in [0, 65] {
        let e = m.quantize(&iris, &opts(bad)).unwrap_err().to_string();
        assert!(e.contains("output_parts must be in 1..=64"), "{e}");
    }
    // a Gemm then a Sigmoid: the output is a lookup's
    let act = model_bytes(
        vec![
            node("Gemm", "g", &["x", "W", "b"], &["g"], vec![attr_int("transB", 1)]),
            node("Sigmoid", "s", &["g"], &["y"], vec![]),
        ],
        vec![
            float_tensor("W", &[3, 2], &[1.0, -1.0, 0.5, 2.0, -2.0, 0.25]),
            float_tensor("b", &[3], &[0.5, -1.0, 0.0]),
        ],
        &[-1, 2],
        "y",
        17,
    );
    let m = OnnxModel::from_bytes(&act).unwrap();
    let x = rows(50, &[-1.0, -1.0], &[1.0, 1.0], 2);
    assert!(m.quantize(&x, &opts(1)).is_ok());
    let e = m.quantize(&x, &opts(2)).unwrap_err().to_string();
    assert!(e.contains("must be a linear layer's accumulator"), "{e}");
}

#[test]
fn bad_options_and_calibration_sets_are_errors() {
    let m = OnnxModel::from_bytes(IRIS).unwrap();
    let calib = rows(10, &[0.0; 4], &[1.0; 4], 1);
    let bad = |o: PtqOptions| m.quantize(&calib, &o).unwrap_err().to_string();
    assert!(bad(ptq_options(0, 6)).contains("model_inputs"));
    assert!(bad(ptq_options(8, 0)).contains("rounding"));
    let mut nan = calib.clone();
    nan[[3, 1]] = f64::NAN;
    assert!(m
        .quantize(&nan, &PtqOptions::default())
        .unwrap_err()
        .to_string()
        .contains("NaN"));
    let wrong = rows(10, &[0.0; 5], &[1.0; 5], 1);
    assert!(matches!(
        m.quantize(&wrong, &PtqOptions::default()),
        Err(OnnxError::Shape(_))
    ));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 64, ..Default::default() })]
    /// An ONNX file is outside data: damaged fixtures are refused or read, never a panic, and what
    /// reads also evaluates and quantises without panicking.
    #[test]
    fn damaged_files_never_panic(pos in 0usize..3000, byte in 0u8..=255, cut in 0usize..3000, which in 0usize..2) {
        let mut b = [IRIS, OPS][which].to_vec();
        let p = pos % b.len();
        b[p] = byte;
        b.truncate(b.len() - cut % b.len());
        if let Ok(m) = OnnxModel::from_bytes(&b) {
            let f: usize = m.inputs().first().map_or(1, |i| i.dims.iter().skip(1).map(|d| d.unwrap_or(1)).product());
            let x = rows(4, &vec![-1.0; f.min(64)], &vec![1.0; f.min(64)], 1);
            let _ = m.eval(std::slice::from_ref(&x));
            let _ = m.quantize(&x, &PtqOptions::default());
        }
    }
}

/// BatchNormalization after a linear layer (inference): the float reference applies it per channel;
/// quantisation folds it into the accumulator's scale and offset (nothing runs encrypted for it).
#[test]
fn batch_normalization_folds_into_the_accumulator() {
    let bytes = model_bytes(
        vec![
            node("Gemm", "fc", &["x", "W", "b"], &["g"], vec![attr_int("transB", 1)]),
            node(
                "BatchNormalization",
                "bn",
                &["g", "s", "beta", "mean", "var"],
                &["n"],
                vec![],
            ),
            node("Relu", "act", &["n"], &["h"], vec![]),
            node("Gemm", "out", &["h", "V"], &["y"], vec![]),
        ],
        vec![
            float_tensor("W", &[3, 2], &[1.0, -1.0, 0.5, 2.0, -2.0, 0.25]),
            float_tensor("b", &[3], &[0.5, -1.0, 0.0]),
            float_tensor("s", &[3], &[2.0, 0.5, -1.0]),
            float_tensor("beta", &[3], &[0.1, 0.0, -0.2]),
            float_tensor("mean", &[3], &[0.3, -0.5, 1.0]),
            float_tensor("var", &[3], &[4.0, 0.25, 1.0]),
            float_tensor("V", &[3, 2], &[1.0, 0.0, -1.0, 2.0, 0.5, 0.5]),
        ],
        &[-1, 2],
        "y",
        17,
    );
    let m = OnnxModel::from_bytes(&bytes).unwrap();
    let x = rows(200, &[-2.0, -2.0], &[2.0, 2.0], 5);
    let y = &m.eval(std::slice::from_ref(&x)).unwrap()[0];
    let w = [[1.0, -1.0], [0.5, 2.0], [-2.0, 0.25]];
    let (b, s, beta, mean, var) = (
        [0.5, -1.0, 0.0],
        [2.0, 0.5, -1.0],
        [0.1, 0.0, -0.2],
        [0.3, -0.5, 1.0],
        [4.0, 0.25, 1.0],
    );
    let v = [[1.0, 0.0], [-1.0, 2.0], [0.5, 0.5]];
    for r in 0..3 {
        let h: Vec<f64> = (0..3)
            .map(|o| {
                let g = w[o][0] * x[[r, 0]] + w[o][1] * x[[r, 1]] + b[o];
                (s[o] * (g - mean[o]) / (var[o] + 1e-5f64).sqrt() + beta[o]).max(0.0)
            })
            .collect();
        for c in 0..2 {
            let want: f64 = (0..3).map(|o| h[o] * v[o][c]).sum();
            assert!((y[[r, c]] - want).abs() < 1e-6, "{} vs {want}", y[[r, c]]);
            // the constants are f32
        }
    }
    // (8 bits: this test is about the folding, not about the coarseness of 5-bit defaults)
    let opts = ptq_options(8, 8);
    let q = m.quantize(&x, &opts).unwrap();
    let kinds: Vec<&str> = q.layers.iter().map(|l| l.kind.as_str()).collect();
    assert_eq!(kinds, ["accumulator", "lookup", "accumulator"]);
    exact_on_the_whole_input_range(&q, 200);
    let deq = dequantised(&q, &x);
    let scale = y.iter().fold(0f64, |a, v| a.max(v.abs()));
    for (r, d) in deq.iter().enumerate() {
        for c in 0..2 {
            assert!(
                (d[c] - y[[r, c]]).abs() < 0.1 * scale,
                "row {r}: {d:?} vs {:?}",
                y.row_iter(r).collect::<Vec<_>>()
            );
        }
    }
}

/// Graphs that read fine but ask for impossible shapes are errors, not panics (found in review:
/// a BatchNormalization on a rank-1 tensor, a Reshape to an overflowing shape).
#[test]
fn impossible_shapes_are_errors() {
    let bn = model_bytes(
        vec![node(
            "BatchNormalization",
            "bn",
            &["x", "s", "s", "s", "s"],
            &["y"],
            vec![],
        )],
        vec![float_tensor("s", &[1], &[1.0])],
        &[-1],
        "y",
        17,
    );
    let m = OnnxModel::from_bytes(&bn).unwrap();
    let x = ArrayD::from_shape_vec(IxDyn(&[3]), vec![0.0, 1.0, 2.0]).unwrap();
    assert!(m.eval(std::slice::from_ref(&x)).is_err());
    assert!(m.quantize(&x, &PtqOptions::default()).is_err());
    let huge = proto::TensorProto {
        name: Some("shape".into()),
        dims: vec![2],
        data_type: Some(proto::tensor_proto::DataType::Int64 as i32),
        int64_data: vec![1 << 40, 1 << 40],
        ..Default::default()
    };
    let reshape = model_bytes(
        vec![node("Reshape", "r", &["x", "shape"], &["y"], vec![])],
        vec![huge],
        &[-1, 2],
        "y",
        17,
    );
    let m = OnnxModel::from_bytes(&reshape).unwrap();
    let x = rows(3, &[0.0; 2], &[1.0; 2], 1);
    let e = m.eval(std::slice::from_ref(&x)).unwrap_err().to_string();
    assert!(e.contains("cannot reshape"), "{e}");
    assert!(m.quantize(&x, &PtqOptions::default()).is_err());
}

/// Fuzz finding: a graph output naming a node's second output (Dropout's mask) passed the reader and
/// panicked at evaluation, where only first outputs are computed. It is refused when read.
#[test]
fn secondary_outputs_are_refused_when_read() {
    let dropout_mask = model_bytes(
        vec![node("Dropout", "d", &["x"], &["y", "mask"], vec![])],
        vec![],
        &[-1, 2],
        "mask",
        17,
    );
    let e = OnnxModel::from_bytes(&dropout_mask).unwrap_err().to_string();
    assert!(e.contains("secondary output"), "{e}");
    let read_by_a_node = model_bytes(
        vec![
            node("Dropout", "d", &["x"], &["y", "mask"], vec![]),
            node("Relu", "r", &["mask"], &["z"], vec![]),
        ],
        vec![],
        &[-1, 2],
        "z",
        17,
    );
    let e = OnnxModel::from_bytes(&read_by_a_node).unwrap_err().to_string();
    assert!(e.contains("secondary output"), "{e}");
    // an output that is the graph input itself still evaluates
    let passthrough = model_bytes(vec![], vec![], &[-1, 2], "x", 17);
    let m = OnnxModel::from_bytes(&passthrough).unwrap();
    let x = rows(3, &[0.0; 2], &[1.0; 2], 1);
    assert_eq!(m.eval(std::slice::from_ref(&x)).unwrap()[0], x);
}

fn attr_ints(name: &str, v: &[i64]) -> proto::AttributeProto {
    proto::AttributeProto {
        name: Some(name.into()),
        r#type: Some(proto::attribute_proto::AttributeType::Ints as i32),
        ints: v.to_vec(),
        ..Default::default()
    }
}

/// Deterministic weights in [-1, 1].
fn weights(name: &str, dims: &[i64], seed: u64) -> proto::TensorProto {
    let n: i64 = dims.iter().product();
    let mut s = seed;
    let v: Vec<f32> = (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f64 / (1u64 << 24) as f64 * 2.0 - 1.0) as f32
        })
        .collect();
    float_tensor(name, dims, &v)
}

fn run1(m: &OnnxModel, x: ArrayD<f64>) -> Vec<f64> {
    m.eval(&[x]).unwrap()[0].iter().copied().collect()
}

#[test]
fn convolutions_and_pools_follow_onnx() {
    let x = ArrayD::from_shape_vec(IxDyn(&[1, 1, 3, 3]), (0..9).map(|v| v as f64).collect()).unwrap();
    let one = |n: proto::NodeProto, inits: Vec<proto::TensorProto>| {
        OnnxModel::from_bytes(&model_bytes(vec![n], inits, &[-1, 1, 3, 3], "y", 17)).unwrap()
    };
    // the diagonal sums of each 2 × 2 window, plus a bias of 1
    let conv = one(
        node("Conv", "c", &["x", "w", "b"], &["y"], vec![]),
        vec![
            float_tensor("w", &[1, 1, 2, 2], &[1.0, 0.0, 0.0, 1.0]),
            float_tensor("b", &[1], &[1.0]),
        ],
    );
    assert_eq!(run1(&conv, x.clone()), [5.0, 7.0, 11.0, 13.0]);
    // padding 1, stride 2: the windows at (−1, −1), (−1, 1), (1, −1), (1, 1)
    let padded = one(
        node(
            "Conv",
            "c",
            &["x", "w"],
            &["y"],
            vec![attr_ints("pads", &[1, 1, 1, 1]), attr_ints("strides", &[2, 2])],
        ),
        vec![float_tensor("w", &[1, 1, 2, 2], &[1.0, 0.0, 0.0, 1.0])],
    );
    assert_eq!(run1(&padded, x.clone()), [0.0, 2.0, 6.0, 12.0]);
    let max = one(
        node(
            "MaxPool",
            "p",
            &["x"],
            &["y"],
            vec![
                attr_ints("kernel_shape", &[2, 2]),
                attr_ints("strides", &[2, 2]),
                attr_int("ceil_mode", 1),
            ],
        ),
        vec![],
    );
    assert_eq!(run1(&max, x.clone()), [4.0, 5.0, 7.0, 8.0]);
    let avg = |include: i64| {
        one(
            node(
                "AveragePool",
                "p",
                &["x"],
                &["y"],
                vec![
                    attr_ints("kernel_shape", &[2, 2]),
                    attr_ints("pads", &[1, 1, 0, 0]),
                    attr_ints("strides", &[2, 2]),
                    attr_int("count_include_pad", include),
                ],
            ),
            vec![],
        )
    };
    assert_eq!(run1(&avg(0), x.clone()), [0.0, 1.5, 4.5, 6.0]);
    assert_eq!(run1(&avg(1), x.clone()), [0.0, 0.75, 2.25, 6.0]);
    let global = one(node("GlobalAveragePool", "p", &["x"], &["y"], vec![]), vec![]);
    assert_eq!(run1(&global, x.clone()), [4.0]);
    // SAME_UPPER keeps the size at stride 1
    let same = OnnxModel::from_bytes(&model_bytes(
        vec![node(
            "MaxPool",
            "p",
            &["x"],
            &["y"],
            vec![
                attr_ints("kernel_shape", &[2, 2]),
                proto::AttributeProto {
                    name: Some("auto_pad".into()),
                    r#type: Some(proto::attribute_proto::AttributeType::String as i32),
                    s: Some(b"SAME_UPPER".to_vec()),
                    ..Default::default()
                },
            ],
        )],
        vec![],
        &[-1, 1, 3, 3],
        "y",
        17,
    ))
    .unwrap();
    assert_eq!(run1(&same, x.clone()), [4.0, 5.0, 5.0, 7.0, 8.0, 8.0, 7.0, 8.0, 8.0]);
    // hostile windows are errors
    for attrs in [
        vec![attr_ints("kernel_shape", &[4, 4])],
        vec![attr_ints("kernel_shape", &[2, 2]), attr_ints("strides", &[0, 1])],
        vec![
            attr_ints("kernel_shape", &[2, 2]),
            attr_ints("pads", &[1 << 40, 0, 0, 0]),
        ],
        vec![attr_ints("kernel_shape", &[2])],
    ] {
        let m = one(node("MaxPool", "p", &["x"], &["y"], attrs), vec![]);
        assert!(m.eval(std::slice::from_ref(&x)).is_err());
    }
}

/// A small convolutional network (2-D: Conv with padding and stride, MaxPool, grouped Conv,
/// AveragePool, GlobalAveragePool; 1-D: dilated grouped Conv, MaxPool) quantises exactly and
/// follows the float network.
#[test]
fn convolutional_networks_quantise_exactly() {
    let two_d = model_bytes(
        vec![
            node(
                "Conv",
                "c1",
                &["x", "w1", "b1"],
                &["a"],
                vec![attr_ints("pads", &[1, 1, 1, 1]), attr_ints("strides", &[2, 2])],
            ),
            node("Relu", "r1", &["a"], &["ar"], vec![]),
            node(
                "MaxPool",
                "m1",
                &["ar"],
                &["p"],
                vec![attr_ints("kernel_shape", &[2, 2])],
            ),
            node("Conv", "c2", &["p", "w2"], &["c"], vec![attr_int("group", 2)]),
            node("Relu", "r2", &["c"], &["cr"], vec![]),
            node(
                "AveragePool",
                "a1",
                &["cr"],
                &["q"],
                vec![attr_ints("kernel_shape", &[2, 2]), attr_ints("pads", &[0, 0, 1, 1])],
            ),
            node("GlobalAveragePool", "g", &["q"], &["gq"], vec![]),
            node("Flatten", "f", &["gq"], &["fl"], vec![]),
            node("Gemm", "fc", &["fl", "w3", "b3"], &["y"], vec![attr_int("transB", 1)]),
        ],
        vec![
            weights("w1", &[4, 2, 3, 3], 1),
            weights("b1", &[4], 2),
            weights("w2", &[4, 2, 2, 2], 3),
            weights("w3", &[3, 4], 4),
            weights("b3", &[3], 5),
        ],
        &[-1, 2, 8, 8],
        "y",
        17,
    );
    let one_d = model_bytes(
        vec![
            node(
                "Conv",
                "c1",
                &["x", "w1"],
                &["a"],
                vec![
                    attr_int("group", 2),
                    attr_ints("dilations", &[2]),
                    attr_ints("pads", &[1, 1]),
                ],
            ),
            node("Relu", "r1", &["a"], &["ar"], vec![]),
            node(
                "MaxPool",
                "m1",
                &["ar"],
                &["p"],
                vec![attr_ints("kernel_shape", &[2]), attr_ints("strides", &[2])],
            ),
            node("Flatten", "f", &["p"], &["fl"], vec![]),
            node("Gemm", "fc", &["fl", "w2"], &["y"], vec![attr_int("transB", 1)]),
        ],
        vec![weights("w1", &[4, 1, 3], 6), weights("w2", &[2, 16], 7)],
        &[-1, 2, 10],
        "y",
        17,
    );
    for (bytes, shape) in [(two_d, vec![2usize, 8, 8]), (one_d, vec![2, 10])] {
        let m = OnnxModel::from_bytes(&bytes).unwrap();
        let f: usize = shape.iter().product();
        let mut dims = vec![300];
        dims.extend(&shape);
        let x = rows(300, &vec![-1.0; f], &vec![1.0; f], 9)
            .into_shape_with_order(IxDyn(&dims))
            .unwrap();
        let opts = ptq_options(6, 6);
        let q = m.quantize(&x, &opts).unwrap();
        assert_eq!(q.input_shape, shape);
        exact_on_the_whole_input_range(&q, 40);
        let y = &m.eval(std::slice::from_ref(&x)).unwrap()[0];
        let deq = dequantised(&q, &x);
        let scale = y.iter().fold(0f64, |a, v| a.max(v.abs()));
        let mut worst = 0f64;
        for (r, d) in deq.iter().enumerate() {
            for (c, v) in d.iter().enumerate() {
                worst = worst.max((v - y[[r, c]]).abs() / scale);
            }
        }
        assert!(
            worst < 0.15,
            "{shape:?}: dequantised outputs differ by {worst} of the range"
        );
    }
}

fn int_tensor(name: &str, v: &[i64]) -> proto::TensorProto {
    proto::TensorProto {
        name: Some(name.into()),
        dims: vec![v.len() as i64],
        data_type: Some(proto::tensor_proto::DataType::Int64 as i32),
        int64_data: v.to_vec(),
        ..Default::default()
    }
}

#[test]
fn data_movement_follows_onnx() {
    let x = ArrayD::from_shape_vec(IxDyn(&[1, 2, 3]), (0..6).map(|v| v as f64).collect()).unwrap();
    let one = |n: Vec<proto::NodeProto>, inits: Vec<proto::TensorProto>| {
        OnnxModel::from_bytes(&model_bytes(n, inits, &[-1, 2, 3], "y", 18)).unwrap()
    };
    let t = one(
        vec![node(
            "Transpose",
            "t",
            &["x"],
            &["y"],
            vec![attr_ints("perm", &[0, 2, 1])],
        )],
        vec![],
    );
    assert_eq!(run1(&t, x.clone()), [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
    let s = one(
        vec![node("Slice", "s", &["x", "st", "en", "ax", "sp"], &["y"], vec![])],
        vec![
            int_tensor("st", &[-1]),
            int_tensor("en", &[-100]),
            int_tensor("ax", &[2]),
            int_tensor("sp", &[-2]),
        ],
    );
    assert_eq!(run1(&s, x.clone()), [2.0, 0.0, 5.0, 3.0]);
    let g = one(
        vec![node("Gather", "g", &["x", "i"], &["y"], vec![attr_int("axis", 2)])],
        vec![int_tensor("i", &[-1, 0])],
    );
    assert_eq!(run1(&g, x.clone()), [2.0, 0.0, 5.0, 3.0]);
    let p = one(
        vec![node("Pad", "p", &["x", "pads", "v"], &["y"], vec![])],
        vec![int_tensor("pads", &[0, 0, 1, 0, 0, 0]), float_tensor("v", &[], &[9.0])],
    );
    assert_eq!(run1(&p, x.clone()), [9.0, 0.0, 1.0, 2.0, 9.0, 3.0, 4.0, 5.0]);
    let r = one(
        vec![node(
            "Pad",
            "p",
            &["x", "pads"],
            &["y"],
            vec![proto::AttributeProto {
                name: Some("mode".into()),
                r#type: Some(proto::attribute_proto::AttributeType::String as i32),
                s: Some(b"reflect".to_vec()),
                ..Default::default()
            }],
        )],
        vec![int_tensor("pads", &[0, 0, 2, 0, 0, 0])],
    );
    assert_eq!(run1(&r, x.clone()), [2.0, 1.0, 0.0, 1.0, 2.0, 5.0, 4.0, 3.0, 4.0, 5.0]);
    let c = one(
        vec![node("Concat", "c", &["x", "x"], &["y"], vec![attr_int("axis", -1)])],
        vec![],
    );
    assert_eq!(run1(&c, x.clone()).len(), 12);
    let m = one(
        vec![node(
            "ReduceMean",
            "m",
            &["x", "ax"],
            &["y"],
            vec![attr_int("keepdims", 0)],
        )],
        vec![int_tensor("ax", &[2])],
    );
    assert_eq!(run1(&m, x.clone()), [1.0, 4.0]);
}

/// Residual connections, data movement and reductions quantise exactly: `y = W2·(relu(W1·x) +
/// x[…, ::-1]) ` through Transpose, Slice, Pad, Concat, Gather, ReduceMean and a Sub of two
/// encrypted tensors.
#[test]
fn residuals_and_data_movement_quantise_exactly() {
    let bytes = model_bytes(
        vec![
            node("MatMul", "fc1", &["x", "w1"], &["h"], vec![]),
            node("Relu", "r", &["h"], &["hr"], vec![]),
            node("Slice", "rev", &["x", "st", "en", "ax", "sp"], &["xr"], vec![]),
            node("Add", "res", &["hr", "xr"], &["a"], vec![]),
            node("Pad", "pad", &["a", "pads", "pv"], &["ap"], vec![]),
            node("Concat", "cat", &["ap", "x"], &["c"], vec![attr_int("axis", 1)]),
            node("Unsqueeze", "u", &["c", "uax"], &["cu"], vec![]),
            node("Transpose", "t", &["cu"], &["ct"], vec![attr_ints("perm", &[0, 2, 1])]),
            node("Gather", "g", &["ct", "gi"], &["gt"], vec![attr_int("axis", 1)]),
            node(
                "ReduceMean",
                "mean",
                &["gt", "max"],
                &["m"],
                vec![attr_int("keepdims", 0)],
            ),
            node("Sub", "diff", &["m", "gt2"], &["d"], vec![]),
            node("Gather", "g2", &["ct", "gi2"], &["gt2x"], vec![attr_int("axis", 1)]),
            node(
                "ReduceSum",
                "sum",
                &["gt2x", "max"],
                &["gt2"],
                vec![attr_int("keepdims", 0)],
            ),
            node("MatMul", "fc2", &["d", "w2"], &["y"], vec![]),
        ],
        vec![
            weights("w1", &[4, 4], 11),
            int_tensor("st", &[-1]),
            int_tensor("en", &[-100]),
            int_tensor("ax", &[1]),
            int_tensor("sp", &[-1]),
            int_tensor("pads", &[0, 1, 0, 2]),
            float_tensor("pv", &[], &[0.5]),
            int_tensor("uax", &[1]),
            int_tensor("gi", &[0, 2, 3, 6, 7]),
            int_tensor("gi2", &[8, 9, 10, 1, 4]),
            int_tensor("max", &[1]),
            weights("w2", &[1, 3], 12),
        ],
        &[-1, 4],
        "y",
        18,
    );
    let m = OnnxModel::from_bytes(&bytes).unwrap();
    let x = rows(300, &[-1.0; 4], &[1.0; 4], 13);
    let y = &m.eval(std::slice::from_ref(&x)).unwrap()[0];
    assert_eq!(y.shape(), &[300, 3]);
    let opts = ptq_options(6, 6);
    let q = m.quantize(&x, &opts).unwrap();
    exact_on_the_whole_input_range(&q, 60);
    let deq = dequantised(&q, &x);
    let scale = y.iter().fold(0f64, |a, v| a.max(v.abs()));
    let mut worst = 0f64;
    for (r, d) in deq.iter().enumerate() {
        for (c, v) in d.iter().enumerate() {
            worst = worst.max((v - y[[r, c]]).abs() / scale);
        }
    }
    assert!(worst < 0.15, "dequantised outputs differ by {worst} of the range");
    // moving elements across the batch axis is refused
    let across = model_bytes(
        vec![node("Transpose", "t", &["x"], &["y"], vec![attr_ints("perm", &[1, 0])])],
        vec![],
        &[-1, 4],
        "y",
        18,
    );
    let e = OnnxModel::from_bytes(&across)
        .unwrap()
        .quantize(&x, &opts)
        .unwrap_err()
        .to_string();
    assert!(e.contains("batch axis"), "{e}");
}

/// Found in review: padded constants took scale 1, which a following linear layer folded into its
/// weights, so the per-channel weight quantisation spent its levels on them (40 % error).
#[test]
fn padded_constants_do_not_distort_the_next_layer() {
    let bytes = model_bytes(
        vec![
            node("Pad", "p", &["x", "pads"], &["xp"], vec![]),
            node("MatMul", "fc", &["xp", "w"], &["y"], vec![]),
        ],
        vec![int_tensor("pads", &[0, 1, 0, 1]), weights("w", &[6, 2], 21)],
        &[-1, 4],
        "y",
        18,
    );
    let m = OnnxModel::from_bytes(&bytes).unwrap();
    let x = rows(200, &[-1.0; 4], &[1.0; 4], 22);
    let opts = ptq_options(6, 6);
    let q = m.quantize(&x, &opts).unwrap();
    exact_on_the_whole_input_range(&q, 20);
    let y = &m.eval(std::slice::from_ref(&x)).unwrap()[0];
    let scale = y.iter().fold(0f64, |a, v| a.max(v.abs()));
    for (r, d) in dequantised(&q, &x).iter().enumerate() {
        for c in 0..2 {
            assert!(
                (d[c] - y[[r, c]]).abs() < 0.08 * scale,
                "row {r}: {} vs {}",
                d[c],
                y[[r, c]]
            );
        }
    }
}

/// The automatic rounding: the fewest bits within the tolerance, every candidate reported.
#[test]
fn rounding_bits_are_chosen_against_a_tolerance() {
    let m = OnnxModel::from_bytes(IRIS).unwrap();
    let x = rows(120, &[4.3, 2.0, 1.0, 0.1], &[7.9, 4.4, 6.9, 2.5], 31);
    let opts = PtqOptions::default();
    let loose = m.choose_rounding_bits(&x, &opts, 0.2).unwrap();
    assert!(loose.met && loose.rows == 120);
    let strict = m.choose_rounding_bits(&x, &opts, 0.0).unwrap();
    assert!(strict.bits >= loose.bits, "{strict:?} vs {loose:?}");
    for c in [&loose, &strict] {
        // every candidate below the choice missed the tolerance, the choice met it (or was the closest)
        let last = c.trials.last().unwrap();
        if c.met {
            assert_eq!(last.bits, c.bits);
            assert!(last.error.unwrap() <= c.tolerance);
        } else {
            let least = c.trials.iter().filter_map(|t| t.error).fold(f64::INFINITY, f64::min);
            let chosen = c.trials.iter().find(|t| t.bits == c.bits).unwrap();
            assert_eq!(chosen.error, Some(least), "{c:?}");
        }
        for t in &c.trials[..c.trials.len() - 1] {
            assert!(t.error.is_none_or(|e| e > c.tolerance), "{c:?}");
        }
        assert!((2..=c.reference_bits).contains(&c.bits));
    }
    assert_eq!(loose.trials.first().unwrap().bits, 2);
    assert!(m.choose_rounding_bits(&x, &opts, 1.5).is_err());
    assert!(m
        .choose_rounding_bits(&x.slice_axis(ndarray::Axis(0), (0..0).into()).to_owned(), &opts, 0.1)
        .is_err());
}

/// The automatic rounding checked by a build (the caller's compile): a candidate within the
/// tolerance that does not build is recorded with its reason, wider ones are not tried, and the
/// choice falls back to the candidates before it, least error first, the first that builds.
#[test]
fn rounding_bits_fall_back_when_the_choice_does_not_build() {
    let m = OnnxModel::from_bytes(IRIS).unwrap();
    let x = rows(120, &[4.3, 2.0, 1.0, 0.1], &[7.9, 4.4, 6.9, 2.5], 31);
    let opts = PtqOptions::default();
    let free = m.choose_rounding_bits(&x, &opts, 0.1).unwrap();
    assert!(free.met && free.bits > 2, "{free:?}");
    // the first candidate built (the free choice) has "no secure parameters", the others build
    let mut calls = 0;
    let (c, out) = m
        .choose_rounding_bits_with(&x, &opts, 0.1, |_| {
            calls += 1;
            if calls == 1 {
                Err(BuildFailure::<()>::Infeasible("no secure parameters".to_string()))
            } else {
                Ok(calls)
            }
        })
        .unwrap();
    assert!(!c.met && c.bits < free.bits, "{c:?}");
    let refused = c.trials.iter().find(|t| t.bits == free.bits).unwrap();
    assert_eq!(refused.infeasible.as_deref(), Some("no secure parameters"), "{c:?}");
    assert!(
        c.trials.iter().all(|t| t.bits <= free.bits),
        "nothing wider is tried: {c:?}"
    );
    // the fallback: the least error of the others
    let least = c
        .trials
        .iter()
        .filter(|t| t.infeasible.is_none())
        .filter_map(|t| t.error)
        .fold(f64::INFINITY, f64::min);
    assert_eq!(c.trials.iter().find(|t| t.bits == c.bits).unwrap().error, Some(least));
    assert_eq!(out, Ok(2));
    // any other failure stops the choice at once, with the choice so far
    let mut calls = 0;
    let (c, out) = m
        .choose_rounding_bits_with(&x, &opts, 0.1, |_| {
            calls += 1;
            Err::<(), _>(BuildFailure::Failed("a shape error"))
        })
        .unwrap();
    assert_eq!(calls, 1, "one build, then the failure");
    assert!(!c.met && out == Err(BuildFailure::Failed("a shape error")), "{c:?}");
    // nothing builds: the least error, with the build's failure
    let (c, out) = m
        .choose_rounding_bits_with(&x, &opts, 0.0, |_| {
            Err::<(), BuildFailure<()>>(BuildFailure::Infeasible("refused".to_string()))
        })
        .unwrap();
    assert!(
        !c.met && out == Err(BuildFailure::Infeasible("refused".to_string())),
        "{c:?}"
    );
    assert!(c
        .trials
        .iter()
        .filter(|t| t.error.is_some())
        .all(|t| t.infeasible.is_some()));
}

/// ConvTranspose: stride 2 scatters each input to a block; pads crop; quantised exactly through a
/// grouped, cropped, output-padded layer.
#[test]
fn transposed_convolutions_follow_onnx_and_quantise_exactly() {
    let x = ArrayD::from_shape_vec(IxDyn(&[1, 1, 3, 3]), (0..9).map(|v| v as f64).collect()).unwrap();
    let one = |attrs: Vec<proto::AttributeProto>| {
        OnnxModel::from_bytes(&model_bytes(
            vec![node("ConvTranspose", "t", &["x", "w"], &["y"], attrs)],
            vec![float_tensor("w", &[1, 1, 2, 2], &[1.0; 4])],
            &[-1, 1, 3, 3],
            "y",
            17,
        ))
        .unwrap()
    };
    let blocks = run1(&one(vec![attr_ints("strides", &[2, 2])]), x.clone());
    let want: Vec<f64> = (0..36).map(|k| ((k / 6 / 2) * 3 + (k % 6) / 2) as f64).collect();
    assert_eq!(blocks, want);
    let cropped = run1(
        &one(vec![attr_ints("strides", &[2, 2]), attr_ints("pads", &[1, 1, 1, 1])]),
        x.clone(),
    );
    let want: Vec<f64> = (0..16)
        .map(|k| (((k / 4 + 1) / 2) * 3 + (k % 4 + 1) / 2) as f64)
        .collect();
    assert_eq!(cropped, want);
    // stride 1: each output sums the inputs under the flipped window (here all ones)
    let sums = run1(&one(vec![]), x.clone());
    assert_eq!(sums[0], 0.0);
    assert_eq!(sums[5], 0.0 + 1.0 + 3.0 + 4.0);
    let net = model_bytes(
        vec![
            node(
                "Conv",
                "c",
                &["x", "w1"],
                &["a"],
                vec![attr_ints("pads", &[1, 1, 1, 1])],
            ),
            node("Relu", "r", &["a"], &["ar"], vec![]),
            node(
                "ConvTranspose",
                "up",
                &["ar", "w2", "b2"],
                &["u"],
                vec![
                    attr_ints("strides", &[2, 2]),
                    attr_ints("pads", &[1, 0, 1, 0]),
                    attr_ints("output_padding", &[1, 1]),
                    attr_int("group", 2),
                ],
            ),
            node("Flatten", "f", &["u"], &["y"], vec![]),
        ],
        vec![
            weights("w1", &[4, 1, 3, 3], 41),
            weights("w2", &[4, 1, 3, 3], 42),
            weights("b2", &[2], 43),
        ],
        &[-1, 1, 5, 5],
        "y",
        17,
    );
    let m = OnnxModel::from_bytes(&net).unwrap();
    let x = rows(200, &[-1.0; 25], &[1.0; 25], 45)
        .into_shape_with_order(IxDyn(&[200, 1, 5, 5]))
        .unwrap();
    let y = &m.eval(std::slice::from_ref(&x)).unwrap()[0];
    // 2 channels (2 groups of 1) of (2·4 + 1 + 2 − 2 + 1) × (2·4 + 1 + 2 + 1)
    assert_eq!(y.shape(), &[200, 2 * 10 * 12]);
    let opts = ptq_options(6, 6);
    let q = m.quantize(&x, &opts).unwrap();
    exact_on_the_whole_input_range(&q, 30);
    let scale = y.iter().fold(0f64, |a, v| a.max(v.abs()));
    let mut worst = 0f64;
    for (r, d) in dequantised(&q, &x).iter().enumerate() {
        for c in 0..240 {
            worst = worst.max((d[c] - y[[r, c]]).abs() / scale);
        }
    }
    assert!(worst < 0.15, "dequantised outputs differ by {worst} of the range");
}

/// ConvTranspose's float reference against the definition (a scatter: output
/// `(ih·s + i·d − pad, iw·s + j·d − pad)` gains `x[c, ih, iw]·w[c, m, i, j]`), random sizes.
#[test]
fn transposed_convolution_is_the_scatter_of_its_definition() {
    for (case, (c, m, k, s, d, pads, op, group)) in [
        (
            2usize,
            1usize,
            3usize,
            2usize,
            1usize,
            [1usize, 0, 1, 0],
            [1usize, 1],
            2usize,
        ),
        (1, 3, 2, 3, 2, [0, 2, 1, 0], [2, 0], 1),
        (4, 2, 3, 1, 1, [0, 0, 0, 0], [0, 0], 4),
    ]
    .into_iter()
    .enumerate()
    {
        let (h, w) = (4usize, 5usize);
        let mg = m;
        let wts = weights("w", &[c as i64, mg as i64, k as i64, k as i64], 50 + case as u64);
        let wv: Vec<f64> = wts.float_data.iter().map(|&v| v as f64).collect();
        let m_total = mg * group;
        let net = model_bytes(
            vec![node(
                "ConvTranspose",
                "t",
                &["x", "w"],
                &["y"],
                vec![
                    attr_ints("strides", &[s as i64, s as i64]),
                    attr_ints("dilations", &[d as i64, d as i64]),
                    attr_ints("pads", &pads.map(|p| p as i64)),
                    attr_ints("output_padding", &op.map(|p| p as i64)),
                    attr_int("group", group as i64),
                ],
            )],
            vec![wts],
            &[-1, c as i64, h as i64, w as i64],
            "y",
            17,
        );
        let model = OnnxModel::from_bytes(&net).unwrap();
        let x = rows(1, &vec![-1.0; c * h * w], &vec![1.0; c * h * w], 60 + case as u64)
            .into_shape_with_order(IxDyn(&[1, c, h, w]))
            .unwrap();
        let y = &model.eval(std::slice::from_ref(&x)).unwrap()[0];
        let oh = s * (h - 1) + op[0] + d * (k - 1) + 1 - pads[0] - pads[2];
        let ow = s * (w - 1) + op[1] + d * (k - 1) + 1 - pads[1] - pads[3];
        assert_eq!(y.shape(), &[1, m_total, oh, ow], "case {case}");
        let mut want = vec![0.0; m_total * oh * ow];
        let cg = c / group;
        for ci in 0..c {
            let g = ci / cg;
            for mo in 0..mg {
                for ih in 0..h {
                    for iw in 0..w {
                        for i in 0..k {
                            for j in 0..k {
                                let yy = (ih * s + i * d) as i64 - pads[0] as i64;
                                let xx = (iw * s + j * d) as i64 - pads[1] as i64;
                                if yy < 0 || xx < 0 || yy as usize >= oh || xx as usize >= ow {
                                    continue;
                                }
                                let out_ch = g * mg + mo;
                                want[(out_ch * oh + yy as usize) * ow + xx as usize] +=
                                    x[[0, ci, ih, iw]] * wv[((ci * mg + mo) * k + i) * k + j];
                            }
                        }
                    }
                }
            }
        }
        for (a, b) in y.iter().zip(&want) {
            assert!((a - b).abs() < 1e-9, "case {case}: {a} vs {b}");
        }
    }
}

/// Keras models through tf2onnx (fixtures of `generate_keras.py`): an MLP, and an NHWC convolutional
/// net whose Flatten is a Shape/Gather/Slice/Concat/Cast/Reshape computation and whose convolution
/// sits between Transposes.
#[test]
fn keras_models_through_tf2onnx_quantise_exactly() {
    for (bytes, shape, lo, hi) in [
        (
            &include_bytes!("../tests/fixtures/keras_mlp.onnx")[..],
            vec![4usize],
            0.0,
            8.0,
        ),
        (
            &include_bytes!("../tests/fixtures/keras_cnn.onnx")[..],
            vec![8, 8, 1],
            0.0,
            1.0,
        ),
    ] {
        let m = OnnxModel::from_bytes(bytes).unwrap();
        let f: usize = shape.iter().product();
        let mut dims = vec![200];
        dims.extend(&shape);
        let x = rows(200, &vec![lo; f], &vec![hi; f], 71)
            .into_shape_with_order(IxDyn(&dims))
            .unwrap();
        let q = m.quantize(&x, &PtqOptions::default()).unwrap();
        assert_eq!(q.input_shape, shape);
        exact_on_the_whole_input_range(&q, 30);
        let y = &m.eval(std::slice::from_ref(&x)).unwrap()[0];
        let outputs = y.shape()[1];
        let agree = dequantised(&q, &x)
            .iter()
            .enumerate()
            .filter(|(r, d)| {
                let best = |v: &mut dyn Iterator<Item = f64>| {
                    v.enumerate()
                        .fold((0, f64::NEG_INFINITY), |b, (i, x)| if x > b.1 { (i, x) } else { b })
                        .0
                };
                best(&mut d.iter().copied()) == best(&mut (0..outputs).map(|c| y[[*r, c]]))
            })
            .count();
        assert!(agree >= 150, "{shape:?}: {agree} of 200 top classes agree");
    }
}

/// ReduceMax of encrypted tensors (over one axis and over two, keepdims both ways) quantises exactly.
#[test]
fn reduce_max_quantises_exactly() {
    let bytes = model_bytes(
        vec![
            node("Relu", "r", &["x"], &["xr"], vec![]),
            node("ReduceMax", "m1", &["xr", "a2"], &["m"], vec![attr_int("keepdims", 0)]),
            node("ReduceMax", "m2", &["xr", "a12"], &["mm"], vec![]),
            node("Flatten", "f", &["mm"], &["mf"], vec![]),
            node("Concat", "c", &["m", "mf"], &["cat"], vec![attr_int("axis", 1)]),
            node("MatMul", "fc", &["cat", "w"], &["y"], vec![]),
        ],
        vec![
            int_tensor("a2", &[2]),
            int_tensor("a12", &[1, 2]),
            weights("w", &[4, 2], 81),
        ],
        &[-1, 3, 4],
        "y",
        18,
    );
    let m = OnnxModel::from_bytes(&bytes).unwrap();
    let x = rows(200, &[-1.0; 12], &[1.0; 12], 82)
        .into_shape_with_order(IxDyn(&[200, 3, 4]))
        .unwrap();
    let y = &m.eval(std::slice::from_ref(&x)).unwrap()[0];
    assert_eq!(y.shape(), &[200, 2]);
    let opts = ptq_options(6, 6);
    let q = m.quantize(&x, &opts).unwrap();
    assert_eq!(q.layers.iter().filter(|l| l.kind == "max").count(), 2);
    exact_on_the_whole_input_range(&q, 40);
    let scale = y.iter().fold(0f64, |a, v| a.max(v.abs()));
    for (r, d) in dequantised(&q, &x).iter().enumerate() {
        for c in 0..2 {
            assert!(
                (d[c] - y[[r, c]]).abs() < 0.1 * scale,
                "row {r}: {} vs {}",
                d[c],
                y[[r, c]]
            );
        }
    }
}

fn typed_tensor(name: &str, dt: proto::tensor_proto::DataType, dims: &[i64], v: &[i32]) -> proto::TensorProto {
    proto::TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(dt as i32),
        int32_data: v.to_vec(),
        ..Default::default()
    }
}

/// A QDQ network (as onnxruntime's static quantiser and QAT exports write them: the input quantised
/// by the graph, integer weights behind DequantizeLinear, a Q → Clip → DQ activation of 4 bits): the
/// client's quantiser is the graph's, weights and activations keep the graph's integers, and without
/// rounding the program computes the graph's float semantics exactly.
#[test]
fn qdq_networks_keep_their_integers() {
    use proto::tensor_proto::DataType as D;
    let bytes = model_bytes(
        vec![
            node("QuantizeLinear", "qx", &["x", "sx", "zx"], &["xq"], vec![]),
            node("DequantizeLinear", "dqx", &["xq", "sx", "zx"], &["xd"], vec![]),
            node(
                "DequantizeLinear",
                "dqw1",
                &["w1q", "sw1"],
                &["w1"],
                vec![attr_int("axis", 1)],
            ),
            node("MatMul", "fc1", &["xd", "w1"], &["h"], vec![]),
            node("Relu", "relu", &["h"], &["hr"], vec![]),
            node("QuantizeLinear", "qh", &["hr", "sh", "zh"], &["hq"], vec![]),
            node("Clip", "clip", &["hq", "cmin", "cmax"], &["hc"], vec![]),
            node("DequantizeLinear", "dqh", &["hc", "sh", "zh"], &["hd"], vec![]),
            node("DequantizeLinear", "dqw2", &["w2q", "sw2"], &["w2"], vec![]),
            node("MatMul", "fc2", &["hd", "w2"], &["y"], vec![]),
        ],
        vec![
            float_tensor("sx", &[], &[0.05]),
            typed_tensor("zx", D::Uint8, &[], &[128]),
            typed_tensor("w1q", D::Int8, &[4, 3], &[3, -7, 1, 0, 5, -2, -4, 2, 7, 6, -1, -3]),
            float_tensor("sw1", &[3], &[0.02, 0.03, 0.01]),
            float_tensor("sh", &[], &[0.1]),
            typed_tensor("zh", D::Uint8, &[], &[0]),
            typed_tensor("cmin", D::Uint8, &[], &[0]),
            typed_tensor("cmax", D::Uint8, &[], &[15]),
            typed_tensor("w2q", D::Int8, &[3, 2], &[7, -5, 2, 6, -3, 1]),
            float_tensor("sw2", &[], &[0.25]),
        ],
        &[-1, 4],
        "y",
        19,
    );
    let m = OnnxModel::from_bytes(&bytes).unwrap();
    let x = rows(300, &[-6.0; 4], &[6.0; 4], 91);
    let y = &m.eval(std::slice::from_ref(&x)).unwrap()[0];
    // the float semantics by hand, on the first rows
    let w1 = [[3.0, -7.0, 1.0], [0.0, 5.0, -2.0], [-4.0, 2.0, 7.0], [6.0, -1.0, -3.0]];
    let sw1 = [0.02, 0.03, 0.01];
    let w2 = [[7.0, -5.0], [2.0, 6.0], [-3.0, 1.0]];
    for r in 0..5 {
        let xd: Vec<f64> = (0..4)
            .map(|j| {
                (((x[[r, j]] / 0.05f32 as f64).round_ties_even() + 128.0).clamp(0.0, 255.0) - 128.0) * 0.05f32 as f64
            })
            .collect();
        let hd: Vec<f64> = (0..3)
            .map(|o| {
                let h: f64 = (0..4).map(|j| xd[j] * w1[j][o] * sw1[o] as f32 as f64).sum();
                ((h.max(0.0) / 0.1f32 as f64).round_ties_even().clamp(0.0, 255.0)).clamp(0.0, 15.0) * 0.1f32 as f64
            })
            .collect();
        for c in 0..2 {
            let want: f64 = (0..3).map(|o| hd[o] * w2[o][c] * 0.25).sum();
            assert!((y[[r, c]] - want).abs() < 1e-9, "row {r}: {} vs {want}", y[[r, c]]);
        }
    }
    // no rounding (16 bits keep every accumulator whole): the program is the graph, exactly
    let opts = ptq_options(5, 16);
    let q = m.quantize(&x, &opts).unwrap();
    let fhec_quant::InputSpec::Features { quantizer, .. } = &q.spec.inputs[0] else {
        panic!("features")
    };
    assert_eq!(quantizer.n_bits, 8, "the client quantises with the graph's uint8 grid");
    let kinds: Vec<(&str, u32)> = q.layers.iter().map(|l| (l.kind.as_str(), l.rounded_lsbs)).collect();
    assert_eq!(kinds, [("accumulator", 0), ("lookup", 0), ("accumulator", 0)]);
    exact_on_the_whole_input_range(&q, 40);
    for (r, d) in dequantised(&q, &x).iter().enumerate() {
        for c in 0..2 {
            assert!((d[c] - y[[r, c]]).abs() < 1e-9, "row {r}: {} vs {}", d[c], y[[r, c]]);
        }
    }
    // the activation's integers are the graph's 4-bit ones
    let last = q.layers.last().unwrap();
    assert!(last.bits <= 12, "{:?}", q.layers);
}

/// onnxruntime's static quantiser's output (QDQ, uint8 activations, int8 weights) on the iris network:
/// read, the graph's own input grid, exact on every input with rounded accumulators.
#[test]
fn an_onnxruntime_qdq_model_quantises_exactly() {
    let m = OnnxModel::from_bytes(include_bytes!("../tests/fixtures/iris_qdq.onnx")).unwrap();
    let x = rows(120, &[4.3, 2.0, 1.0, 0.1], &[7.9, 4.4, 6.9, 2.5], 92);
    let q = m.quantize(&x, &PtqOptions::default()).unwrap();
    let fhec_quant::InputSpec::Features { quantizer, .. } = &q.spec.inputs[0] else {
        panic!("features")
    };
    assert_eq!(quantizer.n_bits, 8);
    exact_on_the_whole_input_range(&q, 40);
    let y = &m.eval(std::slice::from_ref(&x)).unwrap()[0];
    let agree = dequantised(&q, &x)
        .iter()
        .enumerate()
        .filter(|(r, d)| {
            let top = |v: &[f64]| (0..v.len()).fold(0, |b, i| if v[i] > v[b] { i } else { b });
            top(d) == top(&[y[[*r, 0]], y[[*r, 1]], y[[*r, 2]]])
        })
        .count();
    assert!(
        agree >= 100,
        "{agree} of 120 top classes agree with the graph's float semantics"
    );
}

/// Found in review: sizes a hostile file can ask of the new ops are bounded before anything is
/// allocated or computed (a ConvTranspose spreading its input 65 536-fold on each axis, a broadcast of
/// two constants to 2^32 elements, 16 pooling windows of 2^32 taps each).
#[test]
fn hostile_window_and_broadcast_sizes_are_errors() {
    let x = ArrayD::from_shape_vec(IxDyn(&[1, 1, 3, 3]), vec![0.0; 9]).unwrap();
    // the model reads, and evaluating it on `x` is an error
    let refused = |bytes: &[u8]| {
        OnnxModel::from_bytes(bytes)
            .unwrap()
            .eval(std::slice::from_ref(&x))
            .unwrap_err()
    };
    let spread = model_bytes(
        vec![node(
            "ConvTranspose",
            "t",
            &["x", "w"],
            &["y"],
            vec![attr_ints("strides", &[65536, 65536])],
        )],
        vec![float_tensor("w", &[1, 1, 1, 1], &[1.0])],
        &[-1, 1, 3, 3],
        "y",
        17,
    );
    let e = refused(&spread);
    assert!(e.to_string().contains("too large"), "{e}");
    let wide = model_bytes(
        vec![
            node("Add", "a", &["c1", "c2"], &["s"], vec![]),
            node("Add", "b", &["x", "s"], &["y"], vec![]),
        ],
        vec![
            float_tensor("c1", &[65536, 1], &vec![0.0; 65536]),
            float_tensor("c2", &[1, 65536], &vec![0.0; 65536]),
        ],
        &[-1, 1, 3, 3],
        "y",
        17,
    );
    let e = refused(&wide);
    assert!(e.to_string().contains("more than"), "{e}");
    let pool = model_bytes(
        vec![node(
            "AveragePool",
            "p",
            &["x"],
            &["y"],
            vec![
                attr_ints("kernel_shape", &[65536, 65536]),
                attr_ints("pads", &[65533, 65533, 3, 3]),
            ],
        )],
        vec![],
        &[-1, 1, 3, 3],
        "y",
        17,
    );
    let e = refused(&pool);
    assert!(e.to_string().contains("too large"), "{e}");
}

/// SiLU (`x·σ(x)`, as torch exports `nn.SiLU`) and GELU decomposed into Div, Erf, Add and two Muls (as
/// torch exports `nn.GELU` below opset 20): products of two functions of one encrypted tensor become
/// one lookup each, exact on the whole input range and close to the float network; `x + x·w` style
/// sums of two affine maps of one tensor need none. A product of two different encrypted tensors is
/// a clear error.
#[test]
fn products_of_functions_of_one_tensor_are_one_lookup() {
    let bytes = model_bytes(
        vec![
            node("MatMul", "fc1", &["x", "w1"], &["h"], vec![]),
            node("Sigmoid", "sig", &["h"], &["s"], vec![]),
            node("Mul", "silu", &["h", "s"], &["a"], vec![]),
            node("MatMul", "fc2", &["a", "w2"], &["g"], vec![]),
            node("Div", "d", &["g", "sq2"], &["gd"], vec![]),
            node("Erf", "erf", &["gd"], &["ge"], vec![]),
            node("Add", "one", &["ge", "c1"], &["gp"], vec![]),
            node("Mul", "gm", &["g", "gp"], &["gg"], vec![]),
            node("Mul", "half", &["gg", "c05"], &["y1"], vec![]),
            node("Mul", "sc", &["y1", "c3"], &["y3"], vec![]),
            node("Add", "aff", &["y1", "y3"], &["y4"], vec![]),
            node("MatMul", "fc3", &["y4", "w3"], &["y"], vec![]),
        ],
        vec![
            weights("w1", &[4, 6], 21),
            weights("w2", &[6, 5], 22),
            float_tensor("sq2", &[], &[std::f32::consts::SQRT_2]),
            float_tensor("c1", &[], &[1.0]),
            float_tensor("c05", &[], &[0.5]),
            float_tensor("c3", &[], &[3.0]),
            weights("w3", &[5, 3], 23),
        ],
        &[-1, 4],
        "y",
        17,
    );
    let m = OnnxModel::from_bytes(&bytes).unwrap();
    let x = rows(300, &[-2.0; 4], &[2.0; 4], 31);
    let y = &m.eval(std::slice::from_ref(&x)).unwrap()[0];
    let opts = ptq_options(6, 6);
    let q = m.quantize(&x, &opts).unwrap();
    let lookups: Vec<&str> = q
        .layers
        .iter()
        .filter(|l| l.kind == "lookup")
        .map(|l| l.node.as_str())
        .collect();
    assert_eq!(lookups.len(), 2, "one lookup per activation: {lookups:?}");
    exact_on_the_whole_input_range(&q, 60);
    // the dequantised outputs converge to the float network's as the widths grow (a wrong table
    // would not): worst error, as a fraction of the output range, at 6, 8 and 10 bits
    let scale = y.iter().fold(0f64, |a, v| a.max(v.abs()));
    let worst: Vec<f64> = [6u32, 8, 10]
        .iter()
        .map(|&b| {
            let opts = ptq_options(b, b);
            let deq = dequantised(&m.quantize(&x, &opts).unwrap(), &x);
            deq.iter()
                .enumerate()
                .flat_map(|(r, d)| d.iter().enumerate().map(move |(c, v)| (r, c, *v)))
                .fold(0f64, |w, (r, c, v)| w.max((v - y[[r, c]]).abs() / scale))
        })
        .collect();
    assert!(
        worst[0] < 0.25 && worst[1] < worst[0] / 2.0 && worst[2] < worst[1] / 2.0 && worst[2] < 0.02,
        "{worst:?}"
    );
    // a quotient of two different encrypted tensors
    let two = model_bytes(
        vec![
            node("MatMul", "fc1", &["x", "w1"], &["h"], vec![]),
            node("MatMul", "fc2", &["x", "w2"], &["g"], vec![]),
            node("Div", "quot", &["h", "g"], &["y"], vec![]),
        ],
        vec![weights("w1", &[4, 3], 24), weights("w2", &[4, 3], 25)],
        &[-1, 4],
        "y",
        17,
    );
    let e = OnnxModel::from_bytes(&two)
        .unwrap()
        .quantize(&x, &opts)
        .unwrap_err()
        .to_string();
    assert!(e.contains("two encrypted tensors") && e.contains("quot"), "{e}");
}

/// Worst error of the dequantised outputs on `x` as a fraction of the float outputs' magnitude.
fn worst_error(q: &crate::QuantizedNetwork, x: &ArrayD<f64>, y: &ArrayD<f64>) -> f64 {
    let scale = y.iter().fold(0f64, |a, v| a.max(v.abs()));
    dequantised(q, x)
        .iter()
        .enumerate()
        .flat_map(|(r, d)| d.iter().enumerate().map(move |(c, v)| (r, c, *v)))
        .fold(0f64, |w, (r, c, v)| w.max((v - y[[r, c]]).abs() / scale))
}

#[test]
fn products_of_two_encrypted_tensors_are_exact() {
    // a gated unit, (x·W1) ⊙ σ(x·W2), then a dense layer; operands of either sign
    let glu = model_bytes(
        vec![
            node("MatMul", "fc1", &["x", "w1"], &["h"], vec![]),
            node("MatMul", "fc2", &["x", "w2"], &["g"], vec![]),
            node("Sigmoid", "sig", &["g"], &["s"], vec![]),
            node("Mul", "gate", &["h", "s"], &["a"], vec![]),
            node("MatMul", "fc3", &["a", "w3"], &["y"], vec![]),
        ],
        vec![
            weights("w1", &[4, 5], 41),
            weights("w2", &[4, 5], 42),
            weights("w3", &[5, 3], 43),
        ],
        &[-1, 4],
        "y",
        17,
    );
    let m = OnnxModel::from_bytes(&glu).unwrap();
    let x = rows(300, &[-2.0; 4], &[2.0; 4], 44);
    let y = &m.eval(std::slice::from_ref(&x)).unwrap()[0];
    let worst: Vec<f64> = [5u32, 7, 9]
        .iter()
        .map(|&b| {
            let opts = ptq_options(b, b);
            let q = m.quantize(&x, &opts).unwrap();
            exact_on_the_whole_input_range(&q, 40);
            let kinds: Vec<&str> = q.layers.iter().map(|l| l.kind.as_str()).collect();
            assert!(kinds.contains(&"product"), "{kinds:?}");
            worst_error(&q, &x, y)
        })
        .collect();
    // the error falls as the widths grow (a wrong product would not converge)
    assert!(
        worst[0] < 0.3 && worst[2] < worst[0] / 3.0 && worst[2] < 0.05,
        "{worst:?}"
    );
    // squeeze-and-excitation: a [1, 4, 3, 3] feature map scaled per channel by a [1, 4, 1, 1] gate
    let se = model_bytes(
        vec![
            node(
                "Conv",
                "conv",
                &["x", "wc"],
                &["f"],
                vec![attr_ints("pads", &[1, 1, 1, 1])],
            ),
            node("Relu", "r", &["f"], &["fr"], vec![]),
            node("GlobalAveragePool", "gap", &["fr"], &["p"], vec![]),
            node("Sigmoid", "sig", &["p"], &["gt"], vec![]),
            node("Mul", "scale", &["fr", "gt"], &["sf"], vec![]),
            node("Flatten", "flat", &["sf"], &["fl"], vec![]),
            node("MatMul", "fc", &["fl", "wf"], &["y"], vec![]),
        ],
        vec![weights("wc", &[4, 1, 3, 3], 45), weights("wf", &[36, 2], 46)],
        &[-1, 1, 3, 3],
        "y",
        17,
    );
    let m = OnnxModel::from_bytes(&se).unwrap();
    let x = rows(200, &[0.0; 9], &[1.0; 9], 47)
        .into_shape_with_order(IxDyn(&[200, 1, 3, 3]))
        .unwrap();
    let y = &m.eval(std::slice::from_ref(&x)).unwrap()[0];
    let opts = ptq_options(7, 7);
    let q = m.quantize(&x, &opts).unwrap();
    exact_on_the_whole_input_range(&q, 40);
    let product = q.layers.iter().find(|l| l.kind == "product").unwrap();
    assert_eq!(product.elements, 36);
    let w = worst_error(&q, &x, y);
    assert!(w < 0.1, "{w}");
    // attention scores: Q·Kᵀ of two projections of the input, 2 tokens × 3 dimensions each
    let att = model_bytes(
        vec![
            node("MatMul", "q", &["x", "wq"], &["q0"], vec![]),
            node("Reshape", "qs", &["q0", "tok"], &["qm"], vec![]),
            node("MatMul", "k", &["x", "wk"], &["k0"], vec![]),
            node("Reshape", "ks", &["k0", "tok"], &["km"], vec![]),
            node(
                "Transpose",
                "kt",
                &["km"],
                &["ktm"],
                vec![attr_ints("perm", &[0, 2, 1])],
            ),
            node("MatMul", "scores", &["qm", "ktm"], &["sc"], vec![]),
            node("Flatten", "flat", &["sc"], &["sf"], vec![]),
            node("MatMul", "fc", &["sf", "wo"], &["y"], vec![]),
        ],
        vec![
            weights("wq", &[4, 6], 51),
            weights("wk", &[4, 6], 52),
            int_tensor("tok", &[-1, 2, 3]),
            weights("wo", &[4, 2], 53),
        ],
        &[-1, 4],
        "y",
        17,
    );
    let m = OnnxModel::from_bytes(&att).unwrap();
    let xa = rows(300, &[-1.0; 4], &[1.0; 4], 54);
    let ya = &m.eval(std::slice::from_ref(&xa)).unwrap()[0];
    let worst: Vec<f64> = [5u32, 8]
        .iter()
        .map(|&b| {
            let opts = ptq_options(b, b);
            let q = m.quantize(&xa, &opts).unwrap();
            exact_on_the_whole_input_range(&q, 30);
            let product = q.layers.iter().find(|l| l.kind == "product").unwrap();
            assert_eq!(product.elements, 2 * 3 * 2);
            worst_error(&q, &xa, ya)
        })
        .collect();
    assert!(worst[1] < worst[0] / 2.0 && worst[1] < 0.05, "{worst:?}");
    // shapes that do not broadcast
    let bad = model_bytes(
        vec![
            node("MatMul", "fc1", &["x", "w1"], &["h"], vec![]),
            node("MatMul", "fc2", &["x", "w2"], &["g"], vec![]),
            node("Mul", "prod", &["h", "g"], &["y"], vec![]),
        ],
        vec![weights("w1", &[4, 3], 24), weights("w2", &[4, 2], 25)],
        &[-1, 4],
        "y",
        17,
    );
    let x = rows(50, &[-1.0; 4], &[1.0; 4], 48);
    let e = OnnxModel::from_bytes(&bad).unwrap().quantize(&x, &opts);
    let e = e.map(|_| ()).unwrap_err().to_string();
    assert!(e.contains("prod"), "{e}");
    // a hostile batched product of empty constants (k = 0): 2^28 result elements, refused before
    // anything is allocated
    let huge = model_bytes(
        vec![
            node("MatMul", "big", &["c1", "c2"], &["p"], vec![]),
            node("ReduceSum", "s", &["p"], &["ps"], vec![attr_int("keepdims", 0)]),
            node("Add", "y", &["x", "ps"], &["y"], vec![]),
        ],
        vec![
            float_tensor("c1", &[1, 1 << 14, 0], &[]),
            float_tensor("c2", &[1, 0, 1 << 14], &[]),
        ],
        &[-1, 4],
        "y",
        17,
    );
    let e = OnnxModel::from_bytes(&huge)
        .and_then(|m| m.eval(std::slice::from_ref(&x)).map(|_| ()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("result elements"), "{e}");
    // operands of two ranks: the batch axis would meet another one
    let ranks = model_bytes(
        vec![
            node("MatMul", "fc1", &["x", "w1"], &["h"], vec![]),
            node("MatMul", "fc2", &["x", "w2"], &["g"], vec![]),
            node("Unsqueeze", "u", &["g", "ax"], &["g3"], vec![]),
            node("Mul", "prod", &["h", "g3"], &["y"], vec![]),
        ],
        vec![
            weights("w1", &[4, 3], 24),
            weights("w2", &[4, 3], 25),
            int_tensor("ax", &[1]),
        ],
        &[-1, 4],
        "y",
        17,
    );
    let e = OnnxModel::from_bytes(&ranks).unwrap().quantize(&x, &opts);
    let e = e.map(|_| ()).unwrap_err().to_string();
    assert!(e.contains("ranks 2 and 3"), "{e}");
}

fn in_domain(mut n: proto::NodeProto, domain: &str) -> proto::NodeProto {
    n.domain = Some(domain.into());
    n
}

fn attr_string(name: &str, v: &str) -> proto::AttributeProto {
    proto::AttributeProto {
        name: Some(name.into()),
        r#type: Some(proto::attribute_proto::AttributeType::String as i32),
        s: Some(v.as_bytes().to_vec()),
        ..Default::default()
    }
}

/// QONNX `Quant`, by its definition: `(clip(round(x / s + z), min, max) − z)·s`.
fn qonnx(x: f64, s: f64, z: f64, lo: f64, hi: f64) -> f64 {
    ((x / s + z).round_ties_even().clamp(lo, hi) - z) * s
}

/// A QONNX graph: a 3-bit unsigned Quant of the input (zero point 1), a MatMul with 4-bit signed
/// narrow weights (a Quant of an initializer, folded at reading, scales per output column).
fn qonnx_graph(rounding: &str, act_scale: &[f32]) -> Vec<u8> {
    let dom = "qonnx.custom_op.general";
    model_bytes(
        vec![
            in_domain(
                node(
                    "Quant",
                    "qx",
                    &["x", "sx", "zx", "b3"],
                    &["xq"],
                    vec![attr_int("signed", 0), attr_string("rounding_mode", rounding)],
                ),
                dom,
            ),
            in_domain(
                node(
                    "Quant",
                    "qw",
                    &["W", "sw", "zero", "b4"],
                    &["Wq"],
                    vec![attr_int("signed", 1), attr_int("narrow", 1)],
                ),
                dom,
            ),
            node("MatMul", "fc", &["xq", "Wq"], &["y"], vec![]),
        ],
        vec![
            float_tensor("sx", &[act_scale.len() as i64], act_scale),
            float_tensor("zx", &[], &[1.0]),
            float_tensor("b3", &[], &[3.0]),
            float_tensor("b4", &[], &[4.0]),
            float_tensor("zero", &[], &[0.0]),
            float_tensor("W", &[2, 2], &[0.9, -0.31, -2.0, 0.12]),
            float_tensor("sw", &[1, 2], &[0.25, 0.05]),
        ],
        &[-1, 2],
        "y",
        13,
    )
}

#[test]
fn qonnx_quant_nodes_read_by_their_definition_and_quantise_exactly() {
    let m = OnnxModel::from_bytes(&qonnx_graph("ROUND", &[0.5])).unwrap();
    let x = rows(64, &[-1.0, -1.0], &[3.5, 3.5], 5);
    let y = &m.eval(std::slice::from_ref(&x)).unwrap()[0];
    // weights: 4-bit signed narrow (−7 ..= 7) per column; input: 3-bit unsigned, zero point 1
    let w = [[0.9, -0.31], [-2.0, 0.12]];
    let sw = [0.25, 0.05];
    for r in 0..64 {
        let xq: Vec<f64> = (0..2).map(|j| qonnx(x[[r, j]], 0.5, 1.0, 0.0, 7.0)).collect();
        for o in 0..2 {
            let want: f64 = (0..2).map(|j| xq[j] * qonnx(w[j][o], sw[o], 0.0, -7.0, 7.0)).sum();
            assert!(
                (y[[r, o]] - want).abs() < 1e-6,
                "row {r} output {o}: {} vs {want}",
                y[[r, o]]
            );
        }
    }
    // the client's grid is the Quant's: 3 bits, no lookup before the MatMul
    let q = m.quantize(&x, &PtqOptions::default()).unwrap();
    let fhec_quant::InputSpec::Features { quantizer, .. } = &q.spec.inputs[0] else {
        panic!("features")
    };
    assert_eq!(quantizer.n_bits, 3);
    assert!(q.layers.iter().all(|l| l.kind == "accumulator"), "{:?}", q.layers);
    exact_on_the_whole_input_range(&q, 20);
    for (r, d) in dequantised(&q, &x).iter().enumerate() {
        for o in 0..2 {
            assert!((d[o] - y[[r, o]]).abs() < 1e-9, "row {r}: {d:?}");
        }
    }
}

#[test]
fn quantised_operators_fhec_cannot_reproduce_are_named() {
    let err = |b: &[u8]| OnnxModel::from_bytes(b).unwrap_err().to_string();
    assert!(err(&qonnx_graph("FLOOR", &[0.5])).contains("rounding_mode FLOOR"));
    assert!(err(&qonnx_graph("ROUND", &[0.5, 0.25])).contains("per-channel activation"));
    let dynamic = model_bytes(
        vec![node("DynamicQuantizeLinear", "dq", &["x"], &["y", "s", "z"], vec![])],
        vec![],
        &[-1, 2],
        "y",
        13,
    );
    assert!(err(&dynamic).contains("dynamic quantisation"));
    let other = model_bytes(
        vec![in_domain(
            node("QLinearSoftmax", "sm", &["x"], &["y"], vec![]),
            "com.microsoft",
        )],
        vec![],
        &[-1, 2],
        "y",
        13,
    );
    assert!(err(&other).contains("quantised operator QLinearSoftmax"));
    let bipolar = model_bytes(
        vec![in_domain(
            node("BipolarQuant", "b", &["x", "s"], &["y"], vec![]),
            "qonnx.custom_op.general",
        )],
        vec![float_tensor("s", &[], &[1.0])],
        &[-1, 2],
        "y",
        13,
    );
    assert!(err(&bipolar).contains("BipolarQuant"));
}

/// onnxruntime's QOperator format (generate.py: mnist_cnn quantised statically, per channel):
/// QLinearConv, QLinearAveragePool (ceil_mode, whose windows divide by the kernel's size), QGemm,
/// a Reshape of integers. Read, quantised on synthetic images, exact on every accepted input.
#[test]
fn a_qoperator_cnn_quantises_exactly() {
    let m = OnnxModel::from_bytes(include_bytes!("../tests/fixtures/mnist_cnn_qop.onnx")).unwrap();
    let n = 6;
    let flat = rows(n, &[0.0; 784], &[1.0; 784], 11);
    let x = flat.into_shape_with_order(IxDyn(&[n, 1, 28, 28])).unwrap();
    let y = &m.eval(std::slice::from_ref(&x)).unwrap()[0];
    assert_eq!(y.shape(), &[n, 10]);
    let q = m
        .quantize(
            &x,
            &PtqOptions {
                rounding_bits: 4,
                ..PtqOptions::default()
            },
        )
        .unwrap();
    let fhec_quant::InputSpec::Features { quantizer, .. } = &q.spec.inputs[0] else {
        panic!("features")
    };
    assert_eq!(quantizer.n_bits, 8, "the graph's uint8 input grid");
    exact_on_the_whole_input_range(&q, 3);
}

#[test]
fn four_bit_tensors_unpack_as_onnx_packs_them() {
    use proto::tensor_proto::DataType;
    let packed = |dt: DataType, dims: &[i64], raw: Option<Vec<u8>>, int32: Vec<i32>| proto::TensorProto {
        name: Some("w".into()),
        dims: dims.to_vec(),
        data_type: Some(dt as i32),
        raw_data: raw,
        int32_data: int32,
        ..Default::default()
    };
    let values = |t: &proto::TensorProto| crate::model::tensor(t).map(|a| a.iter().copied().collect::<Vec<f64>>());
    // the first element in the low nibble; INT4 sign-extended; an odd count pads the last high nibble
    let raw = vec![0x21, 0xF8, 0x07];
    assert_eq!(
        values(&packed(DataType::Uint4, &[5], Some(raw.clone()), vec![])).unwrap(),
        [1.0, 2.0, 8.0, 15.0, 7.0]
    );
    assert_eq!(
        values(&packed(DataType::Int4, &[5], Some(raw.clone()), vec![])).unwrap(),
        [1.0, 2.0, -8.0, -1.0, 7.0]
    );
    // the same values through int32_data (one packed pair per entry)
    let int32 = raw.iter().map(|&b| i32::from(b)).collect();
    assert_eq!(
        values(&packed(DataType::Int4, &[5], None, int32)).unwrap(),
        [1.0, 2.0, -8.0, -1.0, 7.0]
    );
    for (t, msg) in [
        (
            packed(DataType::Uint4, &[5], Some(vec![0x21, 0xF8]), vec![]),
            "2 bytes of packed 4-bit data for 5 elements",
        ),
        (
            packed(DataType::Uint4, &[5], Some(vec![0x21, 0xF8, 0x17]), vec![]),
            "padding nibble",
        ),
        (
            packed(DataType::Int4, &[2], None, vec![0x121]),
            "not two packed 4-bit values",
        ),
        (
            packed(DataType::Int4, &[2], None, vec![-1]),
            "not two packed 4-bit values",
        ),
    ] {
        let e = values(&t).unwrap_err().to_string();
        assert!(e.contains(msg), "{e}");
    }
}
