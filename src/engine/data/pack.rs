//! Packing a token stream into training blocks and splitting them. Block `k` is the
//! `seq + 1` tokens starting at `k * seq`: consecutive blocks share one boundary token,
//! so every token but the first is a target exactly once. The partial block at the end
//! is dropped. The validation split takes blocks spread evenly through the stream, the
//! same for every seed so that validation losses compare across runs.

use super::cache::TokenStore;
use std::sync::Arc;
use tch::Tensor;

/// Blocks of `seq + 1` tokens over a shared token store.
#[derive(Clone)]
pub struct Blocks {
    store: Arc<TokenStore>,
    starts: Vec<usize>,
    seq: usize,
}

impl Blocks {
    pub(super) fn new(store: Arc<TokenStore>, starts: Vec<usize>, seq: usize) -> Blocks {
        Blocks { store, starts, seq }
    }

    /// Number of blocks of `seq + 1` tokens (input = first `seq`, target = shifted by one).
    pub fn len(&self) -> usize {
        self.starts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// Tokens per input row.
    pub fn seq(&self) -> usize {
        self.seq
    }

    /// The `seq + 1` token ids of block `index`.
    /// The blocks at `indices`, as a set of their own (sharing the token store).
    pub fn subset(&self, indices: &[usize]) -> Blocks {
        Blocks { store: self.store.clone(), starts: indices.iter().map(|&i| self.starts[i]).collect(), seq: self.seq }
    }

    pub fn tokens(&self, index: usize) -> Vec<u32> {
        let s = self.starts[index];
        (s..s + self.seq + 1).map(|i| self.store.id(i)).collect()
    }

    /// Input ids [B,T] i64, targets [B,T] i64, mask [B,T] f32 (1 where the target counts).
    /// Panics when an index is not below `len()`.
    pub fn batch(&self, indices: &[usize]) -> (Tensor, Tensor, Tensor) {
        let (b, t) = (indices.len(), self.seq);
        let mut inputs = Vec::with_capacity(b * t);
        let mut targets = Vec::with_capacity(b * t);
        let mut mask = Vec::with_capacity(b * t);
        for &index in indices {
            let s = self.starts[index];
            for i in s..s + t {
                inputs.push(self.store.id(i) as i64);
                targets.push(self.store.id(i + 1) as i64);
                mask.push(if self.store.trained(i + 1) { 1f32 } else { 0f32 });
            }
        }
        let shape = [b as i64, t as i64];
        (Tensor::from_slice(&inputs).view(shape), Tensor::from_slice(&targets).view(shape), Tensor::from_slice(&mask).view(shape))
    }

    /// Targets that count in these blocks (the sum of `batch(indices).2`).
    pub fn valid_tokens(&self, indices: &[usize]) -> u64 {
        indices.iter().map(|&i| self.store.trained_in(self.starts[i] + 1..self.starts[i] + self.seq + 1)).sum()
    }
}

/// Start offsets of the whole blocks in a stream of `tokens` tokens.
pub(super) fn block_starts(tokens: usize, seq: usize) -> Vec<usize> {
    let count = if tokens > seq { (tokens - 1) / seq } else { 0 };
    (0..count).map(|k| k * seq).collect()
}

/// Indices of the validation blocks among `blocks`: `round(blocks × (1 − fraction))`,
/// at least one when there are two blocks or more, and never all of them.
pub(super) fn validation_indices(blocks: usize, train_fraction: Option<f64>) -> Vec<usize> {
    let Some(f) = train_fraction else { return Vec::new() };
    if blocks < 2 || f >= 1.0 {
        return Vec::new();
    }
    let count = ((blocks as f64 * (1.0 - f)).round() as usize).clamp(1, blocks - 1);
    // The middle of each of `count` equal stretches: distinct because blocks >= count.
    (0..count).map(|j| (2 * j + 1) * blocks / (2 * count)).collect()
}

/// `starts` divided into (train, val) by `validation_indices`.
pub(super) fn split(starts: Vec<usize>, train_fraction: Option<f64>) -> (Vec<usize>, Vec<usize>) {
    let val_at = validation_indices(starts.len(), train_fraction);
    let mut is_val = vec![false; starts.len()];
    val_at.iter().for_each(|&i| is_val[i] = true);
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for (i, s) in starts.into_iter().enumerate() {
        if is_val[i] { val.push(s) } else { train.push(s) }
    }
    (train, val)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_share_one_boundary_token() {
        assert_eq!(block_starts(9, 4), vec![0, 4]);
        assert_eq!(block_starts(8, 4), vec![0]);
        assert_eq!(block_starts(4, 4), Vec::<usize>::new());
    }

    #[test]
    fn validation_is_spread_and_never_everything() {
        assert_eq!(validation_indices(10, Some(0.8)), vec![2, 7]);
        assert_eq!(validation_indices(2, Some(0.99)), vec![1]);
        assert_eq!(validation_indices(3, Some(0.01)), vec![0, 2]);
        assert!(validation_indices(1, Some(0.5)).is_empty());
        assert!(validation_indices(10, None).is_empty());
    }
}
