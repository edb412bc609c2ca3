//! Text handling shared by the metrics, written to agree with Python's, which the
//! reference implementations are in.

use unicode_normalization::UnicodeNormalization;

/// Python's `str.isspace()`: Unicode White_Space plus the four information separators
/// U+001C..U+001F, which Rust's `char::is_whitespace` leaves out.
pub fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `s.split()`.
pub fn py_split(s: &str) -> impl Iterator<Item = &str> {
    s.split(is_py_space).filter(|t| !t.is_empty())
}

/// Python's `s.rstrip()`.
pub fn py_rstrip(s: &str) -> &str {
    s.trim_end_matches(is_py_space)
}

/// Canonical composition (NFC): the same word typed two ways (Bengali য় as U+09DF or
/// as U+09AF U+09BC) compares equal after it.
pub fn nfc(s: &str) -> String {
    s.nfc().collect()
}

/// Counts of the n-grams (as slices) of `tokens`.
pub fn ngram_counts<T: std::hash::Hash + Eq>(tokens: &[T], n: usize) -> std::collections::HashMap<&[T], usize> {
    let mut counts = std::collections::HashMap::new();
    if tokens.len() >= n {
        for gram in tokens.windows(n) {
            *counts.entry(gram).or_insert(0) += 1;
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_whitespace_includes_the_information_separators() {
        assert_eq!(py_split(" a\u{1f}b\u{a0}c\t").collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(py_rstrip("x \u{1c}\n"), "x");
    }

    #[test]
    fn nfc_composes_what_can_be_composed() {
        assert_eq!(nfc("e\u{301}"), "\u{e9}");
        // U+09DF is a composition exclusion: NFC spells it decomposed.
        assert_eq!(nfc("\u{9df}"), "\u{9af}\u{9bc}");
    }
}
