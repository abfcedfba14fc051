//! The client spec of a compiled model reproduces the model from float features alone: encode
//! (quantise, thermometer), run (simulated), dequantise, post-process — equal to the quantised
//! model's own computation, for a linear model and a tree ensemble.

use fhec::quant::{Post, QuantizedLinear};
use fhec::runtime::ClearTensor;
use fhec::trees::{Aggregation, Cmp, Ensemble, FloatKind, Node, Tree};
use fhec::{compile, CompileOptions};

fn rows(n: usize, d: usize, seed: u64) -> Vec<f64> {
    let mut s = seed;
    (0..n * d)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s % 2001) as f64 / 100.0 - 10.0
        })
        .collect()
}

/// Encodes `x` (rows × d) with the circuit's spec, simulates each row, dequantises.
fn through_spec(c: &fhec::Circuit, x: &[f64], d: usize) -> (Vec<f64>, usize) {
    let spec = c.client_spec();
    let (width, ints, _) = spec.encode(0, x).unwrap();
    let samples: Vec<Vec<ClearTensor>> = ints
        .chunks(width)
        .map(|r| vec![ClearTensor::new(vec![1, width], r.to_vec()).unwrap()])
        .collect();
    assert_eq!(samples.len(), x.len() / d);
    let out = c.program().simulate(&samples).unwrap();
    let flat: Vec<i64> = out.iter().flat_map(|s| s[0].values.clone()).collect();
    let cols = out[0][0].values.len();
    (spec.dequantize(0, &flat), cols)
}

#[test]
fn a_linear_models_spec_reproduces_it() {
    let (d, classes) = (4, 3);
    let w = rows(d, classes, 3);
    let calib = rows(50, d, 5);
    let q = QuantizedLinear::build(&w, d, classes, &[0.5, -1.0, 2.0], &calib, 6, 6).unwrap();
    let spec = q.client_spec(Post::Softmax);
    let c = compile(q.module().unwrap(), spec, &CompileOptions::default()).unwrap();
    let x = rows(20, d, 9);
    let (values, cols) = through_spec(&c, &x, d);
    assert_eq!(cols, classes);
    let qx = q.inputs.quantize(&x).unwrap().values;
    assert_eq!(values, q.dequantize(&q.accumulate(&qx).unwrap()));
    let p = c.client_spec().post_process(&values, cols);
    for row in p.chunks(cols) {
        assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    }
    // the extremes the program accepts (every level 0, every level max): simulated and encrypted
    // equal the clear accumulators
    let max = q.inputs.levels() as i64;
    let mut circuit = c;
    for level in [0, max] {
        let row = vec![level; d];
        let x = ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[1, d]), row.clone()).unwrap();
        let want = q.accumulate(&row).unwrap();
        assert_eq!(
            circuit.simulate(std::slice::from_ref(&x)).unwrap()[0]
                .iter()
                .copied()
                .collect::<Vec<_>>(),
            want
        );
        assert_eq!(
            circuit.eval_clear(std::slice::from_ref(&x)).unwrap()[0]
                .iter()
                .copied()
                .collect::<Vec<_>>(),
            want
        );
        assert_eq!(
            circuit.encrypt_run_decrypt(&[x]).unwrap()[0]
                .iter()
                .copied()
                .collect::<Vec<_>>(),
            want
        );
    }
    let c = circuit;
    let idx = c.client_spec().class_index(&values, cols);
    for (k, row) in values.chunks(cols).enumerate() {
        let best = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        assert_eq!(row[idx[k]], best);
    }
}

/// A `≤` split node of the tree schema.
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

#[test]
fn a_tree_ensembles_spec_reproduces_it() {
    let leaf = |v: f64| Node::Leaf { value: vec![v] };
    let e = Ensemble {
        n_features: 2,
        n_outputs: 1,
        trees: vec![
            Tree {
                nodes: vec![
                    split(0, 0.3, 1, 2),
                    split(1, -1.0, 3, 4),
                    leaf(0.9),
                    leaf(0.1),
                    leaf(0.6),
                ],
            },
            Tree {
                nodes: vec![split(1, 4.0, 1, 2), leaf(0.2), leaf(0.7)],
            },
        ],
        base_score: vec![0.0],
        aggregation: Aggregation::Mean,
        post: fhec::trees::Post::Proba,
        float: FloatKind::F64,
    };
    let calib: Vec<Vec<f64>> = rows(60, 2, 7).chunks(2).map(<[f64]>::to_vec).collect();
    let q = fhec::trees::quantize(&e, &calib, 3, 8).unwrap();
    let (module, _) = fhec::trees::build_module(&q, None).unwrap();
    let c = compile(module, q.client_spec(), &CompileOptions::default()).unwrap();
    let x = rows(25, 2, 11);
    let (values, cols) = through_spec(&c, &x, 2);
    let want: Vec<f64> = x
        .chunks(2)
        .flat_map(|r| q.dequantize(&q.scores(&q.inputs.quantize_row(r))))
        .collect();
    assert_eq!(cols, 1);
    assert_eq!(values, want);
    let p = c.client_spec().post_process(&values, 1);
    assert_eq!(p.len(), 2 * values.len(), "class-1 probability → two columns");
}

/// A spec that does not match the program is refused at compile time.
#[test]
fn a_spec_of_another_shape_is_refused() {
    let q = QuantizedLinear::build(&[1.0, 2.0], 2, 1, &[0.0], &rows(10, 2, 1), 4, 4).unwrap();
    let e = compile(
        q.module().unwrap(),
        fhec::ClientSpec::integers(2, 1),
        &CompileOptions::default(),
    )
    .err()
    .unwrap();
    assert_eq!(e.kind(), fhec::ErrorKind::Compile, "{e}");
    assert!(e.to_string().contains("client spec"), "{e}");
}

/// `compile_trees` with no leaf mode compiles the candidate modes and keeps the one the cost model
/// says runs fastest; a given mode is kept as given. A three-class tree with pure leaves (one
/// non-zero class value per leaf) is where `fused` beats `indicator` (the mode for several outputs
/// with impure leaves): as many lookups, far less noise on the outputs.
#[test]
fn the_cost_model_picks_the_leaf_mode() {
    use fhec::trees::LeafMode;
    let leaf = |k: usize| {
        let mut v = vec![0.0; 3];
        v[k] = 1.0;
        Node::Leaf { value: v }
    };
    let e = Ensemble {
        n_features: 2,
        n_outputs: 3,
        trees: vec![Tree {
            nodes: vec![
                split(0, 0.0, 1, 2),
                split(1, -0.5, 3, 4),
                split(1, 0.5, 5, 6),
                leaf(0),
                leaf(1),
                leaf(2),
                leaf(0),
            ],
        }],
        base_score: vec![0.0; 3],
        aggregation: Aggregation::Sum,
        post: fhec::trees::Post::Identity,
        float: FloatKind::F64,
    };
    let calib: Vec<Vec<f64>> = rows(60, 2, 7).chunks(2).map(<[f64]>::to_vec).collect();
    let q = fhec::trees::quantize(&e, &calib, 3, 8).unwrap();
    let opts = CompileOptions::default();
    let mut times = Vec::new();
    for m in [LeafMode::Fused, LeafMode::Indicator, LeafMode::Collect] {
        let (c, r) = fhec::compile_trees(&q, Some(m), q.client_spec(), &opts).unwrap();
        assert_eq!(r.leaf_mode, m);
        times.push((c.program().noise.estimated_seconds, m));
    }
    let (c, r) = fhec::compile_trees(&q, None, q.client_spec(), &opts).unwrap();
    let fastest = times.iter().map(|t| t.0).fold(f64::INFINITY, f64::min);
    assert_eq!(
        c.program().noise.estimated_seconds,
        fastest,
        "{times:?}, picked {:?}",
        r.leaf_mode
    );
    // indicator, the usual mode for several outputs, is the slower one here; the builder's own rule
    // (fused when the leaves are pure) agrees
    assert_ne!(r.leaf_mode, LeafMode::Indicator, "{times:?}");
    assert_eq!(
        fhec::trees::build_module(&q, None).unwrap().1.leaf_mode,
        LeafMode::Fused
    );
    // and the picked program computes the quantised scores
    let x = rows(20, 2, 11);
    let (values, _) = through_spec(&c, &x, 2);
    let want: Vec<f64> = x
        .chunks(2)
        .flat_map(|r| q.dequantize(&q.scores(&q.inputs.quantize_row(r))))
        .collect();
    assert_eq!(values, want);
}

/// Where the builder's rule and the cost model part: a deep chain (20 tests, one output, 11 leaves of
/// value 1, the rest 0) takes `collect` by the rule (one extra lookup for 11), but its fused output
/// already fits a one-level key, so `fused` is faster and `compile_trees` keeps it.
#[test]
fn compile_trees_overrules_the_builders_rule_when_the_cost_model_disagrees() {
    use fhec::trees::LeafMode;
    let depth = 20usize;
    let mut nodes = Vec::new();
    for k in 0..depth {
        let t = (k as f64 / depth as f64) * 18.0 - 9.0;
        nodes.push(split(k % 4, t, 2 * k + 1, 2 * k + 2));
        nodes.push(Node::Leaf {
            value: vec![(k % 2) as f64],
        });
    }
    nodes.push(Node::Leaf { value: vec![1.0] });
    let e = Ensemble {
        n_features: 4,
        n_outputs: 1,
        trees: vec![Tree { nodes }],
        base_score: vec![0.0],
        aggregation: Aggregation::Sum,
        post: fhec::trees::Post::Identity,
        float: FloatKind::F64,
    };
    let calib: Vec<Vec<f64>> = rows(200, 4, 5).chunks(4).map(<[f64]>::to_vec).collect();
    let q = fhec::trees::quantize(&e, &calib, 3, 8).unwrap();
    let opts = CompileOptions::default();
    let rule = fhec::trees::build_module(&q, None).unwrap().1.leaf_mode;
    let est = |m| {
        let (c, _) = fhec::compile_trees(&q, Some(m), q.client_spec(), &opts).unwrap();
        c.program().noise.estimated_seconds
    };
    let (fused, collect) = (est(LeafMode::Fused), est(LeafMode::Collect));
    assert_eq!(rule, LeafMode::Collect);
    assert!(fused < collect, "fused {fused}, collect {collect}");
    let (c, r) = fhec::compile_trees(&q, None, q.client_spec(), &opts).unwrap();
    assert_eq!(r.leaf_mode, LeafMode::Fused);
    assert_eq!(c.program().noise.estimated_seconds, fused);
}
