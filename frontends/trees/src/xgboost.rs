//! XGBoost's JSON model format (`Booster.save_model("m.json")` / `save_raw("json")`, XGBoost 2.x
//! and 3.x) → [`Ensemble`].
//!
//! Supported: the `gbtree` booster (and `dart`, whose trees carry their weights) with numerical
//! splits; objectives `reg:squarederror`, `reg:absoluteerror`, `reg:pseudohubererror`
//! (identity), `binary:logistic`, `reg:logistic` (sigmoid; the base score is a probability, its
//! logit is added to the margin), `binary:logitraw` (margin), `multi:softprob` / `multi:softmax`
//! (softmax; tree `i` adds to class `tree_info[i]`). A split goes left iff `x < threshold` with `x`
//! as float32; a missing value goes to `default_left`. Categorical splits, multi-target trees,
//! linear boosters and other objectives are refused with their name.

use serde_json::Value;

use crate::schema::{
    check_leaf_values, check_limit, Aggregation, Cmp, Ensemble, FloatKind, Node, Post, Tree, MAX_FEATURES, MAX_OUTPUTS,
    MAX_TREES, MAX_TREE_NODES,
};
use crate::TreeError;

fn bad<T>(m: impl Into<String>) -> Result<T, TreeError> {
    Err(TreeError::Model(m.into()))
}

fn get<'a>(v: &'a Value, path: &[&str]) -> Result<&'a Value, TreeError> {
    let mut cur = v;
    for p in path {
        cur = match cur.get(p) {
            Some(x) => x,
            None => return bad(format!("not an XGBoost JSON model: no `{}`", path.join("."))),
        };
    }
    Ok(cur)
}

/// A number stored as a JSON number or a string (`"5E-1"`, `"[5E-1]"`).
fn num(v: &Value, what: &str) -> Result<Vec<f64>, TreeError> {
    match v {
        Value::Number(n) => Ok(vec![n.as_f64().unwrap_or(f64::NAN)]),
        Value::String(s) => {
            let t = s.trim().trim_start_matches('[').trim_end_matches(']');
            t.split(',')
                .filter(|p| !p.trim().is_empty())
                .map(|p| {
                    p.trim()
                        .parse::<f64>()
                        .map_err(|_| TreeError::Model(format!("{what}: `{s}` is not a number")))
                })
                .collect()
        }
        _ => bad(format!("{what} is not a number")),
    }
}

/// One number (see [`num`]): the first of a list, an error naming `what` when there is none.
fn num1(v: &Value, what: &str) -> Result<f64, TreeError> {
    num(v, what)?
        .first()
        .copied()
        .ok_or_else(|| TreeError::Model(format!("{what} holds no number")))
}

/// A count stored as a number or a string: a whole number in `0..=max`.
fn count(v: &Value, what: &str, max: usize) -> Result<usize, TreeError> {
    let x = num1(v, what)?;
    if !(x >= 0.0 && x.fract() == 0.0) {
        return bad(format!("{what} {x} is not a count"));
    }
    if x > max as f64 {
        return bad(format!("{what}: {x} is more than the supported {max}"));
    }
    Ok(x as usize)
}

fn ints(v: &Value, what: &str) -> Result<Vec<i64>, TreeError> {
    v.as_array()
        .ok_or_else(|| TreeError::Model(format!("{what} is not an array")))?
        .iter()
        .map(|x| {
            x.as_i64()
                .ok_or_else(|| TreeError::Model(format!("{what}: not an integer")))
        })
        .collect()
}

fn floats(v: &Value, what: &str) -> Result<Vec<f64>, TreeError> {
    v.as_array()
        .ok_or_else(|| TreeError::Model(format!("{what} is not an array")))?
        .iter()
        .map(|x| {
            x.as_f64()
                .ok_or_else(|| TreeError::Model(format!("{what}: not a number")))
        })
        .collect()
}

/// Parses an XGBoost JSON model. Any text gives an ensemble or an error, never a panic, and
/// allocates in proportion to the text (counts in the file are checked against the arrays present
/// and the limits of [`crate::schema`]); the entry point for fuzzing this format.
pub fn import(text: &str) -> Result<Ensemble, TreeError> {
    let root: Value =
        serde_json::from_str(text).map_err(|e| TreeError::Model(format!("not an XGBoost JSON model: {e}")))?;
    let learner = get(&root, &["learner"])?;
    let param = get(learner, &["learner_model_param"])?;
    let n_features = count(get(param, &["num_feature"])?, "num_feature", MAX_FEATURES)?;
    let num_class = count(get(param, &["num_class"])?, "num_class", MAX_OUTPUTS)?;
    if let Some(t) = param.get("num_target") {
        let t = num1(t, "num_target")?;
        if t.is_nan() || t > 1.0 {
            return bad("multi-target XGBoost models are not supported");
        }
    }
    let objective = get(learner, &["objective", "name"])?
        .as_str()
        .ok_or_else(|| TreeError::Model("objective name is not a string".into()))?
        .to_string();
    let base: Vec<f64> = num(get(param, &["base_score"])?, "base_score")?;
    let n_outputs = if num_class > 1 { num_class } else { 1 };
    let (post, base_margin): (Post, Vec<f64>) = match objective.as_str() {
        "reg:squarederror" | "reg:absoluteerror" | "reg:pseudohubererror" | "reg:squaredlogerror" => {
            if objective == "reg:squaredlogerror" {
                return bad("objective reg:squaredlogerror is not supported");
            }
            (Post::Identity, base.clone())
        }
        "binary:logistic" | "reg:logistic" => (
            Post::Sigmoid,
            base.iter()
                .map(|&p| {
                    if p > 0.0 && p < 1.0 {
                        (p / (1.0 - p)).ln()
                    } else {
                        f64::NAN
                    }
                })
                .collect(),
        ),
        "binary:logitraw" => (Post::Sigmoid, base.clone()),
        "multi:softprob" | "multi:softmax" => (Post::Softmax, base.clone()),
        other => return bad(format!("XGBoost objective `{other}` is not supported")),
    };
    if base_margin.iter().any(|b| !b.is_finite()) {
        return bad(format!(
            "base_score {base:?} does not give a finite margin for {objective}"
        ));
    }
    let base_score: Vec<f64> = match base_margin.len() {
        1 => vec![base_margin[0]; n_outputs],
        n if n == n_outputs => base_margin,
        n => return bad(format!("base_score has {n} values for {n_outputs} outputs")),
    };
    let booster = get(learner, &["gradient_booster"])?;
    let name = get(booster, &["name"])?.as_str().unwrap_or("");
    let (model, weights) = match name {
        "gbtree" => (get(booster, &["model"])?, None),
        "dart" => (
            get(booster, &["gbtree", "model"])?,
            Some(floats(get(booster, &["weight_drop"])?, "weight_drop")?),
        ),
        other => {
            return bad(format!(
                "XGBoost booster `{other}` is not supported (only tree boosters)"
            ))
        }
    };
    let trees_json = get(model, &["trees"])?
        .as_array()
        .ok_or_else(|| TreeError::Model("trees is not an array".into()))?;
    check_limit("trees", trees_json.len(), MAX_TREES)?;
    let tree_info = ints(get(model, &["tree_info"])?, "tree_info")?;
    if tree_info.len() != trees_json.len() {
        return bad("tree_info and trees differ in length");
    }
    let mut trees = Vec::with_capacity(trees_json.len());
    let mut leaves = 0usize;
    for (ti, t) in trees_json.iter().enumerate() {
        let left = ints(get(t, &["left_children"])?, "left_children")?;
        let right = ints(get(t, &["right_children"])?, "right_children")?;
        let feat = ints(get(t, &["split_indices"])?, "split_indices")?;
        let cond = floats(get(t, &["split_conditions"])?, "split_conditions")?;
        let default_left = ints(get(t, &["default_left"])?, "default_left")?;
        let n = left.len();
        if [right.len(), feat.len(), cond.len(), default_left.len()]
            .iter()
            .any(|&m| m != n)
        {
            return bad(format!("tree {ti}: node arrays differ in length"));
        }
        check_limit(format_args!("tree {ti}: nodes"), n, MAX_TREE_NODES)?;
        if let Some(st) = t.get("split_type") {
            if ints(st, "split_type")?.iter().any(|&s| s != 0) {
                return bad(format!("tree {ti}: categorical splits are not supported"));
            }
        }
        let class = match usize::try_from(tree_info[ti]) {
            Ok(c) if c < n_outputs => c,
            _ => {
                return bad(format!(
                    "tree {ti}: tree_info {} out of range ({n_outputs} outputs)",
                    tree_info[ti]
                ))
            }
        };
        let w = weights.as_ref().map_or(1.0, |w| w.get(ti).copied().unwrap_or(1.0));
        // every leaf holds `n_outputs` values: bound them before allocating
        leaves = leaves.saturating_add(left.iter().filter(|&&l| l == -1).count());
        check_leaf_values(leaves, n_outputs)?;
        let mut nodes = Vec::with_capacity(n);
        for (i, (((&l, &r), &f), (&c, &d))) in left
            .iter()
            .zip(&right)
            .zip(&feat)
            .zip(cond.iter().zip(&default_left))
            .enumerate()
        {
            if l == -1 {
                let mut value = vec![0.0; n_outputs];
                value[class] = c * w;
                nodes.push(Node::Leaf { value });
            } else {
                let child = |x: i64, what: &str| match usize::try_from(x) {
                    Ok(x) if x < n => Ok(x),
                    _ => bad(format!("tree {ti} node {i}: {what} {x} out of range ({n} nodes)")),
                };
                let (l, r) = (child(l, "left_children")?, child(r, "right_children")?);
                let feature = match usize::try_from(f) {
                    Ok(f) if f < n_features => f,
                    _ => {
                        return bad(format!(
                            "tree {ti} node {i}: split_indices {f} out of range ({n_features} features)"
                        ))
                    }
                };
                nodes.push(Node::Split {
                    feature,
                    threshold: c,
                    cmp: Cmp::Lt,
                    left: l,
                    right: r,
                    missing_left: d != 0,
                });
            }
        }
        trees.push(Tree { nodes });
    }
    let e = Ensemble {
        n_features,
        n_outputs,
        trees,
        base_score,
        aggregation: Aggregation::Sum,
        post,
        float: FloatKind::F32,
    };
    e.validate()?;
    Ok(e)
}
