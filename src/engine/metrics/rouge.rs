//! ROUGE-L F-measure as rouge-score 0.1.2 computes it (`RougeScorer(["rougeL"])`,
//! `_score_lcs`): the longest common subsequence of the two token lists, P = L/|hyp|,
//! R = L/|ref|, F = 2PR/(P+R), the best F over a segment's references, averaged over
//! segments. Scores are on 0..1, as rouge-score reports them.
//!
//! The tokenizer is the part that matters outside English. rouge-score's lowercases
//! and keeps only `[a-z0-9]` runs, so Bengali or Hindi text has no tokens and scores 0.
//! kdl's default keeps letters, marks and digits of every script.

use super::text::nfc;
use regex::Regex;
use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RougeTokenizer {
    /// NFC, lowercase, drop format characters (ZWJ, ZWNJ), then the runs of letters
    /// (L), marks (M) and numbers (N) of any script: Bengali vowel signs stay in their word.
    Unicode,
    /// rouge-score's `tokenize.tokenize` without a stemmer: lowercase, `[a-z0-9]+` runs.
    RougeScore,
}

impl RougeTokenizer {
    pub const NAMES: [&'static str; 2] = ["unicode", "rouge-score"];

    pub fn parse(name: &str) -> Option<RougeTokenizer> {
        match name {
            "unicode" => Some(RougeTokenizer::Unicode),
            "rouge-score" => Some(RougeTokenizer::RougeScore),
            _ => None,
        }
    }

    pub fn tokenize(self, text: &str) -> Vec<String> {
        static WORD: OnceLock<Regex> = OnceLock::new();
        // Unicode category Cf (format): zero-width joiners and the like, which sit
        // inside Indic words without separating them.
        static FORMAT: OnceLock<Regex> = OnceLock::new();
        match self {
            RougeTokenizer::Unicode => {
                let word = WORD.get_or_init(|| Regex::new(r"[\p{L}\p{M}\p{N}]+").expect("the ROUGE word regex"));
                let format = FORMAT.get_or_init(|| Regex::new(r"\p{Cf}").expect("the format-character regex"));
                let text = nfc(text).to_lowercase();
                word.find_iter(&format.replace_all(&text, "")).map(|m| m.as_str().to_string()).collect()
            }
            RougeTokenizer::RougeScore => text
                .to_lowercase()
                .split(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit()))
                .filter(|t| !t.is_empty())
                .map(str::to_string)
                .collect(),
        }
    }
}

/// The length of the longest common subsequence (rouge-score's `_lcs_table`, one row at a time).
fn lcs_len(a: &[String], b: &[String]) -> usize {
    let mut prev = vec![0usize; b.len() + 1];
    let mut row = vec![0usize; b.len() + 1];
    for x in a {
        for (j, y) in b.iter().enumerate() {
            row[j + 1] = if x == y { prev[j] + 1 } else { prev[j + 1].max(row[j]) };
        }
        std::mem::swap(&mut prev, &mut row);
    }
    prev[b.len()]
}

/// rouge-score's `_score_lcs(target, prediction)`'s F-measure.
fn lcs_f(target: &[String], prediction: &[String]) -> f64 {
    if target.is_empty() || prediction.is_empty() {
        return 0.0;
    }
    let l = lcs_len(target, prediction) as f64;
    let (p, r) = (l / prediction.len() as f64, l / target.len() as f64);
    if p + r > 0.0 { 2.0 * p * r / (p + r) } else { 0.0 }
}

/// Mean ROUGE-L F (0..1) of `hyps` against `refs` (one list of references per hypothesis).
pub fn rouge_l(hyps: &[String], refs: &[Vec<String>], tokenizer: RougeTokenizer) -> Result<f64, String> {
    if let Some(problem) = super::shape_problem(hyps.len(), refs) {
        return Err(problem);
    }
    let mut sum = 0.0;
    for (hyp, refs) in hyps.iter().zip(refs) {
        let h = tokenizer.tokenize(hyp);
        sum += refs.iter().map(|r| lcs_f(&tokenizer.tokenize(r), &h)).fold(f64::NEG_INFINITY, f64::max);
    }
    Ok(sum / hyps.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(t: RougeTokenizer, s: &str) -> Vec<String> {
        t.tokenize(s)
    }

    #[test]
    fn rouge_score_tokens_drop_every_non_ascii_letter() {
        assert_eq!(toks(RougeTokenizer::RougeScore, "Hello, Wörld 42!"), ["hello", "w", "rld", "42"]);
        assert!(toks(RougeTokenizer::RougeScore, "আমি ভাত খাই।").is_empty());
    }

    #[test]
    fn unicode_tokens_keep_marks_and_join_across_zero_width_joiners() {
        assert_eq!(toks(RougeTokenizer::Unicode, "আমি ভাত খাই। Wörld"), ["আমি", "ভাত", "খাই", "wörld"]);
        assert_eq!(toks(RougeTokenizer::Unicode, "র\u{200d}্য"), ["র্য"]);
    }

    #[test]
    fn lcs_f_matches_a_worked_example() {
        let t = |s: &str| toks(RougeTokenizer::RougeScore, s);
        // LCS("the cat sat on the mat", "the cat is on the mat") = 5; P = R = 5/6.
        let f = lcs_f(&t("the cat sat on the mat"), &t("the cat is on the mat"));
        assert!((f - 5.0 / 6.0).abs() < 1e-12);
        assert_eq!(lcs_f(&t("x"), &t("")), 0.0);
    }
}
