//! Decides which newlines end statements, so scripts read like the seeds' configs:
//! - inside `( )` and `[ ]` newlines are just whitespace;
//! - a line ending in an operator or `,` continues on the next line;
//! - a line starting with an infix operator (other than `-`, which may begin a
//!   negative number) continues the previous line, so `>> cosine(..)` can stand alone;
//! - runs of separators collapse into one.

use super::token::{Keyword, Token};
use crate::diag::Span;

fn ends_line_open(t: &Token) -> bool {
    matches!(t, Token::Op(_) | Token::Ctrl(',') | Token::Ctrl(':') | Token::Kw(Keyword::To))
}

fn starts_continuation(t: &Token) -> bool {
    matches!(t, Token::Op(op) if *op != "-")
}

pub fn layout(tokens: Vec<(Token, Span)>) -> Vec<(Token, Span)> {
    let mut out: Vec<(Token, Span)> = Vec::with_capacity(tokens.len());
    let mut depth: usize = 0; // open ( and [
    let mut pending_sep: Option<Span> = None;
    for (tok, span) in tokens {
        match &tok {
            Token::Sep => {
                let prev_open = out.last().map(|(t, _)| ends_line_open(t)).unwrap_or(true);
                if depth == 0 && !prev_open && pending_sep.is_none() {
                    pending_sep = Some(span);
                }
                continue;
            }
            Token::Ctrl('(') | Token::Ctrl('[') => depth += 1,
            Token::Ctrl(')') | Token::Ctrl(']') => depth = depth.saturating_sub(1),
            // A brace ends any unbalanced bracket run so a missing `)` cannot swallow
            // the rest of the file; the parser reports the missing bracket.
            Token::Ctrl('{') | Token::Ctrl('}') => depth = 0,
            _ => {}
        }
        if let Some(sep_span) = pending_sep.take() {
            let first_after_sep = matches!(tok, Token::Ctrl('}'));
            if !starts_continuation(&tok) && !first_after_sep {
                out.push((Token::Sep, sep_span));
            }
        }
        out.push((tok, span));
    }
    out
}
