//! The printer of the `tfhe` dialect.

use super::*;

/// A parameter set as the dialect's attribute dictionary.
fn params_attrs(p: &fhec_runtime::ParamSet) -> String {
    let r = p.raw();
    format!(
        "{{n = {}, k = {}, N = {}, lwe_noise_log2 = {}, glwe_noise_log2 = {}, pbs_base_log = {}, pbs_level = {}, \
         ks_base_log = {}, ks_level = {}{}{}}}",
        r.lwe_dimension,
        r.glwe_dimension,
        r.polynomial_size,
        r.lwe_noise_bound_log2,
        r.glwe_noise_bound_log2,
        r.pbs_base_log,
        r.pbs_level,
        r.ks_base_log,
        r.ks_level,
        // written only where it is not the default
        if r.ks_modulus_log2 == 64 {
            String::new()
        } else {
            format!(", ks_modulus_log2 = {}", r.ks_modulus_log2)
        },
        if r.bsk_rounding_log2 == 0 {
            String::new()
        } else {
            format!(", bsk_rounding_log2 = {}", r.bsk_rounding_log2)
        }
    )
}

/// Prints a program in the `tfhe` dialect. Total: an invalid program prints too (it may not parse).
pub fn print_program(p: &Program) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "tfhe.program {} {} {{",
        symbol(&p.name),
        params_attrs(&p.partitions[0])
    );
    for (q, part) in p.partitions.iter().enumerate().skip(1) {
        let _ = writeln!(o, "  tfhe.partition @p{q} {}", params_attrs(part));
    }
    for port in &p.inputs {
        let first = port.slots.first().copied().unwrap_or(0) as u64;
        let (statement, sigil) = if port.clear {
            ("tfhe.clear_input", '$')
        } else {
            ("tfhe.input", '%')
        };
        let range = match elements(&port.shape) {
            0 => "()".to_string(),
            1 => format!("{sigil}{first}"),
            n => format!("{sigil}{first} ... {sigil}{}", first.saturating_add(n - 1)),
        };
        let _ = writeln!(o, "  {statement} {} -> {range}", port_head(port, !port.clear));
    }
    for (i, ins) in p.instrs.iter().enumerate() {
        let slot = p.num_input_slots as u64 + i as u64;
        let _ = write!(o, "  %{slot} = ");
        match ins {
            Instr::Linear { terms, constant } => {
                let terms: Vec<String> = terms
                    .iter()
                    .map(|&(s, c)| if c == 1 { format!("%{s}") } else { format!("%{s} * {c}") })
                    .collect();
                let _ = write!(o, "\"tfhe.linear\"({}) {{constant = {constant:#x}}}", terms.join(", "));
            }
            Instr::ClearLinear {
                terms,
                products,
                clear_constants,
                constant,
            } => {
                let operands: Vec<String> = terms
                    .iter()
                    .map(|&(s, c)| if c == 1 { format!("%{s}") } else { format!("%{s} * {c}") })
                    .chain(products.iter().map(|&(s, w, f)| {
                        if f == 1 {
                            format!("%{s} * ${w}")
                        } else {
                            format!("%{s} * ${w} * {f}")
                        }
                    }))
                    .chain(clear_constants.iter().map(|&(w, unit)| format!("${w} * {unit:#x}")))
                    .collect();
                let _ = write!(
                    o,
                    "\"tfhe.clear_linear\"({}) {{constant = {constant:#x}}}",
                    operands.join(", ")
                );
            }
            Instr::Pbs {
                input,
                shift,
                offset,
                table,
                partition,
            } => {
                let part = if *partition == 0 {
                    String::new()
                } else {
                    format!(", partition = @p{partition}")
                };
                let _ = write!(
                    o,
                    "\"tfhe.pbs\"(%{input}) {{shift = {shift}, offset = {offset:#x}, table = @t{table}{part}}}"
                );
            }
            Instr::Lane { pbs, boxes } => {
                let _ = write!(o, "\"tfhe.lane\"(%{pbs}) {{boxes = {boxes}}}");
            }
        }
        if let Some(origin) = p.instr_origin.get(i) {
            let _ = write!(o, " origin @o{origin}");
        }
        o.push('\n');
    }
    for port in &p.outputs {
        let slots: Vec<String> = port.slots.iter().map(|s| format!("%{s}")).collect();
        let _ = writeln!(o, "  tfhe.output {} = ({})", port_head(port, true), slots.join(", "));
    }
    for (i, t) in p.tables.iter().enumerate() {
        let values: Vec<String> = t.values.iter().map(|v| format!("{v:#x}")).collect();
        let _ = writeln!(
            o,
            "  tfhe.table @t{i} {{precision = {}}} = [{}]",
            t.precision,
            values.join(", ")
        );
    }
    for (i, origin) in p.origins.iter().enumerate() {
        let _ = write!(o, "  tfhe.origin @o{i} {}", quote(&origin.op));
        if let Some(loc) = &origin.location {
            let _ = write!(o, " at {}", quote(loc));
        }
        o.push('\n');
    }
    let n = &p.noise;
    let pbs: Vec<String> = n.pbs_by_precision.iter().map(|(p, c)| format!("{p}: {c}")).collect();
    let _ = writeln!(
        o,
        "  tfhe.noise {{worst_log2 = {:?}, global_log2 = {:?}, estimated_seconds = {:?}, pbs = [{}]}}",
        n.log2_p_error_worst_lookup,
        n.log2_p_error_global,
        n.estimated_seconds,
        pbs.join(", ")
    );
    o.push_str("}\n");
    o
}

/// `"name" [d0, d1] {width = w, signed = b, scale = s}`, without the scale for a clear input.
fn port_head(p: &Port, with_scale: bool) -> String {
    let dims: Vec<String> = p.shape.iter().map(|d| d.to_string()).collect();
    let scale = if with_scale {
        format!(", scale = {}", p.scale)
    } else {
        String::new()
    };
    let range = match p.range {
        Some((lo, hi)) => format!(", min = {lo}, max = {hi}"),
        None => String::new(),
    };
    format!(
        "{} [{}] {{width = {}, signed = {}{scale}{range}}}",
        quote(&p.name),
        dims.join(", "),
        p.width,
        p.signed
    )
}

/// Number of elements of a shape, saturating (the printer must not panic on a bad program).
fn elements(shape: &[usize]) -> u64 {
    shape.iter().fold(1u64, |a, &d| a.saturating_mul(d as u64))
}
