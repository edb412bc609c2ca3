//! Optimizers over named parameters: AdamW (decoupled weight decay, as in PyTorch) and SGD
//! with momentum, plus global gradient-norm clipping. Written here rather than taken from
//! tch so their state (moments, step count) can be saved in a checkpoint and restored
//! exactly, which is what makes a resumed run identical to an uninterrupted one.

use crate::spec::OptimSpec;
use std::collections::BTreeMap;
use tch::{Kind, Tensor};

pub struct Optimizer {
    spec: OptimSpec,
    /// Parameters by name, in name order (the order of updates and of the state file).
    params: Vec<(String, Tensor)>,
    /// AdamW: first and second moments; SGD: the momentum buffer (second unused).
    state: Vec<(Tensor, Tensor)>,
    pub steps: u64,
}

/// Weight decay skips vectors (norm scales, biases): decaying them toward zero only hurts.
fn decays(p: &Tensor) -> bool {
    p.dim() >= 2
}

impl Optimizer {
    pub fn new(spec: &OptimSpec, params: Vec<(String, Tensor)>) -> Optimizer {
        let mut params = params;
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let state = params.iter().map(|(_, p)| (p.zeros_like(), p.zeros_like())).collect();
        Optimizer { spec: spec.clone(), params, state, steps: 0 }
    }

    pub fn zero_grad(&mut self) {
        for (_, p) in &mut self.params {
            p.zero_grad();
        }
    }

    /// Scales gradients so their global L2 norm is at most `max` (0 = no clipping);
    /// returns the norm before clipping.
    pub fn clip_grad_norm(&mut self, max: f64) -> f64 {
        let grads: Vec<Tensor> = self.params.iter().map(|(_, p)| p.grad()).filter(|g| g.defined()).collect();
        if grads.is_empty() {
            return 0.0;
        }
        let squares: Vec<Tensor> = grads.iter().map(|g| g.to_kind(Kind::Float).square().sum(Kind::Float)).collect();
        let norm = Tensor::stack(&squares, 0).sum(Kind::Float).sqrt().double_value(&[]);
        if max > 0.0 && norm > max {
            let scale = max / (norm + 1e-6);
            tch::no_grad(|| {
                for mut g in grads {
                    let _ = g.g_mul_scalar_(scale);
                }
            });
        }
        norm
    }

    /// One update with learning rate `lr`.
    pub fn step(&mut self, lr: f64) {
        self.steps += 1;
        let t = self.steps as f64;
        tch::no_grad(|| match self.spec {
            OptimSpec::AdamW { betas: (b1, b2), wd, eps, .. } => {
                let (c1, c2) = (1.0 - b1.powf(t), 1.0 - b2.powf(t));
                for ((_, p), (m, v)) in self.params.iter_mut().zip(self.state.iter_mut()) {
                    let g = p.grad();
                    if !g.defined() {
                        continue;
                    }
                    if wd > 0.0 && decays(p) {
                        let _ = p.g_mul_scalar_(1.0 - lr * wd);
                    }
                    let _ = m.lerp_(&g, 1.0 - b1);
                    let _ = v.g_mul_scalar_(b2).addcmul_(&(&g * (1.0 - b2)), &g);
                    let denom = (v.sqrt() / c2.sqrt()) + eps;
                    let _ = p.addcdiv_(&(&*m * (-lr / c1)), &denom);
                }
            }
            OptimSpec::Sgd { momentum, wd, .. } => {
                for ((_, p), (buf, _)) in self.params.iter_mut().zip(self.state.iter_mut()) {
                    let mut g = p.grad();
                    if !g.defined() {
                        continue;
                    }
                    if wd > 0.0 && decays(p) {
                        g = &g + &*p * wd;
                    }
                    let update = if momentum > 0.0 {
                        let _ = buf.g_mul_scalar_(momentum).g_add_(&g);
                        buf.shallow_clone()
                    } else {
                        g
                    };
                    let _ = p.g_add_(&(update * -lr));
                }
            }
        });
    }

    /// The optimizer state as named tensors, for a checkpoint.
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for ((name, _), (a, b)) in self.params.iter().zip(&self.state) {
            out.push((format!("{name}.m"), a.shallow_clone()));
            out.push((format!("{name}.v"), b.shallow_clone()));
        }
        out
    }

    /// Restores what `state_tensors` saved; every tensor must be there with its shape.
    pub fn load_state(&mut self, saved: &BTreeMap<String, Tensor>, steps: u64) -> Result<(), String> {
        for ((name, _), (a, b)) in self.params.iter().zip(self.state.iter_mut()) {
            for (suffix, dst) in [("m", a), ("v", b)] {
                let key = format!("{name}.{suffix}");
                let src = saved.get(&key).ok_or_else(|| format!("the optimizer state has no {key}"))?;
                if src.size() != dst.size() {
                    return Err(format!("optimizer state {key} has shape {:?}, the model needs {:?}", src.size(), dst.size()));
                }
                tch::no_grad(|| dst.copy_(src));
            }
        }
        self.steps = steps;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Schedule;

    /// One AdamW step on f(p) = Σ p² from p = 1, against PyTorch's torch.optim.AdamW
    /// (lr 0.1, wd 0.01): p ← p·(1 − lr·wd) − lr·m̂/(√v̂ + eps) = 0.999 − 0.1·(1/(1+1e-8)).
    #[test]
    fn adamw_first_step_matches_pytorch() {
        let p = Tensor::ones([2, 2], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
        let spec = OptimSpec::AdamW { lr: Schedule::Const(0.1), betas: (0.9, 0.999), wd: 0.01, eps: 1e-8 };
        let mut opt = Optimizer::new(&spec, vec![("w".into(), p.shallow_clone())]);
        p.square().sum(Kind::Float).backward();
        opt.step(0.1);
        let want = 0.999 - 0.1 / (1.0 + 1e-8);
        assert!((p.double_value(&[0, 0]) - want).abs() < 1e-6, "{}", p.double_value(&[0, 0]));
    }

    #[test]
    fn clipping_scales_the_global_norm() {
        let p = Tensor::ones([4], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
        let spec = OptimSpec::Sgd { lr: Schedule::Const(1.0), momentum: 0.0, wd: 0.0 };
        let mut opt = Optimizer::new(&spec, vec![("b".into(), p.shallow_clone())]);
        (p.sum(Kind::Float) * 3.0).backward(); // grad 3 each, norm 6
        let norm = opt.clip_grad_norm(1.5);
        assert!((norm - 6.0).abs() < 1e-6);
        let g = p.grad().norm().double_value(&[]);
        assert!((g - 1.5).abs() < 1e-4, "{g}");
    }
}
