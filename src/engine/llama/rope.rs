//! Rotary position embeddings: the cos/sin tables, built once per model and device, in
//! Hugging Face's "rotate half" layout (the two halves of each head are the pairs).

use super::config::Llama3Scaling;
use std::f64::consts::PI;
use tch::{Device, Kind, Tensor};

pub struct Rope {
    /// [max_seq, head_dim]
    cos: Tensor,
    /// sin with the first half negated, so rotate-half is a `roll` (one op, not four).
    signed_sin: Tensor,
}

/// Inverse frequencies θ^(-2i/d), with llama-3 scaling of the long wavelengths if asked.
pub fn inverse_frequencies(head_dim: usize, theta: f64, scaling: Option<Llama3Scaling>) -> Vec<f64> {
    (0..head_dim / 2)
        .map(|i| {
            let f = 1.0 / theta.powf(2.0 * i as f64 / head_dim as f64);
            match scaling {
                None => f,
                Some(s) => {
                    let wavelen = 2.0 * PI / f;
                    let low = s.original_max_position / s.low_freq_factor;
                    let high = s.original_max_position / s.high_freq_factor;
                    if wavelen < high {
                        f
                    } else if wavelen > low {
                        f / s.factor
                    } else {
                        let smooth = (s.original_max_position / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
                        (1.0 - smooth) * f / s.factor + smooth * f
                    }
                }
            }
        })
        .collect()
}

impl Rope {
    pub fn new(head_dim: usize, max_seq: usize, theta: f64, scaling: Option<Llama3Scaling>, device: Device) -> Rope {
        let inv: Vec<f32> = inverse_frequencies(head_dim, theta, scaling).into_iter().map(|x| x as f32).collect();
        let inv = Tensor::from_slice(&inv);
        let pos = Tensor::arange(max_seq as i64, (Kind::Float, Device::Cpu));
        let freqs = pos.unsqueeze(1) * inv.unsqueeze(0); // [T, hd/2]
        let emb = Tensor::cat(&[&freqs, &freqs], -1); // [T, hd]
        let sin = emb.sin();
        let half = (head_dim / 2) as i64;
        let signed_sin = Tensor::cat(&[-sin.narrow(1, 0, half), sin.narrow(1, half, half)], 1);
        Rope { cos: emb.cos().to_device(device), signed_sin: signed_sin.to_device(device) }
    }

    /// The cos/sin rows of positions `offset..offset + t`, in `kind`: taken once per
    /// forward and shared by every layer.
    pub fn tables(&self, offset: i64, t: i64, kind: Kind) -> (Tensor, Tensor) {
        (self.cos.narrow(0, offset, t).to_kind(kind), self.signed_sin.narrow(0, offset, t).to_kind(kind))
    }

    /// The cos/sin rows of `positions: [T]` (device int64), in `kind`.
    pub fn tables_at(&self, positions: &Tensor, kind: Kind) -> (Tensor, Tensor) {
        (self.cos.index_select(0, positions).to_kind(kind), self.signed_sin.index_select(0, positions).to_kind(kind))
    }

    /// The cos/sin rows of `positions: [B, T]` (device int64) as `[B, 1, T, hd]`: each
    /// sequence of a batch at its own positions.
    pub fn tables_rows(&self, positions: &Tensor, kind: Kind) -> (Tensor, Tensor) {
        let (b, t) = (positions.size()[0], positions.size()[1]);
        let flat = positions.reshape([b * t]);
        let rows = |table: &Tensor| table.index_select(0, &flat).view([b, 1, t, -1]).to_kind(kind);
        (rows(&self.cos), rows(&self.signed_sin))
    }

    /// Rotates `x: [B, H, T, hd]` by the tables of its positions.
    pub fn apply(x: &Tensor, (cos, signed_sin): &(Tensor, Tensor)) -> Tensor {
        // rotate_half(x) * sin = [-x2, x1] * sin = roll(x, hd/2) * [-sin, sin].
        let hd = x.size()[3];
        x * cos + x.roll([hd / 2], [-1]) * signed_sin
    }

    pub fn max_seq(&self) -> i64 {
        self.cos.size()[0]
    }
}
