//! The `fhe` module of a quantised ensemble (design: docs/trees.md).
//!
//! Input: the thermometer bits, `tensor<1xMx!fhe.eint<1>>` with `M = features · (2^n − 1)`. Every
//! reachable leaf's path sum is one column of a clear matrix product (entries −1 for a left turn,
//! +1 for a right turn) plus a constant, in `[0, D]` and equal to `D` exactly on the reached leaf.
//! One table per (leaf, output) gives the quantised leaf value when the sum is `D`, else 0
//! (`fhe.mapped_lut`); a 0/1 matrix sums them per output. With several outputs and
//! [`LeafMode::Indicator`], one 0/1 table per leaf is followed by a clear product with the leaf values.

use fhec_ir::attr::{Attribute, Dense};
use fhec_ir::module::{FunctionBuilder, Module};
use fhec_ir::types::{width_for, ElemType, Type};
use fhec_ir::OpKind;
use ndarray::{ArrayD, IxDyn};
use serde::{Deserialize, Serialize};

use crate::quant::{QNode, Quantized};
use crate::TreeError;

/// How leaves become outputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeafMode {
    /// One lookup per (leaf, output with a non-zero value): the table holds the leaf value. Least
    /// noise; the default with one output.
    Fused,
    /// One 0/1 lookup per leaf, then a clear product with the leaf values: fewer lookups with several
    /// outputs; the default then.
    Indicator,
}

/// What the builder reports about the program.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BuildReport {
    /// Thermometer bits per sample.
    pub input_bits: usize,
    /// Reachable leaves (over all trees).
    pub leaves: usize,
    /// Table lookups per sample.
    pub lookups: usize,
    /// Width of each lookup's input: ⌈log2(D + 1)⌉ for the deepest path D.
    pub lookup_bits: u32,
    pub max_depth: usize,
    pub leaf_mode: LeafMode,
}

struct Leaf {
    tree: usize,
    /// (bit index or None for a constant-true test, went left)
    path: Vec<(usize, bool)>,
    /// tests that always hold
    constant_true: usize,
    value: Vec<i64>,
}

fn leaves(q: &Quantized) -> Vec<Leaf> {
    let l = q.levels();
    let grid = 1u32 << q.inputs.n_bits;
    let mut out = Vec::new();
    for (ti, t) in q.trees.iter().enumerate() {
        // (node, path so far, constant-true count)
        let mut stack = vec![(0usize, Vec::new(), 0usize)];
        while let Some((i, path, konst)) = stack.pop() {
            match &t.nodes[i] {
                QNode::Leaf { value } => out.push(Leaf {
                    tree: ti,
                    path,
                    constant_true: konst,
                    value: value.clone(),
                }),
                QNode::Split {
                    feature,
                    t: th,
                    left,
                    right,
                } => {
                    // left iff q < th; q < 0 never holds, q < 2^n always does
                    if *th == 0 {
                        stack.push((*right, path, konst + 1));
                    } else if *th >= grid {
                        stack.push((*left, path, konst + 1));
                    } else {
                        let bit = feature * l + *th as usize - 1;
                        let mut lp = path.clone();
                        lp.push((bit, true));
                        stack.push((*left, lp, konst + 1));
                        let mut rp = path;
                        rp.push((bit, false));
                        stack.push((*right, rp, konst + 1));
                    }
                }
            }
        }
    }
    out
}

fn dense(data: Vec<i64>, shape: &[usize]) -> Result<Dense, TreeError> {
    let t = ArrayD::from_shape_vec(IxDyn(shape), data).map_err(|e| TreeError::Build(e.to_string()))?;
    let lo = t.iter().copied().min().unwrap_or(0) as i128;
    let hi = t.iter().copied().max().unwrap_or(0) as i128;
    let signed = lo < 0;
    let w = width_for(lo, hi, signed);
    let ty = Type::new(
        if signed { ElemType::Int(w) } else { ElemType::UInt(w) },
        shape.to_vec(),
    );
    Dense::new(ty, t).map_err(TreeError::Build)
}

fn build_err(d: fhec_ir::Diagnostic) -> TreeError {
    TreeError::Build(d.message)
}

/// Builds the module; `mode` `None` picks [`LeafMode::Fused`] for one output, else
/// [`LeafMode::Indicator`].
pub fn build_module(q: &Quantized, mode: Option<LeafMode>) -> Result<(Module, BuildReport), TreeError> {
    let mode = mode.unwrap_or(if q.n_outputs == 1 {
        LeafMode::Fused
    } else {
        LeafMode::Indicator
    });
    let c = q.n_outputs;
    let m = q.n_features * q.levels();
    let leaves = leaves(q);
    // a leaf whose path has no encrypted test is reached for every input of its tree: a constant
    let mut constant = vec![0i64; c];
    let mut live: Vec<&Leaf> = Vec::new();
    for lf in &leaves {
        if lf.path.is_empty() {
            for (o, v) in constant.iter_mut().zip(&lf.value) {
                *o += v;
            }
        } else {
            live.push(lf);
        }
    }
    if live.is_empty() {
        return Err(TreeError::Build(
            "the quantised model is constant (no split separates the quantised inputs): nothing to compute on encrypted data"
                .into(),
        ));
    }
    let depth = live.iter().map(|l| l.path.len()).max().unwrap_or(1);
    // columns: (leaf, output or None for an indicator)
    let columns: Vec<(usize, Option<usize>)> = match mode {
        LeafMode::Fused => live
            .iter()
            .enumerate()
            .flat_map(|(i, lf)| (0..c).filter(move |&o| lf.value[o] != 0).map(move |o| (i, Some(o))))
            .collect(),
        LeafMode::Indicator => (0..live.len()).map(|i| (i, None)).collect(),
    };
    let p = columns.len();
    // path sums: matrix (m × p) and constants
    let mut a = vec![0i64; m * p];
    let mut offsets = vec![0i64; p];
    let (mut s_lo, mut s_hi) = (0i128, 0i128);
    for (col, &(li, _)) in columns.iter().enumerate() {
        let lf = live[li];
        let mut neg = 0i128;
        let mut pos = 0i128;
        for &(bit, left) in &lf.path {
            let e = &mut a[bit * p + col];
            if left {
                *e -= 1;
                offsets[col] += 1;
                neg -= 1;
            } else {
                *e += 1;
                pos += 1;
            }
        }
        offsets[col] += (depth - lf.path.len()) as i64;
        s_lo = s_lo.min(neg);
        s_hi = s_hi.max(pos);
    }
    let _ = live.iter().map(|l| l.constant_true).sum::<usize>();
    let s_width = width_for(s_lo.min(-1), s_hi.max(1), true);
    let d_width = width_for(0, depth as i128, false);

    let mut b = FunctionBuilder::new("main");
    let x = b.arg_with_range("x", Type::new(ElemType::EInt(1), vec![1, m]), 0, 1);
    let av = b
        .op(
            OpKind::Constant,
            &[],
            &[("value", Attribute::Dense(dense(a, &[m, p])?))],
        )
        .map_err(build_err)?;
    let s = b
        .op_with_type(
            OpKind::Matmul,
            &[x, av],
            &[],
            Some(Type::new(ElemType::ESInt(s_width), vec![1, p])),
        )
        .map_err(build_err)?;
    let cv = b
        .op(
            OpKind::Constant,
            &[],
            &[("value", Attribute::Dense(dense(offsets, &[1, p])?))],
        )
        .map_err(build_err)?;
    let s2 = b
        .op_with_type(
            OpKind::Add,
            &[s, cv],
            &[],
            Some(Type::new(ElemType::ESInt(d_width + 1), vec![1, p])),
        )
        .map_err(build_err)?;
    let sd = b
        .op_with_type(
            OpKind::ToUnsigned,
            &[s2],
            &[],
            Some(Type::new(ElemType::EInt(d_width + 1), vec![1, p])),
        )
        .map_err(build_err)?;
    // the sums are signed by type (the matrix has −1 entries) but lie in [0, D]; the tables cover
    // the signed width here and the bitwidth pass narrows them to ⌈log2(D + 1)⌉ bits
    let size = 1usize << (d_width + 1);
    // per output, the tight range of the sum: one leaf per tree is reached
    let mut per_tree: Vec<Vec<(i64, i64)>> = vec![vec![(0, 0); c]; q.trees.len()];
    for lf in &live {
        for (r, &v) in per_tree[lf.tree].iter_mut().zip(&lf.value) {
            r.0 = r.0.min(v);
            r.1 = r.1.max(v);
        }
    }
    let (mut o_lo, mut o_hi) = (i128::MAX, i128::MIN);
    for o in 0..c {
        let lo: i128 = per_tree.iter().map(|t| t[o].0 as i128).sum::<i128>() + constant[o] as i128;
        let hi: i128 = per_tree.iter().map(|t| t[o].1 as i128).sum::<i128>() + constant[o] as i128;
        o_lo = o_lo.min(lo);
        o_hi = o_hi.max(hi);
    }
    let out_width = width_for(o_lo.min(-1), o_hi.max(1), true);
    if out_width > fhec_ir::types::MAX_ENCRYPTED_WIDTH {
        return Err(TreeError::Build(format!(
            "the scores need {out_width} bits; lower the leaf bits"
        )));
    }
    let out_ty = Type::new(ElemType::ESInt(out_width), vec![1, c]);
    let out = match mode {
        LeafMode::Fused => {
            // one table per distinct leaf value
            let mut values: Vec<i64> = columns
                .iter()
                .map(|&(li, o)| live[li].value[o.expect("fused")])
                .collect();
            let mut distinct = values.clone();
            distinct.sort_unstable();
            distinct.dedup();
            let map: Vec<i64> = values
                .iter()
                .map(|v| distinct.binary_search(v).expect("present") as i64)
                .collect();
            let tables: Vec<i64> = distinct
                .iter()
                .flat_map(|&v| (0..size).map(move |k| if k == depth { v } else { 0 }))
                .collect();
            let v_lo = distinct.iter().copied().min().unwrap_or(0).min(0) as i128;
            let v_hi = distinct.iter().copied().max().unwrap_or(0).max(0) as i128;
            let v_width = width_for(v_lo.min(-1), v_hi.max(1), true);
            let y = b
                .op_with_type(
                    OpKind::MappedLut,
                    &[sd],
                    &[
                        ("map", Attribute::Dense(dense(map, &[1, p])?)),
                        ("tables", Attribute::Dense(dense(tables, &[distinct.len(), size])?)),
                    ],
                    Some(Type::new(ElemType::ESInt(v_width), vec![1, p])),
                )
                .map_err(build_err)?;
            values.clear();
            let mut sel = vec![0i64; p * c];
            for (col, &(_, o)) in columns.iter().enumerate() {
                sel[col * c + o.expect("fused")] = 1;
            }
            let sv = b
                .op(
                    OpKind::Constant,
                    &[],
                    &[("value", Attribute::Dense(dense(sel, &[p, c])?))],
                )
                .map_err(build_err)?;
            b.op_with_type(OpKind::Matmul, &[y, sv], &[], Some(out_ty.clone()))
                .map_err(build_err)?
        }
        LeafMode::Indicator => {
            let table: Vec<i64> = (0..size).map(|k| (k == depth) as i64).collect();
            let y = b
                .op_with_type(
                    OpKind::Lut,
                    &[sd],
                    &[("table", Attribute::Dense(dense(table, &[size])?))],
                    // signed, so that the product with the leaf values is signed like the output
                    Some(Type::new(ElemType::ESInt(2), vec![1, p])),
                )
                .map_err(build_err)?;
            let mut vals = vec![0i64; p * c];
            for (col, &(li, _)) in columns.iter().enumerate() {
                for o in 0..c {
                    vals[col * c + o] = live[li].value[o];
                }
            }
            let vv = b
                .op(
                    OpKind::Constant,
                    &[],
                    &[("value", Attribute::Dense(dense(vals, &[p, c])?))],
                )
                .map_err(build_err)?;
            b.op_with_type(OpKind::Matmul, &[y, vv], &[], Some(out_ty.clone()))
                .map_err(build_err)?
        }
    };
    let out = if constant.iter().any(|&v| v != 0) {
        let k = b
            .op(
                OpKind::Constant,
                &[],
                &[("value", Attribute::Dense(dense(constant, &[1, c])?))],
            )
            .map_err(build_err)?;
        b.op_with_type(OpKind::Add, &[out, k], &[], Some(out_ty))
            .map_err(build_err)?
    } else {
        out
    };
    let mut module = Module::new();
    module.functions.push(b.ret(&[out]));
    let report = BuildReport {
        input_bits: m,
        leaves: live.len(),
        lookups: p,
        lookup_bits: d_width,
        max_depth: depth,
        leaf_mode: mode,
    };
    Ok((module, report))
}
