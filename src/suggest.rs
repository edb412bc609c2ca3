//! "Did you mean ...?" for names and argument names.

/// Edits between `a` and `b`, with a swap of two neighbours counting as one edit
/// (optimal string alignment), the typo people make most.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for j in 0..=b.len() {
        d[0][j] = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// Whether two letters are next to each other on a QWERTY keyboard.
fn neighbours(a: char, b: char) -> bool {
    const ROWS: [&str; 3] = ["qwertyuiop", "asdfghjkl", "zxcvbnm"];
    let at = |c: char| ROWS.iter().enumerate().find_map(|(r, row)| row.find(c).map(|i| (r as i32, i as i32)));
    match (at(a), at(b)) {
        (Some((ra, ia)), Some((rb, ib))) if ra == rb => (ia - ib).abs() == 1,
        // Rows are staggered half a key: `a` sits below `q` and `w`, so a key touches the
        // upper row's keys at its own index and one to the right.
        (Some((ra, ia)), Some((rb, ib))) if (ra - rb).abs() == 1 => {
            let (upper, lower) = if ra < rb { (ia, ib) } else { (ib, ia) };
            (0..=1).contains(&(upper - lower))
        }
        _ => false,
    }
}

/// Whether `candidate` is a plausible typo of `name`, as rustc and cargo judge it: close
/// relative to the name's length, never for one- or two-letter names (`p` is not `pi`),
/// and a changed letter in a short name is another word (`map` is not `max`).
fn plausible(name: &str, candidate: &str) -> bool {
    let n = name.chars().count();
    if n < 3 {
        return false;
    }
    // A prefix ("temp" for "temperature") is what people type before they remember the rest.
    if n >= 4 && candidate.starts_with(name) {
        return true;
    }
    match edit_distance(name, candidate) {
        0 => false,
        1 => {
            let same_len = n == candidate.chars().count();
            let swapped = same_len && {
                let (mut x, mut y): (Vec<char>, Vec<char>) = (name.chars().collect(), candidate.chars().collect());
                x.sort_unstable();
                y.sort_unstable();
                x == y
            };
            // A letter added, dropped or swapped reads as a typo; a letter replaced only
            // when a finger slipped to the next key (`tescher`) or missed the last key of
            // a longer name (`adamv`), else it is another word (`map`/`max`,
            // `quantize`/`quantile`).
            let changed = name.chars().zip(candidate.chars()).position(|(x, y)| x != y);
            !same_len
                || swapped
                || changed.is_some_and(|i| {
                    let (x, y) = (name.chars().nth(i).unwrap_or(' '), candidate.chars().nth(i).unwrap_or(' '));
                    neighbours(x, y) || (n >= 5 && i == n - 1)
                })
        }
        // Two edits only in a long name: `quantize` (8) is a word of its own, not `quantile`.
        2 => n >= 9,
        d => d * 4 <= n,
    }
}

/// The closest plausible candidate, if any.
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lower = name.to_lowercase();
    candidates
        .into_iter()
        .filter(|c| *c != name && plausible(&lower, &c.to_lowercase()))
        .min_by_key(|c| (edit_distance(&lower, &c.to_lowercase()), c.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_typos_and_ignores_strangers() {
        assert_eq!(closest("studnet", ["student", "teacher"]), Some("student"));
        assert_eq!(closest("dimm", ["dim", "layers"]), Some("dim"));
        assert_eq!(closest("xyz", ["student", "teacher"]), None);
        assert_eq!(closest("temperatuer", ["temperature"]), Some("temperature"));
        assert_eq!(closest("tescher", ["teacher"]), Some("teacher"));
        assert_eq!(closest("lpss", ["loss"]), Some("loss"));
        assert_eq!(closest("temp", ["temperature", "tvd"]), Some("temperature"));
    }

    #[test]
    fn short_or_far_names_get_no_suggestion() {
        assert_eq!(closest("map", ["max", "min"]), None);
        assert_eq!(closest("p", ["pi"]), None);
        assert_eq!(closest("quantize", ["quantile"]), None);
    }
}
