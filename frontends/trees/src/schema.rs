//! The tree-ensemble schema: what every importer produces (JSON through serde).

use serde::{Deserialize, Serialize};

use crate::TreeError;

/// How a split compares the feature with its threshold; `true` goes left.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cmp {
    /// `x < threshold` (XGBoost, LightGBM with `decision_type` `<`).
    #[default]
    Lt,
    /// `x <= threshold` (scikit-learn, LightGBM's default `<=`).
    Le,
}

/// The float type in which the library compares (inputs are cast to it before the comparison).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FloatKind {
    /// float32 inputs: XGBoost, scikit-learn trees.
    #[default]
    F32,
    /// float64 inputs: LightGBM.
    F64,
}

/// How tree outputs combine (before the client's post-processing).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregation {
    /// Sum over trees (boosting).
    #[default]
    Sum,
    /// Mean over trees (forests).
    Mean,
}

/// What the client applies to the aggregated scores (informational for the builder; the Python side
/// and the CLI apply it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Post {
    /// Regression: the scores are the prediction.
    #[default]
    Identity,
    /// Binary classification from one margin.
    Sigmoid,
    /// Multi-class from one margin per class.
    Softmax,
    /// The scores are class probabilities (forests of classification trees).
    Proba,
}

/// A node; the root of a tree is `nodes[0]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Node {
    Split {
        feature: usize,
        threshold: f64,
        #[serde(default)]
        cmp: Cmp,
        /// Child index when the comparison holds.
        left: usize,
        right: usize,
        /// Where a missing value goes (quantised inputs are never missing; kept for importers).
        #[serde(default)]
        missing_left: bool,
    },
    Leaf {
        /// One value per output.
        value: Vec<f64>,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tree {
    pub nodes: Vec<Node>,
}

/// A tree ensemble: the common form of decision trees, random forests and boosted trees.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ensemble {
    pub n_features: usize,
    /// Scores per sample: 1 for regression and binary classification, the class count otherwise.
    pub n_outputs: usize,
    pub trees: Vec<Tree>,
    /// Added to each output after aggregation (empty: zeros).
    #[serde(default)]
    pub base_score: Vec<f64>,
    #[serde(default)]
    pub aggregation: Aggregation,
    #[serde(default)]
    pub post: Post,
    #[serde(default)]
    pub float: FloatKind,
}

/// At most this many trees in an ensemble. Any importer refuses more (a file cannot make the
/// builder, whose work grows with the trees, run without bound); far beyond what an encrypted
/// evaluation can afford (a few thousand lookups).
pub const MAX_TREES: usize = 1 << 20;

/// At most this many nodes in one tree (LightGBM's largest `num_leaves`, 131 072, needs 262 143).
pub const MAX_TREE_NODES: usize = 1 << 22;

/// At most this many input features (`n_features`, and so every split's feature index). XGBoost's
/// `num_feature` and an ONNX model's input width are numbers in the file, not data: the limit keeps
/// what they size (quantisers, the thermometer encoding) bounded.
pub const MAX_FEATURES: usize = 1 << 20;

/// At most this many outputs (classes or targets) per sample. Every leaf holds one value per output,
/// so the importers check this (and [`MAX_LEAF_VALUES`]) before allocating any leaf.
pub const MAX_OUTPUTS: usize = 1 << 16;

/// At most this many leaf values in all (leaves × outputs, over all trees): the dense leaves of an
/// imported ensemble take 8 bytes each, so a small file naming many classes cannot allocate more than
/// 128 MiB of them. A model near the limit needs millions of encrypted lookups anyway.
pub const MAX_LEAF_VALUES: usize = 1 << 24;

/// At most this deep a tree (splits on the path from the root to a leaf). The encrypted evaluation
/// compares path sums in `[0, depth]` with one lookup per leaf, and the builder keeps each leaf's
/// path: a deeper tree is refused (retrain with `max_depth` ≤ 64).
pub const MAX_DEPTH: usize = 64;

fn bad<T>(m: String) -> Result<T, TreeError> {
    Err(TreeError::Model(m))
}

/// Refuses `count` things of a kind beyond its limit (`what` names the field, as in the file).
pub fn check_limit(what: impl std::fmt::Display, count: usize, max: usize) -> Result<(), TreeError> {
    if count > max {
        return bad(format!("{what}: {count} is more than the supported {max}"));
    }
    Ok(())
}

/// Refuses `leaves` leaves of `outputs` values each when they exceed [`MAX_LEAF_VALUES`] (checked
/// before the importers allocate them).
pub fn check_leaf_values(leaves: usize, outputs: usize) -> Result<(), TreeError> {
    match leaves.checked_mul(outputs) {
        Some(v) if v <= MAX_LEAF_VALUES => Ok(()),
        _ => bad(format!(
            "{leaves} leaves of {outputs} outputs are more than the supported {MAX_LEAF_VALUES} leaf values"
        )),
    }
}

/// Walks tree `t` of `n` nodes from its root (node 0), checking that it is a tree: every child in
/// range, every node reached once and no path deeper than [`MAX_DEPTH`]. `visit(i)` checks node `i`
/// and gives a split's children. Iterative: a hostile tree cannot overflow the stack.
pub(crate) fn walk_tree(
    t: usize,
    n: usize,
    mut visit: impl FnMut(usize) -> Result<Option<(usize, usize)>, TreeError>,
) -> Result<(), TreeError> {
    if n == 0 {
        return bad(format!("tree {t} has no nodes"));
    }
    check_limit(format_args!("tree {t}: nodes"), n, MAX_TREE_NODES)?;
    let mut seen = vec![false; n];
    // (node, its depth): only nodes not yet visited are pushed, by visited nodes, so the stack never
    // holds more than 2n entries
    let mut stack = vec![(0usize, 0usize)];
    while let Some((i, depth)) = stack.pop() {
        if std::mem::replace(&mut seen[i], true) {
            return bad(format!("tree {t}: node {i} is reached twice (not a tree)"));
        }
        if let Some((l, r)) = visit(i)? {
            if depth >= MAX_DEPTH {
                return bad(format!(
                    "tree {t} node {i}: the tree is deeper than the supported depth {MAX_DEPTH}"
                ));
            }
            for c in [l, r] {
                if c >= n {
                    return bad(format!("tree {t} node {i}: child {c} out of range ({n} nodes)"));
                }
                if seen[c] {
                    return bad(format!("tree {t}: node {c} is reached twice (not a tree)"));
                }
                stack.push((c, depth + 1));
            }
        }
    }
    Ok(())
}

impl Ensemble {
    /// Parses and validates an ensemble in fhec's JSON form (what [`Ensemble::to_json`] writes). Any
    /// text gives an ensemble or an error, never a panic; the entry point for fuzzing this format.
    pub fn from_json(text: &str) -> Result<Ensemble, TreeError> {
        let e: Ensemble =
            serde_json::from_str(text).map_err(|e| TreeError::Model(format!("not a tree ensemble: {e}")))?;
        e.validate()?;
        Ok(e)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("plain data serialises")
    }

    /// Checks the structure: features and children in range, every tree a tree (each node reached
    /// once from the root), leaves with one finite value per output, finite thresholds, and the
    /// limits ([`MAX_FEATURES`], [`MAX_OUTPUTS`], [`MAX_TREES`], [`MAX_TREE_NODES`],
    /// [`MAX_LEAF_VALUES`], [`MAX_DEPTH`]).
    pub fn validate(&self) -> Result<(), TreeError> {
        if self.n_features == 0 || self.n_outputs == 0 {
            return bad("an ensemble needs at least one feature and one output".into());
        }
        if self.trees.is_empty() {
            return bad("the ensemble has no trees".into());
        }
        check_limit("n_features", self.n_features, MAX_FEATURES)?;
        check_limit("n_outputs", self.n_outputs, MAX_OUTPUTS)?;
        check_limit("trees", self.trees.len(), MAX_TREES)?;
        let leaves = self
            .trees
            .iter()
            .flat_map(|t| &t.nodes)
            .filter(|n| matches!(n, Node::Leaf { .. }))
            .count();
        check_leaf_values(leaves, self.n_outputs)?;
        if !self.base_score.is_empty() && self.base_score.len() != self.n_outputs {
            return bad(format!(
                "base_score has {} values for {} outputs",
                self.base_score.len(),
                self.n_outputs
            ));
        }
        if self.base_score.iter().any(|v| !v.is_finite()) {
            return bad("base_score is not finite".into());
        }
        for (t, tree) in self.trees.iter().enumerate() {
            walk_tree(t, tree.nodes.len(), |i| match &tree.nodes[i] {
                Node::Split {
                    feature,
                    threshold,
                    left,
                    right,
                    ..
                } => {
                    if *feature >= self.n_features {
                        return bad(format!(
                            "tree {t} node {i}: feature {feature} out of range ({} features)",
                            self.n_features
                        ));
                    }
                    if threshold.is_nan() {
                        return bad(format!("tree {t} node {i}: threshold is NaN"));
                    }
                    Ok(Some((*left, *right)))
                }
                Node::Leaf { value } => {
                    if value.len() != self.n_outputs {
                        return bad(format!(
                            "tree {t} node {i}: leaf has {} values for {} outputs",
                            value.len(),
                            self.n_outputs
                        ));
                    }
                    if value.iter().any(|v| !v.is_finite()) {
                        return bad(format!("tree {t} node {i}: leaf value is not finite"));
                    }
                    Ok(None)
                }
            })?;
        }
        Ok(())
    }

    /// The float prediction (aggregated scores plus base score, before post-processing), as the
    /// library computes it; the reference for importer tests.
    pub fn predict_raw(&self, x: &[f64]) -> Vec<f64> {
        let mut out = vec![0.0; self.n_outputs];
        for tree in &self.trees {
            let mut i = 0;
            loop {
                match &tree.nodes[i] {
                    Node::Split {
                        feature,
                        threshold,
                        cmp,
                        left,
                        right,
                        missing_left,
                    } => {
                        let v = x[*feature];
                        let go_left = if v.is_nan() {
                            *missing_left
                        } else {
                            compare(self.float, v, *threshold, *cmp)
                        };
                        i = if go_left { *left } else { *right };
                    }
                    Node::Leaf { value } => {
                        for (o, v) in out.iter_mut().zip(value) {
                            *o += v;
                        }
                        break;
                    }
                }
            }
        }
        if self.aggregation == Aggregation::Mean {
            let n = self.trees.len() as f64;
            out.iter_mut().for_each(|o| *o /= n);
        }
        for (o, b) in out.iter_mut().zip(&self.base_score) {
            *o += b;
        }
        out
    }
}

/// The library's comparison: the input cast to its float type, against the threshold as stored
/// (scikit-learn compares float32 inputs with float64 thresholds; XGBoost's thresholds are float32
/// values already).
pub fn compare(float: FloatKind, x: f64, t: f64, cmp: Cmp) -> bool {
    let x = match float {
        FloatKind::F32 => x as f32 as f64,
        FloatKind::F64 => x,
    };
    match cmp {
        Cmp::Lt => x < t,
        Cmp::Le => x <= t,
    }
}
