//! Optimizers over named parameters: AdamW (decoupled weight decay, as in PyTorch) and SGD
//! with momentum, plus global gradient-norm clipping. Written here rather than taken from
//! tch so their state (moments, step count) can be saved in a checkpoint and restored
//! exactly, which is what makes a resumed run identical to an uninterrupted one.

use crate::spec::OptimSpec;
use std::collections::BTreeMap;
use std::ffi::{c_char, c_int, c_void};
use tch::{Device, Kind, Tensor};

extern "C" {
    fn kdl_fused_adamw(
        params: *const *mut c_void,
        grads: *const *mut c_void,
        m: *const *mut c_void,
        v: *const *mut c_void,
        steps: *const *mut c_void,
        n: c_int,
        lr: *mut c_void,
        beta1: f64,
        beta2: f64,
        wd: f64,
        eps: f64,
        err: *mut *mut c_char,
    ) -> c_int;
    fn kdl_bump_versions(ptrs: *const *mut c_void, n: c_int);
}

pub struct Optimizer {
    spec: OptimSpec,
    /// Parameters by name, in name order (the order of updates and of the state file).
    params: Vec<(String, Tensor)>,
    /// AdamW: first and second moments; SGD: the momentum buffer (second unused).
    state: Vec<(Tensor, Tensor)>,
    /// AdamW's step count per parameter, an f32 scalar on its device: the fused kernel
    /// reads its bias corrections from it and increments it, so a captured step needs no
    /// value from the host.
    counts: Vec<Tensor>,
    /// The learning rate, a 0-dim f32 tensor on the parameters' device, refilled before
    /// each step (`set_lr`) and read there by the update.
    lr: Tensor,
    pub steps: u64,
}

/// Weight decay skips vectors (norm scales, biases): decaying them toward zero only hurts.
fn decays(p: &Tensor) -> bool {
    p.dim() >= 2
}

fn pointers<'a>(ts: impl Iterator<Item = &'a Tensor>) -> Vec<*mut c_void> {
    ts.map(|t| t.as_ptr() as *mut c_void).collect()
}

impl Optimizer {
    pub fn new(spec: &OptimSpec, params: Vec<(String, Tensor)>) -> Optimizer {
        let mut params = params;
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let state = params.iter().map(|(_, p)| (p.zeros_like(), p.zeros_like())).collect();
        let counts = params.iter().map(|(_, p)| Tensor::zeros([], (Kind::Float, p.device()))).collect();
        let device = params.first().map(|(_, p)| p.device()).unwrap_or(Device::Cpu);
        let lr = Tensor::zeros([], (Kind::Float, device));
        Optimizer { spec: spec.clone(), params, state, counts, lr, steps: 0 }
    }

    pub fn zero_grad(&mut self) {
        for (_, p) in &mut self.params {
            p.zero_grad();
        }
    }

    /// Scales gradients so their global L2 norm is at most `max` (0 = no clipping), on the
    /// device and without a branch on the host, so a captured step can clip too; returns
    /// the norm before clipping (reading it waits for the device).
    pub fn clip_grad_norm(&mut self, max: f64) -> Tensor {
        let grads: Vec<Tensor> = self.params.iter().map(|(_, p)| p.grad()).filter(|g| g.defined()).collect();
        let Some(first) = grads.first() else { return Tensor::zeros([], (Kind::Float, Device::Cpu)) };
        let device = first.device();
        let squares: Vec<Tensor> = grads.iter().map(|g| g.to_kind(Kind::Float).square().sum(Kind::Float).to_device(device)).collect();
        let norm = Tensor::stack(&squares, 0).sum(Kind::Float).sqrt();
        if max > 0.0 {
            // min(1, max / norm): a multiply by 1 under the limit, never a host `if`.
            let scale = ((&norm + 1e-6).reciprocal() * max).clamp_max(1.0);
            tch::no_grad(|| {
                for mut g in grads {
                    let _ = g.g_mul_(&scale.to_kind(g.kind()));
                }
            });
        }
        norm
    }

    /// The learning rate the next `apply` uses.
    pub fn set_lr(&mut self, lr: f64) {
        let _ = self.lr.fill_(lr);
    }

    /// One update with learning rate `lr`.
    pub fn step(&mut self, lr: f64) -> Result<(), String> {
        self.set_lr(lr);
        self.apply()?;
        self.count_step();
        Ok(())
    }

    /// Counts an update the device made (`apply`, or a replay of a captured one), in the
    /// step count and in each parameter's version counter, which the fused kernel and a
    /// graph replay leave as they were (copies made for decoding key on it).
    pub fn count_step(&mut self) {
        self.steps += 1;
        let params = pointers(self.params.iter().map(|(_, p)| p));
        // Safety: every pointer is a live tensor held by self for the call.
        unsafe { kdl_bump_versions(params.as_ptr(), params.len() as c_int) };
    }

    /// The update itself, with the rate `set_lr` gave: device work only, no value read
    /// back, so it can be captured in a CUDA graph. Parameters without a gradient wait.
    pub fn apply(&mut self) -> Result<(), String> {
        match self.spec {
            OptimSpec::AdamW { betas: (b1, b2), wd, eps, .. } => {
                // One fused call per (device, dtype, decayed or not) group.
                let mut groups: BTreeMap<(String, String, bool), Vec<usize>> = BTreeMap::new();
                for (i, (_, p)) in self.params.iter().enumerate() {
                    if p.grad().defined() {
                        groups.entry((format!("{:?}", p.device()), format!("{:?}", p.kind()), decays(p))).or_default().push(i);
                    }
                }
                for ((_, _, decayed), members) in groups {
                    let grads: Vec<Tensor> = members.iter().map(|&i| self.params[i].1.grad()).collect();
                    let params = pointers(members.iter().map(|&i| &self.params[i].1));
                    let grads = pointers(grads.iter());
                    let m = pointers(members.iter().map(|&i| &self.state[i].0));
                    let v = pointers(members.iter().map(|&i| &self.state[i].1));
                    let counts = pointers(members.iter().map(|&i| &self.counts[i]));
                    let mut err: *mut c_char = std::ptr::null_mut();
                    // Safety: every pointer is a live tensor held by self or `grads` for the
                    // call; the shim catches C++ exceptions and reports through `err`.
                    let rc = unsafe {
                        kdl_fused_adamw(
                            params.as_ptr(),
                            grads.as_ptr(),
                            m.as_ptr(),
                            v.as_ptr(),
                            counts.as_ptr(),
                            members.len() as c_int,
                            self.lr.as_ptr() as *mut c_void,
                            b1,
                            b2,
                            if decayed { wd } else { 0.0 },
                            eps,
                            &mut err,
                        )
                    };
                    if rc != 0 {
                        return Err(format!("the AdamW step failed: {}", super::shim::take_message(err, "the optimizer shim")));
                    }
                }
            }
            OptimSpec::Sgd { momentum, wd, .. } => tch::no_grad(|| {
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
                    let _ = p.g_sub_(&(update * self.lr.to_kind(p.kind())));
                }
            }),
        }
        Ok(())
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
        for c in &mut self.counts {
            let _ = c.fill_(steps as f64);
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
        opt.step(0.1).unwrap();
        let want = 0.999 - 0.1 / (1.0 + 1e-8);
        assert!((p.double_value(&[0, 0]) - want).abs() < 1e-6, "{}", p.double_value(&[0, 0]));
    }

    /// The fused kernel against AdamW written out as PyTorch documents it, over three
    /// steps with a changing rate: a matrix (decayed) and a vector (not decayed).
    #[test]
    fn fused_adamw_matches_the_written_out_update() {
        let opts = (Kind::Float, tch::Device::Cpu);
        let w = Tensor::randn([3, 4], opts).set_requires_grad(true);
        let b = Tensor::randn([4], opts).set_requires_grad(true);
        let (b1, b2, wd, eps) = (0.9, 0.95, 0.1, 1e-8);
        let spec = OptimSpec::AdamW { lr: Schedule::Const(0.01), betas: (b1, b2), wd, eps };
        let mut opt = Optimizer::new(&spec, vec![("w".into(), w.shallow_clone()), ("b".into(), b.shallow_clone())]);
        let mut want: Vec<(Tensor, Tensor, Tensor, f64)> = [(&w, wd), (&b, 0.0)].iter().map(|(p, d)| (p.detach().copy(), p.zeros_like(), p.zeros_like(), *d)).collect();
        for (step, lr) in [(1, 0.01), (2, 0.02), (3, 0.005)] {
            opt.zero_grad();
            ((&w * &w).sum(Kind::Float) + (&b * 3.0).sin().sum(Kind::Float) + (&w.sum_dim_intlist(0, false, Kind::Float) * &b).sum(Kind::Float)).backward();
            for ((p, m, v, d), live) in want.iter_mut().zip([&w, &b]) {
                let g = live.grad();
                *p = &*p * (1.0 - lr * *d);
                *m = &*m * b1 + &g * (1.0 - b1);
                *v = &*v * b2 + &g * &g * (1.0 - b2);
                let (c1, c2) = (1.0 - f64::powi(b1, step), 1.0 - f64::powi(b2, step));
                *p = &*p - (&*m / c1) / ((&*v / c2).sqrt() + eps) * lr;
            }
            opt.step(lr).unwrap();
            for ((p, ..), live) in want.iter().zip([&w, &b]) {
                let diff = (p - live).abs().max().double_value(&[]);
                assert!(diff < 1e-6, "step {step}: fused AdamW is {diff} off the written-out update");
            }
        }
        assert_eq!(opt.steps, 3);
    }

    #[test]
    fn clipping_scales_the_global_norm() {
        let p = Tensor::ones([4], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
        let spec = OptimSpec::Sgd { lr: Schedule::Const(1.0), momentum: 0.0, wd: 0.0 };
        let mut opt = Optimizer::new(&spec, vec![("b".into(), p.shallow_clone())]);
        (p.sum(Kind::Float) * 3.0).backward(); // grad 3 each, norm 6
        let norm = opt.clip_grad_norm(1.5).double_value(&[]);
        assert!((norm - 6.0).abs() < 1e-6);
        let g = p.grad().norm().double_value(&[]);
        assert!((g - 1.5).abs() < 1e-4, "{g}");
    }
}
