//! What hard-set mining keeps: a rule over per-example difficulties (`top(20%)`,
//! `above(median)`, `above(quantile(0.8))`, `above(0.5)`), and the subset of training
//! blocks it picked, which a data value carries so `train(on=hard)` sees only those.

use super::fmt_num;
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq)]
pub enum KeepRule {
    /// The hardest fraction (0, 1].
    Top(f64),
    /// Difficulty strictly above a threshold.
    Above(Threshold),
    /// A threshold on its own (`median`, `quantile(0.8)`): only valid inside `above`.
    Quantile(f64),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Threshold {
    Value(f64),
    /// The q-quantile of the difficulties (median = 0.5).
    Quantile(f64),
}

impl KeepRule {
    pub fn describe(&self) -> String {
        let quantile = |q: f64| if q == 0.5 { "median".to_string() } else { format!("quantile({})", fmt_num(q)) };
        match self {
            KeepRule::Top(f) => format!("top({}%)", fmt_num(f * 100.0)),
            KeepRule::Above(Threshold::Value(x)) => format!("above({})", fmt_num(*x)),
            KeepRule::Above(Threshold::Quantile(q)) => format!("above({})", quantile(*q)),
            KeepRule::Quantile(q) => quantile(*q),
        }
    }
}

/// Training blocks kept by `mine`: indices into the training split of the data prepared
/// with `seq`, which had `of_blocks` blocks (a changed corpus is caught, not misread).
#[derive(Debug, Clone, PartialEq)]
pub struct Subset {
    pub seq: usize,
    pub of_blocks: usize,
    pub indices: Arc<Vec<usize>>,
    /// For messages: "hard set: 20% of 1,204 blocks".
    pub label: String,
}
