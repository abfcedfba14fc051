//! Quantisation of an ensemble: per-feature input quantisers, thresholds on the quantised grid,
//! integer leaves. The result ([`Quantized`]) is what the client and the builder share; it is plain
//! data (JSON) so that the Python side computes exactly the same quantised model.

use serde::{Deserialize, Serialize};

use crate::schema::{compare, Aggregation, Ensemble, Node, Post};
use crate::TreeError;

/// Largest input width: the thermometer encoding sends `2^n − 1` bits per feature.
pub const MAX_INPUT_BITS: u32 = 10;
/// Largest leaf width.
pub const MAX_LEAF_BITS: u32 = 16;

/// The per-feature input quantisers (affine or quantile), from `fhec-quant`.
pub use fhec_quant::input::{InputQuantizer as Quantizer, QuantizerKind};

/// Calibrates input quantisers of `kind` within the encoding's limit ([`MAX_INPUT_BITS`]).
fn calibrate(rows: &[Vec<f64>], n_features: usize, n_bits: u32, kind: QuantizerKind) -> Result<Quantizer, TreeError> {
    if !(1..=MAX_INPUT_BITS).contains(&n_bits) {
        return Err(TreeError::Options(format!(
            "n_bits for inputs must be 1 to {MAX_INPUT_BITS} (the encoding sends 2^n − 1 bits per feature), got {n_bits}"
        )));
    }
    Quantizer::calibrate_kind(rows, n_features, n_bits, kind).map_err(|e| TreeError::Options(e.to_string()))
}

/// A split on the grid: go left iff `q[feature] < t` (`t = 0`: never; `t = 2^n`: always).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum QNode {
    Split {
        feature: usize,
        t: u32,
        left: usize,
        right: usize,
    },
    Leaf {
        value: Vec<i64>,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QTree {
    pub nodes: Vec<QNode>,
}

/// The quantised ensemble: integer leaves per output with a scale, and what the client applies.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Quantized {
    pub n_features: usize,
    pub n_outputs: usize,
    pub inputs: Quantizer,
    pub leaf_bits: u32,
    /// Per output: a leaf value `v` is `leaf_scale · round(v / leaf_scale)`.
    pub leaf_scale: Vec<f64>,
    pub trees: Vec<QTree>,
    pub base_score: Vec<f64>,
    pub aggregation: Aggregation,
    pub post: Post,
}

/// Quantises `e` with input quantisers calibrated on `rows` (`n_bits` per feature) and leaves on
/// `leaf_bits` signed bits per output.
pub fn quantize(e: &Ensemble, rows: &[Vec<f64>], n_bits: u32, leaf_bits: u32) -> Result<Quantized, TreeError> {
    quantize_with(e, rows, n_bits, leaf_bits, QuantizerKind::Uniform)
}

/// [`quantize`] with a choice of input quantiser.
pub fn quantize_with(
    e: &Ensemble,
    rows: &[Vec<f64>],
    n_bits: u32,
    leaf_bits: u32,
    kind: QuantizerKind,
) -> Result<Quantized, TreeError> {
    e.validate()?;
    if !(2..=MAX_LEAF_BITS).contains(&leaf_bits) {
        return Err(TreeError::Options(format!(
            "leaf bits must be 2 to {MAX_LEAF_BITS}, got {leaf_bits}"
        )));
    }
    let inputs = calibrate(rows, e.n_features, n_bits, kind)?;
    let top = ((1i64 << (leaf_bits - 1)) - 1) as f64;
    let mut max_abs = vec![0f64; e.n_outputs];
    for t in &e.trees {
        for n in &t.nodes {
            if let Node::Leaf { value } = n {
                for (m, v) in max_abs.iter_mut().zip(value) {
                    *m = m.max(v.abs());
                }
            }
        }
    }
    let leaf_scale: Vec<f64> = max_abs.iter().map(|&m| if m > 0.0 { m / top } else { 1.0 }).collect();
    let mut trees = Vec::with_capacity(e.trees.len());
    for (ti, t) in e.trees.iter().enumerate() {
        let mut nodes = Vec::with_capacity(t.nodes.len());
        for (ni, n) in t.nodes.iter().enumerate() {
            nodes.push(match n {
                Node::Split {
                    feature,
                    threshold,
                    cmp,
                    left,
                    right,
                    ..
                } => {
                    // the test is monotone in q: left on 0 .. t, right from t on
                    let holds: Vec<bool> = (0..=inputs.grid_max(*feature))
                        .map(|q| compare(e.float, inputs.level_value(*feature, q), *threshold, *cmp))
                        .collect();
                    let t_idx = holds.iter().take_while(|&&h| h).count() as u32;
                    if holds[t_idx as usize..].iter().any(|&h| h) {
                        return Err(TreeError::Model(format!(
                            "tree {ti} node {ni}: the split on feature {feature} at {threshold} is not monotone on the quantised grid"
                        )));
                    }
                    QNode::Split {
                        feature: *feature,
                        t: t_idx,
                        left: *left,
                        right: *right,
                    }
                }
                Node::Leaf { value } => QNode::Leaf {
                    value: value
                        .iter()
                        .zip(&leaf_scale)
                        .map(|(v, s)| (v / s).round_ties_even() as i64)
                        .collect(),
                },
            });
        }
        trees.push(QTree { nodes });
    }
    Ok(Quantized {
        n_features: e.n_features,
        n_outputs: e.n_outputs,
        inputs,
        leaf_bits,
        leaf_scale,
        trees,
        base_score: if e.base_score.is_empty() {
            vec![0.0; e.n_outputs]
        } else {
            e.base_score.clone()
        },
        aggregation: e.aggregation,
        post: e.post,
    })
}

impl Quantized {
    pub fn from_json(text: &str) -> Result<Quantized, TreeError> {
        let q: Quantized =
            serde_json::from_str(text).map_err(|e| TreeError::Model(format!("not a quantised tree ensemble: {e}")))?;
        q.validate()?;
        Ok(q)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("plain data serialises")
    }

    fn validate(&self) -> Result<(), TreeError> {
        let bad = |m: String| Err(TreeError::Model(m));
        let grid = 1u32 << self.inputs.n_bits.min(MAX_INPUT_BITS);
        if !(1..=MAX_INPUT_BITS).contains(&self.inputs.n_bits)
            || self.inputs.lo.len() != self.n_features
            || self.inputs.scale.len() != self.n_features
            || self.leaf_scale.len() != self.n_outputs
            || self.base_score.len() != self.n_outputs
            || self.trees.is_empty()
        {
            return bad("a quantised ensemble's quantisers, scales or trees do not match its sizes".into());
        }
        if let Some(e) = &self.inputs.edges {
            let levels = self.inputs.levels() as usize;
            if e.len() != self.n_features
                || e.iter().any(|f| {
                    f.len() > levels
                        || f.windows(2)
                            .any(|w| w[0].partial_cmp(&w[1]) != Some(std::cmp::Ordering::Less))
                        || f.iter().any(|v| !v.is_finite())
                })
            {
                return bad("a quantised ensemble's quantile edges are not increasing finite levels".into());
            }
        }
        let limit = 1i64 << MAX_LEAF_BITS;
        for (ti, t) in self.trees.iter().enumerate() {
            crate::schema::walk_tree(ti, t.nodes.len(), |i| match &t.nodes[i] {
                QNode::Split {
                    feature,
                    t: th,
                    left,
                    right,
                } => {
                    if *feature >= self.n_features || *th > grid {
                        return Err(TreeError::Model(format!(
                            "tree {ti} node {i}: feature or threshold out of range"
                        )));
                    }
                    Ok(Some((*left, *right)))
                }
                QNode::Leaf { value } => {
                    if value.len() != self.n_outputs || value.iter().any(|v| v.abs() >= limit) {
                        return Err(TreeError::Model(format!("tree {ti} node {i}: bad leaf")));
                    }
                    Ok(None)
                }
            })?;
        }
        Ok(())
    }

    /// Bits per feature in the thermometer encoding.
    pub fn levels(&self) -> usize {
        self.inputs.levels() as usize
    }

    /// The client's input encoding of quantised features: for feature `j` and level `k = 1 ..
    /// 2^n − 1`, bit `j·(2^n − 1) + k − 1` is `[q_j ≥ k]`.
    pub fn thermometer(&self, q: &[i64]) -> Vec<i64> {
        let l = self.levels();
        let mut bits = vec![0i64; q.len() * l];
        for (j, &v) in q.iter().enumerate() {
            for k in 1..=l {
                bits[j * l + k - 1] = (v >= k as i64) as i64;
            }
        }
        bits
    }

    /// The quantised model on quantised features: the integer score of each output (the sum of the
    /// reached leaves), what the encrypted program computes.
    pub fn scores(&self, q: &[i64]) -> Vec<i64> {
        let mut out = vec![0i64; self.n_outputs];
        for t in &self.trees {
            let mut i = 0;
            loop {
                match &t.nodes[i] {
                    QNode::Split {
                        feature,
                        t: th,
                        left,
                        right,
                    } => i = if q[*feature] < *th as i64 { *left } else { *right },
                    QNode::Leaf { value } => {
                        for (o, v) in out.iter_mut().zip(value) {
                            *o += v;
                        }
                        break;
                    }
                }
            }
        }
        out
    }

    /// The client half: float features in (quantised, thermometer-encoded), dequantised scores out,
    /// with the ensemble's post-processing.
    pub fn client_spec(&self) -> fhec_quant::ClientSpec {
        let n = match self.aggregation {
            Aggregation::Sum => 1.0,
            Aggregation::Mean => self.trees.len() as f64,
        };
        let post = match self.post {
            Post::Identity => fhec_quant::Post::Identity,
            Post::Sigmoid => fhec_quant::Post::Sigmoid,
            Post::Softmax => fhec_quant::Post::Softmax,
            Post::Proba => fhec_quant::Post::Proba,
        };
        fhec_quant::ClientSpec::model(
            self.inputs.clone(),
            fhec_quant::Encoding::Thermometer,
            fhec_quant::Dequant::new(self.leaf_scale.iter().map(|s| s / n).collect(), self.base_score.clone()),
            post,
        )
    }

    /// Dequantised raw scores (aggregation and base score applied; no post-processing).
    pub fn dequantize(&self, scores: &[i64]) -> Vec<f64> {
        let n = match self.aggregation {
            Aggregation::Sum => 1.0,
            Aggregation::Mean => self.trees.len() as f64,
        };
        scores
            .iter()
            .zip(&self.leaf_scale)
            .zip(&self.base_score)
            .map(|((&s, &sc), &b)| s as f64 * sc / n + b)
            .collect()
    }
}
