//! Seeded normal samples for weight initialisation, independent of libtorch's global
//! generator: one splitmix64 stream per (seed, variable name), Box–Muller for normals.

use crate::engine::rng::SplitMix64;

fn name_hash(name: &str) -> u64 {
    // FNV-1a: stable across runs and platforms.
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

/// `n` samples from N(0, std²).
pub fn normal(seed: u64, name: &str, n: usize, std: f64) -> Vec<f32> {
    let mut state = SplitMix64(seed ^ name_hash(name));
    // Half a step off zero, so ln(u) is finite.
    let uniform = |s: &mut SplitMix64| ((s.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let (u1, u2) = (uniform(&mut state), uniform(&mut state));
        let r = (-2.0 * u1.ln()).sqrt() * std;
        let a = 2.0 * std::f64::consts::PI * u2;
        out.push((r * a.cos()) as f32);
        if out.len() < n {
            out.push((r * a.sin()) as f32);
        }
    }
    out
}

/// `n` samples from U(−bound, bound).
pub fn uniform(seed: u64, name: &str, n: usize, bound: f64) -> Vec<f32> {
    let mut state = SplitMix64(seed ^ name_hash(name));
    (0..n).map(|_| ((state.uniform() * 2.0 - 1.0) * bound) as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_have_the_asked_spread_and_repeat_exactly() {
        let a = normal(7, "w", 20_000, 0.02);
        assert_eq!(a, normal(7, "w", 20_000, 0.02));
        assert_ne!(a, normal(7, "v", 20_000, 0.02));
        let mean = a.iter().map(|x| *x as f64).sum::<f64>() / a.len() as f64;
        let var = a.iter().map(|x| (*x as f64 - mean).powi(2)).sum::<f64>() / a.len() as f64;
        assert!(mean.abs() < 1e-3 && (var.sqrt() - 0.02).abs() < 1e-3, "mean {mean} std {}", var.sqrt());
    }
}
