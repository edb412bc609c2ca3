//! Random-sampling KD (RS-KD, Anshumann et al., ACL 2025): instead of the teacher's top
//! k, keep `n` draws from its distribution at T = 1 per position, as distinct ids with
//! counts. `count / n` is an unbiased estimate of the teacher's probability of every id,
//! in the tail too, so the cross-entropy of the student on the draws has the dense KL's
//! gradient in expectation — where top-k drives every tail token towards 0.
//!
//! The draws are systematic: one uniform `u` per position and the `n` evenly spaced points
//! `(j + u) / n` on the teacher's cumulative distribution. Each id is still hit `n·p` times
//! in expectation (unbiased, like independent draws), but its count is always within one
//! of `n·p`, so the estimate's variance is lower and fewer distinct ids are stored. `u`
//! comes from the block number and position alone, so a block's draws are the same in
//! every run, batch and resume.

use super::sparse::{BlockEntry, Payload};
use crate::engine::rng::SplitMix64;
use tch::{Kind, Tensor};

/// The most draws per position: counts are stored in one byte.
pub const MAX_DRAWS: usize = 255;

/// Keeps the blocks apart from other users of splitmix64 seeds.
const SALT: u64 = 0x5253_4b44_0000_0001;

/// The uniform offset of `position` in `block`.
fn offset(block: u32, position: usize) -> f64 {
    SplitMix64(SALT ^ ((block as u64) << 32) ^ position as u64).uniform()
}

/// The entries of the blocks `blocks` (one per row) from the teacher's logits `[B, T, V]`
/// and the next-token ids `[B, T]`: `draws` draws per position and the target's
/// log-probability.
pub fn sampled_entries(logits: &Tensor, targets: &Tensor, draws: usize, blocks: &[u32]) -> Vec<BlockEntry> {
    let (b, t, v) = match logits.size()[..] {
        [b, t, v] => (b as usize, t as usize, v),
        _ => return Vec::new(),
    };
    let n = draws.clamp(1, MAX_DRAWS);
    let (hits, target) = tch::no_grad(|| {
        let log_p = logits.to_kind(Kind::Float).log_softmax(-1, Kind::Float);
        let target = log_p.gather(-1, &targets.clamp_min(0).unsqueeze(-1), false).squeeze_dim(-1);
        let cdf = log_p.exp().cumsum(-1, Kind::Float).view([-1, v]);
        // The points sit below the cdf's own total, so rounding in the sum never pushes
        // one past the last id.
        let total = cdf.select(1, v - 1).unsqueeze(1);
        let mut points = Vec::with_capacity(b * t * n);
        for row in 0..b {
            let block = blocks.get(row).copied().unwrap_or(row as u32);
            for pos in 0..t {
                let u = offset(block, pos);
                points.extend((0..n).map(|j| ((j as f64 + u) / n as f64) as f32));
            }
        }
        let points = Tensor::from_slice(&points).view([(b * t) as i64, n as i64]).to_device(cdf.device()) * total;
        let hits = points.searchsorted(&cdf, false, true, "right", None::<&Tensor>).clamp_max(v - 1);
        (hits, target)
    });
    let hits = Vec::<i64>::try_from(hits.to_device(tch::Device::Cpu).reshape([-1])).unwrap_or_default();
    let target = Vec::<f32>::try_from(target.to_device(tch::Device::Cpu).reshape([-1])).unwrap_or_default();
    (0..b)
        .map(|row| {
            let (mut distinct, mut ids, mut counts) = (Vec::with_capacity(t), Vec::new(), Vec::new());
            for pos in 0..t {
                // The points ascend, so the ids they hit do too: equal ids are adjacent.
                let drawn = &hits[(row * t + pos) * n..(row * t + pos + 1) * n];
                let before = ids.len();
                for &id in drawn {
                    if ids.len() > before && ids.last() == Some(&(id as u32)) {
                        let last = counts.len() - 1;
                        counts[last] += 1;
                    } else {
                        ids.push(id as u32);
                        counts.push(1u8);
                    }
                }
                distinct.push((ids.len() - before) as u8);
            }
            BlockEntry { payload: Payload::Sampled { distinct, ids, counts }, target: target[row * t..(row + 1) * t].to_vec() }
        })
        .collect()
}
