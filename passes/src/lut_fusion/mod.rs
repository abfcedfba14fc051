//! `lut-fusion`: fuses chains of table lookups and clear arithmetic into fewer lookups, with egg.
//!
//! The fusion-relevant ops of a function — `fhe.lut`, `add`/`sub`/`mul` with a uniform clear
//! constant, `neg`, `round` — become e-nodes of the [`Fuse`] language; every other value is an opaque
//! leaf (`v12`), tables are interned leaves (`t3`), constants are numbers. Named one-way rules add
//! cheaper equivalent forms (see [`rules`]); the extraction picks, for every value the rest of the
//! function uses, the form with the least bootstrap cost (Σ lookup cost by input precision, from the
//! pass context's cost model). The result is written back as `fhe` ops. Finally,
//! lookups with different tables on the same input are grouped into one `fhe.multi_lut` (sliced
//! back into the original results), which lets the backend share their keyswitch.
//!
//! Every rule is exact: a new table is computed from the old ones over every value the lookup's
//! input can take (its type's range), with the IR's indexing rule (`v mod 2^w`). Entries for values
//! the input cannot take are clamped into the result type.

use std::collections::HashMap;
use std::time::Duration;

use egg::{Id, Language, Runner};
use fhec_ir::attr::{Attribute, Dense};
use fhec_ir::module::{Function, OpData};
use fhec_ir::types::{width_for, MAX_LUT_WIDTH};
use fhec_ir::{Diagnostic, ElemType, Module, OpKind, Tensor, Type, ValueId};
use ndarray::{ArrayD, IxDyn};

use crate::manager::{OptionSpec, Pass, PassContext, PassInfo, PassOptions};

mod egraph;
mod elementwise;

use crate::rewrite::{clear_type_for, Rebuild};
pub use egraph::*;
use elementwise::{fuse_per_element, group_multi_lut};

pub static INFO: PassInfo = PassInfo {
    name: "lut-fusion",
    keeps_meaning: true,
    summary: "fuses lookups with lookups and clear arithmetic (egg), groups lookups on one input into multi_lut",
    options: &[
        OptionSpec {
            name: "node-limit",
            help: "e-graph node limit",
            default: "10000",
        },
        OptionSpec {
            name: "iter-limit",
            help: "rewrite iterations",
            default: "30",
        },
        OptionSpec {
            name: "time-limit-ms",
            help: "time limit of the rewriting",
            default: "2000",
        },
        OptionSpec {
            name: "multi-lut",
            help: "group lookups on one input (0 or 1)",
            default: "1",
        },
    ],
    create: |o: &PassOptions| {
        Ok(Box::new(LutFusion {
            node_limit: o.int("node-limit", 10_000)? as usize,
            iter_limit: o.int("iter-limit", 30)? as usize,
            time_limit: Duration::from_millis(o.int("time-limit-ms", 2000)? as u64),
            multi_lut: o.int("multi-lut", 1)? != 0,
            only: None,
        }))
    },
};

pub struct LutFusion {
    pub node_limit: usize,
    pub iter_limit: usize,
    pub time_limit: Duration,
    pub multi_lut: bool,
    /// Run only these rules (tests of single rules).
    pub only: Option<Vec<String>>,
}

impl Default for LutFusion {
    fn default() -> LutFusion {
        LutFusion {
            node_limit: 10_000,
            iter_limit: 30,
            time_limit: Duration::from_secs(2),
            multi_lut: true,
            only: None,
        }
    }
}

/// Whether `op` is part of the fusion language, and its constant for `add`/`sub`/`mul`.
fn fusible(f: &Function, op: &OpData, consts: &HashMap<u32, Tensor>) -> Option<(Fuse, Vec<ValueId>, i64)> {
    let rty = f.ty(op.result);
    if !rty.is_encrypted() {
        return None;
    }
    let uniform = |v: ValueId| -> Option<i64> {
        let t = consts.get(&v.0)?;
        let first = *t.iter().next()?;
        t.iter().all(|&x| x == first).then_some(first)
    };
    let dummy = Id::from(0usize);
    match op.kind {
        OpKind::Lut => Some((Fuse::Lut([dummy, dummy]), vec![op.operands[0]], 0)),
        OpKind::Neg => Some((Fuse::Neg(dummy), vec![op.operands[0]], 0)),
        OpKind::Round => match op.attrs.get("lsbs") {
            Some(Attribute::Int(k)) if *k > 0 => Some((Fuse::Round([dummy, dummy]), vec![op.operands[0]], *k)),
            _ => None,
        },
        OpKind::Add | OpKind::Sub | OpKind::Mul => {
            let [a, b] = op.operands[..] else { return None };
            let (x, c, x_first) = if f.ty(a).is_encrypted() && !f.ty(b).is_encrypted() {
                (a, uniform(b)?, true)
            } else if f.ty(b).is_encrypted() && !f.ty(a).is_encrypted() && op.kind != OpKind::Sub {
                (b, uniform(a)?, false)
            } else {
                return None;
            };
            let _ = x_first;
            // elementwise on x only (a constant that broadcasts x to a larger shape is not)
            if f.ty(x).shape != rty.shape {
                return None;
            }
            match op.kind {
                OpKind::Add => Some((Fuse::Add([dummy, dummy]), vec![x], c)),
                OpKind::Sub => Some((Fuse::Add([dummy, dummy]), vec![x], c.checked_neg()?)),
                _ => Some((Fuse::Mul([dummy, dummy]), vec![x], c)),
            }
        }
        _ => None,
    }
}

impl Pass for LutFusion {
    fn run(&self, m: &mut Module, ctx: &mut PassContext) -> Result<(), Diagnostic> {
        for f in &mut m.functions {
            let mut nf = self.fuse(f, ctx)?;
            if self.only.is_none() {
                nf = fuse_per_element(&nf, ctx)?;
            }
            if self.multi_lut {
                nf = group_multi_lut(&nf, ctx)?;
            }
            *f = nf;
        }
        Ok(())
    }
}

fn count_luts(f: &Function) -> u64 {
    f.body
        .iter()
        .filter(|&&o| matches!(f.op(o).kind, OpKind::Lut | OpKind::MappedLut))
        .count() as u64
}

impl LutFusion {
    fn fuse(&self, f: &Function, ctx: &mut PassContext) -> Result<Function, Diagnostic> {
        // constants (for uniform operands)
        let mut consts: HashMap<u32, Tensor> = HashMap::new();
        for &o in &f.body {
            let op = f.op(o);
            if let (OpKind::Constant, Some(Attribute::Dense(d))) = (op.kind, op.attrs.get("value")) {
                consts.insert(op.result.0, d.data.clone());
            }
        }
        let mut g = FGraph::new(FuseAnalysis::default());
        let mut class: HashMap<u32, Id> = HashMap::new();
        let mut node_op: HashMap<u32, bool> = HashMap::new();
        let leaf = |g: &mut FGraph, class: &HashMap<u32, Id>, v: ValueId| -> Id {
            if let Some(&id) = class.get(&v.0) {
                return id;
            }
            if let Some(e) = Some(f.ty(v).elem).filter(|e| e.is_encrypted()) {
                g.analysis.value_types.insert(v.0, e);
            }
            g.add(Fuse::Value(ValueRef(v.0)))
        };
        for &o in &f.body {
            let op = f.op(o);
            let Some((shape, ins, c)) = fusible(f, op, &consts) else {
                continue;
            };
            let x = leaf(&mut g, &class, ins[0]);
            let node = match shape {
                Fuse::Lut(_) => {
                    let Some(Attribute::Dense(d)) = op.attrs.get("table") else {
                        continue;
                    };
                    let r = g.analysis.intern(d.data.iter().copied().collect());
                    let t = g.add(Fuse::Table(r));
                    Fuse::Lut([t, x])
                }
                Fuse::Neg(_) => Fuse::Neg(x),
                Fuse::Add(_) => Fuse::Add([x, g.add(Fuse::Num(c))]),
                Fuse::Mul(_) => Fuse::Mul([x, g.add(Fuse::Num(c))]),
                Fuse::Round(_) => Fuse::Round([x, g.add(Fuse::Num(c))]),
                _ => continue,
            };
            let id = g.add(node);
            g[id].data = ClassType {
                elem: Some(f.ty(op.result).elem),
                from_ir: true,
            };
            class.insert(op.result.0, id);
            node_op.insert(op.result.0, true);
        }
        if class.is_empty() {
            return Ok(f.clone());
        }
        // roots: fused values the rest of the function (or the return) uses
        let mut root = vec![false; f.num_values()];
        for &o in &f.body {
            let op = f.op(o);
            let inside = class.contains_key(&op.result.0) && fusible(f, op, &consts).is_some();
            for &x in &op.operands {
                if class.contains_key(&x.0) && !inside {
                    root[x.index()] = true;
                }
            }
        }
        for &v in &f.returns {
            root[v.index()] = true;
        }
        let all = rules();
        let selected: Vec<_> = match &self.only {
            Some(names) => all
                .into_iter()
                .filter(|r| names.iter().any(|n| n == r.name.as_str()))
                .collect(),
            None => all,
        };
        let lut_before = count_luts(f);
        let runner = Runner::default()
            .with_egraph(g)
            .with_node_limit(self.node_limit)
            .with_iter_limit(self.iter_limit)
            .with_time_limit(self.time_limit)
            .run(&selected);
        let stop = runner
            .stop_reason
            .as_ref()
            .map(|s| format!("{s:?}"))
            .unwrap_or_default();
        ctx.count(&format!("stop reason: {stop}"), 1);
        for it in &runner.iterations {
            for (name, n) in &it.applied {
                ctx.count(&format!("rule {name}"), *n as u64);
            }
        }
        let g = runner.egraph;
        let model = ctx.cost("lut-fusion")?.clone();
        let extractor = egg::Extractor::new(&g, PbsCost { g: &g, model: &model });
        // rebuild: fused values are emitted at their root's position, from the best expression
        let mut r = Rebuild::new(f);
        let mut emitted: HashMap<Id, ValueId> = HashMap::new();
        for &o in &f.body {
            let op = f.op(o);
            let Some(&id) = class.get(&op.result.0) else {
                r.copy(op)?;
                continue;
            };
            if !root[op.result.index()] {
                continue;
            }
            let (_, expr) = extractor.find_best(id);
            match emit(&mut r, &g, &expr, op, &mut emitted, f.ty(op.result)) {
                Ok(v) => r.replace(op, v),
                Err(_) => {
                    // the extracted form does not type (declared types the e-graph cannot see):
                    // keep the original ops for this value (dead leftovers go with canonicalize)
                    ctx.count("values kept unfused", 1);
                    copy_original(&mut r, f, op.result)?;
                }
            }
        }
        let nf = r.finish();
        let lut_after = count_luts(&nf);
        ctx.count("lookups before", lut_before);
        ctx.count("lookups after", lut_after);
        Ok(nf)
    }
}

/// Copies the original ops computing `v` (fused values that were skipped are copied first).
fn copy_original(r: &mut Rebuild<'_>, f: &Function, v: ValueId) -> Result<ValueId, Diagnostic> {
    if let Some(n) = r.try_get(v) {
        return Ok(n);
    }
    let fhec_ir::module::ValueDef::Op(o) = f.value(v).def else {
        return Err(Diagnostic::new("lut-fusion: an argument is not mapped"));
    };
    let op = f.op(o);
    for &x in &op.operands {
        copy_original(r, f, x)?;
    }
    r.copy(op)
}

/// Writes the extracted expression `expr` as `fhe` ops; the top node gets `root_ty`.
fn emit(
    r: &mut Rebuild<'_>,
    g: &FGraph,
    expr: &egg::RecExpr<Fuse>,
    op: &OpData,
    emitted: &mut HashMap<Id, ValueId>,
    root_ty: &Type,
) -> Result<ValueId, Diagnostic> {
    let nodes = expr.as_ref();
    let mut vals: Vec<Option<ValueId>> = vec![None; nodes.len()];
    let top = nodes.len() - 1;
    for (i, node) in nodes.iter().enumerate() {
        let child = |c: &Id| vals[usize::from(*c)];
        let class_of = |i: usize| g.lookup_expr(&build_sub(expr, i));
        let cid = class_of(i);
        if let Some(c) = cid {
            if let Some(&v) = emitted.get(&c) {
                if i != top {
                    vals[i] = Some(v);
                    continue;
                }
            }
        }
        let shape = |v: ValueId, r: &Rebuild<'_>| r.ty(v).shape.clone();
        let elem_of = |c: Option<Id>| c.and_then(|c| g[c].data.elem);
        let v = match node {
            Fuse::Value(v) => Some(r.get(ValueId(v.0))),
            Fuse::Table(_) | Fuse::Num(_) => None,
            Fuse::Lut([t, x]) => {
                let xv = child(x).expect("input emitted");
                let xty = r.ty(xv).clone();
                let table = match &nodes[usize::from(*t)] {
                    Fuse::Table(tr) => g.analysis.tables[tr.0 as usize].clone(),
                    _ => return Err(Diagnostic::at("lut-fusion: a lookup without a table", op.span)),
                };
                // re-encode for the emitted input's width, in the IR's `v mod 2^w` order
                let w = xty.width();
                let n = 1usize << w;
                let mut data: Vec<i64> = (0..n)
                    .map(|k| {
                        let v = if xty.is_signed() && k >= n / 2 {
                            k as i128 - n as i128
                        } else {
                            k as i128
                        };
                        index(&table, v)
                    })
                    .collect();
                let out_elem = if i == top {
                    root_ty.elem
                } else {
                    elem_of(cid).unwrap_or_else(|| {
                        let lo = data.iter().copied().min().unwrap_or(0) as i128;
                        let hi = data.iter().copied().max().unwrap_or(0) as i128;
                        enc_elem(lo, hi)
                    })
                };
                // entries the input cannot reach may not fit the result: clamp them
                let (lo, hi) = out_elem.range();
                for e in &mut data {
                    *e = (*e as i128).clamp(lo, hi) as i64;
                }
                let tlo = data.iter().copied().min().unwrap_or(0) as i128;
                let thi = data.iter().copied().max().unwrap_or(0) as i128;
                let tsigned = tlo < 0;
                let tw = width_for(tlo, thi, tsigned);
                let telem = if tsigned { ElemType::Int(tw) } else { ElemType::UInt(tw) };
                let dense = Dense::new(
                    Type::new(telem, vec![n]),
                    ArrayD::from_shape_vec(IxDyn(&[n]), data).expect("n"),
                )
                .map_err(|e| Diagnostic::at(e, op.span))?;
                let ty = Type::new(out_elem, shape(xv, r));
                Some(
                    r.builder()
                        .op_with_type(OpKind::Lut, &[xv], &[("table", Attribute::Dense(dense))], Some(ty))
                        .map_err(|d| Diagnostic { span: op.span, ..d })?,
                )
            }
            Fuse::Add([x, c]) | Fuse::Mul([x, c]) | Fuse::Round([x, c]) => {
                let xv = child(x).expect("input emitted");
                let k = match &nodes[usize::from(*c)] {
                    Fuse::Num(k) => *k,
                    _ => 0,
                };
                let ty = if i == top {
                    root_ty.clone()
                } else {
                    Type::new(elem_of(cid).unwrap_or(r.ty(xv).elem), shape(xv, r))
                };
                let (kind, attrs, operands) = match node {
                    Fuse::Round(_) => (OpKind::Round, vec![("lsbs", Attribute::Int(k))], vec![xv]),
                    _ => {
                        let data = ArrayD::from_elem(IxDyn(&[]), k);
                        let mut cty = clear_type_for(&data);
                        if ty.is_signed() && !cty.is_signed() {
                            cty = cty.with_elem(ElemType::Int((cty.width() + 1).min(64)));
                        }
                        let cv = r.new_constant(cty, data)?;
                        let kind = if matches!(node, Fuse::Add(_)) {
                            OpKind::Add
                        } else {
                            OpKind::Mul
                        };
                        (kind, vec![], vec![xv, cv])
                    }
                };
                Some(
                    r.builder()
                        .op_with_type(kind, &operands, &attrs, Some(ty))
                        .map_err(|d| Diagnostic { span: op.span, ..d })?,
                )
            }
            Fuse::Neg(x) => {
                let xv = child(x).expect("input emitted");
                let ty = if i == top {
                    root_ty.clone()
                } else {
                    Type::new(elem_of(cid).unwrap_or(r.ty(xv).elem), shape(xv, r))
                };
                Some(
                    r.builder()
                        .op_with_type(OpKind::Neg, &[xv], &[], Some(ty))
                        .map_err(|d| Diagnostic { span: op.span, ..d })?,
                )
            }
        };
        if let (Some(v), Some(c)) = (v, cid) {
            if i != top && !matches!(node, Fuse::Value(_)) {
                emitted.entry(c).or_insert(v);
            }
        }
        vals[i] = v;
    }
    let v = vals[top].ok_or_else(|| Diagnostic::at("lut-fusion: nothing to emit", op.span))?;
    if let Some(c) = g.lookup_expr(expr) {
        emitted.insert(c, v);
    }
    let name = r.old.value(op.result).name.clone();
    r.builder().set_name(v, name);
    // the fused value stands for `op`: diagnostics after the pass point at it
    if !matches!(nodes[top], Fuse::Value(_)) {
        r.builder().set_span(v, op.span);
    }
    Ok(v)
}

/// The sub-expression of `expr` rooted at node `i`.
fn build_sub(expr: &egg::RecExpr<Fuse>, i: usize) -> egg::RecExpr<Fuse> {
    let nodes = expr.as_ref();
    let mut out = egg::RecExpr::default();
    let mut map: HashMap<usize, Id> = HashMap::new();
    fn go(nodes: &[Fuse], i: usize, out: &mut egg::RecExpr<Fuse>, map: &mut HashMap<usize, Id>) -> Id {
        if let Some(&id) = map.get(&i) {
            return id;
        }
        let node = nodes[i].clone().map_children(|c| go(nodes, usize::from(c), out, map));
        let id = out.add(node);
        map.insert(i, id);
        id
    }
    go(nodes, i, &mut out, &mut map);
    out
}
