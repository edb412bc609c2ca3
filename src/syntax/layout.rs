//! Decides which newlines end statements, so scripts read like the seeds' configs:
//! - inside `( )` and `[ ]` newlines are just whitespace;
//! - a line ending in an operator or `,` continues on the next line;
//! - a line starting with an infix operator (other than `-`, which may begin a
//!   negative number) continues the previous line, so `>> cosine(..)` can stand alone;
//! - runs of separators collapse into one.
//!
//! It also recovers from a bracket left open: at a statement keyword at the start of a
//! line, a brace, or the end of the file, it reports the open bracket and closes it, so
//! one missing `)` does not hide the rest of the file.

use super::token::{Keyword, Token};
use crate::diag::{span, Diagnostic, Span};

fn ends_line_open(t: &Token) -> bool {
    matches!(t, Token::Op(_) | Token::Ctrl(',') | Token::Ctrl(':') | Token::Kw(Keyword::To))
}

fn starts_continuation(t: &Token) -> bool {
    matches!(t, Token::Op(op) if *op != "-")
}

/// Tokens that begin a statement when they open a line: keywords, and role names not
/// followed by `=` (which would be a named argument such as `student=`).
fn starts_statement(t: &Token, next: Option<&Token>) -> bool {
    match t {
        Token::Kw(Keyword::Let | Keyword::Def | Keyword::Use | Keyword::Stage | Keyword::Require | Keyword::Print | Keyword::Save) => true,
        // `student llama(..)`: a role followed by the start of a value on the same line.
        Token::Ident(name) => {
            super::ast::Role::from_name(name).is_some()
                && matches!(next, Some(Token::Ident(_) | Token::Num(_) | Token::Str(_) | Token::Kw(Keyword::True | Keyword::False)))
        }
        _ => false,
    }
}

fn at_line_start(src: &str, s: Span) -> bool {
    s.start == 0 || src.as_bytes().get(s.start - 1) == Some(&b'\n')
}

fn closer(open: char) -> char {
    if open == '(' {
        ')'
    } else {
        ']'
    }
}

struct Layout {
    out: Vec<(Token, Span)>,
    open: Vec<(char, Span)>,
    diags: Vec<Diagnostic>,
}

impl Layout {
    /// Closes every open `(`/`[` right after the last token, reporting each.
    fn close_all(&mut self) {
        let end = self.out.last().map(|(_, s)| s.end).unwrap_or(0);
        while let Some((c, at)) = self.open.pop() {
            self.diags.push(
                Diagnostic::error(format!("this `{c}` is never closed"))
                    .label(at, "opened here")
                    .help(format!("add `{}` where the expression ends", closer(c))),
            );
            self.out.push((Token::Ctrl(closer(c)), span(at.context, end..end)));
        }
    }
}

pub fn layout(tokens: Vec<(Token, Span)>, src: &str) -> (Vec<(Token, Span)>, Vec<Diagnostic>) {
    let mut l = Layout { out: Vec::with_capacity(tokens.len()), open: Vec::new(), diags: Vec::new() };
    let mut pending_sep: Option<Span> = None;
    let nexts: Vec<Option<Token>> = tokens.iter().skip(1).map(|(t, _)| Some(t.clone())).chain(std::iter::once(None)).collect();
    for ((tok, sp), next) in tokens.into_iter().zip(nexts) {
        if tok == Token::Sep {
            let prev_open = l.out.last().map(|(t, _)| ends_line_open(t)).unwrap_or(true);
            if l.open.is_empty() && !prev_open && pending_sep.is_none() {
                pending_sep = Some(sp);
            }
            continue;
        }
        let lost = !l.open.is_empty()
            && (matches!(tok, Token::Ctrl('{') | Token::Ctrl('}')) || (starts_statement(&tok, next.as_ref()) && at_line_start(src, sp)));
        if lost {
            l.close_all();
            if !matches!(tok, Token::Ctrl('{')) {
                pending_sep = Some(span(sp.context, sp.start..sp.start));
            }
        }
        match &tok {
            Token::Ctrl(c @ ('(' | '[')) => l.open.push((*c, sp)),
            Token::Ctrl(c @ (')' | ']')) => {
                if l.open.last().is_some_and(|(o, _)| closer(*o) == *c) {
                    l.open.pop();
                }
            }
            _ => {}
        }
        if let Some(sep_span) = pending_sep.take() {
            if !starts_continuation(&tok) && !matches!(tok, Token::Ctrl('}')) {
                l.out.push((Token::Sep, sep_span));
            }
        }
        l.out.push((tok, sp));
    }
    l.close_all();
    (l.out, l.diags)
}
