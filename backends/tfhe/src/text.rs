//! The `tfhe` dialect: a textual form of a lowered [`Program`], close to MLIR's generic syntax, one
//! statement per line. [`print_program`] writes it and [`parse_program`] reads it back; for every
//! valid program `parse_program(&print_program(p)) == Ok(p)`, and printing the parsed program gives
//! the same text. The full reference is in `docs/crypto.md` (section "The `tfhe` dialect").
//!
//! ```text
//! tfhe.program @main {n = 880, k = 2, N = 1024, lwe_noise_log2 = 46, glwe_noise_log2 = 17, pbs_base_log = 23, pbs_level = 1, ks_base_log = 3, ks_level = 5} {
//!   tfhe.input "x" [1, 4] {width = 4, signed = false, scale = 59} -> %0 ... %3
//!   tfhe.clear_input "w" [2] {width = 8, signed = true} -> $0 ... $1
//!   %4 = "tfhe.linear"(%0 * 3, %1 * -1, %3) {constant = 0x0} origin @o1
//!   %5 = "tfhe.clear_linear"(%4, %2 * $0, %3 * $1 * -2, $1 * 0x800000000000000) {constant = 0x0} origin @o2
//!   %6 = "tfhe.pbs"(%5) {shift = 5, offset = 0x0, table = @t0} origin @o3
//!   tfhe.output "out0" [1] {width = 3, signed = false, scale = 60} = (%6)
//!   tfhe.table @t0 {precision = 1} = [0x0, 0x1000000000000000]
//!   tfhe.origin @o0 "inputs"
//!   tfhe.origin @o1 "fhe.matmul %0" at "3:8"
//!   tfhe.origin @o2 "fhe.mul %1" at "4:8"
//!   tfhe.origin @o3 "fhe.lut %2" at "5:8"
//!   tfhe.noise {worst_log2 = -40.44, global_log2 = -39.44, estimated_seconds = 0.1466, pbs = [1: 1]}
//! }
//! ```
//!
//! Slots are numbered as in the program: encrypted inputs (`tfhe.input`) take `%0 ..`, instruction `i`
//! defines `%(num_input_slots + i)`. Clear inputs (`tfhe.clear_input`, values the server receives
//! unencrypted) are interleaved with them in argument order and take `$0 ..`, numbered apart; only
//! `"tfhe.clear_linear"` reads them (`Σ coef·%s + Σ factor·$c·%s + Σ $c·unit + constant`, operands in
//! that order). Statements come in a fixed order (inputs, instructions, outputs, tables, origins,
//! noise); tables and origins are numbered `@t0, @t1, …` and `@o0, @o1, …` in order.
//! Whitespace (newlines included) only separates tokens; `//` starts a comment.
//!
//! The parser never panics: every malformed text, truncated or corrupted, is a [`Diagnostic`] that
//! points at the offending bytes, and the result always passes [`Program::validate`].

use std::fmt::Write as _;

use fhec_ir::{Diagnostic, Span};
use fhec_runtime::params::{ParamSet, RawParamSet};
use fhec_runtime::program::{Instr, NoiseReport, Origin, Port, Program, Table, MAX_CLEAR_WIDTH, MAX_PBS_PRECISION};

// ---- printer -------------------------------------------------------------------------------------

/// Prints a program in the `tfhe` dialect. Total: an invalid program prints too (it may not parse).
pub fn print_program(p: &Program) -> String {
    let mut o = String::new();
    let r = p.params.raw();
    let _ = writeln!(
        o,
        "tfhe.program {} {{n = {}, k = {}, N = {}, lwe_noise_log2 = {}, glwe_noise_log2 = {}, pbs_base_log = {}, \
         pbs_level = {}, ks_base_log = {}, ks_level = {}}} {{",
        symbol(&p.name),
        r.lwe_dimension,
        r.glwe_dimension,
        r.polynomial_size,
        r.lwe_noise_bound_log2,
        r.glwe_noise_bound_log2,
        r.pbs_base_log,
        r.pbs_level,
        r.ks_base_log,
        r.ks_level
    );
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
            } => {
                let _ = write!(
                    o,
                    "\"tfhe.pbs\"(%{input}) {{shift = {shift}, offset = {offset:#x}, table = @t{table}}}"
                );
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
    format!(
        "{} [{}] {{width = {}, signed = {}{scale}}}",
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

fn is_ident(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_') && b.all(is_symbol_byte)
}

fn is_symbol_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'.' || c == b'$'
}

/// `@name`, or `@"..."` when the name is not an identifier.
fn symbol(name: &str) -> String {
    if is_ident(name) {
        format!("@{name}")
    } else {
        format!("@{}", quote(name))
    }
}

/// A string literal: `\"`, `\\`, `\n`, `\t`, other control characters as `\XX`.
fn quote(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(o, "\\{:02X}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

// ---- lexer ---------------------------------------------------------------------------------------

type PResult<T> = Result<T, Diagnostic>;

fn err<T>(span: Span, message: impl Into<String>) -> PResult<T> {
    Err(Diagnostic::at(message, Some(span)))
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    /// `tfhe.input`, `origin`, `true`, `inf`, …
    Word,
    /// `%12`
    Slot(u32),
    /// `$3`: a clear input value
    Clear(u32),
    /// `@name` or `@"name"`
    Sym(String),
    /// `"text"`, unescaped
    Str(String),
    /// `12`, `-3`, `0x1f`, `-40.5`, `1e-7`, `-inf` (the text is in the source)
    Num,
    /// One of `{ } ( ) [ ] , = : *`
    Punct(u8),
    /// `->`
    Arrow,
    /// `...`
    Ellipsis,
    Eof,
}

#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    span: Span,
}

struct Lexer<'a> {
    src: &'a str,
    b: &'a [u8],
    pos: usize,
}

impl Lexer<'_> {
    fn skip_ws(&mut self) {
        self.pos = fhec_ir::text::skip_ws_and_comments(self.b, self.pos);
    }

    fn peek_at(&self, i: usize) -> u8 {
        self.b.get(i).copied().unwrap_or(0)
    }

    fn tokens(mut self) -> PResult<Vec<Token>> {
        let mut out = Vec::new();
        loop {
            self.skip_ws();
            let start = self.pos;
            let Some(&c) = self.b.get(start) else {
                out.push(Token {
                    tok: Tok::Eof,
                    span: Span::new(start, start),
                });
                return Ok(out);
            };
            let tok = match c {
                b'{' | b'}' | b'(' | b')' | b'[' | b']' | b',' | b'=' | b':' | b'*' => {
                    self.pos += 1;
                    Tok::Punct(c)
                }
                b'.' if self.b[start..].starts_with(b"...") => {
                    self.pos += 3;
                    Tok::Ellipsis
                }
                b'-' if self.peek_at(start + 1) == b'>' => {
                    self.pos += 2;
                    Tok::Arrow
                }
                b'-' if self.peek_at(start + 1).is_ascii_alphanumeric() => {
                    self.pos += 1;
                    self.number();
                    Tok::Num
                }
                b'0'..=b'9' => {
                    self.number();
                    Tok::Num
                }
                b'%' => Tok::Slot(self.index("slot")?),
                b'$' => Tok::Clear(self.index("clear value")?),
                b'@' => {
                    self.pos += 1;
                    if self.peek_at(self.pos) == b'"' {
                        Tok::Sym(self.string()?)
                    } else {
                        while is_symbol_byte(self.peek_at(self.pos)) {
                            self.pos += 1;
                        }
                        if self.pos == start + 1 {
                            return err(Span::new(start, start + 1), "expected a name after `@`");
                        }
                        Tok::Sym(self.src[start + 1..self.pos].to_string())
                    }
                }
                b'"' => Tok::Str(self.string()?),
                c if c.is_ascii_alphabetic() || c == b'_' => {
                    while is_symbol_byte(self.peek_at(self.pos)) {
                        self.pos += 1;
                    }
                    Tok::Word
                }
                _ => {
                    let ch = self.src.get(start..).and_then(|s| s.chars().next()).unwrap_or('?');
                    return err(
                        Span::new(start, start + ch.len_utf8()),
                        format!("unexpected character `{}`", ch.escape_debug()),
                    );
                }
            };
            out.push(Token {
                tok,
                span: Span::new(start, self.pos),
            });
        }
    }

    /// `%N` or `$N` starting at `self.pos` (on the sigil): its number.
    fn index(&mut self, what: &str) -> PResult<u32> {
        let start = self.pos;
        self.pos += 1;
        while self.peek_at(self.pos).is_ascii_digit() {
            self.pos += 1;
        }
        let span = Span::new(start, self.pos);
        let sigil = self.b[start] as char;
        if self.pos == start + 1 {
            return err(span, format!("expected a {what} number after `{sigil}`"));
        }
        match self.src[start + 1..self.pos].parse::<u32>() {
            Ok(n) => Ok(n),
            Err(_) => err(span, format!("{what} number out of range (at most 2^32 - 1)")),
        }
    }

    /// The rest of a number: letters, digits, `_`, `.`, and a sign right after the exponent `e` of a
    /// decimal number.
    fn number(&mut self) {
        let start = self.pos;
        let hex = matches!(self.b.get(start..start + 2), Some(b"0x" | b"0X"));
        loop {
            let c = self.peek_at(self.pos);
            let part = c.is_ascii_alphanumeric() || c == b'_' || c == b'.';
            let exponent_sign = (c == b'-' || c == b'+')
                && !hex
                && matches!(self.peek_at(self.pos - 1), b'e' | b'E')
                && self.peek_at(self.pos + 1).is_ascii_digit();
            if !(part || exponent_sign) {
                return;
            }
            self.pos += 1;
        }
    }

    /// A string literal starting at `self.pos` (on the `"`); returns its unescaped text.
    fn string(&mut self) -> PResult<String> {
        let start = self.pos;
        self.pos += 1;
        let mut bytes = Vec::new();
        loop {
            match self.b.get(self.pos).copied() {
                None | Some(b'\n') => return err(Span::new(start, start + 1), "unterminated string"),
                Some(b'"') => {
                    self.pos += 1;
                    break;
                }
                Some(b'\\') => {
                    let esc = self.pos;
                    let c = self.peek_at(esc + 1);
                    let (byte, len) = match c {
                        b'"' | b'\\' => (c, 2),
                        b'n' => (b'\n', 2),
                        b't' => (b'\t', 2),
                        _ => {
                            let hex = self.b.get(esc + 1..esc + 3).and_then(|h| {
                                let h = std::str::from_utf8(h).ok()?;
                                if h.bytes().all(|d| d.is_ascii_hexdigit()) {
                                    u8::from_str_radix(h, 16).ok()
                                } else {
                                    None
                                }
                            });
                            match hex {
                                Some(v) if v < 0x80 => (v, 3),
                                _ => {
                                    return err(
                                        Span::new(esc, (esc + 2).min(self.b.len())),
                                        "bad escape in string (use \\\", \\\\, \\n, \\t or \\XX below 80)",
                                    )
                                }
                            }
                        }
                    };
                    bytes.push(byte);
                    self.pos += len;
                }
                Some(c) => {
                    bytes.push(c);
                    self.pos += 1;
                }
            }
        }
        // only ASCII bytes were split off or inserted, so this is valid UTF-8
        String::from_utf8(bytes).or_else(|_| err(Span::new(start, self.pos), "string is not valid UTF-8"))
    }
}

// ---- parser --------------------------------------------------------------------------------------

/// An attribute value, as written.
#[derive(Clone, Debug)]
enum Value {
    /// A number (or a word such as `inf`); its text is the value's span.
    Num,
    Bool(bool),
    Sym(String),
    /// `[a: b, c: d]`: spans of the keys and values.
    Pairs(Vec<(Span, Span)>),
}

struct Attr {
    key: String,
    key_span: Span,
    value: Value,
    span: Span,
    used: bool,
}

/// An attribute dictionary `{key = value, ...}`.
struct Attrs {
    items: Vec<Attr>,
    span: Span,
}

/// Which statements may appear, in order.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Phase {
    Inputs,
    Instrs,
    Outputs,
    Tables,
    Origins,
    Noise,
}

impl Phase {
    fn plural(self) -> &'static str {
        match self {
            Phase::Inputs => "inputs",
            Phase::Instrs => "instructions",
            Phase::Outputs => "outputs",
            Phase::Tables => "tables",
            Phase::Origins => "origins",
            Phase::Noise => "the noise report",
        }
    }
}

struct Parser<'a> {
    src: &'a str,
    toks: Vec<Token>,
    i: usize,
    /// Clear input values declared so far (`$0 ..`).
    clear_values: u64,
}

/// An instruction operand, as written.
#[derive(Clone, Copy, Debug)]
enum Operand {
    /// `%s` or `%s * coef`.
    Term { slot: u32, coef: Option<Span>, span: Span },
    /// `%s * $c` or `%s * $c * factor`.
    Product {
        slot: u32,
        clear: u32,
        clear_span: Span,
        factor: Option<Span>,
        span: Span,
    },
    /// `$c * unit`.
    ClearConstant {
        clear: u32,
        clear_span: Span,
        unit: Span,
        span: Span,
    },
}

impl Operand {
    fn span(&self) -> Span {
        match *self {
            Operand::Term { span, .. } | Operand::Product { span, .. } | Operand::ClearConstant { span, .. } => span,
        }
    }

    /// The `$c` it reads, if any.
    fn clear_ref(&self) -> Option<(u32, Span)> {
        match *self {
            Operand::Term { .. } => None,
            Operand::Product { clear, clear_span, .. } | Operand::ClearConstant { clear, clear_span, .. } => {
                Some((clear, clear_span))
            }
        }
    }
}

/// Parses a program in the `tfhe` dialect (see the module doc), and validates it.
pub fn parse_program(text: &str) -> Result<Program, Diagnostic> {
    let toks = Lexer {
        src: text,
        b: text.as_bytes(),
        pos: 0,
    }
    .tokens()?;
    let mut p = Parser {
        src: text,
        toks,
        i: 0,
        clear_values: 0,
    };
    p.program()
}

fn parse_u64(t: &str) -> Option<u64> {
    if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        if !h.is_empty() && h.bytes().all(|c| c.is_ascii_hexdigit()) {
            return u64::from_str_radix(h, 16).ok();
        }
        return None;
    }
    if !t.is_empty() && t.bytes().all(|c| c.is_ascii_digit()) {
        t.parse().ok()
    } else {
        None
    }
}

fn parse_i64(t: &str) -> Option<i64> {
    let digits = t.strip_prefix('-').unwrap_or(t);
    if !digits.is_empty() && digits.bytes().all(|c| c.is_ascii_digit()) {
        t.parse().ok()
    } else {
        None
    }
}

impl<'a> Parser<'a> {
    fn peek(&self) -> &Token {
        // the lexer always ends the list with `Eof`, and `next` never moves past it
        &self.toks[self.i.min(self.toks.len() - 1)]
    }

    fn next(&mut self) -> Token {
        let t = self.peek().clone();
        if t.tok != Tok::Eof {
            self.i += 1;
        }
        t
    }

    fn text(&self, span: Span) -> &'a str {
        self.src.get(span.start..span.end).unwrap_or("")
    }

    /// How a token reads in messages.
    fn describe(&self, t: &Token) -> String {
        if t.tok == Tok::Eof {
            return "end of input".into();
        }
        let s = self.text(t.span);
        if s.chars().count() > 24 {
            let cut: String = s.chars().take(24).collect();
            format!("`{cut}…`")
        } else {
            format!("`{s}`")
        }
    }

    fn unexpected<T>(&self, t: &Token, expected: &str) -> PResult<T> {
        err(t.span, format!("expected {expected}, found {}", self.describe(t)))
    }

    fn punct(&mut self, c: u8) -> PResult<Span> {
        let t = self.next();
        if t.tok == Tok::Punct(c) {
            Ok(t.span)
        } else {
            self.unexpected(&t, &format!("`{}`", c as char))
        }
    }

    fn eat_punct(&mut self, c: u8) -> bool {
        if self.peek().tok == Tok::Punct(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn word(&mut self, w: &str) -> PResult<Span> {
        let t = self.next();
        if t.tok == Tok::Word && self.text(t.span) == w {
            Ok(t.span)
        } else {
            self.unexpected(&t, &format!("`{w}`"))
        }
    }

    fn string(&mut self, what: &str) -> PResult<(String, Span)> {
        let t = self.next();
        match t.tok {
            Tok::Str(s) => Ok((s, t.span)),
            _ => self.unexpected(&t, what),
        }
    }

    fn slot(&mut self) -> PResult<(u32, Span)> {
        let t = self.next();
        match t.tok {
            Tok::Slot(s) => Ok((s, t.span)),
            _ => self.unexpected(&t, "a slot `%N`"),
        }
    }

    /// A `@<prefix><index>` reference (`@t3`, `@o0`).
    fn numbered_symbol(&mut self, prefix: char, what: &str) -> PResult<(u32, Span)> {
        let t = self.next();
        let Tok::Sym(name) = &t.tok else {
            return self.unexpected(&t, &format!("{what} `@{prefix}N`"));
        };
        let index = name
            .strip_prefix(prefix)
            .and_then(parse_u64)
            .and_then(|n| u32::try_from(n).ok());
        match index {
            Some(n) if format!("{prefix}{n}") == *name => Ok((n, t.span)),
            _ => err(t.span, format!("expected {what} `@{prefix}N`, found `@{name}`")),
        }
    }

    fn num_u64(&self, span: Span, what: &str) -> PResult<u64> {
        let t = self.text(span);
        parse_u64(t).ok_or_else(|| {
            Diagnostic::at(
                format!("{what}: expected an unsigned 64-bit integer, found `{t}`"),
                Some(span),
            )
        })
    }

    fn num_i64(&self, span: Span, what: &str) -> PResult<i64> {
        let t = self.text(span);
        parse_i64(t).ok_or_else(|| {
            Diagnostic::at(
                format!("{what}: expected a signed 64-bit integer, found `{t}`"),
                Some(span),
            )
        })
    }

    fn num_u32(&self, span: Span, what: &str) -> PResult<u32> {
        let t = self.text(span);
        match parse_u64(t) {
            Some(v) => u32::try_from(v).or_else(|_| err(span, format!("{what}: {v} is too large"))),
            None => err(span, format!("{what}: expected an unsigned integer, found `{t}`")),
        }
    }

    fn num_usize(&self, span: Span, what: &str) -> PResult<usize> {
        let t = self.text(span);
        match parse_u64(t) {
            Some(v) => usize::try_from(v).or_else(|_| err(span, format!("{what}: {v} is too large"))),
            None => err(span, format!("{what}: expected an unsigned integer, found `{t}`")),
        }
    }

    // ---- attributes --------------------------------------------------------------------------------

    fn attrs(&mut self) -> PResult<Attrs> {
        let open = self.punct(b'{')?;
        let mut items: Vec<Attr> = Vec::new();
        if !self.eat_punct(b'}') {
            loop {
                let k = self.next();
                if k.tok != Tok::Word {
                    return self.unexpected(&k, "an attribute name");
                }
                let key = self.text(k.span).to_string();
                if items.iter().any(|a| a.key == key) {
                    return err(k.span, format!("attribute `{key}` is given twice"));
                }
                self.punct(b'=')?;
                let (value, span) = self.value()?;
                items.push(Attr {
                    key,
                    key_span: k.span,
                    value,
                    span,
                    used: false,
                });
                if self.eat_punct(b'}') {
                    break;
                }
                self.punct(b',')?;
            }
        }
        let end = self.toks[self.i - 1].span.end;
        Ok(Attrs {
            items,
            span: Span::new(open.start, end),
        })
    }

    fn value(&mut self) -> PResult<(Value, Span)> {
        let t = self.next();
        match &t.tok {
            Tok::Num => Ok((Value::Num, t.span)),
            Tok::Word => match self.text(t.span) {
                "true" => Ok((Value::Bool(true), t.span)),
                "false" => Ok((Value::Bool(false), t.span)),
                _ => Ok((Value::Num, t.span)), // `inf`, `NaN`; anything else fails where it is read
            },
            Tok::Sym(s) => Ok((Value::Sym(s.clone()), t.span)),
            Tok::Punct(b'[') => {
                let mut pairs = Vec::new();
                if !self.eat_punct(b']') {
                    loop {
                        let a = self.next();
                        if a.tok != Tok::Num {
                            return self.unexpected(&a, "a number");
                        }
                        self.punct(b':')?;
                        let b = self.next();
                        if b.tok != Tok::Num {
                            return self.unexpected(&b, "a number");
                        }
                        pairs.push((a.span, b.span));
                        if self.eat_punct(b']') {
                            break;
                        }
                        self.punct(b',')?;
                    }
                }
                let end = self.toks[self.i - 1].span.end;
                Ok((Value::Pairs(pairs), Span::new(t.span.start, end)))
            }
            _ => self.unexpected(&t, "an attribute value"),
        }
    }

    /// Takes attribute `key` out of `a`; an error at the dictionary if it is missing.
    fn take(&self, a: &mut Attrs, key: &str) -> PResult<(Value, Span)> {
        match a.items.iter_mut().find(|x| x.key == key) {
            Some(x) => {
                x.used = true;
                Ok((x.value.clone(), x.span))
            }
            None => err(a.span, format!("missing attribute `{key}`")),
        }
    }

    fn take_num(&self, a: &mut Attrs, key: &str) -> PResult<Span> {
        match self.take(a, key)? {
            (Value::Num, span) => Ok(span),
            (_, span) => err(span, format!("`{key}` must be a number")),
        }
    }

    fn take_u32(&self, a: &mut Attrs, key: &str) -> PResult<(u32, Span)> {
        let span = self.take_num(a, key)?;
        Ok((self.num_u32(span, &format!("`{key}`"))?, span))
    }

    fn take_usize(&self, a: &mut Attrs, key: &str) -> PResult<(usize, Span)> {
        let span = self.take_num(a, key)?;
        Ok((self.num_usize(span, &format!("`{key}`"))?, span))
    }

    fn take_u64(&self, a: &mut Attrs, key: &str) -> PResult<u64> {
        let span = self.take_num(a, key)?;
        self.num_u64(span, &format!("`{key}`"))
    }

    fn take_f64(&self, a: &mut Attrs, key: &str) -> PResult<f64> {
        let span = self.take_num(a, key)?;
        let t = self.text(span);
        t.parse::<f64>()
            .or_else(|_| err(span, format!("`{key}`: expected a floating-point number, found `{t}`")))
    }

    fn take_bool(&self, a: &mut Attrs, key: &str) -> PResult<bool> {
        match self.take(a, key)? {
            (Value::Bool(b), _) => Ok(b),
            (_, span) => err(span, format!("`{key}` must be `true` or `false`")),
        }
    }

    /// Errors on any attribute not taken.
    fn finish(&self, a: Attrs, allowed: &[&str]) -> PResult<()> {
        match a.items.iter().find(|x| !x.used) {
            Some(x) => err(
                x.key_span,
                format!("unknown attribute `{}` (expected {})", x.key, allowed.join(", ")),
            ),
            None => Ok(()),
        }
    }

    // ---- statements --------------------------------------------------------------------------------

    fn program(&mut self) -> PResult<Program> {
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
            params,
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
        let mut phase = Phase::Inputs;
        let mut seen_noise = false;
        loop {
            let t = self.peek().clone();
            let word = if t.tok == Tok::Word { self.text(t.span) } else { "" };
            let (stmt, what) = match (&t.tok, word) {
                (Tok::Punct(b'}'), _) => break,
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
                            "unknown statement `{w}` (expected tfhe.input, tfhe.clear_input, tfhe.output, tfhe.table, \
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
                        "{what} cannot follow {}: the order is inputs, instructions, outputs, tables, origins, noise",
                        phase.plural()
                    )
                };
                return err(t.span, msg);
            }
            phase = stmt;
            match stmt {
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

    fn params(&mut self) -> PResult<ParamSet> {
        const KEYS: [&str; 9] = [
            "n",
            "k",
            "N",
            "lwe_noise_log2",
            "glwe_noise_log2",
            "pbs_base_log",
            "pbs_level",
            "ks_base_log",
            "ks_level",
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
        };
        self.finish(a, &KEYS)?;
        ParamSet::new(raw).map_err(|e| {
            Diagnostic::at(e.to_string(), Some(dict)).with_help(
                "use parameters found by `fhec compile` (only sets of at least 128-bit security are accepted)",
            )
        })
    }

    /// A decomposition parameter (base log or level): at most 64, whatever the product.
    fn take_small(&self, a: &mut Attrs, key: &str) -> PResult<usize> {
        let (v, span) = self.take_usize(a, key)?;
        if v > 64 {
            return err(span, format!("`{key}` = {v} is above 64"));
        }
        Ok(v)
    }

    /// `"name" [d, ...] {width = w, signed = b, scale = s}` (no scale for a clear input, whose scale is
    /// 0); checks the encoding against the limits of inputs (`max_width` 32) or outputs (64).
    fn port_head(&mut self, max_width: u32, clear: bool) -> PResult<(Port, u64, Span)> {
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
            self.finish(a, &["width", "signed"])?;
            0
        } else {
            let (scale, sspan) = self.take_u32(&mut a, "scale")?;
            if scale > 63 {
                return err(sspan, format!("scale {scale} is above 63"));
            }
            self.finish(a, &["width", "signed", "scale"])?;
            scale
        };
        let port = Port {
            name,
            shape,
            width,
            signed,
            scale,
            slots: Vec::new(),
            clear,
        };
        Ok((port, count, name_span))
    }

    /// `tfhe.input` (encrypted, slots `%a ... %b`) or `tfhe.clear_input` (clear values `$a ... $b`).
    fn input(&mut self, prog: &mut Program, clear: bool) -> PResult<()> {
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
    fn index(&mut self, clear: bool) -> PResult<(u32, Span)> {
        if !clear {
            return self.slot();
        }
        let t = self.next();
        match t.tok {
            Tok::Clear(c) => Ok((c, t.span)),
            _ => self.unexpected(&t, "a clear value `$N`"),
        }
    }

    fn expect_arrow(&mut self) -> PResult<()> {
        let t = self.next();
        if t.tok == Tok::Arrow {
            Ok(())
        } else {
            self.unexpected(&t, "`->`")
        }
    }

    /// A slot read by the definition of `me`: it must already be defined.
    fn check_use(&self, s: u32, span: Span, me: u64) -> PResult<()> {
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
    fn check_clear(&self, c: u32, span: Span) -> PResult<()> {
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
    fn operand(&mut self, me: u64) -> PResult<Operand> {
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
    fn num_token(&mut self, what: &str) -> PResult<Span> {
        let t = self.next();
        if t.tok == Tok::Num {
            Ok(t.span)
        } else {
            self.unexpected(&t, what)
        }
    }

    fn instr(
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
            "tfhe.pbs" => Some("a lookup cannot read clear values"),
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
                self.finish(a, &["shift", "offset", "table"])?;
                Instr::Pbs {
                    input,
                    shift,
                    offset,
                    table,
                }
            }
            _ => {
                return err(
                    op_span,
                    format!(
                        "unknown instruction \"{op}\" (expected \"tfhe.linear\", \"tfhe.clear_linear\" or \"tfhe.pbs\")"
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

    fn output(&mut self, prog: &mut Program) -> PResult<()> {
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

    fn table(&mut self, prog: &mut Program) -> PResult<()> {
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

    fn origin(&mut self, prog: &mut Program) -> PResult<()> {
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

    fn noise(&mut self, prog: &mut Program) -> PResult<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> ParamSet {
        ParamSet::with_secure_noise(880, 2, 1024, 23, 1, 3, 5).unwrap()
    }

    /// A small program exercising every construct, including the awkward corners.
    fn sample() -> Program {
        let t = |p: u32| Table {
            precision: p,
            values: (0..1u64 << p).map(|v| v.wrapping_mul(0x1000_0000_0000_0001)).collect(),
        };
        Program {
            name: "main".into(),
            params: params(),
            inputs: vec![
                Port {
                    name: "x".into(),
                    shape: vec![1, 4],
                    width: 4,
                    signed: false,
                    scale: 59,
                    slots: vec![0],
                    clear: false,
                },
                Port {
                    name: "empty".into(),
                    shape: vec![0, 3],
                    width: 1,
                    signed: true,
                    scale: 0,
                    slots: vec![4],
                    clear: false,
                },
                Port {
                    name: "s \"q\"\n\tλ\u{1}".into(),
                    shape: vec![],
                    width: 32,
                    signed: true,
                    scale: 63,
                    slots: vec![4],
                    clear: false,
                },
            ],
            outputs: vec![
                Port {
                    name: "out0".into(),
                    shape: vec![1, 2],
                    width: 3,
                    signed: false,
                    scale: 60,
                    slots: vec![7, 9],
                    clear: false,
                },
                Port {
                    name: "scalar".into(),
                    shape: vec![],
                    width: 64,
                    signed: true,
                    scale: 1,
                    slots: vec![0],
                    clear: false,
                },
                Port {
                    name: "none".into(),
                    shape: vec![2, 0],
                    width: 1,
                    signed: false,
                    scale: 0,
                    slots: vec![],
                    clear: false,
                },
            ],
            num_input_slots: 5,
            instrs: vec![
                Instr::Linear {
                    terms: vec![(0, 3), (1, -1), (3, 1), (4, i64::MIN), (0, i64::MAX)],
                    constant: 0,
                },
                Instr::Linear {
                    terms: vec![],
                    constant: u64::MAX,
                },
                Instr::Pbs {
                    input: 5,
                    shift: 5,
                    offset: 0x0800_0000_0000_0000,
                    table: 1,
                },
                Instr::Pbs {
                    input: 7,
                    shift: 63,
                    offset: 0,
                    table: 0,
                },
                Instr::Linear {
                    terms: vec![(8, 0), (6, -7)],
                    constant: 1 << 60,
                },
            ],
            tables: vec![t(0), t(4), t(1)],
            instr_origin: vec![1, 1, 2, 2, 3],
            origins: vec![
                Origin {
                    op: "inputs".into(),
                    location: None,
                },
                Origin {
                    op: "fhe.matmul %0".into(),
                    location: Some("3:8".into()),
                },
                Origin {
                    op: "fhe.lut %2".into(),
                    location: Some("".into()),
                },
                Origin {
                    op: "output 0 (%2)\\".into(),
                    location: Some("6:3".into()),
                },
            ],
            noise: NoiseReport {
                log2_p_error_worst_lookup: -40.44000000000001,
                log2_p_error_global: f64::NEG_INFINITY,
                pbs_by_precision: vec![(0, 1), (4, u64::MAX)],
                estimated_seconds: 5e-324,
            },
        }
    }

    /// A program with clear inputs interleaved with encrypted ones and `ClearLinear`s of every shape.
    /// All ASCII (for the corruption test).
    fn clear_sample() -> Program {
        let port = |name: &str, shape: Vec<usize>, width, signed, scale, first, clear| Port {
            name: name.into(),
            shape,
            width,
            signed,
            scale,
            slots: vec![first],
            clear,
        };
        Program {
            name: "clear".into(),
            params: params(),
            inputs: vec![
                port("x", vec![2], 4, false, 59, 0, false),
                port("w", vec![3, 2], 8, true, 0, 0, true),
                port("y", vec![], 3, true, 58, 2, false),
                port("none", vec![0], 32, false, 0, 6, true),
                port("b", vec![1], 32, false, 0, 6, true),
            ],
            outputs: vec![Port {
                name: "out".into(),
                shape: vec![2],
                width: 8,
                signed: false,
                scale: 60,
                slots: vec![8, 9],
                clear: false,
            }],
            num_input_slots: 3,
            instrs: vec![
                Instr::ClearLinear {
                    terms: vec![(0, 1), (1, -3)],
                    products: vec![(2, 0, 1), (0, 1, -2), (1, 5, i64::MIN), (2, 0, i64::MAX)],
                    clear_constants: vec![(0, 0x800), (6, u64::MAX), (0, 0)],
                    constant: 0,
                },
                Instr::ClearLinear {
                    terms: vec![],
                    products: vec![],
                    clear_constants: vec![],
                    constant: 5,
                },
                Instr::ClearLinear {
                    terms: vec![],
                    products: vec![(3, 6, 1)],
                    clear_constants: vec![],
                    constant: 0,
                },
                Instr::ClearLinear {
                    terms: vec![],
                    products: vec![],
                    clear_constants: vec![(2, 12)],
                    constant: 1 << 62,
                },
                Instr::Linear {
                    terms: vec![(3, 1), (5, 2)],
                    constant: 0,
                },
                Instr::Pbs {
                    input: 7,
                    shift: 4,
                    offset: 0,
                    table: 0,
                },
                Instr::ClearLinear {
                    terms: vec![(8, 1)],
                    products: vec![],
                    clear_constants: vec![(1, 1)],
                    constant: 0,
                },
            ],
            tables: vec![Table {
                precision: 2,
                values: vec![0, 1 << 60, 2 << 60, 3 << 60],
            }],
            instr_origin: vec![1, 1, 1, 1, 1, 2, 1],
            origins: vec![
                Origin {
                    op: "inputs".into(),
                    location: None,
                },
                Origin {
                    op: "fhe.mul %w".into(),
                    location: Some("2:3".into()),
                },
                Origin {
                    op: "fhe.lut %3".into(),
                    location: None,
                },
            ],
            noise: NoiseReport {
                log2_p_error_worst_lookup: -41.5,
                log2_p_error_global: -40.5,
                pbs_by_precision: vec![(2, 1)],
                estimated_seconds: 0.01,
            },
        }
    }

    fn round_trip(p: &Program) -> String {
        p.validate().expect("the test program is valid");
        let text = print_program(p);
        let back = match parse_program(&text) {
            Ok(b) => b,
            Err(d) => panic!("{}\n{text}", d.render("printed", &text)),
        };
        assert_eq!(&back, p, "{text}");
        assert_eq!(print_program(&back), text);
        text
    }

    #[test]
    fn hand_built_program_round_trips() {
        let text = round_trip(&sample());
        assert!(text.contains("-> %0 ... %3\n"), "{text}");
        assert!(
            text.contains("[0, 3] {width = 1, signed = true, scale = 0} -> ()\n"),
            "{text}"
        );
        assert!(text.contains("} -> %4\n"), "{text}");
        assert!(
            text.contains("%5 = \"tfhe.linear\"(%0 * 3, %1 * -1, %3, %4 * -9223372036854775808, %0 * 9223372036854775807) {constant = 0x0} origin @o1\n"),
            "{text}"
        );
        assert!(text.contains("%6 = \"tfhe.linear\"() {constant = 0xffffffffffffffff} origin @o1\n"));
        assert!(
            text.contains("%7 = \"tfhe.pbs\"(%5) {shift = 5, offset = 0x800000000000000, table = @t1} origin @o2\n")
        );
        assert!(text.contains("tfhe.origin @o0 \"inputs\"\n"), "{text}");
        assert!(text.contains("tfhe.origin @o2 \"fhe.lut %2\" at \"\"\n"), "{text}");
        assert!(text.contains("\"s \\\"q\\\"\\n\\tλ\\01\""), "{text}");
        assert!(text.contains("tfhe.table @t0 {precision = 0} = [0x0]\n"), "{text}");
        assert!(text.contains("global_log2 = -inf"), "{text}");
        assert!(text.contains("estimated_seconds = 5e-324"), "{text}");
    }

    #[test]
    fn clear_inputs_and_clear_linear_round_trip() {
        let p = clear_sample();
        let text = round_trip(&p);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[1..6],
            [
                "  tfhe.input \"x\" [2] {width = 4, signed = false, scale = 59} -> %0 ... %1",
                "  tfhe.clear_input \"w\" [3, 2] {width = 8, signed = true} -> $0 ... $5",
                "  tfhe.input \"y\" [] {width = 3, signed = true, scale = 58} -> %2",
                "  tfhe.clear_input \"none\" [0] {width = 32, signed = false} -> ()",
                "  tfhe.clear_input \"b\" [1] {width = 32, signed = false} -> $6",
            ],
            "{text}"
        );
        assert_eq!(
            lines[6],
            "  %3 = \"tfhe.clear_linear\"(%0, %1 * -3, %2 * $0, %0 * $1 * -2, %1 * $5 * -9223372036854775808, \
             %2 * $0 * 9223372036854775807, $0 * 0x800, $6 * 0xffffffffffffffff, $0 * 0x0) {constant = 0x0} origin @o1"
        );
        assert_eq!(lines[7], "  %4 = \"tfhe.clear_linear\"() {constant = 0x5} origin @o1");
        assert_eq!(
            lines[8],
            "  %5 = \"tfhe.clear_linear\"(%3 * $6) {constant = 0x0} origin @o1"
        );
        assert_eq!(
            lines[9],
            "  %6 = \"tfhe.clear_linear\"($2 * 0xc) {constant = 0x4000000000000000} origin @o1"
        );
        assert_eq!(
            lines[12],
            "  %9 = \"tfhe.clear_linear\"(%8, $1 * 0x1) {constant = 0x0} origin @o1"
        );
        // decimal units, an explicit factor 1 and free spacing are accepted; printing normalises them
        let loose = text.replace("$2 * 0xc", "$2*12").replace("(%3 * $6)", "( %3 *$6 * 1 )");
        assert_eq!(parse_program(&loose).unwrap(), p);
        // a program of clear inputs only
        let mut q = p.clone();
        q.inputs.retain(|i| i.clear);
        q.num_input_slots = 0;
        q.instrs = vec![Instr::ClearLinear {
            terms: vec![],
            products: vec![],
            clear_constants: vec![(6, 3), (5, 1)],
            constant: 0,
        }];
        q.instr_origin = vec![0];
        q.outputs[0].slots = vec![0, 0];
        q.tables.clear();
        let text = round_trip(&q);
        assert!(text.contains("  %0 = \"tfhe.clear_linear\"($6 * 0x3, $5 * 0x1) {constant = 0x0} origin @o0\n"));
    }

    /// The example in the module documentation is a valid program.
    #[test]
    fn module_doc_example_parses() {
        let src = include_str!("text.rs");
        let doc: String = src
            .lines()
            .map_while(|l| l.strip_prefix("//!"))
            .map(|l| format!("{}\n", l.strip_prefix(' ').unwrap_or(l)))
            .collect();
        let start = doc.find("```text\n").unwrap() + "```text\n".len();
        let example = &doc[start..start + doc[start..].find("```").unwrap()];
        let p = match parse_program(example) {
            Ok(p) => p,
            Err(d) => panic!("{}", d.render("doc", example)),
        };
        assert_eq!(print_program(&p), example);
        assert_eq!(p.num_clear_values(), 2);
    }

    #[test]
    fn clear_value_mistakes_are_located() {
        let text = print_program(&clear_sample());

        // references to clear values that are not declared
        let (m, at) = error_of(&text, "$6 * 0xffffffffffffffff", "$7 * 0xffffffffffffffff");
        assert_eq!(m, "use of undefined clear value $7 (only $0 ... $6 are declared)");
        assert_eq!(at, "$7");
        let (m, at) = error_of(&text, "(%3 * $6)", "(%3 * $4294967295)");
        assert_eq!(
            m,
            "use of undefined clear value $4294967295 (only $0 ... $6 are declared)"
        );
        assert_eq!(at, "$4294967295");
        let (m, at) = error_of(&print_program(&sample()), "(%0 * 3,", "(%0 * $0,");
        assert_eq!(m, "use of undefined clear value $0 (no clear value is declared)");
        assert_eq!(at, "$0");

        // clear ranges follow on in their own numbering, and match the shape
        let (m, at) = error_of(&text, "-> $0 ... $5", "-> $1 ... $6");
        assert_eq!(
            m,
            "clear input values must follow on: expected the range to start at $0"
        );
        assert_eq!(at, "$1 ... $6");
        let (m, at) = error_of(&text, "-> $6\n", "-> $7\n");
        assert_eq!(
            m,
            "clear input values must follow on: expected the range to start at $6"
        );
        assert_eq!(at, "$7");
        let (m, at) = error_of(&text, "-> $0 ... $5", "-> $0 ... $4");
        assert_eq!(m, "clear input `w` has 6 elements but the range has 5 values");
        assert_eq!(at, "$0 ... $4");
        let (m, _) = error_of(&text, "-> $0 ... $5", "-> $5 ... $0");
        assert_eq!(m, "empty clear value range");
        let (m, at) = error_of(&text, "-> $6\n", "-> %3\n");
        assert_eq!(m, "expected a clear value `$N`, found `%3`");
        assert_eq!(at, "%3");
        let (m, at) = error_of(&text, "-> %2\n", "-> $2\n");
        assert_eq!(m, "expected a slot `%N`, found `$2`");
        assert_eq!(at, "$2");

        // clear ports have no scale, and at most 32 bits
        let (m, at) = error_of(
            &text,
            "{width = 8, signed = true} -> $0",
            "{width = 8, signed = true, scale = 0} -> $0",
        );
        assert_eq!(m, "unknown attribute `scale` (expected width, signed)");
        assert_eq!(at, "scale");
        let (m, at) = error_of(
            &text,
            "{width = 8, signed = true} -> $0",
            "{width = 33, signed = true} -> $0",
        );
        assert_eq!(m, "width 33 is not in 1..=32");
        assert_eq!(at, "33");

        // only tfhe.clear_linear reads clear values
        let (m, at) = error_of(&text, "\"tfhe.linear\"(%3, %5 * 2)", "\"tfhe.linear\"(%3, %5 * $2)");
        assert_eq!(
            m,
            "\"tfhe.linear\" cannot read clear values (\"tfhe.clear_linear\" can)"
        );
        assert_eq!(at, "$2");
        let (m, at) = error_of(&text, "\"tfhe.linear\"(%3, %5 * 2)", "\"tfhe.linear\"(%3, $1 * 0x1)");
        assert_eq!(
            m,
            "\"tfhe.linear\" cannot read clear values (\"tfhe.clear_linear\" can)"
        );
        assert_eq!(at, "$1");
        let (m, at) = error_of(&text, "\"tfhe.pbs\"(%7)", "\"tfhe.pbs\"(%7 * $0)");
        assert_eq!(m, "a lookup cannot read clear values");
        assert_eq!(at, "$0");
        let (m, at) = error_of(&text, "\"tfhe.pbs\"(%7)", "\"tfhe.pbs\"($3 * 1)");
        assert_eq!(m, "a lookup cannot read clear values");
        assert_eq!(at, "$3");
        let (m, at) = error_of(&text, "= (%8, %9)", "= (%8, $0)");
        assert_eq!(m, "expected a slot `%N`, found `$0`");
        assert_eq!(at, "$0");

        // operand order and shape
        let (m, at) = error_of(&text, "(%8, $1 * 0x1)", "($1 * 0x1, %8)");
        assert!(
            m.starts_with("operands of \"tfhe.clear_linear\" come in order: terms"),
            "{m}"
        );
        assert_eq!(at, "%8");
        let (m, at) = error_of(&text, "$0 * 0x0)", "$0 * 0x0, %1 * $2)");
        assert!(m.starts_with("operands of \"tfhe.clear_linear\" come in order"), "{m}");
        assert_eq!(at, "%1 * $2");
        let (m, at) = error_of(&text, "(%8, $1 * 0x1)", "(%8, $1)");
        assert_eq!(m, "expected `*` and a unit: a clear constant is `$N * unit`, found `)`");
        assert_eq!(at, ")");
        let (m, at) = error_of(&text, "%0 * $1 * -2", "%0 * $1 * -2.5");
        assert_eq!(m, "factor: expected a signed 64-bit integer, found `-2.5`");
        assert_eq!(at, "-2.5");
        let (m, at) = error_of(&text, "$0 * 0x800", "$0 * -0x800");
        assert_eq!(m, "unit: expected an unsigned 64-bit integer, found `-0x800`");
        assert_eq!(at, "-0x800");
        let (m, at) = error_of(&text, "%0 * $1 * -2", "%0 * $1 * $2");
        assert_eq!(m, "expected a factor, found `$2`");
        assert_eq!(at, "$2");
        let (m, at) = error_of(&text, "%0 * $1 * -2", "%0 * @x");
        assert_eq!(m, "expected a coefficient or a clear value `$N`, found `@x`");
        assert_eq!(at, "@x");

        // the lexer
        let (m, at) = error_of(&text, "$6 * 0xffffffffffffffff", "$ * 0xffffffffffffffff");
        assert_eq!(m, "expected a clear value number after `$`");
        assert_eq!(at, "$");
        let (m, at) = error_of(&text, "$6 * 0xffffffffffffffff", "$4294967296 * 0x1");
        assert_eq!(m, "clear value number out of range (at most 2^32 - 1)");
        assert_eq!(at, "$4294967296");

        // statements
        let (m, at) = error_of(&text, "\"tfhe.clear_linear\"(%3 * $6)", "\"tfhe.clear_lin\"(%3 * $6)");
        assert_eq!(
            m,
            "unknown instruction \"tfhe.clear_lin\" (expected \"tfhe.linear\", \"tfhe.clear_linear\" or \"tfhe.pbs\")"
        );
        assert_eq!(at, "\"tfhe.clear_lin\"");
        let (m, at) = error_of(&text, "tfhe.clear_input \"b\"", "tfhe.clear_inputs \"b\"");
        assert!(
            m.starts_with("unknown statement `tfhe.clear_inputs` (expected tfhe.input, tfhe.clear_input,"),
            "{m}"
        );
        assert_eq!(at, "tfhe.clear_inputs");
        let (m, at) = error_of(
            &text,
            "  tfhe.output",
            "  tfhe.clear_input \"late\" [] {width = 1, signed = false} -> $7\n  tfhe.output",
        );
        assert!(m.starts_with("a clear input cannot follow instructions"), "{m}");
        assert_eq!(at, "tfhe.clear_input");
    }

    #[test]
    fn odd_names_and_empty_programs_round_trip() {
        let mut p = sample();
        for name in ["my prog", "", "a.b$c_1", "1abc", "@\"x\""] {
            p.name = name.into();
            let text = round_trip(&p);
            if name == "a.b$c_1" {
                assert!(text.starts_with("tfhe.program @a.b$c_1 {"), "{text}");
            }
        }
        let empty = Program {
            name: "e".into(),
            params: params(),
            inputs: vec![],
            outputs: vec![],
            num_input_slots: 0,
            instrs: vec![],
            tables: vec![],
            instr_origin: vec![],
            origins: vec![],
            noise: NoiseReport::default(),
        };
        let text = round_trip(&empty);
        assert!(text.contains("tfhe.noise {worst_log2 = 0.0, global_log2 = 0.0, estimated_seconds = 0.0, pbs = []}"));
        // the noise report is optional (default when absent); comments and spacing are free
        let r = params().raw().to_owned();
        let loose = format!(
            "// a comment\ntfhe.program @e {{ks_level=5,n=880,k=2,N=1024,lwe_noise_log2={},glwe_noise_log2={},\
             pbs_base_log=23,pbs_level=1,ks_base_log=3}}{{}}",
            r.lwe_noise_bound_log2, r.glwe_noise_bound_log2
        );
        assert_eq!(parse_program(&loose).unwrap(), empty);
    }

    #[test]
    fn floats_round_trip_exactly() {
        let mut p = sample();
        for v in [
            0.1 + 0.2,
            -1e-300,
            f64::MAX,
            f64::MIN_POSITIVE,
            f64::INFINITY,
            1e16,
            123_456_789.123_456_79,
            -0.0,
        ] {
            p.noise.log2_p_error_worst_lookup = v;
            p.noise.estimated_seconds = -v;
            let back = parse_program(&print_program(&p)).unwrap();
            assert_eq!(back.noise.log2_p_error_worst_lookup.to_bits(), v.to_bits());
            assert_eq!(back.noise.estimated_seconds.to_bits(), (-v).to_bits());
        }
        // NaN is not equal to itself, but it still reads back as NaN
        p.noise.log2_p_error_global = f64::NAN;
        assert!(parse_program(&print_program(&p))
            .unwrap()
            .noise
            .log2_p_error_global
            .is_nan());
    }

    fn compiled(src: &str) -> Program {
        let m = fhec_ir::parse_module(src).unwrap();
        let v = fhec_ir::verify(&m).unwrap();
        crate::compile(&v, &Default::default(), Some(src)).unwrap().program
    }

    fn mlp_text() -> String {
        print_program(&compiled(include_str!("../../../examples/mlp.fhe")))
    }

    #[test]
    fn compiled_examples_round_trip() {
        for src in [
            include_str!("../../../examples/mlp.fhe"),
            include_str!("../../../examples/tree.fhe"),
        ] {
            let p = compiled(src);
            let text = round_trip(&p);
            assert!(text.starts_with("tfhe.program @main {n = "), "{text}");
            assert!(text.contains("\"tfhe.pbs\""), "{text}");
        }
    }

    /// Parses, and checks what every answer must satisfy: errors point inside the text, accepted texts
    /// are valid programs that round trip.
    fn check_any(text: &str) -> bool {
        match parse_program(text) {
            Ok(p) => {
                p.validate().unwrap();
                let again = print_program(&p);
                assert_eq!(parse_program(&again).unwrap(), p);
                true
            }
            Err(d) => {
                let s = d.span.expect("parse errors are located");
                assert!(s.start <= s.end && s.end <= text.len(), "{s:?} in {} bytes", text.len());
                assert!(!d.message.is_empty());
                let _ = d.render("t", text);
                false
            }
        }
    }

    #[test]
    fn every_prefix_of_a_program_is_an_error() {
        check_prefixes(&mlp_text());
    }

    #[test]
    fn every_prefix_of_a_clear_program_is_an_error() {
        check_prefixes(&print_program(&clear_sample()));
    }

    fn check_prefixes(text: &str) {
        for end in 0..text.len() {
            if text.is_char_boundary(end) {
                let prefix = &text[..end];
                // only the whole text (up to its final newline) is a program
                assert_eq!(check_any(prefix), end >= text.trim_end().len(), "prefix of {end} bytes");
            }
        }
        assert!(check_any(text));
    }

    #[test]
    fn random_corruptions_never_panic() {
        check_corruptions(&mlp_text(), 0x9e37_79b9_7f4a_7c15);
    }

    #[test]
    fn random_corruptions_of_a_clear_program_never_panic() {
        check_corruptions(&print_program(&clear_sample()), 0x2545_f491_4f6c_dd1d);
    }

    /// 600 random one-byte edits of an ASCII `text`: most are rejected, none panics.
    fn check_corruptions(text: &str, seed: u64) {
        assert!(text.is_ascii());
        let mut state = seed;
        let mut rng = move || {
            // xorshift64*
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_f491_4f6c_dd1d)
        };
        const ALPHABET: &[u8] = b"%$@\"\\{}()[],=:*.->0123456789abcdefxtNo_ \n\t/!~";
        let (mut ok, mut bad) = (0, 0);
        for round in 0..600 {
            let mut b = text.as_bytes().to_vec();
            let pos = (rng() % b.len() as u64) as usize;
            let byte = if rng() % 2 == 0 {
                ALPHABET[(rng() % ALPHABET.len() as u64) as usize]
            } else {
                (rng() % 0x80) as u8
            };
            match round % 3 {
                0 => b[pos] = byte,
                1 => {
                    b.remove(pos);
                }
                _ => b.insert(pos, byte),
            }
            // every byte of the text is ASCII, so this is still UTF-8
            let t = String::from_utf8(b).unwrap();
            if check_any(&t) {
                ok += 1;
            } else {
                bad += 1;
            }
        }
        assert!(bad > 300, "{ok} accepted, {bad} rejected");
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut state = 12345u64;
        for _ in 0..300 {
            let len = (state % 200) as usize;
            let mut b = Vec::with_capacity(len);
            for _ in 0..len {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                b.push((state >> 33) as u8);
            }
            let t = String::from_utf8_lossy(&b);
            assert!(!check_any(&t));
        }
    }

    /// The error for `text` with `from` replaced by `to`: its message, and the text it points at.
    fn error_of(text: &str, from: &str, to: &str) -> (String, String) {
        assert!(text.contains(from), "`{from}` not in the text");
        let t = text.replacen(from, to, 1);
        let d = parse_program(&t).expect_err("the edit makes the text invalid");
        let s = d.span.expect("located");
        (d.message, t[s.start..s.end].to_string())
    }

    #[test]
    fn typical_mistakes_are_located() {
        let text = print_program(&sample());

        let (m, at) = error_of(&text, "\"tfhe.pbs\"(%5)", "\"tfhe.pbz\"(%5)");
        assert!(m.starts_with("unknown instruction \"tfhe.pbz\""), "{m}");
        assert_eq!(at, "\"tfhe.pbz\"");

        let (m, at) = error_of(&text, "%7 = ", "%8 = ");
        assert!(m.contains("expected %7 here"), "{m}");
        assert_eq!(at, "%8");

        let (m, at) = error_of(&text, "\"tfhe.pbs\"(%5)", "\"tfhe.pbs\"(%12)");
        assert_eq!(m, "use of undefined slot %12 (only %0 ... %6 are defined here)");
        assert_eq!(at, "%12");

        let (m, at) = error_of(&text, "= (%7, %9)", "= (%7, %10)");
        assert!(m.starts_with("use of undefined slot %10"), "{m}");
        assert_eq!(at, "%10");

        let (m, at) = error_of(&text, "= [0x0, 0x1000000000000001]", "= [0x0]");
        assert_eq!(m, "table @t2 has 1 entries, expected 2 (2^1 for precision 1)");
        assert_eq!(at, "[0x0]");

        let (m, at) = error_of(&text, "table = @t1", "table = @t7");
        assert_eq!(m, "reference to undefined table @t7");
        assert_eq!(at, "@t7");

        let (m, at) = error_of(&text, "origin @o3", "origin @o9");
        assert_eq!(m, "reference to undefined origin @o9");
        assert_eq!(at, "@o9");

        let (m, at) = error_of(&text, "tfhe.noise", "tfhe.nois");
        assert!(m.starts_with("unknown statement `tfhe.nois`"), "{m}");
        assert_eq!(at, "tfhe.nois");

        let (m, at) = error_of(&text, "-> %0 ... %3", "-> %0 ... %2");
        assert_eq!(m, "input `x` has 4 elements but the range has 3 slots");
        assert_eq!(at, "%0 ... %2");

        let (m, at) = error_of(&text, "{constant = 0x0}", "{constant = 0x0, const = 1}");
        assert!(m.starts_with("unknown attribute `const`"), "{m}");
        assert_eq!(at, "const");

        let (m, at) = error_of(&text, "{shift = 5, offset", "{shift = 64, offset");
        assert_eq!(m, "shift 64 is above 63");
        assert_eq!(at, "64");

        let (m, at) = error_of(&text, "\"tfhe.pbs\"(%5)", "\"tfhe.pbs\"(%5 * 2)");
        assert_eq!(m, "a lookup reads its input without a coefficient");
        assert_eq!(at, "2");

        let (m, at) = error_of(&text, "%0 * 3", "%0 * 3.5");
        assert!(m.starts_with("coefficient: expected a signed 64-bit integer"), "{m}");
        assert_eq!(at, "3.5");

        let (m, _) = error_of(&text, "tfhe.table @t1", "tfhe.table @t2");
        assert_eq!(m, "expected @t1 here: tables are numbered in order");

        // a statement out of order
        let first_output = text.find("  tfhe.output").unwrap();
        let line_end = first_output + text[first_output..].find('\n').unwrap() + 1;
        let moved = format!(
            "{}{}",
            &text[..line_end],
            text[line_end..].replacen(
                "  tfhe.table @t0",
                "  %99 = \"tfhe.linear\"() {constant = 0x0} origin @o0\n  tfhe.table @t0",
                1
            )
        );
        let d = parse_program(&moved).unwrap_err();
        assert!(
            d.message.starts_with("an instruction cannot follow outputs"),
            "{}",
            d.message
        );
    }

    #[test]
    fn insecure_parameters_are_rejected() {
        let text = print_program(&sample());
        let r = *params().raw();
        let from = format!("lwe_noise_log2 = {}", r.lwe_noise_bound_log2);
        let to = format!("lwe_noise_log2 = {}", r.lwe_noise_bound_log2 - 10);
        let (m, at) = error_of(&text, &from, &to);
        assert!(m.starts_with("parameters: insecure: LWE noise bound"), "{m}");
        assert!(at.starts_with("{n = 880") && at.ends_with('}'), "{at}");

        let (m, _) = error_of(&text, "N = 1024", "N = 1000");
        assert!(m.contains("not a power of two"), "{m}");

        // a decomposition whose product would overflow is refused before the security check
        let (m, at) = error_of(&text, "pbs_base_log = 23", "pbs_base_log = 9223372036854775808");
        assert_eq!(m, "`pbs_base_log` = 9223372036854775808 is above 64");
        assert_eq!(at, "9223372036854775808");

        let (m, at) = error_of(&text, ", ks_level = 5}", "}");
        assert_eq!(m, "missing attribute `ks_level`");
        assert!(at.starts_with("{n = "), "{at}");
    }
}
