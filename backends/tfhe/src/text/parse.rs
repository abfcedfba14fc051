//! The parser's primitives: tokens, numbers, symbols, attribute dictionaries.

use super::*;

impl<'a> Parser<'a> {
    pub(super) fn peek(&self) -> &Token {
        // the lexer always ends the list with `Eof`, and `next` never moves past it
        &self.toks[self.i.min(self.toks.len() - 1)]
    }

    pub(super) fn next(&mut self) -> Token {
        let t = self.peek().clone();
        if t.tok != Tok::Eof {
            self.i += 1;
        }
        t
    }

    pub(super) fn text(&self, span: Span) -> &'a str {
        self.src.get(span.start..span.end).unwrap_or("")
    }

    /// How a token reads in messages.
    pub(super) fn describe(&self, t: &Token) -> String {
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

    pub(super) fn unexpected<T>(&self, t: &Token, expected: &str) -> PResult<T> {
        err(t.span, format!("expected {expected}, found {}", self.describe(t)))
    }

    pub(super) fn punct(&mut self, c: u8) -> PResult<Span> {
        let t = self.next();
        if t.tok == Tok::Punct(c) {
            Ok(t.span)
        } else {
            self.unexpected(&t, &format!("`{}`", c as char))
        }
    }

    pub(super) fn eat_punct(&mut self, c: u8) -> bool {
        if self.peek().tok == Tok::Punct(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    pub(super) fn word(&mut self, w: &str) -> PResult<Span> {
        let t = self.next();
        if t.tok == Tok::Word && self.text(t.span) == w {
            Ok(t.span)
        } else {
            self.unexpected(&t, &format!("`{w}`"))
        }
    }

    pub(super) fn string(&mut self, what: &str) -> PResult<(String, Span)> {
        let t = self.next();
        match t.tok {
            Tok::Str(s) => Ok((s, t.span)),
            _ => self.unexpected(&t, what),
        }
    }

    pub(super) fn slot(&mut self) -> PResult<(u32, Span)> {
        let t = self.next();
        match t.tok {
            Tok::Slot(s) => Ok((s, t.span)),
            _ => self.unexpected(&t, "a slot `%N`"),
        }
    }

    /// A `@<prefix><index>` reference (`@t3`, `@o0`).
    pub(super) fn numbered_symbol(&mut self, prefix: char, what: &str) -> PResult<(u32, Span)> {
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

    pub(super) fn num_u64(&self, span: Span, what: &str) -> PResult<u64> {
        let t = self.text(span);
        parse_u64(t).ok_or_else(|| {
            Diagnostic::at(
                format!("{what}: expected an unsigned 64-bit integer, found `{t}`"),
                Some(span),
            )
        })
    }

    pub(super) fn num_i64(&self, span: Span, what: &str) -> PResult<i64> {
        let t = self.text(span);
        parse_i64(t).ok_or_else(|| {
            Diagnostic::at(
                format!("{what}: expected a signed 64-bit integer, found `{t}`"),
                Some(span),
            )
        })
    }

    pub(super) fn num_u32(&self, span: Span, what: &str) -> PResult<u32> {
        let t = self.text(span);
        match parse_u64(t) {
            Some(v) => u32::try_from(v).or_else(|_| err(span, format!("{what}: {v} is too large"))),
            None => err(span, format!("{what}: expected an unsigned integer, found `{t}`")),
        }
    }

    pub(super) fn num_usize(&self, span: Span, what: &str) -> PResult<usize> {
        let t = self.text(span);
        match parse_u64(t) {
            Some(v) => usize::try_from(v).or_else(|_| err(span, format!("{what}: {v} is too large"))),
            None => err(span, format!("{what}: expected an unsigned integer, found `{t}`")),
        }
    }

    // ---- attributes --------------------------------------------------------------------------------

    pub(super) fn attrs(&mut self) -> PResult<Attrs> {
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

    pub(super) fn value(&mut self) -> PResult<(Value, Span)> {
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
    pub(super) fn take(&self, a: &mut Attrs, key: &str) -> PResult<(Value, Span)> {
        match a.items.iter_mut().find(|x| x.key == key) {
            Some(x) => {
                x.used = true;
                Ok((x.value.clone(), x.span))
            }
            None => err(a.span, format!("missing attribute `{key}`")),
        }
    }

    pub(super) fn take_num(&self, a: &mut Attrs, key: &str) -> PResult<Span> {
        match self.take(a, key)? {
            (Value::Num, span) => Ok(span),
            (_, span) => err(span, format!("`{key}` must be a number")),
        }
    }

    pub(super) fn take_u32(&self, a: &mut Attrs, key: &str) -> PResult<(u32, Span)> {
        let span = self.take_num(a, key)?;
        Ok((self.num_u32(span, &format!("`{key}`"))?, span))
    }

    pub(super) fn take_usize(&self, a: &mut Attrs, key: &str) -> PResult<(usize, Span)> {
        let span = self.take_num(a, key)?;
        Ok((self.num_usize(span, &format!("`{key}`"))?, span))
    }

    pub(super) fn take_u64(&self, a: &mut Attrs, key: &str) -> PResult<u64> {
        let span = self.take_num(a, key)?;
        self.num_u64(span, &format!("`{key}`"))
    }

    pub(super) fn take_f64(&self, a: &mut Attrs, key: &str) -> PResult<f64> {
        let span = self.take_num(a, key)?;
        let t = self.text(span);
        t.parse::<f64>()
            .or_else(|_| err(span, format!("`{key}`: expected a floating-point number, found `{t}`")))
    }

    pub(super) fn take_bool(&self, a: &mut Attrs, key: &str) -> PResult<bool> {
        match self.take(a, key)? {
            (Value::Bool(b), _) => Ok(b),
            (_, span) => err(span, format!("`{key}` must be `true` or `false`")),
        }
    }

    /// Errors on any attribute not taken.
    pub(super) fn finish(&self, a: Attrs, allowed: &[&str]) -> PResult<()> {
        match a.items.iter().find(|x| !x.used) {
            Some(x) => err(
                x.key_span,
                format!("unknown attribute `{}` (expected {})", x.key, allowed.join(", ")),
            ),
            None => Ok(()),
        }
    }

    // ---- statements --------------------------------------------------------------------------------
}
