//! Tokens to the syntax tree (chumsky). Errors are recovered at statement boundaries so
//! one run reports every syntax error in a file.

use super::ast::{Arg, BinOp, Expr, Ident, Module, Param, Role, SExpr, SStmt, Spanned, Stmt, UseTarget};
use super::token::{Keyword, Token};
use crate::diag::Span;
use chumsky::{input::ValueInput, prelude::*};

pub type ParseErr<'t> = extra::Err<Rich<'t, Token, Span>>;

fn ident<'t, I>() -> impl Parser<'t, I, Ident, ParseErr<'t>> + Clone
where
    I: ValueInput<'t, Token = Token, Span = Span>,
{
    select! { Token::Ident(s) => s }.map_with(|s, e| Spanned::new(s, e.span())).labelled("name")
}

fn op<'t, I>(s: &'static str) -> impl Parser<'t, I, Token, ParseErr<'t>> + Clone
where
    I: ValueInput<'t, Token = Token, Span = Span>,
{
    just(Token::Op(s))
}

fn ctrl<'t, I>(c: char) -> impl Parser<'t, I, Token, ParseErr<'t>> + Clone
where
    I: ValueInput<'t, Token = Token, Span = Span>,
{
    just(Token::Ctrl(c))
}

fn binary(op: BinOp, lhs: SExpr, rhs: SExpr, span: Span) -> SExpr {
    Spanned::new(Expr::Binary { op, lhs: Box::new(lhs), rhs: Box::new(rhs) }, span)
}

pub fn expr<'t, I>() -> impl Parser<'t, I, SExpr, ParseErr<'t>> + Clone
where
    I: ValueInput<'t, Token = Token, Span = Span>,
{
    recursive(|expr| {
        let literal = select! {
            Token::Num(n) => Expr::Num(n),
            Token::Str(s) => Expr::Str(s),
            Token::Kw(Keyword::True) => Expr::Bool(true),
            Token::Kw(Keyword::False) => Expr::Bool(false),
            Token::Ident(s) => Expr::Name(s),
        }
        .labelled("value");

        let items = expr.clone().separated_by(ctrl(',')).allow_trailing().collect::<Vec<_>>();
        let list = items.clone().delimited_by(ctrl('['), ctrl(']')).map(Expr::List);

        let atom = literal
            .or(list)
            .map_with(|e, x| Spanned::new(e, x.span()))
            .or(expr.clone().delimited_by(ctrl('('), ctrl(')')))
            .recover_with(via_parser(nested_delimiters(
                Token::Ctrl('('),
                Token::Ctrl(')'),
                [(Token::Ctrl('['), Token::Ctrl(']')), (Token::Ctrl('{'), Token::Ctrl('}'))],
                |span| Spanned::new(Expr::Error, span),
            )))
            .recover_with(via_parser(nested_delimiters(
                Token::Ctrl('['),
                Token::Ctrl(']'),
                [(Token::Ctrl('('), Token::Ctrl(')')), (Token::Ctrl('{'), Token::Ctrl('}'))],
                |span| Spanned::new(Expr::Error, span),
            )))
            .boxed();

        let arg = ident()
            .then_ignore(op("="))
            .then(expr.clone())
            .map(|(name, value)| Arg { name: Some(name), value })
            .or(expr.clone().map(|value| Arg { name: None, value }));
        let args = arg
            .separated_by(ctrl(','))
            .allow_trailing()
            .collect::<Vec<_>>()
            .delimited_by(ctrl('('), ctrl(')'))
            .labelled("arguments");

        enum Postfix {
            Call(Vec<Arg>),
            Member(Ident),
            Index(SExpr),
        }
        let postfix_op = args
            .map(Postfix::Call)
            .or(op(".").ignore_then(ident()).map(Postfix::Member))
            .or(expr.clone().delimited_by(ctrl('['), ctrl(']')).map(Postfix::Index));
        let postfix = atom.foldl_with(postfix_op.repeated(), |lhs, p, e| {
            let node = match p {
                Postfix::Call(args) => Expr::Call { callee: Box::new(lhs), args },
                Postfix::Member(name) => Expr::Member { object: Box::new(lhs), name },
                Postfix::Index(index) => Expr::Index { object: Box::new(lhs), index: Box::new(index) },
            };
            Spanned::new(node, e.span())
        });

        // `^` binds tighter than unary minus (-2^2 == -4) and is right-associative;
        // its right operand may itself be negated (2^-1 == 0.5).
        let unary = recursive(|unary| {
            let neg = op("-")
                .ignore_then(unary.clone())
                .map_with(|x, e| Spanned::new(Expr::Neg(Box::new(x)), e.span()));
            let power = postfix.clone().then(op("^").ignore_then(unary).or_not()).map_with(|(base, exp), e| match exp {
                Some(exp) => binary(BinOp::Pow, base, exp, e.span()),
                None => base,
            });
            neg.or(power)
        });

        let product_op = op("*").to(BinOp::Mul).or(op("/").to(BinOp::Div));
        let product = unary
            .clone()
            .foldl_with(product_op.then(unary).repeated(), |a, (o, b), e| binary(o, a, b, e.span()));
        let sum_op = op("+").to(BinOp::Add).or(op("-").to(BinOp::Sub));
        let sum = product
            .clone()
            .foldl_with(sum_op.then(product).repeated(), |a, (o, b), e| binary(o, a, b, e.span()));
        let cmp_op = choice((
            op("==").to(BinOp::Eq),
            op("!=").to(BinOp::Ne),
            op("<=").to(BinOp::Le),
            op(">=").to(BinOp::Ge),
            op("<").to(BinOp::Lt),
            op(">").to(BinOp::Gt),
        ));
        let compare = sum.clone().then(cmp_op.then(sum).or_not()).map_with(|(a, rest), e| match rest {
            Some((o, b)) => binary(o, a, b, e.span()),
            None => a,
        });
        compare
            .clone()
            .foldl_with(op(">>").ignore_then(compare).repeated(), |a, b, e| binary(BinOp::Chain, a, b, e.span()))
            .labelled("expression")
    })
}

fn stmt<'t, I>() -> impl Parser<'t, I, SStmt, ParseErr<'t>> + Clone
where
    I: ValueInput<'t, Token = Token, Span = Span>,
{
    recursive(|stmt| {
        let kw = |k: Keyword| just(Token::Kw(k));
        let e = expr();

        let let_ = kw(Keyword::Let)
            .ignore_then(ident())
            .then_ignore(op("="))
            .then(e.clone())
            .map(|(name, value)| Stmt::Let { name, value });

        let param = ident()
            .then(op("=").ignore_then(e.clone()).or_not())
            .map(|(name, default)| Param { name, default });
        let def = kw(Keyword::Def)
            .ignore_then(ident())
            .then(
                param
                    .separated_by(ctrl(','))
                    .allow_trailing()
                    .collect::<Vec<_>>()
                    .delimited_by(ctrl('('), ctrl(')'))
                    .labelled("parameters"),
            )
            .then_ignore(op("="))
            .then(e.clone())
            .map(|((name, params), body)| Stmt::Def { name, params, body });

        let use_target = ident().map(UseTarget::Module).or(select! { Token::Str(s) => s }
            .map_with(|s, e| UseTarget::File(Spanned::new(s, e.span()))));
        let use_ = kw(Keyword::Use).ignore_then(use_target.labelled("module name or \"file.kd\"")).map(Stmt::Use);

        let save = kw(Keyword::Save)
            .ignore_then(e.clone())
            .then_ignore(kw(Keyword::To))
            .then(e.clone())
            .map(|(value, path)| Stmt::Save { value, path });

        let print = kw(Keyword::Print)
            .ignore_then(e.clone().separated_by(ctrl(',')).at_least(1).collect::<Vec<_>>())
            .map(Stmt::Print);

        let block = stmt
            .separated_by(just(Token::Sep))
            .allow_leading()
            .allow_trailing()
            .collect::<Vec<_>>()
            .delimited_by(ctrl('{'), ctrl('}'));
        let stage = kw(Keyword::Stage)
            .ignore_then(ident())
            .then(block)
            .map(|(name, body)| Stmt::Stage { name, body });

        let require = kw(Keyword::Require).ignore_then(e.clone()).map(Stmt::Require);

        let role_name = select! { Token::Ident(s) => s }.try_map(|s, span| {
            Role::from_name(&s).map(|r| Spanned::new(r, span)).ok_or_else(|| Rich::custom(span, "not a role"))
        });
        // `student llama(..)` and `student = llama(..)` both fill the slot.
        let role = role_name
            .then_ignore(op("=").or_not())
            .then(e.clone())
            .map(|(role, value)| Stmt::Role { role, value });

        let assign = ident().then_ignore(op("=")).then(e.clone()).map(|(name, value)| Stmt::Assign { name, value });

        choice((let_, def, use_, save, print, stage, require, role, assign, e.map(Stmt::Expr)))
            .map_with(|s, x| Spanned::new(s, x.span()))
            // Skip the rest of a broken statement and carry on with the next one.
            .recover_with(via_parser(
                any()
                    .and_is(just(Token::Sep).not())
                    .and_is(ctrl('}').not())
                    .repeated()
                    .at_least(1)
                    .map_with(|_, x| Spanned::new(Stmt::Error, x.span())),
            ))
            .labelled("statement")
    })
}

pub fn module<'t, I>() -> impl Parser<'t, I, Module, ParseErr<'t>>
where
    I: ValueInput<'t, Token = Token, Span = Span>,
{
    stmt()
        .separated_by(just(Token::Sep))
        .allow_leading()
        .allow_trailing()
        .collect::<Vec<_>>()
        .map(|stmts| Module { stmts })
        .then_ignore(
            // A stray `}` at top level would otherwise stop the parse silently.
            end().recover_with(via_parser(any().repeated().at_least(1))),
        )
}
