//! The parser's statements: the program header, ports, instructions, outputs, tables, origins, noise.

use super::*;

impl Parser<'_> {
    pub(super) fn program(&mut self) -> PResult<Program> {
        let head = self.word("tfhe.program")?;
        let t = self.next();
        let name = match t.tok {
            Tok::Sym(s) => s,
            _ => return self.unexpected(&t, "the program name `@name`"),
        };
        let params = self.params()?;
        self.punct(b'{')?;

        let mut prog = Program {
            name,
            partitions: vec![params],
            inputs: Vec::new(),
            outputs: Vec::new(),
            num_input_slots: 0,
            instrs: Vec::new(),
            tables: Vec::new(),
            instr_origin: Vec::new(),
            origins: Vec::new(),
            noise: NoiseReport::default(),
        };
        // references checked once everything is read: (index, where)
        let mut table_refs: Vec<(u32, Span)> = Vec::new();
        let mut origin_refs: Vec<(u32, Span)> = Vec::new();
        let mut phase = Phase::Partitions;
        let mut seen_noise = false;
        loop {
            let t = self.peek().clone();
            let word = if t.tok == Tok::Word { self.text(t.span) } else { "" };
            let (stmt, what) = match (&t.tok, word) {
                (Tok::Punct(b'}'), _) => break,
                (Tok::Word, "tfhe.partition") => (Phase::Partitions, "a partition"),
                (Tok::Word, "tfhe.input") => (Phase::Inputs, "an input"),
                (Tok::Word, "tfhe.clear_input") => (Phase::Inputs, "a clear input"),
                (Tok::Slot(_), _) => (Phase::Instrs, "an instruction"),
                (Tok::Word, "tfhe.output") => (Phase::Outputs, "an output"),
                (Tok::Word, "tfhe.table") => (Phase::Tables, "a table"),
                (Tok::Word, "tfhe.origin") => (Phase::Origins, "an origin"),
                (Tok::Word, "tfhe.noise") => (Phase::Noise, "the noise report"),
                (Tok::Word, w) => {
                    return err(
                        t.span,
                        format!(
                            "unknown statement `{w}` (expected tfhe.partition, tfhe.input, tfhe.clear_input, tfhe.output, tfhe.table, \
                             tfhe.origin, tfhe.noise or an instruction `%N = ...`)"
                        ),
                    )
                }
                (Tok::Str(_), _) => {
                    return err(t.span, "an instruction must define a slot: `%N = \"tfhe.…\"(...)`");
                }
                _ => return self.unexpected(&t, "a statement or `}`"),
            };
            if stmt < phase || (stmt == Phase::Noise && seen_noise) {
                let msg = if stmt == Phase::Noise && seen_noise {
                    "the noise report is given twice".to_string()
                } else {
                    format!(
                        "{what} cannot follow {}: the order is partitions, inputs, instructions, outputs, tables, origins, noise",
                        phase.plural()
                    )
                };
                return err(t.span, msg);
            }
            phase = stmt;
            match stmt {
                Phase::Partitions => self.partition(&mut prog)?,
                Phase::Inputs => self.input(&mut prog, word == "tfhe.clear_input")?,
                Phase::Instrs => self.instr(&mut prog, &mut table_refs, &mut origin_refs)?,
                Phase::Outputs => self.output(&mut prog)?,
                Phase::Tables => self.table(&mut prog)?,
                Phase::Origins => self.origin(&mut prog)?,
                Phase::Noise => {
                    seen_noise = true;
                    self.noise(&mut prog)?
                }
            }
        }
        self.punct(b'}')?;
        let t = self.next();
        if t.tok != Tok::Eof {
            return self.unexpected(&t, "the end of the text after the program");
        }
        for (i, span) in table_refs {
            if i as usize >= prog.tables.len() {
                return err(span, format!("reference to undefined table @t{i}"));
            }
        }
        for (i, span) in origin_refs {
            if i as usize >= prog.origins.len() {
                return err(span, format!("reference to undefined origin @o{i}"));
            }
        }
        prog.validate().map_err(|e| Diagnostic::at(e.to_string(), Some(head)))?;
        Ok(prog)
    }

    /// `tfhe.partition @pN {params}`: partitions 1, 2, … in order (partition 0 is the header's).
    fn partition(&mut self, prog: &mut Program) -> PResult<()> {
        self.word("tfhe.partition")?;
        let t = self.next();
        let want = format!("p{}", prog.partitions.len());
        match &t.tok {
            Tok::Sym(s) if *s == want => {}
            Tok::Sym(s) => return err(t.span, format!("expected partition `@{want}` next, found `@{s}`")),
            _ => return self.unexpected(&t, "a partition name `@pN`"),
        }
        if prog.partitions.len() >= fhec_runtime::params::MAX_PARTITIONS {
            return err(
                t.span,
                format!("more than {} partitions", fhec_runtime::params::MAX_PARTITIONS),
            );
        }
        let params = self.params()?;
        prog.partitions.push(params);
        Ok(())
    }

    pub(super) fn params(&mut self) -> PResult<ParamSet> {
        const KEYS: [&str; 11] = [
            "n",
            "k",
            "N",
            "lwe_noise_log2",
            "glwe_noise_log2",
            "pbs_base_log",
            "pbs_level",
            "ks_base_log",
            "ks_level",
            "ks_modulus_log2",
            "bsk_rounding_log2",
        ];
        let mut a = self.attrs()?;
        let dict = a.span;
        let raw = RawParamSet {
            lwe_dimension: self.take_usize(&mut a, "n")?.0,
            glwe_dimension: self.take_usize(&mut a, "k")?.0,
            polynomial_size: self.take_usize(&mut a, "N")?.0,
            lwe_noise_bound_log2: self.take_u32(&mut a, "lwe_noise_log2")?.0,
            glwe_noise_bound_log2: self.take_u32(&mut a, "glwe_noise_log2")?.0,
            pbs_base_log: self.take_small(&mut a, "pbs_base_log")?,
            pbs_level: self.take_small(&mut a, "pbs_level")?,
            ks_base_log: self.take_small(&mut a, "ks_base_log")?,
            ks_level: self.take_small(&mut a, "ks_level")?,
            // optional: 64 (the native modulus) when absent
            ks_modulus_log2: if a.items.iter().any(|x| x.key == "ks_modulus_log2") {
                self.take_u32(&mut a, "ks_modulus_log2")?.0
            } else {
                64
            },
            // optional: 0 (bootstrap keys sent whole) when absent
            bsk_rounding_log2: if a.items.iter().any(|x| x.key == "bsk_rounding_log2") {
                self.take_u32(&mut a, "bsk_rounding_log2")?.0
            } else {
                0
            },
        };
        self.finish(a, &KEYS)?;
        ParamSet::new(raw).map_err(|e| {
            Diagnostic::at(e.to_string(), Some(dict)).with_help(
                "use parameters found by `fhec compile` (only sets of at least 128-bit security are accepted)",
            )
        })
    }

    /// A decomposition parameter (base log or level): at most 64, whatever the product.
    pub(super) fn take_small(&self, a: &mut Attrs, key: &str) -> PResult<usize> {
        let (v, span) = self.take_usize(a, key)?;
        if v > 64 {
            return err(span, format!("`{key}` = {v} is above 64"));
        }
        Ok(v)
    }

    /// `"name" [d, ...] {width = w, signed = b, scale = s}` (no scale for a clear input, whose scale is
    /// 0); checks the encoding against the limits of inputs (`max_width` 32) or outputs (64).
    pub(super) fn port_head(&mut self, max_width: u32, clear: bool) -> PResult<(Port, u64, Span)> {
        let (name, name_span) = self.string("a port name `\"name\"`")?;
        let open = self.punct(b'[')?;
        let mut shape = Vec::new();
        let mut count = 1u64;
        if !self.eat_punct(b']') {
            loop {
                let t = self.next();
                if t.tok != Tok::Num {
                    return self.unexpected(&t, "a dimension");
                }
                let d = self.num_usize(t.span, "dimension")?;
                count = count.checked_mul(d as u64).ok_or_else(|| {
                    Diagnostic::at("shape has too many elements", Some(Span::new(open.start, t.span.end)))
                })?;
                shape.push(d);
                if self.eat_punct(b']') {
                    break;
                }
                self.punct(b',')?;
            }
        }
        let mut a = self.attrs()?;
        let (width, wspan) = self.take_u32(&mut a, "width")?;
        if width == 0 || width > max_width {
            return err(wspan, format!("width {width} is not in 1..={max_width}"));
        }
        let signed = self.take_bool(&mut a, "signed")?;
        let scale = if clear {
            0
        } else {
            let (scale, sspan) = self.take_u32(&mut a, "scale")?;
            if scale > 63 {
                return err(sspan, format!("scale {scale} is above 63"));
            }
            scale
        };
        // inputs may declare their range: `min = lo, max = hi` (both or neither)
        let range = if max_width <= 32 && a.items.iter().any(|x| x.key == "min" || x.key == "max") {
            let lo_span = self.take_num(&mut a, "min")?;
            let hi_span = self.take_num(&mut a, "max")?;
            let lo = self.num_i64(lo_span, "`min`")?;
            let hi = self.num_i64(hi_span, "`max`")?;
            let probe = Port {
                name: String::new(),
                shape: Vec::new(),
                width,
                signed,
                scale,
                slots: Vec::new(),
                clear,
                range: None,
            };
            let (tlo, thi) = probe.type_range();
            if lo > hi || lo < tlo || hi > thi {
                return err(
                    Span::new(lo_span.start, hi_span.end.max(lo_span.end)),
                    format!("range [{lo}, {hi}] is not inside the type's [{tlo}, {thi}]"),
                );
            }
            Some((lo, hi))
        } else {
            None
        };
        let keys: &[&str] = match (clear, range.is_some()) {
            (true, false) => &["width", "signed"],
            (true, true) => &["width", "signed", "min", "max"],
            (false, false) => &["width", "signed", "scale"],
            (false, true) => &["width", "signed", "scale", "min", "max"],
        };
        self.finish(a, keys)?;
        let port = Port {
            name,
            shape,
            width,
            signed,
            scale,
            slots: Vec::new(),
            clear,
            range,
        };
        Ok((port, count, name_span))
    }

    /// `tfhe.input` (encrypted, slots `%a ... %b`) or `tfhe.clear_input` (clear values `$a ... $b`).
    pub(super) fn input(&mut self, prog: &mut Program, clear: bool) -> PResult<()> {
        self.next(); // tfhe.input or tfhe.clear_input
        let max_width = if clear { MAX_CLEAR_WIDTH } else { 32 };
        let (mut port, count, name_span) = self.port_head(max_width, clear)?;
        self.expect_arrow()?;
        let (next, sigil, kind, units) = if clear {
            (self.clear_values, '$', "clear input", "values")
        } else {
            (prog.num_input_slots as u64, '%', "input", "slots")
        };
        // `()`, `%a`, or `%a ... %b` (`$` for a clear input)
        let (first, n, span) = if self.eat_punct(b'(') {
            let close = self.punct(b')')?;
            (next, 0u64, close)
        } else {
            let (a, aspan) = self.index(clear)?;
            if self.peek().tok == Tok::Ellipsis {
                self.next();
                let (b, bspan) = self.index(clear)?;
                let span = Span::new(aspan.start, bspan.end);
                if b < a {
                    return err(
                        span,
                        format!("empty {} range", if clear { "clear value" } else { "slot" }),
                    );
                }
                (a as u64, b as u64 - a as u64 + 1, span)
            } else {
                (a as u64, 1, aspan)
            }
        };
        if first != next {
            return err(
                span,
                format!("{kind} {units} must follow on: expected the range to start at {sigil}{next}"),
            );
        }
        if n != count {
            return err(
                span,
                format!(
                    "{kind} `{}` has {count} elements but the range has {n} {units}",
                    port.name
                ),
            );
        }
        let total = next + n;
        if total > u32::MAX as u64 {
            return err(name_span, format!("too many {kind} {units}"));
        }
        port.slots = vec![next as u32];
        if clear {
            self.clear_values = total;
        } else {
            prog.num_input_slots = total as u32;
        }
        prog.inputs.push(port);
        Ok(())
    }

    /// A slot `%N`, or with `clear` a clear value `$N`.
    pub(super) fn index(&mut self, clear: bool) -> PResult<(u32, Span)> {
        if !clear {
            return self.slot();
        }
        let t = self.next();
        match t.tok {
            Tok::Clear(c) => Ok((c, t.span)),
            _ => self.unexpected(&t, "a clear value `$N`"),
        }
    }

    pub(super) fn expect_arrow(&mut self) -> PResult<()> {
        let t = self.next();
        if t.tok == Tok::Arrow {
            Ok(())
        } else {
            self.unexpected(&t, "`->`")
        }
    }

    /// A slot read by the definition of `me`: it must already be defined.
    pub(super) fn check_use(&self, s: u32, span: Span, me: u64) -> PResult<()> {
        if s as u64 >= me {
            let defined = match me {
                0 => "no slot is defined here".to_string(),
                1 => "only %0 is defined here".to_string(),
                _ => format!("only %0 ... %{} are defined here", me - 1),
            };
            return err(span, format!("use of undefined slot %{s} ({defined})"));
        }
        Ok(())
    }

    /// A clear value read by an instruction: it must be declared by a clear input.
    pub(super) fn check_clear(&self, c: u32, span: Span) -> PResult<()> {
        let n = self.clear_values;
        if c as u64 >= n {
            let declared = match n {
                0 => "no clear value is declared".to_string(),
                1 => "only $0 is declared".to_string(),
                _ => format!("only $0 ... ${} are declared", n - 1),
            };
            return err(span, format!("use of undefined clear value ${c} ({declared})"));
        }
        Ok(())
    }

    /// An operand of the definition of `me`: `%s`, `%s * coef`, `%s * $c`, `%s * $c * factor` or
    /// `$c * unit`. The numbers are read by the instruction.
    pub(super) fn operand(&mut self, me: u64) -> PResult<Operand> {
        let t = self.next();
        match t.tok {
            Tok::Slot(slot) => {
                self.check_use(slot, t.span, me)?;
                if !self.eat_punct(b'*') {
                    return Ok(Operand::Term {
                        slot,
                        coef: None,
                        span: t.span,
                    });
                }
                let m = self.next();
                match m.tok {
                    Tok::Num => Ok(Operand::Term {
                        slot,
                        coef: Some(m.span),
                        span: Span::new(t.span.start, m.span.end),
                    }),
                    Tok::Clear(clear) => {
                        self.check_clear(clear, m.span)?;
                        let factor = if self.eat_punct(b'*') {
                            Some(self.num_token("a factor")?)
                        } else {
                            None
                        };
                        let end = factor.unwrap_or(m.span).end;
                        Ok(Operand::Product {
                            slot,
                            clear,
                            clear_span: m.span,
                            factor,
                            span: Span::new(t.span.start, end),
                        })
                    }
                    _ => self.unexpected(&m, "a coefficient or a clear value `$N`"),
                }
            }
            Tok::Clear(clear) => {
                self.check_clear(clear, t.span)?;
                let star = self.next();
                if star.tok != Tok::Punct(b'*') {
                    return self.unexpected(&star, "`*` and a unit: a clear constant is `$N * unit`");
                }
                let unit = self.num_token("a unit")?;
                Ok(Operand::ClearConstant {
                    clear,
                    clear_span: t.span,
                    unit,
                    span: Span::new(t.span.start, unit.end),
                })
            }
            _ => self.unexpected(&t, "an operand `%N` or `$N`"),
        }
    }

    /// A number token (read later): its span.
    pub(super) fn num_token(&mut self, what: &str) -> PResult<Span> {
        let t = self.next();
        if t.tok == Tok::Num {
            Ok(t.span)
        } else {
            self.unexpected(&t, what)
        }
    }

    pub(super) fn instr(
        &mut self,
        prog: &mut Program,
        table_refs: &mut Vec<(u32, Span)>,
        origin_refs: &mut Vec<(u32, Span)>,
    ) -> PResult<()> {
        let (k, kspan) = self.slot()?;
        let me = prog.num_input_slots as u64 + prog.instrs.len() as u64;
        if k as u64 != me {
            return err(
                kspan,
                format!("expected %{me} here: instructions define slots in order, the next one is %{me}"),
            );
        }
        self.punct(b'=')?;
        let (op, op_span) = self.string("an instruction name such as `\"tfhe.linear\"`")?;
        self.punct(b'(')?;
        let mut operands: Vec<Operand> = Vec::new();
        if !self.eat_punct(b')') {
            loop {
                operands.push(self.operand(me)?);
                if self.eat_punct(b')') {
                    break;
                }
                self.punct(b',')?;
            }
        }
        let operands_end = self.toks[self.i - 1].span.end;
        let mut a = self.attrs()?;
        // only tfhe.clear_linear reads clear values (an unknown name is reported as such below)
        let no_clear = match op.as_str() {
            "tfhe.linear" => Some("\"tfhe.linear\" cannot read clear values (\"tfhe.clear_linear\" can)"),
            "tfhe.pbs" | "tfhe.lane" => Some("a lookup cannot read clear values"),
            _ => None,
        };
        if let (Some(msg), Some((_, span))) = (no_clear, operands.iter().find_map(Operand::clear_ref)) {
            return err(span, msg);
        }
        let coef = |p: &Self, span: Option<Span>, what: &str| span.map_or(Ok(1), |s| p.num_i64(s, what));
        let ins = match op.as_str() {
            "tfhe.linear" => {
                let mut terms = Vec::with_capacity(operands.len());
                for o in operands {
                    if let Operand::Term { slot, coef: c, .. } = o {
                        terms.push((slot, coef(self, c, "coefficient")?));
                    }
                }
                let constant = self.take_u64(&mut a, "constant")?;
                self.finish(a, &["constant"])?;
                Instr::Linear { terms, constant }
            }
            "tfhe.clear_linear" => {
                let (mut terms, mut products, mut clear_constants) = (Vec::new(), Vec::new(), Vec::new());
                let mut rank = 0;
                for o in operands {
                    let r = match o {
                        Operand::Term { .. } => 0,
                        Operand::Product { .. } => 1,
                        Operand::ClearConstant { .. } => 2,
                    };
                    if r < rank {
                        return err(
                            o.span(),
                            "operands of \"tfhe.clear_linear\" come in order: terms (`%N`, `%N * coef`), then \
                             products (`%N * $M`, `%N * $M * factor`), then clear constants (`$M * unit`)",
                        );
                    }
                    rank = r;
                    match o {
                        Operand::Term { slot, coef: c, .. } => terms.push((slot, coef(self, c, "coefficient")?)),
                        Operand::Product {
                            slot, clear, factor, ..
                        } => products.push((slot, clear, coef(self, factor, "factor")?)),
                        Operand::ClearConstant { clear, unit, .. } => {
                            clear_constants.push((clear, self.num_u64(unit, "unit")?))
                        }
                    }
                }
                let constant = self.take_u64(&mut a, "constant")?;
                self.finish(a, &["constant"])?;
                Instr::ClearLinear {
                    terms,
                    products,
                    clear_constants,
                    constant,
                }
            }
            "tfhe.pbs" => {
                let input = match operands.as_slice() {
                    [Operand::Term { slot, coef: None, .. }] => *slot,
                    [Operand::Term { coef: Some(c), .. }] => {
                        return err(*c, "a lookup reads its input without a coefficient")
                    }
                    _ => {
                        return err(
                            Span::new(op_span.end, operands_end),
                            format!("a lookup takes exactly one operand, found {}", operands.len()),
                        )
                    }
                };
                let (shift, sspan) = self.take_u32(&mut a, "shift")?;
                if shift > 63 {
                    return err(sspan, format!("shift {shift} is above 63"));
                }
                let offset = self.take_u64(&mut a, "offset")?;
                let table = match self.take(&mut a, "table")? {
                    (Value::Sym(name), span) => {
                        let index = name
                            .strip_prefix('t')
                            .and_then(parse_u64)
                            .and_then(|n| u32::try_from(n).ok())
                            .filter(|n| format!("t{n}") == name);
                        match index {
                            Some(n) => {
                                table_refs.push((n, span));
                                n
                            }
                            None => return err(span, format!("expected a table `@tN`, found `@{name}`")),
                        }
                    }
                    (_, span) => return err(span, "`table` must be a table `@tN`"),
                };
                let partition = if a.items.iter().any(|x| x.key == "partition") {
                    match self.take(&mut a, "partition")? {
                        (Value::Sym(name), span) => {
                            let index = name
                                .strip_prefix('p')
                                .and_then(parse_u64)
                                .and_then(|n| u32::try_from(n).ok())
                                .filter(|n| format!("p{n}") == name);
                            match index {
                                Some(n) if (n as usize) < prog.partitions.len() => n,
                                Some(_) => return err(span, format!("no partition `@{name}` is declared")),
                                None => return err(span, format!("expected a partition `@pN`, found `@{name}`")),
                            }
                        }
                        (_, span) => return err(span, "`partition` must be a partition `@pN`"),
                    }
                } else {
                    0
                };
                self.finish(a, &["shift", "offset", "table", "partition"])?;
                Instr::Pbs {
                    input,
                    shift,
                    offset,
                    table,
                    partition,
                }
            }
            "tfhe.lane" => {
                let pbs = match operands.as_slice() {
                    [Operand::Term { slot, coef: None, .. }] => *slot,
                    _ => {
                        return err(
                            Span::new(op_span.end, operands_end),
                            "a lane takes exactly one operand: the lookup whose blind rotation it reads",
                        )
                    }
                };
                let (boxes, _) = self.take_u32(&mut a, "boxes")?;
                self.finish(a, &["boxes"])?;
                let head = (pbs as u64)
                    .checked_sub(prog.num_input_slots as u64)
                    .and_then(|h| prog.instrs.get(h as usize));
                if !matches!(head, Some(Instr::Pbs { .. })) {
                    return err(
                        Span::new(op_span.end, operands_end),
                        format!("%{pbs} is not a lookup (\"tfhe.pbs\"): a lane reads a lookup's blind rotation"),
                    );
                }
                Instr::Lane { pbs, boxes }
            }
            _ => {
                return err(
                    op_span,
                    format!(
                        "unknown instruction \"{op}\" (expected \"tfhe.linear\", \"tfhe.clear_linear\", \"tfhe.pbs\" or \"tfhe.lane\")"
                    ),
                )
            }
        };
        self.word("origin")?;
        let (o, ospan) = self.numbered_symbol('o', "an origin")?;
        origin_refs.push((o, ospan));
        prog.instrs.push(ins);
        prog.instr_origin.push(o);
        Ok(())
    }

    pub(super) fn output(&mut self, prog: &mut Program) -> PResult<()> {
        self.next(); // tfhe.output
        let (mut port, count, _) = self.port_head(64, false)?;
        self.punct(b'=')?;
        let open = self.punct(b'(')?;
        let me = prog.num_slots() as u64;
        let mut slots = Vec::new();
        if !self.eat_punct(b')') {
            loop {
                let (s, span) = self.slot()?;
                self.check_use(s, span, me)?;
                slots.push(s);
                if self.eat_punct(b')') {
                    break;
                }
                self.punct(b',')?;
            }
        }
        let span = Span::new(open.start, self.toks[self.i - 1].span.end);
        if slots.len() as u64 != count {
            return err(
                span,
                format!(
                    "output `{}` has {count} elements but lists {} slots",
                    port.name,
                    slots.len()
                ),
            );
        }
        port.slots = slots;
        prog.outputs.push(port);
        Ok(())
    }

    pub(super) fn table(&mut self, prog: &mut Program) -> PResult<()> {
        self.next(); // tfhe.table
        let expected = prog.tables.len();
        let (i, ispan) = self.numbered_symbol('t', "a table")?;
        if i as usize != expected {
            return err(
                ispan,
                format!("expected @t{expected} here: tables are numbered in order"),
            );
        }
        let mut a = self.attrs()?;
        let (precision, pspan) = self.take_u32(&mut a, "precision")?;
        if precision > MAX_PBS_PRECISION {
            return err(
                pspan,
                format!("table precision {precision} is above the maximum {MAX_PBS_PRECISION}"),
            );
        }
        self.finish(a, &["precision"])?;
        self.punct(b'=')?;
        let open = self.punct(b'[')?;
        let mut values = Vec::new();
        if !self.eat_punct(b']') {
            loop {
                let t = self.next();
                if t.tok != Tok::Num {
                    return self.unexpected(&t, "a table entry");
                }
                values.push(self.num_u64(t.span, "table entry")?);
                if self.eat_punct(b']') {
                    break;
                }
                self.punct(b',')?;
            }
        }
        let want = 1usize << precision;
        if values.len() != want {
            let span = Span::new(open.start, self.toks[self.i - 1].span.end);
            return err(
                span,
                format!(
                    "table @t{i} has {} entries, expected {want} (2^{precision} for precision {precision})",
                    values.len()
                ),
            );
        }
        prog.tables.push(Table { precision, values });
        Ok(())
    }

    pub(super) fn origin(&mut self, prog: &mut Program) -> PResult<()> {
        self.next(); // tfhe.origin
        let expected = prog.origins.len();
        let (i, ispan) = self.numbered_symbol('o', "an origin")?;
        if i as usize != expected {
            return err(
                ispan,
                format!("expected @o{expected} here: origins are numbered in order"),
            );
        }
        let (op, _) = self.string("the origin's op `\"...\"`")?;
        let t = self.peek();
        let location = if t.tok == Tok::Word && self.text(t.span) == "at" {
            self.next();
            Some(self.string("a location `\"line:col\"`")?.0)
        } else {
            None
        };
        prog.origins.push(Origin { op, location });
        Ok(())
    }

    pub(super) fn noise(&mut self, prog: &mut Program) -> PResult<()> {
        self.next(); // tfhe.noise
        let mut a = self.attrs()?;
        let worst = self.take_f64(&mut a, "worst_log2")?;
        let global = self.take_f64(&mut a, "global_log2")?;
        let seconds = self.take_f64(&mut a, "estimated_seconds")?;
        let pbs = match self.take(&mut a, "pbs")? {
            (Value::Pairs(pairs), _) => {
                let mut out = Vec::with_capacity(pairs.len());
                for (p, c) in pairs {
                    out.push((self.num_u32(p, "precision")?, self.num_u64(c, "lookup count")?));
                }
                out
            }
            (_, span) => return err(span, "`pbs` must be a list `[precision: count, ...]`"),
        };
        self.finish(a, &["worst_log2", "global_log2", "estimated_seconds", "pbs"])?;
        prog.noise = NoiseReport {
            log2_p_error_worst_lookup: worst,
            log2_p_error_global: global,
            pbs_by_precision: pbs,
            estimated_seconds: seconds,
        };
        Ok(())
    }
}
