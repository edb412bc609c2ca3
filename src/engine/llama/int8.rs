//! Weight-only int8 for decoding on the CPU. One new token per step reads every weight
//! once (540 MB of f32 for SmolLM2-135M), so greedy decode is bound by memory, not
//! arithmetic: int8 weights with one scale per output row are a quarter of the bytes.
//! libtorch's `_weight_int8pack_mm` multiplies bf16 activations by them (its vectorised
//! path; f32 activations take a slow one), so a packed linear casts its few input rows
//! to bf16 and the product back. Blocks of more rows (a prompt, a training batch) keep
//! the f32 weights: there the matmul is compute-bound and f32 GEMM is faster.

use tch::{Kind, Tensor};

/// The most rows a packed linear takes; more go through the f32 weights. Measured on
/// SmolLM2's shapes (2 cores, AVX-512): int8 is ahead up to 4 rows, behind from 8.
pub const MAX_ROWS: i64 = 4;

/// A linear layer's weight `[out, in]` as int8 rows and their bf16 scales.
pub struct Int8Weight {
    q: Tensor,
    scales: Tensor,
}

impl Int8Weight {
    /// Symmetric per-row quantization: scale = max|row| / 127 (rounded to bf16 first, so
    /// the levels are chosen against the scale the kernel multiplies by).
    pub fn pack(weight: &Tensor) -> Result<Int8Weight, String> {
        tch::no_grad(|| {
            let w = weight.to_kind(Kind::Float);
            let scales = (w.abs().amax([1].as_slice(), true) / 127.0).clamp_min(1e-30).to_kind(Kind::BFloat16);
            let q = (&w / scales.to_kind(Kind::Float)).round().clamp(-128.0, 127.0).to_kind(Kind::Int8);
            let packed = Int8Weight { q, scales: scales.view([-1]) };
            // The kernel is libtorch's (since 2.3, CPU); a build or device without it is
            // an error here, not a crash mid-generation.
            let probe = Tensor::zeros([1, weight.size()[1]], (Kind::BFloat16, weight.device()));
            let _ = probe.f_internal_weight_int8pack_mm(&packed.q, &packed.scales).map_err(|e| format!("int8 weights are not supported here: {e}"))?;
            Ok(packed)
        })
    }

    /// `x: [.., in]` times the weight, or `None` when `x` has more rows than pay off.
    pub fn forward(&self, x: &Tensor) -> Option<Tensor> {
        let mut shape = x.size();
        let inputs = *shape.last()?;
        if x.numel() as i64 / inputs.max(1) > MAX_ROWS {
            return None;
        }
        *shape.last_mut()? = self.q.size()[0];
        let y = x.reshape([-1, inputs]).to_kind(Kind::BFloat16).internal_weight_int8pack_mm(&self.q, &self.scales);
        Some(y.to_kind(x.kind()).view(shape.as_slice()))
    }

    /// Bytes of the packed weight and scales.
    pub fn bytes(&self) -> i64 {
        self.q.numel() as i64 + 2 * self.scales.numel() as i64
    }
}

/// Linear layers that read the same input (q, k and v; gate and up) packed as one int8
/// matrix: one cast of the input, one kernel call, the outputs split off after. At one
/// row per step the calls, not the bytes, are what a small model's decode waits on.
pub struct Fused {
    packed: Int8Weight,
    bias: Option<Tensor>,
    sizes: Vec<i64>,
}

impl Fused {
    /// `weights[i]: [out_i, in]` with their biases (a missing one is zero).
    pub fn pack(weights: &[&Tensor], biases: &[Option<&Tensor>]) -> Result<Fused, String> {
        let sizes: Vec<i64> = weights.iter().map(|w| w.size()[0]).collect();
        let packed = Int8Weight::pack(&tch::no_grad(|| Tensor::cat(weights, 0)))?;
        let bias = biases.iter().any(|b| b.is_some()).then(|| {
            let parts: Vec<Tensor> = biases.iter().zip(weights).map(|(b, w)| b.map(|b| b.to_kind(Kind::Float)).unwrap_or_else(|| Tensor::zeros([w.size()[0]], (Kind::Float, w.device())))).collect();
            Tensor::cat(&parts, 0)
        });
        Ok(Fused { packed, bias, sizes })
    }

    /// The outputs of each layer for `x: [.., in]`, or `None` past `MAX_ROWS` rows.
    pub fn forward(&self, x: &Tensor) -> Option<Vec<Tensor>> {
        let mut y = self.packed.forward(x)?;
        if let Some(b) = &self.bias {
            y = y + b;
        }
        Some(y.split_with_sizes(self.sizes.as_slice(), -1))
    }

    pub fn bytes(&self) -> i64 {
        self.packed.bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn packed_rows_multiply_like_the_weight() {
        tch::manual_seed(3);
        let w = Tensor::randn([96, 64], (Kind::Float, Device::Cpu)) * 0.05;
        let packed = Int8Weight::pack(&w).unwrap();
        let x = Tensor::randn([1, 3, 64], (Kind::Float, Device::Cpu));
        let exact = x.linear(&w, None::<Tensor>);
        let y = packed.forward(&x).unwrap();
        assert_eq!(y.size(), [1, 3, 96]);
        assert_eq!(y.kind(), Kind::Float);
        let rel = ((&y - &exact).abs().max() / exact.abs().max()).double_value(&[]);
        assert!(rel < 0.02, "int8 weights and bf16 activations: {rel}");
        // A prompt-sized block keeps the f32 weights.
        assert!(packed.forward(&Tensor::zeros([1, 5, 64], (Kind::Float, Device::Cpu))).is_none());
        assert_eq!(packed.bytes(), 96 * 64 + 2 * 96);
    }

    #[test]
    fn fused_layers_split_back_into_each_output() {
        tch::manual_seed(4);
        let (a, b) = (Tensor::randn([32, 64], (Kind::Float, Device::Cpu)) * 0.05, Tensor::randn([16, 64], (Kind::Float, Device::Cpu)) * 0.05);
        let bias = Tensor::randn([16], (Kind::Float, Device::Cpu));
        let fused = Fused::pack(&[&a, &b], &[None, Some(&bias)]).unwrap();
        let x = Tensor::randn([1, 1, 64], (Kind::Float, Device::Cpu));
        let outs = fused.forward(&x).unwrap();
        let want = [x.linear(&a, None::<Tensor>), x.linear(&b, Some(&bias))];
        for (o, w) in outs.iter().zip(&want) {
            assert_eq!(o.size(), w.size());
            assert!((o - w).abs().max().double_value(&[]) < 0.02 * w.abs().max().double_value(&[]).max(1.0));
        }
    }
}
