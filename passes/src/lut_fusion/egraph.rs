//! The e-graph side of `lut-fusion`: the [`Fuse`] language, its analysis (types and tables of e-classes),
//! the named rules and the extraction cost (the context's cost model).

use std::fmt;
use std::str::FromStr;

use egg::{
    define_language, Analysis, Applier, DidMerge, EGraph, Id, Language, Pattern, PatternAst, Rewrite, Subst, Symbol,
    Var,
};
use fhec_ir::types::int_range;
use fhec_ir::{CostModel, ElemType};

use super::*;

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

pub(super) fn enc_elem(lo: i128, hi: i128) -> ElemType {
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

pub(super) type FGraph = EGraph<Fuse, FuseAnalysis>;

pub(super) fn table_of(g: &FGraph, id: Id) -> Option<Vec<i64>> {
    g[id].nodes.iter().find_map(|n| match n {
        Fuse::Table(r) => Some(g.analysis.tables[r.0 as usize].clone()),
        _ => None,
    })
}

pub(super) fn num_of(g: &FGraph, id: Id) -> Option<i64> {
    g[id]
        .nodes
        .iter()
        .find_map(|n| if let Fuse::Num(v) = n { Some(*v) } else { None })
}

/// `T[v mod len]`, the IR's lookup indexing.
pub(super) fn index(t: &[i64], v: i128) -> i64 {
    t[v.rem_euclid(t.len() as i128) as usize]
}

/// The values an input of class `x` can take (its type's range), if a lookup on it is allowed.
pub(super) fn domain(g: &FGraph, x: Id) -> Option<(i128, i128, u32, bool)> {
    let e = g[x].data.elem?;
    let w = e.width();
    if w > MAX_LUT_WIDTH {
        return None;
    }
    let (lo, hi) = int_range(e.is_signed(), w);
    Some((lo, hi, w, e.is_signed()))
}

/// A table indexed by the input class `x`'s values (`2^w` entries in the IR's `v mod 2^w` order).
pub(super) fn table_over(x: (i128, i128, u32, bool), f: impl Fn(i128) -> Option<i64>) -> Option<Vec<i64>> {
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
pub(super) enum Kind {
    LutOfLut,
    AddAfter,
    MulAfter,
    NegAfter,
    AddBefore,
    MulBefore,
    NegBefore,
    RoundBefore,
}

pub(super) struct Fold {
    kind: Kind,
}

pub(super) fn var(s: &str) -> Var {
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
pub(super) struct PbsCost<'g> {
    pub(super) g: &'g FGraph,
    pub(super) model: &'g CostModel,
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
