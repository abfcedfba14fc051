//! ONNX tree ensembles (`ai.onnx.ml` `TreeEnsembleClassifier` / `TreeEnsembleRegressor`, opsets 1–3,
//! as skl2onnx and onnxmltools write them) → `fhec-trees`' [`Ensemble`]: the `ai.onnx.ml` side of this
//! crate, read with the same `prost` messages as networks, so `fhec import onnx` has one reader.
//!
//! Node modes `BRANCH_LEQ`/`BRANCH_LT` map to `≤`/`<`; `BRANCH_GTE`/`BRANCH_GT` to `<`/`≤` with the
//! children swapped; `BRANCH_EQ`/`BRANCH_NEQ` are refused. Post transforms `NONE` (a classifier's
//! weights are probabilities), `LOGISTIC`, `SOFTMAX`; aggregate functions `SUM`, `AVERAGE`. A binary
//! classifier whose weights all name class 0 (skl2onnx's form) scores class 1 with them. Thresholds are
//! float32 (`nodes_values`); `nodes_values_as_tensor` (float64) is refused. Inputs compare as float32.

use std::collections::HashMap;

use fhec_trees::schema::{
    check_leaf_values, check_limit, Aggregation, Cmp, Ensemble, FloatKind, Node, Post, Tree, MAX_FEATURES, MAX_OUTPUTS,
    MAX_TREES, MAX_TREE_NODES,
};
use fhec_trees::TreeError;
use prost::Message;

use crate::model::MAX_FILE_BYTES;
use crate::proto;

fn bad<T>(m: impl Into<String>) -> Result<T, TreeError> {
    Err(TreeError::Model(m.into()))
}

/// An attribute's values, whatever field holds them (`i` and `ints`, `f` and `floats`, `s` and
/// `strings`; a tensor attribute reads as present and empty).
#[derive(Default)]
struct Attr {
    ints: Vec<i64>,
    floats: Vec<f64>,
    strings: Vec<String>,
}

impl Attr {
    fn of(a: &proto::AttributeProto) -> Attr {
        Attr {
            ints: a.i.into_iter().chain(a.ints.iter().copied()).collect(),
            floats: a.f.into_iter().chain(a.floats.iter().copied()).map(f64::from).collect(),
            strings: a
                .s
                .iter()
                .chain(&a.strings)
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect(),
        }
    }
}

/// Whether `bytes` is an ONNX model with `ai.onnx.ml` nodes (a tree ensemble for [`import`]), not a
/// network for [`crate::OnnxModel`].
pub fn is_tree_ensemble(bytes: &[u8]) -> bool {
    bytes.len() <= MAX_FILE_BYTES
        && proto::ModelProto::decode(bytes).is_ok_and(|m| {
            m.graph
                .is_some_and(|g| g.node.iter().any(|n| n.domain.as_deref() == Some("ai.onnx.ml")))
        })
}

/// Reads the first tree-ensemble node of an ONNX model. `n_features`: the model's input width when
/// known (else the largest feature index + 1).
///
/// Any bytes give an ensemble or an error, never a panic; the work is linear in the node count
/// (one hash map from (tree id, node id) to the node) and the memory in the file size (counts are
/// checked against the attributes present and the limits of [`crate::schema`]). The entry point
/// for fuzzing this format.
pub fn import(bytes: &[u8], n_features: Option<usize>) -> Result<Ensemble, TreeError> {
    if bytes.len() > MAX_FILE_BYTES {
        return bad(format!(
            "the ONNX file has {} bytes, more than the {MAX_FILE_BYTES} fhec reads",
            bytes.len()
        ));
    }
    let model = proto::ModelProto::decode(bytes).map_err(|e| TreeError::Model(format!("not an ONNX model: {e}")))?;
    let graph = model
        .graph
        .ok_or_else(|| TreeError::Model("not an ONNX model: no graph".into()))?;
    let mut found = None;
    for node in &graph.node {
        let op = node.op_type.as_deref().unwrap_or("");
        if op == "TreeEnsembleClassifier" || op == "TreeEnsembleRegressor" {
            let attrs: HashMap<String, Attr> = node
                .attribute
                .iter()
                .map(|a| (a.name.clone().unwrap_or_default(), Attr::of(a)))
                .collect();
            found = Some((op.to_string(), attrs));
            break;
        }
        if op == "TreeEnsemble" {
            return bad(
                "the ai.onnx.ml opset-5 TreeEnsemble op is not supported yet; export with ai.onnx.ml opset ≤ 3",
            );
        }
    }
    let Some((op, attrs)) = found else {
        return bad("the ONNX model has no TreeEnsembleClassifier or TreeEnsembleRegressor node");
    };
    let classifier = op == "TreeEnsembleClassifier";
    let get = |name: &str| attrs.get(name);
    let ints = |name: &str| -> Result<&Vec<i64>, TreeError> {
        get(name)
            .map(|a| &a.ints)
            .ok_or_else(|| TreeError::Model(format!("{op}: attribute `{name}` missing")))
    };
    if get("nodes_values").is_none_or(|a| a.floats.is_empty()) && get("nodes_values_as_tensor").is_some() {
        return bad(format!(
            "{op}: float64 thresholds (nodes_values_as_tensor) are not supported"
        ));
    }
    let tree_ids = ints("nodes_treeids")?;
    let node_ids = ints("nodes_nodeids")?;
    let features = ints("nodes_featureids")?;
    let trues = ints("nodes_truenodeids")?;
    let falses = ints("nodes_falsenodeids")?;
    let values = &get("nodes_values").map(|a| a.floats.clone()).unwrap_or_default();
    let modes = &get("nodes_modes")
        .map(|a| a.strings.clone())
        .ok_or_else(|| TreeError::Model(format!("{op}: attribute `nodes_modes` missing")))?;
    let missing_true = get("nodes_missing_value_tracks_true")
        .map(|a| a.ints.clone())
        .unwrap_or_default();
    let n = tree_ids.len();
    if [
        node_ids.len(),
        features.len(),
        trues.len(),
        falses.len(),
        values.len(),
        modes.len(),
    ]
    .iter()
    .any(|&m| m != n)
    {
        return bad(format!("{op}: node attributes differ in length"));
    }
    let prefix = if classifier { "class" } else { "target" };
    let w_tree = ints(&format!("{prefix}_treeids"))?;
    let w_node = ints(&format!("{prefix}_nodeids"))?;
    let w_id = ints(&format!("{prefix}_ids"))?;
    let w_val = &get(&format!("{prefix}_weights"))
        .map(|a| a.floats.clone())
        .ok_or_else(|| TreeError::Model(format!("{op}: {prefix}_weights missing")))?;
    if [w_node.len(), w_id.len(), w_val.len()]
        .iter()
        .any(|&m| m != w_tree.len())
    {
        return bad(format!("{op}: {prefix} attributes differ in length"));
    }
    let n_classes = if classifier {
        get("classlabels_int64s")
            .map(|a| a.ints.len())
            .filter(|&c| c > 0)
            .or_else(|| get("classlabels_strings").map(|a| a.strings.len()))
            .unwrap_or(0)
    } else {
        match get("n_targets").and_then(|a| a.ints.first().copied()) {
            None => 1,
            Some(t) => usize::try_from(t)
                .ok()
                .filter(|&t| t <= MAX_OUTPUTS)
                .ok_or_else(|| TreeError::Model(format!("{op}: n_targets {t} is not a count")))?,
        }
    };
    check_limit(format_args!("{op}: classes or targets"), n_classes, MAX_OUTPUTS)?;
    // skl2onnx's binary form: weights for class id 0 only, scoring class 1
    let binary_one_column = classifier && n_classes == 2 && w_id.iter().all(|&c| c == 0);
    let n_outputs = if binary_one_column { 1 } else { n_classes.max(1) };
    if w_id
        .iter()
        .any(|&c| c < 0 || c as usize >= n_outputs.max(if binary_one_column { 1 } else { 0 }))
    {
        return bad(format!("{op}: a weight names output id outside 0..{n_outputs}"));
    }
    let post_name = get("post_transform")
        .and_then(|a| a.strings.first().cloned())
        .unwrap_or_else(|| "NONE".into());
    let post = match (post_name.as_str(), classifier) {
        ("NONE", true) => Post::Proba,
        ("NONE", false) => Post::Identity,
        ("LOGISTIC", _) => Post::Sigmoid,
        ("SOFTMAX", _) => Post::Softmax,
        (other, _) => return bad(format!("{op}: post_transform {other} is not supported")),
    };
    let aggregation = match get("aggregate_function")
        .and_then(|a| a.strings.first().cloned())
        .as_deref()
    {
        None | Some("SUM") => Aggregation::Sum,
        Some("AVERAGE") => Aggregation::Mean,
        Some(other) => return bad(format!("{op}: aggregate_function {other} is not supported")),
    };
    let base_score = get("base_values").map(|a| a.floats.clone()).unwrap_or_default();
    // trees in order of first appearance, node ids → (tree, local index): one hash map, built
    // once, so the import is linear in the node count
    let mut order: Vec<i64> = Vec::new();
    let mut tree_index: HashMap<i64, usize> = HashMap::new();
    let mut sizes: Vec<usize> = Vec::new();
    let mut index: HashMap<(i64, i64), (usize, usize)> = HashMap::with_capacity(n);
    for (&tid, &nid) in tree_ids.iter().zip(node_ids) {
        let t = *tree_index.entry(tid).or_insert_with(|| {
            order.push(tid);
            sizes.push(0);
            order.len() - 1
        });
        check_limit(format_args!("{op}: trees (nodes_treeids)"), order.len(), MAX_TREES)?;
        let local = sizes[t];
        check_limit(format_args!("{op}: tree {tid}: nodes"), local + 1, MAX_TREE_NODES)?;
        sizes[t] += 1;
        if index.insert((tid, nid), (t, local)).is_some() {
            return bad(format!("{op}: node {nid} of tree {tid} appears twice"));
        }
    }
    // every leaf holds `n_outputs` values: bound them before allocating; other nodes start empty
    check_leaf_values(modes.iter().filter(|m| *m == "LEAF").count(), n_outputs)?;
    let mut trees: Vec<Tree> = sizes
        .iter()
        .map(|&size| Tree {
            nodes: vec![Node::Leaf { value: Vec::new() }; size],
        })
        .collect();
    let mut max_feature = 0usize;
    for i in 0..n {
        let (t, local) = index[&(tree_ids[i], node_ids[i])];
        let mode = modes[i].as_str();
        if mode == "LEAF" {
            trees[t].nodes[local] = Node::Leaf {
                value: vec![0.0; n_outputs],
            };
            continue;
        }
        let child = |id: i64, what: &str| {
            index
                .get(&(tree_ids[i], id))
                .map(|&(_, local)| local)
                .ok_or_else(|| TreeError::Model(format!("{op}: tree {} node {id} ({what}) is missing", tree_ids[i])))
        };
        let (yes, no) = (
            child(trues[i], "nodes_truenodeids")?,
            child(falses[i], "nodes_falsenodeids")?,
        );
        let (cmp, left, right) = match mode {
            "BRANCH_LEQ" => (Cmp::Le, yes, no),
            "BRANCH_LT" => (Cmp::Lt, yes, no),
            "BRANCH_GTE" => (Cmp::Lt, no, yes),
            "BRANCH_GT" => (Cmp::Le, no, yes),
            other => return bad(format!("{op}: node mode {other} is not supported")),
        };
        let feature = usize::try_from(features[i])
            .ok()
            .filter(|&f| f < MAX_FEATURES)
            .ok_or_else(|| {
                TreeError::Model(format!(
                    "{op}: tree {} node {}: nodes_featureids {} is not a feature index below {MAX_FEATURES}",
                    tree_ids[i], node_ids[i], features[i]
                ))
            })?;
        max_feature = max_feature.max(feature);
        let tracks = missing_true.get(i).copied().unwrap_or(0) != 0;
        trees[t].nodes[local] = Node::Split {
            feature,
            threshold: values[i],
            cmp,
            left,
            right,
            missing_left: if mode.starts_with("BRANCH_G") { !tracks } else { tracks },
        };
    }
    for k in 0..w_tree.len() {
        let (t, local) = *index.get(&(w_tree[k], w_node[k])).ok_or_else(|| {
            TreeError::Model(format!(
                "{op}: a weight names node {} of tree {}, which is missing",
                w_node[k], w_tree[k]
            ))
        })?;
        match &mut trees[t].nodes[local] {
            Node::Leaf { value } => match value.get_mut(w_id[k] as usize) {
                Some(v) => *v += w_val[k],
                None => return bad(format!("{op}: weight {k} names output {} of {n_outputs}", w_id[k])),
            },
            Node::Split { .. } => return bad(format!("{op}: a weight names a branch node")),
        }
    }
    // the root of each tree: the one node no other node points to
    for (t, tree) in trees.iter_mut().enumerate() {
        let n_local = tree.nodes.len();
        let mut pointed = vec![false; n_local];
        for node in &tree.nodes {
            if let Node::Split { left, right, .. } = node {
                pointed[*left] = true;
                pointed[*right] = true;
            }
        }
        let mut roots = pointed.iter().enumerate().filter(|(_, p)| !**p).map(|(i, _)| i);
        let root = roots
            .next()
            .ok_or_else(|| TreeError::Model(format!("{op}: tree {} has no root", order[t])))?;
        if roots.next().is_some() {
            return bad(format!(
                "{op}: tree {} has several roots (nodes no other node points to)",
                order[t]
            ));
        }
        if root != 0 {
            // renumber: swap the root into position 0
            tree.nodes.swap(0, root);
            for node in &mut tree.nodes {
                if let Node::Split { left, right, .. } = node {
                    for c in [left, right] {
                        if *c == 0 {
                            *c = root;
                        } else if *c == root {
                            *c = 0;
                        }
                    }
                }
            }
        }
    }
    let e = Ensemble {
        n_features: n_features.unwrap_or(max_feature + 1),
        n_outputs,
        trees,
        base_score: match base_score.len() {
            0 => vec![],
            len if len == n_outputs => base_score,
            len if binary_one_column && len == 2 => vec![base_score[1]],
            len => return bad(format!("{op}: {len} base values for {n_outputs} outputs")),
        },
        aggregation,
        post,
        float: FloatKind::F32,
    };
    e.validate()?;
    Ok(e)
}
