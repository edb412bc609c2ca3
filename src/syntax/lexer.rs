//! Characters to tokens (chumsky). Newlines are kept as `Sep` tokens here; `layout`
//! decides which of them end a statement.

use super::token::{Keyword, Token};
use crate::diag::{span, FileId, Span};
use chumsky::prelude::*;

type LexErr<'src> = extra::Err<Rich<'src, char>>;

fn number<'src>() -> impl Parser<'src, &'src str, Token, LexErr<'src>> + Clone {
    let digits = one_of("0123456789").then(one_of("0123456789_").repeated());
    let fraction = just('.').then(one_of("0123456789")).then(one_of("0123456789_").repeated());
    let exponent = one_of("eE").then(one_of("+-").or_not()).then(one_of("0123456789").repeated().at_least(1));
    digits
        .then(fraction.or_not())
        .then(exponent.or_not())
        .to_slice()
        .then(just('%').or_not())
        .validate(|(text, percent): (&str, Option<char>), e, emitter| {
            let clean: String = text.chars().filter(|c| *c != '_').collect();
            // The grammar above only admits well-formed literals, so parsing fails only by
            // overflowing, which Rust reports as infinity; a script never means that. `validate`
            // (not `try_map`) keeps the token, so the error is not followed by a second one
            // for the exponent read as a name.
            let value: f64 = clean.parse().unwrap_or(f64::INFINITY);
            if !value.is_finite() {
                emitter.emit(Rich::custom(e.span(), format!("`{text}` is too large for a number (the largest is about 1.8e308)")));
            }
            // `20%` is sugar for 0.2, so fractions read as the seeds write them.
            Token::Num(if percent.is_some() { value / 100.0 } else { value })
        })
}

fn string<'src>() -> impl Parser<'src, &'src str, Token, LexErr<'src>> + Clone {
    let escape = just('\\').ignore_then(choice((
        just('n').to('\n'),
        just('t').to('\t'),
        just('r').to('\r'),
        just('0').to('\0'),
        just('\\').to('\\'),
        just('"').to('"'),
        just('u').ignore_then(
            text::digits(16)
                .at_least(1)
                .at_most(6)
                .to_slice()
                .delimited_by(just('{'), just('}'))
                .try_map(|hex: &str, sp| {
                    u32::from_str_radix(hex, 16)
                        .ok()
                        .and_then(char::from_u32)
                        .ok_or_else(|| Rich::custom(sp, format!("`\\u{{{hex}}}` is not a valid character")))
                }),
        ),
    )))
    .labelled("escape (\\n \\t \\r \\0 \\\\ \\\" \\u{..})");
    just('"')
        .ignore_then(none_of("\\\"\n").or(escape).repeated().collect::<String>())
        .then(just('"').or_not())
        .validate(|(s, closed), e, emitter| {
            if closed.is_none() {
                emitter.emit(Rich::custom(e.span(), "this string is never closed: add a `\"` before the end of the line"));
            }
            Token::Str(s)
        })
}

fn token<'src>() -> impl Parser<'src, &'src str, Token, LexErr<'src>> + Clone {
    let ident = text::ascii::ident().map(|s: &str| match Keyword::from_str(s) {
        Some(k) => Token::Kw(k),
        None => Token::Ident(s.to_string()),
    });
    let op = choice((
        just(">>").to(Token::Op(">>")),
        just("==").to(Token::Op("==")),
        just("!=").to(Token::Op("!=")),
        just("<=").to(Token::Op("<=")),
        just(">=").to(Token::Op(">=")),
        just("+").to(Token::Op("+")),
        just("-").to(Token::Op("-")),
        just("*").to(Token::Op("*")),
        just("/").to(Token::Op("/")),
        just("^").to(Token::Op("^")),
        just("<").to(Token::Op("<")),
        just(">").to(Token::Op(">")),
        just("=").to(Token::Op("=")),
        just(".").to(Token::Op(".")),
    ));
    let ctrl = one_of("()[]{},:").map(Token::Ctrl);
    let sep = one_of(";\n").to(Token::Sep);
    choice((number(), string(), ident, op, ctrl, sep))
}

fn lexer<'src>() -> impl Parser<'src, &'src str, Vec<(Token, SimpleSpan)>, LexErr<'src>> {
    let comment = just('#').then(none_of('\n').repeated()).ignored();
    let blank = one_of(" \t\r").ignored().or(comment).repeated();
    token()
        .map_with(|t, e| (t, e.span()))
        .padded_by(blank)
        .recover_with(skip_then_retry_until(any().ignored(), end()))
        .repeated()
        .collect()
        .then_ignore(blank)
}

/// Lexes one file. Tokens lexed past an error are still returned so the parser can
/// report further problems in the same run.
pub fn lex(src: &str, file: FileId) -> (Vec<(Token, Span)>, Vec<Rich<'_, char>>) {
    let (tokens, errors) = lexer().parse(src).into_output_errors();
    let tokens = tokens
        .unwrap_or_default()
        .into_iter()
        .map(|(t, s)| (t, span(file, s.start..s.end)))
        .collect();
    (tokens, errors)
}
