//! Generation metrics: corpus BLEU and chrF as sacreBLEU 2.6 computes them, ROUGE-L as
//! rouge-score 0.1.2 does. Pure functions over strings; each one is checked against its
//! reference implementation by tests/metrics.rs, to 1e-6.
//!
//! Every function takes one hypothesis per segment and, per segment, one or more
//! references (`refs[i]` holds segment i's references).

mod bleu;
mod chrf;
mod rouge;
mod text;

pub use bleu::{corpus_bleu, BleuTokenizer};
pub use chrf::{corpus_chrf, ChrfOptions};
pub use rouge::{rouge_l, RougeTokenizer};

/// Why a set of hypotheses and references cannot be scored, or `None`.
pub fn shape_problem(hyps: usize, refs: &[Vec<String>]) -> Option<String> {
    if hyps != refs.len() {
        return Some(format!("there are {hyps} hypotheses but {} references: give one reference (or one list of references) per hypothesis", refs.len()));
    }
    if hyps == 0 {
        return Some("there is nothing to score: the hypotheses are an empty list".into());
    }
    refs.iter().position(|r| r.is_empty()).map(|i| format!("hypothesis {i} has an empty list of references"))
}
