//! Test support shared by fhec's cross-crate tests: random well-typed programs for property tests, and
//! the `expected-error` annotations of `.fhe` case files.

use fhec_ir::attr::{Attribute, Dense};
use fhec_ir::module::{Function, FunctionBuilder, ValueId};
use fhec_ir::types::{ElemType, Type};
use fhec_ir::{OpKind, Tensor};
use ndarray::{ArrayD, IxDyn};

/// A tiny deterministic generator (SplitMix64), so a program is a pure function of its seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Uniform in `lo ..= hi`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        let span = (hi as i128 - lo as i128 + 1) as u128;
        (lo as i128 + (self.next_u64() as u128 % span) as i128) as i64
    }
}

/// A random tensor whose values fill the whole range of `ty`, extremes included.
pub fn random_tensor(rng: &mut Rng, ty: &Type) -> Tensor {
    let (lo, hi) = ty.elem.range();
    let (lo, hi) = (lo as i64, hi as i64);
    let n = ty.num_elements();
    let v = (0..n)
        .map(|_| match rng.below(4) {
            0 => lo,
            1 => hi,
            _ => rng.range(lo, hi),
        })
        .collect();
    ArrayD::from_shape_vec(IxDyn(&ty.shape), v).expect("shape matches")
}

fn dense(rng: &mut Rng, elem: ElemType, shape: Vec<usize>) -> Attribute {
    let ty = Type::new(elem, shape);
    Attribute::Dense(Dense::new(ty.clone(), random_tensor(rng, &ty)).expect("values fit"))
}

fn constant(b: &mut FunctionBuilder, rng: &mut Rng, elem: ElemType, shape: Vec<usize>) -> ValueId {
    let value = dense(rng, elem, shape);
    b.op(OpKind::Constant, &[], &[("value", value)])
        .expect("constant builds")
}

/// Largest width the generator lets a value reach (keeps products far from saturation).
const MAX_GEN_WIDTH: u32 = 24;

/// Builds a random, well-typed function from a seed: encrypted inputs of random shapes and widths, then
/// `steps` ops drawn from the whole op set (elementwise, linear algebra, lookups, rounding, casts, shape
/// ops), each result typed by the builder's inference. The result types are the widest the operand types
/// allow, so evaluating the function on any inputs in range must never overflow a declared width.
pub fn random_function(seed: u64, steps: usize) -> Function {
    let mut rng = Rng::new(seed);
    let mut b = FunctionBuilder::new("main");
    let shapes: [&[usize]; 4] = [&[], &[3], &[2, 3], &[1, 2, 2]];
    let n_args = 1 + rng.below(2);
    let mut pool: Vec<ValueId> = Vec::new();
    for i in 0..n_args {
        let shape = shapes[rng.below(shapes.len())].to_vec();
        let elem = ElemType::new(true, rng.below(2) == 0, 1 + rng.below(5) as u32);
        pool.push(b.arg(&format!("in{i}"), Type::new(elem, shape)));
    }
    let mut attempts = 0;
    let mut added = 0;
    while added < steps && attempts < steps * 20 {
        attempts += 1;
        let x = pool[rng.below(pool.len())];
        let tx = b.ty(x).clone();
        let w = tx.width();
        let small = ElemType::new(false, rng.below(2) == 0, 1 + rng.below(3) as u32);
        let r = match rng.below(20) {
            0 | 1 => {
                let y = pool[rng.below(pool.len())];
                b.op(OpKind::Add, &[x, y], &[])
            }
            2 => {
                let c = constant(&mut b, &mut rng, small, tx.shape.clone());
                b.op(OpKind::Sub, &[x, c], &[])
            }
            3 => b.op(OpKind::Neg, &[x], &[]),
            4 => {
                let c = constant(&mut b, &mut rng, small, tx.shape.last().map_or(vec![], |&d| vec![d]));
                b.op(OpKind::Mul, &[c, x], &[])
            }
            5 if w <= 5 => {
                let elem = ElemType::new(false, rng.below(2) == 0, 1 + rng.below(5) as u32);
                let table = dense(&mut rng, elem, vec![1 << w]);
                b.op(OpKind::Lut, &[x], &[("table", table)])
            }
            6 if w <= 4 => {
                let tables = dense(&mut rng, small, vec![2, 1 << w]);
                b.op(OpKind::MultiLut, &[x], &[("tables", tables)])
            }
            7 if w <= 4 => {
                let tables = dense(&mut rng, small, vec![3, 1 << w]);
                let map = dense(&mut rng, ElemType::UInt(2), tx.shape.clone());
                // map entries must index the 3 tables
                let map = match map {
                    Attribute::Dense(d) => {
                        let data = d.data.mapv(|v| v % 3);
                        Attribute::Dense(Dense::new(d.ty, data).expect("fits"))
                    }
                    a => a,
                };
                b.op(OpKind::MappedLut, &[x], &[("map", map), ("tables", tables)])
            }
            8 if w >= 2 => b.op(
                OpKind::Round,
                &[x],
                &[("lsbs", Attribute::Int(1 + rng.below(w as usize - 1) as i64))],
            ),
            9 if w >= 2 => b.op(
                OpKind::Truncate,
                &[x],
                &[("lsbs", Attribute::Int(1 + rng.below(w as usize - 1) as i64))],
            ),
            10 if tx.rank() >= 1 => {
                let k = *tx.shape.last().unwrap_or(&1);
                let n = 1 + rng.below(3);
                let m = constant(&mut b, &mut rng, small, vec![k, n]);
                b.op(OpKind::Matmul, &[x, m], &[])
            }
            11 => {
                let axes: Vec<i64> = (0..tx.rank() as i64).filter(|_| rng.below(2) == 0).collect();
                b.op(
                    OpKind::Sum,
                    &[x],
                    &[
                        ("axes", Attribute::int_array(&axes)),
                        ("keep_dims", Attribute::Bool(rng.below(2) == 0)),
                    ],
                )
            }
            12 => b.op_with_type(OpKind::Reshape, &[x], &[], Some(tx.with_shape(vec![tx.num_elements()]))),
            13 => b.op(OpKind::Transpose, &[x], &[]),
            14 if tx.rank() >= 1 => b.op(OpKind::Concat, &[x, x], &[("axis", Attribute::Int(0))]),
            15 if tx.rank() >= 1 && tx.shape[0] >= 1 => {
                let n = tx.shape[0] as i64;
                let idx = Attribute::Dense(
                    Dense::new(
                        Type::new(ElemType::Int(64), vec![2]),
                        ArrayD::from_shape_vec(IxDyn(&[2]), vec![n - 1, 0]).expect("2"),
                    )
                    .expect("fits"),
                );
                b.op(OpKind::Gather, &[x], &[("axis", Attribute::Int(0)), ("indices", idx)])
            }
            16 => {
                let cast = if tx.is_signed() {
                    OpKind::ToUnsigned
                } else {
                    OpKind::ToSigned
                };
                // keep the cast's values valid: pass through a lookup that maps into the safe half
                if w <= 5 {
                    let hi = (1i64 << (w - 1)) - 1;
                    let t = Type::new(ElemType::UInt(w), vec![1 << w]);
                    let data = ArrayD::from_shape_fn(IxDyn(&[1 << w]), |i| (i[0] as i64) % (hi + 1));
                    let table = Attribute::Dense(Dense::new(t, data).expect("fits"));
                    let elem = ElemType::new(true, tx.is_signed(), w);
                    b.op_with_type(OpKind::Lut, &[x], &[("table", table)], Some(tx.with_elem(elem)))
                        .and_then(|y| b.op(cast, &[y], &[]))
                } else {
                    continue;
                }
            }
            17 if w <= 6 => {
                let y = pool[rng.below(pool.len())];
                if b.ty(y).width() <= 6 {
                    b.op(OpKind::MulEint, &[x, y], &[])
                } else {
                    continue;
                }
            }
            18 => {
                let mut shape = vec![2];
                shape.extend(&tx.shape);
                b.op_with_type(OpKind::Broadcast, &[x], &[], Some(tx.with_shape(shape)))
            }
            19 if tx.rank() >= 1 => {
                let ends: Vec<i64> = tx.shape.iter().map(|&d| d as i64).collect();
                let starts: Vec<i64> = tx.shape.iter().map(|&d| (d as i64).min(1)).collect();
                b.op(
                    OpKind::Slice,
                    &[x],
                    &[
                        ("ends", Attribute::int_array(&ends)),
                        ("starts", Attribute::int_array(&starts)),
                        ("steps", Attribute::int_array(&vec![1; tx.rank()])),
                    ],
                )
            }
            _ => continue,
        };
        if let Ok(v) = r {
            if b.ty(v).width() <= MAX_GEN_WIDTH && b.ty(v).num_elements() <= 64 {
                pool.push(v);
                added += 1;
            }
        }
    }
    let n_out = 1 + rng.below(2).min(pool.len() - 1);
    let outs: Vec<ValueId> = pool.iter().rev().take(n_out).copied().collect();
    b.ret(&outs)
}

/// An `expected-error` annotation of a case file: `// expected-error {{text}}` (same line) or
/// `// expected-error@+N {{text}}` (N lines below).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpectedError {
    pub line: usize,
    pub text: String,
}

/// The `expected-error` annotations of `src`, with the 1-based line each refers to.
pub fn expected_errors(src: &str) -> Vec<ExpectedError> {
    let mut out = Vec::new();
    for (i, l) in src.lines().enumerate() {
        let Some(pos) = l.find("// expected-error") else {
            continue;
        };
        let rest = &l[pos + "// expected-error".len()..];
        let (offset, rest) = match rest.strip_prefix("@+") {
            Some(r) => {
                let digits: String = r.chars().take_while(|c| c.is_ascii_digit()).collect();
                (digits.parse::<usize>().unwrap_or(0), &r[digits.len()..])
            }
            None => (0, rest),
        };
        let text = rest
            .trim()
            .strip_prefix("{{")
            .and_then(|r| r.rfind("}}").map(|e| r[..e].to_string()))
            .unwrap_or_default();
        out.push(ExpectedError {
            line: i + 1 + offset,
            text,
        });
    }
    out
}

/// Inputs for a module's entry function: all minima, all maxima, then `n` random samples (extremes
/// included) — each argument within its declared `fhe.range`, else its type's range.
pub fn input_samples(m: &fhec_ir::Module, seed: u64, n: usize) -> Vec<Vec<Tensor>> {
    let f = m.entry().expect("an entry function");
    let mut rng = Rng::new(seed);
    (0..n + 2)
        .map(|s| {
            f.args
                .iter()
                .enumerate()
                .map(|(i, a)| {
                    let ty = f.ty(a.value);
                    let (lo, hi) = f.arg_range(i).unwrap_or_else(|| {
                        let (lo, hi) = ty.elem.range();
                        (lo as i64, hi as i64)
                    });
                    match s {
                        0 => ArrayD::from_elem(IxDyn(&ty.shape), lo),
                        1 => ArrayD::from_elem(IxDyn(&ty.shape), hi),
                        _ => random_tensor(&mut rng, ty).mapv(|x| x.clamp(lo, hi)),
                    }
                })
                .collect()
        })
        .collect()
}

/// A pass context with the backend's cost model, as the facade's compile gives its passes.
pub fn pass_context() -> fhec_passes::manager::PassContext {
    fhec_passes::manager::PassContext::with_cost_source(fhec_backend_tfhe::cost::cost_model)
}
