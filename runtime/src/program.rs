//! The lowered program: what a server runs.
//!
//! A [`Program`] is a straight-line list of instructions over *slots*; each slot holds one LWE
//! ciphertext (per sample) under the master key. A program has one or more *partitions* (parameter
//! sets); each lookup runs in one of them, and every partition's GLWE key is a prefix of the master
//! key (dimension the largest `k·N`), so a ciphertext a lookup of partition `q` writes (dimension
//! `k_q·N_q`) is, padded with zeros, one under the master key, and linear instructions mix values of
//! any partitions ([`Program::slot_dims`] gives each slot's unpadded dimension). Inputs are
//! encrypted under partition 0's key. Slots `0..num_input_slots` are the
//! encrypted inputs, in the order of [`Program::inputs`], each tensor row-major; instruction `i`
//! writes slot `num_input_slots + i`. *Clear inputs* (ports with `clear` set: values the server
//! receives in the clear with each call, such as weights) are numbered apart, `$0 ..` in the order of
//! the clear ports, and are read only by [`Instr::ClearLinear`]. Four instructions exist:
//!
//! * [`Instr::Linear`]: `Σ coef·slot + constant`, wrapping on the 64-bit torus. Every leveled op of
//!   the `fhe` dialect (add, sub, mul by a clear value, matmul, conv, sum, reshapes…) lowers to these.
//! * [`Instr::ClearLinear`]: the same with coefficients and constants that are products of clear
//!   inputs (`Σ factor·w·slot + Σ w·unit`), for leveled ops with a clear-argument operand.
//! * [`Instr::Pbs`]: a table lookup. The input is multiplied by `2^shift` and `offset` is added
//!   (this re-encodes a value of any scale to the lookup's precision, see `docs/crypto.md`), then
//!   keyswitch, centered modulus switch, blind rotation with the table, sample extraction.
//! * [`Instr::Lane`]: another output of an earlier lookup's blind rotation, the sample extracted
//!   `boxes` boxes further (*many-LUT*): several small tables side by side in one accumulator, read
//!   by one bootstrap (see `docs/crypto.md`, "Many-LUT"). It costs a sample extraction.
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

/// A count or a size in bytes: digits, optionally followed by `K`, `M`, `G` or `T` (powers of 1024).
pub fn parse_size(value: &str) -> Result<u64, String> {
    let v = value.trim();
    let (digits, mult) = match v.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m = match c.to_ascii_uppercase() {
                'K' => 1u64 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => return Err(format!("unknown suffix in `{value}` (K, M, G or T)")),
            };
            (&v[..i], m)
        }
        _ => (v, 1),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|d| d.checked_mul(mult))
        .ok_or_else(|| format!("`{value}` is not a number of at most 2^64"))
}

/// Largest lookup precision the runtime accepts (table of 2^16 entries).
pub const MAX_PBS_PRECISION: u32 = 16;

/// One tensor crossing the client/server boundary: encrypted, or (inputs only) clear.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Port {
    pub name: String,
    pub shape: Vec<usize>,
    /// Declared width of the values (bits) and signedness, from the `fhe` type.
    pub width: u32,
    pub signed: bool,
    /// `log2 Δ`: a value `v` is encoded as `v·2^scale` (0 for clear inputs).
    pub scale: u32,
    /// For inputs: the first slot, or for clear inputs the first clear index (elements are
    /// consecutive). For outputs: one slot per element.
    pub slots: Vec<u32>,
    /// A clear input: sent unencrypted, read by [`Instr::ClearLinear`] only.
    pub clear: bool,
    /// Inputs only: the declared range `[lo, hi]` of the values (the `fhe.range` the passes sized
    /// every intermediate value from), inside the type's range; `None` for the whole type. Values
    /// outside it are refused at encryption, simulation and on the server (clear inputs), since the
    /// program computes them wrong.
    pub range: Option<(i64, i64)>,
}

impl Port {
    /// Number of elements (saturating: a port of a hostile program cannot overflow it).
    pub fn len(&self) -> usize {
        self.shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .unwrap_or(usize::MAX)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The range of values this port accepts (inputs) or carries: the declared range, else the
    /// type's.
    pub fn range(&self) -> (i64, i64) {
        self.range.unwrap_or_else(|| self.type_range())
    }
    /// An input port's encoding (width, scale, clear-ness) and declared range, slots aside.
    pub(crate) fn check_input(&self) -> Result<(), String> {
        let max_width = if self.clear { MAX_CLEAR_WIDTH } else { 32 };
        if self.width == 0 || self.width > max_width || self.scale > 63 || (self.clear && self.scale != 0) {
            return Err(format!("input `{}` has a bad encoding", self.name));
        }
        if let Some((lo, hi)) = self.range {
            let (tlo, thi) = self.type_range();
            if lo > hi || lo < tlo || hi > thi {
                return Err(format!(
                    "input `{}` declares the range [{lo}, {hi}], not inside its type's [{tlo}, {thi}]",
                    self.name
                ));
            }
        }
        Ok(())
    }

    /// An output port's encoding, slots aside.
    pub(crate) fn check_output(&self) -> Result<(), String> {
        if self.width == 0 || self.width > 64 || self.scale > 63 || self.clear || self.range.is_some() {
            return Err(format!("output `{}` has a bad encoding", self.name));
        }
        Ok(())
    }

    /// The range of the port's type (`width` bits, signed or not).
    pub fn type_range(&self) -> (i64, i64) {
        if self.width == 0 || self.width > 64 {
            return (0, -1); // an invalid port (refused by `validate`) accepts nothing
        }
        if self.width == 64 {
            return if self.signed {
                (i64::MIN, i64::MAX)
            } else {
                (0, i64::MAX)
            };
        }
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
    /// `Σ coef·slot + Σ factor·w[c]·slot + Σ w[c]·unit + constant` (wrapping), where `w[c]` is clear
    /// input value `c` (`$c`) of the sample: a leveled op with a clear argument as an operand.
    ClearLinear {
        terms: Vec<(u32, i64)>,
        /// `(slot, clear index, factor)`.
        products: Vec<(u32, u32, i64)>,
        /// `(clear index, unit)`: adds `w[c]·unit`.
        clear_constants: Vec<(u32, u64)>,
        constant: u64,
    },
    /// `PBS(table, slot·2^shift + offset)` with the keys of `partition`.
    Pbs {
        input: u32,
        shift: u32,
        offset: u64,
        table: u32,
        partition: u32,
    },
    /// The lookup in slot `pbs` (a [`Instr::Pbs`]) read `boxes` boxes further: the entry
    /// `m + boxes` of its table where the lookup reads `m` (negacyclic past the end, as the blind
    /// rotation gives), from the same blind rotation — its sample extracted at monomial degree
    /// `boxes·N/2^precision`. Added in file format 8 (appended: earlier programs read unchanged).
    Lane { pbs: u32, boxes: u32 },
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
    /// The parameter sets; partition 0's key encrypts the inputs. One for most programs.
    pub partitions: Vec<ParamSet>,
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

    /// Lookups (blind rotations) per sample; a [`Instr::Lane`] is not one.
    pub fn pbs_count(&self) -> usize {
        self.instrs.iter().filter(|i| matches!(i, Instr::Pbs { .. })).count()
    }

    /// [`Instr::Lane`]s per sample: more outputs of the lookups' blind rotations.
    pub fn lane_count(&self) -> usize {
        self.instrs.iter().filter(|i| matches!(i, Instr::Lane { .. })).count()
    }

    /// Which slots some instruction or output reads (indexed by slot).
    pub fn read_slots(&self) -> Vec<bool> {
        let mut used = vec![false; self.num_slots()];
        for i in &self.instrs {
            i.for_each_read(|s| used[s as usize] = true);
        }
        for p in &self.outputs {
            p.slots.iter().for_each(|&s| used[s as usize] = true);
        }
        used
    }

    /// Number of clear input values per sample (`$0 ..`).
    pub fn num_clear_values(&self) -> usize {
        self.inputs.iter().filter(|p| p.clear).map(Port::len).sum()
    }

    /// The parameters of partition 0, whose key encrypts the inputs.
    pub fn input_params(&self) -> &ParamSet {
        &self.partitions[0]
    }

    /// The master key's dimension: the largest `k·N` of the partitions. Every slot is stored at
    /// this size (padded with zeros).
    pub fn master_dimension(&self) -> usize {
        crate::params::master_dimension(&self.partitions)
    }

    /// The unpadded LWE dimension of each slot: inputs partition 0's `k·N`; a lookup its
    /// partition's; a linear instruction the largest of the slots it reads (0 with none).
    pub fn slot_dims(&self) -> Vec<u32> {
        let mut d = Vec::with_capacity(self.num_slots());
        let k0 = self.partitions.first().map_or(0, |p| p.big_lwe_dimension() as u32);
        d.resize(self.num_input_slots as usize, k0);
        for ins in &self.instrs {
            let v = match ins {
                Instr::Pbs { partition, .. } => self
                    .partitions
                    .get(*partition as usize)
                    .map_or(0, |p| p.big_lwe_dimension() as u32),
                _ => {
                    let mut m = 0;
                    ins.for_each_read(|s| m = m.max(d.get(s as usize).copied().unwrap_or(0)));
                    m
                }
            };
            d.push(v);
        }
        d
    }

    /// Per partition: how many mask elements its keyswitch key covers, the largest dimension of a
    /// slot its lookups read (0 for a partition without lookups).
    pub fn ksk_dims(&self) -> Vec<u32> {
        let dims = self.slot_dims();
        let mut k = vec![0u32; self.partitions.len()];
        for ins in &self.instrs {
            if let Instr::Pbs { input, partition, .. } = ins {
                if let (Some(m), Some(&d)) = (k.get_mut(*partition as usize), dims.get(*input as usize)) {
                    *m = (*m).max(d);
                }
            }
        }
        k
    }

    /// Lookups per partition.
    pub fn lookups_by_partition(&self) -> Vec<u64> {
        let mut c = vec![0u64; self.partitions.len()];
        for ins in &self.instrs {
            if let Instr::Pbs { partition, .. } = ins {
                if let Some(n) = c.get_mut(*partition as usize) {
                    *n += 1;
                }
            }
        }
        c
    }

    /// The dimension of the output ciphertexts: the largest of the output slots' and partition
    /// 0's (shorter outputs are padded with zeros).
    pub fn output_dimension(&self) -> usize {
        let dims = self.slot_dims();
        let k0 = self.partitions.first().map_or(0, |p| p.big_lwe_dimension());
        self.outputs
            .iter()
            .flat_map(|p| &p.slots)
            .filter_map(|&s| dims.get(s as usize))
            .map(|&d| d as usize)
            .fold(k0, usize::max)
    }

    /// The parameters in one line per partition; for a program without lookups only the ones it
    /// uses (the encryption key and its noise), since it has no bootstrap and no evaluation keys.
    pub fn params_summary(&self) -> String {
        if self.pbs_count() > 0 {
            if self.partitions.len() == 1 {
                return self.partitions[0].to_string();
            }
            let counts = self.lookups_by_partition();
            return self
                .partitions
                .iter()
                .zip(counts)
                .enumerate()
                .map(|(q, (p, c))| format!("partition {q} ({c} lookups): {p}"))
                .collect::<Vec<_>>()
                .join("\n");
        }
        let p = self.input_params();
        let r = p.raw();
        format!(
            "k={} N={} (k·N={}) noise=(glwe 2^{}), leveled: no bootstrap, no evaluation keys",
            r.glwe_dimension,
            r.polynomial_size,
            p.big_lwe_dimension(),
            r.glwe_noise_bound_log2
        )
    }

    /// A fingerprint of everything that determines the meaning of ciphertexts for this program:
    /// parameters, ports, instructions and tables. Ciphertext files carry it, so ciphertexts made for
    /// another program (even one differing only in a table) are rejected.
    pub fn fingerprint(&self) -> u64 {
        let mut h = Fnv::default();
        if let [only] = &self.partitions[..] {
            // one partition: the fingerprint of format-4 programs (their files stay valid)
            h.write(&only.fingerprint().to_le_bytes());
        } else {
            h.write(b"partitions");
            h.write(&(self.partitions.len() as u64).to_le_bytes());
            for p in &self.partitions {
                h.write(&p.fingerprint().to_le_bytes());
            }
        }
        for (tag, ports) in [(b'i', &self.inputs), (b'o', &self.outputs)] {
            for p in ports {
                h.write(&[tag]);
                h.write(p.name.as_bytes());
                h.write(&[0]);
                for d in &p.shape {
                    h.write(&(*d as u64).to_le_bytes());
                }
                h.write(&[p.width as u8, p.signed as u8, p.scale as u8, p.clear as u8]);
                match p.range {
                    None => h.write(b"-"),
                    Some((lo, hi)) => {
                        h.write(b"r");
                        h.write(&lo.to_le_bytes());
                        h.write(&hi.to_le_bytes());
                    }
                }
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
                Instr::ClearLinear {
                    terms,
                    products,
                    clear_constants,
                    constant,
                } => {
                    h.write(b"C");
                    h.write(&(terms.len() as u64).to_le_bytes());
                    for (s, c) in terms {
                        h.write(&s.to_le_bytes());
                        h.write(&c.to_le_bytes());
                    }
                    h.write(&(products.len() as u64).to_le_bytes());
                    for (s, w, c) in products {
                        h.write(&s.to_le_bytes());
                        h.write(&w.to_le_bytes());
                        h.write(&c.to_le_bytes());
                    }
                    h.write(&(clear_constants.len() as u64).to_le_bytes());
                    for (w, u) in clear_constants {
                        h.write(&w.to_le_bytes());
                        h.write(&u.to_le_bytes());
                    }
                    h.write(&constant.to_le_bytes());
                }
                Instr::Pbs {
                    input,
                    shift,
                    offset,
                    table,
                    partition,
                } => {
                    h.write(b"P");
                    h.write(&input.to_le_bytes());
                    h.write(&shift.to_le_bytes());
                    h.write(&offset.to_le_bytes());
                    h.write(&table.to_le_bytes());
                    if self.partitions.len() > 1 {
                        h.write(&partition.to_le_bytes());
                    }
                }
                Instr::Lane { pbs, boxes } => {
                    h.write(b"X");
                    h.write(&pbs.to_le_bytes());
                    h.write(&boxes.to_le_bytes());
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
        if let Some(m) = crate::params::partitions_problem(&self.partitions) {
            return bad(m);
        }
        let (mut next, mut next_clear) = (0u64, 0u64);
        for p in &self.inputs {
            if p.slots.len() != 1 {
                return bad(format!("input `{}` has a bad encoding", p.name));
            }
            if let Err(m) = p.check_input() {
                return bad(m);
            }
            let n = p.shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d as u64));
            let next = if p.clear { &mut next_clear } else { &mut next };
            let Some(n) = n else {
                return bad(format!("input `{}` has too many elements", p.name));
            };
            if p.slots[0] as u64 != *next {
                return bad(format!("input `{}` slots are not consecutive", p.name));
            }
            *next = match next.checked_add(n) {
                Some(v) if v <= u32::MAX as u64 => v,
                _ => return bad("too many input slots".into()),
            };
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
                Instr::Linear { .. } | Instr::ClearLinear { .. } => {
                    let mut late = false;
                    ins.for_each_read(|s| late |= s as u64 >= me);
                    if late {
                        return bad(format!("instruction {i} reads a slot not yet written"));
                    }
                    if let Instr::ClearLinear {
                        products,
                        clear_constants,
                        ..
                    } = ins
                    {
                        let refs = products.iter().map(|p| p.1).chain(clear_constants.iter().map(|c| c.0));
                        if refs.into_iter().any(|c| c as u64 >= next_clear) {
                            return bad(format!("instruction {i} reads a clear value that does not exist"));
                        }
                    }
                }
                Instr::Pbs {
                    input,
                    shift,
                    table,
                    partition,
                    ..
                } => {
                    if *input as u64 >= me
                        || *shift > 63
                        || *table as usize >= self.tables.len()
                        || *partition as usize >= self.partitions.len()
                    {
                        return bad(format!("lookup {i} has a bad operand"));
                    }
                    let (t, p) = (&self.tables[*table as usize], &self.partitions[*partition as usize]);
                    if t.precision > p.polynomial_size().trailing_zeros() {
                        return bad(format!(
                            "lookup {i}: a table of precision {} does not fit partition {partition}'s polynomial size {}",
                            t.precision,
                            p.polynomial_size()
                        ));
                    }
                }
                Instr::Lane { pbs, boxes } => {
                    let head = (*pbs as u64)
                        .checked_sub(self.num_input_slots as u64)
                        .filter(|&h| h < i as u64)
                        .map(|h| &self.instrs[h as usize]);
                    let Some(Instr::Pbs { table, .. }) = head else {
                        return bad(format!("lane {i} does not read an earlier lookup"));
                    };
                    // the head's own checks ran already (it is earlier)
                    let p = self.tables[*table as usize].precision;
                    if *boxes == 0 || *boxes as u64 >= 1u64 << p {
                        return bad(format!(
                            "lane {i}: {boxes} boxes further is outside its lookup's {} boxes",
                            1u64 << p
                        ));
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
            if p.slots.len() != p.len() {
                return bad(format!("output `{}` has a bad encoding", p.name));
            }
            if let Err(m) = p.check_output() {
                return bad(m);
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
                Instr::Pbs { input, .. } => d[*input as usize] + 1,
                _ => {
                    let mut m = 0;
                    ins.for_each_read(|s| m = m.max(d[s as usize]));
                    m
                }
            };
        }
        d
    }

    /// Runs the program on exact torus values (no keys, no noise): what the encrypted run computes
    /// when no lookup fails. `inputs` are the encoded input slots of one sample, `clear` its clear
    /// input values (`$0 ..`).
    pub fn simulate_slots(&self, inputs: &[u64], clear: &[i64]) -> Vec<u64> {
        let mut s = Vec::with_capacity(self.num_slots());
        s.extend_from_slice(inputs);
        for ins in &self.instrs {
            let v = match ins {
                Instr::Linear { terms, constant } => terms.iter().fold(*constant, |acc, &(slot, c)| {
                    acc.wrapping_add(s[slot as usize].wrapping_mul(c as u64))
                }),
                Instr::ClearLinear {
                    terms,
                    products,
                    clear_constants,
                    constant,
                } => {
                    let mut acc = *constant;
                    for (slot, c) in Instr::clear_coefficients(terms, products, clear) {
                        acc = acc.wrapping_add(s[slot as usize].wrapping_mul(c));
                    }
                    for &(w, unit) in clear_constants {
                        acc = acc.wrapping_add((clear[w as usize] as u64).wrapping_mul(unit));
                    }
                    acc
                }
                Instr::Pbs { .. } => self.simulate_lookup(ins, &s, 0),
                Instr::Lane { pbs, boxes } => {
                    let head = &self.instrs[*pbs as usize - self.num_input_slots as usize];
                    self.simulate_lookup(head, &s, *boxes)
                }
            };
            s.push(v);
        }
        s
    }
}

impl Program {
    /// The exact output of lookup `ins` (a [`Instr::Pbs`]) read `boxes` boxes further, on the slot
    /// values `s`: the message is the top `precision` bits below the padding bit; a set padding bit
    /// gives the negated entry (negacyclic), as the blind rotation does.
    fn simulate_lookup(&self, ins: &Instr, s: &[u64], boxes: u32) -> u64 {
        let Instr::Pbs {
            input,
            shift,
            offset,
            table,
            ..
        } = ins
        else {
            unreachable!("validated: a lane reads a lookup")
        };
        let t = &self.tables[*table as usize];
        let x = s[*input as usize].wrapping_shl(*shift).wrapping_add(*offset);
        let p = t.precision;
        let rounded = (x.wrapping_add(1u64 << (62 - p)) >> (63 - p)).wrapping_add(boxes as u64);
        let m = (rounded & ((1u64 << p) - 1)) as usize;
        if (rounded >> p) & 1 == 1 {
            t.values[m].wrapping_neg()
        } else {
            t.values[m]
        }
    }
}

impl Instr {
    /// Calls `f` with every slot the instruction reads (repeats possible).
    pub fn for_each_read(&self, mut f: impl FnMut(u32)) {
        match self {
            Instr::Linear { terms, .. } => terms.iter().for_each(|&(s, _)| f(s)),
            Instr::ClearLinear { terms, products, .. } => {
                terms.iter().for_each(|&(s, _)| f(s));
                products.iter().for_each(|&(s, _, _)| f(s));
            }
            Instr::Pbs { input, .. } => f(*input),
            // the blind rotation it shares (so its depth and dimension are the lookup's)
            Instr::Lane { pbs, .. } => f(*pbs),
        }
    }

    /// The torus coefficients `(slot, coef)` of a `ClearLinear` for one sample's clear values: its
    /// terms, then `factor·w` per product (wrapping; a slot may repeat).
    pub(crate) fn clear_coefficients<'a>(
        terms: &'a [(u32, i64)],
        products: &'a [(u32, u32, i64)],
        clear: &'a [i64],
    ) -> impl Iterator<Item = (u32, u64)> + 'a {
        terms.iter().map(|&(s, c)| (s, c as u64)).chain(
            products
                .iter()
                .map(move |&(s, w, f)| (s, (f as u64).wrapping_mul(clear[w as usize] as u64))),
        )
    }
}

/// What a server agrees to run: bounds on a program's memory and work, checked before anything
/// is allocated ([`Limits::check_program`] when a server is built, [`Limits::check_run`] for each
/// batch). A program file is small, but its shapes can ask for any number of slots and its tables
/// for accumulators of `(k+1)·N` words each; without these bounds a 20 MB file could make a server
/// allocate terabytes. The defaults fit every model in the benchmark table with room to spare;
/// raise them for bigger programs (`fhec run --limit`, `Server::with_limits`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Ciphertext memory of one sample: slots × (master k·N + 1) × 8 bytes.
    pub max_sample_bytes: u64,
    /// Table lookups of one sample.
    pub max_lookups: u64,
    /// Lookup accumulators: tables × partitions × (k + 1) × N × 8 bytes (the largest).
    pub max_table_bytes: u64,
    /// Samples of one batch.
    pub max_samples: u64,
    /// Result ciphertexts of one batch: samples × output elements × (output k·N + 1) × 8 bytes.
    pub max_result_bytes: u64,
}

const GIB: u64 = 1 << 30;

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_sample_bytes: 16 * GIB,
            max_lookups: 1 << 24,
            max_table_bytes: 4 * GIB,
            max_samples: 1 << 16,
            max_result_bytes: 16 * GIB,
        }
    }
}

impl Limits {
    /// No bounds (for a program you built yourself).
    pub fn unlimited() -> Limits {
        Limits {
            max_sample_bytes: u64::MAX,
            max_lookups: u64::MAX,
            max_table_bytes: u64::MAX,
            max_samples: u64::MAX,
            max_result_bytes: u64::MAX,
        }
    }

    /// Sets one limit by name (`max_sample_bytes`, `max_lookups`, `max_table_bytes`, `max_samples`,
    /// `max_result_bytes`); sizes take a `K`/`M`/`G`/`T` suffix (powers of 1024).
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), RuntimeError> {
        let n = parse_size(value).map_err(|m| RuntimeError::Limit(format!("limit `{name}`: {m}")))?;
        let slot = match name {
            "max_sample_bytes" => &mut self.max_sample_bytes,
            "max_lookups" => &mut self.max_lookups,
            "max_table_bytes" => &mut self.max_table_bytes,
            "max_samples" => &mut self.max_samples,
            "max_result_bytes" => &mut self.max_result_bytes,
            _ => {
                return Err(RuntimeError::Limit(format!(
                    "unknown limit `{name}` (max_sample_bytes, max_lookups, max_table_bytes, max_samples, max_result_bytes)"
                )))
            }
        };
        *slot = n;
        Ok(())
    }

    /// Checks a program's per-sample memory, lookups and tables against these limits.
    pub fn check_program(&self, p: &Program) -> Result<(), RuntimeError> {
        let l = p.master_dimension() as u64 + 1;
        let glwe = p
            .partitions
            .iter()
            .map(|q| (q.glwe_dimension() as u64 + 1) * q.polynomial_size() as u64 * 8)
            .max()
            .unwrap_or(0)
            * p.partitions.len() as u64;
        let over = |what: &str, need: u128, limit: u64, name: &str| {
            Err(RuntimeError::Limit(format!(
                "program `{}` needs {need} {what}, above this server's limit of {limit} (`{name}`)",
                p.name
            )))
        };
        let sample = p.num_slots() as u128 * l as u128 * 8;
        if sample > self.max_sample_bytes as u128 {
            return over(
                "bytes of ciphertexts per sample",
                sample,
                self.max_sample_bytes,
                "max_sample_bytes",
            );
        }
        let lookups = p.pbs_count() as u128;
        if lookups > self.max_lookups as u128 {
            return over("lookups per sample", lookups, self.max_lookups, "max_lookups");
        }
        let tables = p.tables.len() as u128 * glwe as u128;
        if tables > self.max_table_bytes as u128 {
            return over(
                "bytes of lookup accumulators",
                tables,
                self.max_table_bytes,
                "max_table_bytes",
            );
        }
        Ok(())
    }

    /// [`Limits::check_program`], and the batch's size and result memory.
    pub fn check_run(&self, p: &Program, samples: usize) -> Result<(), RuntimeError> {
        self.check_program(p)?;
        if samples as u64 > self.max_samples {
            return Err(RuntimeError::Limit(format!(
                "a batch of {samples} samples is above this server's limit of {} (`max_samples`)",
                self.max_samples
            )));
        }
        let l = p.output_dimension() as u128 + 1;
        let out: u128 = p.outputs.iter().map(|o| o.slots.len() as u128).sum();
        let result = samples as u128 * out * l * 8;
        if result > self.max_result_bytes as u128 {
            return Err(RuntimeError::Limit(format!(
                "a batch of {samples} samples needs {result} bytes of results, above this server's limit of {} \
                 (`max_result_bytes`): send smaller batches",
                self.max_result_bytes
            )));
        }
        Ok(())
    }
}

/// Widest clear input (bits): clear values are multiplied into torus coefficients.
pub const MAX_CLEAR_WIDTH: u32 = 32;

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

/// Programs of file format 4 (one parameter set; lookups name no partition), read and converted:
/// model files written before partitions embed them.
pub(crate) mod v4 {
    use serde::Deserialize;

    use super::{NoiseReport, Origin, Port, Table};
    use crate::params::ParamSetV0;

    #[derive(Deserialize)]
    pub(crate) enum Instr {
        Linear {
            terms: Vec<(u32, i64)>,
            constant: u64,
        },
        ClearLinear {
            terms: Vec<(u32, i64)>,
            products: Vec<(u32, u32, i64)>,
            clear_constants: Vec<(u32, u64)>,
            constant: u64,
        },
        Pbs {
            input: u32,
            shift: u32,
            offset: u64,
            table: u32,
        },
    }

    #[derive(Deserialize)]
    pub(crate) struct Program {
        name: String,
        params: ParamSetV0,
        inputs: Vec<Port>,
        outputs: Vec<Port>,
        num_input_slots: u32,
        instrs: Vec<Instr>,
        tables: Vec<Table>,
        instr_origin: Vec<u32>,
        origins: Vec<Origin>,
        noise: NoiseReport,
    }

    impl From<Program> for super::Program {
        fn from(p: Program) -> super::Program {
            super::Program {
                name: p.name,
                partitions: vec![p.params.0],
                inputs: p.inputs,
                outputs: p.outputs,
                num_input_slots: p.num_input_slots,
                instrs: p
                    .instrs
                    .into_iter()
                    .map(|i| match i {
                        Instr::Linear { terms, constant } => super::Instr::Linear { terms, constant },
                        Instr::ClearLinear {
                            terms,
                            products,
                            clear_constants,
                            constant,
                        } => super::Instr::ClearLinear {
                            terms,
                            products,
                            clear_constants,
                            constant,
                        },
                        Instr::Pbs {
                            input,
                            shift,
                            offset,
                            table,
                        } => super::Instr::Pbs {
                            input,
                            shift,
                            offset,
                            table,
                            partition: 0,
                        },
                    })
                    .collect(),
                tables: p.tables,
                instr_origin: p.instr_origin,
                origins: p.origins,
                noise: p.noise,
            }
        }
    }
}

/// Programs of formats 5 to 8: the current layout but for the parameter sets' (`P`: the layout of
/// formats 5–6, before KS32, or of formats 7–8, before rounded bootstrap keys).
pub(crate) mod legacy {
    use serde::{Deserialize, Serialize};

    use super::{Instr, NoiseReport, Origin, Port, Table};
    use crate::params::{ParamSet, ParamSetV0, ParamSetV1};

    /// Formats 5 and 6 (partitions, before KS32).
    pub(crate) type V6 = Program<ParamSetV0>;
    /// Formats 7 and 8 (KS32, many-LUT lanes; before rounded bootstrap keys).
    pub(crate) type V8 = Program<ParamSetV1>;

    #[derive(Deserialize, Serialize)]
    pub(crate) struct Program<P> {
        name: String,
        partitions: Vec<P>,
        inputs: Vec<Port>,
        outputs: Vec<Port>,
        num_input_slots: u32,
        instrs: Vec<Instr>,
        tables: Vec<Table>,
        instr_origin: Vec<u32>,
        origins: Vec<Origin>,
        noise: NoiseReport,
    }

    impl From<ParamSetV0> for ParamSet {
        fn from(p: ParamSetV0) -> ParamSet {
            p.0
        }
    }

    impl From<ParamSetV1> for ParamSet {
        fn from(p: ParamSetV1) -> ParamSet {
            p.0
        }
    }

    /// `p` in the layout of formats 7–8 (tests write such files with it).
    #[cfg(test)]
    pub(crate) fn v8_of(p: &super::Program) -> Program<crate::params::RawParamSetV1> {
        Program {
            name: p.name.clone(),
            partitions: p
                .partitions
                .iter()
                .map(|q| {
                    let r = q.raw();
                    assert_eq!(r.bsk_rounding_log2, 0, "format 8 had no rounded keys");
                    crate::params::RawParamSetV1 {
                        lwe_dimension: r.lwe_dimension,
                        glwe_dimension: r.glwe_dimension,
                        polynomial_size: r.polynomial_size,
                        lwe_noise_bound_log2: r.lwe_noise_bound_log2,
                        glwe_noise_bound_log2: r.glwe_noise_bound_log2,
                        pbs_base_log: r.pbs_base_log,
                        pbs_level: r.pbs_level,
                        ks_base_log: r.ks_base_log,
                        ks_level: r.ks_level,
                        ks_modulus_log2: r.ks_modulus_log2,
                    }
                })
                .collect(),
            inputs: p.inputs.clone(),
            outputs: p.outputs.clone(),
            num_input_slots: p.num_input_slots,
            instrs: p.instrs.clone(),
            tables: p.tables.clone(),
            instr_origin: p.instr_origin.clone(),
            origins: p.origins.clone(),
            noise: p.noise.clone(),
        }
    }

    impl<P: Into<ParamSet>> From<Program<P>> for super::Program {
        fn from(p: Program<P>) -> super::Program {
            super::Program {
                name: p.name,
                partitions: p.partitions.into_iter().map(Into::into).collect(),
                inputs: p.inputs,
                outputs: p.outputs,
                num_input_slots: p.num_input_slots,
                instrs: p.instrs,
                tables: p.tables,
                instr_origin: p.instr_origin,
                origins: p.origins,
                noise: p.noise,
            }
        }
    }
}
