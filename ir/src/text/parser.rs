//! The parser of the text format (see the module doc of `text`). It never panics: every malformed input,
//! including random bytes and truncated files, gives a located [`Diagnostic`].

use crate::attr::{Attribute, Attrs, Dense};
use crate::diag::{Diagnostic, Span};
use crate::module::{Function, Module, ValueId};
use crate::ops::OpKind;
use crate::types::{ElemType, Type};
use std::collections::HashMap;

/// Deepest nesting of brackets accepted in attributes.
const MAX_NESTING: usize = 64;
/// Largest number of elements a dense attribute or a tensor type may have.
const MAX_ELEMENTS: u128 = 1 << 24;

type PResult<T> = Result<T, Diagnostic>;

/// Parses a module from text. Errors carry the span of the offending text.
pub fn parse_module(src: &str) -> Result<Module, Diagnostic> {
    let mut p = Parser {
        src,
        b: src.as_bytes(),
        pos: 0,
    };
    p.module()
}

/// One case of a file split at `// -----` lines (MLIR's `--split-input-file`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Case {
    /// The whole file with every line outside this case blanked, so that offsets, lines and columns of
    /// diagnostics are those of the original file.
    pub text: String,
    /// 1-based line where the case starts.
    pub first_line: usize,
}

/// Splits a file at lines that read `// -----`.
pub fn split_cases(src: &str) -> Vec<Case> {
    let lines: Vec<&str> = src.split_inclusive('\n').collect();
    let mut bounds = vec![0];
    for (i, l) in lines.iter().enumerate() {
        if l.trim() == "// -----" {
            bounds.push(i);
            bounds.push(i + 1);
        }
    }
    bounds.push(lines.len());
    bounds
        .chunks(2)
        .map(|c| {
            let (a, b) = (c[0], c[1]);
            let text: String = lines
                .iter()
                .enumerate()
                .map(|(i, l)| {
                    if i >= a && i < b {
                        l.to_string()
                    } else {
                        // keep the byte length so offsets stay valid
                        let nl = l.ends_with('\n');
                        let mut s = " ".repeat(l.len() - usize::from(nl));
                        if nl {
                            s.push('\n');
                        }
                        s
                    }
                })
                .collect();
            Case {
                text,
                first_line: a + 1,
            }
        })
        .collect()
}

struct Parser<'a> {
    src: &'a str,
    b: &'a [u8],
    pos: usize,
}

fn is_ident_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'.' || c == b'$'
}

fn is_value_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"_.$-".contains(&c)
}

/// Levenshtein distance, for "did you mean" hints.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, &cb) in b.iter().enumerate() {
            cur.push((prev[j] + usize::from(ca != cb)).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

impl<'a> Parser<'a> {
    // ---- low level -----------------------------------------------------------------------------------

    fn skip_ws(&mut self) {
        self.pos = super::skip_ws_and_comments(self.b, self.pos);
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.b.get(self.pos).copied()
    }

    fn at(&mut self, s: &str) -> bool {
        self.skip_ws();
        self.b[self.pos..].starts_with(s.as_bytes())
    }

    /// Consumes `s` if it comes next.
    fn eat(&mut self, s: &str) -> bool {
        if self.at(s) {
            self.pos += s.len();
            true
        } else {
            false
        }
    }

    /// The text of the next token, for "found ..." messages.
    fn found(&mut self) -> String {
        self.skip_ws();
        if self.pos >= self.b.len() {
            return "end of file".to_string();
        }
        let start = self.pos;
        let mut end = start;
        while end < self.b.len() && (is_value_byte(self.b[end]) || self.b[end] == b'!') && end - start < 40 {
            end += 1;
        }
        if end == start {
            end = start + 1;
            while end < self.b.len() && !self.src.is_char_boundary(end) {
                end += 1;
            }
        }
        format!("`{}`", self.src.get(start..end).unwrap_or("?"))
    }

    fn here(&mut self) -> Span {
        self.skip_ws();
        let mut end = self.pos;
        while end < self.b.len() && is_value_byte(self.b[end]) {
            end += 1;
        }
        Span::new(self.pos, end.max(self.pos + 1))
    }

    fn err<T>(&mut self, expected: &str) -> PResult<T> {
        let found = self.found();
        let span = self.here();
        Err(Diagnostic::at(
            format!("expected {expected}, found {found}"),
            Some(span),
        ))
    }

    fn expect(&mut self, s: &str) -> PResult<()> {
        if self.eat(s) {
            Ok(())
        } else {
            self.err(&format!("`{s}`"))
        }
    }

    /// A bare identifier (letters, digits, `_`, `.`, `$`; not starting with a digit).
    fn ident(&mut self) -> PResult<(String, Span)> {
        self.skip_ws();
        let start = self.pos;
        if !self.b.get(start).is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_') {
            return self.err("an identifier");
        }
        while self.pos < self.b.len() && is_ident_byte(self.b[self.pos]) {
            self.pos += 1;
        }
        Ok((self.src[start..self.pos].to_string(), Span::new(start, self.pos)))
    }

    /// `%name`.
    fn value_name(&mut self) -> PResult<(String, Span)> {
        self.skip_ws();
        let start = self.pos;
        if !self.eat("%") {
            return self.err("a value name like `%x`");
        }
        let s = self.pos;
        while self.pos < self.b.len() && is_value_byte(self.b[self.pos]) {
            self.pos += 1;
        }
        if self.pos == s {
            self.pos = start;
            return self.err("a value name like `%x`");
        }
        Ok((self.src[s..self.pos].to_string(), Span::new(start, self.pos)))
    }

    /// A decimal integer, optionally negative, that fits i64.
    fn int(&mut self) -> PResult<(i64, Span)> {
        self.skip_ws();
        let start = self.pos;
        if self.b.get(self.pos) == Some(&b'-') {
            self.pos += 1;
        }
        let ds = self.pos;
        while self.pos < self.b.len() && self.b[self.pos].is_ascii_digit() {
            self.pos += 1;
        }
        if self.pos == ds {
            self.pos = start;
            return self.err("an integer");
        }
        let span = Span::new(start, self.pos);
        match self.src[start..self.pos].parse::<i64>() {
            Ok(v) => Ok((v, span)),
            Err(_) => Err(Diagnostic::at(
                format!("integer {} does not fit in 64 bits", &self.src[start..self.pos]),
                Some(span),
            )),
        }
    }

    /// A string literal with MLIR escapes.
    fn string(&mut self) -> PResult<(String, Span)> {
        self.skip_ws();
        let start = self.pos;
        if !self.eat("\"") {
            return self.err("a string");
        }
        let mut out = Vec::new();
        loop {
            let Some(&c) = self.b.get(self.pos) else {
                return Err(Diagnostic::at("unterminated string", Some(Span::new(start, self.pos))));
            };
            self.pos += 1;
            match c {
                b'"' => break,
                b'\n' => {
                    return Err(Diagnostic::at(
                        "unterminated string",
                        Some(Span::new(start, self.pos - 1)),
                    ));
                }
                b'\\' => {
                    let Some(&e) = self.b.get(self.pos) else {
                        continue;
                    };
                    self.pos += 1;
                    match e {
                        b'"' | b'\\' => out.push(e),
                        b'n' => out.push(b'\n'),
                        b't' => out.push(b'\t'),
                        _ => {
                            let hex = self
                                .src
                                .get(self.pos - 1..self.pos + 1)
                                .and_then(|h| u8::from_str_radix(h, 16).ok());
                            match hex {
                                Some(v) => {
                                    out.push(v);
                                    self.pos += 1;
                                }
                                None => {
                                    return Err(Diagnostic::at(
                                        "unknown escape in string",
                                        Some(Span::new(self.pos - 2, self.pos)),
                                    ))
                                }
                            }
                        }
                    }
                }
                _ => out.push(c),
            }
        }
        match String::from_utf8(out) {
            Ok(s) => Ok((s, Span::new(start, self.pos))),
            Err(_) => Err(Diagnostic::at(
                "string is not valid UTF-8",
                Some(Span::new(start, self.pos)),
            )),
        }
    }

    // ---- types ---------------------------------------------------------------------------------------

    fn width_in(&mut self, w: i64, span: Span, elem: ElemType) -> PResult<u32> {
        let max = elem.max_width();
        if w < 1 || w > max as i64 {
            let kind = match elem {
                ElemType::EInt(_) | ElemType::ESInt(_) => "an encrypted",
                ElemType::Int(_) => "a clear signed",
                ElemType::UInt(_) => "a clear unsigned",
            };
            return Err(Diagnostic::at(
                format!("width {w} is out of range for {kind} integer (1 ..= {max})"),
                Some(span),
            ));
        }
        Ok(w as u32)
    }

    fn elem_type(&mut self) -> PResult<ElemType> {
        self.skip_ws();
        let start = self.pos;
        if self.eat("!fhe.eint<") || self.eat("!fhe.esint<") {
            let signed = self.src[start..self.pos].contains("esint");
            let (w, span) = self.int()?;
            let w = self.width_in(w, span, ElemType::new(true, signed, 1))?;
            self.expect(">")?;
            return Ok(ElemType::new(true, signed, w));
        }
        if self.b.get(self.pos).is_some_and(|c| c.is_ascii_alphabetic()) {
            let mut end = self.pos;
            while end < self.b.len() && self.b[end].is_ascii_alphanumeric() {
                end += 1;
            }
            let word = &self.src[self.pos..end];
            let (signed, digits) = if let Some(d) = word.strip_prefix("ui") {
                (false, d)
            } else if let Some(d) = word.strip_prefix("si") {
                (true, d)
            } else if let Some(d) = word.strip_prefix('i') {
                (true, d)
            } else if let Some(d) = word.strip_prefix('u') {
                (false, d)
            } else {
                (false, "")
            };
            if !digits.is_empty() && digits.bytes().all(|c| c.is_ascii_digit()) {
                let span = Span::new(self.pos, end);
                let w = digits.parse::<i64>().unwrap_or(i64::MAX);
                self.pos = end;
                let w = self.width_in(w, span, ElemType::new(false, signed, 1))?;
                return Ok(ElemType::new(false, signed, w));
            }
        }
        self.err("an element type (`!fhe.eint<w>`, `!fhe.esint<w>`, `iN` or `uiN`)")
    }

    fn ty(&mut self) -> PResult<Type> {
        self.skip_ws();
        let start = self.pos;
        if !self.eat("tensor<") {
            return Ok(Type::scalar(self.elem_type()?));
        }
        let mut shape = Vec::new();
        let mut count: u128 = 1;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            let (d, span) = self.int()?;
            count = count.saturating_mul((d as u128).max(1));
            if count > MAX_ELEMENTS {
                return Err(Diagnostic::at(
                    format!("tensor type has more than {MAX_ELEMENTS} elements"),
                    Some(span),
                ));
            }
            shape.push(d as usize);
            self.expect("x")?;
        }
        if self.at("?") || self.at("*") {
            let span = self.here();
            return Err(Diagnostic::at(
                "dynamic shapes are not supported: give every dimension",
                Some(span),
            ));
        }
        let elem = self.elem_type()?;
        if !self.eat(">") {
            let d = self.err::<()>("`>` closing the tensor type");
            let (l, c) = crate::diag::line_col(self.src, start);
            return Err(d.unwrap_err().with_note(format!(
                "the tensor type starts at {l}:{c}; write it as `tensor<2x3x!fhe.eint<4>>`"
            )));
        }
        Ok(Type::new(elem, shape))
    }

    fn type_list(&mut self) -> PResult<Vec<Type>> {
        self.expect("(")?;
        let mut out = Vec::new();
        if self.eat(")") {
            return Ok(out);
        }
        loop {
            out.push(self.ty()?);
            if self.eat(")") {
                return Ok(out);
            }
            self.expect(",")?;
        }
    }

    // ---- attributes ----------------------------------------------------------------------------------

    fn attr_dict(&mut self) -> PResult<Attrs> {
        let mut attrs = Attrs::new();
        self.expect("{")?;
        if self.eat("}") {
            return Ok(attrs);
        }
        loop {
            let (key, span) = if self.peek() == Some(b'"') {
                self.string()?
            } else {
                self.ident()?
            };
            self.expect("=")?;
            let value = self.attribute(0)?;
            if attrs.insert(key.clone(), value).is_some() {
                return Err(Diagnostic::at(format!("attribute `{key}` is given twice"), Some(span)));
            }
            if self.eat("}") {
                return Ok(attrs);
            }
            self.expect(",")?;
        }
    }

    fn attribute(&mut self, depth: usize) -> PResult<Attribute> {
        if depth > MAX_NESTING {
            let span = self.here();
            return Err(Diagnostic::at("attribute nesting is too deep", Some(span)));
        }
        match self.peek() {
            Some(b'[') => {
                self.pos += 1;
                let mut items = Vec::new();
                if self.eat("]") {
                    return Ok(Attribute::Array(items));
                }
                loop {
                    items.push(self.attribute(depth + 1)?);
                    if self.eat("]") {
                        return Ok(Attribute::Array(items));
                    }
                    self.expect(",")?;
                }
            }
            Some(b'"') => Ok(Attribute::Str(self.string()?.0)),
            Some(c) if c == b'-' || c.is_ascii_digit() => {
                let (v, span) = self.int()?;
                if self.eat(":") {
                    let ty = self.ty()?;
                    if !ty.shape.is_empty() || ty.is_encrypted() || !ty.elem.contains(v as i128) {
                        return Err(Diagnostic::at(
                            format!("integer attribute {v} does not fit the type {ty}"),
                            Some(span),
                        ));
                    }
                }
                Ok(Attribute::Int(v))
            }
            _ if self.eat("true") => Ok(Attribute::Bool(true)),
            _ if self.eat("false") => Ok(Attribute::Bool(false)),
            _ if self.eat("array<") => {
                self.elem_type()?;
                let mut items = Vec::new();
                if self.eat(":") {
                    loop {
                        items.push(Attribute::Int(self.int()?.0));
                        if !self.eat(",") {
                            break;
                        }
                    }
                }
                self.expect(">")?;
                Ok(Attribute::Array(items))
            }
            _ if self.at("dense<") => self.dense(),
            _ => self.err("an attribute (integer, boolean, string, array or dense<...>)"),
        }
    }

    /// A nested list literal: returns the values in C order and the shape it spells.
    fn dense_literal(&mut self, depth: usize, values: &mut Vec<i64>) -> PResult<Option<Vec<usize>>> {
        if depth > MAX_NESTING {
            let span = self.here();
            return Err(Diagnostic::at("dense literal nesting is too deep", Some(span)));
        }
        if !self.eat("[") {
            values.push(self.int()?.0);
            if values.len() as u128 > MAX_ELEMENTS {
                let span = self.here();
                return Err(Diagnostic::at("dense literal is too large", Some(span)));
            }
            return Ok(None);
        }
        if self.eat("]") {
            return Ok(Some(vec![0]));
        }
        let mut inner: Option<Option<Vec<usize>>> = None;
        let mut n = 0;
        loop {
            let span = self.here();
            let s = self.dense_literal(depth + 1, values)?;
            match &inner {
                None => inner = Some(s),
                Some(prev) if *prev != s => {
                    return Err(Diagnostic::at(
                        "dense literal is ragged: sublists have different shapes",
                        Some(span),
                    ));
                }
                _ => {}
            }
            n += 1;
            if self.eat("]") {
                break;
            }
            self.expect(",")?;
        }
        let mut shape = vec![n];
        if let Some(Some(s)) = inner {
            shape.extend(s);
        }
        Ok(Some(shape))
    }

    fn dense(&mut self) -> PResult<Attribute> {
        let start = self.here();
        self.expect("dense<")?;
        let mut values = Vec::new();
        let shape = self.dense_literal(0, &mut values)?;
        self.expect(">")?;
        self.expect(":")?;
        let tstart = self.here();
        let ty = self.ty()?;
        let span = Some(Span::new(start.start, self.pos));
        let data = match shape {
            None => {
                let v = values[0];
                ndarray::ArrayD::from_elem(ndarray::IxDyn(&ty.shape), v)
            }
            Some(_) if values.is_empty() && ty.num_elements() == 0 => {
                ndarray::ArrayD::from_elem(ndarray::IxDyn(&ty.shape), 0)
            }
            Some(s) => {
                if s != ty.shape {
                    return Err(Diagnostic::at(
                        format!(
                            "dense literal has shape {s:?} but its type {ty} has shape {:?}",
                            ty.shape
                        ),
                        span,
                    ));
                }
                ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&s), values)
                    .map_err(|e| Diagnostic::at(format!("bad dense literal: {e}"), span))?
            }
        };
        Dense::new(ty, data)
            .map(Attribute::Dense)
            .map_err(|e| Diagnostic::at(e, Some(Span::new(start.start, tstart.start))))
    }

    // ---- functions and ops ---------------------------------------------------------------------------

    fn module(&mut self) -> PResult<Module> {
        let mut m = Module::new();
        let wrapped = self.eat("module");
        if wrapped {
            self.expect("{")?;
        }
        loop {
            if wrapped && self.eat("}") {
                break;
            }
            if self.peek().is_none() {
                if wrapped {
                    return self.err("`}` closing the module");
                }
                break;
            }
            let f = self.function()?;
            if m.function(&f.name).is_some() {
                return Err(Diagnostic::at(format!("function @{} is defined twice", f.name), f.span));
            }
            m.functions.push(f);
        }
        if self.peek().is_some() {
            return self.err("end of file");
        }
        Ok(m)
    }

    fn function(&mut self) -> PResult<Function> {
        if !self.eat("func.func") {
            return self.err("`func.func`");
        }
        self.skip_ws();
        let at = self.pos;
        self.expect("@")?;
        let (name, nspan) = self.ident()?;
        let mut f = Function::new(name);
        f.span = Some(Span::new(at, nspan.end));
        let mut names: HashMap<String, (ValueId, Span)> = HashMap::new();
        self.expect("(")?;
        if !self.eat(")") {
            loop {
                let (n, span) = self.value_name()?;
                self.expect(":")?;
                let ty = self.ty()?;
                let attrs = if self.peek() == Some(b'{') {
                    self.attr_dict()?
                } else {
                    Attrs::new()
                };
                if let Some((_, prev)) = names.get(&n) {
                    let (l, c) = crate::diag::line_col(self.src, prev.start);
                    return Err(Diagnostic::at(format!("argument %{n} is defined twice"), Some(span))
                        .with_note(format!("first defined at {l}:{c}")));
                }
                let v = f.add_arg(Some(n.clone()), ty, attrs, Some(span));
                names.insert(n, (v, span));
                if self.eat(")") {
                    break;
                }
                self.expect(",")?;
            }
        }
        if self.eat("->") {
            if self.peek() == Some(b'(') {
                f.result_types = self.type_list()?;
            } else {
                f.result_types = vec![self.ty()?];
            }
        }
        self.expect("{")?;
        loop {
            if self.at("}") {
                return self.err("`\"func.return\"` before the end of the function");
            }
            if self.peek().is_none() {
                return self.err("`}` closing the function");
            }
            if self.op(&mut f, &mut names)? {
                break;
            }
        }
        self.expect("}")?;
        Ok(f)
    }

    /// Parses one op; returns true for `func.return`.
    fn op(&mut self, f: &mut Function, names: &mut HashMap<String, (ValueId, Span)>) -> PResult<bool> {
        let result = if self.peek() == Some(b'%') {
            let r = self.value_name()?;
            self.expect("=")?;
            Some(r)
        } else {
            None
        };
        if self.peek() != Some(b'"') {
            return self.err("an op name in quotes, like `\"fhe.add\"`");
        }
        let (opname, span) = self.string()?;
        let kind = if opname == "func.return" {
            if let Some((_, rspan)) = result {
                return Err(Diagnostic::at("`func.return` has no result", Some(rspan)));
            }
            None
        } else {
            match OpKind::from_name(&opname) {
                Some(k) => Some(k),
                None => {
                    let best = OpKind::ALL
                        .iter()
                        .map(|k| (edit_distance(k.name(), &opname), k.name()))
                        .min();
                    let mut d = Diagnostic::at(format!("unknown op `{opname}`"), Some(span));
                    d = match best {
                        Some((dist, name)) if dist <= 3 => d.with_help(format!("did you mean `{name}`?")),
                        _ => d.with_help("see docs/ir.md for the ops of the fhe dialect"),
                    };
                    return Err(d);
                }
            }
        };
        self.expect("(")?;
        let mut operands: Vec<(ValueId, Span)> = Vec::new();
        if !self.eat(")") {
            loop {
                let (n, vspan) = self.value_name()?;
                match names.get(&n) {
                    Some(&(v, _)) => operands.push((v, vspan)),
                    None => {
                        return Err(Diagnostic::at(format!("use of undefined value %{n}"), Some(vspan))
                            .with_help("values must be defined before they are used"))
                    }
                }
                if self.eat(")") {
                    break;
                }
                self.expect(",")?;
            }
        }
        let attrs = if self.peek() == Some(b'{') {
            self.attr_dict()?
        } else {
            Attrs::new()
        };
        self.expect(":")?;
        let sig_span = self.here();
        let in_types = self.type_list()?;
        self.expect("->")?;
        let out_types = if self.peek() == Some(b'(') {
            self.type_list()?
        } else {
            vec![self.ty()?]
        };
        if in_types.len() != operands.len() {
            return Err(Diagnostic::at(
                format!(
                    "the signature lists {} operand type(s) but the op has {} operand(s)",
                    in_types.len(),
                    operands.len()
                ),
                Some(sig_span),
            ));
        }
        for (i, ((v, vspan), t)) in operands.iter().zip(&in_types).enumerate() {
            if f.ty(*v) != t {
                return Err(Diagnostic::at(
                    format!("operand {i} has type {} but the signature says {t}", f.ty(*v)),
                    Some(*vspan),
                ));
            }
        }
        let operand_ids: Vec<ValueId> = operands.iter().map(|(v, _)| *v).collect();
        let Some(kind) = kind else {
            if !out_types.is_empty() {
                return Err(Diagnostic::at(
                    "`func.return` must have the result type `()`",
                    Some(sig_span),
                ));
            }
            if !attrs.is_empty() {
                return Err(Diagnostic::at("`func.return` takes no attributes", Some(span)));
            }
            f.returns = operand_ids;
            f.return_span = Some(span);
            return Ok(true);
        };
        let [out] = out_types.as_slice() else {
            return Err(Diagnostic::at(
                format!(
                    "{opname} has exactly one result, the signature lists {}",
                    out_types.len()
                ),
                Some(sig_span),
            ));
        };
        let Some((rname, rspan)) = result else {
            return Err(Diagnostic::at(
                format!("the result of {opname} needs a name: `%r = \"{opname}\"(...)`"),
                Some(span),
            ));
        };
        if let Some((_, prev)) = names.get(&rname) {
            let (l, c) = crate::diag::line_col(self.src, prev.start);
            return Err(Diagnostic::at(format!("value %{rname} is defined twice"), Some(rspan))
                .with_note(format!("first defined at {l}:{c}")));
        }
        let (op, v) = f.create_op(kind, operand_ids, attrs, out.clone(), Some(rname.clone()), Some(span));
        f.value_mut(v).span = Some(rspan);
        f.body.push(op);
        names.insert(rname, (v, rspan));
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_cases_keeping_offsets() {
        let src = "a\n// -----\nb\nc\n";
        let cases = split_cases(src);
        assert_eq!(cases.len(), 2);
        assert_eq!(cases[0].text.len(), src.len());
        assert_eq!(cases[1].text.trim(), "b\nc");
        assert_eq!(cases[1].first_line, 3);
    }

    #[test]
    fn edit_distance_works() {
        assert_eq!(edit_distance("fhe.add", "fhe.ad"), 1);
        assert_eq!(edit_distance("", "ab"), 2);
    }
}
