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
    /// outputs (the builder's default then, unless the leaves are nearly pure), but the outputs sum
    /// the lookups' noise weighted by the squared leaf values.
    Indicator,
    /// The lookups of [`LeafMode::Fused`], each returning 1 instead of its leaf value, summed per
    /// (tree, output, leaf value): one leaf per tree is reached, so each sum is 0 or 1, and one 1-bit
    /// lookup per sum returns the value. The decrypted output then carries the noise of one bootstrap
    /// per distinct leaf value instead of one per leaf: a fully grown classification tree (pure
    /// leaves, one non-zero value) needs a bootstrap key of one level instead of three. Picked by
    /// `build_module` when the extra lookups are at most [`COLLECT_MAX_SHARE`] of the leaf lookups.
    Collect,
}

/// [`LeafMode::Collect`] is the default when its extra lookups (one per distinct non-zero value per
/// tree and output) are at most this share of the leaf lookups: they cost at most that much more
/// time, and cut the decrypted output's noise by at least the inverse factor.
pub const COLLECT_MAX_SHARE: f64 = 0.1;

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
    value: Vec<i64>,
}

fn leaves(q: &Quantized) -> Vec<Leaf> {
    let l = q.levels();
    let grid = 1u32 << q.inputs.n_bits;
    let mut out = Vec::new();
    for (ti, t) in q.trees.iter().enumerate() {
        // (node, path so far)
        let mut stack = vec![(0usize, Vec::new())];
        while let Some((i, path)) = stack.pop() {
            match &t.nodes[i] {
                QNode::Leaf { value } => out.push(Leaf {
                    tree: ti,
                    path,
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
                        stack.push((*right, path));
                    } else if *th >= grid {
                        stack.push((*left, path));
                    } else {
                        let bit = feature * l + *th as usize - 1;
                        let mut lp = path.clone();
                        lp.push((bit, true));
                        stack.push((*left, lp));
                        let mut rp = path;
                        rp.push((bit, false));
                        stack.push((*right, rp));
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

/// The distinct tables of `tables` (sorted) and, per table, its index among them: a `mapped_lut`'s
/// `tables` and `map`.
fn dedup_tables(tables: Vec<Vec<i64>>) -> (Vec<Vec<i64>>, Vec<i64>) {
    let mut distinct = tables.clone();
    distinct.sort_unstable();
    distinct.dedup();
    let map = tables
        .iter()
        .map(|t| distinct.binary_search(t).expect("present") as i64)
        .collect();
    (distinct, map)
}

/// `y` times the clear matrix `data` (`shape`), declared `ty` (a promise when narrower than the
/// product's worst case: one leaf per tree is reached).
fn times_matrix(
    b: &mut FunctionBuilder,
    y: fhec_ir::ValueId,
    data: Vec<i64>,
    shape: &[usize],
    ty: Type,
) -> Result<fhec_ir::ValueId, TreeError> {
    let v = b
        .op(
            OpKind::Constant,
            &[],
            &[("value", Attribute::Dense(dense(data, shape)?))],
        )
        .map_err(build_err)?;
    b.op_with_type(OpKind::Matmul, &[y, v], &[], Some(ty))
        .map_err(build_err)
}

/// One lookup: its input `Σ coef·bit + offset` (in `[0, domain_max]`), its table over that domain,
/// and the output it adds to (`None`: an indicator, combined with the leaf values afterwards).
struct Column {
    tree: usize,
    coeffs: Vec<(usize, i64)>,
    offset: i64,
    table: Vec<i64>,
    output: Option<usize>,
}

/// `scale · (Σ_path (b or 1 − b) + depth − len)`: equal to `scale · depth` exactly when every test on
/// the path holds, in `[0, scale · depth]`.
fn path_sum(path: &[(usize, bool)], depth: usize, scale: i64) -> (Vec<(usize, i64)>, i64) {
    let mut coeffs = Vec::with_capacity(path.len());
    let mut offset = (depth - path.len()) as i64 * scale;
    for &(bit, left) in path {
        if left {
            coeffs.push((bit, -scale));
            offset += scale;
        } else {
            coeffs.push((bit, scale));
        }
    }
    (coeffs, offset)
}

/// Fused columns: (single leaves on `[0, D]`, sibling pairs on `[0, 2D − 1]`), one per output with
/// a non-zero value. For two sibling leaves the lookup input is `u = 2·s + b`, `s` the parent path's
/// sum (normalised to `D − 1`) and `b` the last test's bit: `u = 2(D − 1)` reaches the left leaf,
/// `2(D − 1) + 1` the right one, anything else neither — half the lookups, at most one more bit.
fn fused_columns(live: &[&Leaf], c: usize, depth: usize) -> (Vec<Column>, Vec<Column>) {
    use std::collections::HashMap;
    // siblings: same tree, same path but the last turn
    // (tree, path to the parent, the parent's bit) → leaves
    type Parent<'a> = (usize, &'a [(usize, bool)], usize);
    let mut by_parent: HashMap<Parent<'_>, Vec<usize>> = HashMap::new();
    for (i, lf) in live.iter().enumerate() {
        let (last, prefix) = lf.path.split_last().expect("live leaves have a path");
        by_parent.entry((lf.tree, prefix, last.0)).or_default().push(i);
    }
    let mut paired = vec![false; live.len()];
    let mut pairs = Vec::new();
    let mut keys: Vec<_> = by_parent.iter().filter(|(_, v)| v.len() == 2).collect();
    keys.sort_by_key(|(_, v)| v[0]);
    for (&(_, prefix, bit), idx) in keys {
        let (l, r) = if live[idx[0]].path.last().expect("path").1 {
            (idx[0], idx[1])
        } else {
            (idx[1], idx[0])
        };
        paired[l] = true;
        paired[r] = true;
        // u = 2·(prefix sum + (D − len)) + b, with len = prefix.len() + 1
        let (mut coeffs, offset) = path_sum(prefix, depth - 1, 2);
        coeffs.push((bit, 1));
        let top = 2 * (depth - 1);
        for o in 0..c {
            let (vl, vr) = (live[l].value[o], live[r].value[o]);
            if vl == 0 && vr == 0 {
                continue;
            }
            let mut table = vec![0i64; 2 * depth];
            table[top] = vl;
            table[top + 1] = vr;
            pairs.push(Column {
                tree: live[l].tree,
                coeffs: coeffs.clone(),
                offset,
                table,
                output: Some(o),
            });
        }
    }
    let mut singles = Vec::new();
    for (i, lf) in live.iter().enumerate() {
        if paired[i] {
            continue;
        }
        let (coeffs, offset) = path_sum(&lf.path, depth, 1);
        for o in 0..c {
            if lf.value[o] != 0 {
                let mut table = vec![0i64; depth + 1];
                table[depth] = lf.value[o];
                singles.push(Column {
                    tree: lf.tree,
                    coeffs: coeffs.clone(),
                    offset,
                    table,
                    output: Some(o),
                });
            }
        }
    }
    (singles, pairs)
}

/// Encrypted 0/1 indicators added to lookup inputs: `(values, length, per column the index of the
/// indicator it adds, if any)`.
type Extra = (fhec_ir::ValueId, usize, Vec<Option<usize>>);

/// The lookups of `cols` (inputs in `[0, domain_max]`): one `mapped_lut` (one table per distinct
/// table) on the path sums; returns it and the lookup width. `extra` adds indicators of earlier
/// lookups (deep trees' checkpoints) to the sums.
fn emit_lookups(
    b: &mut FunctionBuilder,
    x: fhec_ir::ValueId,
    m: usize,
    cols: &[Column],
    domain_max: usize,
    result: Option<ElemType>,
    extra: &[Extra],
) -> Result<(fhec_ir::ValueId, u32), TreeError> {
    let p = cols.len();
    let mut a = vec![0i64; m * p];
    let mut offsets = vec![0i64; p];
    for (col, cl) in cols.iter().enumerate() {
        for &(bit, k) in &cl.coeffs {
            a[bit * p + col] += k;
        }
        offsets[col] = cl.offset;
    }
    // the product's range from the matrix itself (a bit tested twice on a path may cancel out)
    let (mut s_lo, mut s_hi) = (0i128, 0i128);
    for col in 0..p {
        let (neg, pos) =
            (0..m).map(|bit| a[bit * p + col] as i128).fold(
                (0, 0),
                |(n, q), v| {
                    if v < 0 {
                        (n + v, q)
                    } else {
                        (n, q + v)
                    }
                },
            );
        s_lo = s_lo.min(neg);
        s_hi = s_hi.max(pos);
    }
    let signed = s_lo < 0;
    let s_width = if signed {
        width_for(s_lo, s_hi.max(1), true)
    } else {
        width_for(0, s_hi.max(1), false)
    };
    let d_width = width_for(0, domain_max as i128, false);
    let av = b
        .op(
            OpKind::Constant,
            &[],
            &[("value", Attribute::Dense(dense(a, &[m, p])?))],
        )
        .map_err(build_err)?;
    let mut s = b
        .op_with_type(
            OpKind::Matmul,
            &[x, av],
            &[],
            Some(Type::new(ElemType::new(true, signed, s_width), vec![1, p])),
        )
        .map_err(build_err)?;
    for (ind, len, which) in extra {
        let mut sel = vec![0i64; len * p];
        for (col, w) in which.iter().enumerate() {
            if let Some(i) = w {
                sel[i * p + col] = 1;
            }
        }
        let sv = b
            .op(
                OpKind::Constant,
                &[],
                &[("value", Attribute::Dense(dense(sel, &[*len, p])?))],
            )
            .map_err(build_err)?;
        let e = b.op(OpKind::Matmul, &[*ind, sv], &[]).map_err(build_err)?;
        s = b.op(OpKind::Add, &[s, e], &[]).map_err(build_err)?;
    }
    let signed = signed || !extra.is_empty();
    let cv = b
        .op(
            OpKind::Constant,
            &[],
            &[("value", Attribute::Dense(dense(offsets, &[1, p])?))],
        )
        .map_err(build_err)?;
    let sd = if signed {
        let s2 = b
            .op_with_type(
                OpKind::Add,
                &[s, cv],
                &[],
                Some(Type::new(ElemType::ESInt(d_width + 1), vec![1, p])),
            )
            .map_err(build_err)?;
        // the sums are signed by type (the matrix has −1 entries) but lie in [0, domain_max]: a
        // narrower unsigned reinterpretation lets the lookups take ⌈log2(domain_max + 1)⌉ bits
        b.op_with_type(
            OpKind::ToUnsigned,
            &[s2],
            &[],
            Some(Type::new(ElemType::EInt(d_width), vec![1, p])),
        )
        .map_err(build_err)?
    } else {
        b.op_with_type(
            OpKind::Add,
            &[s, cv],
            &[],
            Some(Type::new(ElemType::EInt(d_width), vec![1, p])),
        )
        .map_err(build_err)?
    };
    let size = 1usize << d_width;
    let distinct: Vec<Vec<i64>> = cols
        .iter()
        .map(|cl| {
            let mut t = cl.table.clone();
            t.resize(size, 0);
            t
        })
        .collect();
    let (distinct, map) = dedup_tables(distinct);
    let v_lo = distinct.iter().flatten().copied().min().unwrap_or(0).min(0) as i128;
    let v_hi = distinct.iter().flatten().copied().max().unwrap_or(0).max(0) as i128;
    let elem = result.unwrap_or(ElemType::ESInt(width_for(v_lo.min(-1), v_hi.max(1), true)));
    let tables: Vec<i64> = distinct.iter().flatten().copied().collect();
    let y = b
        .op_with_type(
            OpKind::MappedLut,
            &[sd],
            &[
                ("map", Attribute::Dense(dense(map, &[1, p])?)),
                ("tables", Attribute::Dense(dense(tables, &[distinct.len(), size])?)),
            ],
            Some(Type::new(elem, vec![1, p])),
        )
        .map_err(build_err)?;
    Ok((y, d_width))
}

/// A group of fused columns: lookups, then a 0/1 matrix that adds each to its output.
#[allow(clippy::too_many_arguments)]
fn emit_group(
    b: &mut FunctionBuilder,
    x: fhec_ir::ValueId,
    m: usize,
    c: usize,
    cols: &[Column],
    domain_max: usize,
    out_ty: &Type,
    extra: &[Extra],
) -> Result<(fhec_ir::ValueId, u32), TreeError> {
    // the lookups' values have the output's signedness (a non-negative output is unsigned)
    let result = (!out_ty.elem.is_signed()).then(|| {
        let hi = cols
            .iter()
            .flat_map(|c| c.table.iter().copied())
            .max()
            .unwrap_or(0)
            .max(1);
        ElemType::EInt(width_for(0, hi as i128, false))
    });
    let (y, w) = emit_lookups(b, x, m, cols, domain_max, result, extra)?;
    let p = cols.len();
    let mut sel = vec![0i64; p * c];
    for (col, cl) in cols.iter().enumerate() {
        sel[col * c + cl.output.expect("fused columns have an output")] = 1;
    }
    let out = times_matrix(b, y, sel, &[p, c], out_ty.clone())?;
    Ok((out, w))
}

/// How [`LeafMode::Collect`] sums one (tree, output): by value (a 0/1 sum per distinct value, read by
/// a 1-bit lookup), or, when the values are positive and more numerous than their base-4 digits, by
/// digit (per digit `j`, `Σ digit_j(v)·[leaf reached]` in `[0, 3]`, read by a 2-bit lookup returning
/// `4^j` times it).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Scheme {
    ByValue,
    Digits(u32),
}

/// One sum of [`LeafMode::Collect`]: 0 or (by value) 1, at most 3 (a digit) — one leaf per tree is
/// reached — read by one lookup returning `λ` times it.
struct Group {
    output: usize,
    lambda: i64,
    /// 1 (by value) or 2 (a digit) bits.
    width: u32,
    /// The largest sum (the largest digit, for a digit group).
    max: i64,
}

/// [`LeafMode::Collect`]: the scheme of each (tree, output), the groups, and the sums emitted so far
/// (`tensor<1xG_wx!fhe.eint<w>>` per width `w`).
#[derive(Default)]
struct Collector {
    scheme: std::collections::HashMap<(usize, usize), Scheme>,
    groups: Vec<Group>,
    /// (tree, output, value) → by-value group; (tree, output, −1 − j) → digit group j.
    index: std::collections::HashMap<(usize, usize, i64), usize>,
    parts: Vec<(u32, fhec_ir::ValueId)>,
}

/// Base-4 digits needed for `v ≥ 0`.
fn digits_of(v: i64) -> u32 {
    (width_for(0, v.max(1) as i128, false)).div_ceil(2)
}

impl Collector {
    /// Picks each (tree, output)'s scheme from all its fused columns and creates the groups.
    fn plan<'a>(&mut self, cols: impl Iterator<Item = &'a Column>) {
        use std::collections::{BTreeMap, BTreeSet};
        let mut values: BTreeMap<(usize, usize), BTreeSet<i64>> = BTreeMap::new();
        for cl in cols {
            let o = cl.output.expect("fused columns have an output");
            values
                .entry((cl.tree, o))
                .or_default()
                .extend(cl.table.iter().copied().filter(|&v| v != 0));
        }
        for ((tree, o), vs) in values {
            let (lo, hi) = (*vs.first().unwrap_or(&0), *vs.last().unwrap_or(&0));
            let n = digits_of(hi);
            let scheme = if lo > 0 && (n as usize) < vs.len() {
                Scheme::Digits(n)
            } else {
                Scheme::ByValue
            };
            self.scheme.insert((tree, o), scheme);
            match scheme {
                Scheme::ByValue => {
                    for v in vs {
                        self.index.insert((tree, o, v), self.groups.len());
                        self.groups.push(Group {
                            output: o,
                            lambda: v,
                            width: 1,
                            max: 1,
                        });
                    }
                }
                Scheme::Digits(n) => {
                    for j in 0..n {
                        let max = vs.iter().map(|&v| (v >> (2 * j)) & 3).max().unwrap_or(0);
                        if max == 0 {
                            continue;
                        }
                        self.index.insert((tree, o, -1 - j as i64), self.groups.len());
                        self.groups.push(Group {
                            output: o,
                            lambda: 1 << (2 * j),
                            width: 2,
                            max,
                        });
                    }
                }
            }
        }
    }

    /// The groups of width `w`: their indices in `groups`, in order.
    fn of_width(&self, w: u32) -> Vec<usize> {
        (0..self.groups.len()).filter(|&g| self.groups[g].width == w).collect()
    }

    /// Fused columns (after [`Collector::plan`]) turned into 0/1 lookups, with per lookup the groups
    /// it adds to and its coefficient there. By value, a lookup returns 1 where it returned the
    /// group's value (a sibling pair with two different values becomes two lookups on the same
    /// input); by digit, each leaf gets its own 0/1 lookup, added to digit group `j` with
    /// coefficient `digit_j(v)`. `rows` (one per column, carried along) are the leaves whose
    /// checkpoints the columns read.
    #[allow(clippy::type_complexity)]
    fn columns(&self, cols: Vec<Column>, rows: &[usize]) -> (Vec<Column>, Vec<Vec<(usize, i64)>>, Vec<usize>) {
        let mut out = Vec::with_capacity(cols.len());
        let mut sel = Vec::with_capacity(cols.len());
        let mut out_rows = Vec::with_capacity(cols.len());
        for (i, cl) in cols.into_iter().enumerate() {
            let o = cl.output.expect("fused columns have an output");
            let mut push = |table: Vec<i64>, to: Vec<(usize, i64)>| {
                out.push(Column {
                    tree: cl.tree,
                    coeffs: cl.coeffs.clone(),
                    offset: cl.offset,
                    table,
                    output: None,
                });
                sel.push(to);
                out_rows.extend(rows.get(i).copied());
            };
            match self.scheme[&(cl.tree, o)] {
                Scheme::ByValue => {
                    let mut values: Vec<i64> = cl.table.iter().copied().filter(|&v| v != 0).collect();
                    values.sort_unstable();
                    values.dedup();
                    for v in values {
                        let g = self.index[&(cl.tree, o, v)];
                        push(cl.table.iter().map(|&t| (t == v) as i64).collect(), vec![(g, 1)]);
                    }
                }
                Scheme::Digits(n) => {
                    for (e, &v) in cl.table.iter().enumerate().filter(|(_, &v)| v != 0) {
                        let mut table = vec![0i64; cl.table.len()];
                        table[e] = 1;
                        let to = (0..n)
                            .filter_map(|j| {
                                let d = (v >> (2 * j)) & 3;
                                (d != 0).then(|| (self.index[&(cl.tree, o, -1 - j as i64)], d))
                            })
                            .collect();
                        push(table, to);
                    }
                }
            }
        }
        (out, sel, out_rows)
    }

    /// Emits `cols` (from [`Collector::columns`]) as 0/1 lookups and their sums per group width.
    #[allow(clippy::too_many_arguments)]
    fn emit(
        &mut self,
        b: &mut FunctionBuilder,
        x: fhec_ir::ValueId,
        m: usize,
        cols: &[Column],
        sel: &[Vec<(usize, i64)>],
        domain_max: usize,
        extra: &[Extra],
    ) -> Result<u32, TreeError> {
        if cols.is_empty() {
            return Ok(0);
        }
        let (y, w) = emit_lookups(b, x, m, cols, domain_max, Some(ElemType::EInt(1)), extra)?;
        let p = cols.len();
        for width in [1, 2] {
            let gs = self.of_width(width);
            if gs.is_empty() {
                continue;
            }
            let mut mat = vec![0i64; p * gs.len()];
            for (col, to) in sel.iter().enumerate() {
                for &(g, k) in to {
                    if let Ok(at) = gs.binary_search(&g) {
                        mat[col * gs.len() + at] = k;
                    }
                }
            }
            // one leaf per tree is reached: each group's sum is at most its largest coefficient (a
            // promise the declared width states and the interpreter checks)
            let ty = Type::new(ElemType::EInt(width), vec![1, gs.len()]);
            let s = times_matrix(b, y, mat, &[p, gs.len()], ty)?;
            self.parts.push((width, s));
        }
        Ok(w)
    }

    /// The output: per width, the sums added, one lookup per group returning `λ` times its sum
    /// (entries past the group's largest sum, unreachable, are 0), and a 0/1 matrix adding each to
    /// its output.
    fn finish(self, b: &mut FunctionBuilder, c: usize, out_ty: &Type) -> Result<Vec<fhec_ir::ValueId>, TreeError> {
        let mut outs = Vec::new();
        for width in [1u32, 2] {
            let mine: Vec<fhec_ir::ValueId> = self.parts.iter().filter(|p| p.0 == width).map(|p| p.1).collect();
            let Some((&first, rest)) = mine.split_first() else {
                continue;
            };
            let gs = self.of_width(width);
            let g = gs.len();
            let gty = Type::new(ElemType::EInt(width), vec![1, g]);
            let mut sum = first;
            for &p in rest {
                sum = b
                    .op_with_type(OpKind::Add, &[sum, p], &[], Some(gty.clone()))
                    .map_err(build_err)?;
            }
            let size = 1i64 << width;
            let table_of =
                |gr: &Group| -> Vec<i64> { (0..size).map(|s| if s <= gr.max { s * gr.lambda } else { 0 }).collect() };
            let (distinct, map) = dedup_tables(gs.iter().map(|&i| table_of(&self.groups[i])).collect());
            let tables: Vec<i64> = distinct.iter().flatten().copied().collect();
            let y = b
                .op_with_type(
                    OpKind::MappedLut,
                    &[sum],
                    &[
                        ("map", Attribute::Dense(dense(map, &[1, g])?)),
                        (
                            "tables",
                            Attribute::Dense(dense(tables, &[distinct.len(), size as usize])?),
                        ),
                    ],
                    Some(Type::new(out_ty.elem, vec![1, g])),
                )
                .map_err(build_err)?;
            let mut sel = vec![0i64; g * c];
            for (i, &gi) in gs.iter().enumerate() {
                sel[i * c + self.groups[gi].output] = 1;
            }
            outs.push(times_matrix(b, y, sel, &[g, c], out_ty.clone())?);
        }
        Ok(outs)
    }
}

/// Deepest tree whose leaves read their whole path sum in one lookup (⌈log2(D + 1)⌉ ≤ 3 bits for
/// single leaves, 4 for sibling pairs); deeper trees are cut into segments ([`chunked`]).
pub const MAX_DIRECT_DEPTH: usize = 7;

/// Tests per segment of a deep tree's paths: every lookup of a deep tree reads `[0, SEGMENT + 1]`,
/// 3 bits, whatever the depth.
pub const SEGMENT: usize = 6;

/// A deep tree's lookups (docs/trees.md, "Deep trees"). Each path is cut every [`SEGMENT`] tests;
/// a *checkpoint* (a path prefix of `k·SEGMENT` tests, shared by every leaf below it) gets a 0/1
/// lookup on `I_prev + Σ its segment's tests + padding`, `I_prev` the checkpoint above (1 for the
/// first), equal to `SEGMENT + 1` exactly when the whole prefix holds; a leaf's lookup reads its
/// last checkpoint's indicator plus its last segment the same way. Every lookup is on
/// `[0, SEGMENT + 1]`; checkpoints of one depth are one `mapped_lut`, leaves one more (or, with
/// [`LeafMode::Indicator`], a 0/1 lookup and a clear product). Returns (lookups, bits).
#[allow(clippy::too_many_arguments)]
fn chunked(
    b: &mut FunctionBuilder,
    x: fhec_ir::ValueId,
    m: usize,
    c: usize,
    live: &[&Leaf],
    mode: LeafMode,
    out_ty: &Type,
    parts: &mut Vec<fhec_ir::ValueId>,
    collect: &mut Collector,
) -> Result<(usize, u32), TreeError> {
    use std::collections::HashMap;
    let top = SEGMENT + 1;
    // checkpoints per level (level k: prefixes of k·SEGMENT tests), in order of first use
    // a checkpoint: (tree, path prefix)
    type Checkpoint<'a> = (usize, &'a [(usize, bool)]);
    let mut levels: Vec<Vec<Checkpoint<'_>>> = Vec::new();
    let mut index: HashMap<Checkpoint<'_>, usize> = HashMap::new();
    // per leaf: (level, index) of its last checkpoint
    let mut last: Vec<Option<(usize, usize)>> = Vec::with_capacity(live.len());
    for lf in live {
        let k_max = (lf.path.len() - 1) / SEGMENT;
        let mut at = None;
        for k in 1..=k_max {
            let prefix = &lf.path[..k * SEGMENT];
            if levels.len() < k {
                levels.push(Vec::new());
            }
            let i = *index.entry((lf.tree, prefix)).or_insert_with(|| {
                levels[k - 1].push((lf.tree, prefix));
                levels[k - 1].len() - 1
            });
            at = Some((k - 1, i));
        }
        last.push(at);
    }
    // `1 + Σ segment + padding` for the first level, `I_prev + …` after
    let segment_sum = |seg: &[(usize, bool)], prev: bool| {
        let (coeffs, offset) = path_sum(seg, SEGMENT, 1);
        (coeffs, offset + if prev { 0 } else { 1 })
    };
    let indicator: Vec<i64> = (0..=top).map(|k| (k == top) as i64).collect();
    let mut lookups = 0;
    let mut inds: Vec<(fhec_ir::ValueId, usize)> = Vec::new();
    for (k, cps) in levels.iter().enumerate() {
        let mut which = Vec::with_capacity(cps.len());
        let cols: Vec<Column> = cps
            .iter()
            .map(|&(tree, prefix)| {
                let seg = &prefix[k * SEGMENT..];
                let parent = (k > 0).then(|| index[&(tree, &prefix[..k * SEGMENT])]);
                which.push(parent);
                let (coeffs, offset) = segment_sum(seg, parent.is_some());
                Column {
                    tree,
                    coeffs,
                    offset,
                    table: indicator.clone(),
                    output: None,
                }
            })
            .collect();
        let extra: Vec<Extra> = match inds.last() {
            Some(&(v, len)) => vec![(v, len, which)],
            None => Vec::new(),
        };
        let (ind, _) = emit_lookups(b, x, m, &cols, top, Some(ElemType::ESInt(2)), &extra)?;
        lookups += cols.len();
        inds.push((ind, cps.len()));
    }
    // leaves: their last segment and last checkpoint, indicators per level
    let leaf_input = |i: usize| {
        let lf = live[i];
        let from = last[i].map_or(0, |(k, _)| (k + 1) * SEGMENT);
        segment_sum(&lf.path[from..], last[i].is_some())
    };
    let extra_of = |rows: &[usize]| -> Vec<Extra> {
        inds.iter()
            .enumerate()
            .map(|(k, &(v, len))| {
                let which = rows
                    .iter()
                    .map(|&i| last[i].and_then(|(lk, idx)| (lk == k).then_some(idx)))
                    .collect();
                (v, len, which)
            })
            .collect()
    };
    let bits = width_for(0, top as i128, false);
    match mode {
        LeafMode::Fused | LeafMode::Collect => {
            let mut rows = Vec::new();
            let mut cols = Vec::new();
            for (i, lf) in live.iter().enumerate() {
                for o in 0..c {
                    if lf.value[o] != 0 {
                        let (coeffs, offset) = leaf_input(i);
                        let mut table = vec![0i64; top + 1];
                        table[top] = lf.value[o];
                        rows.push(i);
                        cols.push(Column {
                            tree: lf.tree,
                            coeffs,
                            offset,
                            table,
                            output: Some(o),
                        });
                    }
                }
            }
            if mode == LeafMode::Collect {
                collect.plan(cols.iter());
                let (cols, sel, rows) = collect.columns(cols, &rows);
                collect.emit(b, x, m, &cols, &sel, top, &extra_of(&rows))?;
                lookups += cols.len();
            } else {
                if !cols.is_empty() {
                    let (part, _) = emit_group(b, x, m, c, &cols, top, out_ty, &extra_of(&rows))?;
                    parts.push(part);
                }
                lookups += cols.len();
            }
        }
        LeafMode::Indicator => {
            let rows: Vec<usize> = (0..live.len()).collect();
            let cols: Vec<Column> = rows
                .iter()
                .map(|&i| {
                    let (coeffs, offset) = leaf_input(i);
                    Column {
                        tree: live[i].tree,
                        coeffs,
                        offset,
                        table: indicator.clone(),
                        output: None,
                    }
                })
                .collect();
            let (ind, _) = emit_lookups(b, x, m, &cols, top, Some(ElemType::ESInt(2)), &extra_of(&rows))?;
            let p = cols.len();
            let mut vals = vec![0i64; p * c];
            for (col, lf) in live.iter().enumerate() {
                vals[col * c..(col + 1) * c].copy_from_slice(&lf.value);
            }
            parts.push(times_matrix(b, ind, vals, &[p, c], out_ty.clone())?);
            lookups += p;
        }
    }
    Ok((lookups, bits))
}

/// Builds the module; `mode` `None` picks, for one output, [`LeafMode::Collect`] when its extra
/// lookups are at most [`COLLECT_MAX_SHARE`] of the leaf lookups, else [`LeafMode::Fused`]; for
/// several outputs [`LeafMode::Fused`] when it takes at most 10 % more lookups than one per leaf (pure
/// classification trees), else [`LeafMode::Indicator`]. (`fhec::compile_trees` compiles the candidates
/// and asks the cost model instead.)
pub fn build_module(q: &Quantized, mode: Option<LeafMode>) -> Result<(Module, BuildReport), TreeError> {
    let c = q.n_outputs;
    let m = q.n_features * q.levels();
    let leaves = leaves(q);
    let mode = mode.unwrap_or_else(|| {
        if c > 1 {
            // fused takes one lookup per non-zero (leaf, output), indicator one per leaf; with
            // (nearly) one non-zero output per leaf (pure classification trees) they take as many,
            // and fused sums far less noise into the outputs (indicator's sums weigh it by v²)
            let live = leaves.iter().filter(|l| !l.path.is_empty());
            let (per_leaf, fused): (usize, usize) = live.fold((0, 0), |(i, f), l| {
                (i + 1, f + l.value.iter().filter(|&&v| v != 0).count())
            });
            return if (fused as f64) <= 1.1 * per_leaf as f64 {
                LeafMode::Fused
            } else {
                LeafMode::Indicator
            };
        }
        // one lookup per (live leaf, non-zero value) at most (sibling pairs share one); one extra
        // per distinct value of a tree, or per base-4 digit when fewer
        let mut values: std::collections::BTreeMap<usize, Vec<i64>> = std::collections::BTreeMap::new();
        let mut lookups = 0usize;
        for lf in leaves.iter().filter(|l| !l.path.is_empty() && l.value[0] != 0) {
            lookups += 1;
            values.entry(lf.tree).or_default().push(lf.value[0]);
        }
        let extra: usize = values
            .into_values()
            .map(|mut vs| {
                vs.sort_unstable();
                vs.dedup();
                let n = digits_of(*vs.last().unwrap_or(&0)) as usize;
                if vs[0] > 0 && n < vs.len() {
                    n
                } else {
                    vs.len()
                }
            })
            .sum();
        let depth = leaves.iter().map(|l| l.path.len()).max().unwrap_or(0);
        // sibling pairs halve the fused lookups of shallow trees at most
        let fused = if depth > MAX_DIRECT_DEPTH {
            lookups
        } else {
            lookups.div_ceil(2)
        };
        if (extra as f64) <= COLLECT_MAX_SHARE * fused as f64 {
            LeafMode::Collect
        } else {
            LeafMode::Fused
        }
    });
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
    // per output, the tight range of the sum: one leaf per tree is reached
    let mut per_tree: Vec<Vec<(i64, i64)>> = vec![vec![(0, 0); c]; q.trees.len()];
    for lf in &live {
        for (r, &v) in per_tree[lf.tree].iter_mut().zip(&lf.value) {
            r.0 = r.0.min(v);
            r.1 = r.1.max(v);
        }
    }
    // the partial sums (before the constant leaves are added) share the output's type: the range
    // covers both (found by the random-ensemble property test: a constant −127 after live leaves
    // summing to 158)
    let (mut o_lo, mut o_hi) = (i128::MAX, i128::MIN);
    for o in 0..c {
        let lo: i128 = per_tree.iter().map(|t| t[o].0 as i128).sum::<i128>();
        let hi: i128 = per_tree.iter().map(|t| t[o].1 as i128).sum::<i128>();
        let k = constant[o] as i128;
        o_lo = o_lo.min(lo).min(lo + k);
        o_hi = o_hi.max(hi).max(hi + k);
    }
    // a non-negative output (classifiers' leaves) is unsigned: one bit less to decrypt, a 4× looser
    // noise bound on it (indicator mode keeps signed sums: its 0/1 indicators are signed)
    let unsigned = o_lo >= 0 && mode != LeafMode::Indicator;
    let out_width = if unsigned {
        width_for(0, o_hi.max(1), false)
    } else {
        width_for(o_lo.min(-1), o_hi.max(1), true)
    };
    if out_width > fhec_ir::types::MAX_ENCRYPTED_WIDTH {
        return Err(TreeError::Build(format!(
            "the scores need {out_width} bits; lower the leaf bits"
        )));
    }
    let out_ty = Type::new(ElemType::new(true, !unsigned, out_width), vec![1, c]);

    let mut b = FunctionBuilder::new("main");
    let x = b.arg_with_range("x", Type::new(ElemType::EInt(1), vec![1, m]), 0, 1);
    let mut parts = Vec::new();
    let mut collect = Collector::default();
    let (lookups, lookup_bits) = if depth > MAX_DIRECT_DEPTH {
        chunked(&mut b, x, m, c, &live, mode, &out_ty, &mut parts, &mut collect)?
    } else {
        match mode {
            LeafMode::Collect => {
                let (singles, pairs) = fused_columns(&live, c, depth);
                collect.plan(singles.iter().chain(&pairs));
                let mut n = 0;
                let mut bits = 0;
                for (cols, domain_max) in [(singles, depth), (pairs, 2 * depth - 1)] {
                    let (cols, sel, _) = collect.columns(cols, &[]);
                    n += cols.len();
                    bits = bits.max(collect.emit(&mut b, x, m, &cols, &sel, domain_max, &[])?);
                }
                (n, bits)
            }
            LeafMode::Fused => {
                // siblings that are both leaves share one lookup on u = 2·(parent path sum) + last bit
                let (singles, pairs) = fused_columns(&live, c, depth);
                let mut n = 0;
                let mut bits = 0;
                for (cols, domain_max) in [(singles, depth), (pairs, 2 * depth - 1)] {
                    if cols.is_empty() {
                        continue;
                    }
                    n += cols.len();
                    let (part, w) = emit_group(&mut b, x, m, c, &cols, domain_max, &out_ty, &[])?;
                    bits = bits.max(w);
                    parts.push(part);
                }
                (n, bits)
            }
            LeafMode::Indicator => {
                let cols: Vec<Column> = live
                    .iter()
                    .map(|lf| {
                        let (coeffs, offset) = path_sum(&lf.path, depth, 1);
                        Column {
                            tree: lf.tree,
                            coeffs,
                            offset,
                            table: (0..=depth).map(|k| (k == depth) as i64).collect(),
                            output: None,
                        }
                    })
                    .collect();
                let (ind, w) = emit_lookups(&mut b, x, m, &cols, depth, Some(ElemType::ESInt(2)), &[])?;
                let p = cols.len();
                let mut vals = vec![0i64; p * c];
                for (col, lf) in live.iter().enumerate() {
                    vals[col * c..(col + 1) * c].copy_from_slice(&lf.value);
                }
                parts.push(times_matrix(&mut b, ind, vals, &[p, c], out_ty.clone())?);
                (p, w)
            }
        }
    };
    let groups = collect.groups.len();
    parts.extend(collect.finish(&mut b, c, &out_ty)?);
    let lookups = lookups + groups;
    let Some(&first) = parts.first() else {
        return Err(TreeError::Build(
            "the quantised model is constant (every reachable leaf quantises to 0): nothing to compute on encrypted data".into(),
        ));
    };
    let mut out = first;
    for &p2 in &parts[1..] {
        out = b
            .op_with_type(OpKind::Add, &[out, p2], &[], Some(out_ty.clone()))
            .map_err(build_err)?;
    }
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
        lookups,
        lookup_bits,
        max_depth: depth,
        leaf_mode: mode,
    };
    Ok((module, report))
}
