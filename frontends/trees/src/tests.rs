use fhec_ir::{interp, verify, Tensor};
use ndarray::{ArrayD, IxDyn};
use proptest::prelude::*;

use super::*;
use crate::testing::{never_panics, refused, XorShift};

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
    for mode in [LeafMode::Fused, LeafMode::Indicator, LeafMode::Collect] {
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
        for mode in [LeafMode::Fused, LeafMode::Indicator, LeafMode::Collect] {
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

    /// The narrow types the builder declares (a tree's leaf sum as wide as one leaf value; in
    /// collect mode, 0/1 sums per leaf value) are promises the interpreter checks. They hold on
    /// every input of the program's type, not only on thermometer codes: whatever the bits, one
    /// leaf per tree is reached. So every mode runs on random bit vectors, before and after the
    /// pipeline, and the modes agree.
    #[test]
    fn every_bit_vector_is_accepted_and_the_modes_agree((e, bits, _) in arb_case(), seed in any::<u64>()) {
        let calib = vec![vec![-1.0; e.n_features], vec![1.0; e.n_features]];
        let q = quantize(&e, &calib, bits, 8).unwrap();
        let m_bits = q.n_features * q.levels();
        let mut rng = seed | 1;
        let vectors: Vec<Tensor> = (0..8)
            .map(|_| {
                let v: Vec<i64> = (0..m_bits)
                    .map(|_| {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        (rng & 1) as i64
                    })
                    .collect();
                ArrayD::from_shape_vec(IxDyn(&[1, m_bits]), v).unwrap()
            })
            .collect();
        let mut first: Option<Vec<Vec<Tensor>>> = None;
        for mode in [LeafMode::Fused, LeafMode::Indicator, LeafMode::Collect] {
            let (mut m, _) = match build_module(&q, Some(mode)) {
                Ok(x) => x,
                Err(TreeError::Build(msg)) if msg.contains("constant") => return Ok(()),
                Err(err) => panic!("{err}"),
            };
            for pass in [false, true] {
                if pass {
                    fhec_passes::manager::run_text(&mut m, fhec_passes::manager::DEFAULT_PIPELINE, &mut crate::tests::pass_context())
                        .unwrap_or_else(|d| panic!("{d:?}"));
                }
                let v = verify(&m).unwrap_or_else(|d| panic!("{d:?}"));
                let outs: Vec<Vec<Tensor>> = vectors
                    .iter()
                    .map(|x| interp::eval(&v, std::slice::from_ref(x)).unwrap_or_else(|e| panic!("{mode:?}: {e:?}\n{}", fhec_ir::print_module(&m))))
                    .collect();
                match &first {
                    None => first = Some(outs),
                    Some(f) => prop_assert_eq!(f, &outs, "{:?}", mode),
                }
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

// ---- hostile model files: every importer refuses with an error, never panics, never allocates or
// works beyond what the file holds ----

/// A fixture of the importer tests (`tests/data`).
fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn fixture_json(name: &str) -> serde_json::Value {
    serde_json::from_slice(&fixture(name)).unwrap()
}

/// Values that break parsers: negative, zero, huge, not numbers, empty lists and strings.
const NASTY: &[&str] = &[
    "",
    "-1",
    "0",
    "1",
    "2",
    "65",
    "99999",
    "4294967296",
    "9223372036854775807",
    "18446744073709551615",
    "1e18",
    "1e308",
    "-1e308",
    "0.5",
    "\"\"",
    "\"[]\"",
    "\"nan\"",
    "\"inf\"",
    "\"-1\"",
    "\"1e30\"",
    "[]",
    "{}",
    "null",
    "true",
    "\"",
    ",",
    "]",
    "}",
];

/// One random damage of `seed`: byte flips, a number (or any span) replaced by a [`NASTY`] value, a
/// truncation, a duplicated span.
fn mutate(seed: &[u8], rng: &mut XorShift) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..1 + rng.below(3) {
        if b.is_empty() {
            break;
        }
        let i = rng.below(b.len());
        match rng.below(6) {
            0 => b[i] ^= (rng.next_u64() >> 40) as u8 | 1,
            1 | 2 => {
                // the number (digits and signs, exponents, points) at or after i
                let start = (i..b.len()).find(|&j| b[j].is_ascii_digit()).unwrap_or(i);
                let end = (start..b.len())
                    .find(|&j| !(b[j].is_ascii_digit() || b"+-.eE".contains(&b[j])))
                    .unwrap_or(b.len());
                let end = end.max(start + 1).min(b.len());
                let start = if start > 0 && b[start - 1] == b'-' {
                    start - 1
                } else {
                    start
                };
                let with = NASTY[rng.below(NASTY.len())].as_bytes();
                b.splice(start..end, with.iter().copied());
            }
            3 => {
                let end = (i + 1 + rng.below(8)).min(b.len());
                let with = NASTY[rng.below(NASTY.len())].as_bytes();
                b.splice(i..end, with.iter().copied());
            }
            4 => b.truncate(i),
            _ => {
                let end = (i + 1 + rng.below(64)).min(b.len());
                let copy = b[i..end].to_vec();
                let at = rng.below(b.len());
                b.splice(at..at, copy);
            }
        }
    }
    b
}

fn text_import(f: fn(&str) -> Result<Ensemble, TreeError>) -> impl Fn(&[u8]) -> Result<Ensemble, TreeError> {
    move |b| f(&String::from_utf8_lossy(b))
}

// -- XGBoost --

fn xgb_set(v: &mut serde_json::Value, path: &[&str], x: serde_json::Value) {
    let mut cur = v;
    for p in path {
        cur = match p.parse::<usize>() {
            Ok(i) => &mut cur[i],
            Err(_) => &mut cur[*p],
        };
    }
    *cur = x;
}

const XGB_TREE0: [&str; 5] = ["learner", "gradient_booster", "model", "trees", "0"];

fn xgb_tree0(field: &str, i: usize) -> Vec<&str> {
    let mut p = XGB_TREE0.to_vec();
    p.push(field);
    p.push(["0", "1", "2"][i]);
    p
}

#[test]
fn xgboost_a_count_string_without_a_number_is_an_error() {
    // was: `num(..)?[0]` indexed an empty list (panic)
    for empty in ["", "[]", " [ ] "] {
        let mut v = fixture_json("xgb_binary.json");
        xgb_set(&mut v, &["learner", "learner_model_param", "num_feature"], empty.into());
        refused(xgboost::import(&v.to_string()), "num_feature holds no number");
        let mut v = fixture_json("xgb_binary.json");
        xgb_set(&mut v, &["learner", "learner_model_param", "base_score"], empty.into());
        refused(xgboost::import(&v.to_string()), "base_score has 0 values");
    }
}

#[test]
fn xgboost_a_huge_num_class_is_refused_before_allocating() {
    // was: `vec![base; 1e18]` (capacity overflow panic) or one `num_class`-long vector per leaf
    for n in ["1e18", "100000", "\"-3\"", "\"2.5\"", "\"nan\""] {
        let mut v = fixture_json("xgb_binary.json");
        let n: serde_json::Value = serde_json::from_str(n).unwrap();
        xgb_set(&mut v, &["learner", "learner_model_param", "num_class"], n);
        refused(xgboost::import(&v.to_string()), "num_class");
    }
    let mut v = fixture_json("xgb_binary.json");
    xgb_set(
        &mut v,
        &["learner", "learner_model_param", "num_feature"],
        "1e30".into(),
    );
    refused(xgboost::import(&v.to_string()), "num_feature");
}

#[test]
fn xgboost_many_leaves_of_many_classes_are_refused_before_allocating() {
    // 65 536 classes (the limit) × 800 leaves: 52M dense leaf values, 420 MB, from a 0.5 MB file
    let mut v = fixture_json("xgb_binary.json");
    xgb_set(&mut v, &["learner", "learner_model_param", "num_class"], "65536".into());
    xgb_set(&mut v, &["learner", "objective", "name"], "multi:softprob".into());
    let model = &mut v["learner"]["gradient_booster"]["model"];
    let tree = model["trees"][0].clone();
    model["trees"] = serde_json::Value::Array(vec![tree; 100]);
    model["tree_info"] = serde_json::Value::Array(vec![0.into(); 100]);
    refused(xgboost::import(&v.to_string()), "leaf values");
}

#[test]
fn xgboost_bad_child_and_feature_indices_are_errors() {
    for (field, x, want) in [
        ("left_children", 999i64, "left_children 999 out of range"),
        ("right_children", -2, "right_children -2 out of range"),
        ("split_indices", -1, "split_indices -1 out of range"),
        ("split_indices", 1 << 40, "split_indices 1099511627776 out of range"),
        ("tree_info", 7, "tree_info 7 out of range"),
        ("tree_info", -1, "tree_info -1 out of range"),
    ] {
        let mut v = fixture_json("xgb_binary.json");
        let path = if field == "tree_info" {
            vec!["learner", "gradient_booster", "model", "tree_info", "0"]
        } else {
            xgb_tree0(field, 0)
        };
        xgb_set(&mut v, &path, x.into());
        refused(xgboost::import(&v.to_string()), want);
    }
    // a child pointing back at the root: a cycle
    let mut v = fixture_json("xgb_binary.json");
    xgb_set(&mut v, &xgb_tree0("left_children", 1), 0.into());
    refused(xgboost::import(&v.to_string()), "reached twice");
    let mut v = fixture_json("xgb_binary.json");
    xgb_set(&mut v, &xgb_tree0("left_children", 0), 0.into());
    refused(xgboost::import(&v.to_string()), "reached twice");
}

/// XGBoost tree arrays of a chain: `depth` splits, each with a leaf on the left.
fn xgb_chain(depth: usize) -> serde_json::Value {
    let n = 2 * depth + 1;
    let (mut left, mut right) = (vec![-1i64; n], vec![-1i64; n]);
    for k in 0..depth {
        left[2 * k] = 2 * k as i64 + 1;
        right[2 * k] = 2 * k as i64 + 2;
    }
    serde_json::json!({
        "left_children": left,
        "right_children": right,
        "split_indices": vec![0; n],
        "split_conditions": vec![0.5; n],
        "default_left": vec![0; n],
        "split_type": vec![0; n],
    })
}

#[test]
fn xgboost_a_100k_deep_chain_is_refused() {
    let mut v = fixture_json("xgb_binary.json");
    for depth in [65, 100_000] {
        let model = &mut v["learner"]["gradient_booster"]["model"];
        model["trees"][0] = xgb_chain(depth);
        refused(xgboost::import(&v.to_string()), "deeper than the supported depth 64");
    }
    // depth 64 is fine
    v["learner"]["gradient_booster"]["model"]["trees"][0] = xgb_chain(64);
    xgboost::import(&v.to_string()).unwrap();
}

#[test]
fn xgboost_never_panics_on_damaged_files() {
    let seeds: Vec<Vec<u8>> = ["xgb_binary.json", "xgb_multi.json", "xgb_regression.json"]
        .iter()
        .map(|f| fixture(f))
        .collect();
    never_panics("xgboost", &seeds, 3000, mutate, &text_import(xgboost::import));
}

// -- LightGBM --

/// A LightGBM split node (as dumped) on feature 0.
fn lgbm_split(left: serde_json::Value, right: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "split_index": 0, "split_feature": 0, "threshold": 0.5, "decision_type": "<=",
        "default_left": true, "missing_type": "None", "left_child": left, "right_child": right,
    })
}

fn lgbm_chain(depth: usize) -> serde_json::Value {
    let mut node = serde_json::json!({"leaf_index": 0, "leaf_value": 1.0});
    for _ in 0..depth {
        node = lgbm_split(serde_json::json!({"leaf_index": 0, "leaf_value": -1.0}), node);
    }
    node
}

#[test]
fn lightgbm_a_huge_num_tree_per_iteration_is_refused_before_allocating() {
    // was: a `num_tree_per_iteration`-long vector per leaf: 2^61 overflowed (panic), 1e12 aborted
    for n in [1u64 << 61, 1 << 40, 65_537, u64::MAX] {
        let mut v = fixture_json("lgbm_binary.json");
        v["num_tree_per_iteration"] = n.into();
        refused(lightgbm::import(&v.to_string()), "num_tree_per_iteration");
    }
    let mut v = fixture_json("lgbm_binary.json");
    v["num_tree_per_iteration"] = (-1).into();
    refused(lightgbm::import(&v.to_string()), "num_tree_per_iteration");
}

#[test]
fn lightgbm_many_leaves_of_many_classes_are_refused_before_allocating() {
    // 65 536 outputs (the limit) × ~500 leaves: 30M dense leaf values from a 0.5 MB file
    let mut v = fixture_json("lgbm_binary.json");
    v["num_tree_per_iteration"] = 65_536.into();
    let trees = v["tree_info"].as_array().unwrap().clone();
    v["tree_info"] = serde_json::Value::Array(trees.iter().cycle().take(60).cloned().collect());
    refused(lightgbm::import(&v.to_string()), "leaf values");
}

#[test]
fn lightgbm_bad_feature_indices_are_errors() {
    // was: `max_feature_idx + 1` overflowed (a panic with overflow checks, 0 features without)
    let mut v = fixture_json("lgbm_binary.json");
    v["max_feature_idx"] = u64::MAX.into();
    refused(lightgbm::import(&v.to_string()), "max_feature_idx");
    let mut v = fixture_json("lgbm_binary.json");
    v["max_feature_idx"] = (-1).into();
    refused(lightgbm::import(&v.to_string()), "max_feature_idx");
    let mut v = fixture_json("lgbm_binary.json");
    v["tree_info"][0]["tree_structure"]["split_feature"] = u64::MAX.into();
    refused(lightgbm::import(&v.to_string()), "split_feature");
    let mut v = fixture_json("lgbm_binary.json");
    v["tree_info"][0]["tree_structure"]["split_feature"] = 5.into();
    refused(lightgbm::import(&v.to_string()), "feature 5 out of range");
}

#[test]
fn lightgbm_deep_chains_are_refused() {
    // was: one recursive call per level (accepted up to serde_json's nesting limit)
    let mut v = fixture_json("lgbm_binary.json");
    v["tree_info"][0]["tree_structure"] = lgbm_chain(100);
    refused(lightgbm::import(&v.to_string()), "deeper than the supported depth 64");
    v["tree_info"][0]["tree_structure"] = lgbm_chain(64);
    lightgbm::import(&v.to_string()).unwrap();
    // 100 000 levels: refused by the JSON parser's nesting limit, not a stack overflow
    let mut text = String::new();
    for _ in 0..100_000 {
        text.push_str(r#"{"split_feature": 0, "threshold": 0.5, "decision_type": "<=", "right_child": {"leaf_value": 1}, "left_child": "#);
    }
    text.push_str(r#"{"leaf_value": 1}"#);
    text.push_str(&"}".repeat(100_000));
    let v = fixture_json("lgbm_binary.json");
    let whole = v.to_string().replacen(
        "\"tree_info\":[",
        &format!("\"tree_info\":[{{\"tree_structure\": {text}}},"),
        1,
    );
    refused(lightgbm::import(&whole), "not a LightGBM model dump");
}

#[test]
fn lightgbm_never_panics_on_damaged_files() {
    let seeds: Vec<Vec<u8>> = [
        "lgbm_binary.json",
        "lgbm_multi.json",
        "lgbm_regression.json",
        "lgbm_rf.json",
    ]
    .iter()
    .map(|f| fixture(f))
    .collect();
    never_panics("lightgbm", &seeds, 3000, mutate, &text_import(lightgbm::import));
}

#[test]
fn ensemble_json_huge_sizes_are_refused() {
    // was: accepted, and `n_features` sized the quantisers and the input encoding
    let mut v: serde_json::Value = serde_json::from_str(&small().to_json()).unwrap();
    v["n_features"] = 1_000_000_000_000u64.into();
    refused(Ensemble::from_json(&v.to_string()), "n_features");
    let mut v: serde_json::Value = serde_json::from_str(&small().to_json()).unwrap();
    v["trees"][0]["nodes"][0]["left"] = 99.into();
    refused(Ensemble::from_json(&v.to_string()), "child 99 out of range");
    let mut v: serde_json::Value = serde_json::from_str(&small().to_json()).unwrap();
    v["trees"][0]["nodes"][1]["right"] = 0.into();
    refused(Ensemble::from_json(&v.to_string()), "reached twice");
}

#[test]
fn ensemble_json_a_100k_deep_chain_is_refused() {
    let chain = |depth: usize| {
        let mut nodes = Vec::new();
        for k in 0..depth {
            nodes.push(split(0, 0.5, 2 * k + 1, 2 * k + 2));
            nodes.push(leaf(&[1.0]));
        }
        nodes.push(leaf(&[2.0]));
        let mut e = small();
        e.trees[1] = Tree { nodes };
        e.to_json()
    };
    refused(
        Ensemble::from_json(&chain(100_000)),
        "deeper than the supported depth 64",
    );
    Ensemble::from_json(&chain(64)).unwrap();
}

#[test]
fn ensemble_json_never_panics_on_damaged_files() {
    let mut seeds = vec![small().to_json().into_bytes()];
    for f in ["xgb_multi.json", "lgbm_multi.json"] {
        let text = String::from_utf8(fixture(f)).unwrap();
        let e = if f.starts_with("xgb") {
            xgboost::import(&text)
        } else {
            lightgbm::import(&text)
        };
        seeds.push(e.unwrap().to_json().into_bytes());
    }
    never_panics("ensemble json", &seeds, 3000, mutate, &text_import(Ensemble::from_json));
}

/// A full binary tree of `depth` levels on `f` features (thresholds spread over [-1, 1]), leaf
/// values from a counter: 2^depth leaves, every path `depth` tests long.
fn full_tree(depth: u32, f: usize, c: usize, seed: &mut u64) -> Tree {
    let mut nodes = Vec::new();
    fn grow(nodes: &mut Vec<Node>, d: u32, f: usize, c: usize, seed: &mut u64) -> usize {
        let me = nodes.len();
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let r = (*seed >> 33) as usize;
        if d == 0 {
            nodes.push(leaf(&(0..c).map(|o| ((r + o) % 15) as f64 - 7.0).collect::<Vec<_>>()));
            return me;
        }
        nodes.push(split(0, 0.0, 0, 0));
        let t = (r % 200) as f64 / 100.0 - 1.0;
        let l = grow(nodes, d - 1, f, c, seed);
        let rr = grow(nodes, d - 1, f, c, seed);
        nodes[me] = split(r % f, t, l, rr);
        me
    }
    grow(&mut nodes, depth, f, c, seed);
    Tree { nodes }
}

/// Trees deeper than `MAX_DIRECT_DEPTH` are cut into segments: every lookup reads 3 bits whatever
/// the depth, checkpoints are shared by the leaves below them, and the module (both leaf modes,
/// before and after the default pipeline) computes the quantised scores on every sampled input.
#[test]
fn deep_trees_are_cut_into_three_bit_segments() {
    let mut seed = 7u64;
    for (depth, trees, c) in [(8u32, 1usize, 1usize), (10, 2, 1), (9, 1, 2), (20, 1, 1)] {
        // a full tree at depth 20 is 2^20 leaves: keep that one a "caterpillar" (one leaf per level)
        let ts: Vec<Tree> = (0..trees)
            .map(|_| {
                if depth <= 10 {
                    full_tree(depth, 4, c, &mut seed)
                } else {
                    let mut nodes = Vec::new();
                    for k in 0..depth as usize {
                        let t = (k as f64 / depth as f64) * 1.8 - 0.9;
                        nodes.push(split(k % 4, t, 2 * k + 1, 2 * k + 2));
                        nodes.push(leaf(&[k as f64 - 5.0]));
                    }
                    nodes.push(leaf(&[9.0]));
                    // node 2k: split with left = leaf 2k+1, right = next split 2k+2
                    Tree { nodes }
                }
            })
            .collect();
        let e = Ensemble {
            n_features: 4,
            n_outputs: c,
            trees: ts,
            base_score: vec![],
            aggregation: Aggregation::Sum,
            post: Post::Identity,
            float: FloatKind::F32,
        };
        let calib: Vec<Vec<f64>> = vec![vec![-1.0; 4], vec![1.0; 4]];
        let q = quantize(&e, &calib, 4, 8).unwrap();
        let mut qs: Vec<Vec<i64>> = Vec::new();
        for i in 0..40i64 {
            qs.push((0..4).map(|j| (i * 7 + j * 5 + i / 3) % 16).collect());
        }
        for mode in [LeafMode::Fused, LeafMode::Indicator, LeafMode::Collect] {
            let (mut m, report) = build_module(&q, Some(mode)).unwrap();
            assert!(report.max_depth > crate::build::MAX_DIRECT_DEPTH, "{report:?}");
            assert_eq!(report.lookup_bits, 3, "{report:?}");
            for qx in &qs {
                assert_eq!(run_module(&m, &q, qx), q.scores(qx), "depth {depth}, {mode:?}, {qx:?}");
            }
            fhec_passes::manager::run_text(
                &mut m,
                fhec_passes::manager::DEFAULT_PIPELINE,
                &mut crate::tests::pass_context(),
            )
            .unwrap_or_else(|d| panic!("{d:?}"));
            for qx in &qs {
                assert_eq!(
                    run_module(&m, &q, qx),
                    q.scores(qx),
                    "depth {depth}, {mode:?}, after the pipeline"
                );
            }
            let text = fhec_ir::print_module(&m);
            // every lookup reads 3 bits; collect mode adds 1- and 2-bit lookups of its sums
            for l in text.lines().filter(|l| l.contains("fhe.mapped_lut")) {
                let one_bit =
                    mode == LeafMode::Collect && (l.contains("x!fhe.eint<1>>) ->") || l.contains("x!fhe.eint<2>>) ->"));
                assert!(l.contains("x!fhe.eint<3>>) ->") || one_bit, "{l}");
            }
        }
    }
}

/// Found by `random_ensembles_compile_to_their_quantised_scores` (CI, 2026-12-06): three trees whose
/// repeated splits on one threshold leave unreachable leaves; the module's sum overflowed its
/// declared output width (`fhe.add produced 167 … esint<8>`).
#[test]
fn proptest_regression_sum_of_leaves_fits_its_type() {
    let lt = |feature: usize, threshold: f64, left: usize, right: usize| Node::Split {
        feature,
        threshold,
        cmp: Cmp::Lt,
        left,
        right,
        missing_left: false,
    };
    let e = Ensemble {
        n_features: 2,
        n_outputs: 1,
        trees: vec![
            Tree {
                nodes: vec![
                    lt(0, 0.0, 1, 4),
                    lt(0, -1.0682582756469143, 2, 3),
                    leaf(&[0.0]),
                    leaf(&[0.0]),
                    lt(0, 0.0, 5, 8),
                    lt(0, 0.0, 6, 7),
                    leaf(&[0.0]),
                    leaf(&[0.0]),
                    leaf(&[2.583380314035128]),
                ],
            },
            Tree {
                nodes: vec![
                    lt(0, -1.102380285089682, 1, 2),
                    leaf(&[0.0]),
                    lt(0, 1.0429445227839693, 3, 4),
                    leaf(&[-7.966034416254138]),
                    leaf(&[0.0]),
                ],
            },
            Tree {
                nodes: vec![
                    lt(0, 1.0952471185297932, 1, 6),
                    lt(0, 0.0, 2, 3),
                    leaf(&[0.0]),
                    lt(0, 0.0, 4, 5),
                    leaf(&[0.0]),
                    leaf(&[7.3291250487788355]),
                    leaf(&[0.0]),
                ],
            },
        ],
        base_score: vec![],
        aggregation: Aggregation::Sum,
        post: Post::Identity,
        float: FloatKind::F32,
    };
    let calib = vec![vec![-1.0; 2], vec![1.0; 2]];
    let q = quantize(&e, &calib, 3, 8).unwrap();
    for mode in [LeafMode::Fused, LeafMode::Indicator, LeafMode::Collect] {
        let (m, _) = build_module(&q, Some(mode)).unwrap();
        for a in 0..8 {
            for b in 0..8 {
                let qx = [a, b];
                assert_eq!(run_module(&m, &q, &qx), q.scores(&qx), "{mode:?} q={qx:?}");
            }
        }
    }
}

/// Collect mode on a tree of 16 distinct positive leaf values (summed by base-4 digit: 2-bit
/// lookups) and a pure tree (one non-zero value: summed by value, a 1-bit lookup): the module
/// computes the quantised scores on every input, before and after the pipeline.
#[test]
fn collect_mode_sums_by_digit_and_by_value() {
    // a full tree of depth 4 on two features, leaves 1.0 ..= 16.0 left to right
    fn full(depth: u32, lo: f64, hi: f64, f: usize, next: &mut f64, nodes: &mut Vec<Node>) -> usize {
        let at = nodes.len();
        if depth == 0 {
            nodes.push(leaf(&[*next]));
            *next += 1.0;
            return at;
        }
        let mid = (lo + hi) / 2.0;
        nodes.push(leaf(&[0.0]));
        let l = full(depth - 1, lo, mid, 1 - f, next, nodes);
        let r = full(depth - 1, mid, hi, 1 - f, next, nodes);
        nodes[at] = split(f, mid, l, r);
        at
    }
    let mut nodes = Vec::new();
    full(4, -1.0, 1.0, 0, &mut 1.0, &mut nodes);
    let pure = Tree {
        nodes: vec![
            split(1, 0.1, 1, 2),
            leaf(&[0.0]),
            split(0, -0.4, 3, 4),
            leaf(&[5.0]),
            leaf(&[0.0]),
        ],
    };
    let e = Ensemble {
        n_features: 2,
        n_outputs: 1,
        trees: vec![Tree { nodes }, pure],
        base_score: vec![],
        aggregation: Aggregation::Sum,
        post: Post::Identity,
        float: FloatKind::F32,
    };
    let q = quantize(&e, &[vec![-1.0, -1.0], vec![1.0, 1.0]], 3, 8).unwrap();
    // non-negative leaves: the output is unsigned in fused and collect modes, signed in indicator mode
    for (mode, ty) in [
        (LeafMode::Fused, "!fhe.eint<"),
        (LeafMode::Collect, "!fhe.eint<"),
        (LeafMode::Indicator, "!fhe.esint<"),
    ] {
        let (m, _) = build_module(&q, Some(mode)).unwrap();
        let head = fhec_ir::print_module(&m).lines().next().unwrap_or_default().to_string();
        assert!(head.contains(&format!("-> tensor<1x1x{ty}")), "{mode:?}: {head}");
        for (a, b) in [(0, 0), (3, 5), (7, 7), (2, 6)] {
            assert_eq!(run_module(&m, &q, &[a, b]), q.scores(&[a, b]), "{mode:?}");
        }
    }
    let (mut m, report) = build_module(&q, Some(LeafMode::Collect)).unwrap();
    assert_eq!(report.leaf_mode, LeafMode::Collect);
    let text = fhec_ir::print_module(&m);
    assert!(
        text.contains("x!fhe.eint<2>>) -> tensor<1x"),
        "no digit lookup:\n{text}"
    );
    assert!(
        text.contains("x!fhe.eint<1>>) -> tensor<1x1x"),
        "no value lookup:\n{text}"
    );
    for pass in [false, true] {
        if pass {
            fhec_passes::manager::run_text(
                &mut m,
                fhec_passes::manager::DEFAULT_PIPELINE,
                &mut crate::tests::pass_context(),
            )
            .unwrap_or_else(|d| panic!("{d:?}"));
        }
        for a in 0..8 {
            for b in 0..8 {
                assert_eq!(
                    run_module(&m, &q, &[a, b]),
                    q.scores(&[a, b]),
                    "q=({a}, {b}), after the pipeline: {pass}"
                );
            }
        }
    }
}
