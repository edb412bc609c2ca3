//! Key/value caches for incremental decoding: per layer, the keys and values of every
//! position seen so far, so each new token costs one position of attention work.
//!
//! Two kinds. `KvCache` grows by concatenation: attention only ever spans the positions
//! there are, which is what a CPU wants. `StaticKvCache` is allocated once at its full
//! length and written in place at device-held positions: every decode step then has the
//! same shapes and addresses, which is what a captured CUDA graph needs.

use tch::{Device, Kind, Tensor};

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

    /// Keeps only the batch rows `rows` (device int64), in that order: a batch drops
    /// the sequences that finished.
    pub fn keep_rows(&mut self, rows: &Tensor) {
        for (k, v) in self.layers.iter_mut().flatten() {
            *k = k.index_select(0, rows);
            *v = v.index_select(0, rows);
        }
    }
}

/// A cache of fixed length for one sequence: `[1, kv_heads, len, hd]` per layer, zeros
/// where nothing was written yet (the attention mask hides them).
pub struct StaticKvCache {
    keys: Vec<Tensor>,
    values: Vec<Tensor>,
    /// `0..len`, to build masks on the device.
    slots: Tensor,
}

impl StaticKvCache {
    pub fn new(layers: usize, kv_heads: i64, head_dim: i64, len: i64, kind: Kind, device: Device) -> StaticKvCache {
        let zeros = || Tensor::zeros([1, kv_heads, len, head_dim], (kind, device));
        StaticKvCache { keys: (0..layers).map(|_| zeros()).collect(), values: (0..layers).map(|_| zeros()).collect(), slots: Tensor::arange(len, (Kind::Int64, device)) }
    }

    pub fn len(&self) -> i64 {
        self.slots.size()[0]
    }

    /// Writes `k, v: [1, kv_heads, T, hd]` at `positions: [T]` of layer `layer`, and
    /// returns the whole cache of that layer.
    pub fn write(&mut self, layer: usize, positions: &Tensor, k: &Tensor, v: &Tensor) -> (Tensor, Tensor) {
        let _ = self.keys[layer].index_copy_(2, positions, k);
        let _ = self.values[layer].index_copy_(2, positions, v);
        (self.keys[layer].shallow_clone(), self.values[layer].shallow_clone())
    }

    /// `[T, len]`: the query at position p sees the slots 0..=p, so the causal mask and
    /// the not-yet-written tail are one comparison.
    pub fn mask(&self, positions: &Tensor) -> Tensor {
        self.slots.unsqueeze(0).le_tensor(&positions.unsqueeze(1))
    }
}
