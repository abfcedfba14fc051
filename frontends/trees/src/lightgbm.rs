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

use crate::schema::{Aggregation, Cmp, Ensemble, FloatKind, Node, Post, Tree};
use crate::TreeError;

fn bad<T>(m: impl Into<String>) -> Result<T, TreeError> {
    Err(TreeError::Model(m.into()))
}

fn field<'a>(v: &'a Value, key: &str, what: &str) -> Result<&'a Value, TreeError> {
    v.get(key)
        .ok_or_else(|| TreeError::Model(format!("not a LightGBM model dump: {what} has no `{key}`")))
}

fn flatten(
    v: &Value,
    n_outputs: usize,
    class: usize,
    scale: f64,
    nodes: &mut Vec<Node>,
    tree: usize,
) -> Result<usize, TreeError> {
    let me = nodes.len();
    if let Some(leaf) = v.get("leaf_value") {
        let x = leaf
            .as_f64()
            .ok_or_else(|| TreeError::Model(format!("tree {tree}: leaf_value is not a number")))?;
        let mut value = vec![0.0; n_outputs];
        value[class] = x * scale;
        nodes.push(Node::Leaf { value });
        return Ok(me);
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
        .ok_or_else(|| TreeError::Model(format!("tree {tree}: split_feature is not an index")))?
        as usize;
    let threshold = field(v, "threshold", "a split")?
        .as_f64()
        .ok_or_else(|| TreeError::Model(format!("tree {tree}: threshold is not a number")))?;
    let default_left = v.get("default_left").and_then(Value::as_bool).unwrap_or(true);
    nodes.push(Node::Leaf { value: vec![] }); // placeholder, replaced below
    let left = flatten(field(v, "left_child", "a split")?, n_outputs, class, scale, nodes, tree)?;
    let right = flatten(
        field(v, "right_child", "a split")?,
        n_outputs,
        class,
        scale,
        nodes,
        tree,
    )?;
    nodes[me] = Node::Split {
        feature,
        threshold,
        cmp: Cmp::Le,
        left,
        right,
        missing_left: default_left,
    };
    Ok(me)
}

/// Parses a LightGBM model dump (the JSON of `Booster.dump_model()`).
pub fn import(text: &str) -> Result<Ensemble, TreeError> {
    let root: Value =
        serde_json::from_str(text).map_err(|e| TreeError::Model(format!("not a LightGBM model dump: {e}")))?;
    let max_feature = field(&root, "max_feature_idx", "the model")?
        .as_u64()
        .ok_or_else(|| TreeError::Model("max_feature_idx is not a number".into()))? as usize;
    let per_iter = root.get("num_tree_per_iteration").and_then(Value::as_u64).unwrap_or(1) as usize;
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
    let mut trees = Vec::with_capacity(infos.len());
    for (i, info) in infos.iter().enumerate() {
        let mut nodes = Vec::new();
        flatten(
            field(info, "tree_structure", "a tree")?,
            n_outputs,
            i % n_outputs,
            scale,
            &mut nodes,
            i,
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
