//! LightGBM's JSON model dump (`Booster.dump_model()`, LightGBM 3.x/4.x) → [`Ensemble`].
//!
//! Supported: numerical splits (`decision_type` `<=`, `x ≤ threshold` in float64, LightGBM's
//! precision); missing types `None` and `NaN` (quantised inputs are never missing; the default
//! direction is kept); objectives `regression`, `regression_l1`, `huber`, `fair`, `quantile`, `mape`
//! (identity), `binary` (sigmoid; a `sigmoid:s` parameter other than 1 is folded into the leaves),
//! `multiclass` / `multiclassova` (softmax / per-class sigmoid margins; tree `i` adds to class
//! `i mod num_tree_per_iteration`); random-forest mode (`average_output`), whose dumped leaves already
//! carry the averaging.
//! Categorical splits, `Zero` missing type (zero treated as missing), linear trees and log-link
//! objectives (poisson, gamma, tweedie) are refused with their name.

use serde_json::Value;

use crate::schema::{
    check_leaf_values, check_limit, Aggregation, Cmp, Ensemble, FloatKind, Node, Post, Tree, MAX_DEPTH, MAX_FEATURES,
    MAX_OUTPUTS, MAX_TREES, MAX_TREE_NODES,
};
use crate::TreeError;

fn bad<T>(m: impl Into<String>) -> Result<T, TreeError> {
    Err(TreeError::Model(m.into()))
}

fn field<'a>(v: &'a Value, key: &str, what: &str) -> Result<&'a Value, TreeError> {
    v.get(key)
        .ok_or_else(|| TreeError::Model(format!("not a LightGBM model dump: {what} has no `{key}`")))
}

/// Flattens the nested `tree_structure` of tree `tree` into `nodes` (root first), iteratively: a
/// split deeper than [`MAX_DEPTH`] or a tree over [`MAX_TREE_NODES`] nodes is an error, and each leaf
/// (`n_outputs` values, `class` set) counts against `leaves` ([`crate::schema::MAX_LEAF_VALUES`])
/// before it is allocated.
fn flatten(
    root: &Value,
    n_outputs: usize,
    class: usize,
    scale: f64,
    nodes: &mut Vec<Node>,
    tree: usize,
    leaves: &mut usize,
) -> Result<(), TreeError> {
    // (JSON node, its depth, the split whose child it is: (index, is the left child))
    type Pending<'a> = (&'a Value, usize, Option<(usize, bool)>);
    let mut stack: Vec<Pending<'_>> = vec![(root, 0, None)];
    while let Some((v, depth, parent)) = stack.pop() {
        let me = nodes.len();
        check_limit(format_args!("tree {tree}: nodes"), me + 1, MAX_TREE_NODES)?;
        if let Some((p, is_left)) = parent {
            if let Some(Node::Split { left, right, .. }) = nodes.get_mut(p) {
                *(if is_left { left } else { right }) = me;
            }
        }
        if let Some(leaf) = v.get("leaf_value") {
            let x = leaf
                .as_f64()
                .ok_or_else(|| TreeError::Model(format!("tree {tree}: leaf_value is not a number")))?;
            *leaves = leaves.saturating_add(1);
            check_leaf_values(*leaves, n_outputs)?;
            let mut value = vec![0.0; n_outputs];
            if let Some(slot) = value.get_mut(class) {
                *slot = x * scale;
            }
            nodes.push(Node::Leaf { value });
            continue;
        }
        if depth >= MAX_DEPTH {
            return bad(format!(
                "tree {tree}: deeper than the supported depth {MAX_DEPTH} (retrain with max_depth ≤ {MAX_DEPTH})"
            ));
        }
        let dt = field(v, "decision_type", "a split")?.as_str().unwrap_or("");
        if dt != "<=" {
            return bad(format!(
                "tree {tree}: decision type `{dt}` (categorical split) is not supported"
            ));
        }
        let missing = v.get("missing_type").and_then(Value::as_str).unwrap_or("None");
        if missing == "Zero" {
            return bad(format!(
                "tree {tree}: missing type `Zero` (zero treated as missing) is not supported; train with zero_as_missing=false"
            ));
        }
        let feature = field(v, "split_feature", "a split")?
            .as_u64()
            .and_then(|f| usize::try_from(f).ok())
            .filter(|&f| f < MAX_FEATURES)
            .ok_or_else(|| TreeError::Model(format!("tree {tree}: split_feature is not a feature index")))?;
        let threshold = field(v, "threshold", "a split")?
            .as_f64()
            .ok_or_else(|| TreeError::Model(format!("tree {tree}: threshold is not a number")))?;
        let default_left = v.get("default_left").and_then(Value::as_bool).unwrap_or(true);
        let (l, r) = (field(v, "left_child", "a split")?, field(v, "right_child", "a split")?);
        // children are filled in when they are reached: the left subtree first, right after it
        nodes.push(Node::Split {
            feature,
            threshold,
            cmp: Cmp::Le,
            left: 0,
            right: 0,
            missing_left: default_left,
        });
        stack.push((r, depth + 1, Some((me, false))));
        stack.push((l, depth + 1, Some((me, true))));
    }
    Ok(())
}

/// Parses a LightGBM model dump (the JSON of `Booster.dump_model()`). Any text gives an ensemble
/// or an error, never a panic, and allocates in proportion to the text (counts in the file are
/// checked against the limits of [`crate::schema`]); the entry point for fuzzing this format.
pub fn import(text: &str) -> Result<Ensemble, TreeError> {
    let root: Value =
        serde_json::from_str(text).map_err(|e| TreeError::Model(format!("not a LightGBM model dump: {e}")))?;
    let max_feature = field(&root, "max_feature_idx", "the model")?
        .as_u64()
        .and_then(|f| usize::try_from(f).ok())
        .filter(|&f| f < MAX_FEATURES)
        .ok_or_else(|| {
            TreeError::Model(format!(
                "max_feature_idx is not a feature index below the supported {MAX_FEATURES}"
            ))
        })?;
    let per_iter = match root.get("num_tree_per_iteration") {
        None => 1,
        Some(v) => v
            .as_u64()
            .and_then(|c| usize::try_from(c).ok())
            .filter(|&c| c <= MAX_OUTPUTS)
            .ok_or_else(|| {
                TreeError::Model(format!(
                    "num_tree_per_iteration is not a count up to the supported {MAX_OUTPUTS}"
                ))
            })?,
    };
    let objective = field(&root, "objective", "the model")?
        .as_str()
        .unwrap_or("")
        .to_string();
    let mut parts = objective.split_whitespace();
    let name = parts.next().unwrap_or("");
    let mut sigmoid = 1.0;
    for p in parts {
        if let Some(s) = p.strip_prefix("sigmoid:") {
            sigmoid = s
                .parse::<f64>()
                .map_err(|_| TreeError::Model(format!("bad sigmoid parameter in `{objective}`")))?;
        }
    }
    let (post, scale) = match name {
        "regression" | "regression_l2" | "l2" | "regression_l1" | "l1" | "huber" | "fair" | "quantile" | "mape" => {
            (Post::Identity, 1.0)
        }
        "binary" => (Post::Sigmoid, sigmoid),
        "multiclass" | "softmax" => (Post::Softmax, 1.0),
        "multiclassova" | "ova" => (Post::Sigmoid, sigmoid),
        other => return bad(format!("LightGBM objective `{other}` is not supported")),
    };
    if root.get("linear_tree").and_then(Value::as_bool) == Some(true) {
        return bad("LightGBM linear trees are not supported");
    }
    let average = root.get("average_output").and_then(Value::as_bool).unwrap_or(false);
    let infos = field(&root, "tree_info", "the model")?
        .as_array()
        .ok_or_else(|| TreeError::Model("tree_info is not an array".into()))?;
    let n_outputs = per_iter.max(1);
    // random-forest mode (`average_output`): the dumped leaves are already scaled, their sum is the score
    let _ = average;
    check_limit("tree_info (trees)", infos.len(), MAX_TREES)?;
    let mut trees = Vec::with_capacity(infos.len());
    let mut leaves = 0usize;
    for (i, info) in infos.iter().enumerate() {
        let mut nodes = Vec::new();
        flatten(
            field(info, "tree_structure", "a tree")?,
            n_outputs,
            i % n_outputs,
            scale,
            &mut nodes,
            i,
            &mut leaves,
        )?;
        trees.push(Tree { nodes });
    }
    let e = Ensemble {
        n_features: max_feature + 1,
        n_outputs,
        trees,
        base_score: vec![0.0; n_outputs],
        aggregation: Aggregation::Sum,
        post,
        float: FloatKind::F64,
    };
    e.validate()?;
    Ok(e)
}
