//! Corpus chrF (and chrF++ with `word_order = 2`) exactly as sacreBLEU 2.6's `CHRF()`
//! computes it: character n-grams up to 6 with whitespace removed, recall weighted by
//! beta = 2, the statistics summed over the corpus (per segment from the reference that
//! scores best), precision and recall averaged over the effective orders.

use super::text::{ngram_counts, py_split};
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChrfOptions {
    pub char_order: usize,
    pub word_order: usize,
    pub beta: f64,
    pub lowercase: bool,
}

impl Default for ChrfOptions {
    fn default() -> Self {
        ChrfOptions { char_order: 6, word_order: 0, beta: 2.0, lowercase: false }
    }
}

/// sacreBLEU's `CHRF._PUNCTS`.
fn is_punct(c: char) -> bool {
    c.is_ascii_punctuation()
}

/// sacreBLEU's `_remove_punctuation`: one ASCII punctuation mark split off the end of a
/// word, or else off its start (the original chrF++ behaviour, for word n-grams only).
fn words(sent: &str) -> Vec<String> {
    let mut out = Vec::new();
    for w in py_split(sent) {
        let chars: Vec<char> = w.chars().collect();
        if chars.len() == 1 {
            out.push(w.to_string());
        } else if is_punct(chars[chars.len() - 1]) {
            out.push(chars[..chars.len() - 1].iter().collect());
            out.push(chars[chars.len() - 1].to_string());
        } else if is_punct(chars[0]) {
            out.push(chars[0].to_string());
            out.push(chars[1..].iter().collect());
        } else {
            out.push(w.to_string());
        }
    }
    out
}

/// Per order: counts of n-grams keyed by their text.
type Grams = Vec<HashMap<String, usize>>;

fn extract(sent: &str, o: &ChrfOptions) -> Grams {
    let chars: Vec<char> = py_split(sent).flat_map(str::chars).collect();
    let mut grams: Grams = (1..=o.char_order)
        .map(|n| ngram_counts(&chars, n).into_iter().map(|(g, c)| (g.iter().collect::<String>(), c)).collect())
        .collect();
    if o.word_order > 0 {
        let ws = words(sent);
        for n in 1..=o.word_order {
            grams.push(ngram_counts(&ws, n).into_iter().map(|(g, c)| (g.join(" "), c)).collect());
        }
    }
    grams
}

/// `[hyp, ref, match]` per order, flattened.
fn match_stats(hyp: &Grams, reference: &Grams) -> Vec<u64> {
    let mut stats = Vec::with_capacity(3 * hyp.len());
    for (h, r) in hyp.iter().zip(reference) {
        let (mut matched, mut hyp_count) = (0usize, 0usize);
        for (gram, &c) in h {
            hyp_count += c;
            if let Some(&rc) = r.get(gram) {
                matched += c.min(rc);
            }
        }
        stats.extend([if r.is_empty() { 0 } else { hyp_count } as u64, r.values().sum::<usize>() as u64, matched as u64]);
    }
    stats
}

/// sacreBLEU's `_compute_f_score` (without eps smoothing), on 0..100.
fn f_score(stats: &[u64], beta: f64) -> f64 {
    let factor = beta * beta;
    let (mut avg_prec, mut avg_rec, mut effective) = (0.0f64, 0.0f64, 0usize);
    for s in stats.chunks(3) {
        let (n_hyp, n_ref, n_match) = (s[0], s[1], s[2]);
        if n_hyp > 0 && n_ref > 0 {
            avg_prec += n_match as f64 / n_hyp as f64;
            avg_rec += n_match as f64 / n_ref as f64;
            effective += 1;
        }
    }
    if effective == 0 {
        return 0.0;
    }
    avg_prec /= effective as f64;
    avg_rec /= effective as f64;
    if avg_prec + avg_rec == 0.0 {
        return 0.0;
    }
    let score = (1.0 + factor) * avg_prec * avg_rec / (factor * avg_prec + avg_rec);
    100.0 * score
}

/// Corpus chrF (0..100) of `hyps` against `refs` (one list of references per hypothesis).
pub fn corpus_chrf(hyps: &[String], refs: &[Vec<String>], o: ChrfOptions) -> Result<f64, String> {
    if let Some(problem) = super::shape_problem(hyps.len(), refs) {
        return Err(problem);
    }
    let prepare = |s: &str| if o.lowercase { s.to_lowercase() } else { s.to_string() };
    let mut total = vec![0u64; 3 * (o.char_order + o.word_order)];
    for (hyp, refs) in hyps.iter().zip(refs) {
        let h = extract(&prepare(hyp), &o);
        // The reference whose statistics score best (the first on a tie).
        let mut best: Option<(f64, Vec<u64>)> = None;
        for r in refs {
            let stats = match_stats(&h, &extract(&prepare(r), &o));
            let f = f_score(&stats, o.beta);
            if best.as_ref().map_or(true, |(bf, _)| f > *bf) {
                best = Some((f, stats));
            }
        }
        for (t, s) in total.iter_mut().zip(best.map(|b| b.1).unwrap_or_default()) {
            *t += s;
        }
    }
    Ok(f_score(&total, o.beta))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn punctuation_comes_off_one_end_of_a_word() {
        assert_eq!(words("Hello, (world) x !"), ["Hello", ",", "(world", ")", "x", "!"]);
    }

    #[test]
    fn identical_text_scores_100() {
        let s = vec!["the cat sat on the mat".to_string()];
        assert!((corpus_chrf(&s, std::slice::from_ref(&s), ChrfOptions::default()).unwrap() - 100.0).abs() < 1e-9);
    }
}
