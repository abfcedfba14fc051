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

/// How input levels are placed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuantizerKind {
    /// Affine: `2^n` evenly spaced levels between the calibration minimum and maximum.
    Uniform,
    /// Quantiles of the calibration data: level `q` is the number of edges `≤ x`, the edges being
    /// `2^n − 1` quantiles (deduplicated). Skewed features (counts, lengths) keep resolution where
    /// the data is; the edges depend on the calibration data only, not on the model.
    #[default]
    Quantile,
}

/// Per-feature quantiser. Affine: `q = clip(rint((x − lo) / scale), 0, 2^n_bits − 1)` (ties to
/// even, as numpy's `rint`). With `edges` (quantile kind): `q = #{e ∈ edges[j] : e ≤ x}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Quantizer {
    pub n_bits: u32,
    pub lo: Vec<f64>,
    pub scale: Vec<f64>,
    /// Per feature, increasing edges (at most `2^n − 1`); absent for affine quantisers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edges: Option<Vec<Vec<f64>>>,
}

impl Quantizer {
    /// From calibration rows (`rows[i]` has one value per feature): each feature's range is the
    /// calibration's minimum and maximum; a constant feature gets scale 1.
    pub fn calibrate(rows: &[Vec<f64>], n_features: usize, n_bits: u32) -> Result<Quantizer, TreeError> {
        if !(1..=MAX_INPUT_BITS).contains(&n_bits) {
            return Err(TreeError::Options(format!(
                "n_bits for inputs must be 1 to {MAX_INPUT_BITS} (the encoding sends 2^n − 1 bits per feature), got {n_bits}"
            )));
        }
        if rows.is_empty() {
            return Err(TreeError::Options("the calibration set is empty".into()));
        }
        let mut lo = vec![f64::INFINITY; n_features];
        let mut hi = vec![f64::NEG_INFINITY; n_features];
        for (i, r) in rows.iter().enumerate() {
            if r.len() != n_features {
                return Err(TreeError::Options(format!(
                    "calibration row {i} has {} features, the model {n_features}",
                    r.len()
                )));
            }
            for (j, &v) in r.iter().enumerate() {
                if !v.is_finite() {
                    return Err(TreeError::Options(format!(
                        "calibration row {i} feature {j} is {v}: missing or infinite values are not supported"
                    )));
                }
                lo[j] = lo[j].min(v);
                hi[j] = hi[j].max(v);
            }
        }
        let levels = ((1u64 << n_bits) - 1) as f64;
        let scale = lo
            .iter()
            .zip(&hi)
            .map(|(l, h)| if h > l { (h - l) / levels } else { 1.0 })
            .collect();
        Ok(Quantizer {
            n_bits,
            lo,
            scale,
            edges: None,
        })
    }

    /// Quantile quantisers ([`QuantizerKind::Quantile`]) from calibration rows.
    pub fn calibrate_quantiles(rows: &[Vec<f64>], n_features: usize, n_bits: u32) -> Result<Quantizer, TreeError> {
        let mut q = Quantizer::calibrate(rows, n_features, n_bits)?;
        let levels = (1usize << n_bits) - 1;
        let n = rows.len();
        let mut edges = Vec::with_capacity(n_features);
        for j in 0..n_features {
            let mut col: Vec<f64> = rows.iter().map(|r| r[j]).collect();
            col.sort_by(f64::total_cmp);
            let mut e: Vec<f64> = Vec::with_capacity(levels);
            for k in 1..=levels {
                let v = col[(k * n / (levels + 1)).min(n - 1)];
                if v > col[0] && e.last().is_none_or(|&last| v > last) {
                    e.push(v);
                }
            }
            edges.push(e);
        }
        q.edges = Some(edges);
        Ok(q)
    }

    pub fn levels(&self) -> u32 {
        (1u32 << self.n_bits) - 1
    }

    pub fn quantize(&self, x: &[f64]) -> Vec<i64> {
        let max = self.levels() as f64;
        x.iter()
            .enumerate()
            .map(|(j, &v)| match &self.edges {
                Some(e) => e[j].partition_point(|&edge| edge <= v) as i64,
                None => ((v - self.lo[j]) / self.scale[j]).round_ties_even().clamp(0.0, max) as i64,
            })
            .collect()
    }

    /// Grid points of feature `j`: `0 ..= grid_max(j)`.
    pub fn grid_max(&self, j: usize) -> u32 {
        match &self.edges {
            Some(e) => e[j].len() as u32,
            None => self.levels(),
        }
    }

    /// The value the float model sees for grid point `q` of feature `j` (quantile kind: the lower
    /// edge of the bin, the calibration minimum for bin 0).
    pub fn level_value(&self, j: usize, q: u32) -> f64 {
        match &self.edges {
            Some(e) if q > 0 => e[j][q as usize - 1],
            Some(_) => self.lo[j],
            None => self.lo[j] + self.scale[j] * q as f64,
        }
    }
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
    let inputs = match kind {
        QuantizerKind::Uniform => Quantizer::calibrate(rows, e.n_features, n_bits)?,
        QuantizerKind::Quantile => Quantizer::calibrate_quantiles(rows, e.n_features, n_bits)?,
    };
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
