//! `lut-fusion`: fuses chains of table lookups and clear arithmetic into fewer lookups, with egg.
//!
//! The fusion-relevant ops of a function — `fhe.lut`, `add`/`sub`/`mul` with a uniform clear
//! constant, `neg`, `round` — become e-nodes of the [`Fuse`] language; every other value is an opaque
//! leaf (`v12`), tables are interned leaves (`t3`), constants are numbers. Named one-way rules add
//! cheaper equivalent forms (see [`rules`]); the extraction picks, for every value the rest of the
//! function uses, the form with the least bootstrap cost (Σ PBS cost by input precision, from the
//! measured figures of `docs/benchmarks.md`). The result is written back as `fhe` ops. Finally,
//! lookups with different tables on the same input are grouped into one `fhe.multi_lut` (sliced
//! back into the original results), which lets the backend share their keyswitch.
//!
//! Every rule is exact: a new table is computed from the old ones over every value the lookup's
//! input can take (its type's range), with the IR's indexing rule (`v mod 2^w`). Entries for values
//! the input cannot take are clamped into the result type.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use egg::{
    define_language, Analysis, Applier, DidMerge, EGraph, Id, Language, Pattern, PatternAst, Rewrite, Runner, Subst,
    Symbol, Var,
};
use fhec_ir::attr::{Attribute, Dense};
use fhec_ir::module::{Function, OpData};
use fhec_ir::types::{int_range, width_for, MAX_LUT_WIDTH};
use fhec_ir::{CostModel, Diagnostic, ElemType, Module, OpKind, Tensor, Type, ValueId};
use ndarray::{ArrayD, IxDyn};

use crate::manager::{OptionSpec, Pass, PassContext, PassInfo, PassOptions};
use crate::rewrite::{clear_type_for, Rebuild};

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

/// A table leaf: an index into the analysis' table store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableRef(pub u32);

impl fmt::Display for TableRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t{}", self.0)
    }
}

impl FromStr for TableRef {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        s.strip_prefix('t').and_then(|n| n.parse().ok()).map(TableRef).ok_or(())
    }
}

/// An opaque IR value (index of the old function's value).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ValueRef(pub u32);

impl fmt::Display for ValueRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.0)
    }
}

impl FromStr for ValueRef {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        s.strip_prefix('v').and_then(|n| n.parse().ok()).map(ValueRef).ok_or(())
    }
}

define_language! {
    /// The fusion language.
    pub enum Fuse {
        "lut" = Lut([Id; 2]),
        "add" = Add([Id; 2]),
        "mul" = Mul([Id; 2]),
        "neg" = Neg(Id),
        "round" = Round([Id; 2]),
        Table(TableRef),
        Value(ValueRef),
        Num(i64),
    }
}

/// Per e-class: the element type of the value (for encrypted values), and whether it is the declared
/// type of an IR value (those are kept as they are).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClassType {
    pub elem: Option<ElemType>,
    pub from_ir: bool,
}

/// The analysis: interned tables and the types of the IR leaves.
#[derive(Default)]
pub struct FuseAnalysis {
    pub tables: Vec<Vec<i64>>,
    index: HashMap<Vec<i64>, u32>,
    pub value_types: HashMap<u32, ElemType>,
}

impl FuseAnalysis {
    pub fn intern(&mut self, t: Vec<i64>) -> TableRef {
        let n = self.tables.len() as u32;
        let id = *self.index.entry(t.clone()).or_insert(n);
        if id == n {
            self.tables.push(t);
        }
        TableRef(id)
    }
}

fn enc_elem(lo: i128, hi: i128) -> ElemType {
    let signed = lo < 0;
    let w = width_for(lo, hi, signed).min(fhec_ir::types::MAX_ENCRYPTED_WIDTH);
    if signed {
        ElemType::ESInt(w)
    } else {
        ElemType::EInt(w)
    }
}

impl Analysis<Fuse> for FuseAnalysis {
    type Data = ClassType;

    fn make(egraph: &mut EGraph<Fuse, Self>, enode: &Fuse) -> ClassType {
        let ty = |i: &Id| egraph[*i].data.elem;
        let num = |i: &Id| {
            egraph[*i]
                .nodes
                .iter()
                .find_map(|n| if let Fuse::Num(v) = n { Some(*v as i128) } else { None })
        };
        let elem = match enode {
            Fuse::Value(v) => egraph.analysis.value_types.get(&v.0).copied(),
            Fuse::Lut([t, _]) => egraph[*t].nodes.iter().find_map(|n| match n {
                Fuse::Table(r) => {
                    let tb = &egraph.analysis.tables[r.0 as usize];
                    let lo = tb.iter().copied().min().unwrap_or(0) as i128;
                    let hi = tb.iter().copied().max().unwrap_or(0) as i128;
                    Some(enc_elem(lo, hi))
                }
                _ => None,
            }),
            Fuse::Add([x, c]) => ty(x).zip(num(c)).map(|(e, c)| {
                let (lo, hi) = e.range();
                enc_elem(lo + c, hi + c)
            }),
            Fuse::Mul([x, c]) => ty(x).zip(num(c)).map(|(e, c)| {
                let (lo, hi) = e.range();
                enc_elem((lo * c).min(hi * c), (lo * c).max(hi * c))
            }),
            Fuse::Neg(x) => ty(x).map(|e| {
                let (lo, hi) = e.range();
                enc_elem(-hi, -lo)
            }),
            Fuse::Round([x, k]) => ty(x).zip(num(k)).map(|(e, k)| {
                let (lo, hi) = e.range();
                let r = |v: i128| (v + (1 << (k - 1))) >> k;
                enc_elem(r(lo), r(hi))
            }),
            Fuse::Table(_) | Fuse::Num(_) => None,
        };
        ClassType { elem, from_ir: false }
    }

    fn merge(&mut self, a: &mut ClassType, b: ClassType) -> DidMerge {
        // the declared type of an IR value wins; otherwise keep the first
        if !a.from_ir && b.from_ir {
            *a = b;
            DidMerge(true, false)
        } else {
            DidMerge(false, true)
        }
    }
}

type FGraph = EGraph<Fuse, FuseAnalysis>;

fn table_of(g: &FGraph, id: Id) -> Option<Vec<i64>> {
    g[id].nodes.iter().find_map(|n| match n {
        Fuse::Table(r) => Some(g.analysis.tables[r.0 as usize].clone()),
        _ => None,
    })
}

fn num_of(g: &FGraph, id: Id) -> Option<i64> {
    g[id]
        .nodes
        .iter()
        .find_map(|n| if let Fuse::Num(v) = n { Some(*v) } else { None })
}

/// `T[v mod len]`, the IR's lookup indexing.
fn index(t: &[i64], v: i128) -> i64 {
    t[v.rem_euclid(t.len() as i128) as usize]
}

/// The values an input of class `x` can take (its type's range), if a lookup on it is allowed.
fn domain(g: &FGraph, x: Id) -> Option<(i128, i128, u32, bool)> {
    let e = g[x].data.elem?;
    let w = e.width();
    if w > MAX_LUT_WIDTH {
        return None;
    }
    let (lo, hi) = int_range(e.is_signed(), w);
    Some((lo, hi, w, e.is_signed()))
}

/// A table indexed by the input class `x`'s values (`2^w` entries in the IR's `v mod 2^w` order).
fn table_over(x: (i128, i128, u32, bool), f: impl Fn(i128) -> Option<i64>) -> Option<Vec<i64>> {
    let (_, _, w, signed) = x;
    let n = 1usize << w;
    (0..n)
        .map(|i| {
            let v = if signed && i >= n / 2 {
                i as i128 - n as i128
            } else {
                i as i128
            };
            f(v)
        })
        .collect()
}

/// The kinds of rewrite, each a custom applier computing the new table.
#[derive(Clone, Copy, Debug)]
enum Kind {
    LutOfLut,
    AddAfter,
    MulAfter,
    NegAfter,
    AddBefore,
    MulBefore,
    NegBefore,
    RoundBefore,
}

struct Fold {
    kind: Kind,
}

fn var(s: &str) -> Var {
    s.parse().expect("variable")
}

impl Applier<Fuse, FuseAnalysis> for Fold {
    fn apply_one(&self, g: &mut FGraph, eclass: Id, subst: &Subst, _: Option<&PatternAst<Fuse>>, _: Symbol) -> Vec<Id> {
        let get = |n: &str| subst.get(var(n)).copied();
        let (table, x) = match self.kind {
            Kind::LutOfLut => {
                // (lut ?t2 (lut ?t1 ?x)) → (lut T2∘T1 ?x)
                let (Some(t1), Some(t2), Some(x)) = (get("?t1"), get("?t2"), get("?x")) else {
                    return vec![];
                };
                let (Some(t1), Some(t2), Some(d)) = (table_of(g, t1), table_of(g, t2), domain(g, x)) else {
                    return vec![];
                };
                (table_over(d, |v| Some(index(&t2, index(&t1, v) as i128))), x)
            }
            Kind::AddAfter | Kind::MulAfter | Kind::NegAfter => {
                // (op (lut ?t ?x) ?c) → (lut op(T) ?x): same input, new entries
                let (Some(t), Some(x)) = (get("?t"), get("?x")) else {
                    return vec![];
                };
                let Some(t) = table_of(g, t) else { return vec![] };
                let c = get("?c").and_then(|c| num_of(g, c)).unwrap_or(0);
                let new: Option<Vec<i64>> = t
                    .iter()
                    .map(|&e| match self.kind {
                        Kind::AddAfter => e.checked_add(c),
                        Kind::MulAfter => e.checked_mul(c),
                        _ => e.checked_neg(),
                    })
                    .collect();
                (new, x)
            }
            Kind::AddBefore | Kind::MulBefore | Kind::NegBefore | Kind::RoundBefore => {
                // (lut ?t (op ?x ?c)) → (lut T∘op ?x): a table over ?x's values
                let (Some(t), Some(x)) = (get("?t"), get("?x")) else {
                    return vec![];
                };
                let (Some(t), Some(d)) = (table_of(g, t), domain(g, x)) else {
                    return vec![];
                };
                let c = get("?c").and_then(|c| num_of(g, c)).unwrap_or(0) as i128;
                (
                    table_over(d, |v| {
                        let u = match self.kind {
                            Kind::AddBefore => v + c,
                            Kind::MulBefore => v * c,
                            Kind::NegBefore => -v,
                            _ => (v + (1 << (c - 1))) >> c,
                        };
                        Some(index(&t, u))
                    }),
                    x,
                )
            }
        };
        let Some(table) = table else { return vec![] };
        let r = g.analysis.intern(table);
        let t = g.add(Fuse::Table(r));
        let new = g.add(Fuse::Lut([t, x]));
        // two IR values of different declared types stay apart (their users depend on the types)
        let (a, b) = (g[eclass].data, g[new].data);
        if a.from_ir && b.from_ir && a.elem != b.elem {
            return vec![];
        }
        if g.union(eclass, new) {
            vec![new]
        } else {
            vec![]
        }
    }
}

/// The rules, by name.
pub fn rules() -> Vec<Rewrite<Fuse, FuseAnalysis>> {
    let r = |name: &str, pat: &str, kind: Kind| {
        Rewrite::new(name, pat.parse::<Pattern<Fuse>>().expect("pattern"), Fold { kind }).expect("rule")
    };
    vec![
        r("lut-of-lut", "(lut ?t2 (lut ?t1 ?x))", Kind::LutOfLut),
        r("add-after-lut", "(add (lut ?t ?x) ?c)", Kind::AddAfter),
        r("mul-after-lut", "(mul (lut ?t ?x) ?c)", Kind::MulAfter),
        r("neg-after-lut", "(neg (lut ?t ?x))", Kind::NegAfter),
        r("add-before-lut", "(lut ?t (add ?x ?c))", Kind::AddBefore),
        r("mul-before-lut", "(lut ?t (mul ?x ?c))", Kind::MulBefore),
        r("neg-before-lut", "(lut ?t (neg ?x))", Kind::NegBefore),
        r("round-before-lut", "(lut ?t (round ?x ?c))", Kind::RoundBefore),
    ]
}

/// Extraction cost: lookups by the context's cost model (nanoseconds per lookup by precision).
struct PbsCost<'g> {
    g: &'g FGraph,
    model: &'g CostModel,
}

impl egg::CostFunction<Fuse> for PbsCost<'_> {
    type Cost = f64;
    fn cost<C: FnMut(Id) -> f64>(&mut self, enode: &Fuse, mut costs: C) -> f64 {
        let own = match enode {
            Fuse::Lut([_, x]) => self.model.lookup(self.g[*x].data.elem.map_or(16, |e| e.width())),
            // leveled ops: nearly free, but fewer ops win ties
            Fuse::Add(_) | Fuse::Mul(_) | Fuse::Neg(_) => self.model.leveled_ns,
            // rounding of w bits: about w/2 one-bit extractions (backend estimate)
            Fuse::Round([x, _]) => self.model.lookup(0) * self.g[*x].data.elem.map_or(8, |e| e.width()) as f64 * 0.5,
            _ => 0.0,
        };
        enode.fold(own, |acc, id| acc + costs(id))
    }
}

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

/// `lut(T2, add|mul(lut(T1, x), C))` with a per-element clear constant `C` (which the e-graph, working
/// on whole tensors, leaves alone) → one `fhe.mapped_lut(x)`: a table per distinct constant value,
/// `T_c[v] = T2[T1[v] ∘ c]`, chosen per element by `map`. Saves a lookup per element. The inner values
/// must have no other use; the dead ops go with the next `canonicalize`.
fn fuse_per_element(f: &Function, ctx: &mut PassContext) -> Result<Function, Diagnostic> {
    let mut uses = vec![0usize; f.num_values()];
    for &o in &f.body {
        for &x in &f.op(o).operands {
            uses[x.index()] += 1;
        }
    }
    for &v in &f.returns {
        uses[v.index()] += 1;
    }
    let def = |v: ValueId| match f.value(v).def {
        fhec_ir::module::ValueDef::Op(o) => Some(f.op(o)),
        _ => None,
    };
    let table = |op: &OpData| match op.attrs.get("table") {
        Some(Attribute::Dense(d)) => Some(d.data.iter().copied().collect::<Vec<i64>>()),
        _ => None,
    };
    let const_of = |v: ValueId| match def(v) {
        Some(op) if op.kind == OpKind::Constant => match op.attrs.get("value") {
            Some(Attribute::Dense(d)) => Some(d.data.clone()),
            _ => None,
        },
        _ => None,
    };
    let mut r = Rebuild::new(f);
    for &o in &f.body {
        let op = f.op(o);
        let fused = (|| {
            if op.kind != OpKind::Lut {
                return None;
            }
            let mid = def(op.operands[0]).filter(|m| matches!(m.kind, OpKind::Add | OpKind::Mul))?;
            if uses[mid.result.index()] != 1 {
                return None;
            }
            let [a, c] = mid.operands[..] else { return None };
            let inner = def(a).filter(|i| i.kind == OpKind::Lut && uses[i.result.index()] == 1)?;
            let cst = const_of(c)?;
            // per element, same shape as the lookups (uniform ones are the e-graph's job)
            let shape = &f.ty(op.result).shape;
            if cst.shape() != shape.as_slice() || cst.iter().all(|&v| Some(&v) == cst.iter().next()) {
                return None;
            }
            let (t1, t2) = (table(inner)?, table(op)?);
            let x = inner.operands[0];
            let xty = f.ty(x);
            if xty.width() > MAX_LUT_WIDTH {
                return None;
            }
            let mut distinct: Vec<i64> = cst.iter().copied().collect();
            distinct.sort_unstable();
            distinct.dedup();
            let n = 1usize << xty.width();
            let (lo, hi) = f.ty(op.result).elem.range();
            let mut rows: Vec<i64> = Vec::with_capacity(distinct.len() * n);
            for &k in &distinct {
                for i in 0..n {
                    let v = if xty.is_signed() && i >= n / 2 {
                        i as i128 - n as i128
                    } else {
                        i as i128
                    };
                    let y1 = index(&t1, v) as i128;
                    let y = if mid.kind == OpKind::Add {
                        y1 + k as i128
                    } else {
                        y1 * k as i128
                    };
                    // entries the input cannot reach may not fit: clamp them into the result type
                    rows.push((index(&t2, y) as i128).clamp(lo, hi) as i64);
                }
            }
            let map: Vec<i64> = cst
                .iter()
                .map(|v| distinct.binary_search(v).expect("present") as i64)
                .collect();
            Some((x, rows, distinct.len(), n, map))
        })();
        let Some((x, rows, k, n, map)) = fused else {
            r.copy(op)?;
            continue;
        };
        let tables = ArrayD::from_shape_vec(IxDyn(&[k, n]), rows).map_err(|e| Diagnostic::new(e.to_string()))?;
        let map =
            ArrayD::from_shape_vec(IxDyn(&f.ty(op.result).shape), map).map_err(|e| Diagnostic::new(e.to_string()))?;
        let tdense = Dense::new(clear_type_for(&tables), tables).map_err(|e| Diagnostic::at(e, op.span))?;
        let mdense = Dense::new(clear_type_for(&map), map).map_err(|e| Diagnostic::at(e, op.span))?;
        let mut attrs = fhec_ir::Attrs::new();
        attrs.insert("tables".into(), Attribute::Dense(tdense));
        attrs.insert("map".into(), Attribute::Dense(mdense));
        let xn = r.get(x);
        match r.emit(op, OpKind::MappedLut, &[xn], &attrs, f.ty(op.result).clone()) {
            Ok(_) => ctx.count("lookups fused through per-element constants", 1),
            Err(_) => {
                r.copy(op)?;
            }
        }
    }
    Ok(r.finish())
}

/// Groups `fhe.lut` ops on the same input (same result type) into one `fhe.multi_lut`, each result
/// sliced back out. The backend then keyswitches the input once for all tables.
fn group_multi_lut(f: &Function, ctx: &mut PassContext) -> Result<Function, Diagnostic> {
    // lookups by (input, result type)
    let mut groups: HashMap<(u32, String), Vec<usize>> = HashMap::new();
    for (pos, &o) in f.body.iter().enumerate() {
        let op = f.op(o);
        if op.kind == OpKind::Lut {
            groups
                .entry((op.operands[0].0, f.ty(op.result).to_string()))
                .or_default()
                .push(pos);
        }
    }
    let groups: Vec<Vec<usize>> = groups.into_values().filter(|g| g.len() > 1).collect();
    if groups.is_empty() {
        return Ok(f.clone());
    }
    let mut leader: HashMap<usize, usize> = HashMap::new(); // member pos → group index
    for (gi, g) in groups.iter().enumerate() {
        for &p in g {
            leader.insert(p, gi);
        }
    }
    let mut r = Rebuild::new(f);
    let mut done: HashMap<usize, ValueId> = HashMap::new(); // group → multi_lut value
    for (pos, &o) in f.body.iter().enumerate() {
        let op = f.op(o);
        let Some(&gi) = leader.get(&pos) else {
            r.copy(op)?;
            continue;
        };
        let members = &groups[gi];
        let k = members.len();
        let multi = match done.get(&gi) {
            Some(&v) => v,
            None => {
                // tables stacked [K, 2^w], the result with a K axis
                let tables: Vec<i64> = members
                    .iter()
                    .flat_map(|&p| match f.op(f.body[p]).attrs.get("table") {
                        Some(Attribute::Dense(d)) => d.data.iter().copied().collect::<Vec<_>>(),
                        _ => vec![],
                    })
                    .collect();
                let n = tables.len() / k;
                let data =
                    ArrayD::from_shape_vec(IxDyn(&[k, n]), tables).map_err(|e| Diagnostic::new(e.to_string()))?;
                let tty = clear_type_for(&data);
                let dense = Dense::new(tty, data).map_err(|e| Diagnostic::at(e, op.span))?;
                let rty = f.ty(op.result);
                let mut shape = rty.shape.clone();
                shape.push(k);
                let x = r.get(op.operands[0]);
                let v = r
                    .builder()
                    .op_with_type(
                        OpKind::MultiLut,
                        &[x],
                        &[("tables", Attribute::Dense(dense))],
                        Some(rty.with_shape(shape)),
                    )
                    .map_err(|d| Diagnostic { span: op.span, ..d })?;
                done.insert(gi, v);
                ctx.count("lookups grouped into multi_lut", k as u64);
                v
            }
        };
        // result j: slice [.., j:j+1] then drop the axis
        let j = members.iter().position(|&p| p == pos).expect("member");
        let rty = f.ty(op.result).clone();
        let rank = rty.rank();
        let mut starts = vec![0i64; rank + 1];
        let mut ends: Vec<i64> = rty.shape.iter().map(|&d| d as i64).collect();
        starts[rank] = j as i64;
        ends.push(j as i64 + 1);
        let mut sliced_shape = rty.shape.clone();
        sliced_shape.push(1);
        let s = r
            .builder()
            .op_with_type(
                OpKind::Slice,
                &[multi],
                &[
                    ("starts", Attribute::int_array(&starts)),
                    ("ends", Attribute::int_array(&ends)),
                    ("steps", Attribute::int_array(&vec![1; rank + 1])),
                ],
                Some(rty.with_shape(sliced_shape)),
            )
            .map_err(|d| Diagnostic { span: op.span, ..d })?;
        r.emit(op, OpKind::Reshape, &[s], &Default::default(), rty)?;
    }
    Ok(r.finish())
}
