//! Picking the next token from a row of logits: greedy, or sampled with temperature,
//! top-k and top-p from a seeded stream of our own, so a `seed=` reproduces a sample on
//! any device.

use crate::engine::rng::SplitMix64 as Rng;

/// How the next token is picked. `temperature == 0` is greedy.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    pub temperature: f64,
    pub top_k: Option<usize>,
    pub top_p: Option<f64>,
    pub seed: u64,
}

impl Sampling {
    pub fn greedy() -> Sampling {
        Sampling { temperature: 0.0, top_k: None, top_p: None, seed: 0 }
    }
}

/// Log-weight below the best token's under which a token cannot be sampled in practice
/// (e^-30 ≈ 1e-13 of the best one's weight).
const NEGLIGIBLE: f64 = 30.0;

/// Picks a token from one row of logits `[vocab]` (f32 on the CPU).
pub(super) fn pick(logits: &[f32], s: &Sampling, rng: &mut Rng) -> u32 {
    let argmax = || logits.iter().enumerate().fold((0, f32::NEG_INFINITY), |best, (i, &x)| if x > best.1 { (i, x) } else { best }).0 as u32;
    if s.temperature <= 0.0 {
        return argmax();
    }
    // Candidates by descending logit; top-k cuts first, then the nucleus. Tokens whose
    // weight is below e^-NEGLIGIBLE of the best one's are left out before sorting: all of
    // them together hold under 1e-8 of the mass on any vocabulary, and sorting only the
    // rest makes a sampled step cheap (a 49k vocabulary sorted per token cost more than
    // the forward of a batched decode step).
    let best = logits.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) as f64;
    let floor = best - NEGLIGIBLE * s.temperature;
    let mut order: Vec<u32> = (0..logits.len() as u32).filter(|&i| logits[i as usize] as f64 >= floor).collect();
    if order.is_empty() {
        // No finite logit (a diverged model): nothing to weigh.
        return argmax();
    }
    let k = s.top_k.unwrap_or(order.len()).clamp(1, order.len());
    if k < order.len() {
        order.select_nth_unstable_by(k - 1, |&a, &b| logits[b as usize].total_cmp(&logits[a as usize]));
        order.truncate(k);
    }
    order.sort_unstable_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]));
    let top = logits[order[0] as usize] as f64;
    let mut weights: Vec<f64> = order.iter().map(|&i| ((logits[i as usize] as f64 - top) / s.temperature).exp()).collect();
    let total: f64 = weights.iter().sum();
    if let Some(p) = s.top_p {
        let mut mass = 0.0;
        let keep = weights.iter().position(|w| {
            mass += w / total;
            mass >= p
        });
        if let Some(last) = keep {
            weights.truncate(last + 1);
        }
    }
    let total: f64 = weights.iter().sum();
    let mut u = rng.uniform() * total;
    for (i, w) in weights.iter().enumerate() {
        u -= w;
        if u <= 0.0 {
            return order[i];
        }
    }
    order[weights.len() - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_largest_logit() {
        let mut rng = Rng(1);
        assert_eq!(pick(&[0.1, 3.0, -1.0, 2.9], &Sampling::greedy(), &mut rng), 1);
    }

    #[test]
    fn top_k_one_is_greedy_whatever_the_temperature() {
        let s = Sampling { temperature: 5.0, top_k: Some(1), top_p: None, seed: 3 };
        let mut rng = Rng(7);
        for _ in 0..20 {
            assert_eq!(pick(&[0.1, 3.0, -1.0, 2.9], &s, &mut rng), 1);
        }
    }

    #[test]
    fn top_p_keeps_only_the_nucleus() {
        // p(0) ≈ 0.88: a nucleus of 0.5 keeps token 0 alone.
        let s = Sampling { temperature: 1.0, top_k: None, top_p: Some(0.5), seed: 0 };
        let mut rng = Rng(11);
        for _ in 0..50 {
            assert_eq!(pick(&[4.0, 2.0, 0.0], &s, &mut rng), 0);
        }
    }

    #[test]
    fn sampling_follows_the_distribution() {
        let s = Sampling { temperature: 1.0, top_k: None, top_p: None, seed: 0 };
        let mut rng = Rng(5);
        let logits = [0.0f32, (3.0f32).ln()]; // p = [0.25, 0.75]
        let ones = (0..4000).filter(|_| pick(&logits, &s, &mut rng) == 1).count();
        assert!((2850..3150).contains(&ones), "{ones} of 4000");
    }
}
