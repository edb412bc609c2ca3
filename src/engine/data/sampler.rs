//! The order blocks are trained in: a fresh permutation each epoch, drawn from
//! `(seed, epoch)` alone, so the sampler's three numbers are its whole state and a run
//! resumed from a checkpoint sees the batches the uninterrupted run would have.

use crate::engine::rng::SplitMix64;
use serde::{Deserialize, Serialize};

/// Deterministic shuffled order per epoch from (seed, epoch); its state (epoch, position)
/// is saved in checkpoints so a resumed run sees the same batches.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sampler {
    pub seed: u64,
    /// Completed passes over the blocks.
    pub epoch: u64,
    /// Blocks of the current epoch's order already handed out.
    pub position: usize,
}

impl Sampler {
    pub fn new(seed: u64) -> Sampler {
        Sampler { seed, epoch: 0, position: 0 }
    }

    /// The next `batch` block indices below `blocks`. Batches are always full: one that
    /// reaches the end of an epoch continues into the next epoch's order. `epoch` moves
    /// on as soon as an epoch's last block is handed out.
    pub fn next_batch(&mut self, blocks: usize, batch: usize) -> Vec<usize> {
        let mut out = Vec::with_capacity(batch);
        if blocks == 0 {
            return out;
        }
        while out.len() < batch {
            if self.position >= blocks {
                self.epoch += 1;
                self.position = 0;
            }
            let order = self.order(blocks);
            let take = (batch - out.len()).min(blocks - self.position);
            out.extend_from_slice(&order[self.position..self.position + take]);
            self.position += take;
        }
        if self.position >= blocks {
            self.epoch += 1;
            self.position = 0;
        }
        out
    }

    /// The current epoch's permutation of `0..blocks` (Fisher–Yates).
    pub fn order(&self, blocks: usize) -> Vec<usize> {
        let mut rng = SplitMix64(mix(self.seed) ^ mix(self.epoch.wrapping_add(0x5851_f42d_4c95_7f2d)));
        let mut order: Vec<usize> = (0..blocks).collect();
        for i in (1..blocks).rev() {
            let j = ((rng.next_u64() as u128 * (i as u128 + 1)) >> 64) as usize;
            order.swap(i, j);
        }
        order
    }
}

fn mix(x: u64) -> u64 {
    SplitMix64(x).next_u64()
}

