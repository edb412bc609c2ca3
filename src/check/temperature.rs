//! The temperature rules of the language, which are syntactic:
//! - `kl(T=2)` binds `T` for the whole statement it appears in, so `*T^2` can follow;
//!   two different temperatures make a bare `T` ambiguous.
//! - A KL-family term softened by T ≠ 1 should be scaled by T² (its gradients shrink by
//!   1/T²); the lint warns when the factor is missing.

use crate::diag::Diagnostic;
use crate::syntax::{BinOp, Expr, SExpr};

pub const TEMPERATURE: &str = "T";
pub const KL_FAMILY: [&str; 6] = ["kl", "rkl", "js", "tvd", "skl", "srkl"];

/// Structural equality that ignores where the text was written.
pub fn same_expr(a: &SExpr, b: &SExpr) -> bool {
    match (&a.node, &b.node) {
        (Expr::Num(x), Expr::Num(y)) => x == y,
        (Expr::Str(x), Expr::Str(y)) => x == y,
        (Expr::Bool(x), Expr::Bool(y)) => x == y,
        (Expr::Name(x), Expr::Name(y)) => x == y,
        (Expr::List(x), Expr::List(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_expr(p, q)),
        (Expr::Neg(x), Expr::Neg(y)) => same_expr(x, y),
        (Expr::Binary { op: o1, lhs: l1, rhs: r1 }, Expr::Binary { op: o2, lhs: l2, rhs: r2 }) => {
            o1 == o2 && same_expr(l1, l2) && same_expr(r1, r2)
        }
        (Expr::Member { object: o1, name: n1 }, Expr::Member { object: o2, name: n2 }) => {
            n1.node == n2.node && same_expr(o1, o2)
        }
        (Expr::Index { object: o1, index: i1 }, Expr::Index { object: o2, index: i2 }) => {
            same_expr(o1, o2) && same_expr(i1, i2)
        }
        (Expr::Call { callee: c1, args: a1 }, Expr::Call { callee: c2, args: a2 }) => {
            same_expr(c1, c2)
                && a1.len() == a2.len()
                && a1.iter().zip(a2).all(|(x, y)| {
                    x.name.as_ref().map(|n| &n.node) == y.name.as_ref().map(|n| &n.node) && same_expr(&x.value, &y.value)
                })
        }
        _ => false,
    }
}

fn children(e: &SExpr) -> Vec<&SExpr> {
    match &e.node {
        Expr::List(items) => items.iter().collect(),
        Expr::Call { callee, args } => std::iter::once(&**callee).chain(args.iter().map(|a| &a.value)).collect(),
        Expr::Member { object, .. } => vec![object],
        Expr::Index { object, index } => vec![object, index],
        Expr::Neg(x) => vec![x],
        Expr::Binary { lhs, rhs, .. } => vec![lhs, rhs],
        _ => vec![],
    }
}

/// A call to a KL-family builtin, by name, with its `T=` argument if written.
fn kl_call(e: &SExpr) -> Option<(&str, Option<&SExpr>)> {
    if let Expr::Call { callee, args } = &e.node {
        if let Expr::Name(n) = &callee.node {
            if KL_FAMILY.contains(&n.as_str()) {
                let t = args.iter().find(|a| a.name.as_ref().is_some_and(|n| n.node == TEMPERATURE)).map(|a| &a.value);
                return Some((n.as_str(), t));
            }
        }
    }
    None
}

/// Every `T=` argument of a KL-family call in `e`.
pub fn temperature_args(e: &SExpr) -> Vec<&SExpr> {
    let mut out = Vec::new();
    if let Some((_, Some(t))) = kl_call(e) {
        out.push(t);
    }
    for c in children(e) {
        out.extend(temperature_args(c));
    }
    out
}

pub fn mentions(e: &SExpr, name: &str) -> bool {
    matches!(&e.node, Expr::Name(n) if n == name) || children(e).into_iter().any(|c| mentions(c, name))
}

pub enum Binding<'a> {
    Unbound,
    One(&'a SExpr),
    Conflict(&'a SExpr, &'a SExpr),
}

/// What a bare `T` means in a statement made of `exprs`.
pub fn binding<'a>(exprs: &[&'a SExpr]) -> Binding<'a> {
    let args: Vec<&SExpr> = exprs.iter().flat_map(|e| temperature_args(e)).collect();
    // `kl(T=T)` inside a def refers to a parameter, not to itself.
    let args: Vec<&SExpr> = args.into_iter().filter(|a| !mentions(a, TEMPERATURE)).collect();
    let Some(first) = args.first() else { return Binding::Unbound };
    match args.iter().find(|a| !same_expr(a, first)) {
        Some(other) => Binding::Conflict(first, other),
        None => Binding::One(first),
    }
}

/// Additive terms of `e`, each as its multiplicative factors (products distributed
/// over sums, divisors left out).
fn terms(e: &SExpr) -> Vec<Vec<&SExpr>> {
    match &e.node {
        Expr::Binary { op: BinOp::Add | BinOp::Sub, lhs, rhs } => {
            let mut t = terms(lhs);
            t.extend(terms(rhs));
            t
        }
        Expr::Neg(x) => terms(x),
        Expr::Binary { op: BinOp::Mul, lhs, rhs } => {
            let (l, r) = (terms(lhs), terms(rhs));
            let mut out = Vec::new();
            for a in &l {
                for b in &r {
                    out.push(a.iter().chain(b.iter()).copied().collect());
                    if out.len() > 256 {
                        return out;
                    }
                }
            }
            out
        }
        Expr::Binary { op: BinOp::Div, lhs, .. } => terms(lhs),
        _ => vec![vec![e]],
    }
}

fn is_one(e: &SExpr) -> bool {
    matches!(e.node, Expr::Num(x) if x == 1.0)
}

/// Does `factor` stand for T itself?
fn is_t(factor: &SExpr, t: &SExpr) -> bool {
    same_expr(factor, t) || matches!(&factor.node, Expr::Name(n) if n == TEMPERATURE)
}

/// Is there a T² among the factors of this term?
fn has_t_squared(factors: &[&SExpr], t: &SExpr) -> bool {
    let squares = factors.iter().any(|f| match &f.node {
        Expr::Binary { op: BinOp::Pow, lhs, rhs } => matches!(rhs.node, Expr::Num(p) if p == 2.0) && is_t(lhs, t),
        Expr::Binary { op: BinOp::Mul, lhs, rhs } => is_t(lhs, t) && is_t(rhs, t),
        Expr::Num(x) => matches!(t.node, Expr::Num(tv) if (x - tv * tv).abs() < 1e-12),
        _ => false,
    });
    squares || factors.iter().filter(|f| is_t(f, t)).count() >= 2
}

/// Warns for each KL-family term with T ≠ 1 that is not multiplied by T².
pub fn lint_scaling(e: &SExpr) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for factors in terms(e) {
        for f in &factors {
            let Some((name, Some(t))) = kl_call(f) else { continue };
            // T <= 0 is an error of its own; T = 1 needs no factor.
            let not_positive = matches!(t.node, Expr::Num(x) if x <= 0.0) || matches!(&t.node, Expr::Neg(_));
            if is_one(t) || not_positive || has_t_squared(&factors, t) {
                continue;
            }
            let (headline, label, t_text) = match &t.node {
                Expr::Num(x) => {
                    let v = crate::spec::fmt_num(*x);
                    (format!("`{name}` with T={v} is not scaled by T²"), format!("softened by T={v}"), v)
                }
                _ => (format!("`{name}` with a temperature is not scaled by T²"), "softened by T".to_string(), "T".to_string()),
            };
            out.push(
                Diagnostic::warning(headline)
                    .label(f.span, label)
                    .note("dividing logits by T shrinks this term's gradients by about 1/T², so without the factor it is too weak next to ce, more so as T grows (Hinton et al., 2015)")
                    .help(format!("multiply the term by T^2, e.g. `0.5*{name}(T={t_text})*T^2`")),
            );
        }
    }
    out
}
