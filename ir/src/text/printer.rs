//! The printer of the text format (see the module doc of `text`).

use crate::attr::write_attrs;
use crate::module::{Function, Module, ValueId};
use std::collections::HashSet;
use std::fmt::Write;

/// Prints a module: its functions separated by blank lines, each ending with a newline.
pub fn print_module(m: &Module) -> String {
    let mut out = String::new();
    for (i, f) in m.functions.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out += &print_function(f);
    }
    out
}

/// Whether `name` can be printed as a value name without quoting.
pub(crate) fn valid_value_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.$-".contains(&b))
}

/// Assigns a printable, unique name to every value: the source name when it is valid and unique,
/// otherwise the next free number.
fn value_names(f: &Function) -> Vec<String> {
    let mut names = vec![String::new(); f.num_values()];
    let mut used = HashSet::new();
    let order: Vec<ValueId> = f.arg_values().chain(f.body.iter().map(|&o| f.op(o).result)).collect();
    let mut pending = Vec::new();
    for &v in &order {
        match &f.value(v).name {
            Some(n) if valid_value_name(n) && !used.contains(n.as_str()) => {
                used.insert(n.clone());
                names[v.index()] = n.clone();
            }
            _ => pending.push(v),
        }
    }
    let mut next = 0usize;
    for v in pending {
        while used.contains(next.to_string().as_str()) {
            next += 1;
        }
        names[v.index()] = next.to_string();
        used.insert(next.to_string());
        next += 1;
    }
    names
}

/// Prints one function.
pub fn print_function(f: &Function) -> String {
    let names = value_names(f);
    let name_of = |v: ValueId| names.get(v.index()).map_or("?", |s| s.as_str());
    let mut out = String::new();
    let _ = write!(out, "func.func @{}(", f.name);
    for (i, a) in f.args.iter().enumerate() {
        if i > 0 {
            out += ", ";
        }
        let _ = write!(out, "%{}: {}", name_of(a.value), f.ty(a.value));
        let _ = write_attrs(&mut out, &a.attrs);
    }
    out += ")";
    match f.result_types.as_slice() {
        [] => {}
        [t] => {
            let _ = write!(out, " -> {t}");
        }
        ts => {
            let list: Vec<String> = ts.iter().map(|t| t.to_string()).collect();
            let _ = write!(out, " -> ({})", list.join(", "));
        }
    }
    out += " {\n";
    for &o in &f.body {
        let op = f.op(o);
        let operands: Vec<String> = op.operands.iter().map(|&v| format!("%{}", name_of(v))).collect();
        let types: Vec<String> = op.operands.iter().map(|&v| f.ty(v).to_string()).collect();
        let _ = write!(
            out,
            "  %{} = \"{}\"({})",
            name_of(op.result),
            op.kind.name(),
            operands.join(", ")
        );
        let _ = write_attrs(&mut out, &op.attrs);
        let _ = writeln!(out, " : ({}) -> {}", types.join(", "), f.ty(op.result));
    }
    let rets: Vec<String> = f.returns.iter().map(|&v| format!("%{}", name_of(v))).collect();
    let rtys: Vec<String> = f.returns.iter().map(|&v| f.ty(v).to_string()).collect();
    let _ = writeln!(
        out,
        "  \"func.return\"({}) : ({}) -> ()",
        rets.join(", "),
        rtys.join(", ")
    );
    out += "}\n";
    out
}
