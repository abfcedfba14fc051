//! Many-LUT: several lookups on one input in one blind rotation (`docs/crypto.md`, "Many-LUT").
//!
//! A plain table lookup of width `w` reads its input re-encoded to `[0, 2^w)` at the top of its
//! precision (`shift = P − w`, `P` its component's precision), so when `shift ≥ κ` the same input
//! read at precision `w + κ` (`shift − κ`) is a message whose top `κ` bits are zero. `K = 2^κ`
//! tables `T_0 … T_{K−1}` of the same input, laid side by side in one table of `2^(w+κ)` entries
//! (`T_j` at entries `j·2^w ..`), are then all read by one blind rotation: the lookup itself gives
//! `T_0`, and [`Instr::Lane`] `j` (its sample extracted `j·2^w` boxes further) gives `T_j`. Each
//! output is exactly a lookup of precision `w + κ` on that input (the same failure probability), so
//! the group's one constraint is the first lookup's at precision `w + κ`; its input's noise relative
//! to a box is unchanged (`4^−κ` the amplification, `2^−κ` the box), only the bootstrap's own
//! keyswitch and modulus-switch noise count `4^κ` more. [`group`] rewrites a lowered program that
//! way; whether it pays is the cost model's call (`crate::compile` compiles both).

use std::collections::{BTreeMap, HashMap};

use fhec_ir::ValueId;
use fhec_runtime::program::{Instr, Table};

use crate::lower::Lowered;

/// Widest grouped table (bits). Measured (`fhec-bench many-lut`, docs/benchmarks.md "Many-LUT"):
/// grouped tables of up to 4 bits are 1.3–1.9× faster than separate lookups; at 5 bits and more the
/// wider set costs about what the rotations save (or more), with 2–4× the keys. The choice is
/// all-or-nothing per program, so a few wide groups would also spoil the narrow ones' gain.
pub const MAX_GROUPED_PRECISION: u32 = 4;

/// Plain lookups of `l` by (input, shift, offset, width), in program order: each bucket can share
/// blind rotations.
fn buckets(l: &Lowered) -> BTreeMap<(u32, u32, u64, u32), Vec<crate::lower::PlainLookup>> {
    let mut buckets: BTreeMap<(u32, u32, u64, u32), Vec<_>> = BTreeMap::new();
    for p in &l.plain_lookups {
        if let Some(Instr::Pbs {
            input,
            shift,
            offset,
            table,
            ..
        }) = l.instrs.get(p.instr as usize)
        {
            let w = l.tables[*table as usize].precision;
            buckets.entry((*input, *shift, *offset, w)).or_default().push(*p);
        }
    }
    buckets
}

/// Where a lowering needs more precision for lanes (for [`crate::lower::lower_function_with`]):
/// per `fhe` value read by `n ≥ 2` plain lookups on one input of width `w`, `w + ⌈log2 n⌉` bits (at
/// most [`MAX_GROUPED_PRECISION`]); empty when no lookups share an input.
pub fn room(l: &Lowered) -> HashMap<ValueId, u32> {
    let mut room: HashMap<ValueId, u32> = HashMap::new();
    for ((_, _, _, w), members) in buckets(l) {
        let n = members.len() as u32;
        if n < 2 || w >= MAX_GROUPED_PRECISION {
            continue;
        }
        let want = (w + n.next_power_of_two().trailing_zeros()).min(MAX_GROUPED_PRECISION);
        for v in members.iter().filter_map(|p| p.value) {
            let r = room.entry(v).or_default();
            *r = (*r).max(want);
        }
    }
    room
}

/// `l` with its plain lookups on a common input grouped into lanes of one blind rotation, or `None`
/// when no two of them can share one. Slots keep their numbers (the first lookup of a group stays a
/// lookup, the others become its lanes), so outputs and later instructions are untouched; unused
/// tables are dropped.
pub fn group(l: &Lowered) -> Option<Lowered> {
    let mut out = l.clone();
    let mut dropped = vec![false; l.constraints.len()];
    let mut any = false;
    for ((input, shift, offset, w), members) in buckets(l) {
        let n = members.len() as u32;
        let room = shift.min(MAX_GROUPED_PRECISION.saturating_sub(w));
        let kappa = n.next_power_of_two().trailing_zeros().min(room);
        // the offset (a torus constant added after the shift) must scale down exactly
        if n < 2 || kappa == 0 || offset.trailing_zeros() < kappa {
            continue;
        }
        let lanes = 1usize << kappa;
        for group in members.chunks(lanes).filter(|g| g.len() > 1) {
            any = true;
            let (head, head_c) = (group[0].instr, group[0].constraint);
            let mut values = vec![0u64; 1 << (w + kappa)];
            for (j, p) in group.iter().enumerate() {
                let Instr::Pbs { table, .. } = &l.instrs[p.instr as usize] else {
                    unreachable!("plain lookups are lookups")
                };
                let t = &l.tables[*table as usize].values;
                values[j << w..(j + 1) << w].copy_from_slice(t);
            }
            out.tables.push(Table {
                precision: w + kappa,
                values,
            });
            out.instrs[head as usize] = Instr::Pbs {
                input,
                shift: shift - kappa,
                offset: offset >> kappa,
                table: out.tables.len() as u32 - 1,
                partition: 0,
            };
            let amp = 4f64.powi(-(kappa as i32));
            let c = &mut out.constraints[head_c];
            c.precision = w + kappa;
            c.fresh_weight *= amp;
            c.pbs_weight *= amp;
            let head_slot = l.num_input_slots + head;
            for (j, p) in group.iter().enumerate().skip(1) {
                out.instrs[p.instr as usize] = Instr::Lane {
                    pbs: head_slot,
                    boxes: (j as u32) << w,
                };
                dropped[p.constraint] = true;
            }
        }
    }
    if !any {
        return None;
    }
    let mut keep = dropped.iter().map(|d| !d);
    out.constraints.retain(|_| keep.next().unwrap_or(true));
    out.plain_lookups.clear();
    compact_tables(&mut out);
    Some(out)
}

/// Drops the tables no lookup reads (and duplicates), renumbering the lookups' references.
fn compact_tables(l: &mut Lowered) {
    let mut ids: HashMap<(u32, Vec<u64>), u32> = HashMap::new();
    let mut tables: Vec<Table> = Vec::new();
    for ins in &mut l.instrs {
        if let Instr::Pbs { table, .. } = ins {
            let t = &l.tables[*table as usize];
            *table = *ids.entry((t.precision, t.values.clone())).or_insert_with(|| {
                tables.push(t.clone());
                tables.len() as u32 - 1
            });
        }
    }
    l.tables = tables;
}
