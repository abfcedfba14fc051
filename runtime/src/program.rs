//! The lowered program: what a server runs.
//!
//! A [`Program`] is a straight-line list of instructions over *slots*; each slot holds one LWE
//! ciphertext (per sample) under the big key (dimension `k·N`). Slots `0..num_input_slots` are the
//! encrypted inputs, in the order of [`Program::inputs`], each tensor row-major; instruction `i`
//! writes slot `num_input_slots + i`. Two instructions exist:
//!
//! * [`Instr::Linear`]: `Σ coef·slot + constant`, wrapping on the 64-bit torus. Every leveled op of
//!   the `fhe` dialect (add, sub, mul by a clear value, matmul, conv, sum, reshapes…) lowers to these.
//! * [`Instr::Pbs`]: a table lookup. The input is multiplied by `2^shift` and `offset` is added
//!   (this re-encodes a value of any scale to the lookup's precision, see `docs/crypto.md`), then
//!   keyswitch, centered modulus switch, blind rotation with the table, sample extraction.
//!
//! Encoding: a value `v` at scale `s` is the torus element `v·2^s` (two's complement for negative
//! values), plus noise. A lookup of precision `p` reads `m ∈ [0, 2^p)` from `m·2^(63-p)`; the top bit
//! (padding) must be clear. Each table entry is the torus value to output (already scaled).
//!
//! The same program runs three ways: encrypted ([`crate::exec`]), simulated without keys
//! ([`Program::simulate`]: exact torus arithmetic, no noise), and the clear interpreter upstream.

use serde::{Deserialize, Serialize};

use crate::params::{Fnv, ParamSet};
use crate::RuntimeError;

/// Largest lookup precision the runtime accepts (table of 2^16 entries).
pub const MAX_PBS_PRECISION: u32 = 16;

/// One encrypted tensor crossing the client/server boundary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Port {
    pub name: String,
    pub shape: Vec<usize>,
    /// Declared width of the values (bits) and signedness, from the `fhe` type.
    pub width: u32,
    pub signed: bool,
    /// `log2 Δ`: a value `v` is encoded as `v·2^scale`.
    pub scale: u32,
    /// For inputs: the first slot (elements are consecutive). For outputs: one slot per element.
    pub slots: Vec<u32>,
}

impl Port {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The range of values this port carries.
    pub fn range(&self) -> (i64, i64) {
        if self.signed {
            (-(1i64 << (self.width - 1)), (1i64 << (self.width - 1)) - 1)
        } else {
            (0, (1i64 << self.width) - 1)
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Instr {
    /// `Σ coef·slot + constant` (wrapping). No terms = a trivial (noiseless) ciphertext.
    Linear { terms: Vec<(u32, i64)>, constant: u64 },
    /// `PBS(table, slot·2^shift + offset)`.
    Pbs {
        input: u32,
        shift: u32,
        offset: u64,
        table: u32,
    },
}

/// A lookup table: `2^precision` torus values, one per input message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Table {
    pub precision: u32,
    pub values: Vec<u64>,
}

/// Where an instruction came from in the `fhe` module, for messages and `fhec info`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// Op name and result, e.g. `fhe.lut %3`.
    pub op: String,
    /// `line:col` in the source, when known.
    pub location: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Program {
    pub name: String,
    pub params: ParamSet,
    pub inputs: Vec<Port>,
    pub outputs: Vec<Port>,
    pub num_input_slots: u32,
    pub instrs: Vec<Instr>,
    pub tables: Vec<Table>,
    /// Per instruction: index into `origins`.
    pub instr_origin: Vec<u32>,
    pub origins: Vec<Origin>,
    /// Predicted failure probabilities, from the parameter search (for reports).
    pub noise: NoiseReport,
}

/// What the noise model predicts for a program under its parameters.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NoiseReport {
    /// log2 of the worst failure probability of one lookup.
    pub log2_p_error_worst_lookup: f64,
    /// log2 of the probability that any lookup or output decoding of one run fails (union bound).
    pub log2_p_error_global: f64,
    /// Lookups per run, by precision: (precision, count).
    pub pbs_by_precision: Vec<(u32, u64)>,
    /// Estimated single-thread latency of one run, from the cost model (seconds).
    pub estimated_seconds: f64,
}

impl Program {
    pub fn num_slots(&self) -> usize {
        self.num_input_slots as usize + self.instrs.len()
    }

    pub fn pbs_count(&self) -> usize {
        self.instrs.iter().filter(|i| matches!(i, Instr::Pbs { .. })).count()
    }

    /// Which slots some instruction or output reads (indexed by slot).
    pub fn read_slots(&self) -> Vec<bool> {
        let mut used = vec![false; self.num_slots()];
        for i in &self.instrs {
            match i {
                Instr::Linear { terms, .. } => terms.iter().for_each(|&(s, _)| used[s as usize] = true),
                Instr::Pbs { input, .. } => used[*input as usize] = true,
            }
        }
        for p in &self.outputs {
            p.slots.iter().for_each(|&s| used[s as usize] = true);
        }
        used
    }

    /// The parameters in one line; for a program without lookups only the ones it uses (the
    /// encryption key and its noise), since it has no bootstrap and no evaluation keys.
    pub fn params_summary(&self) -> String {
        if self.pbs_count() > 0 {
            return self.params.to_string();
        }
        let r = self.params.raw();
        format!(
            "k={} N={} (k·N={}) noise=(glwe 2^{}), leveled: no bootstrap, no evaluation keys",
            r.glwe_dimension,
            r.polynomial_size,
            self.params.big_lwe_dimension(),
            r.glwe_noise_bound_log2
        )
    }

    /// A fingerprint of everything that determines the meaning of ciphertexts for this program:
    /// parameters, ports, instructions and tables. Ciphertext files carry it, so ciphertexts made for
    /// another program (even one differing only in a table) are rejected.
    pub fn fingerprint(&self) -> u64 {
        let mut h = Fnv::default();
        h.write(&self.params.fingerprint().to_le_bytes());
        for (tag, ports) in [(b'i', &self.inputs), (b'o', &self.outputs)] {
            for p in ports {
                h.write(&[tag]);
                h.write(p.name.as_bytes());
                h.write(&[0]);
                for d in &p.shape {
                    h.write(&(*d as u64).to_le_bytes());
                }
                h.write(&[p.width as u8, p.signed as u8, p.scale as u8]);
            }
        }
        h.write(&(self.instrs.len() as u64).to_le_bytes());
        for ins in &self.instrs {
            match ins {
                Instr::Linear { terms, constant } => {
                    h.write(b"L");
                    for (s, c) in terms {
                        h.write(&s.to_le_bytes());
                        h.write(&c.to_le_bytes());
                    }
                    h.write(&constant.to_le_bytes());
                }
                Instr::Pbs {
                    input,
                    shift,
                    offset,
                    table,
                } => {
                    h.write(b"P");
                    h.write(&input.to_le_bytes());
                    h.write(&shift.to_le_bytes());
                    h.write(&offset.to_le_bytes());
                    h.write(&table.to_le_bytes());
                }
            }
        }
        for t in &self.tables {
            h.write(&t.precision.to_le_bytes());
            for v in &t.values {
                h.write(&v.to_le_bytes());
            }
        }
        for p in &self.outputs {
            for s in &p.slots {
                h.write(&s.to_le_bytes());
            }
        }
        h.finish()
    }

    /// Checks every invariant the executor relies on, so that a damaged or hostile program is an
    /// error here, never a panic or a wrong answer later.
    pub fn validate(&self) -> Result<(), RuntimeError> {
        let bad = |m: String| Err(RuntimeError::Format(format!("invalid program: {m}")));
        let mut next = 0u64;
        for p in &self.inputs {
            if p.width == 0 || p.width > 32 || p.scale > 63 || p.slots.len() != 1 {
                return bad(format!("input `{}` has a bad encoding", p.name));
            }
            let n = p.shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d as u64));
            if p.slots[0] as u64 != next || n.is_none() {
                return bad(format!("input `{}` slots are not consecutive", p.name));
            }
            next += n.unwrap();
        }
        if next != self.num_input_slots as u64 {
            return bad("input slot count does not match the inputs".into());
        }
        if self.instr_origin.len() != self.instrs.len() {
            return bad("origin table does not match the instructions".into());
        }
        for (i, ins) in self.instrs.iter().enumerate() {
            let me = self.num_input_slots as u64 + i as u64;
            match ins {
                Instr::Linear { terms, .. } => {
                    if terms.iter().any(|&(s, _)| s as u64 >= me) {
                        return bad(format!("instruction {i} reads a slot not yet written"));
                    }
                }
                Instr::Pbs {
                    input, shift, table, ..
                } => {
                    if *input as u64 >= me || *shift > 63 || *table as usize >= self.tables.len() {
                        return bad(format!("lookup {i} has a bad operand"));
                    }
                }
            }
            if self.instr_origin[i] as usize >= self.origins.len() {
                return bad(format!("instruction {i} has a bad origin"));
            }
        }
        for (i, t) in self.tables.iter().enumerate() {
            if t.precision > MAX_PBS_PRECISION || t.values.len() != 1usize << t.precision {
                return bad(format!(
                    "table {i} has {} entries for precision {}",
                    t.values.len(),
                    t.precision
                ));
            }
        }
        let slots = self.num_slots() as u64;
        for p in &self.outputs {
            if p.width == 0 || p.width > 64 || p.scale > 63 || p.slots.len() != p.len() {
                return bad(format!("output `{}` has a bad encoding", p.name));
            }
            if p.slots.iter().any(|&s| s as u64 >= slots) {
                return bad(format!("output `{}` reads a slot that does not exist", p.name));
            }
        }
        Ok(())
    }

    /// PBS depth of each slot (inputs 0; a lookup is one more than its input).
    pub fn depths(&self) -> Vec<u32> {
        let mut d = vec![0u32; self.num_slots()];
        let base = self.num_input_slots as usize;
        for (i, ins) in self.instrs.iter().enumerate() {
            d[base + i] = match ins {
                Instr::Linear { terms, .. } => terms.iter().map(|&(s, _)| d[s as usize]).max().unwrap_or(0),
                Instr::Pbs { input, .. } => d[*input as usize] + 1,
            };
        }
        d
    }

    /// Runs the program on exact torus values (no keys, no noise): what the encrypted run computes
    /// when no lookup fails. `inputs` are the encoded input slots of one sample.
    pub fn simulate_slots(&self, inputs: &[u64]) -> Vec<u64> {
        let mut s = Vec::with_capacity(self.num_slots());
        s.extend_from_slice(inputs);
        for ins in &self.instrs {
            let v = match ins {
                Instr::Linear { terms, constant } => terms.iter().fold(*constant, |acc, &(slot, c)| {
                    acc.wrapping_add(s[slot as usize].wrapping_mul(c as u64))
                }),
                Instr::Pbs {
                    input,
                    shift,
                    offset,
                    table,
                } => {
                    let t = &self.tables[*table as usize];
                    let x = s[*input as usize].wrapping_shl(*shift).wrapping_add(*offset);
                    // exact input: the message is the top `precision` bits below the padding bit;
                    // a set padding bit gives the negated entry (negacyclic), as the blind rotation does.
                    let p = t.precision;
                    let rounded = x.wrapping_add(1u64 << (62 - p)) >> (63 - p);
                    let m = (rounded & ((1u64 << p) - 1)) as usize;
                    if (rounded >> p) & 1 == 1 {
                        t.values[m].wrapping_neg()
                    } else {
                        t.values[m]
                    }
                }
            };
            s.push(v);
        }
        s
    }
}

/// Encodes a value at a scale (two's complement on the torus).
pub fn encode(v: i64, scale: u32) -> u64 {
    (v as u64).wrapping_shl(scale)
}

/// Decodes a torus value at a scale: rounds away the noise below `2^scale` and reads the rest as a
/// signed number of `64 - scale` bits.
pub fn decode(t: u64, scale: u32) -> i64 {
    if scale == 0 {
        return t as i64;
    }
    let r = t.wrapping_add(1u64 << (scale - 1));
    (r as i64) >> scale
}
