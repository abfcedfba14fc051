//! Diagnostics: an error with an optional source location, rendered the way compilers do:
//!
//! ```text
//! error: fhe.lut: table has 32 entries, expected 64 (2^6 for input type !fhe.eint<6>)
//!  --> model.fhe:3:8
//!   |
//! 3 |   %1 = "fhe.lut"(%0) {table = dense<...> : tensor<32xi4>} : (!fhe.eint<6>) -> !fhe.eint<4>
//!   |        ^^^^^^^^^
//!   = help: give the table 2^w entries for a w-bit input
//! ```

use std::fmt;

/// A byte range in the source text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Span {
        Span { start, end }
    }
}

/// An error about a program, possibly located in its source text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub message: String,
    pub span: Option<Span>,
    /// Extra lines: `= note: ...`.
    pub notes: Vec<String>,
    /// What the user can do about it: `= help: ...`.
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn new(message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            message: message.into(),
            span: None,
            notes: Vec::new(),
            help: None,
        }
    }

    pub fn at(message: impl Into<String>, span: Option<Span>) -> Diagnostic {
        Diagnostic {
            span,
            ..Diagnostic::new(message)
        }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    pub fn with_note(mut self, note: impl Into<String>) -> Diagnostic {
        self.notes.push(note.into());
        self
    }

    /// 1-based line and column (in characters) of the span's start in `source`.
    pub fn line_col(&self, source: &str) -> Option<(usize, usize)> {
        let span = self.span?;
        Some(line_col(source, span.start))
    }

    /// Renders the diagnostic with the source line and a caret under the location.
    pub fn render(&self, file: &str, source: &str) -> String {
        let mut out = format!("error: {}\n", self.message);
        if let Some(span) = self.span {
            let mut start = span.start.min(source.len());
            while !source.is_char_boundary(start) {
                start -= 1;
            }
            let (line, col) = line_col(source, start);
            let line_start = source[..start].rfind('\n').map_or(0, |i| i + 1);
            let line_end = source[start..].find('\n').map_or(source.len(), |i| start + i);
            let text = &source[line_start..line_end];
            let gutter = line.to_string().len();
            let pad = " ".repeat(gutter);
            let mut end = span.end.clamp(start, line_end);
            while !source.is_char_boundary(end) {
                end += 1;
            }
            let width = source[start..end].chars().count().max(1);
            out += &format!("{pad}--> {file}:{line}:{col}\n");
            out += &format!("{pad} |\n");
            out += &format!("{line} | {}\n", text.trim_end());
            let lead: String = text
                .chars()
                .take(col - 1)
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            out += &format!("{pad} | {lead}{}\n", "^".repeat(width));
        } else {
            out += &format!(" --> {file}\n");
        }
        let pad = " ".repeat(self.line_col(source).map_or(1, |(l, _)| l.to_string().len()));
        for n in &self.notes {
            out += &format!("{pad} = note: {n}\n");
        }
        if let Some(h) = &self.help {
            out += &format!("{pad} = help: {h}\n");
        }
        out
    }
}

/// 1-based line and column (in characters) of byte offset `offset`.
pub fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let mut offset = offset;
    while !source.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message)?;
        if let Some(h) = &self.help {
            write!(f, " (help: {h})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostic {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_caret() {
        let src = "a\n  bad thing\n";
        let d = Diagnostic::at("oops", Some(Span::new(4, 7))).with_help("fix it");
        let r = d.render("f.fhe", src);
        assert_eq!(
            r,
            "error: oops\n --> f.fhe:2:3\n  |\n2 |   bad thing\n  |   ^^^\n  = help: fix it\n"
        );
    }

    #[test]
    fn spans_inside_multibyte_characters_do_not_panic() {
        let src = "x: é, ü";
        for start in 0..=src.len() + 1 {
            for end in start..=src.len() + 2 {
                let _ = Diagnostic::at("m", Some(Span::new(start, end))).render("f", src);
            }
        }
    }

    #[test]
    fn span_past_end_does_not_panic() {
        let d = Diagnostic::at("eof", Some(Span::new(100, 200)));
        let r = d.render("f", "abc");
        assert!(r.contains("f:1:4"), "{r}");
    }
}
