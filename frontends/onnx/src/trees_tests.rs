//! The `ai.onnx.ml` tree-ensemble reader ([`crate::trees`]): synthetic ensembles, hostile attribute
//! values, damaged files (moved here with the reader from `fhec-trees`), and skl2onnx's exports against
//! scikit-learn's outputs.

use fhec_trees::testing::{never_panics, refused, XorShift};
use prost::Message;

use crate::proto;
use crate::trees::{import, is_tree_ensemble};

/// A fixture of `fhec-trees`' importer tests (`frontends/trees/tests/data`).
fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/../trees/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// A binary damage (protobuf): byte flips, varint-breaking bytes, truncation, a duplicated span.
fn mutate_binary(seed: &[u8], rng: &mut XorShift) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..1 + rng.below(3) {
        if b.is_empty() {
            break;
        }
        let i = rng.below(b.len());
        match rng.below(5) {
            0 => b[i] ^= (rng.next_u64() >> 40) as u8 | 1,
            1 => b[i] = [0x00, 0x01, 0x7f, 0x80, 0xff, 0x08, 0x0a, 0x12, 0x40, 0x42][rng.below(10)],
            2 => b.truncate(i),
            3 => {
                let end = (i + 1 + rng.below(32)).min(b.len());
                let copy = b[i..end].to_vec();
                let at = rng.below(b.len());
                b.splice(at..at, copy);
            }
            _ => {
                // a length or value varint made huge
                b.splice(i..i, [0xff, 0xff, 0xff, 0xff, 0x0f]);
            }
        }
    }
    b
}

// -- ONNX --

/// The attributes of a synthetic `TreeEnsembleRegressor`, to damage and encode as an ONNX model.
#[derive(Clone, Default)]
struct OnnxTrees {
    tree_ids: Vec<i64>,
    node_ids: Vec<i64>,
    features: Vec<i64>,
    trues: Vec<i64>,
    falses: Vec<i64>,
    values: Vec<f32>,
    modes: Vec<&'static str>,
    w_tree: Vec<i64>,
    w_node: Vec<i64>,
    w_id: Vec<i64>,
    w_val: Vec<f32>,
    n_targets: Option<i64>,
}

impl OnnxTrees {
    fn node(&mut self, tree: i64, id: i64, split: Option<(i64, i64, i64)>, value: f32) {
        self.tree_ids.push(tree);
        self.node_ids.push(id);
        let (f, t, e) = split.unwrap_or((0, 0, 0));
        self.features.push(f);
        self.trues.push(t);
        self.falses.push(e);
        self.values.push(if split.is_some() { value } else { 0.0 });
        self.modes.push(if split.is_some() { "BRANCH_LEQ" } else { "LEAF" });
        if split.is_none() {
            self.w_tree.push(tree);
            self.w_node.push(id);
            self.w_id.push(0);
            self.w_val.push(value);
        }
    }

    /// A full tree of `depth` levels; its node ids a random permutation (the root anywhere).
    fn full_tree(&mut self, tree: i64, depth: u32, rng: &mut XorShift) {
        let n = (1usize << (depth + 1)) - 1;
        let mut id: Vec<i64> = (0..n as i64).collect();
        for k in (1..n).rev() {
            id.swap(k, rng.below(k + 1));
        }
        // entries in id order: heap node k has children 2k+1, 2k+2
        let mut by_id: Vec<usize> = (0..n).collect();
        by_id.sort_by_key(|&k| id[k]);
        for k in by_id {
            let split = (k < n / 2).then(|| ((k % 5) as i64, id[2 * k + 1], id[2 * k + 2]));
            self.node(tree, id[k], split, k as f32 / n as f32 - 0.5);
        }
    }

    /// A chain of `depth` splits, each with a leaf as its true child.
    fn chain(&mut self, tree: i64, depth: i64) {
        for k in 0..depth {
            self.node(tree, 2 * k, Some((0, 2 * k + 1, 2 * k + 2)), 0.5);
            self.node(tree, 2 * k + 1, None, 1.0);
        }
        self.node(tree, 2 * depth, None, 2.0);
    }

    fn bytes(&self) -> Vec<u8> {
        use proto::attribute_proto::AttributeType;
        let attr = |name: &str, ty: AttributeType| proto::AttributeProto {
            name: Some(name.into()),
            r#type: Some(ty as i32),
            ..Default::default()
        };
        let ints = |name: &str, v: &[i64]| proto::AttributeProto {
            ints: v.to_vec(),
            ..attr(name, AttributeType::Ints)
        };
        let floats = |name: &str, v: &[f32]| proto::AttributeProto {
            floats: v.to_vec(),
            ..attr(name, AttributeType::Floats)
        };
        let strings = |name: &str, v: &[&str]| proto::AttributeProto {
            strings: v.iter().map(|s| s.as_bytes().to_vec()).collect(),
            ..attr(name, AttributeType::Strings)
        };
        let mut attribute = vec![
            ints("nodes_treeids", &self.tree_ids),
            ints("nodes_nodeids", &self.node_ids),
            ints("nodes_featureids", &self.features),
            ints("nodes_truenodeids", &self.trues),
            ints("nodes_falsenodeids", &self.falses),
            floats("nodes_values", &self.values),
            strings("nodes_modes", &self.modes),
            ints("target_treeids", &self.w_tree),
            ints("target_nodeids", &self.w_node),
            ints("target_ids", &self.w_id),
            floats("target_weights", &self.w_val),
            strings("aggregate_function", &["SUM"]),
        ];
        if let Some(t) = self.n_targets {
            attribute.push(proto::AttributeProto {
                i: Some(t),
                ..attr("n_targets", AttributeType::Int)
            });
        }
        proto::ModelProto {
            ir_version: Some(8),
            graph: Some(proto::GraphProto {
                node: vec![proto::NodeProto {
                    op_type: Some("TreeEnsembleRegressor".into()),
                    domain: Some("ai.onnx.ml".into()),
                    attribute,
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
        .encode_to_vec()
    }
}

/// Three small random trees on five features.
fn onnx_small() -> OnnxTrees {
    let mut rng = XorShift(7);
    let mut m = OnnxTrees::default();
    for (t, d) in [(3, 2), (10, 3), (-4, 1)] {
        m.full_tree(t, d, &mut rng);
    }
    m
}

#[test]
fn onnx_synthetic_trees_import() {
    let e = import(&onnx_small().bytes(), None).unwrap();
    assert_eq!(e.trees.len(), 3);
    assert_eq!(e.trees.iter().map(|t| t.nodes.len()).collect::<Vec<_>>(), [7, 15, 3]);
    assert_eq!(e.n_features, 5);
}

#[test]
fn onnx_a_weight_naming_an_unknown_tree_is_an_error() {
    // was: `.expect("listed")` (panic)
    let mut m = onnx_small();
    m.w_tree[0] = 999;
    refused(import(&m.bytes(), None), "names node");
}

#[test]
fn onnx_a_negative_or_huge_n_targets_is_refused() {
    // was: -1 became usize::MAX outputs: `vec![0.0; usize::MAX]` per node (capacity overflow panic)
    for t in [-1, 100_000, i64::MAX] {
        let mut m = onnx_small();
        m.n_targets = Some(t);
        refused(import(&m.bytes(), None), "n_targets");
    }
}

#[test]
fn onnx_many_leaves_of_many_targets_are_refused_before_allocating() {
    // 65 536 targets (the limit) × 1 024 leaves: 67M dense leaf values (536 MB) from a 40 kB file
    let mut rng = XorShift(3);
    let mut m = OnnxTrees::default();
    m.full_tree(0, 10, &mut rng);
    m.n_targets = Some(65_536);
    refused(import(&m.bytes(), None), "leaf values");
}

#[test]
fn onnx_bad_feature_and_child_ids_are_errors() {
    // was: a feature id of 2^63 − 1 gave an ensemble of 2^63 features
    let mut m = onnx_small();
    let split = m.modes.iter().position(|&s| s != "LEAF").unwrap();
    m.features[split] = i64::MAX;
    refused(import(&m.bytes(), None), "nodes_featureids");
    m.features[split] = -1;
    refused(import(&m.bytes(), None), "nodes_featureids");
    let mut m = onnx_small();
    m.trues[split] = 12345;
    refused(import(&m.bytes(), None), "node 12345 (nodes_truenodeids) is missing");
    // a split pointing at itself: a cycle, and its old child a second root
    let mut m = onnx_small();
    m.falses[split] = m.node_ids[split];
    refused(import(&m.bytes(), None), "roots");
    // every node of a tree pointed to: no root
    let mut m = OnnxTrees::default();
    m.node(0, 0, Some((0, 1, 1)), 0.5);
    m.node(0, 1, Some((0, 0, 0)), 0.5);
    refused(import(&m.bytes(), None), "has no root");
    let mut m = onnx_small();
    m.node_ids[1] = m.node_ids[0];
    m.tree_ids[1] = m.tree_ids[0];
    refused(import(&m.bytes(), None), "appears twice");
    // the model's input narrower than a feature id
    refused(import(&onnx_small().bytes(), Some(2)), "out of range");
    refused(import(&onnx_small().bytes(), Some(usize::MAX)), "n_features");
}

#[test]
fn onnx_a_100k_deep_chain_is_refused() {
    // was: accepted, after a quadratic import
    let mut m = OnnxTrees::default();
    m.chain(0, 100_000);
    refused(import(&m.bytes(), None), "deeper than the supported depth 64");
    let mut m = OnnxTrees::default();
    m.chain(0, 64);
    import(&m.bytes(), None).unwrap();
}

/// ~200k nodes (98 trees of depth 10, node ids shuffled) import in linear time: milliseconds (the
/// old import scanned every node per node, O(n²): minutes). The bound is generous, not a benchmark.
#[test]
fn onnx_import_is_linear_in_the_node_count() {
    let mut rng = XorShift(11);
    let mut m = OnnxTrees::default();
    for t in 0..98 {
        m.full_tree(1000 - 7 * t, 10, &mut rng);
    }
    let bytes = m.bytes();
    let start = std::time::Instant::now();
    let e = import(&bytes, None).unwrap();
    let took = start.elapsed();
    let nodes: usize = e.trees.iter().map(|t| t.nodes.len()).sum();
    assert_eq!(nodes, 98 * 2047);
    eprintln!("onnx: {nodes} nodes imported in {took:?}");
    assert!(took.as_secs() < 10, "{nodes} nodes took {took:?}");
}

#[test]
fn onnx_never_panics_on_damaged_files() {
    let mut seeds: Vec<Vec<u8>> = ["onnx_rf_binary.onnx", "onnx_dt_multi.onnx", "onnx_rf_regression.onnx"]
        .iter()
        .map(|f| fixture(f))
        .collect();
    seeds.push(onnx_small().bytes());
    never_panics("onnx", &seeds, 3000, mutate_binary, &|b: &[u8]| import(b, None));
    // damaged attribute values of a valid model
    let mut rng = XorShift(5);
    let nasty = [-1i64, 0, 1, 2, 64, 1 << 20, 1 << 40, i64::MAX, i64::MIN];
    let mut cases = Vec::new();
    for _ in 0..1000 {
        let mut m = onnx_small();
        for _ in 0..1 + rng.below(3) {
            let x = nasty[rng.below(nasty.len())];
            let i = rng.below(m.tree_ids.len());
            let j = rng.below(m.w_tree.len());
            match rng.below(9) {
                0 => m.tree_ids[i] = x,
                1 => m.node_ids[i] = x,
                2 => m.features[i] = x,
                3 => m.trues[i] = x,
                4 => m.falses[i] = x,
                5 => m.w_tree[j] = x,
                6 => m.w_node[j] = x,
                7 => m.w_id[j] = x,
                _ => m.n_targets = Some(x),
            }
        }
        cases.push(m.bytes());
    }
    never_panics(
        "onnx attributes",
        &cases,
        cases.len(),
        |b, _| b.to_vec(),
        &|b: &[u8]| import(b, None),
    );
}

// -- fhec's own ensemble JSON --

/// skl2onnx exports of scikit-learn trees (ai.onnx.ml opset 3): the imported ensemble gives
/// scikit-learn's probabilities and predictions.
#[test]
fn onnx_tree_ensembles_predict_scikit_learns_outputs() {
    let expected: serde_json::Value = serde_json::from_slice(&fixture("onnx_expected.json")).unwrap();
    for name in ["onnx_rf_binary", "onnx_dt_multi", "onnx_rf_regression"] {
        let bytes = fixture(&format!("{name}.onnx"));
        assert!(is_tree_ensemble(&bytes));
        let e = import(&bytes, Some(5)).unwrap_or_else(|err| panic!("{name}: {err}"));
        let x = expected[name]["X"].as_array().unwrap();
        let want = expected[name]["proba"].as_array().unwrap();
        for (row, want) in x.iter().zip(want) {
            let row: Vec<f64> = row.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            let want: Vec<f64> = want.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            let got = e.predict_raw(&row);
            // a binary classifier scores class 1 only
            let got = if want.len() == 2 && got.len() == 1 {
                vec![1.0 - got[0], got[0]]
            } else {
                got
            };
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 1e-4 * (1.0 + w.abs()), "{name}: {got:?} vs {want:?}");
            }
        }
    }
    assert!(import(b"\x08\x07", None).is_err());
    assert!(import(&[0xff; 12], None).is_err());
    let xgb = fixture("xgb_binary.json");
    assert!(import(&xgb, None).is_err());
    assert!(!is_tree_ensemble(&xgb));
    assert!(!is_tree_ensemble(include_bytes!("../tests/fixtures/iris_mlp.onnx")));
}
