//! Spec values: plain descriptions of models, losses, schedules, optimizers, data and
//! tokenizers, built by the evaluator and consumed by the engine. No syntax, no tensors:
//! the engine reads these to build the real thing.

pub mod data;
pub mod graph;
pub mod loss;
pub mod model;
pub mod optim;
pub mod replay;
pub mod schedule;
pub mod train;

pub use data::{DataSource, DataSpec};
pub use graph::GraphMode;
pub use loss::{LayerMap, LossExpr, Of, OnPolicy, Term, TermKind};
pub use model::LlamaSpec;
pub use optim::OptimSpec;
pub use replay::{KeepRule, Subset};
pub use schedule::Schedule;

/// Formats a number the way a person writes it: `3`, `0.5`, `5e-4`, `1e6`.
pub fn fmt_num(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if x == x.trunc() && x.abs() < 1e15 {
        return format!("{}", x as i64);
    }
    let a = x.abs();
    if (1e-3..1e15).contains(&a) {
        let s = format!("{:.6}", x);
        let s = s.trim_end_matches('0').trim_end_matches('.');
        return s.to_string();
    }
    // Small and huge numbers: at most 5 significant digits, as in `6.2814e-4`.
    let s = format!("{:.4e}", x);
    let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let mantissa = if mantissa.contains('.') { mantissa.trim_end_matches('0').trim_end_matches('.') } else { mantissa };
    format!("{mantissa}e{exp}")
}

/// `134515008` -> `134.5M`.
pub fn fmt_count(n: u64) -> String {
    let f = n as f64;
    if f >= 1e9 {
        format!("{:.2}B", f / 1e9)
    } else if f >= 1e6 {
        format!("{:.1}M", f / 1e6)
    } else if f >= 1e3 {
        format!("{:.1}K", f / 1e3)
    } else {
        n.to_string()
    }
}
