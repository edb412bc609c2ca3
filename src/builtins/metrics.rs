//! Generation metrics over lists of strings: `bleu` and `chrf` as sacreBLEU computes
//! them (0..100), `rouge_l` as rouge-score does (0..1). `evaluate(metrics=[...])` calls
//! the same functions on a model's generated answers.

use super::{param, Args, Builtin, Default::*, Family, Range};
use crate::diag::Diagnostic;
use crate::engine::metrics::{self, BleuTokenizer, ChrfOptions, RougeTokenizer};
use crate::eval::{Interp, Value};
use crate::kind::{with_article, Kinds};

/// `hyps=`: a list of strings (or one string, one segment).
fn hypotheses(a: &Args) -> Result<Vec<String>, Diagnostic> {
    a.items("hyps")
        .iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::Str(s) => Ok(s.to_string()),
            other => Err(a.error("hyps", format!("hypothesis {i} is {}, not a string", with_article(other.kind())))),
        })
        .collect()
}

/// `refs=`: per hypothesis a string or a list of strings (several references).
fn references(a: &Args) -> Result<Vec<Vec<String>>, Diagnostic> {
    let bad = |i: usize, v: &Value| {
        a.error("refs", format!("reference {i} is {}, not a string or a list of strings", with_article(v.kind())))
            .help("give one reference per hypothesis: refs=[\"...\", ...], or several: refs=[[\"...\", \"...\"], ...]")
    };
    a.items("refs")
        .iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::Str(s) => Ok(vec![s.to_string()]),
            Value::List(l) => l.iter().map(|r| if let Value::Str(s) = r { Ok(s.to_string()) } else { Err(bad(i, r)) }).collect(),
            other => Err(bad(i, other)),
        })
        .collect()
}

/// A string argument that must be one of `names`.
fn choice<T>(a: &Args, name: &str, names: &[&str], parse: fn(&str) -> Option<T>) -> Result<T, Diagnostic> {
    let s = a.string(name)?;
    parse(&s).ok_or_else(|| a.error(name, format!("`{name}={s:?}` is not one of the choices")).help(format!("use one of: {}", names.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(", "))))
}

/// Runs a metric, putting a shape problem (3 hypotheses, 2 references) at `refs`.
fn scored(a: &Args, score: Result<f64, String>) -> Result<Value, Diagnostic> {
    score.map(Value::Num).map_err(|e| a.error("refs", e))
}

fn run_bleu(_: &mut Interp, a: &Args) -> Result<Value, Diagnostic> {
    let tokenizer = choice(a, "tokenize", &BleuTokenizer::NAMES, BleuTokenizer::parse)?;
    scored(a, metrics::corpus_bleu(&hypotheses(a)?, &references(a)?, tokenizer, a.boolean("lowercase")?))
}

fn run_chrf(_: &mut Interp, a: &Args) -> Result<Value, Diagnostic> {
    let o = ChrfOptions { char_order: a.count("char_order")?, word_order: a.count("word_order")?, beta: a.num("beta")?, lowercase: a.boolean("lowercase")? };
    scored(a, metrics::corpus_chrf(&hypotheses(a)?, &references(a)?, o))
}

fn run_rouge_l(_: &mut Interp, a: &Args) -> Result<Value, Diagnostic> {
    let tokenizer = choice(a, "tokenizer", &RougeTokenizer::NAMES, RougeTokenizer::parse)?;
    scored(a, metrics::rouge_l(&hypotheses(a)?, &references(a)?, tokenizer))
}

fn texts() -> Vec<super::ParamSpec> {
    vec![
        param("hyps", Kinds::LIST | Kinds::STRING, Required, "the generated texts, one per segment"),
        param("refs", Kinds::LIST | Kinds::STRING, Required, "per segment a reference, or a list of references"),
    ]
}

fn metric(name: &'static str, extra: Vec<super::ParamSpec>, doc: &'static str, example: &'static str, run: super::RunFn) -> Builtin {
    Builtin { name, family: Family::Metrics, params: [texts(), extra].concat(), returns: Kinds::NUMBER, doc, example, run, pure: true, slots: &[] }
}

pub fn table() -> Vec<Builtin> {
    vec![
        metric(
            "bleu",
            vec![
                param("tokenize", Kinds::STRING, Str("13a"), "\"13a\" (sacreBLEU's default, ASCII punctuation), \"intl\" (Unicode punctuation and symbols, after NFC) or \"none\""),
                param("lowercase", Kinds::BOOL, Bool(false), "compare case-insensitively"),
            ],
            "corpus BLEU on 0..100, exactly sacreBLEU's defaults (4-grams, exponential smoothing, brevity penalty); use tokenize=\"intl\" for Indic scripts, where 13a leaves the danda glued to words",
            "bleu([\"the cat sat on the mat\"], [\"the cat is on the mat\"])",
            run_bleu,
        ),
        metric(
            "chrf",
            vec![
                param("word_order", Kinds::NUMBER, Num(0.0), "word n-grams too (2 gives chrF++)").range(Range::NonNegativeInt),
                param("char_order", Kinds::NUMBER, Num(6.0), "longest character n-gram").range(Range::PositiveInt),
                param("beta", Kinds::NUMBER, Num(2.0), "how much more recall counts than precision").range(Range::Positive),
                param("lowercase", Kinds::BOOL, Bool(false), "compare case-insensitively"),
            ],
            "corpus chrF on 0..100, exactly sacreBLEU's CHRF (character 6-grams, whitespace removed, beta 2); needs no tokenizer, so it suits any script",
            "chrf([\"আমি ভাত খাই।\"], [\"আমি ভাত খাই\"])",
            run_chrf,
        ),
        metric(
            "rouge_l",
            vec![param("tokenizer", Kinds::STRING, Str("unicode"), "\"unicode\" (letters, marks and digits of any script, after NFC) or \"rouge-score\" (its [a-z0-9] runs: exact, but other scripts score 0)")],
            "ROUGE-L F-measure on 0..1, averaged over segments (the best reference per segment), as rouge-score computes it",
            "rouge_l([\"the cat sat on the mat\"], [\"the cat is on the mat\"])",
            run_rouge_l,
        ),
    ]
}
