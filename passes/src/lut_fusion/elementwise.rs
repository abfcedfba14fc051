//! Fusion per element (lookups on single elements of a tensor) and the grouping of lookups on one input
//! into `fhe.multi_lut`.

use super::*;

/// `lut(T2, add|mul(lut(T1, x), C))` with a per-element clear constant `C` (which the e-graph, working
/// on whole tensors, leaves alone) → one `fhe.mapped_lut(x)`: a table per distinct constant value,
/// `T_c[v] = T2[T1[v] ∘ c]`, chosen per element by `map`. Saves a lookup per element. The inner values
/// must have no other use; the dead ops go with the next `canonicalize`.
pub(super) fn fuse_per_element(f: &Function, ctx: &mut PassContext) -> Result<Function, Diagnostic> {
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
pub(super) fn group_multi_lut(f: &Function, ctx: &mut PassContext) -> Result<Function, Diagnostic> {
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
                r.builder().set_span(v, op.span);
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
