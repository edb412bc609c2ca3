//! The key/value cache for incremental decoding: per layer, the keys and values of every
//! position seen so far, so each new token costs one position of attention work.

use tch::Tensor;

#[derive(Default)]
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
    /// Positions already in the cache.
    pub offset: i64,
}

impl KvCache {
    pub fn new(layers: usize) -> KvCache {
        KvCache { layers: (0..layers).map(|_| None).collect(), offset: 0 }
    }

    /// Appends this step's `k, v: [B, kv_heads, T, hd]` to layer `layer`, returning the
    /// full keys and values.
    pub fn append(&mut self, layer: usize, k: Tensor, v: Tensor) -> (Tensor, Tensor) {
        let (k, v) = match self.layers[layer].take() {
            Some((pk, pv)) => (Tensor::cat(&[pk, k], 2), Tensor::cat(&[pv, v], 2)),
            None => (k, v),
        };
        self.layers[layer] = Some((k.shallow_clone(), v.shallow_clone()));
        (k, v)
    }
}
