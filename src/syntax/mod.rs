//! Stage 1, syntax: source text to a spanned syntax tree (`parse`). Lexing and parsing use
//! chumsky; every lexer and parser error becomes a `Diagnostic`. Knows nothing of names,
//! kinds or values — that is `check`'s job.

pub mod ast;
mod layout;
mod lexer;
mod parser;
pub mod token;

use crate::diag::{span, Diagnostic, FileId, Span};
use chumsky::prelude::*;
use chumsky::error::{Rich, RichPattern, RichReason};

pub use ast::*;

/// Lexes and lays out `src`: the token stream both parsers read, and the diagnostics so far.
fn tokens(src: &str, file: FileId) -> (Vec<(token::Token, Span)>, Vec<Diagnostic>) {
    let (tokens, lex_errors) = lexer::lex(src, file);
    let mut diags: Vec<Diagnostic> = lex_errors.into_iter().map(|e| lex_diagnostic(e, file)).collect();
    let (tokens, layout_diags) = layout::layout(tokens, src);
    diags.extend(layout_diags);
    (tokens, diags)
}

/// Parses one file. Returns the tree (with `Error` nodes where recovery happened) and
/// every syntax error found.
pub fn parse(src: &str, file: FileId) -> (Module, Vec<Diagnostic>) {
    let (tokens, mut diags) = tokens(src, file);
    let eoi = span(file, src.len()..src.len());
    let input = tokens.as_slice().map(eoi, |(t, s)| (t, s));
    let (module, parse_errors) = parser::module().parse(input).into_output_errors();
    diags.extend(parse_errors.into_iter().map(parse_diagnostic));
    (module.unwrap_or_default(), diags)
}

/// Parses a single expression (used by the REPL's `:type`).
pub fn parse_expr(src: &str, file: FileId) -> (Option<SExpr>, Vec<Diagnostic>) {
    let (tokens, mut diags) = tokens(src, file);
    let tokens: Vec<_> = tokens.into_iter().filter(|(t, _)| *t != token::Token::Sep).collect();
    let eoi = span(file, src.len()..src.len());
    let input = tokens.as_slice().map(eoi, |(t, s)| (t, s));
    let (e, errs) = parser::expr().then_ignore(end()).parse(input).into_output_errors();
    diags.extend(errs.into_iter().map(parse_diagnostic));
    (e, diags)
}

fn lex_diagnostic(e: Rich<'_, char>, file: FileId) -> Diagnostic {
    let s = span(file, e.span().start..e.span().end);
    match e.reason() {
        RichReason::Custom(msg) => Diagnostic::error(msg.to_string()).label(s, "here"),
        _ => {
            let what = match e.found() {
                Some(c) => format!("unexpected character `{}`", c.escape_debug()),
                None => "unexpected end of file".to_string(),
            };
            let d = Diagnostic::error(what.clone()).label(s, "kdl does not know this character");
            match e.found().map(|c| *c) {
                Some('%') => d.help("`%` only works right after a number, as in `20%` (= 0.2)"),
                Some('\'') => d.help("strings use double quotes: \"text\""),
                Some('&') | Some('|') | Some('!') => d.help("kdl has no logic operators; compare with == != < <= > >="),
                _ => d.help("remove it; comments start with `#`"),
            }
        }
    }
}

fn describe_pattern(p: &RichPattern<'_, token::Token>) -> Option<String> {
    match p {
        RichPattern::Token(t) if **t == token::Token::Sep => Some("a new line or `;`".to_string()),
        RichPattern::Token(t) => Some(format!("`{}`", **t)),
        RichPattern::Label(l) => Some(l.to_string()),
        RichPattern::Identifier(i) => Some(format!("`{i}`")),
        RichPattern::EndOfInput => Some("end of file".to_string()),
        _ => None,
    }
}

fn parse_diagnostic(e: Rich<'_, token::Token, Span>) -> Diagnostic {
    let sp = *e.span();
    if let RichReason::Custom(msg) = e.reason() {
        return Diagnostic::error(msg.to_string()).label(sp, "here");
    }
    let found = match e.found() {
        Some(token::Token::Sep) => "end of statement".to_string(),
        Some(t) => format!("`{t}`"),
        None => "end of file".to_string(),
    };
    let mut expected: Vec<String> = e.expected().filter_map(describe_pattern).collect();
    expected.sort();
    expected.dedup();
    // A long list of operators reads better as one phrase.
    let is_op = |x: &String| {
        let inner = x.trim_matches('`');
        x.starts_with('`') && !inner.is_empty() && inner.chars().all(|c| "+-*/^<>=!.".contains(c))
    };
    if expected.iter().filter(|x| is_op(x)).count() > 3 {
        expected.retain(|x| !is_op(x) || x == "`=`");
        expected.insert(0, "an operator".to_string());
    }
    let label = if expected.is_empty() {
        "not expected here".to_string()
    } else {
        format!("expected {}", join_or(&expected))
    };
    if e.found() == Some(&token::Token::Ctrl('}')) && !expected.iter().any(|x| x == "`}`") {
        return Diagnostic::error("unexpected `}`: no `{` is open here").label(sp, "nothing to close").help("remove it, or add the `stage NAME {` it was meant to close");
    }
    let mut d = Diagnostic::error(format!("unexpected {found}")).label(sp, label);
    if let Some(ctx) = e.contexts().next() {
        d = d.label(*ctx.1, format!("while reading this {}", ctx.0));
    }
    if matches!(e.found(), None | Some(token::Token::Sep)) && expected.iter().any(|x| x == "`)`" || x == "`]`" || x == "`}`") {
        d = d.help("a bracket opened here is never closed");
    }
    d
}

fn join_or(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {}", init.join(", "), last),
    }
}
