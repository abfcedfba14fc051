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

mod parse;
mod print;
mod statements;
#[cfg(test)]
mod tests;

pub use print::print_program;

// ---- names shared by the printer and the lexer ------------------------------------------------

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
    Partitions,
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
            Phase::Partitions => "partitions",
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
