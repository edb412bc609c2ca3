//! Corpus BLEU exactly as sacreBLEU 2.6's defaults compute it (`BLEU()`: max n-gram
//! order 4, exponential smoothing, no effective order), with its 13a and intl
//! tokenizers. The order of the floating-point operations follows `compute_bleu`, so
//! scores agree with sacreBLEU's to well under 1e-6.

use super::text::{ngram_counts, nfc, py_rstrip, py_split};
use regex::Regex;
use std::collections::HashMap;
use std::sync::OnceLock;

const MAX_ORDER: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BleuTokenizer {
    /// mteval-v13a, sacreBLEU's default: splits ASCII punctuation only.
    T13a,
    /// mteval-v14 international: splits Unicode punctuation and symbols (the Bengali
    /// danda "।" too). kdl applies NFC to both sides first.
    Intl,
    /// Whitespace only (sacreBLEU's "none").
    Whitespace,
}

impl BleuTokenizer {
    pub const NAMES: [&'static str; 3] = ["13a", "intl", "none"];

    pub fn parse(name: &str) -> Option<BleuTokenizer> {
        match name {
            "13a" => Some(BleuTokenizer::T13a),
            "intl" => Some(BleuTokenizer::Intl),
            "none" => Some(BleuTokenizer::Whitespace),
            _ => None,
        }
    }

    fn tokenize(self, line: &str) -> String {
        match self {
            BleuTokenizer::T13a => tokenize_13a(line),
            BleuTokenizer::Intl => tokenize_intl(&nfc(line)),
            BleuTokenizer::Whitespace => line.to_string(),
        }
    }
}

/// Regexes compiled once; `(pattern, replacement)` pairs applied in order.
fn compiled(cell: &'static OnceLock<Vec<(Regex, &'static str)>>, rules: &[(&str, &'static str)]) -> &'static [(Regex, &'static str)] {
    cell.get_or_init(|| rules.iter().map(|(p, r)| (Regex::new(p).expect("a metric tokenizer regex"), *r)).collect())
}

fn apply(rules: &[(Regex, &str)], line: String) -> String {
    let line = rules.iter().fold(line, |line, (re, with)| re.replace_all(&line, *with).into_owned());
    py_split(&line).collect::<Vec<_>>().join(" ")
}

/// sacreBLEU's `Tokenizer13a`.
pub fn tokenize_13a(line: &str) -> String {
    static RULES: OnceLock<Vec<(Regex, &'static str)>> = OnceLock::new();
    let rules = compiled(
        &RULES,
        &[
            // The ASCII symbols and brackets, and the space (which pads harmlessly).
            (r"([{-~\[-` -&(-+:-@/])", " ${1} "),
            // Periods and commas, unless between digits.
            (r"([^0-9])([.,])", "${1} ${2} "),
            (r"([.,])([^0-9])", " ${1} ${2}"),
            // A dash after a digit.
            (r"([0-9])(-)", "${1} ${2} "),
        ],
    );
    let mut line = line.replace("<skipped>", "").replace("-\n", "").replace('\n', " ");
    if line.contains('&') {
        line = line.replace("&quot;", "\"").replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">");
    }
    apply(rules, format!(" {line} "))
}

/// sacreBLEU's `TokenizerV14International`.
pub fn tokenize_intl(line: &str) -> String {
    static RULES: OnceLock<Vec<(Regex, &'static str)>> = OnceLock::new();
    let rules = compiled(
        &RULES,
        &[(r"(\P{N})(\p{P})", "${1} ${2} "), (r"(\p{P})(\P{N})", " ${1} ${2}"), (r"(\p{S})", " ${1} ")],
    );
    apply(rules, line.to_string())
}

/// The n-gram statistics of a corpus: matches and totals per order, and lengths.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct BleuStats {
    pub correct: [u64; MAX_ORDER],
    pub total: [u64; MAX_ORDER],
    pub sys_len: u64,
    pub ref_len: u64,
}

/// The reference length closest to `hyp_len`; on a tie, the shorter.
fn closest_ref_len(hyp_len: usize, ref_lens: &[usize]) -> usize {
    let mut best: Option<(usize, usize)> = None;
    for &len in ref_lens {
        let diff = hyp_len.abs_diff(len);
        best = match best {
            Some((d, l)) if diff > d || (diff == d && len >= l) => Some((d, l)),
            _ => Some((diff, len)),
        };
    }
    best.map_or(0, |(_, l)| l)
}

impl BleuStats {
    /// Adds one segment: `hyp` and `refs` already tokenized.
    fn add(&mut self, hyp: &str, refs: &[String]) {
        let hyp: Vec<&str> = py_split(hyp).collect();
        let refs: Vec<Vec<&str>> = refs.iter().map(|r| py_split(r).collect()).collect();
        let lens: Vec<usize> = refs.iter().map(Vec::len).collect();
        self.sys_len += hyp.len() as u64;
        self.ref_len += closest_ref_len(hyp.len(), &lens) as u64;
        for n in 1..=MAX_ORDER {
            // Each reference n-gram's count is the most any one reference has.
            let mut ref_max: HashMap<&[&str], usize> = HashMap::new();
            for r in &refs {
                for (gram, c) in ngram_counts(r, n) {
                    let slot = ref_max.entry(gram).or_insert(0);
                    *slot = (*slot).max(c);
                }
            }
            for (gram, c) in ngram_counts(&hyp, n) {
                self.correct[n - 1] += c.min(ref_max.get(gram).copied().unwrap_or(0)) as u64;
                self.total[n - 1] += c as u64;
            }
        }
    }

    /// sacreBLEU's `compute_bleu` with smooth_method="exp", on 0..100.
    pub fn score(&self) -> f64 {
        let (sys, reference) = (self.sys_len as f64, self.ref_len as f64);
        let bp = if self.sys_len < self.ref_len { if self.sys_len > 0 { (1.0 - reference / sys).exp() } else { 0.0 } } else { 1.0 };
        if self.correct.iter().all(|&c| c == 0) {
            return 0.0;
        }
        let mut precisions = [0.0f64; MAX_ORDER];
        let mut smooth = 1.0f64;
        for (n, precision) in precisions.iter_mut().enumerate() {
            if self.total[n] == 0 {
                break;
            }
            *precision = if self.correct[n] == 0 {
                smooth *= 2.0;
                100.0 / (smooth * self.total[n] as f64)
            } else {
                100.0 * self.correct[n] as f64 / self.total[n] as f64
            };
        }
        // sacreBLEU's `my_log`: log(0) is a large negative number, not -inf.
        let logs: f64 = precisions.iter().map(|&p| if p == 0.0 { -9999999999.0 } else { p.ln() }).sum();
        bp * (logs / MAX_ORDER as f64).exp()
    }
}

/// Corpus BLEU (0..100) of `hyps` against `refs` (one list of references per hypothesis).
pub fn corpus_bleu(hyps: &[String], refs: &[Vec<String>], tokenizer: BleuTokenizer, lowercase: bool) -> Result<f64, String> {
    if let Some(problem) = super::shape_problem(hyps.len(), refs) {
        return Err(problem);
    }
    let prepare = |s: &str| {
        let s = if lowercase { s.to_lowercase() } else { s.to_string() };
        tokenizer.tokenize(py_rstrip(&s))
    };
    let mut stats = BleuStats::default();
    for (hyp, refs) in hyps.iter().zip(refs) {
        let refs: Vec<String> = refs.iter().map(|r| prepare(r)).collect();
        stats.add(&prepare(hyp), &refs);
    }
    Ok(stats.score())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(h: &str, r: &str, t: BleuTokenizer) -> f64 {
        corpus_bleu(&[h.to_string()], &[vec![r.to_string()]], t, false).unwrap()
    }

    #[test]
    fn thirteen_a_splits_ascii_punctuation_but_not_the_danda() {
        assert_eq!(tokenize_13a("Hello, world! It costs $3.50 (approx.)"), "Hello , world ! It costs $ 3.50 ( approx . )");
        assert_eq!(tokenize_13a("ভালো লাগলো।"), "ভালো লাগলো।");
        assert_eq!(tokenize_13a("1-2 &amp; a-b"), "1 - 2 & a-b");
    }

    #[test]
    fn intl_splits_unicode_punctuation_and_symbols() {
        assert_eq!(tokenize_intl("ভালো লাগলো। “quoted” 3.5€"), "ভালো লাগলো । “ quoted ” 3.5 €");
    }

    #[test]
    fn identical_text_scores_100_and_disjoint_text_0() {
        let s = "the cat sat on the mat today";
        assert!((one(s, s, BleuTokenizer::T13a) - 100.0).abs() < 1e-9);
        assert_eq!(one("a b c d e", "v w x y z", BleuTokenizer::T13a), 0.0);
    }

    #[test]
    fn a_hypothesis_without_four_grams_scores_zero_at_corpus_level() {
        // sacreBLEU: corpus BLEU 0.00 (p4 = 0 hits the log floor).
        assert!(one("the cat sat", "the cat sat down", BleuTokenizer::T13a) < 1e-6);
    }

    #[test]
    fn the_closest_reference_length_breaks_ties_toward_the_shorter() {
        assert_eq!(closest_ref_len(5, &[7, 3, 6]), 6);
        assert_eq!(closest_ref_len(5, &[7, 3]), 3);
    }

    #[test]
    fn mismatched_lists_are_refused() {
        let err = corpus_bleu(&["a".into()], &[], BleuTokenizer::T13a, false).unwrap_err();
        assert!(err.contains("1 hypotheses but 0 references"), "{err}");
    }
}
