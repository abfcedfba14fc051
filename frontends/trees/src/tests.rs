use fhec_ir::{interp, verify};
use ndarray::{ArrayD, IxDyn};
use proptest::prelude::*;

use super::*;

fn split(feature: usize, threshold: f64, left: usize, right: usize) -> Node {
    Node::Split {
        feature,
        threshold,
        cmp: Cmp::Le,
        left,
        right,
        missing_left: false,
    }
}

fn leaf(v: &[f64]) -> Node {
    Node::Leaf { value: v.to_vec() }
}

/// Two trees on three features: a depth-2 tree and a stump, one output.
fn small() -> Ensemble {
    Ensemble {
        n_features: 3,
        n_outputs: 1,
        trees: vec![
            Tree {
                nodes: vec![
                    split(0, 0.3, 1, 2),
                    split(1, -1.0, 3, 4),
                    leaf(&[7.0]),
                    leaf(&[-2.0]),
                    leaf(&[1.5]),
                ],
            },
            Tree {
                nodes: vec![split(2, 10.0, 1, 2), leaf(&[0.25]), leaf(&[-3.0])],
            },
        ],
        base_score: vec![0.5],
        aggregation: Aggregation::Sum,
        post: Post::Identity,
        float: FloatKind::F32,
    }
}

fn calibration() -> Vec<Vec<f64>> {
    vec![vec![-1.0, -3.0, 0.0], vec![1.0, 2.0, 20.0], vec![0.2, 0.0, 5.0]]
}

/// Runs the module in the interpreter on the thermometer encoding of `q`.
fn run_module(m: &fhec_ir::module::Module, q: &Quantized, qx: &[i64]) -> Vec<i64> {
    let v = verify(m).unwrap_or_else(|d| panic!("{d:?}\n{}", fhec_ir::print_module(m)));
    let bits = q.thermometer(qx);
    let x = ArrayD::from_shape_vec(IxDyn(&[1, bits.len()]), bits).unwrap();
    let out = interp::eval(&v, &[x]).unwrap_or_else(|e| panic!("{e:?}"));
    out[0].iter().copied().collect()
}

#[test]
fn the_module_computes_the_quantised_scores() {
    let e = small();
    let q = quantize(&e, &calibration(), 4, 8).unwrap();
    for mode in [LeafMode::Fused, LeafMode::Indicator] {
        let (m, report) = build_module(&q, Some(mode)).unwrap();
        assert_eq!(report.leaves, 5);
        assert_eq!(report.max_depth, 2);
        assert_eq!(report.lookup_bits, 2);
        assert_eq!(report.input_bits, 3 * 15);
        for a in 0..16 {
            for b in [0, 3, 7, 12, 15] {
                for c in [0, 7, 8, 15] {
                    let qx = [a, b, c];
                    assert_eq!(run_module(&m, &q, &qx), q.scores(&qx), "{mode:?} q={qx:?}");
                }
            }
        }
    }
}

#[test]
fn the_quantised_model_takes_the_float_path_on_the_grid() {
    let e = small();
    let q = quantize(&e, &calibration(), 4, 16).unwrap();
    for a in 0..16u32 {
        for b in 0..16u32 {
            for c in 0..16u32 {
                let x: Vec<f64> = [a, b, c]
                    .iter()
                    .enumerate()
                    .map(|(j, &v)| q.inputs.level_value(j, v))
                    .collect();
                let qx = q.inputs.quantize_row(&x);
                assert_eq!(qx, vec![a as i64, b as i64, c as i64]);
                let want = e.predict_raw(&x)[0];
                let got = q.dequantize(&q.scores(&qx))[0];
                // leaves are quantised on 16 bits: a different path would be off by ≥ 0.25
                assert!((want - got).abs() < 1e-3, "{x:?}: {want} vs {got}");
            }
        }
    }
}

#[test]
fn sklearn_semantics_compare_float32_inputs_with_float64_thresholds() {
    // 0.1f32 as f64 is 0.10000000149…; a float64 threshold between the two is not cast
    let t = 0.100000001;
    assert!(!compare_f32(0.1, t));
    assert!(schema::compare(FloatKind::F64, 0.1, t, Cmp::Le));
}

fn compare_f32(x: f64, t: f64) -> bool {
    schema::compare(FloatKind::F32, x, t, Cmp::Le)
}

#[test]
fn bad_models_and_options_are_errors() {
    let mut e = small();
    e.trees[0].nodes[0] = split(5, 0.0, 1, 2);
    assert!(e.validate().unwrap_err().to_string().contains("feature 5 out of range"));
    let mut e = small();
    e.trees[0].nodes[1] = split(1, 0.0, 0, 4);
    assert!(e.validate().unwrap_err().to_string().contains("reached twice"));
    let mut e = small();
    e.trees[1].nodes[1] = leaf(&[1.0, 2.0]);
    assert!(e.validate().unwrap_err().to_string().contains("2 values for 1 outputs"));
    let mut e = small();
    e.trees[1].nodes[0] = split(0, f64::NAN, 1, 2);
    assert!(e.validate().unwrap_err().to_string().contains("NaN"));
    assert!(Ensemble::from_json("{\"n_features\": 2}").is_err());
    assert!(Ensemble::from_json("[]")
        .unwrap_err()
        .to_string()
        .contains("not a tree ensemble"));
    let e = small();
    assert!(quantize(&e, &calibration(), 0, 8).is_err());
    assert!(quantize(&e, &calibration(), 11, 8)
        .unwrap_err()
        .to_string()
        .contains("1 to 10"));
    assert!(quantize(&e, &calibration(), 4, 1).is_err());
    assert!(quantize(&e, &[], 4, 8).unwrap_err().to_string().contains("empty"));
    assert!(quantize(&e, &[vec![0.0, f64::NAN, 1.0]], 4, 8)
        .unwrap_err()
        .to_string()
        .contains("missing"));
    assert!(quantize(&e, &[vec![0.0, 1.0]], 4, 8)
        .unwrap_err()
        .to_string()
        .contains("2 features"));
    // every threshold outside the calibrated range: the quantised model is constant
    let q = quantize(&e, &[vec![5.0, 5.0, 50.0], vec![6.0, 6.0, 60.0]], 4, 8).unwrap();
    assert!(build_module(&q, None).unwrap_err().to_string().contains("constant"));
    // round trip of the quantised form; damaged ones are refused
    let q = quantize(&e, &calibration(), 4, 8).unwrap();
    assert_eq!(Quantized::from_json(&q.to_json()).unwrap(), q);
    let mut bad = q.clone();
    bad.leaf_scale.pop();
    assert!(Quantized::from_json(&bad.to_json()).is_err());
    assert_eq!(Ensemble::from_json(&small().to_json()).unwrap(), small());
}

/// A random tree of depth ≤ `depth` on `f` features with thresholds in [-1, 1] and `c` outputs.
fn arb_tree(f: usize, c: usize, depth: u32) -> impl Strategy<Value = Tree> {
    let leaf = prop::collection::vec(-8.0f64..8.0, c).prop_map(|v| vec![Node::Leaf { value: v }]);
    leaf.prop_recursive(depth, 64, 2, move |inner| {
        (0..f, -1.2f64..1.2, any::<bool>(), inner.clone(), inner).prop_map(|(feature, t, le, l, r)| {
            let mut nodes = vec![Node::Split {
                feature,
                threshold: t,
                cmp: if le { Cmp::Le } else { Cmp::Lt },
                left: 1,
                right: 1 + l.len(),
                missing_left: false,
            }];
            let shift = |n: &Node, by: usize| match n {
                Node::Split {
                    feature,
                    threshold,
                    cmp,
                    left,
                    right,
                    missing_left,
                } => Node::Split {
                    feature: *feature,
                    threshold: *threshold,
                    cmp: *cmp,
                    left: left + by,
                    right: right + by,
                    missing_left: *missing_left,
                },
                leaf => leaf.clone(),
            };
            nodes.extend(l.iter().map(|n| shift(n, 1)));
            let off = 1 + l.len();
            nodes.extend(r.iter().map(|n| shift(n, off)));
            nodes
        })
    })
    .prop_map(|nodes| Tree { nodes })
}

fn arb_case() -> impl Strategy<Value = (Ensemble, u32, Vec<Vec<i64>>)> {
    (1usize..4, 1usize..3, 1u32..4).prop_flat_map(|(f, c, bits)| {
        (
            prop::collection::vec(arb_tree(f, c, 4), 1..4),
            prop::collection::vec(prop::collection::vec(0i64..(1 << bits), f), 6),
        )
            .prop_map(move |(trees, qs)| {
                (
                    Ensemble {
                        n_features: f,
                        n_outputs: c,
                        trees,
                        base_score: vec![],
                        aggregation: Aggregation::Sum,
                        post: Post::Identity,
                        float: FloatKind::F32,
                    },
                    bits,
                    qs,
                )
            })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// On random ensembles, the module (both leaf modes, before and after the default pipeline)
    /// computes the quantised scores on every sampled input.
    #[test]
    fn random_ensembles_compile_to_their_quantised_scores((e, bits, qs) in arb_case()) {
        let calib = vec![vec![-1.0; e.n_features], vec![1.0; e.n_features]];
        let q = quantize(&e, &calib, bits, 8).unwrap();
        for mode in [LeafMode::Fused, LeafMode::Indicator] {
            let (mut m, _) = match build_module(&q, Some(mode)) {
                Ok(x) => x,
                Err(TreeError::Build(msg)) if msg.contains("constant") => return Ok(()),
                Err(err) => panic!("{err}"),
            };
            for qx in &qs {
                prop_assert_eq!(run_module(&m, &q, qx), q.scores(qx));
            }
            fhec_passes::manager::run_text(&mut m, fhec_passes::manager::DEFAULT_PIPELINE, &mut crate::tests::pass_context())
                .unwrap_or_else(|d| panic!("{d:?}"));
            for qx in &qs {
                prop_assert_eq!(run_module(&m, &q, qx), q.scores(qx));
            }
        }
    }
}

#[test]
fn after_the_default_pipeline_lookups_have_the_path_sum_width() {
    let q = quantize(&small(), &calibration(), 4, 8).unwrap();
    let (mut m, _) = build_module(&q, None).unwrap();
    fhec_passes::manager::run_text(
        &mut m,
        fhec_passes::manager::DEFAULT_PIPELINE,
        &mut crate::tests::pass_context(),
    )
    .unwrap();
    let text = fhec_ir::print_module(&m);
    // depth 2: the single leaf on [0, 2], the two sibling pairs on [0, 3]: 2-bit lookups, 3 in all
    let luts: Vec<&str> = text.lines().filter(|l| l.contains("fhe.mapped_lut")).collect();
    assert_eq!(luts.len(), 2, "{text}");
    for l in &luts {
        assert!(l.contains("x!fhe.eint<2>>) ->"), "{l}");
    }
    assert!(
        luts[0].contains("(tensor<1x1x") && luts[1].contains("(tensor<1x2x"),
        "{text}"
    );
}

#[test]
fn quantile_quantisers_follow_the_float_path_at_their_edges() {
    let e = small();
    // skewed calibration data: most values small, a few huge
    let mut rows = Vec::new();
    for i in 0..200 {
        let f = i as f64;
        rows.push(vec![
            (f / 200.0) - 0.5,
            if i % 50 == 0 { 1e4 } else { f / 40.0 - 3.0 },
            f / 10.0,
        ]);
    }
    let q = quantize_with(&e, &rows, 4, 16, QuantizerKind::Quantile).unwrap();
    let edges = q.inputs.edges.as_ref().unwrap();
    assert!(edges.iter().all(|f| f.len() <= 15 && f.windows(2).all(|w| w[0] < w[1])));
    for r in &rows {
        let qx = q.inputs.quantize_row(r);
        let xhat: Vec<f64> = qx
            .iter()
            .enumerate()
            .map(|(j, &v)| q.inputs.level_value(j, v as u32))
            .collect();
        // the representative value of each bin quantises back into the bin
        assert_eq!(q.inputs.quantize_row(&xhat), qx);
        let want = e.predict_raw(&xhat)[0];
        let got = q.dequantize(&q.scores(&qx))[0];
        assert!((want - got).abs() < 1e-3, "{r:?}: {want} vs {got}");
    }
    let (m, _) = build_module(&q, None).unwrap();
    for r in rows.iter().step_by(7) {
        let qx = q.inputs.quantize_row(r);
        assert_eq!(run_module(&m, &q, &qx), q.scores(&qx));
    }
    assert_eq!(Quantized::from_json(&q.to_json()).unwrap(), q);
}

/// The module of the two-tree ensemble (4-bit inputs): as built, and after the default pipeline.
#[test]
fn snapshot_of_a_tiny_ensemble() {
    let q = quantize(&small(), &calibration(), 2, 4).unwrap();
    let (mut m, report) = build_module(&q, None).unwrap();
    insta::assert_snapshot!("tiny_built", fhec_ir::print_module(&m));
    fhec_passes::manager::run_text(
        &mut m,
        fhec_passes::manager::DEFAULT_PIPELINE,
        &mut crate::tests::pass_context(),
    )
    .unwrap();
    insta::assert_snapshot!("tiny_after_pipeline", fhec_ir::print_module(&m));
    insta::assert_snapshot!("tiny_report", format!("{report:?}"));
}

/// A pass context with the backend's cost model (the default pipeline's lut-fusion weighs lookups).
fn pass_context() -> fhec_passes::manager::PassContext {
    fhec_passes::manager::PassContext::with_cost_source(fhec_backend_tfhe::cost::cost_model)
}
